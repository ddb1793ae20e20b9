package wsgate

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
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

// watchedConn is a server-side connection that counts what the server read
// from it and notes how much that was when the server closed it.
type watchedConn struct {
	net.Conn
	read        atomic.Int64
	readAtClose atomic.Int64
	once        sync.Once
	closed      chan struct{}
}

func (c *watchedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

func (c *watchedConn) Close() error {
	c.once.Do(func() {
		c.readAtClose.Store(c.read.Load())
		close(c.closed)
	})
	return c.Conn.Close()
}

// watchedListener hands out watchedConns, and each one on conns.
type watchedListener struct {
	net.Listener
	conns chan *watchedConn
}

func (l *watchedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	w := &watchedConn{Conn: c, closed: make(chan struct{})}
	select {
	case l.conns <- w:
	default:
	}
	return w, nil
}

// watchedServer serves h on loopback; conns yields each accepted
// connection and returned receives once per request after h returned.
type watchedServer struct {
	addr     string
	conns    chan *watchedConn
	returned chan struct{}
}

func newWatchedServer(t *testing.T, h http.Handler) *watchedServer {
	t.Helper()
	s := &watchedServer{conns: make(chan *watchedConn, 8), returned: make(chan struct{}, 8)}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		s.returned <- struct{}{}
	}))
	srv.Listener = &watchedListener{Listener: srv.Listener, conns: s.conns}
	srv.Start()
	t.Cleanup(srv.Close)
	s.addr = srv.Listener.Addr().String()
	return s
}

// dial sends a handshake for /ws with the extra header lines and bytes
// after it, and returns the client side, the reader past the 101 and the
// server's connection.
func (s *watchedServer) dial(t *testing.T, lines, after string) (net.Conn, *bufio.Reader, *watchedConn, int64) {
	t.Helper()
	conn, err := net.Dial("tcp", s.addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	req := "GET /ws HTTP/1.1\r\nHost: " + s.addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + testKey + "\r\n" + lines + "\r\n" + after
	_, err = io.WriteString(conn, req)
	require.NoError(t, err)
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	var sc *watchedConn
	select {
	case sc = <-s.conns:
	case <-time.After(5 * time.Second):
		t.Fatal("the server accepted no connection")
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	return conn, br, sc, int64(len(req))
}

// waitReturned fails t unless the handler returned within a generous bound.
func (s *watchedServer) waitReturned(t *testing.T) {
	t.Helper()
	select {
	case <-s.returned:
	case <-time.After(closeLinger + 10*time.Second):
		t.Fatal("the handler did not return")
	}
}

func clientClose(code ws.StatusCode) string {
	var b strings.Builder
	if err := ws.WriteFrame(&b, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(code, "")))); err != nil {
		panic(err)
	}
	return b.String()
}

// gateClosers are the three ways the gate closes a connection on its own.
func gateClosers() []struct {
	name    string
	handler http.Handler
	lines   string
	after   string
	code    ws.StatusCode
	reason  string
} {
	refusing := New(refusingVerifier, Config{Extractors: []Extractor{Bearer()}, RefuseWithCloseFrame: true})
	inband := New(refusingVerifier, Config{Extractors: []Extractor{Bearer()}, InBand: &InBandAuth{Timeout: 5 * time.Second}})
	impatient := New(refusingVerifier, Config{Extractors: []Extractor{Bearer()}, InBand: &InBandAuth{Timeout: 100 * time.Millisecond}})
	expiring := New(expiringVerifier(100*time.Millisecond), Config{})
	waitCtx := func(ctx context.Context, s Session[user]) {
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Second):
		}
	}
	return []struct {
		name    string
		handler http.Handler
		lines   string
		after   string
		code    ws.StatusCode
		reason  string
	}{
		{
			name:    "a close-frame refusal",
			handler: refusing.Handler(waitCtx),
			lines:   "Authorization: Bearer wrong\r\n",
			code:    CloseUnauthorized,
			reason:  "invalid credential",
		},
		{
			name:    "a failed in-band authentication",
			handler: inband.Handler(waitCtx),
			after:   clientFrame(`{"type":"auth","token":"wrong"}`),
			code:    CloseUnauthorized,
			reason:  "invalid credential",
		},
		{
			name:    "an in-band timeout",
			handler: impatient.Handler(waitCtx),
			code:    CloseAuthTimeout,
			reason:  "authentication timed out",
		},
		{
			name:    "an expired credential",
			handler: expiring.Handler(waitCtx),
			lines:   "Authorization: Bearer " + secret + "\r\n",
			code:    CloseUnauthorized,
			reason:  "credential expired",
		},
	}
}

func TestGateClosesTCPOnlyAfterTheClientsCloseFrame(t *testing.T) {
	for _, tt := range gateClosers() {
		t.Run(tt.name, func(t *testing.T) {
			s := newWatchedServer(t, tt.handler)
			conn, br, sc, sent := s.dial(t, tt.lines, tt.after)
			code, reason := readClose(t, br)
			assert.Equal(t, tt.code, code)
			assert.Equal(t, tt.reason, reason)
			// Data the client sent before it read the close frame is
			// skipped, then its close frame ends the wait.
			reply := clientFrame("late message") + clientClose(code)
			_, err := io.WriteString(conn, reply)
			require.NoError(t, err)
			sent += int64(len(reply))
			assertClosed(t, br)
			<-sc.closed
			assert.Equal(t, sent, sc.readAtClose.Load(), "the server closed only after reading the client's close frame")
			s.waitReturned(t)
		})
	}
}

func TestGateLetsASilentClientGoAfterTheLinger(t *testing.T) {
	for _, tt := range gateClosers() {
		t.Run(tt.name, func(t *testing.T) {
			s := newWatchedServer(t, tt.handler)
			_, br, sc, _ := s.dial(t, tt.lines, tt.after)
			code, _ := readClose(t, br)
			assert.Equal(t, tt.code, code)
			assertClosed(t, br)
			select {
			case <-sc.closed:
			case <-time.After(closeLinger + 10*time.Second):
				t.Fatal("the server kept a silent client")
			}
			s.waitReturned(t)
		})
	}
}

func TestGateCutsOffAClientThatFloodsInsteadOfClosing(t *testing.T) {
	for _, tt := range gateClosers() {
		t.Run(tt.name, func(t *testing.T) {
			s := newWatchedServer(t, tt.handler)
			conn, br, sc, sent := s.dial(t, tt.lines, tt.after)
			code, _ := readClose(t, br)
			assert.Equal(t, tt.code, code)
			frame := clientFrame(strings.Repeat("x", 64<<10))
			var wrote int64
			for i := 0; i < 256; i++ { // 16 MiB at most
				n, err := io.WriteString(conn, frame)
				wrote += int64(n)
				if err != nil {
					break
				}
			}
			select {
			case <-sc.closed:
			case <-time.After(closeLinger + 10*time.Second):
				t.Fatal("the server kept a flooding client")
			}
			assert.LessOrEqual(t, sc.readAtClose.Load(), sent+maxLingerBytes+4096, "the server read past the byte bound")
			assert.Less(t, sc.readAtClose.Load(), sent+wrote, "the server read everything the client sent")
			s.waitReturned(t)
		})
	}
}

// TestExpiryIsBoundedWhenTheClientStopsReading has the application write,
// holding WriteLock, to a client that reads nothing: the write blocks once
// the socket buffers are full, with the lock held. At the expiry the gate
// must still close the connection within its bound, the handler must return
// and no goroutine may be left behind.
func TestExpiryIsBoundedWhenTheClientStopsReading(t *testing.T) {
	writing := make(chan struct{})
	var once sync.Once
	var writeErr atomic.Value
	g := New(expiringVerifier(300*time.Millisecond), Config{})
	s := newWatchedServer(t, g.Handler(func(ctx context.Context, sess Session[user]) {
		payload := []byte(strings.Repeat("y", 64<<10))
		l := sess.WriteLock()
		for i := 0; i < 4096; i++ { // 256 MiB at most
			l.Lock()
			err := wsutil.WriteServerMessage(sess.Conn, ws.OpBinary, payload)
			l.Unlock()
			once.Do(func() { close(writing) })
			if err != nil {
				writeErr.Store(err)
				return
			}
		}
	}))
	before, fdsBefore := runtime.NumGoroutine(), openFDs(t)
	conn, _, sc, _ := s.dial(t, "Authorization: Bearer "+secret+"\r\n", "")
	<-writing
	select {
	case <-sc.closed:
	case <-time.After(2*expiryLockWait + closeWriteTimeout + closeLinger + 10*time.Second):
		t.Fatal("the gate did not close the connection of a client that stopped reading")
	}
	s.waitReturned(t)
	err, _ := writeErr.Load().(error)
	assert.Error(t, err, "the application's write was cut short")
	conn.Close()

	deadline := time.Now().Add(10 * time.Second)
	for (runtime.NumGoroutine() > before || openFDs(t) > fdsBefore) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	assert.LessOrEqual(t, runtime.NumGoroutine(), before, "goroutines left behind")
	assert.LessOrEqual(t, openFDs(t), fdsBefore, "file descriptors left open")
}

// openFDs counts the process's open file descriptors (Linux).
func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("no /proc/self/fd:", err)
		}
		t.Skip("no /proc/self/fd:", err)
	}
	return len(entries)
}
