package wsgate

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOriginPolicyCheck(t *testing.T) {
	subdomains := OriginPolicy{AllowedOrigins: []string{"https://*.example.com"}}
	subdomainsPort := OriginPolicy{AllowedOrigins: []string{"https://*.example.com:8443"}}
	localhost := OriginPolicy{AllowedOrigins: []string{"http://localhost:*"}}
	forwarded := OriginPolicy{TrustForwardedHeaders: true}

	tests := []struct {
		name   string
		policy OriginPolicy
		host   string
		tls    bool
		header http.Header
		wantOK bool
	}{
		// Same origin.
		{
			name:   "passes the same http origin",
			host:   "127.0.0.1:8080",
			header: http.Header{"Origin": {"http://127.0.0.1:8080"}},
			wantOK: true,
		},
		{
			name:   "passes the same https origin over TLS",
			host:   "example.com",
			tls:    true,
			header: http.Header{"Origin": {"https://example.com"}},
			wantOK: true,
		},
		{
			name:   "passes an explicit port 80 in the origin against a host without port",
			host:   "example.com",
			header: http.Header{"Origin": {"http://example.com:80"}},
			wantOK: true,
		},
		{
			name:   "passes an origin without port against a host with port 80",
			host:   "example.com:80",
			header: http.Header{"Origin": {"http://example.com"}},
			wantOK: true,
		},
		{
			name:   "passes an explicit port 443 in the origin against a TLS host without port",
			host:   "example.com",
			tls:    true,
			header: http.Header{"Origin": {"https://example.com:443"}},
			wantOK: true,
		},
		{
			name:   "passes an origin without port against a TLS host with port 443",
			host:   "example.com:443",
			tls:    true,
			header: http.Header{"Origin": {"https://example.com"}},
			wantOK: true,
		},
		{
			name:   "compares hosts case-insensitively",
			host:   "Example.COM:8080",
			header: http.Header{"Origin": {"http://EXAMPLE.com:8080"}},
			wantOK: true,
		},
		{
			name:   "passes the same IPv6 origin",
			host:   "[::1]:8080",
			header: http.Header{"Origin": {"http://[::1]:8080"}},
			wantOK: true,
		},
		{
			name:   "passes the same https origin on a non-default port over TLS",
			host:   "example.com:8443",
			tls:    true,
			header: http.Header{"Origin": {"https://example.com:8443"}},
			wantOK: true,
		},
		{
			name:   "passes the same IPv6 origin without port",
			host:   "[::1]",
			header: http.Header{"Origin": {"http://[::1]:80"}},
			wantOK: true,
		},
		{
			name:   "passes a request without Origin",
			host:   "127.0.0.1:8080",
			header: http.Header{},
			wantOK: true,
		},

		// Other origins.
		{
			name:   "refuses another host",
			host:   "127.0.0.1:8080",
			header: http.Header{"Origin": {"http://evil.com:8080"}},
		},
		{
			name:   "refuses another port on the same host",
			host:   "127.0.0.1:8080",
			header: http.Header{"Origin": {"http://127.0.0.1:8081"}},
		},
		{
			name:   "refuses the default port when the server has another",
			host:   "127.0.0.1:8080",
			header: http.Header{"Origin": {"http://127.0.0.1"}},
		},
		{
			name:   "refuses https against a plain-http server",
			host:   "127.0.0.1:8080",
			header: http.Header{"Origin": {"https://127.0.0.1:8080"}},
		},
		{
			name:   "refuses http against a TLS server",
			host:   "example.com",
			tls:    true,
			header: http.Header{"Origin": {"http://example.com"}},
		},
		{
			name:   "refuses http on port 443 against a TLS server",
			host:   "example.com",
			tls:    true,
			header: http.Header{"Origin": {"http://example.com:443"}},
		},
		{
			name:   "refuses http on a TLS server's non-default port",
			host:   "example.com:8443",
			tls:    true,
			header: http.Header{"Origin": {"http://example.com:8443"}},
		},
		{
			name:   "refuses another IPv6 port",
			host:   "[::1]:8080",
			header: http.Header{"Origin": {"http://[::1]:8081"}},
		},
		{
			name:   "refuses the IPv4 loopback against an IPv6 host",
			host:   "[::1]:8080",
			header: http.Header{"Origin": {"http://127.0.0.1:8080"}},
		},
		{
			name:   "refuses a look-alike domain ending in another domain",
			host:   "example.com",
			header: http.Header{"Origin": {"http://example.com.evil.com"}},
		},
		{
			name:   "refuses a look-alike domain with the host as suffix",
			host:   "example.com",
			header: http.Header{"Origin": {"http://evilexample.com"}},
		},

		// Malformed Origin values.
		{
			name:   "refuses the null origin",
			host:   "127.0.0.1:8080",
			header: http.Header{"Origin": {"null"}},
		},
		{
			name:   "refuses userinfo that hides the real host",
			host:   "127.0.0.1:8080",
			header: http.Header{"Origin": {"http://127.0.0.1:8080@evil.com"}},
		},
		{
			name:   "refuses userinfo before the server's host",
			host:   "127.0.0.1:8080",
			header: http.Header{"Origin": {"http://evil.com@127.0.0.1:8080"}},
		},
		{
			name:   "refuses a trailing slash",
			host:   "127.0.0.1:8080",
			header: http.Header{"Origin": {"http://127.0.0.1:8080/"}},
		},
		{
			name:   "refuses a trailing slash without port",
			host:   "example.com",
			header: http.Header{"Origin": {"http://example.com/"}},
		},
		{
			name:   "refuses an empty value",
			host:   "127.0.0.1:8080",
			header: http.Header{"Origin": {""}},
		},
		{
			name:   "refuses two Origin lines even when both are the same origin",
			host:   "127.0.0.1:8080",
			header: http.Header{"Origin": {"http://127.0.0.1:8080", "http://127.0.0.1:8080"}},
		},
		{
			name:   "refuses garbage",
			host:   "127.0.0.1:8080",
			header: http.Header{"Origin": {"not an origin"}},
		},
		{
			name:   "refuses a value without scheme",
			host:   "127.0.0.1:8080",
			header: http.Header{"Origin": {"127.0.0.1:8080"}},
		},
		{
			name:   "refuses a host with a trailing space",
			host:   "127.0.0.1:8080",
			header: http.Header{"Origin": {"http://127.0.0.1:8080 "}},
		},
		{
			name:   "refuses a server whose Host header cannot be parsed",
			host:   "127.0.0.1:8080/x",
			header: http.Header{"Origin": {"http://127.0.0.1:8080"}},
		},

		// RequireOrigin.
		{
			name:   "refuses a request without Origin under RequireOrigin",
			policy: OriginPolicy{RequireOrigin: true},
			host:   "127.0.0.1:8080",
			header: http.Header{},
		},
		{
			name:   "passes the same origin under RequireOrigin",
			policy: OriginPolicy{RequireOrigin: true},
			host:   "127.0.0.1:8080",
			header: http.Header{"Origin": {"http://127.0.0.1:8080"}},
			wantOK: true,
		},

		// AllowedOrigins "https://*.example.com".
		{
			name:   "passes a subdomain of a wildcard pattern",
			policy: subdomains,
			host:   "app.internal:8080",
			header: http.Header{"Origin": {"https://a.example.com"}},
			wantOK: true,
		},
		{
			name:   "passes a nested subdomain of a wildcard pattern",
			policy: subdomains,
			host:   "app.internal:8080",
			header: http.Header{"Origin": {"https://a.b.example.com"}},
			wantOK: true,
		},
		{
			name:   "matches a wildcard pattern case-insensitively",
			policy: subdomains,
			host:   "app.internal:8080",
			header: http.Header{"Origin": {"https://A.EXAMPLE.COM"}},
			wantOK: true,
		},
		{
			name:   "passes the pattern's default port spelled out",
			policy: subdomains,
			host:   "app.internal:8080",
			header: http.Header{"Origin": {"https://a.example.com:443"}},
			wantOK: true,
		},
		{
			name:   "still passes the server's own origin with an allow-list",
			policy: subdomains,
			host:   "app.internal:8080",
			header: http.Header{"Origin": {"http://app.internal:8080"}},
			wantOK: true,
		},
		{
			name:   "refuses the bare domain of a wildcard pattern",
			policy: subdomains,
			host:   "app.internal:8080",
			header: http.Header{"Origin": {"https://example.com"}},
		},
		{
			name:   "refuses a domain that continues past the wildcard pattern",
			policy: subdomains,
			host:   "app.internal:8080",
			header: http.Header{"Origin": {"https://example.com.evil.com"}},
		},
		{
			name:   "refuses a subdomain look-alike of the wildcard pattern",
			policy: subdomains,
			host:   "app.internal:8080",
			header: http.Header{"Origin": {"https://a.example.com.evil.com"}},
		},
		{
			name:   "refuses a domain with the pattern's domain as suffix",
			policy: subdomains,
			host:   "app.internal:8080",
			header: http.Header{"Origin": {"https://evilexample.com"}},
		},
		{
			name:   "refuses another scheme than the wildcard pattern's",
			policy: subdomains,
			host:   "app.internal:8080",
			header: http.Header{"Origin": {"http://a.example.com"}},
		},
		{
			name:   "refuses another port than the wildcard pattern's default",
			policy: subdomains,
			host:   "app.internal:8080",
			header: http.Header{"Origin": {"https://a.example.com:8443"}},
		},

		// AllowedOrigins "https://*.example.com:8443", which parses today.
		{
			name:   "passes a subdomain of a wildcard pattern with a port",
			policy: subdomainsPort,
			host:   "app.internal:8080",
			header: http.Header{"Origin": {"https://a.example.com:8443"}},
			wantOK: true,
		},
		{
			name:   "passes a nested subdomain of a wildcard pattern with a port",
			policy: subdomainsPort,
			host:   "app.internal:8080",
			header: http.Header{"Origin": {"https://a.b.example.com:8443"}},
			wantOK: true,
		},
		{
			name:   "matches a wildcard pattern with a port case-insensitively",
			policy: subdomainsPort,
			host:   "app.internal:8080",
			header: http.Header{"Origin": {"https://A.Example.COM:8443"}},
			wantOK: true,
		},
		{
			name:   "refuses the bare domain of a wildcard pattern with a port",
			policy: subdomainsPort,
			host:   "app.internal:8080",
			header: http.Header{"Origin": {"https://example.com:8443"}},
		},
		{
			name:   "refuses a domain that continues past a wildcard pattern with a port",
			policy: subdomainsPort,
			host:   "app.internal:8080",
			header: http.Header{"Origin": {"https://a.example.com.evil.com:8443"}},
		},
		{
			name:   "refuses a domain with a wildcard pattern's domain as suffix",
			policy: subdomainsPort,
			host:   "app.internal:8080",
			header: http.Header{"Origin": {"https://evilexample.com:8443"}},
		},
		{
			name:   "refuses a dot-only label before a wildcard pattern's domain",
			policy: subdomainsPort,
			host:   "app.internal:8080",
			header: http.Header{"Origin": {"https://.example.com:8443"}},
		},
		{
			name:   "refuses another port than a wildcard pattern's",
			policy: subdomainsPort,
			host:   "app.internal:8080",
			header: http.Header{"Origin": {"https://a.example.com:9443"}},
		},

		// AllowedOrigins with a default port, and an IPv6 any-port pattern.
		{
			name:   "passes an allowed origin whose default port is spelled out on both sides",
			policy: OriginPolicy{AllowedOrigins: []string{"https://app.example.com:443"}},
			host:   "127.0.0.1:8080",
			header: http.Header{"Origin": {"https://app.example.com:443"}},
			wantOK: true,
		},
		{
			name:   "passes any port of an IPv6 any-port pattern",
			policy: OriginPolicy{AllowedOrigins: []string{"http://[::1]:*"}},
			host:   "127.0.0.1:8080",
			header: http.Header{"Origin": {"http://[::1]:3000"}},
			wantOK: true,
		},
		{
			name:   "refuses another scheme than an IPv6 any-port pattern's",
			policy: OriginPolicy{AllowedOrigins: []string{"http://[::1]:*"}},
			host:   "127.0.0.1:8080",
			header: http.Header{"Origin": {"https://[::1]:3000"}},
		},

		// AllowedOrigins "http://localhost:*".
		{
			name:   "passes any port of an any-port pattern",
			policy: localhost,
			host:   "127.0.0.1:8080",
			header: http.Header{"Origin": {"http://localhost:3000"}},
			wantOK: true,
		},
		{
			name:   "passes the default port of an any-port pattern",
			policy: localhost,
			host:   "127.0.0.1:8080",
			header: http.Header{"Origin": {"http://localhost"}},
			wantOK: true,
		},
		{
			name:   "refuses another scheme than the any-port pattern's",
			policy: localhost,
			host:   "127.0.0.1:8080",
			header: http.Header{"Origin": {"https://localhost:3000"}},
		},
		{
			name:   "refuses a subdomain of an any-port pattern's host",
			policy: localhost,
			host:   "127.0.0.1:8080",
			header: http.Header{"Origin": {"http://evil.localhost:3000"}},
		},
		{
			name:   "refuses a domain that continues past the any-port pattern's host",
			policy: localhost,
			host:   "127.0.0.1:8080",
			header: http.Header{"Origin": {"http://localhost.evil.com:3000"}},
		},
		{
			name:   "refuses the null origin with an allow-list",
			policy: localhost,
			host:   "127.0.0.1:8080",
			header: http.Header{"Origin": {"null"}},
		},

		// TrustForwardedHeaders.
		{
			name:   "takes scheme and host from forwarded headers when trusted",
			policy: forwarded,
			host:   "10.0.0.5:8080",
			header: http.Header{
				"Origin":            {"https://app.example.com"},
				"X-Forwarded-Proto": {"https"},
				"X-Forwarded-Host":  {"app.example.com"},
			},
			wantOK: true,
		},
		{
			name: "ignores forwarded headers when not trusted",
			host: "10.0.0.5:8080",
			header: http.Header{
				"Origin":            {"https://app.example.com"},
				"X-Forwarded-Proto": {"https"},
				"X-Forwarded-Host":  {"app.example.com"},
			},
		},
		{
			name: "keeps the real host when forwarded headers are not trusted",
			host: "10.0.0.5:8080",
			header: http.Header{
				"Origin":            {"http://10.0.0.5:8080"},
				"X-Forwarded-Proto": {"https"},
				"X-Forwarded-Host":  {"app.example.com"},
			},
			wantOK: true,
		},
		{
			name:   "replaces the real host with trusted forwarded headers",
			policy: forwarded,
			host:   "10.0.0.5:8080",
			header: http.Header{
				"Origin":            {"http://10.0.0.5:8080"},
				"X-Forwarded-Proto": {"https"},
				"X-Forwarded-Host":  {"app.example.com"},
			},
		},
		{
			name:   "falls back to the request when trusted forwarded headers are absent",
			policy: forwarded,
			host:   "10.0.0.5:8080",
			header: http.Header{"Origin": {"http://10.0.0.5:8080"}},
			wantOK: true,
		},
		{
			name:   "combines a trusted forwarded scheme with the request host",
			policy: forwarded,
			host:   "app.example.com",
			header: http.Header{
				"Origin":            {"https://app.example.com"},
				"X-Forwarded-Proto": {"https"},
			},
			wantOK: true,
		},
		{
			name:   "takes a forwarded host with a port when trusted",
			policy: forwarded,
			host:   "10.0.0.5:8080",
			header: http.Header{
				"Origin":            {"https://app.example.com:8443"},
				"X-Forwarded-Proto": {"https"},
				"X-Forwarded-Host":  {"app.example.com:8443"},
			},
			wantOK: true,
		},
		{
			name:   "uses the first element of a trusted forwarded list with ports",
			policy: forwarded,
			host:   "10.0.0.5:8080",
			header: http.Header{
				"Origin":            {"https://app.example.com:8443"},
				"X-Forwarded-Proto": {"https, http"},
				"X-Forwarded-Host":  {"app.example.com:8443, proxy.internal:80"},
			},
			wantOK: true,
		},
		{
			name:   "uses the first element of a trusted forwarded list",
			policy: forwarded,
			host:   "10.0.0.5:8080",
			header: http.Header{
				"Origin":            {"https://app.example.com"},
				"X-Forwarded-Proto": {"https, http"},
				"X-Forwarded-Host":  {"app.example.com, proxy.internal"},
			},
			wantOK: true,
		},
		{
			name:   "refuses a later element of a trusted forwarded list",
			policy: forwarded,
			host:   "10.0.0.5:8080",
			header: http.Header{
				"Origin":            {"https://proxy.internal"},
				"X-Forwarded-Proto": {"https"},
				"X-Forwarded-Host":  {"app.example.com, proxy.internal"},
			},
		},

		// InsecureSkipOriginCheck.
		{
			name:   "passes another host when the check is skipped",
			policy: OriginPolicy{InsecureSkipOriginCheck: true},
			host:   "127.0.0.1:8080",
			header: http.Header{"Origin": {"https://evil.com"}},
			wantOK: true,
		},
		{
			name:   "passes the null origin when the check is skipped",
			policy: OriginPolicy{InsecureSkipOriginCheck: true},
			host:   "127.0.0.1:8080",
			header: http.Header{"Origin": {"null"}},
			wantOK: true,
		},
		{
			name:   "passes two Origin lines when the check is skipped",
			policy: OriginPolicy{InsecureSkipOriginCheck: true},
			host:   "127.0.0.1:8080",
			header: http.Header{"Origin": {"https://evil.com", "garbage"}},
			wantOK: true,
		},
		{
			name:   "passes a missing Origin when the check is skipped despite RequireOrigin",
			policy: OriginPolicy{InsecureSkipOriginCheck: true, RequireOrigin: true},
			host:   "127.0.0.1:8080",
			header: http.Header{},
			wantOK: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/ws", nil)
			r.Host = tc.host
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
			for k, vs := range tc.header {
				r.Header[k] = append([]string(nil), vs...)
			}

			err := tc.policy.Check(r)

			if tc.wantOK {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrOrigin)
			var e *Error
			require.ErrorAs(t, err, &e)
			assert.Equal(t, http.StatusForbidden, e.Status)
		})
	}
}

// TestOriginPolicyCheckRefusesCrossSiteFetch documents a mismatch between
// OriginPolicy's doc comment ("When AllowedOrigins is empty, a request marked
// Sec-Fetch-Site: cross-site is refused as well") and Check, which leaves
// that test to the Gate (checkFetchSite), so a caller using the policy on its
// own does not get it.
func TestOriginPolicyCheckRefusesCrossSiteFetch(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/ws", nil)
	r.Host = "127.0.0.1:8080"
	r.Header.Set("Sec-Fetch-Site", "cross-site")

	var p OriginPolicy
	err := p.Check(r)

	require.ErrorIs(t, err, ErrOrigin)
}

func TestOriginPolicyCheckAllocatesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts are not measured in -short mode")
	}
	p := OriginPolicy{AllowedOrigins: []string{"http://[::1]:*", "https://*.example.com:8443"}}
	r := httptest.NewRequest(http.MethodGet, "/ws", nil)
	r.Host = "127.0.0.1:8080"
	r.Header.Set("Origin", "https://a.example.com:8443")

	var err error
	allocs := testing.AllocsPerRun(100, func() { err = p.Check(r) })

	require.NoError(t, err, "the measured call went through the allow-list")
	assert.Zero(t, allocs)
}

func TestParseOrigin(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		want   origin
		wantOK bool
	}{
		{
			name:   "parses scheme, host and port",
			in:     "http://127.0.0.1:8080",
			want:   origin{scheme: "http", host: "127.0.0.1", port: "8080"},
			wantOK: true,
		},
		{
			name:   "parses an origin without port",
			in:     "https://example.com",
			want:   origin{scheme: "https", host: "example.com"},
			wantOK: true,
		},
		{
			name:   "drops port 80 of http",
			in:     "http://example.com:80",
			want:   origin{scheme: "http", host: "example.com"},
			wantOK: true,
		},
		{
			name:   "drops port 443 of https",
			in:     "https://example.com:443",
			want:   origin{scheme: "https", host: "example.com"},
			wantOK: true,
		},
		{
			name:   "drops the default port of an upper-case scheme",
			in:     "HTTPS://example.com:443",
			want:   origin{scheme: "HTTPS", host: "example.com"},
			wantOK: true,
		},
		{
			name:   "keeps port 443 of http",
			in:     "http://example.com:443",
			want:   origin{scheme: "http", host: "example.com", port: "443"},
			wantOK: true,
		},
		{
			name:   "keeps port 80 of https",
			in:     "https://example.com:80",
			want:   origin{scheme: "https", host: "example.com", port: "80"},
			wantOK: true,
		},
		{
			name:   "parses a bracketed IPv6 host with port",
			in:     "http://[::1]:8080",
			want:   origin{scheme: "http", host: "[::1]", port: "8080"},
			wantOK: true,
		},
		{
			name:   "parses a bracketed IPv6 host without port",
			in:     "https://[2001:db8::1]",
			want:   origin{scheme: "https", host: "[2001:db8::1]"},
			wantOK: true,
		},
		{
			name: "refuses null",
			in:   "null",
		},
		{
			name: "refuses an empty value",
			in:   "",
		},
		{
			name: "refuses a missing scheme",
			in:   "://example.com",
		},
		{
			name: "refuses a scheme starting with a digit",
			in:   "1http://example.com",
		},
		{
			name: "refuses an empty host",
			in:   "http://",
		},
		{
			name: "refuses an empty host with port",
			in:   "http://:8080",
		},
		{
			name: "refuses an empty port",
			in:   "http://example.com:",
		},
		{
			name: "refuses a non-numeric port",
			in:   "http://example.com:80a",
		},
		{
			name: "refuses a port longer than five digits",
			in:   "http://example.com:123456",
		},
		{
			name: "refuses two ports",
			in:   "http://example.com:80:81",
		},
		{
			name: "refuses userinfo",
			in:   "http://user@example.com",
		},
		{
			name: "refuses userinfo after the port",
			in:   "http://127.0.0.1:8080@evil.com",
		},
		{
			name: "refuses a path",
			in:   "http://example.com/",
		},
		{
			name: "refuses a query",
			in:   "http://example.com?x",
		},
		{
			name: "refuses a fragment after the port",
			in:   "http://example.com:8080#x",
		},
		{
			name: "refuses a space in the host",
			in:   "http://exa mple.com",
		},
		{
			name: "refuses an unclosed IPv6 bracket",
			in:   "http://[::1",
		},
		{
			name: "refuses empty IPv6 brackets",
			in:   "http://[]:8080",
		},
		{
			name: "refuses a non-hex IPv6 host",
			in:   "http://[::g]:8080",
		},
		{
			name: "refuses text after the IPv6 bracket",
			in:   "http://[::1]x",
		},
		{
			name: "refuses an IPv6 host with an empty port",
			in:   "http://[::1]:",
		},
		{
			name: "refuses an unbracketed IPv6 host",
			in:   "http://::1",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseOrigin(tc.in)

			require.Equal(t, tc.wantOK, ok)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestParseOriginPattern(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		want   originPattern
		wantOK bool
	}{
		{
			name:   "parses an exact origin",
			in:     "https://app.example.com",
			want:   originPattern{scheme: "https", host: "app.example.com"},
			wantOK: true,
		},
		{
			name:   "parses a subdomain wildcard",
			in:     "https://*.example.com",
			want:   originPattern{scheme: "https", host: "example.com", wildcard: true},
			wantOK: true,
		},
		{
			name:   "parses an any-port pattern",
			in:     "http://localhost:*",
			want:   originPattern{scheme: "http", host: "localhost", anyPort: true},
			wantOK: true,
		},
		{
			name:   "parses a wildcard with any port",
			in:     "http://*.example.com:*",
			want:   originPattern{scheme: "http", host: "example.com", wildcard: true, anyPort: true},
			wantOK: true,
		},
		{
			name:   "drops the scheme's default port",
			in:     "https://example.com:443",
			want:   originPattern{scheme: "https", host: "example.com"},
			wantOK: true,
		},
		{
			name:   "keeps another port",
			in:     "https://example.com:8443",
			want:   originPattern{scheme: "https", host: "example.com", port: "8443"},
			wantOK: true,
		},
		{
			name:   "parses a subdomain wildcard with a port",
			in:     "https://*.example.com:8443",
			want:   originPattern{scheme: "https", host: "example.com", wildcard: true, port: "8443"},
			wantOK: true,
		},
		{
			name:   "parses an IPv6 host with any port",
			in:     "http://[::1]:*",
			want:   originPattern{scheme: "http", host: "[::1]", anyPort: true},
			wantOK: true,
		},
		{
			name: "refuses a pattern without scheme",
			in:   "example.com",
		},
		{
			name: "refuses a wildcard without scheme",
			in:   "*.example.com",
		},
		{
			name: "refuses a bare wildcard host",
			in:   "https://*",
		},
		{
			name: "refuses a wildcard with nothing after the dot",
			in:   "https://*.",
		},
		{
			name: "refuses a wildcard inside the host",
			in:   "https://a.*.example.com",
		},
		{
			name: "refuses two wildcards",
			in:   "https://*.*.example.com",
		},
		{
			name: "refuses a trailing slash",
			in:   "https://*.example.com/",
		},
		{
			name: "refuses a port and an any-port star",
			in:   "https://example.com:8080:*",
		},
		{
			name: "refuses a partial port wildcard",
			in:   "https://example.com:80*",
		},
		{
			name: "refuses userinfo",
			in:   "https://user@example.com",
		},
		{
			name: "refuses an empty pattern",
			in:   "",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseOriginPattern(tc.in)

			require.Equal(t, tc.wantOK, ok)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestNewPanicsOnMalformedAllowedOrigins(t *testing.T) {
	verify := StaticToken("tok", "alice")
	newGate := func(pattern string) func() {
		return func() {
			New(verify, Config{Origin: OriginPolicy{AllowedOrigins: []string{"https://app.example.com:8443", pattern}}})
		}
	}

	tests := []struct {
		name      string
		pattern   string
		wantPanic bool
	}{
		{
			name:      "panics on a pattern without scheme",
			pattern:   "example.com",
			wantPanic: true,
		},
		{
			name:      "panics on a pattern with a path",
			pattern:   "https://example.com/ws",
			wantPanic: true,
		},
		{
			name:      "panics on a bare wildcard",
			pattern:   "https://*",
			wantPanic: true,
		},
		{
			name:      "panics on an empty pattern",
			pattern:   "",
			wantPanic: true,
		},
		{
			name:    "accepts a wildcard pattern with a port",
			pattern: "https://*.example.com:8443",
		},
		{
			name:    "accepts a wildcard pattern",
			pattern: "https://*.example.com",
		},
		{
			name:    "accepts the documented any-port pattern",
			pattern: "http://localhost:*",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.wantPanic {
				assert.NotPanics(t, newGate(tc.pattern))
				return
			}
			var recovered any
			func() {
				defer func() { recovered = recover() }()
				newGate(tc.pattern)()
			}()
			require.NotNil(t, recovered, "New must panic")
			err, ok := recovered.(error)
			require.True(t, ok, "New panics with an error, got %T", recovered)
			assert.Contains(t, err.Error(), "AllowedOrigins")
			assert.Contains(t, err.Error(), `"`+tc.pattern+`"`, "the message names the bad pattern")
		})
	}
}

func TestSameOriginFastPathAgreesWithThePolicy(t *testing.T) {
	var p OriginPolicy
	for _, tc := range []struct {
		host, origin string
		tls          bool
	}{
		{"127.0.0.1:8080", "http://127.0.0.1:8080", false},
		{"Example.COM", "http://example.com", false},
		{"example.com", "https://example.com", true},
		{"example.com", "https://example.com", false},
		{"example.com:80", "http://example.com:80", false},
		{"example.com", "http://example.com:80", false},
		{"[::1]:9", "http://[::1]:9", false},
		{"example.com", "http://example.com.", false},
		{"example.com", "http://evil.example", false},
	} {
		r := httptest.NewRequest(http.MethodGet, "/ws", nil)
		r.Host = tc.host
		if tc.tls {
			r.TLS = &tls.ConnectionState{}
		}
		if p.sameOriginFast(r, tc.origin) {
			assert.Nil(t, p.check(r, []string{tc.origin}), "%s at %s: the fast path allowed what the policy refuses", tc.origin, tc.host)
		}
	}
	r := httptest.NewRequest(http.MethodGet, "/ws", nil)
	r.Host = "127.0.0.1:8080"
	assert.True(t, p.sameOriginFast(r, "http://127.0.0.1:8080"))
	assert.False(t, (&OriginPolicy{TrustForwardedHeaders: true}).sameOriginFast(r, "http://127.0.0.1:8080"))
}
