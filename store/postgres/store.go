package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gatehouse/gatehouse"
)

// Column lists, in the order the scan helpers expect. The s./u.-qualified
// copies serve RotateSession's UPDATE ... FROM users, where bare names
// would be ambiguous.
const (
	userCols = `id, email, name, role, password_hash, disabled, created_at, tokens_valid_after, version, email_verified`

	sessionCols = `id, user_id, gen, created_at, rotated_at, last_used_at, expires_at,
		revoked_at, revoke_reason, user_agent, ip, transport, amr, client_id, scope, cert_thumbprint, parent_id`

	userColsU = `u.id, u.email, u.name, u.role, u.password_hash, u.disabled, u.created_at, u.tokens_valid_after, u.version, u.email_verified`

	// userReadCols and userReadColsU are what every read of a user returns:
	// the stored columns (userCols is what CreateUser writes) and the
	// computed TOTPEnabled, a correlated EXISTS on mfa_totp's primary key,
	// so reading a user by id stays a pair of primary-key lookups.
	userReadCols = userCols + `,
		EXISTS (SELECT 1 FROM mfa_totp t WHERE t.user_id = users.id AND t.confirmed_at IS NOT NULL)`
	userReadColsU = userColsU + `,
		EXISTS (SELECT 1 FROM mfa_totp t WHERE t.user_id = u.id AND t.confirmed_at IS NOT NULL)`

	sessionColsS = `s.id, s.user_id, s.gen, s.created_at, s.rotated_at, s.last_used_at, s.expires_at,
		s.revoked_at, s.revoke_reason, s.user_agent, s.ip, s.transport, s.amr, s.client_id, s.scope, s.cert_thumbprint, s.parent_id`

	// emailKeyConstraint is named in the schema so that only a clash on the
	// email, not on the primary key, reads as ErrEmailTaken.
	emailKeyConstraint = "users_email_key_unique"
)

// nullTime maps the zero time, which the domain uses for "none", to NULL.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// utc converts a scanned timestamp to UTC, keeping NULL as the zero time.
func utc(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// userRow receives one row of userReadCols.
type userRow struct {
	id, email, name, role, passwordHash string
	disabled                            bool
	createdAt                           time.Time
	tokensValidAfter                    *time.Time
	version                             int64
	emailVerified                       bool
	totpEnabled                         bool
}

func (r *userRow) dest() []any {
	return []any{&r.id, &r.email, &r.name, &r.role, &r.passwordHash, &r.disabled, &r.createdAt, &r.tokensValidAfter, &r.version, &r.emailVerified, &r.totpEnabled}
}

func (r *userRow) user() gatehouse.User {
	return gatehouse.User{
		ID:               r.id,
		Email:            r.email,
		Name:             r.name,
		Role:             gatehouse.Role(r.role),
		PasswordHash:     r.passwordHash,
		Disabled:         r.disabled,
		CreatedAt:        r.createdAt.UTC(),
		TokensValidAfter: utc(r.tokensValidAfter),
		Version:          uint64(r.version), // the column starts at 1 and only grows
		EmailVerified:    r.emailVerified,
		TOTPEnabled:      r.totpEnabled,
	}
}

// sessionRow receives one row of sessionCols.
type sessionRow struct {
	id, userID                                string
	gen                                       int64
	createdAt, rotatedAt, lastUsedAt, expires time.Time
	revokedAt                                 *time.Time
	revokeReason, userAgent, ip, transport    string
	amr                                       string
	clientID, scope, certThumbprint, parentID string
}

func (r *sessionRow) dest() []any {
	return []any{&r.id, &r.userID, &r.gen, &r.createdAt, &r.rotatedAt, &r.lastUsedAt, &r.expires,
		&r.revokedAt, &r.revokeReason, &r.userAgent, &r.ip, &r.transport, &r.amr, &r.clientID, &r.scope, &r.certThumbprint, &r.parentID}
}

func (r *sessionRow) session() gatehouse.Session {
	return gatehouse.Session{
		ID:           r.id,
		UserID:       r.userID,
		Gen:          uint64(r.gen), // the schema's CHECK keeps gen >= 1
		CreatedAt:    r.createdAt.UTC(),
		RotatedAt:    r.rotatedAt.UTC(),
		LastUsedAt:   r.lastUsedAt.UTC(),
		ExpiresAt:    r.expires.UTC(),
		RevokedAt:    utc(r.revokedAt),
		RevokeReason: r.revokeReason,
		UserAgent:    r.userAgent,
		IP:           r.ip,
		Transport:    gatehouse.Transport(r.transport),
		AMR:          splitAMR(r.amr),

		ClientID:       r.clientID,
		Scope:          r.scope,
		CertThumbprint: r.certThumbprint,
		ParentID:       r.parentID,
	}
}

// --- users ------------------------------------------------------------------

// CreateUser inserts u; a case-insensitive email clash is ErrEmailTaken.
func (s *Store) CreateUser(ctx context.Context, u gatehouse.User) error {
	return insertUser(ctx, s.pool, u)
}

// CreateUserWithMail inserts the user, then the mail and its secrets, in
// one transaction.
func (s *Store) CreateUserWithMail(ctx context.Context, u gatehouse.User, m gatehouse.OutboxMessage, with ...gatehouse.OneTimeSecret) error {
	b, err := mailBatch(m, with)
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := insertUser(ctx, tx, u); err != nil {
			return err
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if errors.Is(err, gatehouse.ErrEmailTaken) {
		return err
	}
	// Beginning or committing fails too when the database is gone: 503.
	return wrap("create user with mail", err)
}

// execer is what inserts need of a pool or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func insertUser(ctx context.Context, ex execer, u gatehouse.User) error {
	version, ok := versionArg(u.Version)
	if !ok {
		return fmt.Errorf("postgres: create user: version %d out of range", u.Version)
	}
	_, err := ex.Exec(ctx, `INSERT INTO users (`+userCols+`, email_key)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		u.ID, u.Email, u.Name, string(u.Role), u.PasswordHash, u.Disabled, u.CreatedAt, nullTime(u.TokensValidAfter),
		version, u.EmailVerified, gatehouse.EmailKey(u.Email))
	if emailTaken(err) {
		return fmt.Errorf("postgres: create user: %w", gatehouse.ErrEmailTaken)
	}
	return wrap("create user", err)
}

// UserByID returns the user or ErrNotFound.
func (s *Store) UserByID(ctx context.Context, id string) (gatehouse.User, error) {
	var r userRow
	err := s.pool.QueryRow(ctx, `SELECT `+userReadCols+` FROM users WHERE id = $1`, id).Scan(r.dest()...)
	if err != nil {
		return gatehouse.User{}, wrap("user by id", err)
	}
	return r.user(), nil
}

// UserByEmail finds a user by email, case-insensitively, by exact equality
// of the lowered forms (never LIKE, where _ and % would be wildcards).
func (s *Store) UserByEmail(ctx context.Context, email string) (gatehouse.User, error) {
	var r userRow
	err := s.pool.QueryRow(ctx, `SELECT `+userReadCols+` FROM users WHERE email_key = $1`, gatehouse.EmailKey(email)).Scan(r.dest()...)
	if err != nil {
		return gatehouse.User{}, wrap("user by email", err)
	}
	return r.user(), nil
}

// ListUsers returns up to limit users with ID greater than after, in
// ascending byte order of ID (the id column uses the "C" collation).
func (s *Store) ListUsers(ctx context.Context, after string, limit int) ([]gatehouse.User, error) {
	if limit <= 0 {
		// Postgres rejects a negative LIMIT; "up to 0 users" is none.
		return []gatehouse.User{}, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT `+userReadCols+` FROM users WHERE id > $1 ORDER BY id LIMIT $2`, after, limit)
	if err != nil {
		return nil, wrap("list users", err)
	}
	users := []gatehouse.User{}
	var r userRow
	_, err = pgx.ForEachRow(rows, r.dest(), func() error {
		users = append(users, r.user())
		return nil
	})
	if err != nil {
		return nil, wrap("list users", err)
	}
	return users, nil
}

// SetPasswordHash replaces a user's password hash and advances its
// version; with oldHash set, only while the stored hash is still oldHash.
func (s *Store) SetPasswordHash(ctx context.Context, userID, oldHash, hash string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE users SET password_hash = $2, version = version + 1
		WHERE id = $1 AND ($3 = '' OR password_hash = $3)`, userID, hash, oldHash)
	if err != nil {
		return wrap("set password hash", err)
	}
	if tag.RowsAffected() == 0 {
		return s.staleOrMissing(ctx, "set password hash", userID)
	}
	return nil
}

// RehashPassword swaps oldHash for hash, an encoding of the same password,
// leaving the version alone so logins in flight are not disturbed.
func (s *Store) RehashPassword(ctx context.Context, userID, oldHash, hash string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE users SET password_hash = $2 WHERE id = $1 AND password_hash = $3`,
		userID, hash, oldHash)
	if err != nil {
		return wrap("rehash password", err)
	}
	if tag.RowsAffected() == 0 {
		return s.staleOrMissing(ctx, "rehash password", userID)
	}
	return nil
}

// staleOrMissing tells why a conditional update of a user matched no row:
// the user is gone (ErrNotFound) or changed since it was read (ErrStale).
func (s *Store) staleOrMissing(ctx context.Context, op, userID string) error {
	var one int
	if err := s.pool.QueryRow(ctx, `SELECT 1 FROM users WHERE id = $1`, userID).Scan(&one); err != nil {
		return wrap(op, err) // pgx.ErrNoRows: ErrNotFound
	}
	return fmt.Errorf("postgres: %s: %w", op, gatehouse.ErrStale)
}

// UpdateUser applies the non-nil fields and raises tokens_valid_after in one
// statement. GREATEST ignores NULLs, so a NULL (zero) argument leaves the
// column alone and a NULL column takes the argument.
func (s *Store) UpdateUser(ctx context.Context, userID string, role *gatehouse.Role, disabled *bool, tokensValidAfter time.Time) (gatehouse.User, error) {
	var roleArg *string
	if role != nil {
		r := string(*role)
		roleArg = &r
	}
	var r userRow
	err := s.pool.QueryRow(ctx, `UPDATE users SET
			role = COALESCE($2::text, role),
			disabled = COALESCE($3::boolean, disabled),
			tokens_valid_after = GREATEST(tokens_valid_after, $4::timestamptz),
			version = version + 1
		WHERE id = $1
		RETURNING `+userReadCols,
		userID, roleArg, disabled, nullTime(tokensValidAfter)).Scan(r.dest()...)
	if err != nil {
		return gatehouse.User{}, wrap("update user", err)
	}
	return r.user(), nil
}

// --- sessions ---------------------------------------------------------------

// genArg converts a generation to the bigint column's type. Generations start
// at 1 and grow by one per refresh, so they never come near the limit; one
// that does is reported rather than wrapped around.
func genArg(gen uint64) (int64, bool) {
	if gen > math.MaxInt64 {
		return 0, false
	}
	return int64(gen), true
}

// CreateSession inserts s only while its user is enabled and at
// userVersion. FOR SHARE holds the user row until the insert commits: a
// concurrent UPDATE of the user (role, disabled, password) waits for it and
// its later revocation of the user's sessions sees the new one; an UPDATE
// that got the row first makes this statement re-check the row after it
// commits (READ COMMITTED), find another version and insert nothing.
func (s *Store) CreateSession(ctx context.Context, sess gatehouse.Session, userVersion uint64) error {
	gen, ok := genArg(sess.Gen)
	if !ok {
		return fmt.Errorf("postgres: create session: generation %d out of range", sess.Gen)
	}
	version, ok := versionArg(userVersion)
	if !ok {
		return fmt.Errorf("postgres: create session: %w", gatehouse.ErrStale)
	}
	amr, err := joinAMR(sess.AMR)
	if err != nil {
		return fmt.Errorf("postgres: create session: %w", err)
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO sessions (`+sessionCols+`)
		SELECT $1::text, $2::text, $3::bigint, $4::timestamptz, $5::timestamptz, $6::timestamptz, $7::timestamptz,
			$8::timestamptz, $9::text, $10::text, $11::text, $12::text, $14::text, $15::text, $16::text, $17::text, $18::text
		FROM users WHERE id = $2 AND version = $13 AND NOT disabled
		FOR SHARE`,
		sess.ID, sess.UserID, gen, sess.CreatedAt, sess.RotatedAt, sess.LastUsedAt, sess.ExpiresAt,
		nullTime(sess.RevokedAt), sess.RevokeReason, sess.UserAgent, sess.IP, string(sess.Transport), version, amr,
		sess.ClientID, sess.Scope, sess.CertThumbprint, sess.ParentID)
	if err != nil {
		return wrap("create session", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: create session: %w", gatehouse.ErrStale)
	}
	return nil
}

// versionArg converts a user version to the bigint column's type; a new
// user's zero version is stored as 1, the column's default.
func versionArg(v uint64) (int64, bool) {
	if v > math.MaxInt64 {
		return 0, false
	}
	return max(int64(v), 1), true
}

// DeleteEndedSessions deletes a batch of sessions that ended before the
// retention cutoffs. SKIP LOCKED lets several instances prune at once
// without waiting on each other's batches.
func (s *Store) DeleteEndedSessions(ctx context.Context, endedBefore, idleBefore time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM sessions WHERE id IN (
			SELECT id FROM sessions
			WHERE expires_at < $1 OR revoked_at < $1 OR last_used_at < $2
			LIMIT $3 FOR UPDATE SKIP LOCKED)`, endedBefore, idleBefore, limit)
	if err != nil {
		return 0, wrap("delete ended sessions", err)
	}
	return int(tag.RowsAffected()), nil
}

// SessionByID returns the session whatever its state, or ErrNotFound.
func (s *Store) SessionByID(ctx context.Context, id string) (gatehouse.Session, error) {
	var r sessionRow
	err := s.pool.QueryRow(ctx, `SELECT `+sessionCols+` FROM sessions WHERE id = $1`, id).Scan(r.dest()...)
	if err != nil {
		return gatehouse.Session{}, wrap("session by id", err)
	}
	return r.session(), nil
}

// RotateSession is the refresh hot path: one statement, one round trip. The
// conditions sit in the WHERE clause, so under concurrent rotations of one
// generation Postgres' row lock and re-check (READ COMMITTED re-evaluates the
// WHERE on the updated row) let exactly one UPDATE match; the others see
// gen already advanced and match nothing, which is ErrNotFound.
func (s *Store) RotateSession(ctx context.Context, id string, gen uint64, now, idleCutoff time.Time) (gatehouse.Session, gatehouse.User, error) {
	g, ok := genArg(gen)
	if !ok {
		// No stored session can be at a generation the column cannot hold.
		return gatehouse.Session{}, gatehouse.User{}, fmt.Errorf("postgres: rotate session: %w", gatehouse.ErrNotFound)
	}
	var sr sessionRow
	var ur userRow
	err := s.pool.QueryRow(ctx, `UPDATE sessions s
		SET gen = s.gen + 1, rotated_at = $3, last_used_at = $3
		FROM users u
		WHERE s.id = $1 AND s.gen = $2 AND s.revoked_at IS NULL
			AND s.expires_at > $3 AND s.last_used_at > $4
			AND u.id = s.user_id AND NOT u.disabled
		RETURNING `+sessionColsS+`, `+userReadColsU,
		id, g, now, idleCutoff).Scan(append(sr.dest(), ur.dest()...)...)
	if err != nil {
		return gatehouse.Session{}, gatehouse.User{}, wrap("rotate session", err)
	}
	return sr.session(), ur.user(), nil
}

// TouchSession sets last_used_at on a session that is neither revoked nor
// past its absolute expiry, or returns ErrNotFound.
func (s *Store) TouchSession(ctx context.Context, id string, now time.Time) error {
	tag, err := s.pool.Exec(ctx, `UPDATE sessions SET last_used_at = $2
		WHERE id = $1 AND revoked_at IS NULL AND expires_at > $2`, id, now)
	if err != nil {
		return wrap("touch session", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: touch session: %w", gatehouse.ErrNotFound)
	}
	return nil
}

// ListSessions returns the user's live sessions, newest first.
func (s *Store) ListSessions(ctx context.Context, userID string, now, idleCutoff time.Time) ([]gatehouse.Session, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+sessionCols+` FROM sessions
		WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 AND last_used_at > $3
		ORDER BY created_at DESC, id DESC`, userID, now, idleCutoff)
	if err != nil {
		return nil, wrap("list sessions", err)
	}
	sessions := []gatehouse.Session{}
	var r sessionRow
	_, err = pgx.ForEachRow(rows, r.dest(), func() error {
		sessions = append(sessions, r.session())
		return nil
	})
	if err != nil {
		return nil, wrap("list sessions", err)
	}
	return sessions, nil
}

// RevokeSession revokes one session and logs it in a single statement: a
// data-modifying CTE is atomic, so the session is never revoked without its
// log entry or the other way round. Concurrent calls serialise on the row
// lock and only the first still finds revoked_at NULL.
func (s *Store) RevokeSession(ctx context.Context, id, reason string, now, logExpiry time.Time) error {
	tag, err := s.pool.Exec(ctx, `WITH revoked AS (
			UPDATE sessions SET revoked_at = $3, revoke_reason = $2
			WHERE id = $1 AND revoked_at IS NULL
			RETURNING id
		)
		INSERT INTO revocations (kind, subject, at, expires_at)
		SELECT $5::text, id, $3::timestamptz, $4::timestamptz FROM revoked`,
		id, reason, now, logExpiry, string(gatehouse.RevokeSession))
	if err != nil {
		return wrap("revoke session", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: revoke session: %w", gatehouse.ErrNotFound)
	}
	return nil
}

// RevokeUserSessions revokes every not-yet-revoked session of the user but
// keep, logging one entry per session, in a single atomic statement. It
// returns the revoked ids (sorted, for stable logs).
func (s *Store) RevokeUserSessions(ctx context.Context, userID, keep, reason string, now, logExpiry time.Time) ([]string, error) {
	rows, err := s.pool.Query(ctx, `WITH revoked AS (
			UPDATE sessions SET revoked_at = $4, revoke_reason = $3
			WHERE user_id = $1 AND id <> $2 AND revoked_at IS NULL
			RETURNING id
		), logged AS (
			INSERT INTO revocations (kind, subject, at, expires_at)
			SELECT $6::text, id, $4::timestamptz, $5::timestamptz FROM revoked
			RETURNING subject
		)
		SELECT subject FROM logged ORDER BY subject`,
		userID, keep, reason, now, logExpiry, string(gatehouse.RevokeSession))
	if err != nil {
		return nil, wrap("revoke user sessions", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, wrap("revoke user sessions", err)
	}
	return ids, nil
}

// --- revocation log ---------------------------------------------------------

// AddRevocation appends r to the log; the trigger of migration 0008 gives
// it its seq.
func (s *Store) AddRevocation(ctx context.Context, r gatehouse.Revocation) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO revocations (kind, subject, at, expires_at) VALUES ($1, $2, $3, $4)`,
		string(r.Kind), r.Subject, r.At, r.ExpiresAt)
	return wrap("add revocation", err)
}

// RevocationsAfter returns live log entries past the cursor after, in seq
// order. seq is assigned by a trigger from a counter row that serialises
// revoking transactions until they commit (migration 0008), so one snapshot
// never holds seq n without every seq below it: reading "seq > cursor"
// skips nothing.
func (s *Store) RevocationsAfter(ctx context.Context, after int64, now time.Time, limit int) ([]gatehouse.Revocation, error) {
	rows, err := s.pool.Query(ctx, `SELECT seq, kind, subject, at, expires_at FROM revocations
		WHERE seq > $1 AND expires_at > $2 ORDER BY seq LIMIT $3`, after, now, limit)
	if err != nil {
		return nil, wrap("revocations after", err)
	}
	revs := []gatehouse.Revocation{}
	var (
		seq           int64
		kind, subject string
		at, expires   time.Time
	)
	_, err = pgx.ForEachRow(rows, []any{&seq, &kind, &subject, &at, &expires}, func() error {
		revs = append(revs, gatehouse.Revocation{
			Kind:      gatehouse.RevocationKind(kind),
			Subject:   subject,
			At:        at.UTC(),
			ExpiresAt: expires.UTC(),
			Seq:       seq,
		})
		return nil
	})
	if err != nil {
		return nil, wrap("revocations after", err)
	}
	return revs, nil
}

// PruneRevocations deletes log entries that expired before now.
func (s *Store) PruneRevocations(ctx context.Context, now time.Time) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM revocations WHERE expires_at < $1`, now)
	return wrap("prune revocations", err)
}

// --- signing keys -----------------------------------------------------------

// CreateSigningKey stores k.
func (s *Store) CreateSigningKey(ctx context.Context, k gatehouse.SigningKey) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO signing_keys (id, algorithm, sealed, created_at) VALUES ($1, $2, $3, $4)`,
		k.ID, k.Algorithm, k.Sealed, k.CreatedAt)
	return wrap("create signing key", err)
}

// SigningKeys returns every key, oldest first. Each Sealed slice is freshly
// allocated by the scan, so callers may modify it.
func (s *Store) SigningKeys(ctx context.Context) ([]gatehouse.SigningKey, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, algorithm, sealed, created_at FROM signing_keys ORDER BY created_at, id`)
	if err != nil {
		return nil, wrap("signing keys", err)
	}
	keys := []gatehouse.SigningKey{}
	for rows.Next() {
		var k gatehouse.SigningKey
		if err := rows.Scan(&k.ID, &k.Algorithm, &k.Sealed, &k.CreatedAt); err != nil {
			rows.Close()
			return nil, wrap("signing keys", err)
		}
		k.CreatedAt = k.CreatedAt.UTC()
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("signing keys", err)
	}
	return keys, nil
}

// emailTaken reports whether err is a clash on the unique email key (and
// not, say, on the primary key).
func emailTaken(err error) bool {
	pgErr, ok := asPgError(err)
	return ok && pgErr.Code == "23505" && pgErr.ConstraintName == emailKeyConstraint
}

// joinAMR stores a session's sign-in methods space-separated. A method that
// is empty or holds a space would come back as something else, so it is
// refused rather than stored.
func joinAMR(amr []string) (string, error) {
	for _, m := range amr {
		if m == "" || strings.ContainsFunc(m, unicode.IsSpace) {
			return "", fmt.Errorf("amr method %q is empty or contains a space", m)
		}
	}
	return strings.Join(amr, " "), nil
}

// splitAMR reverses joinAMR; no methods is nil.
func splitAMR(s string) []string { return strings.Fields(s) }

// asPgError extracts the server's error, if err carries one.
func asPgError(err error) (*pgconn.PgError, bool) {
	var pgErr *pgconn.PgError
	if err != nil && errors.As(err, &pgErr) {
		return pgErr, true
	}
	return nil, false
}
