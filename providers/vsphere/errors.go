package vsphere

import (
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"reflect"
	"strings"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/vapi/rest"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/warden-ir/warden/actions"
)

// errNotFound marks look-ups of our own (VM, portgroup, network) that found
// nothing. It is terminal.
var errNotFound = errors.New("not found")

// errInvalid marks a request or a state that retrying cannot fix (an
// ambiguous name, a corrupt record). It is terminal.
var errInvalid = errors.New("invalid")

// classify marks err terminal when retrying cannot fix it, and leaves it as
// is (transient, retried with backoff by the catalogue's retry layer)
// otherwise.
//
// The mapping, checked in this order:
//
//	terminal  our own errNotFound / errInvalid; find.NotFoundError and
//	          find.MultipleFoundError (unknown or ambiguous VM, datacenter,
//	          portgroup); x509 / untrusted-certificate errors (TLS
//	          misconfiguration); vim faults NotFound, ManagedObjectNotFound,
//	          InvalidLogin, NoPermission, InvalidArgument, InvalidRequest,
//	          InvalidDeviceSpec, InvalidDeviceOperation, InvalidName,
//	          DuplicateName, AlreadyExists, MethodNotFound, NotSupported,
//	          NotImplemented, InvalidType; vAPI REST 401, 403 and 400.
//	transient vim faults TaskInProgress, HostCommunication,
//	          HostNotConnected, ConcurrentAccess, SystemError, Timedout,
//	          ResourceInUse, InvalidState (a VM in transition),
//	          NotAuthenticated (an expired session: the next call logs in
//	          again), RequestCanceled; network errors; context deadlines;
//	          and anything not listed above.
//
// Unknown faults are transient on purpose: the catalogue's retry layer
// bounds retries, while a wrong "terminal" would abandon a containment.
func classify(err error) error {
	if err == nil || actions.IsTerminal(err) {
		return err
	}
	if isTerminal(err) {
		return actions.Terminal(err)
	}
	return err
}

func isTerminal(err error) bool {
	if errors.Is(err, errNotFound) || errors.Is(err, errInvalid) {
		return true
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var nf *find.NotFoundError
	var mf *find.MultipleFoundError
	if errors.As(err, &nf) || errors.As(err, &mf) {
		return true
	}
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalidCert x509.CertificateInvalidError
	if errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &invalidCert) || soap.IsCertificateUntrusted(err) {
		return true
	}
	for _, code := range []int{http.StatusUnauthorized, http.StatusForbidden} {
		if isRESTStatus(err, code) {
			return true
		}
	}
	if strings.Contains(err.Error(), "400 Bad Request") {
		return true
	}

	return terminalFaults[knownFault(err)]
}

// Fault names (without a "Fault" suffix: vcsim and vCenter encode some
// faults as SystemErrorFault where others send SystemError).
var (
	terminalFaults = set("NotFound", "ManagedObjectNotFound", "InvalidLogin", "NoPermission",
		"InvalidArgument", "InvalidRequest", "InvalidDeviceSpec", "InvalidDeviceOperation",
		"InvalidName", "DuplicateName", "AlreadyExists", "MethodNotFound", "NotSupported",
		"NotImplemented", "InvalidType")
	transientFaults = set("NotAuthenticated", "TaskInProgress", "HostCommunication",
		"HostNotConnected", "ConcurrentAccess", "SystemError", "Timedout", "ResourceInUse",
		"InvalidState", "RequestCanceled")
)

func set(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// knownFault walks the vim fault tree of err (top fault first, then its
// causes) and returns the name of the first fault in either list, or "".
func knownFault(err error) string {
	found := ""
	fault.In(err, func(f types.BaseMethodFault, _ string, _ []types.LocalizableMessage) bool {
		name := faultName(f)
		if terminalFaults[name] || transientFaults[name] {
			found = name
			return true
		}
		return false
	})
	return found
}

// hasFault reports whether err's vim fault tree holds a fault called name.
func hasFault(err error, name string) bool {
	found := false
	if err == nil {
		return false
	}
	fault.In(err, func(f types.BaseMethodFault, _ string, _ []types.LocalizableMessage) bool {
		found = faultName(f) == name
		return found
	})
	return found
}

func faultName(f types.BaseMethodFault) string {
	t := reflect.TypeOf(f)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return strings.TrimSuffix(t.Name(), "Fault")
}

// isRESTStatus reports whether err (or anything it wraps) is a vAPI REST
// status error with the given code.
func isRESTStatus(err error, code int) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if rest.IsStatusError(e, code) {
			return true
		}
	}
	return false
}

// isNotAuthenticated reports whether err says the session is gone, so a new
// login may fix it.
func isNotAuthenticated(err error) bool {
	if err == nil {
		return false
	}
	if isRESTStatus(err, http.StatusUnauthorized) {
		return true
	}
	if knownFault(err) == "NotAuthenticated" {
		return true
	}
	// vcsim (and a vCenter that restarted) answers a property read through
	// a container view of a dead session with ManagedObjectNotFound for
	// the view: views live and die with their session.
	lost := false
	fault.In(err, func(f types.BaseMethodFault, _ string, _ []types.LocalizableMessage) bool {
		switch nf := f.(type) {
		case *types.ManagedObjectNotFound:
			lost = nf.Obj.Type == "ContainerView"
		case *types.ManagedObjectNotFoundFault:
			lost = nf.Obj.Type == "ContainerView"
		}
		return lost
	})
	return lost
}

// redactedError hides a secret that slipped into an error message, keeping
// the chain for errors.Is/As.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redact replaces every occurrence of secret in err's message.
func redact(err error, secret string) error {
	if err == nil || secret == "" || !strings.Contains(err.Error(), secret) {
		return err
	}
	return &redactedError{msg: strings.ReplaceAll(err.Error(), secret, "REDACTED"), err: err}
}
