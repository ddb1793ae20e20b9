package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/wsgate/wsgate"
)

// tlsRequest is what an HTTPS test server saw of one request.
type tlsRequest struct {
	Method     string
	ProtoMajor int
	Protocol   string // the :protocol pseudo-header, "" if absent
	RemoteAddr string
	Status     int // the status the server answered (200 for an accepted extended CONNECT)

	// Set by the session callback, for an accepted handshake only.
	Principal user
	Source    string
	Echoed    string // the subprotocol the gate echoed
}

// requestLog records requests by key (the page, or /ws/<case>).
type requestLog struct {
	mu   sync.Mutex
	reqs map[string][]tlsRequest
}

func newRequestLog() *requestLog { return &requestLog{reqs: map[string][]tlsRequest{}} }

// wrap records every request h serves under key(r), and its status when h
// writes the header.
func (l *requestLog) wrap(key func(*http.Request) string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := key(r)
		var proto string
		if p := r.Header[":protocol"]; len(p) > 0 {
			proto = p[0]
		}
		l.mu.Lock()
		l.reqs[k] = append(l.reqs[k], tlsRequest{Method: r.Method, ProtoMajor: r.ProtoMajor, Protocol: proto, RemoteAddr: r.RemoteAddr})
		l.mu.Unlock()
		h.ServeHTTP(&headerHook{ResponseWriter: w, hook: func(code int) {
			l.update(k, func(e *tlsRequest) { e.Status = code })
		}}, r)
	})
}

// update changes the last request recorded under key.
func (l *requestLog) update(key string, f func(*tlsRequest)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.reqs[key]; len(s) > 0 {
		f(&s[len(s)-1])
	}
}

func (l *requestLog) get(key string) []tlsRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]tlsRequest(nil), l.reqs[key]...)
}

// headerHook calls hook with the status when the handler writes the
// header; it unwraps, so http.ResponseController reaches the stream.
type headerHook struct {
	http.ResponseWriter
	hook func(int)
	done bool
}

func (h *headerHook) WriteHeader(code int) {
	if !h.done {
		h.done = true
		h.hook(code)
	}
	h.ResponseWriter.WriteHeader(code)
}

func (h *headerHook) Write(p []byte) (int, error) {
	if !h.done {
		h.WriteHeader(http.StatusOK)
	}
	return h.ResponseWriter.Write(p)
}

func (h *headerHook) Unwrap() http.ResponseWriter { return h.ResponseWriter }

// wsCase is the key of a handshake to /ws/<case>.
func wsCase(r *http.Request) string {
	if c, ok := strings.CutPrefix(r.URL.Path, "/ws/"); ok {
		return c
	}
	return r.URL.Path
}

// startChromiumTLS is startChromium for pages served with a certificate
// generated in the test.
func startChromiumTLS(t *testing.T) context.Context {
	t.Helper()
	return startChromium(t, chromedp.Flag("ignore-certificate-errors", true))
}

// loadPage opens a fresh browser context, loads url and returns the context
// and the protocol the page was fetched with ("h2", "http/1.1"). The page
// lives for a minute at most, and until t ends.
func loadPage(t *testing.T, bctx context.Context, url string) (context.Context, string) {
	t.Helper()
	ctx, cancel := chromedp.NewContext(bctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	// The first call's context is the page's lifetime.
	ctx, cancelT := context.WithTimeout(ctx, time.Minute)
	t.Cleanup(cancelT)
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("loading %s: %v", url, err)
	}
	hop, err := chromedp.Run(ctx, chromedp.Evaluate[string](`performance.getEntriesByType("navigation")[0].nextHopProtocol`))
	if err != nil {
		t.Fatalf("reading nextHopProtocol of %s: %v", url, err)
	}
	return ctx, hop
}

// evalPage evaluates expr, a promise, on the page of ctx.
func evalPage[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// TestH2Browser serves a page over HTTP/2 on 127.0.0.1 (TLS with a
// certificate generated for the test, extended CONNECT on), and has
// Chromium open WebSockets from it: the gate must see them arrive as
// extended CONNECT streams on the page's connection, authenticate the
// subprotocol credential, echo "chat" and carry messages both ways.
func TestH2Browser(t *testing.T) {
	bctx := startChromiumTLS(t)

	gate := wsgate.New(wsgate.StaticToken(testToken, testPrincipal), wsgate.Config{
		Protocols:  []string{appProtocol},
		Extractors: []wsgate.Extractor{wsgate.Subprotocol("access_token"), wsgate.SubprotocolPrefix("")},
	})
	log := newRequestLog()
	mux := http.NewServeMux()
	mux.Handle("/page", log.wrap(func(*http.Request) string { return "page" }, http.HandlerFunc(servePage)))
	mux.Handle("/ws/", log.wrap(wsCase, gate.Handler(func(ctx context.Context, s wsgate.Session[user]) {
		log.update(wsCase(s.Request), func(e *tlsRequest) {
			e.Principal, e.Source, e.Echoed = s.Principal, s.Source.String(), s.Protocol
		})
		serveEcho(s)
	})))
	srv, _ := newTLSServer(t, mux, nil)
	page := srv.URL + "/page"
	wssURL := func(id string) string { return "wss" + strings.TrimPrefix(srv.URL, "https") + "/ws/" + id }

	// run loads the page (which must come over h2) and opens a socket to
	// case id with protocols; it returns what the page saw and the server's
	// one record of the page's request.
	run := func(t *testing.T, id, protocols string) (clientResult, tlsRequest) {
		t.Helper()
		before := len(log.get("page"))
		ctx, hop := loadPage(t, bctx, page)
		if hop != "h2" {
			t.Errorf("the page came over %q, want h2", hop)
		}
		reqs := log.get("page")
		if len(reqs) != before+1 {
			t.Fatalf("want one more request for the page, server saw %d then %d", before, len(reqs))
		}
		pr := reqs[len(reqs)-1]
		if pr.ProtoMajor != 2 || pr.Method != http.MethodGet {
			t.Errorf("the server saw the page request as %s over HTTP/%d, want GET over HTTP/2", pr.Method, pr.ProtoMajor)
		}
		r := evalPage[clientResult](t, ctx, fmt.Sprintf("tryWS(%q, %s, 10000)", wssURL(id), protocols))
		t.Logf("page %s, socket %s: %v; server: %+v", page, id, r, log.get(id))
		return r, pr
	}

	// accepted checks a socket that must have opened over HTTP/2 on the
	// page's connection and round-tripped.
	accepted := func(t *testing.T, id, source string, r clientResult, pr tlsRequest) {
		t.Helper()
		if r.Thrown != "" || !r.Opened || r.Error || r.TimedOut || r.Protocol != appProtocol ||
			r.Greeting != greeting(testPrincipal.Name, source, appProtocol) || r.Echo != pingText || r.CloseCode != 1000 {
			t.Errorf("page saw %v; want open with protocol %q, greeting %q, echo %q, close 1000",
				r, appProtocol, greeting(testPrincipal.Name, source, appProtocol), pingText)
		}
		reqs := log.get(id)
		if len(reqs) != 1 {
			t.Fatalf("want one handshake, server saw %+v", reqs)
		}
		e := reqs[0]
		if e.Method != http.MethodConnect || e.ProtoMajor != 2 || e.Protocol != "websocket" {
			t.Errorf("the handshake arrived as %s over HTTP/%d with :protocol %q, want an extended CONNECT over HTTP/2 with :protocol websocket",
				e.Method, e.ProtoMajor, e.Protocol)
		}
		if e.Status != http.StatusOK {
			t.Errorf("the gate answered %d, want 200", e.Status)
		}
		if e.Principal != testPrincipal || e.Source != source || e.Echoed != appProtocol {
			t.Errorf("session had principal %+v, source %q, protocol %q; want %+v, %q, %q",
				e.Principal, e.Source, e.Echoed, testPrincipal, source, appProtocol)
		}
		if e.RemoteAddr != pr.RemoteAddr {
			t.Errorf("the socket came from %s, the page from %s: want one HTTP/2 connection", e.RemoteAddr, pr.RemoteAddr)
		}
	}

	t.Run("subprotocol marker", func(t *testing.T) {
		r, pr := run(t, "marker", jsList("access_token", testToken, appProtocol))
		accepted(t, "marker", "subprotocol", r, pr)
	})

	t.Run("subprotocol prefix", func(t *testing.T) {
		r, pr := run(t, "prefix", jsList(k8sProtocol(testToken), appProtocol))
		accepted(t, "prefix", "subprotocol-prefix", r, pr)
	})

	t.Run("wrong token", func(t *testing.T) {
		r, _ := run(t, "wrong", jsList("access_token", wrongToken, appProtocol))
		if err := pageRefused(r); err != nil {
			t.Error(err)
		}
		// One attempt, over HTTP/2: no retry, no fallback to HTTP/1.1.
		reqs := log.get("wrong")
		if len(reqs) != 1 {
			t.Fatalf("want one handshake, server saw %+v", reqs)
		}
		if e := reqs[0]; e.Method != http.MethodConnect || e.ProtoMajor != 2 || e.Status != http.StatusUnauthorized || e.Principal != (user{}) {
			t.Errorf("want an extended CONNECT over HTTP/2 answered 401 that reached no session; server saw %+v", e)
		}
	})
}
