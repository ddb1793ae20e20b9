package wsgate

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/gobwas/ws"
)

// HandshakeEvent describes one handshake a Gate answered, for
// Config.OnHandshake. It holds no credential.
type HandshakeEvent struct {
	// Accepted is true when the handshake was authenticated (and, in the
	// handler form, upgraded).
	Accepted bool
	// Status is 101 for an upgrade by Gate.Handler, 0 for a request
	// Gate.Middleware passed on, and the HTTP status of a refusal (under
	// RefuseWithCloseFrame, the status the refusal stands for, even when the
	// client got a close frame instead).
	Status int
	// Source is where the credential was found, or SourceNone.
	Source Source
	// Err is the refusal (an *Error) or the upgrade failure; nil when
	// Accepted.
	Err error
	// CloseCode is the code of the close frame the gate sent instead of an
	// HTTP refusal (under RefuseWithCloseFrame, or a failed in-band
	// authentication), and 0 when it sent none: the client got an HTTP
	// answer, was accepted, or went away first.
	CloseCode ws.StatusCode
	// Duration is the time from the request's arrival at the gate to its
	// answer (the 101 written, the request passed on, or the refusal).
	Duration time.Duration
	// RemoteAddr and Path identify the request (r.RemoteAddr, r.URL.Path).
	RemoteAddr string
	Path       string
	// Class is the refusal's cause, from a small closed set of stable
	// names meant for logs, metric labels and alerts: "handshake",
	// "origin", "protocol", "no_credential", "ambiguous", "malformed",
	// "invalid", "expired", "forbidden", "timeout", "verifier_error" and
	// "upgrade_failed" (each named for its sentinel; "expired" when the
	// verifier's error matches ErrCredentialExpired), or the class the
	// verifier's error names itself (see Verifier). It is "" when Accepted.
	Class string
	// Context is the request's context (r.Context()), for instrumentation
	// that needs a parent, such as a span for the handshake.
	Context context.Context
	// Method, Host and Proto are the request's (r.Method, r.Host, r.Proto),
	// and TLS reports whether it arrived over TLS.
	Method, Host, Proto string
	TLS                 bool
}

// SessionEvent describes a session opening or ending, for
// Config.OnSession. A session is an authenticated, upgraded connection the
// gate counts among its live sessions (see Gate.Shutdown): one of
// Gate.Handler (including an in-band authentication that succeeded), of
// Gate.Accept, or of Upgrade behind Gate.Middleware. Every session that
// opens ends exactly once. It holds no credential.
type SessionEvent struct {
	// Ended is false for the opening (right after the 101 and, in band,
	// the authentication message) and true for the end: the callback of
	// Gate.Handler returned, or the connection of Gate.Accept or Upgrade
	// was closed.
	Ended bool
	// Source is where the session's credential was found.
	Source Source
	// Path is the request's r.URL.Path, and Context its context, the same
	// as the handshake's HandshakeEvent.Context.
	Path    string
	Context context.Context
	// CloseCode, at the end, is the code of the close frame the gate sent
	// to end the session before it ended: CloseUnauthorized when the
	// credential expired, ws.StatusGoingAway for Gate.Shutdown; 0 when it
	// sent none (the application or the client ended the session).
	CloseCode ws.StatusCode
	// Duration, at the end, is how long the session lived.
	Duration time.Duration
}

// observed reports whether the gate has anyone to tell about handshakes.
func (g *Gate[P]) observed() bool { return g.onHandshake != nil || g.logger != nil }

// observe reports one handshake to the hook and the logger.
func (g *Gate[P]) observe(r *http.Request, start time.Time, status int, src Source, err error, closeCode ws.StatusCode) {
	ev := HandshakeEvent{
		Accepted:   err == nil,
		Status:     status,
		Source:     src,
		Err:        err,
		CloseCode:  closeCode,
		Duration:   time.Since(start),
		RemoteAddr: r.RemoteAddr,
		Path:       r.URL.Path,
		Context:    r.Context(),
		Method:     r.Method,
		Host:       r.Host,
		Proto:      r.Proto,
		TLS:        r.TLS != nil,
	}
	if err != nil {
		ev.Class = refusalClass(err)
	}
	if g.onHandshake != nil {
		g.onHandshake(ev)
	}
	if g.logger != nil {
		logHandshake(r.Context(), g.logger, ev)
	}
}

// logHandshake writes one line per handshake: refusals at Info (Error for
// a 5xx, which is the server's fault), acceptances at Debug. Only fixed
// texts and the request's address and path are logged, never a header value.
func logHandshake(ctx context.Context, l *slog.Logger, ev HandshakeEvent) {
	attrs := []slog.Attr{
		slog.Int("status", ev.Status),
		slog.String("source", ev.Source.String()),
		slog.String("remote", ev.RemoteAddr),
		slog.String("path", ev.Path),
		slog.Duration("duration", ev.Duration),
	}
	if ev.Err == nil {
		l.LogAttrs(ctx, slog.LevelDebug, "wsgate: handshake accepted", attrs...)
		return
	}
	level := slog.LevelInfo
	reason := "upgrade failed"
	var e *Error
	if errors.As(ev.Err, &e) {
		reason = e.Reason
		if e.Source != SourceNone {
			attrs[1] = slog.String("source", e.Source.String())
		}
		// The verifier's own error may say more than an operator should
		// see by default (but never the credential: see Verifier).
		if e.cause != nil && l.Enabled(ctx, slog.LevelDebug) {
			attrs = append(attrs, slog.String("cause", e.cause.Error()))
		}
	}
	if ev.Status >= 500 || ev.Status == 0 {
		level = slog.LevelError
	}
	attrs = append(attrs, slog.String("reason", reason), slog.String("class", ev.Class))
	if ev.CloseCode != 0 {
		attrs = append(attrs, slog.Int("close_code", int(ev.CloseCode)))
	}
	l.LogAttrs(ctx, level, "wsgate: handshake refused", attrs...)
}

// refusalClass returns the cause class of a refusal (see
// HandshakeEvent.Class).
func refusalClass(err error) string {
	var e *Error
	if !errors.As(err, &e) || e == nil {
		return "upgrade_failed"
	}
	if e.cause != nil {
		if c, ok := errors.AsType[classer](e.cause); ok {
			if class := c.Class(); validClass(class) {
				return class
			}
		}
		if errors.Is(e.cause, ErrCredentialExpired) {
			return "expired"
		}
	}
	switch e.kind {
	case ErrHandshake:
		return "handshake"
	case ErrOrigin:
		return "origin"
	case ErrProtocols:
		return "protocol"
	case ErrNoCredential:
		return "no_credential"
	case ErrAmbiguousCredential:
		return "ambiguous"
	case ErrMalformedCredential:
		return "malformed"
	case ErrInvalidToken:
		return "invalid"
	case ErrForbidden:
		return "forbidden"
	case ErrVerifyTimeout:
		return "timeout"
	case ErrVerifier:
		return "verifier_error"
	}
	return "upgrade_failed"
}

// classer is an error that names its own refusal class (see Verifier).
type classer interface {
	error
	Class() string
}

// maxClassLen bounds a class a verifier's error names.
const maxClassLen = 32

// validClass reports whether a verifier's class is safe for logs and
// metric labels: a lower-case ASCII letter, then at most maxClassLen-1
// lower-case letters, digits and underscores.
func validClass(s string) bool {
	if len(s) == 0 || len(s) > maxClassLen || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

// sessionOpened reports s, just added to the live sessions for the
// request r, to Config.OnSession.
func (g *Gate[P]) sessionOpened(s *liveSession, r *http.Request, src Source) {
	if g.live.onSession == nil {
		return
	}
	s.req, s.src, s.opened = r, src, time.Now()
	g.live.onSession(SessionEvent{Source: src, Path: r.URL.Path, Context: r.Context()})
}

// sessionEnded reports the end of s to Config.OnSession, once, when it has
// left the list (remove runs it after its own work).
func (l *liveSessions) sessionEnded(s *liveSession) {
	l.mu.Lock()
	first := s.removed && !s.reported && s.req != nil
	if first {
		s.reported = true
	}
	code := s.sent
	l.mu.Unlock()
	if !first {
		return
	}
	if s.exp != nil {
		s.exp.mu.Lock()
		if s.exp.sent != 0 {
			code = s.exp.sent
		}
		s.exp.mu.Unlock()
	}
	l.onSession(SessionEvent{
		Ended:     true,
		Source:    s.src,
		Path:      s.req.URL.Path,
		Context:   s.req.Context(),
		CloseCode: code,
		Duration:  time.Since(s.opened),
	})
}

// noteSent records that the gate sent s a close frame with code, for
// SessionEvent.CloseCode.
func (s *liveSession) noteSent(code ws.StatusCode) {
	s.list.mu.Lock()
	s.sent = code
	s.list.mu.Unlock()
}

// noteSent records that the gate sent the session of e a close frame with
// code, for SessionEvent.CloseCode.
func (e *expiry) noteSent(code ws.StatusCode) {
	e.mu.Lock()
	e.sent = code
	e.mu.Unlock()
}
