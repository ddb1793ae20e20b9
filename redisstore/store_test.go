package redisstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/wsgate/wsgate"
	"github.com/wsgate/wsgate/ticket"
)

type user struct{ Name string }

const howToRun = "no Redis: set WSGATE_REDIS_ADDR=127.0.0.1:6379 to run these tests against a redis-server, or run .ci/redis from the repository root"

// newClient returns a client of the test Redis, closed when the test ends.
// Without WSGATE_REDIS_ADDR the test is skipped, unless CI is set: there a
// missing Redis is a failure, not a skip.
func newClient(t testing.TB, hook redis.Hook) *redis.Client {
	t.Helper()
	addr := os.Getenv("WSGATE_REDIS_ADDR")
	if addr == "" {
		if os.Getenv("CI") == "" {
			t.Skip(howToRun)
		}
		addr = "127.0.0.1:6379"
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
	t.Cleanup(func() { rdb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis at %s unreachable: %v", addr, err)
	}
	if hook != nil {
		rdb.AddHook(hook)
	}
	return rdb
}

// newPrefix returns a key prefix of the test's own, and deletes its keys
// when the test ends.
func newPrefix(t testing.TB, rdb *redis.Client) string {
	var b [6]byte
	rand.Read(b[:])
	prefix := "wsgate-test:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		for _, k := range keys(t, rdb, prefix) {
			rdb.Del(ctx, k)
		}
	})
	return prefix
}

func keys(t testing.TB, rdb *redis.Client, prefix string) []string {
	var all []string
	iter := rdb.Scan(context.Background(), 0, prefix+"*", 100).Iterator()
	for iter.Next(context.Background()) {
		all = append(all, iter.Val())
	}
	require.NoError(t, iter.Err())
	return all
}

// handshake is a WebSocket opening handshake for target.
func handshake(target string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:8080"+target, nil)
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Sec-WebSocket-Version", "13")
	r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	return r
}

func issue(t testing.TB, tk *ticket.Service[user], name string) string {
	t.Helper()
	tkt, err := tk.Issue(httptest.NewRequest(http.MethodPost, "/ticket", nil), user{name})
	require.NoError(t, err)
	return tkt
}

func TestTicketIsConsumedOnceAmongFiftyConcurrentHandshakes(t *testing.T) {
	rdb := newClient(t, nil)
	tk := &ticket.Service[user]{Store: New(rdb, newPrefix(t, rdb))}
	gate := wsgate.New(tk.Verifier(), wsgate.Config{Extractors: []wsgate.Extractor{wsgate.Query("ticket")}})
	tkt := issue(t, tk, "alice")

	const n = 50
	var wins, refusals atomic.Int32
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		r := handshake("/ws?ticket=" + tkt)
		wg.Go(func() {
			<-start
			a, err := gate.Authenticate(r)
			switch {
			case err == nil:
				assert.Equal(t, "alice", a.Principal.Name)
				wins.Add(1)
			case errors.Is(err, wsgate.ErrInvalidToken):
				refusals.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	close(start)
	wg.Wait()
	assert.Equal(t, int32(1), wins.Load())
	assert.Equal(t, int32(n-1), refusals.Load())
}

func TestStoreConsumesOnceAmongFiftyConcurrentCalls(t *testing.T) {
	rdb := newClient(t, nil)
	store := New(rdb, newPrefix(t, rdb))
	ctx := context.Background()
	hash := sha256.Sum256([]byte("a ticket"))
	require.NoError(t, store.Put(ctx, hash, ticket.Record{Principal: []byte(`"p"`), Expires: time.Now().Add(time.Minute)}, time.Minute))

	var wins, misses atomic.Int32
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			<-start
			rec, err := store.Consume(ctx, hash)
			switch {
			case err == nil:
				assert.Equal(t, `"p"`, string(rec.Principal))
				wins.Add(1)
			case errors.Is(err, ticket.ErrNotFound):
				misses.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	close(start)
	wg.Wait()
	assert.Equal(t, int32(1), wins.Load())
	assert.Equal(t, int32(49), misses.Load())
}

func TestPutNeverOverwrites(t *testing.T) {
	rdb := newClient(t, nil)
	store := New(rdb, newPrefix(t, rdb))
	ctx := context.Background()
	hash := sha256.Sum256([]byte("a ticket"))
	require.NoError(t, store.Put(ctx, hash, ticket.Record{Path: "/a", Expires: time.Now().Add(time.Minute)}, time.Minute))
	assert.Error(t, store.Put(ctx, hash, ticket.Record{Path: "/b", Expires: time.Now().Add(time.Minute)}, time.Minute))
	rec, err := store.Consume(ctx, hash)
	require.NoError(t, err)
	assert.Equal(t, "/a", rec.Path)
}

func TestRedisExpiresTickets(t *testing.T) {
	rdb := newClient(t, nil)
	prefix := newPrefix(t, rdb)
	store := New(rdb, prefix)
	ctx := context.Background()

	// The record claims a far expiry: only Redis's own TTL can end it.
	hash := sha256.Sum256([]byte("a ticket"))
	require.NoError(t, store.Put(ctx, hash, ticket.Record{Expires: time.Now().Add(time.Hour)}, time.Second))
	key := prefix + hex.EncodeToString(hash[:])
	pttl, err := rdb.PTTL(ctx, key).Result()
	require.NoError(t, err)
	assert.Greater(t, pttl, time.Duration(0))
	assert.LessOrEqual(t, pttl, time.Second)

	// Through a ticket.Service, with a one-second TTL.
	tk := &ticket.Service[user]{Store: store, TTL: time.Second}
	gate := wsgate.New(tk.Verifier(), wsgate.Config{Extractors: []wsgate.Extractor{wsgate.Query("ticket")}})
	tkt := issue(t, tk, "alice")

	time.Sleep(1100 * time.Millisecond)
	n, err := rdb.Exists(ctx, key).Result()
	require.NoError(t, err)
	assert.Zero(t, n, "Redis dropped the key")
	_, err = store.Consume(ctx, hash)
	assert.ErrorIs(t, err, ticket.ErrNotFound)
	_, err = gate.Authenticate(handshake("/ws?ticket=" + tkt))
	assert.ErrorIs(t, err, wsgate.ErrInvalidToken)
	assert.Empty(t, keys(t, rdb, prefix))
}

func TestRedisHoldsNoUsableTicket(t *testing.T) {
	rdb := newClient(t, nil)
	prefix := newPrefix(t, rdb)
	tk := &ticket.Service[user]{Store: New(rdb, prefix), BindOrigin: true, BindClient: true, Path: "/ws"}
	r := httptest.NewRequest(http.MethodPost, "/ticket", nil)
	r.Header.Set("Origin", "https://app.example")
	tkt, err := tk.Issue(r, user{"alice"})
	require.NoError(t, err)
	raw, err := base64.RawURLEncoding.DecodeString(tkt)
	require.NoError(t, err)

	ctx := context.Background()
	var all []string
	iter := rdb.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		all = append(all, iter.Val())
	}
	require.NoError(t, iter.Err())
	hash := sha256.Sum256([]byte(tkt))
	require.Contains(t, all, prefix+hex.EncodeToString(hash[:]))
	for _, k := range all {
		val, err := rdb.Dump(ctx, k).Bytes() // whatever the type
		require.NoError(t, err)
		for _, secret := range [][]byte{[]byte(tkt), raw} {
			assert.NotContains(t, k, string(secret))
			assert.False(t, bytes.Contains(val, secret), "value of %s holds the ticket", k)
		}
	}
}

func TestRoundTrips(t *testing.T) {
	hook := &commandLog{}
	rdb := newClient(t, hook)
	prefix := newPrefix(t, rdb)
	tk := &ticket.Service[user]{Store: New(rdb, prefix)}
	gate := wsgate.New(tk.Verifier(), wsgate.Config{Extractors: []wsgate.Extractor{wsgate.Query("ticket")}})

	hook.reset()
	tkt := issue(t, tk, "alice")
	set := hook.reset()
	require.Len(t, set, 2, "the quota script and the SET, in one pipeline")
	assert.Equal(t, "eval", set[0].Name())
	assert.Equal(t, "set", set[1].Name())
	args := set[1].Args()
	assert.Equal(t, []any{"px", int64(30000), "nx"}, args[3:])

	_, err := gate.Authenticate(handshake("/ws?ticket=" + tkt))
	require.NoError(t, err)
	get := hook.reset()
	require.Len(t, get, 2)
	assert.Equal(t, "getdel", get[0].Name())
	assert.Equal(t, set[1].Args()[1], get[0].Args()[1], "the same key")
	assert.Equal(t, "zrem", get[1].Name(), "then the ticket leaves its principal's quota")

	// Without a quota, one round trip each.
	store := New(rdb, prefix)
	store.MaxPerPrincipal = -1
	tk = &ticket.Service[user]{Store: store}
	gate = wsgate.New(tk.Verifier(), wsgate.Config{Extractors: []wsgate.Extractor{wsgate.Query("ticket")}})
	hook.reset()
	tkt = issue(t, tk, "alice")
	set = hook.reset()
	require.Len(t, set, 1)
	assert.Equal(t, "set", set[0].Name())
	_, err = gate.Authenticate(handshake("/ws?ticket=" + tkt))
	require.NoError(t, err)
	get = hook.reset()
	require.Len(t, get, 1)
	assert.Equal(t, "getdel", get[0].Name())
}

func TestQuotaOfOutstandingTicketsPerPrincipal(t *testing.T) {
	rdb := newClient(t, nil)
	prefix := newPrefix(t, rdb)
	store := New(rdb, prefix)
	store.MaxPerPrincipal = 2
	tk := &ticket.Service[user]{Store: store, TTL: 300 * time.Millisecond}
	gate := wsgate.New(tk.Verifier(), wsgate.Config{Extractors: []wsgate.Extractor{wsgate.Query("ticket")}})

	first := issue(t, tk, "alice")
	issue(t, tk, "alice")
	_, err := tk.Issue(httptest.NewRequest(http.MethodPost, "/ticket", nil), user{"alice"})
	require.ErrorIs(t, err, ticket.ErrQuotaExceeded)
	assert.Len(t, keys(t, rdb, prefix+"q:"), 1)
	// The refused ticket was not left behind: two tickets and the set.
	assert.Len(t, keys(t, rdb, prefix), 3)
	issue(t, tk, "bob") // another principal has a quota of its own

	// A consumed ticket no longer counts.
	_, err = gate.Authenticate(handshake("/ws?ticket=" + first))
	require.NoError(t, err)
	issue(t, tk, "alice")

	// Nor do expired ones.
	time.Sleep(400 * time.Millisecond)
	issue(t, tk, "alice")
	issue(t, tk, "alice")

	// The issuer answers 429 over the quota.
	h := tk.Issuer(func(*http.Request) (user, bool) { return user{"alice"}, true })
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/ticket", nil))
	assert.Equal(t, http.StatusTooManyRequests, w.Code)
}

// commandLog is a go-redis hook that records every round trip.
type commandLog struct {
	mu   sync.Mutex
	cmds []redis.Cmder
	n    atomic.Int64 // round trips, a pipeline counting once
	// countOnly keeps the count and not the commands.
	countOnly bool
}

func (h *commandLog) reset() []redis.Cmder {
	h.mu.Lock()
	defer h.mu.Unlock()
	var cmds []redis.Cmder
	for _, c := range h.cmds {
		if c.Name() != "hello" && c.Name() != "client" { // a new connection's own set-up
			cmds = append(cmds, c)
		}
	}
	h.cmds = nil
	h.n.Store(0)
	return cmds
}

func (h *commandLog) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *commandLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.n.Add(1); !h.countOnly {
			h.mu.Lock()
			h.cmds = append(h.cmds, cmd)
			h.mu.Unlock()
		}
		return next(ctx, cmd)
	}
}

func (h *commandLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.n.Add(1); !h.countOnly {
			h.mu.Lock()
			h.cmds = append(h.cmds, cmds...)
			h.mu.Unlock()
		}
		return next(ctx, cmds)
	}
}

// server is one server of a fleet: its own Redis client, ticket.Service and Gate,
// the same prefix as the others.
func server(t *testing.T, prefix string) *httptest.Server {
	rdb := newClient(t, nil)
	tk := &ticket.Service[user]{Store: New(rdb, prefix), BindOrigin: true, Path: "/ws"}
	mux := http.NewServeMux()
	mux.Handle("/ticket", tk.Issuer(func(r *http.Request) (user, bool) {
		name := r.Header.Get("X-Test-User") // the application's own login
		return user{name}, name != ""
	}))
	gate := wsgate.New(tk.Verifier(), wsgate.Config{
		Extractors: []wsgate.Extractor{wsgate.Query("ticket")},
		Origin:     wsgate.OriginPolicy{InsecureSkipOriginCheck: true}, // the ticket's binding decides
	})
	mux.Handle("/ws", gate.Handler(func(ctx context.Context, s wsgate.Session[user]) {
		_ = wsutil.WriteServerText(s.Conn, []byte("hello "+s.Principal.Name))
	}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestFleetAcceptsATicketOnceOnAnyServer(t *testing.T) {
	rdb := newClient(t, nil)
	prefix := newPrefix(t, rdb)
	a, b := server(t, prefix), server(t, prefix)
	const origin = "https://app.example:8443"

	req, err := http.NewRequest(http.MethodPost, a.URL+"/ticket", nil)
	require.NoError(t, err)
	req.Header.Set("X-Test-User", "alice")
	req.Header.Set("Origin", origin)
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var issued struct {
		Ticket string `json:"ticket"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&issued))

	dial := func(srv *httptest.Server) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d := ws.Dialer{Timeout: 5 * time.Second, Header: ws.HandshakeHeaderHTTP(http.Header{"Origin": {origin}})}
		conn, br, _, err := d.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws?ticket="+issued.Ticket)
		if err != nil {
			return "", err
		}
		defer conn.Close()
		var rd io.Reader = conn
		if br != nil {
			rd = br
		}
		msg, err := wsutil.ReadServerText(readWriter{rd, conn})
		return string(msg), err
	}

	hello, err := dial(b)
	require.NoError(t, err, "minted on A, used on B")
	assert.Equal(t, "hello alice", hello)
	for i, srv := range []*httptest.Server{b, a, b, a} {
		_, err := dial(srv)
		assert.Equal(t, ws.StatusError(http.StatusUnauthorized), err, "try %d", i+2)
	}
	assert.Empty(t, keys(t, rdb, prefix))
}

type readWriter struct {
	io.Reader
	w net.Conn
}

func (rw readWriter) Write(p []byte) (int, error) { return rw.w.Write(p) }

// BenchmarkConsumePerHandshake measures authenticating a handshake whose
// ticket is consumed from Redis, and reports the Redis round trips it took.
func BenchmarkConsumePerHandshake(b *testing.B) {
	hook := &commandLog{countOnly: true}
	rdb := newClient(b, hook)
	prefix := newPrefix(b, rdb)
	tk := &ticket.Service[user]{Store: New(rdb, prefix)}
	gate := wsgate.New(tk.Verifier(), wsgate.Config{Extractors: []wsgate.Extractor{wsgate.Query("ticket")}})
	queries := make([]string, b.N)
	for i := range queries {
		queries[i] = "ticket=" + issue(b, tk, "alice")
	}
	r := handshake("/ws")
	hook.reset()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.URL.RawQuery = queries[i]
		if _, err := gate.Authenticate(r); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(hook.n.Load())/float64(b.N), "roundtrips/op")
	if got := hook.n.Load(); got != int64(b.N) {
		b.Fatalf("%d round trips for %d handshakes", got, b.N)
	}
}
