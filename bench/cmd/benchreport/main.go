// Command benchreport turns the output of the in-process benchmarks (go
// test -bench, several rounds in one file), of e2ebench (-json) and of
// idlemem (-json) into bench/RESULTS.md: the tables, the ratios of every case to the floors and
// the contenders within each round, and the project's performance targets with PASS or
// MISS.
//
// A ratio is the median over rounds of the ratio measured within one round,
// so that a slow moment of the shared machine, which slows every case of its
// round, cancels out.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"html"
	"io"
	"log"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	_ "github.com/wsgate/wsgate/bench" // for the module versions in the build info
)

// sample is one benchmark line.
type sample struct {
	ns, bytes, allocs float64
}

// inproc is every round of every case.
type inproc struct {
	cpu    string
	order  []string
	rounds map[string][]sample // case → one sample per round, in order
}

var benchLine = regexp.MustCompile(`^BenchmarkHandshake/(\S+?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op\s+([\d.]+) B/op\s+([\d.]+) allocs/op`)

func readInproc(r io.Reader) (*inproc, error) {
	in := &inproc{rounds: make(map[string][]sample)}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if cpu, ok := strings.CutPrefix(line, "cpu: "); ok {
			in.cpu = strings.TrimSpace(cpu)
		}
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		var s sample
		s.ns, _ = strconv.ParseFloat(m[2], 64)
		s.bytes, _ = strconv.ParseFloat(m[3], 64)
		s.allocs, _ = strconv.ParseFloat(m[4], 64)
		if _, ok := in.rounds[m[1]]; !ok {
			in.order = append(in.order, m[1])
		}
		in.rounds[m[1]] = append(in.rounds[m[1]], s)
	}
	if len(in.order) == 0 {
		return nil, fmt.Errorf("no BenchmarkHandshake lines")
	}
	return in, sc.Err()
}

func (in *inproc) has(name string) bool { _, ok := in.rounds[name]; return ok }

// median of a field over rounds.
func (in *inproc) median(name string, f func(sample) float64) float64 {
	var v []float64
	for _, s := range in.rounds[name] {
		v = append(v, f(s))
	}
	return median(v)
}

// ratio is the median over rounds of a's time divided by b's in the same
// round.
func (in *inproc) ratio(a, b string) float64 {
	ra, rb := in.rounds[a], in.rounds[b]
	n := min(len(ra), len(rb))
	if n == 0 {
		return math.NaN()
	}
	v := make([]float64, n)
	for i := range v {
		v[i] = ra[i].ns / rb[i].ns
	}
	return median(v)
}

// bestRatio is the ratio of a's fastest round to b's fastest round: the
// machine's noise only ever adds time, so the fastest rounds are the least
// disturbed ones.
func (in *inproc) bestRatio(a, b string) float64 {
	return in.best(a) / in.best(b)
}

func (in *inproc) best(name string) float64 {
	m := math.Inf(1)
	for _, s := range in.rounds[name] {
		m = min(m, s.ns)
	}
	return m
}

// spread is (max-min)/median of a case's time over rounds.
func (in *inproc) spread(name string) float64 {
	var v []float64
	for _, s := range in.rounds[name] {
		v = append(v, s.ns)
	}
	sort.Float64s(v)
	return (v[len(v)-1] - v[0]) / median(v)
}

// e2e is e2ebench's JSON.
type e2e struct {
	GoVersion  string  `json:"go_version"`
	GOMAXPROCS int     `json:"gomaxprocs"`
	N          int     `json:"n"`
	Rounds     int     `json:"rounds"`
	Clients    []int   `json:"clients"`
	Errors     int     `json:"errors"`
	Elapsed    string  `json:"elapsed"`
	Results    []e2eRR `json:"results"`
}

type e2eRR struct {
	Case             string    `json:"case"`
	Clients          int       `json:"clients"`
	PerSec           []float64 `json:"per_sec"`
	MedianPerSec     float64   `json:"median_per_sec"`
	RatioFloor       float64   `json:"ratio_floor"`
	RatioRawFloor    float64   `json:"ratio_raw_floor"`
	P50              float64   `json:"p50_us"`
	P99              float64   `json:"p99_us"`
	Mallocs          float64   `json:"server_mallocs_per_handshake"`
	Bytes            float64   `json:"server_bytes_per_handshake"`
	CPU              float64   `json:"server_cpu_us_per_handshake"`
	CPURatioFloor    float64   `json:"server_cpu_ratio_floor"`
	CPURatioRawFloor float64   `json:"server_cpu_ratio_raw_floor"`
	CPURounds        []float64 `json:"server_cpu_us_per_handshake_rounds"`
	MallocsRounds    []float64 `json:"server_mallocs_per_handshake_rounds"`
}

// idleRep is idlemem's JSON.
type idleRep struct {
	N       int       `json:"n"`
	Rounds  int       `json:"rounds"`
	Elapsed string    `json:"elapsed"`
	Results []idleRes `json:"results"`
}

type idleRes struct {
	Case       string  `json:"case"`
	N          int     `json:"n"`
	Heap       float64 `json:"heap_inuse_per_conn"`
	HeapAlloc  float64 `json:"heap_alloc_per_conn"`
	Stack      float64 `json:"stack_inuse_per_conn"`
	HeapStack  float64 `json:"heap_stack_per_conn"`
	Goroutines float64 `json:"goroutines_per_conn"`
}

func (m *idleRep) find(name string) *idleRes {
	if m == nil {
		return nil
	}
	for i := range m.Results {
		if m.Results[i].Case == name {
			return &m.Results[i]
		}
	}
	return nil
}

// cpuRatio is the median over rounds of a's server CPU per handshake
// divided by b's in the same round.
func cpuRatio(a, b *e2eRR) float64 {
	var v []float64
	for i := range min(len(a.CPURounds), len(b.CPURounds)) {
		if b.CPURounds[i] > 0 {
			v = append(v, a.CPURounds[i]/b.CPURounds[i])
		}
	}
	return median(v)
}

func (e *e2e) find(name string, clients int) *e2eRR {
	for i := range e.Results {
		if e.Results[i].Case == name && e.Results[i].Clients == clients {
			return &e.Results[i]
		}
	}
	return nil
}

func main() {
	inFile := flag.String("inproc", "", "go test -bench output of every round")
	e2eFile := flag.String("e2e", "", "e2ebench -json output")
	idleFile := flag.String("idle", "", "idlemem -json output")
	out := flag.String("o", "RESULTS.md", "where to write the report")
	commit := flag.String("commit", "", "the wsgate commit measured")
	cmdline := flag.String("run", "", "how the run was made, for the report")
	profile := flag.String("profile", "", "CPU profile summary (run.sh -profiles) to quote when a target is missed")
	failMiss := flag.Bool("fail-on-miss", false, "exit 1 when a target is missed")
	otelFile := flag.String("otel", "", "go test -bench output of otelwsgate's BenchmarkHandshake, every round")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("benchreport: ")

	f, err := os.Open(*inFile)
	if err != nil {
		log.Fatal(err)
	}
	in, err := readInproc(f)
	f.Close()
	if err != nil {
		log.Fatal(err)
	}
	var e *e2e
	if *e2eFile != "" {
		b, err := os.ReadFile(*e2eFile)
		if err != nil {
			log.Fatal(err)
		}
		e = new(e2e)
		if err := json.Unmarshal(b, e); err != nil {
			log.Fatal(err)
		}
	}
	var idle *idleRep
	if *idleFile != "" {
		b, err := os.ReadFile(*idleFile)
		if err != nil {
			log.Fatal(err)
		}
		idle = new(idleRep)
		if err := json.Unmarshal(b, idle); err != nil {
			log.Fatal(err)
		}
	}
	var otel *inproc
	if *otelFile != "" {
		f, err := os.Open(*otelFile)
		if err != nil {
			log.Fatal(err)
		}
		otel, err = readInproc(f)
		f.Close()
		if err != nil {
			log.Fatal(err)
		}
	}
	chart := strings.TrimSuffix(*out, filepath.Ext(*out)) + ".svg"
	if err := os.WriteFile(chart, []byte(chartSVG(in, e, idle)), 0o644); err != nil {
		log.Fatal(err)
	}
	var b strings.Builder
	missed := write(&b, in, e, idle, otel, *commit, *cmdline, *profile, filepath.Base(chart))
	if err := os.WriteFile(*out, []byte(b.String()), 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("wrote %s: %d targets missed\n", *out, missed)
	if missed > 0 && *failMiss {
		os.Exit(1)
	}
}

const (
	wsgateSub  = "WsgateHandler/subprotocol"
	wsgateMid  = "WsgateMiddleware/subprotocol"
	extractor1 = "WsgateExtractors/1"
	extractor6 = "WsgateExtractors/6"
	// wsgateRaw is the name of wsgate's raw-connection case (served from
	// the net.Conn), in process, end to end and idle; its targets print
	// "not measured" while no case has that name.
	wsgateRaw = "WsgateRaw/subprotocol"
)

// references are the cases every other is compared with, in column order.
var references = []string{"Floor", "Validate101", "Gobwas", "GobwasProtocol", "Gorilla", "Coder", "Naive", "RawFloor", "GobwasRaw"}

type target struct {
	what, measured, limit string
	pass                  bool
	absent                bool // not measured: a case it needs is missing
}

func targets(in *inproc, e *e2e, idle *idleRep) []target {
	var ts []target
	add := func(what, measured, limit string, pass bool) {
		ts = append(ts, target{what: what, measured: measured, limit: limit, pass: pass})
	}
	if in.has("Firefox/WsgateHandler") {
		const ff = "Firefox/WsgateHandler"
		for _, c := range []struct {
			ref    string
			limit  float64
			slower bool // the limit is on ref's time over wsgate's
		}{{"Firefox/Validate101", 1.30, false}, {"Firefox/GobwasProtocol", 1.00, false}, {"Firefox/Gorilla", 3, true}, {"Firefox/Coder", 10, true}} {
			if !in.has(c.ref) {
				continue
			}
			if c.slower {
				r := in.ratio(c.ref, ff)
				add("Firefox-style request, handler form: faster than "+strings.TrimPrefix(c.ref, "Firefox/"),
					fmt.Sprintf("%s takes %.2f× wsgate's time", c.ref, r)+best(in.bestRatio(c.ref, ff)), fmt.Sprintf("≥ %.0f×", c.limit), r >= c.limit)
				continue
			}
			r := in.ratio(ff, c.ref)
			add("Firefox-style request, handler form: time vs "+strings.TrimPrefix(c.ref, "Firefox/"), x(r)+best(in.bestRatio(ff, c.ref)),
				fmt.Sprintf("≤ %.2f×", c.limit), r <= c.limit)
		}
	}
	if in.has(wsgateSub) && in.has("Validate101") {
		r := in.ratio(wsgateSub, "Validate101")
		add("wsgate subprotocol, handler form: time vs Validate101", x(r)+best(in.bestRatio(wsgateSub, "Validate101")), "≤ 1.30×", r <= 1.30)
	}
	if in.has(wsgateSub) && in.has("GobwasProtocol") {
		r := in.ratio(wsgateSub, "GobwasProtocol")
		add("wsgate subprotocol, handler form: time vs GobwasProtocol (no authentication)", x(r)+best(in.bestRatio(wsgateSub, "GobwasProtocol")), "≤ 1.00×", r <= 1.00)
	}
	for _, c := range []struct {
		name   string
		factor float64
	}{{"Gorilla", 3}, {"Coder", 10}} {
		if !in.has(wsgateSub) || !in.has(c.name) {
			continue
		}
		r := in.ratio(c.name, wsgateSub)
		add(fmt.Sprintf("wsgate subprotocol, handler form: faster than %s", c.name),
			fmt.Sprintf("%s takes %.2f× wsgate's time", c.name, r)+best(in.bestRatio(c.name, wsgateSub)), fmt.Sprintf("≥ %.0f×", c.factor), r >= c.factor)
		wa, ca := in.median(wsgateSub, allocsOf), in.median(c.name, allocsOf)
		add(fmt.Sprintf("wsgate subprotocol, handler form: fewer allocations than %s", c.name),
			fmt.Sprintf("%.0f vs %.0f allocs/op", wa, ca), "fewer", wa < ca)
	}
	if e != nil {
		for _, name := range []string{wsgateSub, wsgateMid} {
			if r := e.find(name, 16); r != nil {
				form := "handler form"
				if name == wsgateMid {
					form = "middleware form"
				}
				add("end to end, 16 clients: wsgate subprotocol, "+form+", handshakes/s vs Floor",
					x(r.RatioFloor), "≥ 0.98×", r.RatioFloor >= 0.98)
			}
		}
	}
	if in.has(extractor1) && in.has(extractor6) {
		r := in.ratio(extractor6, extractor1)
		add("6 extractors vs 1 (subprotocol credential, handler form): time", x(r)+best(in.bestRatio(extractor6, extractor1)), "within 10% (0.90×–1.10×)", r >= 0.90 && r <= 1.10)
	}
	// The allocation budget per handshake: at most 1 in the handler form,
	// at most 3 in the middleware form.
	for _, c := range []struct {
		name string
		max  float64
	}{{wsgateSub, 1}, {wsgateMid, 3}, {"Firefox/WsgateHandler", 1}} {
		if in.has(c.name) {
			a := in.median(c.name, allocsOf)
			add("allocation budget: "+c.name, fmt.Sprintf("%.0f allocs/op", a), fmt.Sprintf("≤ %.0f", c.max), a <= c.max)
		}
	}
	return append(ts, rawTargets(in, e, idle)...)
}

// rawTargets are the targets of wsgate's raw-connection path, against
// RawFloor, gobwas's Upgrader on the net.Conn, net/http's Floor and
// gorilla: each prints "not measured" when a case it needs is missing.
func rawTargets(in *inproc, e *e2e, idle *idleRep) []target {
	var ts []target
	add := func(what, measured, limit string, pass bool) {
		ts = append(ts, target{what: what, measured: measured, limit: limit, pass: pass})
	}
	absent := func(what, limit string, missing ...string) {
		ts = append(ts, target{what: what, measured: "not measured (no " + strings.Join(missing, ", no ") + " case)", limit: limit, absent: true})
	}
	need := func(have func(string) bool, names ...string) []string {
		var miss []string
		for _, n := range names {
			if !have(n) {
				miss = append(miss, n)
			}
		}
		return miss
	}
	const what = "wsgate raw subprotocol (" + wsgateRaw + ")"
	if miss := need(in.has, wsgateRaw, "GobwasRaw"); miss != nil {
		absent(what+", in process: time vs GobwasRaw (no authentication)", "≤ 1.50×", miss...)
		if !in.has(wsgateRaw) {
			absent("allocation budget: "+wsgateRaw, "≤ 1", wsgateRaw)
		}
	} else {
		r := in.ratio(wsgateRaw, "GobwasRaw")
		add(what+", in process: time vs GobwasRaw (no authentication)", x(r)+best(in.bestRatio(wsgateRaw, "GobwasRaw")), "≤ 1.50×", r <= 1.50)
	}
	if in.has(wsgateRaw) {
		a := in.median(wsgateRaw, allocsOf)
		add("allocation budget: "+wsgateRaw, fmt.Sprintf("%.0f allocs/op", a), "≤ 1", a <= 1)
	}
	for _, lv := range []int{16, 64} {
		pre := fmt.Sprintf("end to end, %d clients: %s, ", lv, what)
		has := func(name string) bool { return e != nil && e.find(name, lv) != nil }
		if e != nil && !slices.Contains(e.Clients, lv) {
			continue
		}
		for _, c := range []struct {
			ref, limit string
			max        float64
		}{{"RawFloor", "≤ 1.10×", 1.10}, {"Gorilla", "≤ 0.75×", 0.75}} {
			w := pre + "server CPU/hs vs " + c.ref
			if miss := need(has, wsgateRaw, c.ref); miss != nil {
				absent(w, c.limit, miss...)
				continue
			}
			r := cpuRatio(e.find(wsgateRaw, lv), e.find(c.ref, lv))
			add(w, fmt.Sprintf("%s (%.1f vs %.1f µs)", x(r), e.find(wsgateRaw, lv).CPU, e.find(c.ref, lv).CPU), c.limit, r <= c.max)
		}
		if miss := need(has, wsgateRaw); miss != nil {
			absent(pre+"server mallocs/hs", "≤ 9", miss...)
		} else {
			m := e.find(wsgateRaw, lv).Mallocs
			add(pre+"server mallocs/hs", fmt.Sprintf("%.1f", m), "≤ 9", m <= 9)
		}
		if miss := need(has, wsgateRaw, "Floor"); miss != nil {
			absent(pre+"handshakes/s vs Floor", "≥ 1.12×", miss...)
		} else {
			r := e.find(wsgateRaw, lv).RatioFloor
			add(pre+"handshakes/s vs Floor", x(r), "≥ 1.12×", r >= 1.12)
		}
	}
	w := "idle connections: " + what + ", heap per connection vs Gorilla"
	if idle != nil {
		w = fmt.Sprintf("idle connections (%d open): %s, heap per connection vs Gorilla", idle.N, what)
	}
	if miss := need(func(n string) bool { return idle.find(n) != nil }, wsgateRaw, "Gorilla"); miss != nil {
		absent(w, "≤ 0.25×", miss...)
	} else {
		raw, g := idle.find(wsgateRaw), idle.find("Gorilla")
		r := raw.Heap / g.Heap
		add(w, fmt.Sprintf("%s (%.0f vs %.0f B)", x(r), raw.Heap, g.Heap), "≤ 0.25×", r <= 0.25)
	}
	return ts
}

func allocsOf(s sample) float64 { return s.allocs }
func nsOf(s sample) float64     { return s.ns }
func bytesOf(s sample) float64  { return s.bytes }

func x(r float64) string { return fmt.Sprintf("%.2f×", r) }

func best(r float64) string { return fmt.Sprintf(" (fastest rounds: %.2f×)", r) }

func write(b *strings.Builder, in *inproc, e *e2e, idle *idleRep, otel *inproc, commit, cmdline, profile, chart string) int {
	fmt.Fprintf(b, "# Handshake benchmark results\n\n")
	fmt.Fprintf(b, "![Cost per handshake in process, server CPU per handshake over loopback at 16 clients, and server memory per idle connection, for every contender](%s)\n\n", chart)
	fmt.Fprintf(b, "Generated by `bench/run.sh` (see [README.md](README.md) for how to read this). Absolute times on a\n"+
		"shared 2-core machine are noise; compare the ratios, which are measured within one round.\n\n")
	fmt.Fprintf(b, "| | |\n|---|---|\n")
	fmt.Fprintf(b, "| date | %s |\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(b, "| Go | %s %s/%s |\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(b, "| CPU | %s (%d logical CPUs) |\n", in.cpu, runtime.NumCPU())
	if commit != "" {
		fmt.Fprintf(b, "| wsgate | `%s` |\n", commit)
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			switch d.Path {
			case "github.com/gobwas/ws", "github.com/gorilla/websocket", "github.com/coder/websocket":
				fmt.Fprintf(b, "| %s | %s |\n", d.Path, d.Version)
			}
		}
	}
	n := len(in.rounds[in.order[0]])
	fmt.Fprintf(b, "| in process | %d rounds of every case |\n", n)
	if e != nil {
		fmt.Fprintf(b, "| end to end | %d rounds of %d handshakes per case and number of clients, GOMAXPROCS %d, %d failed |\n",
			e.Rounds, e.N, e.GOMAXPROCS, e.Errors)
	}
	if idle != nil {
		fmt.Fprintf(b, "| idle connections | %d round(s) of %d connections per case |\n", idle.Rounds, idle.N)
	}
	if cmdline != "" {
		fmt.Fprintf(b, "| run | `%s` |\n", cmdline)
	}

	ts := targets(in, e, idle)
	missed := 0
	fmt.Fprintf(b, "\n## Targets\n\nIn-process ratios: the median of the per-round ratios decides; in parentheses, the ratio of\n"+
		"the two cases' fastest rounds, for comparison (noise only adds time).\n\n| target | measured | limit | |\n|---|---|---|---|\n")
	for _, t := range ts {
		verdict := "PASS"
		switch {
		case t.absent:
			verdict = "not measured"
		case !t.pass:
			verdict = "**MISS**"
			missed++
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s |\n", t.what, t.measured, t.limit, verdict)
	}

	fmt.Fprintf(b, "\n## In process\n\nOne full handshake per operation on the in-memory hijackable writer. ns/op, B/op and\n"+
		"allocs/op are medians over rounds; fastest is the fastest round's ns/op; spread is (slowest − fastest) / median of ns/op over rounds.\n"+
		"Each × column is the case's time divided by that reference's time, the median of the per-round ratios\n"+
		"(below 1: faster than the reference).\n\n")
	var refs []string
	for _, r := range references {
		if in.has(r) {
			refs = append(refs, r)
		}
	}
	fmt.Fprintf(b, "| case | ns/op | fastest | spread | B/op | allocs/op |")
	for _, r := range refs {
		fmt.Fprintf(b, " × %s |", r)
	}
	fmt.Fprintf(b, "\n|---|---:|---:|---:|---:|---:|%s\n", strings.Repeat("---:|", len(refs)))
	for _, c := range in.order {
		fmt.Fprintf(b, "| %s | %.0f | %.0f | %.0f%% | %.0f | %.0f |", c, in.median(c, nsOf), in.best(c), 100*in.spread(c), in.median(c, bytesOf), in.median(c, allocsOf))
		for _, r := range refs {
			fmt.Fprintf(b, " %.2f |", in.ratio(c, r))
		}
		fmt.Fprintln(b)
	}

	if e != nil {
		fmt.Fprintf(b, "\n## End to end (loopback TCP)\n\nServers in a child process, one server per case on 127.0.0.1: net/http for the handler\n"+
			"cases, the case's own accept loop for the raw ones (`RawFloor`, `GobwasRaw`, served from the net.Conn\n"+
			"without net/http); each client handshake dials, sends the request, reads the 101 and closes.\n"+
			"handshakes/s is the median over rounds, × Floor and × RawFloor the median of the per-round ratios\n"+
			"(above 1: more handshakes per second); p50 and p99 are over all rounds' handshakes; server CPU\n"+
			"(user and system time from getrusage), mallocs and bytes per handshake (runtime.MemStats deltas)\n"+
			"are the server process's, so they include the kernel's cost of accepting the connection and, for\n"+
			"the handler cases, net/http's cost of reading the request. CPU × Floor and CPU × RawFloor are\n"+
			"the medians of the per-round ratios of server CPU per handshake (below 1: less CPU).\n")
		for _, lv := range e.Clients {
			fmt.Fprintf(b, "\n### %d concurrent client(s)\n\n| case | handshakes/s | × Floor | × RawFloor | p50 µs | p99 µs | server CPU µs/hs | CPU × Floor | CPU × RawFloor | server mallocs/hs | server B/hs |\n"+
				"|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n", lv)
			for _, r := range e.Results {
				if r.Clients != lv {
					continue
				}
				fmt.Fprintf(b, "| %s | %.0f | %s | %s | %.0f | %.0f | %.1f | %s | %s | %.1f | %.0f |\n", r.Case, r.MedianPerSec, ratioCell(r.RatioFloor), ratioCell(r.RatioRawFloor),
					r.P50, r.P99, r.CPU, ratioCell(r.CPURatioFloor), ratioCell(r.CPURatioRawFloor), r.Mallocs, r.Bytes)
			}
		}
		rawReferences(b, e)
	}
	if idle != nil {
		writeIdle(b, idle)
	}
	if otel != nil {
		writeOtel(b, otel)
	}
	if missed > 0 {
		fmt.Fprintf(b, "\n## Missed targets\n\n%d target(s) missed in this run; the CPU and memory profiles of the wsgate handler\n"+
			"and middleware forms are in [profiles/](profiles/) (`bench/run.sh -profiles`).\n", missed)
		if profile != "" {
			quoteProfile(b, profile)
		}
	}
	return missed
}

// writeOtel reports otelwsgate's BenchmarkHandshake: the handler-form
// handshake with no instrumentation, with the no-op providers and with the
// SDK, each round's cases measured back to back.
func writeOtel(b *strings.Builder, otel *inproc) {
	fmt.Fprintf(b, "\n## OpenTelemetry instrumentation (otelwsgate)\n\n"+
		"`BenchmarkHandshake` of the `otelwsgate` module: an accepted Bearer handshake in the handler form, in\n"+
		"process, with no instrumentation (`none`: the gate's hooks are nil, one nil check each), with\n"+
		"OpenTelemetry's no-op providers, and with the SDK (sampling every span, a manual metric reader),\n"+
		"with and without session spans. Medians over %d rounds.\n\n", len(otel.rounds[otel.order[0]]))
	fmt.Fprintf(b, "| case | ns/op | × none | B/op | allocs/op |\n|---|---:|---:|---:|---:|\n")
	for _, name := range otel.order {
		r := "–"
		if otel.has("none") {
			r = x(otel.ratio(name, "none"))
		}
		fmt.Fprintf(b, "| %s | %.0f | %s | %.0f | %.0f |\n", strings.ReplaceAll(name, "_", " "), otel.median(name, nsOf), r,
			otel.median(name, bytesOf), otel.median(name, allocsOf))
	}
}

// ratioCell prints a ratio, or "–" for none (0: the reference case is not in
// the run).
func ratioCell(r float64) string {
	if r == 0 || math.IsNaN(r) {
		return "–"
	}
	return fmt.Sprintf("%.2f", r)
}

// rawReferences writes what a handshake costs the server without net/http:
// RawFloor against Floor, and what gobwas's Upgrader on the net.Conn adds to
// RawFloor, at every number of clients.
func rawReferences(b *strings.Builder, e *e2e) {
	fmt.Fprintf(b, "\n### The raw path's references\n\nServer cost per handshake without net/http: `RawFloor` (read the request from the\n"+
		"net.Conn, find the key, write the 101) against net/http's `Floor`, and what gobwas's zero-value\n"+
		"`ws.Upgrader` on the net.Conn (`GobwasRaw`) adds to `RawFloor`. Ratios are medians of per-round ratios.\n\n"+
		"| clients | RawFloor CPU µs/hs | Floor CPU µs/hs | RawFloor CPU × Floor | RawFloor mallocs/hs | Floor mallocs/hs | RawFloor B/hs | Floor B/hs | GobwasRaw − RawFloor CPU µs/hs | GobwasRaw − RawFloor mallocs/hs |\n"+
		"|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, lv := range e.Clients {
		raw, floor, gob := e.find("RawFloor", lv), e.find("Floor", lv), e.find("GobwasRaw", lv)
		if raw == nil || floor == nil {
			continue
		}
		gcpu, gm := "–", "–"
		if gob != nil {
			gcpu, gm = fmt.Sprintf("%+.1f", gob.CPU-raw.CPU), fmt.Sprintf("%+.1f", gob.Mallocs-raw.Mallocs)
		}
		fmt.Fprintf(b, "| %d | %.1f | %.1f | %.2f | %.1f | %.1f | %.0f | %.0f | %s | %s |\n", lv, raw.CPU, floor.CPU, cpuRatio(raw, floor),
			raw.Mallocs, floor.Mallocs, raw.Bytes, floor.Bytes, gcpu, gm)
	}
}

// writeIdle writes the idle-connection memory table.
func writeIdle(b *strings.Builder, idle *idleRep) {
	fmt.Fprintf(b, "\n## Idle connections (memory per connection)\n\nThe server (a process of its own per case and round) upgrades %d connections on loopback and\n"+
		"holds each idle, its goroutine blocked reading the next frame; the wsgate cases authenticate (subprotocol\n"+
		"marker, `StaticToken`). After runtime.GC(), per connection is (MemStats with every connection open −\n"+
		"MemStats before the first) / %d, the median over %d round(s): heap is HeapInuse (the heap spans kept),\n"+
		"live heap is HeapAlloc, stack is StackInuse (goroutine stacks). Kernel socket buffers are not counted.\n"+
		"× Gorilla is the case's value divided by gorilla's.\n\n"+
		"| case | heap B/conn | live heap B/conn | stack B/conn | heap+stack B/conn | heap × Gorilla | heap+stack × Gorilla | goroutines/conn |\n"+
		"|---|---:|---:|---:|---:|---:|---:|---:|\n", idle.N, idle.N, idle.Rounds)
	g := idle.find("Gorilla")
	for _, r := range idle.Results {
		hr, hsr := "–", "–"
		if g != nil && g.Heap > 0 {
			hr, hsr = fmt.Sprintf("%.2f", r.Heap/g.Heap), fmt.Sprintf("%.2f", r.HeapStack/g.HeapStack)
		}
		fmt.Fprintf(b, "| %s | %.0f | %.0f | %.0f | %.0f | %s | %s | %.2f |\n", r.Case, r.Heap, r.HeapAlloc, r.Stack, r.HeapStack, hr, hsr, r.Goroutines)
	}
	if idle.find(wsgateRaw) == nil {
		fmt.Fprintf(b, "| %s | not measured | | | | | | |\n", wsgateRaw)
	}
}

// quoteProfile copies the head of the by-cumulative-time table of a CPU
// profile summary written by run.sh.
func quoteProfile(b *strings.Builder, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		log.Printf("no profile to quote: %v", err)
		return
	}
	lines := strings.Split(string(data), "\n")
	head, from := lines[0], -1
	for i, l := range lines {
		if strings.HasPrefix(l, "# The same, by cumulative time") {
			from = i
		}
	}
	if from < 0 {
		return
	}
	end := min(len(lines), from+32)
	fmt.Fprintf(b, "\nWhere the time of `WsgateHandler/subprotocol` goes, by cumulative CPU time (from\n"+
		"[%s](%s), profiled in this run; %s):\n\n```\n%s\n```\n",
		strings.TrimPrefix(file, "profiles/"), file, strings.TrimPrefix(head, "# "), strings.Join(lines[from+1:end], "\n"))
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// chartSVG draws up to three bar charts, hand-rolled SVG: the in-process
// cost per handshake of every contender (ns/op, the median over rounds);
// when the end-to-end results are there, the server's CPU time per
// handshake at 16 clients; when the idle-connection results are there, the
// server's heap + stack per idle connection. wsgate's bars are drawn in
// another colour.
func chartSVG(in *inproc, e *e2e, idle *idleRep) string {
	type bar struct {
		name  string
		value float64
	}
	var inBars []bar
	for _, name := range []string{"Floor", "Validate101", "Gobwas", "GobwasProtocol", "Gorilla", "Coder", "Naive",
		"RawFloor", "GobwasRaw", "GobwasRawProtocol",
		"WsgateHandler/subprotocol", "WsgateMiddleware/subprotocol", "Firefox/WsgateHandler", wsgateRaw} {
		if in.has(name) {
			inBars = append(inBars, bar{name, in.median(name, nsOf)})
		}
	}
	var cpuBars []bar
	if e != nil {
		for _, r := range e.Results {
			if r.Clients == 16 && r.CPU > 0 {
				cpuBars = append(cpuBars, bar{r.Case, r.CPU})
			}
		}
	}
	const width, label, barH, gap, head = 760, 230, 18, 6, 34
	var b strings.Builder
	panel := func(y int, title, unit string, bars []bar) int {
		fmt.Fprintf(&b, "<text x=\"10\" y=\"%d\" font-weight=\"bold\">%s</text>\n", y+20, title)
		y += head
		max := 0.0
		for _, br := range bars {
			if br.value > max {
				max = br.value
			}
		}
		for _, br := range bars {
			w := 1.0
			if max > 0 {
				w = (width - label - 90) * br.value / max
			}
			colour := "#8a9bb0"
			if strings.Contains(br.name, "Wsgate") {
				colour = "#2b6cb0"
			}
			fmt.Fprintf(&b, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%s</text>\n", label-8, y+barH-4, html.EscapeString(br.name))
			fmt.Fprintf(&b, "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\"/>\n", label, y, w, barH, colour)
			fmt.Fprintf(&b, "<text x=\"%.1f\" y=\"%d\">%.0f %s</text>\n", float64(label)+w+6, y+barH-4, br.value, unit)
			y += barH + gap
		}
		return y + 10
	}
	var body strings.Builder
	y := panel(0, "Cost per handshake, in process (median ns/op; lower is better)", "ns", inBars)
	if len(cpuBars) > 0 {
		y = panel(y, "Server CPU per handshake, loopback, 16 clients (median µs; lower is better)", "µs", cpuBars)
	}
	if idle != nil && len(idle.Results) > 0 {
		var memBars []bar
		for _, r := range idle.Results {
			memBars = append(memBars, bar{r.Case, r.HeapStack})
		}
		y = panel(y, fmt.Sprintf("Server heap + stack per idle connection, %d open (bytes; lower is better)", idle.N), "B", memBars)
	}
	body.WriteString(b.String())
	return fmt.Sprintf("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n"+
		"<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n%s</svg>\n", width, y, body.String())
}
