package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/wsgate/wsgate"
)

// testToken is the one credential the test server accepts. It uses only
// characters every way can carry unescaped: a subprotocol entry (RFC 7230
// token), URL userinfo, a cookie value and a query value.
const testToken = "e2e-Tok3n_abc.XYZ~42"

// wrongToken is a well-formed credential the server does not know.
const wrongToken = "e2e-wrong-token"

// appProtocol is the application subprotocol the server speaks; every client
// offers it and expects it echoed.
const appProtocol = "chat"

// cookieName is the cookie /login sets.
const cookieName = "wsgate_token"

// user is the principal type of the test gate.
type user struct{ Name string }

// testPrincipal is what StaticToken yields for testToken.
var testPrincipal = user{Name: "alice"}

// k8sProtocol is the Kubernetes prefix form of token.
func k8sProtocol(token string) string {
	return wsgate.KubernetesPrefix + base64.RawURLEncoding.EncodeToString([]byte(token))
}

// event is what the server saw for one handshake.
type event struct {
	Status    int    // 101 when the gate upgraded, otherwise the refusal's status
	Principal user   // the principal the handler received (101 only)
	Source    string // where the gate found the credential (101 only)
	Protocol  string // the subprotocol the 101 echoed (101 only)
	Origin    string // the Origin header, "" if absent
	HasAuth   string // the scheme of the Authorization header, "" if absent
	HasCookie bool   // whether the wsgate_token cookie was present
	RawQuery  string // the query after the gate ran (the ticket must be gone)
}

// testServer is a wsgate Gate on 127.0.0.1 plus the pages a browser needs.
// Every handshake goes to /ws/<case>, so each test case finds its own
// events whatever ran before it.
type testServer struct {
	URL  string // http://127.0.0.1:port
	Port string

	srv *http.Server
	mu  sync.Mutex
	evs map[string][]event
}

// everyExtractor is the test server's extractors: every way a credential
// can travel.
func everyExtractor() []wsgate.Extractor {
	return []wsgate.Extractor{
		wsgate.Subprotocol("access_token"),
		wsgate.SubprotocolPrefix(""),
		wsgate.Basic(wsgate.Challenge),
		wsgate.Bearer(),
		wsgate.Cookie(cookieName),
		wsgate.Query("ticket"),
	}
}

// newTestServer starts a gate with StaticToken, Protocols ["chat"] and every
// extractor, and stops it when t ends.
func newTestServer(t testing.TB) *testServer {
	t.Helper()
	gate := wsgate.New(wsgate.StaticToken(testToken, testPrincipal), wsgate.Config{
		Protocols:  []string{appProtocol},
		Extractors: everyExtractor(),
	})
	s := &testServer{evs: map[string][]event{}}
	wsHandler := gate.Handler(func(ctx context.Context, sess wsgate.Session[user]) {
		id := strings.TrimPrefix(sess.Request.URL.Path, "/ws/")
		s.update(id, func(e *event) {
			e.Status = http.StatusSwitchingProtocols
			e.Principal = sess.Principal
			e.Source = sess.Source.String()
			e.Protocol = sess.Protocol
			e.RawQuery = sess.Request.URL.RawQuery
		})
		serveEcho(sess)
	})

	mux := http.NewServeMux()
	mux.HandleFunc("/ws/", func(w http.ResponseWriter, r *http.Request) {
		id := strings.TrimPrefix(r.URL.Path, "/ws/")
		ev := event{Origin: r.Header.Get("Origin"), RawQuery: r.URL.RawQuery}
		if a := r.Header.Get("Authorization"); a != "" {
			ev.HasAuth, _, _ = strings.Cut(a, " ")
		}
		if _, err := r.Cookie(cookieName); err == nil {
			ev.HasCookie = true
		}
		s.add(id, ev)
		rec := &statusRecorder{ResponseWriter: w}
		wsHandler.ServeHTTP(rec, r)
		if rec.status != 0 {
			s.update(id, func(e *event) { e.Status = rec.status })
		}
	})
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: cookieName, Value: testToken, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
		http.Redirect(w, r, "/page", http.StatusSeeOther)
	})
	mux.HandleFunc("/page", servePage)

	s.srv, s.URL, s.Port = serve(t, mux)
	return s
}

// newPageServer starts a second listener that serves only the page: another
// origin (same site: 127.0.0.1, another port).
func newPageServer(t testing.TB) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/page", servePage)
	_, u, _ := serve(t, mux)
	return u
}

func serve(t testing.TB, h http.Handler) (*http.Server, string, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		srv.Close()
	})
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return srv, "http://" + ln.Addr().String(), port
}

// wsURL is the handshake URL of case id.
func (s *testServer) wsURL(id string) string {
	return "ws" + strings.TrimPrefix(s.URL, "http") + "/ws/" + id
}

func (s *testServer) add(id string, e event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.evs[id] = append(s.evs[id], e)
}

func (s *testServer) update(id string, f func(*event)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.evs[id]; len(l) > 0 {
		f(&l[len(l)-1])
	}
}

// events returns the handshakes case id made, in order.
func (s *testServer) events(id string) []event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]event(nil), s.evs[id]...)
}

// statuses renders the statuses of case id's handshakes, "401,101".
func (s *testServer) statuses(id string) string {
	var b []string
	for _, e := range s.events(id) {
		b = append(b, fmt.Sprint(e.Status))
	}
	return strings.Join(b, ",")
}

// statusRecorder notes the status of a refusal; it unwraps for the hijack.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// greeting is the first text message of a session: principal, source and
// echoed protocol.
func greeting(name, source, protocol string) string {
	return "hello " + name + " via " + source + " protocol=" + protocol
}

// serveEcho sends the greeting, then echoes messages until the client
// closes or goes quiet for 30 seconds.
func serveEcho(sess wsgate.Session[user]) {
	c := sess.Conn
	msg := greeting(sess.Principal.Name, sess.Source.String(), sess.Protocol)
	if err := wsutil.WriteServerMessage(c, ws.OpText, []byte(msg)); err != nil {
		return
	}
	for i := 0; i < 100; i++ {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		data, op, err := wsutil.ReadClientData(c)
		if err != nil {
			return
		}
		if err := wsutil.WriteServerMessage(c, op, data); err != nil {
			return
		}
	}
}

// echoSession is serveEcho in the form Gate.Handler takes.
func echoSession(_ context.Context, s wsgate.Session[user]) { serveEcho(s) }

const pageHTML = `<!doctype html>
<html><head><meta charset="utf-8"><title>wsgate e2e</title></head>
<body><p>wsgate e2e page</p>
<script>
// tryWS opens a WebSocket, sends first as soon as it is open (when first
// is a string), reads the greeting, does one round trip, closes, and
// resolves with what the page observed. It never rejects.
window.tryWS = function (url, protocols, timeoutMs, first) {
  return new Promise(function (resolve) {
    var r = {thrown: "", opened: false, protocol: "", greeting: "", echo: "", error: false, closeCode: 0, closeReason: "", wasClean: false};
    var done = false;
    function finish() { if (!done) { done = true; resolve(r); } }
    setTimeout(function () { r.timedOut = true; finish(); }, timeoutMs || 10000);
    var ws;
    try {
      ws = protocols === undefined ? new WebSocket(url) : new WebSocket(url, protocols);
    } catch (e) {
      r.thrown = e.name + ": " + e.message;
      finish();
      return;
    }
    var n = 0;
    ws.onopen = function () {
      r.opened = true;
      r.protocol = ws.protocol;
      if (typeof first === "string") ws.send(first);
    };
    ws.onerror = function () { r.error = true; };
    ws.onmessage = function (m) {
      n++;
      if (n === 1) { r.greeting = m.data; ws.send("ping from page"); }
      else { r.echo = m.data; ws.close(1000, "done"); }
    };
    ws.onclose = function (c) { r.closeCode = c.code; r.closeReason = c.reason; r.wasClean = c.wasClean; finish(); };
  });
};
// watchWS opens a WebSocket, keeps the first message as the greeting,
// sends nothing and never closes: it resolves with what the page observed
// once the server closed the socket (or after timeoutMs).
window.watchWS = function (url, protocols, timeoutMs) {
  return new Promise(function (resolve) {
    var r = {thrown: "", opened: false, protocol: "", greeting: "", echo: "", error: false, closeCode: 0, closeReason: "", wasClean: false};
    var done = false;
    function finish() { if (!done) { done = true; resolve(r); } }
    setTimeout(function () { r.timedOut = true; finish(); }, timeoutMs || 10000);
    var ws;
    try {
      ws = new WebSocket(url, protocols);
    } catch (e) {
      r.thrown = e.name + ": " + e.message;
      finish();
      return;
    }
    ws.onopen = function () { r.opened = true; r.protocol = ws.protocol; };
    ws.onerror = function () { r.error = true; };
    ws.onmessage = function (m) { if (r.greeting === "") r.greeting = m.data; };
    ws.onclose = function (c) { r.closeCode = c.code; r.closeReason = c.reason; r.wasClean = c.wasClean; finish(); };
  });
};
</script></body></html>
`

func servePage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprint(w, pageHTML)
}
