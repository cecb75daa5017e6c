package report

import (
	"strings"
	"testing"

	"github.com/warden-ir/warden/indicator"
)

// Without an inventory (a store read without its configuration) the
// report says so where the time zone, the VM, the sites and the peers
// would go, in both languages, instead of writing UTC and empty lists.
func TestReportWithoutInventory(t *testing.T) {
	_, st, ledger := fixture(t)
	m, err := Load(t.Context(), st, nil, ledger, fxIncident)
	if err != nil {
		t.Fatal(err)
	}
	if !m.InventoryUnknown || m.Site.TimeZone != "" || m.Gateway.VM != "" || len(m.Peers) != 0 || len(m.Credentials.Tunnels) != 0 {
		t.Fatalf("model without inventory: unknown %t site %+v gateway %+v peers %+v", m.InventoryUnknown, m.Site, m.Gateway, m.Peers)
	}
	// What the store alone knows is still there.
	if !m.Containment.Contained || len(m.Runs) != 1 || len(m.Evidence.Items) != 2 || !m.Audit.OK {
		t.Errorf("containment %+v runs %d evidence %d audit %+v", m.Containment, len(m.Runs), len(m.Evidence.Items), m.Audit)
	}
	tests := map[string]struct {
		lang    string
		want    []string
		notWant []string
	}{
		"en": {lang: LangEnglish,
			want: []string{
				"- **Times**: UTC only: the time zone of site osaka is not known (inventory unknown: pass -c warden.yaml)",
				"- **Affected site**: osaka — gateway gw-osaka; its VM and the site's networks are not known (inventory unknown: pass -c warden.yaml).",
				"- **Sites connected to it by tunnels**: not known (inventory unknown: pass -c warden.yaml).",
				"- **Spread**: not assessed: the connected sites are not known (inventory unknown: pass -c warden.yaml).",
				"Until then, osaka stays cut off from the sites connected to it (inventory unknown: pass -c warden.yaml).",
				"- **Gateway**: gw-osaka at site osaka; VM, host name, addresses and management networks: inventory unknown: pass -c warden.yaml",
				"- **Tunnels**: inventory unknown: pass -c warden.yaml",
				"Which tunnels it held is not known (inventory unknown: pass -c warden.yaml).",
				"- Find the gateways connected to gw-osaka by tunnels and check them for signs of compromise (inventory unknown: pass -c warden.yaml).",
			},
			// Times are written once, in UTC, not twice as if UTC were local.
			notWant: []string{"(UTC, UTC)", "UTC (2026-", "VM —", "none in the inventory", "no other open incident", "stays cut off from .", "all of them (0 tunnels)"}},
		"ja": {lang: LangJapanese,
			want: []string{
				"- **時刻表記**: UTC のみで表記（拠点「osaka」のタイムゾーンは不明。インベントリ不明：-c warden.yaml を指定してください）",
				"- **影響を受けた拠点**: osaka（ゲートウェイ gw-osaka。仮想マシンと拠点内ネットワークは不明です。インベントリ不明：-c warden.yaml を指定してください）",
				"- **トンネルで直接接続している拠点**: 不明です（インベントリ不明：-c warden.yaml を指定してください）。",
				"- **被害拡大の有無**: 未評価：接続先拠点が不明です（インベントリ不明：-c warden.yaml を指定してください）。",
				"拠点「osaka」と接続先拠点との間の通信は停止したままです（インベントリ不明：-c warden.yaml を指定してください）。",
				"- **トンネル**: インベントリ不明：-c warden.yaml を指定してください",
				"- gw-osaka とトンネルで接続しているゲートウェイを特定し、侵害の形跡がないか確認する（インベントリ不明：-c warden.yaml を指定してください）。",
			},
			notWant: []string{"（UTC、UTC）", "UTC（UTC 2026-", "仮想マシン —", "インベントリ上はありません", "他のインシデントは記録されていません", "」と  との間", "0 本"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			md := mustRender(t, m, tc.lang, FormatMarkdown)
			checkSays(t, "report of an unknown inventory", string(md), tc.want, tc.notWant)
			html := mustRender(t, m, tc.lang, FormatHTML)
			if !strings.Contains(string(html), "-c warden.yaml") {
				t.Error("the HTML report does not say the inventory is unknown")
			}
		})
	}
}

// A gateway the inventory knows but that has no tunnel is released into
// nothing: the release decision must not name an empty list of sites.
func TestReleaseDecisionOfGatewayWithoutTunnels(t *testing.T) {
	_, st, ledger := fixture(t)
	inv := demoInventory(t)
	inv.Tunnels = nil
	m, err := Load(t.Context(), st, inv, ledger, fxIncident)
	if err != nil {
		t.Fatal(err)
	}
	if m.InventoryUnknown || len(m.Peers) != 0 || !m.Containment.Contained {
		t.Fatalf("unknown %t peers %+v containment %+v", m.InventoryUnknown, m.Peers, m.Containment)
	}
	for lang, want := range map[string]string{
		LangEnglish:  "Until then, the gateway of osaka stays cut off from the network.",
		LangJapanese: "それまで、拠点「osaka」のゲートウェイはネットワークから隔離されたままです。",
	} {
		md := mustRender(t, m, lang, FormatMarkdown)
		if !strings.Contains(string(md), want) || strings.Contains(string(md), "」と  との間") || strings.Contains(string(md), "cut off from .") {
			t.Errorf("%s release decision does not read %q", lang, want)
		}
	}
}

// After a release the header's status says released, like the banner,
// although the store keeps the incident "contained" until it is closed.
func TestHeaderStatusFollowsTheRelease(t *testing.T) {
	f := newFlow(t)
	a := f.accept(t, indicator.C2Beacon)
	if err := f.c.ExecuteRun(t.Context(), a.RunID); err != nil {
		t.Fatal(err)
	}
	status := func(t *testing.T, m Model) map[string]string {
		t.Helper()
		out := map[string]string{}
		for _, lang := range []string{LangEnglish, LangJapanese} {
			md := mustRender(t, m, lang, FormatMarkdown)
			for _, line := range strings.Split(string(md), "\n") {
				if strings.HasPrefix(line, "- **Status**: ") || strings.HasPrefix(line, "- **状況**: ") {
					_, out[lang], _ = strings.Cut(line, "**: ")
				}
				if strings.HasPrefix(line, "> **") {
					out[lang+" banner"] = line
				}
			}
		}
		return out
	}
	got := status(t, f.load(t, a.IncidentID))
	if got["en"] != "contained" || got["ja"] != "封じ込め済み" {
		t.Fatalf("status while contained: %q", got)
	}

	f.releaseByOverride(t, a.IncidentID, "api:bob", "baseline checked by hand", "carol", "release agreed")
	m := f.load(t, a.IncidentID)
	if m.Incident.Status != "contained" || !m.Containment.Released {
		t.Fatalf("after release: stored status %q, containment %+v", m.Incident.Status, m.Containment)
	}
	got = status(t, m)
	tests := map[string]struct{ status, banner string }{
		LangEnglish:  {"released (returned to service)", "RELEASED"},
		LangJapanese: {"隔離解除済み（業務復帰）", "隔離解除"},
	}
	for lang, want := range tests {
		if got[lang] != want.status || !strings.Contains(got[lang+" banner"], want.banner) {
			t.Errorf("%s header status %q under banner %q, want %q under %q", lang, got[lang], got[lang+" banner"], want.status, want.banner)
		}
	}
}
