package wsgate

import (
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
