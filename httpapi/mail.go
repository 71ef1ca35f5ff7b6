package httpapi

import (
	"net/http"

	"github.com/gatehouse/gatehouse/auth"
)

// Handlers of the mail flows (API.md part 2, "Mail"). Answers of 202 carry
// an empty object, the same for every address.

type tokenRequest struct {
	Token string `json:"token"`
}

type emailRequest struct {
	Email string `json:"email"`
}

type resetRequest struct {
	Token       string `json:"token"`
	NewPassword string `json:"new_password"`
}

type magicVerifyRequest struct {
	Token          string `json:"token"`
	Email          string `json:"email"`
	Code           string `json:"code"`
	TokenTransport string `json:"token_transport"`
}

type emailChangeRequest struct {
	NewEmail        string `json:"new_email"`
	CurrentPassword string `json:"current_password"`
}

func writeAccepted(w http.ResponseWriter) {
	writeJSON(w, http.StatusAccepted, struct{}{})
}

func writeUser(w http.ResponseWriter, u userJSON) {
	writeJSON(w, http.StatusOK, map[string]userJSON{"user": u})
}

func requireField(name, v string) error {
	if v == "" {
		return invalidField(name, "is required")
	}
	return nil
}

func (s *Server) sendVerification(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authenticate(r)
	if err != nil {
		return err
	}
	if _, err := readBody(r, &struct{}{}, true); err != nil {
		return err
	}
	if err := s.auth.ResendVerification(r.Context(), p, s.client(r, "")); err != nil {
		return err
	}
	writeAccepted(w)
	return nil
}

func (s *Server) verifyEmail(w http.ResponseWriter, r *http.Request) error {
	var req tokenRequest
	if _, err := readBody(r, &req, false); err != nil {
		return err
	}
	if err := requireField("token", req.Token); err != nil {
		return err
	}
	u, err := s.auth.VerifyEmail(r.Context(), req.Token)
	if err != nil {
		return err
	}
	writeUser(w, toUserJSON(u, false))
	return nil
}

func (s *Server) forgotPassword(w http.ResponseWriter, r *http.Request) error {
	var req emailRequest
	if _, err := readBody(r, &req, false); err != nil {
		return err
	}
	if err := requireField("email", req.Email); err != nil {
		return err
	}
	if err := s.auth.ForgotPassword(r.Context(), req.Email, s.client(r, "")); err != nil {
		return err
	}
	writeAccepted(w)
	return nil
}

func (s *Server) resetPassword(w http.ResponseWriter, r *http.Request) error {
	var req resetRequest
	if _, err := readBody(r, &req, false); err != nil {
		return err
	}
	if err := requireField("token", req.Token); err != nil {
		return err
	}
	if err := s.auth.ResetPassword(r.Context(), req.Token, req.NewPassword); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) magicLink(w http.ResponseWriter, r *http.Request) error {
	var req emailRequest
	if _, err := readBody(r, &req, false); err != nil {
		return err
	}
	if err := requireField("email", req.Email); err != nil {
		return err
	}
	if err := s.auth.MagicLink(r.Context(), req.Email, s.client(r, "")); err != nil {
		return err
	}
	writeAccepted(w)
	return nil
}

func (s *Server) magicLinkVerify(w http.ResponseWriter, r *http.Request) error {
	var req magicVerifyRequest
	if _, err := readBody(r, &req, false); err != nil {
		return err
	}
	transport, err := parseTransport(req.TokenTransport)
	if err != nil {
		return err
	}
	switch {
	case req.Token != "" && (req.Email != "" || req.Code != ""):
		return invalidField("token", "give either token, or email and code")
	case req.Token == "" && req.Email == "" && req.Code == "":
		return invalidField("token", "is required (or email and code)")
	case req.Token == "" && req.Email == "":
		return invalidField("email", "is required with code")
	case req.Token == "" && req.Code == "":
		return invalidField("code", "is required with email")
	}
	g, err := s.auth.MagicLinkSignIn(r.Context(), auth.MagicLinkInput{Token: req.Token, Email: req.Email, Code: req.Code}, s.client(r, transport))
	if err != nil {
		return err
	}
	s.writeGrant(w, http.StatusOK, g, transport)
	return nil
}

func (s *Server) requestEmailChange(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authenticate(r)
	if err != nil {
		return err
	}
	var req emailChangeRequest
	if _, err := readBody(r, &req, false); err != nil {
		return err
	}
	if err := s.auth.RequestEmailChange(r.Context(), p, req.NewEmail, req.CurrentPassword, s.client(r, "")); err != nil {
		return err
	}
	writeAccepted(w)
	return nil
}

func (s *Server) confirmEmailChange(w http.ResponseWriter, r *http.Request) error {
	var req tokenRequest
	if _, err := readBody(r, &req, false); err != nil {
		return err
	}
	if err := requireField("token", req.Token); err != nil {
		return err
	}
	u, err := s.auth.ConfirmEmailChange(r.Context(), req.Token)
	if err != nil {
		return err
	}
	writeUser(w, toUserJSON(u, false))
	return nil
}
