package intake

// Decoded is what a detector format's decoder (Suricata, Zeek, Wazuh,
// Falco, …) made of one body: an Item per record that is an alert —
// matched, unmatched (no gateway, no kind: accepted and recorded, starts
// nothing) or skipped (cannot be understood: kept with the reason) — and
// the count, by record type, of records that are not alerts (a Suricata
// flow event, Falco's internal records), which are dropped.
//
// A body that is not the format at all (not JSON, not an object stream) is
// an error naming the field; a body with some undecodable records keeps
// the good ones.
type Decoded struct {
	Items   []Item
	Ignored map[string]int
}

// ignore counts a record of type t that is not an alert.
func (d *Decoded) ignore(t string) {
	if d.Ignored == nil {
		d.Ignored = map[string]int{}
	}
	d.Ignored[t]++
}
