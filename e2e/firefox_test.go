package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const firefoxPath = "/usr/bin/firefox-esr"

// ffJob is one case for node/firefox.mjs: load each of Visit in a fresh
// browser context, then evaluate Expr (a promise of a clientResult) on the
// last page.
type ffJob struct {
	Visit []string `json:"visit"`
	Expr  string   `json:"expr"`
}

type ffResult struct {
	Value *clientResult `json:"value"`
	Hop   string        `json:"hop"` // the protocol the last page came over: "h2", "http/1.1"
	Error string        `json:"error"`
}

// requireFirefox skips (or, under CI, fails) when firefox-esr, node or the
// puppeteer-core package is missing, and returns the node binary.
func requireFirefox(t *testing.T) string {
	t.Helper()
	requireTool(t, firefoxPath, "apt-get update && apt-get install -y firefox-esr")
	node := requireNode(t)
	if _, err := os.Stat(filepath.Join("node", "node_modules", "puppeteer-core", "package.json")); err != nil {
		msg := "the puppeteer-core package is not installed; run: cd e2e/node && PUPPETEER_SKIP_DOWNLOAD=1 npm ci"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return node
}

// runFirefox starts one headless Firefox with a fresh profile (so no
// back-off from earlier refused sockets carries over), runs jobs in turn,
// each in a fresh browser context, and returns their results. insecure
// accepts the test's self-signed certificates.
func runFirefox(t *testing.T, insecure bool, jobs []ffJob) []ffResult {
	t.Helper()
	node := requireFirefox(t)
	in, err := json.Marshal(map[string]any{"jobs": jobs, "insecure": insecure})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second+time.Duration(len(jobs))*30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "firefox.mjs")
	cmd.Dir = "node"
	cmd.Stdin = bytes.NewReader(in)
	cmd.Env = append(os.Environ(), "PUPPETEER_SKIP_DOWNLOAD=1")
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node firefox.mjs: %v\n%s", err, stderr.String())
	}
	var res struct {
		Version string     `json:"version"`
		Results []ffResult `json:"results"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("node firefox.mjs printed %q: %v", out, err)
	}
	if len(res.Results) != len(jobs) {
		t.Fatalf("firefox.mjs returned %d results for %d jobs", len(res.Results), len(jobs))
	}
	recordVersion(firefox, res.Version+" (Debian firefox-esr, headless, driven by puppeteer-core over WebDriver BiDi)")
	for i, r := range res.Results {
		if r.Error != "" || r.Value == nil {
			t.Fatalf("job %d (%v, %s): %s", i, jobs[i].Visit, jobs[i].Expr, r.Error)
		}
		t.Logf("firefox %s %s (%s): %v reason=%q wasClean=%v", jobs[i].Visit[len(jobs[i].Visit)-1], jobs[i].Expr, r.Hop, *r.Value, r.Value.CloseReason, r.Value.WasClean)
	}
	return res.Results
}

// tryJob is a job running tryWS(wsURL, protocols) on the last of visit,
// sending first as the first message unless it is "".
func tryJob(visit []string, wsURL, protocols, first string) ffJob {
	u, _ := json.Marshal(wsURL)
	f := "undefined"
	if first != "" {
		b, _ := json.Marshal(first)
		f = string(b)
	}
	return ffJob{Visit: visit, Expr: fmt.Sprintf("tryWS(%s, %s, 10000, %s)", u, protocols, f)}
}

// watchJob is a job running watchWS(wsURL, protocols) on page.
func watchJob(page, wsURL, protocols string) ffJob {
	u, _ := json.Marshal(wsURL)
	return ffJob{Visit: []string{page}, Expr: fmt.Sprintf("watchWS(%s, %s, 15000)", u, protocols)}
}

// pageExpired checks what a page sees of a credential that expires on a
// live socket: it opened, read the greeting, then a clean close 4401
// "credential expired".
func pageExpired(r clientResult) error {
	if want := greeting(testPrincipal.Name, "subprotocol", appProtocol); !r.Opened || r.Protocol != appProtocol ||
		r.Greeting != want || r.Error || r.CloseCode != 4401 || r.CloseReason != "credential expired" || !r.WasClean || r.TimedOut {
		return fmt.Errorf("want open, greeting %q, then a clean close 4401 %q; page saw %v reason=%q wasClean=%v",
			want, "credential expired", r, r.CloseReason, r.WasClean)
	}
	return nil
}

func TestInteropFirefox(t *testing.T) {
	s := newTestServer(t)
	page := s.URL + "/page"
	lhPage := strings.Replace(s.URL, "127.0.0.1", "localhost", 1) + "/page"
	lhOrigin := strings.Replace(s.URL, "127.0.0.1", "localhost", 1)
	other := newPageServer(t)

	ids := []string{"ff-marker", "ff-prefix", "ff-userinfo", "ff-cookie", "ff-query", "ff-bearer",
		"ff-wrong-token", "ff-cookie-other-port", "ff-cookie-cross-site"}
	jobs := []ffJob{
		tryJob([]string{page}, s.wsURL(ids[0]), jsList(appProtocol, "access_token", testToken), ""),
		tryJob([]string{page}, s.wsURL(ids[1]), jsList(appProtocol, k8sProtocol(testToken)), ""),
		tryJob([]string{page}, withUserinfo(s.wsURL(ids[2]), testToken), jsList(appProtocol), ""),
		tryJob([]string{s.URL + "/login"}, s.wsURL(ids[3]), jsList(appProtocol), ""),
		tryJob([]string{page}, s.wsURL(ids[4])+"?ticket="+testToken, jsList(appProtocol), ""),
		tryJob([]string{page}, s.wsURL(ids[5]), fmt.Sprintf(`{headers: {Authorization: "Bearer %s"}}`, testToken), ""),
		// Refused handshakes last: Firefox delays later sockets to a host
		// that refused one.
		tryJob([]string{page}, s.wsURL(ids[6]), jsList(appProtocol, "access_token", wrongToken), ""),
		tryJob([]string{s.URL + "/login", other + "/page"}, s.wsURL(ids[7]), jsList(appProtocol), ""),
		tryJob([]string{s.URL + "/login", lhPage}, s.wsURL(ids[8]), jsList(appProtocol), ""),
	}
	res := runFirefox(t, false, jobs)
	r := func(i int) clientResult { return *res[i].Value }

	worksCell(t, s, firefox, wayMarker, ids[0], r(0), "subprotocol", 1000,
		"`new WebSocket(url, [\"chat\", \"access_token\", token])`.")
	worksCell(t, s, firefox, wayPrefix, ids[1], r(1), "subprotocol-prefix", 1000,
		"`new WebSocket(url, [\"chat\", \"base64url.bearer.authorization.k8s.io.\" + unpadded base64url])`.")
	if evs := s.events(ids[2]); len(evs) != 2 || evs[0].Status != http.StatusUnauthorized || evs[0].HasAuth != "" || evs[1].HasAuth != "Basic" {
		t.Errorf("want a 401 without Authorization, then a retry with Basic; server saw %+v", evs)
	}
	worksCell(t, s, firefox, wayUserinfo, ids[2], r(2), "basic", 1000,
		"Like Chromium, Firefox sends no Authorization at first and retries once with the userinfo as Basic after the gate's 401 with `WWW-Authenticate: Basic`.")
	if evs := s.events(ids[3]); len(evs) != 1 || evs[0].Origin != s.URL || !evs[0].HasCookie {
		t.Errorf("want one handshake with the cookie and Origin %s; server saw %+v", s.URL, evs)
	}
	worksCell(t, s, firefox, wayCookie, ids[3], r(3), "cookie", 1000,
		"The page was reached through /login, which set `wsgate_token` (HttpOnly, SameSite=Lax); the socket is same-origin.")
	worksCell(t, s, firefox, wayQuery, ids[4], r(4), "query", 1000, "The handler saw the request without the ticket.")
	var err error
	if !strings.HasPrefix(r(5).Thrown, "SyntaxError") || len(s.events(ids[5])) != 0 {
		err = fmt.Errorf("want a SyntaxError before any request; page %v, server %s", r(5), s.statuses(ids[5]))
	}
	failsCell(t, firefox, wayBearer, "❌ cannot set headers",
		fmt.Sprintf("`new WebSocket(url, {headers: {Authorization: ...}})` threw `%s`; no request reached the server", r(5).Thrown),
		"The WebSocket constructor takes only a URL and protocols; the object becomes the protocol name \"[object Object]\", which is not a valid token.", err)

	err = pageRefused(r(6))
	if s.statuses(ids[6]) != "401" {
		err = fmt.Errorf("want the server to answer 401, got %q; %v", s.statuses(ids[6]), err)
	}
	extraRow(t, firefox, "wrong token (subprotocol marker)",
		fmt.Sprintf("server answered %s; the page saw error=%v, close %d, wasClean=%v, and no status", s.statuses(ids[6]), r(6).Error, r(6).CloseCode, r(6).WasClean), err)

	err = pageRefused(r(7))
	if evs := s.events(ids[7]); len(evs) != 1 || evs[0].Status != http.StatusForbidden || evs[0].Origin != other || !evs[0].HasCookie {
		err = fmt.Errorf("want one handshake from Origin %s carrying the cookie, answered 403; server saw %+v (%v)", other, evs, err)
	}
	extraRow(t, firefox, "cookie set by /login, socket opened by a page on another port of 127.0.0.1",
		fmt.Sprintf("the handshake carried the SameSite=Lax cookie (same site) with Origin of the other port; server answered %s; page saw error + close %d", s.statuses(ids[7]), r(7).CloseCode), err)

	err = pageRefused(r(8))
	evs := s.events(ids[8])
	if len(evs) != 1 || evs[0].Status != http.StatusForbidden || evs[0].Origin != lhOrigin {
		err = fmt.Errorf("want one handshake from Origin %s answered 403; server saw %+v (%v)", lhOrigin, evs, err)
	}
	cookie := "without the cookie (cross-site, SameSite=Lax)"
	if len(evs) == 1 && evs[0].HasCookie {
		cookie = "with the cookie"
	}
	extraRow(t, firefox, "cookie set by /login on 127.0.0.1, socket opened by a page on localhost",
		fmt.Sprintf("the handshake arrived %s from Origin of localhost; server answered %s; page saw error + close %d", cookie, s.statuses(ids[8]), r(8).CloseCode), err)
}

// closeCase is a socket the close-frame, in-band or expiry gates of a
// refusalServer answer, and what the page must see.
type closeCase struct {
	name  string
	path  string
	job   func(page, ws string) ffJob
	check func(clientResult) error
}

func closeCases() []closeCase {
	auth := func(token string) string { return `{"type":"auth","token":"` + token + `"}` }
	try := func(path string, protocols []string, first string) func(page, ws string) ffJob {
		return func(page, ws string) ffJob { return tryJob([]string{page}, ws+path, jsList(protocols...), first) }
	}
	closed := func(code int, reason string) func(clientResult) error {
		return func(r clientResult) error { return pageClosedWith(r, code, reason) }
	}
	worked := func(source string) func(clientResult) error {
		return func(r clientResult) error { return pageWorked(r, source) }
	}
	marker := func(token string) []string { return []string{appProtocol, "access_token", token} }
	return []closeCase{
		{"close frame: the right token", "/cf/ok", try("/cf/ok", marker(testToken), ""), worked("subprotocol")},
		{"close frame: wrong token", "/cf/wrong", try("/cf/wrong", marker(wrongToken), ""), closed(4401, "invalid credential")},
		{"close frame: missing token", "/cf/missing", try("/cf/missing", []string{appProtocol}, ""), closed(4401, "credential required")},
		{"close frame: forbidden principal", "/cf/forbidden", try("/cf/forbidden", marker(forbiddenToken), ""), closed(4403, "forbidden")},
		{"in band: the right token", "/inband/ok", try("/inband/ok", []string{appProtocol}, auth(testToken)), worked("message")},
		{"in band: wrong token", "/inband/wrong", try("/inband/wrong", []string{appProtocol}, auth(wrongToken)), closed(4401, "invalid credential")},
		{"in band: no message", "/inband/none", try("/inband/none", []string{appProtocol}, ""), closed(4408, "authentication timed out")},
		{"in band: a message over MaxSize", "/inband/big", try("/inband/big", []string{appProtocol}, auth(strings.Repeat("x", inBandMaxSize))),
			closed(1009, "authentication message too big")},
		{"credential expiry", "/expiry/ff", func(page, ws string) ffJob {
			return watchJob(page, ws+"/expiry/ff", jsList(appProtocol, "access_token", testToken))
		}, pageExpired},
	}
}

// runCloseCases runs closeCases in one Firefox against s, over ws:// or, for
// an HTTPS s, wss:// from a page served over HTTP/2, and records each
// outcome under label.
func runCloseCases(t *testing.T, s *refusalServer, tls bool, label string) {
	page := s.URL + "/page"
	wsBase := "ws" + strings.TrimPrefix(s.URL, "http")
	cases := closeCases()
	jobs := make([]ffJob, len(cases))
	for i, c := range cases {
		jobs[i] = c.job(page, wsBase)
	}
	res := runFirefox(t, tls, jobs)
	for i, c := range cases {
		r := *res[i].Value
		t.Run(c.name, func(t *testing.T) {
			err := c.check(r)
			if tls && res[i].Hop != "h2" {
				err = fmt.Errorf("the page came over %q, want h2 (%v)", res[i].Hop, err)
			}
			if p := s.proto(c.path); tls && p != 2 {
				err = fmt.Errorf("the socket arrived over HTTP/%d, want HTTP/2 (%v)", p, err)
			}
			extraRow(t, firefox, label+c.name, fmt.Sprintf("opened=%v, close %d %q, wasClean=%v", r.Opened, r.CloseCode, r.CloseReason, r.WasClean), err)
		})
	}
}

func TestCloseFrameFirefox(t *testing.T) {
	s := newRefusalServer(t)
	runCloseCases(t, s, false, "")

	// A prefix-form credential alone, no application protocol: the gate
	// accepts the credential but finds no protocol to speak, so it refuses
	// with 1008 and echoes nothing (a credential entry is never echoed).
	// Chromium fails such a 101 (an offered protocol not echoed); Firefox
	// opens the socket with protocol "" and then reads the close frame.
	// Then the refusals answered with HTTP, which Firefox counts as failed
	// connections (and delays later ones to the host for).
	page := s.URL + "/page"
	wsBase := "ws" + strings.TrimPrefix(s.URL, "http")
	other := newPageServer(t)
	res := runFirefox(t, false, []ffJob{
		tryJob([]string{page}, wsBase+"/cfprefix/alone", jsList(k8sProtocol(testToken)), ""),
		tryJob([]string{other + "/page"}, wsBase+"/cf/cross", jsList(appProtocol, "access_token", testToken), ""),
		tryJob([]string{page}, wsBase+"/http/wrong", jsList(appProtocol, "access_token", wrongToken), ""),
	})
	t.Run("prefix form alone", func(t *testing.T) { checkPrefixAlone(t, s, res[0], false, "") })
	t.Run("another origin", func(t *testing.T) {
		r := *res[1].Value
		err := pageRefused(r)
		if e := s.refusedWith("/cf/cross", nil, http.StatusForbidden); e != nil {
			err = fmt.Errorf("%v; %v", e, err)
		}
		extraRow(t, firefox, "close frame: a page of another origin", fmt.Sprintf("no upgrade (HTTP 403); page saw error=%v, close %d", r.Error, r.CloseCode), err)
	})
	t.Run("wrong token, HTTP mode", func(t *testing.T) {
		r := *res[2].Value
		err := pageRefused(r)
		if e := s.refusedWith("/http/wrong", nil, http.StatusUnauthorized); e != nil {
			err = fmt.Errorf("%v; %v", e, err)
		}
		extraRow(t, firefox, "HTTP mode: wrong token", fmt.Sprintf("HTTP 401; page saw error=%v, close %d, reason %q", r.Error, r.CloseCode, r.CloseReason), err)
	})
}

func TestCloseFrameFirefoxH2(t *testing.T) {
	s := newRefusalServerTLS(t)
	runCloseCases(t, s, true, "over HTTP/2: ")
	wsBase := "ws" + strings.TrimPrefix(s.URL, "http")
	res := runFirefox(t, true, []ffJob{tryJob([]string{s.URL + "/page"}, wsBase+"/cfprefix/alone", jsList(k8sProtocol(testToken)), "")})
	t.Run("prefix form alone", func(t *testing.T) { checkPrefixAlone(t, s, res[0], true, "over HTTP/2: ") })
}

// checkPrefixAlone checks what Firefox saw of a prefix-form credential
// offered alone to the close-frame gate: the gate accepts the credential
// but has no protocol to echo, so it refuses with 1008 and echoes nothing;
// Firefox opens the socket with protocol "" and reads the close frame.
func checkPrefixAlone(t *testing.T, s *refusalServer, res ffResult, h2 bool, label string) {
	r := *res.Value
	var err error
	if !r.Opened || r.Protocol != "" || r.Greeting != "" || r.CloseCode != 1008 || !r.WasClean || r.Error {
		err = fmt.Errorf("want open with protocol \"\", then a clean close 1008; page saw %v reason=%q wasClean=%v", r, r.CloseReason, r.WasClean)
	}
	if evs := s.events("/cfprefix/alone"); len(evs) != 1 || evs[0].Accepted || int(evs[0].CloseCode) != 1008 {
		err = fmt.Errorf("want one refusal with close 1008; gate reported %+v (%v)", evs, err)
	}
	if h2 && (res.Hop != "h2" || s.proto("/cfprefix/alone") != 2) {
		err = fmt.Errorf("want the page and the socket over HTTP/2, got %q and HTTP/%d (%v)", res.Hop, s.proto("/cfprefix/alone"), err)
	}
	extraRow(t, firefox, label+"close frame: prefix-form credential alone, no application protocol",
		fmt.Sprintf("opened=%v with protocol %q, close %d %q, wasClean=%v", r.Opened, r.Protocol, r.CloseCode, r.CloseReason, r.WasClean), err)
}
