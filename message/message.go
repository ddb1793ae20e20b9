// Package message reads and writes whole WebSocket messages on the server
// side of a connection a wsgate.Gate upgraded, with or without the
// permessage-deflate extension (RFC 7692) the gate negotiates.
//
// The gate answers every accepted permessage-deflate offer with no context
// takeover in both directions, so each message is compressed and inflated
// on its own; Read and Write rely on that.
package message

import (
	"bytes"
	"compress/flate"
	"errors"
	"io"
	"sync"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
	"github.com/gobwas/ws/wsutil"
)

// defaultMaxSize is the largest message Read returns
// when its maxSize is 0 or less: 1 MiB.
const defaultMaxSize = 1 << 20

// ErrTooBig is returned by Read for a message, inflated
// if it was compressed, larger than its maxSize. Answer it with a close
// frame 1009 (CloseMessageTooBig) and close the connection: the rest of the
// message has not been read.
var ErrTooBig = errors.New("wsgate/message: message too big")

// Read reads the next data message (text or binary, whole if
// fragmented) a client sent on rw, the server side of a WebSocket, and
// returns its payload, unmasked and, when it was compressed, inflated.
// Pings are answered and a close frame is answered and returned as
// wsutil.ClosedError, as wsutil.ReadClientData does.
//
// compressed says whether permessage-deflate was negotiated
// (Auth.Compression). With it, a message with the RSV1 bit
// is inflated and others are returned as they are; without it, RSV1 is a
// protocol error. maxSize bounds the returned payload (0 or less means
// defaultMaxSize): a small compressed message can inflate to
// gigabytes, so never read one without a bound.
func Read(rw io.ReadWriter, compressed bool, maxSize int64) ([]byte, ws.OpCode, error) {
	if maxSize <= 0 {
		maxSize = defaultMaxSize
	}
	var msg wsflate.MessageState
	state := ws.StateServerSide
	rd := wsutil.Reader{Source: rw, State: state}
	if compressed {
		rd.State |= ws.StateExtended
		rd.Extensions = []wsutil.RecvExtension{&msg, wsutil.RecvExtensionFunc(noRsv23)}
	}
	control := wsutil.ControlFrameHandler(rw, state)
	rd.OnIntermediate = control
	for {
		h, err := rd.NextFrame()
		if err != nil {
			return nil, 0, err
		}
		if h.OpCode.IsControl() {
			if err := control(h, &rd); err != nil {
				return nil, 0, err
			}
			continue
		}
		if !msg.IsCompressed() && h.Fin && h.Length > maxSize {
			return nil, h.OpCode, ErrTooBig
		}
		var src io.Reader = &rd
		if msg.IsCompressed() {
			src = wsflate.NewReader(&rd, func(r io.Reader) wsflate.Decompressor { return flate.NewReader(r) })
		}
		p, err := io.ReadAll(io.LimitReader(src, maxSize+1))
		if err != nil {
			return nil, h.OpCode, err
		}
		if int64(len(p)) > maxSize {
			return nil, h.OpCode, ErrTooBig
		}
		return p, h.OpCode, nil
	}
}

// noRsv23 refuses the RSV2 and RSV3 bits, which no negotiated extension
// defines; ws.StateExtended lets them through the header check.
func noRsv23(h ws.Header) (ws.Header, error) {
	if _, r2, r3 := ws.RsvBits(h.Rsv); r2 || r3 {
		return h, ws.ErrProtocolNonZeroRsv
	}
	return h, nil
}

// flateWriters holds compressors for Write; a compress/flate
// writer costs hundreds of kilobytes to make.
var flateWriters = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(nil, flate.BestSpeed)
	return w
}}

// compressionTail is the empty stored block a sync flush ends with, which
// RFC 7692 section 7.2.1 removes from a compressed message.
var compressionTail = []byte{0, 0, 0xff, 0xff}

// Write writes p to w as one unfragmented, unmasked message
// with opcode op, from the server side of a WebSocket. When compressed
// (permessage-deflate was negotiated: Auth.Compression) and
// op is a data opcode, the payload is deflated on its own (no context
// takeover, as the gate negotiates) and the frame carries RSV1; control
// frames are never compressed. Without compression it is
// wsutil.WriteServerMessage.
func Write(w io.Writer, compressed bool, op ws.OpCode, p []byte) error {
	if !compressed || op.IsControl() {
		return wsutil.WriteServerMessage(w, op, p)
	}
	var buf bytes.Buffer
	fw := flateWriters.Get().(*flate.Writer)
	fw.Reset(&buf)
	_, err := fw.Write(p)
	if err == nil {
		err = fw.Flush()
	}
	fw.Reset(nil)
	flateWriters.Put(fw)
	if err != nil {
		return err
	}
	b := buf.Bytes()
	if !bytes.HasSuffix(b, compressionTail) {
		return errors.New("wsgate/message: deflate output lacks the sync-flush tail")
	}
	f := ws.NewFrame(op, true, b[:len(b)-len(compressionTail)])
	f.Header.Rsv = ws.Rsv(true, false, false)
	return ws.WriteFrame(w, f)
}
