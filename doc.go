// Package wsgate authenticates WebSocket opening handshakes on net/http
// servers and then completes the upgrade itself, handing over a connection
// ready for github.com/gobwas/ws's framing.
//
// A browser's WebSocket constructor cannot set an Authorization header, so a
// browser proves who it is with what it can carry: a Sec-WebSocket-Protocol
// entry, URL userinfo (sent as Authorization: Basic after a challenge), a
// cookie, or a query parameter. Each of these has an Extractor, and an
// application can add its own. A Gate runs one pipeline for every handshake:
// the RFC 6455 checks, the origin policy, the extractors and the rules that
// combine ambient and explicit credentials, a Verifier, and then either a
// refusal (an HTTP error, or with Config.RefuseWithCloseFrame a close frame
// a browser page can read) or the 101, which the gate writes itself.
// InBandAuth authenticates the first message instead, and SetExpiry lets a
// Verifier end a connection when its credential expires.
//
// Every entry point runs that pipeline and answers alike: Gate.Handler
// upgrades and hands the Session to a callback; Gate.Middleware puts the
// outcome in the request context (AuthFrom) for a handler that calls
// Upgrade; frameworks call Gate.Authenticate, then Gate.Refuse or
// Gate.Accept; and servers without net/http hand a net.Conn to
// Gate.UpgradeConn, or a net.Listener to Gate.Serve, which read the
// handshake with gobwas/ws's Upgrader. One-time tickets are in the
// subpackage ticket; whole-message reading and writing, with or without
// permessage-deflate, in the subpackage message.
package wsgate
