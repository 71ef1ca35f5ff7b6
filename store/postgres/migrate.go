package postgres

import (
	"cmp"
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// migrationLockKey is the pg_advisory_lock key that serialises Migrate across
// every process sharing the database ("gatehous" in ASCII, so it is unlikely
// to collide with another application's key). Advisory locks are
// database-wide, not per schema, so migrations of different schemas in one
// database also take turns; they are short, so that costs nothing.
const migrationLockKey int64 = 0x67617465686f7573

// unlockTimeout bounds the advisory unlock, which runs even after the
// caller's context is done.
const unlockTimeout = 5 * time.Second

// migrationNamePattern matches NNNN_description.sql; NNNN is the version.
const migrationNamePattern = `^([0-9]+)_[A-Za-z0-9_]+\.sql$`

type migration struct {
	version int64
	name    string
	sql     string
}

// migrations returns the embedded migrations in version order. It checks
// the file names on every call instead of at init, keeping the package free
// of mutable globals; a bad name is a build mistake the tests catch.
func migrations() ([]migration, error) {
	re := regexp.MustCompile(migrationNamePattern)
	entries, err := fs.ReadDir(migrationsFS, "migrations")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		m := re.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration file %q is not named NNNN_name.sql", e.Name())
		}
		v, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("migration file %q: %w", e.Name(), err)
		}
		b, err := fs.ReadFile(migrationsFS, path.Join("migrations", e.Name()))
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return cmp.Compare(a.version, b.version) })
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("migrations %q and %q share version %d", ms[i-1].name, ms[i].name, ms[i].version)
		}
	}
	return ms, nil
}

// Migrate brings the schema (the first schema on the connection's
// search_path) up to date. It is idempotent and safe to run from several
// instances at once: the whole run holds a session-level advisory lock on
// one connection, so a second instance waits, then finds every migration
// applied. Each migration runs in its own transaction together with its
// schema_migrations row, so a failure leaves the schema at the previous
// version. Versions recorded by a newer binary are left alone, so an older
// instance still running during a rolling deploy keeps working.
func (s *Store) Migrate(ctx context.Context) (err error) {
	ms, err := migrations()
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}

	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return wrap("migrate: acquire connection", err)
	}
	defer conn.Release()

	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrationLockKey); err != nil {
		// We may or may not hold the lock (e.g. the answer was lost);
		// closing the session is the one sure way to release it. Release
		// then drops the closed connection from the pool.
		_ = conn.Conn().Close(context.WithoutCancel(ctx))
		return wrap("migrate: lock", err)
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unlockTimeout)
		defer cancel()
		if _, uerr := conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, migrationLockKey); uerr != nil {
			// A pooled connection must never keep the lock: close it.
			_ = conn.Conn().Close(uctx)
		}
	}()

	// Created under the lock: concurrent CREATE TABLE IF NOT EXISTS can
	// still fail on the catalog's unique index.
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    bigint PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return wrap("migrate: create schema_migrations", err)
	}

	rows, err := conn.Query(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return wrap("migrate: read schema_migrations", err)
	}
	applied, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return wrap("migrate: read schema_migrations", err)
	}

	for _, m := range ms {
		if slices.Contains(applied, m.version) {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			// Without arguments pgx sends the text over the simple
			// protocol, which is what lets one file hold several
			// statements. Migration files are constant DDL; nothing is
			// interpolated.
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name)
			return err
		})
		if err != nil {
			return wrap("migrate: apply "+m.name, err)
		}
	}
	return nil
}
