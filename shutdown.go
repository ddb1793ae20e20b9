package wsgate

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/wsgate/wsgate/fleet"
)

// errGoingAway is the cause of a session context's cancellation when the
// gate shuts down.
var errGoingAway = errors.New("wsgate: server going away")

// liveSession is a session the gate is serving, in the gate's list of live
// sessions, so that Shutdown can close it. For Gate.Accept and Upgrade it is
// also the connection handed to the application: closing it ends the
// session.
type liveSession struct {
	net.Conn
	exp  *expiry // nil: no expiry, and no context the gate can cancel
	wmu  sync.Mutex
	list *liveSessions

	prev, next *liveSession
	removed    bool // guarded by list.mu

	// For Config.OnSession: the request, its source and when the session
	// opened (req is nil without the hook), the close code the gate sent
	// (guarded by list.mu) and whether the end was reported.
	req      *http.Request
	src      Source
	opened   time.Time
	sent     ws.StatusCode
	reported bool // guarded by list.mu

	fl fleetEntry // its place in the gate's Registry (fleet.go)

	closeSent atomic.Bool       // the gate's close frame is going out (see Write)
	mem       fleet.MemoryEntry // room for a fleet.Memory's record of it

	fmu     sync.Mutex
	started bool        // in the list, with a connection
	pending *pendingEnd // a Registry's End before the start
	ending  bool        // end is under way (sessions without expiry)
	late    *time.Timer // an expiry Refresh set on a session without one
}

// Write writes p to the connection, unless the gate has sent its close
// frame (at the expiry, Gate.Shutdown or a revocation): RFC 6455 section
// 5.5.1 lets no frame follow it, and a browser fails a connection that
// gets one (the application's reader answering the client's close frame,
// typically), so the write is refused with net.ErrClosed.
func (s *liveSession) Write(p []byte) (int, error) {
	if s.closeSent.Load() || s.exp != nil && s.exp.closeSent.Load() {
		return 0, net.ErrClosed
	}
	return s.Conn.Write(p)
}

// Lock takes the session's write lock (see Session.WriteLock); hold it
// around each whole frame written.
func (s *liveSession) Lock() { s.writeLock().Lock() }

// Unlock releases the write lock.
func (s *liveSession) Unlock() { s.writeLock().Unlock() }

func (s *liveSession) writeLock() *sync.Mutex {
	if s.exp != nil {
		return &s.exp.wmu
	}
	return &s.wmu
}

// Close ends the session: its expiry, its place in the list, and the
// connection.
func (s *liveSession) Close() error {
	if s.exp != nil {
		s.exp.stop()
	}
	s.list.remove(s)
	return s.Conn.Close()
}

// goAway closes the session for Shutdown.
func (s *liveSession) goAway() { s.end(errGoingAway, ws.StatusGoingAway, "going away") }

// end closes the session with code and reason: for Shutdown, a Registry's
// revocation, a refused refresh, or an expiry a refresh set. A session
// with an expiry ends as at its expiry (its context cancelled with cause);
// any other has its close frame sent under its write lock and its
// connection closed under the application. Of concurrent calls, the first
// does the work.
func (s *liveSession) end(cause error, code ws.StatusCode, reason string) {
	if s.exp != nil {
		s.exp.end(cause, code, reason)
		return
	}
	s.fmu.Lock()
	if s.ending {
		s.fmu.Unlock()
		return
	}
	s.ending = true
	s.fmu.Unlock()
	locked, writable := lockWriter(&s.wmu, s.Conn)
	if locked {
		defer s.wmu.Unlock()
	}
	// From now on the application's writes are refused (see Write): set
	// before the close frame goes out, so that no answer to the client's
	// close frame can slip in behind it.
	s.closeSent.Store(true)
	if !writable || writeClose(s.Conn, code, reason) != nil {
		s.Conn.Close()
		return
	}
	s.noteSent(code)
	// As at the expiry, the gate reads the client's close frame only once
	// the application stopped reading (its callback returned, or it closed
	// the connection), within the linger.
	deadline := time.Now().Add(closeLinger)
	for !s.list.isRemoved(s) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s.list.isRemoved(s) {
		awaitClose(s.Conn, deadline, 0)
	}
	s.Conn.Close()
}

func (l *liveSessions) isRemoved(s *liveSession) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return s.removed
}

// liveSessions is a gate's list of live sessions. Its zero value is empty.
type liveSessions struct {
	mu   sync.Mutex
	head *liveSession
	n    int

	onSession func(SessionEvent) // Config.OnSession
}

// add puts the session of conn in the list, in node, the handshake's own
// node (or a new one when node was already used: a request upgraded twice).
func (l *liveSessions) add(node *liveSession, conn net.Conn, exp *expiry) *liveSession {
	s := node
	if s.list != nil {
		s = new(liveSession)
	}
	s.Conn, s.exp, s.list = conn, exp, l
	l.mu.Lock()
	s.next = l.head
	if l.head != nil {
		l.head.prev = s
	}
	l.head = s
	l.n++
	l.mu.Unlock()
	s.start()
	return s
}

func (l *liveSessions) remove(s *liveSession) {
	if l.onSession != nil {
		defer l.sessionEnded(s)
	}
	l.mu.Lock()
	if s.removed {
		l.mu.Unlock()
		return
	}
	s.removed = true
	if s.prev != nil {
		s.prev.next = s.next
	} else {
		l.head = s.next
	}
	if s.next != nil {
		s.next.prev = s.prev
	}
	s.prev, s.next = nil, nil
	l.n--
	l.mu.Unlock()
	s.stopLate()
	s.fl.leave() // fleet.go
}

// snapshot returns the live sessions.
func (l *liveSessions) snapshot() []*liveSession {
	l.mu.Lock()
	defer l.mu.Unlock()
	all := make([]*liveSession, 0, l.n)
	for s := l.head; s != nil; s = s.next {
		all = append(all, s)
	}
	return all
}

// Shutdown closes every live session of the gate with close 1001 "going
// away", through the same closing handshake as every close the gate
// starts: the close frame, the client's close frame (at most a second),
// then the connection, within shutdownBound (three seconds) of the call.
// The gate takes each session's write lock first (see Session.WriteLock). A
// session with a credential expiry also has its context cancelled, as at
// the expiry (cause: the server is going away); other callbacks see their
// connection closed under them, so one that reads returns. Shutdown returns once every session it found
// is closed, or with ctx's error when ctx ends first. It does not stop new
// handshakes: call it after (or from) http.Server.Shutdown, for example
//
//	srv.RegisterOnShutdown(func() {
//		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
//		defer cancel()
//		gate.Shutdown(ctx)
//	})
//
// since http.Server.Shutdown does not touch hijacked connections.
func (g *Gate[P]) Shutdown(ctx context.Context) error {
	sessions := g.live.snapshot()
	var wg sync.WaitGroup
	for _, s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.goAway()
		}()
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// shutdownBound is the longest a session's close by Shutdown takes: the
// bounded wait for the write lock, the close frame and the wait for the
// client's close frame (see expiry).
const shutdownBound = 2*expiryLockWait + closeWriteTimeout + closeLinger
