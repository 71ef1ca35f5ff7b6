package httpapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"
	"time"
)

// Cookie names. The prefixes make browsers enforce Secure (and, for
// __Host-, Path=/ with no Domain), so a sibling subdomain cannot plant them.
const (
	refreshCookie = "__Secure-refresh_token"
	csrfCookie    = "__Host-csrf_token"
	csrfHeader    = "X-CSRF-Token"
)

// csrfToken is the signed double-submit token of a session: an HMAC of the
// session id under a key derived from the master secret. It is the same for
// the whole session, so racing tabs never see it change under them.
func csrfToken(key []byte, sessionID string) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("csrf\x00"))
	mac.Write([]byte(sessionID))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// checkCSRF verifies a cookie-mode request: the header must equal the CSRF
// cookie, and the cookie must be the HMAC of the session the refresh token
// names, so a cookie planted by an attacker for another session fails.
func checkCSRF(r *http.Request, key []byte, refreshToken string) bool {
	header := r.Header.Get(csrfHeader)
	c, err := r.Cookie(csrfCookie)
	if err != nil || header == "" || len(header) > 128 {
		return false
	}
	if !hmac.Equal([]byte(header), []byte(c.Value)) {
		return false
	}
	sid, _, ok := strings.Cut(refreshToken, ".")
	if !ok {
		return false
	}
	return hmac.Equal([]byte(c.Value), []byte(csrfToken(key, sid)))
}

func setSessionCookies(w http.ResponseWriter, key []byte, sessionID, refresh string, expires, now time.Time) {
	maxAge := int(expires.Sub(now).Seconds())
	if maxAge < 1 {
		maxAge = 1
	}
	http.SetCookie(w, &http.Cookie{
		Name: refreshCookie, Value: refresh, Path: "/auth", MaxAge: maxAge,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
	})
	// Readable by JavaScript on purpose: the page copies it into the
	// X-CSRF-Token header, which a cross-site attacker cannot do.
	http.SetCookie(w, &http.Cookie{
		Name: csrfCookie, Value: csrfToken(key, sessionID), Path: "/", MaxAge: maxAge,
		Secure: true, SameSite: http.SameSiteStrictMode,
	})
}

func clearSessionCookies(w http.ResponseWriter) {
	// http.Cookie renders MaxAge < 0 as "Max-Age=0".
	http.SetCookie(w, &http.Cookie{Name: refreshCookie, Value: "", Path: "/auth", MaxAge: -1,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: "", Path: "/", MaxAge: -1,
		Secure: true, SameSite: http.SameSiteStrictMode})
}
