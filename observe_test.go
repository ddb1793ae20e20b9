package wsgate

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

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
