package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/audit"
)

// ConsentView is a consent as the user sees it ("Connected apps"): the
// client by name, and what it may do.
type ConsentView struct {
	ClientID   string
	ClientName string
	Scopes     []string
	CreatedAt  time.Time
}

// Consents lists the consents userID gave, oldest first. A consent whose
// client was removed in the meantime is left out: it grants nothing.
func (s *Service) Consents(ctx context.Context, userID string) ([]ConsentView, error) {
	if s.OAuth.Store == nil {
		return nil, nil
	}
	cs, err := s.OAuth.Store.Consents(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("consents: %w", err)
	}
	if len(cs) == 0 {
		return nil, nil
	}
	// Clients are few (an operator registers them); one read of them all
	// beats a read per consent.
	clients, err := s.OAuth.Store.OAuthClients(ctx)
	if err != nil {
		return nil, fmt.Errorf("consents: list clients: %w", err)
	}
	names := make(map[string]string, len(clients))
	for _, c := range clients {
		names[c.ID] = c.Name
	}
	out := make([]ConsentView, 0, len(cs))
	for _, c := range cs {
		name, ok := names[c.ClientID]
		if !ok {
			continue
		}
		out = append(out, ConsentView{ClientID: c.ClientID, ClientName: name, Scopes: c.Scopes, CreatedAt: c.CreatedAt})
	}
	return out, nil
}

// RevokeConsent withdraws userID's consent to clientID and ends that
// client's sessions of the user, so its refresh and access tokens die on
// every instance. ErrNotFound when there is no such consent.
func (s *Service) RevokeConsent(ctx context.Context, userID, clientID string) error {
	if s.OAuth.Store == nil {
		return gatehouse.ErrNotFound
	}
	if _, err := s.OAuth.Store.Consent(ctx, userID, clientID); err != nil {
		return fmt.Errorf("consent: %w", err)
	}
	// Sessions before the consent: should ending them fail, the consent is
	// still there and the call can be repeated; the other way round, a
	// retry would find no consent and leave the sessions alive.
	if err := s.revokeClientSessions(ctx, userID, clientID, ReasonLogout); err != nil {
		return err
	}
	// A concurrent revoke may have deleted it since: the outcome is the
	// same.
	if err := s.OAuth.Store.DeleteConsent(ctx, userID, clientID); err != nil && !errors.Is(err, gatehouse.ErrNotFound) {
		return fmt.Errorf("revoke consent: %w", err)
	}
	s.recordAudit(ctx, audit.Event{Type: audit.TypeLogout, UserID: userID,
		Detail: audit.Detail{audit.KeyClientID: clientID}})
	return nil
}
