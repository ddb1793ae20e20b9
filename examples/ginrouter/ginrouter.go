// Package ginrouter serves authenticated WebSockets from a
// github.com/gin-gonic/gin engine: natively, with a plug-in built on the
// gate's framework path (Authenticate, then Refuse or Accept), and by
// wrapping the gate's net/http handler with gin.WrapH.
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
// The room route is a native gin handler (it reads c.Param) through
// WebSocket; the lobby mounts the gate's own handler with gin.WrapH. gin's
// ResponseWriter is an http.Hijacker, so the upgrade needs nothing more.
func Engine(gate *wsgate.Gate[User]) *gin.Engine {
	e := gin.New()
	e.Use(gin.Recovery())
	e.GET("/lobby/ws", gin.WrapH(gate.Handler(lobby)))
	e.GET("/rooms/:room/ws", WebSocket(gate, room))
	e.GET("/healthz", func(c *gin.Context) { c.String(http.StatusOK, "ok\n") })
	return e
}

// WebSocket is the whole gin plug-in: it authenticates the handshake, answers
// a refusal as the gate does (status and WWW-Authenticate, or a close frame
// under RefuseWithCloseFrame), or upgrades with the gate's echo, extension
// and expiry, and serves the session with the gin.Context at hand.
func WebSocket[P any](gate *wsgate.Gate[P], serve func(*gin.Context, wsgate.Session[P])) gin.HandlerFunc {
	return func(c *gin.Context) {
		a, err := gate.Authenticate(c.Request)
		if err != nil {
			gate.Refuse(c.Writer, c.Request, err)
			c.Abort()
			return
		}
		s, err := gate.Accept(c.Writer, c.Request, a)
		if err != nil {
			c.Abort() // answered
			return
		}
		defer s.Conn.Close()
		serve(c, s)
	}
}

func room(c *gin.Context, s wsgate.Session[User]) {
	_ = wsutil.WriteServerText(s.Conn, []byte("hello "+s.Principal.Name+" in "+c.Param("room")))
}

func lobby(ctx context.Context, s wsgate.Session[User]) {
	_ = wsutil.WriteServerText(s.Conn, []byte("hello "+s.Principal.Name+" in the lobby via "+s.Source.String()))
}
