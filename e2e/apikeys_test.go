package e2e

import (
	"database/sql"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// API keys (API.md part 2, "Machines and resource servers"), /auth/verify
// and the last-admin rule, against the real binary.

var apiKeyShape = regexp.MustCompile(`^gh_[a-z2-7]{26}_[a-z2-7]{52}$`)

type createdKey struct {
	ID     string
	Key    string
	Prefix string
}

// createKey creates an API key as d and checks the answer's shape.
func createKey(t *testing.T, d *device, body map[string]any) createdKey {
	t.Helper()
	r := d.srv.do(t, "POST", "/auth/api-keys", body, bearer(d.Access()))
	if !expect(t, r, http.StatusCreated, "") {
		t.FailNow()
	}
	if cc := r.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
		t.Errorf("create api key: Cache-Control %q, want no-store (the answer holds the key)", cc)
	}
	j := r.JSON()
	key, _ := j["key"].(string)
	meta, _ := j["api_key"].(map[string]any)
	if !apiKeyShape.MatchString(key) || meta == nil {
		t.Fatalf("create api key: %s", r)
	}
	id, _ := meta["id"].(string)
	prefix, _ := meta["prefix"].(string)
	for _, f := range []string{"id", "name", "prefix", "scopes", "created_at", "expires_at", "last_used_at"} {
		if _, ok := meta[f]; !ok {
			t.Errorf("create api key: api_key lacks %q: %s", f, r)
		}
	}
	if !strings.HasPrefix(key, prefix) || !strings.Contains(key, id) || strings.Contains(string(r.Body), `"mac"`) {
		t.Errorf("create api key: id %q / prefix %q do not match the key, or a MAC leaked: %s", id, prefix, r)
	}
	return createdKey{ID: id, Key: key, Prefix: prefix}
}

// verifyStatus calls /auth/verify with a credential.
func verifyStatus(t *testing.T, s *server, cred string) *resp {
	t.Helper()
	if cred == "" {
		return s.do(t, "GET", "/auth/verify", nil)
	}
	return s.do(t, "GET", "/auth/verify", nil, bearer(cred))
}

func TestAPIKeys(t *testing.T) {
	s := startServer(t)
	adminID, admin := s.makeAdmin(t)
	_ = adminID
	alice := s.newUser(t, true)
	bob := s.newUser(t, true)

	k := createKey(t, alice, map[string]any{"name": "ci deploy", "expires_in_days": 30, "scopes": []string{"deploy", "deploy"}})

	t.Run("accepted by /auth/me and /auth/verify as its owner", func(t *testing.T) {
		r := s.do(t, "GET", "/auth/me", nil, bearer(k.Key))
		expect(t, r, http.StatusOK, "")
		if u, _ := r.JSON()["user"].(map[string]any); u == nil || u["id"] != alice.user.ID {
			t.Errorf("/auth/me with the key: %s", r)
		}
		r = verifyStatus(t, s, k.Key)
		expect(t, r, http.StatusOK, "")
		if r.Header.Get("X-Auth-User-Id") != alice.user.ID || r.Header.Get("X-Auth-Role") != "user" ||
			r.Header.Get("X-Auth-Api-Key-Id") != k.ID || r.Header.Get("X-Auth-Session-Id") != "" || r.Header.Get("X-Auth-Scopes") != "deploy" {
			t.Errorf("/auth/verify with the key: headers %v", r.Header)
		}
		r = verifyStatus(t, s, alice.Access())
		expect(t, r, http.StatusOK, "")
		if r.Header.Get("X-Auth-User-Id") != alice.user.ID || r.Header.Get("X-Auth-Session-Id") != alice.sid || r.Header.Get("X-Auth-Api-Key-Id") != "" {
			t.Errorf("/auth/verify with an access token: headers %v", r.Header)
		}
	})

	t.Run("refused where an access token is required", func(t *testing.T) {
		expect(t, s.do(t, "GET", "/auth/sessions", nil, bearer(k.Key)), http.StatusUnauthorized, "invalid_token")
		expect(t, s.do(t, "GET", "/auth/api-keys", nil, bearer(k.Key)), http.StatusUnauthorized, "invalid_token")
		expect(t, s.do(t, "POST", "/auth/api-keys", map[string]any{"name": "child"}, bearer(k.Key)), http.StatusUnauthorized, "invalid_token")
		expect(t, s.do(t, "POST", "/auth/logout", nil, bearer(k.Key)), http.StatusUnauthorized, "")
	})

	t.Run("shown once: the list has no key material", func(t *testing.T) {
		r := s.do(t, "GET", "/auth/api-keys", nil, bearer(alice.Access()))
		expect(t, r, http.StatusOK, "")
		if strings.Contains(string(r.Body), k.Key[len(k.Prefix):]) || !strings.Contains(string(r.Body), k.ID) {
			t.Errorf("list: %s", r)
		}
		list, _ := r.JSON()["api_keys"].([]any)
		if len(list) != 1 {
			t.Fatalf("list: %d keys, want 1: %s", len(list), r)
		}
		got := list[0].(map[string]any)
		if got["name"] != "ci deploy" || got["expires_at"] == nil {
			t.Errorf("list entry: %v", got)
		}
		if scopes, _ := got["scopes"].([]any); len(scopes) != 1 || scopes[0] != "deploy" {
			t.Errorf("scopes %v, want [deploy] (duplicates kept once)", got["scopes"])
		}
		// Used above: the use shows although it is written in batches.
		if got["last_used_at"] == nil {
			t.Errorf("last_used_at is null after use: %v", got)
		}
	})

	t.Run("invalid requests", func(t *testing.T) {
		tok := bearer(alice.Access())
		for _, body := range []map[string]any{
			{},
			{"name": ""},
			{"name": strings.Repeat("n", 101)},
			{"name": "x", "expires_in_days": 0},
			{"name": "x", "expires_in_days": 3651},
			{"name": "x", "scopes": []string{"Has Space"}},
			{"name": "x", "scopes": []string{"revocations:read"}}, // only an admin may give it
		} {
			expect(t, s.do(t, "POST", "/auth/api-keys", body, tok), http.StatusUnprocessableEntity, "validation_failed")
		}
		expect(t, s.do(t, "POST", "/auth/api-keys", map[string]any{"name": "x", "expires_in_days": "7"}, tok), http.StatusUnprocessableEntity, "validation_failed")
		expect(t, s.do(t, "POST", "/auth/api-keys", map[string]any{"name": "x", "extra": 1}, tok), http.StatusBadRequest, "bad_request")
		expect(t, s.do(t, "POST", "/auth/api-keys", nil, tok), http.StatusUnsupportedMediaType, "")
		expect(t, s.do(t, "POST", "/auth/api-keys", map[string]any{"name": "x"}), http.StatusUnauthorized, "invalid_token")
	})

	t.Run("an admin may give revocations:read", func(t *testing.T) {
		ak := createKey(t, admin, map[string]any{"name": "feed reader", "scopes": []string{"revocations:read"}})
		r := verifyStatus(t, s, ak.Key)
		expect(t, r, http.StatusOK, "")
		if r.Header.Get("X-Auth-Role") != "admin" || r.Header.Get("X-Auth-Scopes") != "revocations:read" {
			t.Errorf("admin key: headers %v", r.Header)
		}
		// A key acts on endpoints that accept keys only: not the admin API.
		expect(t, s.do(t, "GET", "/admin/users", nil, bearer(ak.Key)), http.StatusUnauthorized, "invalid_token")
	})

	t.Run("keys in URLs are refused", func(t *testing.T) {
		expect(t, s.do(t, "GET", "/auth/verify?api_key="+url.QueryEscape(k.Key), nil), http.StatusBadRequest, "bad_request")
		expect(t, s.do(t, "GET", "/auth/me?api_key="+url.QueryEscape(k.Key), nil, bearer(k.Key)), http.StatusBadRequest, "bad_request")
		expect(t, s.do(t, "GET", "/auth/me?access_token="+url.QueryEscape(k.Key), nil), http.StatusBadRequest, "bad_request")
		expect(t, s.do(t, "GET", "/auth/sessions?api_key="+url.QueryEscape(k.Key), nil, bearer(alice.Access())), http.StatusBadRequest, "bad_request")
	})

	t.Run("garbage and look-alikes", func(t *testing.T) {
		forged := k.Key[:len(k.Key)-1] + map[bool]string{true: "b", false: "a"}[strings.HasSuffix(k.Key, "a")]
		for _, cred := range []string{"gh_", "gh_x", forged, strings.ToUpper(k.Key), k.Key + "a", "gh_" + strings.Repeat("a", 26) + "_" + strings.Repeat("a", 52)} {
			expect(t, verifyStatus(t, s, cred), http.StatusUnauthorized, "invalid_token")
		}
		r := verifyStatus(t, s, "")
		expect(t, r, http.StatusUnauthorized, "invalid_token")
		if r.Header.Get("WWW-Authenticate") != "Bearer" {
			t.Errorf("no credentials: WWW-Authenticate %q", r.Header.Get("WWW-Authenticate"))
		}
	})

	t.Run("a disabled owner's key is refused at once, and the owner's role applies", func(t *testing.T) {
		carol := s.newUser(t, true)
		ck := createKey(t, carol, map[string]any{"name": "carol's"})
		expect(t, verifyStatus(t, s, ck.Key), http.StatusOK, "") // now cached
		r := s.do(t, "PATCH", "/admin/users/"+carol.user.ID, map[string]any{"role": "admin"}, bearer(admin.Access()))
		expect(t, r, http.StatusOK, "")
		r = verifyStatus(t, s, ck.Key)
		if expect(t, r, http.StatusOK, "") && r.Header.Get("X-Auth-Role") != "admin" {
			t.Errorf("after promotion the key acts as %q, want admin", r.Header.Get("X-Auth-Role"))
		}
		r = s.do(t, "PATCH", "/admin/users/"+carol.user.ID, map[string]any{"disabled": true}, bearer(admin.Access()))
		expect(t, r, http.StatusOK, "")
		expect(t, verifyStatus(t, s, ck.Key), http.StatusUnauthorized, "invalid_token")
		expect(t, s.do(t, "GET", "/auth/me", nil, bearer(ck.Key)), http.StatusUnauthorized, "invalid_token")
	})

	t.Run("revoked by its owner: refused at once", func(t *testing.T) {
		k2 := createKey(t, alice, map[string]any{"name": "short-lived"})
		expect(t, verifyStatus(t, s, k2.Key), http.StatusOK, "")
		// Another user cannot revoke it, nor learn that it exists.
		expect(t, s.do(t, "DELETE", "/auth/api-keys/"+k2.ID, nil, bearer(bob.Access())), http.StatusNotFound, "not_found")
		expect(t, verifyStatus(t, s, k2.Key), http.StatusOK, "")
		expect(t, s.do(t, "DELETE", "/auth/api-keys/"+k2.ID, nil, bearer(alice.Access())), http.StatusNoContent, "")
		expect(t, verifyStatus(t, s, k2.Key), http.StatusUnauthorized, "invalid_token")
		expect(t, s.do(t, "GET", "/auth/me", nil, bearer(k2.Key)), http.StatusUnauthorized, "invalid_token")
		expect(t, s.do(t, "DELETE", "/auth/api-keys/"+k2.ID, nil, bearer(alice.Access())), http.StatusNotFound, "not_found")
		expect(t, s.do(t, "DELETE", "/auth/api-keys/nonsense", nil, bearer(alice.Access())), http.StatusNotFound, "not_found")
	})

	t.Run("admin lists and revokes", func(t *testing.T) {
		bk := createKey(t, bob, map[string]any{"name": "bob's"})
		expect(t, s.do(t, "GET", "/admin/users/"+bob.user.ID+"/api-keys", nil, bearer(bob.Access())), http.StatusForbidden, "forbidden")
		expect(t, s.do(t, "DELETE", "/admin/api-keys/"+bk.ID, nil, bearer(bob.Access())), http.StatusForbidden, "forbidden")
		r := s.do(t, "GET", "/admin/users/"+bob.user.ID+"/api-keys", nil, bearer(admin.Access()))
		expect(t, r, http.StatusOK, "")
		if !strings.Contains(string(r.Body), bk.ID) {
			t.Errorf("admin list: %s", r)
		}
		expect(t, s.do(t, "GET", "/admin/users/nobody/api-keys", nil, bearer(admin.Access())), http.StatusNotFound, "not_found")
		expect(t, verifyStatus(t, s, bk.Key), http.StatusOK, "")
		expect(t, s.do(t, "DELETE", "/admin/api-keys/"+bk.ID, nil, bearer(admin.Access())), http.StatusNoContent, "")
		expect(t, verifyStatus(t, s, bk.Key), http.StatusUnauthorized, "invalid_token")
		expect(t, s.do(t, "DELETE", "/admin/api-keys/"+bk.ID, nil, bearer(admin.Access())), http.StatusNotFound, "not_found")
	})

	t.Run("expired", func(t *testing.T) {
		ek := createKey(t, bob, map[string]any{"name": "expiring", "expires_in_days": 1})
		// Not used yet, so not cached: move its expiry into the past in
		// the database, as the passing of a day would.
		db, err := sql.Open("sqlite", "file:"+s.dbPath+"?_pragma=busy_timeout(5000)")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Exec(`UPDATE api_keys SET expires_at = ? WHERE id = ?`, time.Now().Add(-time.Minute).UnixMicro(), ek.ID); err != nil {
			t.Fatal(err)
		}
		expect(t, verifyStatus(t, s, ek.Key), http.StatusUnauthorized, "invalid_token")
	})

	t.Run("stored only as a MAC; last use written in batches", func(t *testing.T) {
		s.Restart() // a clean stop writes the pending uses
		db, err := sql.Open("sqlite", "file:"+s.dbPath+"?mode=ro&_pragma=busy_timeout(5000)")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var mac []byte
		var used sql.NullInt64
		if err := db.QueryRow(`SELECT mac, last_used_at FROM api_keys WHERE id = ?`, k.ID).Scan(&mac, &used); err != nil {
			t.Fatal(err)
		}
		if len(mac) != 32 || strings.Contains(string(mac), k.Key[len(k.Prefix):]) {
			t.Errorf("stored mac %x", mac)
		}
		if !used.Valid {
			t.Error("last_used_at not written by the time the server stopped")
		}
		// Still a working key after the restart.
		expect(t, verifyStatus(t, s, k.Key), http.StatusOK, "")
	})
}

func TestAPIKeyBruteForceLimited(t *testing.T) {
	s := startServer(t, "--rate-limit-api-key", "5/1m")
	d := s.newUser(t, true)
	k := createKey(t, d, map[string]any{"name": "good"})
	guess := "gh_" + strings.Repeat("a", 26) + "_" + strings.Repeat("b", 52)
	for i := range 5 {
		if r := verifyStatus(t, s, guess); r.Status != http.StatusUnauthorized {
			t.Fatalf("guess %d: %s, want 401", i, r)
		}
	}
	r := verifyStatus(t, s, guess)
	expect(t, r, http.StatusTooManyRequests, "rate_limited")
	if r.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	// Once limited, the address gets no answer about any key, right or
	// wrong, until the budget refills.
	expect(t, verifyStatus(t, s, k.Key), http.StatusTooManyRequests, "rate_limited")
	// Access tokens are not API-key attempts.
	expect(t, verifyStatus(t, s, d.Access()), http.StatusOK, "")
}

func TestLastAdmin(t *testing.T) {
	s := startServer(t)
	aID, a := s.makeAdmin(t)
	r := s.do(t, "PATCH", "/admin/users/"+aID, map[string]any{"role": "user"}, bearer(a.Access()))
	expect(t, r, http.StatusConflict, "last_admin")
	r = s.do(t, "PATCH", "/admin/users/"+aID, map[string]any{"disabled": true}, bearer(a.Access()))
	expect(t, r, http.StatusConflict, "last_admin")
	// Refused before anything happened: the admin's token still works.
	expect(t, s.do(t, "GET", "/admin/users", nil, bearer(a.Access())), http.StatusOK, "")

	// Two admins demoting each other at the same instant: one wins. (The
	// loser's request is refused as last_admin, or as invalid_token when the
	// winner's demotion of its caller came first.)
	bID, b := s.makeAdmin(t)
	ids := []string{aID, bID}
	for round := range 3 {
		callers := []*device{b.another(t, true), a.another(t, true)} // callers[i] demotes ids[i]
		statuses := make([]*resp, 2)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 2 {
			wg.Go(func() {
				<-start
				statuses[i] = s.do(t, "PATCH", "/admin/users/"+ids[i], map[string]any{"role": "user"}, bearer(callers[i].Access()))
			})
		}
		close(start)
		wg.Wait()
		won, winner := 0, -1
		for i, r := range statuses {
			switch {
			case r.Status == http.StatusOK:
				won++
				winner = i
			case r.Status == http.StatusConflict && r.Code() == "last_admin",
				r.Status == http.StatusUnauthorized && r.Code() == "invalid_token":
			default:
				t.Errorf("round %d: %s", round, r)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d of 2 mutual demotions passed, want 1", round, won)
		}
		// The one left an admin promotes the other back for the next round.
		left := []*device{a, b}[1-winner].another(t, true)
		r := s.do(t, "GET", "/admin/users?limit=100", nil, bearer(left.Access()))
		expect(t, r, http.StatusOK, "")
		admins := strings.Count(string(r.Body), `"role":"admin"`)
		if admins != 1 {
			t.Fatalf("round %d: %d admins after the race, want 1: %s", round, admins, r)
		}
		expect(t, s.do(t, "PATCH", "/admin/users/"+ids[winner], map[string]any{"role": "admin"}, bearer(left.Access())), http.StatusOK, "")
	}
}
