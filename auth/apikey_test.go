package auth_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/auth"
	"github.com/gatehouse/gatehouse/token"
)

// countingStore counts the reads the API-key hot path could make.
type countingStore struct {
	gatehouse.Store
	keyReads, userReads atomic.Int64
}

func (c *countingStore) APIKeyByID(ctx context.Context, id string) (gatehouse.APIKey, error) {
	c.keyReads.Add(1)
	return c.Store.APIKeyByID(ctx, id)
}

func (c *countingStore) UserByID(ctx context.Context, id string) (gatehouse.User, error) {
	c.userReads.Add(1)
	return c.Store.UserByID(ctx, id)
}

func newKeyService(t *testing.T) (*auth.Service, *clock, *countingStore) {
	t.Helper()
	var cs *countingStore
	svc, clk, _ := newServiceWith(t, func(d *auth.Deps) {
		cs = &countingStore{Store: d.Store}
		d.Store = cs
		d.APIKeyStore = cs
		codec, err := token.NewAPIKeyCodec([]byte(strings.Repeat("k", 32)))
		if err != nil {
			t.Fatal(err)
		}
		d.APIKeyCodec = codec
	})
	return svc, clk, cs
}

func sessionPrincipal(t *testing.T, svc *auth.Service, g auth.Grant) auth.Principal {
	t.Helper()
	p, err := svc.Authenticate(context.Background(), g.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAPIKeyHotPathIsCached: after the first use, a key is checked from
// memory (no key or user read per request), and its use is written in a
// batch, not per request.
func TestAPIKeyHotPathIsCached(t *testing.T) {
	svc, _, cs := newKeyService(t)
	ctx := context.Background()
	g := signup(t, svc, "ada@example.com")
	k, raw, err := svc.CreateAPIKey(ctx, sessionPrincipal(t, svc, g), auth.APIKeyInput{Name: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	keys0, users0 := cs.keyReads.Load(), cs.userReads.Load()
	for range 100 {
		p, err := svc.AuthenticateBearer(ctx, raw, "192.0.2.1")
		if err != nil || p.UserID != g.User.ID || p.APIKeyID != k.ID || p.SessionID != "" || p.Role != gatehouse.RoleUser {
			t.Fatalf("AuthenticateBearer: %+v, %v", p, err)
		}
	}
	if n := cs.keyReads.Load() - keys0; n != 1 {
		t.Errorf("%d key reads for 100 uses, want 1", n)
	}
	if n := cs.userReads.Load() - users0; n != 1 {
		t.Errorf("%d owner reads for 100 uses, want 1", n)
	}
	if stored, _ := cs.Store.APIKeyByID(ctx, k.ID); !stored.LastUsedAt.IsZero() {
		t.Errorf("last use written before a flush: %v", stored.LastUsedAt)
	}
	svc.FlushAPIKeyUsage(ctx)
	if stored, _ := cs.Store.APIKeyByID(ctx, k.ID); stored.LastUsedAt.IsZero() {
		t.Error("last use not written by the flush")
	}
}

// TestAPIKeyExpiry: a key stops working at its expiry, cached or not.
func TestAPIKeyExpiry(t *testing.T) {
	svc, clk, _ := newKeyService(t)
	ctx := context.Background()
	g := signup(t, svc, "ada@example.com")
	days := 1
	_, raw, err := svc.CreateAPIKey(ctx, sessionPrincipal(t, svc, g), auth.APIKeyInput{Name: "ci", ExpiresInDays: &days})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.AuthenticateBearer(ctx, raw, "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	// The fake clock jumps a day; the revocation state is stale until the
	// next poll (every second, in real time) has read the log again.
	fresh := func() error {
		deadline := time.Now().Add(3 * time.Second)
		for {
			_, err := svc.AuthenticateBearer(ctx, raw, "192.0.2.1")
			if !errors.Is(err, gatehouse.ErrUnavailable) || time.Now().After(deadline) {
				return err
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	clk.Advance(24*time.Hour - time.Second)
	if err := fresh(); err != nil {
		t.Fatalf("a second before expiry: %v", err)
	}
	clk.Advance(2 * time.Second)
	if err := fresh(); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("after expiry: %v, want ErrInvalidToken", err)
	}
}

// TestAPIKeyFollowsItsOwner: a cached key acts with its owner's current
// role at once, an admin-only scope lapses with the admin role, and a
// disabled owner's key is refused.
func TestAPIKeyFollowsItsOwner(t *testing.T) {
	svc, _, _ := newKeyService(t)
	ctx := context.Background()
	owner, err := svc.CreateUser(ctx, "owner@example.com", "", passphrase, gatehouse.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateUser(ctx, "second.admin@example.com", "", passphrase, gatehouse.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	g, err := svc.Login(ctx, auth.LoginInput{Email: "owner@example.com", Password: passphrase}, client)
	if err != nil {
		t.Fatal(err)
	}
	_, raw, err := svc.CreateAPIKey(ctx, sessionPrincipal(t, svc, g), auth.APIKeyInput{Name: "feed", Scopes: []string{auth.ScopeRevocationsRead, "x"}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := svc.AuthenticateBearer(ctx, raw, "192.0.2.1")
	if err != nil || p.Role != gatehouse.RoleAdmin || !p.HasScope(auth.ScopeRevocationsRead) {
		t.Fatalf("admin's key: %+v, %v", p, err)
	}
	user := gatehouse.RoleUser
	if _, err := svc.UpdateUser(ctx, owner.ID, &user, nil); err != nil {
		t.Fatal(err)
	}
	p, err = svc.AuthenticateBearer(ctx, raw, "192.0.2.1")
	if err != nil || p.Role != gatehouse.RoleUser || p.HasScope(auth.ScopeRevocationsRead) || !p.HasScope("x") {
		t.Fatalf("after demotion: %+v, %v; want role user, revocations:read lapsed, x kept", p, err)
	}
	yes := true
	if _, err := svc.UpdateUser(ctx, owner.ID, nil, &yes); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.AuthenticateBearer(ctx, raw, "192.0.2.1"); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("disabled owner's key: %v, want ErrInvalidToken", err)
	}
	// A non-admin may not give the admin-only scope.
	var ve *auth.ValidationError
	if _, _, err := svc.CreateAPIKey(ctx, auth.Principal{UserID: owner.ID, Role: gatehouse.RoleUser}, auth.APIKeyInput{Name: "n", Scopes: []string{auth.ScopeRevocationsRead}}); !errors.As(err, &ve) {
		t.Fatalf("revocations:read by a user: %v, want a validation error", err)
	}
}
