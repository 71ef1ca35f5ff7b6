package httpapi

import (
	"encoding/json"
	"net/http"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/auth"
)

// Handlers of passkeys (API.md part 2, "Passkeys (WebAuthn)"). Credentials
// travel as the JSON that PublicKeyCredential.toJSON() writes; go-webauthn
// parses them.

type passkeyJSON struct {
	ID         string  `json:"id"`
	Name       string  `json:"name"`
	CreatedAt  string  `json:"created_at"`
	LastUsedAt *string `json:"last_used_at"`
}

func toPasskeyJSON(p gatehouse.Passkey) passkeyJSON {
	j := passkeyJSON{ID: p.ID, Name: p.Name, CreatedAt: rfc3339(p.CreatedAt)}
	if !p.LastUsedAt.IsZero() {
		t := rfc3339(p.LastUsedAt)
		j.LastUsedAt = &t
	}
	return j
}

type passkeyRegisterRequest struct {
	Credential json.RawMessage `json:"credential"`
	Name       string          `json:"name"`
}

type passkeyLoginBeginRequest struct {
	MFAToken string `json:"mfa_token"`
}

type passkeyLoginFinishRequest struct {
	ChallengeID    string          `json:"challenge_id"`
	Credential     json.RawMessage `json:"credential"`
	MFAToken       string          `json:"mfa_token"`
	TokenTransport string          `json:"token_transport"`
}

func (s *Server) passkeyRegisterBegin(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authenticate(r)
	if err != nil {
		return err
	}
	if _, err := readBody(r, &struct{}{}, true); err != nil {
		return err
	}
	creation, err := s.auth.BeginPasskeyRegistration(r.Context(), p)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, creation)
	return nil
}

func (s *Server) passkeyRegisterFinish(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authenticate(r)
	if err != nil {
		return err
	}
	var req passkeyRegisterRequest
	if _, err := readBody(r, &req, false); err != nil {
		return err
	}
	if len(req.Credential) == 0 || string(req.Credential) == "null" {
		return invalidField("credential", "is required")
	}
	pk, err := s.auth.FinishPasskeyRegistration(r.Context(), p, req.Credential, req.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, map[string]passkeyJSON{"passkey": toPasskeyJSON(pk)})
	return nil
}

func (s *Server) listPasskeys(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authenticate(r)
	if err != nil {
		return err
	}
	keys, err := s.auth.ListPasskeys(r.Context(), p)
	if err != nil {
		return err
	}
	out := make([]passkeyJSON, len(keys))
	for i, k := range keys {
		out[i] = toPasskeyJSON(k)
	}
	writeJSON(w, http.StatusOK, map[string][]passkeyJSON{"passkeys": out})
	return nil
}

func (s *Server) deletePasskey(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authenticate(r)
	if err != nil {
		return err
	}
	if _, err := readBody(r, &struct{}{}, true); err != nil {
		return err
	}
	if err := s.auth.DeletePasskey(r.Context(), p, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) passkeyLoginBegin(w http.ResponseWriter, r *http.Request) error {
	var req passkeyLoginBeginRequest
	if _, err := readBody(r, &req, true); err != nil {
		return err
	}
	assertion, challengeID, err := s.auth.BeginPasskeyLogin(r.Context(), req.MFAToken)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, struct {
		PublicKey   any    `json:"publicKey"`
		ChallengeID string `json:"challenge_id"`
	}{assertion.Response, challengeID})
	return nil
}

func (s *Server) passkeyLoginFinish(w http.ResponseWriter, r *http.Request) error {
	var req passkeyLoginFinishRequest
	if _, err := readBody(r, &req, false); err != nil {
		return err
	}
	transport, err := parseTransport(req.TokenTransport)
	if err != nil {
		return err
	}
	var fields []auth.FieldError
	if req.ChallengeID == "" {
		fields = append(fields, auth.FieldError{Field: "challenge_id", Message: "is required"})
	}
	if len(req.Credential) == 0 || string(req.Credential) == "null" {
		fields = append(fields, auth.FieldError{Field: "credential", Message: "is required"})
	}
	if len(fields) > 0 {
		return &auth.ValidationError{Fields: fields}
	}
	g, err := s.auth.FinishPasskeyLogin(r.Context(), auth.PasskeyLoginInput{
		ChallengeID: req.ChallengeID, Credential: req.Credential, MFAToken: req.MFAToken,
	}, s.client(r, transport))
	if err != nil {
		return err
	}
	s.writeGrant(w, http.StatusOK, g, transport)
	return nil
}
