package httpapi

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/gatehouse/gatehouse/strictjson"
)

// maxBody is the largest request body accepted (API.md: 64 KiB).
const maxBody = 64 << 10

var (
	errUnsupportedMedia = &requestError{http.StatusUnsupportedMediaType, "unsupported_media_type", "The request body must be application/json."}
	errTooLarge         = &requestError{http.StatusRequestEntityTooLarge, "payload_too_large", "The request body is larger than 64 KiB."}
)

// readBody reads a JSON request body into v. When optional is true, a
// request without a body (or with an empty one) leaves v untouched and
// returns false; otherwise a missing body is a 400.
func readBody(r *http.Request, v any, optional bool) (bool, error) {
	if r.ContentLength > maxBody {
		return false, errTooLarge
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return false, badRequest("The request body could not be read.")
	}
	if len(data) > maxBody {
		return false, errTooLarge
	}
	if len(data) == 0 || (optional && r.Header.Get("Content-Type") == "" && isEmptyObject(data)) {
		// Body-less POSTs (cookie-mode refresh and logout) need no
		// Content-Type, and "{}" sent without one means the same.
		if optional {
			return false, nil
		}
		if !isJSON(r) {
			return false, errUnsupportedMedia
		}
		return false, badRequest("A JSON object body is required.")
	}
	if !isJSON(r) {
		return false, errUnsupportedMedia
	}
	if err := strictjson.Decode(data, v); err != nil {
		var se *strictjson.Error
		if errors.As(err, &se) && se.WrongType && se.Field != "" {
			return false, invalidField(se.Field, "has the wrong type")
		}
		detail := "The request body is not acceptable JSON."
		if errors.As(err, &se) && se.Reason != "" {
			detail = "The request body is not acceptable JSON: " + se.Reason
		}
		return false, badRequest(detail)
	}
	return true, nil
}

func isEmptyObject(data []byte) bool {
	return string(bytes.TrimSpace(data)) == "{}"
}

func isJSON(r *http.Request) bool {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return false
	}
	cs, ok := params["charset"]
	return !ok || strings.EqualFold(cs, "utf-8")
}

// bearerToken extracts the token of an "Authorization: Bearer" header.
// present is false when there is no Authorization header at all, which
// RFC 6750 answers without an error attribute.
func bearerToken(r *http.Request) (tok string, present bool) {
	h := r.Header.Values("Authorization")
	if len(h) == 0 {
		return "", false
	}
	if len(h) > 1 {
		return "", true
	}
	scheme, tok, ok := strings.Cut(h[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", true
	}
	tok = strings.TrimSpace(tok)
	if tok == "" || strings.ContainsAny(tok, " \t") {
		return "", true
	}
	return tok, true
}

// clientIP is the address of the client: the peer, or, when the peer is a
// trusted proxy, the nearest untrusted address of X-Forwarded-For.
func clientIP(r *http.Request, trusted []netip.Prefix) string {
	peer := peerAddr(r)
	if !peer.IsValid() {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			return r.RemoteAddr
		}
		return host
	}
	if !isTrusted(peer, trusted) {
		return peer.String()
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		addr, ok := parseHop(hops[i])
		if !ok {
			break // a malformed hop: trust nothing beyond it
		}
		client = addr
		if !isTrusted(client, trusted) {
			break
		}
	}
	return client.String()
}

// peerAddr is the address of the connection's peer; invalid if RemoteAddr
// is not an IP address (it always is for TCP).
func peerAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return peer.Unmap()
}

// parseHop reads one X-Forwarded-For entry: an address, optionally with a
// port (1.2.3.4:5678, [2001:db8::1]:443) or in brackets ([2001:db8::1]),
// as some proxies and load balancers write them.
func parseHop(hop string) (netip.Addr, bool) {
	hop = strings.TrimSpace(hop)
	if addr, err := netip.ParseAddr(hop); err == nil {
		return addr.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(hop); err == nil {
		return ap.Addr().Unmap(), true
	}
	if inner, ok := strings.CutPrefix(hop, "["); ok {
		if inner, ok := strings.CutSuffix(inner, "]"); ok {
			if addr, err := netip.ParseAddr(inner); err == nil && addr.Is6() {
				return addr.Unmap(), true
			}
		}
	}
	return netip.Addr{}, false
}

func isTrusted(ip netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// ClientIP returns the function that finds a request's client address the
// way every handler here does (X-Forwarded-For only from trusted proxies),
// for handlers served beside this package's (the OAuth provider).
func ClientIP(trusted []netip.Prefix) func(*http.Request) string {
	return func(r *http.Request) string { return clientIP(r, trusted) }
}

// BearerToken is the Bearer token parsing of every handler here, for
// handlers served beside this package's (the OAuth provider's continue
// endpoint): tok is empty when the header is absent or unusable.
func BearerToken(r *http.Request) (tok string, present bool) { return bearerToken(r) }
