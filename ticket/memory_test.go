package ticket

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMemoryStoreIsBoundedAndEvictsNothingEarly(t *testing.T) {
	clock := newFakeClock()
	store := newMemoryStore(t, clock, 3)
	tk := &Service[user]{Store: store, Now: clock.Now}
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
	clock.Advance(DefaultTTL)
	mustIssue(t, tk, issueRequest("1.1.1.1:1"), user{"alice"})
	assert.Equal(t, 1, store.Len())
}

func TestMemoryStoreSweepsInTheBackgroundUntilClosed(t *testing.T) {
	clock := newFakeClock()
	store := NewMemoryStore(MemoryStoreOptions{SweepInterval: time.Millisecond, Now: clock.Now})
	defer store.Close()
	require.NoError(t, store.Put(context.Background(), [32]byte{1}, Record{}, time.Second))
	clock.Advance(time.Second)
	assert.Eventually(t, func() bool { return store.Len() == 0 }, 5*time.Second, time.Millisecond)
	require.NoError(t, store.Close())
	require.NoError(t, store.Close(), "Close twice")
	// Still usable after Close.
	require.NoError(t, store.Put(context.Background(), [32]byte{2}, Record{}, time.Second))
	_, err := store.Consume(context.Background(), [32]byte{2})
	assert.NoError(t, err)
}

func TestMemoryStoreRefusesToOverwriteALiveEntry(t *testing.T) {
	store := newMemoryStore(t, newFakeClock(), 0)
	ctx := context.Background()
	require.NoError(t, store.Put(ctx, [32]byte{1}, Record{Path: "/a"}, time.Second))
	assert.Error(t, store.Put(ctx, [32]byte{1}, Record{Path: "/b"}, time.Second))
	rec, err := store.Consume(ctx, [32]byte{1})
	require.NoError(t, err)
	assert.Equal(t, "/a", rec.Path)
	_, err = store.Consume(ctx, [32]byte{1})
	assert.ErrorIs(t, err, ErrNotFound)
}

func TestStoreHoldsOnlyTheTicketsHash(t *testing.T) {
	tk, store, _ := newService(t)
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

func TestZeroMemoryStoreIsReadyToUse(t *testing.T) {
	var store MemoryStore
	assert.Zero(t, store.Len())
	_, err := store.Consume(context.Background(), [32]byte{1})
	assert.ErrorIs(t, err, ErrNotFound, "Consume before any Put")

	tk := &Service[user]{Store: &store}
	g := ticketGate(tk)
	ticket := mustIssue(t, tk, issueRequest("1.1.1.1:1"), user{"alice"})
	assert.Equal(t, 1, store.Len())
	a, err := g.Authenticate(newHandshake("/ws?ticket=" + ticket))
	require.NoError(t, err)
	assert.Equal(t, "alice", a.Principal.Name)
	_, err = g.Authenticate(newHandshake("/ws?ticket=" + ticket))
	assert.ErrorIs(t, err, errUnknown)

	assert.Equal(t, DefaultMaxEntries, store.limit())
	assert.Nil(t, store.stop, "a zero store starts no sweep")
	require.NoError(t, store.Close())
	require.NoError(t, store.Close(), "Close twice")
}

func TestZeroMemoryStoreIsBoundedByDefaultMaxEntries(t *testing.T) {
	var store MemoryStore
	ctx := context.Background()
	for i := range DefaultMaxEntries {
		var h [32]byte
		h[0], h[1], h[2] = byte(i), byte(i>>8), byte(i>>16)
		require.NoError(t, store.Put(ctx, h, Record{Principal: h[:3]}, time.Hour)) // a principal each
	}
	assert.ErrorIs(t, store.Put(ctx, [32]byte{0xff, 0xff, 0xff}, Record{}, time.Hour), ErrStoreFull)
}
