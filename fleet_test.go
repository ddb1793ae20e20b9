package wsgate

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/wsgate/wsgate/fleet"
)

// tokenUsers is a verifier knowing two tokens, alice's and bob's.
func tokenUsers(calls *atomic.Int32) Verifier[user] {
	return func(_ context.Context, c Credential) (user, error) {
		if calls != nil {
			calls.Add(1)
		}
		switch c.Token() {
		case secret:
			return user{"alice"}, nil
		case "bob-token":
			return user{"bob"}, nil
		}
		return user{}, ErrInvalidToken
	}
}

const bearer = "Authorization: Bearer " + secret + "\r\n"

func TestRevokeClosesTheSessionsOfAKeyWithTheRevokeCode(t *testing.T) {
	reg := fleet.NewMemory(fleet.MemoryOptions{})
	ids := make(chan Session[user], 2)
	g := New(tokenUsers(nil), Config{Registry: reg, PrincipalKey: userKey})
	srv := newServer(t, g.Handler(func(ctx context.Context, s Session[user]) {
		ids <- s
		// Without an expiry there is no context to cancel: the gate
		// closes the connection under the reader, as Shutdown does.
		_, _, _ = wsutil.ReadClientData(s.Conn)
	}))
	_, br, resp := rawHandshake(t, srv.Listener.Addr().String(), bearer, "")
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	_, bobBr, _ := rawHandshake(t, srv.Listener.Addr().String(), "Authorization: Bearer bob-token\r\n", "")
	s, s2 := <-ids, <-ids
	assert.NotEmpty(t, s.ID)
	assert.NotEqual(t, s.ID, s2.ID)
	assert.Equal(t, 2, reg.Len(""))

	n, err := reg.Revoke(context.Background(), "alice")
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	code, reason := readClose(t, br)
	assert.Equal(t, fleet.CloseRevoked, code)
	assert.Equal(t, fleet.RevokedReason, reason)
	assert.Eventually(t, func() bool { return reg.Len("alice") == 0 }, 5*time.Second, 5*time.Millisecond, "the session left the registry")

	// bob's session is untouched, until the gate shuts down.
	require.Equal(t, 1, reg.Len("bob"))
	require.NoError(t, g.Shutdown(context.Background()))
	code, _ = readClose(t, bobBr)
	assert.Equal(t, ws.StatusGoingAway, code)
}

func TestRevokeSessionCancelsTheContextWithErrRevoked(t *testing.T) {
	reg := fleet.NewMemory(fleet.MemoryOptions{})
	sessions := make(chan Session[user], 1)
	causes := make(chan error, 1)
	g := New(expiringVerifier(time.Hour), Config{Registry: reg, PrincipalKey: userKey})
	srv := newServer(t, g.Handler(func(ctx context.Context, s Session[user]) {
		sessions <- s
		<-ctx.Done()
		causes <- context.Cause(ctx)
	}))
	_, br, _ := rawHandshake(t, srv.Listener.Addr().String(), bearer, "")
	s := <-sessions
	assert.Equal(t, "alice", s.Key)
	found, err := reg.RevokeSession(context.Background(), s.ID)
	require.NoError(t, err)
	assert.True(t, found)
	code, reason := readClose(t, br)
	assert.Equal(t, fleet.CloseRevoked, code)
	assert.Equal(t, fleet.RevokedReason, reason)
	assert.ErrorIs(t, <-causes, fleet.ErrRevoked)
}

func TestTheCapRefusesTheNextSessionOfAKeyOnEveryEntryPoint(t *testing.T) {
	reg := fleet.NewMemory(fleet.MemoryOptions{MaxPerKey: 1})
	var mu sync.Mutex
	var events []HandshakeEvent
	lastEvent := func() HandshakeEvent {
		mu.Lock()
		defer mu.Unlock()
		return events[len(events)-1]
	}
	cfg := Config{Registry: reg, PrincipalKey: userKey, OnHandshake: func(ev HandshakeEvent) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, ev)
	}}
	g := New(tokenUsers(nil), cfg)
	cfg.RefuseWithCloseFrame = true
	gcf := New(tokenUsers(nil), cfg)
	hold := make(chan struct{})
	defer close(hold)
	mux := http.NewServeMux()
	mux.Handle("/ws", g.Handler(func(ctx context.Context, s Session[user]) { <-hold }))
	srv := newServer(t, mux)
	_, _, resp := rawHandshake(t, srv.Listener.Addr().String(), bearer, "")
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)

	// The handler form answers 429.
	_, _, resp = rawHandshake(t, srv.Listener.Addr().String(), bearer, "")
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	last := lastEvent()
	assert.ErrorIs(t, last.Err, fleet.ErrTooManySessions)
	assert.False(t, last.Accepted)

	// Another key is not capped by alice's sessions.
	_, _, resp = rawHandshake(t, srv.Listener.Addr().String(), "Authorization: Bearer bob-token\r\n", "")
	assert.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)

	// Middleware with Upgrade, and Authenticate with Accept.
	r := newHandshake("/ws", "Authorization", "Bearer "+secret)
	w := httptest.NewRecorder()
	g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := Upgrade(w, r)
		assert.ErrorIs(t, err, fleet.ErrTooManySessions)
	})).ServeHTTP(w, r)
	assert.Equal(t, http.StatusTooManyRequests, w.Code)
	r = newHandshake("/ws", "Authorization", "Bearer "+secret)
	a, err := g.Authenticate(r)
	require.NoError(t, err)
	w = httptest.NewRecorder()
	_, err = g.Accept(w, r, a)
	assert.ErrorIs(t, err, fleet.ErrTooManySessions)
	var ge *Error
	require.True(t, errors.As(err, &ge))
	assert.Equal(t, http.StatusTooManyRequests, ge.Status)
	assert.Equal(t, fleet.CloseTooManySessions, ge.CloseCode)
	assert.Equal(t, http.StatusTooManyRequests, w.Code)

	// Close-frame mode: 4409 and its reason.
	cf := newServer(t, gcf.Handler(func(ctx context.Context, s Session[user]) {}))
	_, br, resp := rawHandshake(t, cf.Listener.Addr().String(), bearer, "")
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	code, reason := readClose(t, br)
	assert.Equal(t, fleet.CloseTooManySessions, code)
	assert.Equal(t, "too many sessions", reason)
}

func TestTheLimiterRefusesAnAddressAfterKFailuresWithoutCallingTheVerifier(t *testing.T) {
	var calls atomic.Int32
	lim := fleet.NewMemoryLimiter(fleet.LimiterOptions{Failures: 3, Window: time.Minute})
	proxy := netip.MustParsePrefix("127.0.0.0/8")
	g := New(tokenUsers(&calls), Config{Limiter: lim, TrustedProxies: []netip.Prefix{proxy}})
	handler := g.Handler(func(ctx context.Context, s Session[user]) {})
	try := func(token, xff string) *httptest.ResponseRecorder {
		r := newHandshake("/ws", "Authorization", "Bearer "+token, "X-Forwarded-For", xff)
		r.RemoteAddr = "127.0.0.1:5000"
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, r)
		return w
	}
	for range 3 {
		require.Equal(t, http.StatusUnauthorized, try("wrong", "203.0.113.9").Code)
	}
	require.EqualValues(t, 3, calls.Load())
	w := try(secret, "203.0.113.9")
	assert.Equal(t, http.StatusTooManyRequests, w.Code, "even the right token waits")
	assert.Equal(t, "20", w.Header().Get("Retry-After"))
	assert.EqualValues(t, 3, calls.Load(), "the verifier was not called")

	// Another client behind the same proxy is not limited, nor is the
	// proxy itself; an untrusted peer's X-Forwarded-For is ignored.
	assert.Equal(t, http.StatusInternalServerError, try(secret, "203.0.113.10").Code, "verified (then no hijacker)")
	assert.EqualValues(t, 4, calls.Load())
	r := newHandshake("/ws", "Authorization", "Bearer "+secret, "X-Forwarded-For", "198.51.100.1")
	r.RemoteAddr = "203.0.113.9:1"
	w = httptest.NewRecorder()
	handler.ServeHTTP(w, r)
	assert.Equal(t, http.StatusTooManyRequests, w.Code, "the limited address cannot hide behind a forged header")

	// Close-frame mode: 4429.
	gcf := New(tokenUsers(&calls), Config{Limiter: lim, RefuseWithCloseFrame: true})
	srv := newServer(t, gcf.Handler(func(ctx context.Context, s Session[user]) {}))
	for range 3 {
		_, br, _ := rawHandshake(t, srv.Listener.Addr().String(), "Authorization: Bearer wrong\r\n", "")
		code, _ := readClose(t, br)
		require.Equal(t, CloseUnauthorized, code)
	}
	_, br, _ := rawHandshake(t, srv.Listener.Addr().String(), bearer, "")
	code, reason := readClose(t, br)
	assert.Equal(t, fleet.CloseRateLimited, code)
	assert.Equal(t, "too many failed attempts", reason)
}

func TestARefusedRefreshCloses4401AndAnAcceptedOneMovesTheExpiry(t *testing.T) {
	tests := []struct {
		name    string
		token   string
		refused bool
	}{
		{name: "a fresh credential of the same principal", token: "fresh"},
		{name: "an invalid credential", token: "wrong", refused: true},
		{name: "a credential of another principal", token: "other", refused: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			results := make(chan error, 1)
			g := New(refreshingVerifier(300*time.Millisecond), Config{PrincipalKey: userKey})
			srv := newServer(t, g.Handler(func(ctx context.Context, s Session[user]) {
				msg, _, err := wsutil.ReadClientData(s.Conn)
				if err != nil {
					return
				}
				tok, ok := fleet.RefreshToken(msg)
				require.True(t, ok)
				results <- s.Refresh(NewCredential(SourceMessage, tok))
				<-ctx.Done()
			}))
			_, br, resp := rawHandshake(t, srv.Listener.Addr().String(), bearer, clientFrame(`{"type":"refresh","token":"`+tt.token+`"}`))
			require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
			err := <-results
			if !tt.refused {
				require.NoError(t, err)
				// Outlive the handshake credential: the session stays open.
				time.Sleep(500 * time.Millisecond)
				require.NoError(t, g.Shutdown(context.Background()))
				code, _ := readClose(t, br)
				assert.Equal(t, ws.StatusGoingAway, code, "open until shut down")
				return
			}
			assert.Error(t, err)
			code, reason := readClose(t, br)
			assert.Equal(t, CloseUnauthorized, code)
			assert.Equal(t, "refresh refused", reason)
		})
	}
}

func TestRefreshMovesAnExpiryOntoASessionThatHadNone(t *testing.T) {
	g := New(func(ctx context.Context, c Credential) (user, error) {
		if c.Token() == "short" {
			SetExpiry(ctx, time.Now().Add(100*time.Millisecond))
		}
		return user{"alice"}, nil
	}, Config{PrincipalKey: userKey})
	srv := newServer(t, g.Handler(func(ctx context.Context, s Session[user]) {
		assert.NoError(t, s.Refresh(NewCredential(SourceMessage, "short")))
		_, _, _ = wsutil.ReadClientData(s.Conn) // until the gate closes it
	}))
	_, br, _ := rawHandshake(t, srv.Listener.Addr().String(), bearer, "")
	code, reason := readClose(t, br)
	assert.Equal(t, CloseUnauthorized, code)
	assert.Equal(t, "credential expired", reason)
}
