// Package sqlite is the gatehouse.Store on an embedded SQLite database
// (modernc.org/sqlite, pure Go), the zero-configuration backend.
//
// SQLite allows one writer at a time per database file. Rather than letting
// concurrent writers collide and retry on SQLITE_BUSY, the Store funnels all
// of its writes through a single connection whose transactions begin
// IMMEDIATE (they take the write lock up front, so a read-then-write
// transaction can never deadlock on lock upgrade), and serves reads from a
// separate pool that WAL mode lets run alongside the writer. busy_timeout
// covers the remaining contention: other processes on the same file, such as
// `gatehouse user create` next to a running server.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/gatehouse/gatehouse"
	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Memory is the path that opens a private in-memory database.
const Memory = ":memory:"

// busyTimeoutMS bounds how long a statement waits for another process's lock
// before failing with SQLITE_BUSY (reported as gatehouse.ErrUnavailable).
const busyTimeoutMS = 5000

// Store is a gatehouse.Store on one SQLite database. It is safe for
// concurrent use, also by several processes sharing the file.
type Store struct {
	path  string
	write *sql.DB // one connection, BEGIN IMMEDIATE
	read  *sql.DB // read-only pool; the same as write for :memory:

	// The statements of the refresh and request paths, prepared once
	// (database/sql re-prepares them per connection lazily and caches them).
	rotate      *sql.Stmt // write
	userByIDW   *sql.Stmt // write: the user read inside the rotation
	sessionByID *sql.Stmt // read
	userByID    *sql.Stmt // read
	userByEmail *sql.Stmt // read

	// Group commit of rotations (rotate.go).
	rotations   chan *rotateReq
	quit        chan struct{}
	stopOnce    sync.Once
	rotatorDone chan struct{}
}

var _ gatehouse.Store = (*Store)(nil)

// Open opens (creating if needed) the database at path, a file path or
// ":memory:", and brings its schema up to date.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("sqlite: empty database path")
	}
	s := &Store{path: path}
	var err error
	if path == Memory {
		// Every connection to ":memory:" is a separate database, and a
		// shared cache brings table-level locks that busy_timeout does not
		// cover; so one connection serves reads and writes. Nothing else
		// can open this database, so one connection loses nothing.
		s.write, err = sql.Open("sqlite", Memory+"?_pragma=foreign_keys(1)&_txlock=immediate")
		if err != nil {
			return nil, fmt.Errorf("sqlite: open: %w", err)
		}
		s.write.SetMaxOpenConns(1)
		s.write.SetMaxIdleConns(1)
		s.write.SetConnMaxLifetime(0) // closing the connection would drop the database
		s.write.SetConnMaxIdleTime(0)
		s.read = s.write
	} else {
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
		}
		uri := fileURI(abs)
		// synchronous stays FULL (SQLite's default): with NORMAL a power
		// loss may roll back committed revocations, and a logout that
		// comes undone is a security bug, not a performance trade-off.
		s.write, err = sql.Open("sqlite", uri+fmt.Sprintf(
			"?_pragma=busy_timeout(%d)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)&_txlock=immediate",
			busyTimeoutMS))
		if err != nil {
			return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
		}
		s.write.SetMaxOpenConns(1)
		s.write.SetMaxIdleConns(1)
		// query_only makes a bug that writes through the read pool fail
		// loudly instead of racing the writer for the lock.
		s.read, err = sql.Open("sqlite", uri+fmt.Sprintf(
			"?_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)&_query_only=1", busyTimeoutMS))
		if err != nil {
			s.write.Close()
			return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
		}
		n := max(4, runtime.GOMAXPROCS(0))
		s.read.SetMaxOpenConns(n)
		s.read.SetMaxIdleConns(n)
	}
	if err := s.init(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// fileURI turns an absolute path into a "file:" URI. SQLite percent-decodes
// URIs and the driver splits its own parameters at the first '?', so the
// characters that mean something in a URI are escaped.
func fileURI(abs string) string {
	r := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")
	return "file:" + r.Replace(filepath.ToSlash(abs))
}

func (s *Store) init(ctx context.Context) error {
	// The writer first: it creates the file, switches it to WAL and
	// migrates, all before a reader opens a schema that is not there yet.
	//
	// Each step is retried while the file is busy: several processes
	// starting at once on a new file (two servers, or a server and
	// `gatehouse user create`) race to switch it to WAL, and SQLite answers
	// some of those lock conflicts with SQLITE_BUSY at once, without
	// consulting busy_timeout. The migration itself waits its turn under
	// BEGIN IMMEDIATE and re-reads the schema version inside its
	// transaction, so a retry after another process migrated does nothing.
	if err := retryBusy(ctx, func() error { return s.write.PingContext(ctx) }); err != nil {
		return fmt.Errorf("sqlite: open %s: %w", s.path, err)
	}
	if err := retryBusy(ctx, func() error { return migrate(ctx, s.write) }); err != nil {
		return err
	}
	if err := retryBusy(ctx, func() error { return s.read.PingContext(ctx) }); err != nil {
		return fmt.Errorf("sqlite: open %s for reading: %w", s.path, err)
	}
	prepare := func(db *sql.DB, dst **sql.Stmt, query string) error {
		st, err := db.PrepareContext(ctx, query)
		if err != nil {
			return fmt.Errorf("sqlite: prepare %q: %w", query, err)
		}
		*dst = st
		return nil
	}
	err := errors.Join(
		prepare(s.write, &s.rotate, `UPDATE sessions
			SET gen = gen + 1, rotated_at = ?1, last_used_at = ?1
			WHERE id = ?2 AND gen = ?3 AND revoked_at IS NULL AND expires_at > ?1 AND last_used_at > ?4
			  AND (SELECT disabled FROM users WHERE users.id = sessions.user_id) = 0
			RETURNING `+sessionCols),
		prepare(s.write, &s.userByIDW, `SELECT `+userReadCols+` FROM users WHERE id = ?`),
		prepare(s.read, &s.sessionByID, `SELECT `+sessionCols+` FROM sessions WHERE id = ?`),
		prepare(s.read, &s.userByID, `SELECT `+userReadCols+` FROM users WHERE id = ?`),
		prepare(s.read, &s.userByEmail, `SELECT `+userReadCols+` FROM users WHERE email_key = ?`),
	)
	if err != nil {
		return err
	}
	s.startRotator()
	return nil
}

// retryBusy runs f until it succeeds, fails with something other than a
// busy or locked database, or busyTimeoutMS have passed.
func retryBusy(ctx context.Context, f func() error) error {
	deadline := time.Now().Add(busyTimeoutMS * time.Millisecond)
	wait := 5 * time.Millisecond
	for {
		err := f()
		if err == nil || !isBusy(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait + time.Duration(rand.Int64N(int64(wait)))):
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

func isBusy(err error) bool {
	var se *msqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return true
	}
	return false
}

// Path returns the path the store was opened with.
func (s *Store) Path() string { return s.path }

// Ping checks that both pools answer.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.write.PingContext(ctx); err != nil {
		return wrap("ping", err)
	}
	var one int
	if err := s.read.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		return wrap("ping", err)
	}
	return nil
}

// Close closes the statements and both pools.
func (s *Store) Close() error {
	s.stopRotator() // before the statements it uses are closed
	var errs []error
	for _, st := range []*sql.Stmt{s.rotate, s.userByIDW, s.sessionByID, s.userByID, s.userByEmail} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	// Readers before the writer, so that the writer's connection is the
	// last one and checkpoints the WAL into the main file as it closes.
	if s.read != nil && s.read != s.write {
		errs = append(errs, s.read.Close())
	}
	if s.write != nil {
		errs = append(errs, s.write.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sqlite: close: %w", err)
	}
	return nil
}

// --- users ------------------------------------------------------------------

// userCols are the stored columns of a user, as CreateUser writes them.
// userReadCols, what every read returns (in scanUser's order), adds the
// computed TOTPEnabled: a correlated EXISTS on mfa_totp's primary key, so
// reading a user by id stays a pair of primary-key lookups.
const (
	userCols     = `id, email, name, role, password_hash, disabled, created_at, tokens_valid_after, version, email_verified`
	userReadCols = userCols + `,
		EXISTS (SELECT 1 FROM mfa_totp WHERE mfa_totp.user_id = users.id AND mfa_totp.confirmed_at IS NOT NULL)`
)

func (s *Store) CreateUser(ctx context.Context, u gatehouse.User) error {
	return insertUser(ctx, s.write, u)
}

func (s *Store) CreateUserWithMail(ctx context.Context, u gatehouse.User, m gatehouse.OutboxMessage, with ...gatehouse.OneTimeSecret) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return wrap("create user with mail", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	if err := insertUser(ctx, tx, u); err != nil {
		return err
	}
	if err := insertMail(ctx, tx, m, with); err != nil {
		return err
	}
	return wrap("create user with mail: commit", tx.Commit())
}

func insertUser(ctx context.Context, ex execer, u gatehouse.User) error {
	version, err := versionArg(u.Version)
	if err != nil {
		return fmt.Errorf("sqlite: create user: %w", err)
	}
	_, err = ex.ExecContext(ctx, `INSERT INTO users (`+userCols+`, email_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		u.ID, u.Email, u.Name, string(u.Role), u.PasswordHash, boolInt(u.Disabled), micros(u.CreatedAt), nullMicros(u.TokensValidAfter),
		version, boolInt(u.EmailVerified), gatehouse.EmailKey(u.Email))
	if err != nil {
		if emailTaken(err) {
			return fmt.Errorf("sqlite: create user: %w", gatehouse.ErrEmailTaken)
		}
		return wrap("create user", err)
	}
	return nil
}

func (s *Store) UserByID(ctx context.Context, id string) (gatehouse.User, error) {
	u, err := scanUser(s.userByID.QueryRowContext(ctx, id))
	if err != nil {
		return gatehouse.User{}, wrap("user by id", err)
	}
	return u, nil
}

func (s *Store) UserByEmail(ctx context.Context, email string) (gatehouse.User, error) {
	u, err := scanUser(s.userByEmail.QueryRowContext(ctx, gatehouse.EmailKey(email)))
	if err != nil {
		return gatehouse.User{}, wrap("user by email", err)
	}
	return u, nil
}

func (s *Store) ListUsers(ctx context.Context, after string, limit int) ([]gatehouse.User, error) {
	if limit <= 0 {
		// SQLite reads a negative LIMIT as "no limit".
		return nil, nil
	}
	// ORDER BY id is byte order: ids are compared with the BINARY collation.
	rows, err := s.read.QueryContext(ctx, `SELECT `+userReadCols+` FROM users WHERE id > ? ORDER BY id LIMIT ?`, after, limit)
	if err != nil {
		return nil, wrap("list users", err)
	}
	defer rows.Close()
	var us []gatehouse.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, wrap("list users", err)
		}
		us = append(us, u)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("list users", err)
	}
	return us, nil
}

func (s *Store) SetPasswordHash(ctx context.Context, userID, oldHash, hash string) error {
	res, err := s.write.ExecContext(ctx, `UPDATE users SET password_hash = ?1, version = version + 1
		WHERE id = ?2 AND (?3 = '' OR password_hash = ?3)`, hash, userID, oldHash)
	if err := oneRow(res, err); err != nil {
		return s.staleOrMissing(ctx, "set password hash", userID, err)
	}
	return nil
}

func (s *Store) RehashPassword(ctx context.Context, userID, oldHash, hash string) error {
	res, err := s.write.ExecContext(ctx, `UPDATE users SET password_hash = ?1 WHERE id = ?2 AND password_hash = ?3`,
		hash, userID, oldHash)
	if err := oneRow(res, err); err != nil {
		return s.staleOrMissing(ctx, "rehash password", userID, err)
	}
	return nil
}

// staleOrMissing tells why a conditional update of a user matched no row:
// the user is gone (ErrNotFound) or changed since it was read (ErrStale).
func (s *Store) staleOrMissing(ctx context.Context, op, userID string, err error) error {
	if !errors.Is(err, sql.ErrNoRows) {
		return wrap(op, err)
	}
	var one int
	if err := s.write.QueryRowContext(ctx, `SELECT 1 FROM users WHERE id = ?`, userID).Scan(&one); err != nil {
		return wrap(op, err) // sql.ErrNoRows: ErrNotFound
	}
	return fmt.Errorf("sqlite: %s: %w", op, gatehouse.ErrStale)
}

func (s *Store) UpdateUser(ctx context.Context, userID string, role *gatehouse.Role, disabled *bool, tokensValidAfter time.Time) (gatehouse.User, error) {
	var roleArg, disabledArg any // NULL: leave the column alone
	if role != nil {
		roleArg = string(*role)
	}
	if disabled != nil {
		disabledArg = boolInt(*disabled)
	}
	// One statement, so a concurrent update cannot interleave between a
	// read and a write and lower TokensValidAfter.
	u, err := scanUser(s.write.QueryRowContext(ctx, `UPDATE users SET
			role = coalesce(?1, role),
			disabled = coalesce(?2, disabled),
			tokens_valid_after = CASE WHEN ?3 IS NULL OR tokens_valid_after >= ?3 THEN tokens_valid_after ELSE ?3 END,
			version = version + 1
		WHERE id = ?4
		RETURNING `+userReadCols,
		roleArg, disabledArg, nullMicros(tokensValidAfter), userID))
	if err != nil {
		return gatehouse.User{}, wrap("update user", err)
	}
	return u, nil
}

// --- sessions ---------------------------------------------------------------

const sessionCols = `id, user_id, gen, created_at, rotated_at, last_used_at, expires_at, revoked_at, revoke_reason, user_agent, ip, transport, amr,
	client_id, scope, cert_thumbprint, parent_id`

// CreateSession inserts the session only while its user is enabled and at
// userVersion; every write goes through the one writer connection, so the
// check and the insert are one step no change of the user can come between.
func (s *Store) CreateSession(ctx context.Context, sess gatehouse.Session, userVersion uint64) error {
	if sess.Gen > math.MaxInt64 {
		return fmt.Errorf("sqlite: create session: generation %d out of range", sess.Gen)
	}
	version, err := versionArg(userVersion)
	if err != nil {
		return fmt.Errorf("sqlite: create session: %w", err)
	}
	amr, err := joinAMR(sess.AMR)
	if err != nil {
		return fmt.Errorf("sqlite: create session: %w", err)
	}
	res, err := s.write.ExecContext(ctx, `INSERT INTO sessions (`+sessionCols+`)
		SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?14, ?15, ?16, ?17, ?18
		WHERE EXISTS (SELECT 1 FROM users WHERE id = ?2 AND version = ?13 AND disabled = 0)`,
		sess.ID, sess.UserID, int64(sess.Gen), micros(sess.CreatedAt), micros(sess.RotatedAt), micros(sess.LastUsedAt),
		micros(sess.ExpiresAt), nullMicros(sess.RevokedAt), sess.RevokeReason, sess.UserAgent, sess.IP, string(sess.Transport),
		version, amr, sess.ClientID, sess.Scope, sess.CertThumbprint, sess.ParentID)
	if err := oneRow(res, err); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite: create session: %w", gatehouse.ErrStale)
		}
		return wrap("create session", err)
	}
	return nil
}

// DeleteEndedSessions deletes a batch of sessions that ended before the
// retention cutoffs; small batches keep the writer lock short.
func (s *Store) DeleteEndedSessions(ctx context.Context, endedBefore, idleBefore time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	res, err := s.write.ExecContext(ctx, `DELETE FROM sessions WHERE id IN (
			SELECT id FROM sessions
			WHERE expires_at < ?1 OR revoked_at < ?1 OR last_used_at < ?2
			LIMIT ?3)`, micros(endedBefore), micros(idleBefore), limit)
	if err != nil {
		return 0, wrap("delete ended sessions", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, wrap("delete ended sessions", err)
	}
	return int(n), nil
}

func (s *Store) SessionByID(ctx context.Context, id string) (gatehouse.Session, error) {
	sess, err := scanSession(s.sessionByID.QueryRowContext(ctx, id))
	if err != nil {
		return gatehouse.Session{}, wrap("session by id", err)
	}
	return sess, nil
}

// RotateSession is the compare-and-swap refresh rests on: the WHERE clause
// holds every condition, so of concurrent rotations of one generation exactly
// one matches the row and the rest find nothing to update.
func (s *Store) RotateSession(ctx context.Context, id string, gen uint64, now, idleCutoff time.Time) (gatehouse.Session, gatehouse.User, error) {
	if gen > math.MaxInt64 {
		// No stored generation is this large; int64(gen) would wrap.
		return gatehouse.Session{}, gatehouse.User{}, fmt.Errorf("sqlite: rotate session: %w", gatehouse.ErrNotFound)
	}
	// Run with whatever other rotations are queued, in one transaction
	// with one commit (group commit, rotate.go).
	r := &rotateReq{ctx: ctx, id: id, gen: int64(gen), now: micros(now), idleCutoff: micros(idleCutoff), done: make(chan struct{})}
	if err := s.enqueueRotation(ctx, r); err != nil {
		return gatehouse.Session{}, gatehouse.User{}, err
	}
	return r.sess, r.user, nil
}

func (s *Store) TouchSession(ctx context.Context, id string, now time.Time) error {
	res, err := s.write.ExecContext(ctx, `UPDATE sessions SET last_used_at = ?1
		WHERE id = ?2 AND revoked_at IS NULL AND expires_at > ?1`, micros(now), id)
	return wrap("touch session", oneRow(res, err))
}

func (s *Store) ListSessions(ctx context.Context, userID string, now, idleCutoff time.Time) ([]gatehouse.Session, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+sessionCols+` FROM sessions
		WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ? AND last_used_at > ?
		ORDER BY created_at DESC, id DESC`, userID, micros(now), micros(idleCutoff))
	if err != nil {
		return nil, wrap("list sessions", err)
	}
	defer rows.Close()
	var ss []gatehouse.Session
	for rows.Next() {
		sess, err := scanSession(rows)
		if err != nil {
			return nil, wrap("list sessions", err)
		}
		ss = append(ss, sess)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("list sessions", err)
	}
	return ss, nil
}

func (s *Store) RevokeSession(ctx context.Context, id, reason string, now, logExpiry time.Time) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return wrap("revoke session", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	res, err := tx.ExecContext(ctx, `UPDATE sessions SET revoked_at = ?, revoke_reason = ? WHERE id = ? AND revoked_at IS NULL`,
		micros(now), reason, id)
	if err := oneRow(res, err); err != nil {
		return wrap("revoke session", err)
	}
	if err := addRevocation(ctx, tx, gatehouse.Revocation{Kind: gatehouse.RevokeSession, Subject: id, At: now, ExpiresAt: logExpiry}); err != nil {
		return wrap("revoke session: log", err)
	}
	return wrap("revoke session: commit", tx.Commit())
}

func (s *Store) RevokeUserSessions(ctx context.Context, userID, keep, reason string, now, logExpiry time.Time) ([]string, error) {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return nil, wrap("revoke user sessions", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	rows, err := tx.QueryContext(ctx, `UPDATE sessions SET revoked_at = ?, revoke_reason = ?
		WHERE user_id = ? AND revoked_at IS NULL AND id <> ? RETURNING id`, micros(now), reason, userID, keep)
	if err != nil {
		return nil, wrap("revoke user sessions", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, wrap("revoke user sessions", err)
		}
		ids = append(ids, id)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, wrap("revoke user sessions", err)
	}
	for _, id := range ids {
		if err := addRevocation(ctx, tx, gatehouse.Revocation{Kind: gatehouse.RevokeSession, Subject: id, At: now, ExpiresAt: logExpiry}); err != nil {
			return nil, wrap("revoke user sessions: log", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, wrap("revoke user sessions: commit", err)
	}
	return ids, nil
}

// --- revocations ------------------------------------------------------------

func addRevocation(ctx context.Context, tx *sql.Tx, r gatehouse.Revocation) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO revocations (kind, subject, at, expires_at) VALUES (?, ?, ?, ?)`,
		string(r.Kind), r.Subject, micros(r.At), micros(r.ExpiresAt))
	return err
}

func (s *Store) AddRevocation(ctx context.Context, r gatehouse.Revocation) error {
	_, err := s.write.ExecContext(ctx, `INSERT INTO revocations (kind, subject, at, expires_at) VALUES (?, ?, ?, ?)`,
		string(r.Kind), r.Subject, micros(r.At), micros(r.ExpiresAt))
	return wrap("add revocation", err)
}

// RevocationsAfter returns live log entries past the cursor after, in seq
// order. SQLite has one writer at a time, so AUTOINCREMENT numbers are
// committed in order and "seq > cursor" skips nothing.
func (s *Store) RevocationsAfter(ctx context.Context, after int64, now time.Time, limit int) ([]gatehouse.Revocation, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT seq, kind, subject, at, expires_at FROM revocations
		WHERE seq > ? AND expires_at > ? ORDER BY seq LIMIT ?`, after, micros(now), limit)
	if err != nil {
		return nil, wrap("revocations after", err)
	}
	defer rows.Close()
	var rs []gatehouse.Revocation
	for rows.Next() {
		var (
			r         gatehouse.Revocation
			kind      string
			at, expAt int64
		)
		if err := rows.Scan(&r.Seq, &kind, &r.Subject, &at, &expAt); err != nil {
			return nil, wrap("revocations after", err)
		}
		r.Kind, r.At, r.ExpiresAt = gatehouse.RevocationKind(kind), fromMicros(at), fromMicros(expAt)
		rs = append(rs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("revocations after", err)
	}
	return rs, nil
}

func (s *Store) PruneRevocations(ctx context.Context, now time.Time) error {
	_, err := s.write.ExecContext(ctx, `DELETE FROM revocations WHERE expires_at < ?`, micros(now))
	return wrap("prune revocations", err)
}

// --- signing keys -----------------------------------------------------------

func (s *Store) CreateSigningKey(ctx context.Context, k gatehouse.SigningKey) error {
	sealed := k.Sealed
	if sealed == nil {
		sealed = []byte{} // NOT NULL: an empty blob, not NULL
	}
	_, err := s.write.ExecContext(ctx, `INSERT INTO signing_keys (id, algorithm, sealed, created_at) VALUES (?, ?, ?, ?)`,
		k.ID, k.Algorithm, sealed, micros(k.CreatedAt))
	return wrap("create signing key", err)
}

func (s *Store) SigningKeys(ctx context.Context) ([]gatehouse.SigningKey, error) {
	// rowid breaks ties between keys created in the same microsecond by
	// insertion order.
	rows, err := s.read.QueryContext(ctx, `SELECT id, algorithm, sealed, created_at FROM signing_keys ORDER BY created_at, rowid`)
	if err != nil {
		return nil, wrap("signing keys", err)
	}
	defer rows.Close()
	var ks []gatehouse.SigningKey
	for rows.Next() {
		var (
			k       gatehouse.SigningKey
			created int64
		)
		// Scanning into *[]byte copies, so callers own what they get.
		if err := rows.Scan(&k.ID, &k.Algorithm, &k.Sealed, &created); err != nil {
			return nil, wrap("signing keys", err)
		}
		k.CreatedAt = fromMicros(created)
		ks = append(ks, k)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("signing keys", err)
	}
	return ks, nil
}

// --- helpers ----------------------------------------------------------------

type scanner interface{ Scan(dest ...any) error }

func scanUser(row scanner) (gatehouse.User, error) {
	var (
		u        gatehouse.User
		role     string
		disabled int64
		created  int64
		tva      sql.NullInt64
		version  int64
		verified int64
		totp     int64
	)
	if err := row.Scan(&u.ID, &u.Email, &u.Name, &role, &u.PasswordHash, &disabled, &created, &tva, &version, &verified, &totp); err != nil {
		return gatehouse.User{}, err
	}
	u.Version, u.EmailVerified, u.TOTPEnabled = uint64(version), verified != 0, totp != 0
	u.Role, u.Disabled, u.CreatedAt, u.TokensValidAfter = gatehouse.Role(role), disabled != 0, fromMicros(created), fromNullMicros(tva)
	return u, nil
}

func scanSession(row scanner) (gatehouse.Session, error) {
	var (
		s                                  gatehouse.Session
		gen, created, rotated, used, expAt int64
		revoked                            sql.NullInt64
		transport, amr                     string
	)
	if err := row.Scan(&s.ID, &s.UserID, &gen, &created, &rotated, &used, &expAt, &revoked,
		&s.RevokeReason, &s.UserAgent, &s.IP, &transport, &amr, &s.ClientID, &s.Scope, &s.CertThumbprint, &s.ParentID); err != nil {
		return gatehouse.Session{}, err
	}
	s.AMR = splitAMR(amr)
	s.Gen = uint64(gen)
	s.CreatedAt, s.RotatedAt, s.LastUsedAt, s.ExpiresAt = fromMicros(created), fromMicros(rotated), fromMicros(used), fromMicros(expAt)
	s.RevokedAt, s.Transport = fromNullMicros(revoked), gatehouse.Transport(transport)
	return s, nil
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

// micros is how a time is stored: unix microseconds, which fits any time
// from year 1 (time.Time's zero) to far beyond 9999 in an int64.
func micros(t time.Time) int64 { return t.UnixMicro() }

// nullMicros stores the zero time as NULL ("none").
func nullMicros(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

func fromNullMicros(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromMicros(v.Int64)
}

// versionArg converts a user version to the INTEGER column's type. A new
// user's zero version is stored as 1, the column's default.
func versionArg(v uint64) (int64, error) {
	if v > math.MaxInt64 {
		return 0, fmt.Errorf("user version %d out of range", v)
	}
	return max(int64(v), 1), nil
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// oneRow turns "no row matched" of an UPDATE into sql.ErrNoRows.
func oneRow(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return sql.ErrNoRows
	}
	return nil
}

// wrap maps driver errors to the gatehouse sentinels and adds context; it
// returns nil for nil. A lock held past busy_timeout means the database is
// overloaded or held by another process: ErrUnavailable, so callers answer
// 503 rather than 500.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("sqlite: %s: %w", op, gatehouse.ErrNotFound)
	}
	var se *msqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return fmt.Errorf("sqlite: %s: %w: %w", op, gatehouse.ErrUnavailable, err)
		}
	}
	return fmt.Errorf("sqlite: %s: %w", op, err)
}
