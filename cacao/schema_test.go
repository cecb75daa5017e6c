package cacao

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/warden-ir/warden/policies"
)

// schemaBase is the $id prefix of the official CACAO v2.0 schemas in
// testdata/cacao-json-schemas (see testdata/cacao_SOURCES.md).
const schemaBase = "https://raw.githubusercontent.com/oasis-open/cacao-json-schemas/main/schemas/"

// draft2020 replaces the schemas' declared draft-07 in the strict mode.
const draft2020 = "https://json-schema.org/draft/2020-12/schema"

// cacaoSchemas compiles the official schemas: the playbook, and the
// command schemas by command type (the playbook schema checks a command
// against command-data only, not against its type's own schema).
//
// strict false takes the schemas as published (draft-07): there
// unevaluatedProperties, the schemas' way of refusing unknown properties,
// is not a keyword and does nothing. strict true reads them as 2020-12,
// where it is, so that a property the specification does not define is
// an error too, with one change: command-data.json, the base every
// command type extends, loses its own top-level unevaluatedProperties.
// Read as 2020-12 it would refuse every command that has a command or
// content_b64 property (the specification's own examples included),
// because a $ref'd schema only sees the properties it evaluates itself;
// each command is still closed by its type's schema (openc2-http.json,
// manual.json), which validate checks too.
type cacaoSchemas struct {
	playbook *jsonschema.Schema
	commands map[string]*jsonschema.Schema
}

func compileSchemas(t *testing.T, strict bool) cacaoSchemas {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertContent() // content_b64 must be base64
	root := os.DirFS("testdata/cacao-json-schemas/schemas")
	err := fs.WalkDir(root, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Ext(p) != ".json" {
			return err
		}
		b, err := fs.ReadFile(root, p)
		if err != nil {
			return err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return err
		}
		obj := doc.(map[string]any)
		if obj["$id"] != schemaBase+p {
			t.Errorf("%s: $id %v, want %s", p, obj["$id"], schemaBase+p)
		}
		if strict {
			obj["$schema"] = draft2020
			if p == "commands/command-data.json" {
				delete(obj, "unevaluatedProperties")
			}
		}
		return c.AddResource(schemaBase+p, doc)
	})
	if err != nil {
		t.Fatalf("loading the CACAO schemas: %v", err)
	}
	s := cacaoSchemas{commands: map[string]*jsonschema.Schema{}}
	if s.playbook, err = c.Compile(schemaBase + "playbook.json"); err != nil {
		t.Fatalf("compiling playbook.json: %v", err)
	}
	for _, kind := range []string{"openc2-http", "manual", "http-api", "ssh", "bash"} {
		if s.commands[kind], err = c.Compile(schemaBase + "commands/" + kind + ".json"); err != nil {
			t.Fatalf("compiling commands/%s.json: %v", kind, err)
		}
	}
	return s
}

// validate checks a playbook document against the playbook schema and
// each command against its type's schema.
func (s cacaoSchemas) validate(data []byte) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return err
	}
	if err := s.playbook.Validate(inst); err != nil {
		return err
	}
	var pb Playbook
	if err := json.Unmarshal(data, &pb); err != nil {
		return err
	}
	for _, st := range inst.(map[string]any)["workflow"].(map[string]any) {
		cmds, _ := st.(map[string]any)["commands"].([]any)
		for _, c := range cmds {
			kind, _ := c.(map[string]any)["type"].(string)
			if sch := s.commands[kind]; sch != nil {
				if err := sch.Validate(c); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

var exportTime = time.Date(2025, 3, 1, 9, 30, 0, 123456789, time.UTC)

// exportDefault exports a default runbook with the approval the default
// policies give it.
func exportDefault(t *testing.T, set *policies.Set, name string) []byte {
	t.Helper()
	pb, err := Export(set.Runbooks[name], ExportOptions{
		Actuator: "http://127.0.0.1:8780", Created: exportTime, Modified: exportTime.Add(time.Hour),
		Approval: ApprovalFor(set, name),
	})
	if err != nil {
		t.Fatalf("exporting %s: %v", name, err)
	}
	data, err := Marshal(pb)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func defaultSet(t *testing.T) *policies.Set {
	t.Helper()
	set, err := policies.Default()
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Runbooks) == 0 {
		t.Fatal("the default policies have no runbooks")
	}
	return set
}

// TestCacaoExportValidatesAgainstOfficialSchemas: every default runbook,
// exported, is a valid CACAO v2.0 playbook, by the schemas as published
// and read strictly.
func TestCacaoExportValidatesAgainstOfficialSchemas(t *testing.T) {
	set := defaultSet(t)
	for mode, strict := range map[string]bool{"as published": false, "strict": true} {
		schemas := compileSchemas(t, strict)
		for name := range set.Runbooks {
			t.Run(mode+"/"+name, func(t *testing.T) {
				if err := schemas.validate(exportDefault(t, set, name)); err != nil {
					t.Errorf("%s does not validate:\n%v", name, err)
				}
			})
		}
	}
}

// TestCacaoSchemaCatchesBrokenPlaybooks proves the validation above can
// fail: each edit of a valid export breaks a rule of the specification.
func TestCacaoSchemaCatchesBrokenPlaybooks(t *testing.T) {
	set := defaultSet(t)
	valid := exportDefault(t, set, "respond-confirmed-compromise")
	cases := map[string]struct {
		edit       func(pb map[string]any)
		strictOnly bool
	}{
		"no created_by":      {edit: func(pb map[string]any) { delete(pb, "created_by") }},
		"wrong spec_version": {edit: func(pb map[string]any) { pb["spec_version"] = "cacao-1.0" }},
		"timestamp with offset": {edit: func(pb map[string]any) {
			pb["modified"] = "2025-03-01T10:30:00.000+09:00"
		}},
		"step without agent": {edit: func(pb map[string]any) {
			for _, st := range workflowOf(pb) {
				if st["type"] == "action" {
					delete(st, "agent")
				}
			}
		}},
		"openc2 command without content": {edit: func(pb map[string]any) {
			for _, st := range workflowOf(pb) {
				for _, c := range commandsOf(st) {
					if c["type"] == "openc2-http" {
						delete(c, "content_b64")
					}
				}
			}
		}},
		"content_b64 not base64": {edit: func(pb map[string]any) {
			for _, st := range workflowOf(pb) {
				for _, c := range commandsOf(st) {
					if c["type"] == "openc2-http" {
						c["content_b64"] = "not base64!"
					}
				}
			}
		}},
		"unknown playbook property": {strictOnly: true, edit: func(pb map[string]any) { pb["x_warden_note"] = "no" }},
		"unknown step property": {strictOnly: true, edit: func(pb map[string]any) {
			for _, st := range workflowOf(pb) {
				st["retries"] = 3
			}
		}},
		"unknown command property": {strictOnly: true, edit: func(pb map[string]any) {
			for _, st := range workflowOf(pb) {
				for _, c := range commandsOf(st) {
					c["body"] = "{}"
				}
			}
		}},
		"step id that is not a step type": {strictOnly: true, edit: func(pb map[string]any) {
			wf := pb["workflow"].(map[string]any)
			for id, st := range wf {
				if strings.HasPrefix(id, "action--") {
					delete(wf, id)
					wf["task--"+strings.TrimPrefix(id, "action--")] = st
					return
				}
			}
		}},
	}
	for name, tc := range cases {
		for mode, strict := range map[string]bool{"as published": false, "strict": true} {
			if tc.strictOnly && !strict {
				continue
			}
			t.Run(name+"/"+mode, func(t *testing.T) {
				var pb map[string]any
				if err := json.Unmarshal(valid, &pb); err != nil {
					t.Fatal(err)
				}
				tc.edit(pb)
				broken, err := json.Marshal(pb)
				if err != nil {
					t.Fatal(err)
				}
				if err := compileSchemas(t, strict).validate(broken); err == nil {
					t.Errorf("the schemas accepted a playbook with %s", name)
				}
			})
		}
	}
}

func workflowOf(pb map[string]any) []map[string]any {
	var out []map[string]any
	for _, st := range pb["workflow"].(map[string]any) {
		out = append(out, st.(map[string]any))
	}
	return out
}

func commandsOf(st map[string]any) []map[string]any {
	var out []map[string]any
	cmds, _ := st["commands"].([]any)
	for _, c := range cmds {
		out = append(out, c.(map[string]any))
	}
	return out
}
