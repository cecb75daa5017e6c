// Package v1 holds the types of Warden's HTTP API, version 1: what goes
// over the wire under /v1, request and response, with explicit JSON names.
// The server (package api) converts the controller's and the store's
// values into these; the Go client (package api/client) and every other
// caller decode into them. openapi.yaml describes the same types, and a
// test keeps the two in step.
//
// It owns the wire shapes and nothing else: no behaviour beyond small
// predicates (Run.Terminal), the enumerated values a field takes, and the
// webhook signature format. It must not import any other Warden package:
// a client links this package and the client, not the controller.
//
// The shapes are frozen: v1 answered with the store's rows marshalled
// directly, and these types reproduce that JSON byte for byte (the
// server's tests pin it). A field that was stored as JSON (a run's plan, a
// step's result, a wave's request and report) is passed through as
// recorded, so a run planned by an older controller reads as it was
// written.
package v1
