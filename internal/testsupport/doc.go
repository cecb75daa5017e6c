// Package testsupport holds small helpers that several packages' tests
// share. It is imported only by _test.go files: nothing built into a
// binary may depend on it, and it must not import any Warden package, so
// that any test can use it without an import cycle.
package testsupport
