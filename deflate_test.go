package wsgate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/wsgate/wsgate/message"
)

// deflateEcho greets with whether compression was negotiated, then echoes
// one message, compressed when it was.
func deflateEcho(ctx context.Context, s Session[user]) {
	hello := fmt.Sprintf("%s compression=%t", s.Principal.Name, s.Compression)
	if message.Write(s.Conn, s.Compression, ws.OpText, []byte(hello)) != nil {
		return
	}
	msg, op, err := message.Read(s.Conn, s.Compression, 0)
	var perr ws.ProtocolError
	if errors.As(err, &perr) {
		_ = writeClose(s.Conn, ws.StatusProtocolError, string(perr))
	}
	if err != nil {
		return
	}
	_ = message.Write(s.Conn, s.Compression, op, append([]byte("echo: "), msg...))
}

// compressedClientFrame returns p as a masked, compressed client frame.
func compressedClientFrame(t *testing.T, op ws.OpCode, p []byte) ws.Frame {
	t.Helper()
	f, err := wsflate.CompressFrame(ws.NewFrame(op, true, p))
	require.NoError(t, err)
	return ws.MaskFrameInPlace(f)
}

// readCompressed reads a server frame, requires the RSV1 bit and returns
// the inflated payload.
func readCompressed(t *testing.T, r io.Reader) string {
	t.Helper()
	f, err := readFrame(r)
	require.NoError(t, err)
	assert.False(t, f.Header.Masked)
	require.True(t, f.Header.Rsv1(), "the server's message must carry RSV1")
	f, err = wsflate.DecompressFrame(f)
	require.NoError(t, err)
	return string(f.Payload)
}

func TestDeflateNegotiatedOverHTTP1WithGobwasDialer(t *testing.T) {
	g := New(StaticToken(secret, user{"alice"}), Config{Compression: true})
	srv := newServer(t, g.Handler(deflateEcho))
	d := ws.Dialer{
		Header:     ws.HandshakeHeaderHTTP(http.Header{"Authorization": {"Bearer " + secret}}),
		Extensions: []httphead.Option{wsflate.DefaultParameters.Option()},
		Timeout:    5 * time.Second,
	}
	conn, br, hs, err := d.Dial(context.Background(), wsURL(srv, "/ws"))
	require.NoError(t, err)
	defer conn.Close()
	require.Len(t, hs.Extensions, 1)
	var p wsflate.Parameters
	require.NoError(t, p.Parse(hs.Extensions[0]))
	assert.Equal(t, wsflate.Parameters{ServerNoContextTakeover: true, ClientNoContextTakeover: true}, p)

	var r io.Reader = conn
	if br != nil {
		r = io.MultiReader(br, conn)
	}
	assert.Equal(t, "alice compression=true", readCompressed(t, r))

	big := bytes.Repeat([]byte("compress me "), 1000)
	require.NoError(t, ws.WriteFrame(conn, compressedClientFrame(t, ws.OpText, big)))
	assert.Equal(t, "echo: "+string(big), readCompressed(t, r))
}

func TestDeflateOffersAreAnsweredPerRFC7692(t *testing.T) {
	g := New(StaticToken(secret, user{"alice"}), Config{Compression: true})
	srv := newServer(t, g.Handler(deflateEcho))
	addr := strings.TrimPrefix(srv.URL, "http://")
	tests := []struct {
		name  string
		offer string
		want  string // "" for declined: no header, no compression
	}{
		{
			name:  "a bare offer is accepted without context takeover",
			offer: "permessage-deflate",
			want:  deflateAnswer,
		},
		{
			name:  "client_max_window_bits without a value is accepted and not answered",
			offer: "permessage-deflate; client_max_window_bits",
			want:  deflateAnswer,
		},
		{
			name:  "client_max_window_bits=10 limits only the client's compressor",
			offer: "permessage-deflate; client_max_window_bits=10",
			want:  deflateAnswer,
		},
		{
			name:  "server_max_window_bits=15 is accepted and repeated",
			offer: "permessage-deflate; server_max_window_bits=15",
			want:  deflateAnswer15,
		},
		{
			name:  "server_max_window_bits=10 cannot be honoured by compress/flate and is declined",
			offer: "permessage-deflate; server_max_window_bits=10",
		},
		{
			name:  "server_max_window_bits=7 is an invalid value and is declined",
			offer: "permessage-deflate; server_max_window_bits=7",
		},
		{
			name:  "server_max_window_bits without a value is declined",
			offer: "permessage-deflate; server_max_window_bits",
		},
		{
			name:  "an unknown parameter is declined",
			offer: "permessage-deflate; foo=1",
		},
		{
			name:  "a repeated parameter is declined",
			offer: "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
		},
		{
			name:  "a repeated valueless client_max_window_bits is declined",
			offer: "permessage-deflate; client_max_window_bits; client_max_window_bits",
		},
		{
			name:  "a declined offer falls back to the next one",
			offer: "permessage-deflate; server_max_window_bits=7, permessage-deflate; client_max_window_bits",
			want:  deflateAnswer,
		},
		{
			name:  "other extensions are ignored",
			offer: "x-webkit-deflate-frame, permessage-deflate",
			want:  deflateAnswer,
		},
		{
			name:  "only other extensions: nothing is answered",
			offer: "x-webkit-deflate-frame",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, negotiateDeflate([]string{tt.offer}))

			conn, br, resp := rawHandshake(t, addr,
				"Authorization: Bearer "+secret+"\r\nSec-WebSocket-Extensions: "+tt.offer+"\r\n", "")
			require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode, "a bad offer never fails the handshake")
			assert.Equal(t, tt.want, resp.Header.Get("Sec-WebSocket-Extensions"))
			if tt.want != "" {
				assert.Equal(t, "alice compression=true", readCompressed(t, br))
				return
			}
			f, err := readFrame(br)
			require.NoError(t, err)
			assert.False(t, f.Header.Rsv1())
			assert.Equal(t, "alice compression=false", string(f.Payload))
			// Without the extension a compressed frame is a protocol error.
			_, err = conn.Write(ws.MustCompileFrame(compressedClientFrame(t, ws.OpText, []byte("x"))))
			require.NoError(t, err)
			code, _ := readClose(t, br)
			assert.Equal(t, ws.StatusProtocolError, code)
		})
	}
}

func TestDeflateIsNotNegotiatedUnlessConfigured(t *testing.T) {
	g := New(StaticToken(secret, user{"alice"}), Config{})
	srv := newServer(t, g.Handler(deflateEcho))
	_, br, resp := rawHandshake(t, strings.TrimPrefix(srv.URL, "http://"),
		"Authorization: Bearer "+secret+"\r\nSec-WebSocket-Extensions: permessage-deflate\r\n", "")
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	assert.Empty(t, resp.Header.Get("Sec-WebSocket-Extensions"))
	f, err := readFrame(br)
	require.NoError(t, err)
	assert.False(t, f.Header.Rsv1())
	assert.Equal(t, "alice compression=false", string(f.Payload))
}

func TestDeflateMiddlewareReportsCompression(t *testing.T) {
	g := New(StaticToken(secret, user{"alice"}), Config{Compression: true})
	srv := newServer(t, g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, _ := AuthFrom[user](r.Context())
		compressed := a.Compression
		conn, err := Upgrade(w, r)
		if err != nil {
			return
		}
		defer conn.Close()
		_ = message.Write(conn, compressed, ws.OpText, []byte("hello"))
	})))
	_, br, resp := rawHandshake(t, strings.TrimPrefix(srv.URL, "http://"),
		"Authorization: Bearer "+secret+"\r\nSec-WebSocket-Extensions: permessage-deflate\r\n", "")
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	assert.Equal(t, deflateAnswer, resp.Header.Get("Sec-WebSocket-Extensions"))
	assert.Equal(t, "hello", readCompressed(t, br))
	_, ok := AuthFrom[user](context.Background())
	assert.False(t, ok)
}

var _ net.Conn = (*streamConn)(nil)
