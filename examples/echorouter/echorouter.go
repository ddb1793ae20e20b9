// Package echorouter serves authenticated WebSockets from a
// github.com/labstack/echo/v4 server, adapting the gate with
// echo.WrapMiddleware and echo.WrapHandler.
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
// echo.WrapMiddleware puts the gate in front of a native echo handler, which
// keeps c.Param; echo.WrapHandler mounts the gate's own handler. echo's
// Response is an http.Hijacker and implements Unwrap.
func Server(gate *wsgate.Gate[User]) *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.Use(middleware.Recover())
	e.GET("/rooms/:room/ws", room, echo.WrapMiddleware(gate.Middleware))
	e.GET("/lobby/ws", echo.WrapHandler(gate.Handler(lobby)))
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	return e
}

func room(c echo.Context) error {
	user, ok := wsgate.PrincipalFrom[User](c.Request().Context())
	if !ok {
		return echo.NewHTTPError(http.StatusInternalServerError, "not authenticated")
	}
	conn, err := wsgate.Upgrade(c.Response(), c.Request())
	if err != nil {
		return nil // Upgrade has answered the client.
	}
	defer conn.Close()
	_ = wsutil.WriteServerText(conn, []byte("hello "+user.Name+" in "+c.Param("room")))
	return nil
}

func lobby(ctx context.Context, s wsgate.Session[User]) {
	_ = wsutil.WriteServerText(s.Conn, []byte("hello "+s.Principal.Name+" in the lobby via "+s.Source.String()))
}
