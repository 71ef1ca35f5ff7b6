package e2e

import (
	"net/http"
	"testing"
	"time"
)

// TestAPIKeyRevokedOnEveryInstance: two instances on one PostgreSQL and
// Redis. A key used (and so cached) on instance B and revoked on instance A
// is refused by B within a second; so is a key revoked while Redis is not
// part of the picture (the log poll carries it).
func TestAPIKeyRevokedOnEveryInstance(t *testing.T) {
	for _, withRedis := range []bool{true, false} {
		name := map[bool]string{true: "redis", false: "poll only"}[withRedis]
		t.Run(name, func(t *testing.T) {
			c, _ := prodNewCluster(t)
			if !withRedis {
				c.redisURL = ""
			}
			a := c.start(t)
			b := c.start(t)
			d := a.signup(t, newEmail(), newPassword(), true)
			k := createKey(t, d, map[string]any{"name": "cluster"})
			expect(t, verifyStatus(t, b, k.Key), http.StatusOK, "") // cached on b
			expect(t, verifyStatus(t, b, k.Key), http.StatusOK, "")

			expect(t, a.do(t, "DELETE", "/auth/api-keys/"+k.ID, nil, bearer(d.Access())), http.StatusNoContent, "")
			revoked := time.Now()
			// Through Redis within milliseconds; through the log poll,
			// which runs every second, within a few.
			limit := 250 * time.Millisecond
			if !withRedis {
				limit = 3 * time.Second
			}
			for {
				r := verifyStatus(t, b, k.Key)
				if r.Status == http.StatusUnauthorized {
					break
				}
				if time.Since(revoked) > limit {
					t.Fatalf("instance b still accepts the key %s after it was revoked on a: %s", time.Since(revoked), r)
				}
				time.Sleep(20 * time.Millisecond)
			}
			t.Logf("refused on the other instance after %s", time.Since(revoked).Round(time.Millisecond))
		})
	}
}
