package wsgate

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestShutdownClosesEveryLiveSessionWithGoingAway(t *testing.T) {
	const perEntryPoint = 34 // 102 sessions in all
	before := runtime.NumGoroutine()
	g := New(func(ctx context.Context, c Credential) (user, error) {
		if c.Token() == "expiring" {
			SetExpiry(ctx, time.Now().Add(time.Hour))
		}
		return user{"alice"}, nil
	}, Config{})
	var returned sync.WaitGroup
	mux := http.NewServeMux()
	for _, ep := range entryPoints {
		mux.Handle("/"+ep.name, ep.make(g, func(_ Auth[user], conn net.Conn) {
			defer returned.Done()
			for {
				if _, _, err := wsutil.ReadClientData(conn); err != nil {
					return
				}
			}
		}))
	}
	srv := newServer(t, mux)
	addr := strings.TrimPrefix(srv.URL, "http://")

	type client struct {
		conn net.Conn
		rw   readWriter
	}
	var clients []client
	for _, ep := range entryPoints {
		for i := 0; i < perEntryPoint; i++ {
			token := "plain"
			if i%2 == 0 {
				token = "expiring"
			}
			returned.Add(1)
			conn, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			t.Cleanup(func() { conn.Close() })
			req := "GET /" + ep.name + " HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + testKey + "\r\nAuthorization: Bearer " + token + "\r\n\r\n"
			_, err = conn.Write([]byte(req))
			require.NoError(t, err)
			require.NoError(t, conn.SetReadDeadline(time.Now().Add(20*time.Second)))
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			require.NoError(t, err)
			require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
			clients = append(clients, client{conn, readWriter{br, conn}})
		}
	}
	require.Eventually(t, func() bool { return len(g.live.snapshot()) == len(clients) }, 10*time.Second, 10*time.Millisecond)

	// Every client answers the gate's close frame, as browsers do.
	codes := make(chan ws.StatusCode, len(clients))
	for _, c := range clients {
		go func() {
			code, reason := readCloseFrame(c.rw)
			if reason != "going away" {
				code = 0
			}
			_ = ws.WriteFrame(c.conn, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusGoingAway, ""))))
			codes <- code
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownBound+5*time.Second)
	defer cancel()
	require.NoError(t, g.Shutdown(ctx), "every session closed within the bound")
	for range clients {
		select {
		case code := <-codes:
			assert.Equal(t, ws.StatusGoingAway, code)
		case <-time.After(10 * time.Second):
			t.Fatal("a client got no close frame")
		}
	}
	done := make(chan struct{})
	go func() { returned.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("an application callback did not return")
	}
	// Each entry point takes the session off the list right after the
	// callback returned (the handler's return, or the application's Close).
	assert.Eventually(t, func() bool { return len(g.live.snapshot()) == 0 }, 10*time.Second, 10*time.Millisecond)
	for _, c := range clients {
		c.conn.Close()
	}
	srv.Close()
	assert.NoError(t, waitGoroutines(before), "goroutines back to the baseline")
}

// readCloseFrame reads frames until a close frame and returns its code and
// reason, or 0 when the connection ends first.
func readCloseFrame(rw readWriter) (ws.StatusCode, string) {
	for {
		h, err := ws.ReadHeader(rw)
		if err != nil {
			return 0, ""
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(rw, p); err != nil {
			return 0, ""
		}
		if h.OpCode == ws.OpClose {
			return ws.ParseCloseFrameData(p)
		}
	}
}

func TestNoFrameFollowsTheGatesCloseFrame(t *testing.T) {
	// An application reader answers the client's close frame; after the
	// gate's own close frame that answer must not reach the client.
	g := New(StaticToken(secret, user{"alice"}), Config{})
	writeErr := make(chan error, 1)
	live := make(chan struct{})
	srv := newServer(t, g.Handler(func(_ context.Context, s Session[user]) {
		close(live) // the session is among the gate's live ones
		_, _, err := wsutil.ReadClientData(s.Conn)
		var closed wsutil.ClosedError
		if errors.As(err, &closed) {
			writeErr <- nil // wsutil answered the close frame: its write was refused
			return
		}
		writeErr <- err
	}))
	c, br, resp := rawHandshake(t, strings.TrimPrefix(srv.URL, "http://"), "Authorization: Bearer "+secret+"\r\n", "")
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	<-live
	done := make(chan error, 1)
	go func() { done <- g.Shutdown(context.Background()) }()
	code, _ := readClose(t, br)
	assert.Equal(t, ws.StatusGoingAway, code)
	// The client answers; the application's reader reads that and tries to
	// answer in turn.
	require.NoError(t, ws.WriteFrame(c, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusGoingAway, "")))))
	select {
	case <-writeErr:
	case <-time.After(5 * time.Second):
		t.Fatal("the application's reader did not return")
	}
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	rest, _ := io.ReadAll(br)
	assert.Empty(t, rest, "no frame after the gate's close frame")
	require.NoError(t, <-done)
}

func TestSessionWritesFailAfterTheGatesCloseFrame(t *testing.T) {
	ls := &liveSession{Conn: &memConn{out: new(bytes.Buffer)}, list: new(liveSessions)}
	_, err := ls.Write([]byte("x"))
	require.NoError(t, err)
	ls.closeSent.Store(true) // as end does before its close frame
	_, err = ls.Write([]byte("x"))
	assert.ErrorIs(t, err, net.ErrClosed)
}
