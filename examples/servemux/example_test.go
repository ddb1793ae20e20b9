package servemux_test

import (
	"context"
	"fmt"
	"net/http/httptest"

	"github.com/wsgate/wsgate"
	"github.com/wsgate/wsgate/examples/internal/wstest"
	"github.com/wsgate/wsgate/examples/servemux"
)

// A ServeMux route with a wildcard, its handler behind the gate, and a Go
// client that sends Authorization: Bearer.
func ExampleRoutes() {
	gate := wsgate.New(wsgate.StaticToken("s3cret", servemux.User{Name: "alice"}), wsgate.Config{})
	srv := httptest.NewServer(servemux.Routes(gate))
	defer srv.Close()

	res, err := wstest.Open(context.Background(), srv.URL+"/rooms/general/ws", wstest.Bearer("s3cret"))
	fmt.Println(res.Status, res.Message, err)

	res, err = wstest.Open(context.Background(), srv.URL+"/rooms/general/ws", wstest.Anonymous())
	fmt.Println(res.Status, res.Header.Get("WWW-Authenticate"), err)
	// Output:
	// 101 hello alice in general <nil>
	// 401 Bearer realm="wsgate" <nil>
}
