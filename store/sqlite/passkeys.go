package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/gatehouse/gatehouse"
)

// Passkeys. Every write goes through the one writer connection, so the
// compare-and-swap of UpdatePasskeyUse is atomic against every other write:
// of concurrent uses that read the same credential exactly one finds it
// still stored.

var _ gatehouse.PasskeyStore = (*Store)(nil)

const passkeyCols = `id, user_id, credential_id, credential, name, created_at, last_used_at`

func scanPasskey(row scanner) (gatehouse.Passkey, error) {
	var (
		p       gatehouse.Passkey
		created int64
		used    sql.NullInt64
	)
	if err := row.Scan(&p.ID, &p.UserID, &p.CredentialID, &p.Credential, &p.Name, &created, &used); err != nil {
		return gatehouse.Passkey{}, err
	}
	p.CreatedAt, p.LastUsedAt = fromMicros(created), fromNullMicros(used)
	return p, nil
}

// CreatePasskey inserts p. The unique index on credential_id refuses a
// credential registered before, by this user or another (ErrStale); the
// foreign key refuses an unknown user (ErrNotFound).
func (s *Store) CreatePasskey(ctx context.Context, p gatehouse.Passkey) error {
	if len(p.CredentialID) == 0 {
		// An empty id would be found by an empty lookup.
		return errors.New("sqlite: create passkey: empty credential id")
	}
	_, err := s.write.ExecContext(ctx, `INSERT INTO passkeys (`+passkeyCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		p.ID, p.UserID, p.CredentialID, blob(p.Credential), p.Name, micros(p.CreatedAt), nullMicros(p.LastUsedAt))
	switch {
	case err == nil:
		return nil
	case credentialTaken(err):
		return fmt.Errorf("sqlite: create passkey: %w", gatehouse.ErrStale)
	case missingUser(err):
		return fmt.Errorf("sqlite: create passkey: %w", gatehouse.ErrNotFound)
	}
	return wrap("create passkey", err)
}

// credentialTaken reports whether err is a clash on the unique
// credential_id (and not, say, on the primary key).
func credentialTaken(err error) bool {
	var se *msqlite.Error
	return errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE &&
		strings.Contains(se.Error(), "passkeys.credential_id")
}

// blob stores a nil slice as an empty blob, not NULL: the columns are NOT
// NULL, and a compare with NULL would match nothing.
func blob(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// Passkeys returns the user's passkeys, oldest first (the id breaks ties,
// so the order is stable).
func (s *Store) Passkeys(ctx context.Context, userID string) ([]gatehouse.Passkey, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+passkeyCols+` FROM passkeys WHERE user_id = ?
		ORDER BY created_at, id`, userID)
	if err != nil {
		return nil, wrap("passkeys", err)
	}
	defer rows.Close()
	var ps []gatehouse.Passkey
	for rows.Next() {
		p, err := scanPasskey(rows)
		if err != nil {
			return nil, wrap("passkeys", err)
		}
		ps = append(ps, p)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("passkeys", err)
	}
	return ps, nil
}

// PasskeyByCredentialID looks the passkey up on the unique credential_id.
func (s *Store) PasskeyByCredentialID(ctx context.Context, credentialID []byte) (gatehouse.Passkey, error) {
	p, err := scanPasskey(s.read.QueryRowContext(ctx, `SELECT `+passkeyCols+` FROM passkeys WHERE credential_id = ?`,
		blob(credentialID)))
	if err != nil {
		return gatehouse.Passkey{}, wrap("passkey by credential id", err)
	}
	return p, nil
}

// UpdatePasskeyUse is one conditional UPDATE; only when it matches nothing
// does a second read tell a credential that moved on (ErrStale) from a
// passkey that is gone.
func (s *Store) UpdatePasskeyUse(ctx context.Context, id string, oldCredential, credential []byte, at time.Time) error {
	res, err := s.write.ExecContext(ctx, `UPDATE passkeys SET credential = ?1, last_used_at = ?2
		WHERE id = ?3 AND credential = ?4`, blob(credential), micros(at), id, blob(oldCredential))
	err = oneRow(res, err)
	if err == nil {
		return nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return wrap("update passkey use", err)
	}
	var one int
	if err := s.write.QueryRowContext(ctx, `SELECT 1 FROM passkeys WHERE id = ?`, id).Scan(&one); err != nil {
		return wrap("update passkey use", err) // sql.ErrNoRows: ErrNotFound
	}
	return fmt.Errorf("sqlite: update passkey use: %w", gatehouse.ErrStale)
}

// DeletePasskey deletes the passkey only when it is the user's.
func (s *Store) DeletePasskey(ctx context.Context, userID, id string) error {
	res, err := s.write.ExecContext(ctx, `DELETE FROM passkeys WHERE id = ? AND user_id = ?`, id, userID)
	return wrap("delete passkey", oneRow(res, err))
}

// CountPasskeys counts the user's passkeys on the (user_id, created_at)
// index.
func (s *Store) CountPasskeys(ctx context.Context, userID string) (int, error) {
	var n int
	if err := s.read.QueryRowContext(ctx, `SELECT count(*) FROM passkeys WHERE user_id = ?`, userID).Scan(&n); err != nil {
		return 0, wrap("count passkeys", err)
	}
	return n, nil
}
