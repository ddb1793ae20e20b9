package redisstore

import (
	"context"
	"errors"
	"net"
	"net/http/httptest"
	"net/netip"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/wsgate/wsgate"
	"github.com/wsgate/wsgate/fleet"
)

// counter counts the round trips a client makes: one per command sent
// alone, one per pipeline.
type counter struct{ n atomic.Int64 }

func (c *counter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { c.n.Add(1); return next(ctx, cmd) }
}
func (c *counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { c.n.Add(1); return next(ctx, cmds) }
}

type fleetGate struct {
	reg *Registry
	srv *httptest.Server
	url string
}

func startGate(t *testing.T, rdb *redis.Client, prefix string, max int, ttl time.Duration, lim fleet.Limiter) *fleetGate {
	t.Helper()
	reg, err := NewRegistry(context.Background(), rdb, RegistryOptions{Prefix: prefix, MaxPerKey: max, LeaseTTL: ttl})
	require.NoError(t, err)
	g := wsgate.New(func(_ context.Context, c wsgate.Credential) (string, error) {
		if name, ok := strings.CutPrefix(c.Token(), "token-"); ok {
			return name, nil
		}
		return "", wsgate.ErrInvalidToken
	}, wsgate.Config{Registry: reg, Limiter: lim})
	srv := httptest.NewServer(g.Handler(func(ctx context.Context, s wsgate.Session[string]) {
		_, _, _ = wsutil.ReadClientData(s.Conn)
	}))
	fg := &fleetGate{reg: reg, srv: srv, url: "ws" + strings.TrimPrefix(srv.URL, "http")}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		g.Shutdown(ctx)
		srv.Close()
		reg.Close()
	})
	return fg
}

func dialAs(t *testing.T, url, name string) (net.Conn, error) {
	d := ws.Dialer{Header: ws.HandshakeHeaderHTTP{"Authorization": {"Bearer token-" + name}}, Timeout: 5 * time.Second}
	conn, _, _, err := d.Dial(context.Background(), url)
	if err == nil {
		t.Cleanup(func() { conn.Close() })
	}
	return conn, err
}

func readCloseCode(conn net.Conn) (ws.StatusCode, string) {
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err := wsutil.ReadServerData(conn)
	var ce wsutil.ClosedError
	if errors.As(err, &ce) {
		return ce.Code, ce.Reason
	}
	return 0, err.Error()
}

func TestFleetOfThreeGatesRevokesCapsAndReclaimsSlots(t *testing.T) {
	rdb := newClient(t, nil)
	prefix := newPrefix(t, rdb)
	const ttl = 600 * time.Millisecond
	gates := []*fleetGate{
		startGate(t, rdb, prefix, 2, ttl, nil),
		startGate(t, rdb, prefix, 2, ttl, nil),
		startGate(t, rdb, prefix, 2, ttl, nil),
	}
	// The cap holds across gates: alice's third socket is refused on any.
	a0, err := dialAs(t, gates[0].url, "alice")
	require.NoError(t, err)
	a2, err := dialAs(t, gates[2].url, "alice")
	require.NoError(t, err)
	_, err = dialAs(t, gates[1].url, "alice")
	var se ws.StatusError
	require.ErrorAs(t, err, &se)
	assert.EqualValues(t, 429, se)
	bob, err := dialAs(t, gates[1].url, "bob")
	require.NoError(t, err)

	// A revoke issued on gate 1 closes alice's sockets on gates 0 and 2.
	require.NoError(t, gates[1].reg.Revoke(context.Background(), "alice"))
	for _, c := range []net.Conn{a0, a2} {
		code, reason := readCloseCode(c)
		assert.Equal(t, fleet.CloseRevoked, code)
		assert.Equal(t, fleet.RevokedReason, reason)
	}
	// Their slots come back when the sessions end.
	require.Eventually(t, func() bool {
		return rdb.ZCard(context.Background(), prefix+"s:alice").Val() == 0
	}, 5*time.Second, 10*time.Millisecond)

	// A killed gate's slots come back within the lease: gate 2 stops
	// renewing and never says goodbye.
	_, err = dialAs(t, gates[2].url, "carol")
	require.NoError(t, err)
	_, err = dialAs(t, gates[2].url, "carol")
	require.NoError(t, err)
	gates[2].reg.kill()
	_, err = dialAs(t, gates[0].url, "carol")
	require.Error(t, err, "still held right after the crash")
	time.Sleep(ttl + 100*time.Millisecond)
	_, err = dialAs(t, gates[0].url, "carol")
	assert.NoError(t, err, "reclaimed after the lease")

	// Live gates renew: bob's slot outlives many leases.
	time.Sleep(2 * ttl)
	assert.EqualValues(t, 1, rdb.ZCard(context.Background(), prefix+"s:bob").Val())
	_ = bob
}

func TestFleetRevokeLatencyAcrossGates(t *testing.T) {
	rdb := newClient(t, nil)
	prefix := newPrefix(t, rdb)
	from := startGate(t, rdb, prefix, 0, 0, nil)
	to := startGate(t, rdb, prefix, 0, 0, nil)
	const rounds = 50
	var lat []time.Duration
	for i := range rounds {
		name := "u" + string(rune('a'+i%26)) + strings.Repeat("x", i/26)
		c, err := dialAs(t, to.url, name)
		require.NoError(t, err)
		start := time.Now()
		require.NoError(t, from.reg.Revoke(context.Background(), name))
		code, _ := readCloseCode(c)
		lat = append(lat, time.Since(start))
		require.Equal(t, fleet.CloseRevoked, code)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("revoke on one gate to close frame read on another, %d rounds: p50 %v, p99 %v, max %v",
		rounds, lat[rounds/2], lat[rounds*99/100], lat[rounds-1])
}

func TestFleetAcceptedHandshakeCostsAtMostTwoRoundTrips(t *testing.T) {
	var c counter
	rdb := newClient(t, &c)
	prefix := newPrefix(t, rdb)
	lim, err := NewLimiter(context.Background(), rdb, prefix+"l:", fleet.LimiterOptions{})
	require.NoError(t, err)
	g := startGate(t, rdb, prefix, 5, 0, lim)
	before := c.n.Load()
	_, err = dialAs(t, g.url, "alice")
	require.NoError(t, err)
	trips := c.n.Load() - before
	t.Logf("Redis round trips per accepted handshake: %d (limiter check, lease)", trips)
	assert.LessOrEqual(t, trips, int64(2))
	assert.Positive(t, trips)
}

func TestRedisLimiterIsTheMemoryLimitersGCRA(t *testing.T) {
	rdb := newClient(t, nil)
	prefix := newPrefix(t, rdb)
	lim, err := NewLimiter(context.Background(), rdb, prefix, fleet.LimiterOptions{Failures: 3, Window: 30 * time.Second})
	require.NoError(t, err)
	ctx := context.Background()
	a := netip.MustParseAddr("2001:db8::1")
	for range 3 {
		wait, err := lim.Check(ctx, a)
		require.NoError(t, err)
		require.Zero(t, wait)
		require.NoError(t, lim.Fail(ctx, a))
	}
	wait, err := lim.Check(ctx, netip.MustParseAddr("2001:db8::2"))
	require.NoError(t, err)
	assert.InDelta(t, float64(10*time.Second), float64(wait), float64(time.Second), "the /64 waits a Window/Failures")
	wait, _ = lim.Check(ctx, netip.MustParseAddr("192.0.2.1"))
	assert.Zero(t, wait)
	ttl := rdb.PTTL(ctx, lim.key(a)).Val()
	assert.InDelta(t, float64(30*time.Second), float64(ttl), float64(time.Second), "the key expires with its failures")
}

// kill stops the registry as a crash would: no renewal, no goodbye.
func (r *Registry) kill() {
	r.mu.Lock()
	r.members = map[string]member{}
	r.mu.Unlock()
	r.Close()
}
