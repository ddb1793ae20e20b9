// Command wsgate-demo is a browser playground for wsgate: a page with one
// button per way a browser can carry a credential into a WebSocket handshake,
// and a gated echo endpoint that says which way it accepted.
//
//	go run ./cmd/wsgate-demo
//
// then open the printed URL. A second listener (-cross-addr, by default the
// port after -addr's, or a free one) serves the same page from another origin, whose attempts the gate refuses with 403. The
// page also fetches one-time tickets (POST /ticket), can send its attempts to
// a gate that refuses with close frames (/ws-close), and tries in-band
// authentication (/ws-inband) and an in-band token refresh (/ws-refresh).
// Run with -help for the endpoints and credential names.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"
)

const usageText = `wsgate-demo: a browser playground for github.com/wsgate/wsgate.

Endpoints (on -addr; the -cross-addr listener, by default on the port after
-addr's or a free one when that is taken, serves the same ones, but its page
opens its sockets to -addr, from another origin):
  GET  /           the page (embedded index.html)
  GET  /app.js     the page's script (and /favicon.svg, its icon)
  POST /config     JSON {ws, wsClose, wsInband, token, ...} for the page (GET too);
                   answered only to loopback requests with a loopback Host and an
                   Origin header naming this server, which the page's POST carries;
                   without one (curl), or from another origin: 403 (a demo
                   convenience: a real server never hands a token to a page)
  GET  /last       JSON: the last handshake's credential headers, secrets masked,
                   its endpoint, status, close code and reason
  GET  /metrics    the gates' counters in the Prometheus text format, under the
                   names package otelwsgate gives them (handshakes by outcome,
                   source, status class and refusal class; live sessions; closes)
  GET  /spans      JSON: the last 20 handshakes as the spans otelwsgate records
  POST /login      form field "token"; sets cookie wsgate_token (HttpOnly,
                   SameSite=Strict, Path=/) and answers 204, or 401
  POST /logout     clears the cookie
  POST /ticket     answers {"ticket": "...", "expires_in": 30}: a one-time ticket,
                   valid 30 s, bound to the request's Origin. Needs the token as
                   Authorization: Bearer TOKEN, or the wsgate_token cookie with a
                   same-origin Origin (cross-origin: 403); none or wrong: 401;
                   other methods: 405
  GET  /ws         the gated echo WebSocket; subprotocol "chat"; refusals are
                   HTTP errors (401, 403, 400), which a page sees only as 1006.
                   All three sockets echo messages up to 64 KiB; a larger one is
                   closed with 1009, a protocol error with 1002
  GET  /ws-close   the same gate with RefuseWithCloseFrame: credential refusals
                   complete the upgrade and close with 4401 (missing, invalid or
                   more than one) or 1008 (subprotocol), with a reason the page
                   can read (4403 would be a forbidden principal; the demo's
                   verifier forbids none); origin and malformed handshakes stay
                   HTTP errors
  GET  /ws-inband  in-band authentication: a handshake without a credential is
                   upgraded; its first message must be {"type":"auth","token":TOKEN}
                   within 2 s. Wrong token: close 4401; no message: close 4408
  POST /short-token answers {"token": "st....", "expires_in": 2}: a token valid
                   2 s, for /ws-refresh only; needs the demo token as for /ticket
  GET  /ws-refresh a session whose expiry is its short token's (close 4401
                   "credential expired" when it passes); the page keeps it open by
                   sending {"type":"refresh","token":FRESH} before then, answered
                   {"type":"refreshed","expires_in_ms":2000}; a refused refresh
                   closes 4401 "refresh refused"

Credentials /ws and /ws-close accept (exactly one per handshake):
  Sec-WebSocket-Protocol: chat, access_token, TOKEN
  Sec-WebSocket-Protocol: chat, base64url.bearer.authorization.k8s.io.<base64url(TOKEN)>
  Authorization: Basic base64(TOKEN:)   (browsers: ws://TOKEN@host/ws)
  Authorization: Bearer TOKEN           (see cmd/wsgate-client)
  Cookie: wsgate_token=TOKEN            (needs a same-origin Origin)
  /ws?access_token=TOKEN
  a ticket from POST /ticket, once:
  /ws?ticket=TICKET
  Sec-WebSocket-Protocol: chat, access_token, TICKET

The -raw-addr listener (off by default; auto: a free port on -addr's host)
serves /ws and /ws-close with the same credentials and answers through
Gate.UpgradeConn, which reads the handshake from the connection without
net/http; its gates allow the -addr page's origin. It serves no page, and
not /ws-inband (in-band authentication needs the net/http path): 404.

Credentials /ws-inband accepts: the first message {"type":"auth","token":TOKEN},
or, in the handshake, Sec-WebSocket-Protocol: chat, access_token, TOKEN or
Authorization: Bearer TOKEN (the library's default extractors).

Flags:
`

func main() {
	fs := flag.NewFlagSet("wsgate-demo", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:8080", "main listener `address`")
	crossAddr := fs.String("cross-addr", crossAuto, "cross-origin listener `address`: "+crossAuto+
		" is -addr's port plus one, or a free port when that one is taken; empty: none")
	rawAddr := fs.String("raw-addr", "", "raw listener `address` (Gate.UpgradeConn, no net/http) for /ws and /ws-close: "+
		crossAuto+" is a free port on -addr's host; empty: none")
	token := fs.String("token", "", "the demo `token` (default: 128 random bits, unpadded base64url)")
	logFormat := fs.String("log", "text", "log `format` on stderr: text or json")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageText)
		fs.PrintDefaults()
	}
	fs.Parse(os.Args[1:])

	if err := run(*addr, *crossAddr, *rawAddr, *token, *logFormat); err != nil {
		fmt.Fprintln(os.Stderr, "wsgate-demo:", err)
		os.Exit(1)
	}
}

// crossAuto is the -cross-addr value that derives the cross-origin
// listener's address from the main one's, so that demos started with
// different -addr values run side by side.
const crossAuto = "auto"

func run(addr, crossAddr, rawAddr, token, logFormat string) error {
	var h slog.Handler
	switch logFormat {
	case "text":
		h = slog.NewTextHandler(os.Stderr, nil)
	case "json":
		h = slog.NewJSONHandler(os.Stderr, nil)
	default:
		return fmt.Errorf("-log %q: want text or json", logFormat)
	}
	if token == "" {
		token = randomToken()
	} else if !validToken(token) {
		return errors.New("-token: use only A-Z a-z 0-9 - . _ ~ (a value every way can carry)")
	}

	inst, err := start(addr, crossAddr, token, slog.New(h))
	if err != nil {
		return err
	}
	if rawAddr != "" {
		if err := inst.startRaw(rawAddr); err != nil {
			inst.shutdown()
			return err
		}
	}
	// Standard output, not the log: the token is printed on purpose, once.
	fmt.Printf("token: %s\npage:  %s\n", token, inst.page)
	if inst.cross != "" {
		fmt.Printf("cross: %s (another origin; its sockets go to %s)\n", inst.cross, inst.addr)
	}
	if inst.raw != nil {
		fmt.Printf("raw:   %s%s and %s%s (Gate.UpgradeConn, no net/http)\n", inst.raw.url, pathWS, inst.raw.url, pathWSClose)
	}
	fmt.Printf("Go:    go run github.com/wsgate/wsgate/cmd/wsgate-client@latest -url ws://%s/ws -token %s\n", inst.addr, token)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	select {
	case err = <-inst.errc:
	case <-ctx.Done():
	}
	inst.shutdown()
	return err
}

// instance is a running demo: its listeners, their servers, and the demo
// they share.
type instance struct {
	addr    string // the main listener's host:port
	page    string // http://addr/
	cross   string // the cross-origin page's URL, "" without one
	d       *demo
	servers []*http.Server
	raw     *rawServer // the -raw-addr listener, nil without one
	errc    chan error // the first Serve error
}

// start listens on addr and, unless crossAddr is empty, on the
// cross-origin address (see crossAuto), and serves both.
func start(addr, crossAddr, token string, log *slog.Logger) (*instance, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	listeners := []net.Listener{ln}
	inst := &instance{addr: ln.Addr().String(), page: "http://" + ln.Addr().String() + "/"}
	inst.d = newDemo(token, log)
	handlers := []http.Handler{inst.d.handler(pageConfig{})}
	if crossAddr != "" {
		cln, err := listenCross(crossAddr, ln.Addr())
		if err != nil {
			ln.Close()
			inst.d.close()
			return nil, fmt.Errorf("cross-origin listener: %w", err)
		}
		inst.cross = "http://" + cln.Addr().String() + "/"
		listeners = append(listeners, cln)
		handlers[0] = inst.d.handler(pageConfig{Other: inst.cross})
		handlers = append(handlers, inst.d.handler(pageConfig{WSHost: inst.addr, Other: inst.page, Cross: true}))
	}
	inst.errc = make(chan error, len(listeners))
	for i, l := range listeners {
		s := &http.Server{Handler: handlers[i], ReadHeaderTimeout: 10 * time.Second}
		inst.servers = append(inst.servers, s)
		go func() { inst.errc <- s.Serve(l) }()
	}
	return inst, nil
}

// shutdown stops the servers (upgraded sockets are hijacked and end with
// the process) and the demo's ticket store.
func (inst *instance) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for _, s := range inst.servers {
		s.Shutdown(ctx)
	}
	if inst.raw != nil {
		inst.raw.shutdown(ctx)
	}
	inst.d.close()
}

// listenCross opens the cross-origin listener. With crossAuto it tries the
// main listener's port plus one on the same host, and a free port on that
// host when that one is taken (by another demo's main listener, say); any
// other address is used as given.
func listenCross(crossAddr string, main net.Addr) (net.Listener, error) {
	if crossAddr != crossAuto {
		return net.Listen("tcp", crossAddr)
	}
	host, port := "127.0.0.1", 0
	if ta, ok := main.(*net.TCPAddr); ok {
		host, port = ta.IP.String(), ta.Port
	}
	if port > 0 && port < 65535 {
		if ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port+1))); err == nil {
			return ln, nil
		}
	}
	return net.Listen("tcp", net.JoinHostPort(host, "0"))
}

// randomToken returns 128 random bits in unpadded base64url: 22 characters
// that fit every way (subprotocol entry, cookie, query, Basic, Bearer).
func randomToken() string {
	b := make([]byte, 16)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// validToken accepts the characters that every way carries unchanged.
func validToken(t string) bool {
	return t != "" && strings.Trim(t, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~") == ""
}
