package bench

import (
	"bufio"
	"io"
	"log"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestIdleCases serves every idle case on loopback: a connection is
// upgraded with a valid 101, counted upgraded, held while the client is
// silent, and counted ended once the client closes it.
func TestIdleCases(t *testing.T) {
	idle := new(Idle)
	for i, c := range IdleCases(idle) {
		t.Run(c.Name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
			go c.ServeListener(ln, srv)
			defer func() { srv.Close(); ln.Close() }()
			conn, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := conn.Write(WireRequest(c, ln.Addr().String())); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(conn)
			var head []byte
			for len(head) < 4 || string(head[len(head)-4:]) != "\r\n\r\n" {
				line, err := br.ReadSlice('\n')
				if err != nil {
					t.Fatalf("after %q: %v", head, err)
				}
				head = append(head, line...)
			}
			if err := CheckResponse(head, c.Protocol); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "upgraded", func() bool { return idle.Upgraded() == int64(i+1) })
			if idle.Ended() != int64(i) {
				t.Fatalf("%d ended while the client is connected, want %d", idle.Ended(), i)
			}
			conn.Close()
			waitFor(t, "ended", func() bool { return idle.Ended() == int64(i+1) })
		})
	}
}

// waitFor polls cond for at most 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not %s within 10 s", what)
		}
	}
}
