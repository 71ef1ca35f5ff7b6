package password

import (
	_ "embed"
	"errors"
	"strings"
	"unicode/utf8"
)

// Policy errors returned by Check. The API maps them to 422 (weak_password for
// ErrCommon, validation_failed for the others), so they carry no input.
var (
	ErrTooShort = errors.New("password: shorter than 8 characters")
	ErrTooLong  = errors.New("password: longer than 1024 characters")
	ErrCommon   = errors.New("password: too common")
	ErrInvalid  = errors.New("password: not valid UTF-8")
)

// Length limits in Unicode code points (API.md: "Password length is counted
// in Unicode code points"). The upper bound keeps the input to the hash small
// while never truncating anything a person would type.
const (
	MinLength = 8
	MaxLength = 1024
)

// commonList holds the most common real-world passwords of at least
// MinLength code points, one lowercase entry a line. It is a string rather
// than a map built at init so the package keeps no mutable global state; a
// linear scan of a few hundred short lines costs a few microseconds, nothing
// next to the hash that follows.
//
//go:embed common.txt
var commonList string

// Check reports whether pw is acceptable as a new password. It counts code
// points, not bytes, and never truncates or case-folds the password itself:
// folding is used only to compare against the common list, so "Password1"
// is refused like "password1" while the stored hash still covers the exact
// input.
func Check(pw string) error {
	if !utf8.ValidString(pw) {
		return ErrInvalid
	}
	n := utf8.RuneCountInString(pw)
	switch {
	case n < MinLength:
		return ErrTooShort
	case n > MaxLength:
		return ErrTooLong
	}
	if isCommon(pw) {
		return ErrCommon
	}
	return nil
}

// isCommon reports whether pw matches an entry of the embedded list,
// ignoring case.
func isCommon(pw string) bool {
	lower := strings.ToLower(pw)
	for line := range strings.Lines(commonList) {
		if strings.TrimRight(line, "\r\n") == lower {
			return true
		}
	}
	return false
}
