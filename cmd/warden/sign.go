package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
)

// readSecretFile reads the webhook secret for `indicator submit
// --secret-file` (the client signs with it), trimmed of surrounding white
// space as the configuration's *_file settings are. The secret is read
// from a file, never from a flag value, and errors name the file only.
func readSecretFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is said once, below
		}
		return nil, fmt.Errorf("reading --secret-file %s: %w", path, err)
	}
	secret := bytes.TrimSpace(b)
	if len(secret) == 0 {
		return nil, fmt.Errorf("--secret-file %s is empty", path)
	}
	return secret, nil
}
