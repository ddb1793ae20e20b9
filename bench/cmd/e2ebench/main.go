// Command e2ebench measures WebSocket opening handshakes end to end over
// loopback TCP: handshakes per second, p50 and p99 latency, and the
// server's allocations per handshake, for each case of bench.E2ECases at
// several numbers of concurrent clients.
//
// The servers run in a child process (this program started again with
// -serve), one server per case on 127.0.0.1 (net/http for a handler case,
// the case's own accept loop for a raw one), so that the clients' work does
// not count in the server's allocations. The parent asks the child
// for runtime.MemStats over the child's stdin and stdout before and after
// each measurement. Each client handshake dials, sends the request, reads
// the 101 and closes. Every measurement is bounded in count (-n) and time
// (-timeout); rounds (-rounds) repeat all measurements, in a rotated order,
// and the ratio to the floor is taken within each round.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wsgate/wsgate/bench"
)

func main() {
	serve := flag.Bool("serve", false, "run the servers (the child process; internal)")
	n := flag.Int("n", 2000, "handshakes per measurement")
	clientsFlag := flag.String("clients", "1,16,64", "comma-separated numbers of concurrent clients")
	rounds := flag.Int("rounds", 3, "times every measurement is repeated")
	warmup := flag.Int("warmup", 200, "handshakes per case before the first round")
	timeout := flag.Duration("timeout", 20*time.Second, "time bound of one measurement")
	jsonOut := flag.String("json", "", "write the results as JSON to this file")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("e2ebench: ")

	if *serve {
		runServers()
		return
	}
	var levels []int
	for _, s := range strings.Split(*clientsFlag, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || c < 1 {
			log.Fatalf("bad -clients %q", *clientsFlag)
		}
		levels = append(levels, c)
	}
	if *n < 1 || *rounds < 1 {
		log.Fatal("-n and -rounds must be at least 1")
	}
	res, err := run(levels, *n, *rounds, *warmup, *timeout)
	if err != nil {
		log.Fatal(err)
	}
	printTable(os.Stdout, res)
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); err != nil {
			log.Fatal(err)
		}
	}
}

// runServers is the child: one server per case, addresses on stdout, then
// "stats" answered with the allocation counters until stdin closes.
func runServers() {
	out := bufio.NewWriter(os.Stdout)
	var servers []*http.Server
	var listeners []net.Listener
	for _, c := range bench.E2ECases() {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			log.Fatal(err)
		}
		srv := &http.Server{
			ReadHeaderTimeout: 5 * time.Second,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          log.New(io.Discard, "", 0),
		}
		servers = append(servers, srv)
		listeners = append(listeners, ln)
		go c.ServeListener(ln, srv)
		fmt.Fprintf(out, "addr %s %s\n", c.Name, ln.Addr())
	}
	fmt.Fprintln(out, "ready")
	out.Flush()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() != "stats" {
			continue
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Fprintf(out, "stats %d %d %d\n", ms.Mallocs, ms.TotalAlloc, cpuMicros())
		out.Flush()
	}
	for _, s := range servers {
		s.Close()
	}
	for _, ln := range listeners {
		ln.Close()
	}
}

// child is the server process.
type child struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func startChild() (*child, map[string]string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(exe, "-serve")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	c := &child{cmd: cmd, in: in, out: bufio.NewScanner(stdout)}
	addrs := make(map[string]string)
	for c.out.Scan() {
		f := strings.Fields(c.out.Text())
		if len(f) == 1 && f[0] == "ready" {
			return c, addrs, nil
		}
		if len(f) == 3 && f[0] == "addr" {
			addrs[f[1]] = f[2]
		}
	}
	c.stop()
	return nil, nil, errors.New("server process ended before it was ready")
}

// cpuMicros is the CPU time (user and system) this process has used, in
// microseconds.
func cpuMicros() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Utime.Nano()/1000 + ru.Stime.Nano()/1000
}

// stats returns the child's cumulative mallocs, allocated bytes and CPU
// time in microseconds.
func (c *child) stats() (mallocs, bytes, cpu uint64, err error) {
	if _, err := io.WriteString(c.in, "stats\n"); err != nil {
		return 0, 0, 0, err
	}
	if !c.out.Scan() {
		return 0, 0, 0, errors.New("server process ended")
	}
	_, err = fmt.Sscanf(c.out.Text(), "stats %d %d %d", &mallocs, &bytes, &cpu)
	return mallocs, bytes, cpu, err
}

func (c *child) stop() {
	c.in.Close()
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}

// Result is one case at one number of clients, over all rounds.
type Result struct {
	Case    string `json:"case"`
	Clients int    `json:"clients"`
	// Handshakes is the number of handshakes of each round.
	Handshakes []int `json:"handshakes"`
	// PerSec is handshakes per second, per round.
	PerSec []float64 `json:"per_sec"`
	// MedianPerSec is the median of PerSec.
	MedianPerSec float64 `json:"median_per_sec"`
	// RatioFloor is the median over rounds of PerSec divided by the
	// floor's PerSec in the same round (0 without a floor). RatioRawFloor
	// is the same against RawFloor.
	RatioFloor    float64 `json:"ratio_floor"`
	RatioRawFloor float64 `json:"ratio_raw_floor"`
	// P50 and P99 are latency percentiles over every round's handshakes,
	// in microseconds.
	P50 float64 `json:"p50_us"`
	P99 float64 `json:"p99_us"`
	// Mallocs and Bytes are the server's allocations (count and bytes)
	// per handshake, median over rounds.
	Mallocs float64 `json:"server_mallocs_per_handshake"`
	Bytes   float64 `json:"server_bytes_per_handshake"`
	// CPU is the server process's CPU time (user and system, from
	// getrusage) per handshake in microseconds, the median over rounds.
	CPU float64 `json:"server_cpu_us_per_handshake"`
	// CPURatioFloor and CPURatioRawFloor are the medians over rounds of
	// CPU divided by Floor's and by RawFloor's in the same round.
	CPURatioFloor    float64 `json:"server_cpu_ratio_floor"`
	CPURatioRawFloor float64 `json:"server_cpu_ratio_raw_floor"`
	// CPURounds, MallocsRounds and BytesRounds are the per-round values
	// CPU, Mallocs and Bytes are the medians of, in round order, so that
	// any two cases can be compared within rounds.
	CPURounds     []float64 `json:"server_cpu_us_per_handshake_rounds"`
	MallocsRounds []float64 `json:"server_mallocs_per_handshake_rounds"`
	BytesRounds   []float64 `json:"server_bytes_per_handshake_rounds"`

	lat []time.Duration
}

// Report is the whole run.
type Report struct {
	GoVersion  string    `json:"go_version"`
	GOMAXPROCS int       `json:"gomaxprocs"`
	NumCPU     int       `json:"num_cpu"`
	N          int       `json:"n"`
	Rounds     int       `json:"rounds"`
	Clients    []int     `json:"clients"`
	Results    []*Result `json:"results"`
	Errors     int       `json:"errors"`
	Elapsed    string    `json:"elapsed"`
}

func run(levels []int, n, rounds, warmup int, timeout time.Duration) (*Report, error) {
	start := time.Now()
	ch, addrs, err := startChild()
	if err != nil {
		return nil, err
	}
	defer ch.stop()
	cases := bench.E2ECases()
	wires := make(map[string][]byte)
	for _, c := range cases {
		addr, ok := addrs[c.Name]
		if !ok {
			return nil, fmt.Errorf("no server for %s", c.Name)
		}
		wires[c.Name] = bench.WireRequest(c, addr)
		// The first handshake is checked in full, the rest by status.
		if err := checkOnce(addr, wires[c.Name], c.Protocol); err != nil {
			return nil, fmt.Errorf("%s: %v", c.Name, err)
		}
		if _, err := measure(addr, wires[c.Name], 4, warmup, timeout); err != nil {
			return nil, fmt.Errorf("%s warm-up: %v", c.Name, err)
		}
	}
	rep := &Report{GoVersion: runtime.Version(), GOMAXPROCS: runtime.GOMAXPROCS(0), NumCPU: runtime.NumCPU(),
		N: n, Rounds: rounds, Clients: levels}
	byKey := make(map[string]*Result)
	for _, lv := range levels {
		for _, c := range cases {
			r := &Result{Case: c.Name, Clients: lv}
			byKey[fmt.Sprint(c.Name, lv)] = r
			rep.Results = append(rep.Results, r)
		}
	}
	for round := 0; round < rounds; round++ {
		for _, lv := range levels {
			for i := range cases {
				c := cases[(i+round)%len(cases)] // rotate the order each round
				r := byKey[fmt.Sprint(c.Name, lv)]
				runtime.GC()
				m0, b0, c0, err := ch.stats()
				if err != nil {
					return nil, err
				}
				mr, err := measure(addrs[c.Name], wires[c.Name], lv, n, timeout)
				if err != nil {
					return nil, fmt.Errorf("%s, %d clients: %v", c.Name, lv, err)
				}
				m1, b1, c1, err := ch.stats()
				if err != nil {
					return nil, err
				}
				rep.Errors += mr.errors
				r.Handshakes = append(r.Handshakes, mr.done)
				r.PerSec = append(r.PerSec, float64(mr.done)/mr.elapsed.Seconds())
				r.lat = append(r.lat, mr.lat...)
				r.MallocsRounds = append(r.MallocsRounds, float64(m1-m0)/float64(mr.done))
				r.BytesRounds = append(r.BytesRounds, float64(b1-b0)/float64(mr.done))
				r.CPURounds = append(r.CPURounds, float64(c1-c0)/float64(mr.done))
			}
		}
	}
	for _, lv := range levels {
		floor, rawFloor := byKey[fmt.Sprint("Floor", lv)], byKey[fmt.Sprint("RawFloor", lv)]
		for _, c := range cases {
			r := byKey[fmt.Sprint(c.Name, lv)]
			r.MedianPerSec = median(r.PerSec)
			r.Mallocs, r.Bytes, r.CPU = median(r.MallocsRounds), median(r.BytesRounds), median(r.CPURounds)
			sort.Slice(r.lat, func(i, j int) bool { return r.lat[i] < r.lat[j] })
			r.P50 = us(percentile(r.lat, 0.50))
			r.P99 = us(percentile(r.lat, 0.99))
			if floor != nil {
				r.RatioFloor = ratio(r.PerSec, floor.PerSec)
				r.CPURatioFloor = ratio(r.CPURounds, floor.CPURounds)
			}
			if rawFloor != nil {
				r.RatioRawFloor = ratio(r.PerSec, rawFloor.PerSec)
				r.CPURatioRawFloor = ratio(r.CPURounds, rawFloor.CPURounds)
			}
		}
	}
	rep.Elapsed = time.Since(start).Round(time.Millisecond).String()
	if rep.Errors > 0 {
		return rep, fmt.Errorf("%d handshakes failed", rep.Errors)
	}
	return rep, nil
}

type measurement struct {
	done    int
	errors  int
	elapsed time.Duration
	lat     []time.Duration
}

// measure runs n handshakes against addr from clients goroutines, stopping
// early at timeout. A failed handshake is counted and ends its client.
func measure(addr string, wire []byte, clients, n int, timeout time.Duration) (measurement, error) {
	var next atomic.Int64
	var failed atomic.Int64
	var firstErr atomic.Value
	lats := make([][]time.Duration, clients)
	deadline := time.Now().Add(timeout)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < clients; w++ {
		lats[w] = make([]time.Duration, 0, n/clients+1)
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			buf := make([]byte, 1024)
			for next.Add(1) <= int64(n) && time.Now().Before(deadline) {
				t0 := time.Now()
				if err := handshake(addr, wire, buf, deadline); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					return
				}
				lats[w] = append(lats[w], time.Since(t0))
			}
		}(w)
	}
	wg.Wait()
	m := measurement{elapsed: time.Since(start), errors: int(failed.Load())}
	for _, l := range lats {
		m.lat = append(m.lat, l...)
	}
	m.done = len(m.lat)
	if m.done == 0 {
		err, _ := firstErr.Load().(error)
		return m, fmt.Errorf("no handshake completed (%v)", err)
	}
	if err, ok := firstErr.Load().(error); ok {
		log.Printf("%s: %d failed handshakes, first: %v", addr, m.errors, err)
	}
	return m, nil
}

var head101 = []byte("HTTP/1.1 101 ")

// handshake dials addr, sends wire, reads the answer's head, checks that it
// is a 101 and closes (with a reset, so the client leaves no TIME_WAIT).
func handshake(addr string, wire, buf []byte, deadline time.Time) error {
	conn, err := net.DialTimeout("tcp", addr, time.Until(deadline))
	if err != nil {
		return err
	}
	defer func() {
		conn.(*net.TCPConn).SetLinger(0)
		conn.Close()
	}()
	conn.SetDeadline(deadline)
	if _, err := conn.Write(wire); err != nil {
		return err
	}
	got := 0
	for {
		k, err := conn.Read(buf[got:])
		got += k
		if bytes.Contains(buf[:got], []byte("\r\n\r\n")) {
			break
		}
		if err != nil {
			return fmt.Errorf("after %q: %v", buf[:got], err)
		}
		if got == len(buf) {
			return errors.New("answer head too long")
		}
	}
	if !bytes.HasPrefix(buf[:got], head101) {
		return fmt.Errorf("not a 101: %q", buf[:got])
	}
	return nil
}

// checkOnce does one handshake and checks the whole answer.
func checkOnce(addr string, wire []byte, protocol string) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write(wire); err != nil {
		return err
	}
	resp, err := io.ReadAll(conn) // every case closes after the 101
	if err != nil && len(resp) == 0 {
		return err
	}
	return bench.CheckResponse(resp, protocol)
}

// ratio is the median over rounds of a's value divided by b's in the same
// round.
func ratio(a, b []float64) float64 {
	v := make([]float64, 0, len(a))
	for i := range min(len(a), len(b)) {
		if b[i] > 0 {
			v = append(v, a[i]/b[i])
		}
	}
	return median(v)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.5) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return sorted[i]
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func printTable(w io.Writer, rep *Report) {
	fmt.Fprintf(w, "%-30s %7s %12s %9s %9s %9s %9s %9s %9s %12s %12s\n", "case", "clients", "handshake/s", "x floor", "x raw", "p50 µs", "p99 µs",
		"cpu µs", "cpu x raw", "mallocs/hs", "bytes/hs")
	for _, r := range rep.Results {
		fmt.Fprintf(w, "%-30s %7d %12.0f %9.3f %9.3f %9.1f %9.1f %9.1f %9.3f %12.1f %12.0f\n", r.Case, r.Clients, r.MedianPerSec, r.RatioFloor, r.RatioRawFloor,
			r.P50, r.P99, r.CPU, r.CPURatioRawFloor, r.Mallocs, r.Bytes)
	}
	fmt.Fprintf(w, "%d rounds of %d handshakes per case and level, %s, GOMAXPROCS %d, %d failed, %s\n",
		rep.Rounds, rep.N, rep.GoVersion, rep.GOMAXPROCS, rep.Errors, rep.Elapsed)
}
