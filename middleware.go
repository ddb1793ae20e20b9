package wsgate

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/wsgate/wsgate/fleet"
)

// Config configures a Gate. Its zero value is safe: same-origin policy,
// Authorization: Bearer and the subprotocol marker form (DefaultMarker),
// strict composition, a 10-second verification deadline.
type Config struct {
	// Extractors are the places a credential may come from, tried in order.
	// Empty means Bearer() and Subprotocol(DefaultMarker): the two ways that
	// neither travel in URLs nor ride along ambiently like cookies.
	Extractors []Extractor

	// Protocols are the application subprotocols the server speaks, in its
	// order of preference. The 101 echoes the first one the client offered;
	// with the marker form and no match it echoes the marker; otherwise it
	// echoes nothing. A credential entry is never echoed.
	Protocols []string

	// Origin is the origin policy; see OriginPolicy.
	Origin OriginPolicy

	// FirstCredentialWins makes the first extractor (in order) that finds a
	// credential win. By default a request that carries credentials in more
	// than one place is refused with 400, error="invalid_request" (RFC 6750
	// section 3.1), because a proxy or a page may have added one the user
	// did not mean. Every extractor still runs, so a Query parameter is
	// always removed from the request.
	FirstCredentialWins bool

	// Realm is the realm of WWW-Authenticate challenges; empty means "wsgate".
	Realm string

	// VerifyTimeout bounds the Verifier's time per handshake, counted from
	// its first look at its context (Deadline, Done or Err); 0 means
	// defaultVerifyTimeout. When the context ends at that deadline, the
	// client is answered 503 (ErrVerifyTimeout).
	VerifyTimeout time.Duration

	// Logger, when set, gets one line per refusal (Info; Error for 5xx and
	// failed upgrades) with status, reason, class (see
	// HandshakeEvent.Class), credential source, remote address and path,
	// and one Debug line per accepted handshake. No header value or
	// credential is ever logged.
	Logger *slog.Logger

	// OnHandshake, when set, is called once per handshake, accepted or
	// refused, for metrics and auditing. It runs on the request's
	// goroutine before the answer is finished, so it must be quick.
	OnHandshake func(HandshakeEvent)

	// OnSession, when set, is called when a session opens, right after
	// its handshake's OnHandshake, and when it ends, with the close code
	// the gate sent it (see SessionEvent), for live-session gauges and
	// traces. It runs on the goroutine that opens or ends the session
	// (the request's, or the one that closes the connection), so it must
	// be quick. Package github.com/wsgate/wsgate/otelwsgate turns both
	// hooks into OpenTelemetry spans and metrics.
	OnSession func(SessionEvent)

	// RefuseWithCloseFrame answers the credential, verification and
	// subprotocol refusals (those with an Error.CloseCode) by completing the
	// upgrade and then sending a close frame, whose code and reason a
	// browser page can read (CloseEvent.code and .reason); with HTTP
	// errors, the default, a page sees only close 1006. A request that
	// fails CheckHandshake or the origin policy (including an ambient
	// credential without an allowed Origin) is still answered with an HTTP
	// error, as is a failure to upgrade: those are not safe or not possible
	// to upgrade. The refused connection runs no application code and no
	// frame the client sends is interpreted.
	RefuseWithCloseFrame bool

	// InBand, when set, makes Gate.Handler accept a handshake without a
	// credential and authenticate its first message instead; see
	// InBandAuth. nil means no in-band authentication.
	InBand *InBandAuth

	// Compression, when set, accepts the permessage-deflate extension (RFC
	// 7692) when the client offers it, over HTTP/1.1 and HTTP/2 alike. The
	// gate always answers with server_no_context_takeover and
	// client_no_context_takeover, so each message is compressed on its
	// own; it declines (sends no extension header, and the handshake goes on
	// uncompressed) an offer with an unknown, invalid or repeated parameter
	// or with server_max_window_bits below 15. Auth.Compression (AuthFrom
	// behind Middleware) says whether it was negotiated;
	// the application must then read and write with the extension, for
	// example with package message (Read and Write). Connections
	// authenticated in band (Config.InBand) and connections refused with a
	// close frame are never compressed.
	Compression bool

	// MaxHandshakeBytes bounds the request line and headers of a handshake
	// that Gate.UpgradeConn or Gate.Serve reads (default 16 KiB); a longer
	// one is refused with 431. The net/http entry points rely on
	// http.Server's MaxHeaderBytes instead.
	MaxHandshakeBytes int
	// HandshakeTimeout bounds the whole handshake on Gate.UpgradeConn and
	// Gate.Serve, from the first byte read to the answer written (default
	// 10 s): a client that is slower is disconnected without an answer. The
	// net/http entry points rely on http.Server's ReadHeaderTimeout instead.
	HandshakeTimeout time.Duration

	// Registry, when set, holds every live session the gate serves (see
	// package fleet): each gets an id (Session.ID) and a principal key
	// (Session.Key), can be closed with Revoke or RevokeSession of the
	// registry (close fleet.CloseRevoked, 4410 "session revoked"), and
	// counts toward the registry's cap of sessions per key, checked after
	// the verifier and before the gate answers: a handshake over the cap
	// is refused with 429 (close-frame mode: fleet.CloseTooManySessions,
	// 4409 "too many sessions"), an *Error matching fleet.ErrTooManySessions.
	// Applies to every entry point that upgrades (Handler, Upgrade behind
	// Middleware, Accept, and in-band authentication).
	Registry fleet.Registry

	// PrincipalKey turns the Verifier's principal (of the gate's type P)
	// into the key Registry counts and revokes sessions by, and that
	// Session.Refresh requires a fresh credential to keep. nil means the
	// principal itself when P is a string, its String() when P is a
	// fmt.Stringer, and otherwise no key: sessions are then registered
	// under "", which no cap counts and no Revoke(key) reaches, and
	// Session.Refresh fails. Keep it short and free of secrets: a Redis
	// registry uses it in key names.
	PrincipalKey func(principal any) string

	// Limiter, when set, limits failed handshakes per client address (see
	// fleet.Limiter): before the Verifier runs, an address that sent too
	// many credentials the Verifier refused as invalid (ErrInvalidToken)
	// is refused with 429 and Retry-After (close-frame mode and in band:
	// fleet.CloseRateLimited, 4429 "too many failed attempts"), an *Error
	// matching fleet.ErrRateLimited, and the Verifier is not called.
	Limiter fleet.Limiter

	// TrustedProxies are the networks of reverse proxies whose
	// X-Forwarded-For tells the client's address to the Limiter, by the
	// rule of ticket.Service.TrustedProxies. Empty means the peer's own
	// address (r.RemoteAddr) counts, whatever X-Forwarded-For says.
	TrustedProxies []netip.Prefix
}

const defaultRealm = "wsgate"

// Gate authenticates WebSocket handshakes and upgrades them. For each
// request it checks, in order: the RFC 6455 handshake (CheckHandshake), the
// origin policy, the Sec-WebSocket-Protocol list, the credential
// (extractors, then the Verifier) and the subprotocol to echo. Any failure is
// answered with an HTTP error (see Error) before the connection is hijacked,
// or, with Config.RefuseWithCloseFrame, some of them with a close frame
// after the upgrade.
//
// Every entry point runs that same pipeline and answers alike: Handler,
// Middleware with Upgrade, Authenticate with Accept or Refuse for
// frameworks, and UpgradeConn and Serve for servers that read handshakes
// from a net.Conn without net/http.
//
// P is the type of the principal the Verifier returns; it reaches user code
// typed, through Session or AuthFrom. A Gate is safe for concurrent use. The
// zero Gate refuses every handshake with 500 (ErrVerifier): make one with
// New.
type Gate[P any] struct {
	verify        Verifier[P]
	extractors    []slot
	queries       int // Query extractors among them
	protocols     []string
	origin        OriginPolicy
	firstWins     bool
	basic         bool // answer a missing credential with a Basic challenge
	verifyTimeout time.Duration
	closeFrames   bool
	inband        *InBandAuth // nil: no in-band authentication
	live          liveSessions
	compression   bool
	challenges    *challenges

	logger      *slog.Logger
	onHandshake func(HandshakeEvent)

	// The raw path (raw.go).
	rawFree          rawFree[P]
	maxHandshake     int
	handshakeTimeout time.Duration
	registry         fleet.Registry
	limiter          fleet.Limiter
	trusted          []netip.Prefix
	keyOf            func(P) string // nil: no principal key
}

// New returns a Gate that verifies credentials with verify. It panics if
// verify is nil, an extractor is nil, an AllowedOrigins pattern is
// malformed, or an application protocol is not an RFC 7230 token, because
// those are programming errors.
func New[P any](verify Verifier[P], cfg Config) *Gate[P] {
	if verify == nil {
		panic("wsgate: New with a nil Verifier")
	}
	if err := cfg.Origin.validate(); err != nil {
		panic(err)
	}
	for _, p := range cfg.Protocols {
		if !isToken(p) {
			panic(fmt.Sprintf("wsgate: Config.Protocols entry %q is not an RFC 7230 token", p))
		}
	}
	g := &Gate[P]{
		verify:        verify,
		protocols:     append([]string(nil), cfg.Protocols...),
		origin:        cfg.Origin,
		firstWins:     cfg.FirstCredentialWins,
		verifyTimeout: cfg.VerifyTimeout,
		logger:        cfg.Logger,
		onHandshake:   cfg.OnHandshake,
		closeFrames:   cfg.RefuseWithCloseFrame,
		compression:   cfg.Compression,

		maxHandshake:     cfg.MaxHandshakeBytes,
		handshakeTimeout: cfg.HandshakeTimeout,

		registry: cfg.Registry,
		limiter:  cfg.Limiter,
		trusted:  append([]netip.Prefix(nil), cfg.TrustedProxies...),
		keyOf:    principalKeyFunc[P](&cfg),
	}
	if cfg.InBand != nil {
		g.inband = cfg.InBand.withDefaults()
	}
	g.live.onSession = cfg.OnSession
	g.origin.AllowedOrigins = append([]string(nil), cfg.Origin.AllowedOrigins...)
	extractors := cfg.Extractors
	if len(extractors) == 0 {
		extractors = []Extractor{Bearer(), Subprotocol(DefaultMarker)}
	}
	for _, e := range extractors {
		switch ex := e.(type) {
		case nil:
			panic("wsgate: Config.Extractors holds a nil Extractor")
		case *extractor:
			g.extractors = append(g.extractors, slot{builtin: ex})
			g.basic = g.basic || ex.challenge
			if ex.kind == kindQuery {
				g.queries++
			}
		default:
			g.extractors = append(g.extractors, slot{custom: e})
		}
	}
	if g.verifyTimeout <= 0 {
		g.verifyTimeout = defaultVerifyTimeout
	}
	realm := cfg.Realm
	if realm == "" {
		realm = defaultRealm
	}
	g.challenges = newChallenges(realm)
	return g
}

// Auth is the outcome of a successful authentication: what the gate found
// and what the upgrade will answer. Gate.Accept answers with what the
// pipeline decided, not with these fields: changing them changes nothing
// but the copy.
type Auth[P any] struct {
	// Principal is what the Verifier returned.
	Principal P
	// Source is where the credential was found.
	Source Source
	// Protocol is the subprotocol the 101 (over HTTP/2, the 200) echoes, or
	// "" for none.
	Protocol string
	// Compression reports whether permessage-deflate was negotiated (see
	// Config.Compression): the client may then send messages with the RSV1
	// bit, compressed without context takeover, and the server may send
	// such messages. message.Read and message.Write handle both.
	Compression bool
	// Expires is when the credential expires, as the Verifier reported it
	// with SetExpiry, or the zero time. Session.Refresh does not change it.
	Expires time.Time

	gate  *Gate[P]      // the gate that decided, nil for none
	req   *http.Request // the request it decided on
	hs    *handshake    // the handshake's state: its live-session node
	key   string        // the request's Sec-WebSocket-Key ("" over HTTP/2)
	ext   string        // the Sec-WebSocket-Extensions answer, or ""
	start time.Time     // when the gate first saw the request, if observed
}

// Session is an authenticated, upgraded connection, handed to the callback
// of Gate.Handler and returned by Gate.Accept.
type Session[P any] struct {
	Auth[P]
	// Conn is the WebSocket connection, ready for frames (for example with
	// github.com/gobwas/ws/wsutil). Bytes the client sent right after the
	// handshake are not lost. Deadlines set by net/http are cleared. Over
	// HTTP/2 (Request.ProtoMajor == 2) it is the extended CONNECT stream
	// (RFC 8441): see Upgrade for how it differs from a TCP connection.
	// Once the gate has sent a close frame of its own (at the expiry,
	// Gate.Shutdown or a revocation), writes to Conn fail with
	// net.ErrClosed: no frame may follow it (RFC 6455 section 5.5.1).
	Conn net.Conn
	// Request is the handshake request, without the credential's
	// subprotocol entry or query parameter. On the raw path
	// (Gate.UpgradeConn, Gate.Serve) it is what the gate kept of it without
	// the headers: Method, Proto, Host, RemoteAddr, TLS and URL (path, and
	// query without the Query extractors' parameters); RequestFrom, given
	// Serve's context, has the headers it kept too.
	Request *http.Request
	// ID is the session's id in Config.Registry (for the registry's
	// RevokeSession), or "" without a registry.
	ID string
	// Key is the session's principal key in Config.Registry (see
	// Config.PrincipalKey), or "" without a registry or a key.
	Key string

	exp   *expiry       // nil: the credential has no expiry
	live  *liveSession  // its place among the gate's live sessions
	facts *requestFacts // on the raw path, what the session keeps of the request
}

// Authenticate runs every check of the gate on r without writing anything
// or upgrading, for frameworks that answer the handshake themselves. On
// failure it returns an *Error (the caller's own copy): answer it with
// Gate.Refuse. On success it has removed the credential's subprotocol entry
// and query parameter from r; answer it with Gate.Accept:
//
//	a, err := gate.Authenticate(r)
//	if err != nil {
//		gate.Refuse(w, r, err)
//		return
//	}
//	s, err := gate.Accept(w, r, a)
//	if err != nil {
//		return // answered
//	}
//	defer s.Conn.Close()
//
// Config.InBand does not apply here: a handshake without a credential is
// refused.
func (g *Gate[P]) Authenticate(r *http.Request) (Auth[P], error) {
	a, err := g.authenticate(r, nil)
	if err != nil {
		e := err.clone()
		if g.observed() {
			e.start = a.start
		}
		return Auth[P]{}, e
	}
	return a, nil
}

// Accept upgrades r, which Authenticate accepted with a, and returns the
// session: the 101 (over HTTP/2, the 200) echoes the subprotocol and
// negotiates the extension the gate chose, and the credential's expiry is
// enforced as in Gate.Handler, except that no context is cancelled: the
// connection is closed (with close 4401 "credential expired"). Closing
// s.Conn ends the session. An a that Authenticate did not return for this
// very request and gate is refused with 500 (ErrUpgradeFailed), so that no
// framework can upgrade an unauthenticated request by mistake. On failure
// the client has been answered if it still could be.
func (g *Gate[P]) Accept(w http.ResponseWriter, r *http.Request, a Auth[P]) (Session[P], error) {
	if a.gate != g || a.req != r || g == nil {
		writeError(w, errNotAuthorized, defaultChallenge, false, r.ProtoMajor == 2)
		return Session[P]{}, errNotAuthorized.clone()
	}
	conn, err := g.acceptConn(w, r, &a)
	if err != nil {
		return Session[P]{}, err.clone()
	}
	s := Session[P]{Auth: a, Conn: conn, Request: r}
	if ls, ok := conn.(*liveSession); ok {
		s.exp, s.live, s.ID, s.Key = ls.exp, ls, ls.fl.id, ls.fl.key
	}
	return s, nil
}

// acceptConn is accept for the entry points that hand the connection to
// the application: it enforces the expiry through the connection.
func (g *Gate[P]) acceptConn(w http.ResponseWriter, r *http.Request, a *Auth[P]) (net.Conn, *Error) {
	conn, err := g.accept(w, r, a)
	if err != nil {
		return nil, err
	}
	var exp *expiry
	if !a.Expires.IsZero() {
		_, exp = startExpiry(context.Background(), conn, a.Expires)
	}
	s := g.live.add(&a.hs.live, conn, exp)
	g.sessionOpened(s, r, a.Source)
	return s, nil
}

// Refuse answers err, a refusal from Authenticate, as the gate does: with
// an HTTP error (the gate's realm and challenges), or, under
// Config.RefuseWithCloseFrame and for a valid handshake whose refusal has a
// close code, by upgrading r and sending the close frame. Any other error is
// answered as WriteError does. It reports the handshake to Config.Logger
// and Config.OnHandshake.
func (g *Gate[P]) Refuse(w http.ResponseWriter, r *http.Request, err error) {
	e := asError(err)
	g.refuse(w, r, e, e.start)
}

// Middleware returns a handler that authenticates each handshake and passes
// it on to next with the outcome in the request context (read it with
// AuthFrom). next performs the upgrade with Upgrade, which answers with the
// gate's echo and extension and enforces the credential's expiry; another
// WebSocket library can be used with Auth.Protocol and Auth.Compression,
// but then the expiry is the handler's to enforce. Refused handshakes never
// reach next; under RefuseWithCloseFrame the gate upgrades and closes them
// itself. Config.InBand does not apply here.
func (g *Gate[P]) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, err := g.authenticate(r, nil)
		if err != nil {
			g.refuse(w, r, err, a.start)
			return
		}
		c := &gateContext[P]{Context: r.Context(), auth: a}
		next.ServeHTTP(w, r.WithContext(c))
	})
}

// Handler returns a handler that authenticates each handshake, upgrades it
// and calls serve with the session. ctx is the request's context; when the
// Verifier set an expiry (see SetExpiry) it is also cancelled when the
// credential expires. The connection is closed when serve returns. Refused
// handshakes never reach serve, and neither do connections whose in-band
// authentication (Config.InBand) fails.
func (g *Gate[P]) Handler(serve func(ctx context.Context, s Session[P])) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, err := g.authenticate(r, nil)
		if err != nil {
			if g.inband != nil && err.kind == ErrNoCredential {
				start := a.start
				if start.IsZero() {
					start = time.Now()
				}
				g.serveInBand(w, r, start, serve)
				return
			}
			g.refuse(w, r, err, a.start)
			return
		}
		conn, uerr := g.accept(w, r, &a)
		if uerr != nil {
			return
		}
		defer conn.Close()
		g.serveSession(r, conn, a, serve)
	})
}

// serveSession runs serve on an authenticated connection, enforcing the
// credential's expiry if it has one. The caller closes conn.
func (g *Gate[P]) serveSession(r *http.Request, conn net.Conn, a Auth[P], serve func(context.Context, Session[P])) {
	s := Session[P]{Auth: a, Conn: conn, Request: r}
	if a.Expires.IsZero() {
		s.live = g.live.add(&a.hs.live, conn, nil)
		s.Conn = s.live // drops the application's writes after the gate's close frame
		g.sessionOpened(s.live, r, a.Source)
		s.ID, s.Key = s.live.fl.id, s.live.fl.key
		defer g.live.remove(s.live)
		serve(r.Context(), s)
		return
	}
	ctx, exp := startExpiry(r.Context(), conn, a.Expires)
	s.exp = exp
	s.live = g.live.add(&a.hs.live, conn, exp)
	s.Conn = s.live
	g.sessionOpened(s.live, r, a.Source)
	s.ID, s.Key = s.live.fl.id, s.live.fl.key
	defer g.live.remove(s.live)
	defer exp.stop()
	serve(ctx, s)
}

type gateKey struct{}

// gateContext is the request context Middleware hands on: its parent plus
// what the gate decided, in one allocation, with the principal kept typed.
// It is also the accept step Upgrade runs.
type gateContext[P any] struct {
	context.Context
	auth Auth[P]
}

func (c *gateContext[P]) Value(key any) any {
	if key == (gateKey{}) {
		return c
	}
	return c.Context.Value(key)
}

func (c *gateContext[P]) upgrade(w http.ResponseWriter, r *http.Request) (net.Conn, *Error) {
	return c.auth.gate.acceptConn(w, r, &c.auth)
}

// AuthFrom returns what Gate.Middleware decided for the request whose
// context is ctx: the principal, the source, the subprotocol and extension
// Upgrade will answer with, and the credential's expiry. ok is false when
// the request did not pass through a Gate, or through one whose principal
// type is not P.
func AuthFrom[P any](ctx context.Context) (a Auth[P], ok bool) {
	c, ok := ctx.Value(gateKey{}).(*gateContext[P])
	if !ok {
		return a, false
	}
	return c.auth, true
}
