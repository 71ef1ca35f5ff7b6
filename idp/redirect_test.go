package idp

import (
	"errors"
	"testing"
)

func TestRedirectPolicy(t *testing.T) {
	p, err := NewRedirectPolicy("https://auth.example.com", []string{
		"https://app.example.com/return", "com.example.app:/oauth", "http://localhost:3000",
	})
	if err != nil {
		t.Fatal(err)
	}
	good := map[string]string{
		"":                                 "https://auth.example.com/account",
		"/account":                         "https://auth.example.com/account",
		"/account?tab=linked":              "https://auth.example.com/account?tab=linked",
		"https://auth.example.com/account": "https://auth.example.com/account",
		"https://AUTH.example.com:443/x":   "https://AUTH.example.com:443/x",
		"https://app.example.com/return":   "https://app.example.com/return",
		"https://app.example.com/return/done?a=1":  "https://app.example.com/return/done?a=1",
		"https://app.example.com/return?next=%2Fx": "https://app.example.com/return?next=%2Fx",
		"com.example.app:/oauth":                   "com.example.app:/oauth",
		"com.example.app:/oauth/cb":                "com.example.app:/oauth/cb",
		"http://localhost:3000/anything":           "http://localhost:3000/anything",
	}
	for in, want := range good {
		got, err := p.Check(in)
		if err != nil || got != want {
			t.Errorf("Check(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	bad := []string{
		"https://evil.example",
		"//evil.example",
		"//evil.example/account",
		"/\\evil.example",
		"\\\\evil.example",
		"https:evil.example",
		"https:/evil.example",
		"https:///evil.example",
		"https://auth.example.com\\@evil.example",
		"https://auth.example.com@evil.example/",
		"https://evil.example@auth.example.com/",
		"https://user:pw@app.example.com/return",
		"https://app.example.com/returned",
		"https://app.example.com/other",
		"https://app.example.com/return/../admin",
		"https://app.example.com/return/%2e%2e/admin",
		"https://app.example.com/return%2f..%2fadmin",
		"http://app.example.com/return",
		"https://app.example.com:8443/return",
		"https://auth.example.com/account#x",
		"https://auth.example.com.evil.example/",
		"javascript:alert(1)",
		"data:text/html,hi",
		"com.example.app:oauth",
		"com.evil.app:/oauth",
		"/account\n",
		" /account",
		"/acc ount",
		"/account\x00",
		"http://localhost:3001/",
		"/ä",
	}
	for _, in := range bad {
		if got, err := p.Check(in); !errors.Is(err, ErrRedirect) {
			t.Errorf("Check(%q) = %q, %v; want ErrRedirect", in, got, err)
		}
	}
	if _, err := NewRedirectPolicy("https://auth.example.com", []string{"not a url"}); err == nil {
		t.Error("NewRedirectPolicy accepted an allowlist entry that is not a URL")
	}
}
