package wsgate

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/gobwas/ws"
)

// DefaultInBandTimeout is how long a connection may wait for its in-band
// authentication message when InBandAuth.Timeout is 0.
const DefaultInBandTimeout = 5 * time.Second

// DefaultInBandMaxSize is the largest in-band authentication message, in
// bytes, when InBandAuth.MaxSize is 0.
const DefaultInBandMaxSize = 4096

// InBandAuth configures in-band (first-message) authentication, for clients
// that can carry a credential in none of the handshake's ways. It applies to
// Gate.Handler only: Gate.Middleware does not own the connection, so there it
// changes nothing and a handshake without a credential is refused as usual.
//
// When no extractor finds a credential in the handshake, the gate completes
// the upgrade instead of refusing it (every other check, the origin policy
// among them, still applies first) and reads one message. That message must
// be the first frame, an unfragmented text or binary frame of at most
// MaxSize bytes, arriving within Timeout. Parse turns it into a Credential,
// which goes through the gate's Verifier like any other; on success the
// callback of Gate.Handler runs with Source SourceMessage and the principal,
// exactly as for a handshake credential. Otherwise the gate sends a close
// frame and closes the connection, and the callback never runs:
//
//   - no message within Timeout: CloseAuthTimeout (4408);
//   - a message larger than MaxSize: CloseMessageTooBig (1009); its payload
//     is never kept (it is skipped while the gate waits, briefly, for the
//     client's close frame, as for RefuseCloseFrame);
//   - a first frame that is not a whole data message: CloseUnauthorized (4401);
//   - Parse fails: CloseUnauthorized, reason "malformed credential";
//   - the Verifier refuses: as CloseCodeFor maps the refusal (4401, 4403, 1011).
//
// A client that sends an unmasked or otherwise invalid frame gets 1002.
// Bytes the client sends after the authentication message are left for the
// application to read.
type InBandAuth struct {
	// Parse reads the credential from the message. nil means ParseJSONAuth.
	// Its error is never sent to the client; the Source it sets is replaced
	// by SourceMessage.
	Parse func(msg []byte) (Credential, error)
	// Timeout bounds the wait for the message; 0 means DefaultInBandTimeout.
	// The Verifier then has Config.VerifyTimeout of its own.
	Timeout time.Duration
	// MaxSize is the largest message accepted, in bytes; 0 means
	// DefaultInBandMaxSize.
	MaxSize int
}

// ParseJSONAuth reads the in-band message {"type":"auth","token":"..."}, the
// default of InBandAuth.Parse. Other fields are ignored. A message that is not
// such a JSON object, has another type or an empty token yields an error
// matching ErrMalformedCredential.
func ParseJSONAuth(msg []byte) (Credential, error) {
	var m struct {
		Type  string `json:"type"`
		Token string `json:"token"`
	}
	if json.Unmarshal(msg, &m) != nil || m.Type != "auth" || m.Token == "" {
		return Credential{}, errMalformed401.withSource(SourceMessage)
	}
	return Credential{Source: SourceMessage, Token: m.Token}, nil
}

// withDefaults returns a copy of a with its zero fields set.
func (a InBandAuth) withDefaults() *InBandAuth {
	if a.Parse == nil {
		a.Parse = ParseJSONAuth
	}
	if a.Timeout <= 0 {
		a.Timeout = DefaultInBandTimeout
	}
	if a.MaxSize <= 0 {
		a.MaxSize = DefaultInBandMaxSize
	}
	return &a
}

var errNotAuthMessage = refusal(ErrMalformedCredential, http.StatusUnauthorized, "invalid_token", "first message must carry the credential")

// serveInBand upgrades a handshake that carried no credential, authenticates
// its first message and, on success, runs serve.
func (g *Gate[P]) serveInBand(w http.ResponseWriter, r *http.Request, start time.Time, serve func(context.Context, Session[P])) {
	protocol := g.refusalEcho(r.Header[hWSProtocol])
	plain, _ := checkHandshake(r)
	conn, err := upgrade(w, r, protocol, g.selectors[protocol], plain, "")
	if err != nil {
		if g.observed() {
			g.observe(r, start, http.StatusInternalServerError, SourceMessage, err, 0)
		}
		return
	}
	defer conn.Close()
	msg, code, reason, skip := readAuthMessage(conn, g.inband)
	if msg == nil {
		if code != 0 {
			closeHandshake(conn, code, reason, skip)
		}
		if g.observed() {
			g.observe(r, start, http.StatusUnauthorized, SourceMessage, inBandFailure(code, reason), code)
		}
		return
	}
	cred, perr := g.inband.Parse(msg)
	if perr != nil {
		closeHandshake(conn, CloseUnauthorized, errMalformed401.Reason, 0)
		if g.observed() {
			g.observe(r, start, http.StatusUnauthorized, SourceMessage, errMalformed401.withSource(SourceMessage), CloseUnauthorized)
		}
		return
	}
	cred.Source = SourceMessage
	a := Auth[P]{Source: SourceMessage, Protocol: protocol}
	var verr *Error
	a.Principal, a.Expires, verr = g.verifyCredential(r, cred)
	if verr != nil {
		code, reason, _ := CloseCodeFor(verr)
		closeHandshake(conn, code, reason, 0)
		if g.observed() {
			g.observe(r, start, verr.Status, SourceMessage, verr, code)
		}
		return
	}
	if g.observed() {
		g.observe(r, start, switchedStatus(r), SourceMessage, nil, 0)
	}
	g.serveSession(r, conn, a, serve)
}

// readAuthMessage reads the first message of conn under the limits of a. On
// failure msg is nil, code says which close frame to send (0 for none: the
// client went away) and skip how much of the refused frame's payload is
// still unread (see closeHandshake).
func readAuthMessage(conn net.Conn, a *InBandAuth) (msg []byte, code ws.StatusCode, reason string, skip int64) {
	_ = conn.SetReadDeadline(time.Now().Add(a.Timeout))
	h, err := ws.ReadHeader(conn)
	if err != nil {
		code, reason = readFailure(err)
		return nil, code, reason, 0
	}
	if ws.CheckHeader(h, ws.StateServerSide) != nil {
		return nil, ws.StatusProtocolError, "protocol error", unknownFraming
	}
	if !h.Fin || (h.OpCode != ws.OpText && h.OpCode != ws.OpBinary) {
		return nil, CloseUnauthorized, errNotAuthMessage.Reason, h.Length
	}
	// The length is checked before anything of the payload is read or
	// allocated.
	if h.Length > int64(a.MaxSize) {
		return nil, CloseMessageTooBig, "authentication message too big", h.Length
	}
	msg = make([]byte, h.Length)
	if _, err := io.ReadFull(conn, msg); err != nil {
		code, reason = readFailure(err)
		return nil, code, reason, unknownFraming
	}
	ws.Cipher(msg, h.Mask, 0)
	_ = conn.SetReadDeadline(time.Time{})
	return msg, 0, "", 0
}

// inBandFailure is the refusal OnHandshake and the logger get for a first
// message that could not be read: ErrNoCredential when none arrived (the
// deadline passed, or the client went away), ErrMalformedCredential when
// what arrived was not a usable message. Its reason is the close frame's.
func inBandFailure(code ws.StatusCode, reason string) *Error {
	switch code {
	case 0:
		return refusal(ErrNoCredential, http.StatusUnauthorized, "", "client went away before authenticating").withSource(SourceMessage)
	case CloseAuthTimeout:
		return refusal(ErrNoCredential, http.StatusUnauthorized, "", reason).withSource(SourceMessage)
	}
	return refusal(ErrMalformedCredential, http.StatusUnauthorized, "", reason).withSource(SourceMessage)
}

func readFailure(err error) (ws.StatusCode, string) {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return CloseAuthTimeout, "authentication timed out"
	}
	return 0, ""
}
