package wire

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// WireGuard operations.
const (
	// WireGuardDevice reads a device: its public key and peers. The
	// private key is never returned; a peer's preshared key is returned
	// only as a reference (see WGPeer.PresharedKeyRef).
	WireGuardDevice = "device"
	// WireGuardConfigure applies a WGConfig to a device.
	WireGuardConfigure = "configure"
)

// WireGuardParams reads or configures one WireGuard device. The agent
// accepts only a device that is a network link in its own network
// namespace and that answers as a WireGuard device (kernel or userspace).
type WireGuardParams struct {
	Op     string    `json:"op"`
	Device string    `json:"device"`
	Config *WGConfig `json:"config,omitempty"`
}

// WGDevice is a WireGuard device as read by the agent. Keys are base64.
type WGDevice struct {
	Name       string   `json:"name"`
	Type       string   `json:"type"`
	PublicKey  string   `json:"public_key"`
	ListenPort int      `json:"listen_port"`
	Peers      []WGPeer `json:"peers"`
}

// WGPeer is one peer entry of a device.
type WGPeer struct {
	PublicKey string `json:"public_key"`
	// PresharedKeyRef stands for the peer's preshared key without
	// revealing it: SHA-256 over a fixed label, the device's public key,
	// the peer's public key and the key (base64). Empty when the peer has
	// none. A WGPeerConfig whose PresharedKey equals the ref of a
	// preshared key on the same device installs that key: a key can be
	// copied between entries of a device without leaving the gateway.
	PresharedKeyRef     string    `json:"preshared_key_ref,omitempty"`
	Endpoint            string    `json:"endpoint,omitempty"`
	PersistentKeepalive Duration  `json:"persistent_keepalive,omitempty"`
	LastHandshake       time.Time `json:"last_handshake,omitzero"`
	ReceiveBytes        int64     `json:"receive_bytes"`
	TransmitBytes       int64     `json:"transmit_bytes"`
	AllowedIPs          []string  `json:"allowed_ips,omitempty"`
	ProtocolVersion     int       `json:"protocol_version,omitempty"`
}

// wgPresharedKeyRefLabel separates preshared key references from any
// other use of SHA-256 over keys.
const wgPresharedKeyRefLabel = "warden-wg-psk-ref\x00"

// WGPresharedKeyRef is the PresharedKeyRef of psk on the entry for peer of
// device (raw 32-byte keys): base64 of SHA-256 over a fixed label, the
// device's public key, the peer's public key and psk. A controller that
// knows a key can tell from a device read whether it is installed.
func WGPresharedKeyRef(device, peer, psk [32]byte) string {
	var buf [len(wgPresharedKeyRefLabel) + 3*32]byte
	n := copy(buf[:], wgPresharedKeyRefLabel)
	n += copy(buf[n:], device[:])
	n += copy(buf[n:], peer[:])
	copy(buf[n:], psk[:])
	sum := sha256.Sum256(buf[:])
	clear(buf[:]) // it held the key
	return base64.StdEncoding.EncodeToString(sum[:])
}

// WGConfig is a device change, applied in one UAPI transaction. Replacing
// every peer at once is not offered: it would cut every tunnel of the
// gateway (see PROVIDER-NOTES).
type WGConfig struct {
	// PrivateKey (base64) replaces the device's key: a site key rotation.
	// A secret: sent to this gateway only and never logged.
	PrivateKey string         `json:"private_key,omitempty"`
	ListenPort *int           `json:"listen_port,omitempty"`
	Peers      []WGPeerConfig `json:"peers,omitempty"`
}

// WGPeerConfig changes one peer entry.
type WGPeerConfig struct {
	PublicKey  string `json:"public_key"`
	Remove     bool   `json:"remove,omitempty"`
	UpdateOnly bool   `json:"update_only,omitempty"`
	// PresharedKey (base64) is a new key or the PresharedKeyRef of one on
	// the device. A secret.
	PresharedKey        string    `json:"preshared_key,omitempty"`
	Endpoint            string    `json:"endpoint,omitempty"`
	PersistentKeepalive *Duration `json:"persistent_keepalive,omitempty"`
	ReplaceAllowedIPs   bool      `json:"replace_allowed_ips,omitempty"`
	AllowedIPs          []string  `json:"allowed_ips,omitempty"`
}

// ParseAllowedIP reads one of WGPeerConfig.AllowedIPs: a network, or a
// bare address (a host prefix), as written (host bits are not cleared).
func ParseAllowedIP(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a network", s)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or a network", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// WireGuardResult is the device after the operation (for configure, read
// back after the change).
type WireGuardResult struct {
	Device WGDevice `json:"device"`
}

// VICIParams runs one command against the gateway's charon. Only the
// commands in VICICommands are accepted: reading state, loading and
// unloading shared keys, unloading a connection, terminating, rekeying and
// initiating SAs. Loading connections or settings is not.
type VICIParams struct {
	Command string `json:"command"`
	// Event names the event a streamed command (list-sas, list-conns)
	// produces; its messages come back in VICIResult.Events.
	Event string `json:"event,omitempty"`
	// Message is the command's message in the JSON form of VICIMessage.
	Message VICIMessage `json:"message,omitempty"`
}

// VICICommands maps each command the agent accepts to the event it
// streams ("" for none).
func VICICommands() map[string]string {
	return map[string]string{
		"get-conns":     "",
		"get-shared":    "",
		"list-sas":      "list-sa",
		"list-conns":    "list-conn",
		"load-shared":   "",
		"unload-shared": "",
		"unload-conn":   "",
		"terminate":     "",
		"rekey":         "",
		"initiate":      "",
		// Certificates: reading them, and loading a CRL (nothing else:
		// see CheckVICIMessage).
		"list-certs": "list-cert",
		"load-cert":  "",
	}
}

// CheckVICIMessage applies the limits on a whitelisted command's message
// that the whitelist alone cannot: load-cert may load a certificate
// revocation list only (type X509_CRL), never a CA or a peer certificate
// that charon would then trust.
func CheckVICIMessage(command string, m VICIMessage) error {
	if command != "load-cert" {
		return nil
	}
	for _, el := range m {
		switch el.Key {
		case "type":
			if el.Text() != "X509_CRL" {
				return errors.New("message: load-cert may only load a CRL (type X509_CRL)")
			}
		case "flag":
			if el.Text() != "NONE" {
				return errors.New("message: load-cert of a CRL takes flag NONE")
			}
		case "data":
		default:
			return fmt.Errorf("message: load-cert takes type, flag and data, not %q", el.Key)
		}
	}
	if i := slices.IndexFunc(m, func(el VICIElement) bool { return el.Key == "type" }); i < 0 {
		return errors.New("message: load-cert may only load a CRL (type X509_CRL)")
	}
	return nil
}

// VICIResult is charon's reply and, for a streamed command, its events.
type VICIResult struct {
	Reply  VICIMessage   `json:"reply,omitempty"`
	Events []VICIMessage `json:"events,omitempty"`
}

// VICIMessage is a VICI message as JSON: an array of elements in order,
// each {"k": key} with exactly one of "v" (a value), "b" (a binary value),
// "l" (a list), "lb" (a list with binary items) or "s" (a section, itself
// a VICIMessage). VICI values are bytes: a value that is not valid UTF-8
// (a key, a DER certificate or CRL) travels base64-encoded in "b"/"lb",
// because a JSON string would replace its invalid bytes.
// internal/charon converts it to and from govici's Message.
type VICIMessage []VICIElement

// VICIElement is one key of a VICIMessage.
type VICIElement struct {
	Key       string      `json:"k"`
	Value     *string     `json:"v,omitempty"`
	Bytes     []byte      `json:"b,omitempty"`
	List      []string    `json:"l,omitempty"`
	ListBytes [][]byte    `json:"lb,omitempty"`
	Section   VICIMessage `json:"s,omitempty"`
	// IsList and IsSection tell an empty list or section from a missing
	// one.
	IsList    bool `json:"il,omitempty"`
	IsSection bool `json:"is,omitempty"`
}

// BlockParams blocks or unblocks a revoked peer's addresses on the
// gateway: every packet from or to them is dropped (IPv4 and IPv6, input,
// output and forward), so the peer cannot even reach the gateway's IKE or
// WireGuard port. The block is kept across agent restarts.
type BlockParams struct {
	// Peer names the revoked gateway (an inventory id).
	Peer string `json:"peer"`
	// Addresses are its addresses or prefixes; required unless Remove.
	Addresses []string `json:"addresses,omitempty"`
	// Remove lifts the block of Peer.
	Remove bool `json:"remove,omitempty"`
}

// BlockedPeer is one peer's block in force.
type BlockedPeer struct {
	Peer      string   `json:"peer"`
	Addresses []string `json:"addresses"`
}

// BlockResult reports a block command and the blocks in force after it,
// read back from the kernel.
type BlockResult struct {
	Changed bool          `json:"changed"`
	Blocked []BlockedPeer `json:"blocked"`
	// Enforced reports that the kernel drops every blocked address (both
	// families, every hook).
	Enforced bool `json:"enforced"`
}

// Text is the element's scalar value ("v" or "b") as a string; "" when it
// has none.
func (el VICIElement) Text() string {
	switch {
	case el.Value != nil:
		return *el.Value
	case el.Bytes != nil:
		return string(el.Bytes)
	}
	return ""
}
