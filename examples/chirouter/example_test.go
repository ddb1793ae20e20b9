package chirouter_test

import (
	"context"
	"fmt"
	"net/http/httptest"

	"github.com/wsgate/wsgate"
	"github.com/wsgate/wsgate/examples/chirouter"
	"github.com/wsgate/wsgate/examples/internal/wstest"
)

// A chi route with a URL parameter, the gate added with r.With, and a Go
// client that sends Authorization: Bearer.
func ExampleRouter() {
	gate := wsgate.New(wsgate.StaticToken("s3cret", chirouter.User{Name: "alice"}), wsgate.Config{})
	srv := httptest.NewServer(chirouter.Router(gate))
	defer srv.Close()

	res, err := wstest.Open(context.Background(), srv.URL+"/rooms/general/ws", wstest.Bearer("s3cret"))
	fmt.Println(res.Status, res.Message, err)

	res, err = wstest.Open(context.Background(), srv.URL+"/rooms/general/ws", wstest.Anonymous())
	fmt.Println(res.Status, res.Header.Get("WWW-Authenticate"), err)
	// Output:
	// 101 hello alice in general <nil>
	// 401 Bearer realm="wsgate" <nil>
}
