package wsgate

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"testing"
)

// Seeds taken from RFC 6455, RFC 6750 and the handshakes real browsers and
// clients send (see CLIENT-FACTS.md).
const (
	rfc6455Key = "dGhlIHNhbXBsZSBub25jZQ=="
	// RFC 6750 section 2.1 example token.
	rfc6750Token = "mF_9.B5f-4.1JqM"
)

// The fuzzing engine calls signal.Notify, whose watcher goroutine then runs
// until the process exits, and TestMain would report it as a leak. Starting
// the watcher before TestMain takes its goroutine count keeps the leak check
// meaningful under -fuzz.
func init() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, os.Interrupt)
	signal.Stop(c)
}

// splitLines turns a fuzzed value into header lines: each '\n' starts a
// repeated header line, so the fuzzer explores repeated headers too.
func splitLines(v string) []string { return strings.Split(v, "\n") }

func FuzzProtocolList(f *testing.F) {
	for _, s := range []string{
		"chat, superchat",               // RFC 6455 section 1.2
		"chat",                          // single entry
		"chat,access_token," + secret,   // Node ws: no space after commas
		"chat, access_token, " + secret, // Chromium
		"v5.channel.k8s.io, " + KubernetesPrefix + b64url(secret), // kubectl
		"abc==",                        // gorilla sends it unchecked
		"ab cd",                        // likewise
		"a,,b",                         // empty entry
		"chat, chat",                   // duplicate
		"chat\nsuperchat",              // two lines
		" \t chat \t ",                 // optional whitespace
		strings.Repeat("p,", 40) + "q", // too many entries
		"chat," + strings.Repeat(" ", 200) + "superchat",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		lines := splitLines(v)
		var o offered
		err := o.parse(lines)
		// Reference: split every line at commas, trim, all entries must be
		// distinct RFC 7230 tokens and at most maxOfferedProtocols.
		var ref []string
		refOK := true
		seen := map[string]bool{}
		empty := 0
		for _, line := range lines {
			for _, e := range strings.Split(line, ",") {
				e = strings.Trim(e, " \t")
				if e == "" { // RFC 9110 section 5.6.1.2: ignored, within reason
					if empty++; empty > maxEmptyProtocols {
						refOK = false
					}
					continue
				}
				if !isRefToken(e) || seen[e] {
					refOK = false
				}
				seen[e] = true
				ref = append(ref, e)
			}
		}
		if len(ref) > maxOfferedProtocols {
			refOK = false
		}
		if (err == nil) != refOK {
			t.Fatalf("parse(%q) = %v, reference ok = %v", lines, err, refOK)
		}
		if err != nil {
			if o.n > maxOfferedProtocols {
				t.Fatalf("parse kept %d entries", o.n)
			}
			return
		}
		got := o.entries()
		if len(got) != len(ref) {
			t.Fatalf("parse(%q) = %q, want %q", lines, got, ref)
		}
		for i := range got {
			if got[i] != ref[i] {
				t.Fatalf("parse(%q) = %q, want %q", lines, got, ref)
			}
		}
		// selectFor echoes only what was offered, byte for byte, in the
		// server's order of preference.
		server := []string{"superchat", "chat", "v5.channel.k8s.io"}
		p := o.selectFor(server)
		want := ""
	outer:
		for _, s := range server {
			for _, e := range ref {
				if e == s {
					want = s
					break outer
				}
			}
		}
		if p != want {
			t.Fatalf("selectFor(%q) = %q, want %q", lines, p, want)
		}
		// A credential entry is never selected, and withoutSecrets drops
		// exactly the secret entries.
		for i := 0; i < o.n; i++ {
			if o.list[i] == "chat" {
				o.markSecret(i)
			}
		}
		if s := o.selectFor([]string{"chat"}); s != "" {
			t.Fatalf("selectFor returned the secret entry %q", s)
		}
		line := ""
		if len(lines) == 1 {
			line = lines[0]
		}
		if clean, ok := o.withoutSecrets(line); ok {
			var kept []string
			for _, e := range ref {
				if e != "chat" {
					kept = append(kept, e)
				}
			}
			var o2 offered
			if clean == "" {
				if len(kept) != 0 {
					t.Fatalf("withoutSecrets dropped %q", kept)
				}
			} else if err := o2.parse([]string{clean}); err != nil || strings.Join(o2.entries(), ",") != strings.Join(kept, ",") {
				t.Fatalf("withoutSecrets(%q) = %q (%v), want entries %q", line, clean, err, kept)
			}
		}
	})
}

// isRefToken is RFC 7230's token, written independently of tchar.
func isRefToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

func FuzzAuthorization(f *testing.F) {
	for _, s := range []string{
		"Bearer " + rfc6750Token, // RFC 6750 section 2.1
		"Bearer " + secret,
		"bearer " + secret,
		"Bearer  " + secret + "=",
		"Bearer",
		"Bearer ",
		"Bearer a b",
		"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", // RFC 7617: Aladdin:open sesame
		basicAuth(secret, ""),                // ws://TOKEN@host from Node ws, coder
		basicAuth("user", "pass"),
		"Basic dXNlcjo",  // unpadded
		"Basic dXNlcjo=", // padded
		"Basic =",
		"Basic dXNl\r\ncjo=",
		"Basic " + base64.StdEncoding.EncodeToString([]byte(":nouser")),
		"Bearer " + secret + "\nBearer other",
		"Basic\tabc",
		"Digest username=x",
	} {
		f.Add(s, false)
	}
	f.Add(basicAuth("user", "pass"), true)
	f.Fuzz(func(t *testing.T, v string, tokenOnly bool) {
		r := newHandshake("/ws")
		r.Header[hAuth] = splitLines(v)
		basic := Basic()
		if tokenOnly {
			basic = Basic(TokenOnly)
		}
		checkBasic(t, r, basic, tokenOnly)
		checkBearer(t, r)
	})
}

func checkBasic(t *testing.T, r *http.Request, e Extractor, tokenOnly bool) {
	c, err := e.Extract(r)
	lines := r.Header[hAuth]
	first := ""
	if len(lines) > 0 {
		first = strings.Trim(lines[0], " \t")
	}
	schemeBasic := func(v string) bool {
		v = strings.Trim(v, " \t")
		return len(v) >= 5 && strings.EqualFold(v[:5], "basic") && (len(v) == 5 || v[5] == ' ')
	}
	anyBasic := false
	for _, l := range lines {
		anyBasic = anyBasic || schemeBasic(l)
	}
	// Two Authorization lines are ambiguous as soon as either is Basic.
	isBasic := schemeBasic(first) || len(lines) > 1 && anyBasic
	if !isBasic {
		if !isErr(err, ErrNoCredential) {
			t.Fatalf("Basic on %q: %v, want no credential", lines, err)
		}
		return
	}
	if len(lines) > 1 {
		if !isErr(err, ErrAmbiguousCredential) {
			t.Fatalf("Basic on %q: %v, want ambiguous", lines, err)
		}
		return
	}
	// Reference: strict alphabet, padded or unpadded standard base64.
	payload := strings.Trim(first[5:], " \t")
	dec, derr := base64.StdEncoding.DecodeString(payload)
	if derr != nil || strings.ContainsAny(payload, "\r\n") {
		dec, derr = base64.RawStdEncoding.DecodeString(payload)
		if strings.ContainsAny(payload, "\r\n") {
			derr = base64.CorruptInputError(0)
		}
	}
	user, pass, ok := strings.Cut(string(dec), ":")
	// RFC 7617 forbids control characters in the user-id and password.
	ctl := strings.IndexFunc(string(dec), func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0
	wantOK := derr == nil && len(dec) > 0 && ok && user != "" && !(tokenOnly && pass != "") && !ctl
	if (err == nil) != wantOK {
		t.Fatalf("Basic on %q: %v, reference ok = %v (decoded %q, %v)", lines, err, wantOK, dec, derr)
	}
	if err != nil {
		if !isErr(err, ErrMalformedCredential) || err.(*Error).Status != 401 {
			t.Fatalf("Basic on %q: %v, want 401 malformed", lines, err)
		}
		return
	}
	if pass == "" && (c.Token() != user || c.Username() != "" || c.Password() != "") ||
		pass != "" && (c.Token() != "" || c.Username() != user || c.Password() != pass) || c.Source != SourceBasic {
		t.Fatalf("Basic on %q = %#v, want %q:%q", lines, []string{c.Token(), c.Username(), c.Password()}, user, pass)
	}
}

func checkBearer(t *testing.T, r *http.Request) {
	c, err := Bearer().Extract(r)
	lines := r.Header[hAuth]
	first := ""
	if len(lines) > 0 {
		first = strings.Trim(lines[0], " \t")
	}
	schemeBearer := func(v string) bool {
		v = strings.Trim(v, " \t")
		return len(v) >= 6 && strings.EqualFold(v[:6], "bearer") && (len(v) == 6 || v[6] == ' ')
	}
	anyBearer := false
	for _, l := range lines {
		anyBearer = anyBearer || schemeBearer(l)
	}
	// Two Authorization lines are ambiguous as soon as either is Bearer.
	isBearer := schemeBearer(first) || len(lines) > 1 && anyBearer
	if !isBearer {
		if !isErr(err, ErrNoCredential) {
			t.Fatalf("Bearer on %q: %v, want no credential", lines, err)
		}
		return
	}
	if len(lines) > 1 {
		if !isErr(err, ErrAmbiguousCredential) {
			t.Fatalf("Bearer on %q: %v, want ambiguous", lines, err)
		}
		return
	}
	tok := strings.Trim(first[6:], " \t")
	body := strings.TrimRight(tok, "=")
	wantOK := body != ""
	for _, ch := range []byte(body) {
		if !(isAlnum(ch) || strings.IndexByte("-._~+/", ch) >= 0) {
			wantOK = false
		}
	}
	if (err == nil) != wantOK {
		t.Fatalf("Bearer on %q: %v, reference ok = %v", lines, err, wantOK)
	}
	if err == nil && (c.Token() != tok || c.Source != SourceBearer) {
		t.Fatalf("Bearer on %q = %q, want %q", lines, c.Token(), tok)
	}
	if err != nil && (!isErr(err, ErrMalformedCredential) || err.(*Error).Status != 400) {
		t.Fatalf("Bearer on %q: %v, want 400 malformed", lines, err)
	}
}

func isErr(err, target error) bool {
	e, ok := err.(*Error)
	return ok && e.kind == target
}

func FuzzCookie(f *testing.F) {
	for _, s := range []string{
		"session=" + secret,
		"theme=dark; session=" + secret + "; lang=en", // Chromium joins with "; "
		"session=\"" + secret + "\"",                  // quoted value
		"session=a; session=b",                        // cookie tossing
		"session=a\nsession=b",                        // two Cookie lines
		"session=",
		"session",
		"  session  =  x  ",
		"sessionx=1; xsession=2",
		"__Host-session=" + secret,
		";;;;",
		"session=\"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		r := newHandshake("/ws")
		r.Header[hCookie] = splitLines(v)
		c, err := Cookie("session").Extract(r)
		// Reference: every ';'-separated pair of every line.
		var vals []string
		for _, line := range r.Header[hCookie] {
			for _, pair := range strings.Split(line, ";") {
				name, val, ok := strings.Cut(strings.Trim(pair, " \t"), "=")
				if ok && strings.Trim(name, " \t") == "session" {
					vals = append(vals, strings.Trim(val, " \t"))
				}
			}
		}
		switch {
		case len(vals) == 0:
			if !isErr(err, ErrNoCredential) {
				t.Fatalf("Cookie on %q: %v, want none", v, err)
			}
		case len(vals) > 1:
			if !isErr(err, ErrAmbiguousCredential) {
				t.Fatalf("Cookie on %q: %v, want ambiguous", v, err)
			}
		default:
			want := vals[0]
			if len(want) >= 2 && want[0] == '"' && want[len(want)-1] == '"' {
				want = want[1 : len(want)-1]
			}
			if want == "" {
				if !isErr(err, ErrMalformedCredential) {
					t.Fatalf("Cookie on %q: %v, want malformed", v, err)
				}
				return
			}
			if err != nil || c.Token() != want || c.Source != SourceCookie {
				t.Fatalf("Cookie on %q = %q, %v; want %q", v, c.Token(), err, want)
			}
		}
	})
}

func FuzzQuery(f *testing.F) {
	for _, s := range []string{
		"access_token=" + secret,
		"a=1&access_token=" + secret + "&b=2",
		"access_token=" + secret + "&access_token=x",
		"access%5Ftoken=" + secret, // escaped key
		"access+token=x",
		"access_token=a%2Bb+c",
		"access_token=%zz",
		"access_token=",
		"access_token",
		"&&&access_token=x&&",
		"%",
		"access_token=x;y",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		r := newHandshake("/ws")
		r.URL.RawQuery = raw
		r.RequestURI = "/ws?" + raw
		c, err := Query("access_token").Extract(r)
		if r.URL.RawQuery != raw || r.RequestURI != "/ws?"+raw {
			t.Fatalf("Extract changed the query %q to %q", raw, r.URL.RawQuery)
		}
		// The gate removes the parameter once it has looked.
		g := New(StaticToken(secret, user{}), Config{Extractors: []Extractor{Query("access_token")}})
		var o offered
		_, _ = g.extractors[0].builtin.extract(r, &o)
		g.stripQueries(r, &o)
		// Reference: every '&'-separated pair, keys compared unescaped.
		var vals []string
		var rest []string
		for _, pair := range strings.Split(raw, "&") {
			k, v, _ := strings.Cut(pair, "=")
			if uk, uerr := url.QueryUnescape(k); uerr == nil && uk == "access_token" {
				vals = append(vals, v)
				continue
			}
			rest = append(rest, pair)
		}
		if queryKeyIs(raw, "access_token") != (func() bool { u, e := url.QueryUnescape(raw); return e == nil && u == "access_token" })() {
			t.Fatalf("queryKeyIs(%q) disagrees with url.QueryUnescape", raw)
		}
		switch {
		case len(vals) == 0:
			if !isErr(err, ErrNoCredential) {
				t.Fatalf("Query on %q: %v, want none", raw, err)
			}
			if r.URL.RawQuery != raw {
				t.Fatalf("the gate changed the query %q to %q", raw, r.URL.RawQuery)
			}
			return
		case len(vals) > 1:
			if !isErr(err, ErrAmbiguousCredential) {
				t.Fatalf("Query on %q: %v, want ambiguous", raw, err)
			}
		default:
			want, uerr := vals[0], error(nil)
			if strings.ContainsAny(want, "%+") {
				want, uerr = url.QueryUnescape(want)
			}
			if uerr != nil || want == "" {
				if !isErr(err, ErrMalformedCredential) {
					t.Fatalf("Query on %q: %v, want malformed", raw, err)
				}
			} else if err != nil || c.Token() != want {
				t.Fatalf("Query on %q = %q, %v; want %q", raw, c.Token(), err, want)
			}
		}
		// The parameter is gone from the query, and when it was given once
		// every other pair is kept in order.
		for _, pair := range strings.Split(r.URL.RawQuery, "&") {
			k, _, _ := strings.Cut(pair, "=")
			if uk, uerr := url.QueryUnescape(k); uerr == nil && uk == "access_token" {
				t.Fatalf("Query on %q left the parameter in %q", raw, r.URL.RawQuery)
			}
		}
		if len(vals) == 1 && r.URL.RawQuery != strings.Join(rest, "&") {
			t.Fatalf("Query on %q left %q, want the other pairs %q", raw, r.URL.RawQuery, rest)
		}
		if want := "/ws"; r.URL.RawQuery != "" {
			if want += "?" + r.URL.RawQuery; r.RequestURI != want {
				t.Fatalf("RequestURI %q, want %q", r.RequestURI, want)
			}
		} else if r.RequestURI != want {
			t.Fatalf("RequestURI %q, want %q", r.RequestURI, want)
		}
	})
}

func FuzzOrigin(f *testing.F) {
	for _, s := range []string{
		"http://127.0.0.1:8080",
		"HTTP://127.0.0.1:8080",
		"http://127.0.0.1:8080/",
		"http://127.0.0.1:8080@evil.com",
		"http://127.0.0.1.evil.com:8080",
		"http://evil127.0.0.1:8080",
		"https://127.0.0.1:8080",
		"http://127.0.0.1:8081",
		"http://127.0.0.1",
		"http://127.0.0.1:08080",
		"null",
		"http://[::1]:8080",
		"http://example.com",
		"https://app.example.com",
		"https://example.com:443",
		"http://localhost:3000",
		"http://127.0.0.1:8080\nhttp://127.0.0.1:8080",
		"",
	} {
		f.Add(s, "127.0.0.1:8080", false)
	}
	f.Add("https://a.example.com", "ws.example.com", true)
	f.Fuzz(func(t *testing.T, v, host string, tls bool) {
		r := newHandshake("/ws")
		r.Host = host
		if tls {
			r.TLS = fakeTLS
		}
		if v != "" {
			r.Header[hOrigin] = splitLines(v)
		}
		o, ok := parseOrigin(v)
		ref, refOK := refParseOrigin(v)
		if ok != refOK || ok && (o.scheme != ref.scheme || o.host != ref.host || o.port != ref.port) {
			t.Fatalf("parseOrigin(%q) = %+v, %v; reference %+v, %v", v, o, ok, ref, refOK)
		}
		var zero OriginPolicy
		err := zero.Check(r)
		server, serverOK := refParseOrigin(map[bool]string{false: "http", true: "https"}[tls] + "://" + host)
		wantOK := v == "" || len(r.Header[hOrigin]) == 1 && refOK && serverOK &&
			strings.EqualFold(ref.scheme, server.scheme) && strings.EqualFold(ref.host, server.host) && ref.port == server.port
		if (err == nil) != wantOK {
			t.Fatalf("default policy on Origin %q, Host %q, TLS %v: %v, want ok = %v", v, host, tls, err, wantOK)
		}
		if err != nil && (!isErr(err, ErrOrigin) || err.(*Error).Status != 403) {
			t.Fatalf("origin refusal %v is not a 403 ErrOrigin", err)
		}
		// With an allow-list, an accepted origin other than the server's
		// must match a pattern.
		p := OriginPolicy{AllowedOrigins: []string{"https://*.example.com", "http://localhost:*"}}
		if p.Check(r) == nil && !wantOK {
			allowed := refOK && (strings.EqualFold(ref.scheme, "https") && ref.port == "" &&
				len(ref.host) > len(".example.com") && strings.HasSuffix(strings.ToLower(ref.host), ".example.com") ||
				strings.EqualFold(ref.scheme, "http") && strings.EqualFold(ref.host, "localhost"))
			if !allowed {
				t.Fatalf("allow-list admitted Origin %q", v)
			}
		}
	})
}

// refParseOrigin is an independent reading of a serialized origin:
// scheme "://" host [":" port], built on net/url.
func refParseOrigin(v string) (origin, bool) {
	u, err := url.Parse(v)
	if err != nil || u.Scheme == "" || u.Opaque != "" || u.User != nil || u.Path != "" || u.RawQuery != "" ||
		u.Fragment != "" || u.ForceQuery || u.OmitHost || len(v) < len(u.Scheme)+3 || !strings.EqualFold(v[:len(u.Scheme)+3], u.Scheme+"://") ||
		strings.Contains(v, "#") {
		return origin{}, false
	}
	host := u.Host
	if host != v[len(u.Scheme)+3:] {
		return origin{}, false
	}
	h, port := host, ""
	if strings.HasPrefix(host, "[") {
		end := strings.IndexByte(host, ']')
		if end < 2 {
			return origin{}, false
		}
		h = host[:end+1]
		for _, c := range []byte(h[1 : len(h)-1]) {
			if !(isHex(c) || c == ':' || c == '.') {
				return origin{}, false
			}
		}
		rest := host[end+1:]
		if rest != "" {
			if rest[0] != ':' {
				return origin{}, false
			}
			port = rest[1:]
			if port == "" {
				return origin{}, false
			}
		}
	} else {
		if i := strings.IndexByte(host, ':'); i >= 0 {
			h, port = host[:i], host[i+1:]
			if port == "" {
				return origin{}, false
			}
		}
		if h == "" {
			return origin{}, false
		}
		for _, c := range []byte(h) {
			if !(isAlnum(c) || c == '-' || c == '.' || c == '_') {
				return origin{}, false
			}
		}
	}
	if len(port) > 5 {
		return origin{}, false
	}
	for _, c := range []byte(port) {
		if c < '0' || c > '9' {
			return origin{}, false
		}
	}
	scheme := strings.ToLower(u.Scheme)
	if port == "80" && (scheme == "http" || scheme == "ws") || port == "443" && (scheme == "https" || scheme == "wss") {
		port = ""
	}
	return origin{scheme: v[:len(u.Scheme)], host: h, port: port}, true
}

func FuzzKey(f *testing.F) {
	for _, s := range []string{
		rfc6455Key,                 // RFC 6455 section 1.3
		"x3JJHMbDL1EzLkh9GBhXDw==", // RFC 6455 section 1.2
		" " + rfc6455Key + "\t",
		"dGhlIHNhbXBsZSBub25jZR==", // non-zero unused bits
		"dGhlIHNhbXBsZSBub25jZQ",
		"dGhlIHNhbXBsZSBub25jZQ=",
		"dGhlIHNhbXBsZSBub25jZQ===",
		"dGhlIHNhbXBsZSBub25jZQ-=",
		"dGhl\nIHNhbXBsZSBub25jZQ==",
		"AAAAAAAAAAAAAAAAAAAAAAAA",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, k string) {
		err := checkKey(k)
		// Reference: std base64 of 16 bytes after trimming spaces and tabs.
		// Go's decoder skips CR and LF inside the input; those can never be
		// in a header value, and CheckKey refuses them.
		trimmed := strings.Trim(k, " \t")
		b, derr := base64.StdEncoding.DecodeString(trimmed)
		want := derr == nil && len(b) == 16 && !strings.ContainsAny(trimmed, "\r\n")
		if (err == nil) != want {
			t.Fatalf("checkKey(%q) = %v, reference valid = %v", k, err, want)
		}
		if err != nil && !isErr(err, ErrHandshake) {
			t.Fatalf("checkKey(%q) = %v, want ErrHandshake", k, err)
		}
		if got := acceptKey(k); len(got) != acceptKeyLen {
			t.Fatalf("acceptKey(%q) has length %d", k, len(got))
		}
	})
}

// fuzzVerifier records the credentials it was handed and accepts secret.
type fuzzVerifier struct {
	mu     sync.Mutex
	tokens []string
	ok     bool
}

func (v *fuzzVerifier) verify(ctx context.Context, c Credential) (user, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.tokens = append(v.tokens, c.Token(), c.Username(), c.Password())
	if c.Token() == secret {
		v.ok = true
		return user{"alice"}, nil
	}
	return user{}, ErrInvalidToken
}

func FuzzHandshake(f *testing.F) {
	type seed struct {
		method, host, upgrade, connection, version, key, origin, protocol, auth, cookie, query, fetchSite string
		flags                                                                                             uint8
	}
	seeds := []seed{
		// Chromium 156, same origin, marker form.
		{"GET", "127.0.0.1:8080", "websocket", "Upgrade", "13", rfc6455Key, "http://127.0.0.1:8080", "chat, access_token, " + secret, "", "", "", "same-origin", 0},
		// Firefox: "keep-alive, Upgrade".
		{"GET", "127.0.0.1:8080", "websocket", "keep-alive, Upgrade", "13", rfc6455Key, "http://127.0.0.1:8080", "", "", "session=" + secret, "", "same-origin", 0},
		// Kubernetes prefix form from kubectl.
		{"GET", "127.0.0.1:8080", "websocket", "Upgrade", "13", rfc6455Key, "", "v5.channel.k8s.io, " + KubernetesPrefix + b64url(secret), "", "", "", "", 0},
		{"GET", "127.0.0.1:8080", "websocket", "Upgrade", "13", rfc6455Key, "", "chat", "Bearer " + secret, "", "", "", 0},
		{"GET", "127.0.0.1:8080", "websocket", "Upgrade", "13", rfc6455Key, "", "", basicAuth(secret, ""), "", "", "", 0},
		{"GET", "127.0.0.1:8080", "websocket", "Upgrade", "13", rfc6455Key, "", "", "", "", "access_token=" + secret, "", 0},
		{"GET", "127.0.0.1:8080", "h2c", "Upgrade, HTTP2-Settings", "13", rfc6455Key, "", "", "Bearer " + secret, "", "", "", 0},
		{"POST", "127.0.0.1:8080", "websocket", "Upgrade", "13", rfc6455Key, "", "", "Bearer " + secret, "", "", "", 1},
		{"GET", "127.0.0.1:8080", "websocket", "Upgrade", "13", rfc6455Key, "http://evil.com", "", "", "session=" + secret, "", "cross-site", 0},
		{"GET", "127.0.0.1:8080", "websocket", "Upgrade", "13", rfc6455Key, "", "access_token, " + secret, "", "", "", "", 0},
		{"GET", "127.0.0.1:8080", "WebSocket", "upgrade", " 13 ", " " + rfc6455Key, "", "chat", "Bearer " + secret, "", "", "", 0},
		{"GET", "127.0.0.1:8080", "websocket", "Upgrade", "8", rfc6455Key, "", "", "Bearer " + secret, "", "", "", 2},
	}
	// net/http admits an empty Host header.
	seeds = append(seeds, seed{"GET", "", "websocket", "Upgrade", "13", rfc6455Key, "", "", "Bearer " + secret, "", "", "", 0})
	for _, s := range seeds {
		f.Add(s.method, s.host, s.upgrade, s.connection, s.version, s.key, s.origin, s.protocol, s.auth, s.cookie, s.query, s.fetchSite, s.flags)
	}
	v := &fuzzVerifier{}
	g := New(v.verify, allWays())
	h := g.Handler(func(ctx context.Context, s Session[user]) {
		if s.Principal.Name != "alice" {
			panic("wrong principal")
		}
	})
	f.Fuzz(func(t *testing.T, method, host, upgrade, connection, version, key, origin, protocol, auth, cookie, query, fetchSite string, flags uint8) {
		r := newHandshake("/ws")
		r.Method = method
		r.Host = host
		r.Header = http.Header{}
		for name, val := range map[string]string{
			hUpgrade: upgrade, hConnection: connection, hWSVersion: version, hWSKey: key, hOrigin: origin,
			hWSProtocol: protocol, hAuth: auth, hCookie: cookie, hFetchSite: fetchSite,
		} {
			if val != "" {
				r.Header[name] = splitLines(val)
			}
		}
		r.URL.RawQuery = query
		r.RequestURI = "/ws?" + query
		switch flags & 3 {
		case 1:
			r.ContentLength = 5
		case 2:
			r.TransferEncoding = []string{"chunked"}
		}
		switch flags >> 2 & 3 {
		case 1:
			r.ProtoMinor = 0
		case 2:
			r.ProtoMajor, r.ProtoMinor = 2, 0
		}
		offeredBefore := append([]string(nil), r.Header[hWSProtocol]...)
		checkErr := CheckHandshake(r)

		v.mu.Lock()
		v.tokens, v.ok = v.tokens[:0], false
		v.mu.Unlock()
		w := newHijackWriter()
		h.ServeHTTP(w, r)

		text := w.responseText()
		resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(text)), r)
		if err != nil {
			t.Fatalf("unreadable response %q: %v", text, err)
		}
		defer resp.Body.Close()
		v.mu.Lock()
		verified, tokens := v.ok, append([]string(nil), v.tokens...)
		v.mu.Unlock()
		if resp.StatusCode == http.StatusSwitchingProtocols {
			if !w.hijacked || checkErr != nil || !verified {
				t.Fatalf("101 with CheckHandshake %v, verified %v", checkErr, verified)
			}
			if p := resp.Header.Values("Sec-Websocket-Protocol"); len(p) > 0 {
				if len(p) != 1 || !offeredEntry(offeredBefore, p[0]) || p[0] == secret {
					t.Fatalf("101 echoes %q; offered %q", p, offeredBefore)
				}
			}
		} else {
			if w.hijacked {
				t.Fatalf("refusal %d written after hijack", resp.StatusCode)
			}
			if resp.StatusCode < 400 {
				t.Fatalf("status %d", resp.StatusCode)
			}
		}
		if strings.Contains(text, secret) || strings.Contains(text, b64url(secret)) {
			t.Fatalf("response contains the token: %q", text)
		}
		// Whatever credential the verifier saw, the answer never repeats
		// it (short values may occur in the fixed texts by chance).
		echoed := resp.Header.Get("Www-Authenticate") + "|" + resp.Header.Get("Sec-Websocket-Protocol")
		for _, tok := range tokens {
			if len(tok) >= 8 && strings.Contains(echoed, tok) {
				t.Fatalf("response repeats credential %q: %q", tok, text)
			}
		}
	})
}

// offeredEntry reports whether p is one of the entries in lines.
func offeredEntry(lines []string, p string) bool {
	for _, line := range lines {
		for _, e := range strings.Split(line, ",") {
			if strings.Trim(e, " \t") == p {
				return true
			}
		}
	}
	return false
}

// FuzzRawHandshake feeds arbitrary bytes to the raw path (Gate.UpgradeConn,
// whose gobwas Upgrader hooks collect the headers): it never panics, answers
// either nothing (no complete request), a 101 for a verified credential or
// an HTTP refusal, and never repeats the credential.
func FuzzRawHandshake(f *testing.F) {
	seeds := []*http.Request{
		newHandshake("/ws", "Sec-WebSocket-Protocol", "chat, access_token, "+secret, "Origin", "http://127.0.0.1:8080"),
		newHandshake("/ws", "Connection", "keep-alive, Upgrade", "Cookie", "session="+secret, "Origin", "http://127.0.0.1:8080"),
		newHandshake("/ws", "Sec-WebSocket-Protocol", "v5.channel.k8s.io, "+KubernetesPrefix+b64url(secret)),
		newHandshake("/ws", "Authorization", "Bearer "+secret, "Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
		newHandshake("/ws", "Authorization", basicAuth(secret, "")),
		newHandshake("/ws?access_token=" + secret + "&room=1"),
		newHandshake("/ws", "Authorization", "Bearer "+secret, "Origin", "http://evil.example"),
	}
	for _, r := range seeds {
		f.Add(wireRequest(r))
	}
	f.Add([]byte("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + rfc6455Key + "\r\nSec-WebSocket-Key: " + rfc6455Key + "\r\n\r\n"))
	f.Add([]byte("POST /ws HTTP/1.0\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"))
	v := &fuzzVerifier{}
	g := New(v.verify, allWays())
	f.Fuzz(func(t *testing.T, wire []byte) {
		v.mu.Lock()
		v.tokens, v.ok = v.tokens[:0], false
		v.mu.Unlock()
		var out bytes.Buffer
		s, err := g.UpgradeConn(&memConn{in: wire, out: &out})
		if err == nil {
			s.Conn.Close()
		}
		text := out.String()
		if strings.Contains(text, secret) || strings.Contains(text, b64url(secret)) {
			t.Fatalf("answer contains the token: %q", text)
		}
		v.mu.Lock()
		verified, tokens := v.ok, append([]string(nil), v.tokens...)
		v.mu.Unlock()
		if text == "" {
			if err == nil {
				t.Fatal("a session without a 101")
			}
			return
		}
		resp, rerr := http.ReadResponse(bufio.NewReader(strings.NewReader(text)), nil)
		if rerr != nil {
			t.Fatalf("unreadable answer %q: %v", text, rerr)
		}
		defer resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusSwitchingProtocols && err == nil:
			if !verified || s.Principal.Name != "alice" {
				t.Fatalf("101 for an unverified credential: %q", text)
			}
			if p := resp.Header.Get("Sec-Websocket-Protocol"); p != "" && p != "chat" && p != DefaultMarker {
				t.Fatalf("101 echoes %q", p)
			}
		case resp.StatusCode < 400 || err == nil:
			t.Fatalf("status %d with error %v", resp.StatusCode, err)
		}
		echoed := resp.Header.Get("Www-Authenticate") + "|" + resp.Header.Get("Sec-Websocket-Protocol")
		for _, tok := range tokens {
			if len(tok) >= 8 && strings.Contains(echoed, tok) {
				t.Fatalf("answer repeats credential %q: %q", tok, text)
			}
		}
	})
}
