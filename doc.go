// Package wsgate authenticates WebSocket opening handshakes on net/http
// servers and then completes the upgrade with github.com/gobwas/ws.
//
// A browser's WebSocket constructor cannot set an Authorization header, so a
// browser proves who it is with what it can carry: a Sec-WebSocket-Protocol
// entry, URL userinfo (sent as Authorization: Basic after a challenge), a
// cookie, or a query parameter. Each of these has an Extractor. A Gate runs
// the RFC 6455 checks, the origin policy, the extractors and a Verifier, in
// that order, and answers every refusal with an HTTP error before anything is
// hijacked, or, with RefuseCloseFrame, with a close frame a browser page can
// read. InBandAuth authenticates the first message instead, and SetExpiry
// lets a Verifier end a connection when its credential expires.
//
// A Gate is used either as middleware (Gate.Middleware), which puts the
// verified principal in the request context and leaves the upgrade to the
// wrapped handler (see Upgrade), or as a handler (Gate.Handler), which
// upgrades and hands the connection and principal to a callback.
//
// The pieces work alone too: CheckHandshake validates a request,
// AppendAcceptKey computes Sec-WebSocket-Accept, OriginPolicy.Check applies
// the origin policy, Extractor.Extract finds a credential, and Upgrade
// switches protocols.
package wsgate
