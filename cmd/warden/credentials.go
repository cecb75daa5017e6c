package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/warden-ir/warden/rotation"
)

// newCredentialsCmd is `warden credentials`: the master key and the
// inventory of tunnel credentials. Nothing here prints a secret.
func newCredentialsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "credentials", Short: "Tunnel credentials: the vault's master key and the credential inventory (never secrets)"}

	var keyFile string
	initKey := &cobra.Command{
		Use:   "init-key --file F",
		Short: "Write a new random master key to F (mode 0600; refuses to overwrite) for credentials.master_key_file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keyFile == "" {
				return errors.New("--file is required")
			}
			k, err := rotation.NewMasterKey()
			if err != nil {
				return err
			}
			if err := rotation.WriteMasterKeyFile(keyFile, k); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "wrote master key %s to %s\n", k.ID(), keyFile)
			return nil
		},
	}
	initKey.Flags().StringVar(&keyFile, "file", "", "where to write the key")

	var db string
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List each tunnel's kind and active credentials (ids, public keys, states; never a secret)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.config()
			if err != nil {
				return err
			}
			st, err := g.openStore(cmd, db)
			if err != nil {
				return err
			}
			defer st.Close()
			// Listing unseals nothing, so it needs no master key: any
			// key opens the table.
			k, err := rotation.NewMasterKey()
			if err != nil {
				return err
			}
			v, err := rotation.OpenVault(cmd.Context(), st.DB(), k, nil)
			if err != nil {
				return err
			}
			tcs, err := v.Inventory(cmd.Context(), cfg.Inventory.Tunnels)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(g.out, tcs)
			}
			t := newTable(g.out, "TUNNEL", "CREDENTIAL", "ID", "STATE", "ORIGIN", "SINCE", "PUBLIC KEY")
			row := func(p rotation.Pair, what string, c *rotation.Credential) {
				if c == nil {
					t.row(fmt.Sprint(p), what, "-", "unknown", "-", "-", "-")
					return
				}
				pub := c.PublicKey
				if pub == "" {
					pub = "-"
				}
				t.row(fmt.Sprint(p), what, c.ID, fmt.Sprint(c.State), c.Origin, c.UpdatedAt.Format("2006-01-02 15:04:05Z07:00"), pub)
			}
			for _, tc := range tcs {
				if tc.Pair.Kind == "wireguard" {
					row(tc.Pair, "site key "+tc.Pair.A, tc.KeyA)
					row(tc.Pair, "site key "+tc.Pair.B, tc.KeyB)
				}
				row(tc.Pair, "preshared key", tc.PSK)
			}
			return t.flush()
		},
	}
	list.Flags().StringVar(&db, "db", "", "store file (default: store.path from the config)")
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(initKey, list)
	return cmd
}
