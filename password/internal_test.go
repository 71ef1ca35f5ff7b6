package password

import (
	"bufio"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func testParams() Params {
	return Params{Memory: 64, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}
}

// TestErrBusy holds the only slot through the unexported acquire, so the
// queue is deterministically full without racing a real hash.
func TestErrBusy(t *testing.T) {
	ctx := context.Background()
	h := NewHasher(testParams(), 1, 0)
	enc, err := h.Hash(ctx, "some password")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.acquire(ctx); err != nil {
		t.Fatal(err)
	}
	if r, w := h.Stats(); r != 1 || w != 0 {
		t.Fatalf("Stats = %d, %d; want 1, 0", r, w)
	}
	if _, err := h.Hash(ctx, "x"); !errors.Is(err, ErrBusy) {
		t.Fatalf("Hash with full queue: %v, want ErrBusy", err)
	}
	if _, _, err := h.Verify(ctx, "x", enc); !errors.Is(err, ErrBusy) {
		t.Fatalf("Verify with full queue: %v, want ErrBusy", err)
	}
	if err := h.VerifyDummy(ctx, "x"); !errors.Is(err, ErrBusy) {
		t.Fatalf("VerifyDummy with full queue: %v, want ErrBusy", err)
	}
	h.release()
	if _, err := h.Hash(ctx, "x"); err != nil {
		t.Fatalf("Hash after release: %v", err)
	}
	if r, w := h.Stats(); r != 0 || w != 0 {
		t.Fatalf("Stats after = %d, %d; want 0, 0", r, w)
	}
}

// TestQueue checks that one caller may wait, the next gets ErrBusy, a
// waiter's ctx ends its wait, and a waiter proceeds once the slot is freed.
func TestQueue(t *testing.T) {
	ctx := context.Background()
	h := NewHasher(testParams(), 1, 1)
	if err := h.acquire(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor := func(want int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if _, w := h.Stats(); w == want {
				return
			}
		}
		t.Fatalf("waiting never reached %d", want)
	}

	// A waiter whose ctx is cancelled gives up with the ctx error.
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { _, err := h.Hash(cctx, "x"); done <- err }()
	waitFor(1)
	if _, err := h.Hash(ctx, "y"); !errors.Is(err, ErrBusy) {
		t.Fatalf("second waiter: %v, want ErrBusy", err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiter: %v, want context.Canceled", err)
	}
	waitFor(0)

	// A waiter proceeds when the slot is released.
	go func() { _, err := h.Hash(ctx, "x"); done <- err }()
	waitFor(1)
	h.release()
	if err := <-done; err != nil {
		t.Fatalf("waiter after release: %v", err)
	}
}

func TestEncodeParseRoundTrip(t *testing.T) {
	h := NewHasher(testParams(), 1, 0)
	got, err := parsePHC(h.dummy)
	if err != nil {
		t.Fatal(err)
	}
	if got.params != h.params {
		t.Fatalf("params = %+v, want %+v", got.params, h.params)
	}
	if re := encodePHC(got.params, got.salt, got.key); re != h.dummy {
		t.Fatalf("re-encoded %q != %q", re, h.dummy)
	}
}

func TestCommonList(t *testing.T) {
	seen := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(commonList))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "" || strings.TrimSpace(line) != line:
			t.Errorf("blank or padded line %q", line)
		case utf8.RuneCountInString(line) < MinLength:
			t.Errorf("%q is shorter than %d: Check refuses it anyway", line, MinLength)
		case strings.ToLower(line) != line:
			t.Errorf("%q is not lowercase: it could never match", line)
		case seen[line]:
			t.Errorf("duplicate %q", line)
		}
		seen[line] = true
		if err := Check(line); !errors.Is(err, ErrCommon) {
			t.Errorf("Check(%q) = %v, want ErrCommon", line, err)
		}
	}
	if len(seen) < 500 {
		t.Errorf("common list has %d entries, want at least 500", len(seen))
	}
}

// FuzzParsePHC checks the parser never panics, and that whatever it accepts
// is within bounds and canonical (re-encodes to the same string).
func FuzzParsePHC(f *testing.F) {
	f.Add("$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc")
	f.Add("$argon2id$v=19$m=4294967295,t=1,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := parsePHC(s)
		if err != nil {
			if !errors.Is(err, ErrMalformedHash) {
				t.Fatalf("error %v does not wrap ErrMalformedHash", err)
			}
			return
		}
		if err := h.params.validate(); err != nil {
			t.Fatalf("accepted out-of-bounds params: %v", err)
		}
		if int(h.params.SaltLen) != len(h.salt) || int(h.params.KeyLen) != len(h.key) {
			t.Fatalf("lengths disagree: %+v", h.params)
		}
		if re := encodePHC(h.params, h.salt, h.key); re != s {
			t.Fatalf("accepted non-canonical %q (canonical %q)", s, re)
		}
	})
}
