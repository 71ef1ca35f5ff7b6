package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/gatehouse/gatehouse"
)

// Identity providers and identities. DeleteIdentity holds the user's row
// while it checks the user's other ways in, so two concurrent deletes of a
// user's last two identities queue on that lock and the second sees the
// first's commit: exactly one of them succeeds.

var _ gatehouse.IdPStore = (*Store)(nil)

const (
	providerCols = `name, kind, display_name, issuer, client_id, sealed_secret, scopes,
		auth_url, token_url, userinfo_url, no_signup, created_at, updated_at`
	identityCols = `id, provider, subject, user_id, email, created_at`

	// identitySubjectConstraint is named in the schema so that only a
	// clash on (provider, subject), not on the primary key, reads as
	// ErrStale.
	identitySubjectConstraint = "identities_provider_subject_unique"
)

func scanProvider(row pgx.Row) (gatehouse.IdentityProvider, error) {
	var (
		p            gatehouse.IdentityProvider
		kind, scopes string
	)
	if err := row.Scan(&p.Name, &kind, &p.DisplayName, &p.Issuer, &p.ClientID, &p.SealedSecret, &scopes,
		&p.AuthURL, &p.TokenURL, &p.UserinfoURL, &p.NoSignup, &p.CreatedAt, &p.UpdatedAt); err != nil {
		return gatehouse.IdentityProvider{}, err
	}
	p.Kind, p.Scopes = gatehouse.ProviderKind(kind), strings.Fields(scopes)
	p.CreatedAt, p.UpdatedAt = p.CreatedAt.UTC(), p.UpdatedAt.UTC()
	return p, nil
}

func scanIdentity(row pgx.Row) (gatehouse.Identity, error) {
	var i gatehouse.Identity
	if err := row.Scan(&i.ID, &i.Provider, &i.Subject, &i.UserID, &i.Email, &i.CreatedAt); err != nil {
		return gatehouse.Identity{}, err
	}
	i.CreatedAt = i.CreatedAt.UTC()
	return i, nil
}

// PutIdentityProvider upserts p in one transaction holding the stored row,
// so identities of another issuer never survive under the provider's name.
func (s *Store) PutIdentityProvider(ctx context.Context, p gatehouse.IdentityProvider) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var kind, issuer string
		err := tx.QueryRow(ctx, `SELECT kind, issuer FROM idp_providers WHERE name = $1 FOR UPDATE`, p.Name).Scan(&kind, &issuer)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return err
		case kind != string(p.Kind) || issuer != p.Issuer:
			if _, err := tx.Exec(ctx, `DELETE FROM identities WHERE provider = $1`, p.Name); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, `INSERT INTO idp_providers (`+providerCols+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
			ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, display_name = excluded.display_name,
				issuer = excluded.issuer, client_id = excluded.client_id, sealed_secret = excluded.sealed_secret,
				scopes = excluded.scopes, auth_url = excluded.auth_url, token_url = excluded.token_url,
				userinfo_url = excluded.userinfo_url, no_signup = excluded.no_signup, updated_at = excluded.updated_at`,
			p.Name, string(p.Kind), p.DisplayName, p.Issuer, p.ClientID, bytea(p.SealedSecret), strings.Join(p.Scopes, " "),
			p.AuthURL, p.TokenURL, p.UserinfoURL, p.NoSignup, p.CreatedAt, p.UpdatedAt)
		return err
	})
	return wrap("put identity provider", err)
}

// IdentityProvider reads one provider by name.
func (s *Store) IdentityProvider(ctx context.Context, name string) (gatehouse.IdentityProvider, error) {
	p, err := scanProvider(s.pool.QueryRow(ctx, `SELECT `+providerCols+` FROM idp_providers WHERE name = $1`, name))
	if err != nil {
		return gatehouse.IdentityProvider{}, wrap("identity provider", err)
	}
	return p, nil
}

// IdentityProviders lists every provider by name.
func (s *Store) IdentityProviders(ctx context.Context) ([]gatehouse.IdentityProvider, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+providerCols+` FROM idp_providers ORDER BY name`)
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
	tag, err := s.pool.Exec(ctx, `DELETE FROM idp_providers WHERE name = $1`, name)
	if err != nil {
		return wrap("delete identity provider", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: delete identity provider: %w", gatehouse.ErrNotFound)
	}
	return nil
}

func insertIdentity(ctx context.Context, tx pgx.Tx, i gatehouse.Identity) error {
	_, err := tx.Exec(ctx, `INSERT INTO identities (`+identityCols+`) VALUES ($1, $2, $3, $4, $5, $6)`,
		i.ID, i.Provider, i.Subject, i.UserID, i.Email, i.CreatedAt)
	return identityError(err)
}

func identityError(err error) error {
	if pgErr, ok := asPgError(err); ok {
		switch {
		case pgErr.Code == "23505" && pgErr.ConstraintName == identitySubjectConstraint: // unique_violation
			return fmt.Errorf("postgres: create identity: %w", gatehouse.ErrStale)
		case pgErr.Code == "23503": // foreign_key_violation: no such user or provider
			return fmt.Errorf("postgres: create identity: %w", gatehouse.ErrNotFound)
		}
	}
	return wrap("create identity", err)
}

// CreateIdentity inserts i.
func (s *Store) CreateIdentity(ctx context.Context, i gatehouse.Identity) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO identities (`+identityCols+`) VALUES ($1, $2, $3, $4, $5, $6)`,
		i.ID, i.Provider, i.Subject, i.UserID, i.Email, i.CreatedAt)
	return identityError(err)
}

// CreateUserWithIdentity inserts a new user and its first identity in one
// transaction.
func (s *Store) CreateUserWithIdentity(ctx context.Context, u gatehouse.User, i gatehouse.Identity) error {
	version, ok := versionArg(u.Version)
	if !ok {
		return fmt.Errorf("postgres: create user with identity: version %d out of range", u.Version)
	}
	var identityErr error
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO users (`+userCols+`, email_key)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
			u.ID, u.Email, u.Name, string(u.Role), u.PasswordHash, u.Disabled, u.CreatedAt, nullTime(u.TokensValidAfter),
			version, u.EmailVerified, gatehouse.EmailKey(u.Email))
		if err != nil {
			return err
		}
		identityErr = insertIdentity(ctx, tx, i)
		return identityErr
	})
	switch {
	case err == nil:
		return nil
	case identityErr != nil:
		return identityErr
	case emailTaken(err):
		return fmt.Errorf("postgres: create user with identity: %w", gatehouse.ErrEmailTaken)
	}
	return wrap("create user with identity", err)
}

// IdentityBySubject looks the identity up on the (provider, subject)
// unique constraint.
func (s *Store) IdentityBySubject(ctx context.Context, provider, subject string) (gatehouse.Identity, error) {
	i, err := scanIdentity(s.pool.QueryRow(ctx, `SELECT `+identityCols+` FROM identities
		WHERE provider = $1 AND subject = $2`, provider, subject))
	if err != nil {
		return gatehouse.Identity{}, wrap("identity by subject", err)
	}
	return i, nil
}

// Identities lists the user's identities, oldest first (the id breaks
// ties).
func (s *Store) Identities(ctx context.Context, userID string) ([]gatehouse.Identity, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+identityCols+` FROM identities WHERE user_id = $1
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

// DeleteIdentity locks the user's row, then deletes with one conditional
// DELETE that checks the user's other ways in.
func (s *Store) DeleteIdentity(ctx context.Context, userID, id string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var one int
		if err := tx.QueryRow(ctx, `SELECT 1 FROM users WHERE id = $1 FOR UPDATE`, userID).Scan(&one); err != nil {
			return err // pgx.ErrNoRows: ErrNotFound
		}
		tag, err := tx.Exec(ctx, `DELETE FROM identities WHERE id = $1 AND user_id = $2 AND (
				EXISTS (SELECT 1 FROM users WHERE users.id = $2 AND users.password_hash <> '')
				OR EXISTS (SELECT 1 FROM passkeys WHERE passkeys.user_id = $2)
				OR EXISTS (SELECT 1 FROM identities other WHERE other.user_id = $2 AND other.id <> $1))`, id, userID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 1 {
			return nil
		}
		if err := tx.QueryRow(ctx, `SELECT 1 FROM identities WHERE id = $1 AND user_id = $2`, id, userID).Scan(&one); err != nil {
			return err // pgx.ErrNoRows: ErrNotFound
		}
		return gatehouse.ErrStale
	})
	if errors.Is(err, gatehouse.ErrStale) {
		return fmt.Errorf("postgres: delete identity: %w", err)
	}
	return wrap("delete identity", err)
}
