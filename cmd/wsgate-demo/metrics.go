package main

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/wsgate/wsgate"
)

// telemetry keeps what the demo's gates report through Config.OnHandshake
// and Config.OnSession: counters under the names package otelwsgate gives
// its metrics (GET /metrics, in the Prometheus text format), and the last
// handshakes as the spans otelwsgate would record (GET /spans). It is built
// on the gate's hooks alone, so the demo, which lives in the library's own
// module, needs no OpenTelemetry; a server of yours gets the same from
// otelwsgate and the exporter of its choice.
type telemetry struct {
	mu         sync.Mutex
	handshakes map[handshakeKey]*durations
	active     map[sessionKey]int
	ended      map[sessionKey]*durations
	closes     map[closeKey]int
	spans      []span // the last maxSpans, oldest first
}

const maxSpans = 20

type handshakeKey struct {
	route, outcome, source, statusClass, class string
}

// labels renders k as Prometheus labels, in otelwsgate's names.
func (k handshakeKey) labels() string {
	l := fmt.Sprintf(`http_route=%q,wsgate_credential_source=%q,wsgate_outcome=%q,wsgate_status_class=%q`, k.route, k.source, k.outcome, k.statusClass)
	if k.class != "" {
		l = fmt.Sprintf("error_type=%q,", k.class) + l
	}
	return l
}

type sessionKey struct{ route, source string }

type closeKey struct {
	route, phase string
	code         int
}

// durations is a count and a sum of seconds.
type durations struct {
	n   int
	sum float64
}

func (d *durations) add(t time.Duration) {
	d.n++
	d.sum += t.Seconds()
}

// span is one handshake as otelwsgate records it: the span's name, its
// time and its attributes (never a credential or a query value).
type span struct {
	Name       string         `json:"name"`
	Start      time.Time      `json:"start"`
	Duration   string         `json:"duration"`
	Attributes map[string]any `json:"attributes"`
}

func newTelemetry() *telemetry {
	return &telemetry{
		handshakes: map[handshakeKey]*durations{},
		active:     map[sessionKey]int{},
		ended:      map[sessionKey]*durations{},
		closes:     map[closeKey]int{},
	}
}

// handshake records one handshake (Config.OnHandshake). The demo's routes
// are its gates' paths, a fixed set.
func (t *telemetry) handshake(ev wsgate.HandshakeEvent) {
	outcome := "refused"
	if ev.Accepted {
		outcome = "accepted"
	}
	k := handshakeKey{ev.Path, outcome, ev.Source.String(), fmt.Sprintf("%dxx", ev.Status/100), ev.Class}
	attrs := map[string]any{
		"http.request.method":       ev.Method,
		"http.response.status_code": ev.Status,
		"http.route":                ev.Path,
		"url.path":                  ev.Path,
		"network.peer.address":      ev.RemoteAddr,
		"wsgate.outcome":            outcome,
		"wsgate.credential.source":  ev.Source.String(),
	}
	if ev.CloseCode != 0 {
		attrs["wsgate.close_code"] = int(ev.CloseCode)
	}
	if ev.Class != "" {
		attrs["error.type"] = ev.Class
	}
	s := span{Name: ev.Method + " " + ev.Path, Start: time.Now().Add(-ev.Duration), Duration: ev.Duration.String(), Attributes: attrs}

	t.mu.Lock()
	defer t.mu.Unlock()
	d := t.handshakes[k]
	if d == nil {
		d = &durations{}
		t.handshakes[k] = d
	}
	d.add(ev.Duration)
	if ev.CloseCode != 0 {
		t.closes[closeKey{ev.Path, "handshake", int(ev.CloseCode)}]++
	}
	if len(t.spans) == maxSpans {
		t.spans = slices.Delete(t.spans, 0, 1)
	}
	t.spans = append(t.spans, s)
}

// session records a session opening or ending (Config.OnSession).
func (t *telemetry) session(ev wsgate.SessionEvent) {
	k := sessionKey{ev.Path, ev.Source.String()}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !ev.Ended {
		t.active[k]++
		return
	}
	t.active[k]--
	d := t.ended[k]
	if d == nil {
		d = &durations{}
		t.ended[k] = d
	}
	d.add(ev.Duration)
	if ev.CloseCode != 0 {
		t.closes[closeKey{ev.Path, "session", int(ev.CloseCode)}]++
	}
}

// serveMetrics answers GET /metrics in the Prometheus text format.
func (t *telemetry) serveMetrics(w http.ResponseWriter, r *http.Request) {
	t.mu.Lock()
	var b strings.Builder
	var lines []string
	family := func(name, typ, help string) {
		slices.Sort(lines)
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
		for _, l := range lines {
			b.WriteString(l)
		}
		lines = lines[:0]
	}
	for k, d := range t.handshakes {
		lines = append(lines, fmt.Sprintf("wsgate_handshakes_total{%s} %d\n", k.labels(), d.n))
	}
	family("wsgate_handshakes_total", "counter", "WebSocket handshakes the gate answered, accepted or refused.")
	for k, d := range t.handshakes {
		lines = append(lines, fmt.Sprintf("wsgate_handshake_duration_seconds_sum{%s} %g\n", k.labels(), d.sum),
			fmt.Sprintf("wsgate_handshake_duration_seconds_count{%s} %d\n", k.labels(), d.n))
	}
	family("wsgate_handshake_duration_seconds", "summary", "Time from a WebSocket handshake's arrival at the gate to its answer.")
	for k, n := range t.active {
		lines = append(lines, fmt.Sprintf("wsgate_active_sessions{http_route=%q,wsgate_credential_source=%q} %d\n", k.route, k.source, n))
	}
	family("wsgate_active_sessions", "gauge", "Authenticated WebSocket sessions open now.")
	for k, d := range t.ended {
		labels := fmt.Sprintf(`http_route=%q,wsgate_credential_source=%q`, k.route, k.source)
		lines = append(lines, fmt.Sprintf("wsgate_session_duration_seconds_sum{%s} %g\n", labels, d.sum),
			fmt.Sprintf("wsgate_session_duration_seconds_count{%s} %d\n", labels, d.n))
	}
	family("wsgate_session_duration_seconds", "summary", "How long authenticated WebSocket sessions lived.")
	for k, n := range t.closes {
		lines = append(lines, fmt.Sprintf("wsgate_closes_total{http_route=%q,wsgate_close_code=\"%d\",wsgate_close_phase=%q} %d\n", k.route, k.code, k.phase, n))
	}
	family("wsgate_closes_total", "counter", "Close frames the gate sent: refusals after the upgrade, failed in-band authentications, expiries and shutdowns.")
	t.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte(b.String()))
}

// serveSpans answers GET /spans: the last handshakes, newest first, as
// otelwsgate's spans.
func (t *telemetry) serveSpans(w http.ResponseWriter, r *http.Request) {
	t.mu.Lock()
	spans := slices.Clone(t.spans)
	t.mu.Unlock()
	slices.Reverse(spans)
	if spans == nil {
		spans = []span{}
	}
	writeJSON(w, spans)
}
