package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/wsgate/wsgate"
	"github.com/wsgate/wsgate/fleet"
)

// fleetTokenPrefix starts the credentials the fleet server accepts: the
// rest of the token is the principal's name, so that each case has a
// principal key of its own.
const fleetTokenPrefix = "fleet-"

// fleetSession is a session the fleet server's gates started.
type fleetSession struct{ id, key string }

// fleetServer serves, on 127.0.0.1, two gates that share one fleet.Memory
// registry (at most one live session per principal key, close-frame
// refusals): /fleet/ greets and then reads until the connection ends (a
// session without an expiry), /fleet-exp/ greets and waits for its context
// (its credential expires in an hour). Each reports its sessions by path.
type fleetServer struct {
	URL string
	ws  string
	reg *fleet.Memory

	mu       sync.Mutex
	sessions map[string]chan fleetSession
	evs      map[string][]wsgate.HandshakeEvent
}

func newFleetServer(t *testing.T) *fleetServer {
	t.Helper()
	s := &fleetServer{
		reg:      fleet.NewMemory(fleet.MemoryOptions{MaxPerKey: 1}),
		sessions: map[string]chan fleetSession{},
		evs:      map[string][]wsgate.HandshakeEvent{},
	}
	verify := func(_ context.Context, c wsgate.Credential) (user, error) {
		name, ok := strings.CutPrefix(c.Token(), fleetTokenPrefix)
		if !ok || name == "" {
			return user{}, wsgate.ErrInvalidToken
		}
		return user{Name: name}, nil
	}
	expiring := func(ctx context.Context, c wsgate.Credential) (user, error) {
		p, err := verify(ctx, c)
		if err == nil {
			wsgate.SetExpiry(ctx, time.Now().Add(time.Hour))
		}
		return p, err
	}
	cfg := wsgate.Config{
		Protocols:            []string{appProtocol},
		Extractors:           []wsgate.Extractor{wsgate.Subprotocol("access_token")},
		RefuseWithCloseFrame: true,
		Registry:             s.reg,
		PrincipalKey:         func(p any) string { return p.(user).Name },
		OnHandshake:          s.record,
	}
	mux := http.NewServeMux()
	mux.Handle("/fleet/", wsgate.New(verify, cfg).Handler(func(_ context.Context, sess wsgate.Session[user]) {
		if s.greet(sess) {
			serveUntilClosed(sess)
		}
	}))
	mux.Handle("/fleet-exp/", wsgate.New(expiring, cfg).Handler(func(ctx context.Context, sess wsgate.Session[user]) {
		if s.greet(sess) {
			select {
			case <-ctx.Done():
			case <-time.After(30 * time.Second):
			}
		}
	}))
	mux.HandleFunc("/page", servePage)
	_, s.URL, _ = serve(t, mux)
	s.ws = "ws" + strings.TrimPrefix(s.URL, "http")
	return s
}

// greet sends the greeting under the session's write lock, then reports
// the session; it returns false if the greeting could not be sent.
func (s *fleetServer) greet(sess wsgate.Session[user]) bool {
	l := sess.WriteLock()
	l.Lock()
	err := wsutil.WriteServerMessage(sess.Conn, ws.OpText, []byte(greeting(sess.Principal.Name, sess.Source.String(), sess.Protocol)))
	l.Unlock()
	if err != nil {
		return false
	}
	s.opened(sess.Request.URL.Path) <- fleetSession{id: sess.ID, key: sess.Key}
	return true
}

// serveUntilClosed reads and drops the client's messages until the
// connection ends or stays silent for 30 seconds.
func serveUntilClosed(sess wsgate.Session[user]) {
	for i := 0; i < 100; i++ {
		sess.Conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, _, err := wsutil.ReadClientData(sess.Conn); err != nil {
			return
		}
	}
}

// opened returns the channel the sessions of path are reported on.
func (s *fleetServer) opened(path string) chan fleetSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.sessions[path]
	if c == nil {
		c = make(chan fleetSession, 4)
		s.sessions[path] = c
	}
	return c
}

func (s *fleetServer) record(ev wsgate.HandshakeEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.evs[ev.Path] = append(s.evs[ev.Path], ev)
}

// refusedTooMany checks that the gate reported exactly one refusal of
// path, by the cap: 429, fleet.ErrTooManySessions, close 4409. The report
// comes once the close frame is written, so it waits up to a second.
func (s *fleetServer) refusedTooMany(path string) error {
	deadline := time.Now().Add(time.Second)
	for {
		s.mu.Lock()
		evs := append([]wsgate.HandshakeEvent(nil), s.evs[path]...)
		s.mu.Unlock()
		if len(evs) > 0 || time.Now().After(deadline) {
			if len(evs) != 1 || evs[0].Accepted || evs[0].Status != http.StatusTooManyRequests ||
				!errors.Is(evs[0].Err, fleet.ErrTooManySessions) || evs[0].CloseCode != fleet.CloseTooManySessions {
				return fmt.Errorf("want one refusal by the cap (429, close 4409) at %s; gate reported %+v", path, evs)
			}
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// revokeWhenOpen waits (up to limit) for a session of path, then revokes
// it, by its principal key or by its id, and reports the outcome on the
// returned channel.
func (s *fleetServer) revokeWhenOpen(path, key string, bySession bool, limit time.Duration) <-chan error {
	done := make(chan error, 1)
	go func() {
		var fs fleetSession
		select {
		case fs = <-s.opened(path):
		case <-time.After(limit):
			done <- fmt.Errorf("no session opened at %s within %v", path, limit)
			return
		}
		if fs.key != key || fs.id == "" {
			done <- fmt.Errorf("the session at %s has key %q and id %q, want key %q and an id", path, fs.key, fs.id, key)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if bySession {
			found, err := s.reg.RevokeSession(ctx, fs.id)
			if err != nil || !found {
				done <- fmt.Errorf("RevokeSession(%q) = %v, %v; want true, nil", fs.id, found, err)
				return
			}
		} else if n, err := s.reg.Revoke(ctx, key); err != nil || n != 1 {
			done <- fmt.Errorf("Revoke(%q) = %d, %v; want 1, nil", key, n, err)
			return
		}
		done <- nil
	}()
	return done
}

// holdSession opens a session of name at /fleet/hold-<name> from Go,
// reads its greeting, and closes it when t ends: the principal then holds
// the one session the cap allows.
func (s *fleetServer) holdSession(t *testing.T, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	path := "/fleet/hold-" + name
	d := ws.Dialer{Protocols: []string{appProtocol, "access_token", fleetTokenPrefix + name}}
	conn, br, _, err := d.Dial(ctx, s.ws+path)
	if err != nil {
		t.Fatalf("holding a session of %s: %v", name, err)
	}
	if br != nil {
		ws.PutReader(br)
	}
	t.Cleanup(func() { conn.Close() })
	select {
	case <-s.opened(path):
	case <-ctx.Done():
		t.Fatalf("the held session of %s did not start", name)
	}
	if n := s.reg.Len(name); n != 1 {
		t.Fatalf("the registry holds %d sessions of %s, want 1", n, name)
	}
}

// fleetProtocols are the protocols a page offers for the principal name.
func fleetProtocols(name string) string {
	return jsList(appProtocol, "access_token", fleetTokenPrefix+name)
}

// pageRevoked checks what a page sees of a revoked session: it opened,
// read the greeting, then a clean close 4410 "session revoked".
func pageRevoked(r clientResult, name string) error {
	if want := greeting(name, "subprotocol", appProtocol); !r.Opened || r.Protocol != appProtocol || r.Greeting != want ||
		r.Error || r.CloseCode != int(fleet.CloseRevoked) || r.CloseReason != fleet.RevokedReason || !r.WasClean || r.TimedOut {
		return fmt.Errorf("want open, greeting %q, then a clean close %d %q; page saw %v reason=%q wasClean=%v",
			want, fleet.CloseRevoked, fleet.RevokedReason, r, r.CloseReason, r.WasClean)
	}
	return nil
}

// fleetRevokeCases are the revocations each browser sees, by principal key
// and by session id, of sessions with an expiry (whose context the gate
// cancels, so that the handler returns and the gate completes the closing
// handshake) and without one (whose handler reads with
// wsutil.ReadClientData until the connection ends: its answer to the page's
// close frame, after the gate's, is refused by the session, so no second
// close frame reaches the page).
var fleetRevokeCases = []struct {
	name      string
	path      string // under the client's own prefix
	bySession bool
}{
	{"Revoke by principal key", "/fleet-exp/key", false},
	{"RevokeSession by id", "/fleet-exp/session", true},
	{"Revoke by principal key, without an expiry", "/fleet/key", false},
	{"RevokeSession by id, without an expiry", "/fleet/session", true},
}

// fleetKey is the principal of a revoke case in one browser.
func fleetKey(client, path string) string {
	return client + "-" + strings.ReplaceAll(strings.Trim(path, "/"), "/", "-")
}

func TestFleetBrowser(t *testing.T) {
	bctx := startChromium(t)
	s := newFleetServer(t)
	page := s.URL + "/page"
	for _, c := range fleetRevokeCases {
		t.Run(c.name, func(t *testing.T) {
			key := fleetKey("chromium", c.path)
			revoked := s.revokeWhenOpen(c.path, key, c.bySession, 20*time.Second)
			u, _ := json.Marshal(s.ws + c.path)
			r := pageEval(t, bctx, []string{page}, fmt.Sprintf("watchWS(%s, %s, 25000)", u, fleetProtocols(key)))
			if err := <-revoked; err != nil {
				t.Error(err)
			}
			if err := pageRevoked(r, key); err != nil {
				t.Error(err)
			}
			if n := s.reg.Len(key); n != 0 {
				t.Errorf("the registry still holds %d sessions of %s", n, key)
			}
		})
	}
	t.Run("a second session over MaxPerKey", func(t *testing.T) {
		s.holdSession(t, "chromium-capped")
		r := closePageRun(t, bctx, page, s.ws+"/fleet/capped", []string{appProtocol, "access_token", fleetTokenPrefix + "chromium-capped"}, "")
		if err := pageClosedWith(r, int(fleet.CloseTooManySessions), "too many sessions"); err != nil {
			t.Error(err)
		}
		if err := s.refusedTooMany("/fleet/capped"); err != nil {
			t.Error(err)
		}
	})
}

// TestFleetFirefox runs TestFleetBrowser's cases in one Firefox, the
// refused one last (Firefox slows down sockets to a host after refusals).
func TestFleetFirefox(t *testing.T) {
	requireFirefox(t)
	s := newFleetServer(t)
	page := s.URL + "/page"
	var jobs []ffJob
	var revoked []<-chan error
	for _, c := range fleetRevokeCases {
		key := fleetKey("firefox", c.path)
		revoked = append(revoked, s.revokeWhenOpen(c.path, key, c.bySession, 2*time.Minute))
		jobs = append(jobs, watchJob(page, s.ws+c.path, fleetProtocols(key)))
	}
	s.holdSession(t, "firefox-capped")
	jobs = append(jobs, tryJob([]string{page}, s.ws+"/fleet/capped", fleetProtocols("firefox-capped"), ""))
	res := runFirefox(t, false, jobs)
	for i, c := range fleetRevokeCases {
		t.Run(c.name, func(t *testing.T) {
			if err := <-revoked[i]; err != nil {
				t.Error(err)
			}
			if err := pageRevoked(*res[i].Value, fleetKey("firefox", c.path)); err != nil {
				t.Error(err)
			}
		})
	}
	t.Run("a second session over MaxPerKey", func(t *testing.T) {
		if err := pageClosedWith(*res[len(res)-1].Value, int(fleet.CloseTooManySessions), "too many sessions"); err != nil {
			t.Error(err)
		}
		if err := s.refusedTooMany("/fleet/capped"); err != nil {
			t.Error(err)
		}
	})
}
