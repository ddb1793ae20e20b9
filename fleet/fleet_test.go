package fleet

import (
	"context"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// member records how it was ended.
type member struct {
	mu     sync.Mutex
	code   ws.StatusCode
	reason string
	ends   int
}

func (m *member) End(code ws.StatusCode, reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ends++
	m.code, m.reason = code, reason
}

func (m *member) ended() (int, ws.StatusCode, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ends, m.code, m.reason
}

func TestMemoryCapsSessionsPerKeyAndLeaveGivesTheSlotBack(t *testing.T) {
	r := NewMemory(MemoryOptions{MaxPerKey: 2})
	ctx := context.Background()
	a1, err := r.Join(ctx, "alice", &member{})
	require.NoError(t, err)
	_, err = r.Join(ctx, "alice", &member{})
	require.NoError(t, err)
	_, err = r.Join(ctx, "alice", &member{})
	assert.ErrorIs(t, err, ErrTooManySessions)
	_, err = r.Join(ctx, "bob", &member{})
	assert.NoError(t, err, "another key has its own cap")
	for range 5 {
		_, err = r.Join(ctx, "", &member{})
		assert.NoError(t, err, "an empty key counts toward no cap")
	}
	r.Leave(a1)
	r.Leave(a1) // twice does nothing
	_, err = r.Join(ctx, "alice", &member{})
	assert.NoError(t, err)
	assert.Equal(t, 2, r.Len("alice"))
	assert.Equal(t, 8, r.Len(""), "alice 2, bob 1, five without a key")
}

func TestMemoryRevokeEndsEverySessionOfTheKeyAndNoOther(t *testing.T) {
	var r Memory // the zero value works
	ctx := context.Background()
	alice := []*member{{}, {}, {}}
	ids := make([]string, len(alice))
	for i, m := range alice {
		var err error
		ids[i], err = r.Join(ctx, "alice", m)
		require.NoError(t, err)
	}
	bob := &member{}
	bobID, err := r.Join(ctx, "bob", bob)
	require.NoError(t, err)
	assert.NotEqual(t, ids[0], ids[1], "ids are unique")

	// A session that left in the middle of the list is skipped.
	r.Leave(ids[1])
	n, err := r.Revoke(ctx, "alice")
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	for i, m := range alice {
		ends, code, reason := m.ended()
		if i == 1 {
			assert.Zero(t, ends)
			continue
		}
		assert.Equal(t, 1, ends)
		assert.Equal(t, CloseRevoked, code)
		assert.Equal(t, RevokedReason, reason)
	}
	ends, _, _ := bob.ended()
	assert.Zero(t, ends)

	found, err := r.RevokeSession(ctx, bobID)
	require.NoError(t, err)
	assert.True(t, found)
	ends, code, _ := bob.ended()
	assert.Equal(t, 1, ends)
	assert.Equal(t, CloseRevoked, code)
	found, _ = r.RevokeSession(ctx, "no-such-id")
	assert.False(t, found)
	n, _ = r.Revoke(ctx, "")
	assert.Zero(t, n, "the empty key revokes nothing")
}

// stuck is a member whose End takes until released.
type stuck struct{ release chan struct{} }

func (s stuck) End(ws.StatusCode, string) { <-s.release }

func TestRevokeReturnsWhenItsContextEnds(t *testing.T) {
	r := NewMemory(MemoryOptions{})
	s := stuck{make(chan struct{})}
	_, err := r.Join(context.Background(), "k", s)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n, err := r.Revoke(ctx, "k")
	assert.Equal(t, 1, n)
	assert.ErrorIs(t, err, context.Canceled)
	close(s.release)
}

type clock struct{ ns atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func TestLimiterHearsKFailuresThenMakesTheAddressWait(t *testing.T) {
	c := &clock{}
	c.ns.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	l := NewMemoryLimiter(LimiterOptions{Failures: 5, Window: 10 * time.Second, Now: c.Now})
	ctx := context.Background()
	a := netip.MustParseAddr("192.0.2.7")
	for i := range 5 {
		wait, err := l.Check(ctx, a)
		require.NoError(t, err)
		require.Zero(t, wait, "failure %d is heard", i+1)
		require.NoError(t, l.Fail(ctx, a))
	}
	wait, _ := l.Check(ctx, a)
	assert.Equal(t, 2*time.Second, wait, "then one try every Window/Failures")
	other, _ := l.Check(ctx, netip.MustParseAddr("192.0.2.8"))
	assert.Zero(t, other, "another address is not affected")

	c.Advance(2 * time.Second)
	wait, _ = l.Check(ctx, a)
	assert.Zero(t, wait)
	require.NoError(t, l.Fail(ctx, a))
	wait, _ = l.Check(ctx, a)
	assert.Equal(t, 2*time.Second, wait, "a failure after the wait spends the new try")

	c.Advance(10 * time.Second)
	wait, _ = l.Check(ctx, a)
	assert.Zero(t, wait)
	assert.Zero(t, l.Len(), "an address whose failures aged out is forgotten")
}

func TestLimiterKeysIPv6ByItsSlash64(t *testing.T) {
	l := NewMemoryLimiter(LimiterOptions{Failures: 2, Window: time.Minute})
	ctx := context.Background()
	require.NoError(t, l.Fail(ctx, netip.MustParseAddr("2001:db8:1:2::1")))
	require.NoError(t, l.Fail(ctx, netip.MustParseAddr("2001:db8:1:2:ffff::9")))
	wait, _ := l.Check(ctx, netip.MustParseAddr("2001:db8:1:2::77"))
	assert.Positive(t, wait, "the whole /64 is one client")
	wait, _ = l.Check(ctx, netip.MustParseAddr("2001:db8:1:3::1"))
	assert.Zero(t, wait)
	assert.Equal(t, AddrKey(netip.MustParseAddr("::ffff:192.0.2.1")), AddrKey(netip.MustParseAddr("192.0.2.1")))
}

func TestLimiterMemoryIsBoundedUnderAFloodOfAddresses(t *testing.T) {
	const flood = 1_000_000
	const bound = 16 << 20 // bytes, as documented on MemoryLimiter
	l := NewMemoryLimiter(LimiterOptions{})
	ctx := context.Background()
	victim := netip.MustParseAddr("198.51.100.1")
	for range DefaultFailures {
		require.NoError(t, l.Fail(ctx, victim))
	}
	before := heapInUse()
	var b [4]byte
	for i := range flood {
		b[0], b[1], b[2], b[3] = 10|byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		_ = l.Fail(ctx, netip.AddrFrom4(b))
	}
	grown := heapInUse() - before
	t.Logf("%d distinct addresses: %d remembered, heap grew %.1f MiB", flood, l.Len(), float64(grown)/(1<<20))
	assert.LessOrEqual(t, l.Len(), DefaultMaxAddresses+limiterShards)
	assert.Less(t, grown, int64(bound))
	runtime.KeepAlive(l)
}

func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}
