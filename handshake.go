package wsgate

import (
	"net/http"
)

// Canonical header keys, so lookups in http.Header allocate nothing.
const (
	hUpgrade     = "Upgrade"
	hConnection  = "Connection"
	hWSVersion   = "Sec-Websocket-Version"
	hWSKey       = "Sec-Websocket-Key"
	hWSProtocol  = "Sec-Websocket-Protocol"
	hOrigin      = "Origin"
	hFetchSite   = "Sec-Fetch-Site"
	hAuth        = "Authorization"
	hCookie      = "Cookie"
	hFwdProto    = "X-Forwarded-Proto"
	hFwdHost     = "X-Forwarded-Host"
	versionValue = "13"
)

// CheckHandshake reports whether r is a valid RFC 6455 opening handshake, or
// an RFC 8441 one over HTTP/2. It returns nil or an *Error matching
// ErrHandshake whose status and reason say what is wrong:
//
//   - not HTTP/1.1 or later over HTTP/1 (HTTP/1.0), and not HTTP/2: 400,
//     "WebSocket handshake requires HTTP/1.1"
//   - method other than GET: 405 with Allow: GET
//   - no Host (net/http admits an empty Host header): 400
//   - Upgrade lacks the websocket token (so Upgrade: h2c is never honoured):
//     426 with Upgrade: websocket
//   - Connection lacks the upgrade token: 400. Both headers are
//     read as comma-separated lists across repeated lines, so Firefox's
//     "Connection: keep-alive, Upgrade" passes. A 400 rather than a 426,
//     because the client did ask to upgrade; something on the way dropped the
//     hop-by-hop header, and no Upgrade answer can repair that.
//   - Sec-WebSocket-Version missing or repeated: 400; present but not 13: 426;
//     both with Sec-WebSocket-Version: 13
//   - Sec-WebSocket-Key missing, repeated, or not the standard (padded)
//     base64 encoding of 16 bytes after trimming spaces and tabs: 400
//   - a body (Content-Length > 0 or any Transfer-Encoding): 400
//
// Over HTTP/2 (RFC 8441 section 5) the request must instead be an extended
// CONNECT with the :protocol pseudo-header websocket, which net/http shows
// as Method "CONNECT" and Header[":protocol"]; anything else is 400.
// Host and Sec-WebSocket-Version are checked as above, but
// a wrong version is 400 (HTTP/2 has no Upgrade for a 426 to name).
// Upgrade, Connection and Sec-WebSocket-Key are not used and not required,
// and the request's body is the stream. net/http delivers extended CONNECT
// requests only when its GODEBUG setting http2xconnect=1 is in the
// process's environment; see the package README.
//
// CheckHandshake reads headers only and allocates nothing. It does not apply
// an origin policy; see OriginPolicy.
func CheckHandshake(r *http.Request) error {
	if _, err := checkHandshake(r); err != nil {
		return err.clone()
	}
	return nil
}

// checkHandshake is CheckHandshake. It also returns the trimmed
// Sec-WebSocket-Key ("" over HTTP/2, which has none).
func checkHandshake(r *http.Request) (key string, err *Error) {
	if r.ProtoMajor != 1 || r.ProtoMinor < 1 {
		if r.ProtoMajor == 2 {
			return "", checkConnect(r)
		}
		return "", errHTTPVersion
	}
	if r.Method != http.MethodGet {
		return "", errMethod
	}
	if r.Host == "" {
		return "", errHost
	}
	h := r.Header
	up, conn := h[hUpgrade], h[hConnection]
	if !hasToken(up, "websocket") {
		return "", errUpgrade
	}
	if !hasToken(conn, "upgrade") {
		return "", errConnection
	}
	v := h[hWSVersion]
	switch {
	case len(v) != 1:
		return "", errVersionMissing
	case v[0] != versionValue && trimOWS(v[0]) != versionValue:
		return "", errVersion
	}
	k := h[hWSKey]
	if len(k) != 1 {
		return "", errKey
	}
	key = k[0]
	if len(key) != keyLen {
		key = trimOWS(key)
	}
	if !validKey(key) {
		return "", errKey
	}
	if r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
		return "", errBody
	}
	return key, nil
}
