package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/wsgate/wsgate"
)

var demoScreenshot = flag.Bool("demo-screenshot", false, "write a full-page screenshot of the demo page after every button to ../docs/demo.png")

// demoToken is the token the demo runs with; it must never reach its log.
const demoToken = "demo-e2e-Tok3n_xyz.42~"

// demoServer is a running cmd/wsgate-demo binary.
type demoServer struct {
	page  string // http://127.0.0.1:port/, the same-origin page
	cross string // http://127.0.0.1:port/, the cross-origin page
	log   *lockedBuffer
}

// lockedBuffer collects the demo's stderr while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startDemo builds cmd/wsgate-demo, starts it on two free loopback ports
// with demoToken, waits until it answers and kills it when t ends.
func startDemo(t *testing.T) *demoServer {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "wsgate-demo")
	build := exec.Command("go", "build", "-o", bin, "../cmd/wsgate-demo")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ../cmd/wsgate-demo: %v\n%s", err, out)
	}
	addr, crossAddr := freeAddr(t), freeAddr(t)
	d := &demoServer{page: "http://" + addr + "/", cross: "http://" + crossAddr + "/", log: &lockedBuffer{}}
	cmd := exec.Command(bin, "-addr", addr, "-cross-addr", crossAddr, "-token", demoToken)
	cmd.Stderr = d.log // stdout prints the token on purpose; the log must not
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})

	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := http.Get(d.page)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return d
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("wsgate-demo exited before answering: %v\nlog:\n%s", err, d.log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("wsgate-demo did not answer on %s within 10s: %v\nlog:\n%s", d.page, err, d.log)
		}
	}
}

// demoCard is one attempt as the page shows it.
type demoCard struct {
	Title string     `json:"title"`
	Lines []demoLine `json:"lines"`
	Last  string     `json:"last"` // the last /last box, as displayed
}

type demoLine struct {
	Text  string `json:"text"`
	Class string `json:"class"` // "ok", "bad" or ""
}

// demoLast is the part of /last the test checks.
type demoLast struct {
	Status   int               `json:"status"`
	Reason   string            `json:"reason"`
	Source   string            `json:"source"`
	Protocol string            `json:"protocol"`
	Ways     []string          `json:"ways"`
	Seen     map[string]string `json:"seen"`
	Path     string            `json:"path"`
	Close    int               `json:"close"`
}

func (c demoCard) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "card %q:", c.Title)
	for _, l := range c.Lines {
		fmt.Fprintf(&b, "\n  [%s] %s", l.Class, l.Text)
	}
	fmt.Fprintf(&b, "\n  %s", c.Last)
	return b.String()
}

// line returns the first line that starts with prefix.
func (c demoCard) line(prefix string) (demoLine, bool) {
	for _, l := range c.Lines {
		if strings.HasPrefix(l.Text, prefix) {
			return l, true
		}
	}
	return demoLine{}, false
}

func (c demoCard) last(t *testing.T) demoLast {
	t.Helper()
	var l demoLast
	body, ok := strings.CutPrefix(c.Last, "/last: ")
	if !ok || json.Unmarshal([]byte(body), &l) != nil {
		t.Fatalf("the /last box does not hold /last's JSON: %s", c)
	}
	return l
}

// after returns the part of the card after the first line that starts with
// prefix (for a card with two attempts), and whether there is one.
func (c demoCard) after(prefix string) (demoCard, bool) {
	for i, l := range c.Lines {
		if strings.HasPrefix(l.Text, prefix) {
			rest := c
			rest.Lines = c.Lines[i+1:]
			return rest, true
		}
	}
	return demoCard{}, false
}

// waitCard is the page function that waits until the page shows n cards
// and the newest is finished (the page marks it done after its last /last
// box). It returns that card.
const waitCard = `(n) => {
	const cards = document.querySelectorAll('#results .card');
	if (cards.length < n) return false;
	const c = cards[n - 1];
	if (c.dataset.done !== 'true') return false;
	const pres = c.querySelectorAll('pre');
	const lines = [...c.querySelectorAll('li')].map((li) => ({text: li.textContent, class: li.className}));
	return {title: c.querySelector('h3').textContent, lines, last: pres.length ? pres[pres.length - 1].textContent : ''};
}`

// demoTab is one tab of the demo page in some browser, in a fresh browser
// context (its own cookies and Basic cache).
type demoTab interface {
	// clickCard clicks the button sel and returns the n-th card (oldest
	// first) once finished, as waitCard reads it.
	clickCard(t *testing.T, sel string, n int) demoCard
	// eval evaluates expr on the page.
	eval(t *testing.T, expr string)
}

// demoPage drives one tab of the demo page.
type demoPage struct {
	tab   demoTab
	cards int
}

// click clicks the button sel and returns the attempt's card once finished.
func (p *demoPage) click(t *testing.T, sel string) demoCard {
	t.Helper()
	p.cards++
	c := p.tab.clickCard(t, sel, p.cards)
	t.Logf("%s → %s", sel, c)
	if strings.Contains(c.Last, demoToken) {
		t.Errorf("/last shows the token unmasked: %s", c)
	}
	return c
}

// setCloseFrames sets the page's "refuse with a close frame" checkbox.
func (p *demoPage) setCloseFrames(t *testing.T, on bool) {
	t.Helper()
	p.tab.eval(t, fmt.Sprintf(`document.getElementById('closeframe').checked = %v`, on))
}

// cdpTab is a demo page tab in Chromium.
type cdpTab struct{ ctx context.Context }

// openDemoPage loads url in a fresh Chromium browser context and waits
// until the page has its config.
func openDemoPage(t *testing.T, bctx context.Context, url string) *demoPage {
	t.Helper()
	ctx, cancel := chromedp.NewContext(bctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	err := chromedp.Do(ctx,
		chromedp.EmulateViewport(1024, 800),
		chromedp.Navigate(url),
		chromedp.Poll[chromedp.Void](`document.getElementById('token').value !== ''`,
			chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(10*time.Second)),
	)
	if err != nil {
		t.Fatalf("loading %s: %v", url, err)
	}
	return &demoPage{tab: cdpTab{ctx: ctx}}
}

func (c cdpTab) clickCard(t *testing.T, sel string, n int) demoCard {
	t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel))); err != nil {
		t.Fatalf("clicking %s: %v", sel, err)
	}
	card, err := chromedp.Run(ctx, chromedp.PollFunction[demoCard](waitCard,
		chromedp.WithPollingArgs(n),
		chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(15*time.Second)))
	if err != nil {
		t.Fatalf("waiting for the result of %s: %v", sel, err)
	}
	return card
}

func (c cdpTab) eval(t *testing.T, expr string) {
	t.Helper()
	if _, err := chromedp.Run(c.ctx, chromedp.Evaluate[any](expr)); err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
}

// demoPrincipal and ticketPrincipal are the principals the hello shows.
const (
	demoPrincipal   = `{"Name":"demo-user"}`
	ticketPrincipal = `{"Name":"demo-user","Via":"ticket"}`
)

// wantWorks checks a card of a way that succeeded: open with "chat"
// echoed, the hello with the principal and the source, an echo, a clean close 1000.
func wantWorks(t *testing.T, c demoCard, source string) {
	t.Helper()
	wantWorksAs(t, c, source, demoPrincipal)
}

func wantWorksAs(t *testing.T, c demoCard, source, principal string) {
	t.Helper()
	if _, ok := c.line("sent: ws://"); !ok {
		t.Errorf("want what the page sent; %s", c)
	}
	for _, want := range []string{
		`open; ws.protocol = "chat"`,
		fmt.Sprintf(`hello: principal %s, source %q, protocol "chat"`, principal, source),
		`echo "ping `,
		`close 1000`, // the server's close echoes the code, not the reason
		`outcome: accepted`,
	} {
		if l, ok := c.line(want); !ok || l.Class != "ok" {
			t.Errorf("want a green line %q; %s", want, c)
		}
	}
	if l, _ := c.line("close "); !strings.HasSuffix(l.Text, "wasClean true") {
		t.Errorf("want a clean close; %s", c)
	}
	if _, ok := c.line("error event"); ok {
		t.Errorf("want no error event; %s", c)
	}
	if l := c.last(t); l.Status != http.StatusSwitchingProtocols || l.Source != source || l.Protocol != "chat" {
		t.Errorf("want /last 101 via %s with protocol chat; %s", source, c)
	}
}

// wantRefused checks a card of a refused attempt: an error event and close
// 1006 without open, and status in /last.
func wantRefused(t *testing.T, c demoCard, status int) {
	t.Helper()
	if _, ok := c.line("open"); ok {
		t.Errorf("want no open; %s", c)
	}
	if l, ok := c.line("error event"); !ok || l.Class != "bad" {
		t.Errorf("want an error event; %s", c)
	}
	if l, ok := c.line("close 1006, wasClean false"); !ok || l.Class != "bad" {
		t.Errorf("want close 1006; %s", c)
	}
	if l := c.last(t); l.Status != status || l.Source != "" || l.Close != 0 {
		t.Errorf("want /last %d; %s", status, c)
	}
}

// wantClosed checks a card of an attempt refused after the upgrade: the
// socket opens, no hello, then close code with reason, which the page
// shows; /last has 101 and the same code and reason for path.
func wantClosed(t *testing.T, c demoCard, code int, reason, path string) {
	t.Helper()
	if l, ok := c.line(`open; ws.protocol = "chat"`); !ok || l.Class != "ok" {
		t.Errorf("want the socket to open; %s", c)
	}
	if _, ok := c.line("hello"); ok {
		t.Errorf("want no hello; %s", c)
	}
	if _, ok := c.line("error event"); ok {
		t.Errorf("want no error event: a close frame is a clean close; %s", c)
	}
	if l, ok := c.line(fmt.Sprintf("close %d %q, wasClean ", code, reason)); !ok || l.Class != "bad" {
		t.Errorf("want a red close %d %q; %s", code, reason, c)
	}
	if _, ok := c.line(fmt.Sprintf("outcome: refused with close %d %q", code, reason)); !ok {
		t.Errorf("want the outcome close %d; %s", code, c)
	}
	l := c.last(t)
	if l.Path != path || l.Status != http.StatusSwitchingProtocols || l.Source != "" {
		t.Errorf("want /last 101 at %s; %s", path, c)
	}
	if l.Close != code || l.Reason != reason {
		t.Errorf("want /last close %d %q; %s", code, reason, c)
	}
}

// wantTicket checks the card's POST /ticket line.
func wantTicket(t *testing.T, c demoCard) {
	t.Helper()
	l, ok := c.line("POST /ticket (Authorization: Bearer demo…): 200, ticket ")
	if !ok || l.Class != "ok" || !strings.HasSuffix(l.Text, "valid 30 s, once") {
		t.Errorf("want a ticket from POST /ticket; %s", c)
	}
}

func TestDemoPage(t *testing.T) {
	bctx := startChromium(t)
	checkDemoPage(t, startDemo(t), func(t *testing.T, url string) *demoPage { return openDemoPage(t, bctx, url) },
		func(t *testing.T, p *demoPage) {
			if !*demoScreenshot {
				return
			}
			png, err := chromedp.Run(p.tab.(cdpTab).ctx, chromedp.FullScreenshot(100))
			if err != nil {
				t.Fatalf("screenshot: %v", err)
			}
			if err := os.WriteFile("../docs/demo.png", png, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("wrote ../docs/demo.png (%d bytes)", len(png))
		})
}

// checkDemoPage clicks every button of the demo page d in page order, in
// the tabs open gives, checks each card and then the demo's log. After the
// userinfo button, before the caveat, it calls after (if not nil) with the
// same-origin tab.
func checkDemoPage(t *testing.T, d *demoServer, open func(t *testing.T, url string) *demoPage, after func(t *testing.T, p *demoPage)) {
	start := time.Now()
	crossOrigin := strings.TrimSuffix(d.cross, "/")

	// Every way the page offers, userinfo last: after it the browser sends
	// the cached Basic credential with every socket to this origin.
	p := open(t, d.page)
	wantWorks(t, p.click(t, `button[data-way="subprotocol"]`), "subprotocol")
	wantWorks(t, p.click(t, `button[data-way="prefix"]`), "subprotocol-prefix")
	c := p.click(t, `#login button`)
	wantWorks(t, c, "cookie")
	for _, want := range []string{"POST /login: 204", "POST /logout: 204"} {
		if _, ok := c.line(want); !ok {
			t.Errorf("want %q; %s", want, c)
		}
	}
	wantWorks(t, p.click(t, `button[data-way="query"]`), "query")
	c = p.click(t, `button[data-way="wrong"]`)
	wantRefused(t, c, http.StatusUnauthorized)
	if l := c.last(t); len(l.Ways) != 1 || l.Ways[0] != "subprotocol" {
		t.Errorf("want the wrong token seen in the subprotocol; %s", c)
	}
	c = p.click(t, `button[data-way="none"]`)
	wantRefused(t, c, http.StatusUnauthorized)
	if l := c.last(t); len(l.Ways) != 0 || l.Seen["Cookie"] != "" {
		t.Errorf("want no credential at all (the cookie logged out); %s", c)
	}

	// One-time tickets: in the query, in the subprotocol, and used twice.
	c = p.click(t, `button[data-ticket="query"]`)
	wantTicket(t, c)
	wantWorksAs(t, c, "query", ticketPrincipal)
	if l := c.last(t); !strings.HasPrefix(l.Seen["query"], "ticket=") || !strings.HasSuffix(l.Seen["query"], "…") {
		t.Errorf("want the masked ticket in /last's query; %s", c)
	}
	c = p.click(t, `button[data-ticket="subprotocol"]`)
	wantTicket(t, c)
	wantWorksAs(t, c, "subprotocol", ticketPrincipal)
	c = p.click(t, `button[data-ticket="reuse"]`)
	wantTicket(t, c)
	first, ok1 := c.after("first use:")
	second, ok2 := c.after("second use of the same ticket:")
	if !ok1 || !ok2 {
		t.Fatalf("want two uses; %s", c)
	}
	first.Lines = first.Lines[:len(first.Lines)-len(second.Lines)-1]
	for _, want := range []string{`hello: principal ` + ticketPrincipal, `outcome: accepted`} {
		if _, ok := first.line(want); !ok {
			t.Errorf("want the first use to work (%q); %s", want, c)
		}
	}
	wantRefused(t, second, http.StatusUnauthorized)
	if l := second.last(t); l.Reason != "invalid credential" || l.Ways[0] != "query" {
		t.Errorf("want the spent ticket refused 401 invalid credential; %s", c)
	}

	// Close-frame mode: the refusal reaches the page as a close code and
	// reason, after an open.
	p.setCloseFrames(t, true)
	c = p.click(t, `button[data-way="wrong"]`)
	if c.Title != "Wrong token (close frame)" {
		t.Errorf("want the card titled for close-frame mode; %s", c)
	}
	wantClosed(t, c, 4401, "invalid credential", "/ws-close")
	wantClosed(t, p.click(t, `button[data-way="none"]`), 4401, "credential required", "/ws-close")
	wantWorks(t, p.click(t, `button[data-way="subprotocol"]`), "subprotocol")
	p.setCloseFrames(t, false)

	// In-band authentication.
	c = p.click(t, `button[data-inband="ok"]`)
	wantWorks(t, c, "message")
	if _, ok := c.line(`first message {"type":"auth","token":"demo…"}`); !ok {
		t.Errorf("want the masked first message; %s", c)
	}
	wantClosed(t, p.click(t, `button[data-inband="wrong"]`), 4401, "invalid credential", "/ws-inband")
	wantClosed(t, p.click(t, `button[data-inband="none"]`), 4408, "authentication timed out", "/ws-inband")

	// An in-band refresh: the socket outlives its first short token.
	c = p.click(t, `button[data-refresh="ok"]`)
	wantWorks(t, c, "subprotocol")
	for _, want := range []string{"POST /short-token: 200, token st.", "refreshed: the session now expires in 2 s",
		"still the same socket "} {
		if l, ok := c.line(want); !ok || l.Class != "ok" {
			t.Errorf("want a green line %q; %s", want, c)
		}
	}
	if l := c.last(t); l.Path != "/ws-refresh" {
		t.Errorf("want the attempt at /ws-refresh; %s", c)
	}

	c = p.click(t, `button[data-way="userinfo"]`)
	wantWorks(t, c, "basic")
	if _, ok := c.line("sent: ws://demo…@127.0.0.1:"); !ok {
		t.Errorf("want the masked userinfo in what the page sent; %s", c)
	}

	if after != nil {
		after(t, p)
	}

	// The caveat the page documents: the cached Basic credential now rides
	// along, so "no token" succeeds.
	wantWorks(t, p.click(t, `button[data-way="none"]`), "basic")

	// The cross-origin page: the right token, but the gate's same-origin
	// check refuses with 403, with the cookie too (same site, other port).
	x := open(t, d.cross)
	c = x.click(t, `button[data-way="subprotocol"]`)
	wantRefused(t, c, http.StatusForbidden)
	if l := c.last(t); l.Seen["Origin"] != crossOrigin {
		t.Errorf("want Origin %s in /last; %s", crossOrigin, c)
	}
	c = x.click(t, `#login button`)
	wantRefused(t, c, http.StatusForbidden)
	if l := c.last(t); l.Seen["Origin"] != crossOrigin || !strings.HasPrefix(l.Seen["Cookie"], cookieName+"=") {
		t.Errorf("want the cookie with Origin %s in /last; %s", crossOrigin, c)
	}
	// A ticket the cross-origin page fetched from its own listener opens
	// nothing at the gate either, and close-frame mode does not upgrade an
	// origin refusal: the page sees 1006.
	c = x.click(t, `button[data-ticket="query"]`)
	wantTicket(t, c)
	wantRefused(t, c, http.StatusForbidden)
	x.setCloseFrames(t, true)
	c = x.click(t, `button[data-way="subprotocol"]`)
	wantRefused(t, c, http.StatusForbidden)
	if l := c.last(t); l.Path != "/ws-close" {
		t.Errorf("want the attempt at /ws-close; %s", c)
	}

	// The log: one line per handshake, the outcomes above, never the token.
	log := d.log.String()
	for _, want := range []string{
		"way=subprotocol outcome=accepted status=101",
		"way=subprotocol-prefix outcome=accepted status=101",
		"way=cookie outcome=accepted status=101",
		"way=query outcome=accepted status=101",
		"way=subprotocol outcome=refused status=401",
		"way=none outcome=refused status=401", // "no token", and the first userinfo request
		"way=basic outcome=accepted status=101",
		"way=subprotocol outcome=refused status=403 remote=",
		"way=cookie outcome=refused status=403 remote=",
		"origin=" + crossOrigin,
		`way=query outcome=refused status=401 remote=`, // the spent ticket
		`way=subprotocol outcome=refused status=101 close=4401 remote=`,
		`way=none outcome=refused status=101 close=4401 remote=`,
		`reason="credential required" path=/ws-close`,
		`way=message outcome=accepted status=101`,
		`way=message outcome=refused status=101 close=4401`,
		`way=message outcome=refused status=101 close=4408`,
		`reason="authentication timed out" path=/ws-inband`,
		`way=query outcome=refused status=403 remote=`, // the cross-origin ticket
		`reason="origin not allowed" path=/ws-close`,
		"msg=ticket outcome=issued",
		"msg=refresh outcome=accepted",
		"path=/ws-refresh",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("want %q in the demo's log:\n%s", want, log)
		}
	}
	if n := strings.Count(log, "msg=handshake"); n != 24 {
		t.Errorf("want 24 handshake lines (7 ways, 4 ticket sockets, 3 in close-frame mode, 3 in-band, the refresh, "+
			"the userinfo challenge, the caveat, 4 cross-origin), got %d:\n%s", n, log)
	}
	for _, s := range demoSecrets() {
		if strings.Contains(log, s) {
			t.Errorf("the demo's log contains the token (%q):\n%s", s, log)
		}
	}
	t.Logf("demo page test took %v", time.Since(start).Round(time.Millisecond))
}

// demoSecrets are the forms of demoToken the demo's log must not contain:
// the token, and as the prefix and Basic ways carry it.
func demoSecrets() []string {
	return []string{
		demoToken,
		strings.TrimPrefix(k8sProtocol(demoToken), wsgate.KubernetesPrefix),
		base64.StdEncoding.EncodeToString([]byte(demoToken + ":")),
	}
}

// ffDemo is a running node/firefox-demo.mjs: one headless Firefox (fresh
// profile) taking one command per line.
type ffDemo struct {
	t   *testing.T
	in  io.WriteCloser
	out *bufio.Scanner
}

// ffDemoTab is a demo page tab in Firefox.
type ffDemoTab struct {
	f  *ffDemo
	id int
}

// ffCardTimeout bounds each attempt in Firefox, which delays sockets to a
// host after refused ones (up to about 5 s each).
const ffCardTimeout = 30 * time.Second

// startFirefoxDemo starts node/firefox-demo.mjs; Firefox and node end when t
// ends, or after limit.
func startFirefoxDemo(t *testing.T, limit time.Duration) *ffDemo {
	t.Helper()
	node := requireFirefox(t)
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	cmd := exec.CommandContext(ctx, node, "firefox-demo.mjs")
	cmd.Dir = "node"
	cmd.Env = append(os.Environ(), "PUPPETEER_SKIP_DOWNLOAD=1")
	cmd.WaitDelay = 5 * time.Second
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close() // the script closes Firefox and exits when stdin ends
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cancel()
			<-done
		}
		cancel()
		if s := stderr.String(); s != "" {
			t.Logf("firefox-demo.mjs stderr:\n%s", s)
		}
	})
	f := &ffDemo{t: t, in: in, out: bufio.NewScanner(out)}
	f.out.Buffer(nil, 16<<20)
	var hello struct {
		Version string `json:"version"`
	}
	if !f.out.Scan() || json.Unmarshal(f.out.Bytes(), &hello) != nil || hello.Version == "" {
		cmd.Wait()
		t.Fatalf("node firefox-demo.mjs did not start (%q, %v):\n%s", f.out.Text(), f.out.Err(), stderr)
	}
	t.Logf("Firefox %s", hello.Version)
	return f
}

// do sends one command and decodes its value into v (unless nil).
func (f *ffDemo) do(t *testing.T, cmd map[string]any, v any) {
	t.Helper()
	b, err := json.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.in.Write(append(b, '\n')); err != nil {
		t.Fatalf("firefox-demo.mjs %s: %v", b, err)
	}
	if !f.out.Scan() {
		t.Fatalf("firefox-demo.mjs %s: no answer (%v)", b, f.out.Err())
	}
	var res struct {
		Value json.RawMessage `json:"value"`
		Error string          `json:"error"`
	}
	if err := json.Unmarshal(f.out.Bytes(), &res); err != nil {
		t.Fatalf("firefox-demo.mjs %s answered %q: %v", b, f.out.Bytes(), err)
	}
	if res.Error != "" {
		t.Fatalf("firefox-demo.mjs %s: %s", b, res.Error)
	}
	if v != nil {
		if err := json.Unmarshal(res.Value, v); err != nil {
			t.Fatalf("firefox-demo.mjs %s returned %s: %v", b, res.Value, err)
		}
	}
}

// open loads url in a fresh Firefox browser context and waits until the
// page has its config.
func (f *ffDemo) open(t *testing.T, url string) *demoPage {
	t.Helper()
	var id int
	f.do(t, map[string]any{"op": "open", "url": url}, &id)
	return &demoPage{tab: ffDemoTab{f: f, id: id}}
}

func (x ffDemoTab) clickCard(t *testing.T, sel string, n int) demoCard {
	t.Helper()
	var c demoCard
	x.f.do(t, map[string]any{"op": "click", "tab": x.id, "sel": sel, "wait": waitCard, "n": n,
		"timeout": ffCardTimeout.Milliseconds()}, &c)
	return c
}

func (x ffDemoTab) eval(t *testing.T, expr string) {
	t.Helper()
	x.f.do(t, map[string]any{"op": "eval", "tab": x.id, "expr": expr}, nil)
}

// TestDemoPageFirefox is TestDemoPage in Firefox: the same buttons in the
// same order, the same cards and the same log.
func TestDemoPageFirefox(t *testing.T) {
	d := startDemo(t)
	f := startFirefoxDemo(t, 3*time.Minute)
	checkDemoPage(t, d, f.open, nil)
}
