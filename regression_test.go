package wsgate

import (
	"context"
	"crypto/tls"
	"io"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Found by FuzzOrigin: an origin or Host without a port ("http://example.com",
// "https://app.example.com") failed to parse, so a server on a default port
// refused every browser, and New panicked on AllowedOrigins patterns without
// a port, such as the documented "https://*.example.com".
func TestOriginsWithoutAPortParse(t *testing.T) {
	o, ok := parseOrigin("http://example.com")
	require.True(t, ok)
	assert.Equal(t, origin{scheme: "http", host: "example.com"}, o)

	tests := []struct {
		name   string
		host   string
		tls    bool
		origin string
		policy OriginPolicy
		ok     bool
	}{
		{name: "same origin on port 80", host: "example.com", origin: "http://example.com", ok: true},
		{name: "explicit default port", host: "example.com", origin: "http://example.com:80", ok: true},
		{name: "same origin on port 443", host: "example.com", tls: true, origin: "https://example.com", ok: true},
		{name: "another host on a default port", host: "example.com", origin: "http://evil.com"},
		{name: "no port is port 80, not the server's", host: "127.0.0.1:8080", origin: "http://127.0.0.1"},
		{
			name:   "wildcard pattern without a port",
			host:   "ws.example.com",
			tls:    true,
			origin: "https://app.example.com",
			policy: OriginPolicy{AllowedOrigins: []string{"https://*.example.com"}},
			ok:     true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.NoError(t, tt.policy.validate())
			r := newHandshake("/ws", "Origin", tt.origin)
			r.Host = tt.host
			if tt.tls {
				r.TLS = fakeTLS
			}
			err := tt.policy.Check(r)
			if tt.ok {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, ErrOrigin)
			}
		})
	}
	assert.NotPanics(t, func() {
		New(StaticToken(secret, user{}), Config{Origin: OriginPolicy{AllowedOrigins: []string{"https://*.example.com"}}})
	})
}

// fakeTLS marks a request as having arrived over TLS.
var fakeTLS = &tls.ConnectionState{}

// Found by TestHugeInputCostsNoMoreAllocationsThanSmallInput: every
// percent-encoded query key ("k%5F1=v") cost an allocation in
// url.QueryUnescape, so a query of 5,000 such keys made 5,000 allocations.
// queryKeyIs now compares in place and must agree with url.QueryUnescape.
func TestEscapedQueryKeysCostNoAllocation(t *testing.T) {
	for _, key := range []string{
		"access_token", "access%5Ftoken", "access%5ftoken", "access+token", "access%5", "access%5Gtoken",
		"%61ccess_token", "access_token%", "access_tokenx", "access_toke", "%zz", "+", "access_token%00",
	} {
		u, err := url.QueryUnescape(key)
		assert.Equal(t, err == nil && u == "access_token", queryKeyIs(key, "access_token"), key)
	}
	raw := strings.Repeat("k%5F1=v&", 1000) + "access%5Ftoken=" + secret
	r := newHandshake("/ws?" + raw)
	allocs := testing.AllocsPerRun(20, func() {
		r.URL.RawQuery, r.RequestURI = raw, "/ws?"+raw
		c, err := Query("access_token").Extract(r)
		if err != nil || c.Token() != secret {
			panic(err)
		}
	})
	assert.LessOrEqual(t, allocs, 2.0)
}

// Found while reviewing the loopback tests: net/http admits "Host:" with an
// empty value, CheckHandshake did not look at Host, and gobwas/ws refuses an
// empty Host only after hijacking. The gate verified (and so consumed) the
// credential, then gobwas wrote its own 400 on the hijacked connection. The
// handshake is now refused before verification and before any hijack.
func TestEmptyHostIsRefusedBeforeVerification(t *testing.T) {
	var calls atomic.Int64
	g := New(func(context.Context, Credential) (user, error) {
		calls.Add(1)
		return user{"alice"}, nil
	}, Config{})
	cs := newCountingServer(t, g)
	c := dialRaw(t, cs.addr)
	defer c.Close()
	req := strings.Replace(handshakeText("/ws", cs.addr, "Authorization: Bearer "+secret), "Host: "+cs.addr, "Host:", 1)
	_, err := io.WriteString(c, req)
	require.NoError(t, err)
	resp, body, err := c.response()
	require.NoError(t, err)
	assert.Equal(t, 400, resp.StatusCode)
	assert.Equal(t, "Host header required\n", body)
	assert.True(t, resp.Close)
	assert.Zero(t, calls.Load(), "the verifier must not run")
	assert.Zero(t, cs.sessions.Load())

	r := newHandshake("/ws")
	r.Host = ""
	assert.ErrorIs(t, CheckHandshake(r), ErrHandshake)
}
