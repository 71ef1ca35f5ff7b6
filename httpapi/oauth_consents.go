package httpapi

import (
	"net/http"
)

// The consents a user gave to OAuth clients ("Connected apps" on the
// account page).

type consentJSON struct {
	ClientID   string   `json:"client_id"`
	ClientName string   `json:"client_name"`
	Scopes     []string `json:"scopes"`
	CreatedAt  string   `json:"created_at"`
}

func (s *Server) listConsents(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authenticate(r)
	if err != nil {
		return err
	}
	list, err := s.auth.Consents(r.Context(), p.UserID)
	if err != nil {
		return err
	}
	out := make([]consentJSON, len(list))
	for i, c := range list {
		out[i] = consentJSON{ClientID: c.ClientID, ClientName: c.ClientName, Scopes: orEmpty(c.Scopes), CreatedAt: rfc3339(c.CreatedAt)}
	}
	writeJSON(w, http.StatusOK, map[string]any{"consents": out})
	return nil
}

// deleteConsent withdraws a consent and signs the user out of that client
// everywhere: its refresh and access tokens stop working at once.
func (s *Server) deleteConsent(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authenticate(r)
	if err != nil {
		return err
	}
	if _, err := readBody(r, &struct{}{}, true); err != nil {
		return err
	}
	if err := s.auth.RevokeConsent(r.Context(), p.UserID, r.PathValue("client_id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
