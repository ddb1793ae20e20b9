package ticket

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestMain fails the run if goroutines started by the tests (a store's
// sweep, a server's connections) outlive them.
func TestMain(m *testing.M) {
	before := runtime.NumGoroutine()
	code := m.Run()
	if code == 0 {
		if err := waitGoroutines(before); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

func waitGoroutines(want int) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= want {
			return nil
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			return fmt.Errorf("goroutine leak: %d running, %d at start\n%s", n, want, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type user struct{ Name string }

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newHandshake returns a valid handshake request for target on host
// 127.0.0.1:8080, with extra headers given as name, value pairs.
func newHandshake(target string, kv ...string) *http.Request {
	r, err := http.NewRequest(http.MethodGet, "http://127.0.0.1:8080"+target, nil)
	if err != nil {
		panic(err)
	}
	r.RequestURI = target
	r.Header = http.Header{
		"Upgrade":               {"websocket"},
		"Connection":            {"Upgrade"},
		"Sec-Websocket-Version": {"13"},
		"Sec-Websocket-Key":     {"dGhlIHNhbXBsZSBub25jZQ=="},
	}
	for i := 0; i+1 < len(kv); i += 2 {
		r.Header.Add(kv[i], kv[i+1])
	}
	return r
}

// issueRequest is a ticket request from remote with extra headers as
// name, value pairs.
func issueRequest(remote string, kv ...string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:8080/ticket", nil)
	r.RemoteAddr = remote
	for i := 0; i+1 < len(kv); i += 2 {
		r.Header.Add(kv[i], kv[i+1])
	}
	return r
}

func newServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func wsURL(srv *httptest.Server, path string) string {
	return "ws" + strings.TrimPrefix(srv.URL, "http") + path
}

type readWriter struct {
	r interface{ Read([]byte) (int, error) }
	w net.Conn
}

func (rw readWriter) Read(p []byte) (int, error)  { return rw.r.Read(p) }
func (rw readWriter) Write(p []byte) (int, error) { return rw.w.Write(p) }

// hijackWriter is an in-memory http.ResponseWriter and http.Hijacker. After a
// reset it can serve another request without allocating, so benchmarks
// measure the code under test alone.
type hijackWriter struct {
	header   http.Header
	status   int
	body     bytes.Buffer
	hijacked bool
	conn     *memConn
	rw       *bufio.ReadWriter
	out      *bytes.Buffer
}

func newHijackWriter() *hijackWriter {
	c := &memConn{out: new(bytes.Buffer)}
	c.out.Grow(4096)
	w := &hijackWriter{
		header: make(http.Header),
		conn:   c,
		out:    c.out,
		rw:     bufio.NewReadWriter(bufio.NewReader(c), bufio.NewWriter(c)),
	}
	w.body.Grow(4096)
	return w
}

func (w *hijackWriter) reset() {
	clear(w.header)
	w.status = 0
	w.body.Reset()
	w.hijacked = false
	w.out.Reset()
}

func (w *hijackWriter) Header() http.Header { return w.header }

func (w *hijackWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *hijackWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.body.Write(p)
}

func (w *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	w.hijacked = true
	return w.conn, w.rw, nil
}

// memConn is a net.Conn whose writes land in a buffer and whose reads end
// at once.
type memConn struct{ out *bytes.Buffer }

func (c *memConn) Read(p []byte) (int, error)         { return 0, net.ErrClosed }
func (c *memConn) Write(p []byte) (int, error)        { return c.out.Write(p) }
func (c *memConn) Close() error                       { return nil }
func (c *memConn) LocalAddr() net.Addr                { return memAddr{} }
func (c *memConn) RemoteAddr() net.Addr               { return memAddr{} }
func (c *memConn) SetDeadline(t time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(t time.Time) error { return nil }

type memAddr struct{}

func (memAddr) Network() string { return "mem" }
func (memAddr) String() string  { return "mem" }

// mustConsume takes ticket's record out of store.
func mustConsume(t testing.TB, store *MemoryStore, ticket string) *Record {
	t.Helper()
	rec, err := store.Consume(context.Background(), sha256.Sum256([]byte(ticket)))
	require.NoError(t, err)
	return &rec
}
