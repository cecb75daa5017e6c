package wire

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// KindPacketCapture starts, stops, lists or reads the gateway's bounded
// packet captures (see PacketCaptureParams).
const KindPacketCapture = "packet_capture"

// Packet capture operations.
const (
	CaptureOpStart  = "start"
	CaptureOpStop   = "stop"
	CaptureOpStatus = "status"
	CaptureOpRead   = "read"
)

// Bounds of a packet capture.
const (
	MinCaptureBytes    = 64 << 10
	MaxCaptureBytes    = 4 << 30
	MaxCaptureDuration = 24 * time.Hour
	// MaxCaptureChunk bounds one read (base64 in JSON must stay inside
	// MaxResponseBytes).
	MaxCaptureChunk = 8 << 20
)

// CaptureSpec is what a capture records: every interface of the gateway
// for at most Duration, keeping at most MaxBytes (the oldest packets go
// first: a ring), only packets Filter matches.
type CaptureSpec struct {
	Duration Duration `json:"duration"`
	MaxBytes int64    `json:"max_bytes"`
	Filter   string   `json:"filter,omitempty"`
	// Reason says who started it ("quarantine generation 3", "user:alice").
	Reason string `json:"reason,omitempty"`
}

// Validate names the bad field.
func (s CaptureSpec) Validate() error {
	var errs []error
	if d := time.Duration(s.Duration); d < time.Second || d > MaxCaptureDuration {
		errs = append(errs, fmt.Errorf("duration: %s is not between 1s and %s", d, MaxCaptureDuration))
	}
	if s.MaxBytes < MinCaptureBytes || s.MaxBytes > MaxCaptureBytes {
		errs = append(errs, fmt.Errorf("max_bytes: %d is not between %d and %d", s.MaxBytes, MinCaptureBytes, MaxCaptureBytes))
	}
	if _, err := ParseCaptureFilter(s.Filter); err != nil {
		errs = append(errs, fmt.Errorf("filter: %w", err))
	}
	return errors.Join(errs...)
}

// PacketCaptureParams asks for one operation: start (Spec), stop (the
// running capture), status (every capture kept), read (Length bytes of
// capture ID's file from Offset).
type PacketCaptureParams struct {
	Op     string       `json:"op"`
	Spec   *CaptureSpec `json:"spec,omitempty"`
	ID     string       `json:"id,omitempty"`
	Offset int64        `json:"offset,omitempty"`
	Length int64        `json:"length,omitempty"`
}

// CaptureStatus is one capture as the agent keeps it.
type CaptureStatus struct {
	ID         string      `json:"id"`
	Spec       CaptureSpec `json:"spec"`
	Running    bool        `json:"running"`
	Started    time.Time   `json:"started"`
	Stopped    time.Time   `json:"stopped,omitzero"`
	StopReason string      `json:"stop_reason,omitempty"`
	Interfaces []string    `json:"interfaces,omitempty"`
	// Packets were kept; Dropped went out of the ring (oldest first) or
	// were lost by the kernel.
	Packets int64 `json:"packets"`
	Dropped int64 `json:"dropped"`
	// File, Size and SHA256 describe the finished pcapng file (set once
	// the capture stopped).
	File   string `json:"file,omitempty"`
	Size   int64  `json:"size,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	Error  string `json:"error,omitempty"`
}

// PacketCaptureResult answers every operation: the capture concerned,
// every capture kept (status), or a chunk of a file (read).
type PacketCaptureResult struct {
	Capture  *CaptureStatus  `json:"capture,omitempty"`
	Captures []CaptureStatus `json:"captures,omitempty"`
	// Changed is false for a start while the same capture already runs,
	// or a stop with none running.
	Changed bool   `json:"changed"`
	Chunk   []byte `json:"chunk,omitempty"`
	EOF     bool   `json:"eof,omitempty"`
}

// CaptureFilter is a parsed capture filter: a small, pure subset of
// tcpdump's language that the agent evaluates itself (no libpcap).
//
//	expr := term { "or" term }
//	term := factor { "and" factor }
//	factor := "not" factor | "(" expr ")" | primitive
//	primitive := ["src"|"dst"] "host" ADDR | ["src"|"dst"] "net" CIDR |
//	             ["src"|"dst"] "port" N | "tcp" | "udp" | "icmp" | "icmp6" | "ip" | "ip6"
type CaptureFilter struct {
	Op       string // and, or, not, or "" for a primitive
	Children []CaptureFilter
	// A primitive: Kind (host, net, port, proto), Dir (src, dst, or ""
	// for either), and its value.
	Kind  string
	Dir   string
	Net   netip.Prefix
	Port  uint16
	Proto string
}

// ParseCaptureFilter parses s; empty matches everything (a zero filter).
func ParseCaptureFilter(s string) (CaptureFilter, error) {
	p := filterParser{toks: filterTokens(s)}
	if len(p.toks) == 0 {
		return CaptureFilter{}, nil
	}
	f, err := p.expr()
	if err != nil {
		return CaptureFilter{}, err
	}
	if p.i < len(p.toks) {
		return CaptureFilter{}, fmt.Errorf("unexpected %q at word %d", p.toks[p.i], p.i+1)
	}
	return f, nil
}

func filterTokens(s string) []string {
	s = strings.NewReplacer("(", " ( ", ")", " ) ").Replace(s)
	return strings.Fields(strings.ToLower(s))
}

type filterParser struct {
	toks []string
	i    int
}

func (p *filterParser) peek() string {
	if p.i < len(p.toks) {
		return p.toks[p.i]
	}
	return ""
}

func (p *filterParser) next() string {
	t := p.peek()
	p.i++
	return t
}

func (p *filterParser) expr() (CaptureFilter, error) {
	return p.chain("or", p.term)
}

func (p *filterParser) term() (CaptureFilter, error) {
	return p.chain("and", p.factor)
}

func (p *filterParser) chain(op string, sub func() (CaptureFilter, error)) (CaptureFilter, error) {
	first, err := sub()
	if err != nil {
		return CaptureFilter{}, err
	}
	out := CaptureFilter{Op: op, Children: []CaptureFilter{first}}
	for p.peek() == op || (op == "and" && p.peek() == "&&") || (op == "or" && p.peek() == "||") {
		p.next()
		f, err := sub()
		if err != nil {
			return CaptureFilter{}, err
		}
		out.Children = append(out.Children, f)
	}
	if len(out.Children) == 1 {
		return first, nil
	}
	return out, nil
}

func (p *filterParser) factor() (CaptureFilter, error) {
	switch t := p.next(); t {
	case "":
		return CaptureFilter{}, errors.New("the filter ends too early")
	case "not", "!":
		f, err := p.factor()
		if err != nil {
			return CaptureFilter{}, err
		}
		return CaptureFilter{Op: "not", Children: []CaptureFilter{f}}, nil
	case "(":
		f, err := p.expr()
		if err != nil {
			return CaptureFilter{}, err
		}
		if p.next() != ")" {
			return CaptureFilter{}, errors.New("a ( is not closed")
		}
		return f, nil
	case "tcp", "udp", "icmp", "icmp6", "ip", "ip6":
		return CaptureFilter{Kind: "proto", Proto: t}, nil
	case "src", "dst":
		f, err := p.primitive(p.next())
		f.Dir = t
		return f, err
	default:
		return p.primitive(t)
	}
}

func (p *filterParser) primitive(kind string) (CaptureFilter, error) {
	v := p.next()
	switch kind {
	case "host":
		a, err := netip.ParseAddr(v)
		if err != nil {
			return CaptureFilter{}, fmt.Errorf("host %q is not an address", v)
		}
		return CaptureFilter{Kind: "net", Net: netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())}, nil
	case "net":
		n, err := netip.ParsePrefix(v)
		if err != nil {
			return CaptureFilter{}, fmt.Errorf("net %q is not a CIDR", v)
		}
		return CaptureFilter{Kind: "net", Net: n.Masked()}, nil
	case "port":
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil {
			return CaptureFilter{}, fmt.Errorf("port %q is not a port number", v)
		}
		return CaptureFilter{Kind: "port", Port: uint16(n)}, nil
	}
	return CaptureFilter{}, fmt.Errorf("unknown word %q (use host, net, port, tcp, udp, icmp, icmp6, ip, ip6, src, dst, and, or, not)", kind)
}
