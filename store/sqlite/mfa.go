package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/gatehouse/gatehouse"
)

// Second factors. Every write goes through the one writer connection, so each
// conditional UPDATE below is atomic against every other write, from this
// process or another on the same file: of concurrent uses of one TOTP step
// or one recovery code exactly one finds the row still unused.

var (
	_ gatehouse.MFAStore       = (*Store)(nil)
	_ gatehouse.SecretAttempts = (*Store)(nil)
)

// PutPendingTOTP inserts the pending factor, or replaces a pending one, in
// one statement. The upsert's WHERE leaves a confirmed factor alone, and the
// INSERT ... SELECT inserts nothing without the user; staleOrMissing then
// tells the two apart.
func (s *Store) PutPendingTOTP(ctx context.Context, f gatehouse.TOTPFactor) error {
	sealed := f.Sealed
	if sealed == nil {
		sealed = []byte{} // NOT NULL: an empty blob, not NULL
	}
	res, err := s.write.ExecContext(ctx, `INSERT INTO mfa_totp (user_id, sealed, created_at, confirmed_at, last_step)
		SELECT id, ?2, ?3, NULL, ?4 FROM users WHERE id = ?1
		ON CONFLICT (user_id) DO UPDATE SET
			sealed = excluded.sealed, created_at = excluded.created_at, last_step = excluded.last_step
		WHERE mfa_totp.confirmed_at IS NULL`,
		f.UserID, sealed, micros(f.CreatedAt), f.LastStep)
	if err := oneRow(res, err); err != nil {
		// The user exists: it is the confirmed factor that refused.
		return s.staleOrMissing(ctx, "put pending totp", f.UserID, err)
	}
	return nil
}

// TOTP returns the user's factor, pending or confirmed.
func (s *Store) TOTP(ctx context.Context, userID string) (gatehouse.TOTPFactor, error) {
	var (
		f         gatehouse.TOTPFactor
		created   int64
		confirmed sql.NullInt64
	)
	err := s.read.QueryRowContext(ctx, `SELECT user_id, sealed, created_at, confirmed_at, last_step
		FROM mfa_totp WHERE user_id = ?`, userID).Scan(&f.UserID, &f.Sealed, &created, &confirmed, &f.LastStep)
	if err != nil {
		return gatehouse.TOTPFactor{}, wrap("totp", err)
	}
	f.CreatedAt, f.ConfirmedAt = fromMicros(created), fromNullMicros(confirmed)
	return f, nil
}

// ConfirmTOTP confirms the pending factor and replaces the recovery codes in
// one IMMEDIATE transaction: a confirmation never leaves the old codes (or
// none) behind, and of concurrent confirmations only the first finds the
// factor pending.
func (s *Store) ConfirmTOTP(ctx context.Context, userID string, step int64, at time.Time, codes [][]byte) error {
	if err := checkCodes(codes); err != nil {
		return fmt.Errorf("sqlite: confirm totp: %w", err)
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return wrap("confirm totp", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	res, err := tx.ExecContext(ctx, `UPDATE mfa_totp SET confirmed_at = ?, last_step = ?
		WHERE user_id = ? AND confirmed_at IS NULL`, micros(at), step, userID)
	if err := oneRow(res, err); err != nil {
		return wrap("confirm totp", err) // sql.ErrNoRows: no pending factor
	}
	if err := replaceCodes(ctx, tx, userID, codes); err != nil {
		return wrap("confirm totp", err)
	}
	return wrap("confirm totp: commit", tx.Commit())
}

// UseTOTPStep is one conditional UPDATE; only when it matches nothing does
// a second read tell a used step (ErrStale) from no confirmed factor.
func (s *Store) UseTOTPStep(ctx context.Context, userID string, step int64) error {
	res, err := s.write.ExecContext(ctx, `UPDATE mfa_totp SET last_step = ?1
		WHERE user_id = ?2 AND confirmed_at IS NOT NULL AND last_step < ?1`, step, userID)
	err = oneRow(res, err)
	if err == nil {
		return nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return wrap("use totp step", err)
	}
	var one int
	if err := s.write.QueryRowContext(ctx, `SELECT 1 FROM mfa_totp WHERE user_id = ? AND confirmed_at IS NOT NULL`,
		userID).Scan(&one); err != nil {
		return wrap("use totp step", err) // sql.ErrNoRows: ErrNotFound
	}
	return fmt.Errorf("sqlite: use totp step: %w", gatehouse.ErrStale)
}

// DeleteTOTP removes the factor and the recovery codes together, so that a
// user is never left with codes for a factor that is gone.
func (s *Store) DeleteTOTP(ctx context.Context, userID string) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return wrap("delete totp", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	if _, err := tx.ExecContext(ctx, `DELETE FROM recovery_codes WHERE user_id = ?`, userID); err != nil {
		return wrap("delete totp: recovery codes", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM mfa_totp WHERE user_id = ?`, userID); err != nil {
		return wrap("delete totp", err)
	}
	return wrap("delete totp: commit", tx.Commit())
}

// ReplaceRecoveryCodes deletes the user's codes and inserts the new ones in
// one transaction: the old codes die exactly when the new ones exist.
func (s *Store) ReplaceRecoveryCodes(ctx context.Context, userID string, codes [][]byte) error {
	if err := checkCodes(codes); err != nil {
		return fmt.Errorf("sqlite: replace recovery codes: %w", err)
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return wrap("replace recovery codes", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	if err := replaceCodes(ctx, tx, userID, codes); err != nil {
		return wrap("replace recovery codes", err)
	}
	return wrap("replace recovery codes: commit", tx.Commit())
}

// replaceCodes swaps the user's recovery codes inside tx. An insert for a
// user that does not exist fails its foreign key: ErrNotFound.
func replaceCodes(ctx context.Context, tx *sql.Tx, userID string, codes [][]byte) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM recovery_codes WHERE user_id = ?`, userID); err != nil {
		return err
	}
	for _, c := range codes {
		if _, err := tx.ExecContext(ctx, `INSERT INTO recovery_codes (user_id, code_mac) VALUES (?, ?)`, userID, c); err != nil {
			if missingUser(err) {
				return fmt.Errorf("recovery code: %w", gatehouse.ErrNotFound)
			}
			return err
		}
	}
	return nil
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

// missingUser reports whether err is a foreign key naming no user.
func missingUser(err error) bool {
	var se *msqlite.Error
	return errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
}

// UseRecoveryCode is one conditional UPDATE on the (user_id, code_mac)
// primary key. The MAC is looked up, not compared in constant time: it is
// keyed with a server secret, so how far a presented MAC matches a stored
// one tells a guesser nothing they can steer.
func (s *Store) UseRecoveryCode(ctx context.Context, userID string, code []byte, at time.Time) error {
	res, err := s.write.ExecContext(ctx, `UPDATE recovery_codes SET used_at = ?
		WHERE user_id = ? AND code_mac = ? AND used_at IS NULL`, micros(at), userID, code)
	return wrap("use recovery code", oneRow(res, err))
}

// RecoveryCodesLeft counts the user's unused codes.
func (s *Store) RecoveryCodesLeft(ctx context.Context, userID string) (int, error) {
	var n int
	if err := s.read.QueryRowContext(ctx, `SELECT count(*) FROM recovery_codes WHERE user_id = ? AND used_at IS NULL`,
		userID).Scan(&n); err != nil {
		return 0, wrap("recovery codes left", err)
	}
	return n, nil
}

// SpendSecretAttempt counts the attempt in one conditional UPDATE before the
// caller checks the guess, so concurrent guesses on one secret are counted
// one by one on the writer and never get past maxAttempts.
func (s *Store) SpendSecretAttempt(ctx context.Context, kind gatehouse.SecretKind, id string, mac []byte, now time.Time, maxAttempts int) (gatehouse.OneTimeSecret, error) {
	sec, err := scanSecret(s.write.QueryRowContext(ctx, `UPDATE one_time_secrets SET attempts = attempts + 1
		WHERE id = ?1 AND kind = ?2 AND mac = ?3 AND used_at IS NULL AND expires_at > ?4 AND attempts < ?5
		RETURNING `+secretCols,
		id, string(kind), mac, micros(now), int64(maxAttempts)))
	if err != nil {
		return gatehouse.OneTimeSecret{}, wrap("spend secret attempt", err)
	}
	return sec, nil
}
