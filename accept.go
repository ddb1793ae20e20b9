package wsgate

import (
	"crypto/sha1"
	"encoding/base64"
	"strings"
)

// acceptGUID is the fixed string RFC 6455 section 1.3 appends to the key.
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// keyLen is the length of the base64 encoding of a 16-byte nonce.
const keyLen = 24

// AcceptKeyLen is the length of a Sec-WebSocket-Accept value.
const AcceptKeyLen = 28

// CheckKey reports whether key is a valid Sec-WebSocket-Key value: after
// trimming surrounding spaces and tabs, the standard (padded) base64 encoding
// of exactly 16 bytes. It returns nil or an *Error matching ErrKey.
//
// The key proves nothing about the client; the check only keeps clients that
// do not speak WebSocket from being switched to it by accident.
func CheckKey(key string) error {
	if !validKey(trimOWS(key)) {
		return errKey
	}
	return nil
}

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
// when dst has AcceptKeyLen bytes of spare capacity.
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

// AcceptKey returns the Sec-WebSocket-Accept value for key. It allocates the
// returned string; AppendAcceptKey does not.
func AcceptKey(key string) string {
	var buf [AcceptKeyLen]byte
	return string(AppendAcceptKey(buf[:0], key))
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
