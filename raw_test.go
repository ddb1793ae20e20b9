package wsgate

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/wsgate/wsgate/fleet"
)

// wireRequest renders r as a client sends it.
func wireRequest(r *http.Request) []byte {
	var b bytes.Buffer
	if err := r.Write(&b); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// serveRawOnce runs r through Gate.UpgradeConn on an in-memory connection
// and reports what the client and the application saw.
func serveRawOnce(g *Gate[user], r *http.Request) answer {
	var out bytes.Buffer
	conn := &memConn{in: wireRequest(r), out: &out}
	var a answer
	s, err := g.UpgradeConn(conn)
	if err == nil {
		a.principal, a.source, a.protocol, a.compress = s.Principal.Name, s.Source, s.Protocol, s.Compression
		s.Conn.Close()
	}
	a.text = out.String()
	return a
}

// checkRawStatusLine requires the status line net/http itself writes.
func checkRawStatusLine(t *testing.T, text string) {
	t.Helper()
	line, _, _ := strings.Cut(text, "\r\n")
	var code int
	_, err := fmt.Sscanf(line, "HTTP/1.1 %d", &code)
	require.NoError(t, err, "status line %q", line)
	assert.Equal(t, fmt.Sprintf("HTTP/1.1 %d %s", code, http.StatusText(code)), line)
}

// canonicalAnswer renders an answer the way both paths can be compared
// byte for byte: a 101 and what follows it as sent; a refusal as its status
// code, its headers but Date and Content-Length (sorted) and its body.
func canonicalAnswer(t *testing.T, text string) string {
	t.Helper()
	if strings.HasPrefix(text, "HTTP/1.1 101 ") || text == "" {
		return text
	}
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(text)), nil)
	require.NoError(t, err, "answer:\n%s", text)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	resp.Header.Del("Date")
	resp.Header.Del("Content-Length")
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.1 %d\r\n", resp.StatusCode)
	_ = resp.Header.Write(&b)
	b.WriteString("\r\n")
	b.Write(body)
	return b.String()
}

// TestRawPathAnswersLikeNetHTTPOnHandshakeDefects runs CheckHandshake's
// defects, and the requests the Upgrader checks its own way, through both
// paths.
func TestRawPathAnswersLikeNetHTTPOnHandshakeDefects(t *testing.T) {
	g := func() *Gate[user] { return New(StaticToken(secret, user{"alice"}), allWays()) }
	bearer := func(mod func(r *http.Request)) func() *http.Request {
		return func() *http.Request {
			r := newHandshake("/ws?room=1", "Authorization", "Bearer "+secret)
			mod(r)
			return r
		}
	}
	tests := []struct {
		name   string
		req    func() *http.Request
		status int
	}{
		{"valid", bearer(func(*http.Request) {}), 101},
		{"POST", bearer(func(r *http.Request) { r.Method = http.MethodPost }), 405},
		{"no Upgrade", bearer(func(r *http.Request) { r.Header.Del("Upgrade") }), 426},
		{"Upgrade h2c", bearer(func(r *http.Request) { r.Header.Set("Upgrade", "h2c") }), 426},
		{"Upgrade list with websocket", bearer(func(r *http.Request) { r.Header.Set("Upgrade", "websocket, foo") }), 101},
		{"no Connection", bearer(func(r *http.Request) { r.Header.Del("Connection") }), 400},
		{"Connection on two lines", bearer(func(r *http.Request) { r.Header["Connection"] = []string{"keep-alive", "Upgrade"} }), 101},
		{"no version", bearer(func(r *http.Request) { r.Header.Del("Sec-WebSocket-Version") }), 400},
		{"version 8", bearer(func(r *http.Request) { r.Header.Set("Sec-WebSocket-Version", "8") }), 426},
		{"version twice", bearer(func(r *http.Request) { r.Header["Sec-Websocket-Version"] = []string{"13", "13"} }), 400},
		{"no key", bearer(func(r *http.Request) { r.Header.Del("Sec-WebSocket-Key") }), 400},
		{"short key", bearer(func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "short") }), 400},
		{"key of 24 characters, not base64", bearer(func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "!!!!!!!!!!!!!!!!!!!!!!!!") }), 400},
		{"key twice", bearer(func(r *http.Request) {
			r.Header["Sec-Websocket-Key"] = []string{"dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ=="}
		}), 400},
		{"body", bearer(func(r *http.Request) {
			r.Body, r.ContentLength = io.NopCloser(strings.NewReader("hello")), 5
		}), 400},
		{"chunked body", bearer(func(r *http.Request) {
			r.Body, r.ContentLength, r.TransferEncoding = io.NopCloser(strings.NewReader("hello")), -1, []string{"chunked"}
		}), 400},
		{"lower-case header names", func() *http.Request {
			r := newHandshake("/ws")
			r.Header = http.Header{}
			for k, v := range handshakeHeader() {
				r.Header[strings.ToLower(k)] = v
			}
			r.Header["authorization"] = []string{"Bearer " + secret}
			return r
		}, 101},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// net/http's view of the bytes a client sends.
			req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(wireRequest(tc.req()))))
			require.NoError(t, err)
			want := serveThrough(entryPoints[0], g(), req)
			raw := serveRawOnce(g(), tc.req())
			checkRawStatusLine(t, raw.text)
			want.text, raw.text = canonicalAnswer(t, want.text), canonicalAnswer(t, raw.text)
			assert.True(t, strings.HasPrefix(want.text, fmt.Sprintf("HTTP/1.1 %d", tc.status)), want.text)
			assert.Equal(t, want, raw)
		})
	}
}

func TestRawPathWritesTheUpgradersBytesForItsOwnRefusals(t *testing.T) {
	// The gate's writer of refusals (for requests the Upgrader refused
	// first) and the Upgrader's, given the same refusal, send the same bytes.
	for _, e := range []*Error{errNoCredential, errOrigin, errMethod, errVersion, errTooLarge} {
		var ours, theirs bytes.Buffer
		require.NoError(t, writeRawError(&memConn{out: &ours}, e, defaultChallenge, false))
		u := ws.Upgrader{OnRequest: func([]byte) error {
			return ws.RejectConnectionError(ws.RejectionStatus(e.Status),
				ws.RejectionHeader(rawRefusal{e, defaultChallenge, false}), ws.RejectionReason(e.Reason+"\n"))
		}}
		_, err := u.Upgrade(struct {
			io.Reader
			io.Writer
		}{strings.NewReader("GET / HTTP/1.1\r\n\r\n"), &theirs})
		require.Error(t, err)
		assert.Equal(t, theirs.String(), ours.String())
	}
}

func TestRawPathKeepsBytesSentRightAfterTheHandshake(t *testing.T) {
	g := New(StaticToken(secret, user{"alice"}), Config{})
	frame := ws.MaskFrame(ws.NewTextFrame([]byte("early")))
	var wire bytes.Buffer
	wire.Write(wireRequest(newHandshake("/ws", "Authorization", "Bearer "+secret)))
	require.NoError(t, ws.WriteFrame(&wire, frame))
	var out bytes.Buffer
	s, err := g.UpgradeConn(&memConn{in: wire.Bytes(), out: &out})
	require.NoError(t, err)
	defer s.Conn.Close()
	msg, _, err := wsutil.ReadClientData(s.Conn)
	require.NoError(t, err)
	assert.Equal(t, "early", string(msg))
}

func TestRawPathGivesTheVerifierTheRequestFacts(t *testing.T) {
	var seen *http.Request
	var tok string
	g := New(func(ctx context.Context, c Credential) (user, error) {
		seen, tok = RequestFrom(ctx), c.Token()
		return user{"alice"}, nil
	}, Config{Extractors: []Extractor{Query("ticket")}, Origin: OriginPolicy{AllowedOrigins: []string{"https://app.example"}}})
	r := newHandshake("/rooms/7?ticket="+secret+"&x=1", "Origin", "https://app.example", "Cookie", "session=other-secret")
	var out bytes.Buffer
	s, err := g.UpgradeConn(&memConn{in: wireRequest(r), out: &out})
	require.NoError(t, err, out.String())
	defer s.Conn.Close()
	require.NotNil(t, seen)
	assert.Equal(t, secret, tok)
	assert.Equal(t, "/rooms/7", seen.URL.Path)
	assert.Equal(t, "x=1", seen.URL.RawQuery, "without the credential")
	assert.Equal(t, "/rooms/7?x=1", seen.RequestURI)
	assert.Equal(t, "127.0.0.1:8080", seen.Host)
	assert.Equal(t, "mem", seen.RemoteAddr)
	assert.Equal(t, "https://app.example", seen.Header.Get("Origin"))
	assert.Empty(t, seen.Header.Get("Cookie"), "no credential header")
	require.NotNil(t, s.Request)
	assert.Equal(t, "/rooms/7", s.Request.URL.Path)
	assert.Equal(t, "x=1", s.Request.URL.RawQuery)
	assert.Equal(t, "127.0.0.1:8080", s.Request.Host)
	assert.Empty(t, s.Request.Header, "the headers are RequestFrom's")

	// What the verifier saw outlives the pooled buffers: another handshake
	// on the same gate changes none of it.
	first, firstTok := seen, tok
	r2 := newHandshake("/other?ticket=zzzzzzzzzzzzzzzzzzzz&y=2", "Origin", "https://app.example")
	s2, err := g.UpgradeConn(&memConn{in: wireRequest(r2), out: &out})
	require.NoError(t, err)
	s2.Conn.Close()
	assert.Equal(t, "/other", seen.URL.Path)
	assert.Equal(t, "/rooms/7", first.URL.Path)
	assert.Equal(t, "x=1", first.URL.RawQuery)
	assert.Equal(t, secret, firstTok)
}

func TestRawPathBoundsTheHandshakeSize(t *testing.T) {
	g := New(StaticToken(secret, user{"alice"}), Config{MaxHandshakeBytes: 1024})
	r := newHandshake("/ws", "Authorization", "Bearer "+secret, "X-Padding", strings.Repeat("a", 2048))
	var out bytes.Buffer
	_, err := g.UpgradeConn(&memConn{in: wireRequest(r), out: &out})
	require.ErrorIs(t, err, ErrHandshake)
	resp, rerr := http.ReadResponse(bufio.NewReader(&out), nil)
	require.NoError(t, rerr)
	assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)

	// An 8 MiB header line over TCP: the gate reads no more than its bound.
	addr := serveRawOnLoopback(t, g)
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	go func() {
		_, _ = io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nX-Big: ")
		_, _ = c.Write(make([]byte, 8<<20))
	}()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	resp, rerr = http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, rerr)
	assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)
}

func TestRawPathFreesASlowClient(t *testing.T) {
	g := New(StaticToken(secret, user{"alice"}), Config{HandshakeTimeout: 200 * time.Millisecond})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	sc, err := ln.Accept()
	require.NoError(t, err)
	_, err = io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\n") // and nothing more
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		_, err := g.UpgradeConn(sc)
		done <- err
	}()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, ErrUpgradeFailed)
	case <-time.After(10 * time.Second):
		t.Fatal("UpgradeConn still waits for the slow client")
	}
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	n, err := c.Read(make([]byte, 1))
	assert.Equal(t, 0, n)
	assert.Error(t, err, "the gate hung up without an answer")
}

// serveRawOnLoopback serves g through Gate.Serve on a loopback listener,
// echoing one message per session, until the test ends.
func serveRawOnLoopback(t *testing.T, g *Gate[user]) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		done <- g.Serve(ln, func(_ context.Context, s Session[user]) {
			msg, op, err := wsutil.ReadClientData(s.Conn)
			if err == nil {
				_ = wsutil.WriteServerMessage(s.Conn, op, append([]byte(s.Principal.Name+": "), msg...))
			}
		})
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = g.Shutdown(ctx)
	})
	return ln.Addr().String()
}

func TestServeWithGoDialer(t *testing.T) {
	g := New(StaticToken(secret, user{"alice"}), Config{Protocols: []string{"chat"}})
	addr := serveRawOnLoopback(t, g)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d := ws.Dialer{Protocols: []string{"chat", DefaultMarker, secret}}
	c, _, hs, err := d.Dial(ctx, "ws://"+addr+"/ws")
	require.NoError(t, err)
	defer c.Close()
	assert.Equal(t, "chat", hs.Protocol)
	require.NoError(t, wsutil.WriteClientText(c, []byte("hi")))
	msg, err := wsutil.ReadServerText(c)
	require.NoError(t, err)
	assert.Equal(t, "alice: hi", string(msg))

	// Refused: the client gets the HTTP answer.
	d = ws.Dialer{Protocols: []string{"chat", DefaultMarker, "wrong"}}
	_, _, _, err = d.Dial(ctx, "ws://"+addr+"/ws")
	var status ws.StatusError
	require.ErrorAs(t, err, &status)
	assert.Equal(t, http.StatusUnauthorized, int(status))
}

func TestRawUpgradeAllocations(t *testing.T) {
	g := New(StaticToken(secret, user{"alice"}), Config{Protocols: []string{"chat"}})
	wire := wireRequest(newHandshake("/ws", "Sec-WebSocket-Protocol", "chat, access_token, "+secret, "Origin", "http://127.0.0.1:8080"))
	var out bytes.Buffer
	conn := &memConn{}
	run := func() {
		out.Reset()
		conn.in, conn.out = wire, &out
		s, err := g.UpgradeConn(conn)
		if err != nil {
			panic(err)
		}
		s.Conn.Close()
	}
	run()
	require.True(t, strings.HasPrefix(out.String(), "HTTP/1.1 101 "), out.String())
	if raceEnabled {
		t.Skip("the race detector empties gobwas/ws's buffer pools at random")
	}
	allocs := testing.AllocsPerRun(200, run)
	t.Logf("%.0f allocations per raw upgrade", allocs)
	assert.LessOrEqual(t, allocs, 1.0)
}

func TestRawPathAppliesTheFleetControls(t *testing.T) {
	reg := fleet.NewMemory(fleet.MemoryOptions{MaxPerKey: 1})
	lim := fleet.NewMemoryLimiter(fleet.LimiterOptions{Failures: 2, Window: time.Minute})
	var calls atomic.Int32
	g := New(tokenUsers(&calls), Config{Registry: reg, PrincipalKey: userKey, Limiter: lim})
	sessions := make(chan Session[user], 4)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		done <- g.Serve(ln, func(ctx context.Context, s Session[user]) {
			sessions <- s
			_, _, _ = wsutil.ReadClientData(s.Conn)
		})
	}()
	defer func() {
		ln.Close()
		<-done
	}()
	addr := ln.Addr().String()

	// A session registered under its key, with an id.
	_, br, resp := rawHandshake(t, addr, bearer, "")
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	s := <-sessions
	assert.Equal(t, "alice", s.Key)
	assert.NotEmpty(t, s.ID)

	// The cap: a second session of alice's is refused with 429.
	_, _, resp = rawHandshake(t, addr, bearer, "")
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)

	// Revoke closes the raw session with the revoke code.
	n, err := reg.Revoke(context.Background(), "alice")
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	code, reason := readClose(t, br)
	assert.Equal(t, fleet.CloseRevoked, code)
	assert.Equal(t, fleet.RevokedReason, reason)

	// The limiter: after two failures the address waits, unverified.
	for range 2 {
		_, _, resp = rawHandshake(t, addr, "Authorization: Bearer wrong\r\n", "")
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	}
	before := calls.Load()
	_, _, resp = rawHandshake(t, addr, "Authorization: Bearer bob-token\r\n", "")
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	assert.NotEmpty(t, resp.Header.Get("Retry-After"))
	assert.Equal(t, before, calls.Load(), "the verifier was not called")
}

func TestRawSessionRefresh(t *testing.T) {
	g := New(tokenUsers(nil), Config{PrincipalKey: userKey})
	var out bytes.Buffer
	s, err := g.UpgradeConn(&memConn{in: wireRequest(newHandshake("/ws", "Authorization", "Bearer "+secret)), out: &out})
	require.NoError(t, err)
	defer s.Conn.Close()
	assert.NoError(t, s.Refresh(NewCredential(SourceMessage, secret)), "the same principal")
	assert.ErrorIs(t, s.Refresh(NewCredential(SourceMessage, "bob-token")), ErrForbidden, "another principal")
}

func TestRawSlowPathKeepsTheSameFacts(t *testing.T) {
	// Connection on two lines: the Upgrader refuses it, the gate (like
	// net/http's path) accepts it, after parsing it with net/http.
	g := New(StaticToken(secret, user{"alice"}), Config{Origin: OriginPolicy{AllowedOrigins: []string{"https://app.example"}}})
	seen := make(chan *http.Request, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		done <- g.Serve(ln, func(ctx context.Context, s Session[user]) {
			r := RequestFrom(ctx)
			if s.Request == nil || r == nil || s.Request.URL.Path != r.URL.Path {
				seen <- nil
				return
			}
			seen <- r
		})
	}()
	defer func() {
		ln.Close()
		<-done
	}()
	r := newHandshake("/rooms/9?x=2", "Authorization", "Bearer "+secret, "Origin", "https://app.example")
	r.Header["Connection"] = []string{"keep-alive", "Upgrade"}
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write(wireRequest(r))
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	var got *http.Request
	select {
	case got = <-seen:
	case <-time.After(5 * time.Second):
		t.Fatal("serve was not called")
	}
	require.NotNil(t, got, "Session.Request and RequestFrom(ctx) agree")
	assert.Equal(t, "/rooms/9", got.URL.Path)
	assert.Equal(t, "x=2", got.URL.RawQuery)
	assert.Equal(t, "https://app.example", got.Header.Get("Origin"))
}
