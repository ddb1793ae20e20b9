package wsgate

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHandshakeValidation(t *testing.T) {
	const marker = "X-Echo-Probe-7f3a"
	tests := []struct {
		name     string
		modify   func(r *http.Request)
		status   int
		sentinel error
		headers  map[string]string
	}{
		{
			name:     "a POST is refused with 405 and Allow: GET",
			modify:   func(r *http.Request) { r.Method = http.MethodPost },
			status:   405,
			sentinel: ErrHandshake,
			headers:  map[string]string{"Allow": "GET"},
		},
		{
			name:     "a missing Upgrade header is refused with 426 and Upgrade: websocket",
			modify:   func(r *http.Request) { r.Header.Del("Upgrade") },
			status:   426,
			sentinel: ErrHandshake,
			headers:  map[string]string{"Upgrade": "websocket"},
		},
		{
			name:     "Upgrade: h2c is never honoured",
			modify:   func(r *http.Request) { r.Header.Set("Upgrade", "h2c") },
			status:   426,
			sentinel: ErrHandshake,
			headers:  map[string]string{"Upgrade": "websocket"},
		},
		{
			name:   "Upgrade lists are read case-insensitively",
			modify: func(r *http.Request) { r.Header.Set("Upgrade", "h2c, WebSocket") },
			status: 101,
		},
		{
			name:     "a missing Connection upgrade token is refused with 400",
			modify:   func(r *http.Request) { r.Header.Set("Connection", "keep-alive") },
			status:   400,
			sentinel: ErrHandshake,
		},
		{
			name:   "Firefox's Connection: keep-alive, Upgrade passes",
			modify: func(r *http.Request) { r.Header.Set("Connection", "keep-alive, Upgrade") },
			status: 101,
		},
		{
			name: "a Connection token on a second header line passes",
			modify: func(r *http.Request) {
				r.Header["Connection"] = []string{"keep-alive", "upgrade"}
			},
			status: 101,
		},
		{
			name:     "a missing version is refused with 400 and Sec-WebSocket-Version: 13",
			modify:   func(r *http.Request) { r.Header.Del("Sec-WebSocket-Version") },
			status:   400,
			sentinel: ErrHandshake,
			headers:  map[string]string{"Sec-Websocket-Version": "13"},
		},
		{
			name:     "a repeated version is refused with 400",
			modify:   func(r *http.Request) { r.Header.Add("Sec-WebSocket-Version", "13") },
			status:   400,
			sentinel: ErrHandshake,
			headers:  map[string]string{"Sec-Websocket-Version": "13"},
		},
		{
			name:     "version 8 is refused with 426",
			modify:   func(r *http.Request) { r.Header.Set("Sec-WebSocket-Version", "8") },
			status:   426,
			sentinel: ErrHandshake,
			headers:  map[string]string{"Sec-Websocket-Version": "13"},
		},
		{
			name:     "a missing key is refused with 400",
			modify:   func(r *http.Request) { r.Header.Del("Sec-WebSocket-Key") },
			status:   400,
			sentinel: ErrHandshake,
		},
		{
			name:     "a repeated key is refused with 400",
			modify:   func(r *http.Request) { r.Header.Add("Sec-WebSocket-Key", testKey) },
			status:   400,
			sentinel: ErrHandshake,
		},
		{
			name:     "an invalid key is refused with 400 and not echoed",
			modify:   func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", marker+"==") },
			status:   400,
			sentinel: ErrHandshake,
		},
		{
			name:     "a key decoding to 15 bytes is refused",
			modify:   func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25j") },
			status:   400,
			sentinel: ErrHandshake,
		},
		{
			name:     "a body announced by Content-Length is refused with 400",
			modify:   func(r *http.Request) { r.ContentLength = 5 },
			status:   400,
			sentinel: ErrHandshake,
		},
		{
			name:     "a chunked body is refused with 400",
			modify:   func(r *http.Request) { r.ContentLength = -1; r.TransferEncoding = []string{"chunked"} },
			status:   400,
			sentinel: ErrHandshake,
		},
		{
			name:     "HTTP/2 without RFC 8441 is refused with 400",
			modify:   func(r *http.Request) { r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/2.0", 2, 0 },
			status:   400,
			sentinel: ErrHandshake,
		},
		{
			name:     "HTTP/1.0 is refused with 400",
			modify:   func(r *http.Request) { r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.0", 1, 0 },
			status:   400,
			sentinel: ErrHandshake,
		},
		{
			name:   "a valid handshake upgrades",
			modify: func(r *http.Request) {},
			status: 101,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newHandshake("/ws", "X-Probe", marker)
			tt.modify(r)
			w := newHijackWriter()
			conn, err := Upgrade(w, r)
			if tt.status == 101 {
				require.NoError(t, err)
				require.NoError(t, CheckHandshake(r))
				conn.Close()
				assert.True(t, strings.HasPrefix(w.out.String(), "HTTP/1.1 101 Switching Protocols\r\n"))
				assert.Contains(t, w.out.String(), "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n")
				return
			}
			require.Error(t, err)
			assert.Nil(t, conn)
			assert.ErrorIs(t, err, tt.sentinel)
			assert.ErrorIs(t, CheckHandshake(r), tt.sentinel)
			var e *Error
			require.True(t, errors.As(err, &e))
			assert.Equal(t, tt.status, e.Status)

			assert.False(t, w.hijacked, "a refusal must not hijack")
			assert.Equal(t, tt.status, w.status)
			if r.ProtoMajor == 2 {
				// net/http turns it into a GOAWAY for the whole connection.
				assert.Empty(t, w.header.Get("Connection"), "no Connection: close over HTTP/2")
			} else {
				assert.Equal(t, "close", w.header.Get("Connection"))
			}
			assert.Equal(t, "text/plain; charset=utf-8", w.header.Get("Content-Type"))
			for k, v := range tt.headers {
				assert.Equal(t, v, w.header.Get(k), k)
			}
			assert.NotContains(t, w.responseText(), "101")
			assert.NotContains(t, w.responseText(), marker)
			assert.NotEmpty(t, w.body.String())
		})
	}
}

func TestCheckHandshakeAllocatesNothing(t *testing.T) {
	r := newHandshake("/ws", "Connection", "keep-alive")
	allocs := testing.AllocsPerRun(1000, func() {
		if CheckHandshake(r) != nil {
			panic("invalid")
		}
	})
	assert.Zero(t, allocs)
}

func TestErrorsCarryTheirStatusAndSentinel(t *testing.T) {
	err := CheckHandshake(newHandshake("/ws", "Sec-WebSocket-Version", "13"))
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, 400, e.Status)
	assert.ErrorIs(t, err, ErrHandshake)
	assert.NotErrorIs(t, err, ErrOrigin)
	assert.Equal(t, "exactly one Sec-WebSocket-Version required", e.Reason)
	assert.True(t, strings.HasPrefix(err.Error(), "wsgate: "))
}

func TestWriteErrorAnswersBareSentinelsLikeTheGate(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		status  int
		wwwAuth string
	}{
		{
			name:    "ErrForbidden is a 403 insufficient_scope",
			err:     ErrForbidden,
			status:  403,
			wwwAuth: `Bearer realm="wsgate", error="insufficient_scope"`,
		},
		{
			name:    "a wrapped ErrInvalidToken is a 401 invalid_token",
			err:     fmt.Errorf("session lookup: %w", ErrInvalidToken),
			status:  401,
			wwwAuth: `Bearer realm="wsgate", error="invalid_token"`,
		},
		{
			name:   "ErrOrigin is a 403",
			err:    ErrOrigin,
			status: 403,
		},
		{
			name:   "any other error is a 500",
			err:    errors.New("disk full"),
			status: 500,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			WriteError(rec, tt.err)
			assert.Equal(t, tt.status, rec.Code)
			assert.Equal(t, tt.wwwAuth, rec.Header().Get("WWW-Authenticate"))
			assert.Equal(t, "close", rec.Header().Get("Connection"))
			assert.NotContains(t, rec.Body.String(), "disk full")
		})
	}
}

func TestEveryVersionRefusalNamesVersion13(t *testing.T) {
	for _, e := range []*Error{errVersion, errVersionMissing, errVersionH2} {
		w := httptest.NewRecorder()
		writeError(w, e, defaultChallenge, false, false)
		assert.Equal(t, "13", w.Header().Get("Sec-WebSocket-Version"), e.Reason)
	}
}
