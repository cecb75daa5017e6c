// Package archtest holds the import rules of the module as a test: it reads
// the import graph with `go list` and fails on a forbidden edge (the
// gateway agent importing a provider, a provider importing another
// provider or the controller, the controller importing a concrete
// provider, anything importing a command) and on a forbidden dependency of
// the warden-agent binary (govmomi, netlab, the demo, `testing`).
//
// It owns the rules and the list of violations still being moved away;
// that list may only shrink. It has no code outside its test and must not
// be imported.
package archtest
