// Package bench compares the cost of a WebSocket opening handshake through
// wsgate with the cost of the same handshake through gobwas/ws,
// gorilla/websocket and coder/websocket, and with two hand-written floors.
//
// It is its own module, so users of wsgate never download the contenders.
// The cases (cases.go) are shared by the in-process benchmarks
// (handshake_test.go), which serve them on the in-memory HijackWriter of this
// file (the raw cases, which read the request from a net.Conn, on its
// MemConn), and by the end-to-end program cmd/e2ebench, which serves them
// on 127.0.0.1.
package bench

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// HijackWriter is an in-memory http.ResponseWriter and http.Hijacker. Its
// connection, bufio.ReadWriter and buffers are made once; after Reset it
// serves another request without allocating, so a benchmark that runs a
// handler on it measures the handler alone (TestHijackWriterAllocatesNothing
// proves it).
//
// Like net/http's response, a status and headers set before Hijack (coder's
// Accept answers the 101 that way) are written to the connection when it is
// hijacked; anything written through the ResponseWriter without a hijack is
// kept as a plain HTTP answer (Status, Header, Body).
type HijackWriter struct {
	header   http.Header
	status   int
	body     bytes.Buffer
	hijacked bool
	conn     *MemConn
	rw       *bufio.ReadWriter
}

// NewHijackWriter returns a HijackWriter with buffers of 4 KiB, the size
// net/http uses.
func NewHijackWriter() *HijackWriter {
	c := &MemConn{}
	c.out.Grow(4096)
	w := &HijackWriter{
		header: make(http.Header, 8),
		conn:   c,
		rw:     bufio.NewReadWriter(bufio.NewReaderSize(c, 4096), bufio.NewWriterSize(c, 4096)),
	}
	w.body.Grow(4096)
	return w
}

// Reset makes w ready for another request: no status, no header, nothing
// written, not hijacked, the connection open with nothing to read. The
// bufio.ReadWriter is pointed back at the connection, since upgraders may
// have reset it onto something else (coder does).
func (w *HijackWriter) Reset() {
	clear(w.header)
	w.status = 0
	w.body.Reset()
	w.hijacked = false
	w.conn.reset()
	w.rw.Reader.Reset(w.conn)
	w.rw.Writer.Reset(w.conn)
}

// Header implements http.ResponseWriter.
func (w *HijackWriter) Header() http.Header { return w.header }

// WriteHeader implements http.ResponseWriter.
func (w *HijackWriter) WriteHeader(code int) {
	if w.status == 0 && !w.hijacked {
		w.status = code
	}
}

// Write implements http.ResponseWriter.
func (w *HijackWriter) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.body.Write(p)
}

// Hijack implements http.Hijacker. A status set before it is written to the
// connection with the headers, as net/http does.
func (w *HijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	w.hijacked = true
	if w.status != 0 {
		w.writeHead()
	}
	return w.conn, w.rw, nil
}

// writeHead writes the status line and headers set before the hijack to the
// connection, without allocating.
func (w *HijackWriter) writeHead() {
	var num [3]byte
	out := &w.conn.out
	out.WriteString("HTTP/1.1 ")
	out.Write(strconv.AppendInt(num[:0], int64(w.status), 10))
	out.WriteByte(' ')
	out.WriteString(http.StatusText(w.status))
	out.WriteString("\r\n")
	for k, vs := range w.header {
		for _, v := range vs {
			out.WriteString(k)
			out.WriteString(": ")
			out.WriteString(v)
			out.WriteString("\r\n")
		}
	}
	out.WriteString("\r\n")
}

// Hijacked reports whether the handler hijacked the connection.
func (w *HijackWriter) Hijacked() bool { return w.hijacked }

// Status is the status written through the ResponseWriter, or 0.
func (w *HijackWriter) Status() int { return w.status }

// Body is what was written through the ResponseWriter.
func (w *HijackWriter) Body() []byte { return w.body.Bytes() }

// Out is everything written to the hijacked connection (flushed).
func (w *HijackWriter) Out() []byte { return w.conn.out.Bytes() }

// Closed reports whether the hijacked connection was closed.
func (w *HijackWriter) Closed() bool { return w.conn.closed }

// SetInput sets the bytes the connection returns to reads (they must stay
// unchanged until the next Reset).
func (w *HijackWriter) SetInput(p []byte) { w.conn.in = p }

// Response is everything the client received: the bytes written to the
// hijacked connection, or the plain HTTP answer. It allocates; tests only.
func (w *HijackWriter) Response() []byte {
	if w.hijacked {
		return w.Out()
	}
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 " + strconv.Itoa(w.status) + " " + http.StatusText(w.status) + "\r\n")
	_ = w.header.Write(&b)
	b.WriteString("\r\n")
	b.Write(w.body.Bytes())
	return b.Bytes()
}

// MemConn is a net.Conn over in-memory buffers: reads come from a byte
// slice, writes land in a reusable buffer. Deadlines are accepted and
// ignored.
type MemConn struct {
	in     []byte
	out    bytes.Buffer
	closed bool
}

func (c *MemConn) reset() { c.Reset(nil) }

// Reset makes c ready for another connection without allocating: open,
// nothing written, and reads returning in (which must stay unchanged while
// c reads it).
func (c *MemConn) Reset(in []byte) {
	c.in = in
	c.out.Reset()
	c.closed = false
}

// Out is everything written to c since Reset.
func (c *MemConn) Out() []byte { return c.out.Bytes() }

// Closed reports whether c was closed since Reset.
func (c *MemConn) Closed() bool { return c.closed }

// Read implements net.Conn; it returns io.EOF when the input is consumed.
func (c *MemConn) Read(p []byte) (int, error) {
	if len(c.in) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.in)
	c.in = c.in[n:]
	return n, nil
}

// Write implements net.Conn.
func (c *MemConn) Write(p []byte) (int, error) {
	if c.closed {
		return 0, net.ErrClosed
	}
	return c.out.Write(p)
}

// Close implements net.Conn.
func (c *MemConn) Close() error { c.closed = true; return nil }

// LocalAddr implements net.Conn.
func (c *MemConn) LocalAddr() net.Addr { return memAddr{} }

// RemoteAddr implements net.Conn.
func (c *MemConn) RemoteAddr() net.Addr { return memAddr{} }

// SetDeadline implements net.Conn.
func (c *MemConn) SetDeadline(time.Time) error { return nil }

// SetReadDeadline implements net.Conn.
func (c *MemConn) SetReadDeadline(time.Time) error { return nil }

// SetWriteDeadline implements net.Conn.
func (c *MemConn) SetWriteDeadline(time.Time) error { return nil }

type memAddr struct{}

func (memAddr) Network() string { return "mem" }
func (memAddr) String() string  { return "mem" }
