package wsgate

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

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
//
// An HTTP/2 extended CONNECT request (RFC 8441; see CheckHandshake) is
// answered 200 with the same Sec-WebSocket-Protocol (and, behind a gate with
// Config.Compression, Sec-WebSocket-Extensions) headers, flushed, and the
// returned net.Conn is the stream: reads come from r.Body and writes go to w,
// flushed after each Write. Unlike a hijacked connection the stream ends
// when the handler returns, so the handler must keep running (and close the
// connection) until it is done with it; Gate.Handler does so. An expired
// read deadline ends the stream's read side for good and an expired write
// deadline resets the stream, as net/http does for HTTP/2 handlers.
// Without Gate.Middleware, Upgrade negotiates no extension.
func Upgrade(w http.ResponseWriter, r *http.Request, protocols ...string) (net.Conn, error) {
	if v := gateValueFrom(r.Context()); v != nil {
		return upgrade(w, r, v.protocol, v.selector, v.plain, v.ext)
	}
	plain, err := checkHandshake(r)
	if err != nil {
		writeError(w, err, defaultChallenge, false, r.ProtoMajor == 2)
		return nil, err
	}
	protocol, perr := SelectProtocol(r.Header[hWSProtocol], protocols)
	if perr != nil {
		writeError(w, perr, defaultChallenge, false, r.ProtoMajor == 2)
		return nil, perr
	}
	return upgrade(w, r, protocol, selectorFor(protocol), plain, "")
}

// newSelector returns the gobwas/ws Protocol callback that selects exactly
// p. Gates make theirs once, in New.
func newSelector(p string) func(string) bool {
	return func(offered string) bool { return offered == p }
}

// selectorFor returns newSelector(p), or nil for no protocol, keeping the
// callbacks it made in selectors so that Upgrade allocates no closure per
// handshake.
func selectorFor(p string) func(string) bool {
	if p == "" {
		return nil
	}
	if f, ok := selectors.m.Load(p); ok {
		return f.(func(string) bool)
	}
	if selectors.n.Load() >= maxCachedSelectors || selectors.n.Add(1) > maxCachedSelectors {
		return newSelector(p) // the count stops growing once the cache is full
	}
	// p is a substring of the request's Sec-WebSocket-Protocol line, which
	// may also hold a credential: the cache keeps a copy, never the line.
	p = strings.Clone(p)
	f := newSelector(p)
	selectors.m.Store(p, f)
	return f
}

// selectors caches the callbacks selectorFor makes. The protocols Upgrade
// echoes come from its callers' lists, so there are few; past
// maxCachedSelectors (a caller echoing whatever clients offer) a callback is
// made per upgrade instead.
var selectors struct {
	m sync.Map // protocol -> func(string) bool
	n atomic.Int32
}

const maxCachedSelectors = 64

// upgrade hijacks the connection and writes the 101 with gobwas/ws. r must
// have passed checkHandshake, which also said whether gobwas reads it as is
// (plain), and selector must be nil or select protocol, an entry of r's
// list. ext is the Sec-WebSocket-Extensions answer, or "". An HTTP/2
// extended CONNECT is answered by upgradeH2 instead.
func upgrade(w http.ResponseWriter, r *http.Request, protocol string, selector func(string) bool, plain bool, ext string) (net.Conn, error) {
	if r.ProtoMajor == 2 {
		return upgradeH2(w, r, protocol, ext)
	}
	if !canHijack(w) {
		WriteError(w, errNotHijacker)
		return nil, errNotHijacker
	}
	if !plain {
		r = normalised(r)
	}
	u := ws.HTTPUpgrader{Protocol: selector, Header: extensionsHeader(ext)}
	conn, rw, _, err := u.Upgrade(r, w)
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

// switchedStatus is the status of a successful upgrade of r: 101, or 200
// for an HTTP/2 extended CONNECT.
func switchedStatus(r *http.Request) int {
	if r.ProtoMajor == 2 {
		return http.StatusOK
	}
	return http.StatusSwitchingProtocols
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

// normalised returns a shallow copy of r with the handshake headers in the
// plain form gobwas/ws reads, for the rare request that is valid by
// CheckHandshake's reading but not by gobwas's.
func normalised(r *http.Request) *http.Request {
	h := r.Header
	c := *r
	c.Header = h.Clone()
	c.Header[hUpgrade] = []string{"websocket"}
	c.Header[hConnection] = []string{"Upgrade"}
	c.Header[hWSKey] = []string{trimOWS(h[hWSKey][0])}
	c.Header[hWSVersion] = []string{versionValue}
	return &c
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
