package wsgate

import (
	"bytes"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws/wsflate"
)

const hWSExtensions = "Sec-Websocket-Extensions"

// The answers to an accepted permessage-deflate offer. The gate always asks
// for no context takeover in both directions (RFC 7692 section 7.1.1 lets a
// server add both parameters to any offer), so that every message is
// compressed and inflated on its own, as wsflate.DefaultHelper and
// message.Read expect, and the session keeps no 32 KiB window per
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
