package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// nodeCase is the JSON client.mjs reads.
type nodeCase struct {
	Impl      string            `json:"impl"`
	URL       string            `json:"url,omitempty"`
	Protocols []string          `json:"protocols,omitempty"`
	Headers   map[string]string `json:"headers,omitempty"`
	Origin    string            `json:"origin,omitempty"`
	Init      map[string]any    `json:"init,omitempty"`
}

const installNode = "apt-get install -y nodejs npm (Node 20+), then: cd e2e/node && npm ci"

// requireNode skips (or, under CI, fails) when node or the ws package is
// missing, and returns the node binary.
func requireNode(t *testing.T) string {
	t.Helper()
	node := requireTool(t, "node", installNode)
	if _, err := os.Stat(filepath.Join("node", "node_modules", "ws", "package.json")); err != nil {
		msg := "the ws package is not installed; run: cd e2e/node && npm ci"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return node
}

// runNode runs client.mjs once, bounded to 20 seconds.
func runNode(t *testing.T, node string, c nodeCase) clientResult {
	t.Helper()
	arg, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	args := []string{"client.mjs", string(arg)}
	if c.Impl == "builtin" {
		args = append([]string{"--experimental-websocket", "--no-warnings"}, args...)
	}
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Dir = "node"
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("node client.mjs %s: %v\n%s", arg, err, stderr)
	}
	var r clientResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("node client.mjs printed %q: %v", out, err)
	}
	t.Logf("%s %s: %v", c.Impl, c.URL, r)
	return r
}

func TestInteropNode(t *testing.T) {
	node := requireNode(t)
	var v struct{ Node, WS, Undici string }
	{
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		cmd := exec.CommandContext(ctx, node, "client.mjs", `{"impl":"version"}`)
		cmd.Dir = "node"
		out, err := cmd.Output()
		cancel()
		if err == nil && json.Unmarshal(out, &v) == nil {
			recordVersion("Node", v.Node)
			recordVersion("Node `ws` package", v.WS)
			recordVersion("Node built-in WebSocket (undici)", v.Undici)
		}
	}
	s := newTestServer(t)

	t.Run("ws", func(t *testing.T) {
		cases := []struct {
			way    string
			c      nodeCase
			query  bool
			source string
			note   string
		}{
			{way: wayBearer, c: nodeCase{Protocols: []string{appProtocol}, Headers: map[string]string{"Authorization": "Bearer " + testToken}}, source: "bearer"},
			{way: wayMarker, c: nodeCase{Protocols: []string{appProtocol, "access_token", testToken}}, source: "subprotocol"},
			{way: wayPrefix, c: nodeCase{Protocols: []string{appProtocol, k8sProtocol(testToken)}}, source: "subprotocol-prefix"},
			{way: wayCookie, c: nodeCase{Protocols: []string{appProtocol}, Headers: map[string]string{"Cookie": cookieName + "=" + testToken}, Origin: s.URL}, source: "cookie",
				note: "The test sets the `Cookie` header and the `origin` option (without an Origin the gate refuses a cookie)."},
			{way: wayQuery, c: nodeCase{Protocols: []string{appProtocol}}, query: true, source: "query"},
		}
		for _, c := range cases {
			id := "node-ws-" + strings.NewReplacer(" ", "-", ":", "", "(", "", ")", "").Replace(c.way)
			c.c.Impl, c.c.URL = "ws", s.wsURL(id)
			if c.query {
				c.c.URL += "?ticket=" + testToken
			}
			r := runNode(t, node, c.c)
			worksCell(t, s, nodeWS, c.way, id, r, c.source, 1000, c.note)
		}

		id := "node-ws-userinfo"
		r := runNode(t, node, nodeCase{Impl: "ws", URL: withUserinfo(s.wsURL(id), testToken), Protocols: []string{appProtocol}})
		note := "`ws` sends the userinfo as Authorization: Basic pre-emptively (`TOKEN:` for a token alone)."
		if evs := s.events(id); len(evs) != 1 || evs[0].HasAuth != "Basic" {
			t.Errorf("want one handshake with Basic, pre-emptively; got %+v", evs)
		}
		worksCell(t, s, nodeWS, wayUserinfo, id, r, "basic", 1000, note)

		// Refusals.
		id = "node-ws-wrong-bearer"
		r = runNode(t, node, nodeCase{Impl: "ws", URL: s.wsURL(id), Protocols: []string{appProtocol}, Headers: map[string]string{"Authorization": "Bearer " + wrongToken}})
		var err error
		if r.Status != http.StatusUnauthorized || r.Opened || s.statuses(id) != "401" {
			err = fmt.Errorf("want 401 through unexpected-response; got %v, server %s", r, s.statuses(id))
		}
		extraRow(t, nodeWS, "wrong token (Bearer)", fmt.Sprintf("server answered %s; the `unexpected-response` event exposed status %d", s.statuses(id), r.Status), err)

		id = "node-ws-cookie-cross-origin"
		r = runNode(t, node, nodeCase{Impl: "ws", URL: s.wsURL(id), Protocols: []string{appProtocol}, Headers: map[string]string{"Cookie": cookieName + "=" + testToken}, Origin: "http://evil.example"})
		err = nil
		if r.Status != http.StatusForbidden || r.Opened || s.statuses(id) != "403" {
			err = fmt.Errorf("want 403; got %v, server %s", r, s.statuses(id))
		}
		extraRow(t, nodeWS, "valid cookie, Origin http://evil.example", fmt.Sprintf("server answered %s (origin not allowed); `unexpected-response` status %d", s.statuses(id), r.Status), err)

		id = "node-ws-bad-protocol-char"
		r = runNode(t, node, nodeCase{Impl: "ws", URL: s.wsURL(id), Protocols: []string{appProtocol, "access_token", "abc=="}})
		err = nil
		if r.Thrown == "" || len(s.events(id)) != 0 {
			err = fmt.Errorf("want the constructor to throw before any request; got %v, server %s", r, s.statuses(id))
		}
		extraRow(t, nodeWS, "subprotocol token with `=` (padded base64)", "constructor threw `"+r.Thrown+"`; no request was sent", err)
	})

	t.Run("builtin", func(t *testing.T) {
		cases := []struct {
			way    string
			c      nodeCase
			query  bool
			source string
		}{
			{way: wayMarker, c: nodeCase{Protocols: []string{appProtocol, "access_token", testToken}}, source: "subprotocol"},
			{way: wayPrefix, c: nodeCase{Protocols: []string{appProtocol, k8sProtocol(testToken)}}, source: "subprotocol-prefix"},
			{way: wayQuery, c: nodeCase{Protocols: []string{appProtocol}}, query: true, source: "query"},
		}
		for _, c := range cases {
			id := "node-builtin-" + strings.NewReplacer(" ", "-", ":", "", "(", "", ")", "").Replace(c.way)
			c.c.Impl, c.c.URL = "builtin", s.wsURL(id)
			if c.query {
				c.c.URL += "?ticket=" + testToken
			}
			r := runNode(t, node, c.c)
			worksCell(t, s, nodeBI, c.way, id, r, c.source, 1000, "")
		}

		// Userinfo: never sent, not even after the Basic challenge.
		id := "node-builtin-userinfo"
		r := runNode(t, node, nodeCase{Impl: "builtin", URL: withUserinfo(s.wsURL(id), testToken), Protocols: []string{appProtocol}})
		evs := s.events(id)
		var err error
		if r.Opened || !r.Error || len(evs) == 0 {
			err = fmt.Errorf("want a refused handshake; got %v, server %+v", r, evs)
		}
		for _, e := range evs {
			if e.HasAuth != "" || e.Status != http.StatusUnauthorized {
				err = fmt.Errorf("want only 401s without Authorization; server saw %+v", evs)
			}
		}
		failsCell(t, nodeBI, wayUserinfo, "❌ userinfo never sent",
			fmt.Sprintf("server handshakes %s, none with Authorization; the client saw an error event and %s", s.statuses(id), closeSeen(r)),
			"undici's WebSocket strips the URL's userinfo and does not answer a Basic challenge.", err)

		// Headers: the WHATWG WebSocket API has none. undici 6 accepts a
		// non-standard second argument {protocols, headers}; record what
		// this version does with it.
		for _, hc := range []struct {
			way     string
			headers map[string]string
			source  string
		}{
			{wayBearer, map[string]string{"Authorization": "Bearer " + testToken}, "bearer"},
			{wayCookie, map[string]string{"Cookie": cookieName + "=" + testToken, "Origin": s.URL}, "cookie"},
		} {
			id := "node-builtin-headers-" + strings.NewReplacer(" ", "-", ":", "").Replace(hc.way)
			r := runNode(t, node, nodeCase{Impl: "builtin", URL: s.wsURL(id), Init: map[string]any{"protocols": []string{appProtocol}, "headers": hc.headers}})
			if checkWorks(s, id, r, hc.source, 1000) == nil {
				worksCell(t, s, nodeBI, hc.way, id, r, hc.source, 1000,
					"Only through undici's non-standard second argument `new WebSocket(url, {protocols, headers})`; the WHATWG API has no headers.")
				continue
			}
			failsCell(t, nodeBI, hc.way, "❌ no way to set headers",
				fmt.Sprintf("with `new WebSocket(url, {protocols, headers})` the client saw %v; server handshakes %s", r, s.statuses(id)),
				"The WHATWG WebSocket API has no headers parameter.", nil)
		}
	})
}

// closeSeen describes the close event a client reported after an error.
func closeSeen(r clientResult) string {
	if r.CloseCode == 0 {
		return "no close event within 1.5 s"
	}
	return fmt.Sprintf("close %d", r.CloseCode)
}
