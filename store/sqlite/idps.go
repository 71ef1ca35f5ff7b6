package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/gatehouse/gatehouse"
)

// Identity providers and identities. Every write goes through the one
// writer connection, so the conditional delete of DeleteIdentity (which
// reads the user's other ways in) is atomic against every other write.

var _ gatehouse.IdPStore = (*Store)(nil)

const (
	providerCols = `name, kind, display_name, issuer, client_id, sealed_secret, scopes,
		auth_url, token_url, userinfo_url, no_signup, created_at, updated_at`
	identityCols = `id, provider, subject, user_id, email, created_at`
)

func scanProvider(row scanner) (gatehouse.IdentityProvider, error) {
	var (
		p                gatehouse.IdentityProvider
		kind, scopes     string
		noSignup         int64
		created, updated int64
	)
	if err := row.Scan(&p.Name, &kind, &p.DisplayName, &p.Issuer, &p.ClientID, &p.SealedSecret, &scopes,
		&p.AuthURL, &p.TokenURL, &p.UserinfoURL, &noSignup, &created, &updated); err != nil {
		return gatehouse.IdentityProvider{}, err
	}
	p.Kind, p.Scopes, p.NoSignup = gatehouse.ProviderKind(kind), strings.Fields(scopes), noSignup == 1
	p.CreatedAt, p.UpdatedAt = fromMicros(created), fromMicros(updated)
	return p, nil
}

func scanIdentity(row scanner) (gatehouse.Identity, error) {
	var (
		i       gatehouse.Identity
		created int64
	)
	if err := row.Scan(&i.ID, &i.Provider, &i.Subject, &i.UserID, &i.Email, &created); err != nil {
		return gatehouse.Identity{}, err
	}
	i.CreatedAt = fromMicros(created)
	return i, nil
}

// PutIdentityProvider upserts p in one transaction that first reads the
// stored kind and issuer, so identities of another issuer never survive
// under the provider's name.
func (s *Store) PutIdentityProvider(ctx context.Context, p gatehouse.IdentityProvider) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return wrap("put identity provider", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	var kind, issuer string
	err = tx.QueryRowContext(ctx, `SELECT kind, issuer FROM idp_providers WHERE name = ?`, p.Name).Scan(&kind, &issuer)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return wrap("put identity provider", err)
	case kind != string(p.Kind) || issuer != p.Issuer:
		if _, err := tx.ExecContext(ctx, `DELETE FROM identities WHERE provider = ?`, p.Name); err != nil {
			return wrap("put identity provider: drop identities", err)
		}
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO idp_providers (`+providerCols+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, display_name = excluded.display_name,
			issuer = excluded.issuer, client_id = excluded.client_id, sealed_secret = excluded.sealed_secret,
			scopes = excluded.scopes, auth_url = excluded.auth_url, token_url = excluded.token_url,
			userinfo_url = excluded.userinfo_url, no_signup = excluded.no_signup, updated_at = excluded.updated_at`,
		p.Name, string(p.Kind), p.DisplayName, p.Issuer, p.ClientID, blob(p.SealedSecret), strings.Join(p.Scopes, " "),
		p.AuthURL, p.TokenURL, p.UserinfoURL, boolInt(p.NoSignup), micros(p.CreatedAt), micros(p.UpdatedAt))
	if err != nil {
		return wrap("put identity provider", err)
	}
	return wrap("put identity provider: commit", tx.Commit())
}

// IdentityProvider reads one provider by name.
func (s *Store) IdentityProvider(ctx context.Context, name string) (gatehouse.IdentityProvider, error) {
	p, err := scanProvider(s.read.QueryRowContext(ctx, `SELECT `+providerCols+` FROM idp_providers WHERE name = ?`, name))
	if err != nil {
		return gatehouse.IdentityProvider{}, wrap("identity provider", err)
	}
	return p, nil
}

// IdentityProviders lists every provider by name.
func (s *Store) IdentityProviders(ctx context.Context) ([]gatehouse.IdentityProvider, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+providerCols+` FROM idp_providers ORDER BY name`)
	if err != nil {
		return nil, wrap("identity providers", err)
	}
	defer rows.Close()
	var out []gatehouse.IdentityProvider
	for rows.Next() {
		p, err := scanProvider(rows)
		if err != nil {
			return nil, wrap("identity providers", err)
		}
		out = append(out, p)
	}
	return out, wrap("identity providers", rows.Err())
}

// DeleteIdentityProvider deletes the provider; the foreign key's cascade
// deletes its identities.
func (s *Store) DeleteIdentityProvider(ctx context.Context, name string) error {
	res, err := s.write.ExecContext(ctx, `DELETE FROM idp_providers WHERE name = ?`, name)
	return wrap("delete identity provider", oneRow(res, err))
}

// identityTaken reports whether err is a clash on (provider, subject).
func identityTaken(err error) bool {
	var se *msqlite.Error
	return errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE &&
		strings.Contains(se.Error(), "identities.provider")
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func insertIdentity(ctx context.Context, db execer, i gatehouse.Identity) error {
	_, err := db.ExecContext(ctx, `INSERT INTO identities (`+identityCols+`) VALUES (?, ?, ?, ?, ?, ?)`,
		i.ID, i.Provider, i.Subject, i.UserID, i.Email, micros(i.CreatedAt))
	switch {
	case err == nil:
		return nil
	case identityTaken(err):
		return fmt.Errorf("sqlite: create identity: %w", gatehouse.ErrStale)
	case missingUser(err): // any foreign key: the user or the provider
		return fmt.Errorf("sqlite: create identity: %w", gatehouse.ErrNotFound)
	}
	return wrap("create identity", err)
}

// CreateIdentity inserts i.
func (s *Store) CreateIdentity(ctx context.Context, i gatehouse.Identity) error {
	return insertIdentity(ctx, s.write, i)
}

// CreateUserWithIdentity inserts a new user and its first identity in one
// transaction.
func (s *Store) CreateUserWithIdentity(ctx context.Context, u gatehouse.User, i gatehouse.Identity) error {
	version, err := versionArg(u.Version)
	if err != nil {
		return fmt.Errorf("sqlite: create user with identity: %w", err)
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return wrap("create user with identity", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	_, err = tx.ExecContext(ctx, `INSERT INTO users (`+userCols+`, email_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		u.ID, u.Email, u.Name, string(u.Role), u.PasswordHash, boolInt(u.Disabled), micros(u.CreatedAt), nullMicros(u.TokensValidAfter),
		version, boolInt(u.EmailVerified), gatehouse.EmailKey(u.Email))
	if err != nil {
		if emailTaken(err) {
			return fmt.Errorf("sqlite: create user with identity: %w", gatehouse.ErrEmailTaken)
		}
		return wrap("create user with identity", err)
	}
	if err := insertIdentity(ctx, tx, i); err != nil {
		return err
	}
	return wrap("create user with identity: commit", tx.Commit())
}

// IdentityBySubject looks the identity up on the (provider, subject)
// unique index.
func (s *Store) IdentityBySubject(ctx context.Context, provider, subject string) (gatehouse.Identity, error) {
	i, err := scanIdentity(s.read.QueryRowContext(ctx, `SELECT `+identityCols+` FROM identities
		WHERE provider = ? AND subject = ?`, provider, subject))
	if err != nil {
		return gatehouse.Identity{}, wrap("identity by subject", err)
	}
	return i, nil
}

// Identities lists the user's identities, oldest first (the id breaks
// ties).
func (s *Store) Identities(ctx context.Context, userID string) ([]gatehouse.Identity, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+identityCols+` FROM identities WHERE user_id = ?
		ORDER BY created_at, id`, userID)
	if err != nil {
		return nil, wrap("identities", err)
	}
	defer rows.Close()
	var out []gatehouse.Identity
	for rows.Next() {
		i, err := scanIdentity(rows)
		if err != nil {
			return nil, wrap("identities", err)
		}
		out = append(out, i)
	}
	return out, wrap("identities", rows.Err())
}

// DeleteIdentity is one conditional DELETE that checks the user's other
// ways in; only when it matches nothing does a second read tell the last
// way in (ErrStale) from an identity that is not the user's.
func (s *Store) DeleteIdentity(ctx context.Context, userID, id string) error {
	res, err := s.write.ExecContext(ctx, `DELETE FROM identities WHERE id = ?1 AND user_id = ?2 AND (
			EXISTS (SELECT 1 FROM users WHERE users.id = ?2 AND users.password_hash <> '')
			OR EXISTS (SELECT 1 FROM passkeys WHERE passkeys.user_id = ?2)
			OR EXISTS (SELECT 1 FROM identities other WHERE other.user_id = ?2 AND other.id <> ?1))`, id, userID)
	err = oneRow(res, err)
	if err == nil {
		return nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return wrap("delete identity", err)
	}
	var one int
	if err := s.write.QueryRowContext(ctx, `SELECT 1 FROM identities WHERE id = ? AND user_id = ?`, id, userID).Scan(&one); err != nil {
		return wrap("delete identity", err) // sql.ErrNoRows: ErrNotFound
	}
	return fmt.Errorf("sqlite: delete identity: %w", gatehouse.ErrStale)
}
