package console

import (
	"fmt"
	"net/http"
	"time"

	"golang.org/x/text/language"

	"github.com/warden-ir/warden/auth"
)

// Languages the console speaks.
const (
	LangJapanese = "ja"
	LangEnglish  = "en"
)

// matcher picks the console's language from Accept-Language
// (golang.org/x/text/language: q-values, regions and scripts as browsers
// send them).
var matcher = language.NewMatcher([]language.Tag{language.Japanese, language.English})

// chooseLanguage is the language of a request: the one a person switched
// to (LangCookie), else the best match of the browser's languages,
// Japanese when the browser names none and English when it names only
// others.
func chooseLanguage(r *http.Request) string {
	if c, err := r.Cookie(LangCookie); err == nil && (c.Value == LangJapanese || c.Value == LangEnglish) {
		return c.Value
	}
	tags, _, err := language.ParseAcceptLanguage(r.Header.Get("Accept-Language"))
	if err != nil || len(tags) == 0 {
		return LangJapanese
	}
	_, i, conf := matcher.Match(tags...)
	if conf == language.No {
		return LangEnglish
	}
	if i == 0 {
		return LangJapanese
	}
	return LangEnglish
}

// otherLanguage is the language the switch offers.
func otherLanguage(lang string) string {
	if lang == LangJapanese {
		return LangEnglish
	}
	return LangJapanese
}

// phrase is key in lang, formatted with args; an unknown key shows as
// itself (a test keeps every key in both languages).
func phrase(lang, key string, args ...any) string {
	p, ok := phrases[lang][key]
	if !ok {
		p, ok = phrases[LangEnglish][key]
	}
	if !ok {
		return key
	}
	if len(args) == 0 {
		return p
	}
	return fmt.Sprintf(p, args...)
}

// translator gives templates the request's language.
type translator struct{ lang string }

// T is a phrase in the translator's language.
func (t translator) T(key string, args ...any) string { return phrase(t.lang, key, args...) }

// Role is a role's name for people.
func (t translator) Role(r auth.Role) string { return phrase(t.lang, "role."+string(r)) }

// Word is the phrase prefix+"."+value, or value itself when there is none
// (a state or action the console has no words for yet).
func (t translator) Word(prefix, value string) string {
	if p, ok := phrases[t.lang][prefix+"."+value]; ok {
		return p
	}
	return value
}

// duration says a session lifetime in words.
func (t translator) duration(d time.Duration) string {
	if d%time.Hour == 0 {
		return t.T("unit.hours", int(d/time.Hour))
	}
	return t.T("unit.minutes", int(d/time.Minute))
}

// phrases are the console's words. Japanese follows the response guide's
// tone: polite, plain, addressed to the person on call.
var phrases = map[string]map[string]string{
	LangEnglish: {
		"lang.name":        "English",
		"lang.switch":      "日本語",
		"nav.inbox":        "Inbox",
		"nav.incidents":    "Incidents",
		"nav.map":          "VPN map",
		"nav.release":      "Release",
		"signed_in_as":     "%s (%s)",
		"logout":           "Sign out",
		"role.viewer":      "viewer",
		"role.intake":      "intake",
		"role.responder":   "responder",
		"role.approver":    "approver",
		"role.admin":       "admin",
		"unit.hours":       "%d hours",
		"unit.minutes":     "%d minutes",
		"error.not_found":  "Not found.",
		"error.method":     "%s is not allowed here (allowed: %s). Nothing was changed.",
		"error.internal":   "Something went wrong on the controller; its log says what.",
		"error.title":      "Cannot show this",
		"error.session":    "Your sign-in cannot be checked right now; nothing was changed. Try again in a moment.",
		"refused":          "The controller refused: %s",
		"csrf.refused":     "This form did not come from this console or is too old (its CSRF token is missing or wrong). Nothing was changed: reload the page and try again.",
		"login.title":      "Sign in",
		"login.lead":       "Sign in with your Warden API token, or an ID token from single sign-on. It is checked once and not kept; the sign-in lasts %s.",
		"login.next":       "Sign in to see the page you followed.",
		"login.token":      "Token",
		"login.submit":     "Sign in",
		"login.refused":    "The token was not accepted. Check it and try again.",
		"login.throttled":  "Too many failed sign-ins from this address. Try again in %s.",
		"login.intake":     "A detector's identity (role intake) cannot use the console.",
		"login.legacy":     "The shared server.api_token cannot sign in: use your own token.",
		"login.down":       "Credentials cannot be checked right now; try again shortly.",
		"done.signed_out":  "You are signed out.",
		"done.approved":    "Approved. The run goes on.",
		"done.cancelled":   "Cancelled.",
		"done.asked":       "Asked. Another person, an approver, must approve it.",
		"done.reset":       "The circuit breaker is closed again.",
		"done.not_tripped": "The circuit breaker was not tripped; nothing changed.",

		"inbox.title":     "Waiting for a person",
		"inbox.empty":     "Nothing waits for a person.",
		"inbox.lead":      "Runs that wait for a person's approval: what they will do, why they wait and who asked.",
		"breaker.title":   "Circuit breaker",
		"breaker.closed":  "Closed: automatic containment runs within its budget.",
		"breaker.tripped": "Tripped at %s: %s. Automatic actions wait for a person.",
		"breaker.reset":   "Reset the breaker",
		"breaker.reason":  "Why automation may resume",
		"breaker.admins":  "An admin resets it.",

		"run.title":                            "Run %s",
		"run.on":                               "%s on %s (site %s)",
		"run.asked_by":                         "Asked by",
		"run.asked_at":                         "Asked at",
		"run.waits":                            "Why it waits",
		"run.override":                         "Override reason",
		"run.approved_by":                      "Approved by",
		"run.plan":                             "What will happen",
		"run.steps":                            "Steps",
		"run.gates":                            "Gates",
		"run.incident":                         "Incident",
		"run.error":                            "Error",
		"run.approve":                          "Approve",
		"run.comment":                          "Comment (optional)",
		"run.cancel":                           "Cancel the run",
		"run.reason":                           "Why",
		"run.read_only":                        "You may read this; acting on runs needs the responder role or higher.",
		"run.decides":                          "Whether you may approve is the controller's decision (role and four eyes); its answer is shown here.",
		"run.attempts":                         "attempts: %d",
		"run.open":                             "Open",
		"run.state":                            "State",
		"runbook.contain-compromised-gateway":  "Contain",
		"runbook.respond-confirmed-compromise": "Respond to a confirmed compromise",
		"runbook.rotate-fleet-credentials":     "Rotate the fleet's credentials",
		"runbook.investigate":                  "Investigate",
		"runbook.remediate-baseline":           "Put the baseline right",
		"runbook.patch-gateway":                "Patch",
		"runbook.notify-only":                  "Notify",
		"runbook.release-gateway":              "Release",
		"gate.met":                             "met",
		"gate.owed":                            "owed",
		"gate.note":                            "note",
		"gate.overridden":                      "met by override",
		"state.pending":                        "pending",
		"state.awaiting_approval":              "awaiting approval",
		"state.running":                        "running",
		"state.succeeded":                      "succeeded",
		"state.failed":                         "failed",
		"state.cancelled":                      "cancelled",
		"state.skipped":                        "skipped",

		"gatename.approval":            "Approval",
		"gatename.evidence-first":      "Evidence first",
		"gatename.baseline":            "Baseline passes",
		"gatename.credentials-rotated": "Credentials rotated",
		"gatename.no-live-threat":      "No live threat",
		"gatename.release-approval":    "Release approval",
		"gatename.four-eyes":           "Four eyes",
		"gatename.circuit-breaker":     "Circuit breaker",
		"gatename.blast-radius":        "Blast-radius budget",

		"act.capture_volatile":   "volatile capture",
		"act.snapshot":           "snapshot",
		"act.isolate":            "isolation",
		"act.release":            "release",
		"act.revoke_peer":        "revocation at the peers",
		"act.rotate_credentials": "credential rotation",
		"act.notify":             "notification",
		"act.verify_baseline":    "baseline check",
		"act.patch":              "patch",
		"act.power_off":          "power off",
		"act.block_ioc":          "block",
		"act.capture":            "packet capture",
		"act.investigate":        "investigation",

		"action.capture_volatile":   "Record the gateway's volatile state (connections, processes, routes, firewall, tunnels, logins), SHA-256 per artefact",
		"action.snapshot":           "Take a vSphere snapshot of the VM with its memory",
		"action.isolate":            "Isolate the gateway: its vNICs to the quarantine portgroup, its firewall drops all but management",
		"action.release":            "Release the gateway: put back its networks and rules",
		"action.revoke_peer":        "At every peer site, remove this gateway's tunnel and block its addresses",
		"action.rotate_credentials": "Replace every tunnel credential it held, make-before-break, in waves",
		"action.notify":             "Notify the on-call channel",
		"action.verify_baseline":    "Check the hardened baseline",
		"action.patch":              "Apply package updates",
		"action.power_off":          "Power the VM off",
		"action.block_ioc":          "Block remote addresses at every gateway",
		"action.capture":            "Capture packets on the gateway's interfaces",
		"action.investigate":        "Collect logs, logins and flows for the incident window",

		"incidents.title":      "Incidents",
		"incidents.empty":      "No incident yet.",
		"incidents.live":       "This list updates by itself.",
		"incident.title":       "Incident %s",
		"incident.gateway":     "Gateway",
		"incident.site":        "Site",
		"incident.severity":    "Severity",
		"incident.status":      "Status",
		"incident.opened":      "Opened",
		"incident.posture":     "Posture",
		"incident.live":        "Updates by itself while runs execute.",
		"incident.timeline":    "Timeline",
		"incident.runs":        "Runs",
		"incident.signs":       "Signs",
		"incident.evidence":    "Evidence",
		"incident.no_evidence": "No evidence filed yet.",
		"incident.custody":     "Chain of custody",
		"incident.reports":     "Reports",
		"incident.release":     "Ask to release %s",
		"incident.contained":   "Contained and verified at %s (%s after the first alert).",
		"incident.released":    "Released at %s, approved by %s.",
		"report.ja.html":       "Japanese (HTML)",
		"report.en.html":       "English (HTML)",
		"report.ja.md":         "Japanese (Markdown)",
		"report.en.md":         "English (Markdown)",
		"evidence.name":        "Artefact",
		"evidence.sha256":      "SHA-256",
		"evidence.size":        "Size",
		"evidence.collected":   "Collected",
		"evidence.by_from":     "by %s from %s at %s",
		"status.open":          "open",
		"status.contained":     "contained",
		"status.closed":        "closed",
		"severity.critical":    "critical",
		"severity.high":        "high",
		"severity.medium":      "medium",
		"severity.low":         "low",
		"severity.info":        "info",
		"posture.normal":       "normal",
		"posture.quarantined":  "quarantined",
		"posture.released":     "released",
		"custody.collected":    "collected",
		"custody.stored":       "stored",
		"custody.accessed":     "accessed",
		"custody.exported":     "exported",
		"custody.verified":     "verified",
		"tl.title":             "What happened, in order",
		"tl.alert":             "Alert: %s (%s)",
		"tl.decision":          "Decided: %s → %s",
		"tl.nomatch":           "No policy matched",
		"tl.step":              "%s: %s",
		"tl.approval":          "Approved by %s",
		"tl.evidence":          "Evidence: %s",
		"tl.contained":         "Contained (verified)",
		"tl.released":          "Released",
		"tl.empty":             "Nothing recorded yet.",
		"tl.kind.alert":        "alert",
		"tl.kind.decision":     "decision",
		"tl.kind.step":         "step",
		"tl.kind.approval":     "approval",
		"tl.kind.evidence":     "evidence",
		"tl.kind.release":      "release",

		"map.title":          "VPN map",
		"map.lead":           "Sites, gateways and tunnels; this page updates by itself.",
		"map.alt":            "VPN map: %s",
		"map.quarantined":    "quarantined",
		"map.released":       "released",
		"map.normal":         "normal",
		"map.revoked":        "tunnel revoked",
		"map.tunnel":         "tunnel",
		"map.observed":       "seen %s at %s",
		"map.baseline.none":  "no baseline check yet",
		"map.baseline.pass":  "baseline passed at %s",
		"map.baseline.fail":  "baseline failed at %s (%d failed, %d errored)",
		"map.incidents.none": "no open incident",
		"map.incidents":      "open incidents:",
		"map.others":         "%d other gateways are normal with no open incident, and are left out of the picture.",
		"map.revoked_list":   "Revoked tunnels: %s",

		"release.title":           "Ask to release a gateway",
		"release.lead":            "Releasing takes two people: you ask here, and another person, an approver, approves in the inbox.",
		"release.gateway":         "Gateway",
		"release.show":            "Show the gates",
		"release.gates":           "What is met and what is owed",
		"release.override":        "Override reason (records why an unmet baseline or rotation gate may be skipped; never a live threat, never the approval)",
		"release.submit":          "Ask for the release",
		"release.not_quarantined": "%s is not quarantined (posture: %s).",
		"release.read_only":       "Asking for a release needs the responder role or higher.",
		"release.incident":        "Incident",
	},
	LangJapanese: {
		"lang.name":        "日本語",
		"lang.switch":      "English",
		"nav.inbox":        "承認待ち",
		"nav.incidents":    "インシデント",
		"nav.map":          "VPN マップ",
		"nav.release":      "隔離解除",
		"signed_in_as":     "%s（%s）",
		"logout":           "ログアウト",
		"role.viewer":      "閲覧者",
		"role.intake":      "検知連携",
		"role.responder":   "対応者",
		"role.approver":    "承認者",
		"role.admin":       "管理者",
		"unit.hours":       "%d 時間",
		"unit.minutes":     "%d 分",
		"error.not_found":  "お探しのページは見つかりませんでした。",
		"error.method":     "この操作（%s）はここでは行えません（可能な操作: %s）。何も変更していません。",
		"error.internal":   "コントローラーで問題が発生しました。詳しくはコントローラーのログをご確認ください。",
		"error.title":      "表示できません",
		"error.session":    "現在、ログインの状態を確認できません。何も変更していません。しばらくしてから、もう一度お試しください。",
		"refused":          "コントローラーが操作を受け付けませんでした。理由: %s",
		"csrf.refused":     "このフォームはコンソールから送信されたものではないか、有効期限が切れています（CSRF トークンがないか、一致しません）。何も変更していません。ページを再読み込みして、もう一度お試しください。",
		"login.title":      "ログイン",
		"login.lead":       "Warden の API トークン、またはシングルサインオンの ID トークンでログインしてください。トークンは確認にのみ使用し、保存しません。ログインの有効期間は %s です。",
		"login.next":       "リンク先のページを表示するには、ログインしてください。",
		"login.token":      "トークン",
		"login.submit":     "ログイン",
		"login.refused":    "トークンを確認できませんでした。内容をご確認のうえ、もう一度お試しください。",
		"login.throttled":  "このアドレスからのログインの失敗が続いたため、受け付けを一時的に止めています。%s 後にもう一度お試しください。",
		"login.intake":     "検知連携（intake）ロールではコンソールをご利用いただけません。",
		"login.legacy":     "共有トークン（server.api_token）ではログインできません。ご自身のトークンをご利用ください。",
		"login.down":       "現在、認証情報を確認できません。しばらくしてから、もう一度お試しください。",
		"done.signed_out":  "ログアウトしました。",
		"done.approved":    "承認しました。実行を続けます。",
		"done.cancelled":   "取り消しました。",
		"done.asked":       "依頼しました。別の担当者（承認者）による承認をお待ちください。",
		"done.reset":       "サーキットブレーカーを復帰しました。",
		"done.not_tripped": "サーキットブレーカーは作動していなかったため、変更はありません。",

		"inbox.title":     "対応をお待ちの実行",
		"inbox.empty":     "現在、担当者の対応をお待ちの実行はありません。",
		"inbox.lead":      "担当者の承認をお待ちの実行です。実行される内容、待機の理由、依頼者をご確認ください。",
		"breaker.title":   "サーキットブレーカー",
		"breaker.closed":  "正常（閉）です。自動の封じ込めは上限の範囲内で実行されます。",
		"breaker.tripped": "%s に作動しました: %s。自動の対応は担当者の判断をお待ちしています。",
		"breaker.reset":   "ブレーカーを復帰する",
		"breaker.reason":  "自動の対応を再開してよい理由",
		"breaker.admins":  "復帰は管理者が行います。",

		"run.title":                            "実行 %s",
		"run.on":                               "%s（対象: %s、拠点: %s）",
		"run.asked_by":                         "依頼者",
		"run.asked_at":                         "依頼日時",
		"run.waits":                            "待機の理由",
		"run.override":                         "例外理由",
		"run.approved_by":                      "承認者",
		"run.plan":                             "実行される内容",
		"run.steps":                            "手順",
		"run.gates":                            "実行の条件",
		"run.incident":                         "インシデント",
		"run.error":                            "エラー",
		"run.approve":                          "承認する",
		"run.comment":                          "コメント（任意）",
		"run.cancel":                           "実行を取り消す",
		"run.reason":                           "理由",
		"run.read_only":                        "このページは閲覧のみ可能です。実行への操作には対応者以上のロールが必要です。",
		"run.decides":                          "承認できるかどうかは、コントローラーがロールと二者承認の規則に基づいて判断し、その結果をここに表示します。",
		"run.attempts":                         "試行回数: %d",
		"run.open":                             "開く",
		"run.state":                            "状態",
		"runbook.contain-compromised-gateway":  "封じ込め",
		"runbook.respond-confirmed-compromise": "侵害確定時の対応",
		"runbook.rotate-fleet-credentials":     "全拠点の認証情報の更新",
		"runbook.investigate":                  "調査",
		"runbook.remediate-baseline":           "ベースラインの是正",
		"runbook.patch-gateway":                "パッチ適用",
		"runbook.notify-only":                  "通知のみ",
		"runbook.release-gateway":              "隔離解除",
		"gate.met":                             "充足",
		"gate.owed":                            "未充足",
		"gate.note":                            "注記",
		"gate.overridden":                      "例外理由により充足",
		"state.pending":                        "実行待ち",
		"state.awaiting_approval":              "承認待ち",
		"state.running":                        "実行中",
		"state.succeeded":                      "完了",
		"state.failed":                         "失敗",
		"state.cancelled":                      "取消",
		"state.skipped":                        "省略",

		"gatename.approval":            "承認",
		"gatename.evidence-first":      "証拠保全の優先",
		"gatename.baseline":            "ベースライン確認の合格",
		"gatename.credentials-rotated": "認証情報の更新",
		"gatename.no-live-threat":      "継続中の脅威がないこと",
		"gatename.release-approval":    "隔離解除の承認",
		"gatename.four-eyes":           "二者承認",
		"gatename.circuit-breaker":     "サーキットブレーカー",
		"gatename.blast-radius":        "影響範囲の上限",

		"act.capture_volatile":   "揮発性情報の記録",
		"act.snapshot":           "スナップショット",
		"act.isolate":            "隔離",
		"act.release":            "隔離解除",
		"act.revoke_peer":        "対向拠点での失効",
		"act.rotate_credentials": "認証情報の更新",
		"act.notify":             "通知",
		"act.verify_baseline":    "ベースライン確認",
		"act.patch":              "パッチ適用",
		"act.power_off":          "電源オフ",
		"act.block_ioc":          "外部アドレスの遮断",
		"act.capture":            "パケットの記録",
		"act.investigate":        "調査",

		"action.capture_volatile":   "ゲートウェイの揮発性情報（接続、プロセス、経路、ファイアウォール、トンネル、ログイン）を記録し、成果物ごとに SHA-256 を付けます",
		"action.snapshot":           "VM のメモリを含む vSphere スナップショットを取得します",
		"action.isolate":            "ゲートウェイを隔離します（vNIC を隔離用ポートグループへ移し、ファイアウォールで管理用の通信以外を遮断します）",
		"action.release":            "隔離を解除し、元のネットワークとルールに戻します",
		"action.revoke_peer":        "すべての対向拠点で、このゲートウェイとのトンネルを削除し、アドレスを遮断します",
		"action.rotate_credentials": "保持していたトンネルの認証情報を、通信を止めずに段階的に入れ替えます",
		"action.notify":             "当番のチャンネルへ通知します",
		"action.verify_baseline":    "ハードニング基準への適合を確認します",
		"action.patch":              "パッケージの更新を適用します",
		"action.power_off":          "VM の電源を切ります",
		"action.block_ioc":          "すべてのゲートウェイで外部のアドレスを遮断します",
		"action.capture":            "ゲートウェイのインターフェースでパケットを記録します",
		"action.investigate":        "インシデント期間のログ、ログイン、通信を収集します",

		"incidents.title":      "インシデント一覧",
		"incidents.empty":      "インシデントはまだありません。",
		"incidents.live":       "この一覧は自動的に更新されます。",
		"incident.title":       "インシデント %s",
		"incident.gateway":     "ゲートウェイ",
		"incident.site":        "拠点",
		"incident.severity":    "重大度",
		"incident.status":      "状況",
		"incident.opened":      "発生",
		"incident.posture":     "状態",
		"incident.live":        "実行中は自動的に更新されます。",
		"incident.timeline":    "時系列",
		"incident.runs":        "実行",
		"incident.signs":       "検知された兆候",
		"incident.evidence":    "証拠",
		"incident.no_evidence": "まだ証拠は登録されていません。",
		"incident.custody":     "証拠の管理履歴",
		"incident.reports":     "報告書",
		"incident.release":     "%s の隔離解除を依頼する",
		"incident.contained":   "%s に封じ込めを完了し、確認しました（最初のアラートから %s）。",
		"incident.released":    "%s に隔離を解除しました（承認: %s）。",
		"report.ja.html":       "日本語（HTML）",
		"report.en.html":       "英語（HTML）",
		"report.ja.md":         "日本語（Markdown）",
		"report.en.md":         "英語（Markdown）",
		"evidence.name":        "成果物",
		"evidence.sha256":      "SHA-256",
		"evidence.size":        "サイズ",
		"evidence.collected":   "取得",
		"evidence.by_from":     "%s が %s から %s に取得",
		"status.open":          "対応中",
		"status.contained":     "封じ込め済み",
		"status.closed":        "終了",
		"severity.critical":    "緊急",
		"severity.high":        "高",
		"severity.medium":      "中",
		"severity.low":         "低",
		"severity.info":        "情報",
		"posture.normal":       "通常",
		"posture.quarantined":  "隔離中",
		"posture.released":     "隔離解除済み",
		"custody.collected":    "取得",
		"custody.stored":       "保管",
		"custody.accessed":     "閲覧",
		"custody.exported":     "書き出し",
		"custody.verified":     "検証",
		"tl.title":             "経過（時刻順）",
		"tl.alert":             "アラート受信: %s（%s）",
		"tl.decision":          "判断: %s → %s",
		"tl.nomatch":           "該当するポリシーはありませんでした",
		"tl.step":              "%s: %s",
		"tl.approval":          "%s が承認",
		"tl.evidence":          "証拠の取得: %s",
		"tl.contained":         "封じ込め完了（確認済み）",
		"tl.released":          "隔離解除",
		"tl.empty":             "まだ記録はありません。",
		"tl.kind.alert":        "アラート",
		"tl.kind.decision":     "判断",
		"tl.kind.step":         "手順",
		"tl.kind.approval":     "承認",
		"tl.kind.evidence":     "証拠",
		"tl.kind.release":      "隔離解除",

		"map.title":          "VPN マップ",
		"map.lead":           "拠点、ゲートウェイ、トンネルの状況です。このページは自動的に更新されます。",
		"map.alt":            "VPN マップ: %s",
		"map.quarantined":    "隔離中",
		"map.released":       "隔離解除済み",
		"map.normal":         "通常",
		"map.revoked":        "失効したトンネル",
		"map.tunnel":         "トンネル",
		"map.observed":       "%s 時点の観測: %s",
		"map.baseline.none":  "ベースライン確認の記録はまだありません",
		"map.baseline.pass":  "%s のベースライン確認: 合格",
		"map.baseline.fail":  "%s のベースライン確認: 不合格（不合格 %d 件、エラー %d 件）",
		"map.incidents.none": "対応中のインシデントはありません",
		"map.incidents":      "対応中のインシデント:",
		"map.others":         "ほかの %d 台のゲートウェイは通常の状態で、対応中のインシデントもないため、図から省いています。",
		"map.revoked_list":   "失効したトンネル: %s",

		"release.title":           "隔離解除の依頼",
		"release.lead":            "隔離解除には二名が必要です。ここで依頼し、別の担当者（承認者）が承認待ちの一覧から承認します。",
		"release.gateway":         "ゲートウェイ",
		"release.show":            "条件を確認する",
		"release.gates":           "充足済みの条件と未充足の条件",
		"release.override":        "例外理由（未充足のベースライン確認・認証情報の更新を省略してよい理由を記録します。継続中の脅威と承認は省略できません）",
		"release.submit":          "隔離解除を依頼する",
		"release.not_quarantined": "%s は隔離されていません（状態: %s）。",
		"release.read_only":       "隔離解除の依頼には対応者以上のロールが必要です。",
		"release.incident":        "インシデント",
	},
}
