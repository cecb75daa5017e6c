// Package e2e holds end-to-end tests that drive a real Warden (daemon, HTTP API) against real components: the vCenter simulator speaking SOAP, and network namespaces with real kernels rules.
// Every stack runs with a token per person, as a real controller does (people_test.go): the bootstrap admin adds a detector, a responder and an approver through the API, and each step is done by the person whose role it needs.
package e2e
