package jwtverify_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/gobwas/ws/wsutil"
	"github.com/golang-jwt/jwt/v5"
	"github.com/wsgate/wsgate"
	"github.com/wsgate/wsgate/examples/internal/wstest"
	"github.com/wsgate/wsgate/examples/jwtverify"
)

// A gate that accepts HS256 JWTs from Authorization: Bearer or, for
// browsers, from new WebSocket(url, ["chat", "access_token", jwt]).
func ExampleVerifier() {
	key := []byte("an HS256 key of at least 32 bytes!")
	verify := jwtverify.Verifier(key, "https://auth.example.com", "wss://chat.example.com")
	gate := wsgate.New(verify, wsgate.Config{Protocols: []string{"chat"}})
	srv := httptest.NewServer(gate.Handler(func(ctx context.Context, s wsgate.Session[jwtverify.User]) {
		_ = wsutil.WriteServerText(s.Conn, []byte("hello "+s.Principal.Name))
	}))
	defer srv.Close()

	// What the login endpoint hands the browser.
	token, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject:   "alice",
		Issuer:    "https://auth.example.com",
		Audience:  jwt.ClaimStrings{"wss://chat.example.com"},
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Minute)),
	}).SignedString(key)

	res, err := wstest.Open(context.Background(), srv.URL, wstest.Subprotocol(token))
	fmt.Println(res.Status, res.Protocol, res.Message, err)
	// Output: 101 chat hello alice <nil>
}
