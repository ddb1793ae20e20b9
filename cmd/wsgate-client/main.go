// Command wsgate-client opens a socket to the wsgate demo with
// Authorization: Bearer, the way for clients that can set headers, prints
// the server's hello and does one round trip.
//
//	go run ./cmd/wsgate-client -url ws://127.0.0.1:8080/ws -token TOKEN
//
// The token may come from $WSGATE_TOKEN instead, which keeps it out of the
// process list and the shell history.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

func main() {
	url := flag.String("url", "ws://127.0.0.1:8080/ws", "the demo's WebSocket `URL`")
	token := flag.String("token", os.Getenv("WSGATE_TOKEN"), "the demo `token` (default $WSGATE_TOKEN)")
	message := flag.String("message", "hello from Go", "the `text` to send and expect back")
	flag.Parse()
	if err := run(*url, *token, *message); err != nil {
		fmt.Fprintln(os.Stderr, "wsgate-client:", err)
		os.Exit(1)
	}
}

func run(url, token, message string) error {
	if token == "" {
		return errors.New("no token: use -token or $WSGATE_TOKEN")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := ws.Dialer{
		Protocols: []string{"chat"},
		Header:    ws.HandshakeHeaderHTTP(http.Header{"Authorization": {"Bearer " + token}}),
	}
	conn, br, hs, err := d.Dial(ctx, url)
	if err != nil {
		var status ws.StatusError
		if errors.As(err, &status) {
			return fmt.Errorf("handshake refused with HTTP %d", int(status))
		}
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Printf("connected, subprotocol %q\n", hs.Protocol)

	// br holds whatever the server sent right after the 101 (the hello may
	// arrive in the same packet).
	var rw io.ReadWriter = conn
	if br != nil {
		rw = struct {
			io.Reader
			io.Writer
		}{br, conn}
	}
	hello, err := wsutil.ReadServerText(rw)
	if err != nil {
		return err
	}
	fmt.Printf("hello: %s\n", hello)

	start := time.Now()
	if err := wsutil.WriteClientText(conn, []byte(message)); err != nil {
		return err
	}
	echo, err := wsutil.ReadServerText(rw)
	if err != nil {
		return err
	}
	fmt.Printf("echo:  %s (%v)\n", echo, time.Since(start).Round(time.Microsecond))

	body := ws.NewCloseFrameBody(ws.StatusNormalClosure, "bye")
	return wsutil.WriteClientMessage(conn, ws.OpClose, body)
}
