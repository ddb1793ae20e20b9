package wsgate

import (
	"context"
	"fmt"
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

	// VerifyTimeout bounds the Verifier's time per handshake; 0 means
	// DefaultVerifyTimeout. A verifier that overruns it is answered 503.
	VerifyTimeout time.Duration
}

const defaultRealm = "wsgate"

// Gate authenticates WebSocket handshakes and upgrades them. For each
// request it checks, in order: the RFC 6455 handshake (CheckHandshake), the
// origin policy, the Sec-WebSocket-Protocol list, the credential
// (extractors, then the Verifier) and the subprotocol to echo. Any failure is
// answered with an HTTP error (see Error) before the connection is hijacked.
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
	challenges    *challenges
	// echo holds the ready Sec-WebSocket-Protocol response line of every
	// protocol the gate may echo: Protocols and the markers.
	echo map[string]http.Header
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
	g.echo = make(map[string]http.Header)
	for _, p := range g.protocols {
		g.echo[p] = protocolHeader(p)
	}
	for _, e := range g.extractors {
		if e.kind == kindSubprotocol {
			g.echo[e.name] = protocolHeader(e.name)
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
	// Protocol is the subprotocol the 101 echoes, or "" for none.
	Protocol string
}

// Session is an authenticated, upgraded connection, handed to the callback
// of Gate.Handler.
type Session[P any] struct {
	Auth[P]
	// Conn is the WebSocket connection, ready for frames (for example with
	// github.com/gobwas/ws/wsutil). Bytes the client sent right after the
	// handshake are not lost. Deadlines set by net/http are cleared.
	Conn net.Conn
	// Request is the handshake request, without the credential's
	// subprotocol entry or query parameter.
	Request *http.Request
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
	if err := CheckHandshake(r); err != nil {
		return a, err.(*Error)
	}
	originErr := g.origin.check(r)
	if originErr != nil && !g.origin.InsecureSkipOriginCheck {
		return a, originErr.(*Error)
	}
	if err := g.origin.checkFetchSite(r); err != nil {
		return a, err.(*Error)
	}
	var o offered
	if err := o.parse(r.Header[hWSProtocol]); err != nil {
		return a, err.(*Error)
	}

	var cred Credential
	found := 0
	for _, ex := range g.extractors {
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

	vctx := newVerifyContext(r, g.verifyTimeout) // carries r for RequestFrom
	p, err := g.verify(vctx, cred)
	if err != nil {
		e := verifyError(vctx, err, cred.Source)
		vctx.release()
		return a, e
	}
	vctx.release()
	a.Principal, a.Source = p, cred.Source

	lines := r.Header[hWSProtocol]
	var line string
	if len(lines) == 1 {
		line = lines[0]
	}
	if clean, ok := o.withoutSecrets(line); ok {
		if clean == "" {
			delete(r.Header, hWSProtocol)
		} else {
			lines[0] = clean
			r.Header[hWSProtocol] = lines[:1]
		}
	}
	return a, nil
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
	writeError(w, err, g.challenges, g.basic)
}

// Middleware returns a handler that authenticates each handshake and passes
// it on to next with the principal in the request context (read it with
// PrincipalFrom). next performs the upgrade, normally with Upgrade, which
// echoes the subprotocol the gate chose; another WebSocket library can be
// used with NegotiatedProtocol. Refused handshakes never reach next.
func (g *Gate[P]) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, err := g.authenticate(r)
		if err != nil {
			g.WriteError(w, err)
			return
		}
		v := &gateValue{principal: a.Principal, source: a.Source, protocol: a.Protocol}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), gateKey{}, v)))
	})
}

// Handler returns a handler that authenticates each handshake, upgrades it
// and calls serve with the connection and the principal. ctx is the
// request's context. The connection is closed when serve returns. Refused
// handshakes never reach serve.
func (g *Gate[P]) Handler(serve func(ctx context.Context, s Session[P])) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, err := g.authenticate(r)
		if err != nil {
			g.WriteError(w, err)
			return
		}
		conn, uerr := upgrade(w, r, g.echo[a.Protocol])
		if uerr != nil {
			return
		}
		defer conn.Close()
		serve(r.Context(), Session[P]{Auth: a, Conn: conn, Request: r})
	})
}

type gateKey struct{}

// gateValue is what Middleware stores in the request context.
type gateValue struct {
	principal any
	source    Source
	protocol  string
}

func gateValueFrom(ctx context.Context) *gateValue {
	v, _ := ctx.Value(gateKey{}).(*gateValue)
	return v
}

// PrincipalFrom returns the principal Gate.Middleware verified for the
// request whose context is ctx. ok is false when the request did not pass
// through a Gate, or through one whose principal type is not P.
func PrincipalFrom[P any](ctx context.Context) (p P, ok bool) {
	if v := gateValueFrom(ctx); v != nil {
		p, ok = v.principal.(P)
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
