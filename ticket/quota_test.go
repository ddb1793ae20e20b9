package ticket

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOnePrincipalCannotHoldMoreThanItsQuotaOfTickets(t *testing.T) {
	tk, store, clock := newService(t)
	issuer := tk.Issuer(func(r *http.Request) (user, bool) { return user{r.Header.Get("X-User")}, true })
	issue := func(name string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		issuer.ServeHTTP(w, issueRequest("1.1.1.1:1", "X-User", name))
		return w
	}
	for range DefaultMaxPerPrincipal {
		require.Equal(t, http.StatusOK, issue("mallory").Code)
	}
	w := issue("mallory")
	assert.Equal(t, http.StatusTooManyRequests, w.Code, "the principal's next ticket is refused")
	assert.Equal(t, "1", w.Header().Get("Retry-After"))
	_, err := tk.Issue(issueRequest("1.1.1.1:1"), user{"mallory"})
	assert.ErrorIs(t, err, ErrQuotaExceeded)

	// Everybody else is unaffected.
	assert.Equal(t, http.StatusOK, issue("alice").Code)
	assert.Equal(t, DefaultMaxPerPrincipal+1, store.Len())

	// Using a ticket gives the slot back, and so does expiry.
	ticket := mustIssue(t, tk, issueRequest("1.1.1.1:1"), user{"bob"})
	for range DefaultMaxPerPrincipal - 1 {
		mustIssue(t, tk, issueRequest("1.1.1.1:1"), user{"bob"})
	}
	_, err = tk.Issue(issueRequest("1.1.1.1:1"), user{"bob"})
	require.ErrorIs(t, err, ErrQuotaExceeded)
	_, err = ticketGate(tk).Authenticate(newHandshake("/ws?ticket=" + ticket))
	require.NoError(t, err)
	mustIssue(t, tk, issueRequest("1.1.1.1:1"), user{"bob"})

	clock.Advance(DefaultTTL)
	assert.Equal(t, http.StatusOK, issue("mallory").Code, "expired tickets no longer count")
}

func TestMaxPerPrincipalIsConfigurableAndCanBeLifted(t *testing.T) {
	clock := newFakeClock()
	two := NewMemoryStore(MemoryStoreOptions{MaxPerPrincipal: 2, SweepInterval: -1, Now: clock.Now})
	unbounded := NewMemoryStore(MemoryStoreOptions{MaxPerPrincipal: -1, SweepInterval: -1, Now: clock.Now})
	for _, tt := range []struct {
		store *MemoryStore
		n     int
	}{{two, 2}, {unbounded, 3 * DefaultMaxPerPrincipal}} {
		tk := &Service[user]{Store: tt.store, Now: clock.Now}
		for range tt.n {
			mustIssue(t, tk, issueRequest("1.1.1.1:1"), user{"alice"})
		}
		_, err := tk.Issue(issueRequest("1.1.1.1:1"), user{"alice"})
		if tt.store == two {
			assert.ErrorIs(t, err, ErrQuotaExceeded)
		} else {
			assert.NoError(t, err)
		}
	}
}

func TestBoundOriginIsComparedAsTheOriginPolicyCompares(t *testing.T) {
	tests := []struct {
		name      string
		issued    string
		handshake string
		ok        bool
	}{
		{name: "scheme in another case", issued: "https://app.example:8443", handshake: "HTTPS://app.example:8443", ok: true},
		{name: "host in another case", issued: "https://APP.example:8443", handshake: "https://app.EXAMPLE:8443", ok: true},
		{name: "the default port implied", issued: "https://app.example", handshake: "https://app.example:443", ok: true},
		{name: "the default port implied, the other way", issued: "http://x:80", handshake: "HTTP://X", ok: true},
		{name: "another port", issued: "https://app.example:8443", handshake: "https://app.example:8444"},
		{name: "another scheme", issued: "https://app.example:8443", handshake: "http://app.example:8443"},
		{name: "another host", issued: "https://app.example:8443", handshake: "https://evil.example:8443"},
		{name: "a value that is no origin is compared byte for byte", issued: "null", handshake: "null", ok: true},
		{name: "no origin is not an origin", issued: "null", handshake: "NULL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tk, _, _ := newService(t)
			tk.BindOrigin = true
			ticket := mustIssue(t, tk, issueRequest("1.1.1.1:1", "Origin", tt.issued), user{"alice"})
			err := tk.checkBindings(newHandshake("/ws", "Origin", tt.handshake), mustConsume(t, tk.Store.(*MemoryStore), ticket))
			if tt.ok {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, errOrigin)
			}
		})
	}
}

func TestBoundOriginIsLengthCapped(t *testing.T) {
	tk, store, _ := newService(t)
	tk.BindOrigin = true
	long := "https://" + strings.Repeat("a", MaxOriginLength) + ".example"
	_, err := tk.Issue(issueRequest("1.1.1.1:1", "Origin", long), user{"alice"})
	assert.ErrorIs(t, err, ErrOriginTooLong)
	w := httptest.NewRecorder()
	tk.Issuer(func(*http.Request) (user, bool) { return user{"alice"}, true }).
		ServeHTTP(w, issueRequest("1.1.1.1:1", "Origin", long))
	assert.Equal(t, http.StatusBadRequest, w.Code)
	assert.Zero(t, store.Len(), "nothing was stored")

	ticket := mustIssue(t, tk, issueRequest("1.1.1.1:1", "Origin", "https://app.example"), user{"alice"})
	rec := mustConsume(t, store, ticket)
	assert.Equal(t, "https://app.example", rec.Origin)
	assert.ErrorIs(t, tk.checkBindings(newHandshake("/ws", "Origin", long), rec), errOrigin)
}
