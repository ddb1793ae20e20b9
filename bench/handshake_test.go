package bench

import (
	"net/http"
	"strings"
	"testing"
)

// TestCases checks that every case answers its request with a valid 101
// (the right Sec-WebSocket-Accept and protocol echo) and closes the
// connection, again after a reset, so that no benchmark measures a refusal.
func TestCases(t *testing.T) {
	for _, c := range Cases() {
		t.Run(c.Name, func(t *testing.T) {
			if c.Raw() {
				wire := WireRequest(c, Host)
				conn := &MemConn{}
				for i := 0; i < 3; i++ {
					conn.Reset(wire)
					c.Conn(conn)
					if err := CheckResponse(conn.Out(), c.Protocol); err != nil {
						t.Fatalf("round %d: %v", i, err)
					}
					if !conn.Closed() {
						t.Fatalf("round %d: connection left open", i)
					}
				}
				return
			}
			q := NewRequest(c, Host)
			w := NewHijackWriter()
			for i := 0; i < 3; i++ {
				w.Reset()
				q.Reset()
				c.Handler.ServeHTTP(w, q.R)
				if !w.Hijacked() {
					t.Fatalf("round %d: not upgraded: %q", i, w.Response())
				}
				if err := CheckResponse(w.Out(), c.Protocol); err != nil {
					t.Fatalf("round %d: %v", i, err)
				}
				if !w.Closed() {
					t.Fatalf("round %d: connection left open", i)
				}
			}
		})
	}
}

// TestCasesAuthenticate checks that the authenticated cases do verify the
// credential: the same request with a wrong token is refused with 401, by
// net/http cases without a hijack, by raw cases with a 401 on the
// connection.
func TestCasesAuthenticate(t *testing.T) {
	n := 0
	for _, c := range Cases() {
		if c.Name != "Naive" && !strings.HasPrefix(c.Name, "Wsgate") {
			continue
		}
		n++
		t.Run(c.Name, func(t *testing.T) {
			wrong := c
			if c.Name == "Naive" {
				wrong.Header = []string{"Authorization", "Bearer wrong-" + Token, "Sec-WebSocket-Protocol", Protocol}
			} else {
				way := c.Name[strings.IndexByte(c.Name, '/')+1:]
				if strings.HasPrefix(c.Name, "WsgateExtractors/") {
					way = "subprotocol"
				}
				for _, w := range WaysFor("wrong-" + Token) {
					if w.Name == way {
						wrong.Target, wrong.Header = w.Target, w.Header
					}
				}
			}
			if wrong.Target == c.Target && strings.Join(wrong.Header, "") == strings.Join(c.Header, "") {
				t.Fatal("no wrong request for this case")
			}
			if c.Raw() {
				conn := &MemConn{}
				conn.Reset(WireRequest(wrong, Host))
				c.Conn(conn)
				if !strings.HasPrefix(string(conn.Out()), "HTTP/1.1 401 ") {
					t.Fatalf("wrong token: answer %q", conn.Out())
				}
				return
			}
			q := NewRequest(wrong, Host)
			w := NewHijackWriter()
			c.Handler.ServeHTTP(w, q.R)
			if w.Hijacked() || w.Status() != http.StatusUnauthorized {
				t.Fatalf("wrong token: hijacked %v, answer %q", w.Hijacked(), w.Response())
			}
		})
	}
	// Naive and the 14 net/http wsgate cases at least; raw wsgate cases
	// come on top.
	if n < 15 {
		t.Fatalf("%d authenticated cases, want at least 15", n)
	}
}

// BenchmarkHandshake runs each case's whole handshake per iteration on the
// in-memory writer: the request is prepared once and restored after each
// handshake. A raw case reads the request's bytes from a MemConn reset to
// them before each handshake.
func BenchmarkHandshake(b *testing.B) {
	for _, c := range Cases() {
		b.Run(c.Name, func(b *testing.B) {
			if c.Raw() {
				wire := WireRequest(c, Host)
				conn := &MemConn{}
				conn.out.Grow(4096)
				serve := c.Conn
				b.ReportAllocs()
				for b.Loop() {
					conn.Reset(wire)
					serve(conn)
					if !conn.Closed() {
						b.Fatalf("connection left open: %q", conn.Out())
					}
				}
				if err := CheckResponse(conn.Out(), c.Protocol); err != nil {
					b.Fatal(err)
				}
				return
			}
			q := NewRequest(c, Host)
			w := NewHijackWriter()
			h := c.Handler
			b.ReportAllocs()
			for b.Loop() {
				w.Reset()
				q.Reset()
				h.ServeHTTP(w, q.R)
				if !w.Hijacked() {
					b.Fatalf("not upgraded: %q", w.Response())
				}
			}
			if err := CheckResponse(w.Out(), c.Protocol); err != nil {
				b.Fatal(err)
			}
		})
	}
}
