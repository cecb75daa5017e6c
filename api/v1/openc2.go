package v1

import "encoding/json"

// OpenC2 over HTTPS at POST /.well-known/openc2: Warden is an OpenC2
// Consumer implementing the Stateless Packet Filtering actuator profile
// (SLPF) over its fleet-wide block set. The types below are the wire
// shapes of
//
//   - the OpenC2 Language Specification v1.0 (OASIS CS02, "LS"):
//     Command (LS 3.3.1), Args (LS 3.3.1.4), Response (LS 3.3.2), Results
//     (LS 3.3.2.2), IPv4/IPv6-Connection (LS 3.4.1.10, 3.4.1.12);
//   - the SLPF profile v1.0 (OASIS CS01): its Args (SLPF 2.1.3.2), its
//     Target slpf:rule_number (SLPF 2.1.2.2) and Results (SLPF 2.2.2);
//   - the HTTPS transfer specification: the v1.1 message envelope
//     (HTTPS v1.1 CS01 3.3.2) and the v1.0 bare Command/Response (HTTPS
//     v1.0 CS01 3.2.1), told apart by their content types.
//
// Warden's own extension uses the namespace "x-warden" (LS 3.1.4: a
// non-standard namespace starts with "x-").

// Content types and the request id header of the HTTPS transfer
// specifications.
const (
	// OpenC2ContentType is the content type of every message of HTTPS
	// v1.1 (3.3.1): an OpenC2Message envelope, both ways.
	OpenC2ContentType = "application/openc2+json;version=1.0"
	// OpenC2CommandContentType is HTTPS v1.0's (3.2.1) type of a bare
	// OpenC2Command; the answer is a bare OpenC2Response of
	// OpenC2ResponseContentType.
	OpenC2CommandContentType  = "application/openc2-cmd+json;version=1.0"
	OpenC2ResponseContentType = "application/openc2-rsp+json;version=1.0"
	// OpenC2RequestIDHeader carries the request id beside the envelope's
	// headers.request_id (HTTPS v1.1 3.3.3; HTTPS v1.0 3.3).
	OpenC2RequestIDHeader = "X-Request-ID"
)

// OpenC2Message is the envelope of HTTPS v1.1 (3.3.2, after LS 3.2): a
// Producer sends body.openc2.request, the Consumer answers
// body.openc2.response.
type OpenC2Message struct {
	Headers *OpenC2Headers `json:"headers,omitempty"`
	Body    OpenC2Body     `json:"body"`
	// Signature is accepted and not checked: the caller is authenticated
	// by the transport (token or mutual TLS).
	Signature string `json:"signature,omitempty"`
}

// OpenC2Headers are the message's headers (LS 3.2 Table 3-1).
type OpenC2Headers struct {
	// RequestID identifies the command; the response carries it back.
	RequestID string `json:"request_id,omitempty"`
	// Created is a Date-Time: milliseconds since the Unix epoch (LS 3.4.2.2).
	Created int64 `json:"created,omitempty"`
	// From and To are informational: who acts is the authenticated
	// caller, never a name in the body.
	From string   `json:"from,omitempty"`
	To   []string `json:"to,omitempty"`
}

// OpenC2Body is the message body: a choice with one member, openc2.
type OpenC2Body struct {
	OpenC2 *OpenC2Content `json:"openc2,omitempty"`
}

// OpenC2Content holds exactly one of a request (a command), a response
// or a notification. Warden takes requests only.
type OpenC2Content struct {
	Request      *OpenC2Command  `json:"request,omitempty"`
	Response     *OpenC2Response `json:"response,omitempty"`
	Notification json.RawMessage `json:"notification,omitempty"`
}

// OpenC2Command is an OpenC2 Command (LS 3.3.1) as Warden takes it: the
// action/target pairs of QueryFeatures (Results.Pairs), with the SLPF
// arguments. The server reads the target, arguments and actuator member
// by member, so that a target or argument it does not implement gets 501
// rather than a decoding error.
type OpenC2Command struct {
	// Action is "deny", "allow", "delete" or "query" (LS 3.3.1.1).
	Action string       `json:"action"`
	Target OpenC2Target `json:"target"`
	Args   *OpenC2Args  `json:"args,omitempty"`
	// Actuator is {"slpf": {...specifiers}} (SLPF 2.1.4) or absent: the
	// specifiers are recorded, and the block is fleet-wide.
	Actuator map[string]map[string]any `json:"actuator,omitempty"`
	// CommandID identifies the command when the message carries no
	// request id (LS 3.3.1).
	CommandID string `json:"command_id,omitempty"`
}

// OpenC2Target is a choice (LS 3.3.1.2): set exactly one member.
type OpenC2Target struct {
	// IPv4Net and IPv6Net are an address or a CIDR range
	// ("198.51.100.0/24"; LS 3.4.1.9, 3.4.1.11).
	IPv4Net        *string           `json:"ipv4_net,omitempty"`
	IPv6Net        *string           `json:"ipv6_net,omitempty"`
	IPv4Connection *OpenC2Connection `json:"ipv4_connection,omitempty"`
	IPv6Connection *OpenC2Connection `json:"ipv6_connection,omitempty"`
	// Features are what "query features" asks for (LS 3.4.1.5):
	// "versions", "profiles", "pairs", "rate_limit". A pointer, so that
	// an empty list (a heartbeat) is sent as [].
	Features *[]string `json:"features,omitempty"`
	// SLPFRuleNumber is the rule "delete" removes (SLPF 2.1.2.2): a
	// block's number.
	SLPFRuleNumber *int64 `json:"slpf:rule_number,omitempty"`
}

// OpenC2Connection is an IPv4- or IPv6-Connection (LS 3.4.1.10,
// 3.4.1.12): at least one member set; an absent one means any.
type OpenC2Connection struct {
	SrcAddr string `json:"src_addr,omitempty"`
	SrcPort *int   `json:"src_port,omitempty"`
	DstAddr string `json:"dst_addr,omitempty"`
	DstPort *int   `json:"dst_port,omitempty"`
	// Protocol is "icmp", "tcp", "udp" or "sctp" (LS 3.4.2.10).
	Protocol string `json:"protocol,omitempty"`
}

// OpenC2Args are a command's arguments (LS 3.3.1.4), with the SLPF
// profile's (SLPF 2.1.3.2) and Warden's own in their namespaces.
type OpenC2Args struct {
	// StartTime and StopTime are Date-Times (milliseconds since the Unix
	// epoch), Duration is milliseconds; at most two of the three.
	StartTime *int64 `json:"start_time,omitempty"`
	StopTime  *int64 `json:"stop_time,omitempty"`
	Duration  *int64 `json:"duration,omitempty"`
	// ResponseRequested is "none", "ack", "status" or "complete" (the
	// default).
	ResponseRequested string        `json:"response_requested,omitempty"`
	SLPF              *SLPFArgs     `json:"slpf,omitempty"`
	Warden            *OpenC2Warden `json:"x-warden,omitempty"`
}

// SLPFArgs are the SLPF profile's arguments (SLPF 2.1.3.2). Warden
// honours drop_process "none", persistent true and direction "both" (the
// defaults), and refuses the others with 501.
type SLPFArgs struct {
	DropProcess string `json:"drop_process,omitempty"`
	Persistent  *bool  `json:"persistent,omitempty"`
	Direction   string `json:"direction,omitempty"`
	InsertRule  *int64 `json:"insert_rule,omitempty"`
}

// OpenC2Warden is Warden's argument namespace ("x-warden") on deny.
type OpenC2Warden struct {
	// Kind is what the addresses are (an indicator kind: "c2_beacon",
	// the default, "exfiltration", …).
	Kind string `json:"kind,omitempty"`
	// Name is a human line for the block.
	Name string `json:"name,omitempty"`
}

// OpenC2Response is an OpenC2 Response (LS 3.3.2).
type OpenC2Response struct {
	// Status is an OpenC2 status code (LS 3.3.2.1): 102 (accepted, not
	// complete: a block waiting for a person's approval), 200, 400, 401,
	// 403, 404, 500, 501, 503.
	Status     int            `json:"status"`
	StatusText string         `json:"status_text,omitempty"`
	Results    *OpenC2Results `json:"results,omitempty"`
}

// OpenC2Results are a response's results (LS 3.3.2.2).
type OpenC2Results struct {
	Versions []string `json:"versions,omitempty"`
	Profiles []string `json:"profiles,omitempty"`
	// Pairs maps each action to its targets (LS 3.4.2.1).
	Pairs map[string][]string `json:"pairs,omitempty"`
	// RateLimit is the commands per minute Warden takes.
	RateLimit float64       `json:"rate_limit,omitempty"`
	SLPF      *SLPFResults  `json:"slpf,omitempty"`
	Warden    *OpenC2Blocks `json:"x-warden,omitempty"`
}

// SLPFResults carry the rule number of a deny or allow (SLPF 2.2.2): the
// block's number, which "delete slpf:rule_number" takes.
type SLPFResults struct {
	RuleNumber int64 `json:"rule_number"`
}

// OpenC2Blocks is what Warden adds to a response about blocks
// ("x-warden" results).
type OpenC2Blocks struct {
	// State is the block's state ("active", "pending_approval", …).
	State string `json:"state,omitempty"`
	// RuleNumbers are every block an allow withdrew.
	RuleNumbers []int64 `json:"rule_numbers,omitempty"`
	// Unsafe says why the block waits for a person's approval.
	Unsafe []string `json:"unsafe,omitempty"`
	// ExpiresAt is a Date-Time (milliseconds since the Unix epoch).
	ExpiresAt int64 `json:"expires_at,omitempty"`
}
