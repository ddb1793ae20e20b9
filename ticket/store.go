package ticket

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"time"
)

// ErrNotFound is what a Store's Consume returns when no live ticket has the
// hash: it was never issued, was already consumed, or expired.
var ErrNotFound = errors.New("ticket: not found")

// ErrStoreFull is what a Store's Put returns, alone or wrapped, when it
// refuses a new ticket for lack of room. Service.Issue passes it on, and
// the issuer answers it with 503.
var ErrStoreFull = errors.New("ticket: store full")

// ErrQuotaExceeded is what a Store's Put returns, alone or wrapped, when the
// ticket's principal already holds as many outstanding tickets as the store
// allows (MemoryStoreOptions.MaxPerPrincipal). Service.Issue passes it on,
// and the issuer answers it with 429 and Retry-After.
var ErrQuotaExceeded = errors.New("ticket: too many outstanding tickets for this principal")

// Store keeps issued tickets until they are consumed or expire. Keys are
// SHA-256 digests of ticket strings; a store never sees a ticket itself.
// Implementations must be safe for concurrent use. MemoryStore is one for a
// single process, and the module github.com/wsgate/wsgate/redisstore has one
// that a fleet of servers can share.
type Store interface {
	// Put stores rec under hash for ttl. It must not replace a live entry
	// (it returns an error instead), and returns ErrStoreFull, or an error
	// wrapping it, when it is out of room.
	Put(ctx context.Context, hash [32]byte, rec Record, ttl time.Duration) error

	// Consume removes the entry under hash and returns it, as one atomic
	// step: of any number of concurrent calls with the same hash, at most
	// one gets the record. It returns ErrNotFound, or an error wrapping it,
	// when there is no live entry.
	Consume(ctx context.Context, hash [32]byte) (Record, error)
}

// Binding is a set of properties of the issuing request that the handshake
// must share for its ticket to be accepted.
type Binding uint8

// The properties a ticket can be bound to.
const (
	// BindOrigin: the handshake's Origin header equals the issuing
	// request's (both absent counts as equal).
	BindOrigin Binding = 1 << iota
	// BindPath: the handshake's URL path equals Record.Path.
	BindPath
	// BindClient: the handshake comes from the issuing request's client
	// IP address (not port).
	BindClient
)

// Record is what a Store keeps for one ticket. It holds no part of the
// ticket itself.
type Record struct {
	// Principal is the principal, encoded by Service.Marshal.
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
func (rec Record) MarshalBinary() ([]byte, error) {
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

var errRecordEncoding = errors.New("ticket: malformed record")

// UnmarshalBinary decodes what MarshalBinary encoded. Principal keeps a
// reference to b.
func (rec *Record) UnmarshalBinary(b []byte) error {
	if len(b) < 10 || b[0] != recordVersion {
		return errRecordEncoding
	}
	var r Record
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
