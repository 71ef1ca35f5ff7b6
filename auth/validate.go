package auth

import (
	"errors"
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/password"
)

const (
	maxEmailLen = 254
	maxNameLen  = 200 // code points
	// maxPasswordBytes bounds a password's UTF-8 size: 1024 code points of
	// at most 4 bytes each.
	maxPasswordBytes = 4 * 1024
)

// emailKey is the case-folded form emails are compared by.
func emailKey(email string) string { return strings.ToLower(email) }

func validateSignup(in SignupInput) error {
	var fields []FieldError
	if msg := checkEmail(in.Email); msg != "" {
		fields = append(fields, FieldError{Field: "email", Message: msg})
	}
	if msg := checkName(in.Name); msg != "" {
		fields = append(fields, FieldError{Field: "name", Message: msg})
	}
	pwErr := checkPassword("password", in.Password)
	var ve *ValidationError
	if errors.As(pwErr, &ve) {
		fields = append(fields, ve.Fields...)
	}
	if len(fields) > 0 {
		return &ValidationError{Fields: fields}
	}
	return pwErr // nil or ErrWeakPassword
}

// checkEmail accepts a bare addr-spec in ASCII. Non-ASCII addresses are
// refused: look-alike characters from other scripts would let one person
// register an address that reads like another's.
func checkEmail(email string) string {
	switch {
	case email == "":
		return "is required"
	case len(email) > maxEmailLen:
		return "is too long"
	}
	for _, r := range email {
		if r > unicode.MaxASCII || r <= ' ' || r == 0x7f {
			return "must be a plain ASCII email address"
		}
	}
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Address != email || addr.Name != "" {
		return "is not a valid email address"
	}
	at := strings.LastIndexByte(email, '@')
	local, domain := email[:at], email[at+1:]
	if len(local) > 64 || !strings.Contains(domain, ".") || strings.HasPrefix(domain, ".") ||
		strings.HasSuffix(domain, ".") || strings.Contains(domain, "..") || strings.ContainsAny(domain, "[]") {
		return "is not a valid email address"
	}
	return ""
}

func checkName(name string) string {
	if !utf8.ValidString(name) {
		return "must be valid UTF-8"
	}
	if utf8.RuneCountInString(name) > maxNameLen {
		return "is too long"
	}
	for _, r := range name {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || unicode.Is(unicode.Cf, r) && r != '\u200d' {
			return "must not contain control characters"
		}
	}
	return ""
}

func checkPassword(field, pw string) error {
	err := password.Check(pw)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, password.ErrCommon):
		return ErrWeakPassword
	case errors.Is(err, password.ErrTooShort):
		return invalid(field, "must be at least 8 characters")
	case errors.Is(err, password.ErrTooLong):
		return invalid(field, "must be at most 1024 characters")
	default:
		return invalid(field, "must be valid UTF-8 text")
	}
}
