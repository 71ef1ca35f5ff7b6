package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/idp"
)

// ProviderInput configures a provider (gatehouse idp add, PUT
// /admin/idps/{name}). Empty fields take the preset's values; a nil
// ClientSecret keeps the stored one when the provider exists.
type ProviderInput struct {
	Preset       string
	DisplayName  string
	Issuer       string
	ClientID     string
	ClientSecret *string
	Scopes       []string
	AuthURL      string
	TokenURL     string
	UserinfoURL  string
	NoSignup     bool
}

// PutProvider creates or replaces provider name. created says which.
func (s *Service) PutProvider(ctx context.Context, name string, in ProviderInput) (p gatehouse.IdentityProvider, created bool, err error) {
	if err := s.idpOn(); err != nil {
		return gatehouse.IdentityProvider{}, false, err
	}
	p = gatehouse.IdentityProvider{
		Name: name, DisplayName: strings.TrimSpace(in.DisplayName), Issuer: in.Issuer, ClientID: in.ClientID,
		Scopes: in.Scopes, AuthURL: in.AuthURL, TokenURL: in.TokenURL, UserinfoURL: in.UserinfoURL,
		NoSignup: in.NoSignup,
	}
	var fields []FieldError
	if err := idp.ApplyPreset(&p, in.Preset); err != nil {
		fields = append(fields, FieldError{Field: "preset", Message: "must be google or github"})
	}
	for _, f := range idp.Validate(p) {
		fields = append(fields, FieldError{Field: f.Field, Message: f.Message})
	}
	old, err := s.IdP.Store.IdentityProvider(ctx, name)
	exists := err == nil
	if err != nil && !errors.Is(err, gatehouse.ErrNotFound) {
		return gatehouse.IdentityProvider{}, false, fmt.Errorf("put provider: %w", err)
	}
	switch {
	case in.ClientSecret != nil && (*in.ClientSecret == "" || len(*in.ClientSecret) > 1024 || strings.ContainsAny(*in.ClientSecret, "\r\n")):
		fields = append(fields, FieldError{Field: "client_secret", Message: "must be one line of at most 1024 characters"})
	case in.ClientSecret == nil && !exists:
		fields = append(fields, FieldError{Field: "client_secret", Message: "is required"})
	}
	if len(fields) > 0 {
		return gatehouse.IdentityProvider{}, false, &ValidationError{Fields: fields}
	}
	now := s.now()
	p.CreatedAt, p.UpdatedAt = now, now
	if exists {
		p.CreatedAt = old.CreatedAt
		p.SealedSecret = old.SealedSecret
	}
	if in.ClientSecret != nil {
		p.SealedSecret = s.IdP.Registry.SealSecret(name, *in.ClientSecret)
	}
	if err := s.IdP.Store.PutIdentityProvider(ctx, p); err != nil {
		return gatehouse.IdentityProvider{}, false, fmt.Errorf("put provider: %w", err)
	}
	s.IdP.Registry.Forget(name)
	s.Logger.Info("identity provider saved", "provider", name, "kind", p.Kind, "issuer", p.Issuer, "created", !exists)
	return p, !exists, nil
}

// Providers lists every provider (admin view).
func (s *Service) Providers(ctx context.Context) ([]gatehouse.IdentityProvider, error) {
	if err := s.idpOn(); err != nil {
		return nil, err
	}
	return s.SignInProviders(ctx)
}

// DeleteProvider removes a provider and the identities linked through it.
func (s *Service) DeleteProvider(ctx context.Context, name string) error {
	if err := s.idpOn(); err != nil {
		return err
	}
	if err := s.IdP.Store.DeleteIdentityProvider(ctx, name); err != nil {
		return fmt.Errorf("delete provider: %w", err)
	}
	s.IdP.Registry.Forget(name)
	s.Logger.Info("identity provider removed", "provider", name)
	return nil
}
