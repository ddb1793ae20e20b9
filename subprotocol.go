package wsgate

import (
	"strings"
	"unsafe"
)

// maxOfferedProtocols is the most Sec-WebSocket-Protocol entries a handshake
// may offer; a longer list is refused with 400 (ErrProtocols). Real clients
// offer a handful, and the bound keeps parsing free of allocations.
const maxOfferedProtocols = 32

// offered is a parsed Sec-WebSocket-Protocol list. Entries are substrings of
// the header values: parsing copies nothing.
type offered struct {
	list [maxOfferedProtocols]string
	n    int
	// secret marks entries that hold a credential: they are never echoed.
	secret uint32

	// auth holds the request's Authorization lines once authRead is set, so
	// that the Basic and Bearer extractors share one header lookup.
	auth     []string
	authRead bool

	// The first single occurrence of a Query extractor's parameter is
	// queryRaw[queryStart:queryEnd], so that removing it costs no second
	// scan.
	queryStart, queryEnd int
	queryRaw             string
	// stripped is set once the Query extractors' parameters are removed.
	stripped bool
}

// maxEmptyProtocols bounds the empty list elements (", ,") a
// Sec-WebSocket-Protocol list may have: RFC 9110 section 5.6.1.2 asks a
// recipient to ignore a reasonable number of them.
const maxEmptyProtocols = 16

// parse reads the offered list from every Sec-WebSocket-Protocol line.
// Empty elements are skipped (at most maxEmptyProtocols of them); a
// character outside the RFC 7230 token set, a duplicate or more than
// maxOfferedProtocols entries make the whole list malformed. Browsers
// refuse to send such lists, so only hand-made clients hit this.
func (o *offered) parse(lines []string) *Error {
	o.n, o.secret = 0, 0
	empty := 0
	for _, line := range lines {
		for {
			var elem string
			i := strings.IndexByte(line, ',')
			if i >= 0 {
				elem = line[:i]
			} else {
				elem = line
			}
			elem = trimOWS(elem)
			switch {
			case elem == "":
				empty++
				if empty > maxEmptyProtocols {
					return errProtocols
				}
			case !isToken(elem) || o.n == maxOfferedProtocols:
				return errProtocols
			default:
				for _, prev := range o.list[:o.n] {
					if prev == elem {
						return errProtocols
					}
				}
				o.list[o.n] = elem
				o.n++
			}
			if i < 0 {
				break
			}
			line = line[i+1:]
		}
	}
	return nil
}

// entries returns the offered entries in the client's order.
func (o *offered) entries() []string { return o.list[:o.n] }

func (o *offered) isSecret(i int) bool { return o.secret&(1<<uint(i)) != 0 }

func (o *offered) markSecret(i int) { o.secret |= 1 << uint(i) }

// selectFor returns the first of protocols (server preference) that the
// client offered and that is not a credential, or "".
func (o *offered) selectFor(protocols []string) string {
	for _, p := range protocols {
		for i, e := range o.list[:o.n] {
			if e == p && !o.isSecret(i) {
				return p // the gate's own string, which outlives the request
			}
		}
	}
	return ""
}

// withoutSecrets renders the list without its credential entries, or returns
// ok=false when it has none. line is the header's only line, or "" when it
// has several; when the kept entries are a contiguous run of line (the
// credential first or last, as clients send it), the result is a substring
// of line and nothing is allocated.
func (o *offered) withoutSecrets(line string) (string, bool) {
	if o.secret == 0 {
		return "", false
	}
	first, last := -1, -1
	for i := 0; i < o.n; i++ {
		if !o.isSecret(i) {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		return "", true
	}
	contiguous := true
	for i := first; i <= last; i++ {
		contiguous = contiguous && !o.isSecret(i)
	}
	if line != "" && contiguous {
		if start, ok := offsetIn(line, o.list[first]); ok {
			if end, ok := offsetIn(line, o.list[last]); ok {
				return line[start : end+len(o.list[last])], true
			}
		}
	}
	var b strings.Builder
	for i, e := range o.list[:o.n] {
		if o.isSecret(i) {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		b.WriteString(e)
	}
	return b.String(), true
}

// tchar marks the characters RFC 7230 allows in a token.
var tchar = [256]bool{
	'!': true, '#': true, '$': true, '%': true, '&': true, '\'': true, '*': true,
	'+': true, '-': true, '.': true, '^': true, '_': true, '`': true, '|': true, '~': true,
	'0': true, '1': true, '2': true, '3': true, '4': true, '5': true, '6': true, '7': true, '8': true, '9': true,
	'A': true, 'B': true, 'C': true, 'D': true, 'E': true, 'F': true, 'G': true, 'H': true, 'I': true,
	'J': true, 'K': true, 'L': true, 'M': true, 'N': true, 'O': true, 'P': true, 'Q': true, 'R': true,
	'S': true, 'T': true, 'U': true, 'V': true, 'W': true, 'X': true, 'Y': true, 'Z': true,
	'a': true, 'b': true, 'c': true, 'd': true, 'e': true, 'f': true, 'g': true, 'h': true, 'i': true,
	'j': true, 'k': true, 'l': true, 'm': true, 'n': true, 'o': true, 'p': true, 'q': true, 'r': true,
	's': true, 't': true, 'u': true, 'v': true, 'w': true, 'x': true, 'y': true, 'z': true,
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tchar[s[i]] {
			return false
		}
	}
	return true
}

// offsetIn returns where sub, a substring of s (sharing its memory), starts.
func offsetIn(s, sub string) (int, bool) {
	if len(s) == 0 || len(sub) == 0 {
		return 0, false
	}
	off := int(uintptr(unsafe.Pointer(unsafe.StringData(sub))) - uintptr(unsafe.Pointer(unsafe.StringData(s))))
	if off < 0 || off+len(sub) > len(s) {
		return 0, false
	}
	return off, true
}
