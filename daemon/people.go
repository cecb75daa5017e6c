package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/warden-ir/warden/api"
	"github.com/warden-ir/warden/auth"
	"github.com/warden-ir/warden/config"
)

// BootstrapAdmin is the name of the first admin, made when a store has no
// users.
const BootstrapAdmin = "admin"

// authenticator builds the API's authentication from the configuration:
// users' tokens in the store, single sign-on when server.oidc is set, and
// the deprecated shared token.
func (d *Daemon) authenticator(cfg config.Config, limiter *auth.Limiter, log *slog.Logger) (*auth.Authenticator, error) {
	creds := api.Credentials(d.Store)
	var oidc *auth.OIDC
	if o := cfg.Server.OIDC; o.Issuer != "" {
		var err error
		oidc, err = auth.NewOIDC(auth.OIDCConfig{Issuer: o.Issuer, Audience: o.Audience, UserClaim: o.UserClaim, GroupsClaim: o.GroupsClaim, Roles: o.Roles}, creds, nil)
		if err != nil {
			return nil, err
		}
	}
	if cfg.Server.APIToken != "" {
		log.Warn("server.api_token is deprecated: it authenticates as one shared admin (" + auth.LegacyName + "), so the audit cannot tell people apart and nobody using it can approve what it asked for; give each person a token with `warden users add` and remove it")
	}
	return auth.NewAuthenticator(auth.Options{Store: creds, LegacyToken: cfg.Server.APIToken, OIDC: oidc, Limiter: limiter, Registerer: d.Registry})
}

// bootstrapTokenFile is server.bootstrap_token_file, or
// bootstrap-admin.token beside the store.
func bootstrapTokenFile(cfg config.Config) string {
	if cfg.Server.BootstrapTokenFile != "" {
		return cfg.Server.BootstrapTokenFile
	}
	return filepath.Join(filepath.Dir(cfg.Store.Path), "bootstrap-admin.token")
}

// bootstrapAdmin makes the first admin of a store without users, whose
// token is the bootstrap token file's: read when the file exists, made and
// written there (0600, never logged) otherwise. A store with users is left
// alone and the file is not read.
func (d *Daemon) bootstrapAdmin(ctx context.Context) error {
	n, err := d.Store.CountUsers(ctx)
	if err != nil || n > 0 {
		return err
	}
	path := bootstrapTokenFile(d.Config)
	token, wrote, err := BootstrapToken(path)
	if err != nil {
		return fmt.Errorf("server.bootstrap_token_file: %w", err)
	}
	created, err := d.Controller.BootstrapAdmin(ctx, BootstrapAdmin, token)
	if err != nil {
		return fmt.Errorf("making the bootstrap admin: %w", err)
	}
	if created {
		how := "read from"
		if wrote {
			how = "written to"
		}
		d.Log.Warn("no users yet: made the admin \""+BootstrapAdmin+"\"; its token was "+how+" the bootstrap token file. Add people with `warden users add NAME --role ROLE`, then delete the file",
			"file", path)
	}
	return nil
}

// BootstrapToken reads the admin token in path, or, when there is no such
// file, makes one and writes it there (0600); wrote says which. A token
// shorter than auth.MinTokenLength, or a file others can read, is an
// error.
func BootstrapToken(path string) (token string, wrote bool, err error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		token = strings.TrimSpace(string(b))
		if len(token) < auth.MinTokenLength {
			return "", false, fmt.Errorf("%s holds %d characters; a token needs at least %d", path, len(token), auth.MinTokenLength)
		}
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			return "", false, fmt.Errorf("%s is readable by others (mode %04o): an admin's token must be 0600", path, fi.Mode().Perm())
		}
		return token, false, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", false, err
	}
	token, _, err = auth.NewToken()
	if err != nil {
		return "", false, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", false, err
	}
	_, err = f.WriteString(token + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// A partial file must not become the admin's token at the next
		// start.
		os.Remove(path)
		return "", false, err
	}
	return token, true, nil
}
