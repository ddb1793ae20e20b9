package wsgate

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRequestFromGivesVerifiersTheHandshake(t *testing.T) {
	assert.Nil(t, RequestFrom(context.Background()))
	var seen *http.Request
	g := New(func(ctx context.Context, c Credential) (user, error) {
		seen = RequestFrom(ctx)
		return user{"alice"}, nil
	}, Config{Extractors: []Extractor{Query("ticket")}})
	r := newHandshake("/ws?ticket=x&room=1")
	_, err := g.Authenticate(r)
	require.NoError(t, err)
	require.Same(t, r, seen)
	assert.Equal(t, "room=1", seen.URL.RawQuery, "the credential is gone before the verifier looks")
}

func TestEveryVerifierGetsTheVerificationContext(t *testing.T) {
	var sawDeadline, sawRequest bool
	g := New(func(ctx context.Context, c Credential) (user, error) {
		_, sawDeadline = ctx.Deadline()
		sawRequest = RequestFrom(ctx) != nil
		return user{"alice"}, nil
	}, Config{})
	_, err := g.Authenticate(newHandshake("/ws", "Authorization", "Bearer x"))
	require.NoError(t, err)
	assert.True(t, sawDeadline, "the verification deadline")
	assert.True(t, sawRequest, "and the request")
}
