package wsgate

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// expiringVerifier accepts secret and says it expires after ttl.
func expiringVerifier(ttl time.Duration) Verifier[user] {
	return func(ctx context.Context, c Credential) (user, error) {
		if c.Token() != secret {
			return user{}, ErrInvalidToken
		}
		SetExpiry(ctx, time.Now().Add(ttl))
		return user{"alice"}, nil
	}
}

func TestExpiryClosesALiveConnection(t *testing.T) {
	causes := make(chan error, 1)
	g := New(expiringVerifier(200*time.Millisecond), Config{})
	srv := newServer(t, g.Handler(func(ctx context.Context, s Session[user]) {
		select {
		case <-ctx.Done():
			causes <- context.Cause(ctx)
		case <-time.After(5 * time.Second):
			causes <- nil
		}
	}))
	_, br, resp := rawHandshake(t, srv.Listener.Addr().String(), "Authorization: Bearer "+secret+"\r\n", "")
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	code, reason := readClose(t, br)
	assert.Equal(t, CloseUnauthorized, code)
	assert.Equal(t, "credential expired", reason)
	assertClosed(t, br)
	select {
	case cause := <-causes:
		assert.ErrorIs(t, cause, ErrCredentialExpired)
	case <-time.After(5 * time.Second):
		t.Fatal("the handler did not return")
	}
}

// refreshingVerifier accepts secret for ttl and fresh for an hour, both
// as alice, and other for an hour as bob.
func refreshingVerifier(ttl time.Duration) Verifier[user] {
	return func(ctx context.Context, c Credential) (user, error) {
		switch c.Token() {
		case secret:
			SetExpiry(ctx, time.Now().Add(ttl))
			return user{"alice"}, nil
		case "fresh":
			SetExpiry(ctx, time.Now().Add(time.Hour))
			return user{"alice"}, nil
		case "other":
			SetExpiry(ctx, time.Now().Add(time.Hour))
			return user{"bob"}, nil
		}
		return user{}, ErrInvalidToken
	}
}

func userKey(p any) string { return p.(user).Name }

func TestRefreshKeepsTheConnectionOpen(t *testing.T) {
	renewed := make(chan bool, 1)
	g := New(refreshingVerifier(200*time.Millisecond), Config{PrincipalKey: userKey})
	srv := newServer(t, g.Handler(func(ctx context.Context, s Session[user]) {
		renewed <- s.Refresh(NewCredential(SourceMessage, "fresh")) == nil
		msg, _, err := wsutil.ReadClientData(s.Conn)
		if err != nil {
			return
		}
		l := s.WriteLock()
		l.Lock()
		defer l.Unlock()
		reply := "ctx alive"
		if ctx.Err() != nil {
			reply = "ctx done"
		}
		_ = wsutil.WriteServerText(s.Conn, append([]byte(reply+": "), msg...))
	}))
	conn, br, resp := rawHandshake(t, srv.Listener.Addr().String(), "Authorization: Bearer "+secret+"\r\n", "")
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	require.True(t, <-renewed)
	// Outlive the original expiry, then talk.
	time.Sleep(400 * time.Millisecond)
	_, err := conn.Write([]byte(clientFrame("ping")))
	require.NoError(t, err)
	f, err := readFrame(br)
	require.NoError(t, err)
	assert.Equal(t, ws.OpText, f.Header.OpCode)
	assert.Equal(t, "ctx alive: ping", string(f.Payload))
}

func TestRefreshAfterExpiryFails(t *testing.T) {
	results := make(chan bool, 1)
	g := New(refreshingVerifier(50*time.Millisecond), Config{PrincipalKey: userKey})
	srv := newServer(t, g.Handler(func(ctx context.Context, s Session[user]) {
		<-ctx.Done()
		results <- s.Refresh(NewCredential(SourceMessage, "fresh")) == nil
	}))
	_, br, _ := rawHandshake(t, srv.Listener.Addr().String(), "Authorization: Bearer "+secret+"\r\n", "")
	code, _ := readClose(t, br)
	assert.Equal(t, CloseUnauthorized, code)
	select {
	case ok := <-results:
		assert.False(t, ok)
	case <-time.After(5 * time.Second):
		t.Fatal("the handler did not return")
	}
}

func TestExpiryAfterInBandAuthentication(t *testing.T) {
	g := New(expiringVerifier(100*time.Millisecond), Config{InBand: &InBandAuth{}})
	srv := newServer(t, g.Handler(func(ctx context.Context, s Session[user]) {
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Second):
		}
	}))
	_, br, resp := rawHandshake(t, srv.Listener.Addr().String(), "", clientFrame(authMessage(secret)))
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	code, reason := readClose(t, br)
	assert.Equal(t, CloseUnauthorized, code)
	assert.Equal(t, "credential expired", reason)
}

func TestWithoutExpiryTheSessionHasNone(t *testing.T) {
	type result struct {
		renewed  bool
		lock     any
		noExpiry bool
	}
	results := make(chan result, 1)
	g := New(StaticToken(secret, user{"alice"}), Config{})
	srv := newServer(t, g.Handler(func(ctx context.Context, s Session[user]) {
		results <- result{s.Refresh(NewCredential(SourceMessage, secret)) == nil, s.WriteLock(), s.Expires.IsZero()}
	}))
	_, _, resp := rawHandshake(t, srv.Listener.Addr().String(), "Authorization: Bearer "+secret+"\r\n", "")
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	r := <-results
	assert.False(t, r.renewed)
	assert.IsType(t, &sync.Mutex{}, r.lock, "a real lock: Shutdown writes a close frame too")
	assert.True(t, r.noExpiry)
}

func TestSetExpiryOutsideAVerifier(t *testing.T) {
	assert.False(t, SetExpiry(context.Background(), time.Now()))
	var leaked context.Context
	g := New(func(ctx context.Context, c Credential) (user, error) {
		leaked = ctx
		return user{}, nil
	}, Config{})
	_, err := g.Authenticate(newHandshake("/ws", "Authorization", "Bearer x"))
	require.NoError(t, err)
	assert.False(t, SetExpiry(leaked, time.Now()), "too late once the verifier returned")
}

func TestExpiryIsReportedByAuthenticateAndMiddleware(t *testing.T) {
	at := time.Now().Add(time.Hour).Round(0)
	type derivedKey struct{}
	g := New(func(ctx context.Context, c Credential) (user, error) {
		derived := context.WithValue(ctx, derivedKey{}, 1)
		require.True(t, SetExpiry(derived, at))
		return user{"alice"}, nil
	}, Config{})
	a, err := g.Authenticate(newHandshake("/ws", "Authorization", "Bearer x"))
	require.NoError(t, err)
	assert.True(t, at.Equal(a.Expires))

	var got time.Time
	serveOnce(g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, _ := AuthFrom[user](r.Context())
		got = a.Expires
	})), newHandshake("/ws", "Authorization", "Bearer x"))
	assert.True(t, at.Equal(got))
}
