package e2e

import (
	"path/filepath"
	"testing"

	"github.com/warden-ir/warden/api/client"
	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/daemon"
)

// Every stack runs with a token per person, as a real controller does: the
// test writes the bootstrap admin's token to server.bootstrap_token_file,
// the controller makes its admin from it at start, and the admin adds the
// people below through the API. Each step is then done by the person whose
// role it needs: alerts by the detector, runbooks and release requests by
// the responder, approvals and resolutions by the approver.
const (
	intakeName    = "alertmanager"
	responderName = "e2e-responder"
	approverName  = "e2e-approver"
)

// crew holds the tokens of a stack's people. Tokens are secrets: they
// never go into a test's log or failure message.
type crew struct {
	admin, intake, responder, approver string
}

// token is the token of the person with role: the responder when role is
// empty.
func (c *crew) token(role string) string {
	switch role {
	case v1.RoleAdmin:
		return c.admin
	case v1.RoleIntake:
		return c.intake
	case v1.RoleApprover:
		return c.approver
	default:
		return c.responder
	}
}

// bootstrapAdmin writes a new admin token to dir/bootstrap-admin.token and
// points cfg at it; the controller makes its first admin from that file
// when its store has no users yet.
func bootstrapAdmin(tb testing.TB, cfg *config.Config, dir string) *crew {
	tb.Helper()
	cfg.Server.APIToken, cfg.Server.APITokenFile = "", ""
	cfg.Server.BootstrapTokenFile = filepath.Join(dir, "bootstrap-admin.token")
	token, _, err := daemon.BootstrapToken(cfg.Server.BootstrapTokenFile)
	if err != nil {
		tb.Fatal(err)
	}
	return &crew{admin: token}
}

// add has the admin add the detector, the responder and the approver
// through the API (POST /v1/users), once: a controller restarted on the
// same store keeps them.
func (c *crew) add(tb testing.TB, base string, opts ...client.Option) {
	tb.Helper()
	if c.responder != "" {
		return
	}
	admin, err := client.New(base, c.admin, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	for _, p := range []struct {
		name, role, display string
		token               *string
	}{
		{intakeName, v1.RoleIntake, "the detector posting alerts", &c.intake},
		{responderName, v1.RoleResponder, "e2e responder", &c.responder},
		{approverName, v1.RoleApprover, "e2e approver", &c.approver},
	} {
		issued, err := admin.AddUser(tb.Context(), v1.AddUserRequest{Name: p.name, Role: p.role, DisplayName: p.display})
		if err != nil {
			tb.Fatalf("adding %s (%s): %v", p.name, p.role, err)
		}
		if issued.Token == "" || issued.User.Role != p.role {
			tb.Fatalf("adding %s: user %+v, token issued %t", p.name, issued.User, issued.Token != "")
		}
		*p.token = issued.Token
	}
}

// all lists every token of the crew, to look for in logs.
func (c *crew) all() []string {
	var out []string
	for _, t := range []string{c.admin, c.intake, c.responder, c.approver} {
		if t != "" {
			out = append(out, t)
		}
	}
	return out
}
