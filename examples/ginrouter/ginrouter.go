// Package ginrouter serves authenticated WebSockets from a
// github.com/gin-gonic/gin engine, wrapping the gate's net/http handlers with
// gin.WrapH.
package ginrouter

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/gobwas/ws/wsutil"
	"github.com/wsgate/wsgate"
)

// User is the principal the application's Verifier returns.
type User struct{ Name string }

// Engine returns the application's routes, each WebSocket route behind gate.
//
// A handler wrapped with gin.WrapH sees only the *http.Request, not the
// gin.Context, so c.Param is out of its reach: pathValues copies gin's
// parameters into the request, where r.PathValue finds them. gin's
// ResponseWriter is an http.Hijacker, so the upgrade needs nothing more.
func Engine(gate *wsgate.Gate[User]) *gin.Engine {
	e := gin.New()
	e.Use(gin.Recovery())
	e.GET("/lobby/ws", gin.WrapH(gate.Handler(lobby)))
	e.GET("/rooms/:room/ws", pathValues, gin.WrapH(gate.Middleware(http.HandlerFunc(room))))
	e.GET("/healthz", func(c *gin.Context) { c.String(http.StatusOK, "ok\n") })
	return e
}

// pathValues makes gin's path parameters available as r.PathValue.
func pathValues(c *gin.Context) {
	for _, p := range c.Params {
		c.Request.SetPathValue(p.Key, p.Value)
	}
}

func room(w http.ResponseWriter, r *http.Request) {
	user, ok := wsgate.PrincipalFrom[User](r.Context())
	if !ok {
		http.Error(w, "not authenticated", http.StatusInternalServerError)
		return
	}
	conn, err := wsgate.Upgrade(w, r)
	if err != nil {
		return // Upgrade has answered the client.
	}
	defer conn.Close()
	_ = wsutil.WriteServerText(conn, []byte("hello "+user.Name+" in "+r.PathValue("room")))
}

func lobby(ctx context.Context, s wsgate.Session[User]) {
	_ = wsutil.WriteServerText(s.Conn, []byte("hello "+s.Principal.Name+" in the lobby via "+s.Source.String()))
}
