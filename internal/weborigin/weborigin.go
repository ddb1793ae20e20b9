// Package weborigin parses and compares serialized web origins (RFC 6454)
// the way wsgate's origin policy does: scheme and host case-insensitive,
// the default ports of http, https, ws and wss implied. The origin policy of
// package wsgate and the Origin binding of package ticket both use it, so a
// ticket bound to an origin is accepted exactly when the policy would treat
// the two origins as one.
package weborigin

import (
	"net/netip"
	"strings"
)

// Parse parses an Origin header value strictly: scheme "://" host
// [":" port], nothing before or after. "null", userinfo, paths and
// unexpected characters fail. The port is "" when it is the scheme's
// default; scheme and host keep the case they had.
func Parse(v string) (scheme, host, port string, ok bool) {
	i := strings.Index(v, "://")
	if i <= 0 || !ValidScheme(v[:i]) {
		return "", "", "", false
	}
	scheme = v[:i]
	if host, port, ok = SplitHostPort(v[i+3:]); !ok {
		return "", "", "", false
	}
	return scheme, host, NormalisePort(scheme, port), true
}

// Canonical returns the serialization of the origin v with scheme and host
// in lower case and the default port left out, so that two values the
// origin policy treats as the same origin have the same canonical form. ok
// is false when v is no origin (see Parse).
func Canonical(v string) (string, bool) {
	scheme, host, port, ok := Parse(v)
	if !ok {
		return "", false
	}
	c := strings.ToLower(scheme) + "://" + strings.ToLower(host)
	if port != "" {
		c += ":" + port
	}
	return c, true
}

// ValidScheme reports whether s is an RFC 3986 scheme.
func ValidScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i] | 0x20
		if !('a' <= c && c <= 'z' || i > 0 && ('0' <= s[i] && s[i] <= '9' || s[i] == '+' || s[i] == '-' || s[i] == '.')) {
			return false
		}
	}
	return true
}

// SplitHostPort splits "host", "host:port", "[v6]" or "[v6]:port", refusing
// empty hosts, empty or non-numeric ports, and any character that cannot be
// part of a host name or address.
func SplitHostPort(s string) (host, port string, ok bool) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 2 {
			return "", "", false
		}
		host, s = s[:end+1], s[end+1:]
		for i := 1; i < len(host)-1; i++ {
			if c := host[i]; !(isHex(c) || c == ':' || c == '.') {
				return "", "", false
			}
		}
		// A bracketed host is an IPv6 address (RFC 3986), as net/url
		// requires too: "[0]" is not one.
		if a, err := netip.ParseAddr(host[1 : len(host)-1]); err != nil || !a.Is6() {
			return "", "", false
		}
		if s == "" {
			return host, "", true
		}
		if s[0] != ':' {
			return "", "", false
		}
		port = s[1:]
	} else {
		host, s = s, ""
		if i := strings.IndexByte(host, ':'); i >= 0 {
			host, port, s = host[:i], host[i+1:], host[i:]
			if port == "" {
				return "", "", false
			}
		}
		if host == "" {
			return "", "", false
		}
		for i := 0; i < len(host); i++ {
			if c := host[i]; !(isAlnum(c) || c == '-' || c == '.' || c == '_') {
				return "", "", false
			}
		}
	}
	if s == "" && port == "" {
		return host, "", true
	}
	if port == "" || len(port) > 5 {
		return "", "", false
	}
	for i := 0; i < len(port); i++ {
		if port[i] < '0' || port[i] > '9' {
			return "", "", false
		}
	}
	return host, port, true
}

// NormalisePort drops a port that is the default for scheme.
func NormalisePort(scheme, port string) string {
	switch {
	case port == "80" && (strings.EqualFold(scheme, "http") || strings.EqualFold(scheme, "ws")),
		port == "443" && (strings.EqualFold(scheme, "https") || strings.EqualFold(scheme, "wss")):
		return ""
	}
	return port
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c|0x20 && c|0x20 <= 'f'
}
