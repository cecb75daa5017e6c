package netlab

import "testing"

// skip and skipStrongSwan are netlabtest.Skip and SkipStrongSwan for this
// package's own tests, which cannot import netlabtest (it imports netlab).
func skip(t testing.TB, tools ...string) {
	t.Helper()
	if err := Available(tools...); err != nil {
		t.Skip(err.Error())
	}
}

func skipStrongSwan(t testing.TB) {
	t.Helper()
	if err := StrongSwanAvailable(); err != nil {
		t.Skip(err.Error())
	}
}
