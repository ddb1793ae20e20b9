package wsgate

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"net"
	"net/http"
	"strings"
)

// acceptGUID is the fixed string RFC 6455 section 1.3 appends to the key.
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// keyLen is the length of the base64 encoding of a 16-byte nonce.
const keyLen = 24

// acceptKeyLen is the length of a Sec-WebSocket-Accept value.
const acceptKeyLen = 28

func validKey(k string) bool {
	// 16 bytes are 128 bits: 21 full sextets and 2 bits in the 22nd
	// character, then "==". Decoding leniently (ignoring the unused low bits
	// of the 22nd character) matches what RFC 6455 clients produce.
	if len(k) != keyLen || k[22] != '=' || k[23] != '=' {
		return false
	}
	for i := 0; i < 22; i++ {
		if !isBase64Std(k[i]) {
			return false
		}
	}
	return true
}

func isBase64Std(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/'
}

// AppendAcceptKey appends to dst the Sec-WebSocket-Accept value for key: the
// base64 encoding of the SHA-1 digest of key followed by the RFC 6455 GUID.
// key is used as given (trim it first if it came from a header). For a key of
// valid length it allocates nothing beyond growing dst, and nothing at all
// when dst has 28 bytes of spare capacity.
func AppendAcceptKey(dst []byte, key string) []byte {
	var sum [sha1.Size]byte
	if len(key) == keyLen {
		var buf [keyLen + len(acceptGUID)]byte
		copy(buf[:], key)
		copy(buf[keyLen:], acceptGUID)
		sum = sha1.Sum(buf[:])
	} else {
		h := sha1.New()
		h.Write([]byte(key))
		h.Write([]byte(acceptGUID))
		h.Sum(sum[:0])
	}
	return base64.StdEncoding.AppendEncode(dst, sum[:])
}

// The fixed parts of the 101 the gate writes.
const (
	switchHead     = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "
	protocolHeader = "\r\nSec-WebSocket-Protocol: "
	extHeader      = "\r\nSec-WebSocket-Extensions: "
)

// switchProtocols answers a handshake that passed the checks: over HTTP/1.1
// it hijacks the connection and writes the 101 for key, with protocol and
// ext ("" for none), in one write; an HTTP/2 extended CONNECT is answered 200
// on its stream (upgradeH2). A ResponseWriter that cannot be hijacked is
// answered 500.
func switchProtocols(w http.ResponseWriter, r *http.Request, key, protocol, ext string) (net.Conn, *Error) {
	if r.ProtoMajor == 2 {
		conn, err := upgradeH2(w, r, protocol, ext)
		if err != nil {
			return nil, errUpgradeIO
		}
		return conn, nil
	}
	hj := hijacker(w)
	if hj == nil {
		writeError(w, errNotHijacker, defaultChallenge, false, false)
		return nil, errNotHijacker
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		if conn != nil {
			conn.Close()
		}
		return nil, errUpgradeIO
	}
	if err := write101(conn, rw, key, protocol, ext); err != nil {
		conn.Close()
		return nil, errUpgradeIO
	}
	if rw != nil && rw.Reader.Buffered() > 0 {
		return &bufferedConn{Conn: conn, r: rw.Reader}, nil
	}
	return conn, nil
}

// write101 writes the 101 into the hijacked connection's buffer, or into a
// buffer of its own when the hijacker gave none, and sends it in one write.
func write101(conn net.Conn, rw *bufio.ReadWriter, key, protocol, ext string) error {
	n := len(switchHead) + acceptKeyLen + len(protocolHeader) + len(protocol) + len(extHeader) + len(ext) + 4
	var b []byte
	var bw *bufio.Writer
	if rw != nil && rw.Writer != nil {
		bw = rw.Writer
		if bw.Available() < n && bw.Buffered() > 0 {
			if err := bw.Flush(); err != nil {
				return err
			}
		}
		b = bw.AvailableBuffer()
	}
	if cap(b) < n {
		b = make([]byte, 0, n)
	}
	b = append101(b, key, protocol, ext)
	if bw == nil {
		_, err := conn.Write(b)
		return err
	}
	if _, err := bw.Write(b); err != nil {
		return err
	}
	return bw.Flush()
}

// append101 appends the 101 answering key, with the echo and the extension.
func append101(b []byte, key, protocol, ext string) []byte {
	b = append(b, switchHead...)
	b = AppendAcceptKey(b, key)
	if protocol != "" {
		b = append(b, protocolHeader...)
		b = append(b, protocol...)
	}
	if ext != "" {
		b = append(b, extHeader...)
		b = append(b, ext...)
	}
	return append(b, "\r\n\r\n"...)
}

// hijacker returns w, or the writer it wraps (through Unwrap() methods, as
// http.ResponseController finds it), as an http.Hijacker, or nil.
func hijacker(w http.ResponseWriter) http.Hijacker {
	for {
		switch t := w.(type) {
		case http.Hijacker:
			return t
		case interface{ Unwrap() http.ResponseWriter }:
			w = t.Unwrap()
		default:
			return nil
		}
	}
}

// trimOWS removes the optional whitespace (spaces and horizontal tabs) that
// RFC 7230 allows around header values and list elements.
func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// hasToken reports whether the comma-separated header lines contain token,
// compared case-insensitively. It allocates nothing.
func hasToken(lines []string, token string) bool {
	for _, line := range lines {
		for line != "" {
			var elem string
			if i := strings.IndexByte(line, ','); i >= 0 {
				elem, line = line[:i], line[i+1:]
			} else {
				elem, line = line, ""
			}
			if strings.EqualFold(trimOWS(elem), token) {
				return true
			}
		}
	}
	return false
}
