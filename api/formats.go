package api

import (
	"fmt"
	"mime"
	"net/http"
	"slices"
	"time"

	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/controller"
	"github.com/warden-ir/warden/indicator"
	"github.com/warden-ir/warden/intake"
	"github.com/warden-ir/warden/inventory"
)

// Formats maps each detector format's events to gateways and kinds.
type Formats struct {
	Suricata intake.SuricataMapping
	Zeek     intake.ZeekMapping
	Wazuh    intake.WazuhMapping
	Falco    intake.FalcoMapping
}

// detectorFormat is one intake route for a detector's own format.
type detectorFormat struct {
	name string
	// types are the media types the route takes besides
	// application/json (a stream of JSON objects, a TSV log).
	types  []string
	decode func(body []byte, inv *inventory.Inventory, now time.Time) (intake.Decoded, error)
}

func (f Formats) routes() []detectorFormat {
	return []detectorFormat{
		{"suricata", []string{"application/x-ndjson", "application/jsonl"}, func(b []byte, inv *inventory.Inventory, now time.Time) (intake.Decoded, error) {
			return intake.DecodeSuricata(b, inv, f.Suricata, now)
		}},
		{"zeek", []string{"application/x-ndjson", "application/jsonl", "text/plain", "text/tab-separated-values"}, func(b []byte, inv *inventory.Inventory, now time.Time) (intake.Decoded, error) {
			return intake.DecodeZeek(b, inv, f.Zeek, now)
		}},
		{"wazuh", []string{"application/x-ndjson", "application/jsonl"}, func(b []byte, inv *inventory.Inventory, now time.Time) (intake.Decoded, error) {
			return intake.DecodeWazuh(b, inv, f.Wazuh, now)
		}},
		{"falco", []string{"application/x-ndjson", "application/jsonl"}, func(b []byte, inv *inventory.Inventory, now time.Time) (intake.Decoded, error) {
			return intake.DecodeFalco(b, inv, f.Falco, now)
		}},
	}
}

// FormatNames lists the detector formats with an intake route
// (/v1/intake/NAME), besides alertmanager.
func FormatNames() []string {
	var out []string
	for _, f := range (Formats{}).routes() {
		out = append(out, f.name)
	}
	return out
}

// postFormat takes a body in a detector's format: every alert in it is
// stored (matched or not) before the 202; records that cannot be
// understood are stored as skipped and listed, the others kept; records
// that are not alerts are counted and dropped.
func (s *Server) postFormat(f detectorFormat) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ct := r.Header.Get("Content-Type"); ct != "" {
			if mt, _, err := mime.ParseMediaType(ct); err == nil && mt != "application/json" && slices.Contains(f.types, mt) {
				// readBody judges JSON bodies; this route takes its
				// format's stream types as well.
				r.Header.Del("Content-Type")
			}
		}
		body, ok := s.readBody(w, r, true)
		if !ok {
			return
		}
		d, err := f.decode(body, s.opt.Controller.Inventory(), s.opt.Clock.Now())
		if err != nil {
			s.fail(w, http.StatusBadRequest, "invalid", err)
			return
		}
		if len(d.Items) > intake.MaxIndicatorsPerRequest {
			s.fail(w, http.StatusBadRequest, "invalid", &indicator.FieldError{Field: "body",
				Reason: fmt.Sprintf("more than %d alerts in one request; send them in several", intake.MaxIndicatorsPerRequest)})
			return
		}
		items := make([]controller.Item, len(d.Items))
		var skipped []v1.SkippedAlert
		for i, it := range d.Items {
			items[i] = controller.Item{Indicator: it.Indicator, Matched: it.Matched, Reason: it.Reason}
			if it.Skipped {
				skipped = append(skipped, v1.SkippedAlert{Index: it.Index, Reason: it.Reason})
			}
		}
		if len(skipped) > 0 {
			s.opt.Log.Warn(f.name+" body has records that cannot be understood; the others are taken",
				"skipped", len(skipped), "records", len(d.Items), "first_index", skipped[0].Index, "first_reason", skipped[0].Reason)
		}
		s.acceptIgnoring(w, r, items, skipped, d.Ignored)
	}
}
