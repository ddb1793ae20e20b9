package ticket_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/wsgate/wsgate"
	"github.com/wsgate/wsgate/ticket"
)

type User struct{ Name string }

// currentUser stands in for the application's own login: a session cookie
// it already checks on every page.
func currentUser(r *http.Request) (User, bool) {
	c, err := r.Cookie("session")
	if err != nil || c.Value != "alice-session" {
		return User{}, false
	}
	return User{Name: "alice"}, true
}

// handshake is what a browser sends to open the socket.
func handshake(target string) *http.Request {
	r := httptest.NewRequest("GET", target, nil)
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Sec-WebSocket-Version", "13")
	r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	return r
}

// The issuer: a page signed in with a cookie fetches a ticket with POST,
// then opens the socket with it within seconds.
func ExampleService_Issuer() {
	store := ticket.NewMemoryStore(ticket.MemoryStoreOptions{})
	defer store.Close()
	tickets := &ticket.Service[User]{Store: store, BindOrigin: true, Path: "/ws"}

	mux := http.NewServeMux()
	mux.Handle("/ws-ticket", tickets.Issuer(currentUser))
	gate := wsgate.New(tickets.Verifier(), wsgate.Config{
		Extractors: []wsgate.Extractor{wsgate.Query("ticket")},
	})

	// What the page's fetch("/ws-ticket", {method: "POST"}) sends.
	r := httptest.NewRequest("POST", "https://app.example/ws-ticket", nil)
	r.Header.Set("Origin", "https://app.example")
	r.AddCookie(&http.Cookie{Name: "session", Value: "alice-session"})
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, r)
	var body struct {
		Ticket    string `json:"ticket"`
		ExpiresIn int    `json:"expires_in"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		log.Fatal(err)
	}
	fmt.Println(w.Code, w.Header().Get("Cache-Control"), len(body.Ticket) == ticket.Length, body.ExpiresIn)

	// What new WebSocket("wss://app.example/ws?ticket=" + ticket) sends.
	hs := handshake("https://app.example/ws?ticket=" + body.Ticket)
	hs.Header.Set("Origin", "https://app.example")
	a, err := gate.Authenticate(hs)
	fmt.Println(a.Principal.Name, err)
	// Output:
	// 200 no-store true 30
	// alice <nil>
}

// The verifier accepts a ticket once: a second handshake with it is refused
// with 401, like an unknown or expired ticket.
func ExampleService_Verifier() {
	var store ticket.MemoryStore // the zero store works, without a background sweep
	tickets := &ticket.Service[User]{Store: &store, Path: "/ws"}
	gate := wsgate.New(tickets.Verifier(), wsgate.Config{
		Extractors: []wsgate.Extractor{wsgate.Query("ticket")},
	})

	tk, err := tickets.Issue(httptest.NewRequest("POST", "/ws-ticket", nil), User{Name: "alice"})
	if err != nil {
		log.Fatal(err)
	}
	for range 2 {
		a, err := gate.Authenticate(handshake("/ws?ticket=" + tk))
		fmt.Printf("%q %v\n", a.Principal.Name, errors.Is(err, wsgate.ErrInvalidToken))
	}
	// Output:
	// "alice" false
	// "" true
}

// Issue is for applications that hand the ticket out in a response of their
// own. Its errors match sentinels, so the response can say what went wrong.
func ExampleService_Issue() {
	tickets := &ticket.Service[User]{Store: new(ticket.MemoryStore), BindClient: true}
	r := httptest.NewRequest("POST", "/login", nil)
	r.RemoteAddr = "unix socket" // no IP address to bind the ticket to
	_, err := tickets.Issue(r, User{Name: "alice"})
	switch {
	case errors.Is(err, ticket.ErrClientUnknown):
		fmt.Println("400:", err)
	case errors.Is(err, ticket.ErrStoreFull):
		fmt.Println("503:", err)
	case err != nil:
		fmt.Println("500:", err)
	}
	// Output: 400: ticket: client address unknown
}
