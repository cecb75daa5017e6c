// Package report writes the incident report that engineers and management
// read, in Japanese and English, as Markdown or as a self-contained HTML page
// (inline CSS and an inline SVG timeline; no external fonts, scripts or
// images; printable).
//
// Load gathers one incident from the store, the inventory, the audit chain
// and the evidence ledger into a Model; Markdown and HTML render a Model.
// The management summary comes first and fits on one screen (what happened,
// impact, what Warden did and when, current state, what remains to decide);
// the technical part follows (indicators, decisions, approvals, actions with
// durations, tunnels, credentials, evidence with SHA-256, baseline, audit
// chain). Times are shown in the site's own time zone, named, and in UTC.
//
// Load without an inventory (a store read without its configuration)
// yields a report that says the inventory is unknown wherever the time
// zone, the VM, the sites or the peers would go, and writes times in UTC
// only; it never presents UTC as the site's zone or an empty list as "no
// peers".
//
// A report says everything in its own language: what Warden's other
// packages store as English sentences (policy explanations, gate details,
// step summaries) is recognised and said again in Japanese (phrases.go),
// and a sentence no phrase knows is shown whole, quoted, never dropped.
// Text from outside (an alert's summary, a person's reason) stays as it
// came. A release that a person let through unmet gates is reported as
// such: which gates, by whom, why, and what is still owed.
//
// Every run says who asked for it, who overrode a gate on it and who
// approved it; the summary lists the people who acted and, for each
// break-glass override, whether a second person approved the run or one
// person acted alone (people.go). Actors are named the same way
// everywhere: a person by name ("resp1" for "user:resp1"), anything else
// with what kind of actor it is (Warden, an agent, a detector, the shared
// token, a name nobody verified). Load cannot know the controller's
// configuration: FourEyes(false) tells it that guards.two_person is off,
// and the summary then says that one person could ask and approve alone.
//
// The package only reads. It must not change any state, must never copy raw
// alerts, labels or step details wholesale into a report (only the fields it
// names, so nothing secret can ride along), and must escape everything that
// came from an alert: every string of a laid-out report passes through
// internal/textsafe (control and bidi characters become visible escapes)
// before HTML or Markdown escaping.
package report
