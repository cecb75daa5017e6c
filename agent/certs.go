package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/internal/clock"
)

// Files written by Init.
const (
	CAFile             = "ca.pem"
	CAKeyFile          = "ca-key.pem"
	AgentCertFile      = "agent.pem"
	AgentKeyFile       = "agent-key.pem"
	ControllerCertFile = "controller.pem"
	ControllerKeyFile  = "controller-key.pem"
)

// ErrExists is returned by Init when the directory already holds key
// material and InitOptions.Overwrite is not set.
var ErrExists = errors.New("key material exists; refusing to overwrite it")

// InitOptions tune Init.
type InitOptions struct {
	// Overwrite replaces existing files; without it Init refuses to touch
	// a directory that already holds any of its files.
	Overwrite bool
	// ControllerIdentity is the controller certificate's CommonName
	// (default wire.DefaultControllerIdentity).
	ControllerIdentity string
	// Validity of the leaf certificates (default 825 days); the CA lives
	// ten years.
	Validity time.Duration
	// Clock gives the issue time (default clock.Real).
	Clock clock.Clock
	// Gateway, when set, makes the agent certificate that gateway's: its
	// CommonName is the inventory id, which is how the controller's agent
	// listener knows whose findings it receives. Its pair is written as
	// GatewayCertFile(id) and GatewayKeyFile(id). When dir already holds
	// the CA (ca.pem and ca-key.pem), only that pair is issued, from that
	// CA, so that one CA serves a fleet; Overwrite then replaces only that
	// gateway's pair.
	Gateway string
}

// GatewayCertFile and GatewayKeyFile name the pair Init writes for a
// gateway (InitOptions.Gateway).
func GatewayCertFile(gateway string) string { return "agent-" + gateway + ".pem" }

// GatewayKeyFile: see GatewayCertFile.
func GatewayKeyFile(gateway string) string { return "agent-" + gateway + "-key.pem" }

// agentUsages are the extended key usages of every agent certificate: a
// server for the controller's commands, and a client of the controller's
// agent listener, to which it delivers its sensors' findings.
var agentUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}

// Init creates the key material of a lab: a CA, the agent's certificate
// for agentHosts (DNS names and IP addresses, which the controller
// verifies; it serves the agent's API and is also the client certificate
// the agent delivers findings with), and the controller's certificate
// (its client certificate towards the agents, and the server certificate
// of its agent listener, naming the controller identity as a DNS name).
// Keys are ECDSA P-256 in PKCS#8, mode 0600; dir is created 0700. It
// returns the paths written. ca-key.pem is needed only to issue more
// certificates and belongs off the gateway. With opt.Gateway the agent
// certificate is that gateway's (see InitOptions.Gateway).
func Init(dir string, agentHosts []string, opt InitOptions) ([]string, error) {
	if opt.ControllerIdentity == "" {
		opt.ControllerIdentity = wire.DefaultControllerIdentity
	}
	if opt.Validity == 0 {
		opt.Validity = 825 * 24 * time.Hour
	}
	if opt.Clock == nil {
		opt.Clock = clock.Real
	}
	dnsNames, ips, err := splitHosts(agentHosts)
	if err != nil {
		return nil, fmt.Errorf("initialising agent certificates: %w", err)
	}
	agentCN, agentCert, agentKey := "warden-agent", AgentCertFile, AgentKeyFile
	if opt.Gateway != "" {
		if err := checkGatewayID(opt.Gateway, opt.ControllerIdentity); err != nil {
			return nil, fmt.Errorf("initialising agent certificates: %w", err)
		}
		agentCN, agentCert, agentKey = opt.Gateway, GatewayCertFile(opt.Gateway), GatewayKeyFile(opt.Gateway)
		hasCA, err := holdsCA(dir)
		if err != nil {
			return nil, fmt.Errorf("initialising agent certificates: %w", err)
		}
		if hasCA {
			return issueGateway(dir, dnsNames, ips, opt)
		}
	}
	names := []string{CAFile, CAKeyFile, agentCert, agentKey, ControllerCertFile, ControllerKeyFile}
	if !opt.Overwrite {
		if err := refuseExisting(dir, names); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}

	now := opt.Clock.Now().Add(-5 * time.Minute) // tolerate small clock differences
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "warden agent CA", Organization: []string{"Warden"}},
		NotBefore:             now,
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, caCert, err := issue(caTmpl, nil, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("issuing CA certificate: %w", err)
	}
	agentDER, agentPriv, err := issueLeaf("agent", &x509.Certificate{
		Subject:     pkix.Name{CommonName: agentCN},
		ExtKeyUsage: agentUsages,
		DNSNames:    dnsNames,
		IPAddresses: ips,
	}, now, opt.Validity, caCert, caKey)
	if err != nil {
		return nil, err
	}
	ctlTmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: opt.ControllerIdentity},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	if validDNSName(opt.ControllerIdentity) {
		// The agents dial the controller's agent listener with the
		// identity as the server name, wherever the controller runs.
		ctlTmpl.DNSNames = []string{strings.ToLower(opt.ControllerIdentity)}
	}
	ctlDER, ctlKey, err := issueLeaf("controller", ctlTmpl, now, opt.Validity, caCert, caKey)
	if err != nil {
		return nil, err
	}

	files := []struct {
		name string
		data []byte
		perm os.FileMode
	}{
		{CAFile, pemBlock("CERTIFICATE", caDER), 0o644},
		{agentCert, pemBlock("CERTIFICATE", agentDER), 0o644},
		{ControllerCertFile, pemBlock("CERTIFICATE", ctlDER), 0o644},
	}
	for _, k := range []struct {
		name string
		key  *ecdsa.PrivateKey
	}{{CAKeyFile, caKey}, {agentKey, agentPriv}, {ControllerKeyFile, ctlKey}} {
		der, err := x509.MarshalPKCS8PrivateKey(k.key)
		if err != nil {
			return nil, fmt.Errorf("encoding %s: %w", k.name, err)
		}
		files = append(files, struct {
			name string
			data []byte
			perm os.FileMode
		}{k.name, pemBlock("PRIVATE KEY", der), 0o600})
	}
	var written []string
	for _, f := range files {
		if err := writeNew(dir, f.name, f.data, f.perm, opt.Overwrite); err != nil {
			return written, fmt.Errorf("writing %s: %w", f.name, err)
		}
		written = append(written, filepath.Join(dir, f.name))
	}
	return written, nil
}

// refuseExisting fails with ErrExists when dir holds any of names.
func refuseExisting(dir string, names []string) error {
	var exist []string
	for _, n := range names {
		if _, err := os.Lstat(filepath.Join(dir, n)); err == nil {
			exist = append(exist, n)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("initialising agent certificates: %w", err)
		}
	}
	if len(exist) > 0 {
		return fmt.Errorf("initialising agent certificates: %w: %s already holds %s", ErrExists, dir, strings.Join(exist, ", "))
	}
	return nil
}

// checkGatewayID refuses a gateway id that cannot be a file name or that
// would make the gateway's certificate name the controller (which the
// agents accept commands from).
func checkGatewayID(id, controllerIdentity string) error {
	if len(id) > 64 || id[0] == '.' || id[0] == '-' {
		return fmt.Errorf("gateway %q: must be 1 to 64 characters and not start with '.' or '-'", id)
	}
	for _, c := range id {
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '-' && c != '_' && c != '.' {
			return fmt.Errorf("gateway %q: only letters, digits, '-', '_' and '.' (the id names the certificate's files)", id)
		}
	}
	if strings.EqualFold(id, controllerIdentity) {
		return fmt.Errorf("gateway %q: is the controller identity; a gateway's certificate must not name the controller", id)
	}
	return nil
}

// holdsCA reports whether dir holds the CA certificate and its key; one
// without the other is an error.
func holdsCA(dir string) (bool, error) {
	var found []bool
	for _, n := range []string{CAFile, CAKeyFile} {
		_, err := os.Lstat(filepath.Join(dir, n))
		switch {
		case err == nil:
			found = append(found, true)
		case errors.Is(err, fs.ErrNotExist):
			found = append(found, false)
		default:
			return false, err
		}
	}
	if found[0] != found[1] {
		return false, fmt.Errorf("%s holds only one of %s and %s: a gateway's certificate needs both", dir, CAFile, CAKeyFile)
	}
	return found[0], nil
}

// issueGateway issues a gateway's agent pair from the CA already in dir
// and writes only that pair.
func issueGateway(dir string, dnsNames []string, ips []net.IP, opt InitOptions) ([]string, error) {
	certName, keyName := GatewayCertFile(opt.Gateway), GatewayKeyFile(opt.Gateway)
	if !opt.Overwrite {
		if err := refuseExisting(dir, []string{certName, keyName}); err != nil {
			return nil, err
		}
	}
	caCert, caKey, err := loadCA(dir)
	if err != nil {
		return nil, fmt.Errorf("issuing the certificate of gateway %s: %w", opt.Gateway, err)
	}
	der, key, err := issueLeaf("agent", &x509.Certificate{
		Subject:     pkix.Name{CommonName: opt.Gateway},
		ExtKeyUsage: agentUsages,
		DNSNames:    dnsNames,
		IPAddresses: ips,
	}, opt.Clock.Now().Add(-5*time.Minute), opt.Validity, caCert, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", keyName, err)
	}
	var written []string
	for _, f := range []struct {
		name string
		data []byte
		perm os.FileMode
	}{{certName, pemBlock("CERTIFICATE", der), 0o644}, {keyName, pemBlock("PRIVATE KEY", keyDER), 0o600}} {
		if err := writeNew(dir, f.name, f.data, f.perm, opt.Overwrite); err != nil {
			return written, fmt.Errorf("writing %s: %w", f.name, err)
		}
		written = append(written, filepath.Join(dir, f.name))
	}
	return written, nil
}

// loadCA reads the CA certificate and its ECDSA key from dir.
func loadCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, nil, fmt.Errorf("reading the CA certificate: %w", err)
	}
	blk, _ := pem.Decode(certPEM)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("reading the CA certificate: %s holds no PEM certificate", CAFile)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing %s: %w", CAFile, err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, nil, fmt.Errorf("reading the CA key: %w", err)
	}
	kblk, _ := pem.Decode(keyPEM)
	if kblk == nil || kblk.Type != "PRIVATE KEY" {
		return nil, nil, fmt.Errorf("reading the CA key: %s holds no PKCS#8 PEM key", CAKeyFile)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(kblk.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing %s: %w", CAKeyFile, err)
	}
	key, ok := parsed.(*ecdsa.PrivateKey)
	if !ok || !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("%s is not the key of %s", CAKeyFile, CAFile)
	}
	if !cert.IsCA {
		return nil, nil, fmt.Errorf("%s is not a CA certificate", CAFile)
	}
	return cert, key, nil
}

// issueLeaf makes a fresh P-256 key and a digital-signature certificate
// for it from tmpl (its name, extended usage and addresses), valid for
// validity from notBefore and signed by the CA; role names the pair in
// errors.
func issueLeaf(role string, tmpl *x509.Certificate, notBefore time.Time, validity time.Duration, ca *x509.Certificate, caKey *ecdsa.PrivateKey) ([]byte, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating %s key: %w", role, err)
	}
	tmpl.Subject.Organization = []string{"Warden"}
	tmpl.NotBefore, tmpl.NotAfter = notBefore, notBefore.Add(validity)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, _, err := issue(tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("issuing %s certificate: %w", role, err)
	}
	return der, key, nil
}

// issue signs tmpl with a fresh random serial; a nil parent self-signs.
func issue(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, signer *ecdsa.PrivateKey) ([]byte, *x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, fmt.Errorf("generating serial: %w", err)
	}
	tmpl.SerialNumber = serial
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return der, cert, nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// splitHosts sorts agent hosts into DNS names and IP addresses.
func splitHosts(hosts []string) ([]string, []net.IP, error) {
	var dns []string
	var ips []net.IP
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if a, err := netip.ParseAddr(h); err == nil {
			ips = append(ips, net.IP(a.Unmap().AsSlice()))
			continue
		}
		if !validDNSName(h) {
			return nil, nil, fmt.Errorf("agent host %q is neither an IP address nor a DNS name", h)
		}
		dns = append(dns, strings.ToLower(h))
	}
	if len(dns) == 0 && len(ips) == 0 {
		return nil, nil, errors.New("at least one agent host name or IP address is required: the controller verifies it")
	}
	return dns, ips, nil
}

func validDNSName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '-' {
				return false
			}
		}
	}
	return true
}

// writeNew writes a file with perm; without overwrite it fails if the file
// appeared since Init checked.
func writeNew(dir, name string, data []byte, perm os.FileMode, overwrite bool) error {
	if overwrite {
		return writeFileAtomic(dir, name, data, perm)
	}
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	return writeSynced(f, data)
}
