package wsgate

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const secret = "S3cr3tT0ken-sentinel_9f2c"

type user struct{ Name string }

// allWays is a gate configuration that accepts the token every way.
func allWays() Config {
	return Config{
		Protocols: []string{"chat"},
		Extractors: []Extractor{
			Subprotocol(DefaultMarker),
			SubprotocolPrefix(KubernetesPrefix),
			Basic(),
			Bearer(),
			Cookie("session"),
			Query("access_token"),
		},
	}
}

func b64url(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func basicAuth(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// serveOnce runs h on r with an in-memory writer.
func serveOnce(h http.Handler, r *http.Request) *hijackWriter {
	w := newHijackWriter()
	h.ServeHTTP(w, r)
	return w
}

func echoHandler(ctx context.Context, s Session[user]) {}

func TestCompositionAndErrorMapping(t *testing.T) {
	tests := []struct {
		name     string
		cfg      func(*Config)
		verify   Verifier[user]
		request  *http.Request
		status   int
		sentinel error
		wwwAuth  string
	}{
		{
			name:     "no credential is answered 401 with a Bearer challenge",
			request:  newHandshake("/ws"),
			status:   401,
			sentinel: ErrNoCredential,
			wwwAuth:  `Bearer realm="wsgate"`,
		},
		{
			name:     "the realm is configurable",
			cfg:      func(c *Config) { c.Realm = `chat "prod"` },
			request:  newHandshake("/ws"),
			status:   401,
			sentinel: ErrNoCredential,
			wwwAuth:  `Bearer realm="chat \"prod\""`,
		},
		{
			name: "no credential with a Basic challenge configured asks for Basic",
			cfg: func(c *Config) {
				c.Extractors = []Extractor{Subprotocol(""), Basic(Challenge)}
			},
			request:  newHandshake("/ws"),
			status:   401,
			sentinel: ErrNoCredential,
			wwwAuth:  `Basic realm="wsgate", charset="UTF-8"`,
		},
		{
			name:     "two explicit credentials are refused with 400 invalid_request",
			request:  newHandshake("/ws?access_token="+secret, "Authorization", "Bearer "+secret),
			status:   400,
			sentinel: ErrAmbiguousCredential,
			wwwAuth:  `Bearer realm="wsgate", error="invalid_request"`,
		},
		{
			name:    "an explicit credential wins over a cookie the browser attached",
			request: newHandshake("/ws", "Authorization", "Bearer "+secret, "Cookie", "session=other", "Origin", "http://127.0.0.1:8080"),
			status:  101,
		},
		{
			name:    "with FirstCredentialWins the first explicit extractor in order wins",
			cfg:     func(c *Config) { c.FirstCredentialWins = true },
			request: newHandshake("/ws?access_token=other", "Authorization", "Bearer "+secret),
			status:  101,
		},
		{
			name:     "with FirstCredentialWins a wrong first credential still loses",
			cfg:      func(c *Config) { c.FirstCredentialWins = true },
			request:  newHandshake("/ws", "Authorization", "Bearer wrong", "Cookie", "session="+secret, "Origin", "http://127.0.0.1:8080"),
			status:   401,
			sentinel: ErrInvalidToken,
			wwwAuth:  `Bearer realm="wsgate", error="invalid_token"`,
		},
		{
			name:     "a wrong token is refused with 401 invalid_token",
			request:  newHandshake("/ws", "Authorization", "Bearer wrong"),
			status:   401,
			sentinel: ErrInvalidToken,
			wwwAuth:  `Bearer realm="wsgate", error="invalid_token"`,
		},
		{
			name: "a forbidden principal is refused with 403 insufficient_scope",
			verify: func(context.Context, Credential) (user, error) {
				return user{}, fmt.Errorf("role viewer: %w", ErrForbidden)
			},
			request:  newHandshake("/ws", "Authorization", "Bearer "+secret),
			status:   403,
			sentinel: ErrForbidden,
			wwwAuth:  `Bearer realm="wsgate", error="insufficient_scope"`,
		},
		{
			name: "a verifier that overruns the deadline is answered 503",
			cfg:  func(c *Config) { c.VerifyTimeout = 20 * time.Millisecond },
			verify: func(ctx context.Context, _ Credential) (user, error) {
				<-ctx.Done()
				return user{}, ctx.Err()
			},
			request:  newHandshake("/ws", "Authorization", "Bearer "+secret),
			status:   503,
			sentinel: ErrVerifyTimeout,
		},
		{
			name: "any other verifier error is answered 500 without its text",
			verify: func(context.Context, Credential) (user, error) {
				return user{}, errors.New("database down")
			},
			request:  newHandshake("/ws", "Authorization", "Bearer "+secret),
			status:   500,
			sentinel: ErrVerifier,
		},
		{
			name:     "a cookie from a foreign origin is refused with 403",
			request:  newHandshake("/ws", "Cookie", "session="+secret, "Origin", "http://127.0.0.1:9999"),
			status:   403,
			sentinel: ErrOrigin,
		},
		{
			name:     "a cookie without any Origin is refused with 403",
			request:  newHandshake("/ws", "Cookie", "session="+secret),
			status:   403,
			sentinel: ErrOrigin,
		},
		{
			name: "a cookie without Origin passes when the extractor allows it",
			cfg: func(c *Config) {
				c.Extractors = []Extractor{Cookie("session", InsecureAllowNoOrigin)}
			},
			request: newHandshake("/ws", "Cookie", "session="+secret),
			status:  101,
		},
		{
			name:     "a cookie from a foreign origin is refused even with InsecureSkipOriginCheck",
			cfg:      func(c *Config) { c.Origin.InsecureSkipOriginCheck = true },
			request:  newHandshake("/ws", "Cookie", "session="+secret, "Origin", "http://evil.example"),
			status:   403,
			sentinel: ErrOrigin,
		},
		{
			name:    "a bearer token from a foreign origin passes with InsecureSkipOriginCheck",
			cfg:     func(c *Config) { c.Origin.InsecureSkipOriginCheck = true },
			request: newHandshake("/ws", "Authorization", "Bearer "+secret, "Origin", "http://evil.example"),
			status:  101,
		},
		{
			name:     "a foreign origin is refused before any credential is read",
			request:  newHandshake("/ws", "Authorization", "Bearer "+secret, "Origin", "http://evil.example"),
			status:   403,
			sentinel: ErrOrigin,
		},
		{
			name:     "Sec-Fetch-Site: cross-site is refused without an allow-list",
			request:  newHandshake("/ws", "Authorization", "Bearer "+secret, "Sec-Fetch-Site", "cross-site"),
			status:   403,
			sentinel: ErrOrigin,
		},
		{
			name:     "a malformed protocol list is refused with 400",
			request:  newHandshake("/ws", "Sec-WebSocket-Protocol", "chat, chat", "Authorization", "Bearer "+secret),
			status:   400,
			sentinel: ErrProtocols,
		},
		{
			name:     "the prefix form without an application protocol is refused with 400",
			request:  newHandshake("/ws", "Sec-WebSocket-Protocol", KubernetesPrefix+b64url(secret)),
			status:   400,
			sentinel: ErrProtocols,
		},
		{
			name:     "an undecodable prefix token is refused with 401 invalid_token",
			request:  newHandshake("/ws", "Sec-WebSocket-Protocol", "chat, "+KubernetesPrefix+"!!"),
			status:   401,
			sentinel: ErrMalformedCredential,
			wwwAuth:  `Bearer realm="wsgate", error="invalid_token"`,
		},
		{
			name:     "a marker with no token after it is refused with 400",
			request:  newHandshake("/ws", "Sec-WebSocket-Protocol", "chat, access_token"),
			status:   400,
			sentinel: ErrMalformedCredential,
			wwwAuth:  `Bearer realm="wsgate", error="invalid_request"`,
		},
		{
			name:     "a Basic password is refused by a static token",
			request:  newHandshake("/ws", "Authorization", basicAuth("alice", secret)),
			status:   401,
			sentinel: ErrInvalidToken,
			wwwAuth:  `Basic realm="wsgate", charset="UTF-8"`, // a Basic client is answered in its scheme
		},
		{
			name:    "a Basic username with an empty password is a token",
			request: newHandshake("/ws", "Authorization", basicAuth(secret, "")),
			status:  101,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := allWays()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			verify := tt.verify
			if verify == nil {
				verify = StaticToken(secret, user{"alice"})
			}
			g := New(verify, cfg)
			a, err := g.Authenticate(tt.request.Clone(context.Background()))
			w := serveOnce(g.Handler(echoHandler), tt.request)
			if tt.status == 101 {
				require.NoError(t, err)
				assert.Equal(t, user{"alice"}, a.Principal)
				assert.True(t, w.hijacked)
				assert.True(t, strings.HasPrefix(w.out.String(), "HTTP/1.1 101 "))
				return
			}
			require.Error(t, err)
			assert.ErrorIs(t, err, tt.sentinel)
			var e *Error
			require.ErrorAs(t, err, &e)
			assert.Equal(t, tt.status, e.Status)
			assert.False(t, w.hijacked)
			assert.Equal(t, tt.status, w.status)
			assert.Equal(t, "close", w.header.Get("Connection"))
			assert.Equal(t, tt.wwwAuth, w.header.Get("WWW-Authenticate"))
			assert.NotContains(t, w.responseText(), secret)
			assert.NotContains(t, err.Error(), secret)
			assert.NotContains(t, w.responseText(), "database down")
		})
	}
}

func TestVerifierErrorIsKeptForTheCaller(t *testing.T) {
	cause := errors.New("database down")
	g := New(func(context.Context, Credential) (user, error) { return user{}, cause }, allWays())
	_, err := g.Authenticate(newHandshake("/ws", "Authorization", "Bearer x"))
	assert.ErrorIs(t, err, ErrVerifier)
	assert.ErrorIs(t, err, cause)
	assert.Equal(t, cause, errors.Unwrap(err), "errors.Unwrap gives the verifier's error")
	assert.Equal(t, "wsgate: internal error: database down", err.Error())
}

func TestVerifierContextCarriesDeadlineAndRequestValues(t *testing.T) {
	type key struct{}
	var got context.Context
	g := New(func(ctx context.Context, c Credential) (user, error) {
		got = ctx
		_, has := ctx.Deadline()
		assert.True(t, has)
		assert.Equal(t, "v", ctx.Value(key{}))
		assert.NoError(t, ctx.Err())
		return user{"alice"}, nil
	}, Config{VerifyTimeout: time.Minute})
	r := newHandshake("/ws", "Authorization", "Bearer x")
	r = r.WithContext(context.WithValue(r.Context(), key{}, "v"))
	_, err := g.Authenticate(r)
	require.NoError(t, err)
	// Once the verifier has returned, its context is done.
	select {
	case <-got.Done():
	case <-time.After(time.Second):
		t.Fatal("verifier context still live after verification")
	}
	assert.ErrorIs(t, got.Err(), context.Canceled)
}

func TestVerifierDeadlineStartsAtTheFirstLook(t *testing.T) {
	var first, again time.Time
	g := New(func(ctx context.Context, c Credential) (user, error) {
		before := time.Now()
		first, _ = ctx.Deadline()
		again, _ = ctx.Deadline()
		assert.False(t, first.Before(before.Add(time.Minute)), "the deadline counts from the first look")
		return user{"alice"}, nil
	}, Config{VerifyTimeout: time.Minute})
	_, err := g.Authenticate(newHandshake("/ws", "Authorization", "Bearer x"))
	require.NoError(t, err)
	assert.Equal(t, first, again, "the deadline does not move once started")
}

func TestStaticToken(t *testing.T) {
	v := StaticToken("s3cret-token", user{"alice"})
	tests := []struct {
		token string
		ok    bool
	}{
		{"s3cret-token", true},
		{"s3cret-toke", false},      // a prefix
		{"s3cret-token-x", false},   // longer
		{"S3cret-token", false},     // case matters
		{"x3cret-token", false},     // same length
		{"", false},                 // empty
		{"s3cret-token\x00", false}, // a NUL suffix
	}
	for _, tt := range tests {
		p, err := v(context.Background(), NewCredential(SourceBearer, tt.token))
		if tt.ok {
			assert.NoError(t, err, "%q", tt.token)
			assert.Equal(t, user{"alice"}, p)
		} else {
			assert.ErrorIs(t, err, ErrInvalidToken, "%q", tt.token)
			assert.Equal(t, user{}, p)
		}
	}
	assert.Panics(t, func() { StaticToken("", user{}) })
	assert.Zero(t, testing.AllocsPerRun(100, func() {
		_, _ = v(context.Background(), NewCredential(SourceBearer, "s3cret-token"))
	}))
}

func TestVerifierContextIsCancelledWhenTheRequestIs(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	g := New(func(vctx context.Context, c Credential) (user, error) {
		cancel()
		<-vctx.Done()
		return user{}, vctx.Err()
	}, Config{})
	_, err := g.Authenticate(newHandshake("/ws", "Authorization", "Bearer x").WithContext(ctx))
	assert.ErrorIs(t, err, ErrVerifyTimeout)
}

func TestEcho(t *testing.T) {
	tests := []struct {
		name     string
		offered  string
		protos   []string
		wantEcho string
	}{
		{
			name:     "the marker form echoes the application protocol",
			offered:  "chat, access_token, " + secret,
			protos:   []string{"chat"},
			wantEcho: "chat",
		},
		{
			name:     "the marker form echoes the marker when no application protocol matches",
			offered:  "access_token, " + secret,
			protos:   []string{"chat"},
			wantEcho: "access_token",
		},
		{
			name:     "the server's preference order decides",
			offered:  "v1.chat, access_token, " + secret + ", v2.chat",
			protos:   []string{"v2.chat", "v1.chat"},
			wantEcho: "v2.chat",
		},
		{
			name:     "a token equal to a server protocol is still never echoed",
			offered:  "access_token, chat",
			protos:   []string{"chat"},
			wantEcho: "access_token",
		},
		{
			name:     "the prefix form echoes its companion protocol",
			offered:  "v5.channel.k8s.io, " + KubernetesPrefix + b64url(secret),
			protos:   []string{"v5.channel.k8s.io"},
			wantEcho: "v5.channel.k8s.io",
		},
		{
			name:     "the echo is the client's entry byte for byte",
			offered:  "Chat, access_token, " + secret,
			protos:   []string{"chat", "Chat"},
			wantEcho: "Chat",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token := secret
			if tt.offered == "access_token, chat" {
				token = "chat"
			}
			cfg := allWays()
			cfg.Protocols = tt.protos
			g := New(StaticToken(token, user{"alice"}), cfg)
			r := newHandshake("/ws", "Sec-WebSocket-Protocol", tt.offered)
			w := serveOnce(g.Handler(echoHandler), r)
			require.True(t, w.hijacked, w.responseText())
			resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(w.out.String())), nil)
			require.NoError(t, err)
			assert.Equal(t, []string{tt.wantEcho}, resp.Header.Values("Sec-WebSocket-Protocol"))
			if token == secret {
				assert.NotContains(t, w.out.String(), secret)
			}
		})
	}
}

func TestNoEchoWhenNothingMatchesAndNoMarker(t *testing.T) {
	g := New(StaticToken(secret, user{"alice"}), allWays())
	r := newHandshake("/ws", "Sec-WebSocket-Protocol", "graphql-ws", "Authorization", "Bearer "+secret)
	w := serveOnce(g.Handler(echoHandler), r)
	require.True(t, w.hijacked)
	assert.NotContains(t, w.out.String(), "Sec-WebSocket-Protocol")
}

// TestSecretsNeverLeak sends a sentinel secret through every failing path
// and looks for it in everything the client and the caller get back.
func TestSecretsNeverLeak(t *testing.T) {
	wrong := "Wr0ngSecret-sentinel_c4d1"
	for name, r := range refusedRequests(wrong) {
		t.Run(name, func(t *testing.T) {
			var logs strings.Builder
			log := slog.New(slog.NewTextHandler(&logs, nil))
			g := New(func(ctx context.Context, c Credential) (user, error) {
				log.Info("verifying", "credential", c, "fmt", fmt.Sprintf("%v %+v %#v %s", c, c, c, c))
				return StaticToken(secret, user{"alice"})(ctx, c)
			}, allWays())
			a, err := g.Authenticate(r.Clone(context.Background()))
			require.Error(t, err)
			log.Info("refused", "err", err, "auth", a)
			w := serveOnce(g.Handler(echoHandler), r)
			assert.False(t, w.hijacked)
			assert.NotContains(t, w.responseText(), wrong)
			assert.NotContains(t, err.Error(), wrong)
			assert.NotContains(t, fmt.Sprintf("%v %+v", err, err), wrong)
			assert.NotContains(t, logs.String(), wrong)
		})
	}
}

// refusedRequests are handshakes that carry the secret wrong and fail in
// every way the gate can refuse a credential.
func refusedRequests(wrong string) map[string]*http.Request {
	return map[string]*http.Request{
		"wrong bearer":           newHandshake("/ws", "Authorization", "Bearer "+wrong),
		"malformed bearer":       newHandshake("/ws", "Authorization", "Bearer "+wrong+" x"),
		"wrong basic":            newHandshake("/ws", "Authorization", basicAuth(wrong, "")),
		"basic with password":    newHandshake("/ws", "Authorization", basicAuth("alice", wrong)),
		"wrong marker token":     newHandshake("/ws", "Sec-WebSocket-Protocol", "chat, access_token, "+wrong),
		"wrong prefix token":     newHandshake("/ws", "Sec-WebSocket-Protocol", "chat, "+KubernetesPrefix+b64url(wrong)),
		"prefix without chat":    newHandshake("/ws", "Sec-WebSocket-Protocol", KubernetesPrefix+b64url(wrong)),
		"malformed list":         newHandshake("/ws", "Sec-WebSocket-Protocol", "access_token, "+wrong+", ,"),
		"wrong cookie":           newHandshake("/ws", "Cookie", "session="+wrong, "Origin", "http://127.0.0.1:8080"),
		"cookie foreign origin":  newHandshake("/ws", "Cookie", "session="+wrong, "Origin", "http://evil.example"),
		"two cookies":            newHandshake("/ws", "Cookie", "session="+wrong+"; session="+wrong, "Origin", "http://127.0.0.1:8080"),
		"wrong query":            newHandshake("/ws?access_token=" + wrong),
		"two query values":       newHandshake("/ws?access_token=" + wrong + "&access_token=" + wrong),
		"two places":             newHandshake("/ws?access_token="+wrong, "Authorization", "Bearer "+wrong),
		"bad key with secret":    newHandshake("/ws", "Authorization", "Bearer "+wrong, "Sec-WebSocket-Key", wrong),
		"bad origin with secret": newHandshake("/ws", "Authorization", "Bearer "+wrong, "Origin", "http://"+wrong),
	}
}

func TestQueryParameterIsGoneBeforeTheNextHandler(t *testing.T) {
	g := New(StaticToken(secret, user{"alice"}), allWays())
	var seenURI, seenQuery string
	h := g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seenURI, seenQuery = r.RequestURI, r.URL.RawQuery
		a, ok := AuthFrom[user](r.Context())
		assert.True(t, ok)
		assert.Equal(t, "alice", a.Principal.Name)
		assert.Equal(t, SourceQuery, a.Source)
	}))
	w := serveOnce(h, newHandshake("/ws?room=1&access_token="+secret+"&x=2"))
	require.Zero(t, w.status)
	assert.Equal(t, "/ws?room=1&x=2", seenURI)
	assert.Equal(t, "room=1&x=2", seenQuery)
}

func TestSubprotocolTokenIsGoneBeforeTheNextHandler(t *testing.T) {
	g := New(StaticToken(secret, user{"alice"}), allWays())
	var seen []string
	h := g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = r.Header.Values("Sec-WebSocket-Protocol")
		a, _ := AuthFrom[user](r.Context())
		assert.Equal(t, "chat", a.Protocol)
	}))
	serveOnce(h, newHandshake("/ws", "Sec-WebSocket-Protocol", "chat, access_token", "Sec-WebSocket-Protocol", secret))
	assert.Equal(t, []string{"chat, access_token"}, seen)
}

func TestAuthFromByTypeAndThroughDerivedContexts(t *testing.T) {
	type key struct{}
	g := New(StaticToken(secret, user{"alice"}), Config{})
	h := g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := context.WithValue(r.Context(), key{}, "v") // a later middleware's value
		a, ok := AuthFrom[user](ctx)
		assert.True(t, ok)
		assert.Equal(t, user{"alice"}, a.Principal)
		assert.Equal(t, SourceBearer, a.Source)
		_, ok = AuthFrom[*user](ctx)
		assert.False(t, ok, "another type")
		assert.Equal(t, "v", ctx.Value(key{}))
	}))
	w := serveOnce(h, newHandshake("/ws", "Authorization", "Bearer "+secret))
	require.Zero(t, w.status)
}

func TestAuthFromWithoutAGate(t *testing.T) {
	a, ok := AuthFrom[user](context.Background())
	assert.False(t, ok)
	assert.Equal(t, Auth[user]{}, a)
}

func TestNewPanicsOnProgrammingErrors(t *testing.T) {
	v := StaticToken(secret, user{})
	assert.Panics(t, func() { New[user](nil, Config{}) })
	assert.Panics(t, func() { New(v, Config{Origin: OriginPolicy{AllowedOrigins: []string{"example.com"}}}) })
	assert.Panics(t, func() { New(v, Config{Protocols: []string{"a b"}}) })
	assert.Panics(t, func() { StaticToken("", user{}) })
}

// --- Over real loopback TCP ---

func newServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func wsURL(srv *httptest.Server, path string) string {
	return "ws" + strings.TrimPrefix(srv.URL, "http") + path
}

// echoSession greets with the principal, the source and the protocol, then
// echoes one message.
func echoSession(ctx context.Context, s Session[user]) {
	hello := fmt.Sprintf("%s %s %s", s.Principal.Name, s.Source, s.Protocol)
	if wsutil.WriteServerText(s.Conn, []byte(hello)) != nil {
		return
	}
	msg, op, err := wsutil.ReadClientData(s.Conn)
	if err != nil {
		return
	}
	_ = wsutil.WriteServerMessage(s.Conn, op, msg)
}

func TestEveryWayOverLoopback(t *testing.T) {
	g := New(StaticToken(secret, user{"alice"}), allWays())
	srv := newServer(t, g.Handler(echoSession))
	origin := srv.URL
	tests := []struct {
		name      string
		path      string
		protocols []string
		header    http.Header
		want      string
	}{
		{
			name:      "subprotocol marker form",
			path:      "/ws",
			protocols: []string{"chat", "access_token", secret},
			want:      "alice subprotocol chat",
		},
		{
			name:      "subprotocol prefix form",
			path:      "/ws",
			protocols: []string{"chat", KubernetesPrefix + b64url(secret)},
			want:      "alice subprotocol-prefix chat",
		},
		{
			name:   "Basic username as bearer",
			path:   "/ws",
			header: http.Header{"Authorization": {basicAuth(secret, "")}},
			want:   "alice basic ",
		},
		{
			name:   "Authorization: Bearer",
			path:   "/ws",
			header: http.Header{"Authorization": {"Bearer " + secret}},
			want:   "alice bearer ",
		},
		{
			name:   "cookie with same-origin Origin",
			path:   "/ws",
			header: http.Header{"Cookie": {"session=" + secret}, "Origin": {origin}},
			want:   "alice cookie ",
		},
		{
			name: "query parameter",
			path: "/ws?access_token=" + secret,
			want: "alice query ",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			d := ws.Dialer{Protocols: tt.protocols, Timeout: 5 * time.Second}
			if tt.header != nil {
				d.Header = ws.HandshakeHeaderHTTP(tt.header)
			}
			conn, br, hs, err := d.Dial(ctx, wsURL(srv, tt.path))
			require.NoError(t, err)
			defer conn.Close()
			if len(tt.protocols) > 0 {
				assert.Equal(t, "chat", hs.Protocol)
			}
			var rd = conn.(interface{ Read([]byte) (int, error) })
			if br != nil {
				rd = br
			}
			hello, err := wsutil.ReadServerText(readWriter{rd, conn})
			require.NoError(t, err)
			assert.Equal(t, tt.want, string(hello))
			require.NoError(t, wsutil.WriteClientText(conn, []byte("ping")))
			echo, err := wsutil.ReadServerText(readWriter{rd, conn})
			require.NoError(t, err)
			assert.Equal(t, "ping", string(echo))
		})
	}
}

type readWriter struct {
	r interface{ Read([]byte) (int, error) }
	w net.Conn
}

func (rw readWriter) Read(p []byte) (int, error)  { return rw.r.Read(p) }
func (rw readWriter) Write(p []byte) (int, error) { return rw.w.Write(p) }

func TestRefusalOverLoopbackClosesTheConnection(t *testing.T) {
	g := New(StaticToken(secret, user{"alice"}), allWays())
	srv := newServer(t, g.Handler(echoSession))
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	req := "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + testKey + "\r\nAuthorization: Bearer wrong\r\n\r\n"
	// A second, valid request pipelined behind the refused one.
	second := strings.Replace(req, "Bearer wrong", "Bearer "+secret, 1)
	_, err = conn.Write([]byte(req + second))
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 401, resp.StatusCode)
	assert.True(t, resp.Close)
	_, err = http.ReadResponse(br, nil)
	assert.Error(t, err, "the pipelined request must not be served")
}

func TestHandshakeOverRawTCPWithPipelinedFrame(t *testing.T) {
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := Upgrade(w, r)
		if err != nil {
			return
		}
		defer conn.Close()
		msg, op, err := wsutil.ReadClientData(conn)
		if err != nil {
			return
		}
		_ = wsutil.WriteServerMessage(conn, op, append([]byte("echo:"), msg...))
	}))
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	var frame strings.Builder
	require.NoError(t, ws.WriteFrame(&frame, ws.MaskFrame(ws.NewTextFrame([]byte("early")))))
	req := "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + testKey + "\r\n" +
		"\r\n"
	// The frame travels in the same write as the request.
	_, err = conn.Write([]byte(req + frame.String()))
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	assert.Equal(t, 101, resp.StatusCode)
	assert.Equal(t, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", resp.Header.Get("Sec-WebSocket-Accept"))
	assert.True(t, strings.EqualFold(resp.Header.Get("Upgrade"), "websocket"))
	msg, err := wsutil.ReadServerText(readWriter{br, conn})
	require.NoError(t, err)
	assert.Equal(t, "echo:early", string(msg))
}

// unwrapOnly wraps a ResponseWriter the way logging middlewares do: it
// implements Unwrap and nothing else.
type unwrapOnly struct{ http.ResponseWriter }

func (u unwrapOnly) Unwrap() http.ResponseWriter { return u.ResponseWriter }

func TestUpgradeThroughAWriterWithOnlyUnwrap(t *testing.T) {
	g := New(StaticToken(secret, user{"alice"}), allWays())
	h := g.Handler(echoSession)
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(unwrapOnly{w}, r)
	}))
	d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(http.Header{"Authorization": {"Bearer " + secret}})}
	conn, br, _, err := d.Dial(context.Background(), wsURL(srv, "/ws"))
	require.NoError(t, err)
	defer conn.Close()
	var r interface{ Read([]byte) (int, error) } = conn
	if br != nil {
		r = br
	}
	hello, err := wsutil.ReadServerText(readWriter{r, conn})
	require.NoError(t, err)
	assert.Equal(t, "alice bearer ", string(hello))
}

// noHijack is a ResponseWriter that cannot be hijacked.
type noHijack struct{ http.ResponseWriter }

// TestUpgradeWithoutAGateAllocatesNothing checks that Upgrade's own
// validation and 101 cost no allocation: the accept key is computed into
// the hijacked connection's buffer.
func TestUpgradeWithoutAGateAllocatesNothing(t *testing.T) {
	r := newHandshake("/ws", "Connection", "keep-alive, Upgrade")
	w := newHijackWriter()
	allocs := testing.AllocsPerRun(200, func() {
		w.reset()
		if _, err := Upgrade(w, r); err != nil {
			panic(err)
		}
	})
	assert.Zero(t, allocs)
}

func TestUpgradeWithoutHijackerAnswers500(t *testing.T) {
	rec := httptest.NewRecorder()
	conn, err := Upgrade(noHijack{rec}, newHandshake("/ws"))
	assert.Nil(t, conn)
	assert.ErrorIs(t, err, ErrUpgradeFailed)
	assert.Equal(t, 500, rec.Code)
	assert.NotEqual(t, 101, rec.Code)
	assert.Contains(t, rec.Body.String(), "hijack")
}

func TestServerDeadlinesAreClearedAfterUpgrade(t *testing.T) {
	done := make(chan error, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := Upgrade(w, r)
		if err != nil {
			done <- err
			return
		}
		defer conn.Close()
		// Longer than the server's ReadTimeout and WriteTimeout.
		time.Sleep(300 * time.Millisecond)
		msg, op, err := wsutil.ReadClientData(conn)
		if err == nil {
			err = wsutil.WriteServerMessage(conn, op, msg)
		}
		done <- err
	}))
	srv.Config.ReadTimeout = 100 * time.Millisecond
	srv.Config.WriteTimeout = 100 * time.Millisecond
	srv.Start()
	defer srv.Close()
	conn, _, _, err := ws.Dial(context.Background(), wsURL(srv, "/ws"))
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, wsutil.WriteClientText(conn, []byte("late")))
	require.NoError(t, <-done)
	msg, err := wsutil.ReadServerText(conn)
	require.NoError(t, err)
	assert.Equal(t, "late", string(msg))
}

func TestMiddlewareThenUpgradeOverLoopback(t *testing.T) {
	g := New(StaticToken(secret, user{"alice"}), allWays())
	srv := newServer(t, g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, _ := AuthFrom[user](r.Context())
		conn, err := Upgrade(w, r)
		if err != nil {
			return
		}
		defer conn.Close()
		_ = wsutil.WriteServerText(conn, []byte(a.Principal.Name))
	})))
	d := ws.Dialer{Protocols: []string{"access_token", secret}}
	conn, br, hs, err := d.Dial(context.Background(), wsURL(srv, "/ws"))
	require.NoError(t, err)
	defer conn.Close()
	assert.Equal(t, "access_token", hs.Protocol)
	var r interface{ Read([]byte) (int, error) } = conn
	if br != nil {
		r = br
	}
	msg, err := wsutil.ReadServerText(readWriter{r, conn})
	require.NoError(t, err)
	assert.Equal(t, "alice", string(msg))
}

func TestAuthenticatedHandshakeAllocations(t *testing.T) {
	g := New(StaticToken(secret, user{"alice"}), Config{Protocols: []string{"chat"}})
	h := g.Handler(func(context.Context, Session[user]) {})
	r := newHandshake("/ws", "Sec-WebSocket-Protocol", "chat, access_token, "+secret)
	lines := r.Header["Sec-Websocket-Protocol"]
	w := newHijackWriter()
	gw := newHijackWriter()
	gobwasR := newHandshake("/ws", "Sec-WebSocket-Protocol", "chat, access_token, "+secret)
	up := ws.HTTPUpgrader{Protocol: func(p string) bool { return p == "chat" }}
	gobwas := testing.AllocsPerRun(200, func() {
		gw.reset()
		if _, _, _, err := up.Upgrade(gobwasR, gw); err != nil {
			panic(err)
		}
	})
	ours := testing.AllocsPerRun(200, func() {
		w.reset()
		r.Header["Sec-Websocket-Protocol"] = lines[:1]
		lines[0] = "chat, access_token, " + secret
		h.ServeHTTP(w, r)
		if !w.hijacked {
			panic(w.responseText())
		}
	})
	t.Logf("allocations per handshake: wsgate handler form with subprotocol credential %.0f, gobwas HTTPUpgrader unauthenticated %.0f", ours, gobwas)
	// On top of what gobwas spends, the verifier gets its own deadline
	// context; the credential entry is cut out of the header without a copy.
	assert.LessOrEqual(t, ours, gobwas+1)
}

// TestMiddlewareAllocationsOverTheHandlerForm checks that the middleware
// form costs, on top of the handler form, no more allocations than carrying
// the principal in the request's context the usual way does.
func TestMiddlewareAllocationsOverTheHandlerForm(t *testing.T) {
	g := New(StaticToken(secret, user{"alice"}), Config{})
	r := newHandshake("/ws", "Authorization", "Bearer "+secret)
	w := newHijackWriter()
	run := func(h http.Handler) float64 {
		return testing.AllocsPerRun(200, func() {
			w.reset()
			h.ServeHTTP(w, r)
			if !w.hijacked {
				panic(w.responseText())
			}
		})
	}
	handler := run(g.Handler(func(context.Context, Session[user]) {}))
	middleware := run(g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := Upgrade(w, r); err != nil {
			panic(err)
		}
	})))
	type key struct{}
	var sink *http.Request
	carry := testing.AllocsPerRun(200, func() {
		sink = r.WithContext(context.WithValue(r.Context(), key{}, user{"alice"}))
	})
	_ = sink
	t.Logf("allocations: handler form %.0f, middleware form %.0f, r.WithContext(context.WithValue(...)) %.0f", handler, middleware, carry)
	assert.LessOrEqual(t, middleware-handler, carry)
}
