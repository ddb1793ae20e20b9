package jwtverify_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/golang-jwt/jwt/v5"
	"github.com/wsgate/wsgate"
	"github.com/wsgate/wsgate/examples/internal/wstest"
	"github.com/wsgate/wsgate/examples/jwtverify"
)

var (
	key      = []byte("an HS256 key of at least 32 bytes!")
	issuer   = "https://auth.example.com"
	audience = "wss://chat.example.com"
)

// claims returns valid claims for alice; tests spoil one field at a time.
func claims() jwt.RegisteredClaims {
	now := time.Now()
	return jwt.RegisteredClaims{
		Subject:   "alice",
		Issuer:    issuer,
		Audience:  jwt.ClaimStrings{audience},
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(time.Minute)),
	}
}

func sign(t *testing.T, m jwt.SigningMethod, k any, c jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	gate := wsgate.New(jwtverify.Verifier(key, issuer, audience), wsgate.Config{Protocols: []string{"chat"}})
	srv := httptest.NewServer(gate.Handler(func(ctx context.Context, s wsgate.Session[jwtverify.User]) {
		_ = wsutil.WriteServerText(s.Conn, []byte("hello "+s.Principal.Name))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestJWTAcceptsAValidTokenFromEitherPlace(t *testing.T) {
	srv := newServer(t)
	token := sign(t, jwt.SigningMethodHS256, key, claims())
	for name, d := range map[string]func(string) ws.Dialer{"bearer": wstest.Bearer, "subprotocol": wstest.Subprotocol} {
		res, err := wstest.Open(context.Background(), srv.URL, d(token))
		if err != nil {
			t.Fatal(name, err)
		}
		if res.Status != http.StatusSwitchingProtocols || res.Message != "hello alice" {
			t.Errorf("%s: got %d %q, want 101 %q", name, res.Status, res.Message, "hello alice")
		}
	}
}

func TestJWTRefusesTokensThatMustNotPass(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	with := func(f func(*jwt.RegisteredClaims)) jwt.RegisteredClaims {
		c := claims()
		f(&c)
		return c
	}
	tests := []struct {
		name   string
		token  string
		reason error // what the verifier's error wraps besides ErrInvalidToken
	}{
		{
			name:   "alg none is refused",
			token:  sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims()),
			reason: jwt.ErrTokenSignatureInvalid,
		},
		{
			name:   "HS512 with the right key is refused because the algorithm is pinned",
			token:  sign(t, jwt.SigningMethodHS512, key, claims()),
			reason: jwt.ErrTokenSignatureInvalid,
		},
		{
			name:   "RS256 is refused because the algorithm is pinned",
			token:  sign(t, jwt.SigningMethodRS256, rsaKey, claims()),
			reason: jwt.ErrTokenSignatureInvalid,
		},
		{
			name:   "HS256 signed with another key is refused",
			token:  sign(t, jwt.SigningMethodHS256, []byte("another key of at least 32 bytes!!"), claims()),
			reason: jwt.ErrTokenSignatureInvalid,
		},
		{
			name:   "an expired token is refused",
			token:  sign(t, jwt.SigningMethodHS256, key, with(func(c *jwt.RegisteredClaims) { c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Minute)) })),
			reason: jwt.ErrTokenExpired,
		},
		{
			name:   "a token without expiry is refused",
			token:  sign(t, jwt.SigningMethodHS256, key, with(func(c *jwt.RegisteredClaims) { c.ExpiresAt = nil })),
			reason: jwt.ErrTokenRequiredClaimMissing,
		},
		{
			name:   "a token for another audience is refused",
			token:  sign(t, jwt.SigningMethodHS256, key, with(func(c *jwt.RegisteredClaims) { c.Audience = jwt.ClaimStrings{"wss://other.example.com"} })),
			reason: jwt.ErrTokenInvalidAudience,
		},
		{
			name:   "a token from another issuer is refused",
			token:  sign(t, jwt.SigningMethodHS256, key, with(func(c *jwt.RegisteredClaims) { c.Issuer = "https://evil.example.com" })),
			reason: jwt.ErrTokenInvalidIssuer,
		},
		{
			name:   "a token not valid before a future time is refused",
			token:  sign(t, jwt.SigningMethodHS256, key, with(func(c *jwt.RegisteredClaims) { c.NotBefore = jwt.NewNumericDate(time.Now().Add(time.Hour)) })),
			reason: jwt.ErrTokenNotValidYet,
		},
		{
			name:   "a token without subject is refused",
			token:  sign(t, jwt.SigningMethodHS256, key, with(func(c *jwt.RegisteredClaims) { c.Subject = "" })),
			reason: nil,
		},
	}
	srv := newServer(t)
	verify := jwtverify.Verifier(key, issuer, audience)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := verify(context.Background(), wsgate.NewCredential(wsgate.SourceBearer, tt.token))
			if !errors.Is(err, wsgate.ErrInvalidToken) || tt.reason != nil && !errors.Is(err, tt.reason) {
				t.Errorf("verifier error %v, want one wrapping ErrInvalidToken and %v", err, tt.reason)
			}
			if err != nil && strings.Contains(err.Error(), tt.token) {
				t.Errorf("verifier error repeats the token: %v", err)
			}

			res, err := wstest.Open(context.Background(), srv.URL, wstest.Bearer(tt.token))
			if err != nil {
				t.Fatal(err)
			}
			got := res.Header.Get("WWW-Authenticate")
			if res.Status != http.StatusUnauthorized || !strings.Contains(got, `error="invalid_token"`) {
				t.Errorf("got %d, WWW-Authenticate %q; want 401 with error=\"invalid_token\"", res.Status, got)
			}
		})
	}
}
