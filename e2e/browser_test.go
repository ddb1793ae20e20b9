package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/chromedp"
)

const chromiumPath = "/usr/bin/chromium"

// startChromium launches Debian's chromium headless with a fresh profile and
// returns a context for the browser. Each case then opens its own browser
// context (like an incognito window), so cookies and cached Basic
// credentials never leak from one case into the next. extra adds to or
// overrides the default flags.
func startChromium(t *testing.T, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	requireTool(t, chromiumPath, "apt-get update && apt-get install -y chromium")
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.UserDataDir(t.TempDir()),
	}
	opts = append(opts, extra...)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelBrowser)
	// The browser lives as long as the context of the first call, so that
	// call gets no timeout of its own: a timer stops the browser instead if
	// it does not start within a minute.
	watchdog := time.AfterFunc(time.Minute, cancelBrowser)
	v, err := chromedp.CallBrowser(bctx, browser.GetVersion, cdp.Empty{})
	watchdog.Stop()
	if err != nil {
		if os.Getenv("CI") == "" && strings.Contains(err.Error(), "exec") {
			t.Skipf("cannot start %s: %v", chromiumPath, err)
		}
		t.Fatalf("starting %s: %v", chromiumPath, err)
	}
	recordVersion("Chromium", v.Product+" (Debian package, headless, driven by chromedp)")
	return bctx
}

// pageRun opens a fresh browser context, loads each of visit in turn (the
// last one is the page that runs the script), and evaluates
// tryWS(wsURL, protocols) there. protocols is a JavaScript expression:
// "undefined", a JSON array, or anything else the case wants to pass.
func pageRun(t *testing.T, bctx context.Context, visit []string, wsURL, protocols string) clientResult {
	t.Helper()
	u, _ := json.Marshal(wsURL)
	return pageEval(t, bctx, visit, fmt.Sprintf("tryWS(%s, %s, 10000)", u, protocols))
}

// pageEval opens a fresh browser context, loads each of visit in turn, and
// evaluates expr, a promise of a clientResult, on the last page.
func pageEval(t *testing.T, bctx context.Context, visit []string, expr string) clientResult {
	t.Helper()
	ctx, cancel := chromedp.NewContext(bctx, chromedp.WithNewBrowserContext())
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, 30*time.Second)
	defer cancelT()
	var steps []chromedp.Action[chromedp.Void]
	for _, v := range visit {
		steps = append(steps, chromedp.Navigate(v))
	}
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("loading %v: %v", visit, err)
	}
	r, err := chromedp.Run(ctx, chromedp.Evaluate[clientResult](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("page %v, %s: %v", visit, expr, err)
	}
	t.Logf("page %s %s: %v", visit[len(visit)-1], expr, r)
	return r
}

func jsList(p ...string) string {
	b, _ := json.Marshal(p)
	return string(b)
}

// pageRefused checks what a page sees of a refused handshake: an error and
// close 1006, never an open.
func pageRefused(r clientResult) error {
	if r.Thrown != "" || r.Opened || !r.Error || r.CloseCode != 1006 || r.WasClean {
		return fmt.Errorf("want error + close 1006 without open; page saw %v", r)
	}
	return nil
}

func TestInteropBrowser(t *testing.T) {
	bctx := startChromium(t)
	s := newTestServer(t)
	page := s.URL + "/page"

	t.Run("ways", func(t *testing.T) {
		id := "browser-marker"
		r := pageRun(t, bctx, []string{page}, s.wsURL(id), jsList(appProtocol, "access_token", testToken))
		worksCell(t, s, chromium, wayMarker, id, r, "subprotocol", 1000,
			"`new WebSocket(url, [\"chat\", \"access_token\", token])`; the token must use only RFC 7230 token characters.")

		id = "browser-prefix"
		r = pageRun(t, bctx, []string{page}, s.wsURL(id), jsList(appProtocol, k8sProtocol(testToken)))
		worksCell(t, s, chromium, wayPrefix, id, r, "subprotocol-prefix", 1000,
			"`new WebSocket(url, [\"chat\", \"base64url.bearer.authorization.k8s.io.\" + unpadded base64url])`.")

		id = "browser-userinfo"
		r = pageRun(t, bctx, []string{page}, withUserinfo(s.wsURL(id), testToken), jsList(appProtocol))
		evs := s.events(id)
		if len(evs) != 2 || evs[0].Status != http.StatusUnauthorized || evs[0].HasAuth != "" || evs[1].HasAuth != "Basic" {
			t.Errorf("want a 401 without Authorization, then a retry with Basic; server saw %+v", evs)
		}
		worksCell(t, s, chromium, wayUserinfo, id, r, "basic", 1000,
			"Chromium sends no Authorization at first; only after the gate's 401 with `WWW-Authenticate: Basic` (Basic(wsgate.Challenge)) does it retry once with the userinfo as Basic.")

		id = "browser-cookie"
		r = pageRun(t, bctx, []string{s.URL + "/login"}, s.wsURL(id), jsList(appProtocol))
		if evs := s.events(id); len(evs) != 1 || evs[0].Origin != s.URL || !evs[0].HasCookie {
			t.Errorf("want one handshake with the cookie and Origin %s; server saw %+v", s.URL, evs)
		}
		worksCell(t, s, chromium, wayCookie, id, r, "cookie", 1000,
			"The page was reached through /login, which set `wsgate_token` (HttpOnly, SameSite=Lax); the socket is same-origin, so Origin passes.")

		id = "browser-query"
		r = pageRun(t, bctx, []string{page}, s.wsURL(id)+"?ticket="+testToken, jsList(appProtocol))
		worksCell(t, s, chromium, wayQuery, id, r, "query", 1000, "The handler saw the request without the ticket.")

		// Bearer: the WebSocket API has no way to set a header. Passing
		// headers anyway makes the object a protocol name.
		id = "browser-bearer"
		r = pageRun(t, bctx, []string{page}, s.wsURL(id),
			fmt.Sprintf(`{headers: {Authorization: "Bearer %s"}}`, testToken))
		var err error
		if !strings.HasPrefix(r.Thrown, "SyntaxError") || len(s.events(id)) != 0 {
			err = fmt.Errorf("want a SyntaxError before any request; page %v, server %s", r, s.statuses(id))
		}
		failsCell(t, chromium, wayBearer, "❌ cannot set headers",
			fmt.Sprintf("`new WebSocket(url, {headers: {Authorization: ...}})` threw `%s`; no request reached the server", r.Thrown),
			"The WHATWG WebSocket constructor takes only a URL and protocols; the object is stringified to the protocol name \"[object Object]\", which is not a valid token. Use the subprotocol marker or prefix form.", err)
	})

	t.Run("refusals", func(t *testing.T) {
		// A wrong token: the page only learns that it failed.
		id := "browser-wrong-token"
		r := pageRun(t, bctx, []string{page}, s.wsURL(id), jsList(appProtocol, "access_token", wrongToken))
		err := pageRefused(r)
		if s.statuses(id) != "401" {
			err = fmt.Errorf("want the server to answer 401, got %q; %v", s.statuses(id), err)
		}
		extraRow(t, chromium, "wrong token (subprotocol marker)",
			fmt.Sprintf("server answered %s; the page saw error=%v, close %d, wasClean=%v, and no status", s.statuses(id), r.Error, r.CloseCode, r.WasClean), err)

		// Another port on the same host: same site, so the Lax cookie is
		// sent, with the other page's Origin. The origin check refuses it.
		other := newPageServer(t)
		id = "browser-cookie-other-port"
		r = pageRun(t, bctx, []string{s.URL + "/login", other + "/page"}, s.wsURL(id), jsList(appProtocol))
		err = pageRefused(r)
		evs := s.events(id)
		if len(evs) != 1 || evs[0].Status != http.StatusForbidden || evs[0].Origin != other || !evs[0].HasCookie {
			err = fmt.Errorf("want one handshake from Origin %s carrying the cookie, answered 403; server saw %+v (%v)", other, evs, err)
		}
		extraRow(t, chromium, "cookie set by /login, socket opened by a page on another port of 127.0.0.1",
			fmt.Sprintf("the handshake carried the SameSite=Lax cookie (same site) with Origin of the other port; server answered %s; page saw error + close %d", s.statuses(id), r.CloseCode), err)

		// localhost vs 127.0.0.1: cross-site. The page on localhost opens
		// a socket to 127.0.0.1.
		lhPage := strings.Replace(s.URL, "127.0.0.1", "localhost", 1) + "/page"
		lhOrigin := strings.Replace(s.URL, "127.0.0.1", "localhost", 1)
		id = "browser-cookie-cross-site"
		r = pageRun(t, bctx, []string{s.URL + "/login", lhPage}, s.wsURL(id), jsList(appProtocol))
		err = pageRefused(r)
		evs = s.events(id)
		if len(evs) != 1 || evs[0].Status != http.StatusForbidden || evs[0].Origin != lhOrigin {
			err = fmt.Errorf("want one handshake from Origin %s answered 403; server saw %+v (%v)", lhOrigin, evs, err)
		}
		cookie := "without the cookie (cross-site, SameSite=Lax)"
		if len(evs) == 1 && evs[0].HasCookie {
			cookie = "with the cookie"
		}
		extraRow(t, chromium, "cookie set by /login on 127.0.0.1, socket opened by a page on localhost",
			fmt.Sprintf("the handshake arrived %s from Origin of localhost; server answered %s; page saw error + close %d", cookie, s.statuses(id), r.CloseCode), err)
	})
}
