package capture

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-ir/warden/agent/netns"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/internal/clock/clocktest"
	"github.com/warden-ir/warden/internal/testsupport"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func requireLittleEndian(t *testing.T) {
	t.Helper()
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the /proc/net fixtures were written on a little-endian host")
	}
}

func TestParseProcNetSockets(t *testing.T) {
	requireLittleEndian(t)
	type sock struct {
		state, local, remote string
		listening            bool
		uid                  uint32
		inode                uint64
	}
	tests := map[string][]sock{
		"tcp": {
			{"LISTEN", "127.0.0.1:8080", "0.0.0.0:0", true, 0, 11111},
			{"ESTABLISHED", "127.0.0.1:50000", "127.0.0.1:8080", false, 1000, 11112},
			{"ESTABLISHED", "192.168.1.2:22", "10.0.51.100:54321", false, 0, 11113},
			{"TIME_WAIT", "127.0.0.1:46500", "127.0.0.1:8080", false, 0, 0},
		},
		"tcp6": {
			{"LISTEN", "[::]:22", "[::]:0", true, 0, 22221},
			{"ESTABLISHED", "[::ffff:127.0.0.1]:8080", "[::ffff:127.0.0.2]:54321", false, 107, 22222},
			{"LISTEN", "[2001:db8::1]:443", "[::]:0", true, 0, 22223},
		},
		"udp": {
			{"UNCONN", "0.0.0.0:500", "0.0.0.0:0", true, 0, 33331},
			{"UNCONN", "0.0.0.0:4500", "0.0.0.0:0", true, 0, 33332},
			{"ESTABLISHED", "127.0.0.1:33060", "127.0.0.1:53", false, 1000, 33333},
		},
		"udp6": {
			{"UNCONN", "[::]:51820", "[::]:0", true, 0, 44441},
		},
	}
	for proto, want := range tests {
		t.Run(proto, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata", "capture", "proc-net", proto))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := parseProcNetSockets(f, proto)
			if err != nil {
				t.Fatalf("parseProcNetSockets: %v", err)
			}
			if len(got) != len(want) {
				t.Fatalf("got %d sockets, want %d: %+v", len(got), len(want), got)
			}
			for i, w := range want {
				g := got[i]
				if g.Protocol != proto || g.State != w.state || g.Local != w.local || g.Remote != w.remote || g.Listening != w.listening || g.UID != w.uid || g.Inode != w.inode {
					t.Errorf("socket %d = %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

func TestParseProcNetSocketsRejectsMalformed(t *testing.T) {
	tests := map[string]string{
		"short line":       "hdr\n 0: 0100007F:1F90 00000000:0000 0A\n",
		"odd address":      "hdr\n 0: 0100007:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1 1\n",
		"bad port":         "hdr\n 0: 0100007F:XYZ 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1 1\n",
		"bad inode":        "hdr\n 0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 x 1\n",
		"address no colon": "hdr\n 0: 0100007F1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1 1\n",
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := parseProcNetSockets(strings.NewReader(in), "tcp"); err == nil {
				t.Fatal("parsed a malformed table without error")
			}
		})
	}
}

func TestParseProcStat(t *testing.T) {
	tests := map[string]struct {
		in                string
		comm, state       string
		ppid              int
		startTicks        uint64
		wantErr           bool
		wantErrSubstrings string
	}{
		"plain":                 {in: "42 (sshd) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 1234 0 0", comm: "sshd", state: "S", ppid: 1, startTicks: 1234},
		"comm with parentheses": {in: "7 (a) (b c) R 3 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 0", comm: "a) (b c", state: "R", ppid: 3, startTicks: 99},
		"no comm":               {in: "7 a R 3", wantErr: true},
		"truncated":             {in: "7 (a) R 3 7", wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p, err := parseProcStat([]byte(tc.in))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("parsed %q without error", tc.in)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Comm != tc.comm || p.State != tc.state || p.PPID != tc.ppid || p.startTicks != tc.startTicks {
				t.Errorf("got comm %q state %q ppid %d start %d", p.Comm, p.State, p.PPID, p.startTicks)
			}
		})
	}
}

func TestTailLines(t *testing.T) {
	tests := map[string]struct {
		in    string
		n     int
		limit int64
		want  string
	}{
		"more lines than n":          {in: "a\nb\nc\nd\n", n: 2, limit: 1 << 20, want: "c\nd\n"},
		"exactly n":                  {in: "a\nb\n", n: 2, limit: 1 << 20, want: "a\nb\n"},
		"fewer than n":               {in: "a\nb\n", n: 5, limit: 1 << 20, want: "a\nb\n"},
		"no final newline":           {in: "a\nb\nc", n: 2, limit: 1 << 20, want: "b\nc"},
		"empty lines count":          {in: "a\n\n\nb\n", n: 3, limit: 1 << 20, want: "\n\nb\n"},
		"zero lines":                 {in: "a\nb\n", n: 0, limit: 1 << 20, want: ""},
		"empty file":                 {in: "", n: 3, limit: 1 << 20, want: ""},
		"byte limit drops a partial": {in: "aaaaaaaa\nbbbb\ncc\n", n: 10, limit: 6, want: "cc\n"},
		"byte limit on a long line":  {in: strings.Repeat("x", 100) + "\n", n: 1, limit: 10, want: ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := strings.NewReader(tc.in)
			got, err := tailLines(r, int64(len(tc.in)), tc.n, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestTailFileAcrossBlocks writes a log far larger than one read block and
// checks that exactly the last N lines come back.
func TestTailFileAcrossBlocks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.log")
	var lines []string
	for i := range 20000 {
		lines = append(lines, fmt.Sprintf("Nov 25 03:%02d:%02d gw sshd[%d]: Failed password for root from 203.0.113.%d port %d ssh2", i/60%60, i%60, 1000+i, i%250, 40000+i))
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 500, 1999, 20000, 25000} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			got, err := tailFile(path, n, maxTailBytes)
			if err != nil {
				t.Fatal(err)
			}
			want := lines[max(0, len(lines)-n):]
			if string(got) != strings.Join(want, "\n")+"\n" {
				gotLines := strings.Split(strings.TrimSuffix(string(got), "\n"), "\n")
				t.Fatalf("got %d lines (first %q), want %d (first %q)", len(gotLines), gotLines[0], len(want), want[0])
			}
		})
	}
}

// utmpFixture is one record to write in glibc's 64-bit utmp layout.
type utmpFixture struct {
	typ       int16
	pid       int32
	line, id  string
	user      string
	host      string
	sec, usec int32
	addr      [16]byte
}

func (u utmpFixture) bytes() []byte {
	b := make([]byte, utmpRecordSize)
	le := binary.LittleEndian
	le.PutUint16(b[0:], uint16(u.typ))
	le.PutUint32(b[4:], uint32(u.pid))
	copy(b[8:40], u.line)
	copy(b[40:44], u.id)
	copy(b[44:76], u.user)
	copy(b[76:332], u.host)
	le.PutUint32(b[340:], uint32(u.sec))
	le.PutUint32(b[344:], uint32(u.usec))
	copy(b[348:364], u.addr[:])
	return b
}

func utmpFile(recs ...utmpFixture) []byte {
	var b []byte
	for _, r := range recs {
		b = append(b, r.bytes()...)
	}
	return b
}

func TestParseUTMP(t *testing.T) {
	v4 := [16]byte{203, 0, 113, 7}
	v6 := netip.MustParseAddr("2001:db8::7").As16()
	recs := []utmpFixture{
		{typ: 2, line: "~", id: "~~", user: "reboot", host: "6.1.0-18-amd64", sec: 1700000000},
		{typ: 7, pid: 1234, line: "pts/0", id: "ts/0", user: "admin", host: "203.0.113.7", sec: 1700000100, usec: 250000, addr: v4},
		{typ: 7, pid: 1240, line: "pts/1", id: "ts/1", user: "ops", host: "2001:db8::7", sec: 1700000200, addr: v6},
		{typ: 8, pid: 1100, line: "pts/2", id: "ts/2", sec: 1700000050},
	}
	b := utmpFile(recs...)

	t.Run("whole records", func(t *testing.T) {
		got, err := parseUTMP(b)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 4 {
			t.Fatalf("got %d records, want 4", len(got))
		}
		admin := got[1]
		if admin.Type != "USER_PROCESS" || admin.PID != 1234 || admin.Line != "pts/0" || admin.User != "admin" || admin.Host != "203.0.113.7" || admin.Addr != "203.0.113.7" {
			t.Errorf("admin record = %+v", admin)
		}
		if want := time.Unix(1700000100, 250000000).UTC(); !admin.Time.Equal(want) {
			t.Errorf("admin login time %s, want %s", admin.Time, want)
		}
		if got[2].Addr != "2001:db8::7" {
			t.Errorf("IPv6 address decoded as %q", got[2].Addr)
		}
		if got[0].Type != "BOOT_TIME" || got[3].Type != "DEAD_PROCESS" {
			t.Errorf("types %q, %q", got[0].Type, got[3].Type)
		}
	})
	t.Run("trailing partial record", func(t *testing.T) {
		got, err := parseUTMP(append(slices.Clone(b), 1, 2, 3))
		if err == nil {
			t.Fatal("no error for a partial record")
		}
		if len(got) != 4 {
			t.Fatalf("kept %d whole records, want 4", len(got))
		}
	})
}

func TestParseUAPIDevice(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "capture", "wg-uapi-get.txt"))
	if err != nil {
		t.Fatal(err)
	}
	priv, psk := uapiFixtureSecrets(t, raw)

	d, err := parseUAPIDevice(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("parseUAPIDevice: %v", err)
	}
	if d.PublicKey != priv.PublicKey().String() {
		t.Errorf("device public key %q, want %q (derived from the private key)", d.PublicKey, priv.PublicKey())
	}
	if d.ListenPort != 51820 || len(d.Peers) != 2 {
		t.Fatalf("device = %+v", d)
	}
	p := d.Peers[0]
	if !p.HasPresharedKey || p.Endpoint != "192.0.2.10:51820" || p.ReceiveBytes != 2960 || p.TransmitBytes != 1480 ||
		p.PersistentKeepaliveSeconds != 25 || !slices.Equal(p.AllowedIPs, []string{"10.20.0.0/16", "fd00:20::/64"}) ||
		!p.LatestHandshake.Equal(time.Unix(1700000000, 123456789)) {
		t.Errorf("first peer = %+v", p)
	}
	if q := d.Peers[1]; q.HasPresharedKey || !q.LatestHandshake.IsZero() || !slices.Equal(q.AllowedIPs, []string{"10.30.0.0/16"}) {
		t.Errorf("second peer = %+v", q)
	}
	out, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	assertNoSecret(t, "parsed device", out, priv, psk)

	t.Run("errors never quote a line", func(t *testing.T) {
		bad := strings.Replace(string(raw), "listen_port=51820", "private_key="+hex.EncodeToString(psk[:])+"zz", 1)
		_, err := parseUAPIDevice(strings.NewReader(bad))
		if err == nil {
			t.Fatal("no error for a malformed private key")
		}
		assertNoSecret(t, "error", []byte(err.Error()), psk)
		_, err = parseUAPIDevice(strings.NewReader("private_key" + hex.EncodeToString(psk[:]) + "\n\n"))
		if err == nil {
			t.Fatal("no error for a line without '='")
		}
		assertNoSecret(t, "error", []byte(err.Error()), psk)
	})
	t.Run("errno", func(t *testing.T) {
		if _, err := parseUAPIDevice(strings.NewReader("errno=19\n\n")); err == nil {
			t.Fatal("errno=19 accepted")
		}
	})
	t.Run("truncated", func(t *testing.T) {
		if _, err := parseUAPIDevice(strings.NewReader("listen_port=1\n")); err == nil {
			t.Fatal("reply without its blank line accepted")
		}
	})
}

// uapiFixtureSecrets returns the private key and first preshared key that
// the UAPI fixture holds.
func uapiFixtureSecrets(t *testing.T, raw []byte) (priv, psk wgtypes.Key) {
	t.Helper()
	for line := range strings.SplitSeq(string(raw), "\n") {
		k, v, _ := strings.Cut(line, "=")
		switch {
		case k == "private_key":
			priv = mustUAPIKey(t, v)
		case k == "preshared_key" && psk == (wgtypes.Key{}):
			psk = mustUAPIKey(t, v)
		}
	}
	return priv, psk
}

func mustUAPIKey(t *testing.T, h string) wgtypes.Key {
	t.Helper()
	k, err := uapiKey(h)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// secretForms are the ways a key could be spelled in evidence.
func secretForms(k wgtypes.Key) map[string][]byte {
	return map[string][]byte{
		"raw":            k[:],
		"base64":         []byte(base64.StdEncoding.EncodeToString(k[:])),
		"base64 no pad":  []byte(base64.RawStdEncoding.EncodeToString(k[:])),
		"base64 url":     []byte(base64.URLEncoding.EncodeToString(k[:])),
		"base64 url raw": []byte(base64.RawURLEncoding.EncodeToString(k[:])),
		"hex":            []byte(hex.EncodeToString(k[:])),
		"hex upper":      []byte(strings.ToUpper(hex.EncodeToString(k[:]))),
		// A JSON encoder escapes some base64 characters ("+" stays, "/" may
		// not): check the escaped spelling too.
		"json base64": func() []byte {
			b, _ := json.Marshal(base64.StdEncoding.EncodeToString(k[:]))
			return bytes.Trim(b, `"`)
		}(),
	}
}

func assertNoSecret(t *testing.T, where string, content []byte, keys ...wgtypes.Key) {
	t.Helper()
	for i, k := range keys {
		for form, b := range secretForms(k) {
			if bytes.Contains(content, b) {
				t.Errorf("%s contains secret %d in %s form", where, i, form)
			}
		}
	}
}

// wgTestKeys generates a device's private key, a preshared key and its
// peer's private key.
func wgTestKeys(t *testing.T) (priv, psk, peerPriv wgtypes.Key) {
	t.Helper()
	var err error
	if priv, err = wgtypes.GeneratePrivateKey(); err != nil {
		t.Fatal(err)
	}
	if psk, err = wgtypes.GenerateKey(); err != nil {
		t.Fatal(err)
	}
	if peerPriv, err = wgtypes.GeneratePrivateKey(); err != nil {
		t.Fatal(err)
	}
	return priv, psk, peerPriv
}

func TestWgDeviceFromWgctrlOmitsSecrets(t *testing.T) {
	priv, psk, peerPriv := wgTestKeys(t)
	d := &wgtypes.Device{
		Name: "wg0", Type: wgtypes.LinuxKernel, PrivateKey: priv, PublicKey: priv.PublicKey(), ListenPort: 51820,
		Peers: []wgtypes.Peer{{
			PublicKey:         peerPriv.PublicKey(),
			PresharedKey:      psk,
			Endpoint:          &net.UDPAddr{IP: net.IPv4(192, 0, 2, 20), Port: 51820},
			LastHandshakeTime: time.Unix(1700000000, 0),
			AllowedIPs:        []net.IPNet{{IP: net.IPv4(10, 1, 0, 0).To4(), Mask: net.CIDRMask(16, 32)}},
			ReceiveBytes:      10, TransmitBytes: 20,
		}},
	}
	rec := wgDeviceFromWgctrl(d)
	out, err := marshalEvidence(wireGuardReport{Devices: []wgDeviceRecord{rec}})
	if err != nil {
		t.Fatal(err)
	}
	assertNoSecret(t, "wireguard evidence", out, priv, psk)
	for _, want := range []string{priv.PublicKey().String(), peerPriv.PublicKey().String(), `"has_preshared_key": true`, "192.0.2.20:51820", "10.1.0.0/16"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("evidence lacks %q:\n%s", want, out)
		}
	}
}

func TestVerifyArtefacts(t *testing.T) {
	good := func() []wire.Artefact {
		return []wire.Artefact{
			sealedArtefact("kernel.json", []byte(`{"release":"6.1"}`)),
			sealedArtefact("iptables-save.txt", []byte("*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n")),
			sealedArtefact("users.json", []byte(`{"sessions":[]}`)),
		}
	}
	tests := map[string]struct {
		tamper   func([]wire.Artefact)
		wantName string
	}{
		"untouched":          {tamper: func([]wire.Artefact) {}},
		"flipped byte":       {tamper: func(a []wire.Artefact) { a[1].Content[3] ^= 0x01 }, wantName: "iptables-save.txt"},
		"recorded hash":      {tamper: func(a []wire.Artefact) { a[2].SHA256 = strings.Repeat("0", 64) }, wantName: "users.json"},
		"size only":          {tamper: func(a []wire.Artefact) { a[0].Size++ }, wantName: "kernel.json"},
		"first of two names": {tamper: func(a []wire.Artefact) { a[0].Content[0] ^= 1; a[2].Content[0] ^= 1 }, wantName: "kernel.json"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			arts := good()
			tc.tamper(arts)
			err := VerifyArtefacts(arts)
			if tc.wantName == "" {
				if err != nil {
					t.Fatalf("VerifyArtefacts: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrArtefactMismatch) {
				t.Fatalf("err = %v, want ErrArtefactMismatch", err)
			}
			if !strings.Contains(err.Error(), tc.wantName) {
				t.Errorf("error %q does not name %s", err, tc.wantName)
			}
		})
	}
}

func TestManifestVerify(t *testing.T) {
	arts := []wire.Artefact{sealedArtefact("a.json", []byte("{}")), sealedArtefact("b.txt", []byte("b\n"))}
	manifest := func() Manifest {
		var m Manifest
		for _, a := range arts {
			m.Artefacts = append(m.Artefacts, ManifestEntry{Name: a.Name, SHA256: a.SHA256, Size: a.Size})
		}
		return m
	}
	tests := map[string]struct {
		m        func() Manifest
		arts     func() []wire.Artefact
		wantName string
	}{
		"match":           {m: manifest, arts: func() []wire.Artefact { return slices.Clone(arts) }},
		"missing":         {m: manifest, arts: func() []wire.Artefact { return arts[:1] }, wantName: "b.txt"},
		"extra":           {m: func() Manifest { m := manifest(); m.Artefacts = m.Artefacts[:1]; return m }, arts: func() []wire.Artefact { return slices.Clone(arts) }, wantName: "b.txt"},
		"resealed change": {m: manifest, arts: func() []wire.Artefact { return []wire.Artefact{arts[0], sealedArtefact("b.txt", []byte("c\n"))} }, wantName: "b.txt"},
		"duplicate":       {m: manifest, arts: func() []wire.Artefact { return append(slices.Clone(arts), arts[0]) }, wantName: "a.json"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := tc.m().Verify(tc.arts())
			if tc.wantName == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrArtefactMismatch) || !strings.Contains(err.Error(), tc.wantName) {
				t.Fatalf("err = %v, want ErrArtefactMismatch naming %s", err, tc.wantName)
			}
		})
	}
}

func sealedArtefact(name string, content []byte) wire.Artefact {
	sum := sha256.Sum256(content)
	return wire.Artefact{Name: name, MediaType: mediaText, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(content)), Content: content}
}

// mustDefaults is o with its defaults applied, failing the test if o is
// not valid.
func mustDefaults(t *testing.T, o Options) Options {
	t.Helper()
	opt, err := o.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	return opt
}

func TestRunEvidenceCollectorBoundsEachCollector(t *testing.T) {
	ns, err := netns.Current()
	if err != nil {
		t.Fatal(err)
	}
	opt := mustDefaults(t, Options{Timeout: 50 * time.Millisecond, Clock: clocktest.NewFake(captureEpoch)})
	release := make(chan struct{})
	tests := map[string]struct {
		collect   func(ctx context.Context) ([]byte, string, error)
		wantError string
		wantBody  string
	}{
		"stuck collector times out": {
			collect:   func(context.Context) ([]byte, string, error) { <-release; return []byte("late"), "", nil },
			wantError: "timed out after 50ms",
		},
		"failing collector explains": {
			collect:   func(context.Context) ([]byte, string, error) { return nil, "", errors.New("no such tool") },
			wantError: "no such tool",
			wantBody:  "collecting x.json failed: no such tool\n",
		},
		"fallback source is kept": {
			collect:  func(context.Context) ([]byte, string, error) { return []byte("{}\n"), "fallback", nil },
			wantBody: "{}\n",
		},
	}
	var inflight sync.WaitGroup
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			a := runEvidenceCollector(t.Context(), opt, ns, evidenceCollector{name: "x.json", mediaType: mediaJSON, source: "declared", collect: tc.collect}, &inflight)
			if !strings.Contains(a.Error, tc.wantError) || (tc.wantError == "") != (a.Error == "") {
				t.Errorf("Error = %q, want it to contain %q", a.Error, tc.wantError)
			}
			if tc.wantBody != "" && string(a.Content) != tc.wantBody {
				t.Errorf("Content = %q, want %q", a.Content, tc.wantBody)
			}
			if err := VerifyArtefacts([]wire.Artefact{a}); err != nil {
				t.Errorf("artefact not sealed: %v", err)
			}
			if a.Error != "" && a.MediaType != mediaText {
				t.Errorf("failed artefact has media type %q", a.MediaType)
			}
			if a.Error == "" && a.Source != "fallback" {
				t.Errorf("Source = %q, want the collector's fallback", a.Source)
			}
		})
	}
	close(release)
	inflight.Wait()
	if err := ns.Close(); err != nil {
		t.Fatal(err)
	}
}

// captureEpoch is when the tests' captures happen: their clock stands
// still there.
var captureEpoch = time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)

// fakeWireGuardDevice serves the UAPI fixture on a socket in dir, as
// wireguard-go would for a device called name.
func fakeWireGuardDevice(t *testing.T, dir, name string, reply []byte) {
	t.Helper()
	testsupport.ServeUnix(t, filepath.Join(dir, name+".sock"), func(c net.Conn) {
		defer c.Close()
		req := make([]byte, len("get=1\n\n"))
		if _, err := io.ReadFull(c, req); err != nil || string(req) != "get=1\n\n" {
			return
		}
		_, _ = c.Write(reply)
	})
}

// captureFixtureRoot lays out a small filesystem for Collect's Root: one
// process holding a socket, a utmp, wtmp, an auth.log longer than LogLines
// and no syslog.
type captureFixtureRoot struct {
	root, exePath string
	exeSum        string
	pid           int
	authLines     []string
	bootID        string
}

func newCaptureFixtureRoot(t *testing.T) captureFixtureRoot {
	t.Helper()
	root := t.TempDir()
	f := captureFixtureRoot{root: root, pid: 4242, bootID: "5e2c8c7a-0b4d-4d8e-9b1f-2f6f3c1d0a11"}
	write := func(rel string, b []byte) {
		t.Helper()
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, rel string) {
		t.Helper()
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}

	exe := bytes.Repeat([]byte("\x7fELF fake charon "), 5000)
	f.exePath = filepath.Join(root, "usr", "lib", "ipsec", "charon")
	write("usr/lib/ipsec/charon", exe)
	sum := sha256.Sum256(exe)
	f.exeSum = hex.EncodeToString(sum[:])

	pid := strconv.Itoa(f.pid)
	write("proc/stat", []byte("cpu  1 2 3 4\nbtime 1764039600\nprocesses 100\n"))
	write("proc/uptime", []byte("3600.50 7000.00\n"))
	write("proc/sys/kernel/random/boot_id", []byte(f.bootID+"\n"))
	write("proc/"+pid+"/stat", []byte(pid+" (charon) S 1 "+pid+" "+pid+" 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 17 0 50000 0 0"))
	write("proc/"+pid+"/status", []byte("Name:\tcharon\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n"))
	write("proc/"+pid+"/comm", []byte("charon\n"))
	write("proc/"+pid+"/cmdline", []byte("/usr/lib/ipsec/charon\x00--debug-ike\x001\x00"))
	link(f.exePath, "proc/"+pid+"/exe")
	link("socket:[33332]", "proc/"+pid+"/fd/7")
	link("/dev/null", "proc/"+pid+"/fd/0")
	link("net:[4026531840]", "proc/"+pid+"/ns/net")
	for _, proto := range []string{"tcp", "tcp6", "udp", "udp6"} {
		b, err := os.ReadFile(filepath.Join("testdata", "capture", "proc-net", proto))
		if err != nil {
			t.Fatal(err)
		}
		write("proc/thread-self/net/"+proto, b)
	}

	write("var/run/utmp", utmpFile(
		utmpFixture{typ: 2, line: "~", user: "reboot", sec: 1764039600},
		utmpFixture{typ: 7, pid: int32(f.pid), line: "pts/0", user: "intruder", host: "198.51.100.9", sec: 1764042000, addr: [16]byte{198, 51, 100, 9}},
	))
	var wtmp []utmpFixture
	for i := range 30 {
		wtmp = append(wtmp, utmpFixture{typ: 7, pid: int32(100 + i), line: "pts/0", user: fmt.Sprintf("user%02d", i), sec: int32(1764039600 + i)})
	}
	write("var/log/wtmp", utmpFile(wtmp...))
	for i := range 1200 {
		f.authLines = append(f.authLines, fmt.Sprintf("Nov 26 02:%02d:%02d gw sshd[%d]: Failed password for invalid user admin from 198.51.100.9 port %d ssh2", i/60%60, i%60, 2000+i, 50000+i))
	}
	write("var/log/auth.log", []byte(strings.Join(f.authLines, "\n")+"\n"))
	return f
}

// TestCaptureFromFixtureRoot runs the whole capture against a fixture tree
// (and a fake userspace WireGuard device), so that every file-based
// collector is checked end to end without root.
func TestCaptureFromFixtureRoot(t *testing.T) {
	requireLittleEndian(t)
	fx := newCaptureFixtureRoot(t)
	wgDir := t.TempDir()
	uapi, err := os.ReadFile(filepath.Join("testdata", "capture", "wg-uapi-get.txt"))
	if err != nil {
		t.Fatal(err)
	}
	priv, psk := uapiFixtureSecrets(t, uapi)
	fakeWireGuardDevice(t, wgDir, "wgfix0", uapi)

	const logLines = 100
	arts, m, err := Collect(t.Context(), Options{
		Root:               fx.root,
		LogLines:           logLines,
		WireGuardSocketDir: wgDir,
		VICISocket:         filepath.Join(t.TempDir(), "absent.vici"),
		Clock:              clocktest.NewFake(captureEpoch),
	})
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}

	t.Run("manifest matches contents", func(t *testing.T) {
		if err := m.Verify(arts); err != nil {
			t.Fatal(err)
		}
		if len(m.Artefacts) != len(arts) {
			t.Fatalf("manifest lists %d artefacts, capture returned %d", len(m.Artefacts), len(arts))
		}
		for i, a := range arts {
			sum := sha256.Sum256(a.Content)
			if e := m.Artefacts[i]; e.Name != a.Name || e.SHA256 != hex.EncodeToString(sum[:]) || e.Size != int64(len(a.Content)) || e.Error != a.Error {
				t.Errorf("manifest entry %+v does not describe %s", e, a.Name)
			}
		}
		if m.BootID != fx.bootID {
			t.Errorf("manifest boot id %q, want %q", m.BootID, fx.bootID)
		}
	})
	t.Run("every named artefact is present once", func(t *testing.T) {
		var names []string
		for _, a := range arts {
			names = append(names, a.Name)
		}
		want := []string{"kernel.json", "connections.json", "processes.json", "routes.json", "addresses.json", "neighbours.json",
			"conntrack.json", "iptables-save.txt", "ip6tables-save.txt", "nft-ruleset.txt", "wireguard.json", "strongswan-sas.json",
			"users.json", "logins.json", "auth.log.tail", "syslog.tail"}
		if !slices.Equal(names, want) {
			t.Errorf("artefacts %v, want %v", names, want)
		}
	})
	t.Run("sockets mapped to their process", func(t *testing.T) {
		var rep connectionsReport
		decodeArtefact(t, arts, "connections.json", &rep)
		var found bool
		for _, s := range rep.Sockets {
			if s.Inode == 33332 {
				found = true
				if s.Local != "0.0.0.0:4500" || !s.Listening || len(s.Processes) != 1 || s.Processes[0].PID != fx.pid || s.Processes[0].Comm != "charon" {
					t.Errorf("socket 33332 = %+v", s)
				}
			}
		}
		if !found || len(rep.Sockets) != 11 {
			t.Errorf("found socket 33332: %v; %d sockets, want 11", found, len(rep.Sockets))
		}
	})
	t.Run("process with executable hash", func(t *testing.T) {
		var rep processesReport
		decodeArtefact(t, arts, "processes.json", &rep)
		if len(rep.Processes) != 1 {
			t.Fatalf("got %d processes, want 1", len(rep.Processes))
		}
		p := rep.Processes[0]
		wantStart := time.Unix(1764039600+500, 0).UTC()
		if p.PID != fx.pid || p.PPID != 1 || p.Comm != "charon" || p.Exe != fx.exePath || p.ExeSHA256 != fx.exeSum ||
			!slices.Equal(p.Cmdline, []string{"/usr/lib/ipsec/charon", "--debug-ike", "1"}) || !p.Started.Equal(wantStart) || p.NetNS != "net:[4026531840]" {
			t.Errorf("process = %+v (want exe hash %s, start %s)", p, fx.exeSum, wantStart)
		}
	})
	t.Run("logged-in users", func(t *testing.T) {
		var rep usersReport
		decodeArtefact(t, arts, "users.json", &rep)
		if len(rep.Sessions) != 1 || rep.Sessions[0].User != "intruder" || rep.Sessions[0].Addr != "198.51.100.9" || rep.Sessions[0].Alive == nil || !*rep.Sessions[0].Alive {
			t.Errorf("sessions = %+v", rep.Sessions)
		}
	})
	t.Run("login history keeps the last records", func(t *testing.T) {
		var rep loginsReport
		decodeArtefact(t, arts, "logins.json", &rep)
		if len(rep.Wtmp) != 30 || rep.Wtmp[29].User != "user29" || rep.Errors["btmp"] == "" {
			t.Errorf("logins = %d wtmp records, errors %v", len(rep.Wtmp), rep.Errors)
		}
	})
	t.Run("auth log tail is exactly the last lines", func(t *testing.T) {
		a := artefactNamed(t, arts, "auth.log.tail")
		if want := strings.Join(fx.authLines[len(fx.authLines)-logLines:], "\n") + "\n"; string(a.Content) != want {
			t.Errorf("auth.log.tail has %d lines, want the last %d", strings.Count(string(a.Content), "\n"), logLines)
		}
	})
	t.Run("missing inputs are error artefacts", func(t *testing.T) {
		for name, want := range map[string]string{
			"syslog.tail":         "no such file",
			"strongswan-sas.json": "no strongSwan VICI socket",
		} {
			a := artefactNamed(t, arts, name)
			if !strings.Contains(a.Error, want) || a.MediaType != mediaText || !strings.Contains(string(a.Content), want) {
				t.Errorf("%s: Error %q, content %q; want both to mention %q", name, a.Error, a.Content, want)
			}
		}
	})
	t.Run("kernel identity", func(t *testing.T) {
		var rep kernelReport
		decodeArtefact(t, arts, "kernel.json", &rep)
		if rep.BootID != fx.bootID || rep.UptimeSeconds != 3600.5 || rep.Sysname != "Linux" {
			t.Errorf("kernel = %+v", rep)
		}
	})
	t.Run("wireguard public state without secrets", func(t *testing.T) {
		var rep wireGuardReport
		decodeArtefact(t, arts, "wireguard.json", &rep)
		if len(rep.Devices) != 1 || rep.Devices[0].Name != "wgfix0" || rep.Devices[0].PublicKey != priv.PublicKey().String() || len(rep.Devices[0].Peers) != 2 {
			t.Fatalf("wireguard = %+v", rep)
		}
		for _, a := range arts {
			assertNoSecret(t, a.Name, a.Content, priv, psk)
		}
	})
	t.Run("timestamps come from the clock", func(t *testing.T) {
		at := captureEpoch
		if !m.Started.Equal(at) || !m.Finished.Equal(at) || !arts[0].Collected.Equal(at) {
			t.Errorf("started %s finished %s collected %s, want %s", m.Started, m.Finished, arts[0].Collected, at)
		}
	})
}

func TestCaptureRejectsInvalidOptions(t *testing.T) {
	tests := map[string]Options{
		"relative root":  {Root: "proc"},
		"negative lines": {LogLines: -1},
		"negative limit": {Timeout: -time.Second},
	}
	for name, opt := range tests {
		t.Run(name, func(t *testing.T) {
			if _, _, err := Collect(t.Context(), opt); !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("err = %v, want ErrInvalidOptions", err)
			}
		})
	}
}

func artefactNamed(t testing.TB, arts []wire.Artefact, name string) wire.Artefact {
	t.Helper()
	for _, a := range arts {
		if a.Name == name {
			return a
		}
	}
	t.Fatalf("no artefact %s", name)
	return wire.Artefact{}
}

func decodeArtefact(t testing.TB, arts []wire.Artefact, name string, v any) {
	t.Helper()
	a := artefactNamed(t, arts, name)
	if a.Error != "" {
		t.Fatalf("%s failed: %s", name, a.Error)
	}
	if err := json.Unmarshal(a.Content, v); err != nil {
		t.Fatalf("decoding %s: %v", name, err)
	}
}

// TestCollectWireGuardKeepsOtherDevices checks that a stale socket (the
// daemon died and left it) costs only its own device, and that non-socket
// files are ignored.
func TestCollectWireGuardKeepsOtherDevices(t *testing.T) {
	dir := t.TempDir()
	uapi, err := os.ReadFile(filepath.Join("testdata", "capture", "wg-uapi-get.txt"))
	if err != nil {
		t.Fatal(err)
	}
	fakeWireGuardDevice(t, dir, "wglive", uapi)
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "wgdead.sock"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	if err := os.WriteFile(filepath.Join(dir, "notes.sock"), []byte("not a socket"), 0o600); err != nil {
		t.Fatal(err)
	}

	rep, err := collectWireGuard(t.Context(), mustDefaults(t, Options{WireGuardSocketDir: dir}))
	if err != nil {
		t.Fatalf("collectWireGuard: %v", err)
	}
	if len(rep.Devices) != 2 {
		t.Fatalf("got %d devices, want 2: %+v", len(rep.Devices), rep.Devices)
	}
	dead, live := rep.Devices[0], rep.Devices[1]
	if dead.Name != "wgdead" || dead.Error == "" {
		t.Errorf("stale device = %+v, want an Error", dead)
	}
	if live.Name != "wglive" || live.Error != "" || len(live.Peers) != 2 {
		t.Errorf("live device = %+v", live)
	}
}

func TestHashExecutables(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	if err := os.WriteFile(small, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(dir, "huge")
	f, err := os.Create(huge)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(maxExecutableHashSize + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	sum := sha256.Sum256([]byte("#!/bin/true\n"))
	links := map[exeKey]string{
		{ino: 1, size: 12}:                        small,
		{ino: 2, size: maxExecutableHashSize + 1}: huge,
		{ino: 3, size: 1}:                         filepath.Join(dir, "gone"),
	}
	tests := map[string]struct {
		ctx  func() context.Context
		want map[uint64]string // inode → sum, or an error fragment
	}{
		"in time": {
			ctx:  func() context.Context { return t.Context() },
			want: map[uint64]string{1: hex.EncodeToString(sum[:]), 2: "over the 64 MiB limit", 3: "opening executable"},
		},
		"out of time": {
			ctx: func() context.Context {
				ctx, cancel := context.WithCancel(t.Context())
				cancel()
				return ctx
			},
			want: map[uint64]string{1: "time ran out", 2: "over the 64 MiB limit", 3: "time ran out"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := hashExecutables(tc.ctx(), links)
			for k := range links {
				h, want := got[k], tc.want[k.ino]
				if h.sum != want && !strings.Contains(h.err, want) {
					t.Errorf("inode %d: got %+v, want %q", k.ino, h, want)
				}
			}
		})
	}
}
