// Command idlemem measures the memory a server keeps per idle WebSocket
// connection, for each case of bench.IdleCases: the Go heap (HeapInuse and
// HeapAlloc) and the goroutine stacks (StackInuse), per connection, with -n
// connections open.
//
// Each case runs in a child process of its own (this program started again
// with -serve), so that cases share nothing and each has the whole file
// descriptor limit. The child serves the case on 127.0.0.1 and reports its
// runtime.MemStats after runtime.GC() before the first connection (the
// baseline). The parent then opens -n connections, each upgraded and then
// idle: the client sends nothing more, and the server's goroutine for the
// connection is blocked reading the next frame. When the child has counted
// every connection upgraded, it runs runtime.GC() again and reports its
// MemStats; per connection is (after − baseline) / n. Every wait is bounded
// by -timeout.
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
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wsgate/wsgate/bench"
)

func main() {
	serve := flag.String("serve", "", "serve this case (the child process; internal)")
	n := flag.Int("n", 10000, "idle connections per measurement")
	casesFlag := flag.String("cases", "", "comma-separated cases to measure (default: all of bench.IdleCases)")
	rounds := flag.Int("rounds", 1, "times every case is measured, each in a new process")
	dialers := flag.Int("dialers", 16, "connections opened concurrently")
	timeout := flag.Duration("timeout", 60*time.Second, "time bound of opening the connections, and of the server's counting them")
	jsonOut := flag.String("json", "", "write the results as JSON to this file")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("idlemem: ")

	if *serve != "" {
		if err := runServer(*serve); err != nil {
			log.Fatal(err)
		}
		return
	}
	if *n < 1 || *rounds < 1 || *dialers < 1 {
		log.Fatal("-n, -rounds and -dialers must be at least 1")
	}
	var ru syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &ru); err == nil && uint64(*n)+64 > ru.Cur {
		log.Fatalf("-n %d: the file descriptor limit is %d per process", *n, ru.Cur)
	}
	var names []string
	for _, c := range bench.IdleCases(new(bench.Idle)) {
		names = append(names, c.Name)
	}
	if *casesFlag != "" {
		names = strings.Split(*casesFlag, ",")
	}
	rep := &Report{GoVersion: runtime.Version(), N: *n, Rounds: *rounds}
	start := time.Now()
	for _, name := range names {
		r := &Result{Case: name, N: *n}
		for i := 0; i < *rounds; i++ {
			m, err := measure(name, *n, *dialers, *timeout)
			if err != nil {
				log.Fatalf("%s: %v", name, err)
			}
			r.Rounds = append(r.Rounds, m)
		}
		r.summarize()
		rep.Results = append(rep.Results, r)
		log.Printf("%-28s %6d conns: heap %7.0f B/conn (HeapAlloc %7.0f), stack %7.0f B/conn, heap+stack %7.0f B/conn, %.2f goroutines/conn",
			r.Case, r.N, r.Heap, r.HeapAlloc, r.Stack, r.HeapStack, r.Goroutines)
	}
	rep.Elapsed = time.Since(start).Round(time.Millisecond).String()
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); err != nil {
			log.Fatal(err)
		}
	}
}

// Mem is the part of a server's runtime.MemStats that is measured, read
// after runtime.GC().
type Mem struct {
	HeapInuse  uint64 `json:"heap_inuse"`
	HeapAlloc  uint64 `json:"heap_alloc"`
	StackInuse uint64 `json:"stack_inuse"`
	Goroutines int    `json:"goroutines"`
}

// Round is one measurement of one case: the server's memory before the
// first connection and with every connection open and idle.
type Round struct {
	Base  Mem `json:"base"`
	After Mem `json:"after"`
}

// Result is one case over all rounds. The per-connection values are the
// medians over rounds of (after − base) / N.
type Result struct {
	Case   string  `json:"case"`
	N      int     `json:"n"`
	Rounds []Round `json:"rounds"`
	// Heap is HeapInuse per connection: the heap spans the connections
	// keep, in bytes.
	Heap float64 `json:"heap_inuse_per_conn"`
	// HeapAlloc is the live heap objects per connection, in bytes.
	HeapAlloc float64 `json:"heap_alloc_per_conn"`
	// Stack is StackInuse per connection: the goroutine stacks, in bytes.
	Stack float64 `json:"stack_inuse_per_conn"`
	// HeapStack is Heap + Stack, per round, then the median.
	HeapStack float64 `json:"heap_stack_per_conn"`
	// Goroutines is the number of goroutines per connection.
	Goroutines float64 `json:"goroutines_per_conn"`
}

func (r *Result) summarize() {
	per := func(f func(Mem) float64) float64 {
		var v []float64
		for _, rd := range r.Rounds {
			v = append(v, (f(rd.After)-f(rd.Base))/float64(r.N))
		}
		return median(v)
	}
	r.Heap = per(func(m Mem) float64 { return float64(m.HeapInuse) })
	r.HeapAlloc = per(func(m Mem) float64 { return float64(m.HeapAlloc) })
	r.Stack = per(func(m Mem) float64 { return float64(m.StackInuse) })
	r.HeapStack = per(func(m Mem) float64 { return float64(m.HeapInuse + m.StackInuse) })
	r.Goroutines = per(func(m Mem) float64 { return float64(m.Goroutines) })
}

// Report is the whole run.
type Report struct {
	GoVersion string    `json:"go_version"`
	N         int       `json:"n"`
	Rounds    int       `json:"rounds"`
	Results   []*Result `json:"results"`
	Elapsed   string    `json:"elapsed"`
}

func readMem() Mem {
	// Twice: the second collection also frees what sync.Pools kept
	// through the first, which no connection keeps.
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return Mem{HeapInuse: ms.HeapInuse, HeapAlloc: ms.HeapAlloc, StackInuse: ms.StackInuse, Goroutines: runtime.NumGoroutine()}
}

func (m Mem) String() string {
	return fmt.Sprintf("%d %d %d %d", m.HeapInuse, m.HeapAlloc, m.StackInuse, m.Goroutines)
}

func parseMem(f []string) (Mem, error) {
	var m Mem
	if len(f) != 4 {
		return m, fmt.Errorf("bad memory line %q", f)
	}
	_, err := fmt.Sscan(strings.Join(f, " "), &m.HeapInuse, &m.HeapAlloc, &m.StackInuse, &m.Goroutines)
	return m, err
}

// runServer is the child: it serves one case, writes "addr ADDR" and "base
// MEM", then answers "wait N MILLIS" (wait at most MILLIS ms for N
// connections upgraded) with "mem UPGRADED ENDED MEM", until stdin closes.
func runServer(name string) error {
	idle := new(bench.Idle)
	var c *bench.Case
	for _, k := range bench.IdleCases(idle) {
		if k.Name == name {
			c = &k
		}
	}
	if c == nil {
		return fmt.Errorf("no idle case %q", name)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	srv := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	defer srv.Close()
	base := readMem()
	go c.ServeListener(ln, srv)
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintf(out, "addr %s\nbase %s\n", ln.Addr(), base)
	out.Flush()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var want, millis int64
		if _, err := fmt.Sscanf(in.Text(), "wait %d %d", &want, &millis); err != nil {
			continue
		}
		deadline := time.Now().Add(time.Duration(millis) * time.Millisecond)
		for idle.Upgraded() < want && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		m := readMem()
		fmt.Fprintf(out, "mem %d %d %s\n", idle.Upgraded(), idle.Ended(), m)
		out.Flush()
	}
	return nil
}

// child is one server process.
type child struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Scanner
	addr string
	base Mem
}

func startChild(name string, timeout time.Duration) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "-serve", name)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, in: in, out: bufio.NewScanner(stdout)}
	ready := make(chan error, 1)
	go func() {
		for c.out.Scan() {
			f := strings.Fields(c.out.Text())
			switch {
			case len(f) == 2 && f[0] == "addr":
				c.addr = f[1]
			case len(f) == 5 && f[0] == "base":
				base, err := parseMem(f[1:])
				c.base = base
				ready <- err
				return
			}
		}
		ready <- errors.New("server process ended before it was ready")
	}()
	select {
	case err = <-ready:
	case <-time.After(timeout):
		err = errors.New("server process not ready in time")
	}
	if err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

// wait asks the child to wait for n upgraded connections and returns what
// it counted and its memory.
func (c *child) wait(n int, timeout time.Duration) (upgraded, ended int64, m Mem, err error) {
	if _, err := fmt.Fprintf(c.in, "wait %d %d\n", n, timeout.Milliseconds()); err != nil {
		return 0, 0, m, err
	}
	type answer struct {
		f   []string
		err error
	}
	got := make(chan answer, 1)
	go func() {
		if !c.out.Scan() {
			got <- answer{err: errors.New("server process ended")}
			return
		}
		got <- answer{f: strings.Fields(c.out.Text())}
	}()
	select {
	case a := <-got:
		if a.err != nil {
			return 0, 0, m, a.err
		}
		if len(a.f) != 7 || a.f[0] != "mem" {
			return 0, 0, m, fmt.Errorf("bad answer %q", a.f)
		}
		fmt.Sscan(a.f[1], &upgraded)
		fmt.Sscan(a.f[2], &ended)
		m, err = parseMem(a.f[3:])
		return upgraded, ended, m, err
	case <-time.After(timeout + 30*time.Second): // the child's wait, then two collections
		return 0, 0, m, errors.New("no answer from the server process")
	}
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

// measure runs one round of one case: a new server, n idle connections, the
// server's memory, then every connection closed and the server stopped.
func measure(name string, n, dialers int, timeout time.Duration) (Round, error) {
	ch, err := startChild(name, timeout)
	if err != nil {
		return Round{}, err
	}
	defer ch.stop()
	var c bench.Case
	for _, k := range bench.IdleCases(new(bench.Idle)) {
		if k.Name == name {
			c = k
		}
	}
	wire := bench.WireRequest(c, ch.addr)
	conns := make([]net.Conn, 0, n)
	var mu sync.Mutex
	var firstErr error
	defer func() {
		for _, conn := range conns {
			conn.(*net.TCPConn).SetLinger(0) // a reset: no TIME_WAIT piles up
			conn.Close()
		}
	}()
	deadline := time.Now().Add(timeout)
	next := make(chan struct{}, n)
	for range n {
		next <- struct{}{}
	}
	close(next)
	var wg sync.WaitGroup
	for range dialers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				conn, err := open(ch.addr, wire, c.Protocol, deadline)
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				conns = append(conns, conn)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return Round{}, fmt.Errorf("after %d connections: %v", len(conns), firstErr)
	}
	upgraded, ended, after, err := ch.wait(n, time.Until(deadline)+5*time.Second)
	if err != nil {
		return Round{}, err
	}
	if upgraded != int64(n) || ended != 0 {
		return Round{}, fmt.Errorf("the server counted %d connections upgraded and %d ended, want %d and 0", upgraded, ended, n)
	}
	return Round{Base: ch.base, After: after}, nil
}

// open dials addr, sends wire, checks the 101 and returns the connection,
// left open and idle.
func open(addr string, wire []byte, protocol string, deadline time.Time) (net.Conn, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Until(deadline))
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(deadline)
	if _, err := conn.Write(wire); err != nil {
		conn.Close()
		return nil, err
	}
	var buf [1024]byte
	got := 0
	for !bytes.Contains(buf[:got], []byte("\r\n\r\n")) {
		if got == len(buf) {
			conn.Close()
			return nil, errors.New("answer head too long")
		}
		k, err := conn.Read(buf[got:])
		got += k
		if err != nil && !bytes.Contains(buf[:got], []byte("\r\n\r\n")) {
			conn.Close()
			return nil, fmt.Errorf("after %q: %v", buf[:got], err)
		}
	}
	if err := bench.CheckResponse(buf[:got], protocol); err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
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
