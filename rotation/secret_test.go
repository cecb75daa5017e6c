package rotation

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// leaks reports whether text holds b raw, in base64 (standard or URL) or
// in hex.
func leaks(text string, b []byte) bool {
	for _, form := range []string{string(b), base64.StdEncoding.EncodeToString(b), base64.RawStdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b), hex.EncodeToString(b), strings.ToUpper(hex.EncodeToString(b))} {
		if strings.Contains(text, form) {
			return true
		}
	}
	return false
}

func TestSecretNeverPrints(t *testing.T) {
	s, err := NewSecret(32)
	if err != nil {
		t.Fatal(err)
	}
	mk, err := NewMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	type holder struct {
		Name   string
		Secret Secret
		Master MasterKey
	}
	h := holder{Name: "x", Secret: s, Master: mk}
	js, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	for _, hd := range []slog.Handler{slog.NewJSONHandler(&logs, nil), slog.NewTextHandler(&logs, nil)} {
		slog.New(hd).Info("rotating", "secret", s, "master", mk, "holder", h)
	}
	outputs := map[string]string{
		"%v":          fmt.Sprintf("%v", s),
		"%s":          fmt.Sprintf("%s", s),
		"%x":          fmt.Sprintf("%x", s),
		"%X":          fmt.Sprintf("%X", s),
		"%q":          fmt.Sprintf("%q", s),
		"%#v":         fmt.Sprintf("%#v", s),
		"%+v holder":  fmt.Sprintf("%+v", h),
		"%#v holder":  fmt.Sprintf("%#v", h),
		"master %x":   fmt.Sprintf("%x", mk),
		"json":        string(js),
		"slog":        logs.String(),
		"error":       fmt.Errorf("rotating with %v: %w", s, errors.New("boom")).Error(),
		"master text": func() string { b, _ := mk.MarshalText(); return string(b) }(),
	}
	for name, out := range outputs {
		t.Run(name, func(t *testing.T) {
			if leaks(out, s.b) || leaks(out, mk.k) {
				t.Fatalf("secret leaked: %s", out)
			}
			if !strings.Contains(out, "[redacted]") {
				t.Errorf("output %q does not say [redacted]", out)
			}
		})
	}
}

func TestSecretBytesIsACopy(t *testing.T) {
	s := SecretFrom([]byte("0123456789abcdef0123456789abcdef"))
	b := s.Bytes()
	clear(b)
	if s.Bytes()[0] != '0' {
		t.Fatal("clearing the copy cleared the secret")
	}
	s.Destroy()
	if s.Bytes()[0] != 0 {
		t.Fatal("Destroy left the bytes")
	}
}

func TestMasterKeyLoading(t *testing.T) {
	mk, err := NewMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "master.key")
	if err := WriteMasterKeyFile(good, mk); err != nil {
		t.Fatal(err)
	}
	if err := WriteMasterKeyFile(good, mk); err == nil {
		t.Error("WriteMasterKeyFile overwrote an existing file")
	}
	raw := filepath.Join(dir, "raw.key")
	if err := os.WriteFile(raw, mk.k, 0o600); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(dir, "open.key")
	if err := os.WriteFile(open, []byte(base64.StdEncoding.EncodeToString(mk.k)), 0o644); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(dir, "short.key")
	if err := os.WriteFile(short, []byte("c2hvcnQ="), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("WARDEN_TEST_MASTER_HEX", hex.EncodeToString(mk.k))
	t.Setenv("WARDEN_TEST_MASTER_BAD", "not-a-key")

	tests := map[string]struct {
		load    func() (MasterKey, error)
		wantErr string
	}{
		"base64 file":       {load: func() (MasterKey, error) { return LoadMasterKeyFile(good) }},
		"raw file":          {load: func() (MasterKey, error) { return LoadMasterKeyFile(raw) }},
		"hex env":           {load: func() (MasterKey, error) { return LoadMasterKeyEnv("WARDEN_TEST_MASTER_HEX") }},
		"world readable":    {load: func() (MasterKey, error) { return LoadMasterKeyFile(open) }, wantErr: "group or others"},
		"too short":         {load: func() (MasterKey, error) { return LoadMasterKeyFile(short) }, wantErr: "want 32 bytes"},
		"missing file":      {load: func() (MasterKey, error) { return LoadMasterKeyFile(filepath.Join(dir, "nope")) }, wantErr: "no such file"},
		"unset env":         {load: func() (MasterKey, error) { return LoadMasterKeyEnv("WARDEN_TEST_MASTER_UNSET") }, wantErr: "not set"},
		"malformed env":     {load: func() (MasterKey, error) { return LoadMasterKeyEnv("WARDEN_TEST_MASTER_BAD") }, wantErr: "want 32 bytes"},
		"directory as file": {load: func() (MasterKey, error) { return LoadMasterKeyFile(dir) }, wantErr: "not a regular file"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := tc.load()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one mentioning %q", err, tc.wantErr)
				}
				if leaks(err.Error(), mk.k) || strings.Contains(err.Error(), "not-a-key") {
					t.Fatalf("error quotes the key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.ID() != mk.ID() {
				t.Fatal("loaded a different key")
			}
		})
	}
}
