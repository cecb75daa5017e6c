// Package e2e holds end-to-end tests that drive a real Warden (daemon, HTTP API) against real components: the vCenter simulator speaking SOAP, and network namespaces with real kernels rules.
package e2e
