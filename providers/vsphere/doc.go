// Package vsphere is Warden's hypervisor provider for VMware vSphere: it
// observes a gateway VM, snapshots it, isolates it by moving every virtual
// NIC to a quarantine distributed portgroup (or disconnecting it) except
// the gateway's declared management NICs, which stay on the management
// path, releases it back to exactly the networks it had, and powers it off.
//
// It owns the vCenter session (SOAP and vAPI REST), the translation of
// actions.VMProvider calls into vSphere tasks, the record of original NIC
// backings that it keeps on the VM itself (a custom attribute, so it
// survives a controller crash), and the classification of vSphere faults
// into terminal and transient errors.
//
// It must not decide whether to act, retry, or keep state of its own between
// calls beyond caches of immutable identifiers: everything release needs is
// on the VM. It must never log or return credentials.
package vsphere
