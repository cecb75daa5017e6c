package capture

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/warden-ir/warden/internal/charon/charontest"
)

// statsReply answers charon's stats with total IKE SAs, and any other
// command the way charon answers one it does not know.
func statsReply(total int) func(string) (byte, []byte) {
	return func(cmd string) (byte, []byte) {
		if cmd != "stats" {
			return charontest.CmdUnknown, nil
		}
		var b charontest.Body
		b.Section("ikesas", func() {
			b.KV("total", strconv.Itoa(total))
			b.KV("half-open", "0")
		})
		return charontest.CmdResponse, b.Bytes()
	}
}

// listedSA is one list-sa event body for an IKE SA named name.
func listedSA(name string, id int) []byte {
	var sa charontest.Body
	sa.Section(name, func() {
		sa.KV("uniqueid", strconv.Itoa(id))
		sa.KV("version", "2")
		sa.KV("state", "ESTABLISHED")
		sa.KV("local-host", "192.0.2.1")
		sa.KV("remote-host", "198.51.100.2")
		sa.KV("remote-id", name+".example.net")
		sa.KV("encr-alg", "AES_GCM_16")
		sa.KV("encr-keysize", "256")
		// Not something list-sas sends: planted to prove the defensive
		// filter drops a field that would carry a secret.
		sa.KV("secret", "planted-psk-value")
		sa.Section("child-sas", func() {
			sa.Section("net-1", func() {
				sa.KV("state", "INSTALLED")
				sa.KV("spi-in", "c8931e89")
				sa.KV("bytes-in", "84")
				sa.List("local-ts", "10.1.0.0/16")
				sa.List("remote-ts", "10.2.0.0/16")
			})
		})
	})
	return sa.Bytes()
}

func TestCollectStrongSwanSAs(t *testing.T) {
	many := make([][]byte, 600)
	for i := range many {
		many[i] = listedSA("site-"+strconv.Itoa(i), i+1)
	}
	tests := map[string]struct {
		sas            [][]byte
		statsTotal     int
		wantIncomplete bool
	}{
		"one SA":                        {sas: [][]byte{listedSA("site-b", 7)}, statsTotal: 1},
		"more SAs than govici buffers":  {sas: many, statsTotal: len(many)},
		"stats disagrees with the list": {sas: [][]byte{listedSA("site-b", 7)}, statsTotal: 2, wantIncomplete: true},
		"no SAs":                        {statsTotal: 0},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			sock := charontest.Start(t, &charontest.Server{SAs: tc.sas, Reply: statsReply(tc.statsTotal)})
			rep, err := collectStrongSwanSAs(t.Context(), mustDefaults(t, Options{VICISocket: sock}))
			if err != nil {
				t.Fatalf("collectStrongSwanSAs: %v", err)
			}
			out, err := json.Marshal(rep)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(out), "planted-psk-value") {
				t.Errorf("secret field survived")
			}
			if len(rep.SAs) != len(tc.sas) {
				t.Fatalf("got %d SAs, want %d", len(rep.SAs), len(tc.sas))
			}
			if (len(rep.Incomplete) > 0) != tc.wantIncomplete {
				t.Errorf("incomplete = %q, want incomplete: %v", rep.Incomplete, tc.wantIncomplete)
			}
			if rep.IKESAsTotal != strconv.Itoa(tc.statsTotal) {
				t.Errorf("stats total %q, want %d", rep.IKESAsTotal, tc.statsTotal)
			}
			if len(tc.sas) == 0 {
				return
			}
			first, _ := json.Marshal(rep.SAs[0])
			var ike map[string]map[string]any
			if err := json.Unmarshal(first, &ike); err != nil {
				t.Fatal(err)
			}
			for _, sa := range ike {
				child, _ := sa["child-sas"].(map[string]any)["net-1"].(map[string]any)
				if sa["remote-host"] != "198.51.100.2" || sa["state"] != "ESTABLISHED" || child["spi-in"] != "c8931e89" {
					t.Errorf("SA evidence = %s", first)
				}
				if ts, _ := child["remote-ts"].([]any); len(ts) != 1 || ts[0] != "10.2.0.0/16" {
					t.Errorf("remote traffic selectors = %v", child["remote-ts"])
				}
			}
		})
	}
}
