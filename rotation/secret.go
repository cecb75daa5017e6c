package rotation

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// redacted is what a secret looks like in any output.
const redacted = "[redacted]"

// printsRedacted, embedded, makes every way of printing, marshalling or
// logging a value yield "[redacted]".
type printsRedacted struct{}

// String returns "[redacted]".
func (printsRedacted) String() string { return redacted }

// GoString returns "[redacted]" (for %#v).
func (printsRedacted) GoString() string { return redacted }

// Format prints "[redacted]" whatever the verb (%x and %q included).
func (printsRedacted) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }

// MarshalJSON returns "[redacted]".
func (printsRedacted) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText returns "[redacted]" (for encoders that use it, YAML, XML).
func (printsRedacted) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// LogValue makes slog print "[redacted]".
func (printsRedacted) LogValue() slog.Value { return slog.StringValue(redacted) }

// Secret is key material: a preshared key or a private key. Its bytes are
// reachable only through Bytes; every way of printing, marshalling or
// logging it yields "[redacted]".
type Secret struct {
	printsRedacted
	b []byte
}

// NewSecret returns n random bytes from crypto/rand.
func NewSecret(n int) (Secret, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return Secret{}, fmt.Errorf("generating a secret: %w", err)
	}
	return Secret{b: b}, nil
}

// SecretFrom copies b into a Secret (for importing existing credentials).
func SecretFrom(b []byte) Secret { return Secret{b: append([]byte(nil), b...)} }

// Bytes returns a copy of the key material, for a provider to send to one
// end of a pair. Clear it after use.
func (s Secret) Bytes() []byte { return append([]byte(nil), s.b...) }

// Len is the secret's length in bytes.
func (s Secret) Len() int { return len(s.b) }

// IsZero reports whether there is no secret.
func (s Secret) IsZero() bool { return len(s.b) == 0 }

// Destroy overwrites the secret's bytes. Copies made by Bytes are not
// affected.
func (s Secret) Destroy() { clear(s.b) }

// MasterKey seals the secrets at rest (AES-256-GCM). It is read from a file
// or an environment variable, never from configuration in clear, and it
// prints, marshals and logs as "[redacted]".
type MasterKey struct {
	printsRedacted
	k []byte
}

// masterKeyLen is AES-256's key size.
const masterKeyLen = 32

// NewMasterKey returns a random master key (for bootstrapping a
// deployment, and for tests).
func NewMasterKey() (MasterKey, error) {
	s, err := NewSecret(masterKeyLen)
	if err != nil {
		return MasterKey{}, err
	}
	return MasterKey{k: s.b}, nil
}

// ParseMasterKey decodes a master key: 32 raw bytes, or their standard
// base64 or hex encoding (surrounding white space ignored). Errors never
// quote the input.
func ParseMasterKey(b []byte) (MasterKey, error) {
	if len(b) == masterKeyLen {
		return MasterKey{k: append([]byte(nil), b...)}, nil
	}
	text := strings.TrimSpace(string(b))
	if k, err := base64.StdEncoding.DecodeString(text); err == nil && len(k) == masterKeyLen {
		return MasterKey{k: k}, nil
	}
	if k, err := hex.DecodeString(text); err == nil && len(k) == masterKeyLen {
		return MasterKey{k: k}, nil
	}
	return MasterKey{}, errors.New("parsing the master key: want 32 bytes, raw or as base64 or hex")
}

// LoadMasterKeyFile reads the master key from path. The file must be a
// regular file that neither group nor others may read or write.
func LoadMasterKeyFile(path string) (MasterKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return MasterKey{}, fmt.Errorf("reading the master key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return MasterKey{}, fmt.Errorf("reading the master key file %s: not a regular file", path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return MasterKey{}, fmt.Errorf("reading the master key file %s: mode %v lets group or others read it, want 0600 or stricter", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return MasterKey{}, fmt.Errorf("reading the master key file: %w", err)
	}
	defer clear(b)
	k, err := ParseMasterKey(b)
	if err != nil {
		return MasterKey{}, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// LoadMasterKeyEnv reads the master key (base64 or hex) from the named
// environment variable.
func LoadMasterKeyEnv(name string) (MasterKey, error) {
	v, ok := os.LookupEnv(name)
	if !ok || v == "" {
		return MasterKey{}, fmt.Errorf("reading the master key: environment variable %s is not set", name)
	}
	k, err := ParseMasterKey([]byte(v))
	if err != nil {
		return MasterKey{}, fmt.Errorf("environment variable %s: %w", name, err)
	}
	return k, nil
}

// WriteMasterKeyFile writes k, base64-encoded, to a new file at path with
// mode 0600. It refuses to overwrite an existing file.
func WriteMasterKeyFile(path string, k MasterKey) error {
	if len(k.k) != masterKeyLen {
		return errors.New("writing the master key: empty key")
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("writing the master key: %w", err)
	}
	_, werr := io.WriteString(f, base64.StdEncoding.EncodeToString(k.k)+"\n")
	return errors.Join(werr, f.Close())
}

// ID names the key without revealing it (the first 8 bytes of its SHA-256,
// in hex), so rows sealed under another key are recognised.
func (k MasterKey) ID() string {
	h := sha256.Sum256(append([]byte("warden tunnel credentials master key\x00"), k.k...))
	return hex.EncodeToString(h[:8])
}
