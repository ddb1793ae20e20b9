package ticket

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRecordBinaryRoundTrip(t *testing.T) {
	in := Record{
		Principal: []byte(`{"Name":"alice"}`),
		Expires:   time.Unix(1900000000, 123456789),
		Bound:     BindOrigin | BindPath | BindClient,
		Origin:    "https://app.example:8443",
		Path:      "/ws",
		Client:    netip.MustParseAddr("2001:db8::1"),
	}
	b, err := in.MarshalBinary()
	require.NoError(t, err)
	var out Record
	require.NoError(t, out.UnmarshalBinary(b))
	assert.True(t, in.Expires.Equal(out.Expires))
	out.Expires = in.Expires
	assert.Equal(t, in, out)

	for i := range len(b) - len(in.Principal) {
		assert.Error(t, new(Record).UnmarshalBinary(b[:i]), "truncated at %d", i)
	}
	assert.Error(t, new(Record).UnmarshalBinary(append([]byte{9}, b[1:]...)), "unknown version")
}
