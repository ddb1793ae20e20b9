package wsgate

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// A one-time ticket lets a browser open an authenticated WebSocket with
// nothing but the URL or a subprotocol entry: the page asks an issuer it
// can reach with its normal credentials (a cookie, a header) for a ticket,
// and opens the socket with the ticket within seconds. The ticket is random,
// short-lived, valid once, and kept by the server only as its SHA-256
// digest, so the places a query string ends up (access logs, proxy logs,
// browser history) hold nothing that opens a second socket.

// DefaultTicketTTL is how long a ticket stays valid when Tickets.TTL is 0.
const DefaultTicketTTL = 30 * time.Second

// ticketBytes is the ticket's entropy: 256 bits from crypto/rand.
const ticketBytes = 32

// TicketLen is the length of a ticket string: ticketBytes of entropy in
// unpadded base64url, which fits a query string and a subprotocol entry
// without escaping.
const TicketLen = (ticketBytes*8 + 5) / 6

// ErrTicketNotFound is what a TicketStore's Consume returns when no live
// ticket has the hash: it was never issued, was already consumed, or
// expired.
var ErrTicketNotFound = errors.New("wsgate: ticket not found")

// ErrTicketStoreFull is what a TicketStore's Put returns when it refuses a
// new ticket for lack of room. The issuer answers it with 503.
var ErrTicketStoreFull = errors.New("wsgate: ticket store full")

// Refusals the ticket verifier returns. Each wraps ErrInvalidToken, so the
// gate answers 401 with error="invalid_token", and says why in the log.
var (
	errTicketMalformed = fmt.Errorf("%w: not a ticket", ErrInvalidToken)
	errTicketUnknown   = fmt.Errorf("%w: ticket unknown, used or expired", ErrInvalidToken)
	errTicketExpired   = fmt.Errorf("%w: ticket expired", ErrInvalidToken)
	errTicketOrigin    = fmt.Errorf("%w: ticket issued to another origin", ErrInvalidToken)
	errTicketPath      = fmt.Errorf("%w: ticket issued for another path", ErrInvalidToken)
	errTicketClient    = fmt.Errorf("%w: ticket issued to another client address", ErrInvalidToken)
	errNoClientAddr    = errors.New("wsgate: client address unknown")
)

// TicketStore keeps issued tickets until they are consumed or expire. Keys
// are SHA-256 digests of ticket strings; a store never sees a ticket itself.
// Implementations must be safe for concurrent use; NewMemoryTicketStore
// returns one for a single process, and the module
// github.com/wsgate/wsgate/redisstore one that a fleet of servers can share.
type TicketStore interface {
	// Put stores rec under hash for ttl. It must not replace a live entry
	// (it returns an error instead), and returns ErrTicketStoreFull, or an
	// error wrapping it, when it is out of room.
	Put(ctx context.Context, hash [32]byte, rec TicketRecord, ttl time.Duration) error

	// Consume removes the entry under hash and returns it, as one atomic
	// step: of any number of concurrent calls with the same hash, at most
	// one gets the record. It returns ErrTicketNotFound when there is no
	// live entry.
	Consume(ctx context.Context, hash [32]byte) (TicketRecord, error)
}

// Binding is a set of properties of the issuing request that the handshake
// must share for its ticket to be accepted.
type Binding uint8

// The properties a ticket can be bound to.
const (
	// BindOrigin: the handshake's Origin header equals the issuing
	// request's (both absent counts as equal).
	BindOrigin Binding = 1 << iota
	// BindPath: the handshake's URL path equals TicketRecord.Path.
	BindPath
	// BindClient: the handshake comes from the issuing request's client
	// IP address (not port).
	BindClient
)

// TicketRecord is what a TicketStore keeps for one ticket. It holds no part
// of the ticket itself.
type TicketRecord struct {
	// Principal is the principal, encoded by Tickets.Marshal.
	Principal []byte
	// Expires is when the ticket stops being valid, by the issuer's clock.
	Expires time.Time
	// Bound says which of Origin, Path and Client the handshake must match.
	Bound Binding
	// Origin is the issuing request's Origin header ("" for none).
	Origin string
	// Path is the handshake path the ticket is for.
	Path string
	// Client is the issuing client's IP address.
	Client netip.Addr
}

const recordVersion = 1

// MarshalBinary encodes the record compactly, for stores that keep bytes.
func (rec TicketRecord) MarshalBinary() ([]byte, error) {
	client, err := rec.Client.MarshalBinary()
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, 2+8+3*binary.MaxVarintLen16+len(rec.Origin)+len(rec.Path)+len(client)+len(rec.Principal))
	b = append(b, recordVersion, byte(rec.Bound))
	b = binary.BigEndian.AppendUint64(b, uint64(rec.Expires.UnixNano()))
	b = binary.AppendUvarint(b, uint64(len(rec.Origin)))
	b = append(b, rec.Origin...)
	b = binary.AppendUvarint(b, uint64(len(rec.Path)))
	b = append(b, rec.Path...)
	b = binary.AppendUvarint(b, uint64(len(client)))
	b = append(b, client...)
	return append(b, rec.Principal...), nil
}

var errRecordEncoding = errors.New("wsgate: malformed ticket record")

// UnmarshalBinary decodes what MarshalBinary encoded. Principal keeps a
// reference to b.
func (rec *TicketRecord) UnmarshalBinary(b []byte) error {
	if len(b) < 10 || b[0] != recordVersion {
		return errRecordEncoding
	}
	var r TicketRecord
	r.Bound = Binding(b[1])
	r.Expires = time.Unix(0, int64(binary.BigEndian.Uint64(b[2:10])))
	b = b[10:]
	field := func() ([]byte, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, false
		}
		f := b[k : k+int(n)]
		b = b[k+int(n):]
		return f, true
	}
	origin, ok1 := field()
	path, ok2 := field()
	client, ok3 := field()
	if !ok1 || !ok2 || !ok3 || r.Client.UnmarshalBinary(client) != nil {
		return errRecordEncoding
	}
	r.Origin, r.Path, r.Principal = string(origin), string(path), b
	*rec = r
	return nil
}

// Tickets issues one-time WebSocket tickets and verifies them. P is the
// principal a ticket stands for. Set the fields before calling Issuer,
// Verifier or Issue, and do not change them afterwards; a Tickets is then
// safe for concurrent use. Servers that share the Store and the principal
// encoding accept each other's tickets.
type Tickets[P any] struct {
	// Store keeps the tickets. It is required.
	Store TicketStore

	// TTL is how long a ticket stays valid; 0 means DefaultTicketTTL. Keep
	// it short: the page should open the socket right after fetching.
	TTL time.Duration

	// BindOrigin binds each ticket to the Origin header of the request that
	// fetched it, so a ticket that leaks to another site's page is refused
	// there.
	BindOrigin bool

	// Path, when set, binds each ticket to this handshake URL path.
	Path string

	// BindClient binds each ticket to the client's IP address: the host of
	// r.RemoteAddr, or, when that is one of TrustedProxies, the nearest
	// address in X-Forwarded-For that is not. Clients whose address changes
	// between the fetch and the handshake (some mobile networks, dual-stack
	// hosts) are then refused.
	BindClient bool

	// TrustedProxies are the networks of reverse proxies whose
	// X-Forwarded-For is believed. Empty means X-Forwarded-For is ignored:
	// anybody can send one.
	TrustedProxies []netip.Prefix

	// Marshal and Unmarshal encode the principal for the store; nil means
	// encoding/json.
	Marshal   func(P) ([]byte, error)
	Unmarshal func([]byte) (P, error)

	// Now is the clock; nil means time.Now. Tests set it.
	Now func() time.Time
}

func (t *Tickets[P]) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

func (t *Tickets[P]) ttl() time.Duration {
	if t.TTL > 0 {
		return t.TTL
	}
	return DefaultTicketTTL
}

func (t *Tickets[P]) mustHaveStore() {
	if t.Store == nil {
		panic("wsgate: Tickets without a Store")
	}
}

// Issue mints a ticket for principal, bound as configured to the request r
// that asked for it, and stores its hash; r must not be nil, and its
// context bounds the store call. Most applications mount Issuer instead;
// Issue is for those that hand the ticket out in their own response. The
// ticket is TicketLen characters of unpadded base64url.
func (t *Tickets[P]) Issue(r *http.Request, principal P) (string, error) {
	t.mustHaveStore()
	var enc []byte
	var err error
	if t.Marshal != nil {
		enc, err = t.Marshal(principal)
	} else {
		enc, err = json.Marshal(principal)
	}
	if err != nil {
		return "", fmt.Errorf("wsgate: encoding ticket principal: %w", err)
	}
	ttl := t.ttl()
	rec := TicketRecord{Principal: enc, Expires: t.now().Add(ttl)}
	if t.BindOrigin {
		rec.Bound |= BindOrigin
		if o := r.Header[hOrigin]; len(o) > 0 {
			rec.Origin = o[0]
		}
	}
	if t.Path != "" {
		rec.Bound |= BindPath
		rec.Path = t.Path
	}
	if t.BindClient {
		rec.Bound |= BindClient
		var ok bool
		if rec.Client, ok = t.clientAddr(r); !ok {
			return "", errNoClientAddr
		}
	}
	var raw [ticketBytes]byte
	rand.Read(raw[:]) // never fails (crypto/rand)
	ticket := base64.RawURLEncoding.EncodeToString(raw[:])
	if err := t.Store.Put(r.Context(), sha256.Sum256([]byte(ticket)), rec, ttl); err != nil {
		return "", err
	}
	return ticket, nil
}

type ticketResponse struct {
	Ticket    string `json:"ticket"`
	ExpiresIn int    `json:"expires_in"`
}

// Issuer returns a handler that mints tickets. Mount it behind the
// application's own authentication, on a path the page can fetch with its
// credentials; principal tells who the request is (false: not signed in).
//
// It answers a POST with 200 and {"ticket": "...", "expires_in": 30}
// (seconds, rounded down), with Cache-Control: no-store. Other methods get
// 405, requests principal refuses 401, a full store (see
// MemoryTicketStoreOptions.MaxEntries) 503 with Retry-After, an unknown client
// address (malformed X-Forwarded-For from a trusted proxy, with BindClient)
// 400, and any other store failure 500. It panics if principal or the
// Store is nil.
func (t *Tickets[P]) Issuer(principal func(r *http.Request) (P, bool)) http.Handler {
	t.mustHaveStore()
	if principal == nil {
		panic("wsgate: Tickets.Issuer with a nil principal function")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Cache-Control"] = hdrNoStore
		if r.Method != http.MethodPost {
			h["Allow"] = []string{http.MethodPost}
			http.Error(w, "ticket issuer requires POST", http.StatusMethodNotAllowed)
			return
		}
		p, ok := principal(r)
		if !ok {
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		ticket, err := t.Issue(r, p)
		switch {
		case errors.Is(err, ErrTicketStoreFull):
			h["Retry-After"] = []string{"1"}
			http.Error(w, "too many outstanding tickets", http.StatusServiceUnavailable)
			return
		case err == errNoClientAddr:
			http.Error(w, "client address unknown", http.StatusBadRequest)
			return
		case err != nil:
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		body, _ := json.Marshal(ticketResponse{Ticket: ticket, ExpiresIn: int(t.ttl() / time.Second)})
		h["Content-Type"] = []string{"application/json"}
		h["X-Content-Type-Options"] = hdrNoSniff
		w.Write(body)
	})
}

// Verifier returns a Verifier that accepts each ticket once. Use it with
// any extractor: Query("ticket") or Subprotocol(DefaultMarker). It consumes
// the ticket from the store first, so a ticket is spent even when a later
// check or the upgrade fails, and of concurrent handshakes with one ticket
// only one gets past this point. Unknown, used, expired and wrongly bound
// tickets are ErrInvalidToken (401, error="invalid_token"); a store failure
// is a 500, or a 503 when it is the gate's deadline. The bindings are
// checked against the handshake request, found with RequestFrom, so the
// verifier refuses bound tickets outside a Gate. It panics if the Store is
// nil.
func (t *Tickets[P]) Verifier() Verifier[P] {
	t.mustHaveStore()
	return func(ctx context.Context, c Credential) (P, error) {
		var zero P
		if !isTicket(c.Token) {
			return zero, errTicketMalformed
		}
		rec, err := t.Store.Consume(ctx, sha256.Sum256(stringBytes(c.Token)))
		if err != nil {
			if errors.Is(err, ErrTicketNotFound) {
				return zero, errTicketUnknown
			}
			return zero, fmt.Errorf("wsgate: consuming ticket: %w", err)
		}
		if !t.now().Before(rec.Expires) {
			return zero, errTicketExpired
		}
		if err := t.checkBindings(RequestFrom(ctx), &rec); err != nil {
			return zero, err
		}
		var p P
		if t.Unmarshal != nil {
			p, err = t.Unmarshal(rec.Principal)
		} else {
			err = json.Unmarshal(rec.Principal, &p)
		}
		if err != nil {
			return zero, fmt.Errorf("wsgate: decoding ticket principal: %w", err)
		}
		return p, nil
	}
}

func (t *Tickets[P]) checkBindings(r *http.Request, rec *TicketRecord) error {
	if rec.Bound == 0 {
		return nil
	}
	if r == nil {
		return errTicketUnknown
	}
	if rec.Bound&BindOrigin != 0 {
		o := r.Header[hOrigin]
		if len(o) > 1 || len(o) == 1 && o[0] != rec.Origin || len(o) == 0 && rec.Origin != "" {
			return errTicketOrigin
		}
	}
	if rec.Bound&BindPath != 0 && (r.URL == nil || r.URL.Path != rec.Path) {
		return errTicketPath
	}
	if rec.Bound&BindClient != 0 {
		if a, ok := t.clientAddr(r); !ok || a != rec.Client {
			return errTicketClient
		}
	}
	return nil
}

// isTicket reports whether s has the shape of a ticket, so that junk costs
// no store round trip.
func isTicket(s string) bool {
	if len(s) != TicketLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(isAlnum(c) || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// clientAddr is the client's IP address: r.RemoteAddr's host, or, when the
// peer is a trusted proxy, the rightmost X-Forwarded-For entry that is not
// one (the leftmost if all are). A malformed entry on the way makes it
// unknown rather than a guess.
func (t *Tickets[P]) clientAddr(r *http.Request) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	var a netip.Addr
	if err == nil {
		a = ap.Addr()
	} else if a, err = netip.ParseAddr(r.RemoteAddr); err != nil {
		return netip.Addr{}, false
	}
	a = a.Unmap().WithZone("")
	if !t.trusted(a) {
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
			entry = trimOWS(entry)
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
			if !t.trusted(a) {
				return a, true
			}
		}
	}
	return a, true
}

func (t *Tickets[P]) trusted(a netip.Addr) bool {
	for _, p := range t.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
