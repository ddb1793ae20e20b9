package wsgate

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// --- Linear cost on huge input ---

// hugeInput is a hostile request whose size grows with n. build makes the
// request once; reset restores whatever the gate changed in it (without
// allocating), so that it can be served again.
type hugeInput struct {
	name   string
	build  func(n int) *http.Request
	reset  func(r *http.Request)
	status int
	echo   string // the Sec-WebSocket-Protocol a 101 echoes
}

func spaces(n int) string { return strings.Repeat(" ", n) }

// list joins n generated items with sep.
func list(n int, sep string, item func(i int) string) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(sep)
		}
		b.WriteString(item(i))
	}
	return b.String()
}

// protocolInput offers value as the only Sec-WebSocket-Protocol line.
func protocolInput(name string, status int, value func(n int) string) hugeInput {
	var line string
	var lines []string
	return hugeInput{
		name: name,
		build: func(n int) *http.Request {
			line = value(n)
			r := newHandshake("/ws", "Sec-WebSocket-Protocol", line)
			lines = r.Header[hWSProtocol]
			return r
		},
		reset: func(r *http.Request) {
			lines[0] = line
			r.Header[hWSProtocol] = lines[:1]
		},
		status: status,
		echo:   "chat",
	}
}

// queryInput puts n parameters made by item in front of the credential.
func queryInput(name string, item func(i int) string) hugeInput {
	var raw, uri string
	return hugeInput{
		name: name,
		build: func(n int) *http.Request {
			raw = list(n, "&", item) + "&access_token=" + secret
			uri = "/ws?" + raw
			return newHandshake(uri)
		},
		reset: func(r *http.Request) {
			r.URL.RawQuery = raw
			r.RequestURI = uri
		},
		status: 101,
	}
}

func hugeInputs() []hugeInput {
	return []hugeInput{
		protocolInput("spaces between two protocol entries, then a credential", 101, func(n int) string {
			return "chat," + spaces(n) + "access_token, " + secret
		}),
		protocolInput("spaces inside one protocol entry", 400, func(n int) string {
			return "chat" + spaces(n) + "superchat"
		}),
		protocolInput("a protocol list of n entries", 400, func(n int) string {
			return list(n, ", ", func(i int) string { return "p" + strconv.Itoa(i) })
		}),
		{
			name: "n cookies before the session cookie",
			build: func(n int) *http.Request {
				cookies := list(n, "; ", func(i int) string { return "c" + strconv.Itoa(i) + "=v" })
				return newHandshake("/ws", "Cookie", cookies+"; session="+secret, "Origin", "http://127.0.0.1:8080")
			},
			reset:  func(*http.Request) {},
			status: 101,
		},
		queryInput("n query parameters before the credential", func(i int) string { return "k" + strconv.Itoa(i) + "=v" }),
		queryInput("n percent-encoded query keys before the credential", func(i int) string { return "k%5F" + strconv.Itoa(i) + "=v" }),
	}
}

// TestHugeInputCostsNoMoreAllocationsThanSmallInput serves each hostile
// request at two sizes, ten times apart, and requires the same outcome and
// the same small number of allocations: nothing on the path allocates per
// entry, so memory use cannot be driven up by header size.
func TestHugeInputCostsNoMoreAllocationsThanSmallInput(t *testing.T) {
	g := New(StaticToken(secret, user{"alice"}), allWays())
	h := g.Handler(func(_ context.Context, s Session[user]) {
		if s.Principal.Name != "alice" {
			panic("wrong principal")
		}
	})
	sizes := map[string][2]int{
		"spaces between two protocol entries, then a credential": {5_000, 50_000},
		"spaces inside one protocol entry":                       {5_000, 50_000},
		"a protocol list of n entries":                           {1_000, 10_000},
	}
	for _, in := range hugeInputs() {
		t.Run(in.name, func(t *testing.T) {
			sz, ok := sizes[in.name]
			if !ok {
				sz = [2]int{500, 5_000}
			}
			var allocs [2]float64
			for i, n := range sz {
				r := in.build(n)
				w := newHijackWriter()
				run := func() {
					in.reset(r)
					w.reset()
					h.ServeHTTP(w, r)
				}
				run()
				resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(w.responseText())), r)
				require.NoError(t, err)
				resp.Body.Close()
				require.Equal(t, in.status, resp.StatusCode, "n=%d: %s", n, w.responseText())
				if in.status == 101 {
					assert.Equal(t, in.echo, resp.Header.Get("Sec-WebSocket-Protocol"))
				}
				assert.NotContains(t, w.responseText(), secret)
				allocs[i] = testing.AllocsPerRun(20, run)
			}
			t.Logf("allocations per request: n=%d: %.0f, n=%d: %.0f", sz[0], allocs[0], sz[1], allocs[1])
			assert.LessOrEqual(t, allocs[1], allocs[0], "allocations grow with the input")
			assert.LessOrEqual(t, allocs[1], 16.0, "more than a small constant number of allocations")
		})
	}
}

// BenchmarkHugeInput shows the cost growing linearly with the input (and
// allocations staying flat) at 1k, 10k and 100k entries or spaces.
func BenchmarkHugeInput(b *testing.B) {
	g := New(StaticToken(secret, user{"alice"}), allWays())
	h := g.Handler(func(context.Context, Session[user]) {})
	for _, in := range hugeInputs() {
		for _, n := range []int{1_000, 10_000, 100_000} {
			b.Run(fmt.Sprintf("%s/%dk", strings.ReplaceAll(in.name, " ", "_"), n/1000), func(b *testing.B) {
				b.ReportAllocs()
				r := in.build(n)
				w := newHijackWriter()
				for b.Loop() {
					in.reset(r)
					w.reset()
					h.ServeHTTP(w, r)
				}
				if in.status == 101 && !w.hijacked || in.status != 101 && w.status != in.status {
					b.Fatalf("unexpected answer %s", w.responseText())
				}
			})
		}
	}
}

// --- Over real loopback TCP ---

// rawConn is a client connection that speaks HTTP/1.1 by hand.
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	return &rawConn{Conn: c, br: bufio.NewReader(c)}
}

// response reads one response and its body.
func (c *rawConn) response() (*http.Response, string, error) {
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return resp, "", nil
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body), err
}

// closed reports whether the server closed the connection without sending
// anything more.
func (c *rawConn) closed() bool {
	n, err := c.br.Read(make([]byte, 1))
	return n == 0 && err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}

// handshakeText is a raw handshake request for host with extra header
// lines ("Name: value").
func handshakeText(target, host string, lines ...string) string {
	var b strings.Builder
	b.WriteString("GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + testKey + "\r\n")
	for _, l := range lines {
		b.WriteString(l + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// countingServer serves the gate's handler and counts requests that reach
// the server's handler at all and sessions that got upgraded.
type countingServer struct {
	addr     string
	requests atomic.Int64
	sessions atomic.Int64
}

func newCountingServer(t *testing.T, g *Gate[user]) *countingServer {
	cs := &countingServer{}
	h := g.Handler(func(_ context.Context, s Session[user]) {
		cs.sessions.Add(1)
		_ = wsutil.WriteServerText(s.Conn, []byte(s.Principal.Name))
	})
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cs.requests.Add(1)
		h.ServeHTTP(w, r)
	}))
	cs.addr = srv.Listener.Addr().String()
	return cs
}

func countFDs(t testing.TB) int {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count file descriptors: %v", err)
	}
	return len(fds)
}

// settle waits (bounded) until goroutines and descriptors are back to at
// most their baseline plus slack, and reports the last counts.
func settle(t testing.TB, goroutines, fds, slack int) (int, int) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		g, f := runtime.NumGoroutine(), countFDs(t)
		if g <= goroutines+slack && f <= fds+slack || time.Now().After(deadline) {
			return g, f
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRefusedHandshakesLeakNothing sends 10,000 refused handshakes over
// loopback, each with a valid handshake pipelined behind it, and checks that
// every connection is closed after the refusal, that no pipelined request is
// served, and that goroutines and file descriptors return to baseline.
func TestRefusedHandshakesLeakNothing(t *testing.T) {
	const total, workers = 10_000, 8
	if testing.Short() {
		t.Skip("10,000 connections")
	}
	g := New(StaticToken(secret, user{"alice"}), Config{Extractors: []Extractor{Bearer(), Cookie("session")}})
	cs := newCountingServer(t, g)
	host := cs.addr
	valid := handshakeText("/ws", host, "Authorization: Bearer "+secret)
	refused := []struct {
		req    string
		status int
	}{
		{strings.Replace(valid, testKey, "not-a-key", 1), 400},
		{handshakeText("/ws", host, "Authorization: Bearer "+secret, "Origin: http://evil.example"), 403},
		{handshakeText("/ws", host, "Authorization: Bearer wrong"), 401},
		{handshakeText("/ws", host), 401},
		{handshakeText("/ws", host, "Cookie: session="+secret), 403},
	}

	one := func(i int) error {
		c, err := net.DialTimeout("tcp", cs.addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
			return err
		}
		rc := &rawConn{Conn: c, br: bufio.NewReader(c)}
		tc := refused[i%len(refused)]
		if _, err := io.WriteString(c, tc.req+valid); err != nil {
			return err
		}
		resp, _, err := rc.response()
		if err != nil {
			return fmt.Errorf("request %d: %w", i, err)
		}
		if resp.StatusCode != tc.status || !resp.Close {
			return fmt.Errorf("request %d: status %d, close %v; want %d and close", i, resp.StatusCode, resp.Close, tc.status)
		}
		if !rc.closed() {
			return fmt.Errorf("request %d: connection still open after the refusal", i)
		}
		return nil
	}

	// Warm up once per reason, so lazily started runtime and net/http
	// goroutines are part of the baseline.
	for i := range refused {
		require.NoError(t, one(i))
	}
	time.Sleep(600 * time.Millisecond) // net/http lingers 500 ms before closing a refused connection
	baseG, baseFD := runtime.NumGoroutine(), countFDs(t)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var next atomic.Int64
	var failures atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= total {
					return
				}
				if err := one(i); err != nil {
					failures.Add(1)
					once.Do(func() { firstErr = err })
					if failures.Load() > 10 {
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	require.NoError(t, ctx.Err(), "did not finish in time")
	require.NoError(t, firstErr)
	assert.GreaterOrEqual(t, next.Load(), int64(total))
	assert.Equal(t, int64(total+len(refused)), cs.requests.Load(), "a pipelined request was served")
	assert.Zero(t, cs.sessions.Load())

	gNow, fdNow := settle(t, baseG, baseFD, 2)
	t.Logf("goroutines %d -> %d, file descriptors %d -> %d", baseG, gNow, baseFD, fdNow)
	assert.LessOrEqual(t, gNow, baseG+2, "goroutines leaked")
	assert.LessOrEqual(t, fdNow, baseFD+2, "file descriptors leaked")
}

// TestNothingIsSmuggledPastARefusal sends requests that try to get a second
// request or an upgraded stream past the gate on one connection. Each is
// refused, the connection closes, and nothing else reaches a handler.
func TestNothingIsSmuggledPastARefusal(t *testing.T) {
	var frame strings.Builder
	require.NoError(t, ws.WriteFrame(&frame, ws.MaskFrame(ws.NewTextFrame([]byte("GET /ws HTTP/1.1\r\n\r\n")))))
	tests := []struct {
		name     string
		request  func(host, valid string) string
		status   int // 0: net/http itself refuses; the handler is never called
		requests int64
	}{
		{
			name: "Upgrade: h2c followed by the HTTP/2 preface",
			request: func(host, _ string) string {
				return "GET /ws HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n" +
					"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nAuthorization: Bearer " + secret + "\r\n\r\n" +
					"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
			},
			status:   426,
			requests: 1,
		},
		{
			name: "an upgrade with a Content-Length body holding a second handshake",
			request: func(host, valid string) string {
				return strings.Replace(valid, "\r\n\r\n", "\r\nContent-Length: "+strconv.Itoa(len(valid))+"\r\n\r\n", 1) + valid + valid
			},
			status:   400,
			requests: 1,
		},
		{
			name: "an upgrade with a chunked body, then a second handshake",
			request: func(host, valid string) string {
				return strings.Replace(valid, "\r\n\r\n", "\r\nTransfer-Encoding: chunked\r\n\r\n", 1) + "5\r\nhello\r\n0\r\n\r\n" + valid
			},
			status:   400,
			requests: 1,
		},
		{
			name: "Content-Length and chunked together",
			request: func(host, valid string) string {
				return strings.Replace(valid, "\r\n\r\n", "\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n", 1) + "0\r\n\r\n" + valid
			},
			status:   400,
			requests: 1, // net/http drops the Content-Length; the gate refuses the chunked body
		},
		{
			name: "a refused handshake followed by WebSocket frames",
			request: func(host, valid string) string {
				return strings.Replace(valid, secret, "wrong", 1) + frame.String() + frame.String()
			},
			status:   401,
			requests: 1,
		},
		{
			name: "a handshake without a credential followed by frames and a valid handshake",
			request: func(host, valid string) string {
				return handshakeText("/ws", host) + frame.String() + valid
			},
			status:   401,
			requests: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := newCountingServer(t, New(StaticToken(secret, user{"alice"}), Config{}))
			valid := handshakeText("/ws", cs.addr, "Authorization: Bearer "+secret)
			c := dialRaw(t, cs.addr)
			defer c.Close()
			_, err := io.WriteString(c, tt.request(cs.addr, valid))
			require.NoError(t, err)
			resp, body, err := c.response()
			require.NoError(t, err)
			assert.Equal(t, tt.status, resp.StatusCode, body)
			assert.True(t, resp.Close, "the refusal must close the connection")
			assert.True(t, c.closed(), "the connection must be closed after the refusal")
			assert.Equal(t, tt.requests, cs.requests.Load(), "requests that reached the handler")
			assert.Zero(t, cs.sessions.Load(), "upgraded sessions")
		})
	}
}

// --- Slow verifiers ---

func TestSlowVerifierIsCutByVerifyTimeout(t *testing.T) {
	var calls atomic.Int64
	g := New(func(ctx context.Context, _ Credential) (user, error) {
		calls.Add(1)
		select {
		case <-ctx.Done():
			return user{}, ctx.Err()
		case <-time.After(30 * time.Second): // a bound, never reached
			return user{}, errors.New("verifier was not cancelled")
		}
	}, Config{VerifyTimeout: 50 * time.Millisecond})
	cs := newCountingServer(t, g)
	c := dialRaw(t, cs.addr)
	defer c.Close()
	_, err := io.WriteString(c, handshakeText("/ws", cs.addr, "Authorization: Bearer "+secret))
	require.NoError(t, err)
	resp, body, err := c.response()
	require.NoError(t, err)
	assert.Equal(t, 503, resp.StatusCode)
	assert.Equal(t, "verification timed out\n", body)
	assert.True(t, resp.Close)
	assert.True(t, c.closed())
	assert.Equal(t, int64(1), calls.Load())
	assert.Zero(t, cs.sessions.Load())
}

func TestClientDisconnectCancelsTheVerifier(t *testing.T) {
	started := make(chan struct{}, 1)
	ended := make(chan error, 1)
	g := New(func(ctx context.Context, _ Credential) (user, error) {
		started <- struct{}{}
		select {
		case <-ctx.Done():
			ended <- ctx.Err()
			return user{}, ctx.Err()
		case <-time.After(30 * time.Second): // a bound, never reached
			ended <- errors.New("verifier was not cancelled")
			return user{}, ErrInvalidToken
		}
	}, Config{VerifyTimeout: time.Minute})
	cs := newCountingServer(t, g)
	c := dialRaw(t, cs.addr)
	_, err := io.WriteString(c, handshakeText("/ws", cs.addr, "Authorization: Bearer "+secret))
	require.NoError(t, err)
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("verifier not called")
	}
	require.NoError(t, c.Close())
	select {
	case err := <-ended:
		assert.ErrorIs(t, err, context.Canceled, "the client's departure, not the deadline, must end verification")
	case <-time.After(10 * time.Second):
		t.Fatal("the verifier's context was not cancelled when the client went away")
	}
	assert.Zero(t, cs.sessions.Load())
}

// --- Cross-site WebSocket hijacking ---

// TestCrossSiteOriginsAreRefusedWithZeroConfiguration opens sockets with a
// valid session cookie from attacker origins against a gate configured with
// nothing but the Cookie extractor. Each gets 403; the server's own origin,
// in any letter case, gets through.
func TestCrossSiteOriginsAreRefusedWithZeroConfiguration(t *testing.T) {
	cs := newCountingServer(t, New(StaticToken(secret, user{"alice"}), Config{Extractors: []Extractor{Cookie("session")}}))
	_, port, err := net.SplitHostPort(cs.addr)
	require.NoError(t, err)
	p, _ := strconv.Atoi(port)
	other := strconv.Itoa(p + 1)
	host := "127.0.0.1:" + port
	tests := []struct {
		name   string
		host   string // the Host header; the server's address when empty
		origin []string
		status int
	}{
		{name: "the server's own origin", origin: []string{"http://" + host}, status: 101},
		{name: "the scheme in upper case", origin: []string{"HTTP://" + host}, status: 101},
		{name: "the scheme in mixed case", origin: []string{"Http://" + host}, status: 101},
		{name: "a named host in another case", host: "localhost:" + port, origin: []string{"http://LocalHost:" + port}, status: 101},
		{name: "another host", origin: []string{"http://evil.example"}, status: 403},
		{name: "another host on the same port", origin: []string{"http://evil.example:" + port}, status: 403},
		{name: "another port on the same host", origin: []string{"http://127.0.0.1:" + other}, status: 403},
		{name: "the same host without a port", origin: []string{"http://127.0.0.1"}, status: 403},
		{name: "another scheme", origin: []string{"https://" + host}, status: 403},
		{name: "ws scheme", origin: []string{"ws://" + host}, status: 403},
		{name: "another scheme in upper case", origin: []string{"HTTPS://" + host}, status: 403},
		{name: "look-alike suffix domain", origin: []string{"http://127.0.0.1.evil.com:" + port}, status: 403},
		{name: "look-alike suffix domain in upper case", origin: []string{"http://127.0.0.1.EVIL.COM:" + port}, status: 403},
		{name: "look-alike prefix", origin: []string{"http://evil127.0.0.1:" + port}, status: 403},
		{name: "userinfo trick", origin: []string{"http://" + host + "@evil.com"}, status: 403},
		{name: "userinfo trick the other way", origin: []string{"http://evil.com@" + host}, status: 403},
		{name: "null origin (sandboxed iframe, file:)", origin: []string{"null"}, status: 403},
		{name: "trailing slash", origin: []string{"http://" + host + "/"}, status: 403},
		{name: "a path", origin: []string{"http://" + host + "/ws"}, status: 403},
		{name: "a trailing dot", origin: []string{"http://127.0.0.1.:" + port}, status: 403},
		{name: "a zero-padded port", origin: []string{"http://127.0.0.1:0" + port}, status: 403},
		{name: "localhost for 127.0.0.1", origin: []string{"http://localhost:" + port}, status: 403},
		{name: "localhost in upper case for 127.0.0.1", origin: []string{"http://LOCALHOST:" + port}, status: 403},
		{name: "a second Origin header", origin: []string{"http://" + host, "http://evil.example"}, status: 403},
		{name: "two origins in one header", origin: []string{"http://" + host + " http://evil.example"}, status: 403},
		{name: "no Origin at all", status: 403},
	}
	var wantSessions int64
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.host
			if h == "" {
				h = host
			}
			lines := []string{"Cookie: theme=dark; session=" + secret}
			for _, o := range tt.origin {
				lines = append(lines, "Origin: "+o)
			}
			c := dialRaw(t, cs.addr)
			defer c.Close()
			_, err := io.WriteString(c, handshakeText("/ws", h, lines...))
			require.NoError(t, err)
			resp, body, err := c.response()
			require.NoError(t, err)
			require.Equal(t, tt.status, resp.StatusCode, body)
			if tt.status == 101 {
				wantSessions++
				msg, err := wsutil.ReadServerText(readWriter{c.br, c.Conn})
				require.NoError(t, err)
				assert.Equal(t, "alice", string(msg))
				return
			}
			assert.NotContains(t, body, secret)
			assert.True(t, resp.Close)
			assert.True(t, c.closed())
		})
	}
	assert.Equal(t, wantSessions, cs.sessions.Load())
}

// --- Races ---

// TestConcurrentHandshakesShareOneGate runs 50 handshakes at once through
// one gate (run it with -race); each gets its own principal.
func TestConcurrentHandshakesShareOneGate(t *testing.T) {
	const n = 50
	tokens := make(map[string]user, n)
	for i := 0; i < n; i++ {
		tokens[fmt.Sprintf("token-%02d-%s", i, secret)] = user{fmt.Sprintf("user-%02d", i)}
	}
	g := New(func(_ context.Context, c Credential) (user, error) {
		u, ok := tokens[c.Token()]
		if !ok {
			return user{}, ErrInvalidToken
		}
		return u, nil
	}, Config{Protocols: []string{"chat"}})
	cs := newCountingServer(t, g)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs <- func() error {
				token := fmt.Sprintf("token-%02d-%s", i, secret)
				d := ws.Dialer{Protocols: []string{"chat", "access_token", token}, Timeout: 10 * time.Second}
				if i%2 == 1 {
					d = ws.Dialer{Header: ws.HandshakeHeaderHTTP(http.Header{"Authorization": {"Bearer " + token}}), Timeout: 10 * time.Second}
				}
				conn, br, hs, err := d.Dial(ctx, "ws://"+cs.addr+"/ws")
				if err != nil {
					return fmt.Errorf("dial %d: %w", i, err)
				}
				defer conn.Close()
				if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
					return err
				}
				if i%2 == 0 && hs.Protocol != "chat" {
					return fmt.Errorf("dial %d: protocol %q", i, hs.Protocol)
				}
				var r io.Reader = conn
				if br != nil {
					r = br
				}
				msg, err := wsutil.ReadServerText(readWriter{r, conn})
				if err != nil {
					return fmt.Errorf("read %d: %w", i, err)
				}
				if want := fmt.Sprintf("user-%02d", i); string(msg) != want {
					return fmt.Errorf("handshake %d got principal %q, want %q", i, msg, want)
				}
				return nil
			}()
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
	assert.Equal(t, int64(n), cs.sessions.Load())
}
