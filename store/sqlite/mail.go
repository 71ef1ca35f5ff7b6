package sqlite

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/gatehouse/gatehouse"
)

// --- email state ------------------------------------------------------------

// SetEmailVerified marks the email verified while the user's address still
// folds to the one the link was sent to; the version stays, since nothing a
// session depends on changed.
func (s *Store) SetEmailVerified(ctx context.Context, userID, email string) (gatehouse.User, error) {
	u, err := scanUser(s.write.QueryRowContext(ctx, `UPDATE users SET email_verified = 1
		WHERE id = ? AND email_key = ? RETURNING `+userReadCols, userID, gatehouse.EmailKey(email)))
	if err != nil {
		return gatehouse.User{}, s.staleOrMissing(ctx, "set email verified", userID, err)
	}
	return u, nil
}

// ChangeEmail moves the user to newEmail, verified, while the current
// address still folds to oldEmail.
func (s *Store) ChangeEmail(ctx context.Context, userID, oldEmail, newEmail string) (gatehouse.User, error) {
	u, err := scanUser(s.write.QueryRowContext(ctx, `UPDATE users SET email = ?1, email_key = ?2, email_verified = 1
		WHERE id = ?3 AND email_key = ?4 RETURNING `+userReadCols,
		newEmail, gatehouse.EmailKey(newEmail), userID, gatehouse.EmailKey(oldEmail)))
	if err != nil {
		if emailTaken(err) {
			return gatehouse.User{}, fmt.Errorf("sqlite: change email: %w", gatehouse.ErrEmailTaken)
		}
		return gatehouse.User{}, s.staleOrMissing(ctx, "change email", userID, err)
	}
	return u, nil
}

// emailTaken reports whether err is a clash on the unique email index (and
// not, say, on a primary key).
func emailTaken(err error) bool {
	var se *msqlite.Error
	return errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE && strings.Contains(se.Error(), "users.email_key")
}

// --- one-time secrets -------------------------------------------------------

const secretCols = `id, kind, subject, mac, data, created_at, expires_at, used_at, attempts`

func scanSecret(row scanner) (gatehouse.OneTimeSecret, error) {
	var (
		sec            gatehouse.OneTimeSecret
		kind           string
		created, expAt int64
		used           sql.NullInt64
		attempts       int64
	)
	if err := row.Scan(&sec.ID, &kind, &sec.Subject, &sec.MAC, &sec.Data, &created, &expAt, &used, &attempts); err != nil {
		return gatehouse.OneTimeSecret{}, err
	}
	sec.Kind, sec.Attempts = gatehouse.SecretKind(kind), int(attempts)
	sec.CreatedAt, sec.ExpiresAt, sec.UsedAt = fromMicros(created), fromMicros(expAt), fromNullMicros(used)
	return sec, nil
}

// CreateSecret stores sec and voids the older unused secrets of its kind and
// subject, in one transaction on the writer.
func (s *Store) CreateSecret(ctx context.Context, sec gatehouse.OneTimeSecret) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return wrap("create secret", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	if err := insertSecret(ctx, tx, sec); err != nil {
		return err
	}
	return wrap("create secret: commit", tx.Commit())
}

// insertSecret voids the older unused secrets of sec's kind and subject and
// inserts sec, inside tx.
func insertSecret(ctx context.Context, tx *sql.Tx, sec gatehouse.OneTimeSecret) error {
	if len(sec.MAC) == 0 {
		// An empty MAC would be matched by an empty presented one.
		return errors.New("sqlite: create secret: empty MAC")
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM one_time_secrets WHERE kind = ? AND subject = ? AND used_at IS NULL`,
		string(sec.Kind), sec.Subject); err != nil {
		return wrap("create secret: void older", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO one_time_secrets (`+secretCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		sec.ID, string(sec.Kind), sec.Subject, sec.MAC, sec.Data, micros(sec.CreatedAt), micros(sec.ExpiresAt),
		nullMicros(sec.UsedAt), int64(sec.Attempts)); err != nil {
		return wrap("create secret", err)
	}
	return nil
}

// UseSecret is one conditional UPDATE on the single writer connection, so
// of concurrent uses exactly one finds the row unused. The MAC is compared
// in SQL: the id that selects the row is random, so the comparison's timing
// tells a guesser nothing about a MAC they could not look up anyway.
func (s *Store) UseSecret(ctx context.Context, kind gatehouse.SecretKind, id string, mac []byte, now time.Time, maxAttempts int) (gatehouse.OneTimeSecret, error) {
	sec, err := scanSecret(s.write.QueryRowContext(ctx, `UPDATE one_time_secrets SET used_at = ?1
		WHERE id = ?2 AND kind = ?3 AND mac = ?4 AND used_at IS NULL AND expires_at > ?1 AND attempts < ?5
		RETURNING `+secretCols,
		micros(now), id, string(kind), mac, int64(maxAttempts)))
	if err != nil {
		return gatehouse.OneTimeSecret{}, wrap("use secret", err)
	}
	sec.UsedAt = time.Time{} // as stored before the use
	return sec, nil
}

// UseSecretOf reads the newest live secret and uses it or counts the wrong
// guess in one IMMEDIATE transaction on the writer: no other write, from
// this process or another, comes between the read and the update, so
// concurrent guesses are counted one by one and never beyond maxAttempts.
func (s *Store) UseSecretOf(ctx context.Context, kind gatehouse.SecretKind, subject string, mac []byte, now time.Time, maxAttempts int) (gatehouse.OneTimeSecret, error) {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return gatehouse.OneTimeSecret{}, wrap("use secret of", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	sec, err := scanSecret(tx.QueryRowContext(ctx, `SELECT `+secretCols+` FROM one_time_secrets
		WHERE kind = ?1 AND subject = ?2 AND used_at IS NULL AND expires_at > ?3 AND attempts < ?4
		ORDER BY created_at DESC, rowid DESC LIMIT 1`,
		string(kind), subject, micros(now), int64(maxAttempts)))
	if err != nil {
		return gatehouse.OneTimeSecret{}, wrap("use secret of", err)
	}
	// A guessed code is compared in constant time: here the lookup is by
	// subject, so the stored MAC is what a guesser works against.
	if subtle.ConstantTimeCompare(sec.MAC, mac) != 1 {
		if _, err := tx.ExecContext(ctx, `UPDATE one_time_secrets SET attempts = attempts + 1 WHERE id = ?`, sec.ID); err != nil {
			return gatehouse.OneTimeSecret{}, wrap("use secret of: count attempt", err)
		}
		if err := tx.Commit(); err != nil {
			return gatehouse.OneTimeSecret{}, wrap("use secret of: commit", err)
		}
		return gatehouse.OneTimeSecret{}, fmt.Errorf("sqlite: use secret of: %w", gatehouse.ErrMismatch)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE one_time_secrets SET used_at = ? WHERE id = ?`, micros(now), sec.ID); err != nil {
		return gatehouse.OneTimeSecret{}, wrap("use secret of", err)
	}
	if err := tx.Commit(); err != nil {
		return gatehouse.OneTimeSecret{}, wrap("use secret of: commit", err)
	}
	return sec, nil
}

// SecretByID reads the secret whatever its state: the OAuth code flow
// needs what a used code held, to revoke what its first redemption issued.
func (s *Store) SecretByID(ctx context.Context, kind gatehouse.SecretKind, id string) (gatehouse.OneTimeSecret, error) {
	sec, err := scanSecret(s.read.QueryRowContext(ctx, `SELECT `+secretCols+` FROM one_time_secrets WHERE id = ? AND kind = ?`,
		id, string(kind)))
	if err != nil {
		return gatehouse.OneTimeSecret{}, wrap("secret by id", err)
	}
	return sec, nil
}

func (s *Store) DeleteSecrets(ctx context.Context, kind gatehouse.SecretKind, subject string) error {
	_, err := s.write.ExecContext(ctx, `DELETE FROM one_time_secrets WHERE kind = ? AND subject = ?`, string(kind), subject)
	return wrap("delete secrets", err)
}

func (s *Store) PruneSecrets(ctx context.Context, now time.Time) error {
	_, err := s.write.ExecContext(ctx, `DELETE FROM one_time_secrets WHERE expires_at < ?`, micros(now))
	return wrap("prune secrets", err)
}

// --- mail outbox ------------------------------------------------------------

const outboxCols = `id, sealed, created_at, next_attempt_at, attempts`

func (s *Store) EnqueueMail(ctx context.Context, m gatehouse.OutboxMessage, with ...gatehouse.OneTimeSecret) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return wrap("enqueue mail", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	if err := insertMail(ctx, tx, m, with); err != nil {
		return err
	}
	return wrap("enqueue mail: commit", tx.Commit())
}

// insertMail inserts m and the secrets it carries in tx.
func insertMail(ctx context.Context, tx *sql.Tx, m gatehouse.OutboxMessage, with []gatehouse.OneTimeSecret) error {
	sealed := m.Sealed
	if sealed == nil {
		sealed = []byte{} // NOT NULL: an empty blob, not NULL
	}
	var claimed any
	if !m.ClaimedUntil.IsZero() {
		claimed = micros(m.ClaimedUntil)
	}
	for _, sec := range with {
		if err := insertSecret(ctx, tx, sec); err != nil {
			return fmt.Errorf("enqueue mail: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO mail_outbox (`+outboxCols+`, claimed_until) VALUES (?, ?, ?, ?, ?, ?)`,
		m.ID, sealed, micros(m.CreatedAt), micros(m.NextAttemptAt), int64(m.Attempts), claimed); err != nil {
		return wrap("enqueue mail", err)
	}
	return nil
}

// ClaimMail is one UPDATE on the writer: SQLite runs one writer at a time
// across every process on the file, so the rows it selects cannot be
// claimed by anyone else before it sets their lease.
func (s *Store) ClaimMail(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]gatehouse.OutboxMessage, error) {
	if limit <= 0 {
		return nil, nil // SQLite reads a negative LIMIT as "no limit"
	}
	rows, err := s.write.QueryContext(ctx, `UPDATE mail_outbox SET claimed_until = ?2
		WHERE id IN (
			SELECT id FROM mail_outbox
			WHERE next_attempt_at <= ?1 AND (claimed_until IS NULL OR claimed_until <= ?1)
			ORDER BY next_attempt_at, id LIMIT ?3)
		RETURNING `+outboxCols,
		micros(now), micros(now.Add(lease)), limit)
	if err != nil {
		return nil, wrap("claim mail", err)
	}
	defer rows.Close()
	var ms []gatehouse.OutboxMessage
	for rows.Next() {
		var (
			m                    gatehouse.OutboxMessage
			created, next, tries int64
		)
		if err := rows.Scan(&m.ID, &m.Sealed, &created, &next, &tries); err != nil {
			return nil, wrap("claim mail", err)
		}
		m.CreatedAt, m.NextAttemptAt, m.Attempts = fromMicros(created), fromMicros(next), int(tries)
		ms = append(ms, m)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("claim mail", err)
	}
	sortOutbox(ms) // RETURNING comes in no promised order
	return ms, nil
}

func (s *Store) DeleteMail(ctx context.Context, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	q := `DELETE FROM mail_outbox WHERE id IN (?` + strings.Repeat(`,?`, len(ids)-1) + `)`
	_, err := s.write.ExecContext(ctx, q, args...)
	return wrap("delete mail", err)
}

func (s *Store) RetryMail(ctx context.Context, id string, next time.Time) error {
	res, err := s.write.ExecContext(ctx, `UPDATE mail_outbox SET attempts = attempts + 1, next_attempt_at = ?, claimed_until = NULL
		WHERE id = ?`, micros(next), id)
	return wrap("retry mail", oneRow(res, err))
}

func (s *Store) PendingMail(ctx context.Context) (int, error) {
	var n int
	if err := s.read.QueryRowContext(ctx, `SELECT count(*) FROM mail_outbox`).Scan(&n); err != nil {
		return 0, wrap("pending mail", err)
	}
	return n, nil
}

// sortOutbox orders messages oldest due first, by id among equals.
func sortOutbox(ms []gatehouse.OutboxMessage) {
	slices.SortFunc(ms, func(a, b gatehouse.OutboxMessage) int {
		if c := a.NextAttemptAt.Compare(b.NextAttemptAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}
