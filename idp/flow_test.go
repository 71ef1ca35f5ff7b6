package idp

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/sealbox"
)

func TestFlowSealOpen(t *testing.T) {
	box, _ := sealbox.New(bytes.Repeat([]byte("k"), 32))
	other, _ := sealbox.New(bytes.Repeat([]byte("j"), 32))
	now := time.Now()
	f := NewFlow("corp", "state-token", "https://auth.example.com/account", "cookie", "", now)
	if len(f.Nonce) < 43 || len(f.Verifier) < 43 || f.Nonce == f.Verifier {
		t.Fatalf("nonce %q and verifier %q must be distinct 256-bit values", f.Nonce, f.Verifier)
	}
	v := f.Seal(box)
	if strings.Contains(v, f.Verifier) || strings.Contains(v, "state-token") {
		t.Fatal("the sealed flow shows its contents")
	}
	got, err := OpenFlow(box, v, now)
	if err != nil || got != f {
		t.Fatalf("OpenFlow = %+v, %v; want %+v", got, err, f)
	}
	tampered := []byte(v)
	tampered[len(tampered)/2] ^= 1
	for name, try := range map[string]func() (Flow, error){
		"another key": func() (Flow, error) { return OpenFlow(other, v, now) },
		"expired":     func() (Flow, error) { return OpenFlow(box, v, now.Add(FlowTTL)) },
		"tampered":    func() (Flow, error) { return OpenFlow(box, string(tampered), now) },
		"empty":       func() (Flow, error) { return OpenFlow(box, "", now) },
		"not base64":  func() (Flow, error) { return OpenFlow(box, "!!!", now) },
		"huge":        func() (Flow, error) { return OpenFlow(box, strings.Repeat("A", 5000), now) },
	} {
		if _, err := try(); !errors.Is(err, ErrFlow) {
			t.Errorf("%s: err = %v, want ErrFlow", name, err)
		}
	}
}
