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
	attrs = append(attrs, slog.String("reason", reason))
	if ev.CloseCode != 0 {
		attrs = append(attrs, slog.Int("close_code", int(ev.CloseCode)))
	}
	l.LogAttrs(ctx, level, "wsgate: handshake refused", attrs...)
}
