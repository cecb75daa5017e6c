package api

// The OpenC2 actuator: POST /.well-known/openc2 makes Warden an OpenC2
// Consumer of the Stateless Packet Filtering profile (SLPF) whose packet
// filter is the fleet-wide block set. References, cited below by section:
//
//   - LS: Open Command and Control (OpenC2) Language Specification
//     Version 1.0, OASIS Committee Specification 02 (oc2ls-v1.0-cs02).
//   - SLPF: OpenC2 Profile for Stateless Packet Filtering Version 1.0,
//     OASIS Committee Specification 01 (oc2slpf-v1.0-cs01).
//   - HTTPS v1.0 / v1.1: Specification for Transfer of OpenC2 Messages via
//     HTTPS, Version 1.0 CS01 (bare command, application/openc2-cmd+json)
//     and Version 1.1 CS01 (the message envelope, application/openc2+json,
//     the /.well-known/openc2 path).
//
// The mapping onto blocks:
//
//   - deny ipv4_net / ipv6_net blocks the range at every gateway, both
//     ways (the block set drops source and destination);
//   - deny ipv4_connection / ipv6_connection blocks the connection's
//     remote address (remoteOf says which one); its ports and protocol are
//     recorded, not enforced: a block is a whole address;
//   - allow of the same targets withdraws Warden's blocks of exactly that
//     range (Warden keeps no allow rules: it lifts its own blocks);
//   - delete slpf:rule_number withdraws the block of that number;
//   - query features answers versions, profiles, pairs and rate_limit.
//
// A block's number is its SLPF rule number. Who acts is the authenticated
// caller, never the message's "from". The handler decides nothing about
// safety: the block unit judges each request, and one that needs a
// person's approval is answered 102 ("accepted, not complete").

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"mime"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/google/uuid"
	"golang.org/x/time/rate"

	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/controller"
	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/internal/clock"
	"github.com/warden-ir/warden/store"
)

// BlockService is what the OpenC2 actuator needs of the controller's
// block unit.
type BlockService interface {
	// RequestBlocks records blocks (durably, before it returns); a second
	// request with the same Source and Ref returns the recorded block.
	RequestBlocks(ctx context.Context, actor string, reqs []controller.BlockRequest) ([]controller.BlockOutcome, error)
	// WithdrawBlock lifts block number; an unknown number is
	// store.ErrNotFound.
	WithdrawBlock(ctx context.Context, actor string, number int64, reason string) (controller.Block, error)
	// Blocks lists blocks of f.State, at most f.Limit, newest first.
	Blocks(ctx context.Context, f controller.BlockFilter) ([]controller.Block, error)
	// FleetOwns says whether p touches the fleet's own networks or
	// addresses (a connection's side that is never the remote one).
	FleetOwns(p netip.Prefix) bool
}

const (
	// OpenC2Path is where OpenC2 commands are posted (HTTPS v1.1 3.2.2).
	OpenC2Path = "/.well-known/openc2"
	// DefaultOpenC2RateLimit is the commands per minute the actuator
	// takes when its caller names no limit; query features reports it.
	DefaultOpenC2RateLimit = 120
	// openC2Source is the Source of the blocks OpenC2 asks for.
	openC2Source = "openc2"
	// maxRequestID bounds a request id: it becomes a block's Ref and is
	// echoed in a header.
	maxRequestID = 128
	// maxDateTime is 9999-12-31T23:59:59.999Z in milliseconds: later
	// Date-Times (LS 3.4.2.2) are refused rather than overflowing.
	maxDateTime = 253402300799999
	// startSkew is how far in the future an allow's or delete's
	// start_time may be and still count as now (clocks differ).
	startSkew = time.Minute
	// allowScan is how many blocks of a state allow reads to find those
	// of its target: every one in force, at any fleet's scale (the IoC
	// sets are sized for 100,000 prefixes).
	allowScan = 1 << 20
)

// openC2Pairs are the action/target pairs Warden implements: SLPF's
// Command Matrix (SLPF Table 2.3-1) without "update file".
var openC2Pairs = map[string][]string{
	"allow":  {"ipv4_net", "ipv6_net", "ipv4_connection", "ipv6_connection"},
	"deny":   {"ipv4_net", "ipv6_net", "ipv4_connection", "ipv6_connection"},
	"query":  {"features"},
	"delete": {"slpf:rule_number"},
}

// openC2Args are the arguments each action takes (SLPF Table 2.3-2, and
// LS 4.1 for query features); "x-warden" is Warden's own namespace.
var openC2Args = map[string][]string{
	"deny":   {"start_time", "stop_time", "duration", "response_requested", "slpf", "x-warden"},
	"allow":  {"start_time", "stop_time", "duration", "response_requested", "slpf"},
	"delete": {"start_time", "response_requested"},
	"query":  {"response_requested"},
}

// lsActions and lsTargets are every Action and Target the Language
// Specification defines (LS 3.3.1.1, 3.3.1.2): one of them that Warden
// does not implement is 501 (not implemented), anything else 400 (not
// OpenC2).
var (
	lsActions = []string{"scan", "locate", "query", "deny", "contain", "allow", "start", "stop", "restart", "cancel",
		"set", "update", "redirect", "create", "delete", "detonate", "restore", "copy", "investigate", "remediate"}
	lsTargets = []string{"artifact", "command", "device", "domain_name", "email_addr", "features", "file",
		"idn_domain_name", "idn_email_addr", "ipv4_net", "ipv6_net", "ipv4_connection", "ipv6_connection",
		"iri", "mac_addr", "process", "properties", "uri", "slpf:rule_number"}
	lsFeatures = []string{"versions", "profiles", "pairs", "rate_limit"}
)

// responseType is a command's response_requested (LS 3.4.2.15).
type responseType string

const (
	respondNone     responseType = "none"
	respondAck      responseType = "ack"
	respondStatus   responseType = "status"
	respondComplete responseType = "complete"
)

// openC2Failure is a command Warden answers with an error status: 400
// for what is not a valid command, 501 for what it does not implement
// (LS 3.3.2.1).
type openC2Failure struct {
	status int
	text   string
}

func (f *openC2Failure) Error() string { return f.text }

func badCommand(format string, args ...any) *openC2Failure {
	return &openC2Failure{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

func notImplemented(format string, args ...any) *openC2Failure {
	return &openC2Failure{http.StatusNotImplemented, fmt.Sprintf(format, args...)}
}

func (f *openC2Failure) response() v1.OpenC2Response {
	return v1.OpenC2Response{Status: f.status, StatusText: f.text}
}

// openC2Style is the transfer specification version a producer speaks.
type openC2Style int

const (
	// styleMessage: HTTPS v1.1, the message envelope both ways.
	styleMessage openC2Style = iota
	// styleBare: HTTPS v1.0, a bare command and a bare response.
	styleBare
	// styleSniff: application/json or no Content-Type: the body says.
	styleSniff
)

// openC2Request is a decoded transfer: the command and its request id.
type openC2Request struct {
	style openC2Style
	// requestID correlates the response (LS 3.2): headers.request_id,
	// else X-Request-ID, else command_id, else (bare commands only) one
	// Warden makes.
	requestID string
	command   rawCommand
}

// rawCommand is an OpenC2 Command (LS 3.3.1) with its choices left raw,
// so that each member can be judged by name (400 or 501).
type rawCommand struct {
	Action    string                     `json:"action"`
	Target    map[string]json.RawMessage `json:"target"`
	Args      map[string]json.RawMessage `json:"args"`
	Actuator  map[string]json.RawMessage `json:"actuator"`
	CommandID string                     `json:"command_id"`
}

// slpfCommand is a parsed command Warden implements: a plain value the
// handler then carries out.
type slpfCommand struct {
	action, target string
	requestID      string
	commandID      string
	response       responseType

	// deny and allow
	prefix      netip.Prefix
	from, until time.Time
	kind        indicator.Kind
	name        string
	// notEnforced lists what the target said that a block cannot narrow
	// to (ports, protocol, the connection's other address).
	notEnforced []string
	targetJSON  string
	actuator    string

	features []string // query
	rule     int64    // delete
}

// openC2Handler serves OpenC2 commands over a BlockService.
type openC2Handler struct {
	svc       BlockService
	actor     func(*http.Request) string
	clock     clock.Clock
	perMinute int
	limiter   *rate.Limiter
	maxBody   int64
	log       *slog.Logger
}

// newOpenC2Handler serves POST /.well-known/openc2. actor names the
// authenticated caller; rateLimit is the commands per minute it takes
// (0: no limit), answered 503 beyond it and reported by query features;
// maxBody bounds a body.
func newOpenC2Handler(svc BlockService, actor func(*http.Request) string, clk clock.Clock, rateLimit int, maxBody int64, log *slog.Logger) http.Handler {
	if clk == nil {
		clk = clock.Real
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if maxBody <= 0 {
		maxBody = 1 << 20
	}
	h := &openC2Handler{svc: svc, actor: actor, clock: clk, perMinute: max(rateLimit, 0), maxBody: maxBody, log: log}
	if h.perMinute > 0 {
		h.limiter = rate.NewLimiter(rate.Limit(float64(h.perMinute)/60), h.perMinute)
	}
	return h
}

// ServeHTTP takes one command: rate → read → decode the transfer → parse
// the command → carry it out → answer in the producer's style.
func (h *openC2Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := h.clock.Now()
	req := openC2Request{style: styleMessage, requestID: r.Header.Get(v1.OpenC2RequestIDHeader)}
	if h.limiter != nil && !h.limiter.AllowN(now, 1) {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(60/float64(h.perMinute)))))
		h.reply(w, req, respondComplete, now, v1.OpenC2Response{Status: http.StatusServiceUnavailable,
			StatusText: fmt.Sprintf("more than %d commands a minute; try again after Retry-After", h.perMinute)})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBody))
	if err != nil {
		text := "reading body: " + err.Error()
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			text = fmt.Sprintf("body is larger than %d bytes; a message holds one command (HTTPS v1.1 3.2.1)", h.maxBody)
		}
		h.reply(w, req, respondComplete, now, badCommand("%s", text).response())
		return
	}
	req, fail := decodeOpenC2(r.Header.Get("Content-Type"), body, r.Header.Get(v1.OpenC2RequestIDHeader))
	if fail != nil {
		h.reply(w, req, respondComplete, now, fail.response())
		return
	}
	cmd, fail := parseOpenC2Command(req, now, h.svc.FleetOwns)
	actor := h.actor(r)
	var resp v1.OpenC2Response
	if fail != nil {
		resp = fail.response()
	} else {
		resp = h.execute(r.Context(), actor, cmd)
	}
	h.log.Info("openc2 command", "actor", actor, "action", req.command.Action, "target", targetName(req.command),
		"request_id", req.requestID, "status", resp.Status, "status_text", resp.StatusText)
	h.reply(w, req, cmd.response, now, resp)
}

// reply writes resp in the producer's style. The HTTP status is the
// OpenC2 status (HTTPS v1.0 Table 4-1) but for 102, which HTTP cannot end
// an exchange with (1xx are interim): 202 Accepted, HTTP's own "accepted
// for processing, not complete", carries it, with 102 in the body.
// response_requested "none" is honoured (SLPF 3.2.1.7.1: no Response):
// the body is empty and the status line alone says how it went.
func (h *openC2Handler) reply(w http.ResponseWriter, req openC2Request, rt responseType, now time.Time, resp v1.OpenC2Response) {
	hdr := w.Header()
	hdr.Set("Cache-Control", "no-cache") // HTTPS v1.1 3.2.1
	if req.requestID != "" && validRequestID(req.requestID) {
		hdr.Set(v1.OpenC2RequestIDHeader, req.requestID)
	}
	status := resp.Status
	if status == http.StatusProcessing || (rt == respondNone && status == http.StatusOK) {
		status = http.StatusAccepted
	}
	if rt == respondNone {
		w.WriteHeader(status)
		return
	}
	var payload any = resp
	hdr.Set("Content-Type", v1.OpenC2ResponseContentType)
	if req.style != styleBare {
		hdr.Set("Content-Type", v1.OpenC2ContentType)
		payload = v1.OpenC2Message{
			Headers: &v1.OpenC2Headers{RequestID: req.requestID, Created: now.UnixMilli()},
			Body:    v1.OpenC2Body{OpenC2: &v1.OpenC2Content{Response: &resp}},
		}
	}
	b, err := json.Marshal(payload)
	if err != nil {
		h.log.Error("encoding an OpenC2 response", "err", err)
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// decodeOpenC2 reads the transfer: which version (by Content-Type,
// HTTPS v1.1 3.3.1 / v1.0 3.2.1), the command, and its request id
// (HTTPS v1.1 3.3.3). It answers 400 for anything that is not one
// command.
func decodeOpenC2(contentType string, body []byte, xRequestID string) (openC2Request, *openC2Failure) {
	req := openC2Request{style: styleMessage, requestID: xRequestID}
	style, fail := openC2StyleOf(contentType)
	if fail != nil {
		return req, fail
	}
	if style == styleSniff {
		if style, fail = sniffOpenC2(body); fail != nil {
			return req, fail
		}
	}
	req.style = style
	raw := json.RawMessage(body)
	if style == styleMessage {
		var env struct {
			Headers *v1.OpenC2Headers `json:"headers"`
			Body    struct {
				OpenC2 *struct {
					Request      json.RawMessage `json:"request"`
					Response     json.RawMessage `json:"response"`
					Notification json.RawMessage `json:"notification"`
				} `json:"openc2"`
			} `json:"body"`
			Signature string `json:"signature"`
		}
		if err := decodeStrict(body, &env); err != nil {
			return req, badCommand("decoding the OpenC2 message: %v", err)
		}
		if env.Headers != nil && env.Headers.RequestID != "" {
			req.requestID = env.Headers.RequestID
		}
		switch c := env.Body.OpenC2; {
		case c == nil:
			return req, badCommand("body.openc2 is required: an OpenC2 message (HTTPS v1.1 3.3.2)")
		case len(c.Response) > 0 || len(c.Notification) > 0:
			return req, badCommand("body.openc2 holds a response or notification: Warden is a Consumer and takes requests (commands)")
		case len(c.Request) == 0 || string(c.Request) == "null":
			return req, badCommand("body.openc2.request is required: the command")
		default:
			raw = c.Request
		}
	}
	if err := decodeStrict(raw, &req.command); err != nil {
		return req, badCommand("decoding the command: %v", err)
	}
	return identify(req)
}

// identify settles the request id: the envelope's or X-Request-ID's (one
// is required with the envelope, HTTPS v1.1 3.3.3), else command_id (LS
// 3.3.1), else, for a bare v1.0 command where it is optional, one made
// here and echoed in X-Request-ID.
func identify(req openC2Request) (openC2Request, *openC2Failure) {
	if c := req.command.CommandID; len(c) > 36 || strings.ContainsFunc(c, unicode.IsSpace) {
		return req, badCommand("command_id %q: at most 36 characters, no white space (LS 3.4.2.16)", clip(c, 40))
	}
	if req.requestID == "" {
		req.requestID = req.command.CommandID
	}
	if req.requestID == "" {
		if req.style == styleMessage {
			return req, badCommand("no request id: set headers.request_id or the X-Request-ID header (HTTPS v1.1 3.3.3)")
		}
		req.requestID = uuid.NewString()
	}
	if !validRequestID(req.requestID) {
		id := req.requestID
		req.requestID = ""
		return req, badCommand("request id %q: 1 to %d visible ASCII characters, no spaces", clip(id, 64), maxRequestID)
	}
	return req, nil
}

func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestID {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}

// openC2StyleOf reads a Content-Type: the v1.1 message type, the v1.0
// command type, or plain JSON (left to the body). The version parameter
// names the language's major version (LS 3.2 Table 3-1: application/openc2
// is every 1.x).
func openC2StyleOf(contentType string) (openC2Style, *openC2Failure) {
	if strings.TrimSpace(contentType) == "" {
		return styleSniff, nil
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return styleMessage, badCommand("Content-Type %q: %v", clip(contentType, 100), err)
	}
	var style openC2Style
	switch mt {
	case "application/openc2+json":
		style = styleMessage
	case "application/openc2-cmd+json":
		style = styleBare
	case "application/json":
		return styleSniff, nil
	default:
		return styleMessage, badCommand("Content-Type %q: send %s (or HTTPS v1.0's %s)", clip(mt, 100), v1.OpenC2ContentType, v1.OpenC2CommandContentType)
	}
	if v, ok := params["version"]; ok {
		if major, _, _ := strings.Cut(v, "."); major != "1" {
			return style, badCommand("Content-Type version %q: Warden speaks OpenC2 1.0", clip(v, 20))
		}
	}
	return style, nil
}

// sniffOpenC2 tells an envelope ("body") from a bare command ("action").
func sniffOpenC2(body []byte) (openC2Style, *openC2Failure) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return styleMessage, badCommand("decoding the OpenC2 message: %v", err)
	}
	switch {
	case top["body"] != nil:
		return styleMessage, nil
	case top["action"] != nil:
		return styleBare, nil
	}
	return styleMessage, badCommand("neither an OpenC2 message (no body) nor a command (no action)")
}

// decodeStrict decodes exactly one JSON value into v, refusing members v
// does not have.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("unexpected data after the JSON value (one OpenC2 message per body)")
	}
	return nil
}

func targetName(c rawCommand) string {
	for name := range c.Target {
		return name
	}
	return ""
}

// parseOpenC2Command judges a command against the Language Specification
// and the SLPF profile and returns what Warden will do. cmd.response is
// set even when it fails, so that the refusal honours "none".
func parseOpenC2Command(req openC2Request, now time.Time, own func(netip.Prefix) bool) (slpfCommand, *openC2Failure) {
	raw := req.command
	cmd := slpfCommand{action: raw.Action, requestID: req.requestID, commandID: raw.CommandID, response: respondComplete, kind: indicator.C2Beacon}
	if rt, ok := peekResponseType(raw.Args); ok {
		cmd.response = rt
	}
	if err := checkPair(raw, &cmd); err != nil {
		return cmd, err
	}
	if err := parseArgs(raw, &cmd, now); err != nil {
		return cmd, err
	}
	if err := parseActuator(raw.Actuator, &cmd); err != nil {
		return cmd, err
	}
	return cmd, parseTarget(raw.Target[cmd.target], &cmd, own)
}

// checkPair finds the action and the one target (LS 3.3.1.1, 3.3.1.2,
// 5.1-2, 5.1-3) and checks that Warden implements the pair.
func checkPair(raw rawCommand, cmd *slpfCommand) *openC2Failure {
	if raw.Action == "" {
		return badCommand("action is required (LS 3.3.1)")
	}
	if len(raw.Target) != 1 {
		return badCommand("target must hold exactly one member (LS 3.3.1.2), it holds %d", len(raw.Target))
	}
	cmd.target = targetName(raw)
	if !slices.Contains(lsActions, raw.Action) {
		return badCommand("Validation Error: Action: %q is not an OpenC2 action (LS 3.3.1.1)", clip(raw.Action, 40))
	}
	if !slices.Contains(lsTargets, cmd.target) {
		if nsid, _, ok := strings.Cut(cmd.target, ":"); ok && nsid != "slpf" {
			return notImplemented("Target type not supported: %q (Warden implements the slpf profile)", clip(cmd.target, 40))
		}
		return badCommand("Validation Error: Target: %q is not an OpenC2 target (LS 3.3.1.2)", clip(cmd.target, 40))
	}
	targets, ok := openC2Pairs[raw.Action]
	if !ok {
		return notImplemented("Command not supported: %s (Warden implements %s)", raw.Action, pairList())
	}
	if !slices.Contains(targets, cmd.target) {
		return notImplemented("Target type not supported: %s %s (Warden implements %s)", raw.Action, cmd.target, pairList())
	}
	return nil
}

func pairList() string {
	var out []string
	for _, a := range []string{"deny", "allow", "delete", "query"} {
		out = append(out, a+" "+strings.Join(openC2Pairs[a], "|"))
	}
	return strings.Join(out, ", ")
}

// peekResponseType reads response_requested before anything else is
// judged.
func peekResponseType(args map[string]json.RawMessage) (responseType, bool) {
	var s string
	if json.Unmarshal(args["response_requested"], &s) != nil {
		return "", false
	}
	switch rt := responseType(s); rt {
	case respondNone, respondAck, respondStatus, respondComplete:
		return rt, true
	}
	return "", false
}

// commandArgs are the decoded arguments of a command.
type commandArgs struct {
	start, stop, duration *int64
	response              string
	slpf                  *v1.SLPFArgs
	warden                *v1.OpenC2Warden
}

// parseArgs decodes the arguments (LS 3.3.1.4, SLPF 2.1.3), checks that
// each applies to the action (SLPF Table 2.3-2, LS 4.1), and applies
// them to cmd: 400 for what is not valid, 501 for what Warden cannot
// honour.
func parseArgs(raw rawCommand, cmd *slpfCommand, now time.Time) *openC2Failure {
	if raw.Args != nil && len(raw.Args) == 0 {
		return badCommand("args must hold at least one argument when present (LS 3.3.1)")
	}
	var a commandArgs
	for _, name := range slices.Sorted(maps.Keys(raw.Args)) {
		if err := decodeArg(name, raw.Args[name], &a); err != nil {
			return err
		}
		if !slices.Contains(openC2Args[cmd.action], name) {
			if cmd.action == "query" {
				return badCommand("query features takes no argument but response_requested (LS 4.1); args.%s given", name)
			}
			return badCommand("args.%s does not apply to %s %s (SLPF Table 2.3-2)", name, cmd.action, cmd.target)
		}
	}
	if a.response != "" {
		cmd.response = responseType(a.response)
	}
	if cmd.action == "query" && cmd.response != respondComplete {
		return badCommand("query features takes response_requested \"complete\" only (LS 4.1), got %q", a.response)
	}
	if err := applySLPFArgs(a.slpf, cmd); err != nil {
		return err
	}
	if a.warden != nil {
		if err := applyWardenArgs(*a.warden, cmd); err != nil {
			return err
		}
	}
	if cmd.action == "deny" {
		var err *openC2Failure
		cmd.from, cmd.until, err = blockWindow(a, now)
		return err
	}
	return immediateOnly(a, cmd, now)
}

// decodeArg decodes one argument by name. Extension namespaces are
// members named by their namespace (LS 3.1.4): "slpf", "x-warden".
func decodeArg(name string, raw json.RawMessage, a *commandArgs) *openC2Failure {
	if string(raw) == "null" {
		return badCommand("args.%s must not be null", name)
	}
	var err error
	switch name {
	case "start_time":
		err = decodeMillis(raw, &a.start)
	case "stop_time":
		err = decodeMillis(raw, &a.stop)
	case "duration":
		err = decodeMillis(raw, &a.duration)
	case "response_requested":
		if err = json.Unmarshal(raw, &a.response); err == nil {
			if _, ok := peekResponseType(map[string]json.RawMessage{name: raw}); !ok {
				return badCommand("args.response_requested %q: none, ack, status or complete (LS 3.4.2.15)", clip(a.response, 20))
			}
		}
	case "slpf":
		a.slpf = &v1.SLPFArgs{}
		err = decodeStrict(raw, a.slpf)
	case "x-warden":
		a.warden = &v1.OpenC2Warden{}
		err = decodeStrict(raw, a.warden)
	default:
		if nsid, arg, ok := strings.Cut(name, ":"); ok {
			return badCommand("args.%s: a profile's arguments go in an object named by its namespace, e.g. {\"%s\": {\"%s\": …}} (LS 3.1.4)", clip(name, 40), clip(nsid, 16), clip(arg, 32))
		}
		if strings.HasPrefix(name, "x-") {
			return notImplemented("Option not supported: args.%s (Warden knows the slpf and x-warden namespaces)", clip(name, 40))
		}
		return badCommand("Validation Error: args.%s is not an OpenC2 argument (LS 3.3.1.4)", clip(name, 40))
	}
	if err != nil {
		return badCommand("args.%s: %v", name, err)
	}
	return nil
}

// decodeMillis decodes a Date-Time or Duration: a whole number of
// milliseconds, 0 or more (LS 3.4.2.2, 3.4.2.3).
func decodeMillis(raw json.RawMessage, dst **int64) error {
	var v int64
	if err := json.Unmarshal(raw, &v); err != nil {
		return errors.New("must be a whole number of milliseconds")
	}
	if v < 0 || v > maxDateTime {
		return fmt.Errorf("%d is out of range 0..%d", v, int64(maxDateTime))
	}
	*dst = &v
	return nil
}

// applySLPFArgs honours the SLPF arguments' defaults and refuses the
// others (SLPF 2.1.3.2, 2.3.1, 2.3.2: "Option not supported", 501):
// Warden drops silently, keeps every block across restarts, blocks an
// address both ways, and numbers its rules itself.
func applySLPFArgs(s *v1.SLPFArgs, cmd *slpfCommand) *openC2Failure {
	if s == nil {
		return nil
	}
	if s.DropProcess != "" && cmd.action != "deny" {
		return badCommand("args.slpf.drop_process applies to deny only (SLPF Table 2.3-2)")
	}
	switch s.DropProcess {
	case "", "none":
	case "reject", "false_ack":
		return notImplemented("Option not supported: slpf drop_process %q: Warden drops denied packets without notifying their source (drop_process \"none\")", s.DropProcess)
	default:
		return badCommand("args.slpf.drop_process %q: none, reject or false_ack (SLPF 2.1.3.2)", clip(s.DropProcess, 20))
	}
	if s.Persistent != nil && !*s.Persistent {
		return notImplemented("Option not supported: slpf persistent false: Warden's blocks are durable and survive restarts; it has no blocks that vanish on a restart")
	}
	switch s.Direction {
	case "", "both":
	case "ingress", "egress":
		return notImplemented("Option not supported: slpf direction %q: Warden blocks an address in both directions and cannot narrow a block to %s traffic", s.Direction, s.Direction)
	default:
		return badCommand("args.slpf.direction %q: both, ingress or egress (SLPF 2.1.3.2)", clip(s.Direction, 20))
	}
	if s.InsertRule != nil {
		return notImplemented("Option not supported: slpf insert_rule: Warden numbers its rules itself; the response carries the rule number")
	}
	return nil
}

// applyWardenArgs takes Warden's own arguments on deny: the kind of the
// addresses and a name for the block.
func applyWardenArgs(w v1.OpenC2Warden, cmd *slpfCommand) *openC2Failure {
	if w.Kind != "" {
		if k := indicator.Kind(w.Kind); !k.Valid() {
			return badCommand("args.x-warden.kind %q is not an indicator kind", clip(w.Kind, 40))
		}
		cmd.kind = indicator.Kind(w.Kind)
	}
	if len(w.Name) > 200 {
		return badCommand("args.x-warden.name is longer than 200 bytes")
	}
	cmd.name = strings.TrimSpace(w.Name)
	return nil
}

// blockWindow is when a deny's block is in force (LS 3.3.1.4): at most
// two of start_time, stop_time and duration; none given is from now with
// no end, which Warden bounds by its default lifetime.
func blockWindow(a commandArgs, now time.Time) (from, until time.Time, fail *openC2Failure) {
	if a.start != nil && a.stop != nil && a.duration != nil {
		return from, until, badCommand("start_time, stop_time and duration: at most two of the three (LS 3.3.1.4)")
	}
	if a.duration != nil && *a.duration == 0 {
		return from, until, badCommand("args.duration must be positive")
	}
	ms := func(v *int64) time.Time { return time.UnixMilli(*v).UTC() }
	dur := func() time.Duration { return time.Duration(*a.duration) * time.Millisecond }
	from = now
	switch {
	case a.start != nil && a.stop != nil:
		from, until = ms(a.start), ms(a.stop)
	case a.start != nil && a.duration != nil:
		from = ms(a.start)
		until = from.Add(dur())
	case a.stop != nil && a.duration != nil:
		until = ms(a.stop)
		from = until.Add(-dur())
	case a.start != nil:
		from = ms(a.start)
	case a.stop != nil:
		until = ms(a.stop)
	case a.duration != nil:
		until = now.Add(dur())
	}
	if !until.IsZero() && !until.After(from) {
		return from, until, badCommand("the block would end (%s) before it starts (%s)", until.Format(time.RFC3339Nano), from.Format(time.RFC3339Nano))
	}
	if !until.IsZero() && !until.After(now) {
		return from, until, badCommand("the block would end at %s, which is past: nothing to block", until.Format(time.RFC3339Nano))
	}
	return from, until, nil
}

// immediateOnly refuses timing on allow and delete: Warden lifts a block
// at once and for good, so a later start or a bounded allow (a block that
// comes back) cannot be honoured.
func immediateOnly(a commandArgs, cmd *slpfCommand, now time.Time) *openC2Failure {
	if a.stop != nil || a.duration != nil {
		return notImplemented("Option not supported: stop_time/duration on %s: Warden lifts its blocks at once and for good", cmd.action)
	}
	if a.start != nil && time.UnixMilli(*a.start).After(now.Add(startSkew)) {
		return notImplemented("Option not supported: start_time in the future on %s: Warden lifts its blocks at once", cmd.action)
	}
	return nil
}

// slpfSpecifiers are the SLPF actuator specifiers (SLPF 2.1.4).
type slpfSpecifiers struct {
	Hostname   string   `json:"hostname"`
	NamedGroup string   `json:"named_group"`
	AssetID    string   `json:"asset_id"`
	AssetTuple []string `json:"asset_tuple"`
}

// parseActuator takes an absent actuator or the slpf one: a command
// posted to Warden is for Warden, whose blocks are fleet-wide, so the
// specifiers are recorded, not used to pick gateways. Another profile's
// actuator is not Warden (501).
func parseActuator(act map[string]json.RawMessage, cmd *slpfCommand) *openC2Failure {
	if len(act) == 0 {
		return nil
	}
	if len(act) > 1 {
		return badCommand("actuator must hold exactly one member (LS 3.3.1.3), it holds %d", len(act))
	}
	raw, ok := act["slpf"]
	if !ok {
		for name := range act {
			return notImplemented("Actuator not supported: %q (Warden is an slpf actuator)", clip(name, 40))
		}
	}
	var spec slpfSpecifiers
	if err := decodeStrict(raw, &spec); err != nil {
		return badCommand("actuator.slpf: %v (SLPF 2.1.4)", err)
	}
	if len(spec.AssetTuple) > 10 {
		return badCommand("actuator.slpf.asset_tuple holds more than 10 strings (SLPF 2.1.4)")
	}
	if spec.Hostname != "" || spec.NamedGroup != "" || spec.AssetID != "" || len(spec.AssetTuple) > 0 {
		cmd.actuator = compactJSON(raw)
	}
	return nil
}

// parseTarget decodes the target's value (the pair was checked).
func parseTarget(raw json.RawMessage, cmd *slpfCommand, own func(netip.Prefix) bool) *openC2Failure {
	if string(raw) == "null" {
		return badCommand("target.%s must not be null", cmd.target)
	}
	cmd.targetJSON = compactJSON(raw)
	switch cmd.target {
	case "ipv4_net", "ipv6_net":
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return badCommand("target.%s must be a string: an address or a CIDR range", cmd.target)
		}
		p, err := parseNet(cmd.target == "ipv6_net", s)
		if err != nil {
			return badCommand("target.%s: %v", cmd.target, err)
		}
		cmd.prefix = p
	case "ipv4_connection", "ipv6_connection":
		var c v1.OpenC2Connection
		if err := decodeStrict(raw, &c); err != nil {
			return badCommand("target.%s: %v", cmd.target, err)
		}
		p, notEnforced, fail := remoteOf(cmd.target, c, own)
		if fail != nil {
			return fail
		}
		cmd.prefix, cmd.notEnforced = p, notEnforced
	case "features":
		return parseFeatures(raw, cmd)
	case "slpf:rule_number":
		if err := json.Unmarshal(raw, &cmd.rule); err != nil {
			return badCommand("target.slpf:rule_number must be a whole number (SLPF 2.1.2.2)")
		}
		if cmd.rule <= 0 {
			return badCommand("target.slpf:rule_number %d: Warden's rule numbers are positive", cmd.rule)
		}
	}
	if cmd.name == "" && cmd.prefix.IsValid() {
		cmd.name = fmt.Sprintf("OpenC2 %s %s %s", cmd.action, cmd.target, cmd.prefix)
	}
	return nil
}

// parseNet reads an IPv4-Net or IPv6-Net (LS 3.4.1.9, 3.4.1.11): an
// address (a single host) or address/prefix-length, masked to the range.
func parseNet(v6 bool, s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return p, fmt.Errorf("%q is not a CIDR range", clip(s, 60))
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return p, fmt.Errorf("%q is not an address", clip(s, 60))
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	switch {
	case v6 && !p.Addr().Is6():
		return p, fmt.Errorf("%q is not an IPv6 range (use ipv4_net)", clip(s, 60))
	case !v6 && !p.Addr().Is4():
		return p, fmt.Errorf("%q is not an IPv4 range (use ipv6_net)", clip(s, 60))
	case p.Addr().Is4In6():
		return p, fmt.Errorf("%q is an IPv4-mapped address: use ipv4_net", clip(s, 60))
	}
	return p.Masked(), nil
}

// sharedSpace is 100.64.0.0/10 (RFC 6598), carrier-grade NAT and many
// VPN client pools: a site's own side, like the private ranges.
var sharedSpace = netip.MustParsePrefix("100.64.0.0/10")

// internal says whether p is on a site's own side of a gateway: private,
// shared (CGNAT), loopback, link-local or unspecified, or one of the
// fleet's own networks and addresses (own: the inventory's site and
// management networks and gateway addresses; nil knows none).
func internal(p netip.Prefix, own func(netip.Prefix) bool) bool {
	a := p.Addr()
	return a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsUnspecified() || sharedSpace.Contains(a) ||
		own != nil && own(p)
}

// remoteOf picks the address a connection's deny or allow blocks. A block
// is a remote address, and a site's own addresses must not be blocked,
// so the choice follows the connection itself (SLPF's direction cannot
// narrow a block, and is refused when not "both"):
//
//   - one address given: that one (the other is "any", SLPF 2.3.1.1);
//   - src_addr on a site's own side and dst_addr not: the deny faces
//     egress, and the remote is dst_addr;
//   - otherwise the remote is src_addr, the side that reached in.
//
// The other address, the ports and the protocol are returned as not
// enforced, for the block's labels and the status text. No address at
// all (a rule about ports only, SLPF A.1.2) is not something Warden can
// do: 501.
func remoteOf(target string, c v1.OpenC2Connection, own func(netip.Prefix) bool) (netip.Prefix, []string, *openC2Failure) {
	v6 := target == "ipv6_connection"
	var src, dst netip.Prefix
	var err error
	if c.SrcAddr != "" {
		if src, err = parseNet(v6, c.SrcAddr); err != nil {
			return src, nil, badCommand("target.%s.src_addr: %v", target, err)
		}
	}
	if c.DstAddr != "" {
		if dst, err = parseNet(v6, c.DstAddr); err != nil {
			return dst, nil, badCommand("target.%s.dst_addr: %v", target, err)
		}
	}
	var notEnforced []string
	for name, port := range map[string]*int{"src_port": c.SrcPort, "dst_port": c.DstPort} {
		if port == nil {
			continue
		}
		if *port < 0 || *port > 65535 {
			return netip.Prefix{}, nil, badCommand("target.%s.%s %d is not a port 0..65535 (LS 3.4.2.14)", target, name, *port)
		}
		notEnforced = append(notEnforced, fmt.Sprintf("%s %d", name, *port))
	}
	switch c.Protocol {
	case "":
	case "icmp", "tcp", "udp", "sctp":
		notEnforced = append(notEnforced, "protocol "+c.Protocol)
	default:
		return netip.Prefix{}, nil, badCommand("target.%s.protocol %q: icmp, tcp, udp or sctp (LS 3.4.2.10)", target, clip(c.Protocol, 20))
	}
	if !src.IsValid() && !dst.IsValid() && len(notEnforced) == 0 {
		return netip.Prefix{}, nil, badCommand("target.%s must hold at least one property (LS 3.4.1.10)", target)
	}
	remote, other, otherName := src, dst, "dst_addr"
	switch {
	case !src.IsValid() && !dst.IsValid():
		return netip.Prefix{}, nil, notImplemented("Rule not updated: %s names no address (%s): Warden blocks remote addresses, not ports or protocols",
			target, strings.Join(sorted(notEnforced), ", "))
	case !src.IsValid(), dst.IsValid() && internal(src, own) && !internal(dst, own):
		remote, other, otherName = dst, src, "src_addr"
	}
	if other.IsValid() {
		notEnforced = append(notEnforced, fmt.Sprintf("%s %s", otherName, other))
	}
	return remote, sorted(notEnforced), nil
}

func sorted(s []string) []string {
	slices.Sort(s)
	return s
}

// parseFeatures reads query's features (LS 3.4.1.5): up to ten known
// names; a duplicate counts once.
func parseFeatures(raw json.RawMessage, cmd *slpfCommand) *openC2Failure {
	var fs []string
	if err := json.Unmarshal(raw, &fs); err != nil {
		return badCommand("target.features must be a list of feature names (LS 3.4.1.5)")
	}
	if len(fs) > 10 {
		return badCommand("target.features holds %d names; at most 10 (LS 3.4.1.5)", len(fs))
	}
	for _, f := range fs {
		if !slices.Contains(lsFeatures, f) {
			return badCommand("target.features: %q is not a feature: versions, profiles, pairs or rate_limit (LS 3.4.2.4)", clip(f, 40))
		}
		if !slices.Contains(cmd.features, f) {
			cmd.features = append(cmd.features, f)
		}
	}
	return nil
}

func compactJSON(raw json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return ""
	}
	return clip(b.String(), 512)
}

// execute carries out a parsed command.
func (h *openC2Handler) execute(ctx context.Context, actor string, cmd slpfCommand) v1.OpenC2Response {
	var resp v1.OpenC2Response
	switch cmd.action {
	case "query":
		resp = h.queryFeatures(cmd.features)
	case "deny":
		resp = h.deny(ctx, actor, cmd)
	case "allow":
		resp = h.allow(ctx, actor, cmd)
	case "delete":
		resp = h.deleteRule(ctx, actor, cmd)
	default:
		resp = notImplemented("Command not supported: %s", cmd.action).response()
	}
	if cmd.response == respondAck && (resp.Status == http.StatusOK || resp.Status == http.StatusProcessing) {
		// ack asks for receipt only (LS 3.3.1.4): {"status": 102}.
		resp.Status = http.StatusProcessing
	}
	return resp
}

// queryFeatures answers query features (LS 4.1): each feature asked for,
// and nothing else; no feature is a heartbeat answered 200 alone.
func (h *openC2Handler) queryFeatures(features []string) v1.OpenC2Response {
	var res v1.OpenC2Results
	for _, f := range features {
		switch f {
		case "versions":
			res.Versions = []string{"1.0"}
		case "profiles":
			res.Profiles = []string{"slpf", "x-warden"}
		case "pairs":
			res.Pairs = openC2Pairs
		case "rate_limit":
			res.RateLimit = float64(h.perMinute) // 0 (no limit) leaves it out, as LS 4.1 allows
		}
	}
	resp := v1.OpenC2Response{Status: http.StatusOK}
	if res.Versions != nil || res.Profiles != nil || res.Pairs != nil || res.RateLimit != 0 {
		resp.Results = &res
	}
	return resp
}

// blockRequest is the block a deny asks for.
func (c slpfCommand) blockRequest() controller.BlockRequest {
	labels := map[string]string{"openc2.target": c.targetJSON, "openc2.request_id": c.requestID}
	if c.commandID != "" {
		labels["openc2.command_id"] = c.commandID
	}
	if len(c.notEnforced) > 0 {
		labels["openc2.not_enforced"] = strings.Join(c.notEnforced, ", ")
	}
	if c.actuator != "" {
		labels["openc2.actuator"] = c.actuator
	}
	return controller.BlockRequest{
		Prefixes:   []netip.Prefix{c.prefix},
		Source:     openC2Source,
		Ref:        c.requestID,
		Name:       c.name,
		Kind:       c.kind,
		ValidFrom:  c.from,
		ValidUntil: c.until,
		Labels:     labels,
	}
}

// deny records the block and answers what became of it (SLPF 2.3.2):
// in force 200, waiting for approval 102, each with the rule number.
func (h *openC2Handler) deny(ctx context.Context, actor string, cmd slpfCommand) v1.OpenC2Response {
	outs, err := h.svc.RequestBlocks(ctx, actor, []controller.BlockRequest{cmd.blockRequest()})
	if err != nil {
		return h.serviceFailure(err, "recording the block")
	}
	if len(outs) != 1 {
		return h.serviceFailure(fmt.Errorf("the block unit answered %d outcomes for one request", len(outs)), "recording the block")
	}
	return denyOutcome(outs[0], cmd)
}

// denyOutcome is the response to a deny whose block was recorded.
func denyOutcome(o controller.BlockOutcome, cmd slpfCommand) v1.OpenC2Response {
	b := o.Block
	res := &v1.OpenC2Results{SLPF: &v1.SLPFResults{RuleNumber: b.Number},
		Warden: &v1.OpenC2Blocks{State: string(b.State), Unsafe: b.Unsafe, ExpiresAt: millis(b.ExpiresAt)}}
	var text string
	status := http.StatusOK
	switch b.State {
	case controller.BlockActive:
		text = fmt.Sprintf("rule %d blocks %s at every gateway until %s", b.Number, prefixList(b.Prefixes), b.ExpiresAt.UTC().Format(time.RFC3339))
		if b.ValidFrom.After(b.CreatedAt) {
			text = fmt.Sprintf("rule %d blocks %s at every gateway from %s until %s", b.Number, prefixList(b.Prefixes),
				b.ValidFrom.UTC().Format(time.RFC3339), b.ExpiresAt.UTC().Format(time.RFC3339))
		}
	case controller.BlockPending:
		status = http.StatusProcessing
		text = fmt.Sprintf("accepted, not yet in force: rule %d waits for a person's approval (%s)", b.Number, strings.Join(b.Unsafe, "; "))
	case controller.BlockRefused:
		return v1.OpenC2Response{Status: http.StatusForbidden, Results: res,
			StatusText: fmt.Sprintf("request_id %s is rule %d, which %s refused at approval", cmd.requestID, b.Number, b.DecidedBy)}
	default:
		return v1.OpenC2Response{Status: http.StatusBadRequest, Results: res,
			StatusText: fmt.Sprintf("request_id %s is rule %d, which is %s; a new deny needs a new request_id", cmd.requestID, b.Number, b.State)}
	}
	text += lifetimeNote(b, cmd)
	if !o.Created {
		text += " (request_id already recorded: the same rule)"
	}
	if len(cmd.notEnforced) > 0 {
		text += "; the whole address is blocked, not only " + strings.Join(cmd.notEnforced, ", ")
	}
	return v1.OpenC2Response{Status: status, StatusText: text, Results: res}
}

// lifetimeNote says when the block's end is Warden's rather than the
// command's: with no stop_time LS 3.3.1.4 means "never", which Warden
// bounds by blocks.default_ttl; a later end is cut to blocks.max_ttl.
func lifetimeNote(b controller.Block, cmd slpfCommand) string {
	switch {
	case b.ExpiresAt.IsZero():
		return ""
	case cmd.until.IsZero():
		return " (the command gave no end: Warden's default lifetime)"
	case b.ExpiresAt.Before(cmd.until):
		return fmt.Sprintf(" (the command asked until %s: Warden's maximum lifetime is shorter)", cmd.until.UTC().Format(time.RFC3339))
	}
	return ""
}

func prefixList(ps []netip.Prefix) string {
	var out []string
	for _, p := range ps {
		out = append(out, p.String())
	}
	return strings.Join(out, ", ")
}

func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// allow withdraws Warden's blocks of exactly the target's range (SLPF
// 2.3.1): Warden keeps no allow rules, so "allow" lifts what Warden
// itself blocks and nothing else. A block that covers the range among
// others, or a wider one, stays, and the status text names it. Nothing
// to lift is 404 (LS 3.3.2.1: nothing matching the command).
func (h *openC2Handler) allow(ctx context.Context, actor string, cmd slpfCommand) v1.OpenC2Response {
	var inForce []controller.Block
	for _, st := range []controller.BlockState{controller.BlockActive, controller.BlockPending} {
		bs, err := h.svc.Blocks(ctx, controller.BlockFilter{State: st, Limit: allowScan})
		if err != nil {
			return h.serviceFailure(err, "listing blocks")
		}
		inForce = append(inForce, bs...)
	}
	exact, covering := matchBlocks(inForce, cmd.prefix)
	var also string
	if len(covering) > 0 {
		also = fmt.Sprintf("; rules %s also cover %s among other addresses and stay (delete them by rule number)", numberList(covering), cmd.prefix)
	}
	if len(exact) == 0 {
		return v1.OpenC2Response{Status: http.StatusNotFound, StatusText: fmt.Sprintf("nothing to allow: no Warden block is exactly %s", cmd.prefix) + also}
	}
	reason := fmt.Sprintf("OpenC2 allow %s %s (request_id %s)", cmd.target, cmd.prefix, cmd.requestID)
	var lifted []int64
	for _, n := range exact {
		b, err := h.svc.WithdrawBlock(ctx, actor, n, reason)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) || errors.Is(err, controller.ErrConflict) {
				continue // gone meanwhile
			}
			resp := h.serviceFailure(err, "withdrawing a block")
			if len(lifted) > 0 {
				resp.StatusText += fmt.Sprintf(" (rules %s were withdrawn before it)", numberList(lifted))
			}
			return resp
		}
		if b.State != controller.BlockWithdrawn {
			continue // expired meanwhile, returned as it is
		}
		lifted = append(lifted, n)
	}
	if len(lifted) == 0 {
		return v1.OpenC2Response{Status: http.StatusNotFound, StatusText: fmt.Sprintf("nothing to allow: the blocks of %s were lifted meanwhile", cmd.prefix)}
	}
	return v1.OpenC2Response{Status: http.StatusOK,
		StatusText: fmt.Sprintf("withdrew rules %s: Warden no longer blocks %s", numberList(lifted), cmd.prefix) + also,
		Results: &v1.OpenC2Results{SLPF: &v1.SLPFResults{RuleNumber: lifted[0]},
			Warden: &v1.OpenC2Blocks{State: string(controller.BlockWithdrawn), RuleNumbers: lifted}}}
}

// matchBlocks splits the blocks touching p into those of exactly p and
// those covering it with other addresses.
func matchBlocks(blocks []controller.Block, p netip.Prefix) (exact, covering []int64) {
	for _, b := range blocks {
		touches := false
		for _, q := range b.Prefixes {
			touches = touches || q.Overlaps(p)
		}
		switch {
		case len(b.Prefixes) == 1 && b.Prefixes[0].Masked() == p:
			exact = append(exact, b.Number)
		case touches:
			covering = append(covering, b.Number)
		}
	}
	slices.Sort(exact)
	slices.Sort(covering)
	return slices.Compact(exact), slices.Compact(covering)
}

func numberList(ns []int64) string {
	var out []string
	for _, n := range ns {
		out = append(out, strconv.FormatInt(n, 10))
	}
	return strings.Join(out, ", ")
}

// deleteRule withdraws a block by its rule number (SLPF 2.3.4.1): 200
// once it is lifted, 404 for a number Warden does not know or whose
// block is no longer in force.
func (h *openC2Handler) deleteRule(ctx context.Context, actor string, cmd slpfCommand) v1.OpenC2Response {
	reason := fmt.Sprintf("OpenC2 delete slpf:rule_number %d (request_id %s)", cmd.rule, cmd.requestID)
	b, err := h.svc.WithdrawBlock(ctx, actor, cmd.rule, reason)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return v1.OpenC2Response{Status: http.StatusNotFound, StatusText: fmt.Sprintf("no rule %d", cmd.rule)}
	case errors.Is(err, controller.ErrConflict):
		return v1.OpenC2Response{Status: http.StatusNotFound, StatusText: fmt.Sprintf("rule %d is not in force: %v", cmd.rule, clipErr(err))}
	case err != nil:
		return h.serviceFailure(err, "withdrawing the block")
	case b.State != controller.BlockWithdrawn:
		// The block unit returns a block that left force otherwise
		// (expired, refused) as it is: nothing was removed.
		return v1.OpenC2Response{Status: http.StatusNotFound, StatusText: fmt.Sprintf("rule %d is not in force: it is %s", cmd.rule, b.State),
			Results: &v1.OpenC2Results{SLPF: &v1.SLPFResults{RuleNumber: b.Number}, Warden: &v1.OpenC2Blocks{State: string(b.State)}}}
	}
	return v1.OpenC2Response{Status: http.StatusOK,
		StatusText: fmt.Sprintf("rule %d (%s) is %s", b.Number, prefixList(b.Prefixes), b.State),
		Results: &v1.OpenC2Results{SLPF: &v1.SLPFResults{RuleNumber: b.Number},
			Warden: &v1.OpenC2Blocks{State: string(b.State)}}}
}

// serviceFailure maps the block unit's errors onto OpenC2 status codes
// (LS 3.3.2.1); an unexpected one is logged and answered without its text.
func (h *openC2Handler) serviceFailure(err error, doing string) v1.OpenC2Response {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, store.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, controller.ErrInvalid), errors.Is(err, controller.ErrConflict):
		status = http.StatusBadRequest
	case errors.Is(err, controller.ErrForbidden):
		status = http.StatusForbidden
	case errors.Is(err, controller.ErrNotRunning):
		status = http.StatusServiceUnavailable
	}
	if status == http.StatusInternalServerError {
		h.log.Error("OpenC2 command failed", "doing", doing, "err", err)
		return v1.OpenC2Response{Status: status, StatusText: "Rule not updated: internal error; see the controller log"}
	}
	return v1.OpenC2Response{Status: status, StatusText: doing + ": " + clipErr(err)}
}

func clipErr(err error) string { return clip(err.Error(), 300) }
