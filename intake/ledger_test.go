package intake_test

import (
	"testing"

	"github.com/warden-ir/warden/intake"
	"github.com/warden-ir/warden/intake/replaytest"
)

func TestMemoryLedgerConformance(t *testing.T) {
	replaytest.Run(t, func(t *testing.T) intake.ReplayLedger { return intake.NewMemoryLedger(0) })
}
