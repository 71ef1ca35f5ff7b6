package password_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/gatehouse/gatehouse/password"
)

// cheap keeps unit tests fast; the bounds still hold (m >= 8p).
func cheap() password.Params {
	return password.Params{Memory: 64, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}
}

func TestDefaultParamsAtOWASPMinimum(t *testing.T) {
	p := password.DefaultParams()
	want := password.Params{Memory: 19456, Iterations: 2, Parallelism: 1, SaltLen: 16, KeyLen: 32}
	if p != want {
		t.Fatalf("DefaultParams() = %+v, want %+v", p, want)
	}
}

func TestHashVerifyRoundTrip(t *testing.T) {
	ctx := context.Background()
	h := password.NewHasher(cheap(), 2, 10)
	for _, pw := range []string{"correct horse battery", "ünïcödé-pässwörd", strings.Repeat("🔑", 1024)} {
		enc, err := h.Hash(ctx, pw)
		if err != nil {
			t.Fatalf("Hash: %v", err)
		}
		if !strings.HasPrefix(enc, "$argon2id$v=19$m=64,t=1,p=1$") {
			t.Fatalf("Hash = %q, want argon2id PHC prefix", enc)
		}
		if strings.Contains(enc, "=") && strings.Count(enc, "=") != 4 {
			t.Fatalf("Hash = %q: base64 must be unpadded", enc)
		}
		ok, rehash, err := h.Verify(ctx, pw, enc)
		if err != nil || !ok || rehash {
			t.Fatalf("Verify(right) = %v, %v, %v; want true, false, nil", ok, rehash, err)
		}
		ok, rehash, err = h.Verify(ctx, pw+"x", enc)
		if err != nil || ok || rehash {
			t.Fatalf("Verify(wrong) = %v, %v, %v; want false, false, nil", ok, rehash, err)
		}
	}
}

func TestHashIsSalted(t *testing.T) {
	ctx := context.Background()
	h := password.NewHasher(cheap(), 1, 0)
	a, _ := h.Hash(ctx, "same password")
	b, _ := h.Hash(ctx, "same password")
	if a == b {
		t.Fatal("two hashes of the same password are equal: salt not random")
	}
}

func TestVerifyKnownVector(t *testing.T) {
	// The argon2id test vector of golang.org/x/crypto/argon2 (password
	// "password", salt "somesalt", t=2, m=64, p=2, 24-byte key), in PHC form.
	const ref = "$argon2id$v=19$m=64,t=2,p=2$c29tZXNhbHQ$NQrDciL0Nsy1wJcvHr079rlYvyBxhBNi"
	p := cheap()
	p.KeyLen, p.SaltLen = 24, 8
	h := password.NewHasher(p, 1, 0)
	ok, rehash, err := h.Verify(context.Background(), "password", ref)
	if err != nil || !ok {
		t.Fatalf("Verify(reference vector) = %v, %v, %v", ok, rehash, err)
	}
	if rehash {
		t.Fatal("needsRehash for params stronger than the hasher's")
	}
}

func TestVerifyBcryptNeedsRehash(t *testing.T) {
	ctx := context.Background()
	h := password.NewHasher(cheap(), 1, 0)
	b, err := bcrypt.GenerateFromPassword([]byte("imported secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	for _, prefix := range []string{"$2a$", "$2b$", "$2y$"} {
		enc := prefix + string(b[4:])
		ok, rehash, err := h.Verify(ctx, "imported secret", enc)
		if err != nil || !ok || !rehash {
			t.Fatalf("%s: Verify(right) = %v, %v, %v; want true, true, nil", prefix, ok, rehash, err)
		}
		ok, rehash, err = h.Verify(ctx, "imported secreT", enc)
		if err != nil || ok || rehash {
			t.Fatalf("%s: Verify(wrong) = %v, %v, %v; want false, false, nil", prefix, ok, rehash, err)
		}
	}
}

func TestVerifyBcryptBounds(t *testing.T) {
	ctx := context.Background()
	h := password.NewHasher(cheap(), 1, 0)
	b, _ := bcrypt.GenerateFromPassword([]byte("x"), bcrypt.MinCost)
	valid := string(b)
	for name, enc := range map[string]string{
		"cost 31":       valid[:4] + "31" + valid[6:],
		"cost 17":       valid[:4] + "17" + valid[6:],
		"trailing junk": valid + "AAAA",
		"truncated":     valid[:59],
		"$2x$":          "$2x$" + valid[4:],
		"bad cost":      valid[:4] + "ab" + valid[6:],
	} {
		if _, _, err := h.Verify(ctx, "x", enc); !errors.Is(err, password.ErrMalformedHash) {
			t.Errorf("%s: err = %v, want ErrMalformedHash", name, err)
		}
	}
}

func TestVerifyWeakerArgonNeedsRehash(t *testing.T) {
	ctx := context.Background()
	strong := cheap()
	strong.Memory, strong.Iterations = 128, 2
	h := password.NewHasher(strong, 1, 0)
	for name, p := range map[string]password.Params{
		"memory":     {Memory: 64, Iterations: 2, Parallelism: 1, SaltLen: 16, KeyLen: 32},
		"iterations": {Memory: 128, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32},
		"salt":       {Memory: 128, Iterations: 2, Parallelism: 1, SaltLen: 8, KeyLen: 32},
		"key":        {Memory: 128, Iterations: 2, Parallelism: 1, SaltLen: 16, KeyLen: 16},
	} {
		enc, err := password.NewHasher(p, 1, 0).Hash(ctx, "pw for rehash")
		if err != nil {
			t.Fatal(err)
		}
		ok, rehash, err := h.Verify(ctx, "pw for rehash", enc)
		if err != nil || !ok || !rehash {
			t.Errorf("weaker %s: Verify = %v, %v, %v; want true, true, nil", name, ok, rehash, err)
		}
		// A wrong password never asks for a rehash: there is nothing to hash.
		if ok, rehash, _ := h.Verify(ctx, "wrong", enc); ok || rehash {
			t.Errorf("weaker %s, wrong password: ok=%v rehash=%v", name, ok, rehash)
		}
	}
	// Same or stronger parameters: no rehash.
	for _, p := range []password.Params{strong, {Memory: 256, Iterations: 3, Parallelism: 2, SaltLen: 32, KeyLen: 64}} {
		enc, _ := password.NewHasher(p, 1, 0).Hash(ctx, "pw")
		if ok, rehash, err := h.Verify(ctx, "pw", enc); err != nil || !ok || rehash {
			t.Errorf("params %+v: Verify = %v, %v, %v; want true, false, nil", p, ok, rehash, err)
		}
	}
}

func TestVerifyMalformed(t *testing.T) {
	ctx := context.Background()
	h := password.NewHasher(cheap(), 1, 0)
	const salt, key = "c29tZXNhbHQ", "CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"
	phc := func(mid string) string { return "$argon2id$v=19$" + mid + "$" + salt + "$" + key }
	cases := map[string]string{
		"empty":             "",
		"plain text":        "hunter2hunter2",
		"argon2i":           "$argon2i$v=19$m=64,t=1,p=1$" + salt + "$" + key,
		"argon2d":           "$argon2d$v=19$m=64,t=1,p=1$" + salt + "$" + key,
		"version 16":        "$argon2id$v=16$m=64,t=1,p=1$" + salt + "$" + key,
		"no version":        "$argon2id$m=64,t=1,p=1$" + salt + "$" + key,
		"huge memory":       phc("m=4294967295,t=1,p=1"),
		"memory over 1 GiB": phc("m=1048577,t=1,p=1"),
		"memory below 8p":   phc("m=31,t=1,p=4"),
		"memory overflow":   phc("m=99999999999,t=1,p=1"),
		"t zero":            phc("m=64,t=0,p=1"),
		"t 17":              phc("m=64,t=17,p=1"),
		"t huge":            phc("m=64,t=4294967295,p=1"),
		"p zero":            phc("m=64,t=1,p=0"),
		"p 17":              phc("m=256,t=1,p=17"),
		"p wraps to 1":      phc("m=64,t=1,p=257"),
		"negative":          phc("m=-64,t=1,p=1"),
		"plus sign":         phc("m=+64,t=1,p=1"),
		"leading zero":      phc("m=064,t=1,p=1"),
		"order":             phc("t=1,m=64,p=1"),
		"extra param":       phc("m=64,t=1,p=1,k=1"),
		"missing param":     phc("m=64,t=1"),
		"salt short":        "$argon2id$v=19$m=64,t=1,p=1$c29tZQ$" + key,
		"salt long":         "$argon2id$v=19$m=64,t=1,p=1$" + strings.Repeat("QUFB", 22) + "$" + key,
		"key short":         "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$QUFBQUFBQUFB",
		"key long":          "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + strings.Repeat("QUFB", 22),
		"padded":            "$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHQ=$" + key,
		"newline in b64":    "$argon2id$v=19$m=64,t=1,p=1$c29tZXN\nhbHQ$" + key,
		"url alphabet":      "$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPP_",
		"non-canonical b64": "$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHR$" + key,
		"trailing field":    phc("m=64,t=1,p=1") + "$",
		"huge input":        "$argon2id$v=19$m=64,t=1,p=1$" + strings.Repeat("A", 1<<20) + "$" + key,
		"many dollars":      "$argon2id$" + strings.Repeat("$", 1<<20),
		"unknown":           "$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4CbdRSCdEBsjjJxD+iCs5E",
	}
	for name, enc := range cases {
		var ms0, ms1 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		ok, rehash, err := h.Verify(ctx, "password", enc)
		runtime.ReadMemStats(&ms1)
		if !errors.Is(err, password.ErrMalformedHash) || ok || rehash {
			t.Errorf("%s: Verify = %v, %v, %v; want ErrMalformedHash", name, ok, rehash, err)
		}
		if err != nil && strings.Contains(enc, "CTFh") && strings.Contains(err.Error(), "CTFh") {
			t.Errorf("%s: error %q echoes the stored hash", name, err)
		}
		// Rejection must not allocate in proportion to the claimed
		// parameters (a 4 TiB argon2 memory would be caught here).
		if alloc := ms1.TotalAlloc - ms0.TotalAlloc; alloc > 1<<16 {
			t.Errorf("%s: rejecting allocated %d bytes", name, alloc)
		}
	}
}

func TestVerifyDummy(t *testing.T) {
	ctx := context.Background()
	h := password.NewHasher(cheap(), 1, 0)
	for _, pw := range []string{"", "password", "anything at all"} {
		if err := h.VerifyDummy(ctx, pw); err != nil {
			t.Fatalf("VerifyDummy(%q) = %v", pw, err)
		}
	}
}

func TestContextCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	h := password.NewHasher(cheap(), 1, 1)
	if _, err := h.Hash(ctx, "password"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Hash with cancelled ctx: %v", err)
	}
	enc, _ := h.Hash(context.Background(), "pw")
	if _, _, err := h.Verify(ctx, "pw", enc); !errors.Is(err, context.Canceled) {
		t.Fatalf("Verify with cancelled ctx: %v", err)
	}
}

func TestNewHasherRejectsUnreadableParams(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("NewHasher with salt 4 bytes did not panic")
		}
	}()
	p := cheap()
	p.SaltLen = 4
	password.NewHasher(p, 1, 0)
}

func TestCheck(t *testing.T) {
	cases := []struct {
		name string
		pw   string
		want error
	}{
		{"empty", "", password.ErrTooShort},
		{"7 ascii", "abcdefg", password.ErrTooShort},
		{"8 ascii", "xk3#pq9!", nil},
		// 7 emoji are 28 bytes but 7 code points: still too short.
		{"7 emoji", strings.Repeat("🔒", 7), password.ErrTooShort},
		{"8 emoji", strings.Repeat("🔒", 8), nil},
		{"1024 multibyte", strings.Repeat("é", 1024), nil},
		{"1025 multibyte", strings.Repeat("é", 1025), password.ErrTooLong},
		{"1024 4-byte", strings.Repeat("🔒", 1024), nil},
		{"1025 ascii", strings.Repeat("ab", 512) + "c", password.ErrTooLong},
		{"invalid utf8", "abcdefgh\xff", password.ErrInvalid},
		{"truncated rune", "abcdefgh\xe2\x82", password.ErrInvalid},
		{"common", "password", password.ErrCommon},
		{"common digits", "12345678", password.ErrCommon},
		{"common 9 digits", "123456789", password.ErrCommon},
		{"common qwertyuiop", "qwertyuiop", password.ErrCommon},
		{"common iloveyou1", "iloveyou1", password.ErrCommon},
		{"common password1", "password1", password.ErrCommon},
		{"case Password", "Password", password.ErrCommon},
		{"case PASSWORD1", "PASSWORD1", password.ErrCommon},
		{"case QwErTyUiOp", "QwErTyUiOp", password.ErrCommon},
		{"case ILoveYou1", "ILoveYou1", password.ErrCommon},
		{"common plus space is not common", "password ", nil},
		{"common as substring is fine", "password-of-my-own-2931", nil},
		// Not truncated: the 1024-point limit is on the whole input, so a
		// common password followed by more text is not common.
		{"leading space", " password", nil},
	}
	for _, c := range cases {
		if got := password.Check(c.pw); !errors.Is(got, c.want) || (c.want == nil && got != nil) {
			t.Errorf("%s: Check = %v, want %v", c.name, got, c.want)
		}
	}
}

func BenchmarkHash(b *testing.B) {
	h := password.NewHasher(password.DefaultParams(), runtime.NumCPU(), 1<<20)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.Hash(ctx, "correct horse battery staple"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyParallel(b *testing.B) {
	h := password.NewHasher(password.DefaultParams(), runtime.NumCPU(), 1<<20)
	ctx := context.Background()
	enc, err := h.Hash(ctx, "correct horse battery staple")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if ok, _, err := h.Verify(ctx, "correct horse battery staple", enc); err != nil || !ok {
				b.Errorf("Verify = %v, %v", ok, err)
				return
			}
		}
	})
}
