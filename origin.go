package wsgate

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/wsgate/wsgate/internal/weborigin"
)

// OriginPolicy decides which browser origins may open a WebSocket. Its zero
// value is the safe default: same origin only.
//
// Browsers attach cookies (and cached Basic credentials) to a WebSocket
// handshake whatever page opens it, and WebSockets are not bound by CORS. A
// server that authenticates a socket by cookie and does not check Origin lets
// any web page act as its logged-in visitors: Cross-Site WebSocket Hijacking
// (RFC 6455 section 10.2). SameSite cookies do not close that hole: another
// port on the same host is the same site.
//
// The default allows a request whose Origin is the server's own origin
// (scheme, host and port compared; host case-insensitively; ports 80 and 443
// implied by http and https), and refuses every other origin with 403,
// including "null", malformed values and a repeated Origin header. The
// server's scheme is https when r.TLS is set; the X-Forwarded-Proto and
// X-Forwarded-Host headers count only when TrustForwardedHeaders is set.
// Requests without Origin come from non-browser clients and pass unless
// RequireOrigin is set (a cookie credential still needs an Origin; see
// Cookie). When AllowedOrigins is empty, a request marked
// Sec-Fetch-Site: cross-site is refused as well.
type OriginPolicy struct {
	// AllowedOrigins lists further origins that may connect, as patterns of
	// the form scheme://host[:port]. The host may start with "*." to match
	// any subdomain (not the domain itself), and the port may be "*" to match
	// any port; a pattern without a port matches the scheme's default port.
	// Example: "https://*.example.com", "http://localhost:*".
	AllowedOrigins []string

	// RequireOrigin refuses requests that carry no Origin header, which
	// shuts out most non-browser clients.
	RequireOrigin bool

	// TrustForwardedHeaders takes the server's scheme and host from
	// X-Forwarded-Proto and X-Forwarded-Host when present. Set it only behind
	// a proxy that sets (and never passes through) those headers.
	TrustForwardedHeaders bool

	// InsecureSkipOriginCheck turns the origin check off for every way but
	// cookies: any web page can then open a socket with whatever credential
	// its script holds. Cookie credentials are still checked, because the
	// browser attaches them to every page's request.
	InsecureSkipOriginCheck bool
}

// validate reports the first malformed pattern in AllowedOrigins.
func (p *OriginPolicy) validate() error {
	for _, pat := range p.AllowedOrigins {
		if _, ok := parseOriginPattern(pat); !ok {
			return fmt.Errorf("wsgate: invalid AllowedOrigins pattern %q: want scheme://host[:port], host may start with *., port may be *", pat)
		}
	}
	return nil
}

// Check applies the policy to r, Sec-Fetch-Site included. It returns nil,
// or an *Error matching ErrOrigin with status 403. It allocates nothing.
func (p *OriginPolicy) Check(r *http.Request) error {
	if p.InsecureSkipOriginCheck {
		return nil
	}
	err := p.check(r, r.Header[hOrigin])
	if err == nil {
		err = p.checkFetchSite(r)
	}
	if err != nil {
		return err.clone()
	}
	return nil
}

// check applies the policy to the Origin lines o of r, whether or not
// InsecureSkipOriginCheck is set.
func (p *OriginPolicy) check(r *http.Request, o []string) *Error {
	if len(o) == 0 {
		if p.RequireOrigin {
			return errOriginRequired
		}
		return nil
	}
	if len(o) > 1 {
		return errOrigin
	}
	origin, ok := parseOrigin(o[0])
	if !ok {
		return errOrigin
	}
	if origin.equal(p.serverOrigin(r)) {
		return nil
	}
	if len(p.AllowedOrigins) == 0 {
		return errOrigin
	}
	for _, pat := range p.AllowedOrigins {
		if pp, ok := parseOriginPattern(pat); ok && pp.match(origin) {
			return nil
		}
	}
	return errOrigin
}

// sameOriginFast reports whether origin is, byte for byte up to case, the
// serialization of the server's own origin: the scheme of the connection
// and r.Host as net/http validated it. Such an Origin passes the policy, so
// the full parse can be skipped. It reports false whenever it cannot tell.
func (p *OriginPolicy) sameOriginFast(r *http.Request, origin string) bool {
	if p.TrustForwardedHeaders {
		return false
	}
	scheme := "http://"
	if r.TLS != nil {
		scheme = "https://"
	}
	return len(origin) == len(scheme)+len(r.Host) && r.Host != "" &&
		strings.EqualFold(origin[:len(scheme)], scheme) && strings.EqualFold(origin[len(scheme):], r.Host)
}

// checkFetchSite refuses cross-site requests when no allow-list is set.
func (p *OriginPolicy) checkFetchSite(r *http.Request) *Error {
	if p.InsecureSkipOriginCheck || len(p.AllowedOrigins) > 0 {
		return nil
	}
	for _, v := range r.Header[hFetchSite] {
		if strings.EqualFold(trimOWS(v), "cross-site") {
			return errCrossSite
		}
	}
	return nil
}

// serverOrigin is the origin the request was addressed to.
func (p *OriginPolicy) serverOrigin(r *http.Request) origin {
	scheme, host := "http", r.Host
	if r.TLS != nil {
		scheme = "https"
	}
	if p.TrustForwardedHeaders {
		if v := firstListValue(r.Header[hFwdProto]); v != "" {
			scheme = v
		}
		if v := firstListValue(r.Header[hFwdHost]); v != "" {
			host = v
		}
	}
	o := origin{scheme: scheme}
	var ok bool
	if o.host, o.port, ok = splitHostPort(host); !ok {
		return origin{}
	}
	o.port = normalisePort(o.scheme, o.port)
	return o
}

// firstListValue returns the first element of a comma-separated header.
func firstListValue(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	v := lines[0]
	if i := strings.IndexByte(v, ','); i >= 0 {
		v = v[:i]
	}
	return trimOWS(v)
}

// origin is a parsed serialized origin (RFC 6454): scheme, host, and a port
// with the scheme's default removed.
type origin struct {
	scheme, host, port string
}

func (o origin) equal(s origin) bool {
	return o.host != "" && strings.EqualFold(o.scheme, s.scheme) &&
		strings.EqualFold(o.host, s.host) && o.port == s.port
}

// parseOrigin parses an Origin header value strictly (see weborigin.Parse,
// which package ticket's Origin binding shares).
func parseOrigin(v string) (origin, bool) {
	scheme, host, port, ok := weborigin.Parse(v)
	return origin{scheme: scheme, host: host, port: port}, ok
}

func validScheme(s string) bool { return weborigin.ValidScheme(s) }

func splitHostPort(s string) (host, port string, ok bool) { return weborigin.SplitHostPort(s) }

func normalisePort(scheme, port string) string { return weborigin.NormalisePort(scheme, port) }

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c|0x20 && c|0x20 <= 'f'
}

// originPattern is a parsed AllowedOrigins entry.
type originPattern struct {
	scheme   string
	host     string // without the "*." of a wildcard
	wildcard bool   // host matches subdomains of host
	anyPort  bool
	port     string
}

func parseOriginPattern(p string) (originPattern, bool) {
	i := strings.Index(p, "://")
	if i <= 0 || !validScheme(p[:i]) {
		return originPattern{}, false
	}
	pp := originPattern{scheme: p[:i]}
	rest := p[i+3:]
	if strings.HasPrefix(rest, "*.") {
		pp.wildcard = true
		rest = rest[2:]
	}
	if strings.HasSuffix(rest, ":*") {
		pp.anyPort = true
		rest = rest[:len(rest)-2]
	}
	host, port, ok := splitHostPort(rest)
	if !ok || pp.anyPort && port != "" {
		return originPattern{}, false
	}
	pp.host, pp.port = host, normalisePort(pp.scheme, port)
	return pp, true
}

func (pp originPattern) match(o origin) bool {
	if !strings.EqualFold(pp.scheme, o.scheme) || !pp.anyPort && pp.port != o.port {
		return false
	}
	if !pp.wildcard {
		return strings.EqualFold(pp.host, o.host)
	}
	// "*.example.com" matches "a.example.com" and "a.b.example.com", never
	// "example.com" or "badexample.com".
	n := len(o.host) - len(pp.host)
	return n >= 2 && o.host[n-1] == '.' && strings.EqualFold(o.host[n:], pp.host)
}
