package fleet_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/wsgate/wsgate"
	"github.com/wsgate/wsgate/fleet"
)

// Revoke closes every live socket of a principal, on logout for example;
// the client reads close 4410 "session revoked".
func ExampleMemory_Revoke() {
	reg := fleet.NewMemory(fleet.MemoryOptions{MaxPerKey: 5})
	gate := wsgate.New(wsgate.StaticToken("s3cret", "alice"), wsgate.Config{Registry: reg})
	started := make(chan struct{})
	srv := httptest.NewServer(gate.Handler(func(ctx context.Context, s wsgate.Session[string]) {
		close(started)
		_, _, _ = wsutil.ReadClientData(s.Conn) // until the gate closes it
	}))
	defer srv.Close()

	d := ws.Dialer{Header: ws.HandshakeHeaderHTTP{"Authorization": {"Bearer s3cret"}}}
	conn, _, _, err := d.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	<-started

	revoked := make(chan int)
	go func() {
		n, _ := reg.Revoke(context.Background(), "alice") // returns once the sockets are closed
		revoked <- n
	}()
	_, _, err = wsutil.ReadServerData(conn) // answers the close frame
	var closed wsutil.ClosedError
	if errors.As(err, &closed) {
		fmt.Println(closed.Code, closed.Reason)
	}
	fmt.Println("revoked:", <-revoked)
	// Output:
	// 4410 session revoked
	// revoked: 1
}

// A principal at its cap gets 429 (close-frame mode: 4409).
func ExampleMemoryOptions() {
	reg := fleet.NewMemory(fleet.MemoryOptions{MaxPerKey: 1})
	_, _ = reg.Join(context.Background(), "alice", nil)
	_, err := reg.Join(context.Background(), "alice", nil)
	fmt.Println(errors.Is(err, fleet.ErrTooManySessions))
	// Output: true
}
