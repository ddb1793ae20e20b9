package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startWithRaw starts a demo with its cross-origin and raw listeners and
// stops it when t ends.
func startWithRaw(t *testing.T, logs io.Writer) *instance {
	t.Helper()
	inst, err := start("127.0.0.1:0", crossAuto, testToken, slog.New(slog.NewTextHandler(logs, nil)))
	require.NoError(t, err)
	t.Cleanup(inst.shutdown)
	require.NoError(t, inst.startRaw(crossAuto))
	require.NotEqual(t, "ws://"+inst.addr, inst.raw.url)
	return inst
}

// fetchTicket gets a ticket from the main listener for a page of origin.
func fetchTicket(t *testing.T, inst *instance, origin string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+inst.addr+"/ticket", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Origin", origin)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	var v struct{ Ticket string }
	require.NoError(t, json.NewDecoder(res.Body).Decode(&v))
	require.NotEmpty(t, v.Ticket)
	return v.Ticket
}

// answer is what a client got from one handshake, in a form two listeners
// can be compared by: "101 chat demo-user via subprotocol", "401",
// "101 chat close 4401 invalid credential".
func answer(t *testing.T, d dialed, closes bool) string {
	t.Helper()
	if d.status != http.StatusSwitchingProtocols {
		return fmt.Sprint(d.status)
	}
	require.NoError(t, d.conn.SetDeadline(time.Now().Add(10*time.Second)))
	if closes {
		code, reason := readClose(t, d)
		return fmt.Sprintf("101 %s close %d %s", d.protocol, code, reason)
	}
	p, source, protocol := readHello(t, d)
	return fmt.Sprintf("101 %s %s via %s protocol=%s", d.protocol, p.Name, source, protocol)
}

func TestRawListenerAnswersLikeTheMainOne(t *testing.T) {
	logs := &syncBuffer{}
	inst := startWithRaw(t, logs)
	page := "http://" + inst.addr
	cross := strings.TrimSuffix(inst.cross, "/")
	cookie := cookieName + "=" + testToken
	listeners := map[string]string{"main": "ws://" + inst.addr, "raw": inst.raw.url}

	tests := []struct {
		name      string
		path      string // and query
		protocols []string
		header    http.Header
		want      string
	}{
		{"subprotocol marker", pathWS, []string{"chat", "access_token", testToken}, nil,
			"101 chat demo-user via subprotocol protocol=chat"},
		{"subprotocol marker from the page", pathWS, []string{"chat", "access_token", testToken}, http.Header{"Origin": {page}},
			"101 chat demo-user via subprotocol protocol=chat"},
		{"bearer", pathWS, []string{"chat"}, http.Header{"Authorization": {"Bearer " + testToken}},
			"101 chat demo-user via bearer protocol=chat"},
		{"query", pathWS + "?" + queryParam + "=" + testToken, []string{"chat"}, nil,
			"101 chat demo-user via query protocol=chat"},
		{"cookie with the page's Origin", pathWS, []string{"chat"}, http.Header{"Cookie": {cookie}, "Origin": {page}},
			"101 chat demo-user via cookie protocol=chat"},
		{"wrong token", pathWS, []string{"chat", "access_token", "wrong-token-0123456789"}, nil, "401"},
		{"no credential", pathWS, []string{"chat"}, nil, "401"},
		{"a token as a ticket", pathWS + "?" + ticketParam + "=" + testToken, []string{"chat"}, nil, "401"},
		{"cookie from the cross-origin page", pathWS, []string{"chat"}, http.Header{"Cookie": {cookie}, "Origin": {cross}}, "403"},
		{"the right token from the cross-origin page", pathWS, []string{"chat", "access_token", testToken}, http.Header{"Origin": {cross}}, "403"},
		{"cookie without Origin", pathWS, []string{"chat"}, http.Header{"Cookie": {cookie}}, "403"},
		{"close frames: wrong token", pathWSClose, []string{"chat", "access_token", "wrong-token-0123456789"}, nil,
			"101 chat close 4401 invalid credential"},
		{"close frames: the right token", pathWSClose, []string{"chat", "access_token", testToken}, nil,
			"101 chat demo-user via subprotocol protocol=chat"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := map[string]string{}
			for name, base := range listeners {
				d := dial(t, base+tc.path, tc.protocols, tc.header)
				got[name] = answer(t, d, strings.Contains(tc.want, "close"))
			}
			assert.Equal(t, tc.want, got["main"], "main listener")
			assert.Equal(t, got["main"], got["raw"], "raw listener")
		})
	}

	t.Run("a ticket opens one socket once, on either listener", func(t *testing.T) {
		for name, base := range listeners {
			tk := fetchTicket(t, inst, page)
			for i, want := range []string{"101 chat demo-user via query protocol=chat", "401"} {
				d := dial(t, base+pathWS+"?"+ticketParam+"="+tk, []string{"chat"}, http.Header{"Origin": {page}})
				assert.Equal(t, want, answer(t, d, false), "%s listener, use %d", name, i+1)
			}
		}
	})

	t.Run("the raw listener serves no in-band endpoint and no page", func(t *testing.T) {
		for _, path := range []string{pathInBand, "/"} {
			d := dial(t, inst.raw.url+path, []string{"chat", "access_token", testToken}, nil)
			assert.Equal(t, http.StatusNotFound, d.status, path)
		}
	})

	t.Run("/last shows the raw listener's handshakes, masked", func(t *testing.T) {
		d := dial(t, inst.raw.url+pathWS, []string{"chat", "access_token", testToken}, http.Header{"Origin": {page}})
		require.Equal(t, "101 chat demo-user via subprotocol protocol=chat", answer(t, d, false))
		req, err := http.NewRequest(http.MethodGet, page+"/last", nil)
		require.NoError(t, err)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		require.NoError(t, err)
		var a attempt
		require.NoError(t, json.Unmarshal(body, &a), string(body))
		assert.Equal(t, pathWS, a.Path)
		assert.Equal(t, http.StatusSwitchingProtocols, a.Status)
		assert.Equal(t, "subprotocol", a.Source)
		assert.Equal(t, "chat, access_token, s3cr…", a.Seen.Protocol)
		assert.Equal(t, page, a.Seen.Origin)
		assertNoSecret(t, "/last", string(body))
	})

	assert.Contains(t, logs.String(), "way=subprotocol outcome=accepted status=101")
	assertNoSecret(t, "the log", logs.String())
}
