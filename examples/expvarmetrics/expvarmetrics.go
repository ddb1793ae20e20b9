// Package expvarmetrics counts accepted and refused WebSocket handshakes with
// expvar, served at /debug/vars, through wsgate's Config.OnHandshake hook.
package expvarmetrics

import (
	"context"
	"expvar"
	"net/http"
	"strconv"

	"github.com/gobwas/ws/wsutil"
	"github.com/wsgate/wsgate"
)

// User is the principal the application's Verifier returns.
type User struct{ Name string }

// The counters, published under these names at /debug/vars: totals, and
// breakdowns by credential source and by refusal status.
var (
	Accepted         = expvar.NewInt("wsgate_handshakes_accepted")
	Refused          = expvar.NewInt("wsgate_handshakes_refused")
	AcceptedBySource = expvar.NewMap("wsgate_handshakes_accepted_by_source")
	RefusedByStatus  = expvar.NewMap("wsgate_handshakes_refused_by_status")
)

// Observe is a wsgate Config.OnHandshake hook that updates the counters.
func Observe(ev wsgate.HandshakeEvent) {
	if ev.Accepted {
		Accepted.Add(1)
		AcceptedBySource.Add(ev.Source.String(), 1)
		return
	}
	Refused.Add(1)
	RefusedByStatus.Add(strconv.Itoa(ev.Status), 1)
}

// NewGate returns a gate whose handshakes are counted.
func NewGate(verify wsgate.Verifier[User]) *wsgate.Gate[User] {
	return wsgate.New(verify, wsgate.Config{OnHandshake: Observe})
}

// Routes returns the WebSocket route and expvar's /debug/vars.
func Routes(gate *wsgate.Gate[User]) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /ws", gate.Handler(func(ctx context.Context, s wsgate.Session[User]) {
		_ = wsutil.WriteServerText(s.Conn, []byte("hello "+s.Principal.Name))
	}))
	mux.Handle("GET /debug/vars", expvar.Handler())
	return mux
}
