package bench

import (
	"net/http"
	"strings"
	"testing"
)

// TestHijackWriterAllocatesNothing proves that the in-memory writer costs no
// allocation per handshake: hijack, write a 101, close and reset.
func TestHijackWriterAllocatesNothing(t *testing.T) {
	w := NewHijackWriter()
	allocs := testing.AllocsPerRun(1000, func() {
		w.Reset()
		conn, brw, err := w.Hijack()
		if err != nil {
			t.Fatal(err)
		}
		write101(brw.Writer, Key, Protocol)
		conn.Close()
	})
	if allocs != 0 {
		t.Fatalf("hijack, 101 and reset: %v allocations, want 0", allocs)
	}
	if err := CheckResponse(w.Out(), Protocol); err != nil {
		t.Fatal(err)
	}
}

// TestHijackWriterHeadAllocatesNothing covers the other way to answer: the
// status and headers set on the ResponseWriter, written when hijacked (as
// coder does it), with header slices the caller already has.
func TestHijackWriterHeadAllocatesNothing(t *testing.T) {
	w := NewHijackWriter()
	up, conn, acc := []string{"websocket"}, []string{"Upgrade"}, []string{"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="}
	allocs := testing.AllocsPerRun(1000, func() {
		w.Reset()
		h := w.Header()
		h["Upgrade"], h["Connection"], h["Sec-Websocket-Accept"] = up, conn, acc
		w.WriteHeader(http.StatusSwitchingProtocols)
		c, _, err := w.Hijack()
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	})
	if allocs != 0 {
		t.Fatalf("header, 101, hijack and reset: %v allocations, want 0", allocs)
	}
	if err := CheckResponse(w.Out(), ""); err != nil {
		t.Fatal(err)
	}
}

// TestFloorAllocatesNothing: the floor case measures nothing but the writer
// and the handler call.
func TestFloorAllocatesNothing(t *testing.T) {
	w := NewHijackWriter()
	q := NewRequest(Cases()[0], Host)
	h := http.HandlerFunc(Floor)
	allocs := testing.AllocsPerRun(1000, func() {
		w.Reset()
		q.Reset()
		h.ServeHTTP(w, q.R)
	})
	if allocs != 0 {
		t.Fatalf("Floor: %v allocations, want 0", allocs)
	}
}

// TestMemConnAllocatesNothing: a raw case measures its own allocations
// only: reset, read the request, write and close cost nothing.
func TestMemConnAllocatesNothing(t *testing.T) {
	wire := WireRequest(Cases()[0], Host)
	c := &MemConn{}
	c.out.Grow(4096)
	var buf [64]byte
	allocs := testing.AllocsPerRun(1000, func() {
		c.Reset(wire)
		for {
			if _, err := c.Read(buf[:]); err != nil {
				break
			}
		}
		c.Write(wire)
		c.Close()
	})
	if allocs != 0 {
		t.Fatalf("reset, read, write and close: %v allocations, want 0", allocs)
	}
}

// TestRawFloorAllocatesNothing: the raw floor's buffers are pooled, so the
// raw path's floor is zero allocations in process.
func TestRawFloorAllocatesNothing(t *testing.T) {
	c := Case{Target: "/ws", Header: []string{"Sec-WebSocket-Protocol", Protocol}}
	wire := WireRequest(c, Host)
	conn := &MemConn{}
	conn.out.Grow(4096)
	RawFloor(conn) // fill the pool
	allocs := testing.AllocsPerRun(1000, func() {
		conn.Reset(wire)
		RawFloor(conn)
	})
	if allocs != 0 {
		t.Fatalf("RawFloor: %v allocations, want 0", allocs)
	}
	if err := CheckResponse(conn.Out(), Protocol); err != nil {
		t.Fatal(err)
	}
}

// TestRawFloorBounds: a request longer than RawRequestMax is answered 431,
// one without a key 400, and neither is upgraded.
func TestRawFloorBounds(t *testing.T) {
	for _, tc := range []struct {
		name string
		wire string
		want string
	}{
		{
			name: "too large",
			wire: "GET /ws HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("a", RawRequestMax) + "\r\n\r\n",
			want: "HTTP/1.1 431 ",
		},
		{
			name: "no key",
			wire: "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n",
			want: "HTTP/1.1 400 ",
		},
		{
			name: "key name in any case",
			wire: "GET /ws HTTP/1.1\r\nhost: x\r\nsec-websocket-key:  " + Key + " \r\n\r\n",
			want: "HTTP/1.1 101 ",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := &MemConn{}
			conn.Reset([]byte(tc.wire))
			RawFloor(conn)
			if !strings.HasPrefix(string(conn.Out()), tc.want) || !conn.Closed() {
				t.Fatalf("answer %q, closed %v; want %q…", conn.Out(), conn.Closed(), tc.want)
			}
		})
	}
}

func TestHijackWriterPlainAnswer(t *testing.T) {
	w := NewHijackWriter()
	http.Error(w, "nope", http.StatusUnauthorized)
	if w.Hijacked() || w.Status() != http.StatusUnauthorized || string(w.Body()) != "nope\n" {
		t.Fatalf("hijacked %v, status %d, body %q", w.Hijacked(), w.Status(), w.Body())
	}
	if _, _, err := w.Hijack(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.Hijack(); err != http.ErrHijacked {
		t.Fatalf("second hijack: %v", err)
	}
	w.Reset()
	if w.Hijacked() || w.Status() != 0 || len(w.Out()) != 0 || len(w.Body()) != 0 || len(w.Header()) != 0 {
		t.Fatal("Reset left state behind")
	}
}
