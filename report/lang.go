package report

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Languages a report can be written in.
const (
	LangJapanese = "ja"
	LangEnglish  = "en"
)

// Formats a report can be written in.
const (
	FormatMarkdown = "md"
	FormatHTML     = "html"
)

// UnsupportedError names a language or format the package cannot write.
type UnsupportedError struct {
	What  string // "language" or "format"
	Value string
}

func (e *UnsupportedError) Error() string {
	known := "ja, en"
	if e.What == "format" {
		known = "md, html"
	}
	return fmt.Sprintf("unsupported report %s %q (use %s)", e.What, e.Value, known)
}

// texts is one language's column of wording: values are fmt formats.
type texts map[string]string

// loc writes times, durations and sentences in one language for one site.
type loc struct {
	lang string
	t    texts
	zone *time.Location
	// utcOnly is set when the site's time zone is not known: times are
	// then written once, in UTC, rather than twice as "local" and UTC.
	utcOnly bool
	// actors are the model's (Model.Actors), for who.
	actors map[string]Actor
}

func newLoc(lang, timeZone string) (loc, error) {
	var t texts
	switch lang {
	case LangJapanese:
		t = japanese
	case LangEnglish:
		t = english
	default:
		return loc{}, &UnsupportedError{What: "language", Value: lang}
	}
	z, err := time.LoadLocation(timeZone)
	if err != nil || timeZone == "" {
		z = time.UTC
	}
	return loc{lang: lang, t: t, zone: z, utcOnly: timeZone == ""}, nil
}

// f formats message key. A missing key is a programming error that the
// key-parity test catches; at run time it shows the key rather than panic.
func (l loc) f(key string, a ...any) string {
	format, ok := l.t[key]
	if !ok {
		return "[" + key + "]"
	}
	if len(a) == 0 {
		return format
	}
	return fmt.Sprintf(format, a...)
}

// who names an actor for people, the same way everywhere: a person by
// their name ("resp1"), anything else with what kind of actor it is
// ("Warden (controller)", "agent on gw-osaka"); "—" for nobody.
func (l loc) who(id string) string {
	if id == "" {
		return "—"
	}
	a, ok := l.actors[id]
	if !ok {
		a = describeActor(id, nil)
	}
	switch a.Kind {
	case ActorController:
		return l.f("actor.controller")
	case ActorAgent, ActorLocal, ActorDetector, ActorSharedToken, ActorClient:
		return l.f("actor."+a.Kind, a.Name)
	}
	return a.Name
}

// whoAll names several actors.
func (l loc) whoAll(ids []string) string {
	var out []string
	for _, id := range ids {
		out = append(out, l.who(id))
	}
	return l.and(out)
}

// zoneName is the abbreviation ("JST"), or "UTC+08:00" where the zone has
// none.
func (l loc) zoneName(t time.Time) string {
	lt := t.In(l.zone)
	abbr := lt.Format("MST")
	if strings.HasPrefix(abbr, "+") || strings.HasPrefix(abbr, "-") {
		return "UTC" + lt.Format("-07:00")
	}
	return abbr
}

func (l loc) date(t time.Time) string {
	if l.lang == LangJapanese {
		return fmt.Sprintf("%d年%d月%d日", t.Year(), int(t.Month()), t.Day())
	}
	return t.Format("2 January 2006")
}

// when is a full local time with zone, and UTC.
func (l loc) when(t time.Time) string {
	if t.IsZero() {
		return l.f("none")
	}
	lt, ut := t.In(l.zone), t.UTC()
	if l.utcOnly {
		return l.date(ut) + " " + ut.Format("15:04:05") + " UTC"
	}
	if l.lang == LangJapanese {
		return fmt.Sprintf("%s %s %s（UTC %s）", l.date(lt), lt.Format("15:04:05"), l.zoneName(t), ut.Format("2006-01-02 15:04:05"))
	}
	return fmt.Sprintf("%s %s %s (%s UTC)", l.date(lt), lt.Format("15:04:05"), l.zoneName(t), ut.Format("2006-01-02 15:04:05"))
}

// clock is a local time of day with zone, and UTC; dates are added when
// withDate is set.
func (l loc) clock(t time.Time, withDate bool) string {
	if withDate {
		return l.when(t)
	}
	lt, ut := t.In(l.zone), t.UTC()
	if l.utcOnly {
		return ut.Format("15:04:05") + " UTC"
	}
	if l.lang == LangJapanese {
		return fmt.Sprintf("%s %s（UTC %s）", lt.Format("15:04:05"), l.zoneName(t), ut.Format("15:04:05"))
	}
	return fmt.Sprintf("%s %s (%s UTC)", lt.Format("15:04:05"), l.zoneName(t), ut.Format("15:04:05"))
}

// short is a local date and time with zone, without UTC, for places that
// already gave the full time.
func (l loc) short(t time.Time) string {
	lt := t.In(l.zone)
	if l.lang == LangJapanese {
		return fmt.Sprintf("%d月%d日 %s %s", int(lt.Month()), lt.Day(), lt.Format("15:04:05"), l.zoneName(t))
	}
	return lt.Format("2 Jan 15:04:05") + " " + l.zoneName(t)
}

// n writes a count with its unit ("1 tunnel", "2 tunnels", "2 本").
func (l loc) n(count int, unit string) string {
	if count == 1 {
		return l.f("unit."+unit+".one", count)
	}
	return l.f("unit."+unit+".other", count)
}

// and joins items as a list ending in "and" ("hq and dc").
func (l loc) and(items []string) string {
	if l.lang == LangJapanese || len(items) < 2 {
		return l.list(items)
	}
	return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
}

// stamp is a precise local time for technical tables.
func (l loc) stamp(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.In(l.zone).Format("2006-01-02 15:04:05.000") + " " + l.zoneName(t)
}

// utcStamp is a precise UTC time.
func utcStamp(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05.000") + " UTC"
}

// duration writes d for people: "90 ms", "1.2 s", "3 min 5 s".
func (l loc) duration(d time.Duration) string {
	ja := l.lang == LangJapanese
	switch {
	case d < 0:
		return "—"
	case d == 0:
		if ja {
			return "0ミリ秒"
		}
		return "0 ms"
	case d < time.Millisecond:
		if ja {
			return "1ミリ秒未満"
		}
		return "under 1 ms"
	case d < time.Second:
		if ja {
			return fmt.Sprintf("%dミリ秒", d.Round(time.Millisecond).Milliseconds())
		}
		return fmt.Sprintf("%d ms", d.Round(time.Millisecond).Milliseconds())
	case d < time.Minute:
		s := math.Round(d.Seconds()*10) / 10
		if ja {
			return fmt.Sprintf("%.1f秒", s)
		}
		return fmt.Sprintf("%.1f s", s)
	case d < time.Hour:
		d = d.Round(time.Second)
		if ja {
			return fmt.Sprintf("%d分%d秒", int(d.Minutes()), int(d.Seconds())%60)
		}
		return fmt.Sprintf("%d min %d s", int(d.Minutes()), int(d.Seconds())%60)
	default:
		d = d.Round(time.Minute)
		if ja {
			return fmt.Sprintf("%d時間%d分", int(d.Hours()), int(d.Minutes())%60)
		}
		return fmt.Sprintf("%d h %d min", int(d.Hours()), int(d.Minutes())%60)
	}
}

func size(n int64) string {
	switch {
	case n < 1024:
		return fmt.Sprintf("%d\u00a0B", n)
	case n < 1024*1024:
		return fmt.Sprintf("%.1f\u00a0KiB", float64(n)/1024)
	default:
		return fmt.Sprintf("%.1f\u00a0MiB", float64(n)/(1024*1024))
	}
}

// list joins items the way the language does.
func (l loc) list(items []string) string {
	if l.lang == LangJapanese {
		return strings.Join(items, "、")
	}
	return strings.Join(items, ", ")
}

// word looks up an enumerated value ("severity.critical"), falling back to
// the value itself.
func (l loc) word(prefix, value string) string {
	if v, ok := l.t[prefix+"."+value]; ok {
		return v
	}
	return value
}

// wording is every text of a report, {English, Japanese} side by side, so
// that a key cannot exist in one language only. Values are fmt formats; a
// translation may reorder the arguments (%[2]s).
var wording = map[string]struct{ en, ja string }{
	"none":               {"—", "—"},
	"title":              {"Incident report: suspected compromise of VPN gateway %s (site %s)", "インシデント報告書：拠点「%[2]s」VPNゲートウェイ %[1]s の侵害の疑い"},
	"meta.incident":      {"Incident", "インシデント番号"},
	"meta.severity":      {"Severity", "重大度"},
	"meta.status":        {"Status", "状況"},
	"meta.generated":     {"Report generated", "報告書作成日時"},
	"meta.source":        {"Source", "作成元"},
	"meta.source.value":  {"written by Warden from its tamper-evident audit log and evidence ledger", "Warden（改ざん検知可能な監査ログと証拠台帳から自動作成）"},
	"meta.times":         {"Times", "時刻表記"},
	"meta.times.value":   {"local time of site %s (%s, %s), with UTC", "拠点「%s」の現地時刻（%s、%s）と UTC を併記"},
	"meta.times.unknown": {"UTC only: the time zone of site %s is not known (%s)", "UTC のみで表記（拠点「%s」のタイムゾーンは不明。%s）"},
	"inventory.unknown":  {"inventory unknown: pass -c warden.yaml", "インベントリ不明：-c warden.yaml を指定してください"},
	"banner.contained":   {"CONTAINED — %s was cut off from the network at %s, verified by reading its state back. %s needed from management (see 5).", "【封じ込め済み】%s は %sにネットワークから隔離され、状態を読み戻して隔離を確認しました。経営層にご判断いただきたい事項が %sあります（5. を参照）。"},
	"banner.awaiting":    {"NOT CONTAINED — containment of %s is waiting for a person's approval (see 5).", "【未封じ込め・承認待ち】%s の隔離は、責任者の承認を待っています（5. を参照）。"},
	"banner.inprogress":  {"CONTAINMENT IN PROGRESS — the isolation of %s has not finished yet.", "【対応中】%s の隔離はまだ完了していません。"},
	"banner.failed":      {"NOT CONTAINED — the containment run for %s failed: %s", "【未封じ込め】%s の隔離処理が失敗しました：%s"},
	"banner.released":    {"RELEASED — %s was returned to service at %s.", "【隔離解除済み】%s は %sに隔離を解除し、業務に復帰しました。"},
	"banner.notisolated": {"NOT ISOLATED — by policy, Warden preserved evidence and notified people without cutting %s off. %s needed (see 5).", "【隔離なし】ポリシーに基づき、%s は隔離せず、証拠保全と関係者への通知を行いました。ご判断いただきたい事項が %sあります（5. を参照）。"},
	"mgmt":               {"Summary for management", "経営層向け要約"},
	"mgmt.what":          {"1. What happened", "1. 発生した事象"},
	"mgmt.impact":        {"2. Impact", "2. 影響範囲"},
	"mgmt.done":          {"3. What was done, when, and by whom", "3. 実施した対応と時刻・対応者"},
	"mgmt.state":         {"4. Current state", "4. 現在の状況"},
	"mgmt.decide":        {"5. Decisions needed from management", "5. ご判断いただきたい事項"},

	"what.sentence":  {"On %s at %s, %s reported %s on VPN gateway %s at site %s (severity %s, confidence %s).", "%s %s、検知システム（%s）が、拠点「%[6]s」の VPN ゲートウェイ %[5]s において、%[4]sを検知しました（重大度：%[7]s、確度：%[8]s）。"},
	"what.addresses": {"Addresses involved: %s.", "関係するアドレス：%s。"},
	"what.more":      {"%s about the same gateway were also received (see the technical details).", "同じゲートウェイについて、ほかに %sの兆候を受信しています（技術詳細を参照）。"},
	"what.none":      {"No indicator is recorded for this incident.", "本インシデントには兆候の記録がありません。"},

	"impact.site":                {"Affected site", "影響を受けた拠点"},
	"impact.site.value":          {"%s — gateway %s (VM %s), site networks %s.", "%s（ゲートウェイ %s、仮想マシン %s、拠点内ネットワーク %s）"},
	"impact.site.unknown":        {"%s — gateway %s; its VM and the site's networks are not known (%s).", "%s（ゲートウェイ %s。仮想マシンと拠点内ネットワークは不明です。%s）"},
	"impact.peers.unknown":       {"not known (%s).", "不明です（%s）。"},
	"impact.spread.unknown":      {"not assessed: the connected sites are not known (%s).", "未評価：接続先拠点が不明です（%s）。"},
	"impact.peers":               {"Sites connected to it by tunnels", "トンネルで直接接続している拠点"},
	"impact.peer":                {"%s (gateway %s, tunnel %s, %s)", "%s（ゲートウェイ %s、トンネル %s、%s）"},
	"impact.nopeers":             {"none in the inventory.", "インベントリ上はありません。"},
	"impact.cut":                 {"While the gateway is isolated, traffic between %s and these sites is stopped.", "隔離中は、拠点「%s」とこれらの拠点との間の通信が停止しています。"},
	"impact.others":              {"The other tunnels (%s: %s) are not affected.", "その他の拠点間トンネル（%s：%s）は影響を受けていません。"},
	"impact.noothers":            {"There are no other tunnels in the VPN.", "その他の拠点間トンネルはありません。"},
	"impact.spread":              {"Spread", "被害拡大の有無"},
	"impact.spread.reached":      {"the investigation found the attacker's connections reaching %s (see Intrusion path and scope). Treat these sites as affected.", "調査の結果、攻撃者の通信が %s に到達していました（「侵入経路と影響範囲」を参照）。これらの拠点も影響を受けたものとして扱ってください。"},
	"impact.spread.investigated": {"the investigation found no connection from the gateway into the connected sites in the records it could read (see Intrusion path and scope).", "調査の結果、取得できた記録の範囲では、ゲートウェイから接続先拠点への通信は見つかりませんでした（「侵入経路と影響範囲」を参照）。"},
	"impact.spread.none":         {"no other open incident concerns the connected sites' gateways. Whether the attacker reached them has not been investigated yet.", "接続先拠点のゲートウェイについて、現時点で他のインシデントは記録されていません。ただし、攻撃者が接続先へ侵入を広げていないかは、まだ調査していません。"},
	"impact.spread.some":         {"open incidents also concern connected gateways: %s. Treat these sites as possibly affected.", "接続先のゲートウェイにも未解決のインシデントがあります：%s。これらの拠点も影響を受けている可能性があるものとして扱ってください。"},
	"impact.spread.item":         {"%s (%s)", "%s（%s）"},
	"done.alert":                 {"Alert received (%s)", "警報を受信（%s）"},
	"done.decision.auto":         {"Response decided by policy %s (automatic)", "ポリシー %s により対応方針を決定（自動対応）"},
	"done.decision.human":        {"Response decided by policy %s (a person's approval is required)", "ポリシー %s により対応方針を決定（責任者の承認が必要）"},
	"done.approval":              {"Approved by %s", "%s が承認"},
	"done.capture":               {"Volatile state captured (connections, processes, routes, tunnel state): evidence preserved", "揮発性情報（通信・プロセス・経路・トンネルの状態）を取得（証拠保全）"},
	"done.capture.skip":          {"Volatile state capture is not available for this gateway; skipped", "揮発性情報の取得は、このゲートウェイでは実行できないため省略"},
	"done.snapshot":              {"Snapshot of the VM taken, with memory: evidence preserved", "仮想マシンのスナップショットをメモリを含めて取得（証拠保全）"},
	"done.snapshot.nomem":        {"Snapshot of the VM taken (without memory): evidence preserved", "仮想マシンのスナップショットを取得（メモリなし。証拠保全）"},
	"done.contained":             {"Gateway isolated from the network; isolation verified by reading its state back", "ゲートウェイをネットワークから隔離し、状態を読み戻して隔離を確認"},
	"done.notify":                {"Responders notified", "担当者へ通知"},
	"done.release":               {"Gateway released from quarantine", "隔離を解除"},
	"done.rotate":                {"Tunnel credentials replaced", "トンネルの認証情報を更新"},
	"done.revoke":                {"Gateway removed from every peer site and blocked there; it can no longer connect to them", "全ての接続先拠点でゲートウェイとの接続を削除し、通信を遮断（接続先へ再接続できない状態）"},
	"done.skipped":               {"%s not possible automatically here; to be done by hand", "%sはこの環境では自動で実施できないため、手作業での対応が必要"},
	"done.baseline.pass":         {"Baseline check passed", "セキュリティ基準の確認：合格"},
	"done.baseline.fail":         {"Baseline check failed", "セキュリティ基準の確認：不合格"},
	"done.failed":                {"%s failed", "%sに失敗"},
	"done.generic":               {"%s done", "%sを実施"},
	"done.ttc":                   {"Time from the alert to verified isolation: %s.", "警報の受信から隔離の確認までの所要時間：%s"},
	"done.nothing":               {"Warden has not acted on the gateway yet.", "Warden はまだゲートウェイに対する処理を行っていません。"},

	"state.contain":           {"Containment", "封じ込め"},
	"state.contain.yes":       {"complete. %s is cut off from the network; verified by reading its state back at %s.", "完了。%s はネットワークから隔離されており、%s に状態を読み戻して確認済みです。"},
	"state.contain.observed":  {"Last observed state: %s (%s).", "最後に観測した状態：%s（%s）。"},
	"state.contain.awaiting":  {"not contained: the containment run %s waits for approval.", "未完了。隔離処理（%s）が承認待ちです。"},
	"state.contain.progress":  {"in progress: run %s has not finished.", "対応中。処理 %s が完了していません。"},
	"state.contain.failed":    {"not contained: run %s failed (%s).", "未完了。処理 %s が失敗しました（%s）。"},
	"state.contain.released":  {"released: the gateway was returned to service.", "隔離は解除され、業務に復帰しています。"},
	"state.contain.none":      {"the gateway was not isolated; the policy chose to preserve evidence and notify.", "隔離は行っていません（ポリシーにより、証拠保全と通知のみ）。"},
	"state.evidence":          {"Evidence", "証拠保全"},
	"state.evidence.value":    {"preserved: %s and %s; each artefact carries a SHA-256 hash, so any change is detectable.", "スナップショット %s、証拠ファイル %sを保全済みです。各ファイルには SHA-256 ハッシュ値が記録され、改ざんがあれば検知できます。"},
	"state.evidence.noledger": {"preserved: %s; the evidence ledger was not available to this report.", "スナップショット %sを保全済みです（本報告書の作成時には証拠台帳を参照できませんでした）。"},
	"state.audit":             {"Audit log", "監査ログ"},
	"state.audit.ok":          {"intact: %s, hash chain verified.", "改ざんなし（%s、ハッシュチェーンを検証済み）。"},
	"state.audit.broken":      {"BROKEN: %s. Treat the record as tampered with.", "異常あり：%s。記録が改ざんされた可能性があります。"},
	"state.release":           {"Return to service", "復旧（隔離解除）"},
	"state.release.value":     {"not yet. Release needs all three: baseline check passed (%s), tunnel credentials rotated (%s), and an approval.", "未実施。隔離の解除には、セキュリティ基準の確認に合格すること（%s）、認証情報の更新（%s）、責任者の承認の3点がすべて必要です。"},
	"state.release.done":      {"done.", "完了。"},
	"state.baseline.no":       {"not yet checked", "未実施"},
	"state.baseline.pass":     {"passed", "合格"},
	"state.baseline.fail":     {"failed", "不合格"},
	"state.cred.pending":      {"pending: %s", "未実施：トンネル %s"},
	"state.cred.unknown":      {"pending; which tunnels is not known", "未実施。対象トンネルは不明"},
	"state.cred.done":         {"done", "完了"},

	"decide.approve":              {"Approve or reject %s (%s)", "対応処理 %s（%s）の承認可否"},
	"decide.approve.text":         {"it waits because: %s.", "承認待ちの理由：%s。"},
	"decide.release":              {"Return %s to service", "ゲートウェイ %s の隔離解除（業務再開）のご承認"},
	"decide.release.text":         {"approve the release once the baseline check passes and the tunnel credentials are rotated. Until then, %s stays cut off from %s.", "セキュリティ基準の確認と認証情報の更新が完了した後に、解除をご承認ください。それまで、拠点「%s」と %s との間の通信は停止したままです。"},
	"decide.release.text.nopeers": {"approve the release once the baseline check passes and the tunnel credentials are rotated. Until then, the gateway of %s stays cut off from the network.", "セキュリティ基準の確認と認証情報の更新が完了した後に、解除をご承認ください。それまで、拠点「%s」のゲートウェイはネットワークから隔離されたままです。"},
	"decide.release.text.unknown": {"approve the release once the baseline check passes and the tunnel credentials are rotated. Until then, %s stays cut off from the sites connected to it (%s).", "セキュリティ基準の確認と認証情報の更新が完了した後に、解除をご承認ください。それまで、拠点「%s」と接続先拠点との間の通信は停止したままです（%s）。"},
	"decide.notify":               {"Notify customers, partners or authorities?", "お客様・取引先・関係当局への報告や公表の要否"},
	"decide.notify.text":          {"decide with legal and PR once the investigation shows whether data was exposed. If personal data may have leaked, a report to the data-protection authority may be mandatory.", "情報漏えいの有無に関する調査結果を踏まえ、法務・広報部門とご判断ください。個人データの漏えい等のおそれがある場合は、個人情報保護委員会への報告が義務となる場合があります。"},
	"decide.forensics":            {"Engage an external forensic team?", "外部の専門調査機関（フォレンジック調査）への依頼の要否"},
	"decide.forensics.text":       {"recommended, to establish how the attacker got in and how far they went. The evidence (%s) is preserved and can be handed over as it is.", "侵入経路と被害範囲を正確に特定するため、専門家による調査をお勧めします。証拠（%s）は保全済みで、そのまま引き渡せます。"},
	"decide.forensics.noev":       {"recommended, to establish how the attacker got in and how far they went. No evidence has been preserved yet apart from the audit log: secure it before the investigation starts.", "侵入経路と被害範囲を正確に特定するため、専門家による調査をお勧めします。監査ログ以外の証拠はまだ保全していないため、調査の開始前に確保する必要があります。"},
	"ev.snapshot.mem":             {"VM snapshot with memory", "メモリを含むスナップショット"},
	"ev.snapshot":                 {"VM snapshot", "スナップショット"},
	"ev.files":                    {"artefacts with SHA-256 hashes", "ハッシュ値付きの証拠ファイル"},
	"ev.audit":                    {"audit log", "監査ログ"},
	"state.evidence.none":         {"nothing preserved yet.", "まだ保全していません。"},
	"gate.reason.approval":        {"policy %s requires a person's approval", "ポリシー %s は責任者の承認を必要とします"},
	"gate.reason.blast-radius":    {"the automatic-isolation budget is used up (%s)", "自動隔離の上限に達しています（%s）"},
	"gate.reason.circuit-breaker": {"automatic actions are stopped because many gateways alerted at once (circuit breaker)", "多数のゲートウェイで同時に警報が出たため、自動対応を停止しています（サーキットブレーカー）"},
	"gate.reason.evidence-first":  {"a destructive step would run before evidence is preserved", "証拠保全より先に、証拠を損なうおそれのある処理が実行されることになります"},
	"gate.reason.other":           {"%s: %s", "%s：%s"},
	"decide.contain":              {"Isolate %s?", "ゲートウェイ %s の隔離の要否"},
	"decide.contain.text":         {"the policy did not isolate it. Decide with the security team whether the indicators justify cutting %s off.", "ポリシーでは隔離を行っていません。検知内容が拠点「%s」の通信を止めるに値するか、セキュリティ担当とご判断ください。"},
	"tech":                        {"Technical details", "技術詳細"},
	"tech.indicators":             {"Indicators", "検知した兆候"},
	"tech.decisions":              {"Decisions: policy and why", "対応方針の決定（ポリシーと理由）"},
	"tech.decision.line":          {"%s: indicator %s → policy %s (runbook %s, approval %s, %s).", "%s：兆候 %s → ポリシー %s（ランブック %s、承認 %s、%s）。"},
	"tech.decision.nomatch":       {"%s: indicator %s matched no policy.", "%s：兆候 %s に該当するポリシーはありませんでした。"},
	"tech.decision.reason":        {"Reason: %s.", "理由：%s。"},
	"tech.decision.before":        {"Evaluated before it, not matching: %s.", "先に評価し、該当しなかったポリシー：%s。"},
	"tech.decision.bh.in":         {"observed within business hours", "業務時間内に観測"},
	"tech.decision.bh.out":        {"observed outside business hours", "業務時間外に観測"},
	"tech.gates":                  {"Gates checked before each run", "実行前のゲート判定"},
	"tech.approvals":              {"Approvals", "承認"},
	"tech.runs":                   {"Actions and durations", "実施した処理と所要時間"},
	"tech.run.line":               {"Run %s: runbook %s, policy %s, trigger %s, requested by %s; %s, started %s, finished %s, took %s.", "処理 %s：ランブック %s、ポリシー %s、起動 %s、依頼者 %s。%s。開始 %s、終了 %s、所要時間 %s。"},
	"tech.run.approved":           {"Approved by %s at %s.", "承認者：%s（%s）。"},
	"tech.run.error":              {"Error: %s", "エラー：%s"},
	"tech.gateway":                {"Affected gateway and tunnels", "影響を受けたゲートウェイとトンネル"},
	"tech.gw.id":                  {"Gateway", "ゲートウェイ"},
	"tech.gw.value":               {"%s at site %s; VM %s; host name %s", "%s（拠点「%s」、仮想マシン %s、ホスト名 %s）"},
	"tech.gw.value.unknown":       {"%s at site %s; VM, host name, addresses and management networks: %s", "%s（拠点「%s」。仮想マシン、ホスト名、アドレス、管理用ネットワーク：%s）"},
	"tech.gw.tunnels":             {"Tunnels", "トンネル"},
	"tech.gw.addresses":           {"Addresses", "アドレス"},
	"tech.gw.mgmt":                {"Management networks (kept reachable through quarantine)", "管理用ネットワーク（隔離中も到達可能）"},
	"tech.gw.posture":             {"Posture", "状態（ポスチャ）"},
	"tech.gw.posture.value":       {"desired %s; observed %s (%s)", "あるべき状態：%s、観測された状態：%s（%s）"},
	"tech.credentials":            {"Credentials rotated", "認証情報の更新"},
	"tech.cred.pending":           {"Not rotated yet: pending decision. Every credential the gateway held must be treated as known to the attacker; rotate all of them (%s) before release, make-before-break, in waves.", "未実施（判断待ち）。ゲートウェイが保持していた認証情報は、攻撃者に知られた前提で扱う必要があります。隔離解除の前に、%sすべてを更新してください（make-before-break 方式で段階的に実施）。"},
	"tech.cred.pending.unknown":   {"Not rotated yet: pending decision. Every credential the gateway held must be treated as known to the attacker; rotate all of them before release, make-before-break, in waves. Which tunnels it held is not known (%s).", "未実施（判断待ち）。ゲートウェイが保持していた認証情報は、攻撃者に知られた前提で扱う必要があります。隔離解除の前に、すべてを更新してください（make-before-break 方式で段階的に実施）。対象のトンネルは不明です（%s）。"},
	"tech.cred.done":              {"Rotated at %s: %s", "%s に更新済み：%s"},
	"tech.evidence":               {"Evidence", "証拠一覧"},
	"tech.evidence.snapshots":     {"Hypervisor snapshots", "仮想マシンのスナップショット"},
	"tech.evidence.ledger":        {"Artefacts in the evidence ledger", "証拠台帳に記録された証拠ファイル"},
	"tech.evidence.none":          {"No artefact is recorded in the evidence ledger for this incident.", "本インシデントの証拠ファイルは証拠台帳に記録されていません。"},
	"tech.evidence.noledger":      {"The evidence ledger was not available to this report.", "本報告書の作成時には証拠台帳を参照できませんでした。"},
	"tech.evidence.check":         {"Anyone can check that exported artefacts are unchanged with sha256sum -c SHA256SUMS.", "書き出した証拠ファイルが改ざんされていないことは、sha256sum -c SHA256SUMS により誰でも確認できます。"},
	"tech.nosnapshots":            {"No snapshot was taken.", "スナップショットは取得していません。"},
	"tech.baseline":               {"Baseline check", "セキュリティ基準（ベースライン）の確認結果"},
	"tech.baseline.no":            {"Not yet checked.", "未実施。"},
	"tech.baseline.result":        {"%s at %s: %s", "%s（%s）：%s"},
	"tech.audit":                  {"Audit chain verification", "監査ログの検証"},
	"tech.audit.result":           {"Result", "結果"},
	"tech.audit.ok":               {"intact", "改ざんなし"},
	"tech.audit.broken":           {"BROKEN: %s", "異常あり：%s"},
	"tech.audit.entries":          {"Entries in the whole chain", "監査ログ全体の件数"},
	"tech.audit.head":             {"Head hash", "最新エントリのハッシュ値（head）"},
	"tech.audit.how":              {"How to check", "確認方法"},
	"tech.audit.how.value":        {"warden audit verify (database) or warden audit verify --file audit.jsonl (exported copy)", "warden audit verify（データベース）または warden audit verify --file audit.jsonl（書き出したもの）"},
	"tech.timeline":               {"Audit entries of this incident", "本インシデントの監査ログ"},
	"tech.next":                   {"Next steps: recovery and prevention", "今後の対応（復旧・再発防止）"},
	"next.forensics":              {"Find how the attacker got in and what they reached, from the preserved evidence (an external forensic team is recommended).", "保全した証拠を解析し、侵入経路と被害範囲を特定する（外部の専門調査機関への依頼を推奨）。"},
	"next.peers":                  {"Check the connected sites' gateways (%s) for signs of compromise.", "接続先拠点のゲートウェイ（%s）に侵害の形跡がないか確認する。"},
	"next.peers.unknown":          {"Find the gateways connected to %s by tunnels and check them for signs of compromise (%s).", "%s とトンネルで接続しているゲートウェイを特定し、侵害の形跡がないか確認する（%s）。"},
	"next.rotate":                 {"Rotate every tunnel credential the gateway held (make-before-break, in waves).", "ゲートウェイが保持していたトンネルの認証情報をすべて更新する（make-before-break 方式で段階的に実施）。"},
	"next.patch":                  {"Patch the gateway and re-check it against the hardened baseline.", "パッチを適用し、セキュリティ基準（ベースライン）に適合しているか再確認する。"},
	"next.release":                {"Once these are done and approved, release the gateway and confirm that traffic flows again.", "以上の完了と承認を経て隔離を解除し、通信が回復したことを確認する。"},
	"next.review":                 {"Review monitoring rules and response policies so that the same attack is caught earlier.", "同種の攻撃をより早く検知できるよう、監視ルールと対応ポリシーを見直す（再発防止）。"},
	"svg.title":                   {"Timeline (elapsed since the alert)", "時系列（警報受信からの経過時間）"},
	"short.alert":                 {"Alert received", "警報受信"},
	"short.decision":              {"Policy decided", "対応方針の決定"},
	"short.approval":              {"Approved by %s", "%s が承認"},
	"short.contained":             {"Isolated and verified", "隔離・確認済み"},
	"short.state":                 {" (%s)", "（%s）"},
	"svg.alt":                     {"Timeline of the incident: %s", "インシデントの時系列：%s"},

	"col.received":    {"Received", "受信時刻"},
	"col.observed":    {"Observed", "観測時刻"},
	"col.kind":        {"Kind", "種別"},
	"col.severity":    {"Severity", "重大度"},
	"col.confidence":  {"Confidence", "確度"},
	"col.source":      {"Source", "検知元"},
	"col.observables": {"Observables", "観測対象"},
	"col.summary":     {"Summary", "概要"},
	"col.run":         {"Run", "処理"},
	"col.gate":        {"Gate", "ゲート"},
	"col.result":      {"Result", "結果"},
	"col.detail":      {"Detail", "詳細"},
	"col.runbook":     {"Runbook", "ランブック"},
	"col.approval":    {"Approval", "承認"},
	"col.by":          {"Approved by", "承認者"},
	"col.requested":   {"Requested by", "依頼者"},
	"col.overrode":    {"Overridden by", "例外の適用者"},
	"col.person":      {"Person", "担当者"},
	"col.recorded":    {"Recorded as", "記録上の名前"},
	"col.display":     {"Display name", "表示名"},
	"col.role":        {"Role (now)", "現在のロール"},
	"col.did":         {"What they did", "行ったこと"},
	"col.at":          {"At", "日時"},
	"col.comment":     {"Comment / detail", "コメント・詳細"},
	"col.step":        {"Step", "ステップ"},
	"col.action":      {"Action", "アクション"},
	"col.state":       {"State", "状態"},
	"col.attempts":    {"Attempts", "試行回数"},
	"col.started":     {"Started", "開始"},
	"col.finished":    {"Finished", "終了"},
	"col.duration":    {"Duration", "所要時間"},
	"col.tunnel":      {"Tunnel", "トンネル"},
	"col.peer":        {"Peer gateway", "接続先ゲートウェイ"},
	"col.peersite":    {"Peer site", "接続先拠点"},
	"col.tunnelstate": {"Tunnel state", "トンネルの状態"},
	"col.credential":  {"Credential", "認証情報"},
	"col.snapshot":    {"Snapshot", "スナップショット"},
	"col.vm":          {"VM", "仮想マシン"},
	"col.memory":      {"Memory", "メモリ"},
	"col.id":          {"ID", "ID"},
	"col.name":        {"Name", "名前"},
	"col.size":        {"Size", "サイズ"},
	"col.sha256":      {"SHA-256", "SHA-256"},
	"col.collected":   {"Collected", "取得日時"},
	"col.from":        {"From", "取得元"},
	"col.seq":         {"No.", "番号"},
	"col.time":        {"Time", "時刻"},
	"col.utc":         {"UTC", "UTC"},
	"col.actor":       {"Actor", "実行者"},
	"col.subject":     {"Subject", "対象"},

	"gate.overridden":       {"passed by override", "例外により通過"},
	"gate.passed":           {"passed", "通過"},
	"gate.failed":           {"not passed (waits for a person)", "不通過（承認待ち）"},
	"gate.info":             {"not passed (information)", "不通過（参考）"},
	"approval.auto":         {"not required (automatic)", "不要（自動実行）"},
	"approval.approved":     {"required, approved", "必要・承認済み"},
	"approval.waiting":      {"required, WAITING", "必要・承認待ち"},
	"approval.never":        {"required, never given (run %s)", "必要・未承認（処理は%s）"},
	"approval.required":     {"required", "必要"},
	"approval.manual":       {"started by a person", "担当者が手動で開始"},
	"approval.second":       {"required, approved by a second person", "必要・別の担当者が承認（二人承認）"},
	"approval.alone":        {"approved by one person alone (no second person)", "同一人物が単独で承認（二人目の確認なし）"},
	"tunnel.cut":            {"cut off by the isolation", "隔離により停止中"},
	"tunnel.up":             {"not cut off", "停止していません"},
	"cred.pending":          {"rotation pending", "更新待ち"},
	"cred.rotated":          {"rotated", "更新済み"},
	"cred.wireguard":        {"WireGuard key pair", "WireGuard 鍵ペア"},
	"cred.strongswan":       {"IPsec pre-shared key or certificate", "IPsec 事前共有鍵または証明書"},
	"yes":                   {"yes", "あり"},
	"no":                    {"no", "なし"},
	"unit.snapshot.one":     {"%d VM snapshot", "%d 件"},
	"unit.snapshot.other":   {"%d VM snapshots", "%d 件"},
	"unit.artefact.one":     {"%d artefact", "%d 件"},
	"unit.artefact.other":   {"%d artefacts", "%d 件"},
	"unit.decision.one":     {"%d decision is", "%d 件"},
	"unit.decision.other":   {"%d decisions are", "%d 件"},
	"unit.tunnel.one":       {"%d tunnel", "%d 本"},
	"unit.tunnel.other":     {"%d tunnels", "%d 本"},
	"unit.indicator.one":    {"%d further indicator", "%d 件"},
	"unit.indicator.other":  {"%d further indicators", "%d 件"},
	"unit.entry.one":        {"%d entry", "%d 件"},
	"unit.ind.one":          {"%d indicator", "%d 件"},
	"unit.ind.other":        {"%d indicators", "%d 件"},
	"unit.entry.other":      {"%d entries", "%d 件"},
	"clock.after":           {"%s (%s UTC, alert +%s)", "%s（UTC %s、警報から%s後）"},
	"clock.after.utc":       {"%s UTC (alert +%s)", "%s UTC（警報から%s後）"},
	"trigger.policy":        {"policy", "ポリシー"},
	"trigger.manual":        {"manual", "手動"},
	"trigger.drift":         {"drift check", "定期点検"},
	"approvalmode.auto":     {"automatic", "自動"},
	"approvalmode.required": {"approval required", "要承認"},

	"severity.critical":          {"critical", "緊急"},
	"severity.high":              {"high", "高"},
	"severity.medium":            {"medium", "中"},
	"severity.low":               {"low", "低"},
	"status.open":                {"open", "対応中"},
	"status.contained":           {"contained", "封じ込め済み"},
	"status.closed":              {"closed", "終了"},
	"status.released":            {"released (returned to service)", "隔離解除済み（業務復帰）"},
	"posture.normal":             {"normal", "通常"},
	"posture.quarantined":        {"quarantined", "隔離"},
	"posture.released":           {"released", "隔離解除"},
	"runstate.pending":           {"pending", "実行待ち"},
	"runstate.awaiting_approval": {"awaiting approval", "承認待ち"},
	"runstate.running":           {"running", "実行中"},
	"runstate.succeeded":         {"succeeded", "成功"},
	"runstate.failed":            {"failed", "失敗"},
	"runstate.cancelled":         {"cancelled", "取消"},
	"stepstate.pending":          {"pending", "未実行"},
	"stepstate.running":          {"running", "実行中"},
	"stepstate.succeeded":        {"succeeded", "成功"},
	"stepstate.failed":           {"failed", "失敗"},
	"stepstate.skipped":          {"skipped", "スキップ"},
	"kind.c2_beacon":             {"periodic beaconing to a suspected command-and-control host", "不審な外部ホスト（C2 サーバーの疑い）への定期的な通信"},
	"kind.exfiltration":          {"data being sent out to an outside host", "外部への不審なデータ送信"},
	"kind.brute_force":           {"repeated failed logins (brute force)", "ログイン試行の繰り返し（総当たり攻撃）"},
	"kind.off_hours_admin_login": {"an administrator login outside business hours", "業務時間外の管理者ログイン"},
	"kind.unknown_destination":   {"traffic to an unknown destination", "未知の宛先への通信"},
	"kind.traffic_spike":         {"an unusual surge in traffic", "通常と異なる通信量の増加"},
	"kind.config_tamper":         {"a configuration change outside change control", "変更管理外の設定変更"},
	"kind.integrity_violation":   {"files changed unexpectedly (integrity violation)", "想定外のファイル変更（改ざんの疑い）"},
	"kind.baseline_drift":        {"drift from the hardened baseline", "セキュリティ基準（ベースライン）からの逸脱"},
	"kind.crash":                 {"a crash or abnormal behaviour", "異常停止・異常動作"},
	"kind.auth_failure_burst":    {"a burst of failed logins from one address", "同一アドレスからの認証失敗の集中"},
	"kind.new_admin_source":      {"an administrator login from an address never seen before", "これまでにないアドレスからの管理者ログイン"},
	"kind.config_change":         {"a change to a watched configuration file", "監視対象の設定ファイルの変更"},
	"risk.c2_beacon":             {"This suggests the gateway is under an attacker's remote control.", "ゲートウェイが攻撃者に遠隔操作されている可能性があります。"},
	"risk.exfiltration":          {"This suggests data may have been taken out of the company.", "社内の情報が外部に持ち出されている可能性があります。"},
	"risk.other":                 {"This may be a sign of compromise and needs investigation.", "侵害の兆候である可能性があり、調査が必要です。"},
	"evkind.volatile":            {"volatile state", "揮発性情報"},
	"evkind.snapshot":            {"snapshot reference", "スナップショット参照"},
	"evkind.config":              {"configuration", "設定"},
	"evkind.log":                 {"log", "ログ"},
	"action.capture_volatile":    {"Volatile capture", "揮発性情報の取得"},
	"action.snapshot":            {"VM snapshot", "スナップショット取得"},
	"action.isolate":             {"Isolation", "隔離"},
	"action.kill_flows":          {"Established sessions cut", "確立済み通信の切断"},
	"action.notify":              {"Notification", "通知"},
	"action.release":             {"Release", "隔離解除"},
	"action.power_off":           {"Power off", "電源停止"},
	"action.revoke_peer":         {"Peer revocation", "接続先でのトンネル遮断"},
	"action.rotate_credentials":  {"Credential rotation", "認証情報の更新"},
	"action.patch":               {"Patching", "パッチ適用"},
	"action.verify_baseline":     {"Baseline check", "セキュリティ基準の確認"},

	// Gate names in tables, and in sentences.
	"gatename.approval":              {"approval", "承認"},
	"gatename.blast-radius":          {"blast-radius", "自動隔離の上限"},
	"gatename.circuit-breaker":       {"circuit-breaker", "サーキットブレーカー"},
	"gatename.evidence-first":        {"evidence-first", "証拠保全優先"},
	"gatename.baseline":              {"baseline", "セキュリティ基準の確認"},
	"gatename.credentials-rotated":   {"credentials-rotated", "認証情報の更新"},
	"gatename.no-live-threat":        {"no-live-threat", "進行中の脅威なし"},
	"gatename.release-approval":      {"release-approval", "隔離解除の承認"},
	"gate.title.baseline":            {"the baseline check", "セキュリティ基準の確認"},
	"gate.title.credentials-rotated": {"the rotation of the tunnel credentials", "トンネルの認証情報の更新"},
	"gate.title.evidence-first":      {"the evidence-first rule", "証拠保全優先ルール"},
	"bool.true":                      {"true", "あり"},
	"bool.false":                     {"false", "なし"},
	"ind.dup":                        {" (dup)", "（重複）"},
	"ind.resolved":                   {" (resolved)", "（解消済み）"},
	"ind.resolvedby":                 {" (resolved by %s: “%s”)", "（%s が解消と判断：「%s」）"},
	"step.verified":                  {" / verified: %s", " / 確認結果：%s"},
	"step.error":                     {"%s", "エラー（原文）：「%s」"},
	"tech.decision.nm":               {"%s (%s)", "%s（%s）"},

	// A release that a person let through unmet gates.
	"banner.released.override": {"RELEASED BY EXCEPTION — %s was returned to service at %s without %s (overridden by %s). Still owed: %s (see 4 and 5).", "【例外による隔離解除】%s は %sに、%sを行わないまま業務に復帰しました（例外の適用者：%s）。未完了の事項：%s（4. と 5. を参照）。"},
	"done.release.override":    {"Gateway released from quarantine by exception: %s overridden", "例外の適用により隔離を解除（省略した条件：%s）"},
	"state.release.override":   {"done at %s, by exception: %s overrode %s (recorded reason: “%s”).", "%s に隔離を解除しました。ただし、%s が例外として%sを省略しています（記録された理由：「%s」）。"},
	"release.second":           {"A second person, %s, approved the release.", "解除は、別の担当者である %s が承認しました（二人承認）。"},
	"release.alone":            {"%s also approved the release alone: no second person checked it.", "解除の承認も %s が単独で行っており、二人目による確認はありません。"},
	"state.release.owed":       {"Still owed: %s.", "未完了の事項：%s。"},
	"state.release.owed.none":  {"What the exception skipped has been done since.", "例外で省略した事項は、その後完了しています。"},
	"owed.baseline":            {"a passing baseline check of %s", "%s のセキュリティ基準の確認（合格）"},
	"owed.credentials-rotated": {"the rotation of the credentials of %s", "%sの認証情報の更新"},
	"owed.tunnels":             {"%s", "トンネル %s"},
	"owed.tunnels.unknown":     {"its tunnels", "保持していたトンネル"},
	"decide.owed":              {"Accept the early return to service of %s, or isolate it again?", "ゲートウェイ %s の例外による業務復帰の容認、または再隔離のご判断"},
	"decide.owed.text":         {"it is back in service with this still owed: %s. Agree who does it and by when, or have the gateway isolated again until it is done.", "%sが未完了のまま業務に復帰しています。完了させる担当者と期限をお決めいただくか、完了まで再び隔離するかをご判断ください。"},
	"decide.owed.cred":         {"Until its tunnel credentials are rotated, they must be treated as known to the attacker, and the tunnels to %s run on them.", "認証情報を更新するまでは、攻撃者に知られている前提で扱う必要があり、%s とのトンネルはその認証情報で稼働しています。"},
	"tech.run.override":        {"Override recorded by %s (reason: “%s”). Gates it let pass although they were not met: %s.", "%s が例外を記録しました（理由：「%s」）。この例外により、条件を満たさないまま通過したゲート：%s。"},
	"tech.run.override.none":   {"Override recorded by %s (reason: “%s”).", "%s が例外を記録しました（理由：「%s」）。"},
	"tech.cred.released":       {"Not rotated. The gateway was returned to service at %s without rotating them (exception recorded by %s). Every credential it held must be treated as known to the attacker; rotate all of them (%s) now, make-before-break, in waves.", "未実施。ゲートウェイは %s に、認証情報を更新しないまま業務に復帰しました（例外の記録者：%s）。保持していた認証情報は攻撃者に知られた前提で扱う必要があります。直ちに %sすべてを更新してください（make-before-break 方式で段階的に実施）。"},
	"tech.baseline.overridden": {"The release overrode this check (exception recorded by %s): check %s now with warden drift check --gateway %s.", "隔離解除の際、この確認は例外として省略されました（例外の記録者：%s）。直ちに %s の確認を実施してください（warden drift check --gateway %s）。"},
	"next.rotate.now":          {"Rotate every tunnel credential the gateway held now: it is back in service with credentials that must be treated as known to the attacker (make-before-break, in waves).", "ゲートウェイが保持していたトンネルの認証情報を直ちにすべて更新する（攻撃者に知られた前提の認証情報のまま業務に復帰しているため。make-before-break 方式で段階的に実施）。"},
	"next.baseline.now":        {"Check the baseline of %s now (warden drift check --gateway %s): it was returned to service without a passing check.", "%s のセキュリティ基準の確認を直ちに実施する（warden drift check --gateway %s）。合格を確認しないまま業務に復帰しています。"},

	// Intrusion path and scope (the investigate step).
	"tech.intrusion":                 {"Intrusion path and scope", "侵入経路と影響範囲"},
	"intr.none":                      {"Not investigated yet: run warden investigate %s to collect what the gateway and its peers recorded and build the attacker's timeline.", "まだ調査していません。warden investigate %s を実行すると、ゲートウェイと接続先拠点の記録を収集し、攻撃者の行動の時系列を作成します。"},
	"intr.failed":                    {"The investigation did not complete (%s); run warden investigate %s again.", "調査は完了していません（%s）。warden investigate %s を再実行してください。"},
	"intr.window":                    {"Records from %s to %s were collected from %s: %d events, placed on the controller's clock (measured clock offsets: %s).", "%s から %s までの記録を %s から収集しました（%d 件の事象。各エージェントの時刻差を測定し、コントローラーの時刻に補正済み：%s）。"},
	"intr.offset":                    {"%s %s ± %s", "%s %s（誤差 ±%s）"},
	"intr.entry":                     {"Entry point, as far as known (candidates in time order):", "侵入口（判明している範囲。時刻順の候補）："},
	"intr.entry.none":                {"No candidate was found in the records collected.", "収集した記録からは候補が見つかりませんでした。"},
	"intr.timeline":                  {"The attacker's timeline: %d notable of %d events (all of them are in the evidence).", "攻撃者の行動の時系列（%[2]d 件中、注目すべき %[1]d 件。全件は証拠として保全）："},
	"intr.approx":                    {" (approx.)", "（概算）"},
	"intr.diff":                      {"Change of %s on %s at %s (secrets redacted):", "%[2]s の %[1]s の変更（%[3]s、秘密情報は伏せ字）："},
	"intr.lateral":                   {"Sites and hosts the attacker's connections reached (lateral movement):", "攻撃者の通信が到達した拠点・ホスト（横展開）："},
	"intr.lateral.none":              {"No connection from the gateway into another site was found.", "ゲートウェイから他拠点への通信は見つかりませんでした。"},
	"intr.site":                      {"site %s", "拠点「%s」"},
	"intr.reached":                   {"host %s", "ホスト %s"},
	"intr.out":                       {"Data that left, per destination, against the same length of time before the window:", "送信先ごとの外部への送信量（調査期間と、その直前の同じ長さの期間との比較）："},
	"intr.out.none":                  {"No data was seen leaving the site in the connection records.", "通信記録からは、拠点外への送信は見つかりませんでした。"},
	"intr.outside":                   {"outside the VPN", "VPN の外部"},
	"intr.peer":                      {"site %s (%s)", "拠点「%s」（%s）"},
	"intr.suspect":                   {", named by the alert", "、警報で指摘された宛先"},
	"intr.unaccounted":               {"not counted (conntrack accounting off)", "計測なし（conntrack の計測が無効）"},
	"intr.unknown":                   {"Still unknown, and why:", "未確認の事項とその理由："},
	"intr.unknown.none":              {"Every source could be read.", "すべての記録を取得できました。"},
	"intr.because":                   {": ", "："},
	"intr.unreachable":               {"nothing could be collected from %s: %s", "%s からは何も収集できませんでした：%s"},
	"intr.evidence":                  {"The whole timeline is evidence %s; its Timesketch export is evidence %s (%s), part of warden evidence export.", "時系列の全体は証拠 %s、Timesketch 形式の出力は証拠 %s（%s）として保全され、warden evidence export に含まれます。"},
	"intr.svg.alt":                   {"The attacker's timeline: %s", "攻撃者の行動の時系列：%s"},
	"intr.svg.title":                 {"The attacker's timeline (controller clock)", "攻撃者の行動の時系列（コントローラーの時刻）"},
	"intr.s":                         {"Investigation: %s; %s; %s%s.", "調査の結果：%s。%s。%s%s。"},
	"intr.s.login":                   {"the attacker most likely got in by logging in as %s to %s from %s at %s", "攻撃者は %[4]s に %[3]s から %[2]s へ %[1]s としてログインして侵入した可能性が高い"},
	"intr.s.other":                   {"the first sign of the intrusion found is %s", "見つかった最初の侵入の痕跡は %s"},
	"intr.s.noentry":                 {"how the attacker got in is not known yet", "侵入経路はまだ判明していない"},
	"intr.s.reach":                   {"their connections reached %s", "攻撃者の通信は %s に到達している"},
	"intr.s.site":                    {"site %s (%s)", "拠点「%s」（%s）"},
	"intr.s.noreach":                 {"no connection into another site was found", "他拠点への侵入の痕跡は見つかっていない"},
	"intr.s.out":                     {"about %s left", "%s が外部へ送信された"},
	"intr.s.dst":                     {"%s towards %s", "%[2]s へ %[1]s"},
	"intr.s.noout":                   {"no data was seen leaving", "外部への送信は見つかっていない"},
	"intr.s.gaps":                    {"; %s could not be examined", "。%s は調査できていない"},
	"why.login":                      {"%s: first successful login as %[2]s from a new source %[3]s", "%[1]s：新しい送信元 %[3]s から %[2]s として初めてログインに成功"},
	"why.login.failures":             {", after %d failed-login records from it", "（同じ送信元からのログイン失敗の記録 %d 件の後）"},
	"why.change":                     {"first configuration change: %s on %s", "最初の設定変更：%[2]s の %[1]s"},
	"why.destination":                {"%s: first connection to %s, outside the VPN", "%s：VPN 外部の %s への最初の接続"},
	"why.lateral":                    {"seen on %s: connection from %s to %s, into site %s", "%s で観測：%s から拠点「%[4]s」の %[3]s への接続"},
	"why.lateral.login":              {"login from %s on %s as %s, into site %s", "%s から %s へ %s としてログイン（拠点「%s」）"},
	"col.where":                      {"Site / host", "拠点／ホスト"},
	"col.what":                       {"What", "事象"},
	"col.who":                        {"Who", "実行者"},
	"col.address":                    {"Address", "アドレス"},
	"col.marks":                      {"Marked as", "判定"},
	"col.record":                     {"Record (artefact:line, evidence)", "記録（ファイル:行、証拠）"},
	"col.destination":                {"Destination", "送信先"},
	"col.where.out":                  {"Where", "所在"},
	"col.bytes":                      {"Bytes in the window", "調査期間の送信量"},
	"col.before":                     {"Same time before", "直前の同じ期間"},
	"col.connections":                {"Connections", "接続数"},
	"invaction.login_failed":         {"login failed", "ログイン失敗"},
	"invaction.login_accepted":       {"login", "ログイン成功"},
	"invaction.sudo":                 {"sudo", "sudo による実行"},
	"invaction.config_changed":       {"configuration changed", "設定変更"},
	"invaction.package":              {"package", "パッケージ変更"},
	"invaction.command":              {"shell command", "シェルのコマンド"},
	"invaction.process_start":        {"process started", "プロセス起動"},
	"invaction.connection":           {"connection", "通信"},
	"invaction.tunnel":               {"tunnel", "トンネル"},
	"invaction.log":                  {"log", "ログ"},
	"mark.entry_point":               {"entry point?", "侵入口の候補"},
	"mark.lateral_movement":          {"lateral movement", "横展開"},
	"mark.new_destination":           {"new destination", "新しい送信先"},
	"mark.suspect_address":           {"alert's address", "警報の宛先"},
	"say.pcap.running":               {"packet capture %s running on %s", "%[2]s でパケットキャプチャ %[1]s を開始"},
	"say.pcap.already":               {"packet capture %s was already running on %s", "%[2]s ではパケットキャプチャ %[1]s を実行中"},
	"say.pcap.stopped":               {"packet capture stopped on %s; %s capture(s) filed", "%s のパケットキャプチャを停止し、%s 件を証拠として保全"},
	"say.pcap.verified.running":      {"packet capture %s is running", "パケットキャプチャ %s の実行を確認"},
	"say.pcap.verified":              {"%s packet capture(s) filed and verified", "パケットキャプチャ %s 件の保全を確認"},
	"say.investigated":               {"investigated %s gateway(s): %s events, %s artefacts, %s entry-point and %s lateral-movement candidate(s)", "ゲートウェイ %s 台を調査（事象 %s 件、証拠ファイル %s 件、侵入口の候補 %s 件、横展開の候補 %s 件）"},
	"say.investigated.gaps":          {"investigated %s gateway(s): %s events, %s artefacts, %s entry-point and %s lateral-movement candidate(s); not reachable: %s", "ゲートウェイ %s 台を調査（事象 %s 件、証拠ファイル %s 件、侵入口の候補 %s 件、横展開の候補 %s 件）。到達できず：%s"},
	"say.investigated.already":       {"investigation already filed", "調査結果は保全済み"},
	"say.investigated.verified":      {"timeline and artefacts of %s gateway(s) verified", "ゲートウェイ %s 台の時系列と証拠ファイルを確認"},
	"say.investigated.verified.gaps": {"timeline and artefacts of %s gateway(s) verified; %s gateway(s) could not be asked", "ゲートウェイ %s 台の時系列と証拠ファイルを確認（%s 台は問い合わせできず）"},

	// Who acted (loc.who), and four eyes.
	"actor.controller":                   {"Warden (controller)", "Warden（コントローラー）"},
	"actor.agent":                        {"agent on %s", "%s のエージェント"},
	"actor.local":                        {"%s (on the controller host)", "%s（コントローラーのホスト上）"},
	"actor.detector":                     {"%s (detector)", "%s（検知システム）"},
	"actor.shared-token":                 {"%s (shared API token: not a named person)", "%s（共有 API トークン：個人を特定できません）"},
	"actor.client":                       {"%s (API client, name not verified)", "%s（API クライアント。名前は未検証）"},
	"actor.token":                        {"%s, token %s", "%s、トークン %s"},
	"actor.token.oidc":                   {"%s, single sign-on", "%s、シングルサインオン"},
	"actorkind.person":                   {"person (token or single sign-on)", "担当者（トークンまたはシングルサインオンで認証）"},
	"actorkind.local":                    {"person on the controller host", "コントローラーのホスト上の利用者"},
	"actorkind.shared-token":             {"shared API token (deprecated): names nobody", "共有 API トークン（非推奨）：個人を特定できません"},
	"actorkind.client":                   {"name an API client gave, not verified", "API クライアントが名乗った名前（未検証）"},
	"actorkind.other":                    {"as recorded", "記録のまま"},
	"people.heading":                     {"People who acted:", "対応した担当者："},
	"people.none":                        {"No person has requested, approved or overridden a run, or resolved an indicator, for this incident.", "本インシデントでは、担当者による処理の依頼・承認・例外の適用、兆候の解消はまだありません。"},
	"people.label":                       {"%s (%s)", "%s（%s）"},
	"people.requested":                   {"requested %s", "%s の実行を依頼"},
	"people.overrode":                    {"overrode gates on %s", "%s で例外を適用"},
	"people.approved":                    {"approved %s", "%s を承認"},
	"people.resolved":                    {"resolved %s", "兆候 %sを解消と判断"},
	"people.resolved.ids":                {"resolved %s", "兆候 %s を解消と判断"},
	"people.disabled":                    {"%s (disabled)", "%s（無効化済み）"},
	"breakglass.label":                   {"Break-glass override on %s (%s)", "緊急時の例外適用（処理 %s、%s）"},
	"breakglass.second":                  {"%s overrode gates; a second person, %s, approved the run.", "%s が例外を適用し、別の担当者である %s が承認しました（二人承認）。"},
	"breakglass.alone":                   {"%s overrode gates and approved the run alone: no second person checked it.", "%s が例外を適用し、承認も単独で行いました。二人目による確認はありません。"},
	"breakglass.alone.requester":         {"%s overrode gates; %s, who had requested the run, approved it alone: no second person checked it.", "%s が例外を適用し、処理を依頼した %s が単独で承認しました。二人目による確認はありません。"},
	"breakglass.waiting":                 {"%[1]s overrode gates; the run waits for a second person, an approver other than %[1]s.", "%[1]s が例外を適用しました。%[1]s 以外の承認者による承認を待っています。"},
	"breakglass.unapproved":              {"%s overrode gates; no second person approved the run (%s).", "%s が例外を適用しました。二人目による承認はありません（処理は%s）。"},
	"breakglass.refused":                 {"Four eyes refused the approval of %s.", "二人承認の規則により、%s による承認は拒否されました。"},
	"alone.label":                        {"One person alone on %s (%s)", "単独での承認（処理 %s、%s）"},
	"alone.requested":                    {"%s requested the run and approved it alone: no second person checked it.", "%s が処理を依頼し、承認も単独で行いました。二人目による確認はありません。"},
	"state.foureyes":                     {"Four eyes", "二人承認"},
	"state.foureyes.off":                 {"OFF. guards.two_person is off in the configuration, so one person could request a run and approve it alone, break-glass overrides included.", "無効。設定で guards.two_person が無効になっているため、一人の担当者が処理の依頼から承認までを単独で行えます（緊急時の例外適用を含む）。"},
	"tech.foureyes.off":                  {"guards.two_person is off: the controller does not require the approver of a run to be someone other than who requested it or overrode a gate on it.", "guards.two_person が無効のため、コントローラーは、処理の承認者が依頼者や例外の適用者とは別の人物であることを求めていません。"},
	"tech.people":                        {"People who acted", "対応した担当者"},
	"tech.people.none":                   {"No person acted.", "担当者による操作はありません。"},
	"gatename.four-eyes":                 {"four-eyes", "二人承認"},
	"gate.reason.four-eyes":              {"a break-glass override by %s needs a second person's approval", "%s による緊急時の例外適用には、別の担当者の承認が必要です"},
	"foureyes.did.requested it":          {"requested it", "この処理を依頼した"},
	"foureyes.did.overrode a gate on it": {"overrode a gate on it", "この処理で例外を適用した"},
	"foureyes.did.requested it and overrode a gate on it": {"requested it and overrode a gate on it", "この処理を依頼し、例外も適用した"},

	// Sentences of Warden's own code: the English rebuilds them exactly as
	// they are stored; the Japanese says them (see phrases.go).
	"say.join":                  {"; ", "；"},
	"say.original":              {"%s", "「%s」"},
	"say.overridden.suffix":     {"%s — overridden by %s: %s", "%[1]s。ただし %[2]s が例外として通過させました（記録された理由：「%[3]s」）"},
	"say.overridden":            {"overridden by %s: %s", "%[1]s が例外を適用（記録された理由：「%[2]s」）"},
	"say.notapplicable":         {"%s (not applicable: %s)", "%[1]s（適用外：%[2]s）"},
	"say.matched":               {"matched", "該当"},
	"say.false":                 {"match expression false", "条件式に該当せず"},
	"say.resolved":              {"not evaluated: resolved alerts never start a runbook", "評価せず（解消済みの警報ではランブックを開始しません）"},
	"say.earlier":               {"not evaluated: earlier policy %s matched", "評価せず（先に評価したポリシー %s に該当）"},
	"say.confidence":            {"confidence %s below min_confidence %s", "確度 %[1]s が下限 %[2]s（min_confidence）未満"},
	"say.evalerror":             {"evaluation error: %s", "評価エラー：%s"},
	"say.notcompiled":           {"policy was not compiled (load it with LoadDir, LoadFS or Default)", "ポリシーがコンパイルされていません（LoadDir、LoadFS または Default で読み込んでください）"},
	"say.gate.auto":             {"automatic by policy %s", "ポリシー %s により自動実行"},
	"say.gate.started":          {"started by %s", "%s が手動で開始"},
	"say.gate.needs":            {"policy %s requires a person's approval", "ポリシー %s は責任者の承認を必要とします"},
	"say.gate.evidence":         {"step %s is destructive and no evidence (capture_volatile or snapshot) precedes it; a person must override with a recorded reason", "ステップ %s は証拠を損なうおそれのある処理ですが、その前に証拠保全（capture_volatile または snapshot）がありません。実行するには、担当者が理由を記録して例外を適用する必要があります"},
	"say.gate.site.full":        {"site %s already had %s automatic isolation(s) within %s (budget %s)", "拠点 %[1]s では直近 %[3]s に自動隔離が既に %[2]s 件あります（上限 %[4]s 件）"},
	"say.gate.fleet.full":       {"fleet already had %s automatic isolation(s) within %s (budget %s)", "全体で直近 %[2]s に自動隔離が既に %[1]s 件あります（上限 %[3]s 件）"},
	"say.gate.budget":           {"site %s %s/%s, fleet %s/%s automatic isolations within %s", "直近 %[6]s の自動隔離：拠点 %[1]s %[2]s/%[3]s 件、全体 %[4]s/%[5]s 件"},
	"say.gate.breaker":          {"tripped: %s; automatic actions wait for a person", "作動中：%s。自動対応は担当者の判断を待っています"},
	"say.breaker.reason":        {"%s of %s gateways have firing indicators within %s (threshold %s)", "直近 %[3]s に %[2]s 台中 %[1]s 台のゲートウェイで警報が発生（しきい値 %[4]s 台）"},
	"say.gate.baseline.none":    {"no baseline check on record (run warden drift check --gateway %s)", "セキュリティ基準の確認の記録がありません（warden drift check --gateway %s で実施）"},
	"say.gate.baseline.old":     {"latest baseline check (%s) is older than the quarantine (%s)", "最新のセキュリティ基準の確認（%[1]s）は隔離（%[2]s）より前のものです"},
	"say.gate.baseline.failed":  {"latest baseline check (%s) failed %s check(s), %s errored", "最新のセキュリティ基準の確認（%[1]s）で不合格 %[2]s 項目、エラー %[3]s 項目"},
	"say.gate.baseline.passed":  {"baseline passed at %s", "%s にセキュリティ基準の確認に合格"},
	"say.gate.cred.none":        {"the gateway holds no tunnel credentials", "ゲートウェイはトンネルの認証情報を保持していません"},
	"say.gate.cred.rotated":     {"credentials of its %s tunnel(s) rotated since the quarantine", "隔離後、トンネル %s 本すべての認証情報を更新済み"},
	"say.gate.cred.pending":     {"credentials of its %s tunnel(s) not rotated since the quarantine (runbook respond-confirmed-compromise or rotate-fleet-credentials)", "隔離後、トンネル %s 本の認証情報が更新されていません（ランブック respond-confirmed-compromise または rotate-fleet-credentials で更新）"},
	"say.gate.threat.none":      {"no %s-or-worse indicator about the gateway since the quarantine is still firing", "隔離後に受信した重大度「%s」以上の兆候で、発生中のものはありません"},
	"say.gate.threat.live":      {"%s firing indicator(s) of severity %s or worse arrived since the quarantine and no person resolved them (latest %s: %s %s at %s); resolve each with warden indicator resolve ID --reason, never by override", "隔離後に重大度「%[2]s」以上の兆候が %[1]s 件発生し、担当者による解消の記録がありません（最新：%[3]s、重大度「%[4]s」、%[5]s、%[6]s）。それぞれ warden indicator resolve ID --reason で解消してください（例外の適用では通過できません）"},
	"say.gate.release.approval": {"release always needs a person's approval", "隔離解除には常に責任者の承認が必要です"},
	"say.gate.breakglass":       {"break-glass override by %s: a second person (an approver) must approve the run", "%s による緊急時の例外適用のため、別の担当者（承認者）による承認が必要です"},
	"say.gate.breakglass.off":   {"guards.two_person is off: %s overrode a gate and may act alone", "guards.two_person が無効のため、例外を適用した %s が単独で実行できます"},
	"say.forbidden":             {"forbidden: %s", "許可されていません：%s"},
	"say.foureyes":              {"four eyes (guards.two_person): %s %s, so another approver must approve run %s", "二人承認（guards.two_person）：%[1]s は%[2]sため、処理 %[3]s は別の承認者が承認する必要があります"},
	"say.skipped":               {"skipped: %s", "省略：%s"},
	"say.unsupported":           {"%s on gateway %s: %s: unsupported", "ゲートウェイ %[2]s では %[1]s を実行できません（%[3]s）"},
	"say.noagent":               {"no warden agent configured (agents.cert_file)", "Warden エージェントが設定されていません（agents.cert_file）"},
	"say.novcenter":             {"no vCenter configured (vsphere.url)", "vCenter が設定されていません（vsphere.url）"},
	"say.noprovider":            {"neither a vCenter nor agents are configured", "vCenter もエージェントも設定されていません"},
	"say.snapshot.took":         {"took snapshot \"%s\" of %s", "%[2]s のスナップショット「%[1]s」を取得"},
	"say.snapshot.existed":      {"snapshot \"%s\" of %s already existed", "%[2]s のスナップショット「%[1]s」は取得済み"},
	"say.snapshot.exists":       {"snapshot \"%s\" of %s exists (memory: %s)", "%[2]s のスナップショット「%[1]s」の存在を確認（メモリ：%[3]s）"},
	"say.isolated":              {"isolated %s", "%s を隔離"},
	"say.isolated.already":      {"%s was already isolated", "%s は隔離済み"},
	"say.quarantined":           {"%s is quarantined", "%s が隔離されていることを確認"},
	"say.released":              {"released %s", "%s の隔離を解除"},
	"say.released.already":      {"%s was not quarantined", "%s は隔離されていませんでした"},
	"say.released.verified":     {"%s is released", "%s の隔離が解除されていることを確認"},
	"say.poweredoff":            {"powered off %s", "%s の電源を停止"},
	"say.poweredoff.already":    {"%s was already powered off", "%s は電源停止済み"},
	"say.poweredoff.verified":   {"%s is powered off", "%s の電源が停止していることを確認"},
	"say.notified":              {"notified channel %s (HTTP %s after %s attempt(s))", "通知先 %[1]s に通知（HTTP %[2]s、試行 %[3]s 回）"},
	"say.notified.already":      {"notification already delivered to channel %s", "通知先 %s には通知済み"},
	"say.notified.accepted":     {"channel %s accepted the notification (HTTP %s)", "通知先 %[1]s が通知を受理（HTTP %[2]s）"},
	"say.nochannel":             {"no notification channel configured", "通知先が設定されていません"},
	"say.nochannel.verify":      {"no notification channel configured: nothing to verify", "通知先が設定されていないため、確認の対象はありません"},
	"say.captured":              {"captured %s artefacts from %s", "%[2]s から証拠ファイル %[1]s 件を取得"},
	"say.captured.errors":       {"captured %s artefacts from %s (%s collectors reported errors)", "%[2]s から証拠ファイル %[1]s 件を取得（収集処理 %[3]s 件でエラー）"},
	"say.captured.already":      {"volatile evidence already captured (%s artefacts)", "揮発性情報は取得済み（証拠ファイル %s 件）"},
	"say.captured.verified":     {"evidence hashes verified", "証拠ファイルのハッシュ値を確認"},
	"say.os.already":            {"OS quarantine of %s already in force", "%s の OS レベルの隔離は適用済み"},
	"say.os.applied":            {"OS quarantine of %s in force and confirmed (killed %s flows, links down: [%s])", "%[1]s に OS レベルの隔離を適用し確認（切断した通信 %[2]s 件、停止したリンク：[%[3]s]）"},
	"say.os.verified":           {"OS quarantine enforced (v4+v6, backend %s), agent reachable over management", "OS レベルの隔離（IPv4・IPv6、方式 %s）が有効で、管理用ネットワーク経由でエージェントに到達できることを確認"},
	"say.os.lifted":             {"OS quarantine of %s lifted", "%s の OS レベルの隔離を解除"},
	"say.os.none":               {"%s had no OS quarantine", "%s には OS レベルの隔離はありませんでした"},
	"say.os.clean":              {"no Warden rules left on %s", "%s に Warden のルールが残っていないことを確認"},
	"say.baseline.passes":       {"baseline of %s passes (remediated: [%s])", "%[1]s はセキュリティ基準の確認に合格（自動修正：[%[2]s]）"},
	"say.baseline.recorded":     {"baseline verdict recorded", "判定結果を記録"},
	"say.patch.already":         {"%s already at the target versions", "%s は既に目標のバージョンです"},
	"say.patch.done":            {"patched %s package(s) on %s", "%[2]s でパッケージ %[1]s 件を更新"},
	"say.patch.verified":        {"security updates applied and checked by the agent", "セキュリティ更新の適用をエージェントで確認"},
	"say.patch.versions":        {"installed versions at or above target", "導入済みのバージョンが目標以上であることを確認"},
	"say.revoked":               {"%s revoked at %s tunnel(s) (%s already), blocked at %s site(s)", "%[1]s をトンネル %[2]s 本で失効（うち %[3]s 本は失効済み）、%[4]s 拠点で遮断"},
	"say.revoked.verified":      {"%s: no trust left at %s of %s tunnel(s); blocked at %s site(s)", "%[1]s：トンネル %[3]s 本中 %[2]s 本で信頼関係が残っていないことを確認、%[4]s 拠点で遮断"},
	"say.rotated.certs":         {"%s rotated, %s already rotated, %s rolled back, %s failed, %s not attempted; %s authenticate with certificates (nothing shared to rotate)", "更新 %[1]s 件、更新済み %[2]s 件、ロールバック %[3]s 件、失敗 %[4]s 件、未実施 %[5]s 件（証明書で認証する %[6]s 件は共有鍵がないため対象外）"},
	"say.rotated":               {"%s rotated, %s already rotated, %s rolled back, %s failed, %s not attempted", "更新 %[1]s 件、更新済み %[2]s 件、ロールバック %[3]s 件、失敗 %[4]s 件、未実施 %[5]s 件"},
	"say.rotated.verified":      {"%s of %s credential(s) verified in use", "認証情報 %[2]s 件中 %[1]s 件が使用されていることを確認"},
}

// english and japanese are the two columns of wording.
var english, japanese = wordingIn(LangEnglish), wordingIn(LangJapanese)

func wordingIn(lang string) texts {
	t := make(texts, len(wording))
	for k, w := range wording {
		t[k] = w.en
		if lang == LangJapanese {
			t[k] = w.ja
		}
	}
	return t
}
