package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gatehouse/gatehouse"
)

// --- email state ------------------------------------------------------------

// SetEmailVerified marks the email verified while the user's address still
// folds to the one the link was sent to; the version stays, since nothing a
// session depends on changed.
func (s *Store) SetEmailVerified(ctx context.Context, userID, email string) (gatehouse.User, error) {
	var r userRow
	err := s.pool.QueryRow(ctx, `UPDATE users SET email_verified = true
		WHERE id = $1 AND email_key = $2 RETURNING `+userReadCols,
		userID, gatehouse.EmailKey(email)).Scan(r.dest()...)
	if errors.Is(err, pgx.ErrNoRows) {
		return gatehouse.User{}, s.staleOrMissing(ctx, "set email verified", userID)
	}
	if err != nil {
		return gatehouse.User{}, wrap("set email verified", err)
	}
	return r.user(), nil
}

// ChangeEmail moves the user to newEmail, verified, while the current
// address still folds to oldEmail.
func (s *Store) ChangeEmail(ctx context.Context, userID, oldEmail, newEmail string) (gatehouse.User, error) {
	var r userRow
	err := s.pool.QueryRow(ctx, `UPDATE users SET email = $3, email_key = $4, email_verified = true
		WHERE id = $1 AND email_key = $2 RETURNING `+userReadCols,
		userID, gatehouse.EmailKey(oldEmail), newEmail, gatehouse.EmailKey(newEmail)).Scan(r.dest()...)
	switch {
	case emailTaken(err):
		return gatehouse.User{}, fmt.Errorf("postgres: change email: %w", gatehouse.ErrEmailTaken)
	case errors.Is(err, pgx.ErrNoRows):
		return gatehouse.User{}, s.staleOrMissing(ctx, "change email", userID)
	case err != nil:
		return gatehouse.User{}, wrap("change email", err)
	}
	return r.user(), nil
}

// --- one-time secrets -------------------------------------------------------

const secretCols = `id, kind, subject, mac, data, created_at, expires_at, used_at, attempts`

// secretRow receives one row of secretCols.
type secretRow struct {
	id, kind, subject, data string
	mac                     []byte
	createdAt, expiresAt    time.Time
	usedAt                  *time.Time
	attempts                int32
}

func (r *secretRow) dest() []any {
	return []any{&r.id, &r.kind, &r.subject, &r.mac, &r.data, &r.createdAt, &r.expiresAt, &r.usedAt, &r.attempts}
}

func (r *secretRow) secret() gatehouse.OneTimeSecret {
	return gatehouse.OneTimeSecret{
		ID:        r.id,
		Kind:      gatehouse.SecretKind(r.kind),
		Subject:   r.subject,
		MAC:       r.mac,
		Data:      r.data,
		CreatedAt: r.createdAt.UTC(),
		ExpiresAt: r.expiresAt.UTC(),
		UsedAt:    utc(r.usedAt),
		Attempts:  int(r.attempts),
	}
}

// attemptsArg clamps a guess limit to the integer column's range: a larger
// limit is as good as none, and a limit of zero or less leaves nothing live.
func attemptsArg(n int) int32 { return int32(min(max(n, 0), math.MaxInt32)) }

// CreateSecret stores sec and voids the older unused secrets of its kind and
// subject. A transaction-scoped advisory lock on (kind, subject) makes
// concurrent creations take turns; without it two of them would each delete
// what they saw and insert, leaving both new secrets live. Under READ
// COMMITTED the DELETE, which runs after the lock is granted, sees every
// secret committed before. The three statements go in one batch: one round
// trip.
func (s *Store) CreateSecret(ctx context.Context, sec gatehouse.OneTimeSecret) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		if err := queueSecret(b, sec); err != nil {
			return err
		}
		return tx.SendBatch(ctx, b).Close()
	})
	return wrap("create secret", err)
}

// queueSecret adds to b the statements that void the older unused secrets
// of sec's kind and subject and insert sec; b must run in a transaction.
func queueSecret(b *pgx.Batch, sec gatehouse.OneTimeSecret) error {
	if len(sec.MAC) == 0 {
		// An empty MAC would be matched by an empty presented one.
		return errors.New("postgres: create secret: empty MAC")
	}
	// Kinds hold no space, so "kind subject" names one pair; a hash
	// collision with another pair (or another lock) only makes one wait
	// for the other.
	b.Queue(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, string(sec.Kind)+" "+sec.Subject)
	b.Queue(`DELETE FROM one_time_secrets WHERE kind = $1 AND subject = $2 AND used_at IS NULL`,
		string(sec.Kind), sec.Subject)
	b.Queue(`INSERT INTO one_time_secrets (`+secretCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		sec.ID, string(sec.Kind), sec.Subject, sec.MAC, sec.Data, sec.CreatedAt, sec.ExpiresAt,
		nullTime(sec.UsedAt), attemptsArg(sec.Attempts))
	return nil
}

// UseSecret is one conditional UPDATE. Concurrent uses queue on the row
// lock and READ COMMITTED re-evaluates the WHERE clause on the row the
// winner committed, where used_at is no longer NULL: exactly one matches.
// The MAC is compared in SQL: the id that selects the row is random, so the
// comparison's timing tells a guesser nothing they could use.
func (s *Store) UseSecret(ctx context.Context, kind gatehouse.SecretKind, id string, mac []byte, now time.Time, maxAttempts int) (gatehouse.OneTimeSecret, error) {
	var r secretRow
	err := s.pool.QueryRow(ctx, `UPDATE one_time_secrets SET used_at = $1
		WHERE id = $2 AND kind = $3 AND mac = $4 AND used_at IS NULL AND expires_at > $1 AND attempts < $5
		RETURNING `+secretCols,
		now, id, string(kind), mac, attemptsArg(maxAttempts)).Scan(r.dest()...)
	if err != nil {
		return gatehouse.OneTimeSecret{}, wrap("use secret", err)
	}
	sec := r.secret()
	sec.UsedAt = time.Time{} // as stored before the use
	return sec, nil
}

// UseSecretOf is a single statement. The CTE picks the newest live secret
// and locks it; a concurrent guess that got there first makes it wait, and
// READ COMMITTED then re-checks the conditions on the committed row (a
// secret used or out of attempts drops out). The UPDATE works on that
// locked row: it marks it used when the MAC matches and counts a wrong
// guess otherwise, so every guess is counted once and none beyond
// maxAttempts. A timing difference in the comparison reveals how much of
// a MAC under a key the guesser does not have matched: nothing useful.
func (s *Store) UseSecretOf(ctx context.Context, kind gatehouse.SecretKind, subject string, mac []byte, now time.Time, maxAttempts int) (gatehouse.OneTimeSecret, error) {
	var r secretRow
	err := s.pool.QueryRow(ctx, `WITH target AS (
			SELECT id FROM one_time_secrets
			WHERE kind = $1 AND subject = $2 AND used_at IS NULL AND expires_at > $3 AND attempts < $4
			ORDER BY created_at DESC, id DESC
			LIMIT 1
			FOR UPDATE
		)
		UPDATE one_time_secrets o SET
			used_at = CASE WHEN o.mac = $5 THEN $3::timestamptz END,
			attempts = CASE WHEN o.mac = $5 THEN o.attempts ELSE o.attempts + 1 END
		FROM target WHERE o.id = target.id
		RETURNING o.id, o.kind, o.subject, o.mac, o.data, o.created_at, o.expires_at, o.used_at, o.attempts`,
		string(kind), subject, now, attemptsArg(maxAttempts), mac).Scan(r.dest()...)
	if err != nil {
		return gatehouse.OneTimeSecret{}, wrap("use secret of", err)
	}
	if r.usedAt == nil {
		// The guess was wrong (a NULL mac compares as unknown: wrong too)
		// and has been counted.
		return gatehouse.OneTimeSecret{}, fmt.Errorf("postgres: use secret of: %w", gatehouse.ErrMismatch)
	}
	sec := r.secret()
	sec.UsedAt = time.Time{} // as stored before the use
	return sec, nil
}

// SecretByID reads the secret whatever its state: the OAuth code flow
// needs what a used code held, to revoke what its first redemption issued.
func (s *Store) SecretByID(ctx context.Context, kind gatehouse.SecretKind, id string) (gatehouse.OneTimeSecret, error) {
	var r secretRow
	err := s.pool.QueryRow(ctx, `SELECT `+secretCols+` FROM one_time_secrets WHERE id = $1 AND kind = $2`,
		id, string(kind)).Scan(r.dest()...)
	if err != nil {
		return gatehouse.OneTimeSecret{}, wrap("secret by id", err)
	}
	return r.secret(), nil
}

// DeleteSecrets deletes every secret of kind and subject.
func (s *Store) DeleteSecrets(ctx context.Context, kind gatehouse.SecretKind, subject string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM one_time_secrets WHERE kind = $1 AND subject = $2`, string(kind), subject)
	return wrap("delete secrets", err)
}

// PruneSecrets deletes secrets that expired before now.
func (s *Store) PruneSecrets(ctx context.Context, now time.Time) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM one_time_secrets WHERE expires_at < $1`, now)
	return wrap("prune secrets", err)
}

// --- mail outbox ------------------------------------------------------------

const outboxCols = `id, sealed, created_at, next_attempt_at, attempts`

// EnqueueMail stores m, unclaimed.
func (s *Store) EnqueueMail(ctx context.Context, m gatehouse.OutboxMessage, with ...gatehouse.OneTimeSecret) error {
	b, err := mailBatch(m, with)
	if err != nil {
		return err
	}
	if len(with) == 0 {
		// One statement is a transaction of its own.
		return wrap("enqueue mail", s.pool.SendBatch(ctx, b).Close())
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return tx.SendBatch(ctx, b).Close() })
	return wrap("enqueue mail", err)
}

// ClaimMail leases due messages in one statement. FOR UPDATE SKIP LOCKED
// makes a concurrent claimer pass over rows this one is taking instead of
// waiting for them, and a row another claimer committed first is re-checked
// under READ COMMITTED, found leased and dropped: no message is claimed
// twice.
func (s *Store) ClaimMail(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]gatehouse.OutboxMessage, error) {
	if limit <= 0 {
		return []gatehouse.OutboxMessage{}, nil // PostgreSQL rejects a negative LIMIT
	}
	rows, err := s.pool.Query(ctx, `UPDATE mail_outbox SET claimed_until = $2
		WHERE id IN (
			SELECT id FROM mail_outbox
			WHERE next_attempt_at <= $1 AND (claimed_until IS NULL OR claimed_until <= $1)
			ORDER BY next_attempt_at, id
			LIMIT $3
			FOR UPDATE SKIP LOCKED)
		RETURNING `+outboxCols,
		now, now.Add(lease), limit)
	if err != nil {
		return nil, wrap("claim mail", err)
	}
	ms := []gatehouse.OutboxMessage{}
	for rows.Next() {
		var (
			m     gatehouse.OutboxMessage
			tries int32
		)
		if err := rows.Scan(&m.ID, &m.Sealed, &m.CreatedAt, &m.NextAttemptAt, &tries); err != nil {
			rows.Close()
			return nil, wrap("claim mail", err)
		}
		m.CreatedAt, m.NextAttemptAt, m.Attempts = m.CreatedAt.UTC(), m.NextAttemptAt.UTC(), int(tries)
		ms = append(ms, m)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("claim mail", err)
	}
	// RETURNING comes in no promised order.
	slices.SortFunc(ms, func(a, b gatehouse.OutboxMessage) int {
		return cmp.Or(a.NextAttemptAt.Compare(b.NextAttemptAt), strings.Compare(a.ID, b.ID))
	})
	return ms, nil
}

// DeleteMail removes a message; one already gone is not an error.
func (s *Store) DeleteMail(ctx context.Context, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := s.pool.Exec(ctx, `DELETE FROM mail_outbox WHERE id = ANY($1)`, ids)
	return wrap("delete mail", err)
}

// RetryMail releases the message's lease, counts the failed attempt and
// makes it due again at next.
func (s *Store) RetryMail(ctx context.Context, id string, next time.Time) error {
	tag, err := s.pool.Exec(ctx, `UPDATE mail_outbox SET attempts = attempts + 1, next_attempt_at = $2, claimed_until = NULL
		WHERE id = $1`, id, next)
	if err != nil {
		return wrap("retry mail", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: retry mail: %w", gatehouse.ErrNotFound)
	}
	return nil
}

// PendingMail counts the messages in the outbox.
func (s *Store) PendingMail(ctx context.Context) (int, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM mail_outbox`).Scan(&n); err != nil {
		return 0, wrap("pending mail", err)
	}
	return int(n), nil
}

// mailBatch is the inserts of m and the secrets it carries.
func mailBatch(m gatehouse.OutboxMessage, with []gatehouse.OneTimeSecret) (*pgx.Batch, error) {
	sealed := m.Sealed
	if sealed == nil {
		sealed = []byte{} // pgx sends a nil slice as NULL; the column is NOT NULL
	}
	b := &pgx.Batch{}
	for _, sec := range with {
		if err := queueSecret(b, sec); err != nil {
			return nil, fmt.Errorf("enqueue mail: %w", err)
		}
	}
	b.Queue(`INSERT INTO mail_outbox (`+outboxCols+`, claimed_until) VALUES ($1, $2, $3, $4, $5, $6)`,
		m.ID, sealed, m.CreatedAt, m.NextAttemptAt, attemptsArg(m.Attempts), nullTime(m.ClaimedUntil))
	return b, nil
}
