package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/wsgate/wsgate"
	"github.com/wsgate/wsgate/message"
)

// bigSize is the size of the message the compression page sends: 64 KiB of
// a repeated phrase, which deflates to a few hundred bytes.
const bigSize = 64 << 10

// bigMessage is the message the compression page builds (deflatePageHTML
// spells out the same phrase and size).
var bigMessage = strings.Repeat("compress me ", bigSize/12+1)[:bigSize]

const deflatePageHTML = `<!doctype html>
<html><head><meta charset="utf-8"><title>wsgate e2e compression</title></head>
<body><p>wsgate e2e compression page</p>
<script>
// roundTrip opens a WebSocket, sends one 64 KiB compressible text message,
// waits for it to come back, closes, and resolves with what it saw.
window.roundTrip = function (url, protocols, timeoutMs) {
  return new Promise(function (resolve) {
    var r = {opened: false, protocol: "", extensions: "", sent: 0, received: 0, intact: false, error: false, closeCode: 0, timedOut: false};
    var done = false;
    function finish() { if (!done) { done = true; resolve(r); } }
    setTimeout(function () { r.timedOut = true; finish(); }, timeoutMs);
    var msg = "compress me ".repeat(Math.ceil(65536 / 12)).slice(0, 65536);
    var ws = new WebSocket(url, protocols);
    ws.onopen = function () {
      r.opened = true; r.protocol = ws.protocol; r.extensions = ws.extensions;
      ws.send(msg); r.sent = msg.length;
    };
    ws.onmessage = function (m) {
      r.received = m.data.length; r.intact = m.data === msg;
      ws.close(1000, "done");
    };
    ws.onerror = function () { r.error = true; };
    ws.onclose = function (c) { r.closeCode = c.code; finish(); };
  });
};
</script></body></html>
`

// deflateResult is what the compression page saw.
type deflateResult struct {
	Opened     bool   `json:"opened"`
	Protocol   string `json:"protocol"`
	Extensions string `json:"extensions"`
	Sent       int    `json:"sent"`
	Received   int    `json:"received"`
	Intact     bool   `json:"intact"`
	Error      bool   `json:"error"`
	CloseCode  int    `json:"closeCode"`
	TimedOut   bool   `json:"timedOut"`
}

// deflateSession is what the server saw of one compression session.
type deflateSession struct {
	ProtoMajor  int
	Method      string
	Principal   user
	Protocol    string
	Compression bool
	Intact      bool  // the message read was bigMessage, as text
	In, Out     int64 // bytes of the message as read from and written to the wire
	Err         error
}

// countingConn counts the bytes read from and written to a connection.
type countingConn struct {
	net.Conn
	in, out atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(int64(n))
	return n, err
}

// deflateServer serves the compression page, and /on/<case> and
// /off/<case>: gates with and without Compression that read one message
// with message.Read and write it back with message.Write.
type deflateServer struct {
	mu       sync.Mutex
	sessions map[string]deflateSession
}

func (d *deflateServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/page", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprint(w, deflatePageHTML)
	})
	for _, on := range []bool{true, false} {
		g := wsgate.New(wsgate.StaticToken(testToken, testPrincipal), wsgate.Config{
			Protocols:   []string{appProtocol},
			Extractors:  []wsgate.Extractor{wsgate.Subprotocol("access_token")},
			Compression: on,
		})
		prefix := "/off/"
		if on {
			prefix = "/on/"
		}
		mux.Handle(prefix, g.Handler(func(ctx context.Context, s wsgate.Session[user]) {
			d.serve(s.Request.URL.Path, s)
		}))
	}
	return mux
}

// serve runs one session and records it under id.
func (d *deflateServer) serve(id string, s wsgate.Session[user]) {
	c := &countingConn{Conn: s.Conn}
	e := deflateSession{ProtoMajor: s.Request.ProtoMajor, Method: s.Request.Method, Principal: s.Principal,
		Protocol: s.Protocol, Compression: s.Compression}
	defer func() {
		d.mu.Lock()
		d.sessions[id] = e
		d.mu.Unlock()
		// Answer the page's close.
		_, _, _ = message.Read(s.Conn, s.Compression, 0)
	}()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	msg, op, err := message.Read(c, s.Compression, bigSize)
	e.In = c.in.Load()
	if err != nil {
		e.Err = err
		return
	}
	e.Intact = op == ws.OpText && string(msg) == bigMessage
	e.Err = message.Write(c, s.Compression, op, msg)
	e.Out = c.out.Load()
}

// session waits for the record of the session at path.
func (d *deflateServer) session(t *testing.T, path string) deflateSession {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		d.mu.Lock()
		e, ok := d.sessions[path]
		d.mu.Unlock()
		if ok {
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("no session recorded for %s", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDeflateBrowser has Chromium negotiate permessage-deflate with a gate
// that enables it, over ws:// (HTTP/1.1) and over wss:// (HTTP/2 extended
// CONNECT), and send a 64 KiB compressible message that the server reads
// with message.Read and writes back, compressed, with
// message.Write. Against a gate without Compression, nothing is
// negotiated and the same message goes through uncompressed.
func TestDeflateBrowser(t *testing.T) {
	bctx := startChromiumTLS(t)
	d := &deflateServer{sessions: map[string]deflateSession{}}
	h := d.handler()

	h1 := httptest.NewServer(h)
	t.Cleanup(h1.Close)
	h2, _ := newTLSServer(t, h, nil)

	transports := []struct {
		name       string
		page       string // the page's origin
		ws         string // its WebSocket origin
		hop        string // the protocol the page must come over
		protoMajor int    // the handshake's HTTP version
		method     string
	}{
		{"ws over HTTP/1.1", h1.URL, "ws" + strings.TrimPrefix(h1.URL, "http"), "http/1.1", 1, http.MethodGet},
		{"wss over HTTP/2", h2.URL, "wss" + strings.TrimPrefix(h2.URL, "https"), "h2", 2, http.MethodConnect},
	}
	for _, tr := range transports {
		for _, on := range []bool{true, false} {
			name, path := tr.name+" compression on", "/on/"
			if !on {
				name, path = tr.name+" compression off", "/off/"
			}
			id := fmt.Sprintf("h%d", tr.protoMajor)
			t.Run(name, func(t *testing.T) {
				ctx, hop := loadPage(t, bctx, tr.page+"/page")
				if hop != tr.hop {
					t.Errorf("the page came over %q, want %q", hop, tr.hop)
				}
				url := tr.ws + path + id
				r := evalPage[deflateResult](t, ctx,
					fmt.Sprintf("roundTrip(%q, %s, 15000)", url, jsList("access_token", testToken, appProtocol)))
				s := d.session(t, path+id)
				t.Logf("page: %+v; server: %+v", r, s)

				if !r.Opened || r.Error || r.TimedOut || r.CloseCode != 1000 || r.Protocol != appProtocol {
					t.Errorf("page saw %+v; want open with protocol %q and close 1000", r, appProtocol)
				}
				if r.Sent != bigSize || r.Received != bigSize || !r.Intact {
					t.Errorf("page sent %d and received %d characters, intact=%v; want %d both ways, intact", r.Sent, r.Received, r.Intact, bigSize)
				}
				if s.ProtoMajor != tr.protoMajor || s.Method != tr.method {
					t.Errorf("the handshake arrived as %s over HTTP/%d, want %s over HTTP/%d", s.Method, s.ProtoMajor, tr.method, tr.protoMajor)
				}
				if s.Principal != testPrincipal || s.Protocol != appProtocol {
					t.Errorf("session had principal %+v, protocol %q", s.Principal, s.Protocol)
				}
				if s.Err != nil || !s.Intact {
					t.Errorf("server: intact=%v, error %v", s.Intact, s.Err)
				}
				if on {
					if !strings.Contains(r.Extensions, "permessage-deflate") || !s.Compression {
						t.Errorf("ws.extensions %q, session compression %v; want permessage-deflate negotiated", r.Extensions, s.Compression)
					}
					// 64 KiB of one phrase deflates to a few hundred bytes:
					// both directions must have been compressed on the wire.
					if s.In >= bigSize/16 || s.Out >= bigSize/16 {
						t.Errorf("the message took %d bytes from the page and %d back; want each under %d (compressed)", s.In, s.Out, bigSize/16)
					}
					return
				}
				if r.Extensions != "" || s.Compression {
					t.Errorf("ws.extensions %q, session compression %v; want nothing negotiated", r.Extensions, s.Compression)
				}
				if s.In < bigSize || s.Out < bigSize {
					t.Errorf("the message took %d bytes from the page and %d back; want at least %d each (uncompressed)", s.In, s.Out, bigSize)
				}
			})
		}
	}
}
