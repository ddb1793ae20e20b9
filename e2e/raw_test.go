package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate"
)

// The raw path: gates served by Gate.Serve on listeners of their own on
// 127.0.0.1, which read the handshake from the connection without net/http.
// A raw listener answers WebSocket handshakes only, so the pages come from a
// net/http listener beside it (another port of 127.0.0.1), whose origin the
// raw gates allow: the way a server that skips net/http for its sockets is
// deployed behind its web server.

// rawPrefix names the raw path's rows in the interop report.
const rawPrefix = "raw path (Gate.Serve): "

// rawServers are the raw gates of one test and the pages they serve.
type rawServers struct {
	page  string // http://127.0.0.1:A, the pages' origin: /page, /login, /deflate
	other string // another origin (another port), not allowed by the gates

	main    *testServer    // the gate of testServer (every extractor); URL is its raw listener
	refusal *refusalServer // what the close-frame and expiry gates reported, by path
	cf      string         // ws://host:port of the gate refusing with close frames (/cf/<case>)
	expiry  string         // ws://host:port of the gate whose credentials expire after expiryTTL (/expiry/<case>)
	deflate string         // ws://host:port of the gate with Compression (/on/<case>)
	d       *deflateServer // what the compression gate's sessions saw
}

// newRawServers starts the page listener and the raw gates, and stops them
// when t ends.
func newRawServers(t *testing.T) *rawServers {
	t.Helper()
	rs := &rawServers{
		main:    &testServer{evs: map[string][]event{}},
		refusal: &refusalServer{evs: map[string][]wsgate.HandshakeEvent{}, protos: map[string]int{}},
		d:       &deflateServer{sessions: map[string]deflateSession{}},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: cookieName, Value: testToken, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
		http.Redirect(w, r, "/page", http.StatusSeeOther)
	})
	mux.HandleFunc("/page", servePage)
	mux.HandleFunc("/deflate", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprint(w, deflatePageHTML)
	})
	_, rs.page, _ = serve(t, mux)
	rs.other = newPageServer(t)
	allowPage := wsgate.OriginPolicy{AllowedOrigins: []string{rs.page}}

	// The gate of testServer, with its recording: OnHandshake notes every
	// handshake, the session what the handler received.
	s := rs.main
	main := wsgate.New(wsgate.StaticToken(testToken, testPrincipal), wsgate.Config{
		Protocols:  []string{appProtocol},
		Extractors: everyExtractor(),
		Origin:     allowPage,
		OnHandshake: func(ev wsgate.HandshakeEvent) {
			s.add(strings.TrimPrefix(ev.Path, "/ws/"), event{Status: ev.Status})
		},
	})
	s.URL = "http" + strings.TrimPrefix(serveRawGate(t, main, func(ctx context.Context, sess wsgate.Session[user]) {
		r := wsgate.RequestFrom(ctx)
		s.update(strings.TrimPrefix(r.URL.Path, "/ws/"), func(e *event) {
			e.Principal, e.Source, e.Protocol = sess.Principal, sess.Source.String(), sess.Protocol
			e.Origin, e.RawQuery = r.Header.Get("Origin"), r.URL.RawQuery
		})
		serveEcho(sess)
	}), "ws")

	cfg := func(compression bool) wsgate.Config {
		return wsgate.Config{
			Protocols:            []string{appProtocol},
			Extractors:           []wsgate.Extractor{wsgate.Subprotocol("access_token")},
			RefuseWithCloseFrame: true,
			Compression:          compression,
			Origin:               allowPage,
			OnHandshake:          rs.refusal.record,
		}
	}
	rs.cf = serveRawGate(t, wsgate.New(verifyTestTokens, cfg(false)), echoSession)
	expiring := func(ctx context.Context, c wsgate.Credential) (user, error) {
		p, err := verifyTestTokens(ctx, c)
		if err == nil {
			wsgate.SetExpiry(ctx, time.Now().Add(expiryTTL))
		}
		return p, err
	}
	rs.expiry = serveRawGate(t, wsgate.New(expiring, cfg(false)), greetUntilExpiry)
	rs.deflate = serveRawGate(t, wsgate.New(verifyTestTokens, cfg(true)), func(ctx context.Context, sess wsgate.Session[user]) {
		// deflateServer reads the handshake's method and version from the
		// session's request, which the raw path leaves nil: RequestFrom
		// has what the gate kept of it.
		sess.Request = wsgate.RequestFrom(ctx)
		rs.d.serve(sess.Request.URL.Path, sess)
	})
	return rs
}

// serveRawGate serves g with Gate.Serve on a new 127.0.0.1 listener and
// returns its ws:// base URL. When t ends it closes the listener, waits for
// Serve to return and shuts the gate down (every live session closed with
// 1001, every callback returned).
func serveRawGate(t *testing.T, g *wsgate.Gate[user], serve func(context.Context, wsgate.Session[user])) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- g.Serve(ln, serve) }()
	t.Cleanup(func() {
		ln.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Gate.Serve did not return within 5 s of its listener's close")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := g.Shutdown(ctx); err != nil {
			t.Errorf("Gate.Shutdown: %v", err)
		}
	})
	return "ws://" + ln.Addr().String()
}

// rawStatuses waits up to 2 s for the gate's report of case id (the raw
// path reports a refusal once the connection is closed, which may be just
// after the client saw the answer) and returns its statuses, "401".
func rawStatuses(s *testServer, id string) string {
	deadline := time.Now().Add(2 * time.Second)
	for len(s.events(id)) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	return s.statuses(id)
}

// rawWorks checks a session through the main raw gate as checkWorks does,
// and that the protocol the 101 echoed is the application's, never a
// credential.
func rawWorks(rs *rawServers, id string, r clientResult, source string, wantClose int) error {
	err := checkWorks(rs.main, id, r, source, wantClose)
	if err == nil && (r.Protocol == testToken || r.Protocol == "access_token") {
		err = fmt.Errorf("the 101 echoed %q", r.Protocol)
	}
	return err
}

// rawBrowserCase is one page-driven case against the raw gates: the page
// loads job.Visit and evaluates job.Expr, whose result check judges.
type rawBrowserCase struct {
	name  string
	job   ffJob
	check func(clientResult) error
}

// rawBrowserCases are the cases a browser runs against rs; ids of the main
// gate's handshakes start with prefix. Refused handshakes come last:
// Firefox delays later sockets to a host that refused one.
func rawBrowserCases(rs *rawServers, prefix string) []rawBrowserCase {
	page := rs.page + "/page"
	marker := func(token string) string { return jsList(appProtocol, "access_token", token) }
	id := func(c string) string { return prefix + "-" + c }
	works := func(c, source string) func(clientResult) error {
		return func(r clientResult) error { return rawWorks(rs, id(c), r, source, 1000) }
	}
	refused := func(c, status string) func(clientResult) error {
		return func(r clientResult) error {
			err := pageRefused(r)
			if got := rawStatuses(rs.main, id(c)); got != status {
				err = fmt.Errorf("want the gate to answer %s, got %q (%v)", status, got, err)
			}
			return err
		}
	}
	closed := func(path string, code int, reason string, kind error, status int) func(clientResult) error {
		return func(r clientResult) error {
			err := pageClosedWith(r, code, reason)
			if e := rs.refusal.refusedWith(path, kind, status); e != nil {
				err = fmt.Errorf("%v; %v", e, err)
			}
			return err
		}
	}
	return []rawBrowserCase{
		{"subprotocol marker", tryJob([]string{page}, rs.main.wsURL(id("marker")), marker(testToken), ""), works("marker", "subprotocol")},
		{"query ticket", tryJob([]string{page}, rs.main.wsURL(id("query"))+"?ticket="+testToken, jsList(appProtocol), ""), works("query", "query")},
		{"cookie with the page's Origin", tryJob([]string{rs.page + "/login"}, rs.main.wsURL(id("cookie")), jsList(appProtocol), ""),
			func(r clientResult) error {
				err := rawWorks(rs, id("cookie"), r, "cookie", 1000)
				if evs := rs.main.events(id("cookie")); err == nil && (len(evs) != 1 || evs[0].Origin != rs.page) {
					err = fmt.Errorf("want one handshake from Origin %s; server saw %+v", rs.page, evs)
				}
				return err
			}},
		{"close frame: the right token", tryJob([]string{page}, rs.cf+"/cf/"+prefix+"-ok", marker(testToken), ""),
			func(r clientResult) error { return pageWorked(r, "subprotocol") }},
		{"credential expiry", watchJob(page, rs.expiry+"/expiry/"+prefix, marker(testToken)), pageExpired},
		{"close frame: wrong token", tryJob([]string{page}, rs.cf+"/cf/"+prefix+"-wrong", marker(wrongToken), ""),
			closed("/cf/"+prefix+"-wrong", 4401, "invalid credential", wsgate.ErrInvalidToken, http.StatusUnauthorized)},
		{"close frame: missing token", tryJob([]string{page}, rs.cf+"/cf/"+prefix+"-missing", jsList(appProtocol), ""),
			closed("/cf/"+prefix+"-missing", 4401, "credential required", wsgate.ErrNoCredential, http.StatusUnauthorized)},
		{"close frame: forbidden principal", tryJob([]string{page}, rs.cf+"/cf/"+prefix+"-forbidden", marker(forbiddenToken), ""),
			closed("/cf/"+prefix+"-forbidden", 4403, "forbidden", wsgate.ErrForbidden, http.StatusForbidden)},
		{"wrong token (HTTP 401)", tryJob([]string{page}, rs.main.wsURL(id("wrong")), marker(wrongToken), ""), refused("wrong", "401")},
		{"cookie from a page of another origin (HTTP 403)", tryJob([]string{rs.page + "/login", rs.other + "/page"}, rs.main.wsURL(id("cookie-other")), jsList(appProtocol), ""),
			refused("cookie-other", "403")},
	}
}

// observedText is the interop report's text for what a page saw.
func observedText(r clientResult) string {
	s := fmt.Sprintf("opened=%v, protocol %q, close %d %q, wasClean=%v", r.Opened, r.Protocol, r.CloseCode, r.CloseReason, r.WasClean)
	if r.Greeting != "" {
		s += ", greeting received"
	}
	if r.Echo != "" {
		s += ", echo received"
	}
	return s
}

// TestRawBrowser has Chromium open sockets from a page on one listener to
// gates served by Gate.Serve on others: every credential way a page has,
// HTTP and close-frame refusals, expiry, and permessage-deflate.
func TestRawBrowser(t *testing.T) {
	bctx := startChromium(t)
	rs := newRawServers(t)
	for _, c := range rawBrowserCases(rs, "raw-chromium") {
		t.Run(c.name, func(t *testing.T) {
			r := pageEval(t, bctx, c.job.Visit, c.job.Expr)
			extraRow(t, chromium, rawPrefix+c.name, observedText(r), c.check(r))
		})
	}

	// A 64 KiB compressible message, read with message.Read and written
	// back with message.Write, compressed both ways on the wire.
	t.Run("permessage-deflate", func(t *testing.T) {
		ctx, _ := loadPage(t, bctx, rs.page+"/deflate")
		path := "/on/raw-chromium"
		r := evalPage[deflateResult](t, ctx,
			fmt.Sprintf("roundTrip(%q, %s, 15000)", rs.deflate+path, jsList("access_token", testToken, appProtocol)))
		s := rs.d.session(t, path)
		t.Logf("page: %+v; server: %+v", r, s)
		var errs []string
		if !r.Opened || r.Error || r.TimedOut || r.CloseCode != 1000 || r.Protocol != appProtocol {
			errs = append(errs, fmt.Sprintf("page saw %+v; want open with protocol %q and close 1000", r, appProtocol))
		}
		if r.Sent != bigSize || r.Received != bigSize || !r.Intact || s.Err != nil || !s.Intact {
			errs = append(errs, fmt.Sprintf("page sent %d and received %d characters, intact=%v; server intact=%v, error %v", r.Sent, r.Received, r.Intact, s.Intact, s.Err))
		}
		if !strings.Contains(r.Extensions, "permessage-deflate") || !s.Compression {
			errs = append(errs, fmt.Sprintf("ws.extensions %q, session compression %v; want permessage-deflate negotiated", r.Extensions, s.Compression))
		}
		if s.In >= bigSize/16 || s.Out >= bigSize/16 {
			errs = append(errs, fmt.Sprintf("the message took %d bytes from the page and %d back; want each under %d (compressed)", s.In, s.Out, bigSize/16))
		}
		if s.Principal != testPrincipal || s.Protocol != appProtocol || s.Method != http.MethodGet || s.ProtoMajor != 1 {
			errs = append(errs, fmt.Sprintf("session: principal %+v, protocol %q, request %s HTTP/%d", s.Principal, s.Protocol, s.Method, s.ProtoMajor))
		}
		var err error
		if len(errs) > 0 {
			err = fmt.Errorf("%s", strings.Join(errs, "; "))
		}
		extraRow(t, chromium, rawPrefix+"permessage-deflate, 64 KiB round trip",
			fmt.Sprintf("ws.extensions %q; %d characters each way, intact=%v; %d bytes on the wire from the page, %d back", r.Extensions, r.Received, r.Intact, s.In, s.Out), err)
	})
}

// TestRawFirefox runs the page cases of TestRawBrowser in Firefox.
func TestRawFirefox(t *testing.T) {
	requireFirefox(t)
	rs := newRawServers(t)
	cases := rawBrowserCases(rs, "raw-ff")
	jobs := make([]ffJob, len(cases))
	for i, c := range cases {
		jobs[i] = c.job
	}
	res := runFirefox(t, false, jobs)
	for i, c := range cases {
		r := *res[i].Value
		t.Run(c.name, func(t *testing.T) {
			extraRow(t, firefox, rawPrefix+c.name, observedText(r), c.check(r))
		})
	}
}

// TestRawGoDialers runs the Go dialers against the raw gate: every way they
// can send, and a wrong token.
func TestRawGoDialers(t *testing.T) {
	checkGoroutines(t)
	goModuleVersions()
	rs := newRawServers(t)
	s := rs.main
	for _, d := range goDialers {
		t.Run(d.name, func(t *testing.T) {
			name := strings.NewReplacer("/", "-", ".", "-").Replace(d.name)
			cases := []struct {
				way       string
				query     string
				protocols []string
				header    http.Header
				source    string
			}{
				{way: wayBearer, protocols: []string{appProtocol}, header: http.Header{"Authorization": {"Bearer " + testToken}}, source: "bearer"},
				{way: wayMarker, protocols: []string{appProtocol, "access_token", testToken}, source: "subprotocol"},
				{way: wayPrefix, protocols: []string{appProtocol, k8sProtocol(testToken)}, source: "subprotocol-prefix"},
				{way: wayCookie, protocols: []string{appProtocol}, header: http.Header{"Cookie": {cookieName + "=" + testToken}, "Origin": {rs.page}}, source: "cookie"},
				{way: wayQuery, query: "?ticket=" + testToken, protocols: []string{appProtocol}, source: "query"},
			}
			for i, c := range cases {
				id := fmt.Sprintf("raw-go-%s-%d", name, i)
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				r := d.dial(ctx, s.wsURL(id)+c.query, c.protocols, c.header)
				cancel()
				extraRow(t, d.name, rawPrefix+c.way, fmt.Sprintf("server handshakes %s; source `%s`; 101 echoed %q; round trip ok", s.statuses(id), c.source, r.Protocol),
					rawWorks(rs, id, r, c.source, 1000))
			}

			id := "raw-go-" + name + "-wrong"
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			r := d.dial(ctx, s.wsURL(id), []string{appProtocol}, http.Header{"Authorization": {"Bearer " + wrongToken}})
			cancel()
			var err error
			if got := rawStatuses(s, id); r.Status != http.StatusUnauthorized || r.Opened || got != "401" {
				err = fmt.Errorf("want 401 seen by the dialer; got %v, server %q", r, got)
			}
			extraRow(t, d.name, rawPrefix+"wrong token (Bearer)", fmt.Sprintf("the dialer saw status %d", r.Status), err)
		})
	}
}

// TestRawNode runs Node's ws package and built-in WebSocket against the raw
// gate with the subprotocol marker, and ws with Bearer.
func TestRawNode(t *testing.T) {
	node := requireNode(t)
	checkGoroutines(t)
	rs := newRawServers(t)
	s := rs.main
	cases := []struct {
		client string
		way    string
		c      nodeCase
		source string
	}{
		{nodeWS, wayMarker, nodeCase{Impl: "ws", Protocols: []string{appProtocol, "access_token", testToken}}, "subprotocol"},
		{nodeWS, wayBearer, nodeCase{Impl: "ws", Protocols: []string{appProtocol}, Headers: map[string]string{"Authorization": "Bearer " + testToken}}, "bearer"},
		{nodeBI, wayMarker, nodeCase{Impl: "builtin", Protocols: []string{appProtocol, "access_token", testToken}}, "subprotocol"},
	}
	for i, c := range cases {
		t.Run(c.c.Impl+" "+c.way, func(t *testing.T) {
			id := fmt.Sprintf("raw-node-%d", i)
			c.c.URL = s.wsURL(id)
			r := runNode(t, node, c.c)
			extraRow(t, c.client, rawPrefix+c.way, fmt.Sprintf("server handshakes %s; source `%s`; 101 echoed %q; round trip ok", s.statuses(id), c.source, r.Protocol),
				rawWorks(rs, id, r, c.source, 1000))
		})
	}
}
