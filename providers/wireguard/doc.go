// Package wireguard revokes and rotates WireGuard credentials on site
// gateways through the cross-platform UAPI (wgctrl against wireguard-go
// sockets, or any Client), for Warden's revoke_peer and rotate_credentials
// actions.
//
// It owns the procedures, each safe to repeat: removing a compromised peer
// (Remove: true, never ReplacePeers), replacing a pair's preshared key so
// that the next handshake proves it, and the staged rotation of a site's
// private key (new peer key added without AllowedIPs at every peer, key
// switched at the site, AllowedIPs moved and the old peer removed), plus
// reading back handshakes to verify them.
//
// It must not generate, store or log secrets (keys arrive from the caller,
// go to the two ends of a pair only, and no error or log line quotes one),
// must not decide what to rotate or when (package rotation does), and must
// not touch routes, addresses or firewalls.
package wireguard
