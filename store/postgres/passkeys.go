package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse/gatehouse"
)

// Passkeys. The compare-and-swap of UpdatePasskeyUse is one conditional
// UPDATE: concurrent updates of one row queue on its row lock, and READ
// COMMITTED re-evaluates the WHERE clause on the row the winner committed,
// whose credential is no longer the old one, so exactly one matches.

var _ gatehouse.PasskeyStore = (*Store)(nil)

const (
	passkeyCols = `id, user_id, credential_id, credential, name, created_at, last_used_at`

	// credentialIDConstraint is named in the schema so that only a clash on
	// the credential id, not on the primary key, reads as ErrStale.
	credentialIDConstraint = "passkeys_credential_id_unique"
)

// passkeyRow receives one row of passkeyCols.
type passkeyRow struct {
	p        gatehouse.Passkey
	lastUsed *time.Time
}

func (r *passkeyRow) dest() []any {
	return []any{&r.p.ID, &r.p.UserID, &r.p.CredentialID, &r.p.Credential, &r.p.Name, &r.p.CreatedAt, &r.lastUsed}
}

func (r *passkeyRow) passkey() gatehouse.Passkey {
	p := r.p
	p.CreatedAt, p.LastUsedAt = p.CreatedAt.UTC(), utc(r.lastUsed)
	return p
}

// bytea keeps a nil slice from reaching the server as NULL (pgx sends a nil
// slice as NULL): the columns are NOT NULL, and a compare with NULL would
// match nothing.
func bytea(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// CreatePasskey inserts p. The unique constraint on credential_id refuses a
// credential registered before, by this user or another (ErrStale); the
// foreign key refuses an unknown user (ErrNotFound).
func (s *Store) CreatePasskey(ctx context.Context, p gatehouse.Passkey) error {
	if len(p.CredentialID) == 0 {
		// An empty id would be found by an empty lookup.
		return errors.New("postgres: create passkey: empty credential id")
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO passkeys (`+passkeyCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		p.ID, p.UserID, p.CredentialID, bytea(p.Credential), p.Name, p.CreatedAt, nullTime(p.LastUsedAt))
	if pgErr, ok := asPgError(err); ok {
		switch {
		case pgErr.Code == "23505" && pgErr.ConstraintName == credentialIDConstraint: // unique_violation
			return fmt.Errorf("postgres: create passkey: %w", gatehouse.ErrStale)
		case pgErr.Code == "23503": // foreign_key_violation: no such user
			return fmt.Errorf("postgres: create passkey: %w", gatehouse.ErrNotFound)
		}
	}
	return wrap("create passkey", err)
}

// Passkeys returns the user's passkeys, oldest first (the id breaks ties,
// so the order is stable).
func (s *Store) Passkeys(ctx context.Context, userID string) ([]gatehouse.Passkey, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+passkeyCols+` FROM passkeys WHERE user_id = $1
		ORDER BY created_at, id`, userID)
	if err != nil {
		return nil, wrap("passkeys", err)
	}
	var ps []gatehouse.Passkey
	for rows.Next() {
		var r passkeyRow
		if err := rows.Scan(r.dest()...); err != nil {
			rows.Close()
			return nil, wrap("passkeys", err)
		}
		ps = append(ps, r.passkey())
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("passkeys", err)
	}
	return ps, nil
}

// PasskeyByCredentialID looks the passkey up on the unique credential_id.
func (s *Store) PasskeyByCredentialID(ctx context.Context, credentialID []byte) (gatehouse.Passkey, error) {
	var r passkeyRow
	err := s.pool.QueryRow(ctx, `SELECT `+passkeyCols+` FROM passkeys WHERE credential_id = $1`,
		bytea(credentialID)).Scan(r.dest()...)
	if err != nil {
		return gatehouse.Passkey{}, wrap("passkey by credential id", err)
	}
	return r.passkey(), nil
}

// UpdatePasskeyUse is one conditional UPDATE; only when it matches nothing
// does a second read tell a credential that moved on (ErrStale) from a
// passkey that is gone.
func (s *Store) UpdatePasskeyUse(ctx context.Context, id string, oldCredential, credential []byte, at time.Time) error {
	tag, err := s.pool.Exec(ctx, `UPDATE passkeys SET credential = $2, last_used_at = $3
		WHERE id = $1 AND credential = $4`, id, bytea(credential), at, bytea(oldCredential))
	if err != nil {
		return wrap("update passkey use", err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	var one int
	if err := s.pool.QueryRow(ctx, `SELECT 1 FROM passkeys WHERE id = $1`, id).Scan(&one); err != nil {
		return wrap("update passkey use", err) // pgx.ErrNoRows: ErrNotFound
	}
	return fmt.Errorf("postgres: update passkey use: %w", gatehouse.ErrStale)
}

// DeletePasskey deletes the passkey only when it is the user's.
func (s *Store) DeletePasskey(ctx context.Context, userID, id string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM passkeys WHERE id = $1 AND user_id = $2`, id, userID)
	if err != nil {
		return wrap("delete passkey", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: delete passkey: %w", gatehouse.ErrNotFound)
	}
	return nil
}

// CountPasskeys counts the user's passkeys on the (user_id, created_at)
// index.
func (s *Store) CountPasskeys(ctx context.Context, userID string) (int, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM passkeys WHERE user_id = $1`, userID).Scan(&n); err != nil {
		return 0, wrap("count passkeys", err)
	}
	return int(n), nil
}
