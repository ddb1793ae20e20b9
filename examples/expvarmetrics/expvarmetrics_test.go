package expvarmetrics_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/wsgate/wsgate"
	"github.com/wsgate/wsgate/examples/expvarmetrics"
	"github.com/wsgate/wsgate/examples/internal/wstest"
)

func TestExpvarCountsAcceptedAndRefusedHandshakes(t *testing.T) {
	gate := expvarmetrics.NewGate(wsgate.StaticToken(wstest.Token, expvarmetrics.User{Name: "alice"}))
	srv := httptest.NewServer(expvarmetrics.Routes(gate))
	defer srv.Close()
	accepted0, refused0 := vars(t, srv.URL)

	res, err := wstest.Open(context.Background(), srv.URL+"/ws", wstest.Bearer(wstest.Token))
	if err != nil || res.Status != http.StatusSwitchingProtocols || res.Message != "hello alice" {
		t.Fatalf("authenticated handshake: %d %q %v, want 101", res.Status, res.Message, err)
	}
	res, err = wstest.Open(context.Background(), srv.URL+"/ws", wstest.Anonymous())
	if err != nil || res.Status != http.StatusUnauthorized {
		t.Fatalf("anonymous handshake: %d %v, want 401", res.Status, err)
	}

	// The hook runs before the greeting is sent and before the buffered
	// 401 leaves the handler, so both counts are in by now.
	accepted, refused := vars(t, srv.URL)
	if accepted-accepted0 != 1 || refused-refused0 != 1 {
		t.Errorf("/debug/vars: accepted +%d, refused +%d; want +1, +1", accepted-accepted0, refused-refused0)
	}
}

func TestWriterWithoutUnwrapCannotUpgrade(t *testing.T) {
	gate := wsgate.New(wsgate.StaticToken(wstest.Token, expvarmetrics.User{Name: "alice"}), wsgate.Config{})
	upgrade := gate.Handler(func(context.Context, wsgate.Session[expvarmetrics.User]) {})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upgrade.ServeHTTP(struct{ http.ResponseWriter }{w}, r) // hides the Hijacker
	}))
	defer srv.Close()

	res, err := wstest.Open(context.Background(), srv.URL, wstest.Bearer(wstest.Token))
	if err != nil || res.Status != http.StatusInternalServerError {
		t.Errorf("got %d %v, want 500 (wsgate.ErrUpgradeFailed)", res.Status, err)
	}
}

// vars reads the counters the way a monitoring system would: from
// /debug/vars.
func vars(t *testing.T, url string) (accepted, refused int64) {
	t.Helper()
	resp, err := http.Get(url + "/debug/vars")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct {
		Accepted int64 `json:"wsgate_handshakes_accepted"`
		Refused  int64 `json:"wsgate_handshakes_refused"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v.Accepted, v.Refused
}
