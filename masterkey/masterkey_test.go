package masterkey

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"
)

func TestParse(t *testing.T) {
	good := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	if k, err := Parse(good); err != nil || len(k) != 32 {
		t.Fatalf("Parse(good) = %d bytes, %v", len(k), err)
	}
	if _, err := Parse(base64.StdEncoding.EncodeToString(make([]byte, 31))); err == nil {
		t.Fatal("31-byte key accepted")
	}
	if _, err := Parse("not base64 !!"); err == nil {
		t.Fatal("garbage accepted")
	}
}

func TestLoadOrCreateIsStableAndPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gh.db.key")
	first, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	second, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) {
		t.Fatal("key changed between loads")
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", info.Mode().Perm())
	}
}

func TestDeriveSeparatesPurposes(t *testing.T) {
	master := bytes.Repeat([]byte{1}, 32)
	a, b := Derive(master, PurposeRefresh), Derive(master, PurposeCSRF)
	if bytes.Equal(a, b) || len(a) != 32 {
		t.Fatal("purposes must yield distinct 32-byte keys")
	}
	if !bytes.Equal(a, Derive(master, PurposeRefresh)) {
		t.Fatal("derive is not deterministic")
	}
}
