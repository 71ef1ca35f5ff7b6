package e2e

// Issue 10, item 11: a concurrent first start on a new SQLite file.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// opsProc is a gatehouse process started by a test outside the harness.
type opsProc struct {
	cmd  *exec.Cmd
	base string
	logs *syncBuffer
	done chan struct{}
}

func opsLaunch(t *testing.T, args ...string) *opsProc {
	t.Helper()
	p := &opsProc{logs: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(binPath, args...)
	p.cmd.Env = cleanEnv()
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start gatehouse: %v", err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	return p
}

// healthy polls /healthz until 200, the process exits, or the deadline.
func (p *opsProc) healthy(hc *http.Client, deadline time.Time) error {
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return errors.New("exited during startup")
		default:
		}
		if res, err := hc.Get(p.base + "/healthz"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("no 200 from /healthz within the deadline")
}

func (p *opsProc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// TestHardeningOpsSQLiteConcurrentFirstStart: several servers started at
// once on a new SQLite file all come up (no SQLITE_BUSY while migrating, no
// half-written master key file read), and they agree on the master key: a
// refresh token issued by one refreshes at another.
func TestHardeningOpsSQLiteConcurrentFirstStart(t *testing.T) {
	t.Parallel()
	const procs, rounds = 3, 15
	hc := &http.Client{Timeout: 5 * time.Second, Transport: validated(t, &http.Transport{DisableKeepAlives: true})}
	budget := time.Now().Add(90 * time.Second)
	for round := 0; round < rounds && time.Now().Before(budget); round++ {
		db := filepath.Join(t.TempDir(), "gh.db")
		ps := make([]*opsProc, procs)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range ps {
			port := freePort(t)
			wg.Go(func() {
				<-start
				ps[i] = opsLaunch(t, "serve", "--addr", fmt.Sprintf("127.0.0.1:%d", port), "--database", "sqlite:"+db,
					"--issuer", "https://auth.e2e.test", "--rate-limit-signup", "off")
				ps[i].base = fmt.Sprintf("http://127.0.0.1:%d", port)
			})
		}
		close(start)
		wg.Wait()
		failed := false
		deadline := time.Now().Add(20 * time.Second)
		for i, p := range ps {
			if err := p.healthy(hc, deadline); err != nil {
				failed = true
				t.Errorf("round %d, process %d of %d on a fresh database: %v\n%s", round+1, i+1, procs, err, p.logs.String())
			}
		}
		if !failed {
			// Same master key: a refresh token minted by one is good at the next.
			body := fmt.Sprintf(`{"email":%q,"password":%q,"token_transport":"body"}`, newEmail(), newPassword())
			res, err := hc.Post(ps[0].base+"/auth/signup", "application/json", strings.NewReader(body))
			if err != nil || res.StatusCode != http.StatusCreated {
				t.Fatalf("round %d: signup: %v %v", round+1, err, res)
			}
			var tr tokenResp
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if err := json.Unmarshal(b, &tr); err != nil {
				t.Fatalf("round %d: signup body: %v", round+1, err)
			}
			for i := 1; i < procs; i++ {
				res, err := hc.Post(ps[i].base+"/auth/refresh", "application/json", strings.NewReader(fmt.Sprintf(`{"refresh_token":%q}`, tr.RefreshToken)))
				if err != nil {
					t.Fatalf("round %d: refresh at process %d: %v", round+1, i+1, err)
				}
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					t.Errorf("round %d: a refresh token from process 1 at process %d: %d %s (different master keys?)", round+1, i+1, res.StatusCode, b)
				}
				if err := json.Unmarshal(b, &tr); err != nil {
					t.Fatalf("round %d: refresh body: %v", round+1, err)
				}
			}
		}
		for _, p := range ps {
			p.stop()
		}
		if failed {
			t.FailNow()
		}
	}
}
