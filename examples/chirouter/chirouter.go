// Package chirouter serves authenticated WebSockets from a
// github.com/go-chi/chi/v5 router, with the gate as ordinary chi middleware.
package chirouter

import (
	"context"
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/gobwas/ws/wsutil"
	"github.com/wsgate/wsgate"
)

// User is the principal the application's Verifier returns.
type User struct{ Name string }

// Router returns the application's routes, each WebSocket route behind gate.
// Gate.Middleware is a func(http.Handler) http.Handler, so r.With and r.Use
// take it as it is, next to chi's own middleware. chi sets the URL
// parameters before route middleware runs, so both chi.URLParam and
// r.PathValue work behind the gate.
func Router(gate *wsgate.Gate[User]) chi.Router {
	r := chi.NewRouter()
	r.Use(middleware.RequestID, middleware.Recoverer)
	r.With(gate.Middleware).Get("/rooms/{room}/ws", room)
	r.Method(http.MethodGet, "/lobby/ws", gate.Handler(lobby))
	r.Get("/healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	return r
}

func room(w http.ResponseWriter, r *http.Request) {
	a, ok := wsgate.AuthFrom[User](r.Context())
	if !ok {
		http.Error(w, "not authenticated", http.StatusInternalServerError)
		return
	}
	conn, err := wsgate.Upgrade(w, r)
	if err != nil {
		return // Upgrade has answered the client.
	}
	defer conn.Close()
	_ = wsutil.WriteServerText(conn, []byte("hello "+a.Principal.Name+" in "+chi.URLParam(r, "room")))
}

func lobby(ctx context.Context, s wsgate.Session[User]) {
	_ = wsutil.WriteServerText(s.Conn, []byte("hello "+s.Principal.Name+" in the lobby via "+s.Source.String()))
}
