package redisstore

import (
	"context"
	"encoding/hex"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/wsgate/wsgate/fleet"
)

// DefaultLeaseTTL is how long a session's slot in the cap lives without
// renewal when RegistryOptions.LeaseTTL is 0: a server that dies gives its
// slots back within that time.
const DefaultLeaseTTL = 15 * time.Second

// callTimeout bounds every Redis call the registry and the limiter make.
const callTimeout = 2 * time.Second

// RegistryOptions configures NewRegistry.
type RegistryOptions struct {
	// Prefix starts every key and the revocation channel; "" means
	// "wsgate:fleet:". Servers of one fleet use the same.
	Prefix string
	// MaxPerKey bounds the live sessions of one principal key across the
	// fleet; 0 means no bound.
	MaxPerKey int
	// LeaseTTL is the life of a session's slot without renewal; 0 means
	// DefaultLeaseTTL. The server renews its slots every LeaseTTL/3.
	LeaseTTL time.Duration
}

// Registry is a fleet.Registry shared through Redis: the cap counts every
// server's sessions (a sorted set per key of session ids scored by their
// lease's end, by Redis's clock), and Revoke and RevokeSession reach the
// sessions of every server through the channel each Registry subscribes
// to. Join costs one round trip (a script) for a keyed session and none
// for an unkeyed one. Close it when the server stops.
type Registry struct {
	rdb    redis.UniversalClient
	prefix string
	max    int
	ttl    time.Duration
	ids    string // this server's id prefix
	seq    atomic.Uint64

	mu      sync.Mutex
	members map[string]member // this server's sessions, by id

	sub   *redis.PubSub
	stop  chan struct{}
	wg    sync.WaitGroup
	close sync.Once
}

type member struct {
	key string
	m   fleet.Member
}

var _ fleet.Registry = (*Registry)(nil)

var joinScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local max = tonumber(ARGV[2])
if max > 0 and redis.call('ZCARD', KEYS[1]) >= max then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1`)

var renewScript = redis.NewScript(`
local t = redis.call('TIME')
local until_ = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', until_, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1`)

// NewRegistry returns a Registry on rdb and subscribes to the fleet's
// revocations. The caller keeps ownership of rdb.
func NewRegistry(ctx context.Context, rdb redis.UniversalClient, opts RegistryOptions) (*Registry, error) {
	r := &Registry{rdb: rdb, prefix: opts.Prefix, max: opts.MaxPerKey, ttl: opts.LeaseTTL,
		ids: fleet.NewIDPrefix(), members: map[string]member{}, stop: make(chan struct{})}
	if r.prefix == "" {
		r.prefix = "wsgate:fleet:"
	}
	if r.ttl <= 0 {
		r.ttl = DefaultLeaseTTL
	}
	for _, s := range []*redis.Script{joinScript, renewScript, checkScript, failScript} {
		if err := s.Load(ctx, rdb).Err(); err != nil {
			return nil, err
		}
	}
	r.sub = rdb.Subscribe(ctx, r.channel())
	if _, err := r.sub.Receive(ctx); err != nil { // the subscription is confirmed
		r.sub.Close()
		return nil, err
	}
	r.wg.Add(2)
	go r.listen()
	go r.renewEvery(r.ttl / 3)
	return r, nil
}

func (r *Registry) channel() string        { return r.prefix + "revoke" }
func (r *Registry) setKey(k string) string { return r.prefix + "s:" + k }

// Join admits m under key, unless the fleet holds MaxPerKey sessions of
// key already.
func (r *Registry) Join(ctx context.Context, key string, m fleet.Member) (string, error) {
	id := fleet.NewID(r.ids, r.seq.Add(1))
	if key != "" {
		ctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		ok, err := joinScript.EvalSha(ctx, r.rdb, []string{r.setKey(key)}, id, r.max, r.ttl.Milliseconds()).Int()
		if err != nil {
			return "", err
		}
		if ok == 0 {
			return "", fleet.ErrTooManySessions
		}
	}
	r.mu.Lock()
	r.members[id] = member{key, m}
	r.mu.Unlock()
	return id, nil
}

// Leave removes the session id; its slot is given back from a goroutine
// of the registry's, within callTimeout.
func (r *Registry) Leave(id string) {
	r.mu.Lock()
	e, ok := r.members[id]
	delete(r.members, id)
	r.mu.Unlock()
	if !ok || e.key == "" {
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		r.rdb.ZRem(ctx, r.setKey(e.key), id)
	}()
}

// Revoke asks every server of the fleet to close the sessions of key with
// fleet.CloseRevoked "session revoked", and returns once the request is
// published: each server closes its own sessions as soon as it hears it.
func (r *Registry) Revoke(ctx context.Context, key string) error {
	return r.rdb.Publish(ctx, r.channel(), "k:"+key).Err()
}

// RevokeSession asks the fleet to close the session id, as Revoke does.
func (r *Registry) RevokeSession(ctx context.Context, id string) error {
	return r.rdb.Publish(ctx, r.channel(), "s:"+id).Err()
}

func (r *Registry) listen() {
	defer r.wg.Done()
	ch := r.sub.Channel()
	for msg := range ch {
		kind, arg, _ := strings.Cut(msg.Payload, ":")
		var ms []fleet.Member
		r.mu.Lock()
		for id, e := range r.members {
			if kind == "k" && e.key == arg && arg != "" || kind == "s" && id == arg {
				ms = append(ms, e.m)
			}
		}
		r.mu.Unlock()
		if len(ms) > 0 {
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				_ = fleet.EndAll(context.Background(), ms, fleet.CloseRevoked, fleet.RevokedReason)
			}()
		}
	}
}

func (r *Registry) renewEvery(every time.Duration) {
	defer r.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.renew()
		}
	}
}

// renew extends the leases of this server's keyed sessions, in one
// pipeline.
func (r *Registry) renew() {
	byKey := map[string][]any{}
	r.mu.Lock()
	for id, e := range r.members {
		if e.key != "" {
			byKey[e.key] = append(byKey[e.key], id)
		}
	}
	r.mu.Unlock()
	if len(byKey) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	p := r.rdb.Pipeline()
	for k, ids := range byKey {
		renewScript.EvalSha(ctx, p, []string{r.setKey(k)}, append([]any{r.ttl.Milliseconds()}, ids...)...)
	}
	_, _ = p.Exec(ctx)
}

// Close stops the renewals and the subscription, and waits for the
// registry's goroutines. Sessions still live keep their slots until their
// leases run out; close them first (wsgate.Gate.Shutdown) to give them
// back at once.
func (r *Registry) Close() error {
	var err error
	r.close.Do(func() {
		close(r.stop)
		err = r.sub.Close()
		r.wg.Wait()
	})
	return err
}

// Limiter is a fleet.Limiter shared through Redis: the same GCRA as
// fleet.MemoryLimiter, by Redis's clock, one key per address (IPv6 by its
// /64) that expires when its failures have aged out. Check is one round
// trip; Fail is one, on failures only.
type Limiter struct {
	rdb                 redis.UniversalClient
	prefix              string
	interval, tolerance time.Duration
}

var _ fleet.Limiter = (*Limiter)(nil)

var checkScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local wait = tat - now - tonumber(ARGV[1])
if wait > 0 then return wait end
return 0`)

var failScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now) + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.floor((tat - now) / 1000) + 1)
return 1`)

// NewLimiter returns a Limiter on rdb with keys starting with prefix (""
// means "wsgate:limit:"); opts.MaxAddresses and opts.Now do not apply:
// Redis bounds the keys by their expiry, and its clock decides.
func NewLimiter(ctx context.Context, rdb redis.UniversalClient, prefix string, opts fleet.LimiterOptions) (*Limiter, error) {
	if prefix == "" {
		prefix = "wsgate:limit:"
	}
	for _, s := range []*redis.Script{checkScript, failScript} {
		if err := s.Load(ctx, rdb).Err(); err != nil {
			return nil, err
		}
	}
	l := &Limiter{rdb: rdb, prefix: prefix}
	l.interval, l.tolerance = opts.Rate()
	return l, nil
}

func (l *Limiter) key(a netip.Addr) string {
	k := fleet.AddrKey(a)
	return l.prefix + hex.EncodeToString(k[:])
}

// Check returns how long addr must wait.
func (l *Limiter) Check(ctx context.Context, addr netip.Addr) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	us, err := checkScript.EvalSha(ctx, l.rdb, []string{l.key(addr)}, l.tolerance.Microseconds()).Int64()
	return time.Duration(us) * time.Microsecond, err
}

// Fail records a refused credential from addr.
func (l *Limiter) Fail(ctx context.Context, addr netip.Addr) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return failScript.EvalSha(ctx, l.rdb, []string{l.key(addr)}, l.interval.Microseconds()).Err()
}
