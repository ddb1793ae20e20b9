package wsgate

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// events collects HandshakeEvents.
type events struct {
	mu  sync.Mutex
	all []HandshakeEvent
}

func (e *events) add(ev HandshakeEvent) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, ev)
}

func TestRefusalsAreLoggedWithoutSecrets(t *testing.T) {
	wrong := "Wr0ngSecret-sentinel_c4d1"
	for name, r := range refusedRequests(wrong) {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			var got events
			cfg := allWays()
			cfg.Logger = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			cfg.OnHandshake = got.add
			g := New(StaticToken(secret, user{"alice"}), cfg)
			r.RemoteAddr = "192.0.2.7:5555"
			w := serveOnce(g.Handler(echoHandler), r)
			require.False(t, w.hijacked)

			require.Len(t, got.all, 1)
			ev := got.all[0]
			assert.False(t, ev.Accepted)
			assert.Equal(t, w.status, ev.Status)
			assert.Error(t, ev.Err)
			assert.Equal(t, "192.0.2.7:5555", ev.RemoteAddr)
			assert.Equal(t, "/ws", ev.Path)

			var line map[string]any
			require.NoError(t, json.Unmarshal(buf.Bytes(), &line), buf.String())
			assert.Equal(t, "wsgate: handshake refused", line["msg"])
			assert.Equal(t, float64(w.status), line["status"])
			assert.NotEmpty(t, line["reason"])
			assert.Equal(t, "192.0.2.7:5555", line["remote"])
			assert.NotContains(t, buf.String(), wrong)
		})
	}
}

func TestLogLevelsFollowTheOutcome(t *testing.T) {
	var buf bytes.Buffer
	cfg := allWays()
	cfg.Logger = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	g := New(func(_ context.Context, c Credential) (user, error) {
		if c.Token() == "broken" {
			return user{}, assert.AnError
		}
		return StaticToken(secret, user{"alice"})(context.Background(), c)
	}, cfg)
	h := g.Handler(echoHandler)
	serveOnce(h, newHandshake("/ws", "Authorization", "Bearer "+secret))
	serveOnce(h, newHandshake("/ws", "Authorization", "Bearer wrong"))
	serveOnce(h, newHandshake("/ws", "Authorization", "Bearer broken"))
	var levels, sources []string
	for _, l := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		var line map[string]any
		require.NoError(t, json.Unmarshal(l, &line))
		levels = append(levels, line["level"].(string))
		sources = append(sources, line["source"].(string))
	}
	assert.Equal(t, []string{"DEBUG", "INFO", "ERROR"}, levels)
	assert.Equal(t, []string{"bearer", "bearer", "bearer"}, sources)
	assert.NotContains(t, buf.String(), secret)
}

func TestOnHandshakeSeesEveryOutcome(t *testing.T) {
	var got events
	cfg := allWays()
	cfg.OnHandshake = got.add
	g := New(StaticToken(secret, user{"alice"}), cfg)
	serveOnce(g.Handler(echoHandler), newHandshake("/ws", "Sec-WebSocket-Protocol", "chat, access_token, "+secret))
	serveOnce(g.Handler(echoHandler), newHandshake("/ws"))
	serveOnce(g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if conn, err := Upgrade(w, r); err == nil {
			conn.Close()
		}
	})), newHandshake("/ws?access_token="+secret))
	serveOnce(g.Handler(echoHandler), newHandshake("/ws", "Origin", "http://evil.example"))

	require.Len(t, got.all, 4)
	assert.Equal(t, HandshakeEvent{Accepted: true, Status: 101, Source: SourceSubprotocol, Path: "/ws"}, withoutDuration(got.all[0]))
	assert.Equal(t, 401, got.all[1].Status)
	assert.ErrorIs(t, got.all[1].Err, ErrNoCredential)
	assert.Equal(t, HandshakeEvent{Accepted: true, Status: 101, Source: SourceQuery, Path: "/ws"}, withoutDuration(got.all[2]))
	assert.Equal(t, 403, got.all[3].Status)
	assert.ErrorIs(t, got.all[3].Err, ErrOrigin)
	for _, ev := range got.all {
		assert.Positive(t, ev.Duration)
	}
}

func withoutDuration(ev HandshakeEvent) HandshakeEvent {
	ev.Duration, ev.RemoteAddr = 0, ""
	ev.Context, ev.Method, ev.Host, ev.Proto = nil, "", "", ""
	return ev
}

func TestOnHandshakeSeesInBandOutcomes(t *testing.T) {
	var got events
	g := New(refusingVerifier, Config{InBand: &InBandAuth{}, OnHandshake: got.add})
	srv := newServer(t, g.Handler(echoSession))
	for _, token := range []string{secret, "wrong"} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, br, _, err := ws.Dial(ctx, wsURL(srv, "/ws"))
		require.NoError(t, err)
		require.NoError(t, conn.SetDeadline(time.Now().Add(5*time.Second)))
		require.NoError(t, ws.WriteFrame(conn, ws.MaskFrame(ws.NewTextFrame([]byte(authMessage(token))))))
		rd := readWriter{conn, conn}
		if br != nil {
			rd.r = br
		}
		_, err = readFrame(rd)
		require.NoError(t, err)
		conn.Close()
		cancel()
	}
	require.Eventually(t, func() bool {
		got.mu.Lock()
		defer got.mu.Unlock()
		return len(got.all) == 2
	}, 5*time.Second, 10*time.Millisecond)
	assert.True(t, got.all[0].Accepted)
	assert.Equal(t, SourceMessage, got.all[0].Source)
	assert.Equal(t, 101, got.all[0].Status)
	assert.False(t, got.all[1].Accepted)
	assert.Equal(t, 401, got.all[1].Status)
	assert.ErrorIs(t, got.all[1].Err, ErrInvalidToken)
	assert.Equal(t, CloseUnauthorized, got.all[1].CloseCode)
}

// TestOnHandshakeReportsCloseCodes checks that the hook can tell the
// refusals a client got as close frames apart: which code was sent, and why
// an in-band authentication failed.
func TestOnHandshakeReportsCloseCodes(t *testing.T) {
	var got events
	last := func() HandshakeEvent {
		var ev HandshakeEvent
		require.Eventually(t, func() bool {
			got.mu.Lock()
			defer got.mu.Unlock()
			if len(got.all) == 0 {
				return false
			}
			ev, got.all = got.all[0], got.all[1:]
			return true
		}, 5*time.Second, 5*time.Millisecond)
		return ev
	}
	inband := New(refusingVerifier, Config{
		Protocols:   []string{"chat"},
		InBand:      &InBandAuth{Timeout: 100 * time.Millisecond, MaxSize: 64},
		OnHandshake: got.add,
	})
	srv := newServer(t, inband.Handler(echoSession))
	addr := srv.Listener.Addr().String()
	cases := []struct {
		name   string
		after  string
		code   ws.StatusCode
		kind   error
		reason string
	}{
		{"no message in time", "", CloseAuthTimeout, ErrNoCredential, "authentication timed out"},
		{"a message over MaxSize", clientFrame(authMessage(strings.Repeat("x", 100))), ws.StatusMessageTooBig, ErrMalformedCredential, "authentication message too big"},
		{"a ping first", func() string {
			var b strings.Builder
			_ = ws.WriteFrame(&b, ws.MaskFrame(ws.NewPingFrame(nil)))
			return b.String()
		}(), CloseUnauthorized, ErrMalformedCredential, "first message must carry the credential"},
	}
	for _, tt := range cases {
		t.Run("in-band: "+tt.name, func(t *testing.T) {
			conn, br, resp := rawHandshake(t, addr, "", tt.after)
			require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
			code, _ := readClose(t, br)
			conn.Close() // as a client does after the close frame; the gate stops waiting
			require.Equal(t, tt.code, code)
			ev := last()
			assert.Equal(t, tt.code, ev.CloseCode)
			assert.Equal(t, http.StatusUnauthorized, ev.Status)
			assert.Equal(t, SourceMessage, ev.Source)
			assert.ErrorIs(t, ev.Err, tt.kind)
			var e *Error
			require.ErrorAs(t, ev.Err, &e)
			assert.Equal(t, tt.reason, e.Reason)
		})
	}

	cf := New(refusingVerifier, Config{RefuseWithCloseFrame: true, OnHandshake: got.add})
	cfSrv := newServer(t, cf.Handler(echoSession))
	t.Run("close-frame mode", func(t *testing.T) {
		conn, br, resp := rawHandshake(t, cfSrv.Listener.Addr().String(), "Authorization: Bearer wrong\r\n", "")
		require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
		code, _ := readClose(t, br)
		conn.Close()
		require.Equal(t, CloseUnauthorized, code)
		ev := last()
		assert.Equal(t, CloseUnauthorized, ev.CloseCode)
		assert.Equal(t, http.StatusUnauthorized, ev.Status)
		assert.ErrorIs(t, ev.Err, ErrInvalidToken)
	})
	t.Run("close-frame mode, an origin refusal stays HTTP", func(t *testing.T) {
		_, _, resp := rawHandshake(t, cfSrv.Listener.Addr().String(), "Origin: https://evil.example\r\n", "")
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
		ev := last()
		assert.Zero(t, ev.CloseCode)
		assert.ErrorIs(t, ev.Err, ErrOrigin)
	})
}

// classedError is a verifier's error that names its refusal class.
type classedError struct {
	class string
	err   error
}

func (e classedError) Error() string { return "verifier says " + e.class }
func (e classedError) Unwrap() error { return e.err }
func (e classedError) Class() string { return e.class }

func TestRefusalsCarryTheirClass(t *testing.T) {
	verify := func(ctx context.Context, c Credential) (user, error) {
		switch c.Token() {
		case "expired-token":
			return user{}, fmt.Errorf("token of 2001-01-01: %w", ErrCredentialExpired)
		case "bad-signature":
			return user{}, classedError{"bad_signature", ErrInvalidToken}
		case "revoked":
			return user{}, classedError{"revoked", ErrForbidden}
		case "unsafe-class":
			return user{}, classedError{"Bad Class\n", ErrInvalidToken}
		case "long-class":
			return user{}, classedError{strings.Repeat("x", maxClassLen+1), ErrInvalidToken}
		case "slow":
			return user{}, context.DeadlineExceeded
		}
		return refusingVerifier(ctx, c)
	}
	bearer := func(token string) *http.Request { return newHandshake("/ws", "Authorization", "Bearer "+token) }
	post := newHandshake("/ws")
	post.Method = http.MethodPost
	tests := []struct {
		name   string
		r      *http.Request
		status int
		class  string
	}{
		{"not a handshake", post, 405, "handshake"},
		{"a foreign origin", newHandshake("/ws", "Origin", "http://evil.example"), 403, "origin"},
		{"a malformed protocol list", newHandshake("/ws", "Sec-WebSocket-Protocol", "a b"), 400, "protocol"},
		{"no credential", newHandshake("/ws"), 401, "no_credential"},
		{"two credentials", newHandshake("/ws?access_token=x", "Authorization", "Bearer y"), 400, "ambiguous"},
		{"an unreadable credential", bearer("a b"), 400, "malformed"},
		{"a wrong token", bearer("wrong"), 401, "invalid"},
		{"an expired token", bearer("expired-token"), 401, "expired"},
		{"a verifier's own class", bearer("bad-signature"), 401, "bad_signature"},
		{"a verifier's own class on a 403", bearer("revoked"), 403, "revoked"},
		{"a class with unsafe characters", bearer("unsafe-class"), 401, "invalid"},
		{"a class too long", bearer("long-class"), 401, "invalid"},
		{"a forbidden token", bearer("forbidden-token"), 403, "forbidden"},
		{"a verifier past its deadline", bearer("slow"), 503, "timeout"},
		{"a failing verifier", bearer("broken-token"), 500, "verifier_error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got events
			var buf bytes.Buffer
			cfg := allWays()
			cfg.OnHandshake = got.add
			cfg.Logger = slog.New(slog.NewJSONHandler(&buf, nil)) // Info: no cause
			g := New(verify, cfg)
			w := serveOnce(g.Handler(echoHandler), tt.r)
			assert.Equal(t, tt.status, w.status)
			require.Len(t, got.all, 1)
			assert.Equal(t, tt.class, got.all[0].Class)

			var line map[string]any
			require.NoError(t, json.Unmarshal(buf.Bytes(), &line), buf.String())
			assert.Equal(t, tt.class, line["class"])
			assert.NotContains(t, line, "cause")
			assert.NotContains(t, buf.String(), "verifier says")
			assert.NotContains(t, buf.String(), "2001-01-01")
		})
	}
}

func TestAcceptedHandshakesHaveNoClass(t *testing.T) {
	var got events
	cfg := allWays()
	cfg.OnHandshake = got.add
	g := New(StaticToken(secret, user{"alice"}), cfg)
	r := newHandshake("/ws", "Authorization", "Bearer "+secret)
	serveOnce(g.Handler(echoHandler), r)
	require.Len(t, got.all, 1)
	ev := got.all[0]
	assert.True(t, ev.Accepted)
	assert.Empty(t, ev.Class)
	assert.Equal(t, r.Context(), ev.Context)
	assert.Equal(t, "GET", ev.Method)
	assert.Equal(t, "HTTP/1.1", ev.Proto)
	assert.Equal(t, r.Host, ev.Host)
	assert.False(t, ev.TLS)
}

// sessions collects SessionEvents.
type sessions struct {
	mu  sync.Mutex
	all []SessionEvent
}

func (s *sessions) add(ev SessionEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.all = append(s.all, ev)
}

// wait returns the first n events, once they have arrived.
func (s *sessions) wait(t *testing.T, n int) []SessionEvent {
	t.Helper()
	var got []SessionEvent
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		got = append([]SessionEvent(nil), s.all...)
		return len(got) >= n
	}, 5*time.Second, 5*time.Millisecond)
	return got[:n]
}

func TestOnSessionSeesEverySessionOpenAndEnd(t *testing.T) {
	var hs events
	var got sessions
	cfg := allWays()
	cfg.OnHandshake, cfg.OnSession = hs.add, got.add
	g := New(StaticToken(secret, user{"alice"}), cfg)

	t.Run("handler", func(t *testing.T) {
		got.all, hs.all = nil, nil
		r := newHandshake("/ws", "Authorization", "Bearer "+secret)
		serveOnce(g.Handler(func(ctx context.Context, s Session[user]) {
			require.Len(t, got.all, 1, "the session is open while the callback runs")
		}), r)
		all := got.wait(t, 2)
		assert.Equal(t, SessionEvent{Source: SourceBearer, Path: "/ws", Context: r.Context()}, all[0])
		assert.True(t, all[1].Ended)
		assert.Equal(t, SourceBearer, all[1].Source)
		assert.Zero(t, all[1].CloseCode)
		assert.Positive(t, all[1].Duration)
		require.Len(t, hs.all, 1)
		assert.Equal(t, hs.all[0].Context, all[0].Context)
	})
	t.Run("accept, closed twice", func(t *testing.T) {
		got.all = nil
		r := newHandshake("/ws?access_token=" + secret)
		a, err := g.Authenticate(r)
		require.NoError(t, err)
		s, err := g.Accept(newHijackWriter(), r, a)
		require.NoError(t, err)
		require.Len(t, got.all, 1)
		require.NoError(t, s.Conn.Close())
		s.Conn.Close()
		all := got.wait(t, 2)
		assert.Equal(t, SourceQuery, all[0].Source)
		assert.True(t, all[1].Ended)
		time.Sleep(20 * time.Millisecond)
		assert.Len(t, got.all, 2, "one end per session")
	})
	t.Run("upgrade behind middleware", func(t *testing.T) {
		got.all = nil
		serveOnce(g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			conn, err := Upgrade(w, r)
			require.NoError(t, err)
			require.Len(t, got.all, 1)
			assert.Equal(t, r.Context(), got.all[0].Context)
			conn.Close()
		})), newHandshake("/ws", "Sec-WebSocket-Protocol", "chat, access_token, "+secret))
		all := got.wait(t, 2)
		assert.Equal(t, SourceSubprotocol, all[0].Source)
		assert.True(t, all[1].Ended)
	})
	t.Run("refusals open no session", func(t *testing.T) {
		got.all = nil
		serveOnce(g.Handler(echoHandler), newHandshake("/ws", "Authorization", "Bearer wrong"))
		assert.Empty(t, got.all)
	})
}

// TestOnSessionReportsTheCloseTheGateSent checks the close code of a
// session's end: 4401 at the credential's expiry, 1001 at Shutdown, and
// the in-band session's source.
func TestOnSessionReportsTheCloseTheGateSent(t *testing.T) {
	var got sessions
	verify := func(ctx context.Context, c Credential) (user, error) {
		if c.Token() == "short-lived" {
			SetExpiry(ctx, time.Now().Add(100*time.Millisecond))
			return user{"bob"}, nil
		}
		return refusingVerifier(ctx, c)
	}
	g := New(verify, Config{InBand: &InBandAuth{}, OnSession: got.add})
	srv := newServer(t, g.Handler(func(ctx context.Context, s Session[user]) {
		// Reads until the client's close frame, or the gate closes the
		// connection under it.
		for {
			if _, _, err := wsutil.ReadClientData(s.Conn); err != nil || ctx.Err() != nil {
				return
			}
		}
	}))
	dial := func(t *testing.T, header string, first string) (net.Conn, *bufio.Reader) {
		conn, br, resp := rawHandshake(t, srv.Listener.Addr().String(), header, first)
		require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
		return conn, br
	}
	answerClose := func(t *testing.T, conn net.Conn, br *bufio.Reader) ws.StatusCode {
		code, _ := readClose(t, br)
		_ = ws.WriteFrame(conn, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(code, ""))))
		return code
	}

	t.Run("expiry", func(t *testing.T) {
		got.all = nil
		conn, br := dial(t, "Authorization: Bearer short-lived\r\n", "")
		assert.Equal(t, CloseUnauthorized, answerClose(t, conn, br))
		all := got.wait(t, 2)
		assert.True(t, all[1].Ended)
		assert.Equal(t, CloseUnauthorized, all[1].CloseCode)
	})
	t.Run("shutdown", func(t *testing.T) {
		got.all = nil
		conn, br := dial(t, "Authorization: Bearer "+secret+"\r\n", "")
		got.wait(t, 1)
		done := make(chan error, 1)
		go func() { done <- g.Shutdown(context.Background()) }()
		assert.Equal(t, ws.StatusGoingAway, answerClose(t, conn, br))
		require.NoError(t, <-done)
		all := got.wait(t, 2)
		assert.Equal(t, ws.StatusGoingAway, all[1].CloseCode)
	})
	t.Run("in band", func(t *testing.T) {
		got.all = nil
		conn, _ := dial(t, "", clientFrame(authMessage(secret)))
		all := got.wait(t, 1)
		assert.Equal(t, SourceMessage, all[0].Source)
		assert.False(t, all[0].Ended)
		conn.Close()
		all = got.wait(t, 2)
		assert.True(t, all[1].Ended)
		assert.Zero(t, all[1].CloseCode)
	})
}

// TestHooksCostNoAllocation checks that OnHandshake and OnSession add no
// allocation to an accepted handshake: the events are values.
func TestHooksCostNoAllocation(t *testing.T) {
	measure := func(cfg Config) float64 {
		g := New(StaticToken(secret, user{"alice"}), cfg)
		h := g.Handler(func(context.Context, Session[user]) {})
		r := newHandshake("/ws", "Authorization", "Bearer "+secret)
		w := newHijackWriter()
		return testing.AllocsPerRun(200, func() {
			w.reset()
			h.ServeHTTP(w, r)
			if !w.hijacked {
				panic(w.responseText())
			}
		})
	}
	without := measure(Config{})
	with := measure(Config{OnHandshake: func(HandshakeEvent) {}, OnSession: func(SessionEvent) {}})
	t.Logf("allocations per handshake: %.0f without hooks, %.0f with both", without, with)
	assert.Equal(t, without, with)
	assert.LessOrEqual(t, with, 1.0)
}
