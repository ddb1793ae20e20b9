package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
	"github.com/gobwas/ws/wsutil"
	"github.com/wsgate/wsgate"
	"github.com/wsgate/wsgate/message"
)

// deflateAnswer is the gate's answer to an acceptable permessage-deflate
// offer: no context takeover in either direction.
const deflateAnswer = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

// deflateEcho greets with whether compression was negotiated, then echoes
// one message, compressed when it was.
func deflateEcho(ctx context.Context, s wsgate.Session[user]) {
	hello := fmt.Sprintf("%s compression=%t", s.Principal.Name, s.Compression)
	if message.Write(s.Conn, s.Compression, ws.OpText, []byte(hello)) != nil {
		return
	}
	msg, op, err := message.Read(s.Conn, s.Compression, 0)
	var perr ws.ProtocolError
	if errors.As(err, &perr) {
		_ = ws.WriteFrame(s.Conn, ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusProtocolError, string(perr))))
	}
	if err != nil {
		return
	}
	_ = message.Write(s.Conn, s.Compression, op, append([]byte("echo: "), msg...))
}

// compressedClientFrame returns p as a masked, compressed client frame.
func compressedClientFrame(t *testing.T, op ws.OpCode, p []byte) ws.Frame {
	t.Helper()
	f, err := wsflate.CompressFrame(ws.NewFrame(op, true, p))
	if err != nil {
		t.Fatal(err)
	}
	return ws.MaskFrameInPlace(f)
}

// readCompressed reads a server frame, requires the RSV1 bit and returns
// the inflated payload.
func readCompressed(t *testing.T, r io.Reader) string {
	t.Helper()
	f, err := readFrame(r)
	if err != nil {
		t.Fatal(err)
	}
	if f.Header.Masked {
		t.Error("server frames are not masked")
	}
	if !f.Header.Rsv1() {
		t.Fatalf("the server's message must carry RSV1; got %q", f.Payload)
	}
	f, err = wsflate.DecompressFrame(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(f.Payload)
}

func TestDeflateOverHTTP2(t *testing.T) {
	g := wsgate.New(wsgate.StaticToken(testToken, testPrincipal), wsgate.Config{Compression: true})
	srv, tr := newH2Server(t, g.Handler(deflateEcho))
	s := h2Connect(t, srv, tr, "/ws", "websocket", http.Header{
		"Authorization":            {"Bearer " + testToken},
		"Sec-Websocket-Extensions": {"permessage-deflate; client_max_window_bits"},
	})
	if s.resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", s.resp.StatusCode)
	}
	if got := s.resp.Header.Get("Sec-WebSocket-Extensions"); got != deflateAnswer {
		t.Errorf("Sec-WebSocket-Extensions %q, want %q", got, deflateAnswer)
	}
	if got := readCompressed(t, s); got != "alice compression=true" {
		t.Errorf("greeting %q, want %q", got, "alice compression=true")
	}
	f := compressedClientFrame(t, ws.OpBinary, []byte("over h2, deflated"))
	if err := ws.WriteFrame(s, f); err != nil {
		t.Fatal(err)
	}
	if got := readCompressed(t, s); got != "echo: over h2, deflated" {
		t.Errorf("echo %q, want %q", got, "echo: over h2, deflated")
	}
}

func TestDeflateBadOfferOverHTTP2IsDeclined(t *testing.T) {
	g := wsgate.New(wsgate.StaticToken(testToken, testPrincipal), wsgate.Config{Compression: true})
	srv, tr := newH2Server(t, g.Handler(deflateEcho))
	s := h2Connect(t, srv, tr, "/ws", "websocket", http.Header{
		"Authorization":            {"Bearer " + testToken},
		"Sec-Websocket-Extensions": {"permessage-deflate; server_max_window_bits=7"},
	})
	if s.resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200: a bad offer never fails the handshake", s.resp.StatusCode)
	}
	if got := s.resp.Header.Get("Sec-WebSocket-Extensions"); got != "" {
		t.Errorf("Sec-WebSocket-Extensions %q, want none", got)
	}
	msg, _, err := wsutil.ReadServerData(s)
	if err != nil {
		t.Fatal(err)
	}
	if string(msg) != "alice compression=false" {
		t.Errorf("greeting %q, want %q", msg, "alice compression=false")
	}
}
