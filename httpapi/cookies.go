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

// checkCSRF verifies a cookie-mode request: the header must equal a CSRF
// cookie, and be the HMAC of the session the refresh token names, so a
// cookie planted by an attacker for another session fails.
func checkCSRF(r *http.Request, key []byte, refreshToken string) bool {
	header, reason := csrfHeaderValue(r)
	return reason == "" && boundTo(key, header, refreshToken)
}

// csrfHeaderValue is the X-CSRF-Token header when it equals one of the
// request's CSRF cookies, or else why the request fails the CSRF check.
// Several CSRF cookies can arrive (an old one beside a new one, or one
// planted on a parent domain despite the __Host- prefix); the header names
// the one the page meant.
func csrfHeaderValue(r *http.Request) (header, reason string) {
	header = r.Header.Get(csrfHeader)
	switch {
	case header == "":
		return "", "no X-CSRF-Token header"
	case len(header) > 128:
		return "", "X-CSRF-Token header too long"
	}
	for _, c := range r.CookiesNamed(csrfCookie) {
		if hmac.Equal([]byte(header), []byte(c.Value)) {
			return header, ""
		}
	}
	return "", "X-CSRF-Token header matches no " + csrfCookie + " cookie"
}

// boundTo reports whether the CSRF token is the HMAC of the session that
// refreshToken names.
func boundTo(key []byte, csrf, refreshToken string) bool {
	sid, _, ok := strings.Cut(refreshToken, ".")
	return ok && hmac.Equal([]byte(csrf), []byte(csrfToken(key, sid)))
}

// refreshFromCookies finds the refresh token of a cookie-mode request and
// checks its CSRF binding. present is false when no refresh cookie has a
// value. A sibling subdomain can plant a second __Secure-refresh_token
// (that prefix allows a Domain attribute), and browsers send the cookies in
// an order the server cannot rely on; so rather than the first, the one
// whose session the X-CSRF-Token header is bound to is taken. The header
// cannot be chosen by a cross-site attacker, and a planted cookie of the
// attacker's own session is bound to a token the page never echoes.
func (s *Server) refreshFromCookies(r *http.Request) (raw string, present bool, err error) {
	var candidates []string
	for _, c := range r.CookiesNamed(refreshCookie) {
		if c.Value != "" {
			candidates = append(candidates, c.Value)
		}
	}
	if len(candidates) == 0 {
		return "", false, nil
	}
	header, reason := csrfHeaderValue(r)
	if reason == "" {
		for _, rt := range candidates {
			if boundTo(s.cfg.CSRFKey, header, rt) {
				return rt, true, nil
			}
		}
		reason = "CSRF token not bound to the session of any " + refreshCookie + " cookie"
	}
	s.logger.Debug("csrf refused", "reason", reason, "path", r.URL.Path,
		"refresh_cookies", len(candidates), "csrf_cookies", len(r.CookiesNamed(csrfCookie)))
	return "", true, errCSRF
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
