package wsgate

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// ErrCredentialExpired is the cause (see context.Cause) of the cancellation
// of a session's context when its credential expires. A Verifier may also
// return (or wrap) it for a credential that has expired: the client is
// answered as for ErrInvalidToken, and the refusal's class is "expired".
var ErrCredentialExpired = errors.New("wsgate: credential expired")

// SetExpiry records, from inside a Verifier, that the credential being
// verified expires at t. ctx is the context the Verifier received, or one
// derived from it. It reports whether ctx is such a context; called with any
// other context, or after the Verifier has returned, it does nothing.
//
// In Gate.Handler, the session's context is then cancelled at t (with cause
// ErrCredentialExpired) and the gate sends a close frame CloseUnauthorized
// (4401) with reason "credential expired", waits for the callback to return
// and for the client's close frame, and closes the connection (within three
// seconds of t, whatever the callback does), unless the application moved
// the expiry with Session.Refresh first. A t already past
// closes the connection right after the upgrade. Upgrade behind
// Gate.Middleware and Gate.Accept enforce it the same way on the connection
// they return, without a context to cancel (closing the connection ends the
// session). Auth.Expires reports t.
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
//
// At the expiry the gate cancels the session's context, takes the write
// lock (see lockWriter), sends CloseUnauthorized "credential expired" and
// keeps the lock, so the application writes nothing after the close frame.
// It then waits for the application to return from the session callback
// (which it should do once the context is cancelled) and for the client's
// close frame, and closes the connection. Whatever the application does,
// the connection is closed at most 2*expiryLockWait + closeWriteTimeout +
// closeLinger after the expiry (three seconds).
type expiry struct {
	conn   net.Conn
	cancel context.CancelCauseFunc
	// wmu is the lock Session.WriteLock returns; the gate holds it from the
	// expiry's close frame until the connection is closed.
	wmu sync.Mutex

	mu    sync.Mutex
	at    time.Time // zero: no expiry
	timer *time.Timer
	done  bool // expired, or the session has ended
	fired bool
	sent  ws.StatusCode // the close code the gate sent, for Config.OnSession
	// closeSent is set as the gate starts its close frame: the
	// application's writes through the session are then refused.
	closeSent atomic.Bool
	// ended is closed by stop, when the session callback has returned: from
	// then on the gate alone reads the connection.
	ended chan struct{}
	// closed is closed once the expiry's close frame is written and the
	// connection closed, so the session ends only after that.
	closed chan struct{}
}

// expiryLockWait bounds the gate's wait for the write lock at the expiry.
// An application write that holds the lock longer (typically blocked by a
// client that stopped reading) is cut short with an immediate write
// deadline; then the connection cannot carry the close frame (the cut write
// may have sent half a frame) and is closed without one.
const expiryLockWait = 500 * time.Millisecond

// startExpiry returns the session context that ends at at, and its expiry.
func startExpiry(parent context.Context, conn net.Conn, at time.Time) (context.Context, *expiry) {
	ctx, cancel := context.WithCancelCause(parent)
	e := &expiry{conn: conn, cancel: cancel, at: at, ended: make(chan struct{}), closed: make(chan struct{})}
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
	e.mu.Unlock()
	e.end(ErrCredentialExpired, CloseUnauthorized, "credential expired")
}

// end closes the session now: at the expiry, or when the gate shuts down.
// Of concurrent calls, the first does the work and the others wait for it.
func (e *expiry) end(cause error, code ws.StatusCode, reason string) {
	e.mu.Lock()
	if e.fired {
		e.mu.Unlock()
		<-e.closed
		return
	}
	if e.done {
		// The session callback has returned: the gate alone has the
		// connection, and stop waits for nothing.
		e.fired = true
		e.mu.Unlock()
		defer close(e.closed)
		closeHandshake(e.conn, code, reason, 0)
		return
	}
	e.done, e.fired = true, true
	e.timer.Stop()
	e.mu.Unlock()
	defer close(e.closed)
	e.cancel(cause)
	locked, writable := lockWriter(&e.wmu, e.conn)
	if locked {
		defer e.wmu.Unlock()
	}
	e.closeSent.Store(true) // before the frame: see liveSession.end
	if !writable || writeClose(e.conn, code, reason) != nil {
		e.conn.Close()
		return
	}
	e.noteSent(code)
	// The application may still be reading: two readers would split the
	// stream between them, so the gate reads the client's close frame only
	// once the callback has returned. If the application consumed the close
	// frame itself, the wait ends at the linger.
	linger := time.NewTimer(closeLinger)
	defer linger.Stop()
	deadline := time.Now().Add(closeLinger)
	select {
	case <-e.ended:
		awaitClose(e.conn, deadline, 0)
	case <-linger.C:
	}
	e.conn.Close()
}

// lockWriter takes mu within 2*expiryLockWait, cutting a writer that
// still holds it after expiryLockWait short. It reports whether it took
// the lock, and whether the connection can still carry a close frame: not
// when a writer had to be cut short to free the lock. Its wait is a polling
// loop bounded in time, so no goroutine is left behind waiting for a lock an
// application may never release.
func lockWriter(mu *sync.Mutex, conn net.Conn) (locked, writable bool) {
	if mu.TryLock() {
		return true, true
	}
	const step = 10 * time.Millisecond
	start := time.Now()
	kicked := false
	for time.Since(start) < 2*expiryLockWait {
		time.Sleep(step)
		if mu.TryLock() {
			return true, !kicked
		}
		if !kicked && time.Since(start) >= expiryLockWait {
			_ = conn.SetWriteDeadline(time.Now())
			kicked = true
		}
	}
	return false, false
}

// renew moves the expiry to t (zero: none), and reports false when the
// session has expired or ended; see Session.Refresh.
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

// stop ends the expiry when the session callback has returned, after the
// expiry's closing handshake if it is under way (a bounded wait, see
// expiry).
func (e *expiry) stop() {
	e.mu.Lock()
	e.done = true
	e.timer.Stop()
	fired := e.fired
	e.mu.Unlock()
	e.cancel(context.Canceled)
	close(e.ended)
	if fired {
		<-e.closed
	}
}

// WriteLock returns the lock the gate takes, from a goroutine of its own,
// to write a close frame on a live session: at the credential's expiry and
// when the gate shuts down (Gate.Shutdown); it then keeps it until the
// connection is closed, so nothing follows the close frame. The
// application must hold it around each whole frame it writes to Conn (not
// around reads, and never while waiting for the context), or the close
// frame may land in the middle of one of its frames. A write that still
// holds it half a second after the gate asked for it (a client that
// stopped reading) is cut short with a write deadline, and the connection
// is then closed without a close frame.
func (s Session[P]) WriteLock() sync.Locker {
	switch {
	case s.exp != nil:
		return &s.exp.wmu
	case s.live != nil:
		return &s.live.wmu
	}
	return nopLocker{}
}

type nopLocker struct{}

func (nopLocker) Lock()   {}
func (nopLocker) Unlock() {}
