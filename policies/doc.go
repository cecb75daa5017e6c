// Package policies turns an indicator into a decision: which runbook to run,
// whether a person must approve it first, and why, policy by policy.
//
// It owns the policy and runbook file formats (strict YAML, every unknown key
// an error naming file and line), the CEL environment policies are written
// in, compiling every match expression once at load, the evaluation order,
// the lint rules that keep policies safe (evidence before destructive steps,
// no automatic isolation outside the blast-radius budget, no repeat_after
// on a policy that isolates, no automatic release, no unreachable policy),
// the fixtures that test policies like code, and the embedded default
// policies and runbooks.
//
// It must not act: it never calls an action or a provider, never reads the
// clock (the caller passes Context.Now), never stores anything and never
// applies the approval or budget gates it reports. Those belong to the
// controller.
//
// # Match expressions
//
// A match is a CEL expression that must type-check to bool. The variables
// are typed objects, so a misspelt field is a load error:
//
//	indicator  kind, gateway, severity, source, summary, status (firing when
//	           unset), fingerprint: string; severity_rank: int (low 1 …
//	           critical 4); confidence: double; labels: map(string, string);
//	           observables: {ips, domains, hashes: list(string)};
//	           observed_at: timestamp (context.now when unset)
//	gateway    id, site, vm, hostname: string; addresses,
//	           management_networks: list(string)
//	site       name, time_zone: string; networks: list(string)
//	context    business_hours: bool (site's hours, site's zone, at
//	           observed_at); now: timestamp; local_hour: int; weekday: string
//	           ("mon" … "sun"); posture: string (normal when unset);
//	           open_incidents, recent_indicators: int
//
// Besides the standard library, expressions may use optional values
// (labels.?team.orValue("")), the strings and sets extensions, and the
// network extension (cidr(n).containsIP(a)). has(x.f) is true when the field
// is not its zero value.
package policies
