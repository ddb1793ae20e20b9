// Package fleet holds wsgate's controls over live sockets and failed
// handshakes: a registry of live sessions that can revoke them and cap them
// per principal, and a limiter of failed handshakes per client address. A
// Gate uses them through Config.Registry and Config.Limiter; this package
// has the interfaces and the implementations for one server (Memory,
// MemoryLimiter), and the module github.com/wsgate/wsgate/redisstore has
// those a fleet of servers shares through Redis.
//
// What a page sees of each control, in close-frame mode
// (Config.RefuseWithCloseFrame) or on a live socket:
//
//	CloseRevoked (4410) "session revoked"           Revoke, RevokeSession
//	CloseTooManySessions (4409) "too many sessions" the principal's cap is reached
//	CloseRateLimited (4429) "too many failed attempts" the address is limited
//	4401 "refresh refused"                          a refused Session.Refresh
//
// Over HTTP the cap and the limiter answer 429 (the limiter with
// Retry-After), and errors.Is matches ErrTooManySessions and ErrRateLimited
// on the gate's *wsgate.Error.
package fleet

import (
	"context"
	"errors"

	"github.com/gobwas/ws"
)

// Close codes a Gate sends for the fleet controls, in the range RFC 6455
// leaves to applications; the last three digits mirror an HTTP status.
const (
	// CloseRevoked (4410, "gone"): the application revoked the session
	// (Revoke or RevokeSession); reason "session revoked".
	CloseRevoked ws.StatusCode = 4410
	// CloseTooManySessions (4409): the principal already holds as many live
	// sessions as the registry allows; reason "too many sessions".
	CloseTooManySessions ws.StatusCode = 4409
	// CloseRateLimited (4429): too many failed handshakes came from the
	// client's address; reason "too many failed attempts".
	CloseRateLimited ws.StatusCode = 4429
)

// RevokedReason is the close reason of a revoked session.
const RevokedReason = "session revoked"

var (
	// ErrTooManySessions: the principal already holds the most live
	// sessions the Registry allows. A Gate answers 429 (close-frame mode:
	// CloseTooManySessions) and its *wsgate.Error matches this with
	// errors.Is.
	ErrTooManySessions = errors.New("fleet: too many sessions for this principal")
	// ErrRateLimited: too many failed handshakes came from the client's
	// address lately; the verifier was not called. A Gate answers 429 with
	// Retry-After (close-frame mode: CloseRateLimited) and its
	// *wsgate.Error matches this with errors.Is.
	ErrRateLimited = errors.New("fleet: too many failed handshakes from this address")
	// ErrUnavailable: the Registry could not admit a session for another
	// reason than the cap (Redis unreachable, say). A Gate answers 503
	// (close-frame mode: 1011): a session the registry does not hold could
	// not be revoked.
	ErrUnavailable = errors.New("fleet: session registry unavailable")
	// ErrRevoked is the cause (see context.Cause) of the cancellation of a
	// revoked session's context.
	ErrRevoked = errors.New("fleet: session revoked")
)

// Member is a live session as a Registry holds it; the Gate implements it.
type Member interface {
	// End closes the session with code and reason through the gate's
	// closing handshake (the close frame, the client's close frame, then
	// the connection), and returns once it is closed: within three seconds,
	// whatever the client or the application does. The session's context,
	// where it has one, is cancelled with cause ErrRevoked. Ending a session
	// that has ended does nothing.
	End(code ws.StatusCode, reason string)
}

// Registry holds a server's live sessions, by id and by principal key, and
// may cap the sessions of one key. Implementations must be safe for
// concurrent use; a Registry may be shared by several gates.
type Registry interface {
	// Join admits the session m of the principal key and returns its id,
	// unique among the registry's (and, for a shared one, the fleet's)
	// sessions. The gate calls it after the verifier accepted and before
	// it answers the handshake. It returns ErrTooManySessions, or an error
	// wrapping it, when key already holds the most sessions allowed; any
	// other error refuses the handshake with 503. An empty key counts
	// toward no cap and is revoked by no key. ctx is the handshake
	// request's.
	Join(ctx context.Context, key string, m Member) (id string, err error)
	// Leave removes the session id when it ends. It must not block for
	// long: the gate calls it while closing the connection.
	Leave(id string)
}
