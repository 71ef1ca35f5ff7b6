package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/auth"
	"github.com/gatehouse/gatehouse/masterkey"
	"github.com/gatehouse/gatehouse/password"
	"github.com/gatehouse/gatehouse/ratelimit"
	"github.com/gatehouse/gatehouse/store/postgres"
	"github.com/gatehouse/gatehouse/store/sqlite"
	"github.com/gatehouse/gatehouse/token"
)

// accessLeeway is the clock leeway of access-token checks (API.md: at most 60 s).
const accessLeeway = 30 * time.Second

// backend is an open store with the master secret that goes with it.
type backend struct {
	store    gatehouse.Store
	master   []byte
	postgres bool
}

// openBackend opens the database named by c.Database and loads or creates
// the master secret.
func openBackend(ctx context.Context, c *config, migrate bool) (*backend, error) {
	b := &backend{}
	switch {
	case strings.HasPrefix(c.Database, "sqlite:"):
		path := strings.TrimPrefix(c.Database, "sqlite:")
		if path == "" {
			return nil, errors.New("--database sqlite: needs a path, e.g. sqlite:gatehouse.db or sqlite::memory:")
		}
		if err := createPrivate(path); err != nil {
			return nil, err
		}
		st, err := sqlite.Open(ctx, path)
		if err != nil {
			return nil, fmt.Errorf("open database %s: %w", path, err)
		}
		b.store = st
		if b.master, err = loadMaster(c, path); err != nil {
			st.Close()
			return nil, err
		}
	case strings.HasPrefix(c.Database, "postgres://"), strings.HasPrefix(c.Database, "postgresql://"):
		b.postgres = true
		var err error
		// `gatehouse migrate` and `user create` touch no secret and take
		// only --database (API.md), so they must not demand a master key
		// here; everything else on PostgreSQL needs one.
		if !c.noSecrets {
			if b.master, err = loadMaster(c, ""); err != nil {
				return nil, err
			}
		}
		st, err := postgres.Open(ctx, c.Database, postgres.Options{})
		if err != nil {
			return nil, fmt.Errorf("open database: %w", err)
		}
		if migrate {
			if err := st.Migrate(ctx); err != nil {
				st.Close()
				return nil, fmt.Errorf("migrate database: %w", err)
			}
		}
		b.store = st
	default:
		return nil, fmt.Errorf("--database must be sqlite:PATH, sqlite::memory: or a postgres:// URL, not %q", redactURL(c.Database))
	}
	return b, nil
}

// loadMaster finds the master secret: the flag, the key file flag, or, for
// an SQLite file, a key file beside it, created on first start.
func loadMaster(c *config, sqlitePath string) ([]byte, error) {
	switch {
	case c.MasterKey != "":
		key, err := masterkey.Parse(c.MasterKey)
		if err != nil {
			return nil, fmt.Errorf("--master-key: %w", err)
		}
		return key, nil
	case c.MasterKeyFile != "":
		return masterkey.ReadFile(c.MasterKeyFile)
	case sqlitePath == ":memory:":
		// Nothing persists, so a secret for this process alone is right.
		key := make([]byte, masterkey.MinLen)
		_, _ = rand.Read(key)
		return key, nil
	case sqlitePath != "":
		return masterkey.LoadOrCreate(sqlitePath + ".key")
	}
	return nil, errors.New("--master-key or --master-key-file is required with PostgreSQL (base64 of at least 32 random bytes, e.g. `openssl rand -base64 32`)")
}

func redactURL(s string) string {
	if i := strings.Index(s, "@"); i >= 0 {
		if j := strings.Index(s, "://"); j >= 0 && j < i {
			return s[:j+3] + "…" + s[i:]
		}
	}
	return s
}

func (b *backend) keys(c *config) (*token.Keys, error) {
	keys, err := token.NewKeys(b.store, token.Config{
		Algorithm: c.SigningAlg,
		Issuer:    c.Issuer,
		Audience:  c.Audience,
		TTL:       c.AccessTTL,
		Leeway:    accessLeeway,
		// Zero for `keys rotate`, which never signs: when a key signs is
		// decided by the serving instances from its created_at.
		PublishAhead: c.PublishAhead,
		SealKey:      masterkey.Derive(b.master, masterkey.PurposeSeal),
	})
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	if err := keys.Load(context.Background(), nowUTC()); err != nil {
		return nil, fmt.Errorf("load signing keys: %w", err)
	}
	return keys, nil
}

func hashWorkers(c *config) int {
	if c.HashWorkers > 0 {
		return c.HashWorkers
	}
	return runtime.NumCPU()
}

// userService is the service as the operator commands need it: storage and
// hashing only; nothing they do issues or checks tokens.
func (b *backend) userService(c *config) *auth.Service {
	return auth.New(auth.Config{}, auth.Deps{
		Store:    b.store,
		Hasher:   password.NewHasher(password.DefaultParams(), hashWorkers(c), 4),
		Observer: nopObserver{},
		Logger:   quietLogger(),
	})
}

func describeCreateError(err error) error {
	var ve *auth.ValidationError
	switch {
	case errors.As(err, &ve):
		return ve
	case errors.Is(err, auth.ErrWeakPassword):
		return errors.New("password is too common; choose another")
	case errors.Is(err, gatehouse.ErrEmailTaken):
		return errors.New("a user with this email already exists")
	}
	return err
}

func nowUTC() time.Time { return time.Now().UTC() }

type nopObserver struct{}

func (nopObserver) Login(string)        {}
func (nopObserver) Refresh(string)      {}
func (nopObserver) Revoked(string, int) {}

// limiterFor is the in-memory limiter, or the Redis one falling back to it.
func limiterFor(mem *ratelimit.Memory, red *ratelimit.Redis) ratelimit.Limiter {
	if red != nil {
		return red
	}
	return mem
}

// createPrivate creates a new SQLite file with mode 0600 before SQLite does
// (with 0644): it holds password hashes. SQLite gives its -wal and -shm
// files the database file's mode.
func createPrivate(path string) error {
	if path == sqlite.Memory {
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create database file: %w", err)
	}
	return f.Close()
}
