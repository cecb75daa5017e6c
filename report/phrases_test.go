package report

import (
	"fmt"
	"testing"
)

// phraseSamples are sentences as Warden's code writes them, one or more
// per phrase, with what the Japanese report must make of them.
var phraseSamples = map[string]struct {
	key string
	ja  string
}{
	"matched":                {"say.matched", "該当"},
	"match expression false": {"say.false", "条件式に該当せず"},
	"not evaluated: resolved alerts never start a runbook":      {"say.resolved", "評価せず（解消済みの警報ではランブックを開始しません）"},
	"not evaluated: earlier policy c2-or-exfil-isolate matched": {"say.earlier", "評価せず（先に評価したポリシー c2-or-exfil-isolate に該当）"},
	"confidence 0.3 below min_confidence 0.5":                   {"say.confidence", "確度 0.3 が下限 0.5（min_confidence）未満"},
	"evaluation error: policy was not compiled (load it with LoadDir, LoadFS or Default)": {"say.evalerror",
		"評価エラー：ポリシーがコンパイルされていません（LoadDir、LoadFS または Default で読み込んでください）"},
	"evaluation error: no such key: labels": {"say.evalerror", "評価エラー：「no such key: labels」"},
	"policy was not compiled (load it with LoadDir, LoadFS or Default)": {"say.notcompiled",
		"ポリシーがコンパイルされていません（LoadDir、LoadFS または Default で読み込んでください）"},

	"automatic by policy c2-or-exfil-isolate":                          {"say.gate.auto", "ポリシー c2-or-exfil-isolate により自動実行"},
	"started by alice":                                                 {"say.gate.started", "alice が手動で開始"},
	"policy tamper-contain-with-approval requires a person's approval": {"say.gate.needs", "ポリシー tamper-contain-with-approval は責任者の承認を必要とします"},
	"step patch is destructive and no evidence (capture_volatile or snapshot) precedes it; a person must override with a recorded reason": {"say.gate.evidence",
		"ステップ patch は証拠を損なうおそれのある処理ですが、その前に証拠保全（capture_volatile または snapshot）がありません。実行するには、担当者が理由を記録して例外を適用する必要があります"},
	"overridden by alice: gateway is wiping logs":                              {"say.overridden", "alice が例外を適用（記録された理由：「gateway is wiping logs」）"},
	"site osaka already had 1 automatic isolation(s) within 1h0m0s (budget 1)": {"say.gate.site.full", "拠点 osaka では直近 1h0m0s に自動隔離が既に 1 件あります（上限 1 件）"},
	"fleet already had 3 automatic isolation(s) within 1h0m0s (budget 3)":      {"say.gate.fleet.full", "全体で直近 1h0m0s に自動隔離が既に 3 件あります（上限 3 件）"},
	"site osaka 0/1, fleet 0/3 automatic isolations within 1h0m0s":             {"say.gate.budget", "直近 1h0m0s の自動隔離：拠点 osaka 0/1 件、全体 0/3 件"},
	"tripped: 3 of 3 gateways have firing indicators within 10m0s (threshold 2); automatic actions wait for a person": {"say.gate.breaker",
		"作動中：直近 10m0s に 3 台中 3 台のゲートウェイで警報が発生（しきい値 2 台）。自動対応は担当者の判断を待っています"},
	"3 of 3 gateways have firing indicators within 10m0s (threshold 2)": {"say.breaker.reason", "直近 10m0s に 3 台中 3 台のゲートウェイで警報が発生（しきい値 2 台）"},
	"no baseline check on record (run warden drift check --gateway gw-osaka)": {"say.gate.baseline.none",
		"セキュリティ基準の確認の記録がありません（warden drift check --gateway gw-osaka で実施）"},
	"latest baseline check (2026-11-24T18:00:00Z) is older than the quarantine (2026-11-24T18:12:07Z)": {"say.gate.baseline.old",
		"最新のセキュリティ基準の確認（2026-11-24T18:00:00Z）は隔離（2026-11-24T18:12:07Z）より前のものです"},
	"latest baseline check (2026-11-24T19:00:00Z) failed 2 check(s), 1 errored": {"say.gate.baseline.failed",
		"最新のセキュリティ基準の確認（2026-11-24T19:00:00Z）で不合格 2 項目、エラー 1 項目"},
	"baseline passed at 2026-11-24T19:00:00Z":                     {"say.gate.baseline.passed", "2026-11-24T19:00:00Z にセキュリティ基準の確認に合格"},
	"the gateway holds no tunnel credentials":                     {"say.gate.cred.none", "ゲートウェイはトンネルの認証情報を保持していません"},
	"credentials of its 2 tunnel(s) rotated since the quarantine": {"say.gate.cred.rotated", "隔離後、トンネル 2 本すべての認証情報を更新済み"},
	"credentials of its 2 tunnel(s) not rotated since the quarantine (runbook respond-confirmed-compromise or rotate-fleet-credentials)": {"say.gate.cred.pending",
		"隔離後、トンネル 2 本の認証情報が更新されていません（ランブック respond-confirmed-compromise または rotate-fleet-credentials で更新）"},
	"no baseline check on record (run warden drift check --gateway gw-osaka) — overridden by alice: rebuilt from image; checked by hand": {"say.overridden.suffix",
		"セキュリティ基準の確認の記録がありません（warden drift check --gateway gw-osaka で実施）。ただし alice が例外として通過させました（記録された理由：「rebuilt from image; checked by hand」）"},
	"no high-or-worse indicator about the gateway since the quarantine is still firing": {"say.gate.threat.none", "隔離後に受信した重大度「高」以上の兆候で、発生中のものはありません"},
	"1 firing indicator(s) of severity high or worse arrived since the quarantine and no person resolved them (latest ind-1: critical c2_beacon at 2026-11-24T19:00:00Z); resolve each with warden indicator resolve ID --reason, never by override": {"say.gate.threat.live",
		"隔離後に重大度「高」以上の兆候が 1 件発生し、担当者による解消の記録がありません（最新：ind-1、重大度「緊急」、c2_beacon、2026-11-24T19:00:00Z）。それぞれ warden indicator resolve ID --reason で解消してください（例外の適用では通過できません）"},
	"release always needs a person's approval":                                                                                     {"say.gate.release.approval", "隔離解除には常に責任者の承認が必要です"},
	"break-glass override by user:resp1: a second person (an approver) must approve the run":                                       {"say.gate.breakglass", "resp1 による緊急時の例外適用のため、別の担当者（承認者）による承認が必要です"},
	"guards.two_person is off: user:resp1 overrode a gate and may act alone":                                                       {"say.gate.breakglass.off", "guards.two_person が無効のため、例外を適用した resp1 が単独で実行できます"},
	"four eyes (guards.two_person): user:resp1 requested it and overrode a gate on it, so another approver must approve run run-1": {"say.foureyes", "二人承認（guards.two_person）：resp1 はこの処理を依頼し、例外も適用したため、処理 run-1 は別の承認者が承認する必要があります"},
	"four eyes (guards.two_person): user:resp1 requested it, so another approver must approve run run-1":                           {"say.foureyes", "二人承認（guards.two_person）：resp1 はこの処理を依頼したため、処理 run-1 は別の承認者が承認する必要があります"},
	"forbidden: four eyes (guards.two_person): local:root overrode a gate on it, so another approver must approve run run-1":       {"say.forbidden", "許可されていません：二人承認（guards.two_person）：root（コントローラーのホスト上） はこの処理で例外を適用したため、処理 run-1 は別の承認者が承認する必要があります"},
	"started by user:shared-api-token":               {"say.gate.started", "shared-api-token（共有 API トークン：個人を特定できません） が手動で開始"},
	"overridden by api:ops1: gateway is wiping logs": {"say.overridden", "ops1（API クライアント。名前は未検証） が例外を適用（記録された理由：「gateway is wiping logs」）"},

	"skipped: capture_volatile on gateway gw-osaka: no warden agent configured (agents.cert_file): unsupported": {"say.skipped",
		"省略：ゲートウェイ gw-osaka では capture_volatile を実行できません（Warden エージェントが設定されていません（agents.cert_file））"},
	"snapshot on gateway gw-osaka: no vCenter configured (vsphere.url): unsupported": {"say.unsupported",
		"ゲートウェイ gw-osaka では snapshot を実行できません（vCenter が設定されていません（vsphere.url））"},
	"isolate on gateway gw-osaka: neither a vCenter nor agents are configured: unsupported": {"say.unsupported",
		"ゲートウェイ gw-osaka では isolate を実行できません（vCenter もエージェントも設定されていません）"},
	"no warden agent configured (agents.cert_file)":                      {"say.noagent", "Warden エージェントが設定されていません（agents.cert_file）"},
	"no vCenter configured (vsphere.url)":                                {"say.novcenter", "vCenter が設定されていません（vsphere.url）"},
	"neither a vCenter nor agents are configured":                        {"say.noprovider", "vCenter もエージェントも設定されていません"},
	`took snapshot "warden-inc-1" of gw-osaka`:                           {"say.snapshot.took", "gw-osaka のスナップショット「warden-inc-1」を取得"},
	`snapshot "warden-inc-1" of gw-osaka already existed`:                {"say.snapshot.existed", "gw-osaka のスナップショット「warden-inc-1」は取得済み"},
	`snapshot "warden-inc-1" of gw-osaka exists (memory: false)`:         {"say.snapshot.exists", "gw-osaka のスナップショット「warden-inc-1」の存在を確認（メモリ：なし）"},
	"isolated gw-osaka":                                                  {"say.isolated", "gw-osaka を隔離"},
	"gw-osaka was already isolated":                                      {"say.isolated.already", "gw-osaka は隔離済み"},
	"gw-osaka is quarantined":                                            {"say.quarantined", "gw-osaka が隔離されていることを確認"},
	"released gw-osaka":                                                  {"say.released", "gw-osaka の隔離を解除"},
	"gw-osaka was not quarantined":                                       {"say.released.already", "gw-osaka は隔離されていませんでした"},
	"gw-osaka is released":                                               {"say.released.verified", "gw-osaka の隔離が解除されていることを確認"},
	"powered off gw-osaka":                                               {"say.poweredoff", "gw-osaka の電源を停止"},
	"gw-osaka was already powered off":                                   {"say.poweredoff.already", "gw-osaka は電源停止済み"},
	"gw-osaka is powered off":                                            {"say.poweredoff.verified", "gw-osaka の電源が停止していることを確認"},
	"notified channel default (HTTP 204 after 1 attempt(s))":             {"say.notified", "通知先 default に通知（HTTP 204、試行 1 回）"},
	"notification already delivered to channel default":                  {"say.notified.already", "通知先 default には通知済み"},
	"channel default accepted the notification (HTTP 204)":               {"say.notified.accepted", "通知先 default が通知を受理（HTTP 204）"},
	"no notification channel configured":                                 {"say.nochannel", "通知先が設定されていません"},
	"no notification channel configured: nothing to verify":              {"say.nochannel.verify", "通知先が設定されていないため、確認の対象はありません"},
	"captured 12 artefacts from gw-osaka":                                {"say.captured", "gw-osaka から証拠ファイル 12 件を取得"},
	"captured 12 artefacts from gw-osaka (1 collectors reported errors)": {"say.captured.errors", "gw-osaka から証拠ファイル 12 件を取得（収集処理 1 件でエラー）"},
	"volatile evidence already captured (12 artefacts)":                  {"say.captured.already", "揮発性情報は取得済み（証拠ファイル 12 件）"},
	"evidence hashes verified":                                           {"say.captured.verified", "証拠ファイルのハッシュ値を確認"},
	"OS quarantine of gw-osaka already in force":                         {"say.os.already", "gw-osaka の OS レベルの隔離は適用済み"},
	"OS quarantine of gw-osaka in force and confirmed (killed 3 flows, links down: [wg0 wg1])": {"say.os.applied",
		"gw-osaka に OS レベルの隔離を適用し確認（切断した通信 3 件、停止したリンク：[wg0 wg1]）"},
	"OS quarantine enforced (v4+v6, backend nftables), agent reachable over management": {"say.os.verified",
		"OS レベルの隔離（IPv4・IPv6、方式 nftables）が有効で、管理用ネットワーク経由でエージェントに到達できることを確認"},
	"OS quarantine of gw-osaka lifted":                                  {"say.os.lifted", "gw-osaka の OS レベルの隔離を解除"},
	"gw-osaka had no OS quarantine":                                     {"say.os.none", "gw-osaka には OS レベルの隔離はありませんでした"},
	"no Warden rules left on gw-osaka":                                  {"say.os.clean", "gw-osaka に Warden のルールが残っていないことを確認"},
	"baseline of gw-osaka passes (remediated: [sshd.root])":             {"say.baseline.passes", "gw-osaka はセキュリティ基準の確認に合格（自動修正：[sshd.root]）"},
	"baseline verdict recorded":                                         {"say.baseline.recorded", "判定結果を記録"},
	"gw-osaka already at the target versions":                           {"say.patch.already", "gw-osaka は既に目標のバージョンです"},
	"patched 3 package(s) on gw-osaka":                                  {"say.patch.done", "gw-osaka でパッケージ 3 件を更新"},
	"security updates applied and checked by the agent":                 {"say.patch.verified", "セキュリティ更新の適用をエージェントで確認"},
	"installed versions at or above target":                             {"say.patch.versions", "導入済みのバージョンが目標以上であることを確認"},
	"gw-osaka revoked at 2 tunnel(s) (0 already), blocked at 2 site(s)": {"say.revoked", "gw-osaka をトンネル 2 本で失効（うち 0 本は失効済み）、2 拠点で遮断"},
	"gw-osaka: no trust left at 2 of 2 tunnel(s); blocked at 2 site(s)": {"say.revoked.verified",
		"gw-osaka：トンネル 2 本中 2 本で信頼関係が残っていないことを確認、2 拠点で遮断"},
	"2 rotated, 0 already rotated, 0 rolled back, 0 failed, 0 not attempted; 1 authenticate with certificates (nothing shared to rotate)": {"say.rotated.certs",
		"更新 2 件、更新済み 0 件、ロールバック 0 件、失敗 0 件、未実施 0 件（証明書で認証する 1 件は共有鍵がないため対象外）"},
	"2 rotated, 0 already rotated, 0 rolled back, 0 failed, 0 not attempted": {"say.rotated", "更新 2 件、更新済み 0 件、ロールバック 0 件、失敗 0 件、未実施 0 件"},
	"2 of 2 credential(s) verified in use":                                   {"say.rotated.verified", "認証情報 2 件中 2 件が使用されていることを確認"},
	"investigated 2 gateway(s): 120 events, 30 artefacts, 3 entry-point and 2 lateral-movement candidate(s)": {"say.investigated",
		"ゲートウェイ 2 台を調査（事象 120 件、証拠ファイル 30 件、侵入口の候補 3 件、横展開の候補 2 件）"},
	"investigated 2 gateway(s): 120 events, 30 artefacts, 3 entry-point and 2 lateral-movement candidate(s); not reachable: gw-dc": {"say.investigated.gaps",
		"ゲートウェイ 2 台を調査（事象 120 件、証拠ファイル 30 件、侵入口の候補 3 件、横展開の候補 2 件）。到達できず：gw-dc"},
	"packet capture cap-1 running on gw-osaka":               {"say.pcap.running", "gw-osaka でパケットキャプチャ cap-1 を開始"},
	"packet capture cap-1 was already running on gw-osaka":   {"say.pcap.already", "gw-osaka ではパケットキャプチャ cap-1 を実行中"},
	"packet capture stopped on gw-osaka; 2 capture(s) filed": {"say.pcap.stopped", "gw-osaka のパケットキャプチャを停止し、2 件を証拠として保全"},
	"packet capture cap-1 is running":                        {"say.pcap.verified.running", "パケットキャプチャ cap-1 の実行を確認"},
	"2 packet capture(s) filed and verified":                 {"say.pcap.verified", "パケットキャプチャ 2 件の保全を確認"},
	"investigation already filed":                            {"say.investigated.already", "調査結果は保全済み"},
	"timeline and artefacts of 2 gateway(s) verified":        {"say.investigated.verified", "ゲートウェイ 2 台の時系列と証拠ファイルを確認"},
	"timeline and artefacts of 2 gateway(s) verified; 1 gateway(s) could not be asked": {"say.investigated.verified.gaps",
		"ゲートウェイ 2 台の時系列と証拠ファイルを確認（1 台は問い合わせできず）"},
	"isolated gw-osaka; OS quarantine of gw-osaka lifted (not applicable: os)": {"say.notapplicable",
		"gw-osaka を隔離；gw-osaka の OS レベルの隔離を解除（適用外：os）"},
}

// phraseEnglish is what the English report makes of a sample when it is
// not the sentence itself: an actor in it is named as the report names
// people everywhere ("resp1", not "user:resp1").
var phraseEnglish = map[string]string{
	"break-glass override by user:resp1: a second person (an approver) must approve the run":                                       "break-glass override by resp1: a second person (an approver) must approve the run",
	"guards.two_person is off: user:resp1 overrode a gate and may act alone":                                                       "guards.two_person is off: resp1 overrode a gate and may act alone",
	"four eyes (guards.two_person): user:resp1 requested it and overrode a gate on it, so another approver must approve run run-1": "four eyes (guards.two_person): resp1 requested it and overrode a gate on it, so another approver must approve run run-1",
	"four eyes (guards.two_person): user:resp1 requested it, so another approver must approve run run-1":                           "four eyes (guards.two_person): resp1 requested it, so another approver must approve run run-1",
	"forbidden: four eyes (guards.two_person): local:root overrode a gate on it, so another approver must approve run run-1":       "forbidden: four eyes (guards.two_person): root (on the controller host) overrode a gate on it, so another approver must approve run run-1",
	"started by user:shared-api-token":               "started by shared-api-token (shared API token: not a named person)",
	"overridden by api:ops1: gateway is wiping logs": "overridden by ops1 (API client, name not verified): gateway is wiping logs",
}

// Every phrase is recognised on what the code writes, its English text
// rebuilds that sentence exactly from the captured parts (so a pattern and
// its text cannot drift apart), and the Japanese says it in Japanese.
func TestPhrasesSayWardensSentences(t *testing.T) {
	ja, err := newLoc(LangJapanese, "UTC")
	if err != nil {
		t.Fatal(err)
	}
	en, err := newLoc(LangEnglish, "UTC")
	if err != nil {
		t.Fatal(err)
	}
	covered := map[string]bool{}
	for sentence, tc := range phraseSamples {
		t.Run(sentence, func(t *testing.T) {
			var p phrase
			var m []string
			for _, q := range phrases {
				if m = q.re.FindStringSubmatch(sentence); m != nil {
					p = q
					break
				}
			}
			if p.key != tc.key {
				t.Fatalf("recognised as %q, want %q", p.key, tc.key)
			}
			covered[p.key] = true
			args := make([]any, len(m)-1)
			for i, v := range m[1:] {
				args[i] = v
			}
			if got := fmt.Sprintf(english[p.key], args...); got != sentence {
				t.Errorf("the English text rebuilds %q", got)
			}
			if got := ja.says(sentence); got != tc.ja {
				t.Errorf("Japanese:\n got %s\nwant %s", got, tc.ja)
			}
			want, ok := phraseEnglish[sentence]
			if !ok {
				want = sentence
			}
			if got := en.says(sentence); got != want {
				t.Errorf("English:\n got %s\nwant %s", got, want)
			}
		})
	}
	for _, p := range phrases {
		if !covered[p.key] {
			t.Errorf("phrase %s has no sample", p.key)
		}
		if _, ok := english[p.key]; !ok {
			t.Errorf("phrase %s has no text", p.key)
		}
	}
}

// A sentence nobody taught the report is shown whole and quoted, never
// dropped or half translated.
func TestUnknownSentenceIsQuoted(t *testing.T) {
	ja, err := newLoc(LangJapanese, "UTC")
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		"vCenter task failed: InvalidState":            "「vCenter task failed: InvalidState」",
		"isolated gw-osaka; a new layer did something": "gw-osaka を隔離；「a new layer did something」",
		"": "",
	} {
		if got := ja.says(in); got != want {
			t.Errorf("says(%q) = %q, want %q", in, got, want)
		}
	}
}
