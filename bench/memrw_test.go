package bench

import (
	"net/http"
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
