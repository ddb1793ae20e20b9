package main

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/wsgate/wsgate"
	"github.com/wsgate/wsgate/message"
	"github.com/wsgate/wsgate/ticket"
)

// user is the principal the demo's verifiers yield.
type user struct {
	Name string // shown in the hello message
	Via  string `json:",omitempty"` // "ticket" for a principal that came with a ticket
}

const (
	cookieName    = "wsgate_token"
	queryParam    = "access_token"
	ticketParam   = "ticket"
	ticketTTL     = 30 * time.Second
	inBandTimeout = 2 * time.Second // short, so that the timeout button answers quickly
	idle          = 2 * time.Minute // a socket silent this long is closed
	maxMessage    = 64 << 10        // the largest message the echo reads; larger ones are closed with 1009
)

// The gated endpoints.
const (
	pathWS      = "/ws"        // refusals as HTTP errors (the library's default)
	pathWSClose = "/ws-close"  // the same gate, refusing with close frames
	pathInBand  = "/ws-inband" // in-band authentication: the first message carries the token
)

//go:embed static/index.html static/app.js static/favicon.svg
var static embed.FS

// pageConfig is what differs between the two listeners.
type pageConfig struct {
	WSHost string // host:port the page's sockets go to; "" for the page's own host
	Other  string // URL of the other listener's page, linked from the page
	Cross  bool   // this listener is the cross-origin one
}

// demo holds the gates, the ticket store and the last handshake the server
// saw; both listeners share one demo.
type demo struct {
	token   string
	log     *slog.Logger
	verify  wsgate.Verifier[user]
	tickets *ticket.Service[user]
	store   *ticket.MemoryStore
	issuer  http.Handler
	gates   map[string]http.Handler // by path
	tel     *telemetry              // GET /metrics and /spans
	short   *shortTokens            // POST /short-token and the gate of /ws-refresh

	mu      sync.Mutex
	last    *attempt
	pending map[string]*attempt // handshakes in progress, by remote address
}

// attempt is one handshake as the server saw it, secrets masked; /last
// returns the latest.
type attempt struct {
	Time     time.Time `json:"time"`
	Path     string    `json:"path"`   // the endpoint: /ws, /ws-close or /ws-inband
	Remote   string    `json:"remote"` // the client's address
	Seen     seen      `json:"seen"`
	Ways     []string  `json:"ways"`            // the places that carried something credential-like
	Status   int       `json:"status"`          // 101 or the refusal; 0 while pending or if the upgrade failed
	Close    int       `json:"close,omitempty"` // the close code a refusal after the upgrade sent
	Reason   string    `json:"reason,omitempty"`
	Source   string    `json:"source,omitempty"`   // the way the gate accepted
	Protocol string    `json:"protocol,omitempty"` // the subprotocol the 101 echoed

	ticketQuery bool // the query has a ticket parameter
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

type callerKey struct{}

func newDemo(token string, log *slog.Logger) *demo {
	d := &demo{
		token:   token,
		log:     log,
		verify:  wsgate.StaticToken(token, user{Name: "demo-user"}),
		store:   ticket.NewMemoryStore(ticket.MemoryStoreOptions{MaxEntries: 10_000}),
		gates:   map[string]http.Handler{},
		pending: map[string]*attempt{},
		tel:     newTelemetry(),
		short:   newShortTokens(),
	}
	// A ticket is bound to the Origin of the page that fetched it, and
	// valid once, for ticketTTL, at any of the demo's endpoints.
	d.tickets = &ticket.Service[user]{Store: d.store, TTL: ticketTTL, BindOrigin: true}
	d.issuer = d.tickets.Issuer(func(r *http.Request) (user, bool) {
		p, ok := r.Context().Value(callerKey{}).(user)
		return p, ok
	})
	extractors := demoExtractors()
	d.gates[pathWS] = wsgate.New(d.verifyWS, wsgate.Config{
		Protocols:   []string{"chat"},
		Extractors:  extractors,
		OnHandshake: d.observer(),
		OnSession:   d.tel.session,
	}).Handler(d.echo)
	d.gates[pathWSClose] = wsgate.New(d.verifyWS, wsgate.Config{
		Protocols:            []string{"chat"},
		Extractors:           extractors,
		RefuseWithCloseFrame: true,
		OnHandshake:          d.observer(),
		OnSession:            d.tel.session,
	}).Handler(d.echo)
	// The in-band gate keeps the default extractors (Bearer and the marker
	// form): a handshake without a credential is upgraded, and its first
	// message must carry the demo token within inBandTimeout.
	d.gates[pathInBand] = wsgate.New(d.verify, wsgate.Config{
		Protocols:            []string{"chat"},
		RefuseWithCloseFrame: true,
		InBand:               &wsgate.InBandAuth{Timeout: inBandTimeout},
		OnHandshake:          d.observer(),
		OnSession:            d.tel.session,
	}).Handler(d.echo)
	d.gates[pathRefresh] = d.refreshGate()
	return d
}

// demoExtractors are the ways /ws and /ws-close accept.
func demoExtractors() []wsgate.Extractor {
	return []wsgate.Extractor{
		wsgate.Subprotocol(wsgate.DefaultMarker),
		wsgate.SubprotocolPrefix(wsgate.KubernetesPrefix),
		wsgate.Basic(wsgate.Challenge), // Chromium sends URL userinfo only after a Basic challenge
		wsgate.Bearer(),
		wsgate.Cookie(cookieName),
		wsgate.Query(queryParam),
		wsgate.Query(ticketParam),
	}
}

// close stops the ticket store's sweep.
func (d *demo) close() { d.store.Close() }

// verifyWS accepts the demo token in every way, and a ticket after the
// subprotocol marker or as the query parameter ticket. The gate's
// Credential does not say which query parameter carried it, so serveWS
// notes whether the handshake had a ticket parameter; with both parameters
// the gate refuses the handshake (two credentials) before verifying.
func (d *demo) verifyWS(ctx context.Context, c wsgate.Credential) (user, error) {
	a, _ := ctx.Value(attemptKey{}).(*attempt)
	return d.verifyAttempt(ctx, c, a)
}

// verifyAttempt is verifyWS for the handshake a (nil if unknown).
func (d *demo) verifyAttempt(ctx context.Context, c wsgate.Credential, a *attempt) (user, error) {
	if c.Source == wsgate.SourceQuery && a != nil && a.ticketQuery {
		return d.tickets.Verifier()(ctx, c)
	}
	p, err := d.verify(ctx, c)
	if err != nil && c.Source == wsgate.SourceSubprotocol {
		return d.tickets.Verifier()(ctx, c)
	}
	return p, err
}

// handler returns the mux one listener serves.
func (d *demo) handler(pc pageConfig) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", serveStatic("static/index.html", "text/html; charset=utf-8"))
	mux.HandleFunc("GET /app.js", serveStatic("static/app.js", "text/javascript; charset=utf-8"))
	// The page links /favicon.svg; /favicon.ico answers browsers that ask anyway.
	mux.HandleFunc("GET /favicon.svg", serveStatic("static/favicon.svg", "image/svg+xml"))
	mux.HandleFunc("GET /favicon.ico", serveStatic("static/favicon.svg", "image/svg+xml"))
	config := localOnly(sameOrigin(func(w http.ResponseWriter, r *http.Request) {
		host := pc.WSHost
		if host == "" {
			host = r.Host
		}
		writeJSON(w, map[string]any{
			"ws": "ws://" + host + pathWS, "wsClose": "ws://" + host + pathWSClose, "wsInband": "ws://" + host + pathInBand,
			"wsRefresh": "ws://" + host + pathRefresh,
			"token":     d.token, "other": pc.Other, "cross": pc.Cross,
		})
	}))
	mux.HandleFunc("GET /config", config)
	mux.HandleFunc("POST /config", config) // the page POSTs: browsers send Origin with a POST, not a same-origin GET
	mux.HandleFunc("GET /last", localOnly(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		defer d.mu.Unlock()
		writeJSON(w, d.last)
	}))
	mux.HandleFunc("GET /metrics", localOnly(d.tel.serveMetrics))
	mux.HandleFunc("GET /spans", localOnly(d.tel.serveSpans))
	mux.HandleFunc("POST /login", d.login)
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: cookieName, Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/ticket", d.ticket) // any method: the issuer answers 405 itself
	mux.HandleFunc("POST /short-token", d.shortToken)
	for path := range d.gates {
		mux.HandleFunc(path, d.serveWS) // any method: the gate answers 405 itself
	}
	return mux
}

// ticket answers /ticket. The caller proves it holds the demo token, as
// Authorization: Bearer or as the cookie; the library's issuer then mints
// the ticket (and answers 405 to anything but POST).
func (d *demo) ticket(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		d.issuer.ServeHTTP(w, r)
		return
	}
	p, status, msg := d.ticketCaller(r)
	if status != 0 {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		if status == http.StatusUnauthorized {
			h.Set("WWW-Authenticate", `Bearer realm="wsgate-demo"`)
		}
		http.Error(w, msg, status)
		d.log.Warn("ticket", "outcome", "refused", "status", status, "remote", r.RemoteAddr, "origin", r.Header.Get("Origin"))
		return
	}
	p.Via = "ticket"
	d.log.Info("ticket", "outcome", "issued", "remote", r.RemoteAddr, "origin", r.Header.Get("Origin"))
	d.issuer.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, p)))
}

// ticketCaller checks the credential of a POST /ticket: the demo token as
// Authorization: Bearer (any origin: a page cannot send it to another origin
// without CORS, which the demo does not answer), or else the cookie, which
// the browser attaches to every page's request and so is accepted only with
// a same-origin Origin header. status is 0 when the caller is p.
func (d *demo) ticketCaller(r *http.Request) (p user, status int, msg string) {
	c, err := wsgate.Bearer().Extract(r)
	if errors.Is(err, wsgate.ErrNoCredential) {
		c, err = wsgate.Cookie(cookieName).Extract(r)
		if err == nil {
			policy := wsgate.OriginPolicy{RequireOrigin: true}
			if policy.Check(r) != nil {
				return p, http.StatusForbidden, "the wsgate_token cookie is accepted only with a same-origin Origin header\n"
			}
		}
	}
	switch {
	case errors.Is(err, wsgate.ErrNoCredential):
		return p, http.StatusUnauthorized, "POST /ticket needs the demo token: Authorization: Bearer TOKEN, or the wsgate_token cookie (POST /login) from a same-origin page\n"
	case err != nil:
		return p, http.StatusUnauthorized, "unreadable credential: " + err.(*wsgate.Error).Reason + "\n"
	}
	if p, err = d.verify(r.Context(), c); err != nil {
		return p, http.StatusUnauthorized, "wrong token (" + c.Source.String() + ")\n"
	}
	return p, 0, ""
}

// serveWS records what the handshake carried and runs the endpoint's gate.
// Refusals are recorded by observer, upgrades in echo.
func (d *demo) serveWS(w http.ResponseWriter, r *http.Request) {
	a := &attempt{Time: time.Now(), Path: r.URL.Path, Remote: r.RemoteAddr, Seen: seenIn(r), Ways: waysIn(r),
		ticketQuery: r.URL.Query().Has(ticketParam)}
	d.mu.Lock()
	d.last = a
	// The demo serves HTTP/1.1 only, where a connection carries one
	// request at a time: the remote address names the handshake.
	d.pending[r.RemoteAddr] = a
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.pending, r.RemoteAddr)
		d.mu.Unlock()
	}()
	d.gates[r.URL.Path].ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), attemptKey{}, a)))
}

// observer returns the gate's OnHandshake hook: it records refusals and
// failed upgrades with what the client got (acceptances are recorded by
// echo, which knows the subprotocol).
func (d *demo) observer() func(wsgate.HandshakeEvent) {
	return func(ev wsgate.HandshakeEvent) {
		d.tel.handshake(ev)
		if ev.Accepted {
			return
		}
		d.mu.Lock()
		a := d.pending[ev.RemoteAddr]
		d.mu.Unlock()
		if a == nil {
			return
		}
		d.record(a, ev)
	}
}

// record finishes a with the refusal or failed upgrade ev reports.
func (d *demo) record(a *attempt, ev wsgate.HandshakeEvent) {
	var e *wsgate.Error
	if !errors.As(ev.Err, &e) {
		d.finish(context.Background(), a, 0, 0, "upgrade failed", "", "")
		return
	}
	status, reason, closeCode := ev.Status, e.Reason, int(ev.CloseCode)
	if closeCode != 0 {
		// The upgrade happened, then the gate closed with this code.
		status = http.StatusSwitchingProtocols
	}
	d.finish(context.Background(), a, status, closeCode, reason, "", "")
}

// echo serves an upgraded socket: a hello, then every message back.
func (d *demo) echo(ctx context.Context, s wsgate.Session[user]) {
	if a, ok := ctx.Value(attemptKey{}).(*attempt); ok {
		d.finish(ctx, a, http.StatusSwitchingProtocols, 0, "", s.Source.String(), s.Protocol)
	}
	hello, _ := json.Marshal(map[string]any{
		"type": "hello", "principal": s.Principal, "source": s.Source.String(), "protocol": s.Protocol,
	})
	if wsutil.WriteServerText(s.Conn, hello) != nil {
		return
	}
	for {
		s.Conn.SetReadDeadline(time.Now().Add(idle))
		// Answers pings and the client's close, and reads at most
		// maxMessage bytes of a message.
		msg, op, err := message.Read(s.Conn, s.Compression, maxMessage)
		var protocolErr ws.ProtocolError
		switch {
		case errors.Is(err, message.ErrTooBig):
			d.closeEcho(s, ws.StatusMessageTooBig, "message over 64 KiB")
			return
		case errors.As(err, &protocolErr):
			d.closeEcho(s, ws.StatusProtocolError, "protocol error")
			return
		case err != nil:
			return // the client closed (and was answered), went away or stayed silent
		}
		if message.Write(s.Conn, s.Compression, op, msg) != nil {
			return
		}
	}
}

// closeEcho ends an echo session the client broke, as RFC 6455 section 7.1.7
// asks: a close frame with code and reason, then, after reading (and
// dropping) what the client still sends for a moment, such as its own close
// frame, the end of the connection. Closing with unread bytes would make the
// kernel answer with a reset, which can destroy the close frame in flight.
func (d *demo) closeEcho(s wsgate.Session[user], code ws.StatusCode, reason string) {
	d.log.Warn("echo", "outcome", "closed", "close", int(code), "reason", reason, "remote", s.Conn.RemoteAddr().String())
	s.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	if ws.WriteFrame(s.Conn, ws.NewCloseFrame(ws.NewCloseFrameBody(code, reason))) != nil {
		return
	}
	s.Conn.SetReadDeadline(time.Now().Add(time.Second))
	io.CopyN(io.Discard, s.Conn, 1<<20)
}

// finish logs the outcome of a and then stores it (so that whoever sees it
// in /last finds the log line written): one line per handshake, with no
// header value in it. A refusal sent as a close frame has status 101 and
// its close code.
func (d *demo) finish(ctx context.Context, a *attempt, status, closeCode int, reason, source, protocol string) {
	way := source
	if way == "" {
		way = strings.Join(a.Ways, "+")
	}
	if way == "" && a.Path == pathInBand && status == http.StatusSwitchingProtocols {
		way = wsgate.SourceMessage.String()
	}
	if way == "" {
		way = "none"
	}
	outcome, level := "accepted", slog.LevelInfo
	switch {
	case status == 0:
		outcome, level = "failed", slog.LevelError
	case status != http.StatusSwitchingProtocols || closeCode != 0 || reason != "":
		outcome, level = "refused", slog.LevelWarn
	}
	attrs := []slog.Attr{slog.String("way", way), slog.String("outcome", outcome), slog.Int("status", status)}
	if closeCode != 0 {
		attrs = append(attrs, slog.Int("close", closeCode))
	}
	attrs = append(attrs, slog.String("remote", a.Remote), slog.String("origin", a.Seen.Origin))
	if reason != "" {
		attrs = append(attrs, slog.String("reason", reason))
	}
	attrs = append(attrs, slog.String("path", a.Path))
	d.log.LogAttrs(ctx, level, "handshake", attrs...)

	d.mu.Lock()
	a.Status, a.Close, a.Reason, a.Source, a.Protocol = status, closeCode, reason, source, protocol
	d.mu.Unlock()
}

// login sets the cookie when the form's token is the demo token.
func (d *demo) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	c := wsgate.NewCredential(wsgate.SourceCookie, r.PostFormValue("token"))
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

// sameOrigin serves only requests that carry exactly one Origin header,
// naming this server. localOnly lets a request without Origin through (a
// same-origin GET from a page has none); sameOrigin does not, so a
// command-line client that sends no Origin gets 403.
func sameOrigin(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if o := r.Header.Values("Origin"); len(o) != 1 || o[0] != "http://"+r.Host {
			http.Error(w, "only for the demo page: send this server's own Origin", http.StatusForbidden)
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
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src 'self'; "+
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
	if q := r.URL.Query(); q.Has(queryParam) || q.Has(ticketParam) {
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
