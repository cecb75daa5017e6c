package report

import (
	"regexp"
	"strings"
)

// Warden's other packages write some sentences a report shows in English
// only: policy explanations ("match expression false"), gate details
// ("automatic by policy c2-or-exfil-isolate"), step summaries ("took
// snapshot … of gw-osaka"). They are stored that way, in the audit log and
// the runs, and stay so. A report in another language says them in its
// own words: each known sentence shape is a phrase below, recognised by a
// pattern, and written with the "say.*" texts of lang.go, its variable
// parts (names, counts, times) carried over.
//
// The English "say.*" text of each phrase rebuilds the sentence exactly
// from its parts (a test checks that on samples), so a pattern that drifts
// from what the code writes is caught. A sentence no phrase knows is shown
// as it is, quoted as original text; nothing is dropped. Text from outside
// (an alert's summary, a person's reason or comment) never goes through
// here: it is shown as it came, sanitised.
//
// An actor inside a sentence ("started by user:resp1") is named the way
// the rest of the report names it (loc.who: "resp1"), in English too; it
// is the one part of an English sentence that is not kept as stored.
type phrase struct {
	key string
	re  *regexp.Regexp
	// nested are the captures (1-based) that are themselves Warden
	// sentences, said in the report's language in turn.
	nested []int
	// words are captures (1-based) looked up in a word list ("severity").
	words map[int]string
	// actors are captures (1-based) that are actors, named by loc.who.
	actors []int
}

func ph(key, pattern string, nested ...int) phrase {
	return phrase{key: key, re: regexp.MustCompile("^" + pattern + "$"), nested: nested}
}

func (p phrase) withWords(w map[int]string) phrase { p.words = w; return p }

func (p phrase) withActors(captures ...int) phrase { p.actors = captures; return p }

// phrases are tried in order; the first that matches the whole sentence
// wins. Sentences that wrap another come first; an override's reason
// is a person's text and may hold anything, so its suffix is matched first.
var phrases = []phrase{
	// Wrappers.
	ph("say.overridden.suffix", `(.+?) — overridden by (.+?): (.*)`, 1).withActors(2),
	ph("say.overridden", `overridden by (.+?): (.*)`).withActors(1),
	ph("say.forbidden", `forbidden: (.+)`, 1),
	ph("say.notapplicable", `(.+) \(not applicable: (.+)\)`, 1),

	// Policy explanations (package policies).
	ph("say.matched", `matched`),
	ph("say.false", `match expression false`),
	ph("say.resolved", `not evaluated: resolved alerts never start a runbook`),
	ph("say.earlier", `not evaluated: earlier policy (\S+) matched`),
	ph("say.confidence", `confidence (\S+) below min_confidence (\S+)`),
	ph("say.evalerror", `evaluation error: (.+)`, 1),
	ph("say.notcompiled", `policy was not compiled \(load it with LoadDir, LoadFS or Default\)`),

	// Gate details (package controller).
	ph("say.gate.auto", `automatic by policy (\S+)`),
	ph("say.gate.started", `started by (.+)`).withActors(1),
	ph("say.gate.needs", `policy (\S+) requires a person's approval`),
	ph("say.gate.evidence", `step (\S+) is destructive and no evidence \(capture_volatile or snapshot\) precedes it; a person must override with a recorded reason`),
	ph("say.gate.site.full", `site (\S+) already had (\d+) automatic isolation\(s\) within (\S+) \(budget (\d+)\)`),
	ph("say.gate.fleet.full", `fleet already had (\d+) automatic isolation\(s\) within (\S+) \(budget (\d+)\)`),
	ph("say.gate.budget", `site (\S+) (\d+)/(\d+), fleet (\d+)/(\d+) automatic isolations within (\S+)`),
	ph("say.gate.breaker", `tripped: (.+); automatic actions wait for a person`, 1),
	ph("say.breaker.reason", `(\d+) of (\d+) gateways have firing indicators within (\S+) \(threshold (\d+)\)`),
	ph("say.gate.baseline.none", `no baseline check on record \(run warden drift check --gateway (\S+)\)`),
	ph("say.gate.baseline.old", `latest baseline check \((\S+)\) is older than the quarantine \((\S+)\)`),
	ph("say.gate.baseline.failed", `latest baseline check \((\S+)\) failed (\d+) check\(s\), (\d+) errored`),
	ph("say.gate.baseline.passed", `baseline passed at (\S+)`),
	ph("say.gate.cred.none", `the gateway holds no tunnel credentials`),
	ph("say.gate.cred.rotated", `credentials of its (\d+) tunnel\(s\) rotated since the quarantine`),
	ph("say.gate.cred.pending", `credentials of its (\d+) tunnel\(s\) not rotated since the quarantine \(runbook respond-confirmed-compromise or rotate-fleet-credentials\)`),
	ph("say.gate.threat.none", `no (\S+)-or-worse indicator about the gateway since the quarantine is still firing`).
		withWords(map[int]string{1: "severity"}),
	ph("say.gate.threat.live", `(\d+) firing indicator\(s\) of severity (\S+) or worse arrived since the quarantine and no person resolved them \(latest (\S+): (\S+) (\S+) at (\S+)\); resolve each with warden indicator resolve ID --reason, never by override`).
		withWords(map[int]string{2: "severity", 4: "severity"}),
	ph("say.gate.release.approval", `release always needs a person's approval`),
	ph("say.gate.breakglass", `break-glass override by (.+?): a second person \(an approver\) must approve the run`).withActors(1),
	ph("say.gate.breakglass.off", `guards\.two_person is off: (.+?) overrode a gate and may act alone`).withActors(1),
	ph("say.foureyes", `four eyes \(guards\.two_person\): (.+?) (requested it and overrode a gate on it|requested it|overrode a gate on it), so another approver must approve run (\S+)`).
		withWords(map[int]string{2: "foureyes.did"}).withActors(1),

	// Step summaries and what Verify read back (actions, notify,
	// providers, rotation, controller).
	ph("say.skipped", `skipped: (.+)`, 1),
	ph("say.unsupported", `(\S+) on gateway (\S+): (.+): unsupported`, 3),
	ph("say.noagent", `no warden agent configured \(agents\.cert_file\)`),
	ph("say.novcenter", `no vCenter configured \(vsphere\.url\)`),
	ph("say.noprovider", `neither a vCenter nor agents are configured`),
	ph("say.snapshot.took", `took snapshot "(.*)" of (\S+)`),
	ph("say.snapshot.existed", `snapshot "(.*)" of (\S+) already existed`),
	ph("say.snapshot.exists", `snapshot "(.*)" of (\S+) exists \(memory: (true|false)\)`).withWords(map[int]string{3: "bool"}),
	ph("say.isolated", `isolated (\S+)`),
	ph("say.isolated.already", `(\S+) was already isolated`),
	ph("say.quarantined", `(\S+) is quarantined`),
	ph("say.released", `released (\S+)`),
	ph("say.released.already", `(\S+) was not quarantined`),
	ph("say.released.verified", `(\S+) is released`),
	ph("say.poweredoff", `powered off (\S+)`),
	ph("say.poweredoff.already", `(\S+) was already powered off`),
	ph("say.poweredoff.verified", `(\S+) is powered off`),
	ph("say.notified", `notified channel (\S+) \(HTTP (\d+) after (\d+) attempt\(s\)\)`),
	ph("say.notified.already", `notification already delivered to channel (\S+)`),
	ph("say.notified.accepted", `channel (\S+) accepted the notification \(HTTP (\d+)\)`),
	ph("say.nochannel", `no notification channel configured`),
	ph("say.nochannel.verify", `no notification channel configured: nothing to verify`),
	ph("say.captured", `captured (\d+) artefacts from (\S+)`),
	ph("say.captured.errors", `captured (\d+) artefacts from (\S+) \((\d+) collectors reported errors\)`),
	ph("say.captured.already", `volatile evidence already captured \((\d+) artefacts\)`),
	ph("say.captured.verified", `evidence hashes verified`),
	ph("say.os.already", `OS quarantine of (\S+) already in force`),
	ph("say.os.applied", `OS quarantine of (\S+) in force and confirmed \(killed (\d+) flows, links down: \[(.*)\]\)`),
	ph("say.os.verified", `OS quarantine enforced \(v4\+v6, backend (\S+)\), agent reachable over management`),
	ph("say.os.lifted", `OS quarantine of (\S+) lifted`),
	ph("say.os.none", `(\S+) had no OS quarantine`),
	ph("say.os.clean", `no Warden rules left on (\S+)`),
	ph("say.baseline.passes", `baseline of (\S+) passes \(remediated: \[(.*)\]\)`),
	ph("say.baseline.recorded", `baseline verdict recorded`),
	ph("say.patch.already", `(\S+) already at the target versions`),
	ph("say.patch.done", `patched (\d+) package\(s\) on (\S+)`),
	ph("say.patch.verified", `security updates applied and checked by the agent`),
	ph("say.patch.versions", `installed versions at or above target`),
	ph("say.revoked", `(\S+) revoked at (\d+) tunnel\(s\) \((\d+) already\), blocked at (\d+) site\(s\)`),
	ph("say.revoked.verified", `(\S+): no trust left at (\d+) of (\d+) tunnel\(s\); blocked at (\d+) site\(s\)`),
	ph("say.rotated.certs", `(\d+) rotated, (\d+) already rotated, (\d+) rolled back, (\d+) failed, (\d+) not attempted; (\d+) authenticate with certificates \(nothing shared to rotate\)`),
	ph("say.rotated", `(\d+) rotated, (\d+) already rotated, (\d+) rolled back, (\d+) failed, (\d+) not attempted`),
	ph("say.rotated.verified", `(\d+) of (\d+) credential\(s\) verified in use`),
	ph("say.investigated", `investigated (\d+) gateway\(s\): (\d+) events, (\d+) artefacts, (\d+) entry-point and (\d+) lateral-movement candidate\(s\)`),
	ph("say.investigated.gaps", `investigated (\d+) gateway\(s\): (\d+) events, (\d+) artefacts, (\d+) entry-point and (\d+) lateral-movement candidate\(s\); not reachable: (.+)`),
	ph("say.investigated.already", `investigation already filed`),
	ph("say.pcap.running", `packet capture (\S+) running on (\S+)`),
	ph("say.pcap.already", `packet capture (\S+) was already running on (\S+)`),
	ph("say.pcap.stopped", `packet capture stopped on (\S+); (\d+) capture\(s\) filed`),
	ph("say.pcap.verified.running", `packet capture (\S+) is running`),
	ph("say.pcap.verified", `(\d+) packet capture\(s\) filed and verified`),
	ph("say.investigated.verified", `timeline and artefacts of (\d+) gateway\(s\) verified`),
	ph("say.investigated.verified.gaps", `timeline and artefacts of (\d+) gateway\(s\) verified; (\d+) gateway\(s\) could not be asked`),
}

// says writes s, a sentence Warden's own code wrote in English, in l's
// language. English is returned as it is, but for the actors in it.
func (l loc) says(s string) string {
	if s == "" {
		return s
	}
	if out, ok := l.phrase(s); ok {
		return out
	}
	// Combined actions join their layers' sentences with "; ".
	if parts := strings.Split(s, "; "); len(parts) > 1 {
		for i, p := range parts {
			parts[i] = l.says(p)
		}
		return strings.Join(parts, l.f("say.join"))
	}
	if l.lang == LangEnglish {
		return s
	}
	return l.f("say.original", s)
}

// phrase says s with the first phrase that matches it.
func (l loc) phrase(s string) (string, bool) {
	for _, p := range phrases {
		m := p.re.FindStringSubmatch(s)
		if m == nil {
			continue
		}
		args := make([]any, len(m)-1)
		for i, v := range m[1:] {
			args[i] = v
		}
		for _, i := range p.nested {
			args[i-1] = l.says(m[i])
		}
		for i, list := range p.words {
			args[i-1] = l.word(list, m[i])
		}
		for _, i := range p.actors {
			args[i-1] = l.who(m[i])
		}
		return l.f(p.key, args...), true
	}
	return "", false
}
