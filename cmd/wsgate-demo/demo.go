package main

import (
	"context"
	"embed"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gobwas/ws/wsutil"
	"github.com/wsgate/wsgate"
)

// user is the principal the demo's verifier yields for the demo token.
type user struct {
	Name string // shown in the hello message
}

const (
	cookieName = "wsgate_token"
	queryParam = "access_token"
	idle       = 2 * time.Minute // a socket silent this long is closed
)

//go:embed static/index.html static/app.js
var static embed.FS

// pageConfig is what differs between the two listeners.
type pageConfig struct {
	WSHost string // host:port the page's sockets go to; "" for the page's own host
	Other  string // URL of the other listener's page, linked from the page
	Cross  bool   // this listener is the cross-origin one
}

// demo holds the gate and the last handshake the server saw; both listeners
// share one demo.
type demo struct {
	token  string
	log    *slog.Logger
	verify wsgate.Verifier[user]
	ws     http.Handler

	mu   sync.Mutex
	last *attempt
}

// attempt is one handshake as the server saw it, secrets masked; /last
// returns the latest.
type attempt struct {
	Time     time.Time `json:"time"`
	Remote   string    `json:"remote"` // the client's address
	Seen     seen      `json:"seen"`
	Ways     []string  `json:"ways"`   // the places that carried something credential-like
	Status   int       `json:"status"` // 101 or the refusal; 0 while pending or if the upgrade failed
	Reason   string    `json:"reason,omitempty"`
	Source   string    `json:"source,omitempty"`   // the way the gate accepted
	Protocol string    `json:"protocol,omitempty"` // the subprotocol the 101 echoed
}

// seen are the request parts a credential can travel in, masked; each
// field is named by its JSON key.
type seen struct {
	Protocol      string `json:"Sec-WebSocket-Protocol,omitempty"`
	Authorization string `json:"Authorization,omitempty"`
	Cookie        string `json:"Cookie,omitempty"`
	Origin        string `json:"Origin,omitempty"`
	Query         string `json:"query,omitempty"`
}

type attemptKey struct{}

func newDemo(token string, log *slog.Logger) *demo {
	d := &demo{token: token, log: log, verify: wsgate.StaticToken(token, user{Name: "demo-user"})}
	gate := wsgate.New(d.verify, wsgate.Config{
		Protocols: []string{"chat"},
		Extractors: []wsgate.Extractor{
			wsgate.Subprotocol(wsgate.DefaultMarker),
			wsgate.SubprotocolPrefix(wsgate.KubernetesPrefix),
			wsgate.Basic().WithChallenge(), // Chromium sends URL userinfo only after a Basic challenge
			wsgate.Bearer(),
			wsgate.Cookie(cookieName),
			wsgate.Query(queryParam),
		},
	})
	d.ws = gate.Handler(d.echo)
	return d
}

// handler returns the mux one listener serves.
func (d *demo) handler(pc pageConfig) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", serveStatic("static/index.html", "text/html; charset=utf-8"))
	mux.HandleFunc("GET /app.js", serveStatic("static/app.js", "text/javascript; charset=utf-8"))
	mux.HandleFunc("GET /config", localOnly(func(w http.ResponseWriter, r *http.Request) {
		host := pc.WSHost
		if host == "" {
			host = r.Host
		}
		writeJSON(w, map[string]any{"ws": "ws://" + host + "/ws", "token": d.token, "other": pc.Other, "cross": pc.Cross})
	}))
	mux.HandleFunc("GET /last", localOnly(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		defer d.mu.Unlock()
		writeJSON(w, d.last)
	}))
	mux.HandleFunc("POST /login", d.login)
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: cookieName, Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/ws", d.serveWS) // any method: the gate answers 405 itself
	return mux
}

// serveWS records what the handshake carried, runs the gate and logs the
// outcome. Refusals are seen through recorder, upgrades in echo.
func (d *demo) serveWS(w http.ResponseWriter, r *http.Request) {
	a := &attempt{Time: time.Now(), Remote: r.RemoteAddr, Seen: seenIn(r), Ways: waysIn(r)}
	d.mu.Lock()
	d.last = a
	d.mu.Unlock()
	rec := &recorder{ResponseWriter: w}
	d.ws.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), attemptKey{}, a)))
	if rec.status != 0 {
		d.finish(r.Context(), a, rec.status, rec.reason(), "", "")
	} else if d.status(a) == 0 {
		d.finish(r.Context(), a, 0, "upgrade failed", "", "")
	}
}

// echo serves an upgraded socket: a hello, then every message back.
func (d *demo) echo(ctx context.Context, s wsgate.Session[user]) {
	if a, ok := ctx.Value(attemptKey{}).(*attempt); ok {
		d.finish(ctx, a, http.StatusSwitchingProtocols, "", s.Source.String(), s.Protocol)
	}
	hello, _ := json.Marshal(map[string]any{
		"type": "hello", "principal": s.Principal, "source": s.Source.String(), "protocol": s.Protocol,
	})
	if wsutil.WriteServerText(s.Conn, hello) != nil {
		return
	}
	for {
		s.Conn.SetReadDeadline(time.Now().Add(idle))
		msg, op, err := wsutil.ReadClientData(s.Conn) // answers pings and the client's close
		if err != nil {
			return
		}
		if wsutil.WriteServerMessage(s.Conn, op, msg) != nil {
			return
		}
	}
}

// finish stores the outcome of a and logs it: one line per handshake, with
// no header value in it.
func (d *demo) finish(ctx context.Context, a *attempt, status int, reason, source, protocol string) {
	d.mu.Lock()
	a.Status, a.Reason, a.Source, a.Protocol = status, reason, source, protocol
	d.mu.Unlock()

	way := source
	if way == "" {
		way = strings.Join(a.Ways, "+")
	}
	if way == "" {
		way = "none"
	}
	outcome, level := "accepted", slog.LevelInfo
	switch {
	case status == 0:
		outcome, level = "failed", slog.LevelError
	case status != http.StatusSwitchingProtocols:
		outcome, level = "refused", slog.LevelWarn
	}
	attrs := []slog.Attr{
		slog.String("way", way), slog.String("outcome", outcome), slog.Int("status", status),
		slog.String("remote", a.Remote), slog.String("origin", a.Seen.Origin),
	}
	if reason != "" {
		attrs = append(attrs, slog.String("reason", reason))
	}
	d.log.LogAttrs(ctx, level, "handshake", attrs...)
}

func (d *demo) status(a *attempt) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return a.Status
}

// login sets the cookie when the form's token is the demo token.
func (d *demo) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	c := wsgate.Credential{Source: wsgate.SourceCookie, Token: r.PostFormValue("token")}
	if _, err := d.verify(r.Context(), c); err != nil {
		d.log.Warn("login", "outcome", "refused", "remote", r.RemoteAddr)
		http.Error(w, "wrong token", http.StatusUnauthorized)
		return
	}
	// Not __Host- and not Secure: the demo runs on plain http.
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: d.token, Path: "/",
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
	d.log.Info("login", "outcome", "accepted", "remote", r.RemoteAddr)
	w.WriteHeader(http.StatusNoContent)
}

// recorder remembers the status and the first bytes of the body the gate
// answers with; the gate's refusal bodies never echo client input. Unwrap
// lets the gate reach the http.Hijacker underneath.
type recorder struct {
	http.ResponseWriter
	status int
	body   []byte
}

// WriteHeader records the first status and passes it on.
func (rw *recorder) WriteHeader(code int) {
	if rw.status == 0 {
		rw.status = code
	}
	rw.ResponseWriter.WriteHeader(code)
}

// Write keeps the first 200 bytes of the body and passes p on.
func (rw *recorder) Write(p []byte) (int, error) {
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	if n := 200 - len(rw.body); n > 0 {
		rw.body = append(rw.body, p[:min(n, len(p))]...)
	}
	return rw.ResponseWriter.Write(p)
}

// Unwrap returns the wrapped ResponseWriter, as http.ResponseController expects.
func (rw *recorder) Unwrap() http.ResponseWriter { return rw.ResponseWriter }

func (rw *recorder) reason() string {
	line, _, _ := strings.Cut(string(rw.body), "\n")
	return strings.TrimSpace(line)
}

// localOnly serves only requests from loopback, addressed to a loopback
// host name (so a DNS-rebound name cannot read the answer) and not sent by
// another origin. /config hands out the token; no real server should.
func localOnly(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		remote, _, _ := net.SplitHostPort(r.RemoteAddr)
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		origin := r.Header.Get("Origin")
		site := r.Header.Get("Sec-Fetch-Site")
		if !isLoopback(remote) || !(host == "localhost" || isLoopback(host)) ||
			origin != "" && origin != "http://"+r.Host ||
			site != "" && site != "same-origin" && site != "none" {
			http.Error(w, "only for same-origin requests on loopback", http.StatusForbidden)
			return
		}
		next(w, r)
	}
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func serveStatic(name, contentType string) http.HandlerFunc {
	body, err := static.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", contentType)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; "+
			"connect-src 'self' ws:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
		w.Write(body)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(v)
}

// waysIn names the places of r that carry something credential-like, with
// wsgate's Source names, so that refusals can be logged by way.
func waysIn(r *http.Request) []string {
	ways := []string{} // not null in /last
	for _, p := range protocolEntries(r) {
		switch {
		case p == wsgate.DefaultMarker:
			ways = append(ways, wsgate.SourceSubprotocol.String())
		case strings.HasPrefix(p, wsgate.KubernetesPrefix):
			ways = append(ways, wsgate.SourceSubprotocolPrefix.String())
		}
	}
	for _, v := range r.Header.Values("Authorization") {
		scheme, _, _ := strings.Cut(strings.TrimSpace(v), " ")
		switch strings.ToLower(scheme) {
		case "basic":
			ways = append(ways, wsgate.SourceBasic.String())
		case "bearer":
			ways = append(ways, wsgate.SourceBearer.String())
		}
	}
	if _, err := r.Cookie(cookieName); err == nil {
		ways = append(ways, wsgate.SourceCookie.String())
	}
	if r.URL.Query().Has(queryParam) {
		ways = append(ways, wsgate.SourceQuery.String())
	}
	return ways
}

func protocolEntries(r *http.Request) []string {
	var list []string
	for _, line := range r.Header.Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(line, ",") {
			list = append(list, strings.TrimSpace(p))
		}
	}
	return list
}

// seenIn copies the parts of r a credential can travel in, each value
// masked: subprotocol entries other than "chat" and the marker, the
// credentials of Authorization, every cookie value and every query value.
func seenIn(r *http.Request) seen {
	var s seen
	var ps []string
	entries := protocolEntries(r)
	for i, p := range entries {
		switch {
		case i > 0 && entries[i-1] == wsgate.DefaultMarker:
			p = mask(p)
		case strings.HasPrefix(p, wsgate.KubernetesPrefix):
			p = wsgate.KubernetesPrefix + mask(p[len(wsgate.KubernetesPrefix):])
		case p != "chat" && p != wsgate.DefaultMarker:
			p = mask(p)
		}
		ps = append(ps, p)
	}
	s.Protocol = strings.Join(ps, ", ")

	var auths []string
	for _, v := range r.Header.Values("Authorization") {
		scheme, cred, ok := strings.Cut(strings.TrimSpace(v), " ")
		if ok && (strings.EqualFold(scheme, "basic") || strings.EqualFold(scheme, "bearer")) {
			auths = append(auths, scheme+" "+mask(strings.TrimSpace(cred)))
		} else {
			auths = append(auths, mask(v))
		}
	}
	s.Authorization = strings.Join(auths, ", ")

	var cookies []string
	for _, c := range r.Cookies() {
		cookies = append(cookies, c.Name+"="+mask(c.Value))
	}
	s.Cookie = strings.Join(cookies, "; ")
	s.Origin = strings.Join(r.Header.Values("Origin"), ", ")

	var query []string
	for pair := range strings.SplitSeq(r.URL.RawQuery, "&") {
		if k, v, ok := strings.Cut(pair, "="); ok {
			query = append(query, k+"="+mask(v))
		} else if pair != "" {
			query = append(query, mask(pair))
		}
	}
	s.Query = strings.Join(query, "&")
	return s
}

// mask keeps the first 4 bytes of a secret, enough to tell the right token
// from a wrong one; values of 8 bytes or fewer are hidden entirely.
func mask(v string) string {
	if len(v) <= 8 {
		return "…"
	}
	return v[:4] + "…"
}
