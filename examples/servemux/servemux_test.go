package servemux_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gobwas/ws"
	"github.com/wsgate/wsgate"
	"github.com/wsgate/wsgate/examples/internal/wstest"
	"github.com/wsgate/wsgate/examples/servemux"
)

func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	gate := wsgate.New(wsgate.StaticToken(wstest.Token, servemux.User{Name: "alice"}), wsgate.Config{
		Protocols: []string{"chat"},
	})
	srv := httptest.NewServer(servemux.Routes(gate))
	t.Cleanup(srv.Close)
	return srv
}

func TestServeMuxUpgradesAuthenticatedHandshakes(t *testing.T) {
	srv := newServer(t)
	tests := []struct {
		name         string
		path         string
		dialer       ws.Dialer
		wantProtocol string
		wantMessage  string
	}{
		{
			name:        "bearer header reaches the middleware route with its path value",
			path:        "/rooms/general/ws",
			dialer:      wstest.Bearer(wstest.Token),
			wantMessage: "hello alice in general",
		},
		{
			name:         "subprotocol token reaches the middleware route and chat is echoed",
			path:         "/rooms/random/ws",
			dialer:       wstest.Subprotocol(wstest.Token),
			wantProtocol: "chat",
			wantMessage:  "hello alice in random",
		},
		{
			name:        "bearer header reaches the handler route",
			path:        "/lobby/ws",
			dialer:      wstest.Bearer(wstest.Token),
			wantMessage: "hello alice in the lobby via bearer",
		},
		{
			name:         "subprotocol token reaches the handler route",
			path:         "/lobby/ws",
			dialer:       wstest.Subprotocol(wstest.Token),
			wantProtocol: "chat",
			wantMessage:  "hello alice in the lobby via subprotocol",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := wstest.Open(context.Background(), srv.URL+tt.path, tt.dialer)
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != http.StatusSwitchingProtocols || res.Protocol != tt.wantProtocol || res.Message != tt.wantMessage {
				t.Errorf("got %d %q %q, want 101 %q %q", res.Status, res.Protocol, res.Message, tt.wantProtocol, tt.wantMessage)
			}
		})
	}
}

func TestServeMuxRefusesHandshakesWithoutToken(t *testing.T) {
	srv := newServer(t)
	for _, path := range []string{"/rooms/general/ws", "/lobby/ws"} {
		res, err := wstest.Open(context.Background(), srv.URL+path, wstest.Anonymous())
		if err != nil {
			t.Fatal(err)
		}
		if got := res.Header.Get("WWW-Authenticate"); res.Status != http.StatusUnauthorized || !strings.HasPrefix(got, "Bearer ") {
			t.Errorf("%s: got %d, WWW-Authenticate %q; want 401 with a Bearer challenge", path, res.Status, got)
		}
	}
}

func TestServeMuxLeavesOtherRoutesOpen(t *testing.T) {
	srv := newServer(t)
	resp, err := http.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz: %d, want 200", resp.StatusCode)
	}
}
