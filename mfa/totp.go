// Package mfa holds the mechanics of second factors: RFC 6238 TOTP codes
// (with pquerna/otp) matched to the time step they belong to, so that a
// step can be accepted once, and recovery codes kept only as MACs.
package mfa

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// TOTP parameters (API.md): SHA-1, 6 digits, 30 s steps, one step of drift
// either way, 160-bit secrets.
const (
	Period     = 30
	Digits     = otp.DigitsSix
	Skew       = 1
	SecretSize = 20
)

// NewTOTP generates a secret for account at issuer and returns it in base32
// without padding, with its otpauth:// URI.
func NewTOTP(issuer, account string) (secret, uri string, err error) {
	key, err := totp.Generate(totp.GenerateOpts{
		Issuer: issuer, AccountName: account, Period: Period, SecretSize: SecretSize,
		Digits: Digits, Algorithm: otp.AlgorithmSHA1,
	})
	if err != nil {
		return "", "", fmt.Errorf("mfa: generate totp secret: %w", err)
	}
	return key.Secret(), key.URL(), nil
}

// Step is the RFC 6238 time step of t.
func Step(t time.Time) int64 { return t.Unix() / Period }

// MatchStep returns the time step, among the current one and Skew either
// side, whose code is code; ok is false when none matches. Every candidate
// is computed and compared in constant time.
func MatchStep(secret, code string, now time.Time) (step int64, ok bool) {
	if len(code) != int(Digits) {
		return 0, false
	}
	cur := Step(now)
	for s := cur - Skew; s <= cur+Skew; s++ {
		want, err := totp.GenerateCodeCustom(secret, time.Unix(s*Period, 0), totp.ValidateOpts{
			Period: Period, Digits: Digits, Algorithm: otp.AlgorithmSHA1,
		})
		if err != nil {
			return 0, false
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 && !ok {
			step, ok = s, true
		}
	}
	return step, ok
}

// RecoveryCodeCount is how many recovery codes a user holds at a time.
const RecoveryCodeCount = 10

// recoveryAlphabet has no characters that are easily confused (0/o, 1/l/i).
const recoveryAlphabet = "abcdefghjkmnpqrstuvwxyz23456789"

// NewRecoveryCodes returns RecoveryCodeCount fresh codes of the form
// "xxxxx-xxxxx" (about 49 bits each).
func NewRecoveryCodes() []string {
	codes := make([]string, RecoveryCodeCount)
	for i := range codes {
		var b strings.Builder
		for j := range 10 {
			if j == 5 {
				b.WriteByte('-')
			}
			b.WriteByte(recoveryAlphabet[randIndex(len(recoveryAlphabet))])
		}
		codes[i] = b.String()
	}
	return codes
}

func randIndex(n int) int {
	// Rejection sampling keeps the choice uniform.
	limit := 256 - 256%n
	var b [1]byte
	for {
		rand.Read(b[:]) // never fails (Go 1.24+)
		if int(b[0]) < limit {
			return int(b[0]) % n
		}
	}
}

// NormalizeRecoveryCode folds what a user typed (case, spaces, dashes) to
// the form that is MAC'd.
func NormalizeRecoveryCode(s string) string {
	s = strings.ToLower(s)
	return strings.Map(func(r rune) rune {
		if r == '-' || r == ' ' {
			return -1
		}
		return r
	}, s)
}

// RecoveryMAC is what is stored for a user's recovery code: an HMAC under
// key (derived from the master secret), so a copy of the database cannot
// test guesses offline.
func RecoveryMAC(key []byte, userID, code string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(userID))
	m.Write([]byte{0})
	m.Write([]byte(NormalizeRecoveryCode(code)))
	return m.Sum(nil)
}
