package demo

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/warden-ir/warden/api/client"
	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/auth"
	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/daemon"
)

// The demo acts as a team would: the controller makes its first admin from
// the bootstrap token file, as `warden serve` does; the admin adds a
// detector, a responder and an approver through the API, each with a token
// of their own; and every step is taken with the token of the person whose
// role it needs. The controller, not the demo, decides who did what: the
// audit, the runs and the reports name the authenticated user.

// Person is an identity the demo acted as, with its own API token (never
// shown): the controller records it as "user:NAME".
type Person struct {
	Name string `json:"name"`
	Role string `json:"role"`
	// Did says what the demo did as this person.
	Did []string `json:"did"`
}

// bootstrapAdmin points cfg at dir/bootstrap-admin.token and returns the
// admin token the controller will make its first admin from: token when
// set, else the one a kept directory already holds, else a new one. It
// writes the file (0600) for the controller to read.
func bootstrapAdmin(cfg *config.Config, dir, token string) (string, error) {
	path := filepath.Join(dir, "bootstrap-admin.token")
	cfg.Server.APIToken, cfg.Server.APITokenFile = "", ""
	cfg.Server.BootstrapTokenFile = path
	if token == "" {
		token, _, err := daemon.BootstrapToken(path)
		if err != nil {
			return "", fmt.Errorf("the demo admin's token: %w", err)
		}
		return token, nil
	}
	if len(token) < auth.MinTokenLength {
		return "", fmt.Errorf("the API token given for the demo admin (WARDEN_API_TOKEN for `warden demo`) has %d characters; it needs at least %d", len(token), auth.MinTokenLength)
	}
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("writing the demo admin's token: %w", err)
	}
	return token, nil
}

// member is someone the admin adds.
type member struct{ name, role, display string }

// team is the demo's people once added: a client per person, and the
// narrative of what each did.
type team struct {
	clients map[string]*client.Client
	people  []Person
}

// addTeam has the admin (adminToken) add each member through the API
// (POST /v1/users) and returns a client per member. A store kept from an
// earlier run (--dir) knows them already: their token is rotated instead.
func addTeam(ctx context.Context, base, adminToken string, members ...member) (*team, error) {
	admin, err := client.New(base, adminToken)
	if err != nil {
		return nil, err
	}
	if _, err := admin.WhoAmI(ctx); err != nil {
		return nil, fmt.Errorf("the demo admin's token does not open this controller (a directory kept from a run with another token?): %w", err)
	}
	t := &team{clients: map[string]*client.Client{}}
	added := make([]string, 0, len(members))
	for _, m := range members {
		is, err := admin.AddUser(ctx, v1.AddUserRequest{Name: m.name, Role: m.role, DisplayName: m.display})
		if code, _ := client.StatusCode(err); code == http.StatusConflict {
			is, err = admin.RotateToken(ctx, m.name)
		}
		if err != nil {
			return nil, fmt.Errorf("adding %s (%s): %w", m.name, m.role, err)
		}
		if t.clients[m.name], err = client.New(base, is.Token); err != nil {
			return nil, err
		}
		t.people = append(t.people, Person{Name: m.name, Role: is.User.Role})
		added = append(added, m.name+" ("+is.User.Role+")")
	}
	t.people = append([]Person{{Name: daemon.BootstrapAdmin, Role: v1.RoleAdmin, Did: []string{"added " + strings.Join(added, ", ") + " through the API"}}}, t.people...)
	return t, nil
}

// as is the client of the member called name.
func (t *team) as(name string) *client.Client { return t.clients[name] }

// did records what the demo did as name.
func (t *team) did(name, what string) {
	for i := range t.people {
		if t.people[i].Name == name {
			t.people[i].Did = append(t.people[i].Did, what)
		}
	}
}

// peopleLines renders who did what, for a summary.
func peopleLines(ps []Person) string {
	width := 0
	for _, p := range ps {
		width = max(width, len("user:"+p.Name))
	}
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "  %-*s  %-9s  %s\n", width, "user:"+p.Name, p.Role, orDash(strings.Join(p.Did, "; ")))
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
