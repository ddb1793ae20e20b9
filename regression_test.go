package wsgate

import (
	"crypto/tls"
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
