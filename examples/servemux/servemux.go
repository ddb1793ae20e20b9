// Package servemux serves authenticated WebSockets from a net/http ServeMux
// with Go 1.22 method and wildcard patterns.
package servemux

import (
	"context"
	"net/http"

	"github.com/gobwas/ws/wsutil"
	"github.com/wsgate/wsgate"
)

// User is the principal the application's Verifier returns.
type User struct{ Name string }

// Routes returns the application's routes, each WebSocket route behind gate.
//
// The gate wraps the handler registered on a pattern, not the mux: wrapping
// the mux would guard every route, WebSocket or not, and would run before the
// mux has matched a pattern, when r.PathValue is still empty. The copy of the
// request the gate passes on keeps the mux's path values.
func Routes(gate *wsgate.Gate[User]) *http.ServeMux {
	mux := http.NewServeMux()
	// Middleware form: the handler reads the principal and upgrades.
	mux.Handle("GET /rooms/{room}/ws", gate.Middleware(http.HandlerFunc(room)))
	// Handler form: the gate upgrades and hands over the session.
	mux.Handle("GET /lobby/ws", gate.Handler(lobby))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	return mux
}

func room(w http.ResponseWriter, r *http.Request) {
	a, ok := wsgate.AuthFrom[User](r.Context())
	if !ok {
		// Unreachable behind the gate; a route registered without it ends here.
		http.Error(w, "not authenticated", http.StatusInternalServerError)
		return
	}
	conn, err := wsgate.Upgrade(w, r)
	if err != nil {
		return // Upgrade has answered the client.
	}
	defer conn.Close()
	_ = wsutil.WriteServerText(conn, []byte("hello "+a.Principal.Name+" in "+r.PathValue("room")))
}

func lobby(ctx context.Context, s wsgate.Session[User]) {
	_ = wsutil.WriteServerText(s.Conn, []byte("hello "+s.Principal.Name+" in the lobby via "+s.Source.String()))
}
