// Package rotation revokes a compromised gateway at every peer site and
// rotates the tunnel credentials of the pairs that remain, in waves.
//
// It owns four things. The credential inventory: per tunnel its kind and
// credentials (WireGuard public keys of each end and an optional per-pair
// preshared key; a strongSwan pre-shared key per pair, or each end's
// certificate serial under the CA whose CRLs Warden signs), kept in the
// tunnel_credentials table (see Schema) on the store's database, with every
// secret Warden generates (crypto/rand) sealed with AES-256-GCM under a
// master key read from a file or the environment, never from configuration
// in clear. The procedures: Revoke (remove trust in the compromised gateway
// everywhere, then verify it) and Rotate / RotateSiteKeys (canary first,
// then waves of a configurable size, never two peers' site keys at once,
// stopping at the first unit that does not come back and leaving every
// pair not yet rotated on its working credential). The per-pair Report they
// return. And Tunnels, what the catalogue's revoke_peer and
// rotate_credentials (package actions) need from them: which tunnels a
// step acts on, which Warden manages, and plans of what would change.
//
// It must not print, log, audit or return a secret: Secret and MasterKey
// format, marshal and log as "[redacted]", errors never quote key material,
// and a secret leaves the package only towards the two ends of its pair,
// through a provider. It must not talk to devices itself (providers do,
// behind the WireGuard and StrongSwan interfaces) nor decide whether a
// rotation is allowed (the controller's gate does).
package rotation
