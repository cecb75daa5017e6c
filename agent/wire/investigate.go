package wire

import "time"

// KindInvestigate collects, for a time window, what the gateway recorded
// of an intrusion: logs, logins, connection records and counters,
// configuration and package history, shell histories and processes (see
// InvestigateParams). It only reads.
const KindInvestigate = "investigate"

// Bounds of one investigation's answer, which must fit MaxResponseBytes.
const (
	// MaxInvestigateEvents bounds the normalised events of one answer.
	MaxInvestigateEvents = 10000
	// MaxInvestigateArtefactBytes bounds one artefact, and
	// MaxInvestigateTotalBytes all of them together (base64 in JSON and
	// the events must stay inside MaxResponseBytes); a longer one is cut
	// at a line and the cut is named as a gap.
	MaxInvestigateArtefactBytes = 3 << 20
	MaxInvestigateTotalBytes    = 7 << 20
)

// InvestigateParams asks for everything the gateway recorded between Since
// and Until (the controller's clock; the agent widens the window by its
// tolerated clock skew).
type InvestigateParams struct {
	Incident string    `json:"incident,omitempty"`
	Since    time.Time `json:"since"`
	Until    time.Time `json:"until"`
}

// InvestigateResult is the collection: every artefact as read (hashed),
// the events the agent read out of them, connection records with their
// byte counts, and what could not be collected and why.
type InvestigateResult struct {
	Host string `json:"host"`
	// Started and AgentTime are the agent's clock when it began and when
	// it finished: with the times the controller sent the command and
	// received the answer they measure the clock offset between the two
	// (as NTP does), however long the collection took.
	Started   time.Time `json:"started"`
	AgentTime time.Time `json:"agent_time"`
	Since     time.Time `json:"since"`
	Until     time.Time `json:"until"`
	// Addresses are the gateway's own addresses on every interface
	// (tunnel interfaces included): connections from them are the
	// gateway's.
	Addresses []string        `json:"addresses,omitempty"`
	Artefacts []Artefact      `json:"artefacts"`
	Events    []TimelineEvent `json:"events"`
	Flows     []Flow          `json:"flows,omitempty"`
	Gaps      []Gap           `json:"gaps,omitempty"`
}

// Event sources.
const (
	SourceJournal      = "journald"
	SourceLogFile      = "logfile"
	SourceWtmp         = "wtmp"
	SourceBtmp         = "btmp"
	SourceLastlog      = "lastlog"
	SourceConntrack    = "conntrack"
	SourcePackages     = "packages"
	SourceConfig       = "config"
	SourceShellHistory = "shell_history"
	SourceProcess      = "process"
	SourceTunnel       = "tunnel"
)

// Event actions the controller's timeline reasons about.
const (
	ActionLoginFailed   = "login_failed"
	ActionLoginAccepted = "login_accepted"
	ActionSudo          = "sudo"
	ActionConfigChanged = "config_changed"
	ActionPackage       = "package"
	ActionCommand       = "command"
	ActionProcessStart  = "process_start"
	ActionConnection    = "connection"
	ActionTunnel        = "tunnel"
	ActionLog           = "log"
)

// TimelineEvent is one thing the gateway recorded, normalised: when, who
// (Actor), did what (Action) to what (Object), from where (Address), and
// where it was read (Artefact and its 1-based Line).
type TimelineEvent struct {
	Time time.Time `json:"time"`
	// TimeApprox marks a time the record does not state exactly (a syslog
	// line without a year, a connection without a start time: when it was
	// seen).
	TimeApprox bool   `json:"time_approx,omitempty"`
	Source     string `json:"source"`
	Actor      string `json:"actor,omitempty"`
	Action     string `json:"action"`
	Object     string `json:"object,omitempty"`
	// Address is the remote address involved, when there is one.
	Address string `json:"address,omitempty"`
	Outcome string `json:"outcome,omitempty"`
	// Message is the record as the gateway wrote it (bounded).
	Message  string `json:"message"`
	Artefact string `json:"artefact"`
	Line     int    `json:"line,omitempty"`
	// Detail holds what the action adds: a configuration change's hashes
	// and unified diff (secrets redacted), a package's versions.
	Detail map[string]string `json:"detail,omitempty"`
}

// Flow is one connection record with its byte counts (conntrack).
type Flow struct {
	Proto   string `json:"proto"`
	Src     string `json:"src"`
	Dst     string `json:"dst"`
	SrcPort uint16 `json:"sport,omitempty"`
	DstPort uint16 `json:"dport,omitempty"`
	// OrigBytes went from Src to Dst, ReplyBytes back; both zero and
	// Accounted false when the kernel does not count
	// (net.netfilter.nf_conntrack_acct = 0).
	OrigBytes    uint64 `json:"orig_bytes"`
	ReplyBytes   uint64 `json:"reply_bytes"`
	OrigPackets  uint64 `json:"orig_packets"`
	ReplyPackets uint64 `json:"reply_packets"`
	Accounted    bool   `json:"accounted"`
	// Start is when the kernel began tracking it (zero unless
	// net.netfilter.nf_conntrack_timestamp = 1); SeenAt is when the record
	// was read.
	Start  time.Time `json:"start,omitzero"`
	SeenAt time.Time `json:"seen_at"`
	State  string    `json:"state,omitempty"`
	// Artefact is where the record is kept.
	Artefact string `json:"artefact"`
}

// Gap is something that could not be collected, and why.
type Gap struct {
	What string `json:"what"`
	Why  string `json:"why"`
}
