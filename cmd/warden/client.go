package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/spf13/cobra"

	"github.com/warden-ir/warden/api/client"
)

// cliRetries is how the CLI has always retried, every command: connection
// errors and 5xx, with backoff. Intake is safe to retry because the
// controller deduplicates by fingerprint, and a signed retry is signed
// anew; client.WithRetries says what it means for the commands that start
// a run or a wave.
var cliRetries = client.Retries{Max: 3, WaitMin: 100 * time.Millisecond, WaitMax: 2 * time.Second}

// client returns a client of the running controller that --server and
// --token name, else WARDEN_SERVER and WARDEN_API_TOKEN, else the
// configuration (server.listen, server.api_token). opts come after the
// CLI's own (timeout, retries).
func (g *globals) client(opts ...client.Option) (*client.Client, error) {
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
	base := []client.Option{
		client.WithHTTPClient(cleanhttp.DefaultPooledClient()),
		client.WithTimeout(60 * time.Second),
		client.WithRetries(cliRetries),
	}
	return client.New(server, token, append(base, opts...)...)
}

// callAPI is the RunE of a command that makes one call to the controller:
// it builds the client, makes the call and hands the answer to show.
func callAPI[T any](g *globals, call func(ctx context.Context, c *client.Client, args []string) (T, error), show func(w io.Writer, out T) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := g.client()
		if err != nil {
			return err
		}
		out, err := call(cmd.Context(), c, args)
		if err != nil {
			return err
		}
		return show(g.out, out)
	}
}

func printJSON[T any](w io.Writer, v T) error {
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
