// Package otelwsgate turns a wsgate.Gate's handshake and session reports
// (Config.OnHandshake, Config.OnSession) into OpenTelemetry spans and
// metrics, through the OpenTelemetry trace and metric APIs: the
// application chooses the SDK and the exporters (OTLP, Prometheus, ...).
//
//	inst, err := otelwsgate.New(otelwsgate.Config{Route: "/ws"})
//	if err != nil { ... }
//	gate := wsgate.New(verify, inst.Instrument(wsgate.Config{...}))
//	http.Handle("/ws", inst.Handler(gate.Handler(serve)))
//
// Every handshake the gate answers becomes a server span named for the
// method and the route ("GET /ws"), from the request's arrival at the gate
// to its answer (the 101, the HTTP refusal, or the close frame of a
// refusal), with the attributes of the OpenTelemetry HTTP conventions that
// hold no client secret (http.request.method, http.response.status_code,
// http.route, url.path, url.scheme, network.protocol.version,
// server.address, server.port, network.peer.address, network.peer.port)
// and wsgate's own: wsgate.outcome ("accepted" or "refused"),
// wsgate.credential.source, wsgate.close_code (a refusal answered with a
// close frame) and error.type, the refusal's class (see
// wsgate.HandshakeEvent.Class). The query is never recorded (nor url.full,
// url.query or any header), so no credential, ticket or userinfo can reach
// a span: the gate has already removed its query credentials, and the
// Authorization, Cookie and Sec-WebSocket-Protocol headers are not read.
//
// The metrics follow the OpenTelemetry naming rules (durations in seconds,
// counts as counters, live sessions as an up-down counter), with attributes
// of bounded cardinality only, never the principal, the path or the peer:
//
//	wsgate.handshake.duration  histogram, s          wsgate.outcome, wsgate.credential.source, wsgate.status_class, error.type, http.route
//	wsgate.handshakes          counter, {handshake}  the same
//	wsgate.active_sessions     up-down, {session}    wsgate.credential.source, http.route
//	wsgate.session.duration    histogram, s          wsgate.credential.source, http.route
//	wsgate.closes              counter, {close}      wsgate.close_code, wsgate.close.phase ("handshake" or "session"), http.route
//
// wsgate.closes counts the close frames the gate sent: refusals in
// close-frame mode and failed in-band authentications (phase "handshake"),
// and the closes that ended live sessions, at a credential's expiry (4401)
// or at Gate.Shutdown (1001) (phase "session"). wsgate.status_class is
// "1xx" to "5xx" (an HTTP/2 upgrade is "2xx"). The Prometheus exporter
// names them wsgate_handshake_duration_seconds, wsgate_handshakes_total,
// wsgate_active_sessions, wsgate_session_duration_seconds and
// wsgate_closes_total.
//
// With Config.SessionSpans, each session also gets a span from its opening
// to its end, linked to its handshake's span, with the close code the gate
// sent to end it.
package otelwsgate

import (
	"context"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gobwas/ws"
	"github.com/wsgate/wsgate"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the tracer and the meter.
const ScopeName = "github.com/wsgate/wsgate/otelwsgate"

// Attribute keys of wsgate's own; the others are the OpenTelemetry
// semantic conventions'.
const (
	// OutcomeKey is "accepted" or "refused".
	OutcomeKey = attribute.Key("wsgate.outcome")
	// SourceKey is where the credential was found (wsgate.Source.String:
	// "bearer", "subprotocol", "query", "message", "none", ...).
	SourceKey = attribute.Key("wsgate.credential.source")
	// StatusClassKey is the HTTP status's class, "1xx" to "5xx" (metrics).
	StatusClassKey = attribute.Key("wsgate.status_class")
	// CloseCodeKey is the code of a close frame the gate sent.
	CloseCodeKey = attribute.Key("wsgate.close_code")
	// ClosePhaseKey is "handshake" for a close that refused a handshake,
	// "session" for one that ended a session (metrics).
	ClosePhaseKey = attribute.Key("wsgate.close.phase")
)

// Config configures an Instrumentation. Its zero value uses the global
// providers and propagator (otel.GetTracerProvider, otel.GetMeterProvider,
// otel.GetTextMapPropagator) and records no session spans.
type Config struct {
	// TracerProvider makes the spans; nil means the global one.
	TracerProvider trace.TracerProvider
	// MeterProvider makes the instruments; nil means the global one.
	MeterProvider metric.MeterProvider
	// Propagator reads the caller's trace context in Handler; nil means
	// the global one.
	Propagator propagation.TextMapPropagator
	// Route is the route the gate serves, as a template of low cardinality
	// ("/ws", "/rooms/{id}"): the http.route attribute of spans and metrics,
	// and the span names. Empty leaves http.route out. Use one
	// Instrumentation per route.
	Route string
	// SessionSpans records a span per session, from its opening to its
	// end, linked to the handshake's span. Off by default: a session may
	// last for hours, and many tracing backends show only ended spans.
	SessionSpans bool
}

// Instrumentation records a gate's handshakes and sessions. It is safe
// for concurrent use; one may serve several gates of the same route.
type Instrumentation struct {
	tracer       trace.Tracer
	propagator   propagation.TextMapPropagator
	route        string
	sessionSpans bool

	duration        metric.Float64Histogram
	handshakes      metric.Int64Counter
	active          metric.Int64UpDownCounter
	sessionDuration metric.Float64Histogram
	closes          metric.Int64Counter

	names map[string]string // span names by method

	mu        sync.RWMutex
	attrSets  map[setKey]*measure // bounded by maxSets
	sessionMu sync.Mutex
	pending   map[context.Context]trace.SpanContext // accepted handshakes whose session is not open yet
	open      map[context.Context]trace.Span        // open session spans
}

// maxSets bounds the cache of attribute sets; past it, sets are built per
// measurement. Only a verifier's own classes can make that many.
const maxSets = 1024

// maxPendingSpans bounds the handshake span contexts kept for session spans.
const maxPendingSpans = 1 << 16

// Handshake durations are short: the buckets go from 100 µs to 10 s.
var handshakeBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Sessions last from seconds to days.
var sessionBuckets = []float64{1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600}

// New returns the instrumentation described by cfg, with its instruments
// made. The error is the meter's, if it refused an instrument.
func New(cfg Config) (*Instrumentation, error) {
	tp, mp, prop := cfg.TracerProvider, cfg.MeterProvider, cfg.Propagator
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	if prop == nil {
		prop = otel.GetTextMapPropagator()
	}
	in := &Instrumentation{
		tracer:       tp.Tracer(ScopeName, trace.WithSchemaURL(semconv.SchemaURL)),
		propagator:   prop,
		route:        cfg.Route,
		sessionSpans: cfg.SessionSpans,
		attrSets:     map[setKey]*measure{},
		names:        map[string]string{},
		pending:      map[context.Context]trace.SpanContext{},
		open:         map[context.Context]trace.Span{},
	}
	for _, method := range knownMethods {
		in.names[method] = spanName(method, cfg.Route)
	}
	m := mp.Meter(ScopeName, metric.WithSchemaURL(semconv.SchemaURL))
	var err error
	if in.duration, err = m.Float64Histogram("wsgate.handshake.duration",
		metric.WithUnit("s"),
		metric.WithDescription("Time from a WebSocket handshake's arrival at the gate to its answer."),
		metric.WithExplicitBucketBoundaries(handshakeBuckets...)); err != nil {
		return nil, err
	}
	if in.handshakes, err = m.Int64Counter("wsgate.handshakes",
		metric.WithUnit("{handshake}"),
		metric.WithDescription("WebSocket handshakes the gate answered, accepted or refused.")); err != nil {
		return nil, err
	}
	if in.active, err = m.Int64UpDownCounter("wsgate.active_sessions",
		metric.WithUnit("{session}"),
		metric.WithDescription("Authenticated WebSocket sessions open now.")); err != nil {
		return nil, err
	}
	if in.sessionDuration, err = m.Float64Histogram("wsgate.session.duration",
		metric.WithUnit("s"),
		metric.WithDescription("How long authenticated WebSocket sessions lived."),
		metric.WithExplicitBucketBoundaries(sessionBuckets...)); err != nil {
		return nil, err
	}
	if in.closes, err = m.Int64Counter("wsgate.closes",
		metric.WithUnit("{close}"),
		metric.WithDescription("Close frames the gate sent: refusals after the upgrade, failed in-band authentications, expiries and shutdowns.")); err != nil {
		return nil, err
	}
	return in, nil
}

// Instrument returns cfg with OnHandshake and OnSession reporting to in;
// hooks cfg already has still run, before in's.
func (in *Instrumentation) Instrument(cfg wsgate.Config) wsgate.Config {
	if prev := cfg.OnHandshake; prev != nil {
		cfg.OnHandshake = func(ev wsgate.HandshakeEvent) { prev(ev); in.OnHandshake(ev) }
	} else {
		cfg.OnHandshake = in.OnHandshake
	}
	if prev := cfg.OnSession; prev != nil {
		cfg.OnSession = func(ev wsgate.SessionEvent) { prev(ev); in.OnSession(ev) }
	} else {
		cfg.OnSession = in.OnSession
	}
	return cfg
}

// Handler returns next with the caller's trace context (a traceparent
// header, say, as the propagator reads it) in the request's context, so
// that the handshake's span continues the caller's trace. It does not wrap
// the ResponseWriter, so the gate can still hijack the connection.
func (in *Instrumentation) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := in.propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		if ctx != r.Context() {
			r = r.WithContext(ctx)
		}
		next.ServeHTTP(w, r)
	})
}

// OnHandshake records ev: its span and its metric points. It is the
// gate's Config.OnHandshake (see Instrument).
func (in *Instrumentation) OnHandshake(ev wsgate.HandshakeEvent) {
	ctx := ev.Context
	if ctx == nil {
		ctx = context.Background()
	}
	start := time.Now().Add(-ev.Duration)
	name, ok := in.names[ev.Method]
	if !ok {
		name = in.names["_OTHER"]
	}
	_, span := in.tracer.Start(ctx, name, serverKind, trace.WithTimestamp(start))
	if span.IsRecording() {
		// Without an SDK (or when not sampled) the attributes are not
		// even built.
		span.SetAttributes(in.spanAttributes(ev)...)
	}
	if ev.Status >= 500 || ev.Status == 0 && !ev.Accepted {
		// A 5xx is the server's fault; a 4xx is the client's, not an
		// error of this span (as the HTTP conventions say for servers).
		span.SetStatus(codes.Error, ev.Class)
	}
	if ev.Accepted && in.sessionSpans && span.SpanContext().IsValid() && keyable(ev.Context) {
		in.sessionMu.Lock()
		if len(in.pending) < maxPendingSpans {
			in.pending[ev.Context] = span.SpanContext()
		}
		in.sessionMu.Unlock()
	}
	span.End()

	set := in.handshakeSet(ev)
	in.duration.Record(ctx, ev.Duration.Seconds(), set.rec...)
	in.handshakes.Add(ctx, 1, set.add...)
	if ev.CloseCode != 0 {
		in.closes.Add(ctx, 1, in.closeSet(ev.CloseCode, "handshake").add...)
	}
}

// OnSession records a session's opening or end: the live-session count,
// the session's duration, the close the gate sent and, with
// Config.SessionSpans, the session's span. It is the gate's
// Config.OnSession (see Instrument).
func (in *Instrumentation) OnSession(ev wsgate.SessionEvent) {
	ctx := ev.Context
	if ctx == nil {
		ctx = context.Background()
	}
	set := in.sessionSet(ev.Source)
	if !ev.Ended {
		in.active.Add(ctx, 1, set.add...)
		if in.sessionSpans {
			in.startSession(ctx, ev)
		}
		return
	}
	in.active.Add(ctx, -1, set.add...)
	in.sessionDuration.Record(ctx, ev.Duration.Seconds(), set.rec...)
	if ev.CloseCode != 0 {
		in.closes.Add(ctx, 1, in.closeSet(ev.CloseCode, "session").add...)
	}
	if in.sessionSpans {
		in.endSession(ev)
	}
}

func (in *Instrumentation) startSession(ctx context.Context, ev wsgate.SessionEvent) {
	if !keyable(ev.Context) {
		return
	}
	in.sessionMu.Lock()
	hs, ok := in.pending[ev.Context]
	delete(in.pending, ev.Context)
	in.sessionMu.Unlock()
	opts := []trace.SpanStartOption{
		serverKind,
		trace.WithAttributes(in.sessionAttributes(ev.Source)...),
	}
	if ok {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: hs}))
	}
	name := "WebSocket session"
	if in.route != "" {
		name += " " + in.route
	}
	_, span := in.tracer.Start(ctx, name, opts...)
	in.sessionMu.Lock()
	in.open[ev.Context] = span
	in.sessionMu.Unlock()
}

func (in *Instrumentation) endSession(ev wsgate.SessionEvent) {
	if !keyable(ev.Context) {
		return
	}
	in.sessionMu.Lock()
	span, ok := in.open[ev.Context]
	delete(in.open, ev.Context)
	in.sessionMu.Unlock()
	if !ok {
		return
	}
	if ev.CloseCode != 0 {
		span.SetAttributes(CloseCodeKey.Int(int(ev.CloseCode)))
	}
	span.End()
}

// keyable reports whether ctx can key a map.
func keyable(ctx context.Context) bool {
	return ctx != nil && reflect.TypeOf(ctx).Comparable()
}

var serverKind = trace.WithSpanKind(trace.SpanKindServer)

// spanName is the name of a handshake's span, as the HTTP conventions
// name server spans: the method and the route.
func spanName(method, route string) string {
	if method == "_OTHER" {
		method = "HTTP"
	}
	if route == "" {
		return method
	}
	return method + " " + route
}

// spanAttributes are the handshake span's attributes: request facts the
// gate reports, none of which can hold a credential.
func (in *Instrumentation) spanAttributes(ev wsgate.HandshakeEvent) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 16)
	method := knownMethod(ev.Method)
	attrs = append(attrs, semconv.HTTPRequestMethodKey.String(method))
	if method == "_OTHER" {
		attrs = append(attrs, semconv.HTTPRequestMethodOriginalKey.String(ev.Method))
	}
	if ev.Status != 0 {
		attrs = append(attrs, semconv.HTTPResponseStatusCodeKey.Int(ev.Status))
	}
	if in.route != "" {
		attrs = append(attrs, semconv.HTTPRouteKey.String(in.route))
	}
	scheme := "http"
	if ev.TLS {
		scheme = "https"
	}
	attrs = append(attrs,
		semconv.URLPathKey.String(ev.Path),
		semconv.URLSchemeKey.String(scheme),
		semconv.NetworkProtocolNameKey.String("http"),
	)
	if v, ok := strings.CutPrefix(ev.Proto, "HTTP/"); ok {
		if v == "2.0" {
			v = "2"
		}
		attrs = append(attrs, semconv.NetworkProtocolVersionKey.String(v))
	}
	if host, port := splitHostPort(ev.Host); host != "" {
		attrs = append(attrs, semconv.ServerAddressKey.String(host))
		if port > 0 {
			attrs = append(attrs, semconv.ServerPortKey.Int(port))
		}
	}
	if host, port := splitHostPort(ev.RemoteAddr); host != "" {
		attrs = append(attrs, semconv.NetworkPeerAddressKey.String(host))
		if port > 0 {
			attrs = append(attrs, semconv.NetworkPeerPortKey.Int(port))
		}
	}
	attrs = append(attrs, OutcomeKey.String(outcome(ev.Accepted)), SourceKey.String(ev.Source.String()))
	if ev.CloseCode != 0 {
		attrs = append(attrs, CloseCodeKey.Int(int(ev.CloseCode)))
	}
	if ev.Class != "" {
		attrs = append(attrs, semconv.ErrorTypeKey.String(ev.Class))
	}
	return attrs
}

func (in *Instrumentation) sessionAttributes(src wsgate.Source) []attribute.KeyValue {
	attrs := []attribute.KeyValue{SourceKey.String(src.String())}
	if in.route != "" {
		attrs = append(attrs, semconv.HTTPRouteKey.String(in.route))
	}
	return attrs
}

// splitHostPort splits "host:port", "[v6]:port" or a bare host; port is 0
// when absent or not a number.
func splitHostPort(hostport string) (string, int) {
	i := strings.LastIndexByte(hostport, ':')
	if i < 0 || strings.IndexByte(hostport[i:], ']') >= 0 {
		return strings.Trim(hostport, "[]"), 0
	}
	port, err := strconv.Atoi(hostport[i+1:])
	if err != nil || port < 0 || port > 65535 {
		return strings.Trim(hostport, "[]"), 0
	}
	host := hostport[:i]
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	return host, port
}

// knownMethods are the methods the HTTP conventions list, and "_OTHER".
var knownMethods = []string{
	http.MethodGet, http.MethodConnect, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodPatch, http.MethodDelete, http.MethodOptions, http.MethodTrace, "QUERY", "_OTHER",
}

// knownMethod returns method, or "_OTHER" for one the HTTP conventions do
// not list, so that a client cannot add values of its own.
func knownMethod(method string) string {
	for _, m := range knownMethods {
		if method == m {
			return m
		}
	}
	return "_OTHER"
}

func outcome(accepted bool) string {
	if accepted {
		return "accepted"
	}
	return "refused"
}

// setKey names one attribute set of the metrics.
type setKey struct {
	kind     uint8 // 0 handshake, 1 session, 2 close
	accepted bool
	source   wsgate.Source
	status   uint8 // status class, 1 to 5; 0 for none
	class    string
	code     ws.StatusCode
	phase    string
}

const (
	handshakeSet = iota
	sessionSet
	closeSet
)

// measure holds the options of one attribute set, made once, so that a
// measurement costs no allocation.
type measure struct {
	add []metric.AddOption
	rec []metric.RecordOption
}

func (in *Instrumentation) handshakeSet(ev wsgate.HandshakeEvent) *measure {
	status := uint8(0)
	if ev.Status >= 100 && ev.Status < 600 {
		status = uint8(ev.Status / 100)
	}
	return in.set(setKey{kind: handshakeSet, accepted: ev.Accepted, source: ev.Source, status: status, class: ev.Class})
}

func (in *Instrumentation) sessionSet(src wsgate.Source) *measure {
	return in.set(setKey{kind: sessionSet, source: src})
}

func (in *Instrumentation) closeSet(code ws.StatusCode, phase string) *measure {
	return in.set(setKey{kind: closeSet, code: code, phase: phase})
}

// set returns the measurement options of k's attributes, made once.
func (in *Instrumentation) set(k setKey) *measure {
	in.mu.RLock()
	o, ok := in.attrSets[k]
	in.mu.RUnlock()
	if ok {
		return o
	}
	opt := metric.WithAttributeSet(in.attributes(k))
	o = &measure{add: []metric.AddOption{opt}, rec: []metric.RecordOption{opt}}
	in.mu.Lock()
	if len(in.attrSets) < maxSets {
		in.attrSets[k] = o
	}
	in.mu.Unlock()
	return o
}

func (in *Instrumentation) attributes(k setKey) attribute.Set {
	var attrs []attribute.KeyValue
	switch k.kind {
	case handshakeSet:
		attrs = append(attrs, OutcomeKey.String(outcome(k.accepted)), SourceKey.String(k.source.String()))
		if k.status != 0 {
			attrs = append(attrs, StatusClassKey.String(strconv.Itoa(int(k.status))+"xx"))
		}
		if k.class != "" {
			attrs = append(attrs, semconv.ErrorTypeKey.String(k.class))
		}
	case sessionSet:
		attrs = append(attrs, SourceKey.String(k.source.String()))
	case closeSet:
		attrs = append(attrs, CloseCodeKey.Int(int(k.code)), ClosePhaseKey.String(k.phase))
	}
	if in.route != "" {
		attrs = append(attrs, semconv.HTTPRouteKey.String(in.route))
	}
	return attribute.NewSet(attrs...)
}
