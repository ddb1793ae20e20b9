package wsgate

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// entryPoint builds a handler that serves handshakes through one of the
// gate's entry points and reports what the application got.
type entryPoint struct {
	name string
	make func(g *Gate[user], got func(Auth[user], net.Conn)) http.Handler
}

var entryPoints = []entryPoint{
	{"Handler", func(g *Gate[user], got func(Auth[user], net.Conn)) http.Handler {
		return g.Handler(func(_ context.Context, s Session[user]) { got(s.Auth, s.Conn) })
	}},
	{"Middleware+Upgrade", func(g *Gate[user], got func(Auth[user], net.Conn)) http.Handler {
		return g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			a, ok := AuthFrom[user](r.Context())
			if !ok {
				panic("no Auth behind the middleware")
			}
			conn, err := Upgrade(w, r)
			if err != nil {
				return
			}
			got(a, conn)
			conn.Close()
		}))
	}},
	{"Authenticate+Accept", func(g *Gate[user], got func(Auth[user], net.Conn)) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			a, err := g.Authenticate(r)
			if err != nil {
				g.Refuse(w, r, err)
				return
			}
			s, err := g.Accept(w, r, a)
			if err != nil {
				return
			}
			got(s.Auth, s.Conn)
			s.Conn.Close()
		})
	}},
}

// answer is what a client and the application saw of one handshake.
type answer struct {
	text      string // the bytes the client received: the 101 and any frame, or the HTTP answer
	principal string
	source    Source
	protocol  string
	compress  bool
}

func serveThrough(ep entryPoint, g *Gate[user], r *http.Request) answer {
	var a answer
	h := ep.make(g, func(au Auth[user], _ net.Conn) {
		a.principal, a.source, a.protocol, a.compress = au.Principal.Name, au.Source, au.Protocol, au.Compression
	})
	w := serveOnce(h, r)
	a.text = w.responseText()
	return a
}

func TestEveryEntryPointAnswersAlike(t *testing.T) {
	verify := func(_ context.Context, c Credential) (user, error) {
		switch c.Token() {
		case secret:
			return user{"alice"}, nil
		case "forbidden-token":
			return user{}, ErrForbidden
		case "broken-token":
			return user{}, errors.New("database down")
		}
		return user{}, ErrInvalidToken
	}
	gates := map[string]func() *Gate[user]{
		"all ways": func() *Gate[user] { return New(verify, allWays()) },
		"compression": func() *Gate[user] {
			cfg := allWays()
			cfg.Compression = true
			return New(verify, cfg)
		},
		"close frames": func() *Gate[user] {
			cfg := allWays()
			cfg.RefuseWithCloseFrame = true
			return New(verify, cfg)
		},
		"skip origin check": func() *Gate[user] {
			cfg := allWays()
			cfg.Origin.InsecureSkipOriginCheck = true
			cfg.Extractors = append(cfg.Extractors[:2:2], Basic(Challenge), Bearer(), Cookie("session"), Query("access_token"))
			return New(verify, cfg)
		},
	}
	const sameOrigin = "http://127.0.0.1:8080"
	tests := []struct {
		name   string
		gate   string
		req    func() *http.Request
		status string // the status line's code, as a prefix of the answer
		source Source
	}{
		{"subprotocol marker", "all ways", func() *http.Request {
			return newHandshake("/ws", "Sec-WebSocket-Protocol", "chat, access_token, "+secret)
		}, "101", SourceSubprotocol},
		{"marker alone echoes the marker", "all ways", func() *http.Request {
			return newHandshake("/ws", "Sec-WebSocket-Protocol", "access_token, "+secret)
		}, "101", SourceSubprotocol},
		{"prefix form", "all ways", func() *http.Request {
			return newHandshake("/ws", "Sec-WebSocket-Protocol", "chat, "+KubernetesPrefix+b64url(secret))
		}, "101", SourceSubprotocolPrefix},
		{"basic", "all ways", func() *http.Request {
			return newHandshake("/ws", "Authorization", basicAuth(secret, ""))
		}, "101", SourceBasic},
		{"bearer", "all ways", func() *http.Request {
			return newHandshake("/ws", "Authorization", "Bearer "+secret, "Sec-WebSocket-Protocol", "chat")
		}, "101", SourceBearer},
		{"cookie", "all ways", func() *http.Request {
			return newHandshake("/ws", "Cookie", "session="+secret, "Origin", sameOrigin)
		}, "101", SourceCookie},
		{"query", "all ways", func() *http.Request { return newHandshake("/ws?access_token=" + secret) }, "101", SourceQuery},
		{"Firefox-style request", "all ways", func() *http.Request {
			return newHandshake("/ws", "Connection", "keep-alive, Upgrade", "Origin", sameOrigin,
				"Sec-WebSocket-Extensions", "permessage-deflate", "Sec-WebSocket-Protocol", "chat,access_token,"+secret)
		}, "101", SourceSubprotocol},
		{"compression negotiated", "compression", func() *http.Request {
			return newHandshake("/ws", "Authorization", "Bearer "+secret, "Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")
		}, "101", SourceBearer},
		{"no credential", "all ways", func() *http.Request { return newHandshake("/ws") }, "401", 0},
		{"wrong token", "all ways", func() *http.Request { return newHandshake("/ws", "Authorization", "Bearer wrong") }, "401", 0},
		{"wrong Basic credential", "all ways", func() *http.Request {
			return newHandshake("/ws", "Authorization", basicAuth("wrong", ""))
		}, "401", 0},
		{"forbidden", "all ways", func() *http.Request {
			return newHandshake("/ws", "Authorization", "Bearer forbidden-token")
		}, "403", 0},
		{"verifier failure", "all ways", func() *http.Request {
			return newHandshake("/ws", "Authorization", "Bearer broken-token")
		}, "500", 0},
		{"two explicit credentials", "all ways", func() *http.Request {
			return newHandshake("/ws?access_token="+secret, "Authorization", "Bearer "+secret)
		}, "400", 0},
		{"foreign origin", "all ways", func() *http.Request {
			return newHandshake("/ws", "Authorization", "Bearer "+secret, "Origin", "http://evil.example")
		}, "403", 0},
		{"malformed protocol list", "all ways", func() *http.Request {
			return newHandshake("/ws", "Authorization", "Bearer "+secret, "Sec-WebSocket-Protocol", "a b")
		}, "400", 0},
		{"prefix form without an application protocol", "all ways", func() *http.Request {
			return newHandshake("/ws", "Sec-WebSocket-Protocol", KubernetesPrefix+b64url(secret))
		}, "400", 0},
		{"bad key", "all ways", func() *http.Request {
			r := newHandshake("/ws", "Authorization", "Bearer "+secret)
			r.Header.Set("Sec-WebSocket-Key", "short")
			return r
		}, "400", 0},
		{"wrong version", "all ways", func() *http.Request {
			r := newHandshake("/ws", "Authorization", "Bearer "+secret)
			r.Header.Set("Sec-WebSocket-Version", "8")
			return r
		}, "426", 0},
		{"POST", "all ways", func() *http.Request {
			r := newHandshake("/ws", "Authorization", "Bearer "+secret)
			r.Method = http.MethodPost
			return r
		}, "405", 0},
		{"close frame for a wrong token", "close frames", func() *http.Request {
			return newHandshake("/ws", "Authorization", "Bearer wrong", "Sec-WebSocket-Protocol", "chat")
		}, "101", 0},
		{"close frame for a forbidden principal", "close frames", func() *http.Request {
			return newHandshake("/ws", "Sec-WebSocket-Protocol", "access_token, forbidden-token")
		}, "101", 0},
		{"HTTP for an origin refusal in close-frame mode", "close frames", func() *http.Request {
			return newHandshake("/ws", "Authorization", "Bearer wrong", "Origin", "http://evil.example")
		}, "403", 0},
		{"cross-site cookie under InsecureSkipOriginCheck", "skip origin check", func() *http.Request {
			return newHandshake("/ws", "Cookie", "session="+secret, "Origin", "http://evil.example")
		}, "403", 0},
		{"cross-site cached Basic under InsecureSkipOriginCheck", "skip origin check", func() *http.Request {
			return newHandshake("/ws", "Authorization", basicAuth(secret, ""), "Origin", "http://evil.example")
		}, "403", 0},
		{"cross-site page with its own token under InsecureSkipOriginCheck", "skip origin check", func() *http.Request {
			return newHandshake("/ws", "Authorization", basicAuth(secret, ""), "Origin", "http://evil.example",
				"Sec-WebSocket-Protocol", "chat, access_token, "+secret)
		}, "101", SourceSubprotocol},
		{"no credential, Basic challenge", "skip origin check", func() *http.Request { return newHandshake("/ws") }, "401", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var answers []answer
			for _, ep := range entryPoints {
				answers = append(answers, serveThrough(ep, gates[tc.gate](), tc.req()))
			}
			raw := serveRawOnce(gates[tc.gate](), tc.req())
			checkRawStatusLine(t, raw.text)
			answers = append(answers, raw)
			for i := range answers {
				answers[i].text = canonicalAnswer(t, answers[i].text)
			}
			first := answers[0]
			require.True(t, strings.HasPrefix(first.text, "HTTP/1.1 "+tc.status), "answer:\n%s", first.text)
			assert.Equal(t, tc.source, first.source, "source")
			if tc.source != 0 {
				assert.Equal(t, "alice", first.principal)
				assert.NotContains(t, first.text, secret, "the 101 never echoes the credential")
			} else {
				assert.Empty(t, first.principal, "the application never saw a refused handshake")
			}
			for i, a := range answers[1:] {
				name := "UpgradeConn"
				if i+1 < len(entryPoints) {
					name = entryPoints[i+1].name
				}
				assert.Equal(t, first, a, "%s answers unlike %s", name, entryPoints[0].name)
			}
		})
	}
}

func TestEveryEntryPointEnforcesTheExpiry(t *testing.T) {
	for _, ep := range entryPoints {
		t.Run(ep.name, func(t *testing.T) {
			g := New(func(ctx context.Context, c Credential) (user, error) {
				SetExpiry(ctx, time.Now().Add(150*time.Millisecond))
				return user{"alice"}, nil
			}, Config{})
			// The application reads until the connection ends under it.
			srv := newServer(t, ep.make(g, func(_ Auth[user], conn net.Conn) {
				for {
					if _, _, err := wsutil.ReadClientData(conn); err != nil {
						return
					}
				}
			}))
			c, br, resp := rawHandshake(t, strings.TrimPrefix(srv.URL, "http://"), "Authorization: Bearer x\r\n", "")
			require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
			require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
			code, reason := readClose(t, br)
			assert.Equal(t, CloseUnauthorized, code)
			assert.Equal(t, "credential expired", reason)
		})
	}
}

func TestRefusalsAreTheCallersOwnCopies(t *testing.T) {
	g := New(StaticToken(secret, user{"alice"}), Config{})
	_, err := g.Authenticate(newHandshake("/ws", "Authorization", "Bearer wrong"))
	var e *Error
	require.ErrorAs(t, err, &e)
	e.Status, e.Reason, e.CloseCode = 418, "teapot", 4999

	_, err = g.Authenticate(newHandshake("/ws", "Authorization", "Bearer wrong"))
	require.ErrorAs(t, err, &e)
	assert.Equal(t, http.StatusUnauthorized, e.Status)
	assert.Equal(t, "invalid credential", e.Reason)
	assert.Equal(t, CloseUnauthorized, e.CloseCode)
	w := serveOnce(g.Handler(echoHandler), newHandshake("/ws", "Authorization", "Bearer wrong"))
	assert.Equal(t, http.StatusUnauthorized, w.status)
	assert.Equal(t, 401, errInvalidToken.Status, "the gate's own refusal is untouched")
}

func TestVerifierCauseIsInTheDebugLogOnly(t *testing.T) {
	cause := errors.New("signature expired at 12:00")
	verify := func(context.Context, Credential) (user, error) {
		return user{}, errors.Join(ErrInvalidToken, cause)
	}
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelDebug} {
		var buf bytes.Buffer
		g := New(verify, Config{Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: level}))})
		w := serveOnce(g.Handler(echoHandler), newHandshake("/ws", "Authorization", "Bearer "+secret))
		assert.Equal(t, http.StatusUnauthorized, w.status)
		assert.NotContains(t, w.responseText(), "signature", "never in the HTTP answer")
		if level == slog.LevelDebug {
			assert.Contains(t, buf.String(), "signature expired at 12:00")
		} else {
			assert.NotContains(t, buf.String(), "signature")
		}
		assert.NotContains(t, buf.String(), secret)
	}
}

func TestExtractNeverChangesTheRequest(t *testing.T) {
	for _, ex := range allWays().Extractors {
		r := newHandshake("/ws?access_token="+secret+"&room=1",
			"Sec-WebSocket-Protocol", "chat, access_token, "+secret,
			"Authorization", "Bearer "+secret, "Cookie", "session="+secret)
		require.NoError(t, r.ParseForm())
		before := r.Clone(context.Background())
		_, _ = ex.Extract(r)
		assert.Equal(t, before.URL.RawQuery, r.URL.RawQuery)
		assert.Equal(t, before.RequestURI, r.RequestURI)
		assert.Equal(t, before.Header, r.Header)
		assert.Equal(t, before.Form, r.Form)
	}
}

func TestAListWithATabIsAnsweredByTheGateItself(t *testing.T) {
	// Once the gate accepted "v1,\tchat", nothing may refuse it after the
	// verifier ran (a ticket would be spent for nothing).
	verified := 0
	g := New(func(context.Context, Credential) (user, error) {
		verified++
		return user{"alice"}, nil
	}, Config{Protocols: []string{"chat"}})
	w := serveOnce(g.Handler(echoHandler), newHandshake("/ws", "Sec-WebSocket-Protocol", "v1,\tchat, access_token, "+secret))
	assert.Equal(t, 1, verified)
	assert.True(t, strings.HasPrefix(w.responseText(), "HTTP/1.1 101 "), w.responseText())
	assert.Contains(t, w.responseText(), "\r\nSec-WebSocket-Protocol: chat\r\n")
}

func TestEmptyProtocolListElementsAreIgnoredByTheGate(t *testing.T) {
	g := New(StaticToken(secret, user{"alice"}), Config{Protocols: []string{"chat"}})
	for _, list := range [][]string{{"chat,"}, {", chat"}, {"chat", ""}} {
		r := newHandshake("/ws", "Authorization", "Bearer "+secret)
		r.Header["Sec-Websocket-Protocol"] = list
		w := serveOnce(g.Handler(echoHandler), r)
		assert.True(t, strings.HasPrefix(w.responseText(), "HTTP/1.1 101 "), "%q: %s", list, w.responseText())
		assert.Contains(t, w.responseText(), "\r\nSec-WebSocket-Protocol: chat\r\n")
	}
}

func TestFirstCredentialWinsStillRemovesTheQueryTicket(t *testing.T) {
	cfg := Config{FirstCredentialWins: true, Extractors: []Extractor{Bearer(), Query("ticket")}}
	g := New(StaticToken(secret, user{"alice"}), cfg)
	r := newHandshake("/ws?ticket="+secret+"&room=1", "Authorization", "Bearer not a token")
	require.NoError(t, r.ParseForm())
	w := serveOnce(g.Handler(echoHandler), r)
	assert.Equal(t, http.StatusBadRequest, w.status, "the malformed Bearer comes first")
	assert.Equal(t, "room=1", r.URL.RawQuery)
	assert.Equal(t, "/ws?room=1", r.RequestURI)
	assert.NotContains(t, r.Form, "ticket")
}

func TestQueryTicketLeavesAFormThatDidNotParse(t *testing.T) {
	for _, q := range []string{"ticket=" + secret + "&bad=%zz", "ticket=" + secret + "&a;b=1"} {
		g := New(StaticToken(secret, user{"alice"}), Config{Extractors: []Extractor{Query("ticket")}})
		r := newHandshake("/ws?" + q)
		_ = r.ParseForm() // fails on the bad pair, keeps the others
		require.Equal(t, secret, r.Form.Get("ticket"))
		serveOnce(g.Handler(echoHandler), r)
		assert.NotContains(t, r.Form, "ticket", q)
		assert.NotContains(t, r.URL.RawQuery, secret, q)
	}
}

func TestMarkerEchoIsNeverACredentialWithTwoPrefixExtractors(t *testing.T) {
	g := New(StaticToken(secret, user{"alice"}), Config{
		FirstCredentialWins: true,
		Extractors:          []Extractor{Subprotocol(""), SubprotocolPrefix("p1."), SubprotocolPrefix("p2.")},
	})
	r := newHandshake("/ws", "Sec-WebSocket-Protocol", "p1."+b64url("a")+", p2."+b64url("b")+", access_token, "+secret)
	a, err := g.Authenticate(r)
	require.NoError(t, err)
	assert.Equal(t, DefaultMarker, a.Protocol)
	w := newHijackWriter()
	s, err := g.Accept(w, r, a)
	require.NoError(t, err)
	defer s.Conn.Close()
	assert.Contains(t, w.responseText(), "\r\nSec-WebSocket-Protocol: access_token\r\n")
}

func TestRefuseOnARequestThatIsNoHandshake(t *testing.T) {
	g := New(StaticToken(secret, user{"alice"}), Config{RefuseWithCloseFrame: true})
	r := httptest.NewRequest(http.MethodGet, "/ws", nil)
	rec := httptest.NewRecorder()
	assert.NotPanics(t, func() { g.Refuse(rec, r, ErrInvalidToken) })
	assert.Equal(t, http.StatusUnauthorized, rec.Code, "answered with HTTP: there is nothing to upgrade")
}

func TestZeroGateRefusesInsteadOfPanicking(t *testing.T) {
	var g Gate[user]
	for _, h := range []http.Handler{g.Handler(echoHandler), g.Middleware(http.NotFoundHandler())} {
		var w *hijackWriter
		assert.NotPanics(t, func() { w = serveOnce(h, newHandshake("/ws", "Authorization", "Bearer "+secret)) })
		assert.Equal(t, http.StatusInternalServerError, w.status)
	}
	_, err := g.Authenticate(newHandshake("/ws"))
	assert.ErrorIs(t, err, ErrVerifier)
}

func TestAcceptRefusesAnAuthItDidNotDecide(t *testing.T) {
	g := New(StaticToken(secret, user{"alice"}), Config{})
	other := New(StaticToken(secret, user{"alice"}), Config{})
	r := newHandshake("/ws", "Authorization", "Bearer "+secret)
	a, err := g.Authenticate(r)
	require.NoError(t, err)
	for name, call := range map[string]func(w http.ResponseWriter) error{
		"forged": func(w http.ResponseWriter) error {
			_, err := g.Accept(w, r, Auth[user]{Principal: user{"mallory"}})
			return err
		},
		"another gate's":    func(w http.ResponseWriter) error { _, err := other.Accept(w, r, a); return err },
		"another request's": func(w http.ResponseWriter) error { _, err := g.Accept(w, newHandshake("/ws"), a); return err },
	} {
		w := newHijackWriter()
		err := call(w)
		assert.ErrorIs(t, err, ErrUpgradeFailed, name)
		assert.Equal(t, http.StatusInternalServerError, w.status, name)
		assert.False(t, w.hijacked, name)
	}
}

func TestAmbientCredentialsGiveWayToExplicitOnes(t *testing.T) {
	g := New(StaticToken(secret, user{"alice"}), allWays())
	const origin = "http://127.0.0.1:8080"
	cachedBasic := basicAuth("cached-basic", "")
	tests := []struct {
		name   string
		req    *http.Request
		source Source
	}{
		{"cached Basic and a query ticket", newHandshake("/ws?access_token="+secret, "Authorization", cachedBasic, "Origin", origin), SourceQuery},
		{"cached Basic and a subprotocol token", newHandshake("/ws", "Authorization", cachedBasic, "Origin", origin, "Sec-WebSocket-Protocol", "chat, access_token, "+secret), SourceSubprotocol},
		{"a session cookie and a query ticket", newHandshake("/ws?access_token="+secret, "Cookie", "session=old", "Origin", origin), SourceQuery},
		{"a malformed cookie and a bearer token", newHandshake("/ws", "Cookie", "session=", "Authorization", "Bearer "+secret), SourceBearer},
		{"cached Basic and a cookie: the first ambient extractor decides", newHandshake("/ws", "Authorization", basicAuth(secret, ""), "Cookie", "session=other", "Origin", origin), SourceBasic},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := g.Authenticate(tc.req)
			require.NoError(t, err)
			assert.Equal(t, tc.source, a.Source)
		})
	}
}

func TestAllocationsPerHandshake(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts are not measured in -short mode")
	}
	g := New(StaticToken(secret, user{"alice"}), Config{Protocols: []string{"chat"}, Extractors: []Extractor{Subprotocol("")}})
	handler := g.Handler(func(context.Context, Session[user]) {})
	middleware := g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if conn, err := Upgrade(w, r); err == nil {
			conn.Close()
		}
	}))
	requests := map[string][]string{
		"Chromium-style": {"Sec-WebSocket-Protocol", "chat, access_token, " + secret},
		"Firefox-style": {"Connection", "keep-alive, Upgrade", "Sec-WebSocket-Extensions", "permessage-deflate",
			"Origin", "http://127.0.0.1:8080", "Sec-WebSocket-Protocol", "chat,access_token," + secret},
	}
	for name, kv := range requests {
		for form, tc := range map[string]struct {
			h   http.Handler
			max float64
		}{"handler": {handler, 1}, "middleware": {middleware, 3}} {
			w := newHijackWriter()
			r := newHandshake("/ws", kv...)
			line := r.Header["Sec-Websocket-Protocol"][0]
			allocs := testing.AllocsPerRun(200, func() {
				w.reset()
				r.Header["Sec-Websocket-Protocol"] = append(r.Header["Sec-Websocket-Protocol"][:0], line)
				tc.h.ServeHTTP(w, r)
				if !w.hijacked {
					panic("refused: " + w.responseText())
				}
			})
			assert.LessOrEqual(t, allocs, tc.max, "%s form, %s request", form, name)
		}
	}
}

func TestQueryTicketIsRemovedEvenFromAMalformedHandshake(t *testing.T) {
	g := New(StaticToken(secret, user{"alice"}), Config{Extractors: []Extractor{Query("ticket")}})
	r := newHandshake("/ws?ticket=" + secret + "&room=1")
	r.Header.Del("Sec-WebSocket-Key")
	_, err := g.Authenticate(r)
	require.ErrorIs(t, err, ErrHandshake)
	assert.Equal(t, "room=1", r.URL.RawQuery, "a later access log sees no ticket")
}

func TestRefuseOfABareSentinelReportsASaneDuration(t *testing.T) {
	var ev HandshakeEvent
	g := New(StaticToken(secret, user{"alice"}), Config{OnHandshake: func(e HandshakeEvent) { ev = e }})
	g.Refuse(httptest.NewRecorder(), newHandshake("/ws"), ErrForbidden)
	assert.Equal(t, http.StatusForbidden, ev.Status)
	assert.Less(t, ev.Duration, time.Minute)
}
