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
	SourceHeader                   // a custom extractor's own header or place (explicit)
)

var sourceNames = [...]string{"none", "subprotocol", "subprotocol-prefix", "basic", "bearer", "cookie", "query", "message", "header"}

// ambient reports whether a credential from s is attached by browsers to
// every socket of an origin, whichever page opens it.
func (s Source) ambient() bool { return s == SourceBasic || s == SourceCookie }

// String returns a short lower-case name: "subprotocol", "basic", "cookie"...
func (s Source) String() string {
	if int(s) < len(sourceNames) {
		return sourceNames[s]
	}
	return "unknown"
}

// Credential is what an extractor found: where (Source) and the secret.
// Token is the bearer credential; for Authorization: Basic with a non-empty
// password, Token is empty and Username and Password are set instead.
//
// A Credential never prints its secret: not through any fmt verb, not as a
// log/slog value (nested in groups or not), not through encoding/json, and
// not as a field of another struct, exported or not (the secret is held in a
// form that reflection-based printers show only as an address). Read it with
// the accessors.
type Credential struct {
	Source Source

	token, username, password secretRef
}

// secretRef refers to the bytes of a string without being one, so that
// printers that walk a struct by reflection never show them.
type secretRef struct {
	p unsafe.Pointer
	n int
}

func secretOf(s string) secretRef { return secretRef{unsafe.Pointer(unsafe.StringData(s)), len(s)} }

func (s secretRef) String() string {
	if s.n == 0 {
		return ""
	}
	return unsafe.String((*byte)(s.p), s.n)
}

// NewCredential returns a credential of source src holding token, for
// custom extractors and in-band parsers.
func NewCredential(src Source, token string) Credential {
	return Credential{Source: src, token: secretOf(token)}
}

// basicCredential returns a Basic credential with a non-empty password.
func basicCredential(user, password string) Credential {
	return Credential{Source: SourceBasic, username: secretOf(user), password: secretOf(password)}
}

// Token returns the bearer credential, or "" for a Basic credential with a
// password.
func (c Credential) Token() string { return c.token.String() }

// Username returns the user-id of a Basic credential with a non-empty
// password, or "".
func (c Credential) Username() string { return c.username.String() }

// Password returns the password of a Basic credential, or "".
func (c Credential) Password() string { return c.password.String() }

// Format writes the credential's source and "[redacted]", whatever the verb.
func (c Credential) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		io.WriteString(f, "wsgate.Credential{Source: "+c.Source.String()+", [redacted]}")
		return
	}
	io.WriteString(f, c.Source.String()+" credential [redacted]")
}

// LogValue describes the credential to log/slog without revealing it.
func (c Credential) LogValue() slog.Value {
	return slog.GroupValue(slog.String("source", c.Source.String()))
}

// MarshalJSON encodes the credential as {"source": "..."}, without its
// secret.
func (c Credential) MarshalJSON() ([]byte, error) {
	return []byte(`{"source":"` + c.Source.String() + `"}`), nil
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

// Extractor finds a credential in one place of a handshake request. The
// built-in extractors are made by Subprotocol, SubprotocolPrefix, Basic,
// Bearer, Cookie and Query; an application adds its own place (a custom
// header for native clients, a signed cookie) by implementing Extract.
//
// Extract must not modify r. It returns the credential with its Source set,
// an error matching ErrNoCredential when its place holds none, or an error
// matching ErrMalformedCredential or ErrAmbiguousCredential when the place
// holds something unusable (an *Error keeps its status; any other error is
// answered 400). A custom extractor's Source decides its rules: SourceCookie
// and SourceBasic are ambient (see Config), SourceNone is taken as
// SourceHeader, and every other source is explicit. Extractors are called
// concurrently and must be safe for that.
type Extractor interface {
	Extract(r *http.Request) (Credential, error)
}

// ExtractorOption changes how a built-in extractor reads its place. An
// option given to an extractor it does not apply to makes the constructor
// panic.
type ExtractorOption uint8

const (
	// Challenge (Basic only) answers a handshake that carries no credential
	// with WWW-Authenticate: Basic instead of Bearer, so that browsers retry
	// with the userinfo of the URL.
	Challenge ExtractorOption = iota + 1
	// TokenOnly (Basic only) refuses a non-empty password with 401
	// (ErrMalformedCredential) instead of passing it to the verifier.
	TokenOnly
	// InsecureAllowNoOrigin (Cookie only) accepts the cookie on requests
	// without an Origin header. Browsers always send Origin, so this only
	// admits non-browser clients that replay a cookie; the risk is that
	// anything able to read the cookie can use it from anywhere.
	InsecureAllowNoOrigin
)

// extractor is a built-in Extractor. The gate runs it without the
// interface call, with the protocol list it parsed once.
type extractor struct {
	kind extractorKind
	name string
	// Basic: answer a missing credential with a Basic challenge.
	challenge bool
	// Basic: refuse a non-empty password instead of passing it on.
	tokenOnly bool
	// Cookie: accept the cookie without an Origin header.
	allowNoOrigin bool
}

func newExtractor(kind extractorKind, name string, opts []ExtractorOption) *extractor {
	e := &extractor{kind: kind, name: name}
	for _, o := range opts {
		switch {
		case o == Challenge && kind == kindBasic:
			e.challenge = true
		case o == TokenOnly && kind == kindBasic:
			e.tokenOnly = true
		case o == InsecureAllowNoOrigin && kind == kindCookie:
			e.allowNoOrigin = true
		default:
			panic(fmt.Sprintf("wsgate: option %d does not apply to the %s extractor", o, Source(kind)))
		}
	}
	return e
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
// else the marker, never the token; the gate removes the token entry from
// the request header before the request reaches further code. Browsers only
// accept token characters in an entry, so the token must be a JWT, unpadded
// base64url or similar. A marker with nothing after it is a 400
// (ErrMalformedCredential). The token does not reach URL logs, but
// Sec-WebSocket-Protocol is visible to proxies that log headers. It panics
// if marker is not an RFC 7230 token.
func Subprotocol(marker string) Extractor {
	if marker == "" {
		marker = DefaultMarker
	}
	if !isToken(marker) {
		panic("wsgate: Subprotocol marker " + marker + " is not an RFC 7230 token")
	}
	return newExtractor(kindSubprotocol, marker, nil)
}

// SubprotocolPrefix reads the token from the Sec-WebSocket-Protocol entry
// that starts with prefix (KubernetesPrefix when prefix is empty), the rest
// of the entry being the token in unpadded base64url. Kubernetes and Phoenix
// use this form. A value that is not unpadded base64url of a non-empty token
// is a 401 with error="invalid_token".
//
// The entry is never echoed; the client must also offer an application
// protocol the server speaks (Config.Protocols), or the handshake is refused
// with 400 (ErrProtocols), as Kubernetes does. Extraction allocates the
// decoded token. It panics if prefix is not an RFC 7230 token.
func SubprotocolPrefix(prefix string) Extractor {
	if prefix == "" {
		prefix = KubernetesPrefix
	}
	if !isToken(prefix) {
		panic("wsgate: SubprotocolPrefix " + prefix + " is not an RFC 7230 token")
	}
	return newExtractor(kindSubprotocolPrefix, prefix, nil)
}

// Basic reads a token from Authorization: Basic, the header a client builds
// from URL userinfo: ws://TOKEN@host/path sends base64("TOKEN:"). An empty
// password makes the username the token (Credential.Token). A non-empty
// password is handed to the verifier as Credential.Username and
// Credential.Password, unless the option TokenOnly is given. The scheme is
// matched case-insensitively and the decoded value is split at its first
// colon; anything undecodable or without a colon is a 401
// (ErrMalformedCredential). Refusals of a Basic credential carry a Basic
// challenge.
//
// Browsers send no Authorization on the first request even when the URL
// has userinfo: they do so only after a 401 with WWW-Authenticate: Basic, so
// browsers need the option Challenge. They then cache the credential for
// the origin and attach it to every later socket of that origin: a Basic
// credential is ambient, like a cookie (see Config).
func Basic(opts ...ExtractorOption) Extractor {
	return newExtractor(kindBasic, "Basic", opts)
}

// Bearer reads an RFC 6750 bearer token from Authorization: Bearer, the way
// for clients that can set headers (Go, Node, native apps). The scheme is
// matched case-insensitively; a value that is not token68 syntax is a 400
// with error="invalid_request". Browsers cannot send it.
func Bearer() Extractor { return newExtractor(kindBearer, "Bearer", nil) }

// Cookie reads the token from the cookie called name. A cookie is ambient:
// the browser attaches it whichever page opens the socket. So a cookie
// credential is refused (403, ErrOrigin) unless the request's Origin passes
// the gate's OriginPolicy, even with InsecureSkipOriginCheck, and unless an
// Origin is present at all (see InsecureAllowNoOrigin). Two cookies of that
// name (cookie tossing from a sibling subdomain) are a 400; an empty value
// is a 401. Name the cookie with the __Host- prefix so that no subdomain can
// set or shadow it, and make it HttpOnly and Secure. It panics if name is
// not a cookie name.
func Cookie(name string, opts ...ExtractorOption) Extractor {
	if !isToken(name) {
		panic("wsgate: Cookie name " + name + " is not an RFC 6265 cookie name")
	}
	return newExtractor(kindCookie, name, opts)
}

// Query reads the token from the URL query parameter param, the simplest
// way for a browser. Exactly one value is accepted (two: 400; empty: 401).
// The gate removes every value of the parameter from r.URL.RawQuery,
// r.RequestURI and r.Form once it has looked, whatever the outcome, so
// handlers and loggers that run later do not see it; anything that saw the
// request earlier (a proxy, an access log in front of the gate, the
// browser's history) did. Use it for short-lived, single-use tickets, never
// for long-lived tokens. It panics if param is empty.
func Query(param string) Extractor {
	if param == "" {
		panic("wsgate: Query parameter name is empty")
	}
	return newExtractor(kindQuery, param, nil)
}

// Extract finds this extractor's credential in r without modifying r.
func (e *extractor) Extract(r *http.Request) (Credential, error) {
	var o offered
	if e.kind == kindSubprotocol || e.kind == kindSubprotocolPrefix {
		if err := o.parse(r.Header[hWSProtocol]); err != nil {
			return Credential{}, err.clone()
		}
	}
	c, err := e.extract(r, &o)
	if err != nil {
		return Credential{}, err.clone()
	}
	return c, nil
}

// extract is Extract with the protocol list already parsed into o. It marks
// the credential's entry in o as secret, and records in o where a query
// parameter was found.
func (e *extractor) extract(r *http.Request, o *offered) (Credential, *Error) {
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
		return e.fromQuery(r, o)
	}
	return Credential{}, errNoCredential
}

func (e *extractor) fromMarker(o *offered) (Credential, *Error) {
	list := o.entries()
	for i, p := range list {
		if p != e.name {
			continue
		}
		if i+1 == len(list) {
			return Credential{}, errMalformed400.withSource(SourceSubprotocol)
		}
		o.markSecret(i + 1)
		return NewCredential(SourceSubprotocol, list[i+1]), nil
	}
	return Credential{}, errNoCredential
}

func (e *extractor) fromPrefix(o *offered) (Credential, *Error) {
	found := -1
	for i, p := range o.entries() {
		if strings.HasPrefix(p, e.name) {
			o.markSecret(i)
			if found >= 0 {
				return Credential{}, errAmbiguous.withSource(SourceSubprotocolPrefix)
			}
			found = i
		}
	}
	if found < 0 {
		return Credential{}, errNoCredential
	}
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
	return NewCredential(SourceSubprotocolPrefix, bytesToString(buf[:n])), nil
}

// authorization returns the value of the single Authorization header if its
// scheme is scheme, and the parameters after the scheme.
func authorization(r *http.Request, o *offered, scheme string) (value string, ok, ambiguous bool) {
	if !o.authRead {
		o.auth, o.authRead = r.Header[hAuth], true
	}
	lines := o.auth
	if len(lines) == 0 {
		return "", false, false
	}
	found := -1
	for i, line := range lines {
		if hasScheme(trimOWS(line), scheme) {
			found = i
			break
		}
	}
	if found < 0 {
		return "", false, false
	}
	if len(lines) > 1 {
		return "", true, true
	}
	return trimOWS(trimOWS(lines[0])[len(scheme):]), true, false
}

// hasScheme reports whether the Authorization value v uses scheme.
func hasScheme(v, scheme string) bool {
	return len(v) >= len(scheme) && strings.EqualFold(v[:len(scheme)], scheme) &&
		(len(v) == len(scheme) || v[len(scheme)] == ' ')
}

func (e *extractor) fromBasic(r *http.Request, o *offered) (Credential, *Error) {
	v, ok, ambiguous := authorization(r, o, "Basic")
	if !ok {
		return Credential{}, errNoCredential
	}
	if ambiguous {
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
	n, err := enc.Decode(buf, stringBytes(v))
	if err != nil {
		return Credential{}, errMalformed401.withSource(SourceBasic)
	}
	s := bytesToString(buf[:n])
	i := strings.IndexByte(s, ':')
	if i <= 0 || hasControl(s) {
		return Credential{}, errMalformed401.withSource(SourceBasic)
	}
	if i == len(s)-1 {
		return NewCredential(SourceBasic, s[:i]), nil
	}
	if e.tokenOnly {
		return Credential{}, errMalformed401.withSource(SourceBasic)
	}
	return basicCredential(s[:i], s[i+1:]), nil
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

func (e *extractor) fromBearer(r *http.Request, o *offered) (Credential, *Error) {
	v, ok, ambiguous := authorization(r, o, "Bearer")
	if !ok {
		return Credential{}, errNoCredential
	}
	if ambiguous {
		return Credential{}, errAmbiguous.withSource(SourceBearer)
	}
	if !isToken68(v) {
		return Credential{}, errMalformed400.withSource(SourceBearer)
	}
	return NewCredential(SourceBearer, v), nil
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

func (e *extractor) fromCookie(r *http.Request) (Credential, *Error) {
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
	return NewCredential(SourceCookie, val), nil
}

func (e *extractor) fromQuery(r *http.Request, o *offered) (Credential, *Error) {
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
	if found == 0 {
		return Credential{}, errNoCredential
	}
	if found > 1 {
		return Credential{}, errAmbiguous.withSource(SourceQuery)
	}
	if o.queryEnd == 0 {
		o.queryStart, o.queryEnd, o.queryRaw = start, end, raw
	}
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
	return NewCredential(SourceQuery, val), nil
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
	found := false
	for q != "" {
		var pair string
		pair, q, _ = strings.Cut(q, "&")
		key, _, _ := strings.Cut(pair, "=")
		if queryKeyIs(key, name) {
			found = true
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(pair)
	}
	if found {
		setQuery(r, b.String())
	}
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
}

// dropFormValue removes name from r.Form, which holds the decoded query
// once parsed, whatever the rest of the query looked like (a query that
// url.ParseQuery refuses still leaves its good pairs in r.Form).
func dropFormValue(r *http.Request, name string) {
	if r.Form != nil {
		delete(r.Form, name)
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
