package wsgate

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
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
	// DefaultVerifyTimeout. When the context ends at that deadline, the
	// client is answered 503 (ErrVerifyTimeout).
	VerifyTimeout time.Duration

	// Logger, when set, gets one line per refusal (Info; Error for 5xx and
	// failed upgrades) with status, reason, credential source, remote
	// address and path, and one Debug line per accepted handshake. No
	// header value or credential is ever logged.
	Logger *slog.Logger

	// OnHandshake, when set, is called once per handshake, accepted or
	// refused, for metrics and auditing. It runs on the request's
	// goroutine before the answer is finished, so it must be quick.
	OnHandshake func(HandshakeEvent)

	// Refusal says how refusals are answered: with HTTP errors (RefuseHTTP,
	// the default) or, for the credential, verification and subprotocol
	// refusals a browser page should be able to see, with a close frame
	// after the upgrade (RefuseCloseFrame).
	Refusal RefusalMode

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
	// or with server_max_window_bits below 15. Auth.Compression (and
	// CompressionFrom behind Middleware) says whether it was negotiated;
	// the application must then read and write with the extension, for
	// example with ReadClientMessage and WriteServerMessage. Connections
	// authenticated in band (Config.InBand) and connections refused with a
	// close frame are never compressed.
	Compression bool
}

const defaultRealm = "wsgate"

// Gate authenticates WebSocket handshakes and upgrades them. For each
// request it checks, in order: the RFC 6455 handshake (CheckHandshake), the
// origin policy, the Sec-WebSocket-Protocol list, the credential
// (extractors, then the Verifier) and the subprotocol to echo. Any failure is
// answered with an HTTP error (see Error) before the connection is hijacked,
// or, with Config.Refusal set to RefuseCloseFrame, some of them with a close
// frame after the upgrade.
//
// P is the type of the principal the Verifier returns; it reaches user code
// typed, through PrincipalFrom or Session. A Gate is safe for concurrent use.
type Gate[P any] struct {
	verify        Verifier[P]
	extractors    []Extractor
	protocols     []string
	origin        OriginPolicy
	firstWins     bool
	basic         bool // answer a missing credential with a Basic challenge
	verifyTimeout time.Duration
	refusal       RefusalMode
	inband        *InBandAuth // nil: no in-band authentication
	compression   bool
	challenges    *challenges
	// selectors holds the gobwas/ws Protocol callback of every protocol the
	// gate may echo (Protocols and the markers), made once.
	selectors map[string]func(string) bool

	logger      *slog.Logger
	onHandshake func(HandshakeEvent)
}

// New returns a Gate that verifies credentials with verify. It panics if
// verify is nil, an AllowedOrigins pattern is malformed, or an application
// protocol is not an RFC 7230 token, because those are programming errors.
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
		extractors:    append([]Extractor(nil), cfg.Extractors...),
		protocols:     append([]string(nil), cfg.Protocols...),
		origin:        cfg.Origin,
		firstWins:     cfg.FirstCredentialWins,
		verifyTimeout: cfg.VerifyTimeout,
		logger:        cfg.Logger,
		onHandshake:   cfg.OnHandshake,
		refusal:       cfg.Refusal,
		compression:   cfg.Compression,
	}
	if cfg.InBand != nil {
		g.inband = cfg.InBand.withDefaults()
	}
	g.origin.AllowedOrigins = append([]string(nil), cfg.Origin.AllowedOrigins...)
	if len(g.extractors) == 0 {
		g.extractors = []Extractor{Bearer(), Subprotocol(DefaultMarker)}
	}
	for _, e := range g.extractors {
		g.basic = g.basic || e.challenge
	}
	if g.verifyTimeout <= 0 {
		g.verifyTimeout = DefaultVerifyTimeout
	}
	realm := cfg.Realm
	if realm == "" {
		realm = defaultRealm
	}
	g.challenges = newChallenges(realm)
	g.selectors = make(map[string]func(string) bool)
	for _, p := range g.protocols {
		g.selectors[p] = newSelector(p)
	}
	for _, e := range g.extractors {
		if e.kind == kindSubprotocol {
			g.selectors[e.name] = newSelector(e.name)
		}
	}
	return g
}

// Auth is the outcome of a successful authentication.
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
	// such messages. ReadClientMessage and WriteServerMessage handle both.
	Compression bool
	// Expires is when the credential expires, as the Verifier reported it
	// with SetExpiry, or the zero time. Session.Renew does not change it.
	Expires time.Time

	plain bool   // gobwas/ws reads the request as is (see checkHandshake)
	ext   string // the Sec-WebSocket-Extensions answer, or ""
}

// Session is an authenticated, upgraded connection, handed to the callback
// of Gate.Handler.
type Session[P any] struct {
	Auth[P]
	// Conn is the WebSocket connection, ready for frames (for example with
	// github.com/gobwas/ws/wsutil). Bytes the client sent right after the
	// handshake are not lost. Deadlines set by net/http are cleared. Over
	// HTTP/2 (Request.ProtoMajor == 2) it is the extended CONNECT stream
	// (RFC 8441): see Upgrade for how it differs from a TCP connection.
	Conn net.Conn
	// Request is the handshake request, without the credential's
	// subprotocol entry or query parameter.
	Request *http.Request

	exp *expiry // nil: the credential has no expiry
}

// Authenticate runs every check of the gate on r without writing anything
// or upgrading. On failure it returns an *Error; answer it with
// Gate.WriteError. On success it has removed the credential's subprotocol
// entry and query parameter from r, and Auth.Protocol is what the upgrade
// must echo. It lets a framework put the gate in front of its own upgrade.
func (g *Gate[P]) Authenticate(r *http.Request) (Auth[P], error) {
	a, err := g.authenticate(r)
	if err != nil {
		return a, err
	}
	return a, nil
}

func (g *Gate[P]) authenticate(r *http.Request) (Auth[P], *Error) {
	var a Auth[P]
	var err *Error
	if a.plain, err = checkHandshake(r); err != nil {
		return a, err
	}
	originErr := g.origin.check(r)
	if originErr != nil && !g.origin.InsecureSkipOriginCheck {
		return a, originErr.(*Error)
	}
	if err := g.origin.checkFetchSite(r); err != nil {
		return a, err.(*Error)
	}
	lines := r.Header[hWSProtocol]
	var o offered
	if err := o.parse(lines); err != nil {
		return a, err.(*Error)
	}

	var cred Credential
	found := 0
	for i := range g.extractors {
		ex := &g.extractors[i]
		c, err := ex.extract(r, &o)
		if err == errNoCredential {
			continue
		}
		if err != nil {
			if found > 0 && g.firstWins {
				continue
			}
			return a, err.(*Error)
		}
		found++
		if found == 1 {
			cred = c
			if ex.kind == kindCookie {
				// The cookie is ambient: it needs an allowed Origin,
				// whatever InsecureSkipOriginCheck says.
				if originErr != nil || !ex.allowNoOrigin && len(r.Header[hOrigin]) == 0 {
					return a, errCookieOrigin.withSource(SourceCookie)
				}
			}
		} else if !g.firstWins {
			return a, errAmbiguous
		}
	}
	if found == 0 {
		return a, errNoCredential
	}

	// Choose the echo before verifying, so a request that cannot complete
	// costs no verification (and consumes no single-use credential).
	a.Protocol = o.selectFor(g.protocols)
	if a.Protocol == "" {
		switch cred.Source {
		case SourceSubprotocol:
			a.Protocol = markerOf(&o)
		case SourceSubprotocolPrefix:
			return a, errNoProtocol.withSource(cred.Source)
		}
	}

	p, exp, err := g.verifyCredential(r, cred)
	if err != nil {
		return a, err
	}
	a.Principal, a.Source, a.Expires = p, cred.Source, exp
	if g.compression {
		a.ext = negotiateDeflate(r.Header[hWSExtensions])
		a.Compression = a.ext != ""
	}

	var line string
	if len(lines) == 1 {
		line = lines[0]
	}
	if clean, ok := o.withoutSecrets(line); ok {
		if clean == "" {
			delete(r.Header, hWSProtocol)
		} else {
			lines[0] = clean
			if len(lines) > 1 {
				r.Header[hWSProtocol] = lines[:1]
			}
		}
	}
	return a, nil
}

// verifyCredential runs the Verifier on cred under the verification
// deadline, and returns the principal and the expiry it set.
func (g *Gate[P]) verifyCredential(r *http.Request, cred Credential) (P, time.Time, *Error) {
	vctx := newVerifyContext(r, g.verifyTimeout) // carries r for RequestFrom
	p, err := g.verify(vctx, cred)
	if err != nil {
		e := verifyError(vctx, err, cred.Source)
		vctx.release()
		return p, time.Time{}, e
	}
	vctx.release()
	return p, vctx.expiry, nil
}

// markerOf returns the entry before the marker form's token.
func markerOf(o *offered) string {
	for i := 1; i < o.n; i++ {
		if o.isSecret(i) {
			return o.list[i-1]
		}
	}
	return ""
}

// WriteError answers a refused handshake like the package-level WriteError,
// with this gate's realm and, for a missing credential, its Basic challenge
// when a Basic extractor asks for one.
func (g *Gate[P]) WriteError(w http.ResponseWriter, err error) {
	writeError(w, err, g.challenges, g.basic, false)
}

// Middleware returns a handler that authenticates each handshake and passes
// it on to next with the principal in the request context (read it with
// PrincipalFrom). next performs the upgrade, normally with Upgrade, which
// echoes the subprotocol the gate chose; another WebSocket library can be
// used with NegotiatedProtocol. Refused handshakes never reach next; under
// RefuseCloseFrame the gate upgrades and closes them itself. Config.InBand
// does not apply here, and a credential expiry is only reported (see
// ExpiryFrom), not enforced.
func (g *Gate[P]) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var start time.Time
		if g.observed() {
			start = time.Now()
		}
		a, err := g.authenticate(r)
		if err != nil {
			closeCode := g.refuse(w, r, err)
			if g.observed() {
				g.observe(r, start, err.Status, err.Source, err, closeCode)
			}
			return
		}
		if g.observed() {
			g.observe(r, start, 0, a.Source, nil, 0)
		}
		c := &gateContext[P]{Context: r.Context(), principal: a.Principal, gateValue: gateValue{source: a.Source,
			protocol: a.Protocol, expires: a.Expires, selector: g.selectors[a.Protocol], plain: a.plain, ext: a.ext}}
		next.ServeHTTP(w, r.WithContext(c))
	})
}

// Handler returns a handler that authenticates each handshake, upgrades it
// and calls serve with the connection and the principal. ctx is the
// request's context; when the Verifier set an expiry (see SetExpiry) it is
// also cancelled when the credential expires. The connection is closed when
// serve returns. Refused handshakes never reach serve, and neither do
// connections whose in-band authentication (Config.InBand) fails.
func (g *Gate[P]) Handler(serve func(ctx context.Context, s Session[P])) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var start time.Time
		if g.observed() || g.inband != nil {
			start = time.Now()
		}
		a, err := g.authenticate(r)
		if err != nil {
			if g.inband != nil && err.kind == ErrNoCredential {
				g.serveInBand(w, r, start, serve)
				return
			}
			closeCode := g.refuse(w, r, err)
			if g.observed() {
				g.observe(r, start, err.Status, err.Source, err, closeCode)
			}
			return
		}
		conn, uerr := upgrade(w, r, a.Protocol, g.selectors[a.Protocol], a.plain, a.ext)
		if g.observed() {
			status := switchedStatus(r)
			if e, ok := uerr.(*Error); ok {
				status = e.Status
			}
			g.observe(r, start, status, a.Source, uerr, 0)
		}
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
		serve(r.Context(), s)
		return
	}
	ctx, exp := startExpiry(r.Context(), conn, a.Expires)
	defer exp.stop()
	s.exp = exp
	serve(ctx, s)
}

type gateKey struct{}

// gateContext is the request context Middleware hands on: its parent plus
// what the gate found, in one allocation, with the principal kept typed so
// that PrincipalFrom does not box it.
type gateContext[P any] struct {
	context.Context
	gateValue
	principal P
}

func (c *gateContext[P]) Value(key any) any {
	if key == (gateKey{}) {
		return c
	}
	return c.Context.Value(key)
}

func (c *gateContext[P]) gate() *gateValue { return &c.gateValue }

func (c *gateContext[P]) principalAny() any { return c.principal }

// gateCarrier is a gateContext of any principal type.
type gateCarrier interface {
	gate() *gateValue
	principalAny() any
}

// gateValue is what Middleware found, besides the principal.
type gateValue struct {
	source   Source
	protocol string
	expires  time.Time
	selector func(string) bool
	plain    bool
	ext      string
}

func gateValueFrom(ctx context.Context) *gateValue {
	if c, ok := ctx.Value(gateKey{}).(gateCarrier); ok {
		return c.gate()
	}
	return nil
}

// CompressionFrom reports whether Gate.Middleware negotiated
// permessage-deflate (see Config.Compression) for the request whose context
// is ctx. Upgrade answers it by itself; the handler must then read and write
// with the extension (ReadClientMessage, WriteServerMessage). Another
// WebSocket library's upgrader must be told to accept the same parameters.
func CompressionFrom(ctx context.Context) bool {
	if v := gateValueFrom(ctx); v != nil {
		return v.ext != ""
	}
	return false
}

// PrincipalFrom returns the principal Gate.Middleware verified for the
// request whose context is ctx. ok is false when the request did not pass
// through a Gate, or through one whose principal type is not P.
func PrincipalFrom[P any](ctx context.Context) (p P, ok bool) {
	switch c := ctx.Value(gateKey{}).(type) {
	case *gateContext[P]:
		return c.principal, true
	case gateCarrier:
		p, ok = c.principalAny().(P)
	}
	return p, ok
}

// SourceFrom returns where Gate.Middleware found the credential, or
// SourceNone when the request did not pass through a Gate.
func SourceFrom(ctx context.Context) Source {
	if v := gateValueFrom(ctx); v != nil {
		return v.source
	}
	return SourceNone
}

// NegotiatedProtocol returns the subprotocol Gate.Middleware chose to echo
// for the request whose context is ctx ("" for none). Upgrade uses it by
// itself; pass it to another WebSocket library's upgrader as its only
// supported subprotocol.
func NegotiatedProtocol(ctx context.Context) string {
	if v := gateValueFrom(ctx); v != nil {
		return v.protocol
	}
	return ""
}
