// Package echorouter serves authenticated WebSockets from a
// github.com/labstack/echo/v4 server: natively, with a plug-in built on the
// gate's framework path (Authenticate, then Refuse or Accept), and by
// mounting the gate's own handler with echo.WrapHandler.
package echorouter

import (
	"context"
	"net/http"

	"github.com/gobwas/ws/wsutil"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/wsgate/wsgate"
)

// User is the principal the application's Verifier returns.
type User struct{ Name string }

// Server returns the application's routes, each WebSocket route behind gate.
// The room route is a native echo handler (it reads c.Param) through
// WebSocket; echo.WrapHandler mounts the gate's own handler for the lobby.
// echo's Response is an http.Hijacker and implements Unwrap.
func Server(gate *wsgate.Gate[User]) *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.Use(middleware.Recover())
	e.GET("/rooms/:room/ws", WebSocket(gate, room))
	e.GET("/lobby/ws", echo.WrapHandler(gate.Handler(lobby)))
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	return e
}

// WebSocket is the whole echo plug-in: it authenticates the handshake,
// answers a refusal as the gate does (status and WWW-Authenticate, or a
// close frame under RefuseWithCloseFrame), or upgrades with the gate's echo,
// extension and expiry, and serves the session with the echo.Context at
// hand.
func WebSocket[P any](gate *wsgate.Gate[P], serve func(echo.Context, wsgate.Session[P])) echo.HandlerFunc {
	return func(c echo.Context) error {
		a, err := gate.Authenticate(c.Request())
		if err != nil {
			gate.Refuse(c.Response(), c.Request(), err)
			return nil // answered
		}
		s, err := gate.Accept(c.Response(), c.Request(), a)
		if err != nil {
			return nil // answered
		}
		defer s.Conn.Close()
		serve(c, s)
		return nil
	}
}

func room(c echo.Context, s wsgate.Session[User]) {
	_ = wsutil.WriteServerText(s.Conn, []byte("hello "+s.Principal.Name+" in "+c.Param("room")))
}

func lobby(ctx context.Context, s wsgate.Session[User]) {
	_ = wsutil.WriteServerText(s.Conn, []byte("hello "+s.Principal.Name+" in the lobby via "+s.Source.String()))
}
