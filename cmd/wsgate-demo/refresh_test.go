package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// shortToken fetches a token from POST /short-token with the demo token.
func shortToken(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/short-token", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+testToken)
	res, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	var body struct {
		Token     string  `json:"token"`
		ExpiresIn float64 `json:"expires_in"`
	}
	require.NoError(t, json.NewDecoder(res.Body).Decode(&body))
	require.NotEmpty(t, body.Token)
	assert.Equal(t, shortTokenTTL.Seconds(), body.ExpiresIn)
	return body.Token
}

// dialRefresh opens /ws-refresh with token and reads the hello.
func dialRefresh(t *testing.T, srv *httptest.Server, token string) dialed {
	t.Helper()
	d := dial(t, endpointURL(srv, pathRefresh, ""), []string{"chat", "access_token", token}, nil)
	require.Equal(t, http.StatusSwitchingProtocols, d.status)
	p, source, protocol := readHello(t, d)
	assert.Equal(t, user{Name: "demo-user"}, p)
	assert.Equal(t, "subprotocol", source)
	assert.Equal(t, "chat", protocol)
	return d
}

// roundTrip sends msg and returns the server's next text message.
func roundTrip(t *testing.T, d dialed, msg string) string {
	t.Helper()
	require.NoError(t, d.conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	require.NoError(t, wsutil.WriteClientText(d.conn, []byte(msg)))
	got, err := wsutil.ReadServerText(d.rw)
	require.NoError(t, err)
	return string(got)
}

func TestRefreshBeforeExpiryKeepsTheSocketPastTheFirstToken(t *testing.T) {
	srv, logs := newServer(t)
	first := time.Now().Add(shortTokenTTL) // no later than the first token's expiry
	d := dialRefresh(t, srv, shortToken(t, srv))
	// Refresh every half of the token's life until well past the first
	// token's expiry, on the same connection.
	for i := 0; i < 10 && time.Now().Before(first.Add(shortTokenTTL/2)); i++ {
		time.Sleep(shortTokenTTL / 2)
		msg := `{"type":"refresh","token":"` + shortToken(t, srv) + `"}`
		assert.JSONEq(t, `{"type":"refreshed","expires_in_ms":2000}`, roundTrip(t, d, msg))
	}
	require.True(t, time.Now().After(first), "the loop ran past the first token's expiry")
	assert.Equal(t, "still here", roundTrip(t, d, "still here"), "the socket is open past the first token's expiry")
	assertNoSecret(t, "the log", logs.String())
}

func TestRefreshWithAWrongTokenCloses4401(t *testing.T) {
	srv, _ := newServer(t)
	d := dialRefresh(t, srv, shortToken(t, srv))
	require.NoError(t, wsutil.WriteClientText(d.conn, []byte(`{"type":"refresh","token":"st.zzzz.not-a-mac"}`)))
	code, reason := readClose(t, d)
	assert.Equal(t, 4401, code)
	assert.Equal(t, "refresh refused", reason)
}

func TestASessionNotRefreshedClosesAtItsTokensExpiry(t *testing.T) {
	srv, _ := newServer(t)
	d := dialRefresh(t, srv, shortToken(t, srv))
	code, reason := readClose(t, d)
	assert.Equal(t, 4401, code)
	assert.Equal(t, "credential expired", reason)
}

func TestShortTokenNeedsTheDemoToken(t *testing.T) {
	srv, _ := newServer(t)
	res, err := srv.Client().Post(srv.URL+"/short-token", "", nil)
	require.NoError(t, err)
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, res.StatusCode)
	d := dial(t, endpointURL(srv, pathRefresh, ""), []string{"chat", "access_token", testToken}, nil)
	require.Equal(t, http.StatusSwitchingProtocols, d.status)
	code, _ := readClose(t, d)
	assert.Equal(t, 4401, code, "the demo token is no short token")
}
