package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/auth"
	"github.com/warden-ir/warden/controller"
	"github.com/warden-ir/warden/evidence"
	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/store"
)

// credentials is the store as package auth reads it.
type credentials struct{ st store.Backend }

// Credentials adapts a store for auth.Authenticator and auth.OIDC.
func Credentials(st store.Backend) interface {
	auth.CredentialStore
	auth.UserStatus
} {
	return credentials{st}
}

func (c credentials) CredentialByHash(ctx context.Context, hash string) (auth.Credential, error) {
	u, t, err := c.st.CredentialByHash(ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		return auth.Credential{}, auth.ErrUnknownToken
	}
	if err != nil {
		return auth.Credential{}, err
	}
	return auth.Credential{User: u.Name, Role: auth.Role(u.Role), TokenID: t.ID, Disabled: u.Disabled, Revoked: !t.RevokedAt.IsZero()}, nil
}

func (c credentials) UserDisabled(ctx context.Context, name string) (bool, bool, error) {
	u, err := c.st.User(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return false, false, nil
	}
	return err == nil, u.Disabled, err
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	writeJSON(w, http.StatusOK, v1.WhoAmI{User: p.Name, Role: string(p.Role), TokenID: p.TokenID, Actor: p.Actor(),
		TwoPerson: s.opt.Controller.FourEyes()})
}

func (s *Server) userV1(ctx context.Context, u store.User) (v1.User, error) {
	toks, err := s.opt.Controller.Store().ActiveTokens(ctx, u.Name)
	if err != nil {
		return v1.User{}, err
	}
	out := v1.User{Name: u.Name, Role: u.Role, DisplayName: u.DisplayName, Disabled: u.Disabled, CreatedAt: u.CreatedAt,
		CreatedBy: u.CreatedBy, UpdatedAt: u.UpdatedAt, Tokens: []string{}}
	for _, t := range toks {
		out.Tokens = append(out.Tokens, t.ID)
	}
	return out, nil
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) {
	users, err := s.opt.Controller.Store().Users(r.Context())
	if err != nil {
		s.fail(w, http.StatusInternalServerError, "", err)
		return
	}
	out := v1.UserList{Users: []v1.User{}}
	for _, u := range users {
		vu, err := s.userV1(r.Context(), u)
		if err != nil {
			s.fail(w, http.StatusInternalServerError, "", err)
			return
		}
		out.Users = append(out.Users, vu)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) issued(w http.ResponseWriter, r *http.Request, status int, is controller.Issued, err error) {
	if err != nil {
		s.fail(w, statusFor(err), "", err)
		return
	}
	u, err := s.userV1(r.Context(), is.User)
	if err != nil {
		s.fail(w, http.StatusInternalServerError, "", err)
		return
	}
	// The token is in this answer only: nothing may cache it.
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, v1.IssuedToken{User: u, TokenID: is.TokenID, Token: is.Token})
}

func (s *Server) addUser(w http.ResponseWriter, r *http.Request) {
	var req v1.AddUserRequest
	if !s.decodeSmall(w, r, &req) {
		return
	}
	switch {
	case strings.TrimSpace(req.Name) == "":
		s.fail(w, http.StatusBadRequest, "", &indicator.FieldError{Field: "name", Reason: "is required"})
		return
	case strings.TrimSpace(req.Role) == "":
		s.fail(w, http.StatusBadRequest, "", &indicator.FieldError{Field: "role", Reason: "is required: viewer, intake, responder, approver or admin"})
		return
	}
	if err := auth.ValidName(req.Name); err != nil {
		s.fail(w, http.StatusBadRequest, "", &indicator.FieldError{Field: "name", Reason: err.Error()})
		return
	}
	if _, err := auth.ParseRole(req.Role); err != nil {
		s.fail(w, http.StatusBadRequest, "", &indicator.FieldError{Field: "role", Reason: err.Error()})
		return
	}
	is, err := s.opt.Controller.AddUser(r.Context(), actor(r), req.Name, req.Role, req.DisplayName)
	s.issued(w, r, http.StatusCreated, is, err)
}

func (s *Server) disableUser(w http.ResponseWriter, r *http.Request) {
	if !s.decodeSmall(w, r, &struct{}{}) {
		return
	}
	u, err := s.opt.Controller.DisableUser(r.Context(), actor(r), r.PathValue("name"))
	s.opt.Auth.Forget() // the user's tokens stop working now, not in a second
	if err != nil {
		s.fail(w, statusFor(err), "", err)
		return
	}
	vu, err := s.userV1(r.Context(), u)
	if err != nil {
		s.fail(w, http.StatusInternalServerError, "", err)
		return
	}
	writeJSON(w, http.StatusOK, vu)
}

func (s *Server) rotateToken(w http.ResponseWriter, r *http.Request) {
	if !s.decodeSmall(w, r, &struct{}{}) {
		return
	}
	is, err := s.opt.Controller.RotateToken(r.Context(), actor(r), r.PathValue("name"))
	s.opt.Auth.Forget() // the old tokens stop working now
	s.issued(w, r, http.StatusOK, is, err)
}

// ledger is the evidence ledger, or a 503 when the server has none.
func (s *Server) ledger(w http.ResponseWriter) (*evidence.Ledger, bool) {
	if s.opt.Ledger == nil {
		writeJSON(w, http.StatusServiceUnavailable, v1.Error{Error: "this controller keeps no evidence ledger"})
		return nil, false
	}
	return s.opt.Ledger, true
}

// EvidenceV1 is an artefact's record in the API's shape.
func EvidenceV1(r evidence.Record) v1.Evidence {
	return v1.Evidence{ID: r.ID, Incident: r.Incident, Gateway: r.Gateway, Name: r.Name, MediaType: r.MediaType, Kind: r.Kind,
		SHA256: r.SHA256, Size: r.Size, Source: r.Source, CollectedAt: r.CollectedAt, CollectedBy: r.CollectedBy,
		CollectedFrom: r.CollectedFrom, StoredAt: r.StoredAt, Note: r.Note}
}

// EvidenceDetailV1 is an artefact and its chain of custody in the API's
// shape (what GET /v1/evidence/{id} answers, and `warden evidence show`
// prints when it reads the store itself).
func EvidenceDetailV1(r evidence.Record, chain []evidence.Custody) v1.EvidenceDetail {
	out := v1.EvidenceDetail{Evidence: EvidenceV1(r), Custody: []v1.Custody{}}
	for _, c := range chain {
		out.Custody = append(out.Custody, v1.Custody{At: c.At, Actor: c.Actor, Action: c.Action, Detail: c.Detail})
	}
	return out
}

func (s *Server) listEvidence(w http.ResponseWriter, r *http.Request) {
	l, ok := s.ledger(w)
	if !ok {
		return
	}
	id := r.PathValue("id")
	if err := l.KnownIncident(r.Context(), id); err != nil {
		s.fail(w, statusFor(err), "", err)
		return
	}
	recs, err := l.List(r.Context(), id)
	if err != nil {
		s.fail(w, statusFor(err), "", err)
		return
	}
	out := v1.EvidenceList{Evidence: convertAll(recs, EvidenceV1)}
	if out.Evidence == nil {
		out.Evidence = []v1.Evidence{} // a known incident without evidence is an empty list, not null
	}
	writeJSON(w, http.StatusOK, out)
}

// showEvidence answers an artefact's record and chain of custody; the
// access itself is a custody event of the caller.
func (s *Server) showEvidence(w http.ResponseWriter, r *http.Request) {
	l, ok := s.ledger(w)
	if !ok {
		return
	}
	rec, chain, err := l.Show(r.Context(), r.PathValue("id"), actor(r))
	if err != nil {
		s.fail(w, statusFor(err), "", err)
		return
	}
	writeJSON(w, http.StatusOK, EvidenceDetailV1(rec, chain))
}

// exportEvidence streams the incident's evidence archive (tar.gz with
// manifest, SHA256SUMS and the audit chain); every artefact's custody
// records the caller's export.
func (s *Server) exportEvidence(w http.ResponseWriter, r *http.Request) {
	l, ok := s.ledger(w)
	if !ok {
		return
	}
	if !s.decodeSmall(w, r, &struct{}{}) {
		return
	}
	id := r.PathValue("id")
	lw := &lazyArchive{w: w, name: fmt.Sprintf("warden-evidence-%s.tar.gz", id)}
	if _, err := l.Export(r.Context(), id, lw, actor(r)); err != nil {
		if lw.started {
			// The status is gone; the client sees a truncated archive
			// whose SHA256SUMS does not check.
			s.opt.Log.Error("evidence export failed while streaming", "incident", id, "err", err)
			return
		}
		s.fail(w, statusFor(err), "", err)
	}
}

// lazyArchive sends the archive's headers with its first byte, so that an
// export refused before writing (tampered evidence, unknown incident) can
// still answer with an error status.
type lazyArchive struct {
	w       http.ResponseWriter
	name    string
	started bool
}

func (a *lazyArchive) Write(b []byte) (int, error) {
	if !a.started {
		a.started = true
		a.w.Header().Set("Content-Type", "application/gzip")
		a.w.Header().Set("Content-Disposition", `attachment; filename="`+a.name+`"`)
		a.w.WriteHeader(http.StatusOK)
	}
	return a.w.Write(b)
}
