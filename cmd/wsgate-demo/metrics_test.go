package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func get(t *testing.T, srv *httptest.Server, path string) string {
	t.Helper()
	res, err := srv.Client().Get(srv.URL + path)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return string(body)
}

// TestMetricsAndSpansShowTheClickedButtons makes the handshakes of a few
// buttons and reads them back from /metrics and /spans.
func TestMetricsAndSpansShowTheClickedButtons(t *testing.T) {
	srv, _ := newServer(t)
	assert.Equal(t, "[]\n", get(t, srv, "/spans"))

	accepted := dial(t, wsURL(srv, ""), []string{"chat", "access_token", testToken}, nil)
	require.Equal(t, http.StatusSwitchingProtocols, accepted.status)
	readHello(t, accepted)
	require.Equal(t, http.StatusUnauthorized, dial(t, wsURL(srv, ""), nil, http.Header{"Authorization": {"Bearer wrong-token-0123456789"}}).status)
	closed := dial(t, endpointURL(srv, pathWSClose, ""), []string{"chat"}, nil)
	require.Equal(t, http.StatusSwitchingProtocols, closed.status)
	code, _ := readClose(t, closed)
	require.Equal(t, 4401, code)
	inband := dial(t, endpointURL(srv, pathInBand, ""), []string{"chat"}, nil)
	require.Equal(t, http.StatusSwitchingProtocols, inband.status)
	require.NoError(t, wsutil.WriteClientText(inband.conn, []byte(`{"type":"auth","token":"`+testToken+`"}`)))
	readHello(t, inband)

	var metrics string
	require.Eventually(t, func() bool {
		metrics = get(t, srv, "/metrics")
		return strings.Contains(metrics, `wsgate_closes_total{http_route="/ws-close",wsgate_close_code="4401",wsgate_close_phase="handshake"} 1`)
	}, 5*time.Second, 10*time.Millisecond, metrics)
	for _, line := range []string{
		"# TYPE wsgate_handshakes_total counter",
		`wsgate_handshakes_total{http_route="/ws",wsgate_credential_source="subprotocol",wsgate_outcome="accepted",wsgate_status_class="1xx"} 1`,
		`wsgate_handshakes_total{error_type="invalid",http_route="/ws",wsgate_credential_source="bearer",wsgate_outcome="refused",wsgate_status_class="4xx"} 1`,
		`wsgate_handshakes_total{error_type="no_credential",http_route="/ws-close",wsgate_credential_source="none",wsgate_outcome="refused",wsgate_status_class="4xx"} 1`,
		`wsgate_handshakes_total{http_route="/ws-inband",wsgate_credential_source="message",wsgate_outcome="accepted",wsgate_status_class="1xx"} 1`,
		`wsgate_handshake_duration_seconds_count{http_route="/ws",wsgate_credential_source="subprotocol",wsgate_outcome="accepted",wsgate_status_class="1xx"} 1`,
		`wsgate_active_sessions{http_route="/ws",wsgate_credential_source="subprotocol"} 1`,
		`wsgate_active_sessions{http_route="/ws-inband",wsgate_credential_source="message"} 1`,
	} {
		assert.Contains(t, metrics, line+"\n")
	}

	// Closing a socket ends its session.
	accepted.conn.Close()
	require.Eventually(t, func() bool {
		metrics = get(t, srv, "/metrics")
		return strings.Contains(metrics, `wsgate_active_sessions{http_route="/ws",wsgate_credential_source="subprotocol"} 0`)
	}, 5*time.Second, 10*time.Millisecond, metrics)
	assert.Contains(t, metrics, `wsgate_session_duration_seconds_count{http_route="/ws",wsgate_credential_source="subprotocol"} 1`)

	raw := get(t, srv, "/spans")
	var spans []span
	require.NoError(t, json.Unmarshal([]byte(raw), &spans))
	require.Len(t, spans, 4)
	assert.True(t, spans[0].Start.After(spans[3].Start), "newest first")
	byName := map[string][]span{}
	for _, s := range spans {
		byName[s.Name] = append(byName[s.Name], s)
	}
	require.Len(t, byName["GET /ws"], 2)
	assert.Equal(t, "invalid", byName["GET /ws"][0].Attributes["error.type"])
	assert.Equal(t, "accepted", byName["GET /ws"][1].Attributes["wsgate.outcome"])
	require.Len(t, byName["GET /ws-close"], 1)
	assert.Equal(t, float64(4401), byName["GET /ws-close"][0].Attributes["wsgate.close_code"])
	require.Len(t, byName["GET /ws-inband"], 1)
	assert.Equal(t, "message", byName["GET /ws-inband"][0].Attributes["wsgate.credential.source"])
	assertNoSecret(t, "/metrics", metrics)
	assertNoSecret(t, "/spans", raw)
}

func TestMetricsAreOnlyForLoopbackSameOrigin(t *testing.T) {
	srv, _ := newServer(t)
	for _, path := range []string{"/metrics", "/spans"} {
		req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		require.NoError(t, err)
		req.Header.Set("Origin", "http://evil.example")
		res, err := srv.Client().Do(req)
		require.NoError(t, err)
		res.Body.Close()
		assert.Equal(t, http.StatusForbidden, res.StatusCode, path)
	}
}

func TestSpansKeepTheLastTwenty(t *testing.T) {
	srv, _ := newServer(t)
	for range maxSpans + 3 {
		require.Equal(t, http.StatusUnauthorized, dial(t, wsURL(srv, ""), nil, nil).status)
	}
	var spans []span
	require.NoError(t, json.Unmarshal([]byte(get(t, srv, "/spans")), &spans))
	assert.Len(t, spans, maxSpans)
	assert.Contains(t, get(t, srv, "/metrics"), `wsgate_handshakes_total{error_type="no_credential",http_route="/ws",wsgate_credential_source="none",wsgate_outcome="refused",wsgate_status_class="4xx"} 23`)
}
