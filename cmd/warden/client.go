package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// apiClient talks to a running controller. It retries connection errors and
// 5xx with backoff (retryablehttp); intake is safe to retry because the
// controller deduplicates by fingerprint.
type apiClient struct {
	base  string
	token string
	http  *retryablehttp.Client
}

func (g *globals) client() (*apiClient, error) {
	server, token := g.server, g.token
	if token == "" {
		token = os.Getenv("WARDEN_API_TOKEN")
	}
	if server == "" || token == "" {
		cfg, err := g.config()
		if err != nil && (server == "" || token == "") {
			return nil, fmt.Errorf("finding the controller: pass --server and --token (or WARDEN_SERVER / WARDEN_API_TOKEN), or a config: %w", err)
		}
		if server == "" {
			scheme := "http"
			if cfg.Server.TLSCertFile != "" {
				scheme = "https"
			}
			server = scheme + "://" + cfg.Server.Listen
		}
		if token == "" {
			token = cfg.Server.APIToken
		}
	}
	if token == "" {
		return nil, fmt.Errorf("no API token: set WARDEN_API_TOKEN or --token")
	}
	rc := retryablehttp.NewClient()
	rc.Logger = nil // it would print URLs; we report errors ourselves
	rc.RetryMax = 3
	rc.RetryWaitMin = 100 * time.Millisecond
	rc.RetryWaitMax = 2 * time.Second
	rc.HTTPClient.Timeout = 60 * time.Second
	return &apiClient{base: strings.TrimRight(server, "/"), token: token, http: rc}, nil
}

// apiStatusError is a non-2xx answer; its message is the server's.
type apiStatusError struct {
	Status  int
	Message string
	Field   string
}

func (e *apiStatusError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("controller answered %d: %s (field %s)", e.Status, e.Message, e.Field)
	}
	return fmt.Sprintf("controller answered %d: %s", e.Status, e.Message)
}

func (c *apiClient) do(ctx context.Context, method, path string, body []byte, out any) (int, error) {
	var rdr io.Reader
	if body != nil {
		rdr = bytes.NewReader(body)
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, method, c.base+path, rdr)
	if err != nil {
		return 0, fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("calling %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("reading answer: %w", err)
	}
	if resp.StatusCode >= 300 {
		var e struct{ Error, Field string }
		_ = json.Unmarshal(data, &e)
		if e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		return resp.StatusCode, &apiStatusError{Status: resp.StatusCode, Message: e.Error, Field: e.Field}
	}
	if out != nil {
		if raw, ok := out.(*json.RawMessage); ok {
			*raw = data
			return resp.StatusCode, nil
		}
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decoding answer: %w", err)
		}
	}
	return resp.StatusCode, nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func readInput(path string) ([]byte, error) {
	if path == "" {
		return nil, fmt.Errorf("-f FILE is required (use - for standard input)")
	}
	if path == "-" {
		return io.ReadAll(io.LimitReader(os.Stdin, 64<<20))
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return b, nil
}
