package wsgate

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"sync"
	"time"
)

// Verifier checks a credential and returns the principal it stands for.
//
// Return (or wrap) ErrInvalidToken for a credential that is unknown, expired
// or wrong (answered 401, error="invalid_token"), and ErrForbidden for a
// valid credential that may not open this socket (403,
// error="insufficient_scope"). If ctx is done before the verifier returns an
// error, or the error wraps context.DeadlineExceeded, the answer is 503. Any
// other error is answered 500 with a generic body; the error itself reaches
// only the caller's logs, so it must not contain the credential.
//
// ctx carries the gate's verification deadline and is cancelled when the
// client goes away. A verifier is called concurrently from many handshakes.
type Verifier[P any] func(ctx context.Context, c Credential) (P, error)

// StaticToken returns a Verifier that accepts exactly token, from any
// source, and yields principal. It compares SHA-256 digests in constant
// time, so neither the comparison's timing nor a memory dump of the verifier
// reveals the token. A Basic credential with a non-empty password is
// refused. It panics if token is empty.
func StaticToken[P any](token string, principal P) Verifier[P] {
	if token == "" {
		panic("wsgate: StaticToken with an empty token")
	}
	want := sha256.Sum256([]byte(token))
	return func(_ context.Context, c Credential) (P, error) {
		got := sha256.Sum256(stringBytes(c.Token))
		if c.Token == "" || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			var zero P
			return zero, ErrInvalidToken
		}
		return principal, nil
	}
}

// verifyError maps a verifier's error to the refusal the client gets.
func verifyError(ctx context.Context, err error, src Source) *Error {
	var e *Error
	switch {
	case errors.Is(err, ErrInvalidToken):
		e = errInvalidToken
	case errors.Is(err, ErrForbidden):
		e = errForbidden
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

var errVerifier500 = refusal(ErrVerifier, 500, "", "internal error")

// DefaultVerifyTimeout is the verification deadline when Config leaves it 0.
const DefaultVerifyTimeout = 10 * time.Second

// verifyContext is the context a verifier receives: its parent's values and
// cancellation, plus the verification deadline. The channel and timer behind
// Done are made only when somebody asks for them, so a verifier that never
// waits (a static token, a signature check) costs no timer.
type verifyContext struct {
	parent   context.Context
	deadline time.Time

	mu         sync.Mutex
	expiry     time.Time // set by SetExpiry
	released   bool
	done       chan struct{}
	err        error
	timer      *time.Timer
	stopParent func() bool
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (c *verifyContext) Deadline() (time.Time, bool) {
	if d, ok := c.parent.Deadline(); ok && d.Before(c.deadline) {
		return d, true
	}
	return c.deadline, true
}

func (c *verifyContext) Value(key any) any {
	if key == (verifyContextKey{}) {
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

// expired reports the error the context has by now, without any timer.
func (c *verifyContext) expired() error {
	if err := c.parent.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadline) {
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
