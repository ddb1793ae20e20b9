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
	"strings"
	"sync"
	"testing"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/wsgate/wsgate"
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
	srv := httptest.NewServer(d.handler(pageConfig{}))
	t.Cleanup(srv.Close)
	return srv, logs
}

func wsURL(srv *httptest.Server, query string) string {
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws" + query
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

			msg, err := wsutil.ReadServerText(d.rw)
			require.NoError(t, err)
			var hello struct {
				Type      string
				Principal user
				Source    string
				Protocol  string
			}
			require.NoError(t, json.Unmarshal(msg, &hello))
			assert.Equal(t, "hello", hello.Type)
			assert.Equal(t, user{Name: "demo-user"}, hello.Principal)
			assert.Equal(t, tt.wantSource.String(), hello.Source)
			assert.Equal(t, "chat", hello.Protocol)

			require.NoError(t, wsutil.WriteClientText(d.conn, []byte("round trip")))
			echo, err := wsutil.ReadServerText(d.rw)
			require.NoError(t, err)
			assert.Equal(t, "round trip", string(echo))

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

	tests := []struct {
		name   string
		header http.Header
		host   string
		want   int
	}{
		{name: "same origin", want: http.StatusOK},
		{name: "same origin, with fetch metadata", header: http.Header{"Sec-Fetch-Site": {"same-origin"}, "Origin": {srv.URL}}, want: http.StatusOK},
		{name: "another origin", header: http.Header{"Origin": {"http://127.0.0.1:1"}}, want: http.StatusForbidden},
		{name: "cross-site fetch", header: http.Header{"Sec-Fetch-Site": {"cross-site"}}, want: http.StatusForbidden},
		{name: "same-site fetch from another port", header: http.Header{"Sec-Fetch-Site": {"same-site"}}, want: http.StatusForbidden},
		{name: "a DNS-rebound host name", host: "rebound.example:" + strings.Split(host, ":")[1], want: http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, srv.URL+"/config", nil)
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
		req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1/config", nil)
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
	res, err := srv.Client().Get(srv.URL + "/config")
	require.NoError(t, err)
	defer res.Body.Close()
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
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			res, err := srv.Client().Get(srv.URL + tt.path)
			require.NoError(t, err)
			defer res.Body.Close()
			body, _ := io.ReadAll(res.Body)
			assert.Equal(t, http.StatusOK, res.StatusCode)
			assert.Equal(t, tt.contentType, res.Header.Get("Content-Type"))
			assert.Contains(t, res.Header.Get("Content-Security-Policy"), "script-src 'self'")
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
