// Package jwtverify is a wsgate.Verifier for HS256 JSON Web Tokens, built on
// github.com/golang-jwt/jwt/v5.
package jwtverify

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/wsgate/wsgate"
)

// User is the principal: the token's subject.
type User struct{ Name string }

// Leeway is the clock skew tolerated on exp, nbf and iat.
const Leeway = 5 * time.Second

// Verifier returns a wsgate.Verifier that accepts HS256 tokens signed with
// key, issued by issuer for audience, that carry an expiry and a subject.
//
// The algorithm is pinned: a token's own "alg" header never chooses how it is
// checked, so "none", HS512 and RS256 tokens are refused, and an RSA public
// key can never be mistaken for an HMAC secret. Every refusal wraps both
// wsgate.ErrInvalidToken (answered 401, error="invalid_token") and the jwt
// package's reason (jwt.ErrTokenExpired...), for logs. Neither contains the
// token.
func Verifier(key []byte, issuer, audience string) wsgate.Verifier[User] {
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuer(issuer),
		jwt.WithAudience(audience),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(Leeway),
	)
	keyFunc := func(*jwt.Token) (any, error) { return key, nil }
	return func(_ context.Context, c wsgate.Credential) (User, error) {
		var claims jwt.RegisteredClaims
		if _, err := parser.ParseWithClaims(c.Token(), &claims, keyFunc); err != nil {
			return User{}, fmt.Errorf("%w: %w", wsgate.ErrInvalidToken, err)
		}
		if claims.Subject == "" {
			return User{}, fmt.Errorf("%w: %w", wsgate.ErrInvalidToken, errNoSubject)
		}
		return User{Name: claims.Subject}, nil
	}
}

var errNoSubject = errors.New("token has no subject")
