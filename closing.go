package wsgate

import (
	"io"
	"net"
	"time"

	"github.com/gobwas/ws"
)

// Every close the gate starts on its own (a refusal in close-frame mode, a
// failed in-band authentication, an expired credential) completes the
// closing handshake of RFC 6455 section 7: the gate sends its close frame,
// waits for the client's close frame and only then closes the connection.
// Browsers depend on the order. Firefox reports wasClean=false, and often
// skips the open event, when the server closes TCP (or half-closes it) right
// after its close frame; and a TCP connection closed with unread bytes ends
// in a reset that can destroy the close frame before the client reads it.
//
// The wait is bounded by closeLinger and maxLingerBytes: a client that stays
// silent is let go after the linger, one that floods is cut off after the
// byte bound. What arrives meanwhile is not interpreted beyond the frame
// headers needed to find the close frame; payloads are skipped, never
// unmasked or kept.

// closeLinger and maxLingerBytes bound the wait for the client's close frame.
const (
	closeLinger    = time.Second
	maxLingerBytes = 1 << 20
)

// unknownFraming is the skip of closeHandshake and awaitClose for a stream
// whose next byte may not start a frame (after a protocol error, or a read
// cut short in a payload): nothing is parsed, bytes are discarded until the
// client ends the stream or a bound is reached.
const unknownFraming = -1

// closeSent is the skip of closeHandshake for a connection whose closing
// handshake is already done: only the connection is left to close.
const closeSent = -2

// closeHandshake sends a close frame with code and reason (within
// closeWriteTimeout), waits for the client's close frame (see awaitClose)
// and closes conn. skip is how many payload bytes of a frame whose header
// was already read are still to come, unknownFraming, or closeSent.
func closeHandshake(conn net.Conn, code ws.StatusCode, reason string, skip int64) {
	if skip != closeSent && writeClose(conn, code, reason) == nil {
		awaitClose(conn, time.Now().Add(closeLinger), skip)
	}
	conn.Close()
}

// awaitClose reads from conn until the client's close frame has been read
// whole, the client ends the stream, deadline passes or maxLingerBytes have
// been read, and reports whether the close frame arrived. Frames before it
// are skipped by their headers. Reading the close frame's payload too leaves
// nothing unread, so the connection then ends with an orderly FIN.
func awaitClose(conn net.Conn, deadline time.Time, skip int64) bool {
	if conn.SetReadDeadline(deadline) != nil {
		return false
	}
	r := &io.LimitedReader{R: conn, N: maxLingerBytes}
	if skip < 0 {
		_, _ = io.Copy(io.Discard, r)
		return false
	}
	if n, _ := io.CopyN(io.Discard, r, skip); n < skip {
		return false
	}
	// Each header is at least two bytes, so the bound on r bounds the loop.
	for {
		h, err := ws.ReadHeader(r)
		if err != nil {
			return false
		}
		if n, _ := io.CopyN(io.Discard, r, h.Length); n < h.Length {
			return false
		}
		if h.OpCode == ws.OpClose {
			return true
		}
	}
}

// writeClose sends a close frame with code and reason, within
// closeWriteTimeout, and reports the write error. The deadline is lifted
// after the write: over HTTP/2 an expired write deadline resets the stream,
// which would destroy the close frame while the gate waits for the reply.
func writeClose(conn net.Conn, code ws.StatusCode, reason string) error {
	_ = conn.SetWriteDeadline(time.Now().Add(closeWriteTimeout))
	err := ws.WriteFrame(conn, ws.NewCloseFrame(ws.NewCloseFrameBody(code, closeReason(reason))))
	if err == nil {
		_ = conn.SetWriteDeadline(time.Time{})
	}
	return err
}
