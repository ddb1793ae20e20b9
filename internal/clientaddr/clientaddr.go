// Package clientaddr tells a request's client IP address, believing
// X-Forwarded-For only from trusted proxies. Package ticket (BindClient)
// and the gate's failed-handshake limiter (package fleet) use it, so both
// see the same client behind the same proxies.
package clientaddr

import (
	"net/http"
	"net/netip"
	"strings"
)

// Of is the client's IP address: r.RemoteAddr's host, or, when the peer is
// in trusted, the rightmost X-Forwarded-For entry that is not (the leftmost
// if all are). A malformed entry on the way makes it unknown (ok false)
// rather than a guess, as does a RemoteAddr that is no IP address. The
// address is unmapped (an IPv4-mapped IPv6 address becomes IPv4) and has no
// zone.
func Of(r *http.Request, trusted []netip.Prefix) (addr netip.Addr, ok bool) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	var a netip.Addr
	if err == nil {
		a = ap.Addr()
	} else if a, err = netip.ParseAddr(r.RemoteAddr); err != nil {
		return netip.Addr{}, false
	}
	a = a.Unmap().WithZone("")
	if len(trusted) == 0 || !isTrusted(trusted, a) {
		return a, true
	}
	xff := r.Header["X-Forwarded-For"]
	for i := len(xff) - 1; i >= 0; i-- {
		line := xff[i]
		for line != "" {
			var entry string
			if j := strings.LastIndexByte(line, ','); j >= 0 {
				entry, line = line[j+1:], line[:j]
			} else {
				entry, line = line, ""
			}
			entry = strings.Trim(entry, " \t") // RFC 7230 optional whitespace
			if entry == "" {
				continue
			}
			hop, err := netip.ParseAddr(entry)
			if err != nil {
				if ap, err2 := netip.ParseAddrPort(entry); err2 == nil {
					hop = ap.Addr()
				} else {
					return netip.Addr{}, false
				}
			}
			a = hop.Unmap().WithZone("")
			if !isTrusted(trusted, a) {
				return a, true
			}
		}
	}
	return a, true
}

func isTrusted(trusted []netip.Prefix, a netip.Addr) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
