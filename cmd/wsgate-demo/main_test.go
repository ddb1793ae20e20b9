package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/wsgate/wsgate"
	"github.com/wsgate/wsgate/ticket"
)

const testToken = "s3cr3t-demo-token-0123456789"

// secrets are the forms of the token that must never leave the server.
var secrets = []string{
	testToken,
	base64.RawURLEncoding.EncodeToString([]byte(testToken)),
	base64.StdEncoding.EncodeToString([]byte(testToken + ":")),
}

// syncBuffer collects log output written from server goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newServer(t *testing.T) (*httptest.Server, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	d := newDemo(testToken, slog.New(slog.NewTextHandler(logs, nil)))
	t.Cleanup(d.close)
	srv := httptest.NewServer(d.handler(pageConfig{}))
	t.Cleanup(srv.Close)
	return srv, logs
}

func wsURL(srv *httptest.Server, query string) string {
	return endpointURL(srv, pathWS, query)
}

func endpointURL(srv *httptest.Server, path, query string) string {
	return "ws" + strings.TrimPrefix(srv.URL, "http") + path + query
}

// dialed is the outcome of one handshake.
type dialed struct {
	status   int         // 101 or the refusal's status
	header   http.Header // the refusal's response headers
	protocol string
	conn     net.Conn
	rw       io.ReadWriter
}

func dial(t *testing.T, u string, protocols []string, header http.Header) dialed {
	t.Helper()
	var d dialed
	dialer := ws.Dialer{
		Protocols: protocols,
		Header:    ws.HandshakeHeaderHTTP(header),
		OnStatusError: func(status int, _ []byte, resp io.Reader) {
			if r, err := http.ReadResponse(bufio.NewReader(resp), nil); err == nil {
				d.header = r.Header
			}
		},
	}
	conn, br, hs, err := dialer.Dial(t.Context(), u)
	if err != nil {
		var status ws.StatusError
		require.ErrorAs(t, err, &status)
		d.status = int(status)
		return d
	}
	t.Cleanup(func() { conn.Close() })
	d.status, d.protocol, d.conn, d.rw = http.StatusSwitchingProtocols, hs.Protocol, conn, conn
	if br != nil {
		d.rw = struct {
			io.Reader
			io.Writer
		}{br, conn}
	}
	return d
}

func login(t *testing.T, srv *httptest.Server, token string) *http.Response {
	t.Helper()
	res, err := srv.Client().PostForm(srv.URL+"/login", url.Values{"token": {token}})
	require.NoError(t, err)
	res.Body.Close()
	return res
}

func getLast(t *testing.T, srv *httptest.Server) (attempt, string) {
	t.Helper()
	res, err := srv.Client().Get(srv.URL + "/last")
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	var a attempt
	require.NoError(t, json.Unmarshal(body, &a))
	return a, string(body)
}

// settledLast is getLast once the server has recorded the handshake's
// outcome: a refusal by close frame (and an in-band failure) is recorded
// just after the frame is sent, so the client may ask before that.
func settledLast(t *testing.T, srv *httptest.Server) (attempt, string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		a, raw := getLast(t, srv)
		if a.Status != 0 || time.Now().After(deadline) {
			return a, raw
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func assertNoSecret(t *testing.T, where, text string) {
	t.Helper()
	for _, s := range secrets {
		assert.NotContains(t, text, s, "%s reveals a secret", where)
	}
}

func TestEveryWayOpensTheSocketAndSaysWhichWayItUsed(t *testing.T) {
	srv, logs := newServer(t)
	res := login(t, srv, testToken)
	require.Equal(t, http.StatusNoContent, res.StatusCode)
	require.Len(t, res.Cookies(), 1)
	cookie := res.Cookies()[0]

	tests := []struct {
		name       string
		query      string
		protocols  []string
		header     http.Header
		wantSource wsgate.Source
		wantSeen   string // a fragment of /last's output
	}{
		{
			name:       "subprotocol marker",
			protocols:  []string{"chat", "access_token", testToken},
			wantSource: wsgate.SourceSubprotocol,
			wantSeen:   `"Sec-WebSocket-Protocol":"chat, access_token, s3cr…"`,
		},
		{
			name:       "subprotocol prefix",
			protocols:  []string{"chat", wsgate.KubernetesPrefix + base64.RawURLEncoding.EncodeToString([]byte(testToken))},
			wantSource: wsgate.SourceSubprotocolPrefix,
			wantSeen:   `"Sec-WebSocket-Protocol":"chat, base64url.bearer.authorization.k8s.io.czNj…"`,
		},
		{
			name:       "bearer",
			protocols:  []string{"chat"},
			header:     http.Header{"Authorization": {"Bearer " + testToken}},
			wantSource: wsgate.SourceBearer,
			wantSeen:   `"Authorization":"Bearer s3cr…"`,
		},
		{
			name:       "basic, as a browser sends URL userinfo",
			protocols:  []string{"chat"},
			header:     http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(testToken+":"))}},
			wantSource: wsgate.SourceBasic,
			wantSeen:   `"Authorization":"Basic czNj…"`,
		},
		{
			name:       "cookie from /login, same origin",
			protocols:  []string{"chat"},
			header:     http.Header{"Cookie": {cookie.Name + "=" + cookie.Value}, "Origin": {srv.URL}},
			wantSource: wsgate.SourceCookie,
			wantSeen:   `"Cookie":"wsgate_token=s3cr…"`,
		},
		{
			name:       "query",
			query:      "?access_token=" + testToken,
			protocols:  []string{"chat"},
			wantSource: wsgate.SourceQuery,
			wantSeen:   `"query":"access_token=s3cr…"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := dial(t, wsURL(srv, tt.query), tt.protocols, tt.header)
			require.Equal(t, http.StatusSwitchingProtocols, d.status)
			assert.Equal(t, "chat", d.protocol)

			principal, source, protocol := readHello(t, d)
			assert.Equal(t, user{Name: "demo-user"}, principal)
			assert.Equal(t, tt.wantSource.String(), source)
			assert.Equal(t, "chat", protocol)

			last, raw := getLast(t, srv)
			assert.Equal(t, http.StatusSwitchingProtocols, last.Status)
			assert.Equal(t, tt.wantSource.String(), last.Source)
			assert.Equal(t, []string{tt.wantSource.String()}, last.Ways)
			assert.Contains(t, raw, tt.wantSeen)
			assertNoSecret(t, "/last", raw)
		})
	}
	assert.Contains(t, logs.String(), "way=subprotocol-prefix outcome=accepted status=101")
	assertNoSecret(t, "the log", logs.String())
}

func TestRefusedHandshakesGetTheirStatusAndAreLogged(t *testing.T) {
	srv, logs := newServer(t)
	other := "http://127.0.0.1:1" // another port: same site, other origin

	tests := []struct {
		name      string
		query     string
		protocols []string
		header    http.Header
		want      int
		wantAuth  string // WWW-Authenticate prefix
		wantLog   string
	}{
		{
			name:      "no token gets a Basic challenge",
			protocols: []string{"chat"},
			want:      http.StatusUnauthorized,
			wantAuth:  "Basic ",
			wantLog:   "way=none outcome=refused status=401",
		},
		{
			name:      "wrong token in the marker form",
			protocols: []string{"chat", "access_token", "wrong-token-0123456789"},
			want:      http.StatusUnauthorized,
			wantAuth:  `Bearer realm="wsgate", error="invalid_token"`,
			wantLog:   "way=subprotocol outcome=refused status=401",
		},
		{
			name:     "wrong bearer token",
			header:   http.Header{"Authorization": {"Bearer wrong-token-0123456789"}},
			want:     http.StatusUnauthorized,
			wantAuth: `Bearer realm="wsgate", error="invalid_token"`,
			wantLog:  "way=bearer outcome=refused status=401",
		},
		{
			name:    "cookie sent by a page of another origin",
			header:  http.Header{"Cookie": {cookieName + "=" + testToken}, "Origin": {other}},
			want:    http.StatusForbidden,
			wantLog: `way=cookie outcome=refused status=403 remote=`,
		},
		{
			name:      "right token sent by a page of another origin",
			protocols: []string{"chat", "access_token", testToken},
			header:    http.Header{"Origin": {other}},
			want:      http.StatusForbidden,
			wantLog:   `origin=http://127.0.0.1:1 reason="origin not allowed"`,
		},
		{
			name:      "two credentials at once",
			query:     "?access_token=" + testToken,
			protocols: []string{"chat", "access_token", testToken},
			want:      http.StatusBadRequest,
			wantLog:   `way=subprotocol+query outcome=refused status=400`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := dial(t, wsURL(srv, tt.query), tt.protocols, tt.header)
			require.Equal(t, tt.want, d.status)
			if tt.wantAuth != "" {
				assert.True(t, strings.HasPrefix(d.header.Get("WWW-Authenticate"), tt.wantAuth), d.header.Get("WWW-Authenticate"))
			}
			last, raw := getLast(t, srv)
			assert.Equal(t, tt.want, last.Status)
			assert.NotEmpty(t, last.Reason)
			assertNoSecret(t, "/last", raw)
			assert.Contains(t, logs.String(), tt.wantLog)
		})
	}
	assertNoSecret(t, "the log", logs.String())
}

func TestLoginSetsAStrictHttpOnlyCookieOnlyForTheToken(t *testing.T) {
	srv, logs := newServer(t)

	res := login(t, srv, "wrong-token-0123456789")
	assert.Equal(t, http.StatusUnauthorized, res.StatusCode)
	assert.Empty(t, res.Cookies())

	res = login(t, srv, testToken)
	assert.Equal(t, http.StatusNoContent, res.StatusCode)
	require.Len(t, res.Cookies(), 1)
	c := res.Cookies()[0]
	assert.Equal(t, cookieName, c.Name)
	assert.Equal(t, testToken, c.Value)
	assert.Equal(t, "/", c.Path)
	assert.True(t, c.HttpOnly)
	assert.Equal(t, http.SameSiteStrictMode, c.SameSite)
	assertNoSecret(t, "the log", logs.String())
}

func TestConfigIsOnlyForSameOriginLoopbackRequests(t *testing.T) {
	srv, _ := newServer(t)
	host := strings.TrimPrefix(srv.URL, "http://")

	same := http.Header{"Origin": {srv.URL}}
	tests := []struct {
		name   string
		method string // default POST, as the page asks
		header http.Header
		host   string
		want   int
	}{
		{name: "the page's POST, with its Origin", header: same, want: http.StatusOK},
		{name: "a GET with the same Origin", method: http.MethodGet, header: same, want: http.StatusOK},
		{name: "same origin, with fetch metadata", header: http.Header{"Sec-Fetch-Site": {"same-origin"}, "Origin": {srv.URL}}, want: http.StatusOK},
		{name: "no Origin, as curl sends", method: http.MethodGet, want: http.StatusForbidden},
		{name: "a POST without Origin", want: http.StatusForbidden},
		{name: "two Origin headers", header: http.Header{"Origin": {srv.URL, srv.URL}}, want: http.StatusForbidden},
		{name: "another origin", header: http.Header{"Origin": {"http://127.0.0.1:1"}}, want: http.StatusForbidden},
		{name: "cross-site fetch", header: http.Header{"Sec-Fetch-Site": {"cross-site"}, "Origin": {srv.URL}}, want: http.StatusForbidden},
		{name: "same-site fetch from another port", header: http.Header{"Sec-Fetch-Site": {"same-site"}, "Origin": {srv.URL}}, want: http.StatusForbidden},
		{name: "a DNS-rebound host name", header: http.Header{"Origin": {"http://rebound.example:" + strings.Split(host, ":")[1]}},
			host: "rebound.example:" + strings.Split(host, ":")[1], want: http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			req, err := http.NewRequest(method, srv.URL+"/config", nil)
			require.NoError(t, err)
			for k, v := range tt.header {
				req.Header[k] = v
			}
			if tt.host != "" {
				req.Host = tt.host
			}
			res, err := srv.Client().Do(req)
			require.NoError(t, err)
			defer res.Body.Close()
			body, _ := io.ReadAll(res.Body)
			require.Equal(t, tt.want, res.StatusCode)
			if tt.want != http.StatusOK {
				assertNoSecret(t, "a refused /config", string(body))
				return
			}
			var cfg struct{ WS, Token string }
			require.NoError(t, json.Unmarshal(body, &cfg))
			assert.Equal(t, testToken, cfg.Token)
			assert.Equal(t, wsURL(srv, ""), cfg.WS)
		})
	}

	t.Run("from a non-loopback address", func(t *testing.T) {
		d := newDemo(testToken, slog.New(slog.DiscardHandler))
		req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1/config", nil)
		req.Header.Set("Origin", "http://127.0.0.1")
		req.RemoteAddr = "192.0.2.7:4321"
		rec := httptest.NewRecorder()
		d.handler(pageConfig{}).ServeHTTP(rec, req)
		assert.Equal(t, http.StatusForbidden, rec.Code)
		assertNoSecret(t, "a refused /config", rec.Body.String())
	})
}

func TestCrossOriginPageSendsItsSocketsToTheMainServer(t *testing.T) {
	d := newDemo(testToken, slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(d.handler(pageConfig{WSHost: "127.0.0.1:8080", Other: "http://127.0.0.1:8080/", Cross: true}))
	defer srv.Close()
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/config", nil)
	require.NoError(t, err)
	req.Header.Set("Origin", srv.URL) // the cross-origin page asks its own listener
	res, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	var cfg struct {
		WS    string
		Cross bool
	}
	require.NoError(t, json.NewDecoder(res.Body).Decode(&cfg))
	assert.Equal(t, "ws://127.0.0.1:8080/ws", cfg.WS)
	assert.True(t, cfg.Cross)
}

func TestThePageAndItsScriptAreServed(t *testing.T) {
	srv, _ := newServer(t)
	tests := []struct {
		path, contentType, contains string
	}{
		{"/", "text/html; charset=utf-8", `<script src="/app.js"></script>`},
		{"/app.js", "text/javascript; charset=utf-8", `'access_token'`},
		{"/", "text/html; charset=utf-8", `<input type="checkbox" id="closeframe">`},
		{"/", "text/html; charset=utf-8", `<button data-ticket="reuse">`},
		{"/", "text/html; charset=utf-8", `<button data-inband="none">`},
		{"/", "text/html; charset=utf-8", `<link rel="icon" href="/favicon.svg"`},
		{"/favicon.svg", "image/svg+xml", `<svg `},
		{"/favicon.ico", "image/svg+xml", `<svg `}, // for browsers that ask without reading the link
	}
	for _, tt := range tests {
		t.Run(tt.path+" "+tt.contains, func(t *testing.T) {
			res, err := srv.Client().Get(srv.URL + tt.path)
			require.NoError(t, err)
			defer res.Body.Close()
			body, _ := io.ReadAll(res.Body)
			assert.Equal(t, http.StatusOK, res.StatusCode)
			assert.Equal(t, tt.contentType, res.Header.Get("Content-Type"))
			assert.Contains(t, res.Header.Get("Content-Security-Policy"), "script-src 'self'")
			assert.Contains(t, res.Header.Get("Content-Security-Policy"), "img-src 'self'", "the favicon loads")
			assert.Contains(t, string(body), tt.contains)
		})
	}
	res, err := srv.Client().Get(srv.URL + "/nothing-here")
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusNotFound, res.StatusCode)
}

func TestLastIsNullBeforeAnyHandshake(t *testing.T) {
	srv, _ := newServer(t)
	res, err := srv.Client().Get(srv.URL + "/last")
	require.NoError(t, err)
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	assert.Equal(t, "null\n", string(body))
}

func TestMaskKeepsFourCharacters(t *testing.T) {
	assert.Equal(t, "s3cr…", mask(testToken))
	assert.Equal(t, "…", mask("short"))
	assert.Equal(t, "…", mask(""))
}

// postTicket asks POST /ticket with header and returns the response and
// its body.
func postTicket(t *testing.T, srv *httptest.Server, method string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+"/ticket", nil)
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res, string(body)
}

// getTicket fetches a ticket with the token as Bearer, sending origin as
// Origin unless it is empty.
func getTicket(t *testing.T, srv *httptest.Server, origin string) string {
	t.Helper()
	h := http.Header{"Authorization": {"Bearer " + testToken}}
	if origin != "" {
		h.Set("Origin", origin)
	}
	res, body := postTicket(t, srv, http.MethodPost, h)
	require.Equal(t, http.StatusOK, res.StatusCode, body)
	var tk struct {
		Ticket    string `json:"ticket"`
		ExpiresIn int    `json:"expires_in"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &tk))
	require.Len(t, tk.Ticket, ticket.Length)
	return tk.Ticket
}

func TestTicketIssuer(t *testing.T) {
	srv, logs := newServer(t)
	other := "http://127.0.0.1:1"
	cookie := cookieName + "=" + testToken

	tests := []struct {
		name     string
		method   string
		header   http.Header
		want     int
		wantBody string
	}{
		{name: "bearer", header: http.Header{"Authorization": {"Bearer " + testToken}}, want: http.StatusOK, wantBody: `"expires_in":30`},
		{name: "bearer from another origin (not ambient)", header: http.Header{"Authorization": {"Bearer " + testToken}, "Origin": {other}}, want: http.StatusOK},
		{name: "cookie, same origin", header: http.Header{"Cookie": {cookie}, "Origin": {srv.URL}}, want: http.StatusOK, wantBody: `"ticket":"`},
		{name: "no credential", want: http.StatusUnauthorized, wantBody: "POST /ticket needs the demo token: Authorization: Bearer TOKEN, or the wsgate_token cookie"},
		{name: "wrong bearer token", header: http.Header{"Authorization": {"Bearer wrong-token-0123456789"}}, want: http.StatusUnauthorized, wantBody: "wrong token (bearer)"},
		{name: "wrong cookie, same origin", header: http.Header{"Cookie": {cookieName + "=wrong-token-0123456789"}, "Origin": {srv.URL}}, want: http.StatusUnauthorized, wantBody: "wrong token (cookie)"},
		{name: "cookie, cross origin", header: http.Header{"Cookie": {cookie}, "Origin": {other}}, want: http.StatusForbidden, wantBody: "same-origin Origin"},
		{name: "cookie without Origin", header: http.Header{"Cookie": {cookie}}, want: http.StatusForbidden, wantBody: "same-origin Origin"},
		{name: "GET", method: http.MethodGet, header: http.Header{"Authorization": {"Bearer " + testToken}}, want: http.StatusMethodNotAllowed},
		{name: "PUT", method: http.MethodPut, header: http.Header{"Authorization": {"Bearer " + testToken}}, want: http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			res, body := postTicket(t, srv, method, tt.header)
			require.Equal(t, tt.want, res.StatusCode, body)
			assert.Contains(t, body, tt.wantBody)
			assert.Equal(t, "no-store", res.Header.Get("Cache-Control"))
			assertNoSecret(t, "the answer", body)
			switch tt.want {
			case http.StatusOK:
				assert.Equal(t, "application/json", res.Header.Get("Content-Type"))
			case http.StatusUnauthorized:
				assert.True(t, strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer "), res.Header.Get("WWW-Authenticate"))
			case http.StatusMethodNotAllowed:
				assert.Equal(t, "POST", res.Header.Get("Allow"))
			}
		})
	}
	assert.Contains(t, logs.String(), "msg=ticket outcome=issued")
	assert.Contains(t, logs.String(), "msg=ticket outcome=refused status=403")
	assertNoSecret(t, "the log", logs.String())
}

// readHello reads the server's hello and checks the round trip.
func readHello(t *testing.T, d dialed) (principal user, source, protocol string) {
	t.Helper()
	msg, err := wsutil.ReadServerText(d.rw)
	require.NoError(t, err)
	var hello struct {
		Type      string
		Principal user
		Source    string
		Protocol  string
	}
	require.NoError(t, json.Unmarshal(msg, &hello))
	require.Equal(t, "hello", hello.Type)
	require.NoError(t, wsutil.WriteClientText(d.conn, []byte("round trip")))
	echo, err := wsutil.ReadServerText(d.rw)
	require.NoError(t, err)
	assert.Equal(t, "round trip", string(echo))
	return hello.Principal, hello.Source, hello.Protocol
}

// readClose reads the next frame, which must be a close frame, and returns
// its code and reason.
func readClose(t *testing.T, d dialed) (int, string) {
	t.Helper()
	require.NoError(t, d.conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	h, err := ws.ReadHeader(d.rw)
	require.NoError(t, err)
	require.LessOrEqual(t, h.Length, int64(ws.MaxControlFramePayloadSize), "a close frame's payload")
	payload := make([]byte, h.Length)
	_, err = io.ReadFull(d.rw, payload)
	require.NoError(t, err)
	require.Equal(t, ws.OpClose, h.OpCode, "payload %q", payload)
	require.False(t, h.Masked, "server frames are not masked")
	code, reason := ws.ParseCloseFrameData(payload)
	return int(code), reason
}

func TestTicketOpensOneSocketOnce(t *testing.T) {
	srv, logs := newServer(t)
	ticketPrincipal := user{Name: "demo-user", Via: "ticket"}

	for _, path := range []string{pathWS, pathWSClose} {
		t.Run(path+" query", func(t *testing.T) {
			tk := getTicket(t, srv, "")
			d := dial(t, endpointURL(srv, path, "?ticket="+tk), []string{"chat"}, nil)
			require.Equal(t, http.StatusSwitchingProtocols, d.status)
			p, source, protocol := readHello(t, d)
			assert.Equal(t, ticketPrincipal, p)
			assert.Equal(t, "query", source)
			assert.Equal(t, "chat", protocol)
			last, raw := settledLast(t, srv)
			assert.Equal(t, "query", last.Source)
			assert.NotContains(t, raw, tk)

			again := dial(t, endpointURL(srv, path, "?ticket="+tk), []string{"chat"}, nil)
			if path == pathWS {
				assert.Equal(t, http.StatusUnauthorized, again.status)
			} else {
				require.Equal(t, http.StatusSwitchingProtocols, again.status)
				code, reason := readClose(t, again)
				assert.Equal(t, 4401, code)
				assert.Equal(t, "invalid credential", reason)
			}
		})
		t.Run(path+" subprotocol", func(t *testing.T) {
			tk := getTicket(t, srv, "")
			d := dial(t, endpointURL(srv, path, ""), []string{"chat", "access_token", tk}, nil)
			require.Equal(t, http.StatusSwitchingProtocols, d.status)
			assert.Equal(t, "chat", d.protocol)
			p, source, _ := readHello(t, d)
			assert.Equal(t, ticketPrincipal, p)
			assert.Equal(t, "subprotocol", source)

			again := dial(t, endpointURL(srv, path, ""), []string{"chat", "access_token", tk}, nil)
			if path == pathWS {
				assert.Equal(t, http.StatusUnauthorized, again.status)
			} else {
				require.Equal(t, http.StatusSwitchingProtocols, again.status)
				code, _ := readClose(t, again)
				assert.Equal(t, 4401, code)
			}
		})
	}

	t.Run("a ticket is bound to the Origin that fetched it", func(t *testing.T) {
		tk := getTicket(t, srv, srv.URL)
		d := dial(t, wsURL(srv, "?ticket="+tk), []string{"chat"}, nil)
		assert.Equal(t, http.StatusUnauthorized, d.status, "no Origin: refused, and the ticket is spent")

		tk = getTicket(t, srv, srv.URL)
		d = dial(t, wsURL(srv, "?ticket="+tk), []string{"chat"}, http.Header{"Origin": {srv.URL}})
		require.Equal(t, http.StatusSwitchingProtocols, d.status)
	})
	t.Run("the parameters do not mix", func(t *testing.T) {
		tk := getTicket(t, srv, "")
		assert.Equal(t, http.StatusUnauthorized, dial(t, wsURL(srv, "?access_token="+tk), []string{"chat"}, nil).status)
		assert.Equal(t, http.StatusUnauthorized, dial(t, wsURL(srv, "?ticket="+testToken), []string{"chat"}, nil).status)
	})
	assertNoSecret(t, "the log", logs.String())
}

func TestCloseFrameEndpointRefusesWithACloseFrame(t *testing.T) {
	srv, logs := newServer(t)

	tests := []struct {
		name       string
		protocols  []string
		header     http.Header
		wantCode   int
		wantReason string
	}{
		{name: "wrong token", protocols: []string{"chat", "access_token", "wrong-token-0123456789"}, wantCode: 4401, wantReason: "invalid credential"},
		{name: "wrong bearer token", protocols: []string{"chat"}, header: http.Header{"Authorization": {"Bearer wrong-token-0123456789"}}, wantCode: 4401, wantReason: "invalid credential"},
		{name: "no token", protocols: []string{"chat"}, wantCode: 4401, wantReason: "credential required"},
		{name: "two credentials", protocols: []string{"chat", "access_token", testToken}, header: http.Header{"Authorization": {"Bearer " + testToken}}, wantCode: 4401, wantReason: "more than one credential"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := dial(t, endpointURL(srv, pathWSClose, ""), tt.protocols, tt.header)
			require.Equal(t, http.StatusSwitchingProtocols, d.status)
			assert.Equal(t, "chat", d.protocol)
			code, reason := readClose(t, d)
			assert.Equal(t, tt.wantCode, code)
			assert.Equal(t, tt.wantReason, reason)

			last, raw := settledLast(t, srv)
			assert.Equal(t, pathWSClose, last.Path)
			assert.Equal(t, http.StatusSwitchingProtocols, last.Status)
			assert.Equal(t, tt.wantCode, last.Close)
			assert.Equal(t, tt.wantReason, last.Reason)
			assert.Empty(t, last.Source)
			assertNoSecret(t, "/last", raw)
		})
	}

	t.Run("another origin is still an HTTP 403", func(t *testing.T) {
		d := dial(t, endpointURL(srv, pathWSClose, ""), []string{"chat", "access_token", testToken}, http.Header{"Origin": {"http://127.0.0.1:1"}})
		assert.Equal(t, http.StatusForbidden, d.status)
		last, _ := settledLast(t, srv)
		assert.Equal(t, http.StatusForbidden, last.Status)
		assert.Zero(t, last.Close)
	})
	t.Run("the right token works as on /ws", func(t *testing.T) {
		d := dial(t, endpointURL(srv, pathWSClose, ""), []string{"chat", "access_token", testToken}, nil)
		require.Equal(t, http.StatusSwitchingProtocols, d.status)
		p, source, _ := readHello(t, d)
		assert.Equal(t, user{Name: "demo-user"}, p)
		assert.Equal(t, "subprotocol", source)
	})
	assert.Contains(t, logs.String(), `way=subprotocol outcome=refused status=101 close=4401 remote=`)
	assert.Contains(t, logs.String(), `reason="credential required" path=/ws-close`)
	assertNoSecret(t, "the log", logs.String())
}

func TestInBandEndpoint(t *testing.T) {
	srv, logs := newServer(t)
	auth := func(token string) []byte {
		b, _ := json.Marshal(map[string]string{"type": "auth", "token": token})
		return b
	}

	t.Run("the right token", func(t *testing.T) {
		d := dial(t, endpointURL(srv, pathInBand, ""), []string{"chat"}, nil)
		require.Equal(t, http.StatusSwitchingProtocols, d.status)
		assert.Equal(t, "chat", d.protocol)
		require.NoError(t, wsutil.WriteClientText(d.conn, auth(testToken)))
		p, source, protocol := readHello(t, d)
		assert.Equal(t, user{Name: "demo-user"}, p)
		assert.Equal(t, "message", source)
		assert.Equal(t, "chat", protocol)
		last, _ := settledLast(t, srv)
		assert.Equal(t, http.StatusSwitchingProtocols, last.Status)
		assert.Equal(t, "message", last.Source)
	})
	t.Run("a wrong token", func(t *testing.T) {
		d := dial(t, endpointURL(srv, pathInBand, ""), []string{"chat"}, nil)
		require.Equal(t, http.StatusSwitchingProtocols, d.status)
		require.NoError(t, wsutil.WriteClientText(d.conn, auth("wrong-token-0123456789")))
		code, reason := readClose(t, d)
		assert.Equal(t, 4401, code)
		assert.Equal(t, "invalid credential", reason)
		last, _ := settledLast(t, srv)
		assert.Equal(t, 4401, last.Close)
	})
	t.Run("no message", func(t *testing.T) {
		d := dial(t, endpointURL(srv, pathInBand, ""), []string{"chat"}, nil)
		require.Equal(t, http.StatusSwitchingProtocols, d.status)
		start := time.Now()
		code, reason := readClose(t, d)
		assert.Equal(t, 4408, code)
		assert.Equal(t, "authentication timed out", reason)
		assert.InDelta(t, inBandTimeout.Seconds(), time.Since(start).Seconds(), 1)
	})
	assert.Contains(t, logs.String(), "way=message outcome=accepted status=101")
	assert.Contains(t, logs.String(), "way=message outcome=refused status=101 close=4401")
	assert.Contains(t, logs.String(), `way=message outcome=refused status=101`)
	assertNoSecret(t, "the log", logs.String())
}

func TestTwoDemosRunSideBySide(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	a, err := start("127.0.0.1:0", crossAuto, testToken, log)
	require.NoError(t, err)
	t.Cleanup(a.shutdown)
	// The second demo listens on the port just below the first one's, when
	// that is free, so that the port after its own is the first demo's
	// main listener, and its cross-origin listener must find another.
	_, port, _ := net.SplitHostPort(a.addr)
	p, _ := strconv.Atoi(port)
	addrB := "127.0.0.1:0"
	if ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p-1)); err == nil {
		ln.Close()
		addrB = ln.Addr().String()
	}
	b, err := start(addrB, crossAuto, testToken, log)
	require.NoError(t, err)
	t.Cleanup(b.shutdown)

	pages := []string{a.page, a.cross, b.page, b.cross}
	for _, u := range pages {
		require.NotEmpty(t, u)
		res, err := http.Get(u)
		require.NoError(t, err)
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		assert.Equal(t, http.StatusOK, res.StatusCode, u)
		assert.Contains(t, string(body), `<script src="/app.js"></script>`, u)
	}
	seen := map[string]bool{}
	for _, u := range pages {
		assert.False(t, seen[u], "two listeners on %s", u)
		seen[u] = true
	}
}

func TestCrossListenerTakesTheNextPortOrAFreeOne(t *testing.T) {
	main, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer main.Close()
	port := main.Addr().(*net.TCPAddr).Port

	t.Run("the port after the main one", func(t *testing.T) {
		cln, err := listenCross(crossAuto, main.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer cln.Close()
		// Another process may hold port+1; then a free port is just as right.
		if got := cln.Addr().(*net.TCPAddr).Port; got != port+1 {
			t.Logf("port %d was taken; got %d", port+1, got)
		}
	})
	t.Run("a free port when the next one is taken", func(t *testing.T) {
		taken, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+1))
		if err == nil {
			defer taken.Close()
		} // else something else holds it, which is the same case
		cln, err := listenCross(crossAuto, main.Addr())
		require.NoError(t, err)
		defer cln.Close()
		got := cln.Addr().(*net.TCPAddr)
		assert.NotEqual(t, port+1, got.Port)
		assert.True(t, got.IP.IsLoopback(), "on the main listener's host, got %s", got)
	})
	t.Run("an explicit address is used as given, or fails", func(t *testing.T) {
		_, err := listenCross(main.Addr().String(), main.Addr())
		assert.Error(t, err)
	})
}

// writeClientFrame writes a masked client frame with op and payload.
func writeClientFrame(t *testing.T, d dialed, op ws.OpCode, payload []byte) {
	t.Helper()
	f := ws.MaskFrame(ws.NewFrame(op, true, payload))
	require.NoError(t, ws.WriteFrame(d.conn, f))
}

func TestEchoClosesWhatItCannotEcho(t *testing.T) {
	srv, logs := newServer(t)
	open := func(t *testing.T) dialed {
		d := dial(t, wsURL(srv, ""), []string{"chat", "access_token", testToken}, nil)
		require.Equal(t, http.StatusSwitchingProtocols, d.status)
		readHello(t, d)
		return d
	}

	t.Run("a message of 64 KiB is echoed", func(t *testing.T) {
		d := open(t)
		msg := bytes.Repeat([]byte("a"), maxMessage)
		writeClientFrame(t, d, ws.OpBinary, msg)
		require.NoError(t, d.conn.SetReadDeadline(time.Now().Add(5*time.Second)))
		got, op, err := wsutil.ReadServerData(d.rw)
		require.NoError(t, err)
		assert.Equal(t, ws.OpBinary, op)
		assert.Equal(t, msg, got)
	})
	t.Run("a frame over 64 KiB gets close 1009", func(t *testing.T) {
		d := open(t)
		writeClientFrame(t, d, ws.OpBinary, bytes.Repeat([]byte("a"), maxMessage+1))
		code, reason := readClose(t, d)
		assert.Equal(t, int(ws.StatusMessageTooBig), code)
		assert.Equal(t, "message over 64 KiB", reason)
	})
	t.Run("a fragmented message over 64 KiB gets close 1009", func(t *testing.T) {
		d := open(t)
		half := bytes.Repeat([]byte("a"), maxMessage/2+1)
		require.NoError(t, ws.WriteFrame(d.conn, ws.MaskFrame(ws.NewFrame(ws.OpBinary, false, half))))
		require.NoError(t, ws.WriteFrame(d.conn, ws.MaskFrame(ws.NewFrame(ws.OpContinuation, true, half))))
		code, _ := readClose(t, d)
		assert.Equal(t, int(ws.StatusMessageTooBig), code)
	})
	t.Run("an unmasked frame gets close 1002", func(t *testing.T) {
		d := open(t)
		require.NoError(t, ws.WriteFrame(d.conn, ws.NewTextFrame([]byte("not masked"))))
		code, reason := readClose(t, d)
		assert.Equal(t, int(ws.StatusProtocolError), code)
		assert.Equal(t, "protocol error", reason)
	})
	t.Run("a frame with RSV1 and no compression gets close 1002", func(t *testing.T) {
		d := open(t)
		f := ws.NewTextFrame([]byte("x"))
		f.Header.Rsv = ws.Rsv(true, false, false)
		require.NoError(t, ws.WriteFrame(d.conn, ws.MaskFrame(f)))
		code, _ := readClose(t, d)
		assert.Equal(t, int(ws.StatusProtocolError), code)
	})
	assert.Contains(t, logs.String(), "msg=echo outcome=closed close=1009")
	assert.Contains(t, logs.String(), "msg=echo outcome=closed close=1002")
	assertNoSecret(t, "the log", logs.String())
}
