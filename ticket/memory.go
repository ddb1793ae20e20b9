package ticket

import (
	"context"
	"errors"
	"sync"
	"time"
)

// DefaultMaxEntries is the bound of a MemoryStore when
// MemoryStoreOptions.MaxEntries is 0, and of a zero MemoryStore.
const DefaultMaxEntries = 100_000

// DefaultSweep is how often a MemoryStore made by NewMemoryStore drops
// expired entries when MemoryStoreOptions.SweepInterval is 0.
const DefaultSweep = 10 * time.Second

// sweepWhenFullEvery limits the full scans a full store makes on Put, so a
// flood of requests to a full issuer does not turn into a flood of scans.
const sweepWhenFullEvery = time.Second

var errExists = errors.New("ticket: hash already stored")

// MemoryStoreOptions configures NewMemoryStore. The zero value is ready to
// use.
type MemoryStoreOptions struct {
	// MaxEntries bounds the number of outstanding tickets; 0 means
	// DefaultMaxEntries. A full store refuses new tickets with
	// ErrStoreFull (the issuer answers 503) rather than evicting live
	// ones early: each signed-in user can mint tickets, and eviction
	// would let one of them cancel everybody else's.
	MaxEntries int

	// SweepInterval is how often a background goroutine drops expired
	// entries; 0 means DefaultSweep, and a negative value starts no
	// goroutine. Expired entries are also dropped when met by Consume and
	// when the store is full.
	SweepInterval time.Duration

	// Now is the clock; nil means time.Now. Tests set it.
	Now func() time.Time
}

// MemoryStore is a Store in the memory of one process: tickets issued by
// one server are accepted by that server only. It is safe for concurrent
// use, and must not be copied after first use. Call Close to stop the
// background sweep NewMemoryStore starts.
//
// The zero MemoryStore is ready to use, with DefaultMaxEntries, time.Now
// and no background sweep: it drops expired entries only when it meets
// them in Consume and when it is full.
type MemoryStore struct {
	max int              // 0: DefaultMaxEntries
	now func() time.Time // nil: time.Now

	mu        sync.Mutex
	entries   map[[32]byte]memoryEntry // nil until the first Put
	lastSweep time.Time

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

type memoryEntry struct {
	rec     Record
	expires time.Time // by the store's clock
}

// NewMemoryStore returns an empty store, and starts its background sweep
// unless opts.SweepInterval is negative.
func NewMemoryStore(opts MemoryStoreOptions) *MemoryStore {
	s := &MemoryStore{max: opts.MaxEntries, now: opts.Now}
	interval := opts.SweepInterval
	if interval == 0 {
		interval = DefaultSweep
	}
	if interval > 0 {
		s.stop, s.done = make(chan struct{}), make(chan struct{})
		go s.sweepEvery(interval)
	}
	return s
}

func (s *MemoryStore) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

func (s *MemoryStore) limit() int {
	if s.max > 0 {
		return s.max
	}
	return DefaultMaxEntries
}

func (s *MemoryStore) sweepEvery(interval time.Duration) {
	defer close(s.done)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
			s.mu.Lock()
			s.sweepLocked(s.clock())
			s.mu.Unlock()
		}
	}
}

// sweepLocked drops every entry expired at now; s.mu is held.
func (s *MemoryStore) sweepLocked(now time.Time) {
	for h, e := range s.entries {
		if !now.Before(e.expires) {
			delete(s.entries, h)
		}
	}
	s.lastSweep = now
}

// Put stores rec under hash for ttl. When the store holds MaxEntries live
// tickets it returns ErrStoreFull. ctx is not used.
func (s *MemoryStore) Put(_ context.Context, hash [32]byte, rec Record, ttl time.Duration) error {
	now := s.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.entries == nil {
		s.entries = make(map[[32]byte]memoryEntry)
	}
	if e, ok := s.entries[hash]; ok && now.Before(e.expires) {
		return errExists
	}
	limit := s.limit()
	if len(s.entries) >= limit && now.Sub(s.lastSweep) >= sweepWhenFullEvery {
		s.sweepLocked(now)
	}
	if len(s.entries) >= limit {
		return ErrStoreFull
	}
	s.entries[hash] = memoryEntry{rec: rec, expires: now.Add(ttl)}
	return nil
}

// Consume removes the entry under hash and returns it, or returns
// ErrNotFound if there is none or it has expired. ctx is not used.
func (s *MemoryStore) Consume(_ context.Context, hash [32]byte) (Record, error) {
	now := s.clock()
	s.mu.Lock()
	e, ok := s.entries[hash]
	if ok {
		delete(s.entries, hash)
	}
	s.mu.Unlock()
	if !ok || !now.Before(e.expires) {
		return Record{}, ErrNotFound
	}
	return e.rec, nil
}

// Len returns the number of entries held, expired ones not yet swept
// included.
func (s *MemoryStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// Close stops the background sweep and waits for it to end. The store stays
// usable, sweeping only when full. Close is safe to call more than once, and
// on a zero MemoryStore.
func (s *MemoryStore) Close() error {
	s.closeOnce.Do(func() {
		if s.stop != nil {
			close(s.stop)
			<-s.done
		}
	})
	return nil
}
