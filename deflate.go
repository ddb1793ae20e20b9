package wsgate

import (
	"bytes"
	"compress/flate"
	"errors"
	"io"
	"sync"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
	"github.com/gobwas/ws/wsutil"
)

const hWSExtensions = "Sec-Websocket-Extensions"

// The answers to an accepted permessage-deflate offer. The gate always asks
// for no context takeover in both directions (RFC 7692 section 7.1.1 lets a
// server add both parameters to any offer), so that every message is
// compressed and inflated on its own, as wsflate.DefaultHelper and
// ReadClientMessage expect, and the session keeps no 32 KiB window per
// direction between messages.
const (
	deflateAnswer = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
	// deflateAnswer15 accepts an offer of server_max_window_bits=15, which
	// RFC 7692 section 7.1.2.1 says the answer must repeat.
	deflateAnswer15 = deflateAnswer + "; server_max_window_bits=15"
)

// negotiateDeflate returns the Sec-WebSocket-Extensions answer to the offers
// in lines: the answer to the first acceptable permessage-deflate offer, or
// "" to decline the extension (no header). Per RFC 7692 section 7 an offer
// with an unknown parameter, an invalid value or a repeated parameter is
// declined, not failed, and the next offer is tried; the handshake goes on
// without compression when none is acceptable. An offer that limits the
// server's window below 15 bits (server_max_window_bits < 15) is declined
// too, because compress/flate always uses a 32 KiB window. An unparsable
// header declines every offer.
func negotiateDeflate(lines []string) string {
	var opts []httphead.Option
	for _, line := range lines {
		var ok bool
		opts, ok = httphead.ParseOptions([]byte(line), opts[:0])
		if !ok {
			return ""
		}
		for _, opt := range opts {
			if !bytes.EqualFold(opt.Name, wsflate.ExtensionNameBytes) {
				continue
			}
			if a := acceptDeflate(opt); a != "" {
				return a
			}
		}
	}
	return ""
}

// acceptDeflate returns the answer to one permessage-deflate offer, or "".
func acceptDeflate(opt httphead.Option) string {
	// wsflate.Parameters.Parse misses a repeated client_max_window_bits
	// without a value; count every name.
	dup := false
	seen := make(map[string]bool, opt.Parameters.Size())
	opt.Parameters.ForEach(func(k, _ []byte) bool {
		if seen[string(k)] {
			dup = true
			return false
		}
		seen[string(k)] = true
		return true
	})
	if dup {
		return ""
	}
	var p wsflate.Parameters
	if p.Parse(opt) != nil {
		return ""
	}
	switch {
	case !p.ServerMaxWindowBits.Defined():
		return deflateAnswer
	case p.ServerMaxWindowBits == 15:
		return deflateAnswer15
	default:
		return ""
	}
}

// defaultMaxMessageSize is the largest message ReadClientMessage returns
// when its maxSize is 0 or less: 1 MiB.
const defaultMaxMessageSize = 1 << 20

// ErrMessageTooBig is returned by ReadClientMessage for a message, inflated
// if it was compressed, larger than its maxSize. Answer it with a close
// frame 1009 (CloseMessageTooBig) and close the connection: the rest of the
// message has not been read.
var ErrMessageTooBig = errors.New("wsgate: message too big")

// ReadClientMessage reads the next data message (text or binary, whole if
// fragmented) a client sent on rw, the server side of a WebSocket, and
// returns its payload, unmasked and, when it was compressed, inflated.
// Pings are answered and a close frame is answered and returned as
// wsutil.ClosedError, as wsutil.ReadClientData does.
//
// compressed says whether permessage-deflate was negotiated
// (Auth.Compression, CompressionFrom). With it, a message with the RSV1 bit
// is inflated and others are returned as they are; without it, RSV1 is a
// protocol error. maxSize bounds the returned payload (0 or less means
// defaultMaxMessageSize): a small compressed message can inflate to
// gigabytes, so never read one without a bound.
func ReadClientMessage(rw io.ReadWriter, compressed bool, maxSize int64) ([]byte, ws.OpCode, error) {
	if maxSize <= 0 {
		maxSize = defaultMaxMessageSize
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
			return nil, h.OpCode, ErrMessageTooBig
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
			return nil, h.OpCode, ErrMessageTooBig
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

// flateWriters holds compressors for WriteServerMessage; a compress/flate
// writer costs hundreds of kilobytes to make.
var flateWriters = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(nil, flate.BestSpeed)
	return w
}}

// compressionTail is the empty stored block a sync flush ends with, which
// RFC 7692 section 7.2.1 removes from a compressed message.
var compressionTail = []byte{0, 0, 0xff, 0xff}

// WriteServerMessage writes p to w as one unfragmented, unmasked message
// with opcode op, from the server side of a WebSocket. When compressed
// (permessage-deflate was negotiated: Auth.Compression, CompressionFrom) and
// op is a data opcode, the payload is deflated on its own (no context
// takeover, as the gate negotiates) and the frame carries RSV1; control
// frames are never compressed. Without compression it is
// wsutil.WriteServerMessage.
func WriteServerMessage(w io.Writer, compressed bool, op ws.OpCode, p []byte) error {
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
		return errors.New("wsgate: deflate output lacks the sync-flush tail")
	}
	f := ws.NewFrame(op, true, b[:len(b)-len(compressionTail)])
	f.Header.Rsv = ws.Rsv(true, false, false)
	return ws.WriteFrame(w, f)
}
