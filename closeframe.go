package wsgate

import (
	"io"
	"net"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// Close codes the gate sends, in the range RFC 6455 leaves to applications.
// They mirror the HTTP status of the refusal. The gate also sends
// ws.StatusPolicyViolation (1008) for a malformed or unusable subprotocol
// list, ws.StatusMessageTooBig (1009) for an oversized in-band
// authentication message, and ws.StatusInternalServerError (1011) when the
// verifier failed or overran its deadline (the client may retry later).
const (
	// CloseUnauthorized (4401): the credential is missing, unreadable,
	// ambiguous or invalid, or it has expired on a live connection (reason
	// "credential expired").
	CloseUnauthorized ws.StatusCode = 4401
	// CloseForbidden (4403): the credential is valid but may not open this
	// socket (ErrForbidden).
	CloseForbidden ws.StatusCode = 4403
	// CloseAuthTimeout (4408): no in-band authentication message arrived
	// within InBandAuth.Timeout.
	CloseAuthTimeout ws.StatusCode = 4408
)

// closeWriteTimeout bounds the writing of a close frame the gate sends on
// its own (a refusal, a failed in-band authentication, an expiry).
const closeWriteTimeout = time.Second

// maxCloseReason is the most bytes of reason a close frame can carry: a
// control frame's payload is at most 125 bytes, two of which are the code.
const maxCloseReason = ws.MaxControlFramePayloadSize - 2

// closeReason cuts reason to fit a close frame without splitting a UTF-8
// sequence.
func closeReason(reason string) string {
	if len(reason) <= maxCloseReason {
		return reason
	}
	n := maxCloseReason
	for n > 0 && !utf8.RuneStart(reason[n]) {
		n--
	}
	return reason[:n]
}

// writeClose sends a close frame with code and reason, within
// closeWriteTimeout, and reports the write error.
func writeClose(conn net.Conn, code ws.StatusCode, reason string) error {
	_ = conn.SetWriteDeadline(time.Now().Add(closeWriteTimeout))
	return ws.WriteFrame(conn, ws.NewCloseFrame(ws.NewCloseFrameBody(code, closeReason(reason))))
}

// closeWith sends a close frame and closes conn. It half-closes a TCP
// connection first, so the client reads the frame and then an orderly end of
// stream rather than a reset.
func closeWith(conn net.Conn, code ws.StatusCode, reason string) {
	if writeClose(conn, code, reason) == nil {
		closeWrite(conn)
	}
	conn.Close()
}

// closeWrite half-closes conn when it can (TCP, TLS) and reports whether it
// did.
func closeWrite(conn net.Conn) bool {
	cw, ok := unwrapConn(conn).(interface{ CloseWrite() error })
	return ok && cw.CloseWrite() == nil
}

// refuseWith is closeWith for a connection the gate refuses before any
// application code has it: after the half-close it reads and discards what
// the client still sends (the rest of a message, its own close frame) until
// the client's end of stream, for at most closeLinger and maxLingerBytes.
// Closing a TCP socket with unread bytes makes the kernel answer with a
// reset, and a browser that sees the reset reports 1006 instead of the
// close frame. Nothing read here is interpreted.
func refuseWith(conn net.Conn, code ws.StatusCode, reason string) {
	if writeClose(conn, code, reason) == nil && closeWrite(conn) {
		_ = conn.SetReadDeadline(time.Now().Add(closeLinger))
		_, _ = io.CopyN(io.Discard, conn, maxLingerBytes)
	}
	conn.Close()
}

// closeLinger and maxLingerBytes bound refuseWith's wait for the client's
// end of stream.
const (
	closeLinger    = time.Second
	maxLingerBytes = 1 << 20
)

func unwrapConn(c net.Conn) net.Conn {
	if b, ok := c.(*bufferedConn); ok {
		return b.Conn
	}
	return c
}
