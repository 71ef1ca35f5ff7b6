package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse"
)

// API keys, and the write that keeps an enabled admin. Every write goes
// through the one writer connection, so a conditional UPDATE whose WHERE
// clause reads other rows is atomic against every other write.

var (
	_ gatehouse.APIKeyStore = (*Store)(nil)
	_ gatehouse.AdminGuard  = (*Store)(nil)
)

const apiKeyCols = `id, user_id, name, mac, scopes, created_at, expires_at, last_used_at, revoked_at`

func scanAPIKey(row scanner) (gatehouse.APIKey, error) {
	var (
		k                      gatehouse.APIKey
		scopes                 string
		created                int64
		expires, used, revoked sql.NullInt64
	)
	if err := row.Scan(&k.ID, &k.UserID, &k.Name, &k.MAC, &scopes, &created, &expires, &used, &revoked); err != nil {
		return gatehouse.APIKey{}, err
	}
	k.Scopes = strings.Fields(scopes)
	k.CreatedAt, k.ExpiresAt, k.LastUsedAt, k.RevokedAt = fromMicros(created), fromNullMicros(expires), fromNullMicros(used), fromNullMicros(revoked)
	return k, nil
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

// CreateAPIKey inserts k; the foreign key refuses an unknown user. The
// limit is a condition of the INSERT itself: one statement on the one
// writer connection, so the count cannot change between check and insert.
func (s *Store) CreateAPIKey(ctx context.Context, k gatehouse.APIKey, limit int) error {
	if len(k.MAC) == 0 {
		return errors.New("sqlite: create api key: empty mac")
	}
	scopes, err := joinScopes(k.Scopes)
	if err != nil {
		return fmt.Errorf("sqlite: create api key: %w", err)
	}
	res, err := s.write.ExecContext(ctx, `INSERT INTO api_keys (`+apiKeyCols+`) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?
		WHERE ? <= 0 OR (SELECT count(*) FROM api_keys WHERE user_id = ? AND revoked_at IS NULL) < ?`,
		k.ID, k.UserID, k.Name, k.MAC, scopes, micros(k.CreatedAt), nullMicros(k.ExpiresAt), nullMicros(k.LastUsedAt), nullMicros(k.RevokedAt),
		limit, k.UserID, limit)
	if missingUser(err) {
		return fmt.Errorf("sqlite: create api key: %w", gatehouse.ErrNotFound)
	}
	if err != nil {
		return wrap("create api key", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return wrap("create api key", err)
	} else if n == 0 {
		return fmt.Errorf("sqlite: create api key: %w", gatehouse.ErrLimitReached)
	}
	return nil
}

// APIKeyByID reads a key by primary key.
func (s *Store) APIKeyByID(ctx context.Context, id string) (gatehouse.APIKey, error) {
	k, err := scanAPIKey(s.read.QueryRowContext(ctx, `SELECT `+apiKeyCols+` FROM api_keys WHERE id = ?`, id))
	if err != nil {
		return gatehouse.APIKey{}, wrap("api key by id", err)
	}
	return k, nil
}

// APIKeys lists the user's unrevoked keys, oldest first (the id breaks
// ties, so the order is stable).
func (s *Store) APIKeys(ctx context.Context, userID string) ([]gatehouse.APIKey, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+apiKeyCols+` FROM api_keys
		WHERE user_id = ? AND revoked_at IS NULL ORDER BY created_at, id`, userID)
	if err != nil {
		return nil, wrap("api keys", err)
	}
	defer rows.Close()
	var ks []gatehouse.APIKey
	for rows.Next() {
		k, err := scanAPIKey(rows)
		if err != nil {
			return nil, wrap("api keys", err)
		}
		ks = append(ks, k)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("api keys", err)
	}
	return ks, nil
}

// RevokeAPIKey marks the key revoked and logs the revocation in one
// transaction.
func (s *Store) RevokeAPIKey(ctx context.Context, userID, id string, now, logExpiry time.Time) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return wrap("revoke api key", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	res, err := tx.ExecContext(ctx, `UPDATE api_keys SET revoked_at = ?1
		WHERE id = ?2 AND (?3 = '' OR user_id = ?3) AND revoked_at IS NULL`, micros(now), id, userID)
	if err := oneRow(res, err); err != nil {
		return wrap("revoke api key", err)
	}
	if err := addRevocation(ctx, tx, gatehouse.Revocation{Kind: gatehouse.RevokeAPIKey, Subject: id, At: now, ExpiresAt: logExpiry}); err != nil {
		return wrap("revoke api key: log", err)
	}
	return wrap("revoke api key: commit", tx.Commit())
}

// TouchAPIKeys writes a batch of last uses in one transaction.
func (s *Store) TouchAPIKeys(ctx context.Context, uses map[string]time.Time) error {
	if len(uses) == 0 {
		return nil
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return wrap("touch api keys", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	stmt, err := tx.PrepareContext(ctx, `UPDATE api_keys SET last_used_at = ?1
		WHERE id = ?2 AND (last_used_at IS NULL OR last_used_at < ?1)`)
	if err != nil {
		return wrap("touch api keys", err)
	}
	defer stmt.Close()
	for id, at := range uses {
		if _, err := stmt.ExecContext(ctx, micros(at), id); err != nil {
			return wrap("touch api keys", err)
		}
	}
	return wrap("touch api keys: commit", tx.Commit())
}

// UpdateUserKeepingAdmin is UpdateUser with the last-admin condition in
// the same statement: the row is updated only when it does not take away
// the last enabled admin. Only when nothing matched does a second read
// tell the refused change (ErrLastAdmin) from a missing user.
func (s *Store) UpdateUserKeepingAdmin(ctx context.Context, userID string, role *gatehouse.Role, disabled *bool, tokensValidAfter time.Time) (gatehouse.User, error) {
	var roleArg, disabledArg any // NULL: leave the column alone
	if role != nil {
		roleArg = string(*role)
	}
	if disabled != nil {
		disabledArg = boolInt(*disabled)
	}
	u, err := scanUser(s.write.QueryRowContext(ctx, `UPDATE users SET
			role = coalesce(?1, role),
			disabled = coalesce(?2, disabled),
			tokens_valid_after = CASE WHEN ?3 IS NULL OR tokens_valid_after >= ?3 THEN tokens_valid_after ELSE ?3 END,
			version = version + 1
		WHERE id = ?4 AND NOT (
			role = 'admin' AND disabled = 0
			AND (coalesce(?1, role) <> 'admin' OR coalesce(?2, disabled) <> 0)
			AND NOT EXISTS (SELECT 1 FROM users o WHERE o.id <> ?4 AND o.role = 'admin' AND o.disabled = 0)
		)
		RETURNING `+userReadCols,
		roleArg, disabledArg, nullMicros(tokensValidAfter), userID))
	if err == nil {
		return u, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return gatehouse.User{}, wrap("update user", err)
	}
	var one int
	if err := s.write.QueryRowContext(ctx, `SELECT 1 FROM users WHERE id = ?`, userID).Scan(&one); err != nil {
		return gatehouse.User{}, wrap("update user", err) // sql.ErrNoRows: ErrNotFound
	}
	return gatehouse.User{}, fmt.Errorf("sqlite: update user: %w", gatehouse.ErrLastAdmin)
}

// OtherEnabledAdmin uses the partial index of enabled admins.
func (s *Store) OtherEnabledAdmin(ctx context.Context, userID string) (bool, error) {
	var yes bool
	err := s.read.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE id <> ? AND role = 'admin' AND disabled = 0)`, userID).Scan(&yes)
	return yes, wrap("other enabled admin", err)
}
