package httpapi

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// statusRecorder remembers the status a handler wrote, for metrics and logs.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// observe records metrics and a debug log line per request, and turns a
// panic into a 500 problem instead of a dropped connection.
func (s *Server) observe(route string, next http.Handler) http.Handler {
	rm := s.metrics.Route(route)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.logger.Error("panic in handler", "route", route, "panic", fmt.Sprint(v))
				if rec.status == 0 {
					writeError(rec, r, s.logger, fmt.Errorf("panic: %v", v))
				}
			}
			status := rec.status
			if status == 0 {
				status = http.StatusOK
			}
			elapsed := time.Since(start)
			rm.Request(status, elapsed)
			if s.logger.Enabled(r.Context(), slog.LevelDebug) {
				s.logger.Debug("request", "method", r.Method, "route", route, "status", status, "duration", elapsed)
			}
		}()
		next.ServeHTTP(rec, r)
	})
}

// securityHeaders sets the headers every response carries.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Keys written in canonical form directly: Header.Set would
		// canonicalise each one again on every request (hot path).
		h := w.Header()
		h["X-Content-Type-Options"] = []string{"nosniff"}
		h["Referrer-Policy"] = []string{"no-referrer"}
		h["X-Frame-Options"] = []string{"DENY"}
		h["Content-Security-Policy"] = []string{"default-src 'none'; frame-ancestors 'none'"}
		if strings.HasPrefix(r.URL.Path, "/auth/") || strings.HasPrefix(r.URL.Path, "/admin/") {
			// Token responses must never be cached; the rest of the API
			// carries personal data, so the same rule is simplest.
			h["Cache-Control"] = []string{"no-store"}
			h["Pragma"] = []string{"no-cache"}
		}
		next.ServeHTTP(w, r)
	})
}

// crossOrigin enforces the allowed-origins list: CORS headers only for
// allowed origins, preflights answered here, and state-changing requests
// from any other origin refused (403 csrf_failed).
func (s *Server) crossOrigin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		allowed := origin != "" && s.originAllowed(origin)
		if allowed {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Credentials", "true")
			h.Add("Vary", "Origin")
		} else if origin != "" {
			w.Header().Add("Vary", "Origin")
		}
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			if allowed {
				h := w.Header()
				h.Set("Access-Control-Allow-Methods", "GET, POST, PATCH, DELETE")
				h.Set("Access-Control-Allow-Headers", "Content-Type, Authorization, X-CSRF-Token")
				h.Set("Access-Control-Max-Age", "600")
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if isStateChanging(r.Method) {
			if ok, reason := s.sameOriginOrAllowed(r, origin, allowed); !ok {
				s.logger.Debug("csrf refused", "reason", reason, "method", r.Method, "path", r.URL.Path)
				writeError(w, r, s.logger, errCSRF)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func isStateChanging(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// sameOriginOrAllowed decides a state-changing request by its Origin
// header when there is one, else by Sec-Fetch-Site. Requests with neither
// come from non-browser clients, which carry no ambient credentials. When
// it refuses, reason says why, for the debug log (it names no token).
func (s *Server) sameOriginOrAllowed(r *http.Request, origin string, allowed bool) (ok bool, reason string) {
	if origin != "" {
		if allowed {
			return true, ""
		}
		u, err := url.Parse(origin)
		if err != nil || origin == "null" || u.Host == "" {
			return false, fmt.Sprintf("Origin %.100q is not an allowed origin nor a URL", origin)
		}
		oscheme := strings.ToLower(u.Scheme)
		scheme, host, from := s.addressed(r)
		if scheme != "" && scheme != oscheme {
			return false, fmt.Sprintf("Origin %.100q: the scheme %s does not match %s from %s, and it is not in --allowed-origins", origin, oscheme, scheme, from)
		}
		if !strings.EqualFold(withoutDefaultPort(u.Host, oscheme), withoutDefaultPort(host, oscheme)) {
			return false, fmt.Sprintf("Origin %.100q: the host does not match %.100q from %s, and it is not in --allowed-origins", origin, host, from)
		}
		return true, ""
	}
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "", "same-origin", "none":
		return true, ""
	default:
		return false, fmt.Sprintf("no Origin and Sec-Fetch-Site %.30q", site)
	}
}

// addressed is the scheme and host the client addressed, and which header
// said so. Behind a reverse proxy the Host header names the upstream (say
// 127.0.0.1:8080), so when the peer is a trusted proxy (--trusted-proxies)
// its X-Forwarded-Host and X-Forwarded-Proto, or failing those the host and
// proto of a Forwarded header (RFC 7239), are believed. The last value of
// each is taken: the one the nearest proxy, the trusted peer, appended or
// set. From any other peer those headers are ignored. scheme is "" when
// unknown (plain Gatehouse does not know whether a TLS terminator sits in
// front), and then only hosts are compared.
func (s *Server) addressed(r *http.Request) (scheme, host, from string) {
	host, from = r.Host, "Host"
	if len(s.cfg.TrustedProxies) == 0 || !isTrusted(peerAddr(r), s.cfg.TrustedProxies) {
		return "", host, from
	}
	xfh, xfp := lastValue(r.Header.Values("X-Forwarded-Host")), lastValue(r.Header.Values("X-Forwarded-Proto"))
	if xfh == "" && xfp == "" {
		if fh, fp := forwardedHostProto(r.Header.Values("Forwarded")); fh != "" || fp != "" {
			xfh, xfp, from = fh, fp, "Forwarded"
		}
	} else {
		from = "X-Forwarded-Host/-Proto"
	}
	if xfh != "" {
		host = xfh
	}
	switch p := strings.ToLower(xfp); p {
	case "http", "https":
		scheme = p
	}
	return scheme, host, from
}

// lastValue is the last comma-separated element of a header's values.
func lastValue(values []string) string {
	if len(values) == 0 {
		return ""
	}
	v := values[len(values)-1]
	if i := strings.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	return strings.TrimSpace(v)
}

// forwardedHostProto reads host= and proto= of the last element of the
// Forwarded headers (RFC 7239), the one the nearest proxy added. Quoted
// values are unquoted; anything more unusual leaves the values empty.
func forwardedHostProto(values []string) (host, proto string) {
	for _, pair := range strings.Split(lastValue(values), ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok {
			continue
		}
		if uq, err := strconv.Unquote(v); err == nil && strings.HasPrefix(v, `"`) {
			v = uq
		}
		switch strings.ToLower(k) {
		case "host":
			host = v
		case "proto":
			proto = v
		}
	}
	return host, proto
}

// withoutDefaultPort lower-cases host and drops the default port of scheme,
// as browsers do in the Origin header.
func withoutDefaultPort(host, scheme string) string {
	host = strings.ToLower(host)
	switch {
	case scheme == "https" && strings.HasSuffix(host, ":443"):
		return strings.TrimSuffix(host, ":443")
	case scheme == "http" && strings.HasSuffix(host, ":80"):
		return strings.TrimSuffix(host, ":80")
	}
	return host
}

func (s *Server) originAllowed(origin string) bool {
	for _, o := range s.cfg.AllowedOrigins {
		if o == origin {
			return true
		}
	}
	return false
}
