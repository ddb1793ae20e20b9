package ginrouter_test

import (
	"context"
	"fmt"
	"net/http/httptest"

	"github.com/gin-gonic/gin"

	"github.com/wsgate/wsgate"
	"github.com/wsgate/wsgate/examples/ginrouter"
	"github.com/wsgate/wsgate/examples/internal/wstest"
)

// gin's debug mode prints every route to stdout.
func init() { gin.SetMode(gin.ReleaseMode) }

// A gin route with a path parameter, the gate wrapped with gin.WrapH, and a Go
// client that sends Authorization: Bearer.
func ExampleEngine() {
	gate := wsgate.New(wsgate.StaticToken("s3cret", ginrouter.User{Name: "alice"}), wsgate.Config{})
	srv := httptest.NewServer(ginrouter.Engine(gate))
	defer srv.Close()

	res, err := wstest.Open(context.Background(), srv.URL+"/rooms/general/ws", wstest.Bearer("s3cret"))
	fmt.Println(res.Status, res.Message, err)

	res, err = wstest.Open(context.Background(), srv.URL+"/rooms/general/ws", wstest.Anonymous())
	fmt.Println(res.Status, res.Header.Get("WWW-Authenticate"), err)
	// Output:
	// 101 hello alice in general <nil>
	// 401 Bearer realm="wsgate" <nil>
}
