package wsgate

import (
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/gobwas/ws"
)

// Sentinel errors identify why a handshake was refused. Every refusal the
// package returns is an *Error that matches exactly one of them with
// errors.Is, and carries the HTTP status it was answered with.
var (
	// ErrHandshake: the request is no valid WebSocket opening handshake
	// (see CheckHandshake for each case and its status): not HTTP/1.1 or
	// an HTTP/2 extended CONNECT with :protocol websocket (400), not GET
	// (405 with Allow: GET), no Host (400), Upgrade without websocket (426
	// with Upgrade: websocket), Connection without upgrade (400), a missing,
	// repeated (400) or unsupported (426) Sec-WebSocket-Version (both with
	// Sec-WebSocket-Version: 13), a missing, repeated or malformed
	// Sec-WebSocket-Key (400), or a body (400). Error.Reason says which.
	ErrHandshake = errors.New("wsgate: not a valid WebSocket handshake")
	// ErrOrigin: the Origin header failed the origin policy. Status 403.
	ErrOrigin = errors.New("wsgate: origin not allowed")
	// ErrProtocols: the Sec-WebSocket-Protocol list is malformed (a
	// character outside the RFC 7230 token set, a duplicate, more than 32
	// entries or an unreasonable number of empty ones), or a subprotocol
	// credential in prefix form came without an application protocol the
	// server speaks, so there is nothing safe to echo. Status 400.
	ErrProtocols = errors.New("wsgate: unusable Sec-WebSocket-Protocol")
	// ErrNoCredential: no configured extractor found a credential. Status 401
	// with a Bearer (or, when configured, Basic) challenge.
	ErrNoCredential = errors.New("wsgate: no credential")
	// ErrAmbiguousCredential: credentials were found in more than one place,
	// or one place holds two (two cookies of the same name, a repeated query
	// parameter, two Authorization lines). Status 400, error="invalid_request".
	ErrAmbiguousCredential = errors.New("wsgate: more than one credential")
	// ErrMalformedCredential: a credential is present but cannot be read
	// (bad Basic encoding, empty value, a marker with no token after it).
	// Status 400 or 401, as each extractor documents.
	ErrMalformedCredential = errors.New("wsgate: malformed credential")
	// ErrInvalidToken is what a Verifier returns (or wraps) for an unknown,
	// expired or otherwise invalid credential. Status 401,
	// error="invalid_token".
	ErrInvalidToken = errors.New("wsgate: invalid token")
	// ErrForbidden is what a Verifier returns (or wraps) for a valid
	// credential that may not open this socket. Status 403,
	// error="insufficient_scope".
	ErrForbidden = errors.New("wsgate: forbidden")
	// ErrVerifyTimeout: the verifier did not answer before the verification
	// deadline, or the client went away meanwhile. Status 503.
	ErrVerifyTimeout = errors.New("wsgate: verification timed out")
	// ErrVerifier: the verifier failed with an error that is none of the
	// above. Status 500; the verifier's error is reachable with
	// errors.Unwrap and errors.As, but is never sent to the client.
	ErrVerifier = errors.New("wsgate: verifier failed")
	// ErrUpgradeFailed: the upgrade could not be done after all checks
	// passed: the ResponseWriter (after unwrapping) cannot be hijacked
	// (answered 500), or hijacking or writing the 101 failed (for example,
	// the client went away; nothing more can be answered).
	ErrUpgradeFailed = errors.New("wsgate: upgrade failed")
)

// Error is a refused handshake. Status is the HTTP status the client was (or
// should be) answered with, Code the RFC 6750 error code where one applies
// ("invalid_request", "invalid_token", "insufficient_scope"), Reason a
// short text for the response body, the close frame and logs, and CloseCode
// the close frame's code when the gate refuses after the upgrade instead
// (Config.RefuseWithCloseFrame; 0 for the refusals always answered with
// HTTP). Reason never contains a header value, credential or any other
// client-supplied text.
//
// An *Error matches its sentinel (ErrHandshake, ErrOrigin, ...) with
// errors.Is.
// For a verifier's refusal, errors.Unwrap returns the verifier's error, so
// errors.Is and errors.As reach it too. Every *Error the package returns is
// the caller's own copy: changing it changes no other refusal.
type Error struct {
	Status    int
	Code      string
	Reason    string
	CloseCode ws.StatusCode
	// Source is where the offending credential was found, or SourceNone.
	Source Source

	kind       error
	cause      error
	start      time.Time // when the gate first saw the request, if observed
	hdr        extraHeader
	retryAfter time.Duration // > 0: answered with Retry-After
}

// extraHeader names the header a handshake refusal answers with besides
// the usual ones.
type extraHeader uint8

const (
	noHeader      extraHeader = iota
	allowHeader               // Allow: GET
	upgradeHeader             // Upgrade: websocket
	versionHeader             // Sec-WebSocket-Version: 13
)

// handshakeRefusal is refusal for ErrHandshake, with its extra header.
func handshakeRefusal(status int, reason string, hdr extraHeader) *Error {
	e := refusal(ErrHandshake, status, "", reason, 0)
	e.hdr = hdr
	return e
}

// Error returns "wsgate: " followed by the reason and, for a verifier's
// refusal, the verifier's error.
func (e *Error) Error() string {
	if e.cause != nil {
		return "wsgate: " + e.Reason + ": " + e.cause.Error()
	}
	return "wsgate: " + e.Reason
}

// Unwrap returns the verifier's error, or nil.
func (e *Error) Unwrap() error { return e.cause }

// Is reports whether target is e's sentinel.
func (e *Error) Is(target error) bool { return target == e.kind }

func refusal(kind error, status int, code, reason string, close ws.StatusCode) *Error {
	return &Error{Status: status, Code: code, Reason: reason, CloseCode: close, kind: kind}
}

// clone returns a copy of e for a caller to keep.
func (e *Error) clone() *Error {
	c := *e
	return &c
}

// withSource returns e, or a copy of it naming the credential source.
func (e *Error) withSource(s Source) *Error {
	if e.Source == s {
		return e
	}
	c := *e
	c.Source = s
	return &c
}

// The fixed refusals are made once, so refusing costs no allocation inside
// the pipeline; callers only ever get copies.
var (
	errHTTPVersion    = handshakeRefusal(http.StatusBadRequest, "WebSocket handshake requires HTTP/1.1", noHeader)
	errMethod         = handshakeRefusal(http.StatusMethodNotAllowed, "WebSocket handshake requires GET", allowHeader)
	errHost           = handshakeRefusal(http.StatusBadRequest, "Host header required", noHeader)
	errUpgrade        = handshakeRefusal(http.StatusUpgradeRequired, "Upgrade: websocket required", upgradeHeader)
	errConnection     = handshakeRefusal(http.StatusBadRequest, "Connection: Upgrade required", noHeader)
	errVersionMissing = handshakeRefusal(http.StatusBadRequest, "exactly one Sec-WebSocket-Version required", versionHeader)
	errVersion        = handshakeRefusal(http.StatusUpgradeRequired, "Sec-WebSocket-Version 13 required", versionHeader)
	errKey            = handshakeRefusal(http.StatusBadRequest, "invalid Sec-WebSocket-Key", noHeader)
	errBody           = handshakeRefusal(http.StatusBadRequest, "handshake request must not have a body", noHeader)
	errOrigin         = refusal(ErrOrigin, http.StatusForbidden, "", "origin not allowed", 0)
	errCrossSite      = refusal(ErrOrigin, http.StatusForbidden, "", "cross-site request not allowed", 0)
	errOriginRequired = refusal(ErrOrigin, http.StatusForbidden, "", "Origin header required", 0)
	errAmbientOrigin  = refusal(ErrOrigin, http.StatusForbidden, "", "cookie or Basic credential requires an allowed Origin", 0)
	errProtocols      = refusal(ErrProtocols, http.StatusBadRequest, "", "malformed Sec-WebSocket-Protocol", ws.StatusPolicyViolation)
	errNoProtocol     = refusal(ErrProtocols, http.StatusBadRequest, "", "no supported subprotocol offered", ws.StatusPolicyViolation)
	errNoCredential   = refusal(ErrNoCredential, http.StatusUnauthorized, "", "credential required", CloseUnauthorized)
	errAmbiguous      = refusal(ErrAmbiguousCredential, http.StatusBadRequest, "invalid_request", "more than one credential", CloseUnauthorized)
	errMalformed400   = refusal(ErrMalformedCredential, http.StatusBadRequest, "invalid_request", "malformed credential", CloseUnauthorized)
	errMalformed401   = refusal(ErrMalformedCredential, http.StatusUnauthorized, "invalid_token", "malformed credential", CloseUnauthorized)
	errInvalidToken   = refusal(ErrInvalidToken, http.StatusUnauthorized, "invalid_token", "invalid credential", CloseUnauthorized)
	errForbidden      = refusal(ErrForbidden, http.StatusForbidden, "insufficient_scope", "forbidden", CloseForbidden)
	errVerifyTimeout  = refusal(ErrVerifyTimeout, http.StatusServiceUnavailable, "", "verification timed out", ws.StatusInternalServerError)
	errVerifier500    = refusal(ErrVerifier, http.StatusInternalServerError, "", "internal error", ws.StatusInternalServerError)
	errNoVerifier     = refusal(ErrVerifier, http.StatusInternalServerError, "", "gate has no verifier: make it with New", 0)
	errNotHijacker    = refusal(ErrUpgradeFailed, http.StatusInternalServerError, "", "connection cannot be upgraded: response writer is not a hijacker", 0)
	errUpgradeIO      = refusal(ErrUpgradeFailed, http.StatusInternalServerError, "", "upgrade failed", 0)
	errNotAuthorized  = refusal(ErrUpgradeFailed, http.StatusInternalServerError, "", "Accept needs what Authenticate returned for this request", 0)
)

var (
	hdrClose         = []string{"close"}
	hdrTextPlain     = []string{"text/plain; charset=utf-8"}
	hdrNoSniff       = []string{"nosniff"}
	hdrNoStore       = []string{"no-store"}
	hdrAllowGet      = []string{"GET"}
	hdrUpgradeWS     = []string{"websocket"}
	hdrVersion13     = []string{"13"}
	defaultChallenge = newChallenges(defaultRealm)
)

// challenges holds the WWW-Authenticate values of one realm, built once.
type challenges struct {
	bearer, basic, invalidRequest, invalidToken, insufficientScope []string
}

func newChallenges(realm string) *challenges {
	q := quoteRealm(realm)
	return &challenges{
		bearer:            []string{`Bearer realm=` + q},
		basic:             []string{`Basic realm=` + q + `, charset="UTF-8"`},
		invalidRequest:    []string{`Bearer realm=` + q + `, error="invalid_request"`},
		invalidToken:      []string{`Bearer realm=` + q + `, error="invalid_token"`},
		insufficientScope: []string{`Bearer realm=` + q + `, error="insufficient_scope"`},
	}
}

// quoteRealm renders realm as an RFC 7230 quoted-string, dropping characters
// that cannot appear in one.
func quoteRealm(realm string) string {
	b := make([]byte, 0, len(realm)+2)
	b = append(b, '"')
	for i := 0; i < len(realm); i++ {
		c := realm[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\t' || (c >= 0x20 && c != 0x7f):
			b = append(b, c)
		}
	}
	return string(append(b, '"'))
}

// asError returns err's *Error; for a bare sentinel (a handler refusing with
// ErrForbidden, say), the refusal the gate itself answers it with; for
// anything else a generic 500.
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) && e != nil {
		return e
	}
	for _, r := range sentinelRefusals {
		if errors.Is(err, r.kind) {
			return r
		}
	}
	return errVerifier500
}

// sentinelRefusals answer the sentinels wrapped in no *Error.
var sentinelRefusals = []*Error{
	errInvalidToken, errForbidden, errNoCredential, errAmbiguous, errMalformed401,
	errOrigin, errProtocols, errVerifyTimeout, errNotHijacker, errHTTPVersion,
	errTooManySessions, errRateLimited, errRegistry,
}

// WriteError answers a refused handshake: the status of err, the headers its
// sentinel calls for (Allow, Upgrade, Sec-WebSocket-Version,
// WWW-Authenticate with the default realm: Basic for a refused Basic
// credential, else Bearer with the RFC 6750 error code), Connection: close,
// and a short plain-text body. A bare sentinel (ErrForbidden,
// ErrInvalidToken, ...) is answered as the gate answers it; any other error
// that is no *Error is answered 500. WriteError never writes a
// client-supplied value back. Gate.Refuse answers with the gate's realm and
// refusal mode.
//
// Over HTTP/2, net/http turns Connection: close into a GOAWAY that ends the
// whole connection after its open streams; the gate's own refusals of
// HTTP/2 requests leave it out.
func WriteError(w http.ResponseWriter, err error) {
	writeError(w, asError(err), defaultChallenge, false, false)
}

// writeError answers e; basic asks for a Basic challenge to a missing
// credential, and h2 leaves out Connection: close.
func writeError(w http.ResponseWriter, e *Error, ch *challenges, basic, h2 bool) {
	h := w.Header()
	h["Content-Type"] = hdrTextPlain
	hdrs, n := refusalHeaders(e, ch, basic, h2)
	for _, p := range hdrs[:n] {
		h[p.key] = p.values
	}
	w.WriteHeader(e.Status)
	io.WriteString(w, e.Reason)
	io.WriteString(w, "\n")
}

// headerPair is one header of a refusal.
type headerPair struct {
	key    string // canonical
	values []string
}

// refusalHeaders returns the headers of the answer to e but Content-Type,
// which both writers of refusals (writeError, and writeRawError on the raw
// path) write themselves.
func refusalHeaders(e *Error, ch *challenges, basic, h2 bool) (h [7]headerPair, n int) {
	add := func(k string, v []string) {
		h[n] = headerPair{k, v}
		n++
	}
	if !h2 {
		add("Connection", hdrClose)
	}
	add("X-Content-Type-Options", hdrNoSniff)
	add("Cache-Control", hdrNoStore)
	switch e.hdr {
	case allowHeader:
		add("Allow", hdrAllowGet)
	case upgradeHeader:
		add("Upgrade", hdrUpgradeWS)
	case versionHeader:
		add("Sec-Websocket-Version", hdrVersion13)
	}
	if e.retryAfter > 0 {
		add("Retry-After", retryAfterValue(e.retryAfter))
	}
	switch {
	case e.Source == SourceBasic || e.kind == ErrNoCredential && basic:
		// A Basic client is answered in its own scheme, which has no
		// error codes (RFC 7617).
		if e.Status == http.StatusUnauthorized {
			add("Www-Authenticate", ch.basic)
		}
	case e.Code == "invalid_request":
		add("Www-Authenticate", ch.invalidRequest)
	case e.Code == "invalid_token":
		add("Www-Authenticate", ch.invalidToken)
	case e.Code == "insufficient_scope":
		add("Www-Authenticate", ch.insufficientScope)
	case e.kind == ErrNoCredential:
		add("Www-Authenticate", ch.bearer)
	}
	return h, n
}
