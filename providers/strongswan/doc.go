// Package strongswan revokes peers and rotates strongSwan pre-shared keys on site
// gateways through each site's charon VICI socket (govici), for Warden's
// revoke_peer and rotate_credentials actions.
//
// It owns three procedures, each safe to repeat. Revocation of a peer at a
// site: terminate (force) every SA with the peer, unload its connection,
// unload its shared keys; for a peer that authenticates with a
// certificate, also load a CRL revoking it (LoadCRL) and read it back
// (VerifyCRL). Make-before-break PSK rotation of a pair: load
// the new key under a new id at both ends, reauthenticate the IKE SA
// (rekey with reauth=yes, charon.make_before_break = yes), wait for a new
// IKE SA unique id to be established, and only then unload the old ids; a
// failed reauthentication unloads the new id again and leaves the old key
// and SAs as they were. It reaches each charon through a charon.Dialer
// (package internal/charon): a local VICI socket (SocketDialer) or, in
// production, a gateway's agent (providers/linux.AgentVICI, which this
// package does not import).
//
// Conventions (the lab in package netlab follows them): at site S, the
// connection to peer P is named P, and every shared key of that tunnel has
// an id starting with "P/".
//
// It must not import another provider or the controller, must not
// generate, store or log secrets (keys arrive from the caller, go to the
// two ends of a pair only, and no error or log line quotes a VICI message
// that carries one), must not decide what to rotate or when
// (package rotation does), and must not flush kernel XFRM state (with
// kernel-libipsec that does nothing, otherwise it desynchronises charon).
package strongswan
