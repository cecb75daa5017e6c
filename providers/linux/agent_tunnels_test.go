package linux

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strongswan/govici/vici"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/warden-ir/warden/actions"
	"github.com/warden-ir/warden/agent"
	"github.com/warden-ir/warden/agent/agenttest"
	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/internal/charon"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/providers/strongswan"
	"github.com/warden-ir/warden/providers/wireguard"
)

// tunnelLab is a set of fake agents, one per gateway, served over mutual
// TLS on loopback with the lab PKI, and the inventory and pool that reach
// them.
type tunnelLab struct {
	t      *testing.T
	pki    string
	inv    *inventory.Inventory
	pool   *AgentPool
	agents map[string]*fakeTunnelAgent
}

func newTunnelLab(t *testing.T) *tunnelLab {
	t.Helper()
	pki := agenttest.PKI(t)
	pool := NewAgentPool(controllerTLS(pki), nil)
	t.Cleanup(pool.Close)
	return &tunnelLab{t: t, pki: pki, inv: &inventory.Inventory{}, pool: pool, agents: map[string]*fakeTunnelAgent{}}
}

// add puts a gateway in the inventory; with an agent, a fake agent serves
// it.
func (l *tunnelLab) add(id string, withAgent bool) *fakeTunnelAgent {
	l.t.Helper()
	gw := inventory.Gateway{ID: id, Site: id, ManagementNetworks: []string{"10.9.0.0/24"}}
	var fa *fakeTunnelAgent
	if withAgent {
		fa = newFakeTunnelAgent()
		cert, err := tls.LoadX509KeyPair(filepath.Join(l.pki, agent.AgentCertFile), filepath.Join(l.pki, agent.AgentKeyFile))
		if err != nil {
			l.t.Fatal(err)
		}
		caPEM, err := os.ReadFile(filepath.Join(l.pki, agent.CAFile))
		if err != nil {
			l.t.Fatal(err)
		}
		cas := x509.NewCertPool()
		if !cas.AppendCertsFromPEM(caPEM) {
			l.t.Fatal("no CA certificate")
		}
		ts := httptest.NewUnstartedServer(fa)
		ts.TLS = &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, ClientCAs: cas, ClientAuth: tls.RequireAndVerifyClientCert}
		ts.StartTLS()
		l.t.Cleanup(ts.Close)
		gw.Agent = ts.URL
		l.agents[id] = fa
	}
	l.inv.Gateways = append(l.inv.Gateways, gw)
	return fa
}

func (l *tunnelLab) gateway(id string) inventory.Gateway {
	gw, ok := l.inv.Gateway(id)
	if !ok {
		l.t.Fatalf("no gateway %s", id)
	}
	return gw
}

// fakeTunnelAgent answers the wireguard, vici and block commands from an
// in-memory model of one gateway, like `warden agent` would.
type fakeTunnelAgent struct {
	mu   sync.Mutex
	seen map[string]bool
	cmds []tunnelFakeCommand
	wg   map[string]*tunnelFakeWGDevice
	ch   tunnelFakeCharon
	// blocked is the peer blocks in force; notEnforced makes the agent
	// report them not enforced by the kernel.
	blocked     map[string][]string
	notEnforced bool
	// echo makes the agent refuse every command with a 422 whose message
	// repeats its parameters after echoPad bytes of padding: a careless
	// agent that tunnelLeaks the request into its error.
	echo    bool
	echoPad int
}

type tunnelFakeCommand struct {
	Kind   string
	Params string
}

func newFakeTunnelAgent() *fakeTunnelAgent {
	return &fakeTunnelAgent{
		seen:    map[string]bool{},
		wg:      map[string]*tunnelFakeWGDevice{},
		ch:      tunnelFakeCharon{shared: map[string]string{}},
		blocked: map[string][]string{},
	}
}

// tunnelFakeError is an agent error with its HTTP status.
type tunnelFakeError struct {
	status int
	msg    string
}

func (e *tunnelFakeError) Error() string { return e.msg }

func tunnelBadParams(format string, a ...any) error {
	return &tunnelFakeError{http.StatusBadRequest, fmt.Sprintf(format, a...)}
}

func (f *fakeTunnelAgent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		tunnelFakeWrite(w, http.StatusForbidden, wire.Error{Error: "mutual TLS required"})
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != wire.CommandsPath {
		tunnelFakeWrite(w, http.StatusNotFound, wire.Error{Error: "no such endpoint"})
		return
	}
	var cmd wire.Command
	if err := json.NewDecoder(io.LimitReader(r.Body, wire.MaxRequestBytes)).Decode(&cmd); err != nil {
		tunnelFakeWrite(w, http.StatusBadRequest, wire.Error{Error: "decoding command: " + err.Error()})
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !wire.ValidNonce(cmd.ID) || f.seen[cmd.ID] {
		tunnelFakeWrite(w, http.StatusConflict, wire.Error{Error: "replayed or malformed command id"})
		return
	}
	f.seen[cmd.ID] = true
	f.cmds = append(f.cmds, tunnelFakeCommand{Kind: cmd.Kind, Params: string(cmd.Params)})
	if f.echo {
		tunnelFakeWrite(w, http.StatusUnprocessableEntity, wire.Error{Error: strings.Repeat("x", f.echoPad) + string(cmd.Params)})
		return
	}
	var res any
	var err error
	switch cmd.Kind {
	case wire.KindWireGuard:
		res, err = f.wireGuard(cmd.Params)
	case wire.KindVICI:
		res, err = f.vici(cmd.Params)
	case wire.KindBlock:
		res, err = f.block(cmd.Params)
	case wire.KindObserve:
		res, err = f.observe()
	default:
		err = &tunnelFakeError{http.StatusNotImplemented, "kind " + cmd.Kind + " not modelled"}
	}
	if err != nil {
		status := http.StatusInternalServerError
		var ae *tunnelFakeError
		if errors.As(err, &ae) {
			status = ae.status
		}
		tunnelFakeWrite(w, status, wire.Error{Error: err.Error()})
		return
	}
	tunnelFakeWrite(w, http.StatusOK, res)
}

func tunnelFakeWrite(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// commands returns the commands received so far.
func (f *fakeTunnelAgent) commands() []tunnelFakeCommand {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.cmds)
}

// --- WireGuard model ---

type tunnelFakeWGPeer struct {
	pub, psk  wgtypes.Key
	endpoint  netip.AddrPort
	keepalive time.Duration
	handshake time.Time
	rx, tx    int64
	allowed   []netip.Prefix
	proto     int
}

type tunnelFakeWGDevice struct {
	priv  wgtypes.Key
	port  int
	peers []*tunnelFakeWGPeer
}

// tunnelFakePSKRef is the agent's reference to a preshared key.
func tunnelFakePSKRef(dev, peer, psk wgtypes.Key) string {
	return wire.WGPresharedKeyRef(dev, peer, psk)
}

func (d *tunnelFakeWGDevice) find(k wgtypes.Key) (int, *tunnelFakeWGPeer) {
	for i, p := range d.peers {
		if p.pub == k {
			return i, p
		}
	}
	return -1, nil
}

func (d *tunnelFakeWGDevice) wire(name string) wire.WGDevice {
	pub := d.priv.PublicKey()
	out := wire.WGDevice{Name: name, Type: "userspace", PublicKey: pub.String(), ListenPort: d.port, Peers: []wire.WGPeer{}}
	for _, p := range d.peers {
		wp := wire.WGPeer{
			PublicKey:           p.pub.String(),
			PersistentKeepalive: wire.Duration(p.keepalive),
			LastHandshake:       p.handshake,
			ReceiveBytes:        p.rx,
			TransmitBytes:       p.tx,
			ProtocolVersion:     p.proto,
		}
		if p.psk != (wgtypes.Key{}) {
			wp.PresharedKeyRef = tunnelFakePSKRef(pub, p.pub, p.psk)
		}
		if p.endpoint.IsValid() {
			wp.Endpoint = p.endpoint.String()
		}
		for _, a := range p.allowed {
			wp.AllowedIPs = append(wp.AllowedIPs, a.String())
		}
		out.Peers = append(out.Peers, wp)
	}
	return out
}

// configure applies c like a UAPI transaction: a preshared key equal to the
// reference of a key on the device installs that key.
func (d *tunnelFakeWGDevice) configure(c wire.WGConfig) error {
	devPub := d.priv.PublicKey()
	refs := map[string]wgtypes.Key{}
	for _, p := range d.peers {
		if p.psk != (wgtypes.Key{}) {
			refs[tunnelFakePSKRef(devPub, p.pub, p.psk)] = p.psk
		}
	}
	if c.PrivateKey != "" {
		k, err := wgtypes.ParseKey(c.PrivateKey)
		if err != nil {
			return tunnelBadParams("bad private key")
		}
		d.priv = k
	}
	if c.ListenPort != nil {
		d.port = *c.ListenPort
	}
	for _, pc := range c.Peers {
		pub, err := wgtypes.ParseKey(pc.PublicKey)
		if err != nil {
			return tunnelBadParams("bad peer key")
		}
		i, p := d.find(pub)
		if pc.Remove {
			if p != nil {
				d.peers = slices.Delete(d.peers, i, i+1)
			}
			continue
		}
		if p == nil {
			if pc.UpdateOnly {
				continue
			}
			p = &tunnelFakeWGPeer{pub: pub}
			d.peers = append(d.peers, p)
		}
		if pc.PresharedKey != "" {
			if k, ok := refs[pc.PresharedKey]; ok {
				p.psk = k
			} else if p.psk, err = wgtypes.ParseKey(pc.PresharedKey); err != nil {
				return tunnelBadParams("bad preshared key")
			}
		}
		if pc.Endpoint != "" {
			if p.endpoint, err = netip.ParseAddrPort(pc.Endpoint); err != nil {
				return tunnelBadParams("bad endpoint %q", pc.Endpoint)
			}
		}
		if pc.PersistentKeepalive != nil {
			p.keepalive = time.Duration(*pc.PersistentKeepalive)
		}
		if pc.ReplaceAllowedIPs {
			p.allowed = nil
		}
		for _, s := range pc.AllowedIPs {
			pr, err := netip.ParsePrefix(s)
			if err != nil {
				return tunnelBadParams("bad allowed IP %q", s)
			}
			for _, o := range d.peers {
				o.allowed = slices.DeleteFunc(o.allowed, func(a netip.Prefix) bool { return a == pr })
			}
			p.allowed = append(p.allowed, pr)
		}
	}
	return nil
}

func (f *fakeTunnelAgent) wireGuard(raw json.RawMessage) (any, error) {
	var p wire.WireGuardParams
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, tunnelBadParams("decoding wireguard parameters: %v", err)
	}
	d, ok := f.wg[p.Device]
	if !ok {
		return nil, &tunnelFakeError{http.StatusUnprocessableEntity, "no WireGuard device " + p.Device}
	}
	switch p.Op {
	case wire.WireGuardDevice:
	case wire.WireGuardConfigure:
		if p.Config == nil {
			return nil, tunnelBadParams("configure without a config")
		}
		if err := d.configure(*p.Config); err != nil {
			return nil, err
		}
	default:
		return nil, tunnelBadParams("unknown op %q", p.Op)
	}
	return wire.WireGuardResult{Device: d.wire(p.Device)}, nil
}

// peer returns a copy of device dev's entry for key, or nil.
func (f *fakeTunnelAgent) peer(dev string, key wgtypes.Key) *tunnelFakeWGPeer {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, p := f.wg[dev].find(key); p != nil {
		c := *p
		c.allowed = slices.Clone(p.allowed)
		return &c
	}
	return nil
}

func (f *fakeTunnelAgent) privateKey(dev string) wgtypes.Key {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.wg[dev].priv
}

// --- charon model ---

type tunnelFakeSA struct {
	conn     string
	id       uint64
	remoteID string
	// vanishing: listed, but gone by the time it is terminated.
	vanishing bool
}

type tunnelFakeCharon struct {
	conns  []string
	shared map[string]string
	sas    []tunnelFakeSA
	// canned replies and events by command, instead of the model.
	canned       map[string]wire.VICIMessage
	cannedEvents map[string][]wire.VICIMessage
	// errAsReply: charon's refusals come back as a reply with
	// success=no rather than as the agent's error.
	errAsReply bool
}

func tunnelVICISet(m *vici.Message, kv ...any) *vici.Message {
	for i := 0; i < len(kv); i += 2 {
		if err := m.Set(kv[i].(string), kv[i+1]); err != nil {
			panic(err)
		}
	}
	return m
}

func (f *fakeTunnelAgent) vici(raw json.RawMessage) (any, error) {
	var p wire.VICIParams
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, tunnelBadParams("decoding vici parameters: %v", err)
	}
	event, ok := wire.VICICommands()[p.Command]
	if !ok {
		return nil, tunnelBadParams("VICI command %q is not allowed", p.Command)
	}
	if p.Event != "" && p.Event != event {
		return nil, tunnelBadParams("VICI command %q streams %q", p.Command, event)
	}
	ch := &f.ch
	if r, ok := ch.canned[p.Command]; ok {
		return wire.VICIResult{Reply: r, Events: ch.cannedEvents[p.Command]}, nil
	}
	in, err := charon.FromWire(p.Message)
	if err != nil {
		return nil, tunnelBadParams("%v", err)
	}
	if in == nil {
		in = vici.NewMessage()
	}
	get := func(k string) string { s, _ := in.Get(k).(string); return s }
	reply := vici.NewMessage()
	var events []wire.VICIMessage
	var errmsg string
	switch p.Command {
	case "get-conns":
		tunnelVICISet(reply, "conns", slices.Clone(ch.conns))
	case "get-shared":
		keys := []string{}
		for id := range ch.shared {
			keys = append(keys, id)
		}
		sort.Strings(keys)
		tunnelVICISet(reply, "keys", keys)
	case "list-sas":
		for _, sa := range ch.sas {
			if ike := get("ike"); ike != "" && ike != sa.conn {
				continue
			}
			child := tunnelVICISet(vici.NewMessage(), "name", sa.conn, "state", "INSTALLED")
			body := tunnelVICISet(vici.NewMessage(),
				"uniqueid", fmt.Sprint(sa.id), "state", "ESTABLISHED", "remote-id", sa.remoteID,
				"child-sas", tunnelVICISet(vici.NewMessage(), fmt.Sprintf("%s-%d", sa.conn, sa.id), child))
			events = append(events, charon.ToWire(tunnelVICISet(vici.NewMessage(), sa.conn, body)))
		}
	case "terminate":
		i := slices.IndexFunc(ch.sas, func(sa tunnelFakeSA) bool { return fmt.Sprint(sa.id) == get("ike-id") })
		switch {
		case i < 0:
			errmsg = "no matching SAs to terminate found"
		case ch.sas[i].vanishing:
			ch.sas = slices.Delete(ch.sas, i, i+1)
			errmsg = "no matching SAs to terminate found"
		default:
			ch.sas = slices.Delete(ch.sas, i, i+1)
		}
	case "unload-conn":
		if i := slices.Index(ch.conns, get("name")); i >= 0 {
			ch.conns = slices.Delete(ch.conns, i, i+1)
		} else {
			errmsg = fmt.Sprintf("unload: connection '%s' not found", get("name"))
		}
	case "unload-shared":
		if _, ok := ch.shared[get("id")]; ok {
			delete(ch.shared, get("id"))
		} else {
			errmsg = "key not found"
		}
	case "load-shared":
		ch.shared[get("id")] = get("data")
	default:
		return nil, &tunnelFakeError{http.StatusNotImplemented, "VICI command " + p.Command + " not modelled"}
	}
	switch {
	case errmsg != "" && ch.errAsReply:
		tunnelVICISet(reply, "success", "no", "errmsg", errmsg)
	case errmsg != "":
		return nil, &tunnelFakeError{http.StatusUnprocessableEntity, "vici: command failed: " + errmsg}
	case event == "" && !strings.HasPrefix(p.Command, "get-"):
		tunnelVICISet(reply, "success", "yes")
	}
	return wire.VICIResult{Reply: charon.ToWire(reply), Events: events}, nil
}

// --- blocks ---

func (f *fakeTunnelAgent) block(raw json.RawMessage) (any, error) {
	var p wire.BlockParams
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, tunnelBadParams("decoding block parameters: %v", err)
	}
	changed := false
	if p.Remove {
		if _, ok := f.blocked[p.Peer]; ok {
			delete(f.blocked, p.Peer)
			changed = true
		}
	} else if !slices.Equal(f.blocked[p.Peer], p.Addresses) {
		f.blocked[p.Peer] = slices.Clone(p.Addresses)
		changed = true
	}
	res := wire.BlockResult{Changed: changed, Blocked: []wire.BlockedPeer{}, Enforced: !f.notEnforced}
	for peer, addrs := range f.blocked {
		res.Blocked = append(res.Blocked, wire.BlockedPeer{Peer: peer, Addresses: addrs})
	}
	sort.Slice(res.Blocked, func(i, j int) bool { return res.Blocked[i].Peer < res.Blocked[j].Peer })
	return res, nil
}

// observe reports the blocks in force, as the agent's observe does.
func (f *fakeTunnelAgent) observe() (any, error) {
	st := wire.State{BlockEnforced: len(f.blocked) > 0 && !f.notEnforced}
	for peer, addrs := range f.blocked {
		st.Blocked = append(st.Blocked, wire.BlockedPeer{Peer: peer, Addresses: addrs})
	}
	sort.Slice(st.Blocked, func(i, j int) bool { return st.Blocked[i].Peer < st.Blocked[j].Peer })
	return st, nil
}

// --- helpers ---

func tunnelKey(t *testing.T) wgtypes.Key {
	t.Helper()
	k, err := wgtypes.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func tunnelIPNet(s string) net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return *n
}

// keyForms are the encodings in which a key could leak.
func keyForms(k wgtypes.Key) []string {
	return []string{k.String(), hex.EncodeToString(k[:])}
}

// tunnelLeaks reports whether text holds any 12-character piece of secret.
func tunnelLeaks(text, secret string) bool {
	if len(secret) < 12 {
		return strings.Contains(text, secret)
	}
	for i := 0; i+12 <= len(secret); i++ {
		if strings.Contains(text, secret[i:i+12]) {
			return true
		}
	}
	return false
}

// --- WireGuard tests ---

func TestAgentWireGuardDeviceRoundTrip(t *testing.T) {
	lab := newTunnelLab(t)
	fa := lab.add("gw-osaka", true)
	priv, k1, k2, k3, psk := tunnelKey(t), tunnelKey(t), tunnelKey(t), tunnelKey(t), tunnelKey(t)
	hs := time.Date(2026, 5, 1, 3, 0, 0, 123456789, time.UTC)
	fa.wg["wg0"] = &tunnelFakeWGDevice{priv: priv, port: 51820, peers: []*tunnelFakeWGPeer{
		{
			pub: k1, psk: psk, endpoint: netip.MustParseAddrPort("198.51.100.7:51820"), keepalive: 25 * time.Second,
			handshake: hs, rx: 1234, tx: 5678, proto: 1,
			allowed: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24"), netip.MustParsePrefix("fd00:1::/64")},
		},
		{pub: k2, endpoint: netip.MustParseAddrPort("[2001:db8::7]:51820"), allowed: []netip.Prefix{netip.MustParsePrefix("10.2.0.7/32")}},
	}}
	c := NewAgentWireGuard(lab.pool, lab.inv, 0)
	name := AgentDeviceName("gw-osaka", "wg0")
	if name != "gw-osaka/wg0" {
		t.Fatalf("AgentDeviceName = %q", name)
	}

	d, err := c.Device(name)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := base64.StdEncoding.DecodeString(tunnelFakePSKRef(priv.PublicKey(), k1, psk))
	want := &wgtypes.Device{
		Name: name, Type: wgtypes.Userspace, PublicKey: priv.PublicKey(), ListenPort: 51820,
		Peers: []wgtypes.Peer{
			{
				PublicKey: k1, PresharedKey: wgtypes.Key(ref),
				Endpoint:                    &net.UDPAddr{IP: net.IP{198, 51, 100, 7}, Port: 51820},
				PersistentKeepaliveInterval: 25 * time.Second,
				ReceiveBytes:                1234, TransmitBytes: 5678, ProtocolVersion: 1,
				AllowedIPs: []net.IPNet{tunnelIPNet("10.1.0.0/24"), tunnelIPNet("fd00:1::/64")},
			},
			{
				PublicKey:  k2,
				Endpoint:   &net.UDPAddr{IP: net.ParseIP("2001:db8::7"), Port: 51820},
				AllowedIPs: []net.IPNet{tunnelIPNet("10.2.0.7/32")},
			},
		},
	}
	if !d.Peers[0].LastHandshakeTime.Equal(hs) || !d.Peers[1].LastHandshakeTime.IsZero() {
		t.Errorf("handshakes = %v, %v; want %v and never", d.Peers[0].LastHandshakeTime, d.Peers[1].LastHandshakeTime, hs)
	}
	d.Peers[0].LastHandshakeTime = time.Time{}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("Device:\n got %+v\nwant %+v", d, want)
	}
	if d.PrivateKey != (wgtypes.Key{}) || d.Peers[0].PresharedKey == psk {
		t.Fatal("a secret came back from the agent")
	}

	// Copy peer 1's entry to a new key, preshared key included, the way
	// providers/wireguard stages a key rotation.
	src := d.Peers[0]
	ka := src.PersistentKeepaliveInterval
	pskRef := src.PresharedKey
	if err := c.ConfigureDevice(name, wgtypes.Config{Peers: []wgtypes.PeerConfig{{
		PublicKey: k3, PresharedKey: &pskRef, Endpoint: src.Endpoint,
		PersistentKeepaliveInterval: &ka, ReplaceAllowedIPs: true, AllowedIPs: src.AllowedIPs,
	}}}); err != nil {
		t.Fatal(err)
	}
	cmds := fa.commands()
	var sent wire.WireGuardParams
	if err := json.Unmarshal([]byte(cmds[len(cmds)-1].Params), &sent); err != nil {
		t.Fatal(err)
	}
	wka := wire.Duration(25 * time.Second)
	wantSent := wire.WireGuardParams{Op: wire.WireGuardConfigure, Device: "wg0", Config: &wire.WGConfig{Peers: []wire.WGPeerConfig{{
		PublicKey: k3.String(), PresharedKey: tunnelFakePSKRef(priv.PublicKey(), k1, psk), Endpoint: "198.51.100.7:51820",
		PersistentKeepalive: &wka, ReplaceAllowedIPs: true, AllowedIPs: []string{"10.1.0.0/24", "fd00:1::/64"},
	}}}}
	if !reflect.DeepEqual(sent, wantSent) {
		t.Fatalf("configure sent\n%+v\nwant\n%+v", sent.Config.Peers, wantSent.Config.Peers)
	}
	for _, cmd := range cmds {
		for _, s := range keyForms(psk) {
			if strings.Contains(cmd.Params, s) {
				t.Fatalf("the preshared key travelled in a %s command", cmd.Kind)
			}
		}
	}
	if p := fa.peer("wg0", k3); p == nil || p.psk != psk {
		t.Fatal("the agent did not install the referenced preshared key on the new entry")
	}

	// Read back: the new entry matches the one it was copied from; AllowedIPs
	// moved (they are unique per device).
	d2, err := c.Device(name)
	if err != nil {
		t.Fatal(err)
	}
	var got3 *wgtypes.Peer
	for i := range d2.Peers {
		switch d2.Peers[i].PublicKey {
		case k3:
			got3 = &d2.Peers[i]
		case k1:
			if len(d2.Peers[i].AllowedIPs) != 0 {
				t.Errorf("old entry kept AllowedIPs %v", d2.Peers[i].AllowedIPs)
			}
		}
	}
	if got3 == nil {
		t.Fatal("new entry missing")
	}
	ref3, _ := base64.StdEncoding.DecodeString(tunnelFakePSKRef(priv.PublicKey(), k3, psk))
	if got3.PresharedKey != wgtypes.Key(ref3) || !reflect.DeepEqual(got3.Endpoint, src.Endpoint) ||
		got3.PersistentKeepaliveInterval != ka || !reflect.DeepEqual(got3.AllowedIPs, src.AllowedIPs) {
		t.Fatalf("new entry %+v, want a copy of %+v", got3, src)
	}

	// Configuring the same again changes nothing.
	if err := c.ConfigureDevice(name, wgtypes.Config{Peers: []wgtypes.PeerConfig{{PublicKey: k3, UpdateOnly: true, PresharedKey: &got3.PresharedKey}}}); err != nil {
		t.Fatal(err)
	}
	if p := fa.peer("wg0", k3); p.psk != psk {
		t.Fatal("re-applying the reference changed the key")
	}
}

func TestAgentWireGuardConfigRefused(t *testing.T) {
	lab := newTunnelLab(t)
	fa := lab.add("gw-osaka", true)
	fa.wg["wg0"] = &tunnelFakeWGDevice{priv: tunnelKey(t)}
	c := NewAgentWireGuard(lab.pool, lab.inv, time.Minute)
	k := tunnelKey(t)
	priv := tunnelKey(t)
	mark, neg := 7, -time.Second
	for name, tc := range map[string]struct {
		cfg  wgtypes.Config
		want string
	}{
		"replace peers":      {wgtypes.Config{PrivateKey: &priv, ReplacePeers: true}, "ReplacePeers"},
		"firewall mark":      {wgtypes.Config{FirewallMark: &mark}, "firewall mark"},
		"endpoint no IP":     {wgtypes.Config{Peers: []wgtypes.PeerConfig{{PublicKey: k, Endpoint: &net.UDPAddr{Port: 1}}}}, "endpoint"},
		"negative keepalive": {wgtypes.Config{Peers: []wgtypes.PeerConfig{{PublicKey: k, PersistentKeepaliveInterval: &neg}}}, "keepalive"},
		"non-CIDR mask": {wgtypes.Config{Peers: []wgtypes.PeerConfig{{PublicKey: k, AllowedIPs: []net.IPNet{
			{IP: net.IP{10, 0, 0, 0}, Mask: net.IPMask{255, 0, 255, 0}}}}}}, "allowed IPs"},
	} {
		t.Run(name, func(t *testing.T) {
			err := c.ConfigureDevice("gw-osaka/wg0", tc.cfg)
			if err == nil || !actions.IsTerminal(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want a terminal error about %s", err, tc.want)
			}
			if tunnelLeaks(err.Error(), priv.String()) {
				t.Fatal("the private key is in the error")
			}
		})
	}
	if n := len(fa.commands()); n != 0 {
		t.Fatalf("%d commands reached the agent", n)
	}
}

func TestAgentWireGuardUnknownGateway(t *testing.T) {
	lab := newTunnelLab(t)
	lab.add("gw-osaka", true).wg["wg0"] = &tunnelFakeWGDevice{priv: tunnelKey(t)}
	lab.add("gw-kobe", false)
	c := NewAgentWireGuard(lab.pool, lab.inv, 0)
	for name, tc := range map[string]struct {
		device string
		is     error
		names  string
	}{
		"not in inventory": {"gw-nowhere/wg0", ErrUnknownGateway, "gw-nowhere"},
		"no agent":         {"gw-kobe/wg0", actions.ErrUnsupported, "gw-kobe"},
		"no gateway part":  {"wg0", nil, "wg0"},
		"empty device":     {"gw-osaka/", nil, "gw-osaka/"},
	} {
		t.Run(name, func(t *testing.T) {
			_, derr := c.Device(tc.device)
			cerr := c.ConfigureDevice(tc.device, wgtypes.Config{})
			for op, err := range map[string]error{"Device": derr, "ConfigureDevice": cerr} {
				if err == nil || !actions.IsTerminal(err) || !strings.Contains(err.Error(), tc.names) {
					t.Errorf("%s: err = %v; want terminal naming %s", op, err, tc.names)
				}
				if tc.is != nil && !errors.Is(err, tc.is) {
					t.Errorf("%s: err = %v; want errors.Is %v", op, err, tc.is)
				}
			}
		})
	}
	// The provider sees the same classification through its own wrapping.
	prov, err := wireguard.New(c, map[string]wireguard.Site{"gw-nowhere": {Device: "gw-nowhere/wg0"}}, wireguard.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := prov.HasPeer(t.Context(), "gw-nowhere", tunnelKey(t)); !actions.IsTerminal(err) || !errors.Is(err, ErrUnknownGateway) {
		t.Fatalf("provider: err = %v", err)
	}
}

func TestAgentWireGuardNoSecretsInErrors(t *testing.T) {
	lab := newTunnelLab(t)
	fa := lab.add("gw-osaka", true)
	fa.echo = true
	c := NewAgentWireGuard(lab.pool, lab.inv, 0)
	priv, psk, peer := tunnelKey(t), tunnelKey(t), tunnelKey(t)
	cfg := wgtypes.Config{PrivateKey: &priv, Peers: []wgtypes.PeerConfig{{PublicKey: peer, PresharedKey: &psk}}}
	// Where the agent's message is cut (512 bytes) inside the private key.
	prefix := `{"op":"configure","device":"wg0","config":{"private_key":"`
	for name, pad := range map[string]int{"whole": 0, "cut inside the key": 512 - len(prefix) - 20} {
		t.Run(name, func(t *testing.T) {
			fa.mu.Lock()
			fa.echoPad = pad
			fa.mu.Unlock()
			err := c.ConfigureDevice("gw-osaka/wg0", cfg)
			if err == nil {
				t.Fatal("want the agent's refusal")
			}
			msgs := []string{err.Error(), fmt.Sprintf("%+v", err)}
			var ae *AgentError
			if !errors.As(err, &ae) || ae.Status != http.StatusUnprocessableEntity {
				t.Errorf("err = %v; want the agent's 422 kept", err)
			} else {
				msgs = append(msgs, ae.Message)
			}
			for _, m := range msgs {
				for _, k := range []wgtypes.Key{priv, psk} {
					for _, s := range keyForms(k) {
						if tunnelLeaks(m, s) {
							t.Fatalf("a key is in the error: %s", m)
						}
					}
				}
			}
			if !actions.IsTerminal(err) || !strings.Contains(err.Error(), "redacted") || !strings.Contains(err.Error(), `"op":"configure"`) {
				t.Errorf("err = %v; want terminal, redacted, the rest of the agent's text kept", err)
			}
		})
	}
	// The echo really held the keys: the redaction did the work.
	cmds := fa.commands()
	if len(cmds) == 0 || !strings.Contains(cmds[0].Params, priv.String()) {
		t.Fatal("the configure did not carry the private key")
	}
}

// TestAgentWireGuardProviderThroughAgents runs providers/wireguard against
// three gateways' agents: revoking a peer, a staged site key rotation in
// which preshared keys are copied by reference only, and a preshared key
// rotation.
func TestAgentWireGuardProviderThroughAgents(t *testing.T) {
	lab := newTunnelLab(t)
	names := []string{"gw-tokyo", "gw-osaka", "gw-nagoya"}
	priv := map[string]wgtypes.Key{}
	addr := map[string]string{"gw-tokyo": "10.0.1.1", "gw-osaka": "10.0.2.1", "gw-nagoya": "10.0.3.1"}
	sites := map[string]wireguard.Site{}
	for i, n := range names {
		lab.add(n, true).wg["wg0"] = &tunnelFakeWGDevice{port: 51820 + i}
		priv[n] = tunnelKey(t)
		lab.agents[n].wg["wg0"].priv = priv[n]
		sites[n] = wireguard.Site{Device: AgentDeviceName(n, "wg0"), Endpoint: netip.MustParseAddrPort(fmt.Sprintf("192.0.2.%d:%d", i+1, 51820+i))}
	}
	pairPSK := map[[2]string]wgtypes.Key{}
	for i, a := range names {
		for j, b := range names {
			if i >= j {
				continue
			}
			pairPSK[[2]string{a, b}] = tunnelKey(t)
		}
	}
	psk := func(a, b string) wgtypes.Key {
		if k, ok := pairPSK[[2]string{a, b}]; ok {
			return k
		}
		return pairPSK[[2]string{b, a}]
	}
	for _, a := range names {
		d := lab.agents[a].wg["wg0"]
		for _, b := range names {
			if a == b {
				continue
			}
			d.peers = append(d.peers, &tunnelFakeWGPeer{
				pub: priv[b].PublicKey(), psk: psk(a, b), endpoint: sites[b].Endpoint, keepalive: 25 * time.Second,
				handshake: time.Now().Add(-time.Minute), allowed: []netip.Prefix{netip.MustParsePrefix(addr[b] + "/32")},
			})
		}
	}
	prov, err := wireguard.New(NewAgentWireGuard(lab.pool, lab.inv, 0), sites, wireguard.Options{HandshakeWait: time.Millisecond, Poll: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	osakaPub := priv["gw-osaka"].PublicKey()

	// Revoke osaka at tokyo and nagoya, twice.
	for round, want := range []bool{true, false} {
		for _, site := range []string{"gw-tokyo", "gw-nagoya"} {
			changed, err := prov.RevokePeer(ctx, site, osakaPub)
			if err != nil || changed != want {
				t.Fatalf("round %d: RevokePeer(%s) = %v, %v; want %v", round+1, site, changed, err, want)
			}
			if has, err := prov.HasPeer(ctx, site, osakaPub); err != nil || has {
				t.Fatalf("HasPeer(%s, osaka) = %v, %v after revocation", site, has, err)
			}
		}
	}
	if has, err := prov.HasPeer(ctx, "gw-tokyo", priv["gw-nagoya"].PublicKey()); err != nil || !has {
		t.Fatalf("tokyo lost nagoya: %v, %v", has, err)
	}

	// Rotate tokyo's key towards nagoya only (osaka is revoked).
	before := map[string]int{}
	for n, fa := range lab.agents {
		before[n] = len(fa.commands())
	}
	old, next := priv["gw-tokyo"].PublicKey(), tunnelKey(t)
	if err := prov.RotateSiteKey(ctx, "gw-tokyo", []string{"gw-nagoya"}, old, next); err != nil {
		t.Fatal(err)
	}
	nagoya := lab.agents["gw-nagoya"]
	if nagoya.peer("wg0", old) != nil {
		t.Error("nagoya still has tokyo's old key")
	}
	e := nagoya.peer("wg0", next.PublicKey())
	switch {
	case e == nil:
		t.Fatal("nagoya has no entry for tokyo's new key")
	case e.psk != psk("gw-tokyo", "gw-nagoya"):
		t.Error("nagoya's new entry for tokyo lost the pair's preshared key")
	case !slices.Equal(e.allowed, []netip.Prefix{netip.MustParsePrefix("10.0.1.1/32")}):
		t.Errorf("nagoya's new entry routes %v", e.allowed)
	}
	if lab.agents["gw-tokyo"].privateKey("wg0") != next {
		t.Error("tokyo's private key was not switched")
	}
	if lab.agents["gw-osaka"].peer("wg0", next.PublicKey()) != nil || len(lab.agents["gw-osaka"].commands()) != before["gw-osaka"] {
		t.Error("the revoked osaka was told about tokyo's new key")
	}
	for n, fa := range lab.agents {
		for _, cmd := range fa.commands()[before[n]:] {
			for _, k := range pairPSK {
				for _, s := range keyForms(k) {
					if strings.Contains(cmd.Params, s) {
						t.Fatalf("a preshared key travelled to %s during the site key rotation", n)
					}
				}
			}
		}
	}

	// Rotate the tokyo <-> nagoya preshared key: now it does travel, to
	// those two only.
	fresh := tunnelKey(t)
	if err := prov.RotatePSK(ctx, "gw-tokyo", "gw-nagoya", fresh); err != nil {
		t.Fatal(err)
	}
	if p := lab.agents["gw-tokyo"].peer("wg0", priv["gw-nagoya"].PublicKey()); p == nil || p.psk != fresh || len(p.allowed) != 1 {
		t.Errorf("tokyo's entry for nagoya after RotatePSK: %+v", p)
	}
	if p := nagoya.peer("wg0", next.PublicKey()); p == nil || p.psk != fresh {
		t.Error("nagoya's entry for tokyo does not hold the new preshared key")
	}
}

// --- VICI tests ---

func tunnelStr(s string) *string { return &s }

func TestAgentVICIRoundTrip(t *testing.T) {
	lab := newTunnelLab(t)
	fa := lab.add("gw-tokyo", true)
	nested := wire.VICIMessage{
		{Key: "owners", Section: wire.VICIMessage{
			{Key: "tokyo.example", Section: wire.VICIMessage{{Key: "type", Value: tunnelStr("IKE")}, {Key: "ids", List: []string{"gw-osaka/k1", "gw-osaka/k2"}, IsList: true}}, IsSection: true},
			{Key: "empty", IsSection: true},
		}, IsSection: true},
		{Key: "keys", List: []string{"gw-osaka/k1", "gw-osaka/k2"}, IsList: true},
		{Key: "none", IsList: true},
	}
	fa.ch.canned = map[string]wire.VICIMessage{"get-shared": nested}
	d := NewAgentVICI(lab.pool, lab.inv)
	conn, err := d.Dial(t.Context(), "gw-tokyo")
	if err != nil {
		t.Fatal(err)
	}
	in := vici.NewMessage()
	sec := tunnelVICISet(vici.NewMessage(), "name", "gw-osaka", "ids", []string{"a", "b"})
	tunnelVICISet(in, "filter", sec, "zz", "last", "aa", "order kept")
	reply, err := conn.Call(t.Context(), "get-shared", in)
	if err != nil {
		t.Fatal(err)
	}
	// What the agent received is the message's JSON form, order kept.
	var sent wire.VICIParams
	if err := json.Unmarshal([]byte(fa.commands()[0].Params), &sent); err != nil {
		t.Fatal(err)
	}
	wantSent := wire.VICIParams{Command: "get-shared", Message: wire.VICIMessage{
		{Key: "filter", Section: wire.VICIMessage{{Key: "name", Value: tunnelStr("gw-osaka")}, {Key: "ids", List: []string{"a", "b"}, IsList: true}}, IsSection: true},
		{Key: "zz", Value: tunnelStr("last")},
		{Key: "aa", Value: tunnelStr("order kept")},
	}}
	if !reflect.DeepEqual(sent, wantSent) {
		t.Fatalf("sent %+v\nwant %+v", sent, wantSent)
	}
	owners, ok := reply.Get("owners").(*vici.Message)
	if !ok {
		t.Fatalf("reply %s has no owners section", reply)
	}
	tokyo, _ := owners.Get("tokyo.example").(*vici.Message)
	if tokyo == nil || tokyo.Get("type") != "IKE" || !reflect.DeepEqual(tokyo.Get("ids"), []string{"gw-osaka/k1", "gw-osaka/k2"}) {
		t.Fatalf("nested section: %v", tokyo)
	}
	if e, ok := owners.Get("empty").(*vici.Message); !ok || len(e.Keys()) != 0 {
		t.Errorf("empty section came back as %#v", owners.Get("empty"))
	}
	if l, ok := reply.Get("none").([]string); !ok || len(l) != 0 {
		t.Errorf("empty list came back as %#v", reply.Get("none"))
	}
	if got := reply.Keys(); !reflect.DeepEqual(got, []string{"owners", "keys", "none"}) {
		t.Errorf("reply keys %v", got)
	}

	// Stream: the model's list-sa events, nested three deep.
	fa.mu.Lock()
	fa.ch.sas = []tunnelFakeSA{{conn: "gw-osaka", id: 7, remoteID: "osaka.example"}, {conn: "gw-nagoya", id: 9, remoteID: "nagoya.example"}}
	fa.mu.Unlock()
	evs, err := conn.Stream(t.Context(), "list-sas", "list-sa", tunnelVICISet(vici.NewMessage(), "ike", "gw-osaka"))
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 {
		t.Fatalf("%d events, want 1", len(evs))
	}
	sa, _ := evs[0].Get("gw-osaka").(*vici.Message)
	children, _ := sa.Get("child-sas").(*vici.Message)
	child, _ := children.Get("gw-osaka-7").(*vici.Message)
	if sa.Get("uniqueid") != "7" || sa.Get("remote-id") != "osaka.example" || child.Get("state") != "INSTALLED" {
		t.Fatalf("event %s", evs[0])
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestAgentVICIRefusedLocally(t *testing.T) {
	lab := newTunnelLab(t)
	fa := lab.add("gw-tokyo", true)
	lab.add("gw-kobe", false)
	d := NewAgentVICI(lab.pool, lab.inv)
	ctx := t.Context()
	if _, err := d.Dial(ctx, "gw-nowhere"); !errors.Is(err, ErrUnknownGateway) || !actions.IsTerminal(err) || !strings.Contains(err.Error(), "gw-nowhere") {
		t.Errorf("Dial(unknown) = %v", err)
	}
	if _, err := d.Dial(ctx, "gw-kobe"); !errors.Is(err, actions.ErrUnsupported) || !strings.Contains(err.Error(), "gw-kobe") {
		t.Errorf("Dial(no agent) = %v", err)
	}
	conn, err := d.Dial(ctx, "gw-tokyo")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Call(ctx, "load-conn", vici.NewMessage()); !errors.Is(err, actions.ErrUnsupported) || !actions.IsTerminal(err) {
		t.Errorf("Call(load-conn) = %v; want terminal, unsupported", err)
	}
	if _, err := conn.Stream(ctx, "list-sas", "list-conn", nil); !actions.IsTerminal(err) {
		t.Errorf("Stream(list-sas, list-conn) = %v; want terminal", err)
	}
	if n := len(fa.commands()); n != 0 {
		t.Fatalf("%d commands reached the agent", n)
	}
}

func TestAgentVICICharonErrors(t *testing.T) {
	for name, asReply := range map[string]bool{"as the agent's error": false, "as a success=no reply": true} {
		t.Run(name, func(t *testing.T) {
			lab := newTunnelLab(t)
			fa := lab.add("gw-tokyo", true)
			fa.ch.errAsReply = asReply
			conn, err := NewAgentVICI(lab.pool, lab.inv).Dial(t.Context(), "gw-tokyo")
			if err != nil {
				t.Fatal(err)
			}
			_, err = conn.Call(t.Context(), "terminate", tunnelVICISet(vici.NewMessage(), "ike-id", "42", "force", "yes"))
			if err == nil || !strings.Contains(err.Error(), "no matching SAs to terminate found") || !strings.Contains(err.Error(), "gw-tokyo") {
				t.Fatalf("err = %v; want charon's errmsg and the gateway", err)
			}
		})
	}
}

func TestAgentVICINoSecretsInErrors(t *testing.T) {
	lab := newTunnelLab(t)
	fa := lab.add("gw-tokyo", true)
	fa.echo = true
	conn, err := NewAgentVICI(lab.pool, lab.inv).Dial(t.Context(), "gw-tokyo")
	if err != nil {
		t.Fatal(err)
	}
	secret := `s3cr<et>"PSK&with-json-escapes-0123456789`
	_, err = conn.Call(t.Context(), "load-shared", tunnelVICISet(vici.NewMessage(), "id", "gw-osaka/k9", "type", "IKE", "data", secret, "owners", []string{"a", "b"}))
	if err == nil {
		t.Fatal("want the agent's refusal")
	}
	j, _ := json.Marshal(secret)
	for _, s := range []string{secret, strings.Trim(string(j), `"`), base64.StdEncoding.EncodeToString([]byte(secret))} {
		if tunnelLeaks(err.Error(), s) {
			t.Fatalf("the PSK is in the error: %v", err)
		}
	}
	if !strings.Contains(err.Error(), "gw-osaka/k9") || !actions.IsTerminal(err) {
		t.Errorf("err = %v; want the rest of the agent's text, terminal", err)
	}
	if !strings.Contains(fa.commands()[0].Params, strings.Trim(string(j), `"`)) {
		t.Fatal("the echo did not hold the PSK: the test proves nothing")
	}
}

// TestAgentVICIProviderRevoke runs providers/strongswan's revocation
// through the agent, with an SA that vanishes between listing and
// terminating (charon's "no matching" refusal must reach the provider).
func TestAgentVICIProviderRevoke(t *testing.T) {
	for name, asReply := range map[string]bool{"errors from the agent": false, "errors in replies": true} {
		t.Run(name, func(t *testing.T) {
			lab := newTunnelLab(t)
			fa := lab.add("gw-tokyo", true)
			lab.add("gw-osaka", true)
			fa.ch = tunnelFakeCharon{
				conns:  []string{"gw-osaka", "gw-nagoya"},
				shared: map[string]string{"gw-osaka/k1": "old", "gw-osaka/k2": "new", "gw-nagoya/k1": "keep"},
				sas: []tunnelFakeSA{
					{conn: "gw-osaka", id: 3, remoteID: "osaka.example"},
					{conn: "gw-osaka-backup", id: 4, remoteID: "osaka.example", vanishing: true},
					{conn: "gw-nagoya", id: 5, remoteID: "nagoya.example"},
				},
				errAsReply: asReply,
			}
			prov, err := strongswan.New(NewAgentVICI(lab.pool, lab.inv), map[string]strongswan.Site{
				"gw-tokyo": {Identity: "tokyo.example"}, "gw-osaka": {Identity: "osaka.example"},
			}, strongswan.Options{})
			if err != nil {
				t.Fatal(err)
			}
			ctx := t.Context()
			for round, want := range []bool{true, false} {
				changed, err := prov.RevokePeer(ctx, "gw-tokyo", "gw-osaka")
				if err != nil || changed != want {
					t.Fatalf("round %d: RevokePeer = %v, %v; want %v", round+1, changed, err, want)
				}
				if err := prov.VerifyRevoked(ctx, "gw-tokyo", "gw-osaka"); err != nil {
					t.Fatal(err)
				}
			}
			fa.mu.Lock()
			defer fa.mu.Unlock()
			if !slices.Equal(fa.ch.conns, []string{"gw-nagoya"}) || len(fa.ch.shared) != 1 || fa.ch.shared["gw-nagoya/k1"] != "keep" ||
				len(fa.ch.sas) != 1 || fa.ch.sas[0].conn != "gw-nagoya" {
				t.Fatalf("after revocation: conns %v, keys %v, SAs %+v", fa.ch.conns, fa.ch.shared, fa.ch.sas)
			}
		})
	}
}

// --- block tests ---

func TestBlockPeer(t *testing.T) {
	lab := newTunnelLab(t)
	fa := lab.add("gw-tokyo", true)
	lab.add("gw-kobe", false)
	gw := lab.gateway("gw-tokyo")
	ctx := t.Context()
	osaka := wire.BlockParams{Peer: "gw-osaka", Addresses: []string{"203.0.113.5", "2001:db8:5::/48"}}

	for i, want := range []bool{true, false} {
		res, err := BlockPeer(ctx, lab.pool, gw, osaka)
		if err != nil || res.Changed != want || !res.Enforced {
			t.Fatalf("block %d: %+v, %v; want changed=%v", i+1, res, err, want)
		}
	}
	for i, want := range []bool{true, false} {
		res, err := BlockPeer(ctx, lab.pool, gw, wire.BlockParams{Peer: "gw-osaka", Remove: true})
		if err != nil || res.Changed != want || len(res.Blocked) != 0 {
			t.Fatalf("unblock %d: %+v, %v; want changed=%v", i+1, res, err, want)
		}
	}
	sent := len(fa.commands())

	for name, p := range map[string]wire.BlockParams{
		"no peer":            {Addresses: []string{"203.0.113.5"}},
		"no addresses":       {Peer: "gw-osaka"},
		"every IPv4 address": {Peer: "gw-osaka", Addresses: []string{"203.0.113.5", "0.0.0.0/0"}},
		"every IPv6 address": {Peer: "gw-osaka", Addresses: []string{"::/0"}},
		"management network": {Peer: "gw-osaka", Addresses: []string{"10.0.0.0/8"}},
		"not an address":     {Peer: "gw-osaka", Addresses: []string{"osaka.example"}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := BlockPeer(ctx, lab.pool, gw, p); err == nil || !actions.IsTerminal(err) {
				t.Fatalf("err = %v; want terminal", err)
			}
		})
	}
	if n := len(fa.commands()); n != sent {
		t.Fatalf("a refused block reached the agent (%d commands)", n-sent)
	}

	t.Run("no agent", func(t *testing.T) {
		if _, err := BlockPeer(ctx, lab.pool, lab.gateway("gw-kobe"), osaka); !errors.Is(err, actions.ErrUnsupported) {
			t.Fatalf("err = %v; want unsupported", err)
		}
	})
	t.Run("read back without changing", func(t *testing.T) {
		if err := PeerBlocked(ctx, lab.pool, gw, osaka); !errors.Is(err, actions.ErrNotVerified) {
			t.Fatalf("before the block: %v; want ErrNotVerified", err)
		}
		if _, err := BlockPeer(ctx, lab.pool, gw, osaka); err != nil {
			t.Fatal(err)
		}
		before := len(fa.commands())
		if err := PeerBlocked(ctx, lab.pool, gw, osaka); err != nil {
			t.Fatalf("after the block: %v", err)
		}
		// The agent lists 203.0.113.5 as given; the check compares prefixes.
		wider := wire.BlockParams{Peer: "gw-osaka", Addresses: []string{"203.0.113.5/32", "2001:db8:5::/48", "203.0.113.6"}}
		if err := PeerBlocked(ctx, lab.pool, gw, wider); !errors.Is(err, actions.ErrNotVerified) || !strings.Contains(err.Error(), "203.0.113.6/32") {
			t.Fatalf("an address not blocked: %v; want ErrNotVerified naming it", err)
		}
		for _, c := range fa.commands()[before:] {
			if c.Kind != wire.KindObserve {
				t.Fatalf("checking sent a %s command", c.Kind)
			}
		}
		if _, err := BlockPeer(ctx, lab.pool, gw, wire.BlockParams{Peer: "gw-osaka", Remove: true}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("not enforced", func(t *testing.T) {
		fa.mu.Lock()
		fa.notEnforced = true
		fa.mu.Unlock()
		res, err := BlockPeer(ctx, lab.pool, gw, osaka)
		if !errors.Is(err, actions.ErrNotVerified) || !res.Changed {
			t.Fatalf("%+v, %v; want the result and ErrNotVerified", res, err)
		}
		if err := PeerBlocked(ctx, lab.pool, gw, osaka); !errors.Is(err, actions.ErrNotVerified) || !strings.Contains(err.Error(), "kernel") {
			t.Fatalf("recorded but not enforced: %v; want ErrNotVerified", err)
		}
	})
}
