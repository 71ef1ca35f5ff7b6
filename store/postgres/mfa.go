package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gatehouse/gatehouse"
)

// Second factors. The single-use guarantees rest on conditional UPDATEs:
// concurrent updates of one row queue on its row lock, and READ COMMITTED
// re-evaluates the WHERE clause on the row the winner committed, where the
// step is no longer newer or the code no longer unused, so exactly one
// matches.

var (
	_ gatehouse.MFAStore       = (*Store)(nil)
	_ gatehouse.SecretAttempts = (*Store)(nil)
)

// PutPendingTOTP inserts the pending factor, or replaces a pending one, in
// one statement. The upsert's WHERE is evaluated on the locked, latest
// version of an existing row, so a factor confirmed concurrently is never
// overwritten; the INSERT ... SELECT inserts nothing without the user, and
// staleOrMissing then tells the two apart.
func (s *Store) PutPendingTOTP(ctx context.Context, f gatehouse.TOTPFactor) error {
	sealed := f.Sealed
	if sealed == nil {
		sealed = []byte{} // pgx sends a nil slice as NULL; the column is NOT NULL
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO mfa_totp (user_id, sealed, created_at, confirmed_at, last_step)
		SELECT id, $2::bytea, $3::timestamptz, NULL, $4::bigint FROM users WHERE id = $1
		ON CONFLICT (user_id) DO UPDATE SET
			sealed = EXCLUDED.sealed, created_at = EXCLUDED.created_at, last_step = EXCLUDED.last_step
		WHERE mfa_totp.confirmed_at IS NULL`,
		f.UserID, sealed, f.CreatedAt, f.LastStep)
	if err != nil {
		return wrap("put pending totp", err)
	}
	if tag.RowsAffected() == 0 {
		// The user exists: it is the confirmed factor that refused.
		return s.staleOrMissing(ctx, "put pending totp", f.UserID)
	}
	return nil
}

// TOTP returns the user's factor, pending or confirmed.
func (s *Store) TOTP(ctx context.Context, userID string) (gatehouse.TOTPFactor, error) {
	var (
		f         gatehouse.TOTPFactor
		confirmed *time.Time
	)
	err := s.pool.QueryRow(ctx, `SELECT user_id, sealed, created_at, confirmed_at, last_step
		FROM mfa_totp WHERE user_id = $1`, userID).Scan(&f.UserID, &f.Sealed, &f.CreatedAt, &confirmed, &f.LastStep)
	if err != nil {
		return gatehouse.TOTPFactor{}, wrap("totp", err)
	}
	f.CreatedAt, f.ConfirmedAt = f.CreatedAt.UTC(), utc(confirmed)
	return f, nil
}

// ConfirmTOTP confirms the pending factor and replaces the recovery codes in
// one transaction. Of concurrent confirmations the later ones wait for the
// lock, then find the factor confirmed and fail.
func (s *Store) ConfirmTOTP(ctx context.Context, userID string, step int64, at time.Time, codes [][]byte) error {
	if err := checkCodes(codes); err != nil {
		return fmt.Errorf("postgres: confirm totp: %w", err)
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// The codes' lock first, as everywhere, so that this and DeleteTOTP
		// never hold each other's locks.
		if err := lockCodes(ctx, tx, userID); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE mfa_totp SET confirmed_at = $2, last_step = $3
			WHERE user_id = $1 AND confirmed_at IS NULL`, userID, at, step)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return gatehouse.ErrNotFound // no pending factor; rolls back
		}
		return replaceCodes(ctx, tx, userID, codes)
	})
	return wrapMFA("confirm totp", err)
}

// UseTOTPStep is one conditional UPDATE; only when it matches nothing does
// a second read tell a used step (ErrStale) from no confirmed factor.
func (s *Store) UseTOTPStep(ctx context.Context, userID string, step int64) error {
	tag, err := s.pool.Exec(ctx, `UPDATE mfa_totp SET last_step = $2
		WHERE user_id = $1 AND confirmed_at IS NOT NULL AND last_step < $2`, userID, step)
	if err != nil {
		return wrap("use totp step", err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	var one int
	if err := s.pool.QueryRow(ctx, `SELECT 1 FROM mfa_totp WHERE user_id = $1 AND confirmed_at IS NOT NULL`,
		userID).Scan(&one); err != nil {
		return wrap("use totp step", err) // pgx.ErrNoRows: ErrNotFound
	}
	return fmt.Errorf("postgres: use totp step: %w", gatehouse.ErrStale)
}

// DeleteTOTP removes the factor and the recovery codes in one transaction,
// under the same lock as the replacement of codes, so that a concurrent
// replacement cannot leave codes behind a factor that is gone.
func (s *Store) DeleteTOTP(ctx context.Context, userID string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue(lockCodesSQL, mfaLockKey(userID))
		b.Queue(`DELETE FROM recovery_codes WHERE user_id = $1`, userID)
		b.Queue(`DELETE FROM mfa_totp WHERE user_id = $1`, userID)
		return tx.SendBatch(ctx, b).Close()
	})
	return wrap("delete totp", err)
}

// ReplaceRecoveryCodes deletes the user's codes and inserts the new ones in
// one transaction: the old codes die exactly when the new ones exist.
func (s *Store) ReplaceRecoveryCodes(ctx context.Context, userID string, codes [][]byte) error {
	if err := checkCodes(codes); err != nil {
		return fmt.Errorf("postgres: replace recovery codes: %w", err)
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := lockCodes(ctx, tx, userID); err != nil {
			return err
		}
		return replaceCodes(ctx, tx, userID, codes)
	})
	return wrapMFA("replace recovery codes", err)
}

// lockCodes takes the transaction-scoped advisory lock on the user's
// second factors, which every transaction that writes recovery codes takes
// first. It makes concurrent replacements take turns: without it, under
// READ COMMITTED, each DELETE would miss the rows the other inserted and
// both sets of new codes would stay live; once the lock is granted, a
// DELETE sees every code committed before. The prefix keeps the key apart
// from CreateSecret's "kind subject" keys (kinds hold no space); a hash
// collision only makes one wait for the other.
func lockCodes(ctx context.Context, tx pgx.Tx, userID string) error {
	_, err := tx.Exec(ctx, lockCodesSQL, mfaLockKey(userID))
	return err
}

const lockCodesSQL = `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`

func mfaLockKey(userID string) string { return "mfa " + userID }

// replaceCodes swaps the user's recovery codes inside tx, which holds
// lockCodes, in one round trip.
func replaceCodes(ctx context.Context, tx pgx.Tx, userID string, codes [][]byte) error {
	if codes == nil {
		codes = [][]byte{} // an empty array, not NULL, for unnest
	}
	b := &pgx.Batch{}
	b.Queue(`DELETE FROM recovery_codes WHERE user_id = $1`, userID)
	b.Queue(`INSERT INTO recovery_codes (user_id, code_mac) SELECT $1, unnest($2::bytea[])`, userID, codes)
	err := tx.SendBatch(ctx, b).Close()
	if pgErr, ok := asPgError(err); ok && pgErr.Code == "23503" { // foreign_key_violation: no such user
		return gatehouse.ErrNotFound
	}
	return err
}

// wrapMFA is wrap for the transactions above, which report a missing row or
// user as gatehouse.ErrNotFound itself.
func wrapMFA(op string, err error) error {
	if errors.Is(err, gatehouse.ErrNotFound) {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	return wrap(op, err)
}

// checkCodes refuses an empty MAC, which an empty presented one would
// match.
func checkCodes(codes [][]byte) error {
	for _, c := range codes {
		if len(c) == 0 {
			return errors.New("empty recovery code MAC")
		}
	}
	return nil
}

// UseRecoveryCode is one conditional UPDATE on the (user_id, code_mac)
// primary key. The MAC is looked up, not compared in constant time: it is
// keyed with a server secret, so how far a presented MAC matches a stored
// one tells a guesser nothing they can steer.
func (s *Store) UseRecoveryCode(ctx context.Context, userID string, code []byte, at time.Time) error {
	tag, err := s.pool.Exec(ctx, `UPDATE recovery_codes SET used_at = $3
		WHERE user_id = $1 AND code_mac = $2 AND used_at IS NULL`, userID, code, at)
	if err != nil {
		return wrap("use recovery code", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: use recovery code: %w", gatehouse.ErrNotFound)
	}
	return nil
}

// RecoveryCodesLeft counts the user's unused codes.
func (s *Store) RecoveryCodesLeft(ctx context.Context, userID string) (int, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL`,
		userID).Scan(&n); err != nil {
		return 0, wrap("recovery codes left", err)
	}
	return int(n), nil
}

// SpendSecretAttempt counts the attempt in one conditional UPDATE before the
// caller checks the guess. Concurrent spends queue on the row lock and each
// re-checks attempts < maxAttempts on the row the one before committed, so
// no more than maxAttempts ever succeed.
func (s *Store) SpendSecretAttempt(ctx context.Context, kind gatehouse.SecretKind, id string, mac []byte, now time.Time, maxAttempts int) (gatehouse.OneTimeSecret, error) {
	var r secretRow
	err := s.pool.QueryRow(ctx, `UPDATE one_time_secrets SET attempts = attempts + 1
		WHERE id = $1 AND kind = $2 AND mac = $3 AND used_at IS NULL AND expires_at > $4 AND attempts < $5
		RETURNING `+secretCols,
		id, string(kind), mac, now, attemptsArg(maxAttempts)).Scan(r.dest()...)
	if err != nil {
		return gatehouse.OneTimeSecret{}, wrap("spend secret attempt", err)
	}
	return r.secret(), nil
}
