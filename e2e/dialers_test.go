package e2e

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	coderws "github.com/coder/websocket"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	gorillaws "github.com/gorilla/websocket"
)

// dialFunc opens url offering protocols with extra headers, does the
// greeting + round trip + close 1000, and reports what it observed.
type dialFunc func(ctx context.Context, url string, protocols []string, h http.Header) clientResult

var goDialers = []struct {
	name string
	dial dialFunc
}{
	{gorilla, dialGorilla},
	{coder, dialCoder},
	{gobwas, dialGobwas},
}

func dialGorilla(ctx context.Context, url string, protocols []string, h http.Header) (r clientResult) {
	d := gorillaws.Dialer{HandshakeTimeout: 5 * time.Second, Subprotocols: protocols}
	c, resp, err := d.DialContext(ctx, url, h)
	if err != nil {
		if resp != nil {
			r.Status = resp.StatusCode
			r.Error = true
			return r
		}
		r.Thrown = err.Error()
		return r
	}
	defer c.Close()
	r.Opened, r.Protocol = true, c.Subprotocol()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, msg, err := c.ReadMessage()
	if err != nil {
		r.Error = true
		return r
	}
	r.Greeting = string(msg)
	if err := c.WriteMessage(gorillaws.TextMessage, []byte(pingText)); err != nil {
		r.Error = true
		return r
	}
	if _, msg, err = c.ReadMessage(); err != nil {
		r.Error = true
		return r
	}
	r.Echo = string(msg)
	c.WriteControl(gorillaws.CloseMessage, gorillaws.FormatCloseMessage(gorillaws.CloseNormalClosure, "done"), time.Now().Add(5*time.Second))
	for i := 0; i < 10; i++ {
		if _, _, err = c.ReadMessage(); err != nil {
			break
		}
	}
	var ce *gorillaws.CloseError
	if errors.As(err, &ce) {
		r.CloseCode, r.CloseReason, r.WasClean = ce.Code, ce.Text, true
	}
	return r
}

func dialCoder(ctx context.Context, url string, protocols []string, h http.Header) (r clientResult) {
	c, resp, err := coderws.Dial(ctx, url, &coderws.DialOptions{HTTPHeader: h, Subprotocols: protocols})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			r.Status = resp.StatusCode
			r.Error = true
			return r
		}
		r.Thrown = err.Error()
		return r
	}
	defer c.CloseNow()
	r.Opened, r.Protocol = true, c.Subprotocol()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, msg, err := c.Read(rctx)
	if err != nil {
		r.Error = true
		return r
	}
	r.Greeting = string(msg)
	if err := c.Write(rctx, coderws.MessageText, []byte(pingText)); err != nil {
		r.Error = true
		return r
	}
	if _, msg, err = c.Read(rctx); err != nil {
		r.Error = true
		return r
	}
	r.Echo = string(msg)
	// Close sends 1000 and waits for the server's close frame; nil means the
	// closing handshake completed.
	if err := c.Close(coderws.StatusNormalClosure, "done"); err == nil {
		r.CloseCode, r.WasClean = int(coderws.StatusNormalClosure), true
	} else {
		r.Error = true
	}
	return r
}

func dialGobwas(ctx context.Context, url string, protocols []string, h http.Header) (r clientResult) {
	d := ws.Dialer{Protocols: protocols, Timeout: 5 * time.Second}
	if len(h) > 0 {
		d.Header = ws.HandshakeHeaderHTTP(h)
	}
	conn, br, hs, err := d.Dial(ctx, url)
	if err != nil {
		var se ws.StatusError
		if errors.As(err, &se) {
			r.Status = int(se)
			r.Error = true
			return r
		}
		r.Thrown = err.Error()
		return r
	}
	defer conn.Close()
	var rw io.ReadWriter = conn
	if br != nil {
		rw = struct {
			io.Reader
			io.Writer
		}{io.MultiReader(br, conn), conn}
		defer ws.PutReader(br)
	}
	r.Opened, r.Protocol = true, hs.Protocol
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	msg, err := wsutil.ReadServerText(rw)
	if err != nil {
		r.Error = true
		return r
	}
	r.Greeting = string(msg)
	if err := wsutil.WriteClientText(rw, []byte(pingText)); err != nil {
		r.Error = true
		return r
	}
	if msg, err = wsutil.ReadServerText(rw); err != nil {
		r.Error = true
		return r
	}
	r.Echo = string(msg)
	if err := ws.WriteFrame(rw, ws.MaskFrameInPlace(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "done")))); err != nil {
		r.Error = true
		return r
	}
	// Read raw frames until the server's close frame and take its code.
	fr := bufio.NewReader(rw)
	for i := 0; i < 10; i++ {
		f, err := readFrame(fr)
		if err != nil {
			break
		}
		if f.Header.OpCode == ws.OpClose {
			if len(f.Payload) >= 2 {
				r.CloseCode = int(binary.BigEndian.Uint16(f.Payload))
				r.CloseReason = string(f.Payload[2:])
			}
			r.WasClean = true
			break
		}
	}
	return r
}

// withUserinfo puts token into the URL as userinfo: ws://TOKEN@host/path.
func withUserinfo(u, token string) string {
	return strings.Replace(u, "ws://", "ws://"+token+"@", 1)
}

func TestInteropGoDialers(t *testing.T) {
	goModuleVersions()
	s := newTestServer(t)
	for _, d := range goDialers {
		t.Run(d.name, func(t *testing.T) {
			cases := []struct {
				way       string
				url       func(id string) string
				protocols []string
				header    http.Header
				source    string
			}{
				{
					way:       wayBearer,
					protocols: []string{appProtocol},
					header:    http.Header{"Authorization": {"Bearer " + testToken}},
					source:    "bearer",
				},
				{
					way:       wayMarker,
					protocols: []string{appProtocol, "access_token", testToken},
					source:    "subprotocol",
				},
				{
					way:       wayPrefix,
					protocols: []string{appProtocol, k8sProtocol(testToken)},
					source:    "subprotocol-prefix",
				},
				{
					way:       wayCookie,
					protocols: []string{appProtocol},
					// A Go dialer sends no Origin by itself; a cookie needs
					// one that passes the origin policy.
					header: http.Header{"Cookie": {cookieName + "=" + testToken}, "Origin": {s.URL}},
					source: "cookie",
				},
				{
					way:       wayQuery,
					url:       func(id string) string { return s.wsURL(id) + "?ticket=" + testToken },
					protocols: []string{appProtocol},
					source:    "query",
				},
			}
			for _, c := range cases {
				id := "go-" + d.name + "-" + c.way
				id = strings.NewReplacer("/", "-", " ", "-", ":", "", "(", "", ")", "", "→", "").Replace(id)
				u := s.wsURL(id)
				if c.url != nil {
					u = c.url(id)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				r := d.dial(ctx, u, c.protocols, c.header)
				cancel()
				note := ""
				if c.way == wayCookie {
					note = "The test sets the `Cookie` and `Origin` headers itself (a Go dialer sends no Origin; without one the gate refuses a cookie)."
				}
				worksCell(t, s, d.name, c.way, id, r, c.source, 1000, note)
			}

			// URL userinfo: each dialer treats it differently.
			id := "go-" + strings.ReplaceAll(d.name, "/", "-") + "-userinfo"
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			r := d.dial(ctx, withUserinfo(s.wsURL(id), testToken), []string{appProtocol}, nil)
			cancel()
			switch d.name {
			case coder:
				worksCell(t, s, d.name, wayUserinfo, id, r, "basic", 1000, "coder/websocket dials through net/http, which sends the userinfo as Authorization: Basic pre-emptively.")
			case gorilla:
				var err error
				if !strings.Contains(r.Thrown, "malformed ws or wss URL") || len(s.events(id)) != 0 {
					err = fmt.Errorf("want the dialer to refuse the URL before any request; server saw %d handshakes", len(s.events(id)))
				}
				failsCell(t, d.name, wayUserinfo, "❌ refuses the URL",
					fmt.Sprintf("Dial returned %q and no request reached the server", r.Thrown),
					"gorilla's URL parser rejects any userinfo in a ws:// URL; send Authorization yourself (Basic or Bearer header).", err)
			case gobwas:
				evs := s.events(id)
				var err error
				if r.Status != http.StatusUnauthorized || len(evs) != 1 || evs[0].HasAuth != "" {
					err = fmt.Errorf("want one handshake without Authorization answered 401; got %v, server %+v", r, evs)
				}
				failsCell(t, d.name, wayUserinfo, "❌ userinfo ignored (401)",
					fmt.Sprintf("the handshake carried no Authorization header; the gate answered %s (Basic challenge) and Dial returned ws.StatusError %d", s.statuses(id), r.Status),
					"gobwas/ws's Dialer drops the URL's userinfo and never retries on a challenge; set Authorization in Dialer.Header.", err)
			}
		})
	}

	// Refusals as a Go dialer sees them.
	t.Run("refusals", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		id := "go-wrong-bearer"
		r := dialGorilla(ctx, s.wsURL(id), []string{appProtocol}, http.Header{"Authorization": {"Bearer " + wrongToken}})
		var err error
		if r.Status != http.StatusUnauthorized || r.Opened || s.statuses(id) != "401" {
			err = fmt.Errorf("want 401 seen by the dialer; got %v, server %s", r, s.statuses(id))
		}
		extraRow(t, gorilla, "wrong token (Bearer)", fmt.Sprintf("server answered %s; Dial returned ErrBadHandshake with resp.StatusCode %d", s.statuses(id), r.Status), err)

		id = "go-cookie-no-origin"
		r = dialGorilla(ctx, s.wsURL(id), []string{appProtocol}, http.Header{"Cookie": {cookieName + "=" + testToken}})
		err = nil
		if r.Status != http.StatusForbidden || r.Opened || s.statuses(id) != "403" {
			err = fmt.Errorf("want 403; got %v, server %s", r, s.statuses(id))
		}
		extraRow(t, gorilla, "valid cookie, no Origin header", fmt.Sprintf("server answered %s: a cookie needs an allowed Origin (Cookie without InsecureAllowNoOrigin); Dial saw %d", s.statuses(id), r.Status), err)

		id = "go-two-credentials"
		r = dialCoder(ctx, s.wsURL(id), []string{appProtocol, "access_token", testToken}, http.Header{"Authorization": {"Bearer " + testToken}})
		err = nil
		if r.Status != http.StatusBadRequest || r.Opened || s.statuses(id) != "400" {
			err = fmt.Errorf("want 400; got %v, server %s", r, s.statuses(id))
		}
		extraRow(t, coder, "Bearer and subprotocol marker together", fmt.Sprintf("server answered %s (more than one credential, invalid_request); Dial saw %d", s.statuses(id), r.Status), err)
	})
}
