package wsgate

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/gobwas/ws"
	"github.com/wsgate/wsgate/fleet"
	"github.com/wsgate/wsgate/internal/clientaddr"
)

// The fleet controls (package fleet) as the gate applies them, at two
// points of the pipeline that every entry point shares: the limiter around
// the verifier (verifyLimited, in decide and in the in-band path), and the
// registry when the gate is about to answer an accepted handshake (join, in
// accept and in the in-band path). A live session leaves the registry when
// it leaves the gate's list (liveSessions.remove).

var (
	errTooManySessions = refusal(fleet.ErrTooManySessions, http.StatusTooManyRequests, "", "too many sessions", fleet.CloseTooManySessions)
	errRateLimited     = refusal(fleet.ErrRateLimited, http.StatusTooManyRequests, "", "too many failed attempts", fleet.CloseRateLimited)
	errRegistry        = refusal(fleet.ErrUnavailable, http.StatusServiceUnavailable, "", "session registry unavailable", ws.StatusInternalServerError)
	errJoinedTwice     = refusal(ErrUpgradeFailed, http.StatusInternalServerError, "", "session already admitted", 0)
	errNoSession       = refusal(ErrUpgradeFailed, http.StatusInternalServerError, "", "no live session of a gate", 0)
	errNoPrincipalKey  = refusal(ErrVerifier, http.StatusInternalServerError, "", "refresh needs Config.PrincipalKey", 0)
	errOtherPrincipal  = refusal(ErrForbidden, http.StatusForbidden, "insufficient_scope", "credential of another principal", CloseForbidden)
)

// refreshRefused is the close reason of a session whose refresh failed.
const refreshRefused = "refresh refused"

// errRefreshRefused is the cause of a session context's cancellation when
// a refresh failed.
var errRefreshRefused = errors.New("wsgate: refresh refused")

// fleetEntry is a live session's place in the gate's Registry.
type fleetEntry struct {
	reg fleet.Registry // nil: not registered
	id  string
	key string
}

// principalKeyFunc returns the function that turns a principal into its
// key: cfg.PrincipalKey, else the principal itself when P is a string or a
// fmt.Stringer, else nil.
func principalKeyFunc[P any](cfg *Config) func(P) string {
	if f := cfg.PrincipalKey; f != nil {
		return func(p P) string { return f(p) }
	}
	var zero P
	switch any(zero).(type) {
	case string:
		return func(p P) string { return any(p).(string) }
	case fmt.Stringer:
		return func(p P) string { return any(p).(fmt.Stringer).String() }
	}
	return nil
}

// verifyLimited is verifyCredential behind the gate's Limiter: an address
// that failed too often lately is refused (429, Retry-After) without
// calling the verifier, and a credential the verifier refuses as invalid
// counts as a failure of the client's address.
func (g *Gate[P]) verifyLimited(r *http.Request, cred Credential, p *P, rv rawView) (*handshake, *Error) {
	if g.limiter == nil {
		return g.verifyCredential(r, cred, p, rv)
	}
	addr, known := clientaddr.Of(r, g.trusted)
	if known {
		wait, err := g.limiter.Check(r.Context(), addr)
		if err != nil {
			g.logFleet(r, "wsgate: limiter failed; handshake let through", err)
		} else if wait > 0 {
			e := errRateLimited.withSource(cred.Source).clone()
			e.retryAfter = wait
			return nil, e
		}
	}
	hs, verr := g.verifyCredential(r, cred, p, rv)
	if verr != nil && known && verr.kind == ErrInvalidToken {
		if err := g.limiter.Fail(r.Context(), addr); err != nil {
			g.logFleet(r, "wsgate: limiter failed to record a failure", err)
		}
	}
	return hs, verr
}

// logFleet logs a failure of a fleet backend, at Error.
func (g *Gate[P]) logFleet(r *http.Request, msg string, err error) {
	if g.logger != nil {
		g.logger.LogAttrs(r.Context(), slog.LevelError, msg, slog.String("remote", r.RemoteAddr), slog.String("error", err.Error()))
	}
}

// retryAfterValue is the Retry-After header value for wait, in whole
// seconds rounded up.
func retryAfterValue(wait time.Duration) []string {
	return []string{strconv.FormatInt(int64((wait+time.Second-1)/time.Second), 10)}
}

// join admits the accepted handshake a into the gate's Registry, before the
// gate answers it, so that the cap refuses it with an answer of its own.
func (g *Gate[P]) join(r *http.Request, a *Auth[P]) *Error {
	if g.registry == nil {
		return nil
	}
	node := &a.hs.live
	if node.fl.reg != nil {
		return errJoinedTwice
	}
	var key string
	if g.keyOf != nil {
		key = g.keyOf(a.Principal)
	}
	id, err := g.registry.Join(r.Context(), key, node)
	if err != nil {
		if errors.Is(err, fleet.ErrTooManySessions) {
			return errTooManySessions.withSource(a.Source)
		}
		e := errRegistry.withSource(a.Source).clone()
		e.cause = err
		return e
	}
	node.fl = fleetEntry{reg: g.registry, id: id, key: key}
	return nil
}

// leave takes a session that joined the registry out of it.
func (fl *fleetEntry) leave() {
	if fl.reg != nil {
		fl.reg.Leave(fl.id)
	}
}

// MemoryEntry is the session's room for a fleet.Memory, which then
// allocates none for it.
func (s *liveSession) MemoryEntry() *fleet.MemoryEntry { return &s.mem }

// pendingEnd is a Registry's End that arrived before the session started.
type pendingEnd struct {
	code   ws.StatusCode
	reason string
}

// End closes the session with code and reason through the gate's closing
// handshake, for a Registry (see fleet.Member): the session's context, if
// it has one, is cancelled with cause fleet.ErrRevoked. A session between
// its admission and its first frame is closed as soon as it starts.
func (s *liveSession) End(code ws.StatusCode, reason string) {
	s.fmu.Lock()
	if !s.started {
		s.pending = &pendingEnd{code, reason}
		s.fmu.Unlock()
		return
	}
	s.fmu.Unlock()
	s.end(fleet.ErrRevoked, code, reason)
}

// start marks the session as started, and ends it now if a Registry asked
// for that meanwhile.
func (s *liveSession) start() {
	s.fmu.Lock()
	s.started = true
	p := s.pending
	s.fmu.Unlock()
	if p != nil {
		go s.end(fleet.ErrRevoked, p.code, p.reason)
	}
}

// Refresh verifies a fresh credential for the live session, for example
// one the client sent in a message (see fleet.RefreshToken for the
// documented {"type":"refresh","token":"..."}) or one the application
// obtained: the gate's Verifier runs on c, the principal it returns must
// have the session's principal key (Config.PrincipalKey), and the
// credential's expiry then replaces the session's (the expiry the Verifier
// set with SetExpiry, or none). The session keeps its handshake's
// principal.
//
// A refused refresh (the Verifier refuses or fails, or the principal is
// another) returns the refusal as an *Error and closes the session with
// CloseUnauthorized (4401) "refresh refused" through the gate's closing
// handshake, from a goroutine of the gate's: return from the callback
// when its context is done. Refresh fails without closing when the session
// is over, or when the gate has no principal key. It is safe for concurrent
// use, and holds no write lock.
func (s Session[P]) Refresh(c Credential) error {
	g, ls := s.gate, s.live
	r := s.Request
	if s.facts != nil {
		r = s.facts.request() // the raw path's, with the headers it kept
	}
	if g == nil || ls == nil || r == nil {
		return errNoSession.clone()
	}
	if g.keyOf == nil {
		return errNoPrincipalKey.clone()
	}
	var p P
	hs, err := g.verifyCredential(r, c, &p, nil)
	if err == nil && g.keyOf(p) != g.keyOf(s.Principal) {
		err = errOtherPrincipal.withSource(c.Source)
	}
	if err == nil && !ls.moveExpiry(hs.vctx.expiry) {
		err = refusal(ErrInvalidToken, http.StatusUnauthorized, "invalid_token", "credential expired", CloseUnauthorized)
	}
	if err != nil {
		go ls.end(errRefreshRefused, CloseUnauthorized, refreshRefused)
		return err.clone()
	}
	return nil
}

// moveExpiry sets the session's credential expiry to t (zero: none), and
// reports false when the session has already expired or ended.
func (s *liveSession) moveExpiry(t time.Time) bool {
	if s.exp != nil {
		return s.exp.renew(t)
	}
	// A session whose handshake credential had no expiry has no context
	// the gate can cancel: it is closed at t as Shutdown closes it.
	s.fmu.Lock()
	defer s.fmu.Unlock()
	if s.ending || s.list.isRemoved(s) {
		return false
	}
	if s.late != nil {
		s.late.Stop()
		s.late = nil
	}
	if !t.IsZero() {
		s.late = time.AfterFunc(time.Until(t), func() {
			s.end(ErrCredentialExpired, CloseUnauthorized, "credential expired")
		})
	}
	return true
}

// stopLate stops an expiry a refresh set on a session without a context.
func (s *liveSession) stopLate() {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	if s.late != nil {
		s.late.Stop()
		s.late = nil
	}
}
