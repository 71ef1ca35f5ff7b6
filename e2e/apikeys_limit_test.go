package e2e

import (
	"net/http"
	"strings"
	"sync"
	"testing"
)

// TestAPIKeyLimitUnderConcurrentCreation: an account holds at most 100
// unrevoked API keys, also when creations race. With 95 keys held, 20
// creations released at once store exactly 5; the rest are refused with a
// clear validation error. On SQLite and on PostgreSQL + Redis, three rounds.
func TestAPIKeyLimitUnderConcurrentCreation(t *testing.T) {
	const limit, racers = 100, 20
	hrEachBackend(t, func(t *testing.T, backend string) {
		e := hrStart(t, backend)
		for round := range 3 {
			d := e.s.newUser(t, true)
			tok := bearer(d.Access())
			for i := range limit - 5 {
				if r := e.s.do(t, "POST", "/auth/api-keys", map[string]any{"name": "key"}, tok); r.Status != http.StatusCreated {
					t.Fatalf("round %d: key %d: %s", round, i+1, r)
				}
			}
			answers := make([]*resp, racers)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range racers {
				wg.Go(func() {
					<-start
					answers[i] = e.s.do(t, "POST", "/auth/api-keys", map[string]any{"name": "racer"}, tok)
				})
			}
			close(start)
			wg.Wait()
			created := 0
			for _, r := range answers {
				switch {
				case r.Status == http.StatusCreated:
					created++
				case r.Status == http.StatusUnprocessableEntity && r.Code() == "validation_failed" &&
					strings.Contains(string(r.Body), "at most 100 API keys"):
				default:
					t.Errorf("round %d: concurrent creation: %s", round, r)
				}
			}
			r := e.s.do(t, "GET", "/auth/api-keys", nil, tok)
			expect(t, r, http.StatusOK, "")
			list, _ := r.JSON()["api_keys"].([]any)
			if created != 5 || len(list) != limit {
				t.Fatalf("round %d: %d of %d concurrent creations succeeded and %d keys are held; want 5 and %d", round, created, racers, len(list), limit)
			}
			// Revoking one makes room for exactly one more.
			first, _ := list[0].(map[string]any)
			id, _ := first["id"].(string)
			expect(t, e.s.do(t, "DELETE", "/auth/api-keys/"+id, nil, tok), http.StatusNoContent, "")
			expect(t, e.s.do(t, "POST", "/auth/api-keys", map[string]any{"name": "after revoke"}, tok), http.StatusCreated, "")
			expect(t, e.s.do(t, "POST", "/auth/api-keys", map[string]any{"name": "one too many"}, tok), http.StatusUnprocessableEntity, "validation_failed")
		}
	})
}
