package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// MinTokenLength is the API token length below which a token sent over a
// non-loopback listener without TLS earns a warning.
const MinTokenLength = 32

// fileChecks are the checks CheckFiles runs, in order: what `warden serve`
// would otherwise find out while starting, or at the first action that
// needs the file. Each returns nil or an error naming its key.
var fileChecks = []func(Config) error{
	checkStorePath,
	checkEvidenceDir,
	checkServerTLS,
	checkAgentTLS,
	checkVSphereCA,
}

// CheckFiles runs every file check and joins their errors. It reads the
// files the configuration names and looks at the directories it would
// write to, and changes nothing: it creates neither the database nor a
// directory.
func (c Config) CheckFiles() error {
	var errs []error
	for _, check := range fileChecks {
		if err := check(c); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// checkStorePath: the store's directory exists and is writable (SQLite
// creates the database, its -wal and -shm files and the lock file there),
// and an existing database file can be read and written.
func checkStorePath(c Config) error {
	if c.Store.Postgres() {
		_, err := c.Store.Password() // the file must be readable; the database is not reached
		return err
	}
	if c.Store.Path == "" {
		return nil // Validate reports it
	}
	dir := filepath.Dir(c.Store.Path)
	if err := writableDir(dir); err != nil {
		return fmt.Errorf("store.path: %w", err)
	}
	fi, err := os.Stat(c.Store.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil // created by the first serve
	case err != nil:
		return fmt.Errorf("store.path: checking %s: %w", c.Store.Path, err)
	case fi.IsDir():
		return fmt.Errorf("store.path: %s is a directory, not a database file", c.Store.Path)
	}
	if err := unix.Access(c.Store.Path, unix.R_OK|unix.W_OK); err != nil {
		return fmt.Errorf("store.path: %s cannot be read and written: %w", c.Store.Path, err)
	}
	return nil
}

// checkEvidenceDir: the evidence directory (default: "evidence" beside the
// store) exists and is writable, or can be created: its nearest existing
// ancestor is a writable directory.
func checkEvidenceDir(c Config) error {
	key, dir := "evidence.dir", c.Evidence.Dir
	if dir == "" {
		if c.Store.Path == "" {
			return nil
		}
		key, dir = "evidence.dir (default: beside store.path)", filepath.Join(filepath.Dir(c.Store.Path), "evidence")
	}
	at := dir
	for {
		_, err := os.Stat(at)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: checking %s: %w", key, at, err)
		}
		parent := filepath.Dir(at)
		if parent == at {
			break
		}
		at = parent
	}
	if err := writableDir(at); err != nil {
		if at != dir {
			return fmt.Errorf("%s: %s cannot be created: %w", key, dir, err)
		}
		return fmt.Errorf("%s: %w", key, err)
	}
	return nil
}

// checkServerTLS: the API's certificate and key load as a pair, as
// ServeTLS loads them.
func checkServerTLS(c Config) error {
	s := c.Server
	if s.TLSCertFile == "" || s.TLSKeyFile == "" {
		return nil // both or neither: Validate
	}
	if _, err := tls.LoadX509KeyPair(s.TLSCertFile, s.TLSKeyFile); err != nil {
		return fmt.Errorf("server.tls_cert_file and server.tls_key_file (%s, %s): loading the key pair: %w", s.TLSCertFile, s.TLSKeyFile, err)
	}
	return nil
}

// checkAgentTLS: the controller's client certificate and key load as a
// pair and the agents' CA file holds certificates. Serve builds each
// agent's client only when it first needs it; a bad file would show at
// the first action, in the middle of an incident.
func checkAgentTLS(c Config) error {
	a := c.Agents
	var errs []error
	switch {
	case a.CertFile != "" && a.KeyFile != "":
		if _, err := tls.LoadX509KeyPair(a.CertFile, a.KeyFile); err != nil {
			errs = append(errs, fmt.Errorf("agents.cert_file and agents.key_file (%s, %s): loading the key pair: %w", a.CertFile, a.KeyFile, err))
		}
	case a.CertFile != "" || a.KeyFile != "":
		errs = append(errs, errors.New("agents.cert_file and agents.key_file: set both or neither"))
	}
	if a.CAFile != "" {
		if err := checkCAFile(a.CAFile); err != nil {
			errs = append(errs, fmt.Errorf("agents.ca_file: %w", err))
		}
	} else if a.CertFile != "" {
		errs = append(errs, errors.New("agents.ca_file: is required with agents.cert_file (it verifies the agents)"))
	}
	return errors.Join(errs...)
}

// checkVSphereCA: the vCenter CA bundle holds certificates.
func checkVSphereCA(c Config) error {
	if c.VSphere.URL == "" || c.VSphere.CAFile == "" {
		return nil
	}
	if err := checkCAFile(c.VSphere.CAFile); err != nil {
		return fmt.Errorf("vsphere.ca_file: %w", err)
	}
	return nil
}

func checkCAFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading the CA bundle: %w", err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(b) {
		return fmt.Errorf("reading the CA bundle %s: no PEM certificate in it", path)
	}
	return nil
}

// writableDir says why dir cannot hold new files, or nil.
func writableDir(dir string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("directory %s does not exist", dir)
	}
	if err != nil {
		return fmt.Errorf("checking directory %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	// access(2) with W_OK also fails on a read-only file system, which a
	// look at the mode bits would miss.
	if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
		return fmt.Errorf("directory %s is not writable: %w", dir, err)
	}
	return nil
}

// Warnings lists settings that load and work but are probably mistakes,
// each naming its key. They never name a secret.
func (c Config) Warnings() []string {
	var out []string
	for _, g := range c.Inventory.Gateways {
		for _, n := range g.ManagementNetworks {
			p, err := netip.ParsePrefix(n)
			if err == nil && p.Bits() == 0 {
				out = append(out, fmt.Sprintf("inventory.gateways (%s).management_networks: %s covers every address: isolating %s would cut nothing", g.ID, n, g.ID))
			}
		}
	}
	s := c.Server
	if s.APIToken != "" && len(s.APIToken) < MinTokenLength && s.TLSCertFile == "" && !loopbackListener(s.Listen) {
		out = append(out, fmt.Sprintf("server.api_token: shorter than %d characters on %s, which is neither loopback nor TLS: use a long random token (openssl rand -hex 32), TLS, or both",
			MinTokenLength, s.Listen))
	}
	return out
}

// loopbackListener reports whether listen ("host:port") only accepts
// connections from this host.
func loopbackListener(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}
