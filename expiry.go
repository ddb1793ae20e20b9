package wsgate

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"
)

// ErrCredentialExpired is the cause (see context.Cause) of the cancellation
// of a session's context when its credential expires.
var ErrCredentialExpired = errors.New("wsgate: credential expired")

// SetExpiry records, from inside a Verifier, that the credential being
// verified expires at t. ctx is the context the Verifier received, or one
// derived from it. It reports whether ctx is such a context; called with any
// other context, or after the Verifier has returned, it does nothing.
//
// In Gate.Handler, the session's context is then cancelled at t (with cause
// ErrCredentialExpired) and the gate sends a close frame CloseUnauthorized
// (4401) with reason "credential expired" and closes the connection, unless
// the application moved the expiry with Session.Renew first. A t already past
// closes the connection right after the upgrade. Upgrade behind
// Gate.Middleware and Gate.Accept enforce it the same way on the connection
// they return, without a context to cancel. Auth.Expires reports t.
func SetExpiry(ctx context.Context, t time.Time) bool {
	c, ok := ctx.Value(verifyContextKey{}).(*verifyContext)
	if !ok {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.released {
		return false
	}
	c.expiry = t
	return true
}

type verifyContextKey struct{}

// expiry enforces a session's credential expiry.
type expiry struct {
	conn   net.Conn
	cancel context.CancelCauseFunc
	// wmu is the lock Session.WriteLock returns; the gate holds it while it
	// writes the expiry's close frame.
	wmu sync.Mutex

	mu    sync.Mutex
	at    time.Time // zero: no expiry
	timer *time.Timer
	done  bool // expired, or the session has ended
	fired bool
	// closed is closed once the expiry's close frame is written and the
	// connection closed, so the session ends only after that.
	closed chan struct{}
}

// startExpiry returns the session context that ends at at, and its expiry.
func startExpiry(parent context.Context, conn net.Conn, at time.Time) (context.Context, *expiry) {
	ctx, cancel := context.WithCancelCause(parent)
	e := &expiry{conn: conn, cancel: cancel, at: at, closed: make(chan struct{})}
	e.mu.Lock()
	e.timer = time.AfterFunc(time.Until(at), e.fire)
	e.mu.Unlock()
	return ctx, e
}

func (e *expiry) fire() {
	e.mu.Lock()
	if e.done || e.at.IsZero() {
		e.mu.Unlock()
		return
	}
	if d := time.Until(e.at); d > 0 {
		// Renewed while this run was already under way.
		e.timer.Reset(d)
		e.mu.Unlock()
		return
	}
	e.done, e.fired = true, true
	e.mu.Unlock()
	defer close(e.closed)
	e.cancel(ErrCredentialExpired)
	e.wmu.Lock()
	defer e.wmu.Unlock()
	closeWith(e.conn, CloseUnauthorized, "credential expired")
}

// renew moves the expiry to t; see Session.Renew.
func (e *expiry) renew(t time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.done {
		return false
	}
	e.at = t
	if t.IsZero() {
		e.timer.Stop()
	} else {
		e.timer.Reset(time.Until(t))
	}
	return true
}

// stop ends the expiry when the session ends, after the expiry's close
// frame if it is being written.
func (e *expiry) stop() {
	e.mu.Lock()
	e.done = true
	e.timer.Stop()
	fired := e.fired
	e.mu.Unlock()
	e.cancel(context.Canceled)
	if fired {
		<-e.closed
	}
}

// Renew moves the session's credential expiry to t, for example after the
// client sent a fresh credential that the application verified; the zero t
// removes it. It reports false when the session has no expiry (the Verifier
// set none, see SetExpiry) or the credential has already expired, in which
// case the context is cancelled and the connection is being closed: renew
// before the moment, not after it. Renew is safe for concurrent use.
func (s Session[P]) Renew(t time.Time) bool {
	if s.exp == nil {
		return false
	}
	return s.exp.renew(t)
}

// WriteLock returns the lock the gate holds while it writes the close frame
// of an expired credential, from a goroutine of its own. While the session
// has an expiry, the application must hold it around each whole frame it
// writes to Conn (not around reads, and never while waiting for the
// context), or the close frame may land in the middle of one of its frames.
// When the session has no expiry the gate never writes and WriteLock
// returns a Locker that does nothing.
func (s Session[P]) WriteLock() sync.Locker {
	if s.exp == nil {
		return nopLocker{}
	}
	return &s.exp.wmu
}

type nopLocker struct{}

func (nopLocker) Lock()   {}
func (nopLocker) Unlock() {}
