package wsgate

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The tests that dial extended CONNECT over TLS with an HTTP/2 client live
// in the e2e module (e2e/h2_test.go), so that this module does not require
// golang.org/x/net. Here CheckHandshake meets synthetic HTTP/2 requests.

func TestCheckHandshakeOverHTTP2(t *testing.T) {
	h2 := func(method string, kv ...string) *http.Request {
		r := httptest.NewRequest(method, "https://example.com/ws", nil)
		r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/2.0", 2, 0
		r.Header = http.Header{":protocol": {"websocket"}, "Sec-Websocket-Version": {"13"}}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(r.Header, kv[i])
				continue
			}
			r.Header[kv[i]] = []string{kv[i+1]}
		}
		return r
	}
	tests := []struct {
		name     string
		r        *http.Request
		sentinel error
	}{
		{name: "extended CONNECT with :protocol websocket passes", r: h2("CONNECT")},
		{name: ":protocol compares case-insensitively", r: h2("CONNECT", ":protocol", "WebSocket")},
		{name: "no Sec-WebSocket-Key, Upgrade or Connection is needed", r: h2("CONNECT")},
		{name: "a Sec-WebSocket-Key is ignored", r: h2("CONNECT", "Sec-Websocket-Key", "junk")},
		{name: "GET over HTTP/2", r: h2("GET"), sentinel: ErrHandshake},
		{name: "CONNECT without :protocol", r: h2("CONNECT", ":protocol", ""), sentinel: ErrHandshake},
		{name: "CONNECT with another :protocol", r: h2("CONNECT", ":protocol", "h3"), sentinel: ErrHandshake},
		{name: "no version", r: h2("CONNECT", "Sec-Websocket-Version", ""), sentinel: ErrHandshake},
		{name: "version 8", r: h2("CONNECT", "Sec-Websocket-Version", "8"), sentinel: ErrHandshake},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckHandshake(tt.r)
			if tt.sentinel == nil {
				assert.NoError(t, err)
				return
			}
			assert.ErrorIs(t, err, tt.sentinel)
			var e *Error
			require.ErrorAs(t, err, &e)
			assert.Equal(t, http.StatusBadRequest, e.Status)
		})
	}
}
