package wsgate

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAcceptKeyMatchesTheRFCExample(t *testing.T) {
	assert.Equal(t, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", acceptKey("dGhlIHNhbXBsZSBub25jZQ=="))
}

func TestAcceptKeyAgreesWithGobwasForRandomKeys(t *testing.T) {
	for i := 0; i < 100; i++ {
		var nonce [16]byte
		_, _ = rand.Read(nonce[:])
		key := base64.StdEncoding.EncodeToString(nonce[:])
		require.NoError(t, checkKey(key))
		// gobwas computes the same value when it answers a handshake.
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header = handshakeHeader()
		req.Header.Set("Sec-WebSocket-Key", key)
		w := newHijackWriter()
		_, _, _, err := ws.HTTPUpgrader{}.Upgrade(req, w)
		require.NoError(t, err)
		assert.Contains(t, w.out.String(), "Sec-WebSocket-Accept: "+acceptKey(key)+"\r\n")
	}
}

func TestAppendAcceptKeyAllocatesNothing(t *testing.T) {
	buf := make([]byte, 0, acceptKeyLen)
	allocs := testing.AllocsPerRun(1000, func() {
		buf = AppendAcceptKey(buf[:0], "dGhlIHNhbXBsZSBub25jZQ==")
	})
	assert.Zero(t, allocs)
	assert.Equal(t, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", string(buf))
}

func TestCheckKey(t *testing.T) {
	tests := []struct {
		name string
		key  string
		ok   bool
	}{
		{
			name: "the RFC example is valid",
			key:  "dGhlIHNhbXBsZSBub25jZQ==",
			ok:   true,
		},
		{
			name: "surrounding spaces are trimmed",
			key:  "  dGhlIHNhbXBsZSBub25jZQ==\t",
			ok:   true,
		},
		{
			name: "an empty key is invalid",
			key:  "",
		},
		{
			name: "a key without padding is invalid",
			key:  "dGhlIHNhbXBsZSBub25jZQ",
		},
		{
			name: "a key decoding to 15 bytes is invalid",
			key:  "dGhlIHNhbXBsZSBub25j",
		},
		{
			name: "a key decoding to 17 bytes is invalid",
			key:  "dGhlIHNhbXBsZSBub25jZQE=",
		},
		{
			name: "url-safe base64 is invalid",
			key:  "dGhlIHNhbXBsZSBub25j-_==",
		},
		{
			name: "a line break inside is invalid",
			key:  "dGhlIHNhbXBsZSBu\nb25jZQ==",
		},
		{
			name: "24 characters of garbage are invalid",
			key:  "!!!!!!!!!!!!!!!!!!!!!!==",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkKey(tt.key)
			if tt.ok {
				assert.NoError(t, err)
				return
			}
			assert.True(t, errors.Is(err, ErrHandshake))
		})
	}
}
