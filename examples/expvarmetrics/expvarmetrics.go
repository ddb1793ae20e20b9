// Package expvarmetrics counts accepted and refused WebSocket handshakes with
// expvar, served at /debug/vars.
//
// wsgate has no metrics hook, so acceptance is counted where the gate hands
// over a session, and refusal by recording the status the gate writes.
package expvarmetrics

import (
	"context"
	"expvar"
	"net/http"

	"github.com/gobwas/ws/wsutil"
	"github.com/wsgate/wsgate"
)

// User is the principal the application's Verifier returns.
type User struct{ Name string }

// The counters, published under these names at /debug/vars.
var (
	Accepted = expvar.NewInt("wsgate_handshakes_accepted")
	Refused  = expvar.NewInt("wsgate_handshakes_refused")
)

// Routes returns the WebSocket route, counted, and expvar's /debug/vars.
func Routes(gate *wsgate.Gate[User]) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /ws", countRefusals(gate.Handler(func(ctx context.Context, s wsgate.Session[User]) {
		Accepted.Add(1)
		_ = wsutil.WriteServerText(s.Conn, []byte("hello "+s.Principal.Name))
	})))
	mux.Handle("GET /debug/vars", expvar.Handler())
	return mux
}

// countRefusals counts the requests next answers with a status of 400 or
// more. A hijacked connection writes no status through w.
func countRefusals(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.status >= http.StatusBadRequest {
			Refused.Add(1)
		}
	})
}

// statusRecorder records the status written through it. It implements
// Unwrap, through which wsgate (like http.ResponseController) finds the
// server's http.Hijacker; without it the upgrade would fail with 500.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusRecorder) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }
