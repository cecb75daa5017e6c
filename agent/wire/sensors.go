package wire

import "time"

// Finding is one sign a gateway's sensor saw (agent/sensors): what the
// agent queues on disk and delivers to the controller over mutual TLS,
// which turns it into an indicator about the gateway whose certificate
// delivered it (never one named in the finding).
type Finding struct {
	// Kind is the indicator kind: auth_failure_burst,
	// off_hours_admin_login, new_admin_source, unknown_destination,
	// traffic_spike, crash, config_change.
	Kind string `json:"kind"`
	// Severity is low, medium, high or critical.
	Severity string `json:"severity"`
	// Confidence is 0..1.
	Confidence float64 `json:"confidence"`
	Summary    string  `json:"summary"`
	// IPs and Domains are the observables.
	IPs     []string          `json:"ips,omitempty"`
	Domains []string          `json:"domains,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
	// Evidence holds what triggered the finding (log lines, counters,
	// conntrack entries), secrets redacted.
	Evidence   []string  `json:"evidence,omitempty"`
	ObservedAt time.Time `json:"observed_at"`
	// Key identifies "the same sign" for the controller's fingerprint
	// ("auth_failure_burst/sshd/198.51.100.9").
	Key string `json:"key"`
	// Sensor names the watcher: auth, conn, volume, health, config.
	Sensor string `json:"sensor"`
}

// FindingsPath is the controller's route for findings, served only on its
// mutual-TLS listener for agents (server.agent_listen), never on the
// public API.
const FindingsPath = "/v1/agent/findings"

// FindingBatch is the body an agent posts to the controller's
// /v1/agent/findings.
type FindingBatch struct {
	Findings []Finding `json:"findings"`
}

// KindSensors reads what the gateway's sensors have learned (no
// parameters; answers SensorsSummary).
const KindSensors = "sensors"

// SensorsSummary is what a gateway's sensors watch and have learned.
type SensorsSummary struct {
	// Enabled names the watchers running (auth, conn, volume, health,
	// config).
	Enabled []string `json:"enabled"`
	// Learning is true while the learning period runs: new destinations
	// and admin sources are learned, not reported.
	Learning        bool      `json:"learning"`
	LearningStarted time.Time `json:"learning_started"`
	LearningEnds    time.Time `json:"learning_ends"`
	// AdminSources are the addresses administrators logged in from.
	AdminSources []LearnedSource `json:"admin_sources,omitempty"`
	// Destinations is how many destinations (address, port, protocol)
	// were seen; DestinationSample shows some of them.
	Destinations      int      `json:"destinations"`
	DestinationSample []string `json:"destination_sample,omitempty"`
	// Profiles is how many traffic profile cells (link or tunnel,
	// direction, hour of week) have samples.
	Profiles int `json:"profiles"`
	// Queued and Dropped are the findings waiting for the controller and
	// those the bounded queue had to drop.
	Queued  int   `json:"queued"`
	Dropped int64 `json:"dropped"`
}

// LearnedSource is one address administrators logged in from.
type LearnedSource struct {
	Address   string    `json:"address"`
	Users     []string  `json:"users"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	Count     int64     `json:"count"`
}
