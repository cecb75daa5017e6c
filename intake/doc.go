// Package intake decodes what detectors send into indicator.Indicator values:
// Warden's own indicator JSON (strict) and Prometheus Alertmanager webhook
// bodies (tolerant of every version and sender variant, skipping only the
// alerts it cannot understand), and verifies HMAC webhook signatures with a
// timestamp and a replay window. Accepted signatures are remembered in a
// ReplayLedger: memory by default, the store's table in the controller so
// that a restart does not reopen the window.
//
// It owns the wire formats, their mapping onto gateways of the inventory and
// the signature scheme ("t=<unix>,v1=<hex hmac-sha256(secret, t.body)>"),
// which package notify reuses for outgoing webhooks.
//
// It must not serve HTTP, store indicators or decide anything: the HTTP
// server calls these decoders, limits body size and maps errors to status
// codes; storage and deduplication happen after intake. Nothing decoded here
// ever reaches a shell; values from alerts are data only.
package intake
