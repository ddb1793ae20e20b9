// Package wstest is the client side of the examples: it dials a server over
// loopback with github.com/gobwas/ws the way a Go or browser client would,
// and reports what the server answered.
package wstest

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// Token is the credential the example servers accept.
const Token = "s3cret"

// Bearer returns a dialer that sends Authorization: Bearer token, the way
// for Go, Node and native clients.
func Bearer(token string) ws.Dialer {
	return ws.Dialer{Header: ws.HandshakeHeaderHTTP(http.Header{
		"Authorization": {"Bearer " + token},
	})}
}

// Subprotocol returns a dialer that offers ["chat", "access_token", token],
// what a browser sends for new WebSocket(url, ["chat", "access_token", token]).
func Subprotocol(token string) ws.Dialer {
	return ws.Dialer{Protocols: []string{"chat", "access_token", token}}
}

// Anonymous returns a dialer that sends no credential.
func Anonymous() ws.Dialer { return ws.Dialer{} }

// Result is what the client saw of a handshake.
type Result struct {
	// Status is 101 for an upgrade, else the refusal's status.
	Status int
	// Protocol is the subprotocol the 101 echoed.
	Protocol string
	// Message is the first text message the server sent after the upgrade.
	Message string
	// Header is the header of a refusal.
	Header http.Header
}

// Open dials the http:// or ws:// URL with d. After an upgrade it reads one
// text message from the server and closes the connection; after a refusal it
// reads the response header. A refusal is not an error.
func Open(ctx context.Context, url string, d ws.Dialer) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	url = "ws" + strings.TrimPrefix(url, "http")

	var res Result
	var readErr error
	d.OnStatusError = func(status int, _ []byte, resp io.Reader) {
		res.Status = status
		r, err := http.ReadResponse(bufio.NewReader(resp), nil)
		if err != nil {
			readErr = err
			return
		}
		res.Header = r.Header
	}
	conn, br, hs, err := d.Dial(ctx, url)
	var status ws.StatusError
	if errors.As(err, &status) {
		return res, readErr
	}
	if err != nil {
		return res, err
	}
	defer conn.Close()
	res.Status, res.Protocol = http.StatusSwitchingProtocols, hs.Protocol

	var rd io.Reader = conn
	if br != nil {
		// The server may have sent frames right behind its 101.
		rd = io.MultiReader(br, conn)
		defer ws.PutReader(br)
	}
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}
	msg, err := wsutil.ReadServerText(readWriter{rd, conn})
	if err != nil {
		return res, err
	}
	res.Message = string(msg)
	return res, nil
}

// readWriter reads from the buffered handshake reader and writes to the
// connection, so wsutil can answer control frames.
type readWriter struct {
	io.Reader
	net.Conn
}

func (rw readWriter) Read(p []byte) (int, error) { return rw.Reader.Read(p) }
