package wsgate

import (
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// hProtocol is the key under which net/http puts the :protocol pseudo-header
// of an HTTP/2 extended CONNECT request (RFC 8441) in Request.Header.
const hProtocol = ":protocol"

var (
	errConnectProtocol = handshakeRefusal(http.StatusBadRequest, "WebSocket over HTTP/2 requires extended CONNECT with :protocol websocket", noHeader)
	// Over HTTP/2 a wrong version is a 400: a 426 must carry Upgrade, which
	// HTTP/2 forbids.
	errVersionH2 = handshakeRefusal(http.StatusBadRequest, "Sec-WebSocket-Version 13 required", versionHeader)
)

// checkConnect is checkHandshake for HTTP/2: RFC 8441 section 5 replaces
// GET, Upgrade, Connection and Sec-WebSocket-Key with the CONNECT method and
// the :protocol pseudo-header; Sec-WebSocket-Version stays. A
// Sec-WebSocket-Key, if sent, is ignored, as is the absence of a body: the
// stream is the connection.
func checkConnect(r *http.Request) *Error {
	if r.Method != http.MethodConnect {
		return errConnectProtocol
	}
	p := r.Header[hProtocol]
	if len(p) != 1 || !strings.EqualFold(p[0], "websocket") {
		return errConnectProtocol
	}
	if r.Host == "" {
		return errHost
	}
	v := r.Header[hWSVersion]
	switch {
	case len(v) != 1:
		return errVersionMissing
	case trimOWS(v[0]) != versionValue:
		return errVersionH2
	}
	return nil
}

// upgradeH2 answers an extended CONNECT r (checked by checkConnect) with 200,
// the subprotocol and extension headers, flushes it and returns the stream
// as a net.Conn.
func upgradeH2(w http.ResponseWriter, r *http.Request, protocol, ext string) (net.Conn, error) {
	rc := http.NewResponseController(w)
	h := w.Header()
	if protocol != "" {
		h[hWSProtocol] = []string{protocol}
	}
	if ext != "" {
		h[hWSExtensions] = []string{ext}
	}
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return nil, &Error{Status: http.StatusInternalServerError, Reason: "upgrade failed", kind: ErrUpgradeFailed, cause: err}
	}
	// The handler's deadlines, if the server set any, would end the stream.
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	return newStreamConn(w, r, rc), nil
}

// streamConn is an HTTP/2 stream seen as a net.Conn: reads come from the
// request body, writes go to the response and are flushed at once.
//
// The stream lives only as long as the handler that received it: when the
// handler returns, net/http ends the stream, and its ResponseWriter must not
// be touched again (it panics, or races with the server's cleanup). So Close
// must happen before the handler returns (Gate.Handler does it; after
// Upgrade the handler must); from then on Read, Write, Close and the
// deadline setters fail with net.ErrClosed, from any goroutine, without
// reaching the finished ResponseWriter. An expired read deadline ends the
// stream's read side for good, and an expired write deadline resets the
// stream (net/http's behaviour for HTTP/2), so unlike a TCP connection the
// stream cannot be used after a timeout.
type streamConn struct {
	w      http.ResponseWriter
	body   io.ReadCloser
	rc     *http.ResponseController
	local  net.Addr
	remote net.Addr

	wmu sync.Mutex // held by Write; Close waits for it

	// mu guards closed and is held while a deadline is set, so no deadline
	// reaches the ResponseWriter after Close.
	mu     sync.Mutex
	closed bool
}

func newStreamConn(w http.ResponseWriter, r *http.Request, rc *http.ResponseController) *streamConn {
	c := &streamConn{w: w, body: r.Body, rc: rc, remote: addrOf(r.RemoteAddr)}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		c.local = a
	} else {
		c.local = addrOf("")
	}
	return c
}

// h2Addr is a net.Addr for an address net/http gave as a string.
type h2Addr string

func (a h2Addr) Network() string { return "tcp" }
func (a h2Addr) String() string  { return string(a) }

func addrOf(s string) net.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return net.TCPAddrFromAddrPort(ap)
	}
	return h2Addr(s)
}

func (c *streamConn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

func (c *streamConn) Read(p []byte) (int, error) {
	if c.isClosed() {
		return 0, net.ErrClosed
	}
	return c.body.Read(p)
}

func (c *streamConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.isClosed() {
		return 0, net.ErrClosed
	}
	n, err := c.w.Write(p)
	if err == nil {
		err = c.rc.Flush()
	}
	return n, err
}

// Close ends reading and writing, and returns once no Write is using the
// ResponseWriter any more: a Write blocked by flow control is cut short
// with an immediate write deadline. The stream itself ends when the handler
// returns.
func (c *streamConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return net.ErrClosed
	}
	c.closed = true
	c.mu.Unlock()
	err := c.body.Close()
	if !c.wmu.TryLock() {
		_ = c.rc.SetWriteDeadline(time.Now())
		c.wmu.Lock()
	}
	c.wmu.Unlock()
	return err
}

func (c *streamConn) LocalAddr() net.Addr  { return c.local }
func (c *streamConn) RemoteAddr() net.Addr { return c.remote }

func (c *streamConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *streamConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	return c.rc.SetReadDeadline(t)
}

func (c *streamConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	return c.rc.SetWriteDeadline(t)
}
