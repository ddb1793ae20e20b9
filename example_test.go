package wsgate_test

import (
	"context"
	"errors"
	"expvar"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"

	"github.com/gobwas/ws/wsutil"
	"github.com/wsgate/wsgate"
)

type User struct{ Name string }

// lookup is a stand-in for an application's token store.
func lookup(_ context.Context, c wsgate.Credential) (User, error) {
	if c.Token == "s3cret" {
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
		user, _ := wsgate.PrincipalFrom[User](r.Context())
		conn, err := wsgate.Upgrade(w, r)
		if err != nil {
			return // Upgrade has answered the client.
		}
		defer conn.Close()
		_ = wsutil.WriteServerText(conn, []byte("hello "+user.Name))
	})
	http.Handle("/ws", gate.Middleware(chat))
}

// A browser sends the token as the subprotocol entry after a marker:
// new WebSocket(url, ["chat", "access_token", token]). The 101 echoes "chat".
func ExampleSubprotocol() {
	r := httptest.NewRequest("GET", "/ws", nil)
	r.Header.Set("Sec-WebSocket-Protocol", "chat, access_token, s3cret")
	c, err := wsgate.Subprotocol("access_token").Extract(r)
	fmt.Println(c.Source, c.Token, err)
	// Output: subprotocol s3cret <nil>
}

// Kubernetes clients send base64url.bearer.authorization.k8s.io.<token in
// unpadded base64url> next to the protocol they speak.
func ExampleSubprotocolPrefix() {
	r := httptest.NewRequest("GET", "/ws", nil)
	r.Header.Set("Sec-WebSocket-Protocol", "base64url.bearer.authorization.k8s.io.czNjcmV0, v5.channel.k8s.io")
	c, err := wsgate.SubprotocolPrefix(wsgate.KubernetesPrefix).Extract(r)
	fmt.Println(c.Source, c.Token, err)
	// Output: subprotocol-prefix s3cret <nil>
}

// ws://s3cret@host/ws makes clients send Authorization: Basic
// base64("s3cret:"); with WithChallenge, Chromium does so after a 401.
func ExampleBasic() {
	r := httptest.NewRequest("GET", "/ws", nil)
	r.SetBasicAuth("s3cret", "")
	c, err := wsgate.Basic().WithChallenge().Extract(r)
	fmt.Println(c.Source, c.Token, err)
	// Output: basic s3cret <nil>
}

// Non-browser clients set Authorization: Bearer themselves.
func ExampleBearer() {
	r := httptest.NewRequest("GET", "/ws", nil)
	r.Header.Set("Authorization", "Bearer s3cret")
	c, err := wsgate.Bearer().Extract(r)
	fmt.Println(c.Source, c.Token, err)
	// Output: bearer s3cret <nil>
}

// A cookie credential is only accepted together with an allowed Origin; the
// gate checks that, Extract alone does not.
func ExampleCookie() {
	r := httptest.NewRequest("GET", "/ws", nil)
	r.Header.Set("Cookie", "theme=dark; __Host-session=s3cret")
	c, err := wsgate.Cookie("__Host-session").Extract(r)
	fmt.Println(c.Source, c.Token, err)
	// Output: cookie s3cret <nil>
}

// The query parameter is removed from the request once read.
func ExampleQuery() {
	r := httptest.NewRequest("GET", "/ws?room=1&ticket=s3cret", nil)
	c, err := wsgate.Query("ticket").Extract(r)
	fmt.Println(c.Source, c.Token, err, r.RequestURI)
	// Output: query s3cret <nil> /ws?room=1
}

// Refusals are *wsgate.Error values that carry their HTTP status and match
// a sentinel.
func ExampleCheckHandshake() {
	r := httptest.NewRequest("POST", "/ws", nil)
	err := wsgate.CheckHandshake(r)
	var e *wsgate.Error
	if errors.As(err, &e) {
		fmt.Println(e.Status, errors.Is(err, wsgate.ErrMethod))
	}
	// Output: 405 true
}

func ExampleAcceptKey() {
	fmt.Println(wsgate.AcceptKey("dGhlIHNhbXBsZSBub25jZQ=="))
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
			msg, op, err := wsgate.ReadClientMessage(s.Conn, s.Compression, 1<<20)
			if err != nil {
				return
			}
			if wsgate.WriteServerMessage(s.Conn, s.Compression, op, msg) != nil {
				return
			}
		}
	}))
}
