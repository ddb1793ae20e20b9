package wsgate

import (
	"bufio"
	"net"
	"net/http"
	"strings"

	"github.com/gobwas/ws"
)

// Upgrade switches the handshake r to the WebSocket protocol and returns the
// connection, ready for frames (for example with
// github.com/gobwas/ws/wsutil). The caller owns and must close it.
//
// Behind Gate.Middleware, Upgrade echoes the subprotocol the gate chose and
// ignores protocols. Otherwise it first checks r with CheckHandshake and
// echoes the first of protocols (the server's preference order) that the
// client offered, byte for byte, or nothing; it applies no origin policy and
// no authentication, which makes it the piece to use when those happen
// elsewhere.
//
// Every failure before the switch is answered with an HTTP error (see
// WriteError) and returned as an *Error. The ResponseWriter is hijacked
// through wrappers that implement Unwrap() http.ResponseWriter (see
// http.ResponseController); when no Hijacker is found the client gets 500
// and the error matches ErrNotHijacker. Connection deadlines set by net/http
// are cleared, and bytes the client sent right after the request are kept.
func Upgrade(w http.ResponseWriter, r *http.Request, protocols ...string) (net.Conn, error) {
	var protocol string
	if v := gateValueFrom(r.Context()); v != nil {
		protocol = v.protocol
	} else {
		if err := CheckHandshake(r); err != nil {
			WriteError(w, err)
			return nil, err
		}
		var err error
		if protocol, err = SelectProtocol(r.Header[hWSProtocol], protocols); err != nil {
			WriteError(w, err)
			return nil, err
		}
	}
	return upgrade(w, r, protocolHeader(protocol))
}

// protocolHeader returns the response header that echoes p, or nil for no
// protocol. Gates build theirs once, in New; gobwas/ws only reads it.
func protocolHeader(p string) http.Header {
	if p == "" {
		return nil
	}
	return http.Header{"Sec-Websocket-Protocol": {p}}
}

// upgrade hijacks the connection and writes the 101 with gobwas/ws. r must
// have passed CheckHandshake, and protocol must be nil or the
// header (see protocolHeader) echoing an entry of r's list. The echo is
// handed to gobwas ready-made rather than through its Protocol callback,
// which would copy the entry and, as a closure, escape to the heap on every
// handshake.
func upgrade(w http.ResponseWriter, r *http.Request, protocol http.Header) (net.Conn, error) {
	if !canHijack(w) {
		WriteError(w, errNotHijacker)
		return nil, errNotHijacker
	}
	u := ws.HTTPUpgrader{Header: protocol}
	conn, rw, _, err := u.Upgrade(gobwasRequest(r), w)
	if err != nil {
		if conn != nil {
			conn.Close()
		}
		return nil, &Error{Status: http.StatusInternalServerError, Reason: "upgrade failed", kind: ErrUpgradeFailed, cause: err}
	}
	if rw != nil && rw.Reader.Buffered() > 0 {
		return &bufferedConn{Conn: conn, r: rw.Reader}, nil
	}
	return conn, nil
}

// canHijack reports whether w, or a writer it wraps, is an http.Hijacker.
func canHijack(w http.ResponseWriter) bool {
	for {
		switch t := w.(type) {
		case http.Hijacker:
			return true
		case interface{ Unwrap() http.ResponseWriter }:
			w = t.Unwrap()
		default:
			return false
		}
	}
}

// gobwasRequest returns r, or, in the rare case where r is valid by
// CheckHandshake's reading but gobwas/ws would read it otherwise (it looks
// only at the first line of each header and does not trim), a shallow copy
// with those headers in their plain form.
func gobwasRequest(r *http.Request) *http.Request {
	h := r.Header
	if firstIs(h[hUpgrade], "websocket") && firstHasUpgrade(h[hConnection]) &&
		len(h[hWSKey][0]) == keyLen && h[hWSVersion][0] == versionValue {
		return r
	}
	c := *r
	c.Header = h.Clone()
	c.Header[hUpgrade] = []string{"websocket"}
	c.Header[hConnection] = []string{"Upgrade"}
	c.Header[hWSKey] = []string{trimOWS(h[hWSKey][0])}
	c.Header[hWSVersion] = []string{versionValue}
	return &c
}

func firstIs(lines []string, v string) bool {
	return len(lines) > 0 && strings.EqualFold(lines[0], v)
}

// firstHasUpgrade accepts the Connection values browsers send; anything
// else is normalised rather than left to gobwas/ws's own list scanner.
func firstHasUpgrade(lines []string) bool {
	return len(lines) == 1 && (strings.EqualFold(lines[0], "Upgrade") || strings.EqualFold(lines[0], "keep-alive, Upgrade"))
}

// bufferedConn serves the bytes net/http had already read past the request
// before reading from the connection itself.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) {
	if c.r != nil {
		if c.r.Buffered() > 0 {
			return c.r.Read(p)
		}
		c.r = nil
	}
	return c.Conn.Read(p)
}
