package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/auth"
)

// problem is an RFC 9457 problem details body with Gatehouse's stable code.
type problem struct {
	Type   string            `json:"type"`
	Title  string            `json:"title"`
	Status int               `json:"status"`
	Detail string            `json:"detail"`
	Code   string            `json:"code"`
	Errors []auth.FieldError `json:"errors,omitempty"`
	// The second step of a sign-in (mfa_required).
	MFAToken string   `json:"mfa_token,omitempty"`
	Methods  []string `json:"methods,omitempty"`
}

// requestError is an error found by the HTTP layer itself (bad framing,
// content type, method), already carrying its status and code.
type requestError struct {
	status int
	code   string
	detail string
}

func (e *requestError) Error() string { return e.detail }

func badRequest(detail string) error {
	return &requestError{status: http.StatusBadRequest, code: "bad_request", detail: detail}
}

var (
	errCSRF             = &requestError{http.StatusForbidden, "csrf_failed", "The request failed the cross-site request forgery checks."}
	errMethodNotAllowed = &requestError{http.StatusMethodNotAllowed, "method_not_allowed", "This method is not allowed on this endpoint."}
	errNoCredentials    = errors.New("no credentials")
)

var titles = map[string]string{
	"validation_failed":      "Validation failed",
	"weak_password":          "Password too common",
	"email_taken":            "Email already registered",
	"invalid_credentials":    "Invalid credentials",
	"invalid_token":          "Invalid access token",
	"invalid_refresh_token":  "Invalid refresh token",
	"refresh_token_reused":   "Refresh token reused",
	"csrf_failed":            "Cross-site request refused",
	"forbidden":              "Forbidden",
	"not_found":              "Not found",
	"method_not_allowed":     "Method not allowed",
	"payload_too_large":      "Payload too large",
	"unsupported_media_type": "Unsupported media type",
	"bad_request":            "Bad request",
	"rate_limited":           "Too many requests",
	"unavailable":            "Service unavailable",
	"internal":               "Internal server error",
	"invalid_link":           "Invalid link",
	"invalid_code":           "Invalid code",
	"email_not_verified":     "Email not verified",
	"already_verified":       "Email already verified",
	"not_configured":         "Not configured",
	"mfa_required":           "Second factor required",
	"already_enabled":        "Already enabled",
	"invalid_credential":     "Invalid credential",
	"last_login_method":      "Last login method",
	"invalid_redirect":       "Redirect not allowed",
	"account_exists":         "Account exists",
	"last_admin":             "Last admin",
	"insufficient_scope":     "Insufficient scope",
}

// writeError is the one place where errors become HTTP responses. Details
// are fixed sentences: no driver messages, stack traces or echoed input.
func writeError(w http.ResponseWriter, r *http.Request, logger *slog.Logger, err error) {
	p := problem{}
	var (
		reqErr   *requestError
		valErr   *auth.ValidationError
		limitErr *auth.RateLimitError
		weakErr  *auth.WeakPasswordError
		mfaErr   *auth.MFARequiredError
	)
	switch {
	case errors.As(err, &reqErr):
		p.Status, p.Code, p.Detail = reqErr.status, reqErr.code, reqErr.detail
	case errors.As(err, &valErr):
		p.Status, p.Code, p.Detail = http.StatusUnprocessableEntity, "validation_failed", "One or more fields are invalid."
		p.Errors = valErr.Fields
	case errors.As(err, &weakErr):
		p.Status, p.Code, p.Detail = http.StatusUnprocessableEntity, "weak_password", "This password is too common; choose another."
		p.Errors = []auth.FieldError{{Field: weakErr.Field, Message: "is too common"}}
	case errors.Is(err, gatehouse.ErrEmailTaken):
		p.Status, p.Code, p.Detail = http.StatusConflict, "email_taken", "An account with this email already exists."
	case errors.Is(err, auth.ErrInvalidCredentials):
		p.Status, p.Code, p.Detail = http.StatusUnauthorized, "invalid_credentials", "The email or password is incorrect."
	case errors.Is(err, errNoCredentials):
		w.Header().Set("WWW-Authenticate", `Bearer`)
		p.Status, p.Code, p.Detail = http.StatusUnauthorized, "invalid_token", "This endpoint needs a Bearer access token."
	case errors.Is(err, auth.ErrInvalidToken):
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		p.Status, p.Code, p.Detail = http.StatusUnauthorized, "invalid_token", "The access token is invalid, expired or revoked."
	case errors.Is(err, auth.ErrInvalidRefresh):
		p.Status, p.Code, p.Detail = http.StatusUnauthorized, "invalid_refresh_token", "The refresh token is invalid or expired."
	case errors.Is(err, auth.ErrRefreshReused):
		p.Status, p.Code, p.Detail = http.StatusUnauthorized, "refresh_token_reused", "This refresh token was already used; the session has been ended."
	case errors.Is(err, auth.ErrInvalidLink):
		p.Status, p.Code, p.Detail = http.StatusBadRequest, "invalid_link", "This link is invalid, used or expired; ask for a new one."
	case errors.Is(err, auth.ErrInvalidCode):
		p.Status, p.Code, p.Detail = http.StatusUnauthorized, "invalid_code", "This code is wrong, used or expired."
	case errors.Is(err, auth.ErrEmailNotVerified):
		p.Status, p.Code, p.Detail = http.StatusForbidden, "email_not_verified", "Verify your email address before signing in."
	case errors.Is(err, auth.ErrAlreadyVerified):
		p.Status, p.Code, p.Detail = http.StatusConflict, "already_verified", "This email address is already verified."
	case errors.As(err, &mfaErr):
		p.Status, p.Code, p.Detail = http.StatusUnauthorized, "mfa_required", "A second factor is required to finish signing in."
		p.MFAToken, p.Methods = mfaErr.Token, mfaErr.Methods
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Pragma", "no-cache")
	case errors.Is(err, auth.ErrBadCredential):
		p.Status, p.Code, p.Detail = http.StatusBadRequest, "invalid_credential", "The passkey could not be registered."
	case errors.Is(err, auth.ErrInvalidCredential):
		p.Status, p.Code, p.Detail = http.StatusUnauthorized, "invalid_credential", "The passkey was not accepted."
	case errors.Is(err, auth.ErrLastLoginMethod):
		p.Status, p.Code, p.Detail = http.StatusConflict, "last_login_method", "This is the last way to sign in to the account; add another first."
	case errors.Is(err, auth.ErrInvalidRedirect):
		p.Status, p.Code, p.Detail = http.StatusBadRequest, "invalid_redirect", "redirect_to is neither on this server's origin nor under an entry of its redirect allowlist."
	case errors.Is(err, auth.ErrAccountExists):
		p.Status, p.Code, p.Detail = http.StatusConflict, "account_exists", "An account with this email exists; sign in to it and link this provider from the account page."
	case errors.Is(err, auth.ErrLastAdmin):
		p.Status, p.Code, p.Detail = http.StatusConflict, "last_admin", "This is the last enabled admin; make another user an admin first."
	case errors.Is(err, auth.ErrAlreadyEnabled):
		p.Status, p.Code, p.Detail = http.StatusConflict, "already_enabled", "This second factor is already enabled."
	case errors.Is(err, auth.ErrNotConfigured):
		p.Status, p.Code, p.Detail = http.StatusNotFound, "not_configured", "This feature is not configured on this server."
	case errors.Is(err, auth.ErrForbidden):
		p.Status, p.Code, p.Detail = http.StatusForbidden, "forbidden", "You do not have access to this resource."
	case errors.Is(err, gatehouse.ErrNotFound):
		p.Status, p.Code, p.Detail = http.StatusNotFound, "not_found", "No such resource."
	case errors.As(err, &limitErr):
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Max(1, math.Ceil(limitErr.RetryAfter.Seconds())))))
		p.Status, p.Code, p.Detail = http.StatusTooManyRequests, "rate_limited", "Too many attempts; try again later."
	case errors.Is(err, auth.ErrBusy):
		w.Header().Set("Retry-After", "1")
		p.Status, p.Code, p.Detail = http.StatusServiceUnavailable, "unavailable", "The server is busy; try again shortly."
	case errors.Is(err, gatehouse.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		w.Header().Set("Retry-After", "1")
		p.Status, p.Code, p.Detail = http.StatusServiceUnavailable, "unavailable", "A dependency of the server is unavailable; try again shortly."
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away; nobody reads this answer.
		p.Status, p.Code, p.Detail = 499, "bad_request", "The request was canceled."
	default:
		logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		p.Status, p.Code, p.Detail = http.StatusInternalServerError, "internal", "The server failed to handle the request."
	}
	p.Type = "https://gatehouse.dev/problems/" + p.Code
	p.Title = titles[p.Code]
	writeProblem(w, p)
}

func writeProblem(w http.ResponseWriter, p problem) {
	body, _ := json.Marshal(p)
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(p.Status)
	_, _ = w.Write(body)
}

// writeJSON writes a successful JSON response.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only our own response types reach here; they always marshal.
		writeProblem(w, problem{Type: "https://gatehouse.dev/problems/internal", Title: titles["internal"],
			Status: http.StatusInternalServerError, Code: "internal", Detail: "The server failed to encode its answer."})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
