package fault

import (
	"errors"
	"fmt"
	"testing"
)

func TestTerminal(t *testing.T) {
	base := errors.New("portgroup missing")
	if Terminal(nil) != nil {
		t.Fatal("Terminal(nil) is not nil")
	}
	if IsTerminal(base) {
		t.Fatal("a plain error is terminal")
	}
	wrapped := fmt.Errorf("isolating: %w", Terminal(base))
	if !IsTerminal(wrapped) || !errors.Is(wrapped, base) || wrapped.Error() != "isolating: portgroup missing" {
		t.Fatalf("wrapped terminal error: %v", wrapped)
	}
}
