package fleet

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Limiter slows down clients whose handshakes keep failing, before the
// verifier runs: a Gate asks Check before each verification and reports
// each refused credential (invalid or malformed) with Fail. Addresses are
// the client's IP address as the gate tells it (Config.TrustedProxies
// decides whether X-Forwarded-For counts, as for ticket.Service.BindClient).
// Implementations must be safe for concurrent use.
type Limiter interface {
	// Check returns how long addr must wait before its next handshake is
	// verified: 0 when it may go on now. An error lets the handshake go on
	// (and the gate logs it): a limiter that is down must not shut every
	// client out.
	Check(ctx context.Context, addr netip.Addr) (retryAfter time.Duration, err error)
	// Fail records a refused credential from addr.
	Fail(ctx context.Context, addr netip.Addr) error
}

// Defaults of LimiterOptions.
const (
	DefaultFailures     = 10
	DefaultWindow       = time.Minute
	DefaultMaxAddresses = 100_000
)

// LimiterOptions configures NewMemoryLimiter, and the limiter of package
// redisstore. The zero value means 10 failures a minute.
type LimiterOptions struct {
	// Failures is how many refused credentials an address may send in a
	// row before it must wait; 0 means DefaultFailures.
	Failures int
	// Window is the time over which Failures are allowed: once an address
	// spent them, it may try again once every Window/Failures; 0 means
	// DefaultWindow.
	Window time.Duration
	// MaxAddresses bounds the addresses a MemoryLimiter remembers; 0 means
	// DefaultMaxAddresses. When full, it forgets an address whose failures
	// have aged out, or else the one of a few sampled whose failures are
	// oldest.
	MaxAddresses int
	// Now is the clock; nil means time.Now. Tests set it.
	Now func() time.Time
}

// Rate returns the emission interval and the burst tolerance of a generic
// cell rate algorithm (GCRA) that allows o.Failures in o.Window: each
// failure moves an address's theoretical arrival time by interval, and a
// handshake is heard while that time is at most tolerance ahead of now.
func (o LimiterOptions) Rate() (interval, tolerance time.Duration) {
	k, w := o.Failures, o.Window
	if k <= 0 {
		k = DefaultFailures
	}
	if w <= 0 {
		w = DefaultWindow
	}
	interval = w / time.Duration(k)
	return interval, w - interval
}

// limiterShards spreads the table over locks; a power of two.
const limiterShards = 64

// MemoryLimiter is a Limiter in the memory of one process, a GCRA per
// address (IPv6 addresses by their /64, the block a single host usually
// has) in a table of at most MaxAddresses entries of 16 bytes of address
// and 8 of time each: a flood of distinct addresses cannot grow it further
// (TestLimiterMemoryIsBoundedUnderAFloodOfAddresses measures under 16 MiB
// for a million addresses with the default bound). Addresses that never
// failed take no room. Its zero value uses the defaults.
type MemoryLimiter struct {
	opts   LimiterOptions
	shards [limiterShards]limiterShard
}

type limiterShard struct {
	mu  sync.Mutex
	tat map[[16]byte]int64 // theoretical arrival time, ns by the limiter's clock
	n   atomic.Int64       // len(tat), for Check's look without the lock
}

// NewMemoryLimiter returns an empty limiter.
func NewMemoryLimiter(opts LimiterOptions) *MemoryLimiter {
	return &MemoryLimiter{opts: opts}
}

func (l *MemoryLimiter) now() int64 {
	if l.opts.Now != nil {
		return l.opts.Now().UnixNano()
	}
	return time.Now().UnixNano()
}

// AddrKey is the 16 bytes a limiter keys addr by: an IPv4 address as
// itself (mapped), an IPv6 address by its /64.
func AddrKey(addr netip.Addr) [16]byte {
	k := addr.Unmap().As16()
	if addr.Unmap().Is6() {
		clear(k[8:])
	}
	return k
}

func (l *MemoryLimiter) shard(k [16]byte) *limiterShard {
	h := uint32(2166136261)
	for _, b := range k {
		h = (h ^ uint32(b)) * 16777619
	}
	return &l.shards[h&(limiterShards-1)]
}

// Check reports how long addr must wait; it never fails.
func (l *MemoryLimiter) Check(_ context.Context, addr netip.Addr) (time.Duration, error) {
	k := AddrKey(addr)
	s := l.shard(k)
	if s.n.Load() == 0 {
		return 0, nil // no address of this shard failed lately
	}
	_, tolerance := l.opts.Rate()
	now := l.now()
	s.mu.Lock()
	tat, ok := s.tat[k]
	if ok && tat <= now {
		delete(s.tat, k) // its failures have aged out
		s.n.Add(-1)
	}
	s.mu.Unlock()
	if wait := time.Duration(tat - now); ok && wait > tolerance {
		return wait - tolerance, nil
	}
	return 0, nil
}

// Fail records a refused credential from addr; it never fails.
func (l *MemoryLimiter) Fail(_ context.Context, addr netip.Addr) error {
	k := AddrKey(addr)
	s := l.shard(k)
	interval, _ := l.opts.Rate()
	now := l.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	tat, ok := s.tat[k]
	if !ok {
		if s.tat == nil {
			s.tat = make(map[[16]byte]int64)
		}
		max := l.opts.MaxAddresses
		if max <= 0 {
			max = DefaultMaxAddresses
		}
		if len(s.tat) >= (max+limiterShards-1)/limiterShards {
			s.evictLocked(now)
		}
		s.n.Store(int64(len(s.tat)) + 1)
	}
	s.tat[k] = max(tat, now) + int64(interval)
	return nil
}

// evictLocked makes room for one entry: it samples a few entries (map
// iteration starts at a random place) and drops the first whose failures
// have aged out, or else the oldest sampled.
func (s *limiterShard) evictLocked(now int64) {
	const samples = 8
	var victim [16]byte
	oldest, n := int64(0), 0
	for k, tat := range s.tat {
		if tat <= now {
			victim = k
			break
		}
		if n == 0 || tat < oldest {
			victim, oldest = k, tat
		}
		if n++; n == samples {
			break
		}
	}
	delete(s.tat, victim)
	s.n.Store(int64(len(s.tat)))
}

// Len returns the number of addresses remembered.
func (l *MemoryLimiter) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.tat)
		s.mu.Unlock()
	}
	return n
}
