package wsgate

import (
	"errors"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// RefusalMode says how a Gate answers a handshake it refuses.
type RefusalMode uint8

const (
	// RefuseHTTP answers every refusal with an HTTP error before the upgrade
	// (see Error). It is the default. Browsers show the page only a close
	// with code 1006, whatever the status.
	RefuseHTTP RefusalMode = iota

	// RefuseCloseFrame answers credential, verification and subprotocol
	// refusals by completing the upgrade and then sending a close frame
	// whose code and reason the page can read (CloseEvent.code and
	// .reason): see CloseCodeFor. A request that fails CheckHandshake or
	// the origin policy (including a cookie without an allowed Origin) is
	// still answered with an HTTP error, as is a failure to upgrade: those
	// are not safe or not possible to upgrade.
	//
	// The refused connection runs no application code and no message the
	// client sends is interpreted: the gate writes the close frame (bounded
	// by CloseWriteTimeout), then waits for the client's close frame,
	// skipping whatever comes before it (at most a second and 1 MiB), and
	// only then closes the connection, over HTTP/1.1 and HTTP/2 alike. A
	// browser reports such a close with wasClean true.
	RefuseCloseFrame
)

// WebSocket close codes the gate sends. The 4xxx codes are in the range RFC
// 6455 leaves to applications; they mirror the HTTP status of the refusal.
const (
	// ClosePolicyViolation (1008): the handshake's subprotocol list is
	// malformed (ErrProtocols) or offers no protocol the server speaks
	// (ErrNoProtocol).
	ClosePolicyViolation ws.StatusCode = 1008
	// CloseMessageTooBig (1009): the in-band authentication message is
	// larger than InBandAuth.MaxSize.
	CloseMessageTooBig ws.StatusCode = 1009
	// CloseInternalError (1011): the verifier failed (ErrVerifier) or did
	// not answer in time (ErrVerifyTimeout). The client may retry later.
	CloseInternalError ws.StatusCode = 1011
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

// CloseWriteTimeout bounds the writing of a close frame the gate sends on
// its own (a refusal, a failed in-band authentication, an expiry).
const CloseWriteTimeout = time.Second

// maxCloseReason is the most bytes of reason a close frame can carry: a
// control frame's payload is at most 125 bytes, two of which are the code.
const maxCloseReason = ws.MaxControlFramePayloadSize - 2

// CloseCodeFor returns the close code and reason RefuseCloseFrame sends for
// err, and ok=false for a refusal that is always answered with HTTP (a
// malformed handshake, a refused origin, a failed upgrade) or an err that is
// not an *Error. The reason is the Error's Reason cut to fit a close frame;
// it never contains a credential or other client-supplied text.
func CloseCodeFor(err error) (code ws.StatusCode, reason string, ok bool) {
	var e *Error
	if !errors.As(err, &e) {
		return 0, "", false
	}
	switch e.kind {
	case ErrNoCredential, ErrMalformedCredential, ErrInvalidToken, ErrAmbiguousCredential:
		code = CloseUnauthorized
	case ErrForbidden:
		code = CloseForbidden
	case ErrProtocols, ErrNoProtocol:
		code = ClosePolicyViolation
	case ErrVerifier, ErrVerifyTimeout:
		code = CloseInternalError
	default:
		return 0, "", false
	}
	return code, closeReason(e.Reason), true
}

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

// refuse answers a refused handshake as the gate's RefusalMode says, and
// returns the code of the close frame it sent, or 0 for an HTTP answer.
func (g *Gate[P]) refuse(w http.ResponseWriter, r *http.Request, err *Error) ws.StatusCode {
	code, reason, ok := CloseCodeFor(err)
	if g.refusal != RefuseCloseFrame || !ok {
		writeError(w, err, g.challenges, g.basic, r.ProtoMajor == 2)
		return 0
	}
	plain, _ := checkHandshake(r)
	protocol := g.refusalEcho(r.Header[hWSProtocol])
	conn, uerr := upgrade(w, r, protocol, g.selectors[protocol], plain, "")
	if uerr != nil {
		return 0
	}
	closeHandshake(conn, code, reason, 0)
	return code
}

// Refuse answers err, a refusal from Gate.Authenticate, the way the gate's
// RefusalMode says: with Gate.WriteError, or, under RefuseCloseFrame and for
// the refusals CloseCodeFor maps, by upgrading r and sending a close frame.
// It lets a framework that calls Authenticate itself refuse like the gate.
func (g *Gate[P]) Refuse(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	if !errors.As(err, &e) {
		writeError(w, err, g.challenges, g.basic, r.ProtoMajor == 2)
		return
	}
	g.refuse(w, r, e)
}

// refusalEcho returns the protocol the 101 of a connection that will be
// refused (or authenticated in band) echoes: the first of the gate's
// Protocols the client offered, else an offered marker, else "" (also for a
// malformed list). Entries that may hold a credential (the entry after a
// marker, an entry with a prefix form's prefix) are never chosen.
func (g *Gate[P]) refusalEcho(lines []string) string {
	var o offered
	if o.parse(lines) != nil {
		return ""
	}
	for i, e := range o.entries() {
		for _, ex := range g.extractors {
			switch {
			case ex.kind == kindSubprotocol && e == ex.name && i+1 < o.n:
				o.markSecret(i + 1)
			case ex.kind == kindSubprotocolPrefix && strings.HasPrefix(e, ex.name):
				o.markSecret(i)
			}
		}
	}
	if p := o.selectFor(g.protocols); p != "" {
		return p
	}
	for i, e := range o.entries() {
		if o.isSecret(i) {
			continue
		}
		for _, ex := range g.extractors {
			if ex.kind == kindSubprotocol && e == ex.name {
				return e
			}
		}
	}
	return ""
}
