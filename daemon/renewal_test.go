package daemon

import (
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/warden-ir/warden/store"
)

// TestRenewalLost: a successor always loses the lease; a late renewal
// loses it unless the store could not commit (a full disk), where the
// controller stays up, fenced and unready, until a renewal goes through;
// with replicas a late renewal always loses it (another replica may reach
// the database this one cannot).
func TestRenewalLost(t *testing.T) {
	full := fmt.Errorf("renewing the writer lease: %w", syscall.ENOSPC)
	other := errors.New("renewing the writer lease: connection reset")
	tests := map[string]struct {
		err    error
		late   bool
		shared bool
		want   bool
	}{
		"successor":               {err: store.ErrLeaseLost, want: true},
		"successor, late":         {err: store.ErrLeaseLost, late: true, want: true},
		"passing failure":         {err: other},
		"late failure":            {err: other, late: true, want: true},
		"full disk":               {err: full},
		"full disk, late":         {err: full, late: true},
		"read-only disk, late":    {err: fmt.Errorf("renewing: %w", syscall.EROFS), late: true},
		"full disk and successor": {err: errors.Join(full, store.ErrLeaseLost), late: true, want: true},
		"replicas, passing":       {err: other, shared: true},
		"replicas, late":          {err: other, late: true, shared: true, want: true},
		"replicas, late full":     {err: full, late: true, shared: true, want: true},
		"replicas, successor":     {err: store.ErrLeaseLost, shared: true, want: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := renewalLost(tc.err, tc.late, tc.shared); got != tc.want {
				t.Errorf("renewalLost(%v, late=%t, shared=%t) = %t, want %t", tc.err, tc.late, tc.shared, got, tc.want)
			}
		})
	}
}
