package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	coder "github.com/coder/websocket"
	"github.com/gobwas/ws"
	gorilla "github.com/gorilla/websocket"
	"github.com/wsgate/wsgate"
)

// The handshake every case answers.
const (
	// Key is the Sec-WebSocket-Key of every request (RFC 6455's example).
	Key = "dGhlIHNhbXBsZSBub25jZQ=="
	// Token is the credential the static verifiers accept.
	Token = "bench-token-4c1d2a7e9b3f8605"
	// Protocol is the application subprotocol every request offers and
	// every case (but Gobwas) echoes.
	Protocol = "chat"
	// Host is the Host of in-process requests; the cookie case sends the
	// matching Origin.
	Host = "127.0.0.1:8080"
)

// User is the principal of the wsgate cases.
type User struct{ Name string }

// Case is one way of answering a handshake: a server and the request it
// expects. A case is served either by net/http (Handler) or straight from
// the net.Conn, without net/http (Conn, and Serve end to end): exactly one
// of Handler and Conn is set.
type Case struct {
	// Name is the benchmark name: "Floor", "Gorilla",
	// "WsgateHandler/subprotocol", ...
	Name string
	// Target is the request target (path and query).
	Target string
	// Header holds the request headers beyond Host, Upgrade, Connection,
	// Sec-WebSocket-Key and Sec-WebSocket-Version, as name, value pairs.
	Header []string
	// Protocol is the Sec-WebSocket-Protocol the 101 must echo, or "".
	Protocol string
	// Handler answers the handshake: a 101 on the hijacked connection,
	// which it then closes.
	Handler http.Handler
	// Conn answers the handshake it reads from conn, without net/http: a
	// 101, then it closes conn. The in-process benchmarks call it on a
	// MemConn holding the request's bytes (WireRequest).
	Conn func(conn net.Conn)
	// Serve serves the case on ln end to end, until ln is closed; it is
	// optional for a Conn case (nil: ServeConns(ln, Conn), one goroutine
	// per connection) and unused for a Handler case, which net/http serves.
	Serve func(ln net.Listener) error
}

// Raw reports whether c is served from the net.Conn, without net/http.
func (c Case) Raw() bool { return c.Handler == nil }

// ServeListener serves c on ln until ln is closed: raw cases with Serve (or
// ServeConns), the others with srv, whose Handler it sets to c.Handler.
func (c Case) ServeListener(ln net.Listener, srv *http.Server) error {
	switch {
	case c.Handler != nil:
		srv.Handler = c.Handler
		return srv.Serve(ln)
	case c.Serve != nil:
		return c.Serve(ln)
	default:
		return ServeConns(ln, c.Conn)
	}
}

var (
	protocols = []string{Protocol}
	// fixed101 is the floor's answer: the right 101 for Key, with the
	// protocol echo, written without looking at the request.
	fixed101 = []byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + acceptKey(Key) + "\r\nSec-WebSocket-Protocol: " + Protocol + "\r\n\r\n")
	coderOptions = &coder.AcceptOptions{Subprotocols: protocols}
)

func selectChat(p string) bool { return p == Protocol }

// Floor hijacks and writes a fixed 101: no checks at all.
func Floor(w http.ResponseWriter, r *http.Request) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	conn.Write(fixed101)
	conn.Close()
}

// Validate101 checks the RFC 6455 headers with wsgate.CheckHandshake,
// selects the subprotocol (the first offered entry the server speaks),
// computes the accept value with wsgate.AppendAcceptKey and writes the 101:
// the least a correct unauthenticated upgrade does.
func Validate101(w http.ResponseWriter, r *http.Request) {
	if err := wsgate.CheckHandshake(r); err != nil {
		wsgate.WriteError(w, err)
		return
	}
	proto := selectProtocol(r.Header["Sec-Websocket-Protocol"])
	conn, brw, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	conn.SetDeadline(time.Time{})
	write101(brw.Writer, strings.Trim(r.Header["Sec-Websocket-Key"][0], " \t"), proto)
	conn.Close()
}

// selectProtocol returns Protocol if one of the comma-separated lines
// offers it, else "". It allocates nothing.
func selectProtocol(lines []string) string {
	for _, line := range lines {
		for line != "" {
			var elem string
			elem, line, _ = strings.Cut(line, ",")
			if strings.Trim(elem, " \t") == Protocol {
				return Protocol
			}
		}
	}
	return ""
}

// acceptKey returns the Sec-WebSocket-Accept value for key.
func acceptKey(key string) string { return string(wsgate.AppendAcceptKey(nil, key)) }

func write101(bw *bufio.Writer, key, proto string) {
	b := bw.AvailableBuffer()
	b = append(b, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	b = wsgate.AppendAcceptKey(b, key)
	b = append(b, "\r\n"...)
	if proto != "" {
		b = append(b, "Sec-WebSocket-Protocol: "...)
		b = append(b, proto...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	bw.Write(b)
	bw.Flush()
}

// Gobwas upgrades with gobwas/ws's HTTPUpgrader, without subprotocols.
func Gobwas(w http.ResponseWriter, r *http.Request) {
	conn, _, _, err := ws.HTTPUpgrader{}.Upgrade(r, w)
	if err != nil {
		return
	}
	conn.Close()
}

// GobwasProtocol upgrades with gobwas/ws's HTTPUpgrader selecting Protocol.
func GobwasProtocol(w http.ResponseWriter, r *http.Request) {
	conn, _, _, err := ws.HTTPUpgrader{Protocol: selectChat}.Upgrade(r, w)
	if err != nil {
		return
	}
	conn.Close()
}

var gorillaUpgrader = gorilla.Upgrader{Subprotocols: protocols}

// Gorilla upgrades with gorilla/websocket's Upgrader.
func Gorilla(w http.ResponseWriter, r *http.Request) {
	c, err := gorillaUpgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c.Close()
}

// Coder upgrades with coder/websocket's Accept.
func Coder(w http.ResponseWriter, r *http.Request) {
	c, err := coder.Accept(w, r, coderOptions)
	if err != nil {
		return
	}
	c.CloseNow()
}

// RawRequestMax is the largest request RawFloor reads: a longer one is
// answered 431. RawReadTimeout is how long the raw cases wait for the
// whole request.
const (
	RawRequestMax  = 4096
	RawReadTimeout = 5 * time.Second
)

// rawBuf is RawFloor's memory for one handshake, pooled: the request and
// the 101.
type rawBuf struct {
	in  [RawRequestMax]byte
	out [256]byte
}

var (
	rawBufs       = sync.Pool{New: func() any { return new(rawBuf) }}
	rawTooLarge   = []byte("HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
	rawBadRequest = []byte("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
	headEnd       = []byte("\r\n\r\n")
	keyName       = []byte("Sec-WebSocket-Key")
)

// RawFloor is the floor of a server without net/http: it reads the request
// from conn (at most RawRequestMax bytes, within RawReadTimeout), finds
// Sec-WebSocket-Key, writes the 101 with its Sec-WebSocket-Accept and, as
// Floor does, the Protocol echo without looking at the offer, then closes
// conn. It checks nothing else. Its buffers are pooled, so a handshake
// allocates nothing (TestRawFloorAllocatesNothing).
func RawFloor(conn net.Conn) {
	defer conn.Close()
	b := rawBufs.Get().(*rawBuf)
	defer rawBufs.Put(b)
	conn.SetReadDeadline(time.Now().Add(RawReadTimeout))
	n, end := 0, -1
	for end < 0 {
		if n == len(b.in) {
			conn.Write(rawTooLarge)
			return
		}
		k, err := conn.Read(b.in[n:])
		from := max(0, n-len(headEnd)+1)
		n += k
		if i := bytes.Index(b.in[from:n], headEnd); i >= 0 {
			end = from + i
			break
		}
		if err != nil {
			return
		}
	}
	key := headerValue(b.in[:end], keyName)
	if len(key) == 0 || len(key) > 64 {
		conn.Write(rawBadRequest)
		return
	}
	out := append(b.out[:0], "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	out = appendAccept(out, key)
	out = append(out, "\r\nSec-WebSocket-Protocol: "+Protocol+"\r\n\r\n"...)
	conn.Write(out)
}

// headerValue returns the value, trimmed, of the first header line of head
// named name (case-insensitively), or nil. The request line is skipped.
func headerValue(head, name []byte) []byte {
	_, rest, _ := bytes.Cut(head, []byte("\r\n"))
	for len(rest) > 0 {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		k, v, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimRight(k, " \t"), name) {
			return bytes.Trim(v, " \t")
		}
	}
	return nil
}

// appendAccept appends the Sec-WebSocket-Accept value for key (at most 64
// bytes), without allocating.
func appendAccept(dst, key []byte) []byte {
	const guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
	var in [64 + len(guid)]byte
	m := copy(in[:], key)
	m += copy(in[m:], guid)
	sum := sha1.Sum(in[:m])
	var enc [28]byte
	base64.StdEncoding.Encode(enc[:], sum[:])
	return append(dst, enc[:]...)
}

// ServeConns accepts connections on ln and calls serve on each in its own
// goroutine, until ln is closed (it then returns nil). When the process is
// out of file descriptors it waits and retries, as net/http does.
func ServeConns(ln net.Listener, serve func(net.Conn)) error {
	var delay time.Duration
	for {
		conn, err := ln.Accept()
		switch {
		case err == nil:
			delay = 0
			go serve(conn)
		case errors.Is(err, net.ErrClosed):
			return nil
		case errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE):
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			time.Sleep(delay)
		default:
			return err
		}
	}
}

// GobwasRaw upgrades with gobwas/ws's zero-value Upgrader, straight from
// conn: no subprotocol selection (the 101 echoes none), no request size
// bound, then closes conn. Like RawFloor it reads within RawReadTimeout.
func GobwasRaw(conn net.Conn) {
	conn.SetReadDeadline(time.Now().Add(RawReadTimeout))
	if _, err := (ws.Upgrader{}).Upgrade(conn); err == nil {
		conn.SetReadDeadline(time.Time{})
	}
	conn.Close()
}

var gobwasRawProtocol = ws.Upgrader{Protocol: func(p []byte) bool { return string(p) == Protocol }}

// GobwasRawProtocol is GobwasRaw with a Protocol selector: the 101 echoes
// Protocol.
func GobwasRawProtocol(conn net.Conn) {
	conn.SetReadDeadline(time.Now().Add(RawReadTimeout))
	if _, err := gobwasRawProtocol.Upgrade(conn); err == nil {
		conn.SetReadDeadline(time.Time{})
	}
	conn.Close()
}

// Naive is an authenticated handler as users write it today: read the
// Bearer token, compare it in constant time, then upgrade with gobwas/ws.
func Naive(w http.ResponseWriter, r *http.Request) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(tok), []byte(Token)) != 1 {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	GobwasProtocol(w, r)
}

// Way is a credential way: its extractor and the request headers and target
// that carry Token that way.
type Way struct {
	Name      string
	Extractor wsgate.Extractor
	Target    string
	Header    []string
}

// Ways lists the six credential ways, carrying Token. Every request also
// offers Protocol.
func Ways() []Way { return WaysFor(Token) }

// WaysFor lists the six credential ways carrying token.
func WaysFor(token string) []Way {
	return []Way{
		{"subprotocol", wsgate.Subprotocol(wsgate.DefaultMarker), "/ws",
			[]string{"Sec-WebSocket-Protocol", Protocol + ", " + wsgate.DefaultMarker + ", " + token}},
		{"prefix", wsgate.SubprotocolPrefix(wsgate.KubernetesPrefix), "/ws",
			[]string{"Sec-WebSocket-Protocol", Protocol + ", " + wsgate.KubernetesPrefix + base64.RawURLEncoding.EncodeToString([]byte(token))}},
		{"basic", wsgate.Basic(), "/ws",
			[]string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte(token+":")), "Sec-WebSocket-Protocol", Protocol}},
		{"bearer", wsgate.Bearer(), "/ws",
			[]string{"Authorization", "Bearer " + token, "Sec-WebSocket-Protocol", Protocol}},
		{"cookie", wsgate.Cookie("session"), "/ws",
			[]string{"Cookie", "theme=dark; session=" + token, "Origin", "http://" + Host, "Sec-WebSocket-Protocol", Protocol}},
		{"query", wsgate.Query("access_token"), "/ws?access_token=" + url.QueryEscape(token) + "&room=1",
			[]string{"Sec-WebSocket-Protocol", Protocol}},
	}
}

// NewGate returns a gate with a static-token verifier, Protocol as its
// application protocol and the given extractors.
func NewGate(extractors ...wsgate.Extractor) *wsgate.Gate[User] {
	return wsgate.New(wsgate.StaticToken(Token, User{Name: "alice"}), wsgate.Config{
		Protocols:  protocols,
		Extractors: extractors,
	})
}

// GateHandler is the handler form: the gate upgrades, and the session
// callback returns at once (the gate then closes the connection).
func GateHandler(g *wsgate.Gate[User]) http.Handler {
	return g.Handler(func(context.Context, wsgate.Session[User]) {})
}

// GateMiddleware is the middleware form: the gate authenticates, and the
// wrapped handler upgrades with wsgate.Upgrade and closes.
func GateMiddleware(g *wsgate.Gate[User]) http.Handler {
	return g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := wsgate.Upgrade(w, r)
		if err != nil {
			return
		}
		conn.Close()
	}))
}

// Cases returns every in-process case, contenders first. Each call makes
// new gates.
func Cases() []Case {
	chat := []string{"Sec-WebSocket-Protocol", Protocol}
	cs := []Case{
		{Name: "Floor", Target: "/ws", Header: chat, Protocol: Protocol, Handler: http.HandlerFunc(Floor)},
		{Name: "Validate101", Target: "/ws", Header: chat, Protocol: Protocol, Handler: http.HandlerFunc(Validate101)},
		{Name: "Gobwas", Target: "/ws", Handler: http.HandlerFunc(Gobwas)},
		{Name: "GobwasProtocol", Target: "/ws", Header: chat, Protocol: Protocol, Handler: http.HandlerFunc(GobwasProtocol)},
		{Name: "Gorilla", Target: "/ws", Header: chat, Protocol: Protocol, Handler: http.HandlerFunc(Gorilla)},
		{Name: "Coder", Target: "/ws", Header: chat, Protocol: Protocol, Handler: http.HandlerFunc(Coder)},
		{Name: "Naive", Target: "/ws", Header: []string{"Authorization", "Bearer " + Token, "Sec-WebSocket-Protocol", Protocol},
			Protocol: Protocol, Handler: http.HandlerFunc(Naive)},
	}
	ways := Ways()
	sub := ways[0]
	// The raw cases, served from the net.Conn. The gobwas ones get the
	// subprotocol credential's request, the bytes an authenticated raw
	// upgrade reads.
	cs = append(cs,
		Case{Name: "RawFloor", Target: "/ws", Header: chat, Protocol: Protocol, Conn: RawFloor},
		Case{Name: "GobwasRaw", Target: sub.Target, Header: sub.Header, Conn: GobwasRaw},
		Case{Name: "GobwasRawProtocol", Target: sub.Target, Header: sub.Header, Protocol: Protocol, Conn: GobwasRawProtocol},
	)
	// wsgate's raw path: Gate.UpgradeConn in process, Gate.Serve end to end.
	rawGate := NewGate(sub.Extractor)
	cs = append(cs, Case{Name: "WsgateRaw/subprotocol", Target: sub.Target, Header: sub.Header, Protocol: Protocol,
		Conn: func(conn net.Conn) {
			s, err := rawGate.UpgradeConn(conn)
			if err != nil {
				return
			}
			s.Conn.Close()
		},
		Serve: func(ln net.Listener) error {
			err := rawGate.Serve(ln, func(context.Context, wsgate.Session[User]) {})
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}})
	for _, form := range []string{"WsgateHandler", "WsgateMiddleware"} {
		for _, w := range ways {
			g := NewGate(w.Extractor)
			h := GateHandler(g)
			if form == "WsgateMiddleware" {
				h = GateMiddleware(g)
			}
			cs = append(cs, Case{Name: form + "/" + w.Name, Target: w.Target, Header: w.Header, Protocol: Protocol, Handler: h})
		}
	}
	all := make([]wsgate.Extractor, len(ways))
	for i, w := range ways {
		all[i] = w.Extractor
	}
	cs = append(cs,
		Case{Name: "WsgateExtractors/1", Target: sub.Target, Header: sub.Header, Protocol: Protocol, Handler: GateHandler(NewGate(sub.Extractor))},
		Case{Name: "WsgateExtractors/6", Target: sub.Target, Header: sub.Header, Protocol: Protocol, Handler: GateHandler(NewGate(all...))},
	)
	// The same handshake as Firefox sends it: Connection with keep-alive,
	// an Origin, an extension offer, and a list without spaces.
	firefox := []string{"Connection", "keep-alive, Upgrade", "Origin", "http://" + Host,
		"Sec-WebSocket-Extensions", "permessage-deflate", "Sec-WebSocket-Protocol", Protocol + "," + wsgate.DefaultMarker + "," + Token}
	for _, c := range []struct {
		name string
		h    http.Handler
	}{
		{"Validate101", http.HandlerFunc(Validate101)},
		{"GobwasProtocol", http.HandlerFunc(GobwasProtocol)},
		{"Gorilla", http.HandlerFunc(Gorilla)},
		{"Coder", http.HandlerFunc(Coder)},
		{"WsgateHandler", GateHandler(NewGate(sub.Extractor))},
	} {
		cs = append(cs, Case{Name: "Firefox/" + c.name, Target: "/ws", Header: firefox, Protocol: Protocol, Handler: c.h})
	}
	return cs
}

// E2ECases returns the cases the end-to-end program serves: the in-process
// cases of these names.
func E2ECases() []Case {
	want := map[string]bool{"Floor": true, "Validate101": true, "GobwasProtocol": true, "Gorilla": true, "Coder": true,
		"WsgateHandler/subprotocol": true, "WsgateMiddleware/subprotocol": true, "RawFloor": true, "GobwasRaw": true,
		"WsgateRaw/subprotocol": true}
	var cs []Case
	for _, c := range Cases() {
		if want[c.Name] {
			cs = append(cs, c)
		}
	}
	return cs
}

// Request is a prepared handshake request for a case, restorable to its
// first state after a handler changed it (wsgate removes the credential's
// subprotocol entry and query parameter) without allocating.
type Request struct {
	R        *http.Request
	uri      string
	rawQuery string
	protos   []string // the Sec-WebSocket-Protocol lines as built
	lines    []string // the slice the header holds
}

// NewRequest builds c's request for host.
func NewRequest(c Case, host string) *Request {
	r, err := http.NewRequest(http.MethodGet, "http://"+host+c.Target, nil)
	if err != nil {
		panic(err)
	}
	r.RequestURI = c.Target
	r.Header = http.Header{
		"Upgrade":               {"websocket"},
		"Connection":            {"Upgrade"},
		"Sec-Websocket-Version": {"13"},
		"Sec-Websocket-Key":     {Key},
	}
	for i := 0; i+1 < len(c.Header); i += 2 {
		if c.Header[i] == "Connection" {
			r.Header.Set(c.Header[i], c.Header[i+1])
			continue
		}
		r.Header.Add(c.Header[i], c.Header[i+1])
	}
	q := &Request{R: r, uri: r.RequestURI, rawQuery: r.URL.RawQuery}
	if p := r.Header["Sec-Websocket-Protocol"]; p != nil {
		q.protos = append([]string(nil), p...)
		q.lines = p
	}
	return q
}

// Reset restores the request target and Sec-WebSocket-Protocol lines.
func (q *Request) Reset() {
	q.R.RequestURI, q.R.URL.RawQuery = q.uri, q.rawQuery
	if q.protos != nil {
		copy(q.lines, q.protos)
		q.R.Header["Sec-Websocket-Protocol"] = q.lines
	}
}

// WireRequest is c's request as a client sends it to host.
func WireRequest(c Case, host string) []byte {
	var b strings.Builder
	b.WriteString("GET " + c.Target + " HTTP/1.1\r\nHost: " + host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + Key + "\r\nSec-WebSocket-Version: 13\r\n")
	for i := 0; i+1 < len(c.Header); i += 2 {
		b.WriteString(c.Header[i] + ": " + c.Header[i+1] + "\r\n")
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

// CheckResponse reports whether resp is exactly one valid 101 answer to a
// request with Key: Upgrade and Connection headers, the right
// Sec-WebSocket-Accept, and protocol echoed (or no Sec-WebSocket-Protocol
// when protocol is ""). It allocates; tests and warm-ups only.
func CheckResponse(resp []byte, protocol string) error {
	br := bufio.NewReader(bytes.NewReader(resp))
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		return fmt.Errorf("unreadable response %q: %v", resp, err)
	}
	h := res.Header
	switch {
	case res.StatusCode != http.StatusSwitchingProtocols:
		return fmt.Errorf("status %d, not 101: %q", res.StatusCode, resp)
	case !strings.EqualFold(h.Get("Upgrade"), "websocket"):
		return fmt.Errorf("header Upgrade %q", h.Get("Upgrade"))
	case !strings.EqualFold(h.Get("Connection"), "upgrade"):
		return fmt.Errorf("header Connection %q", h.Get("Connection"))
	case len(h["Sec-Websocket-Accept"]) != 1 || h.Get("Sec-Websocket-Accept") != acceptKey(Key):
		return fmt.Errorf("Sec-WebSocket-Accept %q, want %q", h["Sec-Websocket-Accept"], acceptKey(Key))
	case protocol == "" && len(h["Sec-Websocket-Protocol"]) != 0:
		return fmt.Errorf("Sec-WebSocket-Protocol %q, want none", h["Sec-Websocket-Protocol"])
	case protocol != "" && (len(h["Sec-Websocket-Protocol"]) != 1 || h.Get("Sec-Websocket-Protocol") != protocol):
		return fmt.Errorf("Sec-WebSocket-Protocol %q, want %q", h["Sec-Websocket-Protocol"], protocol)
	case br.Buffered() != 0:
		return fmt.Errorf("%d bytes after the 101", br.Buffered())
	}
	return nil
}
