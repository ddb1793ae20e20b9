package e2e

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

var interopOut = flag.String("interop-out", "", "write the interop matrix observed in this run to this Markdown file (run all Interop tests)")

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if *interopOut != "" {
		if code != 0 {
			fmt.Fprintln(os.Stderr, "interop: tests failed; not writing", *interopOut)
		} else if err := writeInterop(*interopOut); err != nil {
			fmt.Fprintln(os.Stderr, "interop:", err)
			code = 1
		} else {
			fmt.Fprintln(os.Stderr, "interop: wrote", *interopOut)
		}
	}
	os.Exit(code)
}

// The rows and columns of the matrix.
const (
	chromium = "Chromium"
	firefox  = "Firefox"
	nodeWS   = "Node `ws`"
	nodeBI   = "Node built-in"
	gorilla  = "gorilla/websocket"
	coder    = "coder/websocket"
	gobwas   = "gobwas/ws"

	wayBearer   = "Authorization: Bearer"
	wayMarker   = "Subprotocol marker"
	wayPrefix   = "Subprotocol prefix (K8s)"
	wayUserinfo = "URL userinfo → Basic"
	wayCookie   = "Cookie"
	wayQuery    = "Query ticket"
)

var (
	browsers = []string{chromium, firefox}
	clients  = []string{chromium, firefox, nodeWS, nodeBI, gorilla, coder, gobwas}
	ways     = []string{wayBearer, wayMarker, wayPrefix, wayUserinfo, wayCookie, wayQuery}
)

// outcome is one observation of the run.
type outcome struct {
	Client, Way string
	Works       bool   // the socket opened, echoed "chat" and round-tripped
	Cell        string // short text for the matrix
	Detail      string // what was observed, and why
}

var results struct {
	sync.Mutex
	matrix   map[[2]string]outcome
	extra    []outcome // refusals and origin checks
	versions map[string]string
}

func init() {
	results.matrix = map[[2]string]outcome{}
	results.versions = map[string]string{}
}

func record(o outcome) {
	results.Lock()
	defer results.Unlock()
	if slices.Contains(ways, o.Way) && slices.Contains(clients, o.Client) {
		results.matrix[[2]string{o.Client, o.Way}] = o
		return
	}
	results.extra = append(results.extra, o)
}

func recordVersion(name, v string) {
	results.Lock()
	defer results.Unlock()
	results.versions[name] = v
}

// clientResult is what a client observed; the page, client.mjs and the Go
// dialers all report it.
type clientResult struct {
	Thrown      string `json:"thrown"` // the constructor or dialer failed before or instead of a handshake
	Opened      bool   `json:"opened"`
	Protocol    string `json:"protocol"`
	Greeting    string `json:"greeting"`
	Echo        string `json:"echo"`
	Error       bool   `json:"error"`
	CloseCode   int    `json:"closeCode"`
	CloseReason string `json:"closeReason"`
	WasClean    bool   `json:"wasClean"`
	Status      int    `json:"status"` // the HTTP status of a refusal, when the client exposes it
	TimedOut    bool   `json:"timedOut"`
}

func (r clientResult) String() string {
	if r.Thrown != "" {
		return "threw " + r.Thrown
	}
	s := fmt.Sprintf("opened=%v protocol=%q greeting=%q echo=%q error=%v close=%d", r.Opened, r.Protocol, r.Greeting, r.Echo, r.Error, r.CloseCode)
	if r.Status != 0 {
		s += fmt.Sprintf(" status=%d", r.Status)
	}
	if r.TimedOut {
		s += " TIMED OUT"
	}
	return s
}

const pingText = "ping from page"

// checkWorks verifies a successful session end to end: on the client the
// open, the echoed protocol, the greeting and the round trip (and the close
// code when the client reports one); on the server the principal the
// handler received and the source. wantClose is 0 when the client does not
// report a close code.
func checkWorks(s *testServer, id string, r clientResult, source string, wantClose int) error {
	var errs []error
	if r.Thrown != "" || !r.Opened {
		errs = append(errs, fmt.Errorf("client did not open: %v", r))
	}
	if r.Protocol != appProtocol {
		errs = append(errs, fmt.Errorf("client saw protocol %q, want %q", r.Protocol, appProtocol))
	}
	if want := greeting(testPrincipal.Name, source, appProtocol); r.Greeting != want {
		errs = append(errs, fmt.Errorf("greeting %q, want %q", r.Greeting, want))
	}
	if r.Echo != pingText {
		errs = append(errs, fmt.Errorf("echo %q, want %q", r.Echo, pingText))
	}
	if wantClose != 0 && r.CloseCode != wantClose {
		errs = append(errs, fmt.Errorf("close code %d, want %d", r.CloseCode, wantClose))
	}
	evs := s.events(id)
	if len(evs) == 0 {
		errs = append(errs, errors.New("server saw no handshake"))
	} else {
		e := evs[len(evs)-1]
		if e.Status != http.StatusSwitchingProtocols || e.Principal != testPrincipal || e.Source != source || e.Protocol != appProtocol {
			errs = append(errs, fmt.Errorf("server: status %d principal %+v source %q protocol %q; want 101 %+v %q %q",
				e.Status, e.Principal, e.Source, e.Protocol, testPrincipal, source, appProtocol))
		}
		if strings.Contains(e.RawQuery, "ticket") {
			errs = append(errs, fmt.Errorf("handler saw the ticket in the query %q", e.RawQuery))
		}
	}
	return errors.Join(errs...)
}

// worksCell records a case that must work, failing t if it did not.
func worksCell(t *testing.T, s *testServer, client, way, id string, r clientResult, source string, wantClose int, note string) {
	t.Helper()
	if err := checkWorks(s, id, r, source, wantClose); err != nil {
		t.Errorf("%s / %s: %v\nclient: %v\nserver statuses: %s", client, way, err, r, s.statuses(id))
		record(outcome{Client: client, Way: way, Cell: "UNEXPECTED", Detail: err.Error()})
		return
	}
	detail := fmt.Sprintf("server handshakes %s; principal %q from `%s`; 101 echoed %q; round trip ok", s.statuses(id), testPrincipal.Name, source, appProtocol)
	if wantClose != 0 {
		detail += fmt.Sprintf("; close %d", r.CloseCode)
	}
	if note != "" {
		detail += ". " + note
	}
	record(outcome{Client: client, Way: way, Works: true, Cell: "✅ works", Detail: detail})
}

// failsCell records a case that must not work, with what the test observed
// and why; err is non-nil when the observation differs from the expected
// failure.
func failsCell(t *testing.T, client, way, cell, observed, why string, err error) {
	t.Helper()
	if err != nil {
		t.Errorf("%s / %s: %v (observed: %s)", client, way, err, observed)
		record(outcome{Client: client, Way: way, Cell: "UNEXPECTED", Detail: err.Error() + "; observed: " + observed})
		return
	}
	record(outcome{Client: client, Way: way, Cell: cell, Detail: "Observed: " + observed + ". " + why})
}

// extraRow records a refusal or origin check (outside the matrix).
func extraRow(t *testing.T, client, scenario, observed string, err error) {
	t.Helper()
	if err != nil {
		t.Errorf("%s / %s: %v (observed: %s)", client, scenario, err, observed)
		record(outcome{Client: client, Way: scenario, Cell: "UNEXPECTED", Detail: err.Error() + "; observed: " + observed})
		return
	}
	record(outcome{Client: client, Way: scenario, Works: false, Cell: "as expected", Detail: observed})
}

// requireTool skips the test when a tool is missing, except under CI, where
// a missing tool fails it.
func requireTool(t *testing.T, path, install string) string {
	t.Helper()
	p, err := exec.LookPath(path)
	if err == nil {
		return p
	}
	msg := fmt.Sprintf("%s not found (%v); install it: %s", path, err, install)
	if os.Getenv("CI") != "" {
		t.Fatal(msg + " (CI is set, so this is a failure, not a skip)")
	}
	t.Skip(msg)
	return ""
}

func writeInterop(path string) error {
	results.Lock()
	defer results.Unlock()
	var missing []string
	for _, c := range clients {
		for _, w := range ways {
			if _, ok := results.matrix[[2]string{c, w}]; !ok {
				missing = append(missing, c+" × "+w)
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%d cells were not observed in this run (skipped tests? run with chromium, firefox-esr and node installed): %s; not writing %s",
			len(missing), strings.Join(missing, ", "), path)
	}

	var b strings.Builder
	b.WriteString("# Interop: which client can carry which credential\n\n")
	b.WriteString("Generated by the e2e suite (`cd e2e && go test ./... -args -interop-out ../docs/INTEROP.md`);\n")
	b.WriteString("do not edit by hand. Every cell is the outcome of a test that ran against a `wsgate` Gate on 127.0.0.1\n")
	b.WriteString("configured with `StaticToken`, `Protocols: [\"chat\"]` and the extractors `Subprotocol(\"access_token\")`,\n")
	b.WriteString("`SubprotocolPrefix(\"\")`, `Basic(wsgate.Challenge)`, `Bearer()`, `Cookie(\"wsgate_token\")`, `Query(\"ticket\")`.\n")
	b.WriteString("\"Works\" means: the client opened the socket, saw `chat` echoed as the protocol, read the greeting the\n")
	b.WriteString("handler sent, got its message echoed back, and the handler received the expected principal from the\n")
	b.WriteString("expected source.\n\n")

	b.WriteString("## Clients\n\n")
	names := make([]string, 0, len(results.versions))
	for k := range results.versions {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		fmt.Fprintf(&b, "- %s: %s\n", k, results.versions[k])
	}

	b.WriteString("\n## Matrix\n\n| client |")
	for _, w := range ways {
		b.WriteString(" " + w + " |")
	}
	b.WriteString("\n|---|")
	for range ways {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	n := 0
	notes := map[[2]string]int{}
	for _, c := range clients {
		fmt.Fprintf(&b, "| %s |", c)
		for _, w := range ways {
			n++
			notes[[2]string{c, w}] = n
			fmt.Fprintf(&b, " %s [%d] |", results.matrix[[2]string{c, w}].Cell, n)
		}
		b.WriteString("\n")
	}

	b.WriteString("\n## What each cell observed\n\n")
	for _, c := range clients {
		for _, w := range ways {
			o := results.matrix[[2]string{c, w}]
			fmt.Fprintf(&b, "%d. **%s × %s**: %s\n", notes[[2]string{c, w}], c, w, mdEscape(o.Detail))
		}
	}

	// The browsers' observations side by side, one row per scenario.
	var scenarios []string
	seen := map[[2]string]string{}
	var others []outcome
	for _, o := range results.extra {
		if !slices.Contains(browsers, o.Client) {
			others = append(others, o)
			continue
		}
		if !slices.Contains(scenarios, o.Way) {
			scenarios = append(scenarios, o.Way)
		}
		seen[[2]string{o.Client, o.Way}] = o.Detail
	}
	if len(scenarios) > 0 {
		slices.Sort(scenarios)
		b.WriteString("\n## Refusals, closes and origin checks in the browsers\n\n")
		b.WriteString("Close-frame refusals, in-band authentication and credential expiry are served by gates in\n")
		b.WriteString("`RefuseWithCloseFrame` mode (`e2e/closeframe_test.go`); \"over HTTP/2\" rows open `wss://` from a page served\n")
		b.WriteString("over h2, so each socket is an extended CONNECT stream. \"raw path (Gate.Serve)\" rows go to gates served by\n")
		b.WriteString("`Gate.Serve` on listeners of their own, without net/http (`e2e/raw_test.go`), from a page of another port\n")
		b.WriteString("that the gates allow. `wasClean` is what the page's CloseEvent said.\n\n")
		b.WriteString("| scenario |")
		for _, c := range browsers {
			b.WriteString(" " + c + " |")
		}
		b.WriteString("\n|---|")
		for range browsers {
			b.WriteString("---|")
		}
		b.WriteString("\n")
		for _, sc := range scenarios {
			fmt.Fprintf(&b, "| %s |", mdEscape(sc))
			for _, c := range browsers {
				d, ok := seen[[2]string{c, sc}]
				if !ok {
					d = "not run"
				}
				fmt.Fprintf(&b, " %s |", mdEscape(d))
			}
			b.WriteString("\n")
		}
	}

	if len(others) > 0 {
		b.WriteString("\n## Refusals, origin checks and the raw path\n\n")
		b.WriteString("\"raw path (Gate.Serve)\" rows go to the same gate served by `Gate.Serve` (`e2e/raw_test.go`).\n\n")
		b.WriteString("| client | scenario | observed |\n|---|---|---|\n")
		extra := others
		slices.SortStableFunc(extra, func(x, y outcome) int {
			if d := slices.Index(clients, x.Client) - slices.Index(clients, y.Client); d != 0 {
				return d
			}
			return strings.Compare(x.Way, y.Way)
		})
		for _, o := range extra {
			fmt.Fprintf(&b, "| %s | %s | %s |\n", o.Client, mdEscape(o.Way), mdEscape(o.Detail))
		}
	}

	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func mdEscape(s string) string {
	s = strings.ReplaceAll(s, "|", "\\|")
	return strings.ReplaceAll(s, "\n", " ")
}

// goModuleVersions records the versions of the Go dialers this module
// builds with, read from go.mod (a test binary's debug.BuildInfo lists no
// dependencies).
func goModuleVersions() {
	data, err := os.ReadFile("go.mod")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "require" {
			f = f[1:]
		}
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "github.com/gorilla/websocket", "github.com/coder/websocket", "github.com/gobwas/ws":
			recordVersion(f[0], f[1])
		}
	}
}
