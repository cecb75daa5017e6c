package v1

import (
	"encoding/json"
	"time"
)

// Posture values (Posture.Desired).
const (
	PostureNormal      = "normal"
	PostureQuarantined = "quarantined"
	PostureReleased    = "released"
)

// Gateway is one inventory gateway with its posture.
type Gateway struct {
	ID       string `json:"id"`
	Site     string `json:"site"`
	VM       string `json:"vm,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	// Addresses the gateway owns (tunnel endpoints, LAN side).
	Addresses []string `json:"addresses"`
	// ManagementNetworks stay reachable through any quarantine.
	ManagementNetworks []string `json:"management_networks"`
	// ManagementNICs are the vNICs (device label or MAC) vSphere isolation
	// keeps on the management path.
	ManagementNICs []string `json:"management_nics,omitempty"`
	// ManagementPortgroup is where isolation moves ManagementNICs, if set.
	ManagementPortgroup string         `json:"management_portgroup,omitempty"`
	Agent               string         `json:"agent,omitempty"`
	WireGuard           *WireGuardEnd  `json:"wireguard,omitempty"`
	StrongSwan          *StrongSwanEnd `json:"strongswan,omitempty"`
	Posture             Posture        `json:"posture"`
}

// WireGuardEnd is a gateway's WireGuard device.
type WireGuardEnd struct {
	Device    string `json:"device"`
	Endpoint  string `json:"endpoint,omitempty"`
	PublicKey string `json:"public_key,omitempty"`
}

// StrongSwanEnd is a gateway's IKE side.
type StrongSwanEnd struct {
	Identity          string `json:"identity"`
	Auth              string `json:"auth,omitempty"`
	CertificateSerial string `json:"certificate_serial,omitempty"`
}

// Posture is what a gateway should be (Desired) and what the providers
// last saw (Observed).
type Posture struct {
	Gateway        string          `json:"gateway"`
	Desired        string          `json:"desired"`
	Incident       string          `json:"incident,omitempty"`
	Observed       string          `json:"observed,omitempty"`
	ObservedDetail json.RawMessage `json:"observed_detail,omitempty"`
	ObservedAt     time.Time       `json:"observed_at,omitzero"`
	UpdatedAt      time.Time       `json:"updated_at"`
}

// GatewayList is the answer of GET /v1/gateways.
type GatewayList struct {
	Gateways []Gateway `json:"gateways"`
}
