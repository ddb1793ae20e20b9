package otelwsgate_test

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/wsgate/wsgate"
	"github.com/wsgate/wsgate/otelwsgate"
)

// BenchmarkHandshake measures an accepted handshake in the handler form
// (Bearer, StaticToken, a session that returns at once) on a hijackable
// in-memory writer: without instrumentation, with otelwsgate on the
// OpenTelemetry no-op providers (what an application gets that installs no
// SDK), and on the SDK (every span sampled and ended, no exporter; the
// metrics aggregated by a manual reader), with and without session spans.
func BenchmarkHandshake(b *testing.B) {
	sdk := func(sessionSpans bool) *otelwsgate.Config {
		return &otelwsgate.Config{
			TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample())),
			MeterProvider:  sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())),
			Route:          "/ws",
			SessionSpans:   sessionSpans,
		}
	}
	cases := []struct {
		name string
		cfg  *otelwsgate.Config
	}{
		{"none", nil},
		{"noop providers", &otelwsgate.Config{
			TracerProvider: tracenoop.NewTracerProvider(), MeterProvider: metricnoop.NewMeterProvider(), Route: "/ws",
		}},
		{"sdk", sdk(false)},
		{"sdk with session spans", sdk(true)},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			gcfg := wsgate.Config{}
			if c.cfg != nil {
				inst, err := otelwsgate.New(*c.cfg)
				if err != nil {
					b.Fatal(err)
				}
				gcfg = inst.Instrument(gcfg)
			}
			g := wsgate.New(wsgate.StaticToken(secret, user{"alice"}), gcfg)
			h := g.Handler(func(context.Context, wsgate.Session[user]) {})
			r := httptest.NewRequest(http.MethodGet, "/ws", nil)
			r.Header.Set("Upgrade", "websocket")
			r.Header.Set("Connection", "Upgrade")
			r.Header.Set("Sec-WebSocket-Version", "13")
			r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
			r.Header.Set("Authorization", "Bearer "+secret)
			w := newHijackWriter()
			b.ReportAllocs()
			for b.Loop() {
				w.reset()
				h.ServeHTTP(w, r)
				if !w.hijacked {
					b.Fatal("not upgraded")
				}
			}
		})
	}
}

// hijackWriter is a ResponseWriter whose connection is an in-memory sink.
type hijackWriter struct {
	header   http.Header
	hijacked bool
	conn     *memConn
	rw       *bufio.ReadWriter
}

func newHijackWriter() *hijackWriter {
	c := &memConn{}
	c.out.Grow(4096)
	return &hijackWriter{header: http.Header{}, conn: c, rw: bufio.NewReadWriter(bufio.NewReader(c), bufio.NewWriter(c))}
}

func (w *hijackWriter) reset() {
	clear(w.header)
	w.hijacked = false
	w.conn.out.Reset()
}

func (w *hijackWriter) Header() http.Header         { return w.header }
func (w *hijackWriter) WriteHeader(int)             {}
func (w *hijackWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.hijacked = true
	return w.conn, w.rw, nil
}

// memConn is a net.Conn whose writes land in a buffer and whose reads end
// at once.
type memConn struct{ out bytes.Buffer }

func (c *memConn) Read([]byte) (int, error)         { return 0, net.ErrClosed }
func (c *memConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *memConn) Close() error                     { return nil }
func (c *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }
