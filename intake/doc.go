// Package intake decodes what detectors send into indicator.Indicator values:
// Warden's own indicator JSON (strict) and Prometheus Alertmanager webhook
// bodies (tolerant of every version and sender variant, skipping only the
// alerts it cannot understand), and verifies HMAC webhook signatures with a
// timestamp and a replay window. Accepted signatures are remembered in a
// ReplayLedger: memory by default, the store's table in the controller so
// that a restart does not reopen the window. Detectors' own formats
// (Suricata EVE, Zeek notice.log, Wazuh, Falco) decode into Decoded.
//
// Threat intelligence decodes into ThreatDecoded instead: STIX 2.1 bundles
// (DecodeSTIX, with a parser for the STIX patterning subset Warden can
// block, stixpattern.go) and MISP events (DecodeMISP); each usable
// indicator is a ThreatItem the controller makes a fleet-wide block of.
// TAXIIClient polls TAXII 2.1 collections (added_after, pagination): the
// one place in this package that makes outgoing HTTP calls, to the
// configured feeds only.
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
