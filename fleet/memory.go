package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/gobwas/ws"
)

// MemoryOptions configures NewMemory. The zero value caps nothing.
type MemoryOptions struct {
	// MaxPerKey bounds the live sessions of one principal key; 0 means no
	// bound. The next handshake of a key at its bound is refused with
	// ErrTooManySessions.
	MaxPerKey int
}

// Memory is a Registry in the memory of one process: Revoke and
// RevokeSession reach the sessions of the gates that share it on this
// server, and MaxPerKey counts those sessions only. It is safe for
// concurrent use. Its zero value caps nothing and is ready to use.
type Memory struct {
	max    int
	prefix string
	once   sync.Once
	seq    atomic.Uint64

	mu    sync.Mutex
	byID  map[uint64]*MemoryEntry // by the sequence number that ends the id
	byKey map[string]*MemoryEntry // the newest session of each key, linked to the others
}

// MemoryEntry is a session as a Memory records it. A Member that has a
// method MemoryEntry() *MemoryEntry, returning room of its own that no
// registry uses, spares Join an allocation; the Member must not use that
// room itself, and must return the same one until it has left.
type MemoryEntry struct {
	seq        uint64
	key        string
	m          Member
	n          int          // in the head of a key's list: the key's sessions
	prev, next *MemoryEntry // sessions of the same key
}

// entryHolder is a Member that keeps its own MemoryEntry.
type entryHolder interface{ MemoryEntry() *MemoryEntry }

// NewMemory returns an empty in-memory registry.
func NewMemory(opts MemoryOptions) *Memory {
	return &Memory{max: opts.MaxPerKey}
}

// newPrefix returns a random prefix for session ids, so that ids of two
// registries (two servers, or a restart) never collide.
func newPrefix() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:]) + "-"
}

// NewID returns an id unique among the ids made with prefix: the prefix
// and the sequence number n in base 36. Implementations of Registry use it
// with a prefix of their own (see NewIDPrefix).
func NewID(prefix string, n uint64) string {
	var b [40]byte
	k := copy(b[:], prefix)
	return string(strconv.AppendUint(b[:k], n, 36))
}

// idSeq returns the sequence number of an id NewID made with prefix.
func idSeq(prefix, id string) (uint64, bool) {
	if len(id) <= len(prefix) || id[:len(prefix)] != prefix {
		return 0, false
	}
	n, err := strconv.ParseUint(id[len(prefix):], 36, 64)
	return n, err == nil
}

// NewIDPrefix returns 64 random bits in hex and a dash, a prefix for NewID
// that no other process draws.
func NewIDPrefix() string { return newPrefix() }

func (r *Memory) init() {
	r.once.Do(func() { r.prefix = newPrefix() })
}

// Join admits m under key, unless key holds MaxPerKey sessions already.
func (r *Memory) Join(_ context.Context, key string, m Member) (string, error) {
	r.init()
	var e *MemoryEntry
	if h, ok := m.(entryHolder); ok {
		e = h.MemoryEntry()
	}
	if e == nil {
		e = new(MemoryEntry)
	}
	*e = MemoryEntry{seq: r.seq.Add(1), key: key, m: m}
	r.mu.Lock()
	if r.byID == nil {
		r.byID, r.byKey = map[uint64]*MemoryEntry{}, map[string]*MemoryEntry{}
	}
	if key != "" {
		head := r.byKey[key]
		if head != nil {
			if r.max > 0 && head.n >= r.max {
				r.mu.Unlock()
				return "", ErrTooManySessions
			}
			e.n, head.n = head.n, 0
			head.prev, e.next = e, head
		}
		e.n++
		r.byKey[key] = e
	}
	r.byID[e.seq] = e
	r.mu.Unlock()
	return NewID(r.prefix, e.seq), nil
}

// Leave removes the session id.
func (r *Memory) Leave(id string) {
	r.init()
	seq, ok := idSeq(r.prefix, id)
	if !ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.byID[seq]
	if e == nil {
		return
	}
	delete(r.byID, seq)
	if e.key == "" {
		return
	}
	if e.prev != nil {
		e.prev.next = e.next
		r.byKey[e.key].n--
	} else if e.next != nil {
		e.next.n = e.n - 1
		r.byKey[e.key] = e.next
	} else {
		delete(r.byKey, e.key)
	}
	if e.next != nil {
		e.next.prev = e.prev
	}
}

// Len returns the number of live sessions of key ("" for all sessions).
func (r *Memory) Len(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if key == "" {
		return len(r.byID)
	}
	if head := r.byKey[key]; head != nil {
		return head.n
	}
	return 0
}

// Revoke closes every live session of key with CloseRevoked "session
// revoked" (see Member.End), and returns how many it found, once they are
// closed or ctx ends (then with ctx's error; the closes go on, each within
// three seconds). Sessions that join afterwards are not affected: revoke
// the credential too, so that it opens no new ones.
func (r *Memory) Revoke(ctx context.Context, key string) (int, error) {
	if key == "" {
		return 0, nil
	}
	r.mu.Lock()
	var ms []Member
	for e := r.byKey[key]; e != nil; e = e.next {
		ms = append(ms, e.m)
	}
	r.mu.Unlock()
	return len(ms), EndAll(ctx, ms, CloseRevoked, RevokedReason)
}

// RevokeSession closes the live session id as Revoke does, and reports
// whether it found it.
func (r *Memory) RevokeSession(ctx context.Context, id string) (bool, error) {
	r.init()
	seq, ok := idSeq(r.prefix, id)
	if !ok {
		return false, nil
	}
	r.mu.Lock()
	e := r.byID[seq]
	r.mu.Unlock()
	if e == nil {
		return false, nil
	}
	return true, EndAll(ctx, []Member{e.m}, CloseRevoked, RevokedReason)
}

// EndAll ends every member with code and reason, concurrently, and returns
// once all have ended or ctx ends (with ctx's error; the ends go on, each
// bounded by Member.End's three seconds). Registries use it to revoke.
func EndAll(ctx context.Context, ms []Member, code ws.StatusCode, reason string) error {
	if len(ms) == 0 {
		return nil
	}
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.End(code, reason)
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
