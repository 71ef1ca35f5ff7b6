package masterkey

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"sync"
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

// TestLoadOrCreateConcurrent: processes starting at once on a new database
// must all get the same secret, and none may read the winner's file before
// it is complete (it used to be created empty, then written).
func TestLoadOrCreateConcurrent(t *testing.T) {
	for round := range 50 {
		dir := t.TempDir()
		path := filepath.Join(dir, "gh.db.key")
		const n = 8
		keys := make([][]byte, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				keys[i], errs[i] = LoadOrCreate(path)
			})
		}
		close(start)
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("round %d: LoadOrCreate #%d: %v", round, i, errs[i])
			}
			if !bytes.Equal(keys[i], keys[0]) {
				t.Fatalf("round %d: racing callers got different secrets", round)
			}
		}
		onDisk, err := ReadFile(path)
		if err != nil || !bytes.Equal(onDisk, keys[0]) {
			t.Fatalf("round %d: the file holds another secret than the callers got (%v)", round, err)
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			t.Fatalf("round %d: temporary files left behind: %v", round, names)
		}
	}
}

// TestLoadOrCreateKeepsExisting: an existing key file is never replaced.
func TestLoadOrCreateKeepsExisting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gh.db.key")
	want := bytes.Repeat([]byte{9}, 32)
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(want)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := LoadOrCreate(path)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("LoadOrCreate on an existing file = %x, %v; want the file's secret", got, err)
	}
}
