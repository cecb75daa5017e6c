package investigation

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/warden-ir/warden/agent/wire"
)

// TimesketchName is the name of the timeline's Timesketch export among
// the incident's evidence.
const TimesketchName = "timeline.timesketch.jsonl"

// timestampDesc says what each action's time means, as Timesketch's
// timestamp_desc does.
var timestampDesc = map[string]string{
	wire.ActionLoginFailed:   "Login Failed",
	wire.ActionLoginAccepted: "Login Accepted",
	wire.ActionSudo:          "Command Run (sudo)",
	wire.ActionConfigChanged: "Configuration Change Observed",
	wire.ActionPackage:       "Package Change",
	wire.ActionCommand:       "Shell Command",
	wire.ActionProcessStart:  "Process Start",
	wire.ActionConnection:    "Connection Start",
	wire.ActionTunnel:        "Tunnel Event",
}

// TimesketchJSONL writes the timeline as JSON lines Timesketch imports:
// message, datetime (ISO 8601 on the controller's clock) and
// timestamp_desc, the timestamp in microseconds, and Warden's fields
// (site, host, source, actor, action, object, address, the artefact and
// line it was read from, its evidence id, the marks, the gateway's own
// time and the clock offset it was corrected by).
func TimesketchJSONL(tl Timeline) ([]byte, error) {
	offsets := map[string]Offset{}
	for _, o := range tl.Offsets {
		offsets[o.Gateway] = o
	}
	var b bytes.Buffer
	for _, e := range tl.Events {
		desc := timestampDesc[e.Action]
		if desc == "" {
			desc = "Event Recorded"
		}
		msg := e.Message
		if msg == "" {
			msg = e.Action + " " + e.Object
		}
		rec := map[string]any{
			"message":         fmt.Sprintf("[%s] %s", e.Host, msg),
			"datetime":        e.Time.UTC().Format("2006-01-02T15:04:05.000000Z07:00"),
			"timestamp_desc":  desc,
			"timestamp":       e.Time.UnixMicro(),
			"incident":        tl.Incident,
			"site":            e.Site,
			"host":            e.Host,
			"source":          e.Source,
			"action":          e.Action,
			"artefact":        e.Artefact,
			"agent_datetime":  e.AgentTime.UTC().Format("2006-01-02T15:04:05.000000Z07:00"),
			"clock_offset_ms": float64(offsets[e.Host].Offset.Microseconds()) / 1000,
		}
		for k, v := range map[string]string{"actor": e.Actor, "object": e.Object, "address": e.Address, "outcome": e.Outcome, "evidence_id": e.Evidence} {
			if v != "" {
				rec[k] = v
			}
		}
		if e.Line > 0 {
			rec["line"] = e.Line
		}
		if e.TimeApprox {
			rec["time_approximate"] = true
		}
		if len(e.Marks) > 0 {
			rec["marks"] = strings.Join(e.Marks, ",")
			rec["tag"] = e.Marks
		}
		line, err := json.Marshal(rec)
		if err != nil {
			return nil, fmt.Errorf("encoding the Timesketch timeline: %w", err)
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	return b.Bytes(), nil
}
