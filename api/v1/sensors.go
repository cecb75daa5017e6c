package v1

import "time"

// GatewaySensors is what a gateway's sensors watch and have learned, as
// its agent reports it (GET /v1/gateways/{id}/sensors).
type GatewaySensors struct {
	Gateway string `json:"gateway"`
	// Enabled names the watchers running: auth, conn, volume, health,
	// config.
	Enabled []string `json:"enabled"`
	// Learning is true while the learning period runs.
	Learning        bool      `json:"learning"`
	LearningStarted time.Time `json:"learning_started"`
	LearningEnds    time.Time `json:"learning_ends"`
	// AdminSources are the addresses administrators logged in from.
	AdminSources      []AdminSource `json:"admin_sources"`
	Destinations      int           `json:"destinations"`
	DestinationSample []string      `json:"destination_sample"`
	Profiles          int           `json:"profiles"`
	// Queued findings wait for the controller; Dropped were dropped by
	// the agent's bounded queue.
	Queued  int   `json:"queued"`
	Dropped int64 `json:"dropped"`
}

// AdminSource is one address administrators logged in from.
type AdminSource struct {
	Address   string    `json:"address"`
	Users     []string  `json:"users"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	Count     int64     `json:"count"`
}
