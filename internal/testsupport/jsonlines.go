package testsupport

import (
	"bufio"
	"bytes"
	"os"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// ValidateJSONLines checks every line of jsonl against the JSON schema in
// the file schemaPath, failing t for each line that does not validate, and
// returns how many lines there were.
func ValidateJSONLines(t testing.TB, schemaPath string, jsonl []byte) int {
	t.Helper()
	f, err := os.Open(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatalf("%s: %v", schemaPath, err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("schema.json")
	if err != nil {
		t.Fatalf("%s: %v", schemaPath, err)
	}
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(jsonl))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		n++
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(sc.Bytes()))
		if err != nil {
			t.Errorf("line %d is not JSON: %v", n, err)
			continue
		}
		if err := sch.Validate(inst); err != nil {
			t.Errorf("line %d: %v", n, err)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}
