package wsgate

import (
	"errors"
	"net"
	"net/http"
	"strings"
	"time"
)

// The pipeline: every entry point (Gate.Handler, Gate.Middleware with
// Upgrade, Gate.Authenticate with Gate.Accept and Gate.Refuse) runs the same
// two steps. authenticate decides, without writing anything: the RFC 6455
// checks, the origin policy, the protocol list, the extractors and the rules
// that combine them, the echo, the verifier and the extension. Then either
// accept writes the 101 (accept.go) or refuse answers the refusal, as HTTP or
// as a close frame.

// slot is one configured extractor: a built-in one, run without an
// interface call, or the application's own.
type slot struct {
	builtin *extractor
	custom  Extractor
}

// candidates collects what the extractors of one class (explicit or
// ambient) found, under the composition rule: strict (any error, or a second
// credential, refuses) or first-wins (the first result decides).
type candidates struct {
	n    int
	cred Credential
	ex   *extractor // the built-in extractor that found cred, or nil
	err  *Error
}

func (c *candidates) add(cred Credential, ex *extractor, err *Error, firstWins bool) {
	if firstWins {
		if c.n == 0 && c.err == nil {
			if err != nil {
				c.err = err
			} else {
				c.cred, c.ex, c.n = cred, ex, 1
			}
		}
		return
	}
	switch {
	case err != nil:
		if c.err == nil {
			c.err = err
		}
	case c.n == 0:
		c.cred, c.ex, c.n = cred, ex, 1
	default:
		c.n++
		if c.err == nil {
			c.err = errAmbiguous
		}
	}
}

// authenticate runs every deciding step of the gate on r. On success it
// has removed the credential's subprotocol entry from r; whatever the
// outcome, it removes the Query extractors' parameters from r.
//
// rv is nil but on the raw path (raw.go), where r is a pooled view of the
// request and rv keeps what must outlive it.
func (g *Gate[P]) authenticate(r *http.Request, rv rawView) (Auth[P], *Error) {
	var a Auth[P]
	if g.verify == nil {
		return a, errNoVerifier
	}
	if g.observed() {
		a.start = time.Now()
	}
	var o offered
	key, err := checkHandshake(r)
	if err == nil {
		err = g.decide(r, &o, &a, rv)
	}
	g.stripQueries(r, &o) // if decide has not
	if err != nil {
		return a, err
	}
	a.gate, a.req, a.key = g, r, key
	return a, nil
}

// decide is authenticate past the handshake checks.
func (g *Gate[P]) decide(r *http.Request, o *offered, a *Auth[P], rv rawView) *Error {
	h := r.Header
	// The origin policy. Sec-Fetch-Site is an extra signal for requests
	// that are not plainly from the server's own origin.
	originLines := h[hOrigin]
	var originErr *Error
	if len(originLines) != 1 || !g.origin.sameOriginFast(r, originLines[0]) {
		originErr = g.origin.check(r, originLines)
		if originErr == nil {
			originErr = g.origin.checkFetchSite(r)
		}
	}
	if originErr != nil && !g.origin.InsecureSkipOriginCheck {
		return originErr
	}

	lines := h[hWSProtocol]
	if len(lines) > 0 {
		if err := o.parse(lines); err != nil {
			return err
		}
	}

	var explicit, ambient candidates
	for i := range g.extractors {
		s := &g.extractors[i]
		var c Credential
		var err *Error
		amb := false
		if ex := s.builtin; ex != nil {
			c, err = ex.extract(r, o)
			amb = ex.kind == kindBasic || ex.kind == kindCookie
		} else {
			c, err = runCustom(s.custom, r)
			amb = c.Source.ambient() || err != nil && err.Source.ambient()
		}
		if err == errNoCredential {
			continue
		}
		if amb {
			// Ambient credentials compete among themselves only: the
			// first (in the gate's order) decides.
			ambient.add(c, s.builtin, err, true)
		} else {
			explicit.add(c, s.builtin, err, g.firstWins)
		}
	}

	var chosen *candidates
	switch {
	case explicit.err != nil:
		return explicit.err
	case explicit.n > 0:
		// The page put this credential there for this socket; whatever
		// the browser attached on its own (a cookie, a cached Basic
		// credential) is ignored.
		chosen = &explicit
	case ambient.err != nil:
		return ambient.err
	case ambient.n > 0:
		chosen = &ambient
		if err := g.ambientAllowed(chosen, originLines, originErr); err != nil {
			return err
		}
	default:
		return errNoCredential
	}
	cred := chosen.cred

	// Choose the echo before verifying, so that a request that cannot
	// complete costs no verification (and consumes no single-use
	// credential).
	a.Protocol = o.selectFor(g.protocols)
	if a.Protocol == "" {
		switch cred.Source {
		case SourceSubprotocol:
			if chosen.ex != nil {
				a.Protocol = chosen.ex.name // the marker, as the client offered it
			}
		case SourceSubprotocolPrefix:
			return errNoProtocol.withSource(cred.Source)
		}
	}

	// The verifier sees the request without the Query extractors'
	// parameters (see RequestFrom).
	g.stripQueries(r, o)
	hs, err := g.verifyLimited(r, cred, &a.Principal, rv) // fleet.go: the Limiter, then the Verifier
	if err != nil {
		return err
	}
	a.Source, a.Expires, a.hs = cred.Source, hs.vctx.expiry, hs
	if g.compression {
		a.ext = negotiateDeflate(h[hWSExtensions])
		a.Compression = a.ext != ""
	}
	if o.secret != 0 {
		removeSecrets(r, lines, o)
	}
	return nil
}

// ambientAllowed applies the rule for ambient credentials, which the browser
// attaches whichever page opens the socket: they need an Origin that passes
// the policy, whatever InsecureSkipOriginCheck says. A request without
// Origin comes from no browser; it may use Basic (Node and Go clients send
// it themselves), and a cookie only with InsecureAllowNoOrigin.
func (g *Gate[P]) ambientAllowed(c *candidates, originLines []string, originErr *Error) *Error {
	if originErr != nil {
		return errAmbientOrigin.withSource(c.cred.Source)
	}
	if len(originLines) == 0 && c.cred.Source == SourceCookie && (c.ex == nil || !c.ex.allowNoOrigin) {
		return errAmbientOrigin.withSource(SourceCookie)
	}
	return nil
}

// runCustom runs an application's extractor and maps its error to the
// refusal the gate answers.
func runCustom(e Extractor, r *http.Request) (Credential, *Error) {
	c, err := e.Extract(r)
	if err == nil {
		if c.Source == SourceNone {
			c.Source = SourceHeader
		}
		return c, nil
	}
	var ge *Error
	switch {
	case errors.As(err, &ge) && ge != nil:
		if ge.kind == ErrNoCredential {
			return c, errNoCredential
		}
		return c, ge
	case errors.Is(err, ErrNoCredential):
		return c, errNoCredential
	case errors.Is(err, ErrAmbiguousCredential):
		return c, errAmbiguous.withSource(c.Source)
	}
	return c, errMalformed400.withSource(c.Source)
}

// removeSecrets rewrites the Sec-WebSocket-Protocol header without the
// entries o marks as credentials.
func removeSecrets(r *http.Request, lines []string, o *offered) {
	var line string
	if len(lines) == 1 {
		line = lines[0]
	}
	clean, ok := o.withoutSecrets(line)
	if !ok {
		return
	}
	if clean == "" {
		delete(r.Header, hWSProtocol)
		return
	}
	lines[0] = clean
	if len(lines) > 1 {
		r.Header[hWSProtocol] = lines[:1]
	}
}

// stripQueries removes every Query extractor's parameter from r, once.
func (g *Gate[P]) stripQueries(r *http.Request, o *offered) {
	if o.stripped || g.queries == 0 || r.URL == nil || r.URL.RawQuery == "" {
		o.stripped = true
		return
	}
	o.stripped = true
	for i := range g.extractors {
		ex := g.extractors[i].builtin
		if ex == nil || ex.kind != kindQuery {
			continue
		}
		if g.queries == 1 && o.queryEnd > 0 && r.URL.RawQuery == o.queryRaw {
			removeQueryPair(r, o.queryStart, o.queryEnd)
		} else if strings.Contains(r.URL.RawQuery, ex.name) || strings.ContainsAny(r.URL.RawQuery, "%+") {
			stripQuery(r, ex.name)
		}
		dropFormValue(r, ex.name)
	}
}

// verifyCredential runs the Verifier on cred under the verification
// deadline, sets *p to the principal, and returns the handshake state, which
// holds the expiry the Verifier set (vctx.expiry).
func (g *Gate[P]) verifyCredential(r *http.Request, cred Credential, p *P, rv rawView) (*handshake, *Error) {
	var hs *handshake
	if rv != nil {
		hs, cred = rv.keep(cred, g.verifyTimeout)
	} else {
		hs = newHandshakeState(r, g.verifyTimeout) // the context carries r for RequestFrom
	}
	vctx := &hs.vctx
	var err error
	*p, err = g.verify(vctx, cred)
	if err != nil {
		e := verifyError(vctx, err, cred.Source)
		vctx.release()
		return nil, e
	}
	vctx.release()
	return hs, nil
}

// accept answers an authenticated handshake: the 101 (over HTTP/2, the
// 200) with the echo and the extension the pipeline chose. It reports the
// handshake, and on failure has answered the client if it still could.
func (g *Gate[P]) accept(w http.ResponseWriter, r *http.Request, a *Auth[P]) (net.Conn, *Error) {
	if err := g.join(r, a); err != nil { // fleet.go: the Registry and its cap
		g.refuse(w, r, err, a.start)
		return nil, err
	}
	conn, err := switchProtocols(w, r, a.key, a.Protocol, a.ext)
	if err != nil {
		a.hs.live.fl.leave()
	}
	if g.observed() {
		status := switchedStatus(r)
		var reported error
		if err != nil {
			status, reported = err.Status, err.clone()
		}
		g.observe(r, a.start, status, a.Source, reported, 0)
	}
	return conn, err
}

// refuse answers a refused handshake: with an HTTP error or, when the gate
// refuses with close frames and the refusal has a close code, by upgrading
// and sending the close frame. It reports the handshake.
func (g *Gate[P]) refuse(w http.ResponseWriter, r *http.Request, e *Error, start time.Time) {
	if start.IsZero() && g.observed() {
		start = time.Now() // a refusal Authenticate did not make (Refuse with a bare sentinel)
	}
	var closeCode = e.CloseCode
	if !g.closeFrames || closeCode == 0 {
		closeCode = 0
	} else if key, err := checkHandshake(r); err != nil {
		closeCode = 0
	} else {
		protocol := g.refusalEcho(r.Header[hWSProtocol])
		conn, uerr := switchProtocols(w, r, key, protocol, "")
		if uerr != nil {
			if g.observed() {
				g.observe(r, start, uerr.Status, e.Source, uerr.clone(), 0)
			}
			return
		}
		closeHandshake(conn, closeCode, closeReason(e.Reason), 0)
	}
	if closeCode == 0 {
		writeError(w, e, g.chal(), g.basic, r.ProtoMajor == 2)
	}
	if g.observed() {
		g.observe(r, start, e.Status, e.Source, e.clone(), closeCode)
	}
}

// chal returns the gate's challenges; a zero Gate has the default realm's.
func (g *Gate[P]) chal() *challenges {
	if g.challenges == nil {
		return defaultChallenge
	}
	return g.challenges
}

// refusalEcho returns the protocol the 101 of a connection that will be
// refused (or authenticated in band) echoes: the first of the gate's
// Protocols the client offered, else an offered marker, else "" (also for a
// malformed list). Entries that may hold a credential (the entry after a
// marker, an entry with a prefix form's prefix) are never chosen.
func (g *Gate[P]) refusalEcho(lines []string) string {
	var o offered
	if o.parse(lines) != nil {
		return ""
	}
	for i, e := range o.entries() {
		for _, s := range g.extractors {
			ex := s.builtin
			switch {
			case ex == nil:
			case ex.kind == kindSubprotocol && e == ex.name && i+1 < o.n:
				o.markSecret(i + 1)
			case ex.kind == kindSubprotocolPrefix && strings.HasPrefix(e, ex.name):
				o.markSecret(i)
			}
		}
	}
	if p := o.selectFor(g.protocols); p != "" {
		return p
	}
	for i, e := range o.entries() {
		if o.isSecret(i) {
			continue
		}
		for _, s := range g.extractors {
			if ex := s.builtin; ex != nil && ex.kind == kindSubprotocol && e == ex.name {
				return ex.name
			}
		}
	}
	return ""
}
