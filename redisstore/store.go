// Package redisstore keeps wsgate's one-time WebSocket tickets in Redis, so
// that every server of a fleet accepts a ticket that any of them issued,
// once.
//
// Each ticket is one key: the prefix and the hex SHA-256 digest of the
// ticket, holding the encoded ticket.Record (principal, expiry,
// bindings) and expiring with the ticket. Put is SET key value PX ttl NX,
// Consume is GETDEL: one round trip each, and atomic in Redis, so of any
// number of handshakes racing with one ticket, on any servers, exactly one
// gets it. GETDEL needs Redis 6.2 or later. A dump of the database holds no
// usable ticket.
//
//	store := redisstore.New(redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"}), "")
//	tickets := &ticket.Service[User]{Store: store, BindOrigin: true, Path: "/ws"}
package redisstore

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/wsgate/wsgate/ticket"
)

// DefaultPrefix is the key prefix New uses when given "".
const DefaultPrefix = "wsgate:ticket:"

// Store is a ticket.Store in Redis. It is safe for concurrent use.
// Servers that accept each other's tickets must use the same Redis and the
// same prefix.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
}

var _ ticket.Store = (*Store)(nil)

var errExists = errors.New("redisstore: ticket hash already stored")

// New returns a Store that keeps tickets in rdb (a *redis.Client,
// *redis.ClusterClient or *redis.Ring) under keys starting with prefix, or
// DefaultPrefix when prefix is "". The caller keeps ownership of rdb.
func New(rdb redis.UniversalClient, prefix string) *Store {
	if rdb == nil {
		panic("redisstore: New with a nil client")
	}
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return &Store{rdb: rdb, prefix: prefix}
}

func (s *Store) key(hash [32]byte) string {
	var b [64]byte
	hex.Encode(b[:], hash[:])
	return s.prefix + string(b[:])
}

// Put stores rec under hash for ttl (at least a millisecond) with
// SET key value PX ttl NX. It fails if the key exists.
func (s *Store) Put(ctx context.Context, hash [32]byte, rec ticket.Record, ttl time.Duration) error {
	val, err := rec.MarshalBinary()
	if err != nil {
		return fmt.Errorf("redisstore: encoding ticket: %w", err)
	}
	ms := ttl.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	cmd := redis.NewBoolCmd(ctx, "set", s.key(hash), val, "px", ms, "nx")
	_ = s.rdb.Process(ctx, cmd)
	stored, err := cmd.Result()
	if err != nil {
		return fmt.Errorf("redisstore: storing ticket: %w", err)
	}
	if !stored {
		return errExists
	}
	return nil
}

// Consume removes and returns the record under hash with GETDEL, or returns
// ticket.ErrNotFound when Redis holds none (never stored, consumed, or
// expired).
func (s *Store) Consume(ctx context.Context, hash [32]byte) (ticket.Record, error) {
	val, err := s.rdb.GetDel(ctx, s.key(hash)).Bytes()
	if err == redis.Nil {
		return ticket.Record{}, ticket.ErrNotFound
	}
	if err != nil {
		return ticket.Record{}, fmt.Errorf("redisstore: consuming ticket: %w", err)
	}
	var rec ticket.Record
	if err := rec.UnmarshalBinary(val); err != nil {
		return ticket.Record{}, fmt.Errorf("redisstore: decoding ticket: %w", err)
	}
	return rec, nil
}
