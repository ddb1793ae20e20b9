package wsgate

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// extractCase is one request given to one extractor, and what Extract must
// return for it.
type extractCase struct {
	name      string
	extractor Extractor
	header    http.Header
	want      Credential
	// wantErr is the sentinel the error must match; nil means success.
	wantErr    error
	wantStatus int
	wantCode   string
}

// runExtractCases runs Extract on a fresh request per case and checks the
// credential or the refusal: sentinel, HTTP status, RFC 6750 code and, for a
// credential that is present but unusable, the source it names.
func runExtractCases(t *testing.T, cases []extractCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/ws", nil)
			for k, vs := range tc.header {
				r.Header[k] = append([]string(nil), vs...)
			}

			got, err := tc.extractor.Extract(r)

			if tc.wantErr == nil {
				require.NoError(t, err)
				assertCredential(t, tc.want, got)
				return
			}
			require.ErrorIs(t, err, tc.wantErr)
			var e *Error
			require.ErrorAs(t, err, &e)
			assert.Equal(t, tc.wantStatus, e.Status, "status")
			assert.Equal(t, tc.wantCode, e.Code, "code")
			assert.Equal(t, Credential{}, got, "no credential with an error")
			if errors.Is(err, ErrAmbiguousCredential) || errors.Is(err, ErrMalformedCredential) {
				assert.Equal(t, Source(tc.extractor.(*extractor).kind), e.Source, "source of the refusal")
			}
		})
	}
}

func basicValue(userpass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(userpass))
}

func k8sEntry(token string) string {
	return KubernetesPrefix + base64.RawURLEncoding.EncodeToString([]byte(token))
}

// protocolList returns n distinct protocol entries joined by commas, ending
// with the default marker and a token.
func protocolList(n int) string {
	entries := make([]string, 0, n)
	for i := 0; i < n-2; i++ {
		entries = append(entries, "p"+strconv.Itoa(i))
	}
	entries = append(entries, DefaultMarker, "tok")
	return strings.Join(entries, ",")
}

func TestSubprotocolMarkerExtract(t *testing.T) {
	longToken := strings.Repeat("eyJhbGciOiJFUzI1NiJ9.", 400)
	runExtractCases(t, []extractCase{
		{
			name:      "finds the token in the entry after the marker",
			extractor: Subprotocol(DefaultMarker),
			header:    http.Header{"Sec-Websocket-Protocol": {"chat, access_token, tok.en-1_~+"}},
			want:      NewCredential(SourceSubprotocol, "tok.en-1_~+"),
		},
		{
			name:      "uses the default marker when the marker is empty",
			extractor: Subprotocol(""),
			header:    http.Header{"Sec-Websocket-Protocol": {"access_token, tok"}},
			want:      NewCredential(SourceSubprotocol, "tok"),
		},
		{
			name:      "finds the token when the marker comes first",
			extractor: Subprotocol(DefaultMarker),
			header:    http.Header{"Sec-Websocket-Protocol": {"access_token, tok, chat"}},
			want:      NewCredential(SourceSubprotocol, "tok"),
		},
		{
			name:      "finds the token on the header line after the marker's line",
			extractor: Subprotocol(DefaultMarker),
			header:    http.Header{"Sec-Websocket-Protocol": {"chat, access_token", "tok"}},
			want:      NewCredential(SourceSubprotocol, "tok"),
		},
		{
			name:      "finds the marker on a later header line",
			extractor: Subprotocol(DefaultMarker),
			header:    http.Header{"Sec-Websocket-Protocol": {"chat", "access_token, tok"}},
			want:      NewCredential(SourceSubprotocol, "tok"),
		},
		{
			name:      "trims spaces and tabs around entries",
			extractor: Subprotocol(DefaultMarker),
			header:    http.Header{"Sec-Websocket-Protocol": {" chat ,\taccess_token\t,   tok  "}},
			want:      NewCredential(SourceSubprotocol, "tok"),
		},
		{
			name:      "reads a list with no space after the commas as Node ws sends it",
			extractor: Subprotocol(DefaultMarker),
			header:    http.Header{"Sec-Websocket-Protocol": {"chat,access_token,tok"}},
			want:      NewCredential(SourceSubprotocol, "tok"),
		},
		{
			name:      "accepts an 8000-character token as Chromium sends it",
			extractor: Subprotocol(DefaultMarker),
			header:    http.Header{"Sec-Websocket-Protocol": {"access_token, " + longToken}},
			want:      NewCredential(SourceSubprotocol, longToken),
		},
		{
			name:      "reads a custom marker",
			extractor: Subprotocol("x-auth"),
			header:    http.Header{"Sec-Websocket-Protocol": {"chat, x-auth, tok"}},
			want:      NewCredential(SourceSubprotocol, "tok"),
		},
		{
			name:       "ignores the default marker when a custom marker is set",
			extractor:  Subprotocol("x-auth"),
			header:     http.Header{"Sec-Websocket-Protocol": {"chat, access_token, tok"}},
			wantErr:    ErrNoCredential,
			wantStatus: http.StatusUnauthorized,
		},
		{
			name:       "refuses a marker with nothing after it with 400",
			extractor:  Subprotocol(DefaultMarker),
			header:     http.Header{"Sec-Websocket-Protocol": {"chat, access_token"}},
			wantErr:    ErrMalformedCredential,
			wantStatus: http.StatusBadRequest,
			wantCode:   "invalid_request",
		},
		{
			name:       "refuses a marker alone on the last header line with 400",
			extractor:  Subprotocol(DefaultMarker),
			header:     http.Header{"Sec-Websocket-Protocol": {"chat", "access_token"}},
			wantErr:    ErrMalformedCredential,
			wantStatus: http.StatusBadRequest,
			wantCode:   "invalid_request",
		},
		{
			name:       "finds no credential when the marker is not offered",
			extractor:  Subprotocol(DefaultMarker),
			header:     http.Header{"Sec-Websocket-Protocol": {"chat, superchat"}},
			wantErr:    ErrNoCredential,
			wantStatus: http.StatusUnauthorized,
		},
		{
			name:       "finds no credential without a Sec-WebSocket-Protocol header",
			extractor:  Subprotocol(DefaultMarker),
			header:     http.Header{},
			wantErr:    ErrNoCredential,
			wantStatus: http.StatusUnauthorized,
		},
		{
			name:       "matches the marker case-sensitively",
			extractor:  Subprotocol(DefaultMarker),
			header:     http.Header{"Sec-Websocket-Protocol": {"Access_Token, tok"}},
			wantErr:    ErrNoCredential,
			wantStatus: http.StatusUnauthorized,
		},
		{
			name:       "does not take an entry that merely starts with the marker for it",
			extractor:  Subprotocol(DefaultMarker),
			header:     http.Header{"Sec-Websocket-Protocol": {"access_token2, tok"}},
			wantErr:    ErrNoCredential,
			wantStatus: http.StatusUnauthorized,
		},
		{
			name:      "takes the first half of a token split by a comma, as a Go dialer sends ab,cd",
			extractor: Subprotocol(DefaultMarker),
			header:    http.Header{"Sec-Websocket-Protocol": {"access_token, ab,cd"}},
			want:      NewCredential(SourceSubprotocol, "ab"),
		},
		{
			name:      "ignores an empty entry (RFC 9110 section 5.6.1.2)",
			extractor: Subprotocol(DefaultMarker),
			header:    http.Header{"Sec-Websocket-Protocol": {"chat,, access_token, tok"}},
			want:      NewCredential(SourceSubprotocol, "tok"),
		},
		{
			name:      "ignores a trailing comma",
			extractor: Subprotocol(DefaultMarker),
			header:    http.Header{"Sec-Websocket-Protocol": {"access_token, tok,"}},
			want:      NewCredential(SourceSubprotocol, "tok"),
		},
		{
			name:      "ignores a leading comma",
			extractor: Subprotocol(DefaultMarker),
			header:    http.Header{"Sec-Websocket-Protocol": {", access_token, tok"}},
			want:      NewCredential(SourceSubprotocol, "tok"),
		},
		{
			name:      "ignores an empty header line",
			extractor: Subprotocol(DefaultMarker),
			header:    http.Header{"Sec-Websocket-Protocol": {"access_token, tok", ""}},
			want:      NewCredential(SourceSubprotocol, "tok"),
		},
		{
			name:       "refuses an unreasonable number of empty entries",
			extractor:  Subprotocol(DefaultMarker),
			header:     http.Header{"Sec-Websocket-Protocol": {"access_token, tok" + strings.Repeat(",", maxEmptyProtocols+1)}},
			wantErr:    ErrProtocols,
			wantStatus: http.StatusBadRequest,
		},
		{
			name:       "refuses padded base64 in an entry",
			extractor:  Subprotocol(DefaultMarker),
			header:     http.Header{"Sec-Websocket-Protocol": {"access_token, abc=="}},
			wantErr:    ErrProtocols,
			wantStatus: http.StatusBadRequest,
		},
		{
			name:       "refuses a space inside an entry",
			extractor:  Subprotocol(DefaultMarker),
			header:     http.Header{"Sec-Websocket-Protocol": {"access_token, ab cd"}},
			wantErr:    ErrProtocols,
			wantStatus: http.StatusBadRequest,
		},
		{
			name:       "refuses a slash inside an entry",
			extractor:  Subprotocol(DefaultMarker),
			header:     http.Header{"Sec-Websocket-Protocol": {"access_token, ab/cd"}},
			wantErr:    ErrProtocols,
			wantStatus: http.StatusBadRequest,
		},
		{
			name:       "refuses a duplicate entry",
			extractor:  Subprotocol(DefaultMarker),
			header:     http.Header{"Sec-Websocket-Protocol": {"chat, chat, access_token, tok"}},
			wantErr:    ErrProtocols,
			wantStatus: http.StatusBadRequest,
		},
		{
			name:       "refuses a duplicate entry across header lines",
			extractor:  Subprotocol(DefaultMarker),
			header:     http.Header{"Sec-Websocket-Protocol": {"access_token, tok", "access_token"}},
			wantErr:    ErrProtocols,
			wantStatus: http.StatusBadRequest,
		},
		{
			name:      "accepts exactly maxOfferedProtocols entries",
			extractor: Subprotocol(DefaultMarker),
			header:    http.Header{"Sec-Websocket-Protocol": {protocolList(maxOfferedProtocols)}},
			want:      NewCredential(SourceSubprotocol, "tok"),
		},
		{
			name:       "refuses more than maxOfferedProtocols entries",
			extractor:  Subprotocol(DefaultMarker),
			header:     http.Header{"Sec-Websocket-Protocol": {protocolList(maxOfferedProtocols + 1)}},
			wantErr:    ErrProtocols,
			wantStatus: http.StatusBadRequest,
		},
	})
}

func TestSubprotocolPrefixExtract(t *testing.T) {
	// "\xfb\xff\xbe" encodes to "-_--" in base64url, which standard base64
	// would spell "+/++".
	binary := "\xfb\xff\xbe"
	require.Equal(t, "-_--", base64.RawURLEncoding.EncodeToString([]byte(binary)))

	runExtractCases(t, []extractCase{
		{
			name:      "decodes the Kubernetes form",
			extractor: SubprotocolPrefix(""),
			header:    http.Header{"Sec-Websocket-Protocol": {k8sEntry("my-secret-token") + ", v5.channel.k8s.io"}},
			want:      NewCredential(SourceSubprotocolPrefix, "my-secret-token"),
		},
		{
			name:      "decodes the URL-safe alphabet",
			extractor: SubprotocolPrefix(""),
			header:    http.Header{"Sec-Websocket-Protocol": {"v5.channel.k8s.io, " + k8sEntry(binary)}},
			want:      NewCredential(SourceSubprotocolPrefix, binary),
		},
		{
			name:      "finds the prefixed entry on a later header line",
			extractor: SubprotocolPrefix(""),
			header:    http.Header{"Sec-Websocket-Protocol": {"v5.channel.k8s.io", k8sEntry("tok")}},
			want:      NewCredential(SourceSubprotocolPrefix, "tok"),
		},
		{
			name:      "reads a custom prefix",
			extractor: SubprotocolPrefix("token."),
			header:    http.Header{"Sec-Websocket-Protocol": {"chat, token." + base64.RawURLEncoding.EncodeToString([]byte("tok"))}},
			want:      NewCredential(SourceSubprotocolPrefix, "tok"),
		},
		{
			name:       "refuses characters outside the base64url alphabet with 401 invalid_token",
			extractor:  SubprotocolPrefix(""),
			header:     http.Header{"Sec-Websocket-Protocol": {KubernetesPrefix + "ab+c, v5.channel.k8s.io"}},
			wantErr:    ErrMalformedCredential,
			wantStatus: http.StatusUnauthorized,
			wantCode:   "invalid_token",
		},
		{
			name:       "refuses a base64url value of impossible length with 401 invalid_token",
			extractor:  SubprotocolPrefix(""),
			header:     http.Header{"Sec-Websocket-Protocol": {KubernetesPrefix + "abcde"}},
			wantErr:    ErrMalformedCredential,
			wantStatus: http.StatusUnauthorized,
			wantCode:   "invalid_token",
		},
		{
			name:       "refuses a single base64url character with 401 invalid_token",
			extractor:  SubprotocolPrefix(""),
			header:     http.Header{"Sec-Websocket-Protocol": {KubernetesPrefix + "a"}},
			wantErr:    ErrMalformedCredential,
			wantStatus: http.StatusUnauthorized,
			wantCode:   "invalid_token",
		},
		{
			name:       "refuses non-canonical trailing bits with 401 invalid_token",
			extractor:  SubprotocolPrefix(""),
			header:     http.Header{"Sec-Websocket-Protocol": {KubernetesPrefix + "YR"}},
			wantErr:    ErrMalformedCredential,
			wantStatus: http.StatusUnauthorized,
			wantCode:   "invalid_token",
		},
		{
			name:       "refuses the prefix with an empty value with 401 invalid_token",
			extractor:  SubprotocolPrefix(""),
			header:     http.Header{"Sec-Websocket-Protocol": {KubernetesPrefix + ", v5.channel.k8s.io"}},
			wantErr:    ErrMalformedCredential,
			wantStatus: http.StatusUnauthorized,
			wantCode:   "invalid_token",
		},
		{
			name:       "refuses padded base64url as a malformed list",
			extractor:  SubprotocolPrefix(""),
			header:     http.Header{"Sec-Websocket-Protocol": {KubernetesPrefix + "YQ=="}},
			wantErr:    ErrProtocols,
			wantStatus: http.StatusBadRequest,
		},
		{
			name:       "refuses two prefixed entries with 400",
			extractor:  SubprotocolPrefix(""),
			header:     http.Header{"Sec-Websocket-Protocol": {k8sEntry("one") + ", " + k8sEntry("two")}},
			wantErr:    ErrAmbiguousCredential,
			wantStatus: http.StatusBadRequest,
			wantCode:   "invalid_request",
		},
		{
			name:       "refuses two prefixed entries on separate lines with 400",
			extractor:  SubprotocolPrefix(""),
			header:     http.Header{"Sec-Websocket-Protocol": {k8sEntry("one"), k8sEntry("two")}},
			wantErr:    ErrAmbiguousCredential,
			wantStatus: http.StatusBadRequest,
			wantCode:   "invalid_request",
		},
		{
			name:       "finds no credential without a prefixed entry",
			extractor:  SubprotocolPrefix(""),
			header:     http.Header{"Sec-Websocket-Protocol": {"v5.channel.k8s.io, access_token, tok"}},
			wantErr:    ErrNoCredential,
			wantStatus: http.StatusUnauthorized,
		},
		{
			name:       "matches the prefix case-sensitively",
			extractor:  SubprotocolPrefix(""),
			header:     http.Header{"Sec-Websocket-Protocol": {"Base64url.bearer.authorization.k8s.io.dG9r"}},
			wantErr:    ErrNoCredential,
			wantStatus: http.StatusUnauthorized,
		},
		{
			name:       "is not found by the marker form",
			extractor:  Subprotocol(DefaultMarker),
			header:     http.Header{"Sec-Websocket-Protocol": {k8sEntry("tok") + ", v5.channel.k8s.io"}},
			wantErr:    ErrNoCredential,
			wantStatus: http.StatusUnauthorized,
		},
	})
}

func TestBasicExtract(t *testing.T) {
	runExtractCases(t, []extractCase{
		{
			name:      "reads a token-only userinfo as the token",
			extractor: Basic(),
			header:    http.Header{"Authorization": {basicValue("TOKEN:")}},
			want:      NewCredential(SourceBasic, "TOKEN"),
		},
		{
			name:      "matches a lower-case scheme",
			extractor: Basic(),
			header:    http.Header{"Authorization": {"basic " + base64.StdEncoding.EncodeToString([]byte("TOKEN:"))}},
			want:      NewCredential(SourceBasic, "TOKEN"),
		},
		{
			name:      "matches an upper-case scheme",
			extractor: Basic(),
			header:    http.Header{"Authorization": {"BASIC " + base64.StdEncoding.EncodeToString([]byte("TOKEN:"))}},
			want:      NewCredential(SourceBasic, "TOKEN"),
		},
		{
			name:      "trims spaces around the value",
			extractor: Basic(),
			header:    http.Header{"Authorization": {"  Basic    " + base64.StdEncoding.EncodeToString([]byte("TOKEN:")) + "\t"}},
			want:      NewCredential(SourceBasic, "TOKEN"),
		},
		{
			name:      "accepts unpadded base64",
			extractor: Basic(),
			header:    http.Header{"Authorization": {"Basic " + base64.RawStdEncoding.EncodeToString([]byte("tok:"))}},
			want:      NewCredential(SourceBasic, "tok"),
		},
		{
			name:      "passes a non-empty password on as username and password",
			extractor: Basic(),
			header:    http.Header{"Authorization": {basicValue("user:pass")}},
			want:      basicCredential("user", "pass"),
		},
		{
			name:      "splits at the first colon",
			extractor: Basic(),
			header:    http.Header{"Authorization": {basicValue("a:b:c")}},
			want:      basicCredential("a", "b:c"),
		},
		{
			name:      "keeps a token-only userinfo under TokenOnly",
			extractor: Basic(TokenOnly),
			header:    http.Header{"Authorization": {basicValue("TOKEN:")}},
			want:      NewCredential(SourceBasic, "TOKEN"),
		},
		{
			name:       "refuses a password under TokenOnly with 401",
			extractor:  Basic(TokenOnly),
			header:     http.Header{"Authorization": {basicValue("user:pass")}},
			wantErr:    ErrMalformedCredential,
			wantStatus: http.StatusUnauthorized,
			wantCode:   "invalid_token",
		},
		{
			name:       "refuses a value that is not base64 with 401",
			extractor:  Basic(),
			header:     http.Header{"Authorization": {"Basic !!!!"}},
			wantErr:    ErrMalformedCredential,
			wantStatus: http.StatusUnauthorized,
			wantCode:   "invalid_token",
		},
		{
			name:       "refuses too much padding with 401",
			extractor:  Basic(),
			header:     http.Header{"Authorization": {basicValue("tok:") + "="}},
			wantErr:    ErrMalformedCredential,
			wantStatus: http.StatusUnauthorized,
			wantCode:   "invalid_token",
		},
		{
			name:       "refuses a decoded value without a colon with 401",
			extractor:  Basic(),
			header:     http.Header{"Authorization": {basicValue("TOKEN")}},
			wantErr:    ErrMalformedCredential,
			wantStatus: http.StatusUnauthorized,
			wantCode:   "invalid_token",
		},
		{
			name:       "refuses an empty username with 401",
			extractor:  Basic(),
			header:     http.Header{"Authorization": {basicValue(":pass")}},
			wantErr:    ErrMalformedCredential,
			wantStatus: http.StatusUnauthorized,
			wantCode:   "invalid_token",
		},
		{
			name:       "refuses a lone colon with 401",
			extractor:  Basic(),
			header:     http.Header{"Authorization": {basicValue(":")}},
			wantErr:    ErrMalformedCredential,
			wantStatus: http.StatusUnauthorized,
			wantCode:   "invalid_token",
		},
		{
			name:       "refuses CR and LF inside the base64 value with 401",
			extractor:  Basic(),
			header:     http.Header{"Authorization": {"Basic dG9r\r\nZW46"}},
			wantErr:    ErrMalformedCredential,
			wantStatus: http.StatusUnauthorized,
			wantCode:   "invalid_token",
		},
		{
			name:       "refuses the scheme with nothing after it with 401",
			extractor:  Basic(),
			header:     http.Header{"Authorization": {"Basic"}},
			wantErr:    ErrMalformedCredential,
			wantStatus: http.StatusUnauthorized,
			wantCode:   "invalid_token",
		},
		{
			name:       "refuses two Authorization lines with 400",
			extractor:  Basic(),
			header:     http.Header{"Authorization": {basicValue("one:"), basicValue("two:")}},
			wantErr:    ErrAmbiguousCredential,
			wantStatus: http.StatusBadRequest,
			wantCode:   "invalid_request",
		},
		{
			name:       "finds no credential under another scheme",
			extractor:  Basic(),
			header:     http.Header{"Authorization": {"Bearer dG9rZW46"}},
			wantErr:    ErrNoCredential,
			wantStatus: http.StatusUnauthorized,
		},
		{
			name:       "finds no credential under a scheme that merely starts with Basic",
			extractor:  Basic(),
			header:     http.Header{"Authorization": {"Basicx dG9rZW46"}},
			wantErr:    ErrNoCredential,
			wantStatus: http.StatusUnauthorized,
		},
		{
			name:       "finds no credential without an Authorization header",
			extractor:  Basic(),
			header:     http.Header{},
			wantErr:    ErrNoCredential,
			wantStatus: http.StatusUnauthorized,
		},
	})
}

// TestBasicRefusesControlCharacters: RFC 7617 section 2 says
// the user-id and password must not contain control characters, so a
// decoded CR or LF never reaches the verifier (or what it logs or forwards).
func TestBasicRefusesControlCharacters(t *testing.T) {
	runExtractCases(t, []extractCase{
		{
			name:       "refuses CR and LF inside the decoded username with 401",
			extractor:  Basic(),
			header:     http.Header{"Authorization": {basicValue("tok\r\nen:")}},
			wantErr:    ErrMalformedCredential,
			wantStatus: http.StatusUnauthorized,
			wantCode:   "invalid_token",
		},
		{
			name:       "refuses a NUL inside the decoded password with 401",
			extractor:  Basic(),
			header:     http.Header{"Authorization": {basicValue("user:pa\x00ss")}},
			wantErr:    ErrMalformedCredential,
			wantStatus: http.StatusUnauthorized,
			wantCode:   "invalid_token",
		},
	})
}

func TestBearerExtract(t *testing.T) {
	runExtractCases(t, []extractCase{
		{
			name:      "reads an RFC 6750 bearer token",
			extractor: Bearer(),
			header:    http.Header{"Authorization": {"Bearer abc.DEF-123_~+/=="}},
			want:      NewCredential(SourceBearer, "abc.DEF-123_~+/=="),
		},
		{
			name:      "matches a lower-case scheme",
			extractor: Bearer(),
			header:    http.Header{"Authorization": {"bearer tok"}},
			want:      NewCredential(SourceBearer, "tok"),
		},
		{
			name:      "matches an upper-case scheme",
			extractor: Bearer(),
			header:    http.Header{"Authorization": {"BEARER tok"}},
			want:      NewCredential(SourceBearer, "tok"),
		},
		{
			name:      "trims spaces between scheme and token",
			extractor: Bearer(),
			header:    http.Header{"Authorization": {"Bearer    tok  "}},
			want:      NewCredential(SourceBearer, "tok"),
		},
		{
			name:       "refuses a token with a space inside with 400 invalid_request",
			extractor:  Bearer(),
			header:     http.Header{"Authorization": {"Bearer abc def"}},
			wantErr:    ErrMalformedCredential,
			wantStatus: http.StatusBadRequest,
			wantCode:   "invalid_request",
		},
		{
			name:       "refuses padding in the middle of a token with 400 invalid_request",
			extractor:  Bearer(),
			header:     http.Header{"Authorization": {"Bearer ab=cd"}},
			wantErr:    ErrMalformedCredential,
			wantStatus: http.StatusBadRequest,
			wantCode:   "invalid_request",
		},
		{
			name:       "refuses a token that is only padding with 400 invalid_request",
			extractor:  Bearer(),
			header:     http.Header{"Authorization": {"Bearer =="}},
			wantErr:    ErrMalformedCredential,
			wantStatus: http.StatusBadRequest,
			wantCode:   "invalid_request",
		},
		{
			name:       "refuses a quoted token with 400 invalid_request",
			extractor:  Bearer(),
			header:     http.Header{"Authorization": {`Bearer "tok"`}},
			wantErr:    ErrMalformedCredential,
			wantStatus: http.StatusBadRequest,
			wantCode:   "invalid_request",
		},
		{
			name:       "refuses the scheme with nothing after it with 400",
			extractor:  Bearer(),
			header:     http.Header{"Authorization": {"Bearer"}},
			wantErr:    ErrMalformedCredential,
			wantStatus: http.StatusBadRequest,
			wantCode:   "invalid_request",
		},
		{
			name:       "refuses the scheme with only spaces after it with 400",
			extractor:  Bearer(),
			header:     http.Header{"Authorization": {"Bearer   "}},
			wantErr:    ErrMalformedCredential,
			wantStatus: http.StatusBadRequest,
			wantCode:   "invalid_request",
		},
		{
			name:       "refuses two Authorization lines with 400",
			extractor:  Bearer(),
			header:     http.Header{"Authorization": {"Bearer one", "Bearer two"}},
			wantErr:    ErrAmbiguousCredential,
			wantStatus: http.StatusBadRequest,
			wantCode:   "invalid_request",
		},
		{
			name:       "finds no credential under a scheme that merely starts with Bearer",
			extractor:  Bearer(),
			header:     http.Header{"Authorization": {"Bearerx abc"}},
			wantErr:    ErrNoCredential,
			wantStatus: http.StatusUnauthorized,
		},
		{
			name:       "finds no credential under another scheme",
			extractor:  Bearer(),
			header:     http.Header{"Authorization": {basicValue("TOKEN:")}},
			wantErr:    ErrNoCredential,
			wantStatus: http.StatusUnauthorized,
		},
		{
			name:       "finds no credential without an Authorization header",
			extractor:  Bearer(),
			header:     http.Header{},
			wantErr:    ErrNoCredential,
			wantStatus: http.StatusUnauthorized,
		},
	})
}

func TestCookieExtract(t *testing.T) {
	runExtractCases(t, []extractCase{
		{
			name:      "finds the named cookie among several",
			extractor: Cookie("session"),
			header:    http.Header{"Cookie": {"theme=dark; session=tok; lang=en"}},
			want:      NewCredential(SourceCookie, "tok"),
		},
		{
			name:      "finds the named cookie on a second Cookie line",
			extractor: Cookie("session"),
			header:    http.Header{"Cookie": {"theme=dark", "session=tok"}},
			want:      NewCredential(SourceCookie, "tok"),
		},
		{
			name:      "removes the quotes around a quoted value",
			extractor: Cookie("session"),
			header:    http.Header{"Cookie": {`session="tok"`}},
			want:      NewCredential(SourceCookie, "tok"),
		},
		{
			name:      "keeps an equals sign inside the value",
			extractor: Cookie("session"),
			header:    http.Header{"Cookie": {"session=dG9r=="}},
			want:      NewCredential(SourceCookie, "dG9r=="),
		},
		{
			name:      "reads a __Host- cookie",
			extractor: Cookie("__Host-session"),
			header:    http.Header{"Cookie": {"session=other; __Host-session=tok"}},
			want:      NewCredential(SourceCookie, "tok"),
		},
		{
			name:       "refuses two cookies of the same name with 400",
			extractor:  Cookie("session"),
			header:     http.Header{"Cookie": {"session=one; theme=dark; session=two"}},
			wantErr:    ErrAmbiguousCredential,
			wantStatus: http.StatusBadRequest,
			wantCode:   "invalid_request",
		},
		{
			name:       "refuses two cookies of the same name on separate lines with 400",
			extractor:  Cookie("session"),
			header:     http.Header{"Cookie": {"session=one", "session=two"}},
			wantErr:    ErrAmbiguousCredential,
			wantStatus: http.StatusBadRequest,
			wantCode:   "invalid_request",
		},
		{
			name:       "refuses an empty value with 401",
			extractor:  Cookie("session"),
			header:     http.Header{"Cookie": {"session=; theme=dark"}},
			wantErr:    ErrMalformedCredential,
			wantStatus: http.StatusUnauthorized,
			wantCode:   "invalid_token",
		},
		{
			name:       "refuses an empty quoted value with 401",
			extractor:  Cookie("session"),
			header:     http.Header{"Cookie": {`session=""`}},
			wantErr:    ErrMalformedCredential,
			wantStatus: http.StatusUnauthorized,
			wantCode:   "invalid_token",
		},
		{
			name:       "matches the name case-sensitively",
			extractor:  Cookie("session"),
			header:     http.Header{"Cookie": {"Session=tok"}},
			wantErr:    ErrNoCredential,
			wantStatus: http.StatusUnauthorized,
		},
		{
			name:       "does not match a name that starts with the cookie name",
			extractor:  Cookie("session"),
			header:     http.Header{"Cookie": {"session2=tok"}},
			wantErr:    ErrNoCredential,
			wantStatus: http.StatusUnauthorized,
		},
		{
			name:       "does not match a name that ends with the cookie name",
			extractor:  Cookie("session"),
			header:     http.Header{"Cookie": {"xsession=tok"}},
			wantErr:    ErrNoCredential,
			wantStatus: http.StatusUnauthorized,
		},
		{
			name:       "does not match a pair without an equals sign",
			extractor:  Cookie("session"),
			header:     http.Header{"Cookie": {"session; theme=dark"}},
			wantErr:    ErrNoCredential,
			wantStatus: http.StatusUnauthorized,
		},
		{
			name:       "finds no credential without a Cookie header",
			extractor:  Cookie("session"),
			header:     http.Header{},
			wantErr:    ErrNoCredential,
			wantStatus: http.StatusUnauthorized,
		},
	})
}

func TestQueryExtract(t *testing.T) {
	tests := []struct {
		name           string
		target         string
		parseForm      bool
		want           Credential
		wantErr        error
		wantStatus     int
		wantRawQuery   string
		wantRequestURI string
	}{
		{
			name:           "reads the only parameter and leaves no query",
			target:         "/ws?token=tok",
			want:           NewCredential(SourceQuery, "tok"),
			wantRawQuery:   "",
			wantRequestURI: "/ws",
		},
		{
			name:           "reads the first parameter and keeps the others",
			target:         "/ws?token=tok&room=1&lang=en",
			want:           NewCredential(SourceQuery, "tok"),
			wantRawQuery:   "room=1&lang=en",
			wantRequestURI: "/ws?room=1&lang=en",
		},
		{
			name:           "reads a middle parameter and keeps the others",
			target:         "/ws?room=1&token=tok&lang=en",
			want:           NewCredential(SourceQuery, "tok"),
			wantRawQuery:   "room=1&lang=en",
			wantRequestURI: "/ws?room=1&lang=en",
		},
		{
			name:           "reads the last parameter and keeps the others",
			target:         "/ws?room=1&lang=en&token=tok",
			want:           NewCredential(SourceQuery, "tok"),
			wantRawQuery:   "room=1&lang=en",
			wantRequestURI: "/ws?room=1&lang=en",
		},
		{
			name:           "rewrites an absolute request URI",
			target:         "http://example.com/ws?room=1&token=tok",
			want:           NewCredential(SourceQuery, "tok"),
			wantRawQuery:   "room=1",
			wantRequestURI: "http://example.com/ws?room=1",
		},
		{
			name:           "removes the parameter from a parsed form",
			target:         "/ws?room=1&token=tok",
			parseForm:      true,
			want:           NewCredential(SourceQuery, "tok"),
			wantRawQuery:   "room=1",
			wantRequestURI: "/ws?room=1",
		},
		{
			name:           "decodes a percent-encoded value",
			target:         "/ws?token=a%2Fb%3D%3D&room=1",
			want:           NewCredential(SourceQuery, "a/b=="),
			wantRawQuery:   "room=1",
			wantRequestURI: "/ws?room=1",
		},
		{
			name:           "decodes a plus as a space",
			target:         "/ws?token=a+b",
			want:           NewCredential(SourceQuery, "a b"),
			wantRawQuery:   "",
			wantRequestURI: "/ws",
		},
		{
			name:           "matches a percent-encoded parameter name",
			target:         "/ws?room=1&%74oken=tok",
			want:           NewCredential(SourceQuery, "tok"),
			wantRawQuery:   "room=1",
			wantRequestURI: "/ws?room=1",
		},
		{
			name:           "refuses two values with 400 and removes both",
			target:         "/ws?token=one&room=1&token=two&lang=en",
			wantErr:        ErrAmbiguousCredential,
			wantStatus:     http.StatusBadRequest,
			wantRawQuery:   "room=1&lang=en",
			wantRequestURI: "/ws?room=1&lang=en",
		},
		{
			name:           "refuses two values that are the whole query with 400 and removes both",
			target:         "/ws?token=one&token=two",
			wantErr:        ErrAmbiguousCredential,
			wantStatus:     http.StatusBadRequest,
			wantRawQuery:   "",
			wantRequestURI: "/ws",
		},
		{
			name:           "refuses an empty value with 401 and removes it",
			target:         "/ws?room=1&token=",
			wantErr:        ErrMalformedCredential,
			wantStatus:     http.StatusUnauthorized,
			wantRawQuery:   "room=1",
			wantRequestURI: "/ws?room=1",
		},
		{
			name:           "refuses a parameter without a value with 401 and removes it",
			target:         "/ws?token&room=1",
			wantErr:        ErrMalformedCredential,
			wantStatus:     http.StatusUnauthorized,
			wantRawQuery:   "room=1",
			wantRequestURI: "/ws?room=1",
		},
		{
			name:           "refuses a broken percent escape with 401 and removes it",
			target:         "/ws?token=%zz&room=1",
			wantErr:        ErrMalformedCredential,
			wantStatus:     http.StatusUnauthorized,
			wantRawQuery:   "room=1",
			wantRequestURI: "/ws?room=1",
		},
		{
			name:           "finds no credential under a longer parameter name and keeps the query",
			target:         "/ws?tokens=tok&room=1",
			wantErr:        ErrNoCredential,
			wantStatus:     http.StatusUnauthorized,
			wantRawQuery:   "tokens=tok&room=1",
			wantRequestURI: "/ws?tokens=tok&room=1",
		},
		{
			name:           "finds no credential without a query",
			target:         "/ws",
			wantErr:        ErrNoCredential,
			wantStatus:     http.StatusUnauthorized,
			wantRawQuery:   "",
			wantRequestURI: "/ws",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, tc.target, nil)
			if tc.parseForm {
				require.NoError(t, r.ParseForm())
				require.Equal(t, "tok", r.Form.Get("token"))
			}

			rawQuery, requestURI := r.URL.RawQuery, r.RequestURI
			got, err := Query("token").Extract(r)
			assert.Equal(t, rawQuery, r.URL.RawQuery, "Extract leaves RawQuery as it was")
			assert.Equal(t, requestURI, r.RequestURI, "Extract leaves RequestURI as it was")

			// The gate removes the parameter once it has looked.
			g := New(StaticToken(secret, user{}), Config{Extractors: []Extractor{Query("token")}})
			var o offered
			_, _ = g.extractors[0].builtin.extract(r, &o)
			g.stripQueries(r, &o)
			assert.Equal(t, tc.wantRawQuery, r.URL.RawQuery, "RawQuery")
			assert.Equal(t, tc.wantRequestURI, r.RequestURI, "RequestURI")
			if tc.parseForm {
				assert.NotContains(t, r.Form, "token")
				assert.Equal(t, "1", r.Form.Get("room"))
			}
			if tc.wantErr == nil {
				require.NoError(t, err)
				assertCredential(t, tc.want, got)
				return
			}
			require.ErrorIs(t, err, tc.wantErr)
			var e *Error
			require.ErrorAs(t, err, &e)
			assert.Equal(t, tc.wantStatus, e.Status, "status")
			assert.Equal(t, Credential{}, got)
		})
	}
}

// assertCredential compares two credentials by what they hold.
func assertCredential(t *testing.T, want, got Credential) {
	t.Helper()
	assert.Equal(t, want.Source, got.Source, "source")
	assert.Equal(t, want.Token(), got.Token(), "token")
	assert.Equal(t, want.Username(), got.Username(), "username")
	assert.Equal(t, want.Password(), got.Password(), "password")
}

func TestCredentialFormattingHidesSecrets(t *testing.T) {
	c := Credential{
		Source:   SourceBasic,
		token:    secretOf("token-SECRET-1"),
		username: secretOf("user-SECRET-2"),
		password: secretOf("password-SECRET-3"),
	}
	secrets := []string{c.Token(), c.Username(), c.Password(), "SECRET"}
	type wrapper struct {
		Cred Credential
	}
	type hidden struct {
		name string
		cred Credential
	}

	var jsonLog, textLog, nestedJSON, nestedText, structJSON, structText bytes.Buffer
	slog.New(slog.NewJSONHandler(&jsonLog, nil)).Info("handshake", "cred", c)
	slog.New(slog.NewTextHandler(&textLog, nil)).Info("handshake", slog.Any("cred", &c))
	slog.New(slog.NewJSONHandler(&nestedJSON, nil)).Info("handshake", slog.Group("g", slog.Group("h", slog.Any("cred", c))))
	slog.New(slog.NewTextHandler(&nestedText, nil)).WithGroup("g").Info("handshake", slog.Group("h", "cred", c))
	slog.New(slog.NewJSONHandler(&structJSON, nil)).Info("handshake", "w", wrapper{Cred: c}, "h", hidden{"x", c})
	slog.New(slog.NewTextHandler(&structText, nil)).Info("handshake", "w", wrapper{Cred: c}, "h", hidden{"x", c})
	jsonOf := func(v any) string {
		b, err := json.Marshal(v)
		require.NoError(t, err)
		return string(b)
	}

	tests := []struct {
		name     string
		out      string
		noSource bool
	}{
		{
			name: "%v",
			out:  fmt.Sprintf("%v", c),
		},
		{
			name: "%+v",
			out:  fmt.Sprintf("%+v", c),
		},
		{
			name: "%#v",
			out:  fmt.Sprintf("%#v", c),
		},
		{
			name: "%s",
			out:  fmt.Sprintf("%s", c),
		},
		{
			name: "%q",
			out:  fmt.Sprintf("%q", c),
		},
		{
			name: "%v of a pointer",
			out:  fmt.Sprintf("%v", &c),
		},
		{
			name: "%+v of a struct field",
			out:  fmt.Sprintf("%+v", wrapper{Cred: c}),
		},
		{
			name: "%#v of a struct field",
			out:  fmt.Sprintf("%#v", wrapper{Cred: c}),
		},
		{
			name: "%v of a slice",
			out:  fmt.Sprintf("%v", []Credential{c}),
		},
		{
			name: "%x and %d",
			out:  fmt.Sprintf("%x %X %d %s", c, wrapper{c}, c, []any{c}),
		},
		{
			name:     "%v, %+v and %#v of an unexported field",
			out:      fmt.Sprintf("%v %+v %#v %s %x", hidden{"x", c}, hidden{"x", c}, hidden{"x", c}, hidden{"x", c}, hidden{"x", c}),
			noSource: true, // fmt cannot call methods on unexported fields
		},
		{
			name: "json.Marshal",
			out:  jsonOf(c) + jsonOf(&c) + jsonOf(wrapper{c}) + jsonOf(map[string]any{"c": c}),
		},
		{
			name: "slog JSON handler, nested groups",
			out:  nestedJSON.String(),
		},
		{
			name: "slog text handler, nested groups",
			out:  nestedText.String(),
		},
		{
			name: "slog handlers, struct values holding one",
			out:  structJSON.String() + structText.String(),
		},
		{
			name: "slog JSON handler",
			out:  jsonLog.String(),
		},
		{
			name: "slog text handler with a pointer",
			out:  textLog.String(),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.NotEmpty(t, tc.out)
			for _, s := range secrets {
				assert.NotContains(t, tc.out, s)
			}
			if !tc.noSource {
				assert.Contains(t, tc.out, "basic", "the source is still shown")
			}
		})
	}
}

func TestExtractAllocations(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts are not measured in -short mode")
	}
	const token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
	r := httptest.NewRequest(http.MethodGet, "/ws", nil)
	r.Header.Set("Sec-WebSocket-Protocol", "chat, access_token, "+token)
	r.Header.Set("Authorization", "Bearer "+token)
	r.Header.Set("Cookie", "theme=dark; session="+token+"; lang=en")
	basicReq := httptest.NewRequest(http.MethodGet, "/ws", nil)
	basicReq.Header.Set("Authorization", basicValue(token+":"))

	const query = "room=1&token=" + token + "&lang=en"
	const requestURI = "/ws?" + query
	queryReq := httptest.NewRequest(http.MethodGet, requestURI, nil)

	tests := []struct {
		name      string
		extractor Extractor
		req       *http.Request
		reset     func(*http.Request)
		maxAllocs float64
	}{
		{
			name:      "subprotocol marker hit allocates nothing",
			extractor: Subprotocol(DefaultMarker),
			req:       r,
			maxAllocs: 0,
		},
		{
			name:      "bearer hit allocates nothing",
			extractor: Bearer(),
			req:       r,
			maxAllocs: 0,
		},
		{
			name:      "cookie hit allocates nothing",
			extractor: Cookie("session"),
			req:       r,
			maxAllocs: 0,
		},
		{
			name:      "basic hit allocates at most the decoded value",
			extractor: Basic(),
			req:       basicReq,
			maxAllocs: 1,
		},
		{
			name:      "query hit allocates at most the rewritten query and request URI",
			extractor: Query("token"),
			req:       queryReq,
			reset: func(r *http.Request) {
				r.URL.RawQuery = query
				r.RequestURI = requestURI
			},
			maxAllocs: 2,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var (
				got Credential
				err error
			)
			allocs := testing.AllocsPerRun(100, func() {
				if tc.reset != nil {
					tc.reset(tc.req)
				}
				got, err = tc.extractor.Extract(tc.req)
			})

			require.NoError(t, err)
			assert.Equal(t, token, got.Token(), "the measured call found the credential")
			assert.LessOrEqual(t, allocs, tc.maxAllocs)
		})
	}
}
