package e2e

import (
	"fmt"
	"io"

	"github.com/gobwas/ws"
)

// maxTestFrame bounds the payload readFrame accepts: the gate's frames in
// these tests are at most a few hundred kilobytes, so a larger declared length is a bug.
const maxTestFrame = 1 << 20

// readFrame reads one whole frame from r, unmasking a masked payload. It
// replaces the deprecated ws.ReadFrame, which trusts the declared length:
// readFrame reads the header first and refuses a payload over maxTestFrame.
func readFrame(r io.Reader) (ws.Frame, error) {
	h, err := ws.ReadHeader(r)
	if err != nil {
		return ws.Frame{}, err
	}
	if h.Length > maxTestFrame {
		return ws.Frame{}, fmt.Errorf("frame declares %d bytes, more than %d", h.Length, maxTestFrame)
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(r, p); err != nil {
		return ws.Frame{}, err
	}
	if h.Masked {
		ws.Cipher(p, h.Mask, 0)
	}
	return ws.Frame{Header: h, Payload: p}, nil
}
