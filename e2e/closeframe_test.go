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
)

// forbiddenToken is a credential the close-frame server's verifier knows
// but refuses with wsgate.ErrForbidden.
const forbiddenToken = "e2e-forbidden-token"

// inBandTimeout and inBandMaxSize bound the in-band gate's first message.
const (
	inBandTimeout = time.Second
	inBandMaxSize = 256
)

// refusalServer serves, on 127.0.0.1, the same gate three ways: /cf/<case>
// refuses with close frames (Config.RefuseWithCloseFrame), /http/<case> with
// HTTP errors (the default), and /inband/<case> authenticates the first
// message (wsgate.InBandAuth, also refusing with close frames). It records
// what each gate reported per case, through Config.OnHandshake.
type refusalServer struct {
	URL string

	mu     sync.Mutex
	evs    map[string][]wsgate.HandshakeEvent
	protos map[string]int // the HTTP major version each path's last request came over
}

func newRefusalServer(t *testing.T) *refusalServer {
	t.Helper()
	s := &refusalServer{evs: map[string][]wsgate.HandshakeEvent{}, protos: map[string]int{}}
	_, s.URL, _ = serve(t, s.mux())
	return s
}

// newRefusalServerTLS is newRefusalServer over TLS with HTTP/2 (extended
// CONNECT on) and a certificate generated for the test.
func newRefusalServerTLS(t *testing.T) *refusalServer {
	t.Helper()
	s := &refusalServer{evs: map[string][]wsgate.HandshakeEvent{}, protos: map[string]int{}}
	srv, _ := newTLSServer(t, s.mux(), nil)
	s.URL = srv.URL
	return s
}

// expiryTTL is how long after the handshake the credential of /expiry/
// expires.
const expiryTTL = time.Second

// mux serves the gates: /cf/, /http/ and /inband/ as the type's doc says;
// /cfprefix/ is /cf/ that also takes the Kubernetes prefix form; /expiry/
// accepts testToken with an expiry expiryTTL ahead, greets and waits for
// the context, as an application should.
func (s *refusalServer) mux() http.Handler {
	cfg := func(closeFrames bool, inband *wsgate.InBandAuth) wsgate.Config {
		return wsgate.Config{
			Protocols:            []string{appProtocol},
			Extractors:           []wsgate.Extractor{wsgate.Subprotocol("access_token")},
			RefuseWithCloseFrame: closeFrames,
			InBand:               inband,
			OnHandshake:          s.record,
		}
	}
	prefix := cfg(true, nil)
	prefix.Extractors = append(prefix.Extractors, wsgate.SubprotocolPrefix(""))
	expiring := func(ctx context.Context, c wsgate.Credential) (user, error) {
		p, err := verifyTestTokens(ctx, c)
		if err == nil {
			wsgate.SetExpiry(ctx, time.Now().Add(expiryTTL))
		}
		return p, err
	}
	mux := http.NewServeMux()
	mux.Handle("/cf/", wsgate.New(verifyTestTokens, cfg(true, nil)).Handler(echoSession))
	mux.Handle("/cfprefix/", wsgate.New(verifyTestTokens, prefix).Handler(echoSession))
	mux.Handle("/http/", wsgate.New(verifyTestTokens, cfg(false, nil)).Handler(echoSession))
	mux.Handle("/inband/", wsgate.New(verifyTestTokens, cfg(true,
		&wsgate.InBandAuth{Timeout: inBandTimeout, MaxSize: inBandMaxSize})).Handler(echoSession))
	mux.Handle("/expiry/", wsgate.New(expiring, cfg(true, nil)).Handler(greetUntilExpiry))
	mux.HandleFunc("/page", servePage)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.protos[r.URL.Path] = r.ProtoMajor
		s.mu.Unlock()
		mux.ServeHTTP(w, r)
	})
}

// proto returns the HTTP major version path's last request came over.
func (s *refusalServer) proto(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.protos[path]
}

// greetUntilExpiry sends the greeting, holding the session's write lock,
// and returns when the session's context ends (the credential expired).
func greetUntilExpiry(ctx context.Context, sess wsgate.Session[user]) {
	l := sess.WriteLock()
	l.Lock()
	err := wsutil.WriteServerMessage(sess.Conn, ws.OpText, []byte(greeting(sess.Principal.Name, sess.Source.String(), sess.Protocol)))
	l.Unlock()
	if err != nil {
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(30 * time.Second):
	}
}

func (s *refusalServer) record(ev wsgate.HandshakeEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.evs[ev.Path] = append(s.evs[ev.Path], ev)
}

// events waits up to a second for the gate's report of path (a refusal
// after the upgrade is reported once the close frame is written, which may
// be just after the page saw it) and returns the reports so far.
func (s *refusalServer) events(path string) []wsgate.HandshakeEvent {
	deadline := time.Now().Add(time.Second)
	for {
		s.mu.Lock()
		evs := append([]wsgate.HandshakeEvent(nil), s.evs[path]...)
		s.mu.Unlock()
		if len(evs) > 0 || time.Now().After(deadline) {
			return evs
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// refusedWith checks that the gate reported exactly one refusal for path,
// matching kind (nil: any) with status.
func (s *refusalServer) refusedWith(path string, kind error, status int) error {
	evs := s.events(path)
	if len(evs) != 1 || evs[0].Accepted || evs[0].Status != status || kind != nil && !errors.Is(evs[0].Err, kind) {
		return fmt.Errorf("want one refusal %v with status %d at %s; gate reported %+v", kind, status, path, evs)
	}
	return nil
}

// reportedClose checks that the gate's report for path names the close
// code it sent.
func (s *refusalServer) reportedClose(path string, code int) error {
	evs := s.events(path)
	if len(evs) != 1 || int(evs[0].CloseCode) != code {
		return fmt.Errorf("want one report with close code %d at %s; gate reported %+v", code, path, evs)
	}
	return nil
}

// closePageRun loads page in a fresh browser context and runs
// tryWS(wsURL, protocols) there, sending first as the first message unless
// it is "".
func closePageRun(t *testing.T, bctx context.Context, page, wsURL string, protocols []string, first string) clientResult {
	t.Helper()
	u, _ := json.Marshal(wsURL)
	f := "undefined"
	if first != "" {
		b, _ := json.Marshal(first)
		f = string(b)
	}
	r := pageEval(t, bctx, []string{page}, fmt.Sprintf("tryWS(%s, %s, 10000, %s)", u, jsList(protocols...), f))
	t.Logf("close reason=%q wasClean=%v", r.CloseReason, r.WasClean)
	return r
}

// pageClosedWith checks what a page sees of a refusal by close frame: the
// socket opens with the echoed protocol, no greeting, no error event, and a
// clean close with code and reason.
func pageClosedWith(r clientResult, code int, reason string) error {
	if r.Thrown != "" || !r.Opened || r.Protocol != appProtocol || r.Greeting != "" || r.Error ||
		r.CloseCode != code || r.CloseReason != reason || !r.WasClean || r.TimedOut {
		return fmt.Errorf("want open (protocol %q), then a clean close %d %q, no error event; page saw %v reason=%q wasClean=%v",
			appProtocol, code, reason, r, r.CloseReason, r.WasClean)
	}
	return nil
}

// pageWorked checks a session that was accepted: greeting, echo, close 1000.
func pageWorked(r clientResult, source string) error {
	if want := greeting(testPrincipal.Name, source, appProtocol); !r.Opened || r.Greeting != want ||
		r.Echo != pingText || r.CloseCode != 1000 || r.Error {
		return fmt.Errorf("want greeting %q, echo and close 1000; page saw %v", want, r)
	}
	return nil
}

func TestCloseFrameBrowser(t *testing.T) {
	bctx := startChromium(t)
	s := newRefusalServer(t)
	page := s.URL + "/page"
	ws := "ws" + strings.TrimPrefix(s.URL, "http")

	tests := []struct {
		name      string
		protocols []string
		code      int
		reason    string
		kind      error
		status    int // the HTTP status the refusal stands for
	}{
		{"wrong token", []string{appProtocol, "access_token", wrongToken}, 4401, "invalid credential", wsgate.ErrInvalidToken, http.StatusUnauthorized},
		{"missing token", []string{appProtocol}, 4401, "credential required", wsgate.ErrNoCredential, http.StatusUnauthorized},
		{"forbidden principal", []string{appProtocol, "access_token", forbiddenToken}, 4403, "forbidden", wsgate.ErrForbidden, http.StatusForbidden},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := fmt.Sprintf("/cf/%d", i)
			r := closePageRun(t, bctx, page, ws+path, tt.protocols, "")
			if err := pageClosedWith(r, tt.code, tt.reason); err != nil {
				t.Error(err)
			}
			if err := s.refusedWith(path, tt.kind, tt.status); err != nil {
				t.Error(err)
			}
		})
	}

	t.Run("the right token", func(t *testing.T) {
		r := closePageRun(t, bctx, page, ws+"/cf/ok", []string{appProtocol, "access_token", testToken}, "")
		if err := pageWorked(r, "subprotocol"); err != nil {
			t.Error(err)
		}
	})

	// Issue 9: an origin failure must not complete the handshake, so even
	// in close-frame mode a page of another origin gets the HTTP 403, which
	// it sees as an error event and 1006, and learns nothing more.
	t.Run("another origin", func(t *testing.T) {
		other := newPageServer(t)
		r := closePageRun(t, bctx, other+"/page", ws+"/cf/cross", []string{appProtocol, "access_token", testToken}, "")
		err := pageRefused(r)
		if e := s.refusedWith("/cf/cross", wsgate.ErrOrigin, http.StatusForbidden); e != nil {
			err = fmt.Errorf("%v; %v", e, err)
		}
		extraRow(t, chromium, "close frame: a page of another origin", fmt.Sprintf("no upgrade (HTTP 403); page saw error=%v, close %d", r.Error, r.CloseCode), err)
	})

	// The same wrong token at the HTTP-mode gate: the page sees only 1006.
	t.Run("wrong token, HTTP mode", func(t *testing.T) {
		r := closePageRun(t, bctx, page, ws+"/http/wrong", []string{appProtocol, "access_token", wrongToken}, "")
		err := pageRefused(r)
		if r.CloseReason != "" {
			err = fmt.Errorf("want no reason in HTTP mode; page saw %q (%v)", r.CloseReason, err)
		}
		if e := s.refusedWith("/http/wrong", wsgate.ErrInvalidToken, http.StatusUnauthorized); e != nil {
			err = fmt.Errorf("%v; %v", e, err)
		}
		extraRow(t, chromium, "HTTP mode: wrong token", fmt.Sprintf("HTTP 401; page saw error=%v, close %d, reason %q", r.Error, r.CloseCode, r.CloseReason), err)
	})
}

func TestInBandBrowser(t *testing.T) {
	bctx := startChromium(t)
	s := newRefusalServer(t)
	page := s.URL + "/page"
	ws := "ws" + strings.TrimPrefix(s.URL, "http")
	auth := func(token string) string { return `{"type":"auth","token":"` + token + `"}` }

	t.Run("the right token", func(t *testing.T) {
		r := closePageRun(t, bctx, page, ws+"/inband/ok", []string{appProtocol}, auth(testToken))
		if err := pageWorked(r, "message"); err != nil {
			t.Error(err)
		}
		if evs := s.events("/inband/ok"); len(evs) != 1 || !evs[0].Accepted || evs[0].Source != wsgate.SourceMessage {
			t.Errorf("want one acceptance from the message; gate reported %+v", evs)
		}
	})
	t.Run("a wrong token", func(t *testing.T) {
		r := closePageRun(t, bctx, page, ws+"/inband/wrong", []string{appProtocol}, auth(wrongToken))
		if err := pageClosedWith(r, 4401, "invalid credential"); err != nil {
			t.Error(err)
		}
		if err := s.refusedWith("/inband/wrong", wsgate.ErrInvalidToken, http.StatusUnauthorized); err != nil {
			t.Error(err)
		}
	})
	t.Run("a forbidden principal", func(t *testing.T) {
		r := closePageRun(t, bctx, page, ws+"/inband/forbidden", []string{appProtocol}, auth(forbiddenToken))
		if err := pageClosedWith(r, 4403, "forbidden"); err != nil {
			t.Error(err)
		}
	})
	t.Run("no message", func(t *testing.T) {
		start := time.Now()
		r := closePageRun(t, bctx, page, ws+"/inband/none", []string{appProtocol}, "")
		if err := pageClosedWith(r, 4408, "authentication timed out"); err != nil {
			t.Error(err)
		}
		if d := time.Since(start); d < inBandTimeout {
			t.Errorf("closed after %v, before the %v deadline", d, inBandTimeout)
		}
		if err := s.refusedWith("/inband/none", wsgate.ErrNoCredential, http.StatusUnauthorized); err != nil {
			t.Error(err)
		}
		if err := s.reportedClose("/inband/none", 4408); err != nil {
			t.Error(err)
		}
	})
	t.Run("a message over MaxSize", func(t *testing.T) {
		r := closePageRun(t, bctx, page, ws+"/inband/big", []string{appProtocol}, auth(strings.Repeat("x", inBandMaxSize)))
		if err := pageClosedWith(r, 1009, "authentication message too big"); err != nil {
			t.Error(err)
		}
		if err := s.refusedWith("/inband/big", wsgate.ErrMalformedCredential, http.StatusUnauthorized); err != nil {
			t.Error(err)
		}
		if err := s.reportedClose("/inband/big", 1009); err != nil {
			t.Error(err)
		}
	})
}

// TestExpiryBrowser has Chromium keep a socket open past its credential's
// expiry: it reads the greeting, then a clean close 4401 "credential
// expired".
func TestExpiryBrowser(t *testing.T) {
	bctx := startChromium(t)
	s := newRefusalServer(t)
	u, _ := json.Marshal("ws" + strings.TrimPrefix(s.URL, "http") + "/expiry/chromium")
	r := pageEval(t, bctx, []string{s.URL + "/page"},
		fmt.Sprintf("watchWS(%s, %s, 15000)", u, jsList(appProtocol, "access_token", testToken)))
	err := pageExpired(r)
	extraRow(t, chromium, "credential expiry", fmt.Sprintf("opened=%v, close %d %q, wasClean=%v", r.Opened, r.CloseCode, r.CloseReason, r.WasClean), err)
}

// TestCloseFrameBrowserH2 runs the close-frame, in-band and expiry cases in
// Chromium over wss:// from a page served over HTTP/2: each socket is an
// extended CONNECT stream, and the page must see the same clean closes as
// over HTTP/1.1.
func TestCloseFrameBrowserH2(t *testing.T) {
	bctx := startChromiumTLS(t)
	s := newRefusalServerTLS(t)
	page := s.URL + "/page"
	wsBase := "ws" + strings.TrimPrefix(s.URL, "http")
	for _, c := range closeCases() {
		t.Run(c.name, func(t *testing.T) {
			job := c.job(page, wsBase)
			ctx, hop := loadPage(t, bctx, page)
			if hop != "h2" {
				t.Errorf("the page came over %q, want h2", hop)
			}
			r := evalPage[clientResult](t, ctx, job.Expr)
			t.Logf("%s: %v reason=%q wasClean=%v", job.Expr, r, r.CloseReason, r.WasClean)
			err := c.check(r)
			if p := s.proto(c.path); p != 2 {
				err = fmt.Errorf("the socket arrived over HTTP/%d, want HTTP/2 (%v)", p, err)
			}
			extraRow(t, chromium, "over HTTP/2: "+c.name, fmt.Sprintf("opened=%v, close %d %q, wasClean=%v", r.Opened, r.CloseCode, r.CloseReason, r.WasClean), err)
		})
	}
}

// TestCloseCasesBrowser runs the cases Firefox runs (closeCases) in
// Chromium over ws://, so the interop report shows both browsers side by
// side.
func TestCloseCasesBrowser(t *testing.T) {
	bctx := startChromium(t)
	s := newRefusalServer(t)
	page := s.URL + "/page"
	wsBase := "ws" + strings.TrimPrefix(s.URL, "http")
	for _, c := range closeCases() {
		t.Run(c.name, func(t *testing.T) {
			job := c.job(page, wsBase)
			r := pageEval(t, bctx, job.Visit, job.Expr)
			extraRow(t, chromium, c.name, fmt.Sprintf("opened=%v, close %d %q, wasClean=%v", r.Opened, r.CloseCode, r.CloseReason, r.WasClean), c.check(r))
		})
	}

	// A prefix-form credential alone: the 101 echoes no protocol although
	// one was offered, and Chromium fails the connection itself.
	t.Run("prefix form alone", func(t *testing.T) {
		r := closePageRun(t, bctx, page, wsBase+"/cfprefix/alone", []string{k8sProtocol(testToken)}, "")
		var err error
		if r.Opened || !r.Error || r.CloseCode != 1006 || r.WasClean {
			err = fmt.Errorf("want error + 1006 without open; page saw %v reason=%q wasClean=%v", r, r.CloseReason, r.WasClean)
		}
		if evs := s.events("/cfprefix/alone"); len(evs) != 1 || evs[0].Accepted || int(evs[0].CloseCode) != 1008 {
			err = fmt.Errorf("want one refusal with close 1008; gate reported %+v (%v)", evs, err)
		}
		extraRow(t, chromium, "close frame: prefix-form credential alone, no application protocol",
			fmt.Sprintf("opened=%v, error=%v, close %d %q, wasClean=%v: the 101 echoed no protocol, so Chromium failed the connection", r.Opened, r.Error, r.CloseCode, r.CloseReason, r.WasClean), err)
	})
}

// verifyTestTokens knows testToken (testPrincipal), forbids forbiddenToken
// and refuses every other credential as invalid.
func verifyTestTokens(_ context.Context, c wsgate.Credential) (user, error) {
	switch c.Token() {
	case testToken:
		return testPrincipal, nil
	case forbiddenToken:
		return user{}, wsgate.ErrForbidden
	}
	return user{}, wsgate.ErrInvalidToken
}
