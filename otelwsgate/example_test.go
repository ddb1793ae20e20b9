package otelwsgate_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/wsgate/wsgate"
	"github.com/wsgate/wsgate/otelwsgate"
)

// Example exposes a gate's metrics to Prometheus through the
// OpenTelemetry Prometheus exporter, on /metrics next to the gate's /ws,
// then makes two handshakes (one accepted, one refused) and prints the
// counters Prometheus scrapes.
func Example() {
	registry := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(registry), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo())
	if err != nil {
		log.Fatal(err)
	}
	meters := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	defer meters.Shutdown(context.Background())
	tracer := sdktrace.NewTracerProvider() // add an exporter: otlptracehttp, stdouttrace...
	defer tracer.Shutdown(context.Background())

	inst, err := otelwsgate.New(otelwsgate.Config{MeterProvider: meters, TracerProvider: tracer, Route: "/ws"})
	if err != nil {
		log.Fatal(err)
	}
	gate := wsgate.New(wsgate.StaticToken("s3cret", "alice"), inst.Instrument(wsgate.Config{}))
	mux := http.NewServeMux()
	mux.Handle("/ws", inst.Handler(gate.Handler(func(ctx context.Context, s wsgate.Session[string]) {})))
	mux.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	handshake(srv.Listener.Addr().String(), "s3cret")
	handshake(srv.Listener.Addr().String(), "wrong")

	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "wsgate_handshakes_total") || strings.HasPrefix(line, "wsgate_handshake_duration_seconds_count") {
			fmt.Println(line)
		}
	}
	// Output:
	// wsgate_handshake_duration_seconds_count{http_route="/ws",wsgate_credential_source="bearer",wsgate_outcome="accepted",wsgate_status_class="1xx"} 1
	// wsgate_handshake_duration_seconds_count{error_type="invalid",http_route="/ws",wsgate_credential_source="bearer",wsgate_outcome="refused",wsgate_status_class="4xx"} 1
	// wsgate_handshakes_total{http_route="/ws",wsgate_credential_source="bearer",wsgate_outcome="accepted",wsgate_status_class="1xx"} 1
	// wsgate_handshakes_total{error_type="invalid",http_route="/ws",wsgate_credential_source="bearer",wsgate_outcome="refused",wsgate_status_class="4xx"} 1
}

// handshake opens a WebSocket handshake with token as a Bearer credential,
// reads the answer and closes the connection.
func handshake(addr, token string) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer %s\r\n\r\n", addr, token)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
}
