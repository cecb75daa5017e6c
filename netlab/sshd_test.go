package netlab_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"regexp"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/warden-ir/warden/netlab"
	"github.com/warden-ir/warden/netlab/netlabtest"
)

// TestSSHDLogsLikeAGateway: the lab's sshd refuses a password and accepts
// root's key from another namespace, and its auth log has the lines
// rsyslog writes on a Debian gateway, with the client's address.
func TestSSHDLogsLikeAGateway(t *testing.T) {
	netlabtest.Skip(t)
	if err := netlab.SSHDAvailable(); err != nil {
		t.Skip(err.Error())
	}
	lab := netlabtest.New(t, netlab.Options{Prefix: "tssh", Sites: []string{"hq"}})
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, _ := ssh.NewPublicKey(pub)
	d, err := lab.StartSSHD(t.Context(), "hq", netlab.SSHDOptions{Dir: t.TempDir(), AuthorizedKeys: []ssh.PublicKey{sshPub}})
	if err != nil {
		t.Fatal(err)
	}
	from := lab.Mgmt()
	if err := netlab.SSHLogin(t.Context(), from.NS, d.Addr, d.HostKey, "root", ssh.Password("guess"), ""); err == nil {
		t.Fatal("a password login as root succeeded")
	}
	if err := netlab.SSHLogin(t.Context(), from.NS, d.Addr, d.HostKey, "root", ssh.PublicKeys(signer), "true"); err != nil {
		t.Fatalf("root's key login: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(d.AuthLog)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`(?m)^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d gw-hq sshd\[\d+\]: Failed password for root from ` + regexp.QuoteMeta(from.V4.String()) + ` port \d+ ssh2$`,
		`(?m)^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d gw-hq sshd\[\d+\]: Accepted publickey for root from ` + regexp.QuoteMeta(from.V4.String()) + ` port \d+ ssh2: ED25519 SHA256:`,
	} {
		if !regexp.MustCompile(want).Match(b) {
			t.Errorf("the auth log has no line matching %s:\n%s", want, b)
		}
	}
}
