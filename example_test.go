package wsgate_test

import (
	"context"
	"errors"
	"expvar"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/wsgate/wsgate"
	"github.com/wsgate/wsgate/message"
)

type User struct{ Name string }

// lookup is a stand-in for an application's token store.
func lookup(_ context.Context, c wsgate.Credential) (User, error) {
	if c.Token() == "s3cret" {
		return User{Name: "alice"}, nil
	}
	return User{}, wsgate.ErrInvalidToken
}

// The handler form: the gate upgrades and hands over the connection and the
// typed principal.
func ExampleGate_Handler() {
	gate := wsgate.New(lookup, wsgate.Config{Protocols: []string{"chat"}})
	http.Handle("/ws", gate.Handler(func(ctx context.Context, s wsgate.Session[User]) {
		_ = wsutil.WriteServerText(s.Conn, []byte("hello "+s.Principal.Name))
	}))
}

// The middleware form: the gate authenticates and the wrapped handler,
// which reads the principal from the context, upgrades.
func ExampleGate_Middleware() {
	gate := wsgate.New(lookup, wsgate.Config{})
	chat := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, _ := wsgate.AuthFrom[User](r.Context())
		conn, err := wsgate.Upgrade(w, r) // echoes a.Protocol
		if err != nil {
			return // Upgrade has answered the client.
		}
		defer conn.Close()
		_ = wsutil.WriteServerText(conn, []byte("hello "+a.Principal.Name))
	})
	http.Handle("/ws", gate.Middleware(chat))
}

// A browser sends the token as the subprotocol entry after a marker:
// new WebSocket(url, ["chat", "access_token", token]). The 101 echoes "chat".
func ExampleSubprotocol() {
	r := httptest.NewRequest("GET", "/ws", nil)
	r.Header.Set("Sec-WebSocket-Protocol", "chat, access_token, s3cret")
	c, err := wsgate.Subprotocol("access_token").Extract(r)
	fmt.Println(c.Source, c.Token(), err)
	// Output: subprotocol s3cret <nil>
}

// Kubernetes clients send base64url.bearer.authorization.k8s.io.<token in
// unpadded base64url> next to the protocol they speak.
func ExampleSubprotocolPrefix() {
	r := httptest.NewRequest("GET", "/ws", nil)
	r.Header.Set("Sec-WebSocket-Protocol", "base64url.bearer.authorization.k8s.io.czNjcmV0, v5.channel.k8s.io")
	c, err := wsgate.SubprotocolPrefix(wsgate.KubernetesPrefix).Extract(r)
	fmt.Println(c.Source, c.Token(), err)
	// Output: subprotocol-prefix s3cret <nil>
}

// ws://s3cret@host/ws makes clients send Authorization: Basic
// base64("s3cret:"); with Challenge, browsers do so after a 401.
func ExampleBasic() {
	r := httptest.NewRequest("GET", "/ws", nil)
	r.SetBasicAuth("s3cret", "")
	c, err := wsgate.Basic(wsgate.Challenge).Extract(r)
	fmt.Println(c.Source, c.Token(), err)
	// Output: basic s3cret <nil>
}

// Non-browser clients set Authorization: Bearer themselves.
func ExampleBearer() {
	r := httptest.NewRequest("GET", "/ws", nil)
	r.Header.Set("Authorization", "Bearer s3cret")
	c, err := wsgate.Bearer().Extract(r)
	fmt.Println(c.Source, c.Token(), err)
	// Output: bearer s3cret <nil>
}

// A cookie credential is only accepted together with an allowed Origin; the
// gate checks that, Extract alone does not.
func ExampleCookie() {
	r := httptest.NewRequest("GET", "/ws", nil)
	r.Header.Set("Cookie", "theme=dark; __Host-session=s3cret")
	c, err := wsgate.Cookie("__Host-session").Extract(r)
	fmt.Println(c.Source, c.Token(), err)
	// Output: cookie s3cret <nil>
}

// Extract never changes the request; the gate removes the parameter once
// it has looked.
func ExampleQuery() {
	r := httptest.NewRequest("GET", "/ws?room=1&ticket=s3cret", nil)
	c, err := wsgate.Query("ticket").Extract(r)
	fmt.Println(c.Source, c.Token(), err)
	// Output: query s3cret <nil>
}

// headerToken is an application's own extractor: native clients send
// X-Api-Key. SourceHeader makes it explicit (not ambient), so it combines
// with the built-in ways under the same rules.
type headerToken struct{}

func (headerToken) Extract(r *http.Request) (wsgate.Credential, error) {
	v := r.Header.Values("X-Api-Key")
	switch {
	case len(v) == 0:
		return wsgate.Credential{}, wsgate.ErrNoCredential
	case len(v) > 1:
		return wsgate.Credential{}, wsgate.ErrAmbiguousCredential
	}
	return wsgate.NewCredential(wsgate.SourceHeader, v[0]), nil
}

func ExampleExtractor() {
	gate := wsgate.New(lookup, wsgate.Config{
		Extractors: []wsgate.Extractor{headerToken{}, wsgate.Subprotocol("")},
	})
	r := newHandshake("/ws")
	r.Header.Set("X-Api-Key", "s3cret")
	a, err := gate.Authenticate(r)
	fmt.Println(a.Principal.Name, a.Source, err)
	// Output: alice header <nil>
}

// A framework plug-in, for a router whose handlers take their own context
// type: Authenticate, then Refuse or Accept. Refuse answers like the gate
// (status, WWW-Authenticate, or a close frame under RefuseWithCloseFrame);
// Accept writes the 101 with the gate's echo and extension and enforces the
// credential's expiry. Neither can be talked into skipping a check.
type routerCtx struct {
	W http.ResponseWriter
	R *http.Request
}

func plugin[P any](g *wsgate.Gate[P], serve func(c *routerCtx, s wsgate.Session[P])) func(*routerCtx) {
	return func(c *routerCtx) {
		a, err := g.Authenticate(c.R)
		if err != nil {
			g.Refuse(c.W, c.R, err)
			return
		}
		s, err := g.Accept(c.W, c.R, a)
		if err != nil {
			return // answered
		}
		defer s.Conn.Close()
		serve(c, s)
	}
}

func ExampleGate_Accept() {
	gate := wsgate.New(lookup, wsgate.Config{Protocols: []string{"chat"}})
	route := plugin(gate, func(c *routerCtx, s wsgate.Session[User]) {
		if _, err := wsutil.ReadClientText(s.Conn); err == nil {
			_ = wsutil.WriteServerText(s.Conn, []byte("hello "+s.Principal.Name+" over "+s.Protocol))
		}
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		route(&routerCtx{W: w, R: r})
	}))
	defer srv.Close()

	for _, token := range []string{"s3cret", "wrong"} {
		d := ws.Dialer{Protocols: []string{"chat", "access_token", token}}
		conn, _, _, err := d.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws")
		if err != nil {
			fmt.Println(err)
			continue
		}
		_ = wsutil.WriteClientText(conn, []byte("hi"))
		msg, _ := wsutil.ReadServerText(conn)
		fmt.Println(string(msg))
		conn.Close()
	}
	// Output:
	// hello alice over chat
	// unexpected HTTP response status: 401
}

// A server that skips net/http serves the gate on its own listener: the
// handshake is read from the connection by gobwas/ws's Upgrader, with the
// same checks and answers as on the net/http path.
func ExampleGate_Serve() {
	gate := wsgate.New(lookup, wsgate.Config{Protocols: []string{"chat"}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ln.Close()
	go gate.Serve(ln, func(ctx context.Context, s wsgate.Session[User]) {
		if _, err := wsutil.ReadClientText(s.Conn); err == nil {
			path := wsgate.RequestFrom(ctx).URL.Path
			_ = wsutil.WriteServerText(s.Conn, []byte("hello "+s.Principal.Name+" on "+path))
		}
	})

	for _, token := range []string{"s3cret", "wrong"} {
		d := ws.Dialer{Protocols: []string{"chat", "access_token", token}}
		conn, _, _, err := d.Dial(context.Background(), "ws://"+ln.Addr().String()+"/rooms/7")
		if err != nil {
			fmt.Println(err)
			continue
		}
		_ = wsutil.WriteClientText(conn, []byte("hi"))
		msg, _ := wsutil.ReadServerText(conn)
		fmt.Println(string(msg))
		conn.Close()
	}
	// Output:
	// hello alice on /rooms/7
	// unexpected HTTP response status: 401
}

// Refusals are *wsgate.Error values that carry their HTTP status and match
// a sentinel.
func ExampleCheckHandshake() {
	r := httptest.NewRequest("POST", "/ws", nil)
	err := wsgate.CheckHandshake(r)
	var e *wsgate.Error
	if errors.As(err, &e) {
		fmt.Println(e.Status, errors.Is(err, wsgate.ErrHandshake))
	}
	// Output: 405 true
}

func ExampleAppendAcceptKey() {
	var buf [28]byte
	fmt.Println(string(wsgate.AppendAcceptKey(buf[:0], "dGhlIHNhbXBsZSBub25jZQ==")))
	// Output: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=
}

// Origins other than the server's own are refused unless listed.
func ExampleOriginPolicy() {
	policy := wsgate.OriginPolicy{AllowedOrigins: []string{"https://*.example.com"}}
	for _, origin := range []string{"https://app.example.com", "https://example.com.evil.test", "null"} {
		r := httptest.NewRequest("GET", "https://api.example.com/ws", nil)
		r.Header.Set("Origin", origin)
		fmt.Println(origin, policy.Check(r) == nil)
	}
	// Output:
	// https://app.example.com true
	// https://example.com.evil.test false
	// null false
}

// OnHandshake feeds metrics without a metrics dependency; here, expvar
// counters served at /debug/vars.
func ExampleConfig_onHandshake() {
	accepted := expvar.NewMap("wsgate_accepted_by_source")
	refused := expvar.NewMap("wsgate_refused_by_status")
	gate := wsgate.New(lookup, wsgate.Config{
		Logger: slog.New(slog.DiscardHandler), // or your logger
		OnHandshake: func(ev wsgate.HandshakeEvent) {
			if ev.Accepted {
				accepted.Add(ev.Source.String(), 1)
			} else {
				refused.Add(strconv.Itoa(ev.Status), 1)
			}
		},
	})
	rec := httptest.NewRecorder()
	// A plain GET is no WebSocket handshake: 426, counted as refused.
	gate.Handler(nil).ServeHTTP(rec, httptest.NewRequest("GET", "/ws", nil))
	fmt.Println(refused.Get("426"))
	// Output: 1
}

// Compression: the gate negotiates permessage-deflate when the client offers
// it, and the session says whether it did. The same handler serves
// HTTP/1.1 and, with GODEBUG=http2xconnect=1 in the environment, HTTP/2
// extended CONNECT streams.
func ExampleConfig_compression() {
	gate := wsgate.New(lookup, wsgate.Config{Compression: true})
	http.Handle("/echo", gate.Handler(func(ctx context.Context, s wsgate.Session[User]) {
		for {
			msg, op, err := message.Read(s.Conn, s.Compression, 1<<20)
			if err != nil {
				return
			}
			if message.Write(s.Conn, s.Compression, op, msg) != nil {
				return
			}
		}
	}))
}

// newHandshake returns a WebSocket opening handshake for target.
func newHandshake(target string) *http.Request {
	r := httptest.NewRequest("GET", target, nil)
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Sec-WebSocket-Version", "13")
	r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	return r
}
