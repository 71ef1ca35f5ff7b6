package httpapi

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
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
		if isStateChanging(r.Method) && !s.sameOriginOrAllowed(r, origin, allowed) {
			writeError(w, r, s.logger, errCSRF)
			return
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
// come from non-browser clients, which carry no ambient credentials.
func (s *Server) sameOriginOrAllowed(r *http.Request, origin string, allowed bool) bool {
	if origin != "" {
		if allowed {
			return true
		}
		u, err := url.Parse(origin)
		if err != nil || origin == "null" || u.Host == "" {
			return false
		}
		return strings.EqualFold(u.Host, r.Host)
	}
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
		return true
	}
	return false
}

func (s *Server) originAllowed(origin string) bool {
	for _, o := range s.cfg.AllowedOrigins {
		if o == origin {
			return true
		}
	}
	return false
}
