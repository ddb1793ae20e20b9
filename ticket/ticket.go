package ticket

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"time"
	"unsafe"

	"github.com/wsgate/wsgate"
	"github.com/wsgate/wsgate/internal/clientaddr"
	"github.com/wsgate/wsgate/internal/weborigin"
)

// DefaultTTL is how long a ticket stays valid when Service.TTL is 0.
const DefaultTTL = 30 * time.Second

// entropy is the ticket's size in bytes: 256 bits from crypto/rand.
const entropy = 32

// Length is the length of a ticket string: 256 bits of entropy in unpadded
// base64url, which fits a query string and a subprotocol entry without
// escaping.
const Length = (entropy*8 + 5) / 6

// ErrClientUnknown is what Service.Issue returns when BindClient is set and
// the issuing request's client address cannot be told: r.RemoteAddr is no
// IP address, or a trusted proxy sent a malformed X-Forwarded-For. The
// issuer answers it with 400.
var ErrClientUnknown = errors.New("ticket: client address unknown")

// MaxOriginLength is the longest Origin header a ticket is bound to (with
// BindOrigin); a longer one is no origin a browser sends (a host name has at
// most 253 characters), and Issue refuses it with ErrOriginTooLong rather
// than storing it.
const MaxOriginLength = 300

// ErrOriginTooLong is what Service.Issue returns, with BindOrigin set, when
// the issuing request's Origin is longer than MaxOriginLength. The issuer
// answers it with 400.
var ErrOriginTooLong = errors.New("ticket: Origin too long to bind")

// Refusals the verifier returns. Each wraps wsgate.ErrInvalidToken, so the
// gate answers 401 with error="invalid_token", and says why in the log.
var (
	errMalformed = fmt.Errorf("%w: not a ticket", wsgate.ErrInvalidToken)
	errUnknown   = fmt.Errorf("%w: ticket unknown, used or expired", wsgate.ErrInvalidToken)
	errExpired   = fmt.Errorf("%w: ticket expired", wsgate.ErrInvalidToken)
	errOrigin    = fmt.Errorf("%w: ticket issued to another origin", wsgate.ErrInvalidToken)
	errPath      = fmt.Errorf("%w: ticket issued for another path", wsgate.ErrInvalidToken)
	errClient    = fmt.Errorf("%w: ticket issued to another client address", wsgate.ErrInvalidToken)
)

// Service issues one-time WebSocket tickets and verifies them. P is the
// principal a ticket stands for. Set the fields before calling Issuer,
// Verifier or Issue, and do not change them afterwards; a Service is then
// safe for concurrent use. Servers that share the Store and the principal
// encoding accept each other's tickets.
type Service[P any] struct {
	// Store keeps the tickets. It is required.
	Store Store

	// TTL is how long a ticket stays valid; 0 means DefaultTTL. Keep it
	// short: the page should open the socket right after fetching.
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

func (s *Service[P]) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Service[P]) ttl() time.Duration {
	if s.TTL > 0 {
		return s.TTL
	}
	return DefaultTTL
}

func (s *Service[P]) mustHaveStore() {
	if s.Store == nil {
		panic("ticket: Service without a Store")
	}
}

// Issue mints a ticket for principal, bound as configured to the request r
// that asked for it, and stores its hash; r must not be nil, and its
// context bounds the store call. Most applications mount Issuer instead;
// Issue is for those that hand the ticket out in their own response. The
// ticket is Length characters of unpadded base64url.
//
// Issue returns ErrClientUnknown when BindClient is set and r's client
// address cannot be told; ErrOriginTooLong when BindOrigin is set and r's
// Origin is longer than MaxOriginLength; an error wrapping the one Marshal returned when
// the principal cannot be encoded; and otherwise the error of Store.Put as
// it is, which matches ErrStoreFull when the store is out of room, and the
// context's error when r's context ends first; ErrQuotaExceeded when the
// principal holds too many outstanding tickets. It panics if the Store is
// nil.
func (s *Service[P]) Issue(r *http.Request, principal P) (string, error) {
	s.mustHaveStore()
	var enc []byte
	var err error
	if s.Marshal != nil {
		enc, err = s.Marshal(principal)
	} else {
		enc, err = json.Marshal(principal)
	}
	if err != nil {
		return "", fmt.Errorf("ticket: encoding principal: %w", err)
	}
	ttl := s.ttl()
	rec := Record{Principal: enc, Expires: s.now().Add(ttl)}
	if s.BindOrigin {
		rec.Bound |= BindOrigin
		if o := r.Header["Origin"]; len(o) > 0 {
			if len(o[0]) > MaxOriginLength {
				return "", ErrOriginTooLong
			}
			rec.Origin = canonicalOrigin(o[0])
		}
	}
	if s.Path != "" {
		rec.Bound |= BindPath
		rec.Path = s.Path
	}
	if s.BindClient {
		rec.Bound |= BindClient
		var ok bool
		if rec.Client, ok = s.clientAddr(r); !ok {
			return "", ErrClientUnknown
		}
	}
	var raw [entropy]byte
	rand.Read(raw[:]) // never fails (crypto/rand)
	ticket := base64.RawURLEncoding.EncodeToString(raw[:])
	if err := s.Store.Put(r.Context(), sha256.Sum256(stringBytes(ticket)), rec, ttl); err != nil {
		return "", err
	}
	return ticket, nil
}

type issued struct {
	Ticket    string `json:"ticket"`
	ExpiresIn int    `json:"expires_in"`
}

// Header values the issuer sets, shared so that setting them allocates
// nothing.
var (
	hdrNoStore = []string{"no-store"}
	hdrNoSniff = []string{"nosniff"}
	hdrJSON    = []string{"application/json"}
	hdrPost    = []string{http.MethodPost}
	hdrRetry   = []string{"1"}
)

// Issuer returns a handler that mints tickets. Mount it behind the
// application's own authentication, on a path the page can fetch with its
// credentials; principal tells who the request is (false: not signed in).
//
// It answers a POST with 200 and {"ticket": "...", "expires_in": 30}
// (seconds, rounded down), with Cache-Control: no-store. Other methods get
// 405, requests principal refuses 401, ErrStoreFull (see
// MemoryStoreOptions.MaxEntries) 503 with Retry-After, ErrQuotaExceeded
// (see MemoryStoreOptions.MaxPerPrincipal) 429 with Retry-After,
// ErrClientUnknown (with BindClient, a malformed X-Forwarded-For from a
// trusted proxy) and ErrOriginTooLong 400, and any other error of Issue
// 500. It panics if principal or the Store is
// nil.
func (s *Service[P]) Issuer(principal func(r *http.Request) (P, bool)) http.Handler {
	s.mustHaveStore()
	if principal == nil {
		panic("ticket: Service.Issuer with a nil principal function")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Cache-Control"] = hdrNoStore
		if r.Method != http.MethodPost {
			h["Allow"] = hdrPost
			http.Error(w, "ticket issuer requires POST", http.StatusMethodNotAllowed)
			return
		}
		p, ok := principal(r)
		if !ok {
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		ticket, err := s.Issue(r, p)
		switch {
		case errors.Is(err, ErrStoreFull):
			h["Retry-After"] = hdrRetry
			http.Error(w, "too many outstanding tickets", http.StatusServiceUnavailable)
			return
		case errors.Is(err, ErrQuotaExceeded):
			h["Retry-After"] = hdrRetry
			http.Error(w, "too many outstanding tickets for this user", http.StatusTooManyRequests)
			return
		case errors.Is(err, ErrClientUnknown):
			http.Error(w, "client address unknown", http.StatusBadRequest)
			return
		case errors.Is(err, ErrOriginTooLong):
			http.Error(w, "Origin too long", http.StatusBadRequest)
			return
		case err != nil:
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		body, _ := json.Marshal(issued{Ticket: ticket, ExpiresIn: int(s.ttl() / time.Second)})
		h["Content-Type"] = hdrJSON
		h["X-Content-Type-Options"] = hdrNoSniff
		w.Write(body)
	})
}

// Verifier returns a wsgate.Verifier that accepts each ticket once. Use it
// with any extractor: wsgate.Query("ticket") or
// wsgate.Subprotocol(wsgate.DefaultMarker). It consumes the ticket from the
// store first, so a ticket is spent even when a later check or the upgrade
// fails, and of concurrent handshakes with one ticket only one gets past
// this point.
//
// Unknown, used, expired and wrongly bound tickets are refused with errors
// wrapping wsgate.ErrInvalidToken (the gate answers 401,
// error="invalid_token"), each saying why. A store failure is returned
// wrapped, so it matches the store's own error (the gate answers 500, or
// 503 when it is the gate's deadline), and a principal Unmarshal cannot
// decode wraps Unmarshal's error (500). The bindings are checked against
// the handshake request, found with wsgate.RequestFrom, so the verifier
// refuses bound tickets outside a Gate. It panics if the Store is nil.
func (s *Service[P]) Verifier() wsgate.Verifier[P] {
	s.mustHaveStore()
	return func(ctx context.Context, c wsgate.Credential) (P, error) {
		var zero P
		if !isTicket(c.Token()) {
			return zero, errMalformed
		}
		rec, err := s.Store.Consume(ctx, sha256.Sum256(stringBytes(c.Token())))
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				return zero, errUnknown
			}
			return zero, fmt.Errorf("ticket: consuming: %w", err)
		}
		if !s.now().Before(rec.Expires) {
			return zero, errExpired
		}
		if err := s.checkBindings(wsgate.RequestFrom(ctx), &rec); err != nil {
			return zero, err
		}
		var p P
		if s.Unmarshal != nil {
			p, err = s.Unmarshal(rec.Principal)
		} else {
			err = json.Unmarshal(rec.Principal, &p)
		}
		if err != nil {
			return zero, fmt.Errorf("ticket: decoding principal: %w", err)
		}
		return p, nil
	}
}

func (s *Service[P]) checkBindings(r *http.Request, rec *Record) error {
	if rec.Bound == 0 {
		return nil
	}
	if r == nil {
		return errUnknown
	}
	if rec.Bound&BindOrigin != 0 {
		o := r.Header["Origin"]
		if len(o) > 1 || len(o) == 1 && (len(o[0]) > MaxOriginLength || canonicalOrigin(o[0]) != rec.Origin) || len(o) == 0 && rec.Origin != "" {
			return errOrigin
		}
	}
	if rec.Bound&BindPath != 0 && (r.URL == nil || r.URL.Path != rec.Path) {
		return errPath
	}
	if rec.Bound&BindClient != 0 {
		if a, ok := s.clientAddr(r); !ok || a != rec.Client {
			return errClient
		}
	}
	return nil
}

// canonicalOrigin is the form a bound Origin is stored and compared in:
// scheme and host in lower case, the default port left out (see
// weborigin.Canonical), exactly the equality the gate's origin policy
// applies. A value that is no origin ("null", say) is kept as it is and
// compared byte for byte.
func canonicalOrigin(v string) string {
	if c, ok := weborigin.Canonical(v); ok {
		return c
	}
	return v
}

// isTicket reports whether s has the shape of a ticket, so that junk costs
// no store round trip.
func isTicket(s string) bool {
	if len(s) != Length {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(isAlnum(c) || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// stringBytes returns the bytes of s without copying, for read-only use.
func stringBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// clientAddr is the client's IP address, with X-Forwarded-For believed
// from TrustedProxies only (see clientaddr.Of, which the gate's limiter
// shares).
func (s *Service[P]) clientAddr(r *http.Request) (netip.Addr, bool) {
	return clientaddr.Of(r, s.TrustedProxies)
}
