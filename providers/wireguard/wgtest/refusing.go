package wgtest

import (
	"sync"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/warden-ir/warden/providers/wireguard"
)

// RefusingClient passes every call through to its wireguard.Client (a
// Client or a *wgctrl.Client), except that the device told to Refuse
// stores a random preshared key instead of any key not allowed: a site
// that accepts a rotation and then cannot use the new key.
type RefusingClient struct {
	wireguard.Client
	mu      sync.Mutex
	device  string
	allowed map[wgtypes.Key]bool
}

// NewRefusingClient wraps c; it refuses nothing until Refuse is called.
func NewRefusingClient(c wireguard.Client) *RefusingClient {
	return &RefusingClient{Client: c, allowed: map[wgtypes.Key]bool{}}
}

// Refuse makes device refuse new preshared keys; "" refuses none.
func (r *RefusingClient) Refuse(device string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.device = device
}

// Allow lets the refusing device store k (the keys in place before it
// began refusing).
func (r *RefusingClient) Allow(k wgtypes.Key) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.allowed[k] = true
}

// ConfigureDevice configures the device, swapping a preshared key the
// device refuses for a random one.
func (r *RefusingClient) ConfigureDevice(name string, cfg wgtypes.Config) error {
	if err := r.swapRefused(name, cfg.Peers); err != nil {
		return err
	}
	return r.Client.ConfigureDevice(name, cfg)
}

func (r *RefusingClient) swapRefused(device string, peers []wgtypes.PeerConfig) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if device != r.device {
		return nil
	}
	for i, p := range peers {
		if p.PresharedKey != nil && !r.allowed[*p.PresharedKey] {
			k, err := wgtypes.GenerateKey()
			if err != nil {
				return err
			}
			peers[i].PresharedKey = &k
		}
	}
	return nil
}
