package wsgate

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/gobwas/ws"
)

// defaultInBandTimeout is how long a connection may wait for its in-band
// authentication message when InBandAuth.Timeout is 0.
const defaultInBandTimeout = 5 * time.Second

// defaultInBandMaxSize is the largest in-band authentication message, in
// bytes, when InBandAuth.MaxSize is 0.
const defaultInBandMaxSize = 4096

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
//   - a message larger than MaxSize: ws.StatusMessageTooBig (1009); its payload
//     is never kept (it is skipped while the gate waits, briefly, for the
//     client's close frame, as for Config.RefuseWithCloseFrame);
//   - a first frame that is not a whole data message: CloseUnauthorized (4401);
//   - Parse fails: CloseUnauthorized, reason "malformed credential";
//   - the Verifier refuses: with the refusal's Error.CloseCode (4401, 4403, 1011).
//
// A client that sends an unmasked or otherwise invalid frame gets 1002.
// Bytes the client sends after the authentication message are left for the
// application to read.
type InBandAuth struct {
	// Parse reads the credential from the message. nil means parseJSONAuth.
	// Its error is never sent to the client; the Source it sets is replaced
	// by SourceMessage.
	Parse func(msg []byte) (Credential, error)
	// Timeout bounds the wait for the message; 0 means defaultInBandTimeout.
	// The Verifier then has Config.VerifyTimeout of its own.
	Timeout time.Duration
	// MaxSize is the largest message accepted, in bytes; 0 means
	// defaultInBandMaxSize.
	MaxSize int
}

// parseJSONAuth reads the in-band message {"type":"auth","token":"..."}, the
// default of InBandAuth.Parse. Other fields are ignored. A message that is not
// such a JSON object, has another type or an empty token yields an error
// matching ErrMalformedCredential.
func parseJSONAuth(msg []byte) (Credential, error) {
	var m struct {
		Type  string `json:"type"`
		Token string `json:"token"`
	}
	if json.Unmarshal(msg, &m) != nil || m.Type != "auth" || m.Token == "" {
		return Credential{}, errMalformed401.withSource(SourceMessage)
	}
	return NewCredential(SourceMessage, m.Token), nil
}

// withDefaults returns a copy of a with its zero fields set.
func (a InBandAuth) withDefaults() *InBandAuth {
	if a.Parse == nil {
		a.Parse = parseJSONAuth
	}
	if a.Timeout <= 0 {
		a.Timeout = defaultInBandTimeout
	}
	if a.MaxSize <= 0 {
		a.MaxSize = defaultInBandMaxSize
	}
	return &a
}

var errNotAuthMessage = refusal(ErrMalformedCredential, http.StatusUnauthorized, "invalid_token", "first message must carry the credential", CloseUnauthorized)

// serveInBand upgrades a handshake that carried no credential, authenticates
// its first message and, on success, runs serve.
func (g *Gate[P]) serveInBand(w http.ResponseWriter, r *http.Request, start time.Time, serve func(context.Context, Session[P])) {
	protocol := g.refusalEcho(r.Header[hWSProtocol])
	key, _ := checkHandshake(r)
	conn, err := switchProtocols(w, r, key, protocol, "")
	if err != nil {
		if g.observed() {
			g.observe(r, start, err.Status, SourceMessage, err.clone(), 0)
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
			g.observe(r, start, http.StatusUnauthorized, SourceMessage, errMalformed401.withSource(SourceMessage).clone(), CloseUnauthorized)
		}
		return
	}
	cred.Source = SourceMessage
	a := Auth[P]{Source: SourceMessage, Protocol: protocol}
	var verr *Error
	a.hs, verr = g.verifyLimited(r, cred, &a.Principal, nil)
	if verr == nil {
		verr = g.join(r, &a)
	}
	if verr != nil {
		code := verr.CloseCode
		if code == 0 {
			code = ws.StatusInternalServerError
		}
		closeHandshake(conn, code, closeReason(verr.Reason), 0)
		if g.observed() {
			g.observe(r, start, verr.Status, SourceMessage, verr.clone(), code)
		}
		return
	}
	a.Expires = a.hs.vctx.expiry
	if g.observed() {
		g.observe(r, start, switchedStatus(r), SourceMessage, nil, 0)
	}
	g.serveSession(r, conn, a, serve)
}

// readAuthMessage reads the first message of conn under the limits of a. On
// failure msg is nil, code says which close frame to send (0 for none: the
// client went away) and skip how much of the refused frame's payload is
// still unread (see closeHandshake), or closeSent when the closing handshake
// is already done.
//
// The wait for the message is a timer, not a read deadline: over HTTP/2 an
// expired read deadline ends the stream's read side for good, and the gate
// could then no longer read the client's reply to its 4408. When the timer
// fires it sends the close frame and gives the read a deadline closeLinger
// later; the read then returns the client's close frame.
func readAuthMessage(conn net.Conn, a *InBandAuth) (msg []byte, code ws.StatusCode, reason string, skip int64) {
	start := time.Now()
	_ = conn.SetReadDeadline(time.Time{})
	at := startAuthTimer(conn, a.Timeout)
	h, err := ws.ReadHeader(conn)
	if at.finish() {
		at.drain(conn, h, err)
		return nil, CloseAuthTimeout, authTimedOut, closeSent
	}
	if err != nil {
		return nil, 0, "", 0
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
		return nil, ws.StatusMessageTooBig, "authentication message too big", h.Length
	}
	// The payload must arrive within what is left of the timeout.
	_ = conn.SetReadDeadline(start.Add(a.Timeout))
	msg = make([]byte, h.Length)
	if _, err := io.ReadFull(conn, msg); err != nil {
		code, reason = readFailure(err)
		return nil, code, reason, unknownFraming
	}
	ws.Cipher(msg, h.Mask, 0)
	_ = conn.SetReadDeadline(time.Time{})
	return msg, 0, "", 0
}

const authTimedOut = "authentication timed out"

// authTimer sends CloseAuthTimeout when no frame header arrived in time.
type authTimer struct {
	mu       sync.Mutex
	t        *time.Timer
	done     bool
	fired    bool
	deadline time.Time // of the wait for the client's close, once fired
}

func startAuthTimer(conn net.Conn, d time.Duration) *authTimer {
	at := &authTimer{}
	at.mu.Lock()
	defer at.mu.Unlock()
	at.t = time.AfterFunc(d, func() {
		at.mu.Lock()
		defer at.mu.Unlock()
		if at.done {
			return
		}
		at.fired = true
		at.deadline = time.Now().Add(closeLinger)
		if writeClose(conn, CloseAuthTimeout, authTimedOut) != nil {
			at.deadline = time.Now()
		}
		_ = conn.SetReadDeadline(at.deadline)
	})
	return at
}

// finish stops the timer, waiting for its close frame if it is being
// written, and reports whether it fired.
func (at *authTimer) finish() bool {
	at.mu.Lock()
	defer at.mu.Unlock()
	at.done = true
	at.t.Stop()
	return at.fired
}

// drain completes the closing handshake after the timer fired, given what
// the pending read returned: the client's close frame, or a frame that
// crossed the close frame, or an error.
func (at *authTimer) drain(conn net.Conn, h ws.Header, err error) {
	switch {
	case err != nil:
	case h.OpCode == ws.OpClose:
		_, _ = io.CopyN(io.Discard, conn, h.Length)
	default:
		awaitClose(conn, at.deadline, h.Length)
	}
}

// inBandFailure is the refusal OnHandshake and the logger get for a first
// message that could not be read: ErrNoCredential when none arrived (the
// deadline passed, or the client went away), ErrMalformedCredential when
// what arrived was not a usable message. Its reason is the close frame's.
func inBandFailure(code ws.StatusCode, reason string) *Error {
	switch code {
	case 0:
		return refusal(ErrNoCredential, http.StatusUnauthorized, "", "client went away before authenticating", 0).withSource(SourceMessage)
	case CloseAuthTimeout:
		return refusal(ErrNoCredential, http.StatusUnauthorized, "", reason, code).withSource(SourceMessage)
	}
	return refusal(ErrMalformedCredential, http.StatusUnauthorized, "", reason, code).withSource(SourceMessage)
}

func readFailure(err error) (ws.StatusCode, string) {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return CloseAuthTimeout, authTimedOut
	}
	return 0, ""
}
