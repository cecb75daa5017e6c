package host

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/warden-ir/warden/agent/wire"
)

// VICI packet and element types (strongSwan's vici README).
const (
	viciCmdRequest      = 0
	viciCmdResponse     = 1
	viciEventRegister   = 3
	viciEventUnregister = 4
	viciEventConfirm    = 5
	viciEvent           = 7

	viciSectionStart = 1
	viciSectionEnd   = 2
	viciKeyValue     = 3
)

// viciMsg encodes a VICI message body.
type viciMsg struct{ bytes.Buffer }

func (m *viciMsg) name(s string) { m.WriteByte(byte(len(s))); m.WriteString(s) }

func (m *viciMsg) kv(k, v string) {
	m.WriteByte(viciKeyValue)
	m.name(k)
	_ = binary.Write(m, binary.BigEndian, uint16(len(v)))
	m.WriteString(v)
}

func (m *viciMsg) section(k string, body func()) {
	m.WriteByte(viciSectionStart)
	m.name(k)
	body()
	m.WriteByte(viciSectionEnd)
}

// fakeCharonServer answers list-sas with its SAs and records terminate and
// initiate requests (their top-level key-values).
type fakeCharonServer struct {
	mu       sync.Mutex
	events   [][]byte
	requests []map[string]string
	names    []string
}

func startFakeCharon(t *testing.T, events ...[]byte) (*fakeCharonServer, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "charon.vici")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	f := &fakeCharonServer{events: events}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go f.serve(c)
		}
	}()
	return f, sock
}

func (f *fakeCharonServer) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	for {
		var n uint32
		if err := binary.Read(c, binary.BigEndian, &n); err != nil {
			return
		}
		pkt := make([]byte, n)
		if _, err := io.ReadFull(c, pkt); err != nil {
			return
		}
		switch pkt[0] {
		case viciEventRegister, viciEventUnregister:
			writeVICI(c, viciEventConfirm, "", nil)
		case viciCmdRequest:
			name := string(pkt[2 : 2+int(pkt[1])])
			body := pkt[2+int(pkt[1]):]
			f.mu.Lock()
			f.names = append(f.names, name)
			if name != "list-sas" {
				f.requests = append(f.requests, topLevelKVs(body))
			}
			f.mu.Unlock()
			if name == "list-sas" {
				for _, e := range f.events {
					writeVICI(c, viciEvent, "list-sa", e)
				}
				writeVICI(c, viciCmdResponse, "", nil)
				continue
			}
			var ok viciMsg
			ok.kv("success", "yes")
			writeVICI(c, viciCmdResponse, "", ok.Bytes())
		}
	}
}

func writeVICI(w io.Writer, typ byte, name string, body []byte) {
	var p bytes.Buffer
	p.WriteByte(typ)
	if name != "" {
		p.WriteByte(byte(len(name)))
		p.WriteString(name)
	}
	p.Write(body)
	_ = binary.Write(w, binary.BigEndian, uint32(p.Len()))
	_, _ = w.Write(p.Bytes())
}

// topLevelKVs decodes the key-values of a request body (they carry no
// sections or lists here).
func topLevelKVs(b []byte) map[string]string {
	out := map[string]string{}
	for len(b) > 0 && b[0] == viciKeyValue {
		k := string(b[2 : 2+int(b[1])])
		b = b[2+int(b[1]):]
		n := int(binary.BigEndian.Uint16(b))
		out[k] = string(b[2 : 2+n])
		b = b[2+n:]
	}
	return out
}

func (f *fakeCharonServer) recorded() ([]string, []map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.names...), append([]map[string]string(nil), f.requests...)
}

func TestVICI(t *testing.T) {
	var e viciMsg
	e.section("site-b", func() {
		e.kv("uniqueid", "7")
		e.kv("state", "ESTABLISHED")
		e.section("child-sas", func() {
			e.section("lan-12", func() { e.kv("name", "lan"); e.kv("uniqueid", "12") })
			e.section("dmz-13", func() { e.kv("name", "dmz"); e.kv("uniqueid", "13") })
		})
	})
	var e2 viciMsg
	e2.section("site-c", func() { e2.kv("uniqueid", "9") })
	charon, sock := startFakeCharon(t, e.Bytes(), e2.Bytes())
	v := NewVICI(sock)
	ctx := t.Context()

	sas, err := v.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []wire.SA{{IKE: "site-b", Children: []string{"lan", "dmz"}}, {IKE: "site-c"}}
	if !reflect.DeepEqual(sas, want) {
		t.Fatalf("List = %+v, want %+v", sas, want)
	}
	if err := v.Terminate(ctx, sas[0]); err != nil {
		t.Fatal(err)
	}
	for _, sa := range sas {
		if err := v.Initiate(ctx, sa); err != nil {
			t.Fatal(err)
		}
	}
	names, reqs := charon.recorded()
	wantNames := []string{"list-sas", "terminate", "initiate", "initiate", "initiate"}
	if !reflect.DeepEqual(names, wantNames) {
		t.Fatalf("commands %v, want %v", names, wantNames)
	}
	wantReqs := []map[string]string{
		{"ike": "site-b", "force": "yes"},
		{"ike": "site-b", "child": "lan", "timeout": "-1"},
		{"ike": "site-b", "child": "dmz", "timeout": "-1"},
		{"ike": "site-c", "timeout": "-1"},
	}
	if !reflect.DeepEqual(reqs, wantReqs) {
		t.Fatalf("requests %v, want %v", reqs, wantReqs)
	}
}

func TestVICIWithoutDaemon(t *testing.T) {
	v := NewVICI(filepath.Join(t.TempDir(), "absent.vici"))
	sas, err := v.List(t.Context())
	if err != nil || len(sas) != 0 {
		t.Fatalf("List without charon: %v, %v; want none", sas, err)
	}
	if err := v.Terminate(t.Context(), wire.SA{IKE: "x"}); err != nil {
		t.Fatalf("Terminate without charon: %v", err)
	}
	if err := v.Initiate(t.Context(), wire.SA{IKE: "x"}); !errors.Is(err, errNoDaemon) {
		t.Fatalf("Initiate without charon: %v, want errNoDaemon", err)
	}
}
