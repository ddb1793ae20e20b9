package wsgate

import (
	"context"
	"errors"
	"sync"
	"time"
)

// DefaultMaxTickets is the bound of a MemoryTicketStore when
// MemoryTicketStoreOptions.MaxEntries is 0.
const DefaultMaxTickets = 100_000

// DefaultTicketSweep is how often a MemoryTicketStore drops expired entries
// when MemoryTicketStoreOptions.SweepInterval is 0.
const DefaultTicketSweep = 10 * time.Second

// sweepWhenFullEvery limits the full scans a full store makes on Put, so a
// flood of requests to a full issuer does not turn into a flood of scans.
const sweepWhenFullEvery = time.Second

var errTicketExists = errors.New("wsgate: ticket hash already stored")

// MemoryTicketStoreOptions configures NewMemoryTicketStore. The zero value
// is ready to use.
type MemoryTicketStoreOptions struct {
	// MaxEntries bounds the number of outstanding tickets; 0 means
	// DefaultMaxTickets. A full store refuses new tickets with
	// ErrTicketStoreFull (the issuer answers 503) rather than evicting
	// live ones early: each signed-in user can mint tickets, and eviction
	// would let one of them cancel everybody else's.
	MaxEntries int

	// SweepInterval is how often a background goroutine drops expired
	// entries; 0 means DefaultTicketSweep, and a negative value starts no
	// goroutine. Expired entries are also dropped when met by Consume and
	// when the store is full.
	SweepInterval time.Duration

	// Now is the clock; nil means time.Now. Tests set it.
	Now func() time.Time
}

// MemoryTicketStore is a TicketStore in the memory of one process: tickets
// issued by one server are accepted by that server only. It is safe for
// concurrent use. Call Close to stop its background sweep.
type MemoryTicketStore struct {
	max int
	now func() time.Time

	mu        sync.Mutex
	entries   map[[32]byte]memoryTicket
	lastSweep time.Time

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

type memoryTicket struct {
	rec     TicketRecord
	expires time.Time // by the store's clock
}

// NewMemoryTicketStore returns an empty store, and starts its background
// sweep unless opts.SweepInterval is negative.
func NewMemoryTicketStore(opts MemoryTicketStoreOptions) *MemoryTicketStore {
	s := &MemoryTicketStore{
		max:     opts.MaxEntries,
		now:     opts.Now,
		entries: make(map[[32]byte]memoryTicket),
	}
	if s.max <= 0 {
		s.max = DefaultMaxTickets
	}
	if s.now == nil {
		s.now = time.Now
	}
	interval := opts.SweepInterval
	if interval == 0 {
		interval = DefaultTicketSweep
	}
	if interval > 0 {
		s.stop, s.done = make(chan struct{}), make(chan struct{})
		go s.sweepEvery(interval)
	}
	return s
}

func (s *MemoryTicketStore) sweepEvery(interval time.Duration) {
	defer close(s.done)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
			s.mu.Lock()
			s.sweepLocked(s.now())
			s.mu.Unlock()
		}
	}
}

// sweepLocked drops every entry expired at now; s.mu is held.
func (s *MemoryTicketStore) sweepLocked(now time.Time) {
	for h, e := range s.entries {
		if !now.Before(e.expires) {
			delete(s.entries, h)
		}
	}
	s.lastSweep = now
}

// Put stores rec under hash for ttl. When the store holds MaxEntries live
// tickets it returns ErrTicketStoreFull. ctx is not used.
func (s *MemoryTicketStore) Put(_ context.Context, hash [32]byte, rec TicketRecord, ttl time.Duration) error {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.entries[hash]; ok && now.Before(e.expires) {
		return errTicketExists
	}
	if len(s.entries) >= s.max && now.Sub(s.lastSweep) >= sweepWhenFullEvery {
		s.sweepLocked(now)
	}
	if len(s.entries) >= s.max {
		return ErrTicketStoreFull
	}
	s.entries[hash] = memoryTicket{rec: rec, expires: now.Add(ttl)}
	return nil
}

// Consume removes the entry under hash and returns it, or returns
// ErrTicketNotFound if there is none or it has expired. ctx is not used.
func (s *MemoryTicketStore) Consume(_ context.Context, hash [32]byte) (TicketRecord, error) {
	now := s.now()
	s.mu.Lock()
	e, ok := s.entries[hash]
	if ok {
		delete(s.entries, hash)
	}
	s.mu.Unlock()
	if !ok || !now.Before(e.expires) {
		return TicketRecord{}, ErrTicketNotFound
	}
	return e.rec, nil
}

// Len returns the number of entries held, expired ones not yet swept
// included.
func (s *MemoryTicketStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// Close stops the background sweep and waits for it to end. The store stays
// usable, sweeping only when full. Close is safe to call more than once.
func (s *MemoryTicketStore) Close() error {
	s.closeOnce.Do(func() {
		if s.stop != nil {
			close(s.stop)
			<-s.done
		}
	})
	return nil
}
