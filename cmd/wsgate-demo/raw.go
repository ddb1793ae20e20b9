package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wsgate/wsgate"
)

// The raw listener (-raw-addr) serves /ws and /ws-close through
// Gate.UpgradeConn: the handshake is read from the connection by the gate,
// without net/http, and answered as on the main listener, for the same
// credentials. /ws-inband is not served there: in-band authentication
// (Config.InBand) applies only to the net/http entry points. The raw
// listener serves no page; the main listener's page opens sockets to it,
// from the main listener's origin, which its gates allow.

// rawServer is the raw listener and its gates.
type rawServer struct {
	d     *demo
	ln    net.Listener
	url   string // ws://host:port
	gates map[string]*wsgate.Gate[user]

	mu      sync.Mutex
	pending map[string]*attempt // handshakes in progress, by remote address
	conns   sync.WaitGroup
}

// rawPaths are the endpoints the raw listener serves.
var rawPaths = []string{pathWS, pathWSClose}

// startRaw listens on rawAddr (crossAuto: a free port on the main
// listener's host) and serves the demo's gated endpoints there, allowing
// sockets from the main listener's page.
func (inst *instance) startRaw(rawAddr string) error {
	if rawAddr == crossAuto {
		host, _, _ := net.SplitHostPort(inst.addr)
		rawAddr = net.JoinHostPort(host, "0")
	}
	ln, err := net.Listen("tcp", rawAddr)
	if err != nil {
		return fmt.Errorf("raw listener: %w", err)
	}
	rs := &rawServer{d: inst.d, ln: ln, url: "ws://" + ln.Addr().String(),
		gates: map[string]*wsgate.Gate[user]{}, pending: map[string]*attempt{}}
	for _, path := range rawPaths {
		rs.gates[path] = wsgate.New(rs.verify, wsgate.Config{
			Protocols: []string{"chat"},
			// The recorder sees the handshake first and finds no
			// credential; the demo's extractors follow.
			Extractors:           append([]wsgate.Extractor{rawRecorder{rs}}, demoExtractors()...),
			RefuseWithCloseFrame: path == pathWSClose,
			Origin:               wsgate.OriginPolicy{AllowedOrigins: []string{"http://" + inst.addr}},
			OnHandshake:          rs.observe,
		})
	}
	inst.raw = rs
	go rs.serve()
	return nil
}

// serve accepts connections until the listener is closed.
func (rs *rawServer) serve() {
	for {
		conn, err := rs.ln.Accept()
		if err != nil {
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return
		}
		rs.conns.Add(1)
		go func() {
			defer rs.conns.Done()
			rs.serveConn(conn)
		}()
	}
}

// maxRequestLine bounds what the raw listener reads to route a handshake.
const maxRequestLine = 8 << 10

// serveConn routes one connection by the path of its request line to the
// endpoint's gate, which reads the rest of the handshake and answers it.
func (rs *rawServer) serveConn(conn net.Conn) {
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 0, 1024)
	for bytes.IndexByte(buf, '\n') < 0 {
		if len(buf) == maxRequestLine {
			conn.Close()
			return
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := conn.Read(buf[len(buf):min(cap(buf), maxRequestLine)])
		buf = buf[:len(buf)+n]
		if err != nil && bytes.IndexByte(buf, '\n') < 0 {
			conn.Close()
			return
		}
	}
	line, _, _ := bytes.Cut(buf, []byte("\n"))
	fields := strings.Fields(string(line))
	path := ""
	if len(fields) == 3 {
		path, _, _ = strings.Cut(fields[1], "?")
	}
	g := rs.gates[path]
	if g == nil {
		body := "not found: this listener serves " + strings.Join(rawPaths, " and ") +
			" (in-band authentication, " + pathInBand + ", needs the net/http listener)\n"
		_, _ = conn.Write([]byte("HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " +
			strconv.Itoa(len(body)) + "\r\nConnection: close\r\n\r\n" + body))
		conn.Close()
		return
	}
	s, err := g.UpgradeConn(&routedConn{Conn: conn, head: buf})
	if err != nil {
		return // answered and closed by the gate, and observed
	}
	defer s.Conn.Close()
	ctx := context.Background()
	if a := rs.take(s.Conn.RemoteAddr().String()); a != nil {
		ctx = context.WithValue(ctx, attemptKey{}, a)
	}
	rs.d.echo(ctx, s)
}

// shutdown stops the raw listener, closes its live sockets with 1001 and
// waits, until ctx ends, for its connections to finish.
func (rs *rawServer) shutdown(ctx context.Context) {
	rs.ln.Close()
	for _, g := range rs.gates {
		_ = g.Shutdown(ctx)
	}
	done := make(chan struct{})
	go func() {
		rs.conns.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// routedConn is a connection with the bytes read to route it put back in
// front, so that the gate reads the whole handshake.
type routedConn struct {
	net.Conn
	head []byte
}

func (c *routedConn) Read(p []byte) (int, error) {
	if len(c.head) > 0 {
		n := copy(p, c.head)
		c.head = c.head[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite lets the gate end a refusal as it does on a bare TCP
// connection: it stops sending, then drains what the client still sends.
func (c *routedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// rawRecorder is the first extractor of the raw gates: it notes what the
// handshake carried, secrets masked, as serveWS does on the main listener,
// and finds no credential. A custom extractor sees every header the client
// sent; the request it gets is the gate's view of the handshake, valid only
// during the call, so the attempt keeps copies.
type rawRecorder struct{ rs *rawServer }

func (rr rawRecorder) Extract(r *http.Request) (wsgate.Credential, error) {
	s := seenIn(r)
	a := &attempt{
		Time: time.Now(), Path: strings.Clone(r.URL.Path), Remote: strings.Clone(r.RemoteAddr), Ways: waysIn(r),
		Seen: seen{
			Protocol: strings.Clone(s.Protocol), Authorization: strings.Clone(s.Authorization),
			Cookie: strings.Clone(s.Cookie), Origin: strings.Clone(s.Origin), Query: strings.Clone(s.Query),
		},
		ticketQuery: r.URL.Query().Has(ticketParam),
	}
	rr.rs.mu.Lock()
	rr.rs.pending[a.Remote] = a
	rr.rs.mu.Unlock()
	rr.rs.d.mu.Lock()
	rr.rs.d.last = a
	rr.rs.d.mu.Unlock()
	return wsgate.Credential{}, wsgate.ErrNoCredential
}

// attempt returns the handshake in progress from remote, or nil.
func (rs *rawServer) attempt(remote string) *attempt {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.pending[remote]
}

// take is attempt, forgetting it.
func (rs *rawServer) take(remote string) *attempt {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	a := rs.pending[remote]
	delete(rs.pending, remote)
	return a
}

// verify is the main listener's verifier, finding the attempt through the
// request the gate kept (RequestFrom) rather than the request's context.
func (rs *rawServer) verify(ctx context.Context, c wsgate.Credential) (user, error) {
	var a *attempt
	if r := wsgate.RequestFrom(ctx); r != nil {
		a = rs.attempt(r.RemoteAddr)
	}
	return rs.d.verifyAttempt(ctx, c, a)
}

// observe records refusals and failed upgrades as the main listener's
// observer does. A handshake refused before the extractors ran (a foreign
// origin, a malformed request) has no attempt yet: it gets one with what
// the event says.
func (rs *rawServer) observe(ev wsgate.HandshakeEvent) {
	if ev.Accepted {
		return
	}
	a := rs.take(ev.RemoteAddr)
	if a == nil {
		a = &attempt{Time: time.Now(), Path: ev.Path, Remote: ev.RemoteAddr, Ways: []string{}}
		rs.d.mu.Lock()
		rs.d.last = a
		rs.d.mu.Unlock()
	}
	rs.d.record(a, ev)
}
