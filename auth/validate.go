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
	return pwErr // nil or a *WeakPasswordError
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
		if r <= ' ' || r == 0x7f || unicode.IsSpace(r) || unicode.IsControl(r) {
			return "must not contain spaces or control characters"
		}
		if r > unicode.MaxASCII {
			return "must be a plain ASCII email address"
		}
	}
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Address != email || addr.Name != "" {
		return "is not a valid email address"
	}
	at := strings.LastIndexByte(email, '@')
	local, domain := email[:at], email[at+1:]
	if len(local) > 64 || !validDomain(domain) {
		return "is not a valid email address"
	}
	return ""
}

// validDomain accepts a DNS host name of at least two labels: letters,
// digits and inner hyphens, at most 63 bytes a label (RFC 1035, 5890).
func validDomain(domain string) bool {
	labels := strings.Split(domain, ".")
	if len(labels) < 2 || len(domain) > 253 {
		return false
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
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
		return &WeakPasswordError{Field: field}
	case errors.Is(err, password.ErrTooShort):
		return invalid(field, "must be at least 8 characters")
	case errors.Is(err, password.ErrTooLong):
		return invalid(field, "must be at most 1024 characters")
	default:
		return invalid(field, "must be valid UTF-8 text")
	}
}
