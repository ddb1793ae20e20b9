package wsgate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newMemoryStore returns a store on clock with no background sweep, closed
// when the test ends.
func newMemoryStore(t testing.TB, clock *fakeClock, max int) *MemoryTicketStore {
	s := NewMemoryTicketStore(MemoryTicketStoreOptions{MaxEntries: max, SweepInterval: -1, Now: clock.Now})
	t.Cleanup(func() { s.Close() })
	return s
}

// newTickets returns Tickets on a fresh memory store and clock.
func newTickets(t testing.TB) (*Tickets[user], *MemoryTicketStore, *fakeClock) {
	clock := newFakeClock()
	store := newMemoryStore(t, clock, 0)
	return &Tickets[user]{Store: store, Now: clock.Now}, store, clock
}

// issueRequest is a ticket request from remote with extra headers as
// name, value pairs.
func issueRequest(remote string, kv ...string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:8080/ticket", nil)
	r.RemoteAddr = remote
	for i := 0; i+1 < len(kv); i += 2 {
		r.Header.Add(kv[i], kv[i+1])
	}
	return r
}

func mustIssue(t testing.TB, tk *Tickets[user], r *http.Request, p user) string {
	t.Helper()
	ticket, err := tk.Issue(r, p)
	require.NoError(t, err)
	return ticket
}

// ticketGate is a gate reading tickets from ?ticket= and from the marker
// form, allowing two cross origins so that the ticket's origin binding, not
// the origin policy, decides. (The origins carry ports: this branch's origin
// parser refuses a host without one, fixed on main since.)
func ticketGate(tk *Tickets[user]) *Gate[user] {
	return New(tk.Verifier(), Config{
		Protocols:  []string{"chat"},
		Extractors: []Extractor{Query("ticket"), Subprotocol(DefaultMarker)},
		Origin:     OriginPolicy{AllowedOrigins: []string{"https://app.example:8443", "https://evil.example:8443"}},
	})
}

func TestTicketIsAcceptedOnceAmongFiftyConcurrentHandshakes(t *testing.T) {
	tk, _, _ := newTickets(t)
	g := ticketGate(tk)
	ticket := mustIssue(t, tk, issueRequest("1.2.3.4:5"), user{"alice"})

	const n = 50
	var wins, refusals atomic.Int32
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		r := newHandshake("/ws?ticket=" + ticket)
		wg.Go(func() {
			<-start
			a, err := g.Authenticate(r)
			if err == nil {
				assert.Equal(t, "alice", a.Principal.Name)
				wins.Add(1)
				return
			}
			var e *Error
			if assert.ErrorAs(t, err, &e) && assert.ErrorIs(t, err, ErrInvalidToken) {
				assert.Equal(t, http.StatusUnauthorized, e.Status)
				assert.Equal(t, "invalid_token", e.Code)
				refusals.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	assert.Equal(t, int32(1), wins.Load())
	assert.Equal(t, int32(n-1), refusals.Load())
}

func TestTicketExpiresAfterItsTTL(t *testing.T) {
	tk, store, clock := newTickets(t)
	tk.TTL = 10 * time.Second
	g := ticketGate(tk)
	early := mustIssue(t, tk, issueRequest("1.2.3.4:5"), user{"alice"})
	late := mustIssue(t, tk, issueRequest("1.2.3.4:5"), user{"bob"})

	clock.Advance(10*time.Second - time.Nanosecond)
	a, err := g.Authenticate(newHandshake("/ws?ticket=" + early))
	require.NoError(t, err)
	assert.Equal(t, "alice", a.Principal.Name)

	clock.Advance(time.Nanosecond)
	_, err = g.Authenticate(newHandshake("/ws?ticket=" + late))
	assert.ErrorIs(t, err, ErrInvalidToken)
	assert.Zero(t, store.Len(), "an expired entry met by Consume is dropped")
}

// staleStore is a store that keeps records past their TTL, like a store on
// a server whose clock lags the issuer's.
type staleStore struct {
	mu   sync.Mutex
	recs map[[32]byte]TicketRecord
	err  error // returned by Consume when set
	hits int
}

func (s *staleStore) Put(_ context.Context, h [32]byte, rec TicketRecord, _ time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.recs == nil {
		s.recs = make(map[[32]byte]TicketRecord)
	}
	s.recs[h] = rec
	return nil
}

func (s *staleStore) Consume(ctx context.Context, h [32]byte) (TicketRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hits++
	if s.err != nil {
		return TicketRecord{}, s.err
	}
	rec, ok := s.recs[h]
	delete(s.recs, h)
	if !ok {
		return TicketRecord{}, ErrTicketNotFound
	}
	return rec, nil
}

func TestVerifierChecksExpiryEvenWhenTheStoreDoesNot(t *testing.T) {
	clock := newFakeClock()
	tk := &Tickets[user]{Store: &staleStore{}, Now: clock.Now}
	g := ticketGate(tk)
	ticket := mustIssue(t, tk, issueRequest("1.2.3.4:5"), user{"alice"})
	clock.Advance(DefaultTicketTTL)
	_, err := g.Authenticate(newHandshake("/ws?ticket=" + ticket))
	assert.ErrorIs(t, err, ErrInvalidToken)
	assert.ErrorIs(t, err, errTicketExpired)
}

func TestStoreFailuresAreNotInvalidTokens(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		want   error
		status int
	}{
		{
			name:   "a broken store is a 500",
			err:    errors.New("connection refused"),
			want:   ErrVerifier,
			status: http.StatusInternalServerError,
		},
		{
			name:   "a store that overruns the deadline is a 503",
			err:    context.DeadlineExceeded,
			want:   ErrVerifyTimeout,
			status: http.StatusServiceUnavailable,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := &staleStore{}
			tk := &Tickets[user]{Store: store}
			ticket := mustIssue(t, tk, issueRequest("1.2.3.4:5"), user{"alice"})
			store.err = tt.err
			_, err := ticketGate(tk).Authenticate(newHandshake("/ws?ticket=" + ticket))
			var e *Error
			require.ErrorAs(t, err, &e)
			assert.ErrorIs(t, err, tt.want)
			assert.Equal(t, tt.status, e.Status)
			assert.NotContains(t, err.Error(), ticket)
		})
	}
}

func TestMalformedTicketsCostNoStoreLookup(t *testing.T) {
	store := &staleStore{}
	g := ticketGate(&Tickets[user]{Store: store})
	for _, junk := range []string{
		"short",
		strings.Repeat("A", TicketLen-1),
		strings.Repeat("A", TicketLen+1),
		strings.Repeat("A", TicketLen-1) + "%2B", // '+' is not base64url
	} {
		_, err := g.Authenticate(newHandshake("/ws?ticket=" + junk))
		assert.ErrorIs(t, err, ErrInvalidToken, junk)
	}
	assert.Zero(t, store.hits)
}

func TestTicketBindings(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	tests := []struct {
		name       string
		tickets    Tickets[user]
		issue      *http.Request
		path       string
		remote     string
		handshake  []string // header name, value pairs
		wantRefuse error
	}{
		{
			name:    "origin: the same origin is accepted",
			tickets: Tickets[user]{BindOrigin: true},
			issue:   issueRequest("1.1.1.1:1000", "Origin", "https://app.example:8443"),
			handshake: []string{
				"Origin", "https://app.example:8443",
			},
		},
		{
			name:       "origin: another origin is refused",
			tickets:    Tickets[user]{BindOrigin: true},
			issue:      issueRequest("1.1.1.1:1000", "Origin", "https://app.example:8443"),
			handshake:  []string{"Origin", "https://evil.example:8443"},
			wantRefuse: errTicketOrigin,
		},
		{
			name:       "origin: a handshake without Origin is refused",
			tickets:    Tickets[user]{BindOrigin: true},
			issue:      issueRequest("1.1.1.1:1000", "Origin", "https://app.example:8443"),
			wantRefuse: errTicketOrigin,
		},
		{
			name:    "origin: issued and used without Origin (a non-browser client)",
			tickets: Tickets[user]{BindOrigin: true},
			issue:   issueRequest("1.1.1.1:1000"),
		},
		{
			name:       "origin: issued without Origin, used from a page",
			tickets:    Tickets[user]{BindOrigin: true},
			issue:      issueRequest("1.1.1.1:1000"),
			handshake:  []string{"Origin", "https://evil.example:8443"},
			wantRefuse: errTicketOrigin,
		},
		{
			name:    "origin: unbound tickets ignore Origin",
			tickets: Tickets[user]{},
			issue:   issueRequest("1.1.1.1:1000", "Origin", "https://app.example:8443"),
			handshake: []string{
				"Origin", "https://evil.example:8443",
			},
		},
		{
			name:    "path: the configured path is accepted",
			tickets: Tickets[user]{Path: "/ws"},
			issue:   issueRequest("1.1.1.1:1000"),
			path:    "/ws",
		},
		{
			name:       "path: another path is refused",
			tickets:    Tickets[user]{Path: "/ws"},
			issue:      issueRequest("1.1.1.1:1000"),
			path:       "/admin/ws",
			wantRefuse: errTicketPath,
		},
		{
			name:    "client: the same address from another port is accepted",
			tickets: Tickets[user]{BindClient: true},
			issue:   issueRequest("1.1.1.1:1000"),
			remote:  "1.1.1.1:2000",
		},
		{
			name:    "client: an IPv4-mapped IPv6 peer is the same address",
			tickets: Tickets[user]{BindClient: true},
			issue:   issueRequest("1.1.1.1:1000"),
			remote:  "[::ffff:1.1.1.1]:2000",
		},
		{
			name:       "client: another address is refused",
			tickets:    Tickets[user]{BindClient: true},
			issue:      issueRequest("1.1.1.1:1000"),
			remote:     "2.2.2.2:1000",
			wantRefuse: errTicketClient,
		},
		{
			name:       "xff: ignored without trusted proxies, so it cannot impersonate",
			tickets:    Tickets[user]{BindClient: true},
			issue:      issueRequest("1.1.1.1:1000"),
			remote:     "2.2.2.2:1000",
			handshake:  []string{"X-Forwarded-For", "1.1.1.1"},
			wantRefuse: errTicketClient,
		},
		{
			name:      "xff: ignored without trusted proxies, so it cannot break a binding",
			tickets:   Tickets[user]{BindClient: true},
			issue:     issueRequest("1.1.1.1:1000", "X-Forwarded-For", "7.7.7.7"),
			remote:    "1.1.1.1:2000",
			handshake: []string{"X-Forwarded-For", "8.8.8.8"},
		},
		{
			name:      "xff: from a trusted proxy names the client",
			tickets:   Tickets[user]{BindClient: true, TrustedProxies: proxies},
			issue:     issueRequest("10.0.0.1:1000", "X-Forwarded-For", "1.1.1.1"),
			remote:    "10.0.0.2:1000",
			handshake: []string{"X-Forwarded-For", "1.1.1.1"},
		},
		{
			name:       "xff: from a trusted proxy, another client is refused",
			tickets:    Tickets[user]{BindClient: true, TrustedProxies: proxies},
			issue:      issueRequest("10.0.0.1:1000", "X-Forwarded-For", "1.1.1.1"),
			remote:     "10.0.0.2:1000",
			handshake:  []string{"X-Forwarded-For", "2.2.2.2"},
			wantRefuse: errTicketClient,
		},
		{
			name:       "xff: a spoofed leftmost entry does not impersonate",
			tickets:    Tickets[user]{BindClient: true, TrustedProxies: proxies},
			issue:      issueRequest("10.0.0.1:1000", "X-Forwarded-For", "1.1.1.1"),
			remote:     "10.0.0.2:1000",
			handshake:  []string{"X-Forwarded-For", "1.1.1.1, 2.2.2.2"},
			wantRefuse: errTicketClient,
		},
		{
			name:      "xff: a chain of trusted proxies is walked from the right",
			tickets:   Tickets[user]{BindClient: true, TrustedProxies: proxies},
			issue:     issueRequest("10.0.0.1:1000", "X-Forwarded-For", "6.6.6.6, 1.1.1.1"),
			remote:    "[fd00::1]:1000",
			handshake: []string{"X-Forwarded-For", "9.9.9.9", "X-Forwarded-For", "1.1.1.1, 10.9.9.9"},
		},
		{
			name:       "xff: from an untrusted peer is ignored even with proxies configured",
			tickets:    Tickets[user]{BindClient: true, TrustedProxies: proxies},
			issue:      issueRequest("10.0.0.1:1000", "X-Forwarded-For", "1.1.1.1"),
			remote:     "3.3.3.3:1000",
			handshake:  []string{"X-Forwarded-For", "1.1.1.1"},
			wantRefuse: errTicketClient,
		},
		{
			name:       "xff: a malformed entry from a trusted proxy makes the client unknown",
			tickets:    Tickets[user]{BindClient: true, TrustedProxies: proxies},
			issue:      issueRequest("10.0.0.1:1000", "X-Forwarded-For", "1.1.1.1"),
			remote:     "10.0.0.2:1000",
			handshake:  []string{"X-Forwarded-For", "1.1.1.1, bogus"},
			wantRefuse: errTicketClient,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			tk := tt.tickets
			tk.Store, tk.Now = newMemoryStore(t, clock, 0), clock.Now
			ticket := mustIssue(t, &tk, tt.issue, user{"alice"})
			path := tt.path
			if path == "" {
				path = "/ws"
			}
			r := newHandshake(path+"?ticket="+ticket, tt.handshake...)
			r.RemoteAddr = tt.remote
			if r.RemoteAddr == "" {
				r.RemoteAddr = tt.issue.RemoteAddr
			}
			a, err := ticketGate(&tk).Authenticate(r)
			if tt.wantRefuse != nil {
				assert.ErrorIs(t, err, ErrInvalidToken)
				assert.ErrorIs(t, err, tt.wantRefuse)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, "alice", a.Principal.Name)
		})
	}
}

func TestBoundTicketsAreRefusedOutsideAGate(t *testing.T) {
	tk, _, _ := newTickets(t)
	tk.Path = "/ws"
	ticket := mustIssue(t, tk, issueRequest("1.1.1.1:1"), user{"alice"})
	_, err := tk.Verifier()(context.Background(), Credential{Source: SourceQuery, Token: ticket})
	assert.ErrorIs(t, err, ErrInvalidToken)

	tk.Path = ""
	ticket = mustIssue(t, tk, issueRequest("1.1.1.1:1"), user{"alice"})
	p, err := tk.Verifier()(context.Background(), Credential{Source: SourceQuery, Token: ticket})
	require.NoError(t, err)
	assert.Equal(t, "alice", p.Name)
}

func TestMemoryStoreIsBoundedAndEvictsNothingEarly(t *testing.T) {
	clock := newFakeClock()
	store := newMemoryStore(t, clock, 3)
	tk := &Tickets[user]{Store: store, Now: clock.Now}
	issuer := tk.Issuer(func(*http.Request) (user, bool) { return user{"alice"}, true })
	g := ticketGate(tk)

	var tickets []string
	for range 3 {
		tickets = append(tickets, mustIssue(t, tk, issueRequest("1.1.1.1:1"), user{"alice"}))
	}
	w := httptest.NewRecorder()
	issuer.ServeHTTP(w, issueRequest("1.1.1.1:1"))
	assert.Equal(t, http.StatusServiceUnavailable, w.Code)
	assert.Equal(t, "1", w.Header().Get("Retry-After"))
	assert.Equal(t, "no-store", w.Header().Get("Cache-Control"))
	assert.Equal(t, 3, store.Len())

	// Every outstanding ticket still works; using one makes room.
	_, err := g.Authenticate(newHandshake("/ws?ticket=" + tickets[0]))
	require.NoError(t, err)
	tickets = append(tickets[1:], mustIssue(t, tk, issueRequest("1.1.1.1:1"), user{"alice"}))
	for _, ticket := range tickets {
		_, err := g.Authenticate(newHandshake("/ws?ticket=" + ticket))
		assert.NoError(t, err)
	}

	// Expired entries do not hold the store full.
	for range 3 {
		mustIssue(t, tk, issueRequest("1.1.1.1:1"), user{"alice"})
	}
	clock.Advance(DefaultTicketTTL)
	mustIssue(t, tk, issueRequest("1.1.1.1:1"), user{"alice"})
	assert.Equal(t, 1, store.Len())
}

func TestMemoryStoreSweepsInTheBackgroundUntilClosed(t *testing.T) {
	clock := newFakeClock()
	store := NewMemoryTicketStore(MemoryTicketStoreOptions{SweepInterval: time.Millisecond, Now: clock.Now})
	defer store.Close()
	require.NoError(t, store.Put(context.Background(), [32]byte{1}, TicketRecord{}, time.Second))
	clock.Advance(time.Second)
	assert.Eventually(t, func() bool { return store.Len() == 0 }, 5*time.Second, time.Millisecond)
	require.NoError(t, store.Close())
	require.NoError(t, store.Close(), "Close twice")
	// Still usable after Close.
	require.NoError(t, store.Put(context.Background(), [32]byte{2}, TicketRecord{}, time.Second))
	_, err := store.Consume(context.Background(), [32]byte{2})
	assert.NoError(t, err)
}

func TestMemoryStoreRefusesToOverwriteALiveEntry(t *testing.T) {
	store := newMemoryStore(t, newFakeClock(), 0)
	ctx := context.Background()
	require.NoError(t, store.Put(ctx, [32]byte{1}, TicketRecord{Path: "/a"}, time.Second))
	assert.Error(t, store.Put(ctx, [32]byte{1}, TicketRecord{Path: "/b"}, time.Second))
	rec, err := store.Consume(ctx, [32]byte{1})
	require.NoError(t, err)
	assert.Equal(t, "/a", rec.Path)
	_, err = store.Consume(ctx, [32]byte{1})
	assert.ErrorIs(t, err, ErrTicketNotFound)
}

func TestStoreHoldsOnlyTheTicketsHash(t *testing.T) {
	tk, store, _ := newTickets(t)
	tk.BindOrigin, tk.BindClient, tk.Path = true, true, "/ws"
	ticket := mustIssue(t, tk, issueRequest("1.1.1.1:1", "Origin", "https://app.example:8443"), user{"alice"})
	raw, err := base64.RawURLEncoding.DecodeString(ticket)
	require.NoError(t, err)

	store.mu.Lock()
	defer store.mu.Unlock()
	require.Len(t, store.entries, 1)
	for key, e := range store.entries {
		assert.Equal(t, sha256.Sum256([]byte(ticket)), key)
		enc, err := e.rec.MarshalBinary()
		require.NoError(t, err)
		dump := fmt.Sprintf("%x %v %+v %s", key, key, e, enc)
		for _, secret := range [][]byte{[]byte(ticket), raw} {
			assert.False(t, bytes.Contains(key[:], secret))
			assert.False(t, bytes.Contains(enc, secret))
			assert.NotContains(t, dump, string(secret))
		}
	}
}

func TestTicketRecordBinaryRoundTrip(t *testing.T) {
	in := TicketRecord{
		Principal: []byte(`{"Name":"alice"}`),
		Expires:   time.Unix(1900000000, 123456789),
		Bound:     BindOrigin | BindPath | BindClient,
		Origin:    "https://app.example:8443",
		Path:      "/ws",
		Client:    netip.MustParseAddr("2001:db8::1"),
	}
	b, err := in.MarshalBinary()
	require.NoError(t, err)
	var out TicketRecord
	require.NoError(t, out.UnmarshalBinary(b))
	assert.True(t, in.Expires.Equal(out.Expires))
	out.Expires = in.Expires
	assert.Equal(t, in, out)

	for i := range len(b) - len(in.Principal) {
		assert.Error(t, new(TicketRecord).UnmarshalBinary(b[:i]), "truncated at %d", i)
	}
	assert.Error(t, new(TicketRecord).UnmarshalBinary(append([]byte{9}, b[1:]...)), "unknown version")
}

func TestIssuer(t *testing.T) {
	signedIn := func(r *http.Request) (user, bool) {
		name := r.Header.Get("X-Test-User")
		return user{name}, name != ""
	}
	tests := []struct {
		name   string
		method string
		user   string
		ttl    time.Duration
		status int
		check  func(t *testing.T, w *httptest.ResponseRecorder, tk *Tickets[user])
	}{
		{
			name:   "GET is 405",
			method: http.MethodGet,
			user:   "alice",
			status: http.StatusMethodNotAllowed,
			check: func(t *testing.T, w *httptest.ResponseRecorder, _ *Tickets[user]) {
				assert.Equal(t, "POST", w.Header().Get("Allow"))
			},
		},
		{
			name:   "PUT is 405",
			method: http.MethodPut,
			user:   "alice",
			status: http.StatusMethodNotAllowed,
		},
		{
			name:   "not signed in is 401",
			method: http.MethodPost,
			status: http.StatusUnauthorized,
		},
		{
			name:   "a signed-in POST gets a ticket for 30 seconds",
			method: http.MethodPost,
			user:   "alice",
			status: http.StatusOK,
			check: func(t *testing.T, w *httptest.ResponseRecorder, tk *Tickets[user]) {
				assert.Equal(t, "application/json", w.Header().Get("Content-Type"))
				var body map[string]any
				require.NoError(t, json.Unmarshal(w.Body.Bytes(), &body))
				assert.Len(t, body, 2)
				assert.Equal(t, float64(30), body["expires_in"])
				ticket, _ := body["ticket"].(string)
				assert.Len(t, ticket, TicketLen)
				assert.True(t, isTicket(ticket), "unpadded base64url")
				raw, err := base64.RawURLEncoding.DecodeString(ticket)
				require.NoError(t, err)
				assert.GreaterOrEqual(t, len(raw)*8, 128)
				r := newHandshake("/ws?ticket=" + ticket)
				a, err := ticketGate(tk).Authenticate(r)
				require.NoError(t, err)
				assert.Equal(t, "alice", a.Principal.Name)
			},
		},
		{
			name:   "expires_in follows the TTL",
			method: http.MethodPost,
			user:   "alice",
			ttl:    5 * time.Second,
			status: http.StatusOK,
			check: func(t *testing.T, w *httptest.ResponseRecorder, _ *Tickets[user]) {
				assert.JSONEq(t, `5`, string(mustField(t, w.Body.Bytes(), "expires_in")))
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tk, _, _ := newTickets(t)
			tk.TTL = tt.ttl
			r := issueRequest("1.1.1.1:1", "X-Test-User", tt.user)
			r.Method = tt.method
			w := httptest.NewRecorder()
			tk.Issuer(signedIn).ServeHTTP(w, r)
			assert.Equal(t, tt.status, w.Code)
			assert.Equal(t, "no-store", w.Header().Get("Cache-Control"))
			if tt.check != nil {
				tt.check(t, w, tk)
			}
		})
	}
}

func mustField(t *testing.T, body []byte, name string) json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(body, &m))
	return m[name]
}

func TestIssuerAnswers400WhenATrustedProxySendsAMalformedXFF(t *testing.T) {
	tk, store, _ := newTickets(t)
	tk.BindClient = true
	tk.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	w := httptest.NewRecorder()
	tk.Issuer(func(*http.Request) (user, bool) { return user{"alice"}, true }).
		ServeHTTP(w, issueRequest("10.0.0.1:1", "X-Forwarded-For", "not-an-ip"))
	assert.Equal(t, http.StatusBadRequest, w.Code)
	assert.Zero(t, store.Len())
}

func TestTicketsPanicWithoutAStore(t *testing.T) {
	tk := &Tickets[user]{}
	assert.Panics(t, func() { tk.Verifier() })
	assert.Panics(t, func() { tk.Issuer(func(*http.Request) (user, bool) { return user{}, true }) })
	tk.Store = &staleStore{}
	assert.Panics(t, func() { tk.Issuer(nil) })
}

func TestTicketStaysSpentWhenTheUpgradeFails(t *testing.T) {
	tk, _, _ := newTickets(t)
	h := ticketGate(tk).Handler(func(context.Context, Session[user]) {})
	ticket := mustIssue(t, tk, issueRequest("1.1.1.1:1"), user{"alice"})

	rec := httptest.NewRecorder() // cannot be hijacked
	h.ServeHTTP(rec, newHandshake("/ws?ticket="+ticket))
	assert.Equal(t, http.StatusInternalServerError, rec.Code)

	w := serveOnce(h, newHandshake("/ws?ticket="+ticket))
	assert.False(t, w.hijacked)
	assert.Equal(t, http.StatusUnauthorized, w.status)
	assert.Contains(t, w.header.Get("WWW-Authenticate"), `error="invalid_token"`)
}

func TestTicketOverLoopback(t *testing.T) {
	tests := []struct {
		name string
		dial func(ticket string) (string, ws.Dialer) // path and dialer
		want string
	}{
		{
			name: "query parameter",
			dial: func(ticket string) (string, ws.Dialer) {
				return "/ws?ticket=" + ticket, ws.Dialer{}
			},
			want: "alice query ",
		},
		{
			name: "subprotocol marker form",
			dial: func(ticket string) (string, ws.Dialer) {
				return "/ws", ws.Dialer{Protocols: []string{"chat", DefaultMarker, ticket}}
			},
			want: "alice subprotocol chat",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tk := &Tickets[user]{Store: newMemoryStore(t, newFakeClock(), 0), BindOrigin: true, BindClient: true, Path: "/ws"}
			mux := http.NewServeMux()
			mux.Handle("/ticket", tk.Issuer(func(r *http.Request) (user, bool) {
				c, err := r.Cookie("session") // the application's own login
				return user{"alice"}, err == nil && c.Value == "alice-session"
			}))
			mux.Handle("/ws", New(tk.Verifier(), Config{
				Protocols:  []string{"chat"},
				Extractors: []Extractor{Query("ticket"), Subprotocol(DefaultMarker)},
			}).Handler(echoSession))
			srv := newServer(t, mux)
			origin := srv.URL

			// The page fetches a ticket with its cookie...
			req, err := http.NewRequest(http.MethodPost, srv.URL+"/ticket", nil)
			require.NoError(t, err)
			req.Header.Set("Origin", origin)
			req.Header.Set("Cookie", "session=alice-session")
			client := &http.Client{Transport: &http.Transport{}}
			defer client.CloseIdleConnections()
			resp, err := client.Do(req)
			require.NoError(t, err)
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
			var issued struct {
				Ticket    string `json:"ticket"`
				ExpiresIn int    `json:"expires_in"`
			}
			require.NoError(t, json.Unmarshal(body, &issued))

			// ...and opens the socket with it.
			dial := func() (string, error) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				path, d := tt.dial(issued.Ticket)
				d.Timeout = 5 * time.Second
				d.Header = ws.HandshakeHeaderHTTP(http.Header{"Origin": {origin}})
				conn, br, _, err := d.Dial(ctx, wsURL(srv, path))
				if err != nil {
					return "", err
				}
				defer conn.Close()
				rd := io.Reader(conn)
				if br != nil {
					rd = br
				}
				hello, err := wsutil.ReadServerText(readWriter{rd, conn})
				return string(hello), err
			}
			hello, err := dial()
			require.NoError(t, err)
			assert.Equal(t, tt.want, hello)

			for range 3 {
				_, err = dial()
				assert.Equal(t, ws.StatusError(http.StatusUnauthorized), err)
			}
		})
	}
}

// BenchmarkTicketHandshake measures a whole handshake whose ticket is
// consumed from the memory store, in the handler form, next to the same
// handshake with a static token.
func BenchmarkTicketHandshake(b *testing.B) {
	codecs := []struct {
		name      string
		marshal   func(user) ([]byte, error)
		unmarshal func([]byte) (user, error)
	}{
		{name: "memory-ticket-json"},
		{
			name:      "memory-ticket-own-codec",
			marshal:   func(u user) ([]byte, error) { return []byte(u.Name), nil },
			unmarshal: func(b []byte) (user, error) { return user{string(b)}, nil },
		},
	}
	for _, c := range codecs {
		b.Run(c.name, func(b *testing.B) {
			benchmarkTicketHandshake(b, c.marshal, c.unmarshal)
		})
	}
	b.Run("static-token", func(b *testing.B) {
		b.ReportAllocs()
		h := New(StaticToken(secret, user{"alice"}), Config{Extractors: []Extractor{Query("ticket")}}).Handler(func(context.Context, Session[user]) {})
		r := newHandshake("/ws")
		w := newHijackWriter()
		for b.Loop() {
			w.reset()
			r.URL.RawQuery = "ticket=" + secret
			h.ServeHTTP(w, r)
			if !w.hijacked {
				b.Fatal(w.responseText())
			}
		}
	})
}

// benchmarkTicketHandshake pre-issues b.N tickets, then runs one handshake
// per ticket.
func benchmarkTicketHandshake(b *testing.B, marshal func(user) ([]byte, error), unmarshal func([]byte) (user, error)) {
	b.ReportAllocs()
	clock := newFakeClock()
	store := NewMemoryTicketStore(MemoryTicketStoreOptions{MaxEntries: b.N + 1, SweepInterval: -1, Now: clock.Now})
	defer store.Close()
	tk := &Tickets[user]{Store: store, Now: clock.Now, Marshal: marshal, Unmarshal: unmarshal}
	h := New(tk.Verifier(), Config{Extractors: []Extractor{Query("ticket")}}).Handler(func(context.Context, Session[user]) {})
	queries := make([]string, b.N)
	issue := issueRequest("1.1.1.1:1")
	for i := range queries {
		queries[i] = "ticket=" + mustIssue(b, tk, issue, user{"alice"})
	}
	r := newHandshake("/ws")
	w := newHijackWriter()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w.reset()
		r.URL.RawQuery = queries[i]
		h.ServeHTTP(w, r)
		if !w.hijacked {
			b.Fatal(w.responseText())
		}
	}
}
