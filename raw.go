package wsgate

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
)

// The raw path: Gate.UpgradeConn and Gate.Serve read the handshake from a
// net.Conn with gobwas/ws's Upgrader, without net/http, and run the same
// pipeline as the other entry points.
//
// The gate first reads the request line and headers into a pooled buffer,
// bounded in size (Config.MaxHandshakeBytes, 431 past it) and in time
// (Config.HandshakeTimeout), and never past the blank line, so that bytes
// the client sends right after the handshake stay for the session. The
// Upgrader parses that buffer; its hooks copy the values the pipeline reads
// (Host, Origin, Sec-Fetch-Site, the credential headers, the protocol list,
// the extensions, the forwarding headers, the body headers) into a second
// pooled buffer and point a pooled http.Request view at them. The headers the
// Upgrader keeps to itself and checks more loosely than CheckHandshake
// (Sec-WebSocket-Key and Sec-WebSocket-Version, which may not be repeated and
// must be well formed) are read from the first buffer. OnBeforeUpgrade then
// runs the pipeline on the view; the Upgrader writes the 101 with the echo
// and the extension, or the refusal the pipeline chose, through
// ws.RejectConnectionError.
//
// When the Upgrader's own checks refuse the request first, its answer (worded
// its way, with its statuses) is discarded and the request is parsed again
// with net/http and run through the pipeline, which answers as on the
// net/http path. That costs allocations, but only malformed or unusual
// handshakes take it.

const (
	defaultMaxHandshakeBytes = 16 << 10
	defaultHandshakeTimeout  = 10 * time.Second
	// rawInline is the room, in a raw session's own allocation, for what it
	// keeps of the request (credential, path and query, host, origin...);
	// more takes a second allocation.
	rawInline = 192
	// rawLines is how many lines of one header a pooled view holds without
	// allocating.
	rawLines = 4
)

var (
	errTooLarge         = handshakeRefusal(http.StatusRequestHeaderFieldsTooLarge, "handshake request too large", noHeader)
	errSlowClient       = refusal(ErrUpgradeFailed, http.StatusRequestTimeout, "", "handshake not received in time", 0)
	errMalformedRequest = handshakeRefusal(http.StatusBadRequest, "malformed HTTP request", noHeader)

	// Static values for the view's Upgrade and Connection headers, which the
	// Upgrader has checked (it accepts only values CheckHandshake accepts).
	rawUpgrade    = []string{"websocket"}
	rawConnection = []string{"Upgrade"}
	rawChunked    = []string{"chunked"}
)

// The headers a pooled view collects, by index.
const (
	rhOrigin = iota
	rhFetchSite
	rhAuth
	rhCookie
	rhFwdProto
	rhFwdHost
	rhFwdFor
	rhContentLength
	rhTransferEncoding
	rhProtocol
	rhExtensions
	rhVersion
	rhKey
	rhCount
)

var rawHeaderNames = [rhCount]string{
	rhOrigin:           hOrigin,
	rhFetchSite:        hFetchSite,
	rhAuth:             hAuth,
	rhCookie:           hCookie,
	rhFwdProto:         hFwdProto,
	rhFwdHost:          hFwdHost,
	rhFwdFor:           "X-Forwarded-For",
	rhContentLength:    "Content-Length",
	rhTransferEncoding: "Transfer-Encoding",
	rhProtocol:         hWSProtocol,
	rhExtensions:       hWSExtensions,
	rhVersion:          hWSVersion,
	rhKey:              hWSKey,
}

// rawIndex maps a canonical header name the Upgrader hands to OnHeader to
// its index, or -1.
func rawIndex(k []byte) int {
	switch string(k) {
	case hOrigin:
		return rhOrigin
	case hFetchSite:
		return rhFetchSite
	case hAuth:
		return rhAuth
	case hCookie:
		return rhCookie
	case hFwdProto:
		return rhFwdProto
	case hFwdHost:
		return rhFwdHost
	case "X-Forwarded-For":
		return rhFwdFor
	case "Content-Length":
		return rhContentLength
	case "Transfer-Encoding":
		return rhTransferEncoding
	}
	return -1
}

// headerLines holds the lines of one header in a pooled view.
type headerLines struct {
	n     int
	lines [rawLines]string
	more  []string // all lines once there are more than rawLines
}

func (h *headerLines) add(v string) {
	if h.n < rawLines {
		h.lines[h.n] = v
	} else {
		if h.n == rawLines {
			h.more = append(h.more[:0], h.lines[:]...)
		}
		h.more = append(h.more, v)
	}
	h.n++
}

func (h *headerLines) values() []string {
	if h.n > rawLines {
		return h.more
	}
	return h.lines[:h.n:h.n]
}

// rawFree keeps the states of finished raw handshakes for the next ones.
// Unlike a sync.Pool it survives garbage collections, so that a server
// under steady load makes no new state, and it keeps at most rawFreeMax of
// them (each about 10 KiB, more after a long request).
type rawFree[P any] struct {
	mu   sync.Mutex
	free []*rawState[P]
}

const rawFreeMax = 256

func (f *rawFree[P]) get() *rawState[P] {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.free)
	if n == 0 {
		return nil
	}
	s := f.free[n-1]
	f.free[n-1] = nil
	f.free = f.free[:n-1]
	return s
}

func (f *rawFree[P]) put(s *rawState[P]) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.free) < rawFreeMax {
		f.free = append(f.free, s)
	}
}

// rawView is the raw path's part in the pipeline: it makes the handshake
// state of a request whose credential was found, keeping in it what must
// outlive the pooled view, and returns the credential as kept there.
type rawView interface {
	keep(cred Credential, timeout time.Duration) (*handshake, Credential)
}

// rawState is the pooled state of one raw handshake.
type rawState[P any] struct {
	g    *Gate[P]
	conn net.Conn
	up   ws.Upgrader

	in        []byte // the request as read, bounded by the gate's limit
	n, end    int    // bytes read; end of the header block
	off       int    // what the Upgrader has read of in[:end]
	vals      []byte // copies of the values the view points at
	remoteBuf [64]byte

	mute     bool // discard what the Upgrader writes (but the gate's refusals)
	rejected bool // the Upgrader is writing the gate's refusal
	switched bool // the gate wrote the 101
	ran      bool // the pipeline ran (OnBeforeUpgrade)
	out      []byte

	req    http.Request
	url    url.URL
	hdr    http.Header
	lines  [rhCount]headerLines
	other  map[string]*headerLines // headers custom extractors may read
	tlsCS  tls.ConnectionState
	custom bool // the gate has custom extractors: collect every header

	// The outcome of OnBeforeUpgrade.
	auth    Auth[P]
	refusal *Error // the pipeline's refusal; with closing, sent as a close frame
	closing bool
	kept    *rawSession
}

// rawRefusal writes a refusal's headers for ws.RejectionHeader.
type rawRefusal struct {
	e     *Error
	ch    *challenges
	basic bool
}

func (r rawRefusal) WriteTo(w io.Writer) (int64, error) {
	var b []byte
	b = appendRefusalHeaders(b, r.e, r.ch, r.basic)
	n, err := w.Write(b)
	return int64(n), err
}

func appendRefusalHeaders(b []byte, e *Error, ch *challenges, basic bool) []byte {
	hdrs, n := refusalHeaders(e, ch, basic, false)
	for _, p := range hdrs[:n] {
		for _, v := range p.values {
			b = append(b, p.key...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	return b
}

// writeRawError answers e on conn byte for byte as the Upgrader answers a
// ws.RejectConnectionError from a hook (see the Upgrader's refusals in
// rawState.beforeUpgrade).
func writeRawError(conn net.Conn, e *Error, ch *challenges, basic bool) error {
	body := e.Reason + "\n"
	b := make([]byte, 0, 256+len(body))
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(e.Status)...)
	b = append(b, "\r\nContent-Type: text/plain; charset=utf-8\r\n"...)
	b = appendRefusalHeaders(b, e, ch, basic)
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	_, err := conn.Write(b)
	return err
}

// rawStart is the size of a new state's buffers; they grow, up to the
// gate's limit, for a longer request.
const rawStart = 4 << 10

func newRawState[P any](g *Gate[P]) *rawState[P] {
	s := &rawState[P]{
		g:    g,
		in:   make([]byte, rawStart),
		vals: make([]byte, 0, rawStart),
		hdr:  make(http.Header, rhCount),
		out:  make([]byte, 0, 256),
	}
	for _, sl := range g.extractors {
		if sl.custom != nil {
			s.custom = true
			s.other = make(map[string]*headerLines)
		}
	}
	s.up = ws.Upgrader{
		ReadBufferSize:  4096,
		WriteBufferSize: 512,
		OnRequest:       s.onRequest,
		OnHost:          s.onHost,
		OnHeader:        s.onHeader,
		ProtocolCustom:  s.onProtocol,
		ExtensionCustom: s.onExtensions,
		OnBeforeUpgrade: s.beforeUpgrade,
	}
	return s
}

// reset prepares s for a handshake on conn.
func (s *rawState[P]) reset(conn net.Conn) {
	s.conn = conn
	s.n, s.end, s.off = 0, 0, 0
	s.vals = s.vals[:0]
	s.mute, s.rejected, s.switched, s.ran = true, false, false, false
	s.req = http.Request{}
	s.url = url.URL{}
	clear(s.hdr)
	for i := range s.lines {
		s.lines[i].n = 0
	}
	for _, l := range s.other {
		l.n = 0
	}
	var zero Auth[P]
	s.auth, s.refusal, s.closing, s.kept = zero, nil, false, nil
}

// release returns s to the pool, keeping nothing of the handshake.
func (s *rawState[P]) release() {
	s.conn = nil
	var zero Auth[P]
	s.auth, s.refusal, s.kept = zero, nil, nil
	s.req = http.Request{}
	s.tlsCS = tls.ConnectionState{}
	if len(s.other) > 64 {
		s.other = make(map[string]*headerLines)
	}
	s.g.rawFree.put(s)
}

// copyValue copies v into the value buffer, which has room for the whole
// request, and returns it as a string that lives as long as the buffer's
// contents: until the next handshake on s.
func (s *rawState[P]) copyValue(v []byte) string {
	if len(v) == 0 {
		return ""
	}
	if len(s.vals)+len(v) > cap(s.vals) {
		return string(v) // cannot happen: values come from s.in
	}
	start := len(s.vals)
	s.vals = append(s.vals, v...)
	return unsafe.String(&s.vals[start], len(v))
}

// readHead reads the request line and headers into s.in, up to and
// including the blank line, within the gate's size and time bounds.
func (s *rawState[P]) readHead() error {
	limit := s.g.maxHandshake
	if limit <= 0 {
		limit = defaultMaxHandshakeBytes
	}
	for {
		if s.n >= limit {
			return errTooLarge
		}
		if s.n == len(s.in) {
			// A longer request: grow both buffers (the values are copies
			// of the request's bytes, so they fit in as much room).
			size := min(2*len(s.in), limit)
			s.in = append(s.in, make([]byte, size-len(s.in))...)
			s.vals = make([]byte, 0, size)
		}
		m, err := s.conn.Read(s.in[s.n:min(len(s.in), limit)])
		from := max(0, s.n-3)
		s.n += m
		if bytes.HasSuffix(s.in[:s.n], crlfcrlf) {
			// The usual case: a client sends the request and waits. An
			// earlier blank line (bytes sent past the request that end like
			// one) is found by scanHidden, which sets the true end.
			s.end = s.n
			return nil
		}
		if i := bytes.Index(s.in[from:s.n], crlfcrlf); i >= 0 {
			s.end = from + i + len(crlfcrlf)
			return nil
		}
		if err != nil {
			return err
		}
	}
}

var crlfcrlf = []byte("\r\n\r\n")

// Read hands the Upgrader the header block, and nothing past it.
func (s *rawState[P]) Read(p []byte) (int, error) {
	if s.off == s.end {
		return 0, io.ErrUnexpectedEOF
	}
	n := copy(p, s.in[s.off:s.end])
	s.off += n
	return n, nil
}

// Write sends what the Upgrader writes, but for its own refusals.
func (s *rawState[P]) Write(p []byte) (int, error) {
	if s.mute {
		return len(p), nil
	}
	return s.conn.Write(p)
}

func (s *rawState[P]) onRequest(uri []byte) error {
	s.req.RequestURI = s.copyValue(uri)
	return nil
}

func (s *rawState[P]) onHost(host []byte) error {
	s.req.Host = s.copyValue(host)
	return nil
}

func (s *rawState[P]) onHeader(k, v []byte) error {
	if i := rawIndex(k); i >= 0 {
		s.lines[i].add(s.copyValue(v))
		return nil
	}
	if s.custom && len(s.other) < 64 {
		l := s.other[string(k)]
		if l == nil {
			l = new(headerLines)
			s.other[string(k)] = l
		}
		l.add(s.copyValue(v))
	}
	return nil
}

// onProtocol collects each Sec-WebSocket-Protocol line; choosing is the
// pipeline's.
func (s *rawState[P]) onProtocol(v []byte) (string, bool) {
	s.lines[rhProtocol].add(s.copyValue(v))
	return "", true
}

func (s *rawState[P]) onExtensions(v []byte, exts []httphead.Option) ([]httphead.Option, bool) {
	s.lines[rhExtensions].add(s.copyValue(v))
	return exts, true
}

// scanHidden reads the Sec-WebSocket-Key and Sec-WebSocket-Version lines,
// which the Upgrader does not hand to hooks, from the header block.
func (s *rawState[P]) scanHidden() {
	b := s.in[:s.end]
	pos := bytes.IndexByte(b, '\n') + 1 // past the request line
	for pos > 0 && pos < len(b) {
		i := bytes.IndexByte(b[pos:], '\n')
		if i < 0 {
			return
		}
		line := b[pos : pos+i]
		pos += i + 1
		if len(line) <= 1 {
			s.end = pos // the blank line: the request ends here
			return
		}
		if len(line) < 18 || line[0]|0x20 != 's' || line[3] != '-' {
			continue
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			continue
		}
		name := bytes.TrimRight(line[:colon], " \t")
		var idx int
		switch {
		case len(name) == len(hWSKey) && strings.EqualFold(unsafe.String(&name[0], len(name)), hWSKey):
			idx = rhKey
		case len(name) == len(hWSVersion) && strings.EqualFold(unsafe.String(&name[0], len(name)), hWSVersion):
			idx = rhVersion
		default:
			continue
		}
		v := bytes.TrimRight(line[colon+1:], "\r")
		v = bytes.Trim(v, " \t")
		if len(v) == 0 {
			s.lines[idx].add("")
			continue
		}
		s.lines[idx].add(unsafe.String(&v[0], len(v)))
	}
}

// view completes the pooled request the pipeline reads.
func (s *rawState[P]) view() *http.Request {
	r := &s.req
	r.Method, r.Proto, r.ProtoMajor, r.ProtoMinor = http.MethodGet, "HTTP/1.1", 1, 1
	r.Header = s.hdr
	r.URL = &s.url
	uri := r.RequestURI
	if strings.IndexByte(uri, '%') < 0 && strings.HasPrefix(uri, "/") {
		s.url.Path, s.url.RawQuery, _ = strings.Cut(uri, "?")
	} else if u, err := url.ParseRequestURI(uri); err == nil {
		s.url = *u
	} else {
		s.url.Path = uri
	}
	for i := range s.lines {
		if l := &s.lines[i]; l.n > 0 {
			s.hdr[rawHeaderNames[i]] = l.values()
		}
	}
	s.hdr[hUpgrade], s.hdr[hConnection] = rawUpgrade, rawConnection
	for k, l := range s.other {
		if l.n > 0 {
			s.hdr[k] = l.values()
		}
	}
	if l := &s.lines[rhContentLength]; l.n > 0 {
		r.ContentLength = -1
		if n, err := strconv.ParseInt(l.lines[0], 10, 64); err == nil && l.n == 1 {
			r.ContentLength = n
		}
	}
	if s.lines[rhTransferEncoding].n > 0 {
		r.TransferEncoding = rawChunked
	}
	r.RemoteAddr = s.remote()
	if c, ok := s.conn.(interface{ ConnectionState() tls.ConnectionState }); ok {
		s.tlsCS = c.ConnectionState()
		r.TLS = &s.tlsCS
	}
	return r
}

// remote formats the connection's remote address without allocating.
func (s *rawState[P]) remote() string {
	addr := s.conn.RemoteAddr()
	if a, ok := addr.(*net.TCPAddr); ok {
		b := a.AddrPort().AppendTo(s.remoteBuf[:0])
		if len(b) <= len(s.remoteBuf) {
			return unsafe.String(&s.remoteBuf[0], len(b))
		}
		return string(b)
	}
	if addr == nil {
		return ""
	}
	return addr.String()
}

// beforeUpgrade runs the pipeline once the Upgrader's own checks passed.
// The gate writes the 101 itself, as on the other paths (one write, no
// allocation), and stops the Upgrader with errSwitched; the Upgrader writes
// the gate's HTTP refusals.
func (s *rawState[P]) beforeUpgrade() (ws.HandshakeHeader, error) {
	s.ran = true
	s.scanHidden()
	g := s.g
	r := s.view()
	a, err := g.authenticate(r, s)
	if err == nil {
		err = g.join(r, &a) // fleet.go: the Registry and its cap
	}
	if err == nil {
		s.auth = a
		werr := s.switchProtocols(a.key, a.Protocol, a.ext)
		if !s.switched {
			a.hs.live.fl.leave()
		}
		return nil, werr
	}
	s.refusal = err
	if g.closeFrames && err.CloseCode != 0 {
		if key, herr := checkHandshake(r); herr == nil {
			s.closing = true
			return nil, s.switchProtocols(key, g.refusalEcho(r.Header[hWSProtocol]), "")
		}
	}
	s.mute, s.rejected = false, true
	return nil, ws.RejectConnectionError(
		ws.RejectionStatus(err.Status),
		ws.RejectionHeader(rawRefusal{err, g.chal(), g.basic}),
		ws.RejectionReason(err.Reason+"\n"),
	)
}

// errSwitched stops the Upgrader once the gate wrote the 101 (what the
// Upgrader then writes is discarded).
var errSwitched = errors.New("wsgate: switched")

// switchProtocols writes the 101 and returns errSwitched, or the write's
// error.
func (s *rawState[P]) switchProtocols(key, protocol, ext string) error {
	s.out = append101(s.out[:0], key, protocol, ext)
	if _, err := s.conn.Write(s.out); err != nil {
		return err
	}
	s.switched = true
	return errSwitched
}

// keep implements rawView.
func (s *rawState[P]) keep(cred Credential, timeout time.Duration) (*handshake, Credential) {
	k := new(rawSession)
	k.ctx.facts = &k.facts
	k.vctx = verifyContext{parent: context.Background(), facts: &k.facts, timeout: timeout}
	cred = k.facts.fill(s, cred)
	s.kept = k
	return &k.handshake, cred
}

// rawSession is a raw session's handshake state: the pipeline's, and
// what the session keeps of the request.
type rawSession struct {
	handshake
	keptRequest
}

// keptRequest is what a raw session keeps of its handshake request, and the
// context Gate.Serve hands its callback, in which RequestFrom finds it.
type keptRequest struct {
	facts requestFacts
	ctx   rawContext
}

// requestFacts is what a raw session keeps of its handshake request, for
// RequestFrom, copied out of the pooled view before the verifier runs.
type requestFacts struct {
	store  []byte
	inline [rawInline]byte

	method, path, query, host, remote string
	hdr                               [len(factHeaders)]string
	tls                               *tls.ConnectionState

	// view is Session.Request on the raw path: the request without its
	// headers (RequestFrom's has them), made with the facts, in the
	// session's own allocation.
	view    http.Request
	viewURL url.URL

	once sync.Once
	req  *http.Request
}

// factHeaders are the headers RequestFrom's request has on the raw path.
var factHeaders = [...]string{hOrigin, hFetchSite, "X-Forwarded-For", hFwdProto, hFwdHost}

// fill copies the facts of the view s and cred's secrets into f and returns
// cred pointing at the copies.
func (f *requestFacts) fill(s rawFactSource, cred Credential) Credential {
	r := s.request()
	n := len(r.URL.Path) + len(r.URL.RawQuery) + len(r.Host) + len(r.RemoteAddr) +
		cred.token.n + cred.username.n + cred.password.n
	var hv [len(factHeaders)][]string
	for i := range factHeaders {
		hv[i] = s.factLines(i)
		for j, v := range hv[i] {
			n += len(v) + 2*min(j, 1)
		}
	}
	f.store = f.inline[:0]
	if n > len(f.inline) {
		f.store = make([]byte, 0, n)
	}
	f.method = http.MethodGet
	f.path = f.copy(r.URL.Path)
	f.query = f.copy(r.URL.RawQuery)
	f.host = f.copy(r.Host)
	f.remote = f.copy(r.RemoteAddr)
	for i, lines := range hv {
		switch len(lines) {
		case 0:
		case 1:
			f.hdr[i] = f.copy(lines[0])
		default:
			start := len(f.store)
			for j, v := range lines {
				if j > 0 {
					f.store = append(f.store, ", "...)
				}
				f.store = append(f.store, v...)
			}
			f.hdr[i] = unsafe.String(&f.store[start], len(f.store)-start)
		}
	}
	if r.TLS != nil {
		cs := *r.TLS
		f.tls = &cs
	}
	f.viewURL = url.URL{Path: f.path, RawQuery: f.query}
	f.view = http.Request{Method: f.method, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		URL: &f.viewURL, Host: f.host, RemoteAddr: f.remote, TLS: f.tls}
	cred.token = secretOf(f.copy(cred.token.String()))
	cred.username = secretOf(f.copy(cred.username.String()))
	cred.password = secretOf(f.copy(cred.password.String()))
	return cred
}

// parsedFacts is a request net/http parsed (the slow path), for fill.
type parsedFacts struct{ r *http.Request }

func (p parsedFacts) request() *http.Request   { return p.r }
func (p parsedFacts) factLines(i int) []string { return p.r.Header[factHeaders[i]] }

// rawFactSource is a request view fill copies from.
type rawFactSource interface {
	request() *http.Request
	factLines(i int) []string // the lines of factHeaders[i]
}

func (s *rawState[P]) request() *http.Request { return &s.req }

func (s *rawState[P]) factLines(i int) []string {
	l := &s.lines[factIndex[i]]
	return l.values()
}

// factIndex maps factHeaders to the view's header indexes.
var factIndex = [len(factHeaders)]int{rhOrigin, rhFetchSite, rhFwdFor, rhFwdProto, rhFwdHost}

// copy appends s to the store, which has room for everything fill copies.
func (f *requestFacts) copy(s string) string {
	if s == "" {
		return ""
	}
	start := len(f.store)
	f.store = append(f.store, s...)
	return unsafe.String(&f.store[start], len(s))
}

func (f *requestFacts) request() *http.Request {
	f.once.Do(func() {
		u := &url.URL{Path: f.path, RawQuery: f.query}
		r := &http.Request{
			Method: f.method, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			URL: u, RequestURI: u.RequestURI(), Host: f.host, RemoteAddr: f.remote,
			Header: make(http.Header, len(factHeaders)), TLS: f.tls,
		}
		for i, k := range factHeaders {
			if f.hdr[i] != "" {
				r.Header[k] = []string{f.hdr[i]}
			}
		}
		f.req = r
	})
	return f.req
}

// rawContext is the context Gate.Serve hands its callback when the
// credential has no expiry (and the parent of the expiry's otherwise): never
// done, and RequestFrom finds the handshake's facts in it.
type rawContext struct {
	facts *requestFacts
}

func (rawContext) Deadline() (time.Time, bool) { return time.Time{}, false }
func (rawContext) Done() <-chan struct{}       { return nil }
func (rawContext) Err() error                  { return nil }
func (c *rawContext) Value(key any) any {
	if key == (requestKey{}) {
		return c.facts
	}
	return nil
}

// prefixConn is a connection with bytes the client sent right after the
// handshake, read before the connection's own.
type prefixConn struct {
	net.Conn
	rest []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.rest) > 0 {
		n := copy(p, c.rest)
		c.rest = c.rest[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// rawOutcome is one raw handshake's result.
type rawOutcome[P any] struct {
	auth Auth[P]
	conn net.Conn     // the upgraded connection, with any bytes read past the handshake
	kept *keptRequest // what the session keeps of the request
	err  *Error
}

// request returns the handshake request as the session reports it: the one
// RequestFrom makes.
func (o *rawOutcome[P]) request() *http.Request { return o.kept.facts.request() }

// rawOpened reports the session ls to Config.OnSession.
func (g *Gate[P]) rawOpened(ls *liveSession, o *rawOutcome[P]) {
	if g.live.onSession != nil {
		g.sessionOpened(ls, o.request(), o.auth.Source)
	}
}

// upgradeRaw reads and answers the handshake on conn. On failure the client
// has been answered if it could be, conn is closed and the handshake
// reported.
func (g *Gate[P]) upgradeRaw(conn net.Conn) rawOutcome[P] {
	var s *rawState[P]
	if s = g.rawFree.get(); s == nil {
		s = newRawState(g)
	}
	s.reset(conn)
	defer s.release()
	var start time.Time
	if g.observed() {
		start = time.Now()
	}
	timeout := g.handshakeTimeout
	if timeout <= 0 {
		timeout = defaultHandshakeTimeout
	}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if err := s.readHead(); err != nil {
		var e *Error
		if errors.As(err, &e) {
			_ = writeRawError(conn, e, g.chal(), false)
			g.observeRaw(s, start, e.Status, SourceNone, e.clone(), 0)
			closeAfterRefusal(conn)
			return rawOutcome[P]{err: e}
		}
		conn.Close() // the client went away or was too slow: nothing to answer
		return rawOutcome[P]{err: errSlowClient}
	}
	var out rawOutcome[P]
	if g.verify == nil {
		out.err = errNoVerifier
		_ = writeRawError(conn, out.err, g.chal(), false)
		closeAfterRefusal(conn)
		return out
	}
	_, _ = s.up.Upgrade(s)
	switch {
	case s.switched && s.closing:
		_ = conn.SetDeadline(time.Time{})
		e := s.refusal
		g.observeRaw(s, start, e.Status, e.Source, e.clone(), e.CloseCode)
		closeHandshake(s.session(conn), e.CloseCode, closeReason(e.Reason), 0)
		return rawOutcome[P]{err: e}
	case s.switched:
		_ = conn.SetDeadline(time.Time{})
		g.observeRaw(s, start, http.StatusSwitchingProtocols, s.auth.Source, nil, 0)
		out = rawOutcome[P]{auth: s.auth, conn: s.session(conn)}
		out.auth.req = nil
		out.kept = &s.kept.keptRequest
		return out
	case s.rejected:
		e := s.refusal
		g.observeRaw(s, start, e.Status, e.Source, e.clone(), 0)
		closeAfterRefusal(conn)
		return rawOutcome[P]{err: e}
	case !s.ran:
		// The Upgrader refused the request before the pipeline ran.
		return g.upgradeSlow(s, start)
	}
	// The 101 could not be written.
	conn.Close()
	g.observeRaw(s, start, errUpgradeIO.Status, s.auth.Source, errUpgradeIO.clone(), 0)
	return rawOutcome[P]{err: errUpgradeIO}
}

// session returns the upgraded connection, with the bytes the client sent
// past the handshake.
func (s *rawState[P]) session(conn net.Conn) net.Conn {
	if s.n > s.end {
		return &prefixConn{Conn: conn, rest: bytes.Clone(s.in[s.end:s.n])}
	}
	return conn
}

// upgradeSlow answers a request the Upgrader refused: it parses the request
// with net/http and runs the pipeline as the net/http path does.
func (g *Gate[P]) upgradeSlow(s *rawState[P], start time.Time) rawOutcome[P] {
	conn := s.conn
	r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(s.in[:s.end])))
	if err != nil {
		e := errMalformedRequest
		_ = writeRawError(conn, e, g.chal(), false)
		g.observeRaw(s, start, e.Status, SourceNone, e.clone(), 0)
		closeAfterRefusal(conn)
		return rawOutcome[P]{err: e}
	}
	r.RemoteAddr = strings.Clone(s.remote())
	if c, ok := conn.(interface{ ConnectionState() tls.ConnectionState }); ok {
		cs := c.ConnectionState()
		r.TLS = &cs
	}
	report := func(status int, src Source, err error, code ws.StatusCode) {
		if g.observed() {
			g.observe(r, start, status, src, err, code)
		}
	}
	a, e := g.authenticate(r, nil)
	if e != nil {
		if key, herr := checkHandshake(r); g.closeFrames && e.CloseCode != 0 && herr == nil {
			if write101(conn, nil, key, g.refusalEcho(r.Header[hWSProtocol]), "") == nil {
				_ = conn.SetDeadline(time.Time{})
				report(e.Status, e.Source, e.clone(), e.CloseCode)
				closeHandshake(s.session(conn), e.CloseCode, closeReason(e.Reason), 0)
				return rawOutcome[P]{err: e}
			}
		} else {
			_ = writeRawError(conn, e, g.chal(), g.basic)
		}
		report(e.Status, e.Source, e.clone(), 0)
		closeAfterRefusal(conn)
		return rawOutcome[P]{err: e}
	}
	if e := g.join(r, &a); e != nil {
		_ = writeRawError(conn, e, g.chal(), g.basic)
		report(e.Status, e.Source, e.clone(), 0)
		closeAfterRefusal(conn)
		return rawOutcome[P]{err: e}
	}
	if write101(conn, nil, a.key, a.Protocol, a.ext) != nil {
		a.hs.live.fl.leave()
		conn.Close()
		report(errUpgradeIO.Status, a.Source, errUpgradeIO.clone(), 0)
		return rawOutcome[P]{err: errUpgradeIO}
	}
	_ = conn.SetDeadline(time.Time{})
	report(http.StatusSwitchingProtocols, a.Source, nil, 0)
	a.req = nil
	// The session keeps the same facts of the request as after the fast
	// path, so that RequestFrom answers alike.
	kept := new(keptRequest)
	kept.ctx.facts = &kept.facts
	kept.facts.fill(parsedFacts{r}, Credential{})
	return rawOutcome[P]{auth: a, conn: s.session(conn), kept: kept}
}

// closeAfterRefusal closes a refused connection once the client had a
// moment to read the answer: it stops sending, then reads briefly so that
// unread request bytes do not turn the close into a reset.
func closeAfterRefusal(conn net.Conn) {
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = io.Copy(io.Discard, io.LimitReader(conn, 64<<10))
	}
	conn.Close()
}

// observeRaw reports a raw handshake from its pooled view, with copies of
// the strings the report keeps.
func (g *Gate[P]) observeRaw(s *rawState[P], start time.Time, status int, src Source, err error, code ws.StatusCode) {
	if !g.observed() {
		return
	}
	r := &http.Request{
		Method:     http.MethodGet,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		URL:        &url.URL{Path: strings.Clone(s.url.Path)},
		Host:       strings.Clone(s.req.Host),
		RemoteAddr: strings.Clone(s.remote()),
		Header:     http.Header{},
	}
	if s.url.Path == "" && s.req.RequestURI != "" {
		p, _, _ := strings.Cut(s.req.RequestURI, "?")
		r.URL.Path = strings.Clone(p)
	}
	if s.req.TLS != nil {
		cs := *s.req.TLS
		r.TLS = &cs
	}
	g.observe(r, start, status, src, err, code)
}

// UpgradeConn reads a WebSocket handshake from conn, a connection no
// net/http server has touched (from a net.Listener, a custom listener or an
// event loop), authenticates it with the same pipeline as the other entry
// points, and upgrades it. It is gobwas/ws's ws.Upgrader with the gate's
// hooks; see Config.MaxHandshakeBytes and Config.HandshakeTimeout for the
// bounds on reading the handshake.
//
// On success the returned session's Conn is ready for frames (bytes the
// client sent right after the handshake are not lost); closing it ends the
// session. Its Request is what the gate kept of the handshake request,
// without the headers (see Session.Request; the Verifier's RequestFrom has
// them). The credential's expiry is enforced as in Gate.Accept, by closing the
// connection with close 4401 "credential expired".
//
// On failure the client has been answered as on the net/http path (the same
// statuses, headers and body, or a close frame under
// Config.RefuseWithCloseFrame), conn is closed, and the error is an *Error
// (or, when the client went away or was too slow, ErrUpgradeFailed).
// Custom extractors see a request with every header the client sent;
// Config.InBand does not apply here.
func (g *Gate[P]) UpgradeConn(conn net.Conn) (Session[P], error) {
	out := g.upgradeRaw(conn)
	if out.err != nil {
		return Session[P]{}, out.err.clone()
	}
	a := out.auth
	var exp *expiry
	if !a.Expires.IsZero() {
		_, exp = startExpiry(&out.kept.ctx, out.conn, a.Expires)
	}
	ls := g.live.add(&a.hs.live, out.conn, exp)
	g.rawOpened(ls, &out)
	return Session[P]{Auth: a, Conn: ls, Request: &out.kept.facts.view, exp: exp, live: ls, ID: ls.fl.id, Key: ls.fl.key, facts: &out.kept.facts}, nil
}

// Serve accepts connections on ln and serves each in a goroutine of its
// own as Gate.Handler serves a request: it reads and authenticates the
// handshake (see UpgradeConn), upgrades it and calls serve with the session,
// closing the connection when serve returns. ctx is cancelled when the
// credential expires (see SetExpiry); RequestFrom(ctx) returns what the gate
// kept of the handshake request.
//
// Serve returns ln's error once ln fails other than temporarily, for example
// after ln.Close; Gate.Shutdown then closes the live sessions.
func (g *Gate[P]) Serve(ln net.Listener, serve func(ctx context.Context, s Session[P])) error {
	var delay time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				// Out of file descriptors, for example: back off as
				// net/http does.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		go g.serveRaw(conn, serve)
	}
}

// serveRaw is Serve for one connection.
func (g *Gate[P]) serveRaw(conn net.Conn, serve func(context.Context, Session[P])) {
	out := g.upgradeRaw(conn)
	if out.err != nil {
		return
	}
	a := out.auth
	defer out.conn.Close()
	s := Session[P]{Auth: a, Conn: out.conn, Request: &out.kept.facts.view, facts: &out.kept.facts}
	var ctx context.Context = &out.kept.ctx
	if !a.Expires.IsZero() {
		ctx, s.exp = startExpiry(ctx, out.conn, a.Expires)
		defer s.exp.stop()
	}
	s.live = g.live.add(&a.hs.live, out.conn, s.exp)
	s.Conn = s.live // drops the application's writes after the gate's close frame
	s.ID, s.Key = s.live.fl.id, s.live.fl.key
	g.rawOpened(s.live, &out)
	defer g.live.remove(s.live)
	serve(ctx, s)
}
