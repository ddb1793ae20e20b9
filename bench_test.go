package wsgate

import (
	"context"
	"github.com/wsgate/wsgate/fleet"
	"net/http"
	"testing"

	"github.com/gobwas/ws"
)

func BenchmarkAppendAcceptKey(b *testing.B) {
	b.ReportAllocs()
	buf := make([]byte, 0, acceptKeyLen)
	for b.Loop() {
		buf = AppendAcceptKey(buf[:0], testKey)
	}
}

func BenchmarkCheckHandshake(b *testing.B) {
	b.ReportAllocs()
	r := newHandshake("/ws")
	for b.Loop() {
		if CheckHandshake(r) != nil {
			b.Fatal("invalid")
		}
	}
}

// BenchmarkUpgrade measures validation, accept key and upgrade on a
// hijackable in-memory writer.
func BenchmarkUpgrade(b *testing.B) {
	b.ReportAllocs()
	r := newHandshake("/ws")
	w := newHijackWriter()
	for b.Loop() {
		w.reset()
		if _, err := Upgrade(w, r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGobwasHTTPUpgrader is the reference: gobwas/ws alone, with
// subprotocol selection and no authentication.
func BenchmarkGobwasHTTPUpgrader(b *testing.B) {
	b.ReportAllocs()
	r := newHandshake("/ws", "Sec-WebSocket-Protocol", "chat")
	w := newHijackWriter()
	u := ws.HTTPUpgrader{Protocol: func(p string) bool { return p == "chat" }}
	for b.Loop() {
		w.reset()
		if _, _, _, err := u.Upgrade(r, w); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGate measures the whole authenticated handshake per credential
// way, in the handler form, on a hijackable in-memory writer.
func BenchmarkGate(b *testing.B) {
	cases := []struct {
		name string
		path string
		kv   []string
	}{
		{"subprotocol", "/ws", []string{"Sec-WebSocket-Protocol", "chat, access_token, " + secret}},
		{"subprotocol-prefix", "/ws", []string{"Sec-WebSocket-Protocol", "chat, " + KubernetesPrefix + b64url(secret)}},
		{"basic", "/ws", []string{"Authorization", basicAuth(secret, "")}},
		{"bearer", "/ws", []string{"Authorization", "Bearer " + secret}},
		{"cookie", "/ws", []string{"Cookie", "a=b; session=" + secret, "Origin", "http://127.0.0.1:8080"}},
		{"query", "/ws?access_token=" + secret + "&room=1", nil},
	}
	g := New(StaticToken(secret, user{"alice"}), allWays())
	h := g.Handler(func(context.Context, Session[user]) {})
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			r := newHandshake(c.path, c.kv...)
			uri, raw := r.RequestURI, r.URL.RawQuery
			protos := append([]string(nil), r.Header["Sec-Websocket-Protocol"]...)
			w := newHijackWriter()
			for b.Loop() {
				w.reset()
				r.RequestURI, r.URL.RawQuery = uri, raw
				if protos != nil {
					r.Header["Sec-Websocket-Protocol"] = append(r.Header["Sec-Websocket-Protocol"][:0], protos...)
				}
				h.ServeHTTP(w, r)
				if !w.hijacked {
					b.Fatal(w.responseText())
				}
			}
		})
	}
}

// BenchmarkGateMiddleware is the middleware form followed by Upgrade.
func BenchmarkGateMiddleware(b *testing.B) {
	b.ReportAllocs()
	g := New(StaticToken(secret, user{"alice"}), allWays())
	h := g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := Upgrade(w, r); err != nil {
			b.Fatal(err)
		}
	}))
	r := newHandshake("/ws", "Authorization", "Bearer "+secret)
	w := newHijackWriter()
	for b.Loop() {
		w.reset()
		h.ServeHTTP(w, r)
	}
}

// BenchmarkRefusal measures a refused handshake (wrong token).
func BenchmarkRefusal(b *testing.B) {
	b.ReportAllocs()
	g := New(StaticToken(secret, user{"alice"}), allWays())
	h := g.Handler(func(context.Context, Session[user]) {})
	r := newHandshake("/ws", "Authorization", "Bearer wrong")
	w := newHijackWriter()
	for b.Loop() {
		w.reset()
		h.ServeHTTP(w, r)
	}
}

// BenchmarkGateExtractors compares a gate with the subprotocol extractor
// alone to one with all six, on the same subprotocol handshake: the cost
// should not grow with the number of configured extractors.
func BenchmarkGateExtractors(b *testing.B) {
	for _, c := range []struct {
		name string
		cfg  Config
	}{
		{"1", Config{Protocols: []string{"chat"}, Extractors: []Extractor{Subprotocol(DefaultMarker)}}},
		{"6", allWays()},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			h := New(StaticToken(secret, user{"alice"}), c.cfg).Handler(func(context.Context, Session[user]) {})
			offer := "chat, access_token, " + secret
			r := newHandshake("/ws", "Sec-WebSocket-Protocol", offer)
			w := newHijackWriter()
			for b.Loop() {
				w.reset()
				r.Header["Sec-Websocket-Protocol"] = append(r.Header["Sec-Websocket-Protocol"][:0], offer)
				h.ServeHTTP(w, r)
				if !w.hijacked {
					b.Fatal(w.responseText())
				}
			}
		})
	}
}

// BenchmarkGateFleet is the handler form's subprotocol handshake without
// and with the fleet controls in memory (a Registry with a cap, a Limiter):
// their cost is the difference, within one run.
func BenchmarkGateFleet(b *testing.B) {
	for _, c := range []struct {
		name string
		cfg  func() Config
	}{
		{"plain", func() Config { return allWays() }},
		{"registry+cap+limiter", func() Config {
			cfg := allWays()
			cfg.Registry = fleet.NewMemory(fleet.MemoryOptions{MaxPerKey: 1})
			cfg.PrincipalKey = func(p any) string { return p.(user).Name }
			cfg.Limiter = fleet.NewMemoryLimiter(fleet.LimiterOptions{})
			return cfg
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			h := New(StaticToken(secret, user{"alice"}), c.cfg()).Handler(func(context.Context, Session[user]) {})
			r := newHandshake("/ws", "Sec-WebSocket-Protocol", "chat, access_token, "+secret)
			r.RemoteAddr = "192.0.2.1:1234"
			protos := append([]string(nil), r.Header["Sec-Websocket-Protocol"]...)
			w := newHijackWriter()
			for b.Loop() {
				w.reset()
				r.Header["Sec-Websocket-Protocol"] = append(r.Header["Sec-Websocket-Protocol"][:0], protos...)
				h.ServeHTTP(w, r)
				if !w.hijacked {
					b.Fatal(w.responseText())
				}
			}
		})
	}
}
