package auth

import (
	"errors"
	"fmt"
	"time"
)

// Errors the service returns. The HTTP layer maps each to a status and a
// stable code in one place; storage errors (gatehouse.ErrNotFound,
// gatehouse.ErrEmailTaken, gatehouse.ErrUnavailable) pass through as they are.
var (
	ErrInvalidCredentials = errors.New("invalid credentials")
	ErrInvalidToken       = errors.New("invalid access token")
	ErrInvalidRefresh     = errors.New("invalid refresh token")
	ErrRefreshReused      = errors.New("refresh token reused")
	ErrForbidden          = errors.New("forbidden")
	// ErrWeakPassword matches every *WeakPasswordError.
	ErrWeakPassword = errors.New("password is too common")
	ErrBusy         = errors.New("too many logins in progress")
	// Mail flows.
	ErrInvalidLink      = errors.New("invalid or expired link")
	ErrInvalidCode      = errors.New("invalid or expired code")
	ErrEmailNotVerified = errors.New("email not verified")
	ErrAlreadyVerified  = errors.New("email already verified")
	// ErrNotConfigured: the feature is switched off on this server (mail
	// with --no-mail).
	ErrNotConfigured = errors.New("not configured")
	// ErrAlreadyEnabled: a second factor of that kind is already on.
	ErrAlreadyEnabled = errors.New("already enabled")
	// Passkeys: ErrBadCredential refuses a registration (400),
	// ErrInvalidCredential a sign-in (401); both are invalid_credential.
	ErrBadCredential     = errors.New("credential refused")
	ErrInvalidCredential = errors.New("invalid credential")
	// ErrLastLoginMethod: removing this would leave no way to sign in.
	ErrLastLoginMethod = errors.New("last login method")
	// ErrLastAdmin: the change would leave no enabled admin (409).
	ErrLastAdmin = errors.New("last enabled admin")
)

// WeakPasswordError says which password field holds a too-common password.
type WeakPasswordError struct {
	Field string
}

func (e *WeakPasswordError) Error() string { return e.Field + ": " + ErrWeakPassword.Error() }

// Is makes errors.Is(err, ErrWeakPassword) true.
func (e *WeakPasswordError) Is(target error) bool { return target == ErrWeakPassword }

// FieldError names one invalid input field.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// ValidationError lists every invalid field of a request.
type ValidationError struct {
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	if len(e.Fields) == 0 {
		return "validation failed"
	}
	return fmt.Sprintf("validation failed: %s: %s", e.Fields[0].Field, e.Fields[0].Message)
}

func invalid(field, message string) error {
	return &ValidationError{Fields: []FieldError{{Field: field, Message: message}}}
}

// RateLimitError says a limit was hit and when to try again.
type RateLimitError struct {
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("rate limited, retry after %s", e.RetryAfter)
}
