package wsgate

import (
	"bufio"
	"net"
	"net/http"
)

// Upgrade switches the handshake r to the WebSocket protocol and returns the
// connection, ready for frames (for example with
// github.com/gobwas/ws/wsutil). The caller owns and must close it.
//
// Behind Gate.Middleware, Upgrade is the gate's own accept step: it answers
// with the subprotocol and extension the gate chose, enforces the
// credential's expiry (see SetExpiry) and counts the connection among the
// gate's live sessions (see Gate.Shutdown). The returned connection then
// also implements sync.Locker, the lock to hold around each frame written,
// as Session.WriteLock. Without a gate in r's context, Upgrade checks r with
// CheckHandshake and upgrades it with no subprotocol and no extension,
// authenticating nothing.
//
// Every failure before the switch is answered with an HTTP error (see
// WriteError) and returned as an *Error. The ResponseWriter is hijacked
// through wrappers that implement Unwrap() http.ResponseWriter (see
// http.ResponseController); when no Hijacker is found the client gets 500
// and the error matches ErrUpgradeFailed. Connection deadlines set by
// net/http are cleared, and bytes the client sent right after the request
// are kept. Headers set on w before Upgrade are not sent.
//
// An HTTP/2 extended CONNECT request (RFC 8441; see CheckHandshake) is
// answered 200 with the same Sec-WebSocket-Protocol and
// Sec-WebSocket-Extensions headers, flushed, and the returned net.Conn is
// the stream: reads come from r.Body and writes go to w, flushed after each
// Write. Unlike a hijacked connection the stream ends when the handler
// returns, so the handler must keep running (and close the connection)
// until it is done with it; Gate.Handler does so. An expired read deadline
// ends the stream's read side for good and an expired write deadline resets
// the stream, as net/http does for HTTP/2 handlers.
func Upgrade(w http.ResponseWriter, r *http.Request) (net.Conn, error) {
	if u, ok := r.Context().Value(gateKey{}).(upgrader); ok {
		conn, err := u.upgrade(w, r)
		if err != nil {
			return nil, err.clone()
		}
		return conn, nil
	}
	key, err := checkHandshake(r)
	if err != nil {
		writeError(w, err, defaultChallenge, false, r.ProtoMajor == 2)
		return nil, err.clone()
	}
	conn, err := switchProtocols(w, r, key, "", "")
	if err != nil {
		return nil, err.clone()
	}
	return conn, nil
}

// upgrader is the accept step Gate.Middleware leaves in the request
// context for Upgrade.
type upgrader interface {
	upgrade(w http.ResponseWriter, r *http.Request) (net.Conn, *Error)
}

// switchedStatus is the status of a successful upgrade of r: 101, or 200
// for an HTTP/2 extended CONNECT.
func switchedStatus(r *http.Request) int {
	if r.ProtoMajor == 2 {
		return http.StatusOK
	}
	return http.StatusSwitchingProtocols
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
