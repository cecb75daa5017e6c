package main

import "github.com/spf13/cobra"

// storeReadersHelp is the rule by which report and audit verify choose
// between reading the store here and asking the controller; plan follows
// it too (without --db). readsOverAPI implements it.
const storeReadersHelp = `Where it reads from (the first that applies):
  --db FILE                 that store, read directly on this host; -c adds the
                            inventory (time zones, VMs, tunnels); without -c the
                            output says "inventory unknown" where they would go
  --server URL              the controller's API, which has the inventory
                            (--token, WARDEN_API_TOKEN or server.api_token)
  -c FILE                   the store at the config's store.path, with its inventory
  WARDEN_SERVER             as --server
  WARDEN_CONFIG             as -c
  none of these             store.path from the defaults and WARDEN_* variables
                            (warden.db), inventory unknown
A flag beats an environment variable; between two of a kind the server wins.`

// readsOverAPI reports whether a command that reads the store asks the
// controller instead (see storeReadersHelp). A store named by --db is
// always read here. A server and a configuration given the same way (both
// flags, or both environment) mean the API: the server has the inventory
// and the configuration may be there for the token. A configuration given
// as a flag beats WARDEN_SERVER from the environment, so that a client
// user's exported server does not redirect `-c warden.yaml` on the
// controller's host.
func (g *globals) readsOverAPI(cmd *cobra.Command, db string) bool {
	switch {
	case db != "" || g.server == "":
		return false
	case g.configPath == "":
		return true
	}
	return flagGiven(cmd, "server") || !flagGiven(cmd, "config")
}

// flagGiven reports whether name (a local or inherited flag) was set on
// the command line rather than from its environment default.
func flagGiven(cmd *cobra.Command, name string) bool {
	f := cmd.Flag(name)
	return f != nil && f.Changed
}
