package wsgate

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rawHandshake sends a handshake for /ws with the extra header lines (each
// ending in \r\n) and extra bytes right behind it, and returns the
// response and the reader positioned after it.
func rawHandshake(t *testing.T, addr, lines, after string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	req := "GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + testKey + "\r\n" + lines + "\r\n"
	_, err = conn.Write([]byte(req + after))
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		resp.Body.Close()
	}
	return conn, br, resp
}

// clientFrame returns a masked text frame as a client sends it.
func clientFrame(payload string) string {
	var b strings.Builder
	if err := ws.WriteFrame(&b, ws.MaskFrame(ws.NewTextFrame([]byte(payload)))); err != nil {
		panic(err)
	}
	return b.String()
}

// readClose reads the next frame, which must be a close frame, and returns
// its code and reason.
func readClose(t *testing.T, r io.Reader) (ws.StatusCode, string) {
	t.Helper()
	f, err := readFrame(r)
	require.NoError(t, err)
	require.Equal(t, ws.OpClose, f.Header.OpCode, "payload %q", f.Payload)
	assert.False(t, f.Header.Masked, "server frames are not masked")
	code, reason := ws.ParseCloseFrameData(f.Payload)
	return code, reason
}

// assertClosed checks that the server closed the connection after its close
// frame: nothing more arrives.
func assertClosed(t *testing.T, r io.Reader) {
	t.Helper()
	n, err := r.Read(make([]byte, 1))
	assert.Zero(t, n)
	var ne net.Error
	if errors.As(err, &ne) {
		assert.False(t, ne.Timeout(), "the server did not close the connection")
	}
	// An orderly end of stream, not a reset: a reset can destroy the close
	// frame before the client reads it.
	assert.ErrorIs(t, err, io.EOF)
}

// refusingVerifier accepts secret, forbids "forbidden-token", fails on
// "broken-token" and refuses everything else as invalid.
func refusingVerifier(_ context.Context, c Credential) (user, error) {
	switch c.Token() {
	case secret:
		return user{"alice"}, nil
	case "forbidden-token":
		return user{}, ErrForbidden
	case "broken-token":
		return user{}, errors.New("database down")
	}
	return user{}, ErrInvalidToken
}

func TestCloseFrameModeRefusesAfterTheUpgrade(t *testing.T) {
	cfg := allWays()
	cfg.RefuseWithCloseFrame = true
	var served atomic.Int32
	g := New(refusingVerifier, cfg)
	srv := newServer(t, g.Handler(func(ctx context.Context, s Session[user]) { served.Add(1) }))
	addr := srv.Listener.Addr().String()
	tests := []struct {
		name       string
		lines      string
		wantEcho   string
		wantCode   ws.StatusCode
		wantReason string
	}{
		{
			name:       "no credential is 4401 and echoes the application protocol",
			lines:      "Sec-WebSocket-Protocol: chat\r\n",
			wantEcho:   "chat",
			wantCode:   CloseUnauthorized,
			wantReason: "credential required",
		},
		{
			name:       "a wrong Bearer token is 4401",
			lines:      "Authorization: Bearer wrong-" + secret + "\r\n",
			wantCode:   CloseUnauthorized,
			wantReason: "invalid credential",
		},
		{
			name:       "a wrong subprotocol token is 4401 and echoes the marker, never the token",
			lines:      "Sec-WebSocket-Protocol: access_token, wrong-" + secret + "\r\n",
			wantEcho:   "access_token",
			wantCode:   CloseUnauthorized,
			wantReason: "invalid credential",
		},
		{
			name:       "a marker without a token is 4401 and echoes the marker",
			lines:      "Sec-WebSocket-Protocol: chat, access_token\r\n",
			wantEcho:   "chat",
			wantCode:   CloseUnauthorized,
			wantReason: "malformed credential",
		},
		{
			name:       "credentials in two places are 4401",
			lines:      "Authorization: Bearer " + secret + "\r\nSec-WebSocket-Protocol: chat, access_token, " + secret + "\r\n",
			wantEcho:   "chat",
			wantCode:   CloseUnauthorized,
			wantReason: "more than one credential",
		},
		{
			name:       "a forbidden principal is 4403",
			lines:      "Authorization: Bearer forbidden-token\r\n",
			wantCode:   CloseForbidden,
			wantReason: "forbidden",
		},
		{
			name:       "a malformed protocol list is 1008 with nothing echoed",
			lines:      "Sec-WebSocket-Protocol: chat, a b, " + secret + "\r\n",
			wantCode:   ws.StatusPolicyViolation,
			wantReason: "malformed Sec-WebSocket-Protocol",
		},
		{
			name:       "a prefix credential without an application protocol is 1008",
			lines:      "Sec-WebSocket-Protocol: " + KubernetesPrefix + b64url(secret) + "\r\n",
			wantCode:   ws.StatusPolicyViolation,
			wantReason: "no supported subprotocol offered",
		},
		{
			name:       "a failing verifier is 1011",
			lines:      "Authorization: Bearer broken-token\r\n",
			wantCode:   ws.StatusInternalServerError,
			wantReason: "internal error",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A client frame rides behind the request: it must not be
			// processed, and no handler runs.
			conn, br, resp := rawHandshake(t, addr, tt.lines, clientFrame("early"))
			require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
			assert.Equal(t, tt.wantEcho, resp.Header.Get("Sec-WebSocket-Protocol"))
			var head strings.Builder
			require.NoError(t, resp.Header.Write(&head))
			assert.NotContains(t, head.String(), secret)
			code, reason := readClose(t, br)
			assert.Equal(t, tt.wantCode, code)
			assert.Equal(t, tt.wantReason, reason)
			assert.NotContains(t, reason, secret)
			assertClosed(t, br)
			_ = conn
		})
	}
	assert.Zero(t, served.Load(), "no handler may run for a refused connection")
}

func TestCloseFrameModeKeepsHTTPForHandshakeAndOriginFailures(t *testing.T) {
	cfg := allWays()
	cfg.RefuseWithCloseFrame = true
	g := New(refusingVerifier, cfg)
	var served atomic.Int32
	srv := newServer(t, g.Handler(func(ctx context.Context, s Session[user]) { served.Add(1) }))
	addr := srv.Listener.Addr().String()
	t.Run("a foreign origin is 403", func(t *testing.T) {
		_, _, resp := rawHandshake(t, addr, "Origin: https://evil.example\r\nAuthorization: Bearer wrong\r\n", "")
		assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	})
	t.Run("a cookie without an Origin is 403", func(t *testing.T) {
		_, _, resp := rawHandshake(t, addr, "Cookie: session=wrong\r\n", "")
		assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	})
	t.Run("a bad key is 400", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer conn.Close()
		_, err = conn.Write([]byte("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n\r\n"))
		require.NoError(t, err)
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	})
	assert.Zero(t, served.Load())
}

func TestCloseFrameModeInTheMiddlewareForm(t *testing.T) {
	g := New(refusingVerifier, Config{RefuseWithCloseFrame: true, Protocols: []string{"chat"}})
	var served atomic.Int32
	srv := newServer(t, g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served.Add(1) })))
	_, br, resp := rawHandshake(t, srv.Listener.Addr().String(), "Sec-WebSocket-Protocol: chat, access_token, wrong\r\n", "")
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	assert.Equal(t, "chat", resp.Header.Get("Sec-WebSocket-Protocol"))
	code, reason := readClose(t, br)
	assert.Equal(t, CloseUnauthorized, code)
	assert.Equal(t, "invalid credential", reason)
	assertClosed(t, br)
	assert.Zero(t, served.Load())
}

func TestCloseFrameModeStillServesGoodCredentials(t *testing.T) {
	cfg := allWays()
	cfg.RefuseWithCloseFrame = true
	g := New(refusingVerifier, cfg)
	srv := newServer(t, g.Handler(echoSession))
	_, br, resp := rawHandshake(t, srv.Listener.Addr().String(), "Authorization: Bearer "+secret+"\r\n", "")
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	f, err := readFrame(br)
	require.NoError(t, err)
	assert.Equal(t, "alice bearer ", string(f.Payload))
}

func TestGateRefuseFollowsTheRefusalMode(t *testing.T) {
	g := New(refusingVerifier, Config{RefuseWithCloseFrame: true})
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := g.Authenticate(r); err != nil {
			g.Refuse(w, r, err)
		}
	}))
	_, br, resp := rawHandshake(t, srv.Listener.Addr().String(), "", "")
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	code, _ := readClose(t, br)
	assert.Equal(t, CloseUnauthorized, code)

	h := New(refusingVerifier, Config{})
	w := serveOnce(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := h.Authenticate(r)
		h.Refuse(w, r, err)
	}), newHandshake("/ws"))
	assert.Equal(t, http.StatusUnauthorized, w.status)
}

func TestEveryRefusalCarriesItsCloseCode(t *testing.T) {
	tests := []struct {
		err  *Error
		code ws.StatusCode
	}{
		{err: errNoCredential, code: CloseUnauthorized},
		{err: errMalformed400, code: CloseUnauthorized},
		{err: errMalformed401, code: CloseUnauthorized},
		{err: errAmbiguous, code: CloseUnauthorized},
		{err: errInvalidToken, code: CloseUnauthorized},
		{err: errForbidden, code: CloseForbidden},
		{err: errProtocols, code: ws.StatusPolicyViolation},
		{err: errNoProtocol, code: ws.StatusPolicyViolation},
		{err: errVerifyTimeout, code: ws.StatusInternalServerError},
		{err: errVerifier500, code: ws.StatusInternalServerError},
		{err: errOrigin},
		{err: errAmbientOrigin},
		{err: errKey},
		{err: errNotHijacker},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.code, tt.err.CloseCode, "%v", tt.err)
		assert.LessOrEqual(t, len(tt.err.Reason), maxCloseReason, "%v", tt.err)
	}
}

func TestCloseReasonFitsAControlFrame(t *testing.T) {
	assert.Equal(t, "short", closeReason("short"))
	long := strings.Repeat("é", 100) // 200 bytes
	cut := closeReason(long)
	assert.LessOrEqual(t, len(cut), 123)
	assert.True(t, strings.HasPrefix(long, cut))
	assert.Equal(t, 122, len(cut), "cut on a rune boundary")
}

// tcpPair returns the two ends of a loopback TCP connection, closed when
// the test ends.
func tcpPair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	s, err := ln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// countingConn counts the bytes read from a TCP connection and whether it
// was closed with bytes still to read.
type countingConn struct {
	*net.TCPConn
	read atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.TCPConn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

// TestRefusalDrainsWhatTheClientSent checks that a refused connection is
// not closed with unread bytes (which makes the kernel send a reset that can
// destroy the close frame before the client reads it): the gate takes what
// the client sent, and the client's close reply, off the wire first.
func TestRefusalDrainsWhatTheClientSent(t *testing.T) {
	client, sc := tcpPair(t)
	server := &countingConn{TCPConn: sc}

	pending := clientFrame(strings.Repeat("x", 100<<10)) // the rest of a message too big to read
	_, err := io.WriteString(client, pending)
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		closeHandshake(server, ws.StatusMessageTooBig, "authentication message too big", 0)
	}()

	require.NoError(t, client.SetDeadline(time.Now().Add(5*time.Second)))
	br := bufio.NewReader(client)
	code, reason := readClose(t, br)
	assert.Equal(t, ws.StatusMessageTooBig, code)
	assert.Equal(t, "authentication message too big", reason)
	reply := ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(code, "")))
	require.NoError(t, ws.WriteFrame(client, reply))
	require.NoError(t, client.CloseWrite())
	assertClosed(t, br)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("closeHandshake did not return after the client's close frame")
	}
	var b strings.Builder
	require.NoError(t, ws.WriteFrame(&b, reply))
	assert.Equal(t, int64(len(pending)+b.Len()), server.read.Load(), "everything the client sent was read before closing")
}

// TestRefusalDrainIsBounded checks that a client that never ends its stream
// holds a refused connection for closeLinger at most.
func TestRefusalDrainIsBounded(t *testing.T) {
	_, server := tcpPair(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		closeHandshake(server, CloseUnauthorized, "invalid credential", 0)
	}()
	select {
	case <-done:
	case <-time.After(closeLinger + 5*time.Second):
		t.Fatal("closeHandshake waited past closeLinger for a silent client")
	}
}
