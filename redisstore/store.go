// Package redisstore keeps wsgate's one-time WebSocket tickets in Redis, so
// that every server of a fleet accepts a ticket that any of them issued,
// once.
//
// Each ticket is one key: the prefix and the hex SHA-256 digest of the
// ticket, holding the encoded ticket.Record (principal, expiry,
// bindings) and expiring with the ticket. Put is SET key value PX ttl NX,
// Consume is GETDEL: atomic in Redis, so of any number of handshakes racing
// with one ticket, on any servers, exactly one gets it. GETDEL needs Redis
// 6.2 or later. A dump of the database holds no usable ticket.
//
// Each principal's outstanding tickets are counted in a sorted set of its
// own (the prefix, "q:" and the hex SHA-256 digest of the encoded
// principal), scored by expiry, for Store.MaxPerPrincipal: Put checks and
// records the ticket there in the same round trip as its SET (a script on
// that one key, so Redis Cluster can hold the two keys on different
// nodes), and Consume removes it in a second round trip once GETDEL
// returned the record.
//
//	store := redisstore.New(redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"}), "")
//	tickets := &ticket.Service[User]{Store: store, BindOrigin: true, Path: "/ws"}
package redisstore

import (
	"context"
	"crypto/sha256"
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

	// MaxPerPrincipal bounds the outstanding (issued, neither consumed nor
	// expired) tickets of one principal, as ticket.MemoryStoreOptions'
	// field does: 0 means ticket.DefaultMaxPerPrincipal and a negative
	// value no bound. Over it, Put returns ticket.ErrQuotaExceeded. Set it
	// before the Store is used.
	MaxPerPrincipal int
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
// SET key value PX ttl NX, pipelined with the quota script on the
// principal's set: one round trip, and a second to take the ticket back when
// the principal is over its quota. It fails if the key exists.
func (s *Store) Put(ctx context.Context, hash [32]byte, rec ticket.Record, ttl time.Duration) error {
	val, err := rec.MarshalBinary()
	if err != nil {
		return fmt.Errorf("redisstore: encoding ticket: %w", err)
	}
	ms := ttl.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	key := s.key(hash)
	maxPer := s.perPrincipal()
	if maxPer < 0 {
		return s.set(ctx, key, val, ms)
	}
	now := time.Now().UnixMilli()
	pipe := s.rdb.Pipeline()
	quota := quotaScript.Eval(ctx, pipe, []string{s.quotaKey(rec.Principal)}, now, now+ms, hex.EncodeToString(hash[:]), maxPer, ms)
	set := pipe.Do(ctx, "set", key, val, "px", ms, "nx")
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("redisstore: storing ticket: %w", err)
	}
	over, err := quota.Int()
	if err != nil {
		return fmt.Errorf("redisstore: counting tickets: %w", err)
	}
	_, err = set.Result()
	stored := err == nil
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("redisstore: storing ticket: %w", err)
	}
	if over == 1 {
		if stored {
			if err := s.rdb.Del(ctx, key).Err(); err != nil {
				return fmt.Errorf("redisstore: taking back a ticket over quota: %w", err)
			}
		}
		return ticket.ErrQuotaExceeded
	}
	if !stored {
		return errExists
	}
	return nil
}

func (s *Store) set(ctx context.Context, key string, val []byte, ms int64) error {
	cmd := redis.NewBoolCmd(ctx, "set", key, val, "px", ms, "nx")
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

func (s *Store) perPrincipal() int {
	if s.MaxPerPrincipal == 0 {
		return ticket.DefaultMaxPerPrincipal
	}
	return s.MaxPerPrincipal
}

// quotaKey is the sorted set of principal's outstanding tickets.
func (s *Store) quotaKey(principal []byte) string {
	sum := sha256.Sum256(principal)
	return s.prefix + "q:" + hex.EncodeToString(sum[:])
}

// quotaScript drops the principal's expired tickets from its set
// (KEYS[1]) and, unless it holds ARGV[4] of them already, records the new
// one (ARGV[3], expiring at ARGV[2], now being ARGV[1]) and keeps the set
// at least ARGV[5] ms longer. It returns 1 when the principal is over its
// quota, else 0.
var quotaScript = redis.NewScript(`
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  return 1
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[5]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
return 0
`)

// Consume removes and returns the record under hash with GETDEL, or returns
// ticket.ErrNotFound when Redis holds none (never stored, consumed, or
// expired); a second round trip removes it from its principal's quota.
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
	if s.perPrincipal() >= 0 {
		// No longer outstanding. Should this fail, the entry still leaves
		// the set when the ticket would have expired.
		_ = s.rdb.ZRem(ctx, s.quotaKey(rec.Principal), hex.EncodeToString(hash[:])).Err()
	}
	return rec, nil
}
