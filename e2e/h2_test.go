package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/wsgate/wsgate"
	"golang.org/x/net/http2"

	// Turns on net/http's extended CONNECT before net/http initialises.
	_ "github.com/wsgate/wsgate/e2e/internal/xconnect"
)

// Go 1.26's net/http client refuses the :protocol header (http.Transport
// validates header names before its bundled HTTP/2 code, which could send
// it, ever sees the request), so these tests dial extended CONNECT with
// golang.org/x/net/http2, which only this module requires.

// newCert returns a self-signed ECDSA certificate for 127.0.0.1 and
// localhost, generated for this test, and a pool that trusts it.
func newCert(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "wsgate e2e"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// newTLSServer serves h on 127.0.0.1 over TLS with a certificate generated
// for the test, offering h2 and http/1.1, and returns the server and a pool
// that trusts its certificate.
func newTLSServer(t testing.TB, h http.Handler, conns *atomic.Int32) (*httptest.Server, *x509.CertPool) {
	t.Helper()
	cert, pool := newCert(t)
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
	srv.Config.ReadHeaderTimeout = 10 * time.Second
	if conns != nil {
		srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, pool
}

// newH2Server serves h over TLS with HTTP/2 and returns an HTTP/2 client
// transport for it. The test fails if goroutines it started outlive it.
func newH2Server(t *testing.T, h http.Handler) (*httptest.Server, *http2.Transport) {
	return newH2ServerCounting(t, h, new(atomic.Int32))
}

// newH2ServerCounting is newH2Server, and counts the TCP connections the
// server accepts in conns.
func newH2ServerCounting(t *testing.T, h http.Handler, conns *atomic.Int32) (*httptest.Server, *http2.Transport) {
	t.Helper()
	checkGoroutines(t)
	srv, pool := newTLSServer(t, h, conns)
	tr := &http2.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, NextProtos: []string{"h2"}}}
	t.Cleanup(tr.CloseIdleConnections)
	return srv, tr
}

// checkGoroutines fails t if, once its other cleanups have run, more
// goroutines are running than when it was called.
func checkGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("goroutine leak: %d running, %d before the test\n%s", runtime.NumGoroutine(), before, buf)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// h2Stream is the client's side of an extended CONNECT stream.
type h2Stream struct {
	resp *http.Response
	w    *io.PipeWriter
}

func (s *h2Stream) Read(p []byte) (int, error)  { return s.resp.Body.Read(p) }
func (s *h2Stream) Write(p []byte) (int, error) { return s.w.Write(p) }
func (s *h2Stream) Close() {
	s.w.Close()
	s.resp.Body.Close()
}

// h2Connect opens an extended CONNECT stream for path with :protocol
// protocol ("" for a plain CONNECT) and the given headers. Unless header
// says otherwise, it sends Sec-WebSocket-Version: 13 and the server's own
// Origin.
func h2Connect(t *testing.T, srv *httptest.Server, tr *http2.Transport, path, protocol string, header http.Header) *h2Stream {
	t.Helper()
	pr, pw := io.Pipe()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodConnect, srv.URL+path, pr)
	if err != nil {
		t.Fatal(err)
	}
	if protocol != "" {
		req.Header[":protocol"] = []string{protocol}
	}
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Origin", srv.URL)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	s := &h2Stream{resp: resp, w: pw}
	t.Cleanup(s.Close)
	return s
}

// h2AllWays is a gate configuration that accepts the token every way.
func h2AllWays() wsgate.Config {
	return wsgate.Config{
		Protocols: []string{appProtocol},
		Extractors: []wsgate.Extractor{
			wsgate.Subprotocol(wsgate.DefaultMarker),
			wsgate.SubprotocolPrefix(wsgate.KubernetesPrefix),
			wsgate.Basic(),
			wsgate.Bearer(),
			wsgate.Cookie("session"),
			wsgate.Query("access_token"),
		},
	}
}

// readClose reads the next frame, which must be an unmasked close frame,
// and returns its code and reason.
func readClose(t *testing.T, r io.Reader) (ws.StatusCode, string) {
	t.Helper()
	f, err := readFrame(r)
	if err != nil {
		t.Fatal(err)
	}
	if f.Header.OpCode != ws.OpClose {
		t.Fatalf("want a close frame, got opcode %v, payload %q", f.Header.OpCode, f.Payload)
	}
	if f.Header.Masked {
		t.Error("server frames are not masked")
	}
	return ws.ParseCloseFrameData(f.Payload)
}

func TestH2ExtendedConnectIsPresentedAsConnectWithProtocolHeader(t *testing.T) {
	got := make(chan *http.Request, 1)
	srv, tr := newH2Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r
	}))
	s := h2Connect(t, srv, tr, "/ws?x=1", "websocket", nil)
	s.Close()
	r := <-got
	checks := []struct {
		name      string
		got, want any
	}{
		{"Method", r.Method, http.MethodConnect},
		{"ProtoMajor", r.ProtoMajor, 2},
		{"Proto", r.Proto, "HTTP/2.0"},
		{`Header[":protocol"]`, fmt.Sprint(r.Header[":protocol"]), "[websocket]"},
		{"RequestURI", r.RequestURI, "/ws?x=1"},
		{"URL.Path", r.URL.Path, "/ws"},
		{"Host", r.Host, strings.TrimPrefix(srv.URL, "https://")},
		{"TLS != nil", r.TLS != nil, true},
		{"ContentLength (the stream is an open body)", r.ContentLength, int64(-1)},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestH2AuthenticatedStreamCarriesFramesBothWays(t *testing.T) {
	g := wsgate.New(wsgate.StaticToken(testToken, testPrincipal), h2AllWays())
	srv, tr := newH2Server(t, g.Handler(echoSession))
	tests := []struct {
		name   string
		header http.Header
		want   string
		echo   string
	}{
		{
			name:   "bearer with an application protocol",
			header: http.Header{"Authorization": {"Bearer " + testToken}, "Sec-Websocket-Protocol": {"chat"}},
			want:   greeting("alice", "bearer", "chat"),
			echo:   "chat",
		},
		{
			name:   "subprotocol marker form echoes the application protocol, never the token",
			header: http.Header{"Sec-Websocket-Protocol": {"chat, access_token, " + testToken}},
			want:   greeting("alice", "subprotocol", "chat"),
			echo:   "chat",
		},
		{
			name:   "subprotocol marker form alone echoes the marker",
			header: http.Header{"Sec-Websocket-Protocol": {"access_token, " + testToken}},
			want:   greeting("alice", "subprotocol", "access_token"),
			echo:   "access_token",
		},
		{
			name:   "no subprotocol offered echoes none",
			header: http.Header{"Authorization": {"Bearer " + testToken}},
			want:   greeting("alice", "bearer", ""),
			echo:   "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := h2Connect(t, srv, tr, "/ws", "websocket", tt.header)
			if s.resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200", s.resp.StatusCode)
			}
			if got := s.resp.Header.Get("Sec-WebSocket-Protocol"); got != tt.echo {
				t.Errorf("Sec-WebSocket-Protocol %q, want %q", got, tt.echo)
			}
			if got := s.resp.Header.Get("Sec-WebSocket-Accept"); got != "" {
				t.Errorf("Sec-WebSocket-Accept %q: RFC 8441 has no accept key", got)
			}
			if got := s.resp.Header.Get("Sec-WebSocket-Extensions"); got != "" {
				t.Errorf("Sec-WebSocket-Extensions %q, want none", got)
			}

			hello, op, err := wsutil.ReadServerData(s)
			if err != nil {
				t.Fatal(err)
			}
			if op != ws.OpText || string(hello) != tt.want {
				t.Errorf("greeting %v %q, want text %q", op, hello, tt.want)
			}

			// The client masks its frames; the server must read them.
			if err := wsutil.WriteClientMessage(s, ws.OpBinary, []byte("ping over h2")); err != nil {
				t.Fatal(err)
			}
			f, err := readFrame(s)
			if err != nil {
				t.Fatal(err)
			}
			if f.Header.Masked {
				t.Error("server frames are not masked")
			}
			if f.Header.OpCode != ws.OpBinary || string(f.Payload) != "ping over h2" {
				t.Errorf("echo %v %q, want binary %q", f.Header.OpCode, f.Payload, "ping over h2")
			}
		})
	}
}

func TestH2RefusalsAreHTTPErrorsWithoutConnectionClose(t *testing.T) {
	g := wsgate.New(wsgate.StaticToken(testToken, testPrincipal), wsgate.Config{Protocols: []string{appProtocol}})
	var conns atomic.Int32
	srv, tr := newH2ServerCounting(t, g.Handler(func(ctx context.Context, s wsgate.Session[user]) {
		t.Error("a refused stream reached the application")
	}), &conns)
	// Connection: close would make net/http send GOAWAY, and the next
	// request would need a new connection: every refusal shares one.
	t.Cleanup(func() {
		if n := conns.Load(); n != 1 {
			t.Errorf("%d TCP connections, want 1", n)
		}
	})
	bearer := http.Header{"Authorization": {"Bearer " + testToken}}
	tests := []struct {
		name      string
		protocol  string
		header    http.Header
		status    int
		challenge string
		version   string
	}{
		{
			name:      "no credential is 401 with a Bearer challenge",
			protocol:  "websocket",
			status:    http.StatusUnauthorized,
			challenge: `Bearer realm="wsgate"`,
		},
		{
			name:      "a wrong token is 401 invalid_token",
			protocol:  "websocket",
			header:    http.Header{"Authorization": {"Bearer " + wrongToken}},
			status:    http.StatusUnauthorized,
			challenge: `Bearer realm="wsgate", error="invalid_token"`,
		},
		{
			name:     "another origin is 403",
			protocol: "websocket",
			header:   http.Header{"Authorization": {"Bearer " + testToken}, "Origin": {"https://evil.example"}},
			status:   http.StatusForbidden,
		},
		{
			name:   "a plain CONNECT without :protocol is 400",
			header: bearer,
			status: http.StatusBadRequest,
		},
		{
			name:     "a :protocol other than websocket is 400",
			protocol: "connect-udp",
			header:   bearer,
			status:   http.StatusBadRequest,
		},
		{
			name:     "Sec-WebSocket-Version 8 is 400, not 426",
			protocol: "websocket",
			header:   http.Header{"Authorization": {"Bearer " + testToken}, "Sec-Websocket-Version": {"8"}},
			status:   http.StatusBadRequest,
			version:  "13",
		},
		{
			name:     "a missing Sec-WebSocket-Version is 400",
			protocol: "websocket",
			header:   http.Header{"Authorization": {"Bearer " + testToken}, "Sec-Websocket-Version": nil},
			status:   http.StatusBadRequest,
			version:  "13",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := "/ws"
			if tt.protocol == "" {
				path = "" // a plain CONNECT has no :path
			}
			h := tt.header.Clone()
			if v, ok := h["Sec-Websocket-Version"]; ok && v == nil {
				// h2Connect sets it; an empty value stands for none.
				h["Sec-Websocket-Version"] = []string{}
			}
			s := h2Connect(t, srv, tr, path, tt.protocol, h)
			if s.resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d", s.resp.StatusCode, tt.status)
			}
			if got := s.resp.Header.Get("WWW-Authenticate"); got != tt.challenge {
				t.Errorf("WWW-Authenticate %q, want %q", got, tt.challenge)
			}
			if got := s.resp.Header.Get("Sec-WebSocket-Version"); got != tt.version {
				t.Errorf("Sec-WebSocket-Version %q, want %q", got, tt.version)
			}
			if got := s.resp.Header.Get("Sec-WebSocket-Protocol"); got != "" {
				t.Errorf("Sec-WebSocket-Protocol %q, want none", got)
			}
			body, _ := io.ReadAll(s.resp.Body)
			if strings.Contains(string(body), testToken) {
				t.Errorf("the body holds the token: %q", body)
			}
		})
	}
}

func TestH2GetIsRefusedWithErrHTTPVersion(t *testing.T) {
	g := wsgate.New(wsgate.StaticToken(testToken, testPrincipal), wsgate.Config{})
	srv, tr := newH2Server(t, g.Handler(func(ctx context.Context, s wsgate.Session[user]) {}))
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || resp.ProtoMajor != 2 {
		t.Errorf("got %d over HTTP/%d, want 400 over HTTP/2", resp.StatusCode, resp.ProtoMajor)
	}
}

func TestH2CloseFrameRefusal(t *testing.T) {
	g := wsgate.New(wsgate.StaticToken(testToken, testPrincipal), wsgate.Config{RefuseWithCloseFrame: true})
	srv, tr := newH2Server(t, g.Handler(func(ctx context.Context, s wsgate.Session[user]) {
		t.Error("a refused stream reached the application")
	}))
	s := h2Connect(t, srv, tr, "/ws", "websocket", http.Header{"Authorization": {"Bearer " + wrongToken}})
	if s.resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", s.resp.StatusCode)
	}
	code, reason := readClose(t, s)
	if code != wsgate.CloseUnauthorized || reason != "invalid credential" {
		t.Errorf("close %d %q, want %d %q", code, reason, wsgate.CloseUnauthorized, "invalid credential")
	}
	if _, err := s.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("read after the close frame: %v, want io.EOF: the stream ends", err)
	}

	// A client that answers with its close frame: the gate reads it, then
	// ends the stream (the handler returns), with no reset.
	s = h2Connect(t, srv, tr, "/ws", "websocket", http.Header{"Authorization": {"Bearer " + wrongToken}})
	if code, _ := readClose(t, s); code != wsgate.CloseUnauthorized {
		t.Errorf("close %d, want %d", code, wsgate.CloseUnauthorized)
	}
	if err := ws.WriteFrame(s, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(wsgate.CloseUnauthorized, "")))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("read after the client's close frame: %v, want io.EOF: the stream ends", err)
	}
}

func TestH2InBandAuthentication(t *testing.T) {
	g := wsgate.New(wsgate.StaticToken(testToken, testPrincipal), wsgate.Config{InBand: &wsgate.InBandAuth{}})
	srv, tr := newH2Server(t, g.Handler(echoSession))
	s := h2Connect(t, srv, tr, "/ws", "websocket", nil)
	if s.resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", s.resp.StatusCode)
	}
	if err := wsutil.WriteClientText(s, []byte(`{"type":"auth","token":"`+testToken+`"}`)); err != nil {
		t.Fatal(err)
	}
	hello, _, err := wsutil.ReadServerData(s)
	if err != nil {
		t.Fatal(err)
	}
	if want := greeting("alice", "message", ""); string(hello) != want {
		t.Errorf("greeting %q, want %q", hello, want)
	}
}

func TestH2MiddlewareThenUpgrade(t *testing.T) {
	g := wsgate.New(wsgate.StaticToken(testToken, testPrincipal), wsgate.Config{Protocols: []string{appProtocol}})
	srv, tr := newH2Server(t, g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := wsgate.Upgrade(w, r)
		if err != nil {
			return
		}
		// Over HTTP/2 the handler must not return before it is done.
		defer conn.Close()
		a, _ := wsgate.AuthFrom[user](r.Context())
		msg, op, err := wsutil.ReadClientData(conn)
		if err != nil {
			return
		}
		_ = wsutil.WriteServerMessage(conn, op, append([]byte(a.Principal.Name+": "), msg...))
	})))
	s := h2Connect(t, srv, tr, "/ws", "websocket", http.Header{
		"Authorization": {"Bearer " + testToken}, "Sec-Websocket-Protocol": {"other, chat"}})
	if s.resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", s.resp.StatusCode)
	}
	if got := s.resp.Header.Get("Sec-WebSocket-Protocol"); got != "chat" {
		t.Errorf("Sec-WebSocket-Protocol %q, want chat", got)
	}
	if err := wsutil.WriteClientText(s, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	got, _, err := wsutil.ReadServerData(s)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "alice: hi" {
		t.Errorf("got %q, want %q", got, "alice: hi")
	}
}

func TestH2StreamConnAfterClose(t *testing.T) {
	done := make(chan struct{})
	srv, tr := newH2Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(done)
		conn, err := wsgate.Upgrade(w, r)
		if err != nil {
			t.Error(err)
			return
		}
		if n := conn.RemoteAddr().Network(); n != "tcp" {
			t.Errorf("RemoteAddr().Network() = %q, want tcp", n)
		}
		if a := conn.RemoteAddr().String(); a != r.RemoteAddr {
			t.Errorf("RemoteAddr() = %q, want %q", a, r.RemoteAddr)
		}
		if conn.LocalAddr() == nil {
			t.Error("LocalAddr() is nil")
		}
		if err := conn.SetDeadline(time.Now().Add(time.Minute)); err != nil {
			t.Errorf("SetDeadline: %v", err)
		}
		if err := conn.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if _, err := conn.Write([]byte("x")); err == nil {
			t.Error("a write after Close must fail, not reach a finished handler")
		}
		if _, err := conn.Read(make([]byte, 1)); err == nil {
			t.Error("a read after Close must fail")
		}
		if conn.Close() == nil {
			t.Error("a second Close must fail")
		}
	}))
	s := h2Connect(t, srv, tr, "/ws", "websocket", nil)
	if s.resp.StatusCode != http.StatusOK {
		t.Errorf("status %d, want 200", s.resp.StatusCode)
	}
	<-done
}

// TestH2StreamConnAfterTheHandlerReturned has the session callback hand the
// stream to a goroutine that keeps writing while the callback returns, and
// then uses it once the gate's handler has returned: every call must fail
// with net.ErrClosed instead of reaching the finished ResponseWriter (which
// panics with "Write called after Handler finished", or races; run with
// -race).
func TestH2StreamConnAfterTheHandlerReturned(t *testing.T) {
	g := wsgate.New(wsgate.StaticToken(testToken, testPrincipal), wsgate.Config{})
	returned := make(chan struct{})
	late := make(chan []error, 1)
	h := g.Handler(func(ctx context.Context, s wsgate.Session[user]) {
		go func() {
			frame := []byte("\x81\x01x")
			// Writes racing with the handler's return, bounded in count.
			for i := 0; i < 10000; i++ {
				if _, err := s.Conn.Write(frame); err != nil {
					break
				}
			}
			<-returned
			_, werr := s.Conn.Write(frame)
			_, rerr := s.Conn.Read(make([]byte, 1))
			late <- []error{werr, rerr, s.Conn.SetDeadline(time.Now()), s.Conn.SetWriteDeadline(time.Time{}), s.Conn.Close()}
		}()
	})
	srv, tr := newH2Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		close(returned)
	}))
	s := h2Connect(t, srv, tr, "/ws", "websocket", http.Header{"Authorization": {"Bearer " + testToken}})
	if s.resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", s.resp.StatusCode)
	}
	go io.Copy(io.Discard, s.resp.Body)
	select {
	case errs := <-late:
		for i, err := range errs {
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("call %d after the handler returned: %v, want net.ErrClosed", i, err)
			}
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the goroutine did not finish")
	}
}

// TestH2ExpiryWithAWriterStuckOnAClientThatStopsReading is the expiry
// scenario over HTTP/2: the application writes under Session.WriteLock, as
// the docs prescribe, to a client that never reads, so flow control blocks
// the write while it holds the lock. At the expiry the gate must still end
// the stream and Gate.Handler must return, within the documented bound.
func TestH2ExpiryWithAWriterStuckOnAClientThatStopsReading(t *testing.T) {
	g := wsgate.New(func(ctx context.Context, c wsgate.Credential) (user, error) {
		wsgate.SetExpiry(ctx, time.Now().Add(300*time.Millisecond))
		return testPrincipal, nil
	}, wsgate.Config{})
	frame := make([]byte, 16<<10)
	returned := make(chan struct{})
	writes := 0
	h := g.Handler(func(ctx context.Context, s wsgate.Session[user]) {
		lock := s.WriteLock()
		// Bounded: 4096 frames of 16 KiB are 64 MiB, far past any window.
		for ; writes < 4096; writes++ {
			lock.Lock()
			err := wsutil.WriteServerBinary(s.Conn, frame)
			lock.Unlock()
			if err != nil {
				return
			}
		}
	})
	srv, tr := newH2Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		close(returned)
	}))
	s := h2Connect(t, srv, tr, "/ws", "websocket", http.Header{"Authorization": {"Bearer " + testToken}})
	if s.resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", s.resp.StatusCode)
	}
	// The client reads nothing.
	select {
	case <-returned:
	case <-time.After(4 * time.Second): // the bound is 3 s from the expiry
		t.Fatal("Gate.Handler did not return after the expiry")
	}
	if writes >= 4096 {
		t.Fatal("the writes never blocked: the client's window took 64 MiB")
	}
	s.resp.Body.Close()
}
