package bench

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"

	coder "github.com/coder/websocket"
	"github.com/gobwas/ws"
	"github.com/wsgate/wsgate"
)

// Idle counts the connections of an idle case (IdleCases): how many were
// upgraded, and how many of those have ended since. It is safe for
// concurrent use.
type Idle struct {
	upgraded, ended atomic.Int64
}

// Upgraded is the number of connections upgraded so far.
func (c *Idle) Upgraded() int64 { return c.upgraded.Load() }

// Ended is the number of upgraded connections that have ended.
func (c *Idle) Ended() int64 { return c.ended.Load() }

// Hold counts an upgraded connection, then calls next, which blocks until
// the connection's next frame has been read, until it fails (the client
// closed the connection or broke the protocol), and then counts the
// connection ended. It is what an idle application does with a connection:
// its goroutine waits for the next frame.
func (c *Idle) Hold(next func() error) {
	c.upgraded.Add(1)
	defer c.ended.Add(1)
	for next() == nil {
	}
}

// NextFrame reads one frame from conn (its header with gobwas/ws, then its
// payload, discarded).
func NextFrame(conn net.Conn) error {
	h, err := ws.ReadHeader(conn)
	if err != nil {
		return err
	}
	_, err = io.CopyN(io.Discard, conn, h.Length)
	return err
}

// IdleCases returns the cases of the idle-connection memory measurement
// (cmd/idlemem): each upgrades like its handshake case (the wsgate one
// authenticated, the others not) and then holds the connection with idle
// until the client closes it, instead of closing it at once. A raw case (one
// served from the net.Conn) is added like a handshake case, with Conn or
// Serve, and holds its session the same way: idle.Hold(func() error {
// return NextFrame(s.Conn) }).
func IdleCases(idle *Idle) []Case {
	chat := []string{"Sec-WebSocket-Protocol", Protocol}
	sub := Ways()[0]
	g := NewGate(sub.Extractor)
	return []Case{
		{Name: "WsgateHandler/subprotocol", Target: sub.Target, Header: sub.Header, Protocol: Protocol,
			Handler: g.Handler(func(_ context.Context, s wsgate.Session[User]) {
				idle.Hold(func() error { return NextFrame(s.Conn) })
			})},
		{Name: "WsgateRaw/subprotocol", Target: sub.Target, Header: sub.Header, Protocol: Protocol,
			Serve: func(ln net.Listener) error {
				err := g.Serve(ln, func(_ context.Context, s wsgate.Session[User]) {
					idle.Hold(func() error { return NextFrame(s.Conn) })
				})
				if errors.Is(err, net.ErrClosed) {
					return nil
				}
				return err
			}},
		{Name: "Gorilla", Target: "/ws", Header: chat, Protocol: Protocol,
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c, err := gorillaUpgrader.Upgrade(w, r, nil)
				if err != nil {
					return
				}
				defer c.Close()
				idle.Hold(func() error {
					_, rd, err := c.NextReader()
					if err == nil {
						_, err = io.Copy(io.Discard, rd)
					}
					return err
				})
			})},
		{Name: "Coder", Target: "/ws", Header: chat, Protocol: Protocol,
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c, err := coder.Accept(w, r, coderOptions)
				if err != nil {
					return
				}
				defer c.CloseNow()
				idle.Hold(func() error {
					_, rd, err := c.Reader(context.Background())
					if err == nil {
						_, err = io.Copy(io.Discard, rd)
					}
					return err
				})
			})},
	}
}
