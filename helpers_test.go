package wsgate

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain fails the run if goroutines started by the tests outlive them.
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

const testKey = "dGhlIHNhbXBsZSBub25jZQ=="

// handshakeHeader is a valid Chromium-like handshake header set.
func handshakeHeader() http.Header {
	return http.Header{
		"Upgrade":               {"websocket"},
		"Connection":            {"Upgrade"},
		"Sec-Websocket-Version": {"13"},
		"Sec-Websocket-Key":     {testKey},
	}
}

// newHandshake returns a valid handshake request for target on host
// 127.0.0.1:8080, with extra headers given as name, value pairs.
func newHandshake(target string, kv ...string) *http.Request {
	r, err := http.NewRequest(http.MethodGet, "http://127.0.0.1:8080"+target, nil)
	if err != nil {
		panic(err)
	}
	r.RequestURI = target
	r.Header = handshakeHeader()
	for i := 0; i+1 < len(kv); i += 2 {
		r.Header.Add(kv[i], kv[i+1])
	}
	return r
}

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
	w.conn.in = nil
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

// memConn is a net.Conn whose writes land in a buffer.
type memConn struct {
	in  []byte
	out *bytes.Buffer
}

func (c *memConn) Read(p []byte) (int, error) {
	if len(c.in) == 0 {
		return 0, net.ErrClosed
	}
	n := copy(p, c.in)
	c.in = c.in[n:]
	return n, nil
}
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

// responseText is everything the client received: the hijacked bytes or the
// HTTP answer.
func (w *hijackWriter) responseText() string {
	if w.hijacked {
		return w.out.String()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.1 %d\r\n", w.status)
	_ = w.header.Write(&b)
	b.WriteString("\r\n")
	b.Write(w.body.Bytes())
	return b.String()
}

// acceptKey returns the Sec-WebSocket-Accept value for key.
func acceptKey(key string) string { return string(AppendAcceptKey(nil, key)) }

// checkKey is the Sec-WebSocket-Key check of CheckHandshake.
func checkKey(key string) error {
	if !validKey(trimOWS(key)) {
		return errKey.clone()
	}
	return nil
}
