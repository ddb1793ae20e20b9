package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gobwas/ws/wsutil"
	"github.com/wsgate/wsgate"
	"github.com/wsgate/wsgate/fleet"
	"github.com/wsgate/wsgate/message"
)

// The refresh endpoint: a session whose credential is a short-lived token
// (POST /short-token), which the page refreshes in band before it expires,
// {"type":"refresh","token":"..."}, so that the socket outlives the first
// token without reconnecting.
const (
	pathRefresh   = "/ws-refresh"
	shortTokenTTL = 2 * time.Second
)

// shortTokens mints and checks the short-lived tokens: "st." + the expiry
// in Unix milliseconds, base 36, + "." + a MAC of it under a key of this
// process. Nothing is stored.
type shortTokens struct {
	key [32]byte
	now func() time.Time
}

func newShortTokens() *shortTokens {
	s := &shortTokens{now: time.Now}
	rand.Read(s.key[:])
	return s
}

func (s *shortTokens) mac(exp string) string {
	m := hmac.New(sha256.New, s.key[:])
	m.Write([]byte(exp))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// mint returns a token valid for shortTokenTTL.
func (s *shortTokens) mint() string {
	exp := strconv.FormatInt(s.now().Add(shortTokenTTL).UnixMilli(), 36)
	return "st." + exp + "." + s.mac(exp)
}

// verify accepts a token mint made that has not expired, and sets the
// session's expiry to the token's.
func (s *shortTokens) verify(ctx context.Context, c wsgate.Credential) (user, error) {
	exp, mac, ok := strings.Cut(strings.TrimPrefix(c.Token(), "st."), ".")
	if !ok || !strings.HasPrefix(c.Token(), "st.") || !hmac.Equal([]byte(mac), []byte(s.mac(exp))) {
		return user{}, wsgate.ErrInvalidToken
	}
	ms, err := strconv.ParseInt(exp, 36, 64)
	if err != nil {
		return user{}, wsgate.ErrInvalidToken
	}
	t := time.UnixMilli(ms)
	if !t.After(s.now()) {
		return user{}, wsgate.ErrCredentialExpired
	}
	wsgate.SetExpiry(ctx, t)
	return user{Name: "demo-user"}, nil
}

// refreshGate is the gate of pathRefresh: the short-lived token in the
// subprotocol marker form, refusals as close frames, and the principal's
// name as the key a refresh must keep.
func (d *demo) refreshGate() http.Handler {
	return wsgate.New(d.short.verify, wsgate.Config{
		Protocols:            []string{"chat"},
		Extractors:           []wsgate.Extractor{wsgate.Subprotocol(wsgate.DefaultMarker)},
		RefuseWithCloseFrame: true,
		PrincipalKey:         func(p any) string { return p.(user).Name },
		OnHandshake:          d.observer(),
		OnSession:            d.tel.session,
	}).Handler(d.refreshEcho)
}

// shortToken answers POST /short-token with {"token": "...", "expires_in":
// 2} to a caller holding the demo token (as for /ticket).
func (d *demo) shortToken(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if _, status, msg := d.ticketCaller(r); status != 0 {
		http.Error(w, msg, status)
		return
	}
	writeJSON(w, map[string]any{"token": d.short.mint(), "expires_in": shortTokenTTL.Seconds()})
}

// refreshEcho serves a session with an expiry: the hello, then every
// message back, except refresh messages, which go through Session.Refresh
// and are answered {"type":"refreshed","expires_in_ms":N}. Frames are
// written under the session's write lock, and the handler returns when
// the session's context ends (the token expired unrefreshed, or a refresh
// was refused: the gate then closes with 4401).
func (d *demo) refreshEcho(ctx context.Context, s wsgate.Session[user]) {
	if a, ok := ctx.Value(attemptKey{}).(*attempt); ok {
		d.finish(ctx, a, http.StatusSwitchingProtocols, 0, "", s.Source.String(), s.Protocol)
	}
	lock := s.WriteLock()
	write := func(v any) error {
		b, _ := json.Marshal(v)
		lock.Lock()
		defer lock.Unlock()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return wsutil.WriteServerText(s.Conn, b)
	}
	if write(map[string]any{"type": "hello", "principal": s.Principal, "source": s.Source.String(), "protocol": s.Protocol}) != nil {
		return
	}
	// The reads stop when the context ends: the gate then reads the
	// page's close frame itself.
	stop := context.AfterFunc(ctx, func() { s.Conn.SetReadDeadline(time.Now()) })
	defer stop()
	for i := 0; i < 1000; i++ {
		s.Conn.SetReadDeadline(time.Now().Add(idle))
		if ctx.Err() != nil {
			return
		}
		msg, op, err := message.Read(s.Conn, s.Compression, maxMessage)
		if err != nil || ctx.Err() != nil {
			return
		}
		if tok, ok := fleet.RefreshToken(msg); ok {
			err := s.Refresh(wsgate.NewCredential(wsgate.SourceMessage, tok))
			var e *wsgate.Error
			if errors.As(err, &e) {
				d.log.Warn("refresh", "outcome", "refused", "reason", e.Reason, "remote", s.Request.RemoteAddr)
				<-ctx.Done() // the gate closes the session 4401 "refresh refused"
				return
			}
			if err != nil {
				return
			}
			d.log.Info("refresh", "outcome", "accepted", "remote", s.Request.RemoteAddr)
			if write(map[string]any{"type": "refreshed", "expires_in_ms": shortTokenTTL.Milliseconds()}) != nil {
				return
			}
			continue
		}
		lock.Lock()
		err = message.Write(s.Conn, s.Compression, op, msg)
		lock.Unlock()
		if err != nil {
			return
		}
	}
}
