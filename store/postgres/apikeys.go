package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gatehouse/gatehouse"
)

// API keys, and the write that keeps an enabled admin.

var (
	_ gatehouse.APIKeyStore = (*Store)(nil)
	_ gatehouse.AdminGuard  = (*Store)(nil)
)

const apiKeyCols = `id, user_id, name, mac, scopes, created_at, expires_at, last_used_at, revoked_at`

// apiKeyRow receives one row of apiKeyCols.
type apiKeyRow struct {
	k                      gatehouse.APIKey
	scopes                 string
	expires, used, revoked *time.Time
}

func (r *apiKeyRow) dest() []any {
	return []any{&r.k.ID, &r.k.UserID, &r.k.Name, &r.k.MAC, &r.scopes, &r.k.CreatedAt, &r.expires, &r.used, &r.revoked}
}

func (r *apiKeyRow) apiKey() gatehouse.APIKey {
	k := r.k
	k.Scopes = strings.Fields(r.scopes)
	k.CreatedAt, k.ExpiresAt, k.LastUsedAt, k.RevokedAt = k.CreatedAt.UTC(), utc(r.expires), utc(r.used), utc(r.revoked)
	return k
}

// joinScopes stores scopes space-separated; a scope that is empty or holds
// a space would come back as something else, so it is refused.
func joinScopes(scopes []string) (string, error) {
	for _, sc := range scopes {
		if sc == "" || strings.ContainsAny(sc, " \t\r\n") {
			return "", fmt.Errorf("scope %q is empty or contains a space", sc)
		}
	}
	return strings.Join(scopes, " "), nil
}

// CreateAPIKey inserts k; the foreign key refuses an unknown user. With a
// limit, creations for one user take turns on a transaction-scoped advisory
// lock, and the count runs after the lock is granted: under READ COMMITTED
// it sees every key the earlier holders committed, so concurrent creations
// cannot pass the limit together.
func (s *Store) CreateAPIKey(ctx context.Context, k gatehouse.APIKey, limit int) error {
	if len(k.MAC) == 0 {
		return errors.New("postgres: create api key: empty mac")
	}
	scopes, err := joinScopes(k.Scopes)
	if err != nil {
		return fmt.Errorf("postgres: create api key: %w", err)
	}
	full := false
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if limit > 0 {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, "api_keys "+k.UserID); err != nil {
				return err
			}
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL`, k.UserID).Scan(&n); err != nil {
				return err
			}
			if n >= limit {
				full = true
				return nil
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO api_keys (`+apiKeyCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			k.ID, k.UserID, k.Name, k.MAC, scopes, k.CreatedAt, nullTime(k.ExpiresAt), nullTime(k.LastUsedAt), nullTime(k.RevokedAt))
		return err
	})
	if pgErr, ok := asPgError(err); ok && pgErr.Code == "23503" { // foreign_key_violation: no such user
		return fmt.Errorf("postgres: create api key: %w", gatehouse.ErrNotFound)
	}
	if err == nil && full {
		return fmt.Errorf("postgres: create api key: %w", gatehouse.ErrLimitReached)
	}
	return wrap("create api key", err)
}

// APIKeyByID reads a key by primary key.
func (s *Store) APIKeyByID(ctx context.Context, id string) (gatehouse.APIKey, error) {
	var r apiKeyRow
	if err := s.pool.QueryRow(ctx, `SELECT `+apiKeyCols+` FROM api_keys WHERE id = $1`, id).Scan(r.dest()...); err != nil {
		return gatehouse.APIKey{}, wrap("api key by id", err)
	}
	return r.apiKey(), nil
}

// APIKeys lists the user's unrevoked keys, oldest first (the id breaks
// ties, so the order is stable).
func (s *Store) APIKeys(ctx context.Context, userID string) ([]gatehouse.APIKey, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+apiKeyCols+` FROM api_keys
		WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at, id`, userID)
	if err != nil {
		return nil, wrap("api keys", err)
	}
	defer rows.Close()
	var ks []gatehouse.APIKey
	for rows.Next() {
		var r apiKeyRow
		if err := rows.Scan(r.dest()...); err != nil {
			return nil, wrap("api keys", err)
		}
		ks = append(ks, r.apiKey())
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("api keys", err)
	}
	return ks, nil
}

// RevokeAPIKey marks the key revoked and logs the revocation in one
// statement (a data-modifying CTE is atomic); concurrent calls serialise on
// the row lock and only the first still finds revoked_at NULL.
func (s *Store) RevokeAPIKey(ctx context.Context, userID, id string, now, logExpiry time.Time) error {
	tag, err := s.pool.Exec(ctx, `WITH revoked AS (
			UPDATE api_keys SET revoked_at = $3
			WHERE id = $1 AND ($2 = '' OR user_id = $2) AND revoked_at IS NULL
			RETURNING id
		)
		INSERT INTO revocations (kind, subject, at, expires_at)
		SELECT $5::text, id, $3::timestamptz, $4::timestamptz FROM revoked`,
		id, userID, now, logExpiry, string(gatehouse.RevokeAPIKey))
	if err != nil {
		return wrap("revoke api key", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: revoke api key: %w", gatehouse.ErrNotFound)
	}
	return nil
}

// TouchAPIKeys writes a batch of last uses in one statement.
func (s *Store) TouchAPIKeys(ctx context.Context, uses map[string]time.Time) error {
	if len(uses) == 0 {
		return nil
	}
	ids := make([]string, 0, len(uses))
	ats := make([]time.Time, 0, len(uses))
	for id, at := range uses {
		ids = append(ids, id)
		ats = append(ats, at)
	}
	_, err := s.pool.Exec(ctx, `UPDATE api_keys k SET last_used_at = u.at
		FROM unnest($1::text[], $2::timestamptz[]) AS u(id, at)
		WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.at)`, ids, ats)
	return wrap("touch api keys", err)
}

// lastAdminLock is the transaction-level advisory lock that serialises
// changes which could take away the last enabled admin. Under READ
// COMMITTED the guarded UPDATE's NOT EXISTS reads a snapshot; without the
// lock two admins demoting each other would each still see the other and
// both succeed. Holding it, each statement's snapshot is taken after the
// previous holder committed.
const lastAdminLock = 0x67617465 // "gate"

// UpdateUserKeepingAdmin is UpdateUser with the last-admin condition in
// the same statement, under lastAdminLock when the change could demote or
// disable. Only when nothing matched does a second read tell the refused
// change (ErrLastAdmin) from a missing user.
func (s *Store) UpdateUserKeepingAdmin(ctx context.Context, userID string, role *gatehouse.Role, disabled *bool, tokensValidAfter time.Time) (gatehouse.User, error) {
	if !(role != nil && *role != gatehouse.RoleAdmin) && !(disabled != nil && *disabled) {
		return s.UpdateUser(ctx, userID, role, disabled, tokensValidAfter)
	}
	var roleArg *string
	if role != nil {
		r := string(*role)
		roleArg = &r
	}
	var (
		r       userRow
		refused bool
	)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(lastAdminLock)); err != nil {
			return err
		}
		err := tx.QueryRow(ctx, `UPDATE users SET
				role = COALESCE($2::text, role),
				disabled = COALESCE($3::boolean, disabled),
				tokens_valid_after = GREATEST(tokens_valid_after, $4::timestamptz),
				version = version + 1
			WHERE id = $1 AND NOT (
				role = 'admin' AND NOT disabled
				AND (COALESCE($2::text, role) <> 'admin' OR COALESCE($3::boolean, disabled))
				AND NOT EXISTS (SELECT 1 FROM users o WHERE o.id <> $1 AND o.role = 'admin' AND NOT o.disabled)
			)
			RETURNING `+userReadCols,
			userID, roleArg, disabled, nullTime(tokensValidAfter)).Scan(r.dest()...)
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		var one int
		if err := tx.QueryRow(ctx, `SELECT 1 FROM users WHERE id = $1`, userID).Scan(&one); err != nil {
			return err // pgx.ErrNoRows: ErrNotFound
		}
		refused = true
		return nil
	})
	if err != nil {
		return gatehouse.User{}, wrap("update user", err)
	}
	if refused {
		return gatehouse.User{}, fmt.Errorf("postgres: update user: %w", gatehouse.ErrLastAdmin)
	}
	return r.user(), nil
}

// OtherEnabledAdmin uses the partial index of enabled admins.
func (s *Store) OtherEnabledAdmin(ctx context.Context, userID string) (bool, error) {
	var yes bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE id <> $1 AND role = 'admin' AND NOT disabled)`, userID).Scan(&yes)
	return yes, wrap("other enabled admin", err)
}
