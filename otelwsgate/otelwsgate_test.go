package otelwsgate_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/wsgate/wsgate"
	"github.com/wsgate/wsgate/otelwsgate"
)

// The secrets every test sends; no span attribute or metric label may
// hold any of them.
const (
	secret = "S3cret-sentinel_9f2e"
	wrong  = "Wr0ng-sentinel_77aa"
)

type user struct{ Name string }

// classed is a verifier's error naming its own class.
type classed struct{ error }

func (classed) Class() string   { return "bad_signature" }
func (e classed) Unwrap() error { return e.error }

func verify(ctx context.Context, c wsgate.Credential) (user, error) {
	switch c.Token() {
	case secret:
		return user{"alice"}, nil
	case "short-lived":
		wsgate.SetExpiry(ctx, time.Now().Add(50*time.Millisecond))
		return user{"bob"}, nil
	case "expired-" + wrong:
		return user{}, fmt.Errorf("expired: %w", wsgate.ErrCredentialExpired)
	case "forged-" + wrong:
		return user{}, classed{wsgate.ErrInvalidToken}
	case "forbidden-" + wrong:
		return user{}, wsgate.ErrForbidden
	case "slow-" + wrong:
		<-ctx.Done()
		return user{}, ctx.Err()
	case "broken-" + wrong:
		return user{}, errors.New("database down")
	}
	return user{}, wsgate.ErrInvalidToken
}

// rig is a gate on loopback with in-memory telemetry.
type rig struct {
	spans  *tracetest.InMemoryExporter
	reader *sdkmetric.ManualReader
	gate   *wsgate.Gate[user]
	srv    *httptest.Server
	addr   string
}

func newRig(t *testing.T, cfg otelwsgate.Config, gcfg wsgate.Config) *rig {
	t.Helper()
	r := &rig{spans: tracetest.NewInMemoryExporter(), reader: sdkmetric.NewManualReader()}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(r.spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r.reader))
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	cfg.TracerProvider, cfg.MeterProvider = tp, mp
	if cfg.Route == "" {
		cfg.Route = "/ws"
	}
	inst, err := otelwsgate.New(cfg)
	require.NoError(t, err)
	if gcfg.Extractors == nil {
		gcfg.Extractors = []wsgate.Extractor{
			wsgate.Subprotocol(wsgate.DefaultMarker), wsgate.Basic(), wsgate.Bearer(), wsgate.Query("access_token"),
		}
	}
	if gcfg.VerifyTimeout == 0 {
		gcfg.VerifyTimeout = 100 * time.Millisecond
	}
	r.gate = wsgate.New(verify, inst.Instrument(gcfg))
	r.srv = httptest.NewServer(inst.Handler(r.gate.Handler(func(ctx context.Context, s wsgate.Session[user]) {
		for {
			msg, op, err := wsutil.ReadClientData(s.Conn)
			if err != nil || ctx.Err() != nil {
				return
			}
			s.WriteLock().Lock()
			err = wsutil.WriteServerMessage(s.Conn, op, msg)
			s.WriteLock().Unlock()
			if err != nil {
				return
			}
		}
	})))
	t.Cleanup(r.srv.Close)
	r.addr = r.srv.Listener.Addr().String()
	t.Cleanup(func() { r.scanForSecrets(t) })
	return r
}

// handshake sends a WebSocket handshake for target with the extra header
// lines, and returns the connection and the response.
func (r *rig) handshake(t *testing.T, target, lines string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	conn, err := net.Dial("tcp", r.addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(5*time.Second)))
	_, err = fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n%s\r\n", target, r.addr, lines)
	require.NoError(t, err)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	return conn, br, resp
}

// readClose reads frames until the server's close frame, answers it and
// returns its code.
func readClose(t *testing.T, conn net.Conn, br *bufio.Reader) ws.StatusCode {
	t.Helper()
	for {
		h, err := ws.ReadHeader(br)
		require.NoError(t, err)
		require.Less(t, h.Length, int64(1<<16))
		payload := make([]byte, h.Length)
		_, err = io.ReadFull(br, payload)
		require.NoError(t, err)
		if h.OpCode == ws.OpClose {
			code, _ := ws.ParseCloseFrameData(payload)
			_ = ws.WriteFrame(conn, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(code, ""))))
			return code
		}
	}
}

// waitSpans returns the ended spans once there are n.
func (r *rig) waitSpans(t *testing.T, n int) tracetest.SpanStubs {
	t.Helper()
	require.Eventually(t, func() bool { return len(r.spans.GetSpans()) >= n }, 5*time.Second, 5*time.Millisecond)
	return r.spans.GetSpans()
}

func attrs(kvs []attribute.KeyValue) map[string]any {
	m := map[string]any{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.AsInterface()
	}
	return m
}

// point is one metric data point: its attributes and its value (the
// count, for a histogram).
type point struct {
	attrs map[string]any
	value float64
}

func (r *rig) collect(t *testing.T) metricdata.ResourceMetrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.reader.Collect(context.Background(), &rm))
	return rm
}

func (r *rig) points(t *testing.T, name string) []point {
	t.Helper()
	var out []point
	for _, sm := range r.collect(t).ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out = append(out, point{attrs(p.Attributes.ToSlice()), float64(p.Value)})
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					out = append(out, point{attrs(p.Attributes.ToSlice()), float64(p.Count)})
				}
			}
		}
	}
	return out
}

// value returns the value of the point of name whose attributes include
// want, or 0.
func (r *rig) value(t *testing.T, name string, want map[string]any) float64 {
	t.Helper()
	var sum float64
next:
	for _, p := range r.points(t, name) {
		for k, v := range want {
			if p.attrs[k] != v {
				continue next
			}
		}
		sum += p.value
	}
	return sum
}

// scanForSecrets fails when a span (name, attributes, status, events) or a
// metric label holds one of the secrets the tests send.
func (r *rig) scanForSecrets(t *testing.T) {
	var texts []string
	for _, s := range r.spans.GetSpans() {
		texts = append(texts, s.Name, s.Status.Description)
		for _, kv := range s.Attributes {
			texts = append(texts, kv.Value.String())
		}
		for _, e := range s.Events {
			texts = append(texts, e.Name)
			for _, kv := range e.Attributes {
				texts = append(texts, kv.Value.String())
			}
		}
	}
	for _, sm := range r.collect(t).ScopeMetrics {
		for _, m := range sm.Metrics {
			texts = append(texts, fmt.Sprintf("%v", m.Data))
		}
	}
	all := strings.Join(texts, "\n")
	require.NotEmpty(t, all)
	for _, s := range []string{secret, wrong, base64.StdEncoding.EncodeToString([]byte(wrong + ":")), "access_token="} {
		assert.NotContains(t, all, s)
	}
}

func TestAnAcceptedHandshakeHasItsSpanAndMetrics(t *testing.T) {
	r := newRig(t, otelwsgate.Config{}, wsgate.Config{})
	conn, br, resp := r.handshake(t, "/ws?room=7&access_token="+secret, "")
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)

	spans := r.waitSpans(t, 1)
	require.Len(t, spans, 1)
	s := spans[0]
	assert.Equal(t, "GET /ws", s.Name)
	assert.Equal(t, trace.SpanKindServer, s.SpanKind)
	assert.Equal(t, codes.Unset, s.Status.Code)
	assert.False(t, s.EndTime.Before(s.StartTime))
	a := attrs(s.Attributes)
	host, port, _ := net.SplitHostPort(r.addr)
	assert.Equal(t, map[string]any{
		"http.request.method":       "GET",
		"http.response.status_code": int64(101),
		"http.route":                "/ws",
		"url.path":                  "/ws",
		"url.scheme":                "http",
		"network.protocol.name":     "http",
		"network.protocol.version":  "1.1",
		"server.address":            host,
		"server.port":               a["server.port"],
		"network.peer.address":      "127.0.0.1",
		"network.peer.port":         a["network.peer.port"],
		"wsgate.outcome":            "accepted",
		"wsgate.credential.source":  "query",
	}, a)
	assert.Equal(t, port, fmt.Sprint(a["server.port"]))
	assert.NotContains(t, a, "url.query")

	accepted := map[string]any{"wsgate.outcome": "accepted", "wsgate.credential.source": "query", "wsgate.status_class": "1xx", "http.route": "/ws"}
	assert.Equal(t, 1.0, r.value(t, "wsgate.handshakes", accepted))
	assert.Equal(t, 1.0, r.value(t, "wsgate.handshake.duration", accepted))
	for _, p := range r.points(t, "wsgate.handshakes") {
		assert.NotContains(t, p.attrs, "error.type")
	}
	assert.Equal(t, 1.0, r.value(t, "wsgate.active_sessions", map[string]any{"wsgate.credential.source": "query"}))

	// The session ends when the client closes.
	require.NoError(t, ws.WriteFrame(conn, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "")))))
	_, _ = br.Peek(1)
	conn.Close()
	require.Eventually(t, func() bool {
		return r.value(t, "wsgate.session.duration", nil) == 1
	}, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, 0.0, r.value(t, "wsgate.active_sessions", nil))
	assert.Empty(t, r.points(t, "wsgate.closes"), "the gate sent no close")
}

func TestEveryRefusalClassHasItsSpanAndMetrics(t *testing.T) {
	r := newRig(t, otelwsgate.Config{}, wsgate.Config{Protocols: []string{"chat"}})
	bearer := func(token string) string { return "Authorization: Bearer " + token + "\r\n" }
	tests := []struct {
		name   string
		target string
		lines  string
		status int
		class  string
		source string
	}{
		{"not a handshake", "/ws", "Sec-WebSocket-Version: 8\r\n", 400, "handshake", "none"}, // two versions
		{"a foreign origin", "/ws", "Origin: http://evil.example\r\n" + bearer(wrong), 403, "origin", "none"},
		{"a malformed protocol list", "/ws", "Sec-WebSocket-Protocol: access_token, " + wrong + ", a b\r\n", 400, "protocol", "none"},
		{"no credential", "/ws", "", 401, "no_credential", "none"},
		{"two credentials", "/ws?access_token=" + wrong, bearer(wrong), 400, "ambiguous", "none"},
		{"an unreadable credential", "/ws", "Authorization: Basic " + wrong + "!\r\n", 401, "malformed", "basic"},
		{"a wrong token", "/ws", bearer(wrong), 401, "invalid", "bearer"},
		{"a wrong ticket in the query", "/ws?access_token=" + wrong, "", 401, "invalid", "query"},
		{"a wrong Basic credential", "/ws", "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(wrong+":")) + "\r\n", 401, "invalid", "basic"},
		{"an expired token", "/ws", bearer("expired-" + wrong), 401, "expired", "bearer"},
		{"a verifier's own class", "/ws", bearer("forged-" + wrong), 401, "bad_signature", "bearer"},
		{"a forbidden token", "/ws", bearer("forbidden-" + wrong), 403, "forbidden", "bearer"},
		{"a verifier past its deadline", "/ws", bearer("slow-" + wrong), 503, "timeout", "bearer"},
		{"a failing verifier", "/ws", bearer("broken-" + wrong), 500, "verifier_error", "bearer"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, resp := r.handshake(t, tt.target, tt.lines)
			require.Equal(t, tt.status, resp.StatusCode)
			spans := r.waitSpans(t, i+1)
			s := spans[i]
			a := attrs(s.Attributes)
			assert.Equal(t, "refused", a["wsgate.outcome"])
			assert.Equal(t, tt.class, a["error.type"])
			assert.Equal(t, int64(tt.status), a["http.response.status_code"])
			assert.Equal(t, tt.source, a["wsgate.credential.source"])
			assert.NotContains(t, a, "wsgate.close_code")
			if tt.status >= 500 {
				assert.Equal(t, codes.Error, s.Status.Code)
				assert.Equal(t, tt.class, s.Status.Description)
			} else {
				assert.Equal(t, codes.Unset, s.Status.Code, "a client's error is no error of the server's span")
			}
			class := fmt.Sprintf("%dxx", tt.status/100)
			assert.Equal(t, 1.0, r.value(t, "wsgate.handshakes", map[string]any{
				"wsgate.outcome": "refused", "error.type": tt.class, "wsgate.status_class": class, "wsgate.credential.source": tt.source,
			}))
		})
	}
	assert.Equal(t, float64(len(tests)), r.value(t, "wsgate.handshake.duration", map[string]any{"wsgate.outcome": "refused"}))
	assert.Empty(t, r.points(t, "wsgate.active_sessions"))
}

func TestACloseFrameRefusalRecordsItsCloseCode(t *testing.T) {
	r := newRig(t, otelwsgate.Config{}, wsgate.Config{RefuseWithCloseFrame: true})
	conn, br, resp := r.handshake(t, "/ws", "Authorization: Bearer "+wrong+"\r\n")
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	assert.Equal(t, wsgate.CloseUnauthorized, readClose(t, conn, br))

	s := r.waitSpans(t, 1)[0]
	a := attrs(s.Attributes)
	assert.Equal(t, "refused", a["wsgate.outcome"])
	assert.Equal(t, int64(401), a["http.response.status_code"], "the status the refusal stands for")
	assert.Equal(t, int64(4401), a["wsgate.close_code"])
	assert.Equal(t, "invalid", a["error.type"])
	assert.Equal(t, 1.0, r.value(t, "wsgate.closes", map[string]any{"wsgate.close_code": int64(4401), "wsgate.close.phase": "handshake"}))
	assert.Empty(t, r.points(t, "wsgate.active_sessions"), "a refused connection is no session")
}

func TestInBandAuthenticationHasItsSpanAndMetrics(t *testing.T) {
	r := newRig(t, otelwsgate.Config{}, wsgate.Config{InBand: &wsgate.InBandAuth{}})
	auth := func(token string) string {
		var b strings.Builder
		_ = ws.WriteFrame(&b, ws.MaskFrame(ws.NewTextFrame([]byte(`{"type":"auth","token":"`+token+`"}`))))
		return b.String()
	}

	conn, br, resp := r.handshake(t, "/ws", "")
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	_, err := conn.Write([]byte(auth(secret)))
	require.NoError(t, err)
	s := r.waitSpans(t, 1)[0]
	a := attrs(s.Attributes)
	assert.Equal(t, "accepted", a["wsgate.outcome"])
	assert.Equal(t, "message", a["wsgate.credential.source"])
	assert.Equal(t, int64(101), a["http.response.status_code"])
	require.Eventually(t, func() bool {
		return r.value(t, "wsgate.active_sessions", map[string]any{"wsgate.credential.source": "message"}) == 1
	}, 5*time.Second, 5*time.Millisecond)
	conn.Close()
	_ = br

	conn, br, resp = r.handshake(t, "/ws", "")
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	_, err = conn.Write([]byte(auth(wrong)))
	require.NoError(t, err)
	assert.Equal(t, wsgate.CloseUnauthorized, readClose(t, conn, br))
	s = r.waitSpans(t, 2)[1]
	a = attrs(s.Attributes)
	assert.Equal(t, "refused", a["wsgate.outcome"])
	assert.Equal(t, "message", a["wsgate.credential.source"])
	assert.Equal(t, "invalid", a["error.type"])
	assert.Equal(t, int64(4401), a["wsgate.close_code"])
	assert.Equal(t, 1.0, r.value(t, "wsgate.handshakes", map[string]any{"wsgate.outcome": "accepted", "wsgate.credential.source": "message"}))
	assert.Equal(t, 1.0, r.value(t, "wsgate.handshakes", map[string]any{"wsgate.outcome": "refused", "wsgate.credential.source": "message"}))
	assert.Equal(t, 1.0, r.value(t, "wsgate.closes", map[string]any{"wsgate.close_code": int64(4401), "wsgate.close.phase": "handshake"}))
}

func TestClosesThatEndSessionsAreCounted(t *testing.T) {
	r := newRig(t, otelwsgate.Config{}, wsgate.Config{})
	conn, br, resp := r.handshake(t, "/ws", "Authorization: Bearer short-lived\r\n")
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	assert.Equal(t, wsgate.CloseUnauthorized, readClose(t, conn, br))

	conn, br, resp = r.handshake(t, "/ws", "Authorization: Bearer "+secret+"\r\n")
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	require.Eventually(t, func() bool { return r.value(t, "wsgate.active_sessions", nil) == 1 }, 5*time.Second, 5*time.Millisecond)
	done := make(chan error, 1)
	go func() { done <- r.gate.Shutdown(context.Background()) }()
	assert.Equal(t, ws.StatusGoingAway, readClose(t, conn, br))
	require.NoError(t, <-done)

	require.Eventually(t, func() bool { return r.value(t, "wsgate.session.duration", nil) == 2 }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, 0.0, r.value(t, "wsgate.active_sessions", nil))
	assert.Equal(t, 1.0, r.value(t, "wsgate.closes", map[string]any{"wsgate.close_code": int64(4401), "wsgate.close.phase": "session"}))
	assert.Equal(t, 1.0, r.value(t, "wsgate.closes", map[string]any{"wsgate.close_code": int64(1001), "wsgate.close.phase": "session"}))
}

func TestSessionSpansAreLinkedToTheirHandshake(t *testing.T) {
	r := newRig(t, otelwsgate.Config{SessionSpans: true}, wsgate.Config{})
	conn, br, resp := r.handshake(t, "/ws", "Authorization: Bearer short-lived\r\n")
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	assert.Equal(t, wsgate.CloseUnauthorized, readClose(t, conn, br))

	spans := r.waitSpans(t, 2)
	hs, session := spans[0], spans[1]
	assert.Equal(t, "GET /ws", hs.Name)
	assert.Equal(t, "WebSocket session /ws", session.Name)
	require.Len(t, session.Links, 1)
	assert.Equal(t, hs.SpanContext, session.Links[0].SpanContext)
	a := attrs(session.Attributes)
	assert.Equal(t, "bearer", a["wsgate.credential.source"])
	assert.Equal(t, int64(4401), a["wsgate.close_code"])
	assert.False(t, session.StartTime.Before(hs.EndTime.Add(-time.Millisecond)))
}

func TestSessionSpansAreOffByDefault(t *testing.T) {
	r := newRig(t, otelwsgate.Config{}, wsgate.Config{})
	conn, br, resp := r.handshake(t, "/ws", "Authorization: Bearer short-lived\r\n")
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	assert.Equal(t, wsgate.CloseUnauthorized, readClose(t, conn, br))
	require.Eventually(t, func() bool { return r.value(t, "wsgate.session.duration", nil) == 1 }, 5*time.Second, 5*time.Millisecond)
	assert.Len(t, r.spans.GetSpans(), 1)
}

func TestHandlerContinuesTheCallersTrace(t *testing.T) {
	r := newRig(t, otelwsgate.Config{Propagator: propagation.TraceContext{}}, wsgate.Config{})
	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	_, _, resp := r.handshake(t, "/ws", "Authorization: Bearer "+wrong+"\r\ntraceparent: 00-"+traceID+"-"+parentID+"-01\r\n")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	s := r.waitSpans(t, 1)[0]
	assert.Equal(t, traceID, s.SpanContext.TraceID().String())
	assert.Equal(t, parentID, s.Parent.SpanID().String())
	assert.True(t, s.Parent.IsRemote())
}

func TestInstrumentKeepsTheHooksAlreadySet(t *testing.T) {
	inst, err := otelwsgate.New(otelwsgate.Config{})
	require.NoError(t, err)
	var mu sync.Mutex
	var handshakes, sessions int
	cfg := inst.Instrument(wsgate.Config{
		OnHandshake: func(wsgate.HandshakeEvent) { mu.Lock(); handshakes++; mu.Unlock() },
		OnSession:   func(wsgate.SessionEvent) { mu.Lock(); sessions++; mu.Unlock() },
	})
	cfg.OnHandshake(wsgate.HandshakeEvent{Accepted: true, Status: 101})
	cfg.OnSession(wsgate.SessionEvent{})
	cfg.OnSession(wsgate.SessionEvent{Ended: true})
	assert.Equal(t, 1, handshakes)
	assert.Equal(t, 2, sessions)
}

func TestRequestFactsBecomeConventionalAttributes(t *testing.T) {
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	inst, err := otelwsgate.New(otelwsgate.Config{TracerProvider: tp, Route: "/ws"})
	require.NoError(t, err)
	inst.OnHandshake(wsgate.HandshakeEvent{
		Status: 405, Class: "handshake", Method: "BREW", Proto: "HTTP/2.0", TLS: true,
		Host: "[::1]:8443", RemoteAddr: "[2001:db8::1]:5555", Path: "/ws", Duration: time.Millisecond,
	})
	inst.OnHandshake(wsgate.HandshakeEvent{Accepted: true, Status: 200, Method: "CONNECT", Proto: "HTTP/2.0", Host: "example.com", Path: "/ws"})
	got := spans.GetSpans()
	require.Len(t, got, 2)
	assert.Equal(t, "HTTP /ws", got[0].Name)
	a := attrs(got[0].Attributes)
	assert.Equal(t, "_OTHER", a["http.request.method"])
	assert.Equal(t, "BREW", a["http.request.method_original"])
	assert.Equal(t, "2", a["network.protocol.version"])
	assert.Equal(t, "https", a["url.scheme"])
	assert.Equal(t, "::1", a["server.address"])
	assert.Equal(t, int64(8443), a["server.port"])
	assert.Equal(t, "2001:db8::1", a["network.peer.address"])
	assert.Equal(t, int64(5555), a["network.peer.port"])
	assert.GreaterOrEqual(t, got[0].EndTime.Sub(got[0].StartTime), time.Millisecond, "the span starts when the request reached the gate")
	assert.Equal(t, "CONNECT /ws", got[1].Name)
	a = attrs(got[1].Attributes)
	assert.Equal(t, "example.com", a["server.address"])
	assert.NotContains(t, a, "server.port")
	assert.NotContains(t, a, "network.peer.address")
}
