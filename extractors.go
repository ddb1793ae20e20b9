package wsgate

import (
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"unsafe"
)

// Source says where a credential was found.
type Source uint8

// The places a credential can come from.
const (
	SourceNone              Source = iota
	SourceSubprotocol              // Sec-WebSocket-Protocol, marker form
	SourceSubprotocolPrefix        // Sec-WebSocket-Protocol, prefix form
	SourceBasic                    // Authorization: Basic
	SourceBearer                   // Authorization: Bearer
	SourceCookie                   // Cookie
	SourceQuery                    // query parameter
	SourceMessage                  // in-band: the first WebSocket message (see InBandAuth)
)

var sourceNames = [...]string{"none", "subprotocol", "subprotocol-prefix", "basic", "bearer", "cookie", "query", "message"}

// String returns a short lower-case name: "subprotocol", "basic", "cookie"...
func (s Source) String() string {
	if int(s) < len(sourceNames) {
		return sourceNames[s]
	}
	return "unknown"
}

// Credential is what an extractor found. Token is the bearer credential;
// for Authorization: Basic with a non-empty password, Token is empty and
// Username and Password are set instead.
//
// Credential formats itself (with %v, %s, %+v, %#v, and as a slog value)
// without its secrets, so logging one by mistake leaks nothing.
type Credential struct {
	Source   Source
	Token    string
	Username string
	Password string
}

// String describes the credential without revealing it.
func (c Credential) String() string { return c.Source.String() + " credential [redacted]" }

// GoString describes the credential without revealing it.
func (c Credential) GoString() string {
	return "wsgate.Credential{Source: " + c.Source.String() + ", [redacted]}"
}

// Format writes the credential without revealing it, whatever the verb:
// %d or %x would otherwise print the strings inside.
func (c Credential) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		io.WriteString(f, c.GoString())
		return
	}
	io.WriteString(f, c.String())
}

// LogValue describes the credential to log/slog without revealing it.
func (c Credential) LogValue() slog.Value {
	return slog.GroupValue(slog.String("source", c.Source.String()))
}

type extractorKind uint8

const (
	kindNone extractorKind = iota
	kindSubprotocol
	kindSubprotocolPrefix
	kindBasic
	kindBearer
	kindCookie
	kindQuery
)

// Extractor finds a credential in one place of a handshake request. Build
// one with Subprotocol, SubprotocolPrefix, Basic, Bearer, Cookie or Query;
// the zero Extractor finds nothing. Extractors are small values, safe to copy
// and to share between goroutines.
type Extractor struct {
	kind extractorKind
	name string
	// Basic: answer a missing credential with a Basic challenge.
	challenge bool
	// Basic: refuse a non-empty password instead of passing it on.
	tokenOnly bool
	// Cookie: accept the cookie without an Origin header.
	allowNoOrigin bool
}

// DefaultMarker is the marker entry of the subprotocol marker form.
const DefaultMarker = "access_token"

// KubernetesPrefix is the subprotocol prefix Kubernetes uses for bearer
// tokens: base64url.bearer.authorization.k8s.io.<unpadded base64url token>.
const KubernetesPrefix = "base64url.bearer.authorization.k8s.io."

// Subprotocol reads the token from the Sec-WebSocket-Protocol entry that
// follows marker (DefaultMarker when marker is empty), the form a browser can
// send: new WebSocket(url, ["chat", "access_token", token]).
//
// The 101 response echoes an application protocol the server speaks, or
// else the marker, never the token; the token entry is removed from the
// request header before the request reaches further code. Browsers only
// accept token characters in an entry, so the token must be a JWT, unpadded
// base64url or similar. A marker with nothing after it is a 400
// (ErrMalformedCredential). The token does not reach URL logs, but
// Sec-WebSocket-Protocol is visible to proxies that log headers.
func Subprotocol(marker string) Extractor {
	if marker == "" {
		marker = DefaultMarker
	}
	if !isToken(marker) {
		panic("wsgate: Subprotocol marker " + marker + " is not an RFC 7230 token")
	}
	return Extractor{kind: kindSubprotocol, name: marker}
}

// SubprotocolPrefix reads the token from the Sec-WebSocket-Protocol entry
// that starts with prefix (KubernetesPrefix when prefix is empty), the rest
// of the entry being the token in unpadded base64url. Kubernetes and Phoenix
// use this form. A value that is not unpadded base64url of a non-empty token
// is a 401 with error="invalid_token".
//
// The entry is never echoed; the client must also offer an application
// protocol the server speaks (Config.Protocols), or the handshake is refused
// with 400 (ErrNoProtocol), as Kubernetes does. Extraction allocates the
// decoded token.
func SubprotocolPrefix(prefix string) Extractor {
	if prefix == "" {
		prefix = KubernetesPrefix
	}
	if !isToken(prefix) {
		panic("wsgate: SubprotocolPrefix " + prefix + " is not an RFC 7230 token")
	}
	return Extractor{kind: kindSubprotocolPrefix, name: prefix}
}

// Basic reads a token from Authorization: Basic, the header a client builds
// from URL userinfo: ws://TOKEN@host/path sends base64("TOKEN:"). An empty
// password makes the username the token (Credential.Token). A non-empty
// password is handed to the verifier as Credential.Username and
// Credential.Password, unless TokenOnly is set. The scheme is matched
// case-insensitively and the decoded value is split at its first colon;
// anything undecodable or without a colon is a 401 (ErrMalformedCredential).
//
// Chromium sends no Authorization on the first request even when the URL
// has userinfo: it does so only after a 401 with WWW-Authenticate: Basic, so
// browsers need WithChallenge. The userinfo then stays cached for the origin
// like any Basic credential, and it is as ambient as a cookie afterwards.
func Basic() Extractor { return Extractor{kind: kindBasic, name: "Basic"} }

// WithChallenge returns a copy of a Basic extractor that makes a handshake
// carrying no credential at all answer 401 with WWW-Authenticate: Basic
// instead of Bearer, so that browsers retry with the URL's userinfo.
func (e Extractor) WithChallenge() Extractor {
	e.challenge = e.kind == kindBasic
	return e
}

// TokenOnly returns a copy of a Basic extractor that refuses a non-empty
// password with 401 (ErrMalformedCredential) instead of passing it on.
func (e Extractor) TokenOnly() Extractor {
	e.tokenOnly = e.kind == kindBasic
	return e
}

// Bearer reads an RFC 6750 bearer token from Authorization: Bearer, the way
// for clients that can set headers (Go, Node, native apps). The scheme is
// matched case-insensitively; a value that is not token68 syntax is a 400
// with error="invalid_request". Browsers cannot send it.
func Bearer() Extractor { return Extractor{kind: kindBearer, name: "Bearer"} }

// Cookie reads the token from the cookie called name. A cookie is ambient:
// the browser attaches it whichever page opens the socket. So a cookie
// credential is refused (403, ErrOrigin) unless the request's Origin passes
// the gate's OriginPolicy, even with InsecureSkipOriginCheck, and unless an
// Origin is present at all (see InsecureAllowNoOrigin). Two cookies of that
// name (cookie tossing from a sibling subdomain) are a 400; an empty value
// is a 401. Name the cookie with the __Host- prefix so that no subdomain can
// set or shadow it, and make it HttpOnly and Secure.
func Cookie(name string) Extractor {
	if !isToken(name) {
		panic("wsgate: Cookie name " + name + " is not an RFC 6265 cookie name")
	}
	return Extractor{kind: kindCookie, name: name}
}

// InsecureAllowNoOrigin returns a copy of a Cookie extractor that accepts the
// cookie on requests without an Origin header. Browsers always send Origin,
// so this only admits non-browser clients that replay a cookie; the risk is
// that anything able to read the cookie can use it from anywhere.
func (e Extractor) InsecureAllowNoOrigin() Extractor {
	e.allowNoOrigin = e.kind == kindCookie
	return e
}

// Query reads the token from the URL query parameter param, the simplest
// way for a browser. Exactly one value is accepted (two: 400; empty: 401).
// The parameter is removed from r.URL.RawQuery and r.RequestURI (and r.Form
// when parsed) as soon as it is read, so handlers and loggers that run later
// do not see it, but anything that saw the request earlier (a proxy, an
// access log in front of the gate, the browser's history) did. Use it for
// short-lived, single-use tickets, never for long-lived tokens.
func Query(param string) Extractor {
	if param == "" {
		panic("wsgate: Query parameter name is empty")
	}
	return Extractor{kind: kindQuery, name: param}
}

// Source returns the source of the credentials this extractor finds.
func (e Extractor) Source() Source { return Source(e.kind) }

// Extract finds this extractor's credential in r. It returns an *Error
// matching ErrNoCredential when there is none, and one matching
// ErrAmbiguousCredential, ErrMalformedCredential or ErrProtocols when the
// credential is present but unusable. It does not apply an origin policy or
// verify the credential. A Query extractor removes its parameter from r.
func (e Extractor) Extract(r *http.Request) (Credential, error) {
	var o offered
	if e.kind == kindSubprotocol || e.kind == kindSubprotocolPrefix {
		if err := o.parse(r.Header[hWSProtocol]); err != nil {
			return Credential{}, err
		}
	}
	return e.extract(r, &o)
}

// extract is Extract with the protocol list already parsed into o. It marks
// the credential's entry in o as secret.
func (e *Extractor) extract(r *http.Request, o *offered) (Credential, error) {
	switch e.kind {
	case kindSubprotocol:
		return e.fromMarker(o)
	case kindSubprotocolPrefix:
		return e.fromPrefix(o)
	case kindBasic:
		return e.fromBasic(r, o)
	case kindBearer:
		return e.fromBearer(r, o)
	case kindCookie:
		return e.fromCookie(r)
	case kindQuery:
		return e.fromQuery(r)
	}
	return Credential{}, errNoCredential
}

func (e *Extractor) fromMarker(o *offered) (Credential, error) {
	list := o.entries()
	for i, p := range list {
		if p != e.name {
			continue
		}
		if i+1 == len(list) {
			return Credential{}, errMalformed400.withSource(SourceSubprotocol)
		}
		o.markSecret(i + 1)
		return Credential{Source: SourceSubprotocol, Token: list[i+1]}, nil
	}
	return Credential{}, errNoCredential
}

func (e *Extractor) fromPrefix(o *offered) (Credential, error) {
	found := -1
	for i, p := range o.entries() {
		if strings.HasPrefix(p, e.name) {
			if found >= 0 {
				return Credential{}, errAmbiguous.withSource(SourceSubprotocolPrefix)
			}
			found = i
		}
	}
	if found < 0 {
		return Credential{}, errNoCredential
	}
	o.markSecret(found)
	enc := o.list[found][len(e.name):]
	n := base64.RawURLEncoding.DecodedLen(len(enc))
	if n == 0 {
		return Credential{}, errMalformed401.withSource(SourceSubprotocolPrefix)
	}
	buf := make([]byte, n)
	n, err := base64.RawURLEncoding.Strict().Decode(buf, stringBytes(enc))
	if err != nil || n == 0 {
		return Credential{}, errMalformed401.withSource(SourceSubprotocolPrefix)
	}
	return Credential{Source: SourceSubprotocolPrefix, Token: bytesToString(buf[:n])}, nil
}

// authorization returns the value of the single Authorization header if its
// scheme is scheme, and the parameters after the scheme.
func authorization(r *http.Request, o *offered, scheme string) (string, bool, error) {
	if !o.authRead {
		o.auth, o.authRead = r.Header[hAuth], true
	}
	lines := o.auth
	if len(lines) == 0 {
		return "", false, nil
	}
	found := -1
	for i, line := range lines {
		if hasScheme(trimOWS(line), scheme) {
			found = i
			break
		}
	}
	if found < 0 {
		return "", false, nil
	}
	if len(lines) > 1 {
		return "", true, errAmbiguous
	}
	return trimOWS(trimOWS(lines[0])[len(scheme):]), true, nil
}

// hasScheme reports whether the Authorization value v uses scheme.
func hasScheme(v, scheme string) bool {
	return len(v) >= len(scheme) && strings.EqualFold(v[:len(scheme)], scheme) &&
		(len(v) == len(scheme) || v[len(scheme)] == ' ')
}

func (e *Extractor) fromBasic(r *http.Request, o *offered) (Credential, error) {
	v, ok, err := authorization(r, o, "Basic")
	if !ok {
		return Credential{}, errNoCredential
	}
	if err != nil {
		return Credential{}, errAmbiguous.withSource(SourceBasic)
	}
	enc := base64.StdEncoding
	if len(v)%4 != 0 {
		enc = base64.RawStdEncoding
	}
	n := enc.DecodedLen(len(v))
	if n == 0 || !isBase64Value(v) {
		return Credential{}, errMalformed401.withSource(SourceBasic)
	}
	buf := make([]byte, n)
	n, err = enc.Decode(buf, stringBytes(v))
	if err != nil {
		return Credential{}, errMalformed401.withSource(SourceBasic)
	}
	s := bytesToString(buf[:n])
	i := strings.IndexByte(s, ':')
	if i <= 0 || hasControl(s) {
		return Credential{}, errMalformed401.withSource(SourceBasic)
	}
	if i == len(s)-1 {
		return Credential{Source: SourceBasic, Token: s[:i]}, nil
	}
	if e.tokenOnly {
		return Credential{}, errMalformed401.withSource(SourceBasic)
	}
	return Credential{Source: SourceBasic, Username: s[:i], Password: s[i+1:]}, nil
}

// hasControl reports whether s has a control character, which RFC 7617
// forbids in a user-id or password.
func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// isBase64Value reports whether v has only base64 alphabet characters and
// trailing padding (Go's decoder would otherwise skip CR and LF).
func isBase64Value(v string) bool {
	end := len(v)
	for end > 0 && v[end-1] == '=' {
		end--
	}
	for i := 0; i < end; i++ {
		if !isBase64Std(v[i]) {
			return false
		}
	}
	return len(v)-end <= 2
}

func (e *Extractor) fromBearer(r *http.Request, o *offered) (Credential, error) {
	v, ok, err := authorization(r, o, "Bearer")
	if !ok {
		return Credential{}, errNoCredential
	}
	if err != nil {
		return Credential{}, errAmbiguous.withSource(SourceBearer)
	}
	if !isToken68(v) {
		return Credential{}, errMalformed400.withSource(SourceBearer)
	}
	return Credential{Source: SourceBearer, Token: v}, nil
}

// isToken68 checks RFC 6750's b64token: 1*( ALPHA / DIGIT / "-" / "." / "_"
// / "~" / "+" / "/" ) *"=".
func isToken68(v string) bool {
	end := len(v)
	for end > 0 && v[end-1] == '=' {
		end--
	}
	if end == 0 {
		return false
	}
	for i := 0; i < end; i++ {
		c := v[i]
		if !(isAlnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}

func (e *Extractor) fromCookie(r *http.Request) (Credential, error) {
	var val string
	found := 0
	for _, line := range r.Header[hCookie] {
		for line != "" {
			var pair string
			if i := strings.IndexByte(line, ';'); i >= 0 {
				pair, line = line[:i], line[i+1:]
			} else {
				pair, line = line, ""
			}
			pair = trimOWS(pair)
			name, v, ok := strings.Cut(pair, "=")
			if !ok || trimOWS(name) != e.name {
				continue
			}
			found++
			val = trimOWS(v)
		}
	}
	switch {
	case found == 0:
		return Credential{}, errNoCredential
	case found > 1:
		return Credential{}, errAmbiguous.withSource(SourceCookie)
	}
	if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
		val = val[1 : len(val)-1]
	}
	if val == "" {
		return Credential{}, errMalformed401.withSource(SourceCookie)
	}
	return Credential{Source: SourceCookie, Token: val}, nil
}

func (e *Extractor) fromQuery(r *http.Request) (Credential, error) {
	if r.URL == nil {
		return Credential{}, errNoCredential
	}
	raw := r.URL.RawQuery
	var val string
	found := 0
	start, end := -1, -1 // the bounds of the (last) matching pair in raw
	for pos := 0; pos < len(raw); {
		next := strings.IndexByte(raw[pos:], '&')
		if next < 0 {
			next = len(raw)
		} else {
			next += pos
		}
		pair := raw[pos:next]
		key, v, _ := strings.Cut(pair, "=")
		if queryKeyIs(key, e.name) {
			found++
			val = v
			start, end = pos, next
		}
		pos = next + 1
	}
	switch {
	case found == 0:
		return Credential{}, errNoCredential
	case found > 1:
		stripQuery(r, e.name)
		return Credential{}, errAmbiguous.withSource(SourceQuery)
	}
	removeQueryPair(r, start, end)
	if strings.ContainsAny(val, "%+") {
		u, err := url.QueryUnescape(val)
		if err != nil {
			return Credential{}, errMalformed401.withSource(SourceQuery)
		}
		val = u
	}
	if val == "" {
		return Credential{}, errMalformed401.withSource(SourceQuery)
	}
	return Credential{Source: SourceQuery, Token: val}, nil
}

// queryKeyIs compares a raw query key with name as url.QueryUnescape would
// decode it, without allocating: a query of many escaped keys must not cost
// an allocation per key.
func queryKeyIs(key, name string) bool {
	if key == name {
		return true
	}
	if !strings.ContainsAny(key, "%+") {
		return false
	}
	j := 0
	for i := 0; i < len(key); j++ {
		c := key[i]
		switch c {
		case '%':
			if i+2 >= len(key) || !isHex(key[i+1]) || !isHex(key[i+2]) {
				return false
			}
			c = unhex(key[i+1])<<4 | unhex(key[i+2])
			i += 3
		case '+':
			c = ' '
			i++
		default:
			i++
		}
		if j >= len(name) || name[j] != c {
			return false
		}
	}
	return j == len(name)
}

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c | 0x20 - 'a' + 10
}

// removeQueryPair cuts raw[start:end] (and one adjoining '&') out of the
// query, and rewrites r.RequestURI and r.Form to match.
func removeQueryPair(r *http.Request, start, end int) {
	raw := r.URL.RawQuery
	switch {
	case start == 0 && end == len(raw):
		raw = ""
	case start == 0:
		raw = raw[end+1:]
	case end == len(raw):
		raw = raw[:start-1]
	default:
		raw = raw[:start] + raw[end+1:]
	}
	setQuery(r, raw)
}

// stripQuery removes every value of name from the query.
func stripQuery(r *http.Request, name string) {
	q := r.URL.RawQuery
	var b strings.Builder
	for q != "" {
		var pair string
		pair, q, _ = strings.Cut(q, "&")
		key, _, _ := strings.Cut(pair, "=")
		if queryKeyIs(key, name) {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(pair)
	}
	setQuery(r, b.String())
}

func setQuery(r *http.Request, raw string) {
	r.URL.RawQuery = raw
	if i := strings.IndexByte(r.RequestURI, '?'); i >= 0 {
		if raw == "" {
			r.RequestURI = r.RequestURI[:i]
		} else {
			r.RequestURI = r.RequestURI[:i+1] + raw
		}
	}
	if r.Form != nil {
		if vs, err := url.ParseQuery(raw); err == nil {
			r.Form = vs
		}
	}
}

// bytesToString returns a string sharing b's memory. b must never be written
// again; the decoders above allocate b for this one purpose.
func bytesToString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// stringBytes returns the bytes of s without copying, for read-only use.
func stringBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
