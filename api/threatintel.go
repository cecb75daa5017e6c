package api

import (
	"context"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/controller"
	"github.com/warden-ir/warden/intake"
)

// DefaultMaxIntelBytes bounds a STIX bundle or MISP event body: feeds are
// larger than alerts (100,000 indicators are about 30 MB of STIX).
const DefaultMaxIntelBytes = 64 << 20

// threatFormat is one threat-intelligence intake route.
type threatFormat struct {
	name   string
	types  []string
	decode func(body []byte, now time.Time) (intake.ThreatDecoded, error)
}

func threatFormats() []threatFormat {
	return []threatFormat{
		{"stix", []string{"application/stix+json", "application/taxii+json"}, intake.DecodeSTIX},
		{"misp", nil, intake.DecodeMISP},
	}
}

// ThreatFormatNames lists the threat-intelligence formats with an intake
// route (/v1/intake/NAME).
func ThreatFormatNames() []string {
	var out []string
	for _, f := range threatFormats() {
		out = append(out, f.name)
	}
	return out
}

// postThreat takes a STIX bundle or a MISP event: every indicator that
// names addresses becomes a block at every gateway, recorded before the
// answer (safe ones in force at once, unsafe ones waiting for a person's
// approval); an indicator revoked, expired or marked benign withdraws the
// block an earlier version made. Objects that cannot be understood are
// listed with why; the others are taken.
func (s *Server) postThreat(f threatFormat) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ct := r.Header.Get("Content-Type"); ct != "" {
			if mt, _, err := mime.ParseMediaType(ct); err == nil && slices.Contains(f.types, mt) {
				r.Header.Del("Content-Type") // readBody judges JSON; these are JSON too
			}
		}
		body, ok := s.readBodyUpTo(w, r, true, s.opt.MaxIntelBytes)
		if !ok {
			return
		}
		d, err := f.decode(body, s.opt.Clock.Now())
		if err != nil {
			s.fail(w, http.StatusBadRequest, "invalid", err)
			return
		}
		out, err := TakeThreatIntel(r.Context(), s.opt.Controller, actor(r), f.name, d, s.opt.Log)
		if s.opt.StoreHealth != nil {
			s.opt.StoreHealth.ObserveCommit(err)
		}
		if err != nil {
			s.fail(w, statusFor(err), "", err)
			return
		}
		if len(d.Skipped) > 0 {
			s.opt.Log.Warn(f.name+" body has objects that cannot be used; the others are taken",
				"skipped", len(d.Skipped), "first_ref", clip(d.Skipped[0].Ref, 100), "first_reason", d.Skipped[0].Reason)
		}
		writeJSON(w, http.StatusAccepted, out)
	}
}

// TakeThreatIntel records what a threat-intelligence source (format
// "stix" or "misp") said, for actor: a block per item (RequestBlocks), and
// the withdrawal of the block of every indicator the source now says is
// revoked, expired or benign. The intake routes and the TAXII poller both
// use it.
func TakeThreatIntel(ctx context.Context, c *controller.Controller, actor, source string, d intake.ThreatDecoded, log *slog.Logger) (v1.ThreatIntakeResponse, error) {
	reqs := make([]controller.BlockRequest, len(d.Items))
	for i, it := range d.Items {
		reqs[i] = controller.BlockRequest{Prefixes: it.Prefixes, Domains: it.Domains, Source: it.Source, Ref: it.Ref, Name: it.Name,
			Kind: it.Kind, TLP: it.TLP, Confidence: it.Confidence, ValidFrom: it.ValidFrom, ValidUntil: it.ValidUntil, Labels: it.Labels}
	}
	out := v1.ThreatIntakeResponse{Blocks: make([]v1.ThreatBlock, 0, len(reqs)), Ignored: d.Ignored}
	if len(reqs) > 0 {
		res, err := c.RequestBlocks(ctx, actor, reqs)
		if err != nil {
			return v1.ThreatIntakeResponse{}, err
		}
		for _, o := range res {
			out.Blocks = append(out.Blocks, v1.ThreatBlock{Ref: o.Block.Ref, Number: o.Block.Number, State: string(o.Block.State),
				Created: o.Created, Unsafe: o.Block.Unsafe})
		}
	}
	for _, sk := range d.Skipped {
		out.Skipped = append(out.Skipped, v1.ThreatSkipped{Ref: sk.Ref, Field: sk.Field, Reason: sk.Reason})
		if !withdraws(sk) {
			continue
		}
		if _, found, err := c.WithdrawBlockByRef(ctx, actor, source, sk.Ref, "the source says: "+sk.Reason); err != nil {
			return v1.ThreatIntakeResponse{}, fmt.Errorf("withdrawing the block of %s: %w", clip(sk.Ref, 100), err)
		} else if found && log != nil {
			log.Info("block withdrawn by its source", "format", source, "ref", clip(sk.Ref, 100), "reason", sk.Reason)
		}
	}
	return out, nil
}

// withdraws reports whether a skipped indicator says that its earlier
// version no longer holds: revoked, expired or benign.
func withdraws(sk intake.Skipped) bool {
	return strings.HasSuffix(sk.Field, ".revoked") || strings.HasSuffix(sk.Field, ".indicator_types") ||
		strings.HasSuffix(sk.Field, ".valid_until") && strings.HasPrefix(sk.Reason, "expired")
}
