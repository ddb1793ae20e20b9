package wsgate

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func authMessage(token string) string { return `{"type":"auth","token":"` + token + `"}` }

func TestInBandAuthentication(t *testing.T) {
	var served atomic.Int32
	g := New(refusingVerifier, Config{
		Protocols: []string{"chat"},
		InBand:    &InBandAuth{Timeout: 200 * time.Millisecond, MaxSize: 64},
	})
	srv := newServer(t, g.Handler(func(ctx context.Context, s Session[user]) {
		served.Add(1)
		echoSession(ctx, s)
	}))
	addr := srv.Listener.Addr().String()

	t.Run("a good first message reaches the handler as the principal", func(t *testing.T) {
		_, br, resp := rawHandshake(t, addr, "Sec-WebSocket-Protocol: chat\r\n", clientFrame(authMessage(secret)))
		require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
		assert.Equal(t, "chat", resp.Header.Get("Sec-WebSocket-Protocol"))
		f, err := readFrame(br)
		require.NoError(t, err)
		assert.Equal(t, ws.OpText, f.Header.OpCode)
		assert.Equal(t, "alice message chat", string(f.Payload))
	})
	t.Run("bytes after the first message are left to the application", func(t *testing.T) {
		conn, br, resp := rawHandshake(t, addr, "", clientFrame(authMessage(secret))+clientFrame("next"))
		require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
		f, err := readFrame(br)
		require.NoError(t, err)
		assert.Equal(t, "alice message ", string(f.Payload))
		f, err = readFrame(br)
		require.NoError(t, err)
		assert.Equal(t, "next", string(f.Payload))
		_ = conn
	})
	refusals := []struct {
		name       string
		after      string
		wantCode   ws.StatusCode
		wantReason string
	}{
		{
			name:       "a wrong token is 4401",
			after:      clientFrame(authMessage("wrong")),
			wantCode:   CloseUnauthorized,
			wantReason: "invalid credential",
		},
		{
			name:       "a forbidden token is 4403",
			after:      clientFrame(authMessage("forbidden-token")),
			wantCode:   CloseForbidden,
			wantReason: "forbidden",
		},
		{
			name:       "a message that is not the JSON auth form is 4401",
			after:      clientFrame(`{"type":"hello","token":"` + secret + `"}`),
			wantCode:   CloseUnauthorized,
			wantReason: "malformed credential",
		},
		{
			name:       "no message before the deadline is 4408",
			wantCode:   CloseAuthTimeout,
			wantReason: "authentication timed out",
		},
		{
			name:       "a message over MaxSize is 1009",
			after:      clientFrame(authMessage(secret + strings.Repeat("x", 100))),
			wantCode:   ws.StatusMessageTooBig,
			wantReason: "authentication message too big",
		},
		{
			// Far more than the socket buffers hold: the gate must take
			// it off the wire (unread) or the client gets a reset instead
			// of the close frame.
			name:       "a large message over MaxSize is 1009 and an orderly close",
			after:      clientFrame(authMessage(strings.Repeat("x", 256<<10))),
			wantCode:   ws.StatusMessageTooBig,
			wantReason: "authentication message too big",
		},
		{
			name: "a ping first is 4401",
			after: func() string {
				var b strings.Builder
				_ = ws.WriteFrame(&b, ws.MaskFrame(ws.NewPingFrame(nil)))
				return b.String()
			}(),
			wantCode:   CloseUnauthorized,
			wantReason: "first message must carry the credential",
		},
		{
			name: "an unmasked frame is 1002",
			after: func() string {
				var b strings.Builder
				_ = ws.WriteFrame(&b, ws.NewTextFrame([]byte(authMessage(secret))))
				return b.String()
			}(),
			wantCode:   ws.StatusProtocolError,
			wantReason: "protocol error",
		},
	}
	before := served.Load()
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			_, br, resp := rawHandshake(t, addr, "", tt.after)
			require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
			code, reason := readClose(t, br)
			assert.Equal(t, tt.wantCode, code)
			assert.Equal(t, tt.wantReason, reason)
			assert.NotContains(t, reason, secret)
			assertClosed(t, br)
		})
	}
	assert.Equal(t, before, served.Load(), "no handler may run without a verified first message")

	t.Run("the origin policy still applies first", func(t *testing.T) {
		_, _, resp := rawHandshake(t, addr, "Origin: https://evil.example\r\n", clientFrame(authMessage(secret)))
		assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	})
	t.Run("a handshake credential still works", func(t *testing.T) {
		_, br, resp := rawHandshake(t, addr, "Authorization: Bearer "+secret+"\r\n", "")
		require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
		f, err := readFrame(br)
		require.NoError(t, err)
		assert.Equal(t, "alice bearer ", string(f.Payload))
	})
	t.Run("a wrong handshake credential is not retried in band", func(t *testing.T) {
		_, _, resp := rawHandshake(t, addr, "Authorization: Bearer wrong\r\n", clientFrame(authMessage(secret)))
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	})
}

func TestInBandWithTheGobwasDialer(t *testing.T) {
	g := New(refusingVerifier, Config{InBand: &InBandAuth{}})
	srv := newServer(t, g.Handler(echoSession))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, br, _, err := ws.Dial(ctx, wsURL(srv, "/ws"))
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(5*time.Second)))
	require.NoError(t, ws.WriteFrame(conn, ws.MaskFrame(ws.NewTextFrame([]byte(authMessage(secret))))))
	rd := readWriter{conn, conn}
	if br != nil {
		rd.r = br
	}
	f, err := readFrame(rd)
	require.NoError(t, err)
	assert.Equal(t, "alice message ", string(f.Payload))
}

func TestInBandDoesNotApplyToTheMiddleware(t *testing.T) {
	g := New(refusingVerifier, Config{InBand: &InBandAuth{}})
	w := serveOnce(g.Middleware(http.NotFoundHandler()), newHandshake("/ws"))
	assert.Equal(t, http.StatusUnauthorized, w.status)
}

func TestParseJSONAuth(t *testing.T) {
	c, err := parseJSONAuth([]byte(`{"type":"auth","token":"abc","extra":1}`))
	require.NoError(t, err)
	assertCredential(t, NewCredential(SourceMessage, "abc"), c)
	for _, bad := range []string{``, `null`, `[]`, `{"type":"auth"}`, `{"type":"auth","token":""}`, `{"token":"abc"}`, `{"type":"Auth","token":"abc"}`, `{"type":"auth","token":1}`} {
		_, err := parseJSONAuth([]byte(bad))
		assert.ErrorIs(t, err, ErrMalformedCredential, bad)
	}
}

func TestCustomInBandParser(t *testing.T) {
	g := New(refusingVerifier, Config{InBand: &InBandAuth{
		Parse: func(msg []byte) (Credential, error) {
			tok, ok := strings.CutPrefix(string(msg), "AUTH ")
			if !ok {
				return Credential{}, ErrMalformedCredential
			}
			return NewCredential(SourceNone, tok), nil
		},
	}})
	srv := newServer(t, g.Handler(echoSession))
	_, br, resp := rawHandshake(t, srv.Listener.Addr().String(), "", clientFrame("AUTH "+secret))
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	f, err := readFrame(br)
	require.NoError(t, err)
	assert.Equal(t, "alice message ", string(f.Payload))
}

func TestInBandSessionsKeepTheirExpiry(t *testing.T) {
	g := New(expiringVerifier(200*time.Millisecond), Config{InBand: &InBandAuth{}})
	srv := newServer(t, g.Handler(func(ctx context.Context, s Session[user]) {
		<-ctx.Done()
	}))
	conn, br, resp := rawHandshake(t, strings.TrimPrefix(srv.URL, "http://"), "", clientFrame(authMessage(secret)))
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	code, reason := readClose(t, br)
	assert.Equal(t, CloseUnauthorized, code)
	assert.Equal(t, "credential expired", reason)
}
