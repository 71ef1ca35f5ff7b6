package httpapi

import (
	"net/http"

	"github.com/gatehouse/gatehouse/auth"
)

// Handlers of second factors (API.md part 2, "Second factors").

type currentPasswordRequest struct {
	CurrentPassword string `json:"current_password"`
}

type codeRequest struct {
	Code string `json:"code"`
}

type mfaVerifyRequest struct {
	MFAToken       string `json:"mfa_token"`
	Method         string `json:"method"`
	Code           string `json:"code"`
	TokenTransport string `json:"token_transport"`
}

func (s *Server) startTOTP(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authenticate(r)
	if err != nil {
		return err
	}
	var req currentPasswordRequest
	if _, err := readBody(r, &req, false); err != nil {
		return err
	}
	e, err := s.auth.StartTOTP(r.Context(), p, req.CurrentPassword)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]string{"secret": e.Secret, "otpauth_uri": e.URI})
	return nil
}

func (s *Server) confirmTOTP(w http.ResponseWriter, r *http.Request) error {
	p, code, err := s.codeRequest(r)
	if err != nil {
		return err
	}
	codes, err := s.auth.ConfirmTOTP(r.Context(), p, code)
	if err != nil {
		return err
	}
	writeRecoveryCodes(w, codes)
	return nil
}

func (s *Server) disableTOTP(w http.ResponseWriter, r *http.Request) error {
	p, code, err := s.codeRequest(r)
	if err != nil {
		return err
	}
	if err := s.auth.DisableTOTP(r.Context(), p, code); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) regenerateRecoveryCodes(w http.ResponseWriter, r *http.Request) error {
	p, code, err := s.codeRequest(r)
	if err != nil {
		return err
	}
	codes, err := s.auth.RegenerateRecoveryCodes(r.Context(), p, code)
	if err != nil {
		return err
	}
	writeRecoveryCodes(w, codes)
	return nil
}

// codeRequest authenticates a Bearer request whose body carries a
// second-factor code, and returns both.
func (s *Server) codeRequest(r *http.Request) (auth.Principal, string, error) {
	p, err := s.authenticate(r)
	if err != nil {
		return auth.Principal{}, "", err
	}
	var req codeRequest
	if _, err := readBody(r, &req, false); err != nil {
		return auth.Principal{}, "", err
	}
	if err := requireField("code", req.Code); err != nil {
		return auth.Principal{}, "", err
	}
	return p, req.Code, nil
}

func writeRecoveryCodes(w http.ResponseWriter, codes []string) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, map[string][]string{"recovery_codes": codes})
}

func (s *Server) verifyMFA(w http.ResponseWriter, r *http.Request) error {
	var req mfaVerifyRequest
	if _, err := readBody(r, &req, false); err != nil {
		return err
	}
	transport, err := parseTransport(req.TokenTransport)
	if err != nil {
		return err
	}
	var fields []auth.FieldError
	for _, f := range []struct{ name, v string }{{"mfa_token", req.MFAToken}, {"method", req.Method}, {"code", req.Code}} {
		if f.v == "" {
			fields = append(fields, auth.FieldError{Field: f.name, Message: "is required"})
		}
	}
	if len(fields) > 0 {
		return &auth.ValidationError{Fields: fields}
	}
	g, err := s.auth.VerifyMFA(r.Context(), auth.VerifyMFAInput{Token: req.MFAToken, Method: req.Method, Code: req.Code}, s.client(r, transport))
	if err != nil {
		return err
	}
	s.writeGrant(w, http.StatusOK, g, transport)
	return nil
}

func (s *Server) adminResetMFA(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.authenticateAdmin(r); err != nil {
		return err
	}
	if _, err := readBody(r, &struct{}{}, true); err != nil {
		return err
	}
	if err := s.auth.AdminResetMFA(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
