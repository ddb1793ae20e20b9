package wsgate

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"

	// Turns on net/http's extended CONNECT before net/http initialises.
	_ "github.com/wsgate/wsgate/internal/xconnect"
)

// Go 1.26's net/http client refuses the :protocol header (http.Transport
// validates header names before its bundled HTTP/2 code, which could send
// it, ever sees the request), so these tests dial extended CONNECT with
// golang.org/x/net/http2, a test-only dependency.

// newH2Server serves h over TLS with HTTP/2, with httptest's certificate.
func newH2Server(t *testing.T, h http.Handler) (*httptest.Server, *http2.Transport) {
	return newH2ServerCounting(t, h, new(atomic.Int32))
}

// newH2ServerCounting is newH2Server, and counts the TCP connections the
// server accepts in conns.
func newH2ServerCounting(t *testing.T, h http.Handler, conns *atomic.Int32) (*httptest.Server, *http2.Transport) {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	tr := &http2.Transport{TLSClientConfig: &tls.Config{
		RootCAs:    srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs,
		NextProtos: []string{"h2"},
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return srv, tr
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
	require.NoError(t, err)
	if protocol != "" {
		req.Header[":protocol"] = []string{protocol}
	}
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Origin", srv.URL)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	s := &h2Stream{resp: resp, w: pw}
	t.Cleanup(s.Close)
	return s
}

func TestH2ExtendedConnectIsPresentedAsConnectWithProtocolHeader(t *testing.T) {
	got := make(chan *http.Request, 1)
	srv, tr := newH2Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r
	}))
	s := h2Connect(t, srv, tr, "/ws?x=1", "websocket", nil)
	s.Close()
	r := <-got
	assert.Equal(t, http.MethodConnect, r.Method)
	assert.Equal(t, 2, r.ProtoMajor)
	assert.Equal(t, "HTTP/2.0", r.Proto)
	assert.Equal(t, []string{"websocket"}, r.Header[":protocol"])
	assert.Equal(t, "/ws?x=1", r.RequestURI)
	assert.Equal(t, "/ws", r.URL.Path)
	assert.Equal(t, strings.TrimPrefix(srv.URL, "https://"), r.Host)
	assert.NotNil(t, r.TLS)
	assert.Equal(t, int64(-1), r.ContentLength, "the stream is an open body")
}

func TestH2AuthenticatedStreamCarriesFramesBothWays(t *testing.T) {
	g := New(StaticToken(secret, user{"alice"}), allWays())
	srv, tr := newH2Server(t, g.Handler(echoSession))
	tests := []struct {
		name   string
		header http.Header
		want   string
		echo   string
	}{
		{
			name:   "bearer with an application protocol",
			header: http.Header{"Authorization": {"Bearer " + secret}, "Sec-Websocket-Protocol": {"chat"}},
			want:   "alice bearer chat",
			echo:   "chat",
		},
		{
			name:   "subprotocol marker form echoes the application protocol, never the token",
			header: http.Header{"Sec-Websocket-Protocol": {"chat, access_token, " + secret}},
			want:   "alice subprotocol chat",
			echo:   "chat",
		},
		{
			name:   "subprotocol marker form alone echoes the marker",
			header: http.Header{"Sec-Websocket-Protocol": {"access_token, " + secret}},
			want:   "alice subprotocol access_token",
			echo:   "access_token",
		},
		{
			name:   "no subprotocol offered echoes none",
			header: http.Header{"Authorization": {"Bearer " + secret}},
			want:   "alice bearer ",
			echo:   "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := h2Connect(t, srv, tr, "/ws", "websocket", tt.header)
			require.Equal(t, http.StatusOK, s.resp.StatusCode)
			assert.Equal(t, tt.echo, s.resp.Header.Get("Sec-WebSocket-Protocol"))
			assert.Empty(t, s.resp.Header.Get("Sec-WebSocket-Accept"), "RFC 8441 has no accept key")
			assert.Empty(t, s.resp.Header.Get("Sec-WebSocket-Extensions"))

			hello, op, err := wsutil.ReadServerData(s)
			require.NoError(t, err)
			assert.Equal(t, ws.OpText, op)
			assert.Equal(t, tt.want, string(hello))

			// The client masks its frames; the server must read them.
			require.NoError(t, wsutil.WriteClientMessage(s, ws.OpBinary, []byte("ping over h2")))
			f, err := ws.ReadFrame(s)
			require.NoError(t, err)
			assert.False(t, f.Header.Masked, "server frames are not masked")
			assert.Equal(t, ws.OpBinary, f.Header.OpCode)
			assert.Equal(t, "ping over h2", string(f.Payload))
		})
	}
}

func TestH2RefusalsAreHTTPErrorsWithoutConnectionClose(t *testing.T) {
	g := New(StaticToken(secret, user{"alice"}), Config{Protocols: []string{"chat"}})
	var conns atomic.Int32
	srv, tr := newH2ServerCounting(t, g.Handler(func(ctx context.Context, s Session[user]) {
		t.Error("a refused stream reached the application")
	}), &conns)
	// Connection: close would make net/http send GOAWAY, and the next
	// request would need a new connection: every refusal shares one.
	t.Cleanup(func() { assert.Equal(t, int32(1), conns.Load(), "TCP connections") })
	bearer := http.Header{"Authorization": {"Bearer " + secret}}
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
			header:    http.Header{"Authorization": {"Bearer wrong"}},
			status:    http.StatusUnauthorized,
			challenge: `Bearer realm="wsgate", error="invalid_token"`,
		},
		{
			name:     "another origin is 403",
			protocol: "websocket",
			header:   http.Header{"Authorization": {"Bearer " + secret}, "Origin": {"https://evil.example"}},
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
			header:   http.Header{"Authorization": {"Bearer " + secret}, "Sec-Websocket-Version": {"8"}},
			status:   http.StatusBadRequest,
			version:  "13",
		},
		{
			name:     "a missing Sec-WebSocket-Version is 400",
			protocol: "websocket",
			header:   http.Header{"Authorization": {"Bearer " + secret}, "Sec-Websocket-Version": nil},
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
			assert.Equal(t, tt.status, s.resp.StatusCode)
			assert.Equal(t, tt.challenge, s.resp.Header.Get("WWW-Authenticate"))
			assert.Equal(t, tt.version, s.resp.Header.Get("Sec-WebSocket-Version"))
			assert.Empty(t, s.resp.Header.Get("Sec-WebSocket-Protocol"))
			body, _ := io.ReadAll(s.resp.Body)
			assert.NotContains(t, string(body), secret)
		})
	}
}

func TestH2GetIsRefusedWithErrHTTPVersion(t *testing.T) {
	g := New(StaticToken(secret, user{"alice"}), Config{})
	srv, tr := newH2Server(t, g.Handler(echoHandler))
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/ws", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	assert.Equal(t, 2, resp.ProtoMajor)
}

func TestCheckHandshakeOverHTTP2(t *testing.T) {
	h2 := func(method string, kv ...string) *http.Request {
		r := httptest.NewRequest(method, "https://example.com/ws", nil)
		r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/2.0", 2, 0
		r.Header = http.Header{":protocol": {"websocket"}, "Sec-Websocket-Version": {"13"}}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(r.Header, kv[i])
				continue
			}
			r.Header[kv[i]] = []string{kv[i+1]}
		}
		return r
	}
	tests := []struct {
		name     string
		r        *http.Request
		sentinel error
	}{
		{name: "extended CONNECT with :protocol websocket passes", r: h2("CONNECT")},
		{name: ":protocol compares case-insensitively", r: h2("CONNECT", ":protocol", "WebSocket")},
		{name: "no Sec-WebSocket-Key, Upgrade or Connection is needed", r: h2("CONNECT")},
		{name: "a Sec-WebSocket-Key is ignored", r: h2("CONNECT", "Sec-Websocket-Key", "junk")},
		{name: "GET over HTTP/2", r: h2("GET"), sentinel: ErrHTTPVersion},
		{name: "CONNECT without :protocol", r: h2("CONNECT", ":protocol", ""), sentinel: ErrHTTPVersion},
		{name: "CONNECT with another :protocol", r: h2("CONNECT", ":protocol", "h3"), sentinel: ErrHTTPVersion},
		{name: "no version", r: h2("CONNECT", "Sec-Websocket-Version", ""), sentinel: ErrVersion},
		{name: "version 8", r: h2("CONNECT", "Sec-Websocket-Version", "8"), sentinel: ErrVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckHandshake(tt.r)
			if tt.sentinel == nil {
				assert.NoError(t, err)
				return
			}
			assert.ErrorIs(t, err, tt.sentinel)
			var e *Error
			require.ErrorAs(t, err, &e)
			assert.Equal(t, http.StatusBadRequest, e.Status)
		})
	}
}

func TestH2CloseFrameRefusal(t *testing.T) {
	g := New(StaticToken(secret, user{"alice"}), Config{Refusal: RefuseCloseFrame})
	srv, tr := newH2Server(t, g.Handler(func(ctx context.Context, s Session[user]) {
		t.Error("a refused stream reached the application")
	}))
	s := h2Connect(t, srv, tr, "/ws", "websocket", http.Header{"Authorization": {"Bearer wrong"}})
	require.Equal(t, http.StatusOK, s.resp.StatusCode)
	code, reason := readClose(t, s)
	assert.Equal(t, CloseUnauthorized, code)
	assert.Equal(t, "invalid credential", reason)
	_, err := s.Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF, "the stream ends after the close frame")
}

func TestH2InBandAuthentication(t *testing.T) {
	g := New(StaticToken(secret, user{"alice"}), Config{InBand: &InBandAuth{}})
	srv, tr := newH2Server(t, g.Handler(echoSession))
	s := h2Connect(t, srv, tr, "/ws", "websocket", nil)
	require.Equal(t, http.StatusOK, s.resp.StatusCode)
	require.NoError(t, wsutil.WriteClientText(s, []byte(`{"type":"auth","token":"`+secret+`"}`)))
	hello, _, err := wsutil.ReadServerData(s)
	require.NoError(t, err)
	assert.Equal(t, "alice message ", string(hello))
}

func TestH2MiddlewareThenUpgrade(t *testing.T) {
	g := New(StaticToken(secret, user{"alice"}), Config{Protocols: []string{"chat"}})
	srv, tr := newH2Server(t, g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := Upgrade(w, r)
		if err != nil {
			return
		}
		// Over HTTP/2 the handler must not return before it is done.
		defer conn.Close()
		p, _ := PrincipalFrom[user](r.Context())
		msg, op, err := wsutil.ReadClientData(conn)
		if err != nil {
			return
		}
		_ = wsutil.WriteServerMessage(conn, op, append([]byte(p.Name+": "), msg...))
	})))
	s := h2Connect(t, srv, tr, "/ws", "websocket", http.Header{
		"Authorization": {"Bearer " + secret}, "Sec-Websocket-Protocol": {"other, chat"}})
	require.Equal(t, http.StatusOK, s.resp.StatusCode)
	assert.Equal(t, "chat", s.resp.Header.Get("Sec-WebSocket-Protocol"))
	require.NoError(t, wsutil.WriteClientText(s, []byte("hi")))
	got, _, err := wsutil.ReadServerData(s)
	require.NoError(t, err)
	assert.Equal(t, "alice: hi", string(got))
}

func TestH2StreamConnAfterClose(t *testing.T) {
	done := make(chan struct{})
	srv, tr := newH2Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(done)
		conn, err := Upgrade(w, r)
		if !assert.NoError(t, err) {
			return
		}
		assert.Equal(t, "tcp", conn.RemoteAddr().Network())
		assert.Equal(t, r.RemoteAddr, conn.RemoteAddr().String())
		assert.NotNil(t, conn.LocalAddr())
		assert.NoError(t, conn.SetDeadline(time.Now().Add(time.Minute)))
		assert.NoError(t, conn.Close())
		_, err = conn.Write([]byte("x"))
		assert.Error(t, err, "a write after Close must fail, not reach a finished handler")
		_, err = conn.Read(make([]byte, 1))
		assert.Error(t, err)
		assert.Error(t, conn.Close())
	}))
	s := h2Connect(t, srv, tr, "/ws", "websocket", nil)
	assert.Equal(t, http.StatusOK, s.resp.StatusCode)
	<-done
}
