package message

import (
	"bytes"
	"io"
	"testing"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// compressedClientFrame returns p as a masked, compressed client frame.
func compressedClientFrame(t *testing.T, op ws.OpCode, p []byte) ws.Frame {
	t.Helper()
	f, err := wsflate.CompressFrame(ws.NewFrame(op, true, p))
	require.NoError(t, err)
	return ws.MaskFrameInPlace(f)
}

// readFrame reads one frame and unmasks its payload.
func readFrame(r io.Reader) (ws.Frame, error) {
	h, err := ws.ReadHeader(r)
	if err != nil {
		return ws.Frame{}, err
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(r, p); err != nil {
		return ws.Frame{}, err
	}
	if h.Masked {
		ws.Cipher(p, h.Mask, 0)
		h.Masked = false
	}
	return ws.Frame{Header: h, Payload: p}, nil
}

func TestRead(t *testing.T) {
	frames := func(fs ...ws.Frame) *bytes.Buffer {
		var b bytes.Buffer
		for _, f := range fs {
			require.NoError(t, ws.WriteFrame(&b, f))
		}
		return &b
	}
	type rw struct {
		io.Reader
		io.Writer
	}
	t.Run("inflates a compressed message and answers a ping in between", func(t *testing.T) {
		in := frames(ws.MaskFrame(ws.NewPingFrame([]byte("p"))), compressedClientFrame(t, ws.OpText, []byte("hello")))
		var out bytes.Buffer
		p, op, err := Read(rw{in, &out}, true, 0)
		require.NoError(t, err)
		assert.Equal(t, ws.OpText, op)
		assert.Equal(t, "hello", string(p))
		pong, err := readFrame(&out)
		require.NoError(t, err)
		assert.Equal(t, ws.OpPong, pong.Header.OpCode)
	})
	t.Run("passes an uncompressed message through when compression is on", func(t *testing.T) {
		in := frames(ws.MaskFrame(ws.NewTextFrame([]byte("plain"))))
		p, _, err := Read(rw{in, io.Discard}, true, 0)
		require.NoError(t, err)
		assert.Equal(t, "plain", string(p))
	})
	t.Run("bounds the inflated size", func(t *testing.T) {
		bomb := compressedClientFrame(t, ws.OpBinary, make([]byte, 1<<20))
		assert.Less(t, len(bomb.Payload), 2<<10, "a megabyte of zeros deflates to a few bytes")
		_, _, err := Read(rw{frames(bomb), io.Discard}, true, 64<<10)
		assert.ErrorIs(t, err, ErrTooBig)
	})
	t.Run("bounds an uncompressed frame before reading it", func(t *testing.T) {
		in := frames(ws.MaskFrame(ws.NewBinaryFrame(make([]byte, 100))))
		_, _, err := Read(rw{in, io.Discard}, false, 10)
		assert.ErrorIs(t, err, ErrTooBig)
	})
	t.Run("RSV1 without compression is a protocol error", func(t *testing.T) {
		in := frames(compressedClientFrame(t, ws.OpText, []byte("x")))
		_, _, err := Read(rw{in, io.Discard}, false, 0)
		assert.Error(t, err)
	})
	t.Run("RSV2 is a protocol error even with compression", func(t *testing.T) {
		f := ws.MaskFrame(ws.NewTextFrame([]byte("x")))
		f.Header.Rsv = ws.Rsv(false, true, false)
		_, _, err := Read(rw{frames(f), io.Discard}, true, 0)
		assert.Error(t, err)
	})
	t.Run("a close frame is answered and returned", func(t *testing.T) {
		in := frames(ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))))
		var out bytes.Buffer
		_, _, err := Read(rw{in, &out}, true, 0)
		var closed wsutil.ClosedError
		assert.ErrorAs(t, err, &closed)
		assert.NotZero(t, out.Len())
	})
}

func TestWriteLeavesControlFramesUncompressed(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, Write(&b, true, ws.OpPing, []byte("p")))
	f, err := readFrame(&b)
	require.NoError(t, err)
	assert.False(t, f.Header.Rsv1())
	assert.Equal(t, "p", string(f.Payload))
}
