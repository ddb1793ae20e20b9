package wsgate

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"sync"
	"time"
)

// Verifier checks a credential and returns the principal it stands for.
//
// Return (or wrap) ErrInvalidToken for a credential that is unknown, expired
// or wrong (answered 401, error="invalid_token"), and ErrForbidden for a
// valid credential that may not open this socket (403,
// error="insufficient_scope"). If ctx is done before the verifier returns an
// error, or the error wraps context.DeadlineExceeded, the answer is 503. An
// error matching ErrCredentialExpired is answered as ErrInvalidToken. Any
// other error is answered 500 with a generic body; the error itself reaches
// only the caller's logs (at Debug), so it must not contain the credential.
//
// The refusal's class (HandshakeEvent.Class, the "class" of the log line,
// the error.type of package otelwsgate's spans and metrics) is "invalid",
// "forbidden", "timeout" or "verifier_error" by the answer, and "expired"
// for an error matching ErrCredentialExpired. An error that has a method
// Class() string (found with errors.As) names a class of its own instead,
// such as "bad_signature" or "revoked", so that an operator can tell
// refusals apart without reading the error text: a lower-case ASCII letter,
// then at most 31 lower-case letters, digits or underscores, else it is
// ignored. Keep them to a small fixed set: they become metric labels.
//
// ctx carries the gate's verification deadline and is cancelled when the
// client goes away. A verifier is called concurrently from many handshakes.
type Verifier[P any] func(ctx context.Context, c Credential) (P, error)

// StaticToken returns a Verifier that accepts exactly token, from any
// source, and yields principal. The comparison runs in constant time: how
// long it takes depends on the length of token alone, never on the
// presented credential's content or length. A Basic credential with a
// non-empty password is refused. It panics if token is empty.
func StaticToken[P any](token string, principal P) Verifier[P] {
	if token == "" {
		panic("wsgate: StaticToken with an empty token")
	}
	want := []byte(token)
	return func(_ context.Context, c Credential) (P, error) {
		if !constantTimeEqual(stringBytes(c.Token()), want) {
			var zero P
			return zero, ErrInvalidToken
		}
		return principal, nil
	}
}

// constantTimeEqual reports whether got equals want, in a time that depends
// on len(want) only: a got of another length is refused after comparing
// want with itself, so neither a prefix nor the length leaks.
func constantTimeEqual(got, want []byte) bool {
	same := subtle.ConstantTimeEq(int32(min(len(got), 1<<30)), int32(len(want)))
	if same == 0 {
		got = want
	}
	return subtle.ConstantTimeCompare(got, want)&same == 1
}

// verifyError maps a verifier's error to the refusal the client gets.
func verifyError(ctx context.Context, err error, src Source) *Error {
	var e *Error
	switch {
	case errors.Is(err, ErrInvalidToken):
		e = errInvalidToken
	case errors.Is(err, ErrForbidden):
		e = errForbidden
	case errors.Is(err, ErrCredentialExpired):
		e = errInvalidToken
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled), ctx.Err() != nil:
		e = errVerifyTimeout
	default:
		e = errVerifier500
	}
	c := *e
	c.Source = src
	if err != e.kind {
		c.cause = err
	}
	return &c
}

// defaultVerifyTimeout is the verification deadline when Config leaves it 0.
const defaultVerifyTimeout = 10 * time.Second

// verifyContext is the context a verifier receives: its parent's values and
// cancellation, the handshake request (see RequestFrom) and the verification
// deadline. The deadline starts when the verifier first looks at the
// context, and the channel and timer behind Done are made only when somebody
// asks for them, so a verifier that never waits (a static token, a
// signature check) costs no clock read and no timer.
type verifyContext struct {
	parent  context.Context
	r       *http.Request
	facts   *requestFacts // on the raw path, instead of r
	timeout time.Duration

	mu         sync.Mutex
	deadline   time.Time // zero until first asked for
	expiry     time.Time // set by SetExpiry
	released   bool
	done       chan struct{}
	err        error
	timer      *time.Timer
	stopParent func() bool
}

// handshake is what the gate keeps of one handshake past its extractors,
// in one allocation: the context its verifier receives and, once the
// handshake is accepted, its place among the gate's live sessions.
type handshake struct {
	vctx verifyContext
	live liveSession
}

// newHandshakeState returns the handshake state for verifying r's credential.
func newHandshakeState(r *http.Request, timeout time.Duration) *handshake {
	return &handshake{vctx: verifyContext{parent: r.Context(), r: r, timeout: timeout}}
}

// RequestFrom returns the handshake request a Gate is verifying, from the
// context its Verifier receives, or nil for any other context. Verifiers
// use it to check properties of the handshake beyond the credential
// (package ticket checks a ticket's bindings with it). By then the Query
// extractors' parameters have been removed from the request's query; the
// request must not be modified.
//
// On the raw path (Gate.UpgradeConn, Gate.Serve), where no http.Request was
// parsed, it returns one made on first use from what the gate kept of the
// handshake: Method, Proto, Host, RemoteAddr, TLS, RequestURI and URL (path
// and query, without the Query extractors' parameters), and the headers
// Origin, Sec-Fetch-Site, X-Forwarded-For, X-Forwarded-Proto and
// X-Forwarded-Host; never a credential's header. There it also works with
// the context Gate.Serve hands to its callback.
func RequestFrom(ctx context.Context) *http.Request {
	if s, ok := ctx.Value(requestKey{}).(requestSource); ok {
		return s.request()
	}
	return nil
}

// requestSource is what RequestFrom finds in a context.
type requestSource interface{ request() *http.Request }

func (c *verifyContext) request() *http.Request {
	if c.facts != nil {
		return c.facts.request()
	}
	return c.r
}

type requestKey struct{}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (c *verifyContext) Deadline() (time.Time, bool) {
	c.mu.Lock()
	d := c.deadlineLocked()
	c.mu.Unlock()
	if pd, ok := c.parent.Deadline(); ok && pd.Before(d) {
		return pd, true
	}
	return d, true
}

// deadlineLocked returns the verification deadline, starting it on first
// use; c.mu is held.
func (c *verifyContext) deadlineLocked() time.Time {
	if c.deadline.IsZero() {
		c.deadline = time.Now().Add(c.timeout)
	}
	return c.deadline
}

func (c *verifyContext) Value(key any) any {
	switch key {
	case verifyContextKey{}, requestKey{}:
		return c
	}
	return c.parent.Value(key)
}

func (c *verifyContext) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.start()
	}
	return c.done
}

func (c *verifyContext) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil && c.expired() != nil {
		c.start()
	}
	return c.err
}

// expired reports the error the context has by now, without any timer;
// c.mu is held.
func (c *verifyContext) expired() error {
	if err := c.parent.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadlineLocked()) {
		return context.DeadlineExceeded
	}
	return nil
}

// start makes the Done channel and arms it; c.mu is held.
func (c *verifyContext) start() {
	if err := c.expired(); err != nil {
		c.err, c.done = err, closedChan
		return
	}
	c.done = make(chan struct{})
	c.timer = time.AfterFunc(time.Until(c.deadline), func() { c.cancel(context.DeadlineExceeded) })
	c.stopParent = context.AfterFunc(c.parent, func() { c.cancel(c.parent.Err()) })
}

func (c *verifyContext) cancel(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
		close(c.done)
	}
}

// release ends the context once the verifier has returned, like the cancel
// function of context.WithTimeout.
func (c *verifyContext) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.released = true
	if c.timer != nil {
		c.timer.Stop()
		c.stopParent()
	}
	if c.err == nil {
		c.err = context.Canceled
		if c.done == nil {
			c.done = closedChan
		} else {
			close(c.done)
		}
	}
}
