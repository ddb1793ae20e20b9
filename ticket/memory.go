package ticket

import (
	"context"
	"crypto/sha256"
	"errors"
	"sync"
	"time"
)

// DefaultMaxEntries is the bound of a MemoryStore when
// MemoryStoreOptions.MaxEntries is 0, and of a zero MemoryStore.
const DefaultMaxEntries = 100_000

// DefaultMaxPerPrincipal is how many outstanding tickets one principal may
// hold in a MemoryStore when MemoryStoreOptions.MaxPerPrincipal is 0, and
// in a zero MemoryStore.
const DefaultMaxPerPrincipal = 10

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

	// MaxPerPrincipal bounds the outstanding (issued, neither consumed nor
	// expired) tickets of one principal, told apart by their encoded
	// Record.Principal; 0 means DefaultMaxPerPrincipal, and a negative value
	// lifts the bound. A principal at its bound is refused new tickets with
	// ErrQuotaExceeded (the issuer answers 429) until one of its tickets is
	// used or expires, so that one signed-in user cannot fill the store and
	// shut everybody else out.
	MaxPerPrincipal int

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
	max    int              // 0: DefaultMaxEntries
	maxPer int              // 0: DefaultMaxPerPrincipal; negative: no bound
	now    func() time.Time // nil: time.Now

	mu        sync.Mutex
	entries   map[[32]byte]memoryEntry // nil until the first Put
	owners    map[[32]byte][][32]byte  // each principal's ticket hashes
	lastSweep time.Time

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

type memoryEntry struct {
	rec     Record
	expires time.Time // by the store's clock
	owner   [32]byte  // SHA-256 of rec.Principal
}

// NewMemoryStore returns an empty store, and starts its background sweep
// unless opts.SweepInterval is negative.
func NewMemoryStore(opts MemoryStoreOptions) *MemoryStore {
	s := &MemoryStore{max: opts.MaxEntries, maxPer: opts.MaxPerPrincipal, now: opts.Now}
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
			s.dropLocked(h, e.owner)
		}
	}
	s.lastSweep = now
}

// Put stores rec under hash for ttl. When the store holds MaxEntries live
// tickets it returns ErrStoreFull, and when rec's principal holds
// MaxPerPrincipal live tickets, ErrQuotaExceeded. ctx is not used.
func (s *MemoryStore) Put(_ context.Context, hash [32]byte, rec Record, ttl time.Duration) error {
	now := s.clock()
	owner := sha256.Sum256(rec.Principal)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.entries == nil {
		s.entries = make(map[[32]byte]memoryEntry)
		s.owners = make(map[[32]byte][][32]byte)
	}
	if e, ok := s.entries[hash]; ok && now.Before(e.expires) {
		return errExists
	}
	if maxPer := s.perPrincipal(); maxPer > 0 && len(s.owners[owner]) >= maxPer {
		// The principal's own tickets are few: drop its expired ones
		// before refusing.
		for _, h := range append([][32]byte(nil), s.owners[owner]...) {
			if e, ok := s.entries[h]; ok && !now.Before(e.expires) {
				s.dropLocked(h, owner)
			}
		}
		if len(s.owners[owner]) >= maxPer {
			return ErrQuotaExceeded
		}
	}
	limit := s.limit()
	if len(s.entries) >= limit && now.Sub(s.lastSweep) >= sweepWhenFullEvery {
		s.sweepLocked(now)
	}
	if len(s.entries) >= limit {
		return ErrStoreFull
	}
	if e, ok := s.entries[hash]; ok {
		s.dropLocked(hash, e.owner) // an expired entry under the same hash
	}
	s.entries[hash] = memoryEntry{rec: rec, expires: now.Add(ttl), owner: owner}
	s.owners[owner] = append(s.owners[owner], hash)
	return nil
}

func (s *MemoryStore) perPrincipal() int {
	if s.maxPer == 0 {
		return DefaultMaxPerPrincipal
	}
	return s.maxPer
}

// dropLocked removes the entry under hash, owned by owner; s.mu is held.
func (s *MemoryStore) dropLocked(hash, owner [32]byte) {
	delete(s.entries, hash)
	hs := s.owners[owner]
	for i, h := range hs {
		if h == hash {
			hs[i] = hs[len(hs)-1]
			hs = hs[:len(hs)-1]
			break
		}
	}
	if len(hs) == 0 {
		delete(s.owners, owner)
	} else {
		s.owners[owner] = hs
	}
}

// Consume removes the entry under hash and returns it, or returns
// ErrNotFound if there is none or it has expired. ctx is not used.
func (s *MemoryStore) Consume(_ context.Context, hash [32]byte) (Record, error) {
	now := s.clock()
	s.mu.Lock()
	e, ok := s.entries[hash]
	if ok {
		s.dropLocked(hash, e.owner)
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
