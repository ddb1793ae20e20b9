// Package ticket issues and verifies one-time WebSocket tickets for a
// wsgate.Gate.
//
// A ticket lets a browser open an authenticated WebSocket with nothing but
// the URL or a subprotocol entry: the page asks an issuer it can reach with
// its normal credentials (a cookie, a header) for a ticket, and opens the
// socket with it within seconds. A ticket is 256 random bits, valid for a
// short TTL (DefaultTTL) and for one handshake, and the server keeps only
// its SHA-256 digest, so the places a query string ends up (access logs,
// proxy logs, browser history, a dump of the store) hold nothing that opens
// a second socket.
//
// A Service mints tickets (Service.Issuer, Service.Issue) and is the Gate's
// verifier (Service.Verifier); a Store keeps the digests: MemoryStore in one
// process, github.com/wsgate/wsgate/redisstore for a fleet. See the
// examples.
package ticket
