package agent

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/warden-ir/warden/agent/wire"
)

// TestStaleEpochRefused: the agent remembers the highest lease epoch a
// command came with, across a restart, and refuses a lower one with 412
// and a message saying the sender no longer leads; commands without an
// epoch (tools run by hand) are not checked.
func TestStaleEpochRefused(t *testing.T) {
	h := newHarness(t)
	h.start()
	at := func(kind string, params any, epoch int64) (int, []byte) {
		c := h.command(kind, params)
		c.Epoch = epoch
		return h.send(c)
	}
	if status, body := at(wire.KindObserve, nil, 3); status != http.StatusOK {
		t.Fatalf("a command at epoch 3: %d %s", status, body)
	}
	if status, body := at(wire.KindIsolate, labIsolate, 4); status != http.StatusOK {
		t.Fatalf("a command at epoch 4: %d %s", status, body)
	}

	// The restarted agent still knows epoch 4.
	h.stop()
	h.start()
	applied := len(h.fw.applies()) // the restart re-applies the quarantine
	status, body := at(wire.KindRelease, nil, 3)
	if status != wire.StatusStaleEpoch || !strings.Contains(string(body), "epoch 3") || !strings.Contains(string(body), "epoch 4") ||
		!strings.Contains(string(body), "no longer the leading controller") {
		t.Fatalf("a command at epoch 3 after epoch 4: %d %s, want 412 naming both epochs", status, body)
	}
	if n := len(h.fw.applies()); n != applied || h.fw.removeCount() != 0 {
		t.Fatalf("the refused release reached the firewall")
	}
	for _, epoch := range []int64{4, 0} {
		if status, body := at(wire.KindObserve, nil, epoch); status != http.StatusOK {
			t.Errorf("a command at epoch %d: %d %s", epoch, status, body)
		}
	}
	status, body = at(wire.KindObserve, nil, 5)
	var st wire.State
	if err := json.Unmarshal(body, &st); err != nil || status != http.StatusOK || st.LeaseEpoch != 5 {
		t.Errorf("observe at epoch 5: %d, lease epoch %d (%v), want 5", status, st.LeaseEpoch, err)
	}
}
