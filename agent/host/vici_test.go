package host

import (
	"errors"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/internal/charon/charontest"
)

func TestVICI(t *testing.T) {
	var e charontest.Body
	e.Section("site-b", func() {
		e.KV("uniqueid", "7")
		e.KV("state", "ESTABLISHED")
		e.Section("child-sas", func() {
			e.Section("lan-12", func() { e.KV("name", "lan"); e.KV("uniqueid", "12") })
			e.Section("dmz-13", func() { e.KV("name", "dmz"); e.KV("uniqueid", "13") })
		})
	})
	var e2 charontest.Body
	e2.Section("site-c", func() { e2.KV("uniqueid", "9") })
	fake := &charontest.Server{SAs: [][]byte{e.Bytes(), e2.Bytes()}}
	sock := charontest.Start(t, fake)
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
	names, reqs := fake.Recorded()
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
