package fleet

import "encoding/json"

// RefreshToken reads the in-band refresh message a client sends on a live
// session, {"type":"refresh","token":"..."} (other fields are ignored),
// and returns its token; ok is false for any other message. Hand the token
// to the session's Refresh:
//
//	if tok, ok := fleet.RefreshToken(msg); ok {
//		if s.Refresh(wsgate.NewCredential(wsgate.SourceMessage, tok)) != nil {
//			return // the gate closes the session 4401 "refresh refused"
//		}
//		continue
//	}
//
// A message that is not a small JSON object is refused without parsing:
// only messages of at most MaxRefreshMessage bytes starting with '{' are
// decoded.
func RefreshToken(msg []byte) (token string, ok bool) {
	if len(msg) == 0 || len(msg) > MaxRefreshMessage || msg[0] != '{' {
		return "", false
	}
	var m struct {
		Type  string `json:"type"`
		Token string `json:"token"`
	}
	if json.Unmarshal(msg, &m) != nil || m.Type != "refresh" || m.Token == "" {
		return "", false
	}
	return m.Token, true
}

// MaxRefreshMessage is the largest refresh message RefreshToken decodes,
// in bytes: the in-band authentication message's default bound.
const MaxRefreshMessage = 4096
