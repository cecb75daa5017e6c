package api_test

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"iter"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/warden-ir/warden/api"
	v1 "github.com/warden-ir/warden/api/v1"
	"github.com/warden-ir/warden/auth"
)

// openAPIDoc is the part of an OpenAPI 3 document the contract tests read.
type openAPIDoc struct {
	OpenAPI  string                          `yaml:"openapi"`
	Security []map[string][]string           `yaml:"security"`
	Paths    map[string]map[string]operation `yaml:"paths"`
}

type operation struct {
	// Security is nil when the operation inherits the document's; an
	// empty list means "no authentication".
	Security   *[]map[string][]string `yaml:"security"`
	Parameters []struct {
		Name     string `yaml:"name"`
		In       string `yaml:"in"`
		Required bool   `yaml:"required"`
	} `yaml:"parameters"`
	Responses map[string]any `yaml:"responses"`
	// Role is x-warden-role: the least role that may call the operation.
	Role string `yaml:"x-warden-role"`
}

func (o operation) public() bool { return o.Security != nil && len(*o.Security) == 0 }

// loadOpenAPI parses api/openapi.yaml as it is on disk.
func loadOpenAPI(tb testing.TB) openAPIDoc {
	tb.Helper()
	b, err := os.ReadFile("openapi.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	var doc openAPIDoc
	if err := yaml.Unmarshal(b, &doc); err != nil {
		tb.Fatalf("parsing openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") || len(doc.Paths) == 0 {
		tb.Fatalf("openapi.yaml: version %q with %d paths", doc.OpenAPI, len(doc.Paths))
	}
	return doc
}

func routeKey(method, path string) string { return strings.ToUpper(method) + " " + path }

// TestOpenAPIMatchesRoutes: every registered route is documented with its
// method, and every documented operation is registered.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	s := newStack(t, nil, nil)
	registered := map[string]bool{}
	for _, r := range s.d.API.Routes() {
		registered[routeKey(r.Method, r.Path)] = true
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			documented[routeKey(method, path)] = true
		}
	}
	for _, k := range slices.Sorted(maps.Keys(registered)) {
		if !documented[k] {
			t.Errorf("route %s is served but not in openapi.yaml", k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(documented)) {
		if !registered[k] {
			t.Errorf("openapi.yaml documents %s, which is not served", k)
		}
	}
}

var pathParam = regexp.MustCompile(`\{([^}]+)\}`)

// TestOpenAPIRoles: each operation's x-warden-role is the least role the
// server lets through (Route.Permission), and the public operations, which
// take no token, name none.
func TestOpenAPIRoles(t *testing.T) {
	doc := loadOpenAPI(t)
	s := newStack(t, nil, nil)
	for _, r := range s.d.API.Routes() {
		op, ok := doc.Paths[r.Path][strings.ToLower(r.Method)]
		if !ok {
			continue // TestOpenAPIMatchesRoutes reports it
		}
		key := routeKey(r.Method, r.Path)
		if r.Permission == 0 {
			if !op.public() || op.Role != "" {
				t.Errorf("%s takes no token, but the document asks for one (public %t, x-warden-role %q)", key, op.public(), op.Role)
			}
			continue
		}
		if op.public() {
			t.Errorf("%s needs %s, but the document marks it public", key, r.Permission)
		}
		if want := string(auth.Least(r.Permission)); op.Role != want {
			t.Errorf("%s: x-warden-role %q, want %q (it needs %s)", key, op.Role, want, r.Permission)
		}
	}
}

// TestOpenAPIOperations checks each operation against what the server does:
// path parameters are declared, authenticated operations document 401, 403
// and 429, and operations that take a body document 400, 413 and 415.
func TestOpenAPIOperations(t *testing.T) {
	doc := loadOpenAPI(t)
	if len(doc.Security) == 0 {
		t.Fatal("openapi.yaml has no document-wide security requirement")
	}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			t.Run(routeKey(method, path), func(t *testing.T) {
				var declared []string
				for _, p := range op.Parameters {
					if p.In == "path" {
						declared = append(declared, p.Name)
						if !p.Required {
							t.Errorf("path parameter %s is not required", p.Name)
						}
					}
				}
				var inPath []string
				for _, m := range pathParam.FindAllStringSubmatch(path, -1) {
					inPath = append(inPath, m[1])
				}
				slices.Sort(declared)
				slices.Sort(inPath)
				if !slices.Equal(declared, inPath) {
					t.Errorf("path parameters declared %v, in the path %v", declared, inPath)
				}
				want := []string{}
				if !op.public() {
					want = append(want, "401", "403", "429")
				}
				if method == "post" {
					want = append(want, "400", "413", "415")
				}
				for _, code := range want {
					if _, ok := op.Responses[code]; !ok {
						t.Errorf("response %s is not documented", code)
					}
				}
			})
		}
	}
}

// TestRoutesRequireToken: every route the document does not mark public
// refuses a request without the bearer token or with a wrong one, and the
// public ones are exactly the probes and the document itself.
func TestRoutesRequireToken(t *testing.T) {
	doc := loadOpenAPI(t)
	s := newStack(t, nil, nil)
	var public []string
	for _, r := range s.d.API.Routes() {
		op, ok := doc.Paths[r.Path][strings.ToLower(r.Method)]
		if !ok {
			continue // TestOpenAPIMatchesRoutes reports it
		}
		path := pathParam.ReplaceAllString(r.Path, "x")
		var body []byte
		if r.Method == http.MethodPost {
			body = []byte(indicatorJSON("c2_beacon", "gw-hq", "high"))
		}
		if op.public() != (r.Permission == 0) {
			t.Errorf("%s: the document says public %t, the server asks for %q", routeKey(r.Method, r.Path), op.public(), r.Permission)
		}
		if op.public() {
			public = append(public, r.Path)
			t.Run("public "+routeKey(r.Method, r.Path), func(t *testing.T) {
				if got := s.call(t, r.Method, path, body, withoutAuth()); got.status != http.StatusOK {
					t.Errorf("without a token: %s, want 200", got)
				}
			})
			continue
		}
		for name, opt := range map[string]option{
			"no header":       withoutAuth(),
			"wrong token":     withHeader("Authorization", "Bearer not-the-token"),
			"token prefix":    withHeader("Authorization", "Bearer "+testToken[:len(testToken)-1]),
			"token suffixed":  withHeader("Authorization", "Bearer "+testToken+"x"),
			"no scheme":       withHeader("Authorization", testToken),
			"basic scheme":    withHeader("Authorization", "Basic "+testToken),
			"lower-case word": withHeader("Authorization", "bearer"+testToken),
			"empty bearer":    withHeader("Authorization", "Bearer "),
		} {
			t.Run(routeKey(r.Method, r.Path)+" "+name, func(t *testing.T) {
				got := s.call(t, r.Method, path, body, opt)
				expectError(t, got, http.StatusUnauthorized)
				if !strings.HasPrefix(got.header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("WWW-Authenticate: %q", got.header.Get("WWW-Authenticate"))
				}
			})
		}
	}
	slices.Sort(public)
	if want := []string{"/healthz", "/metrics", "/readyz", "/v1/openapi.yaml"}; !slices.Equal(public, want) {
		t.Errorf("public routes %v, want %v", public, want)
	}
	// Nothing reached the store through the refused requests.
	if n, _ := s.d.Store.CountIndicators(t.Context()); n != 0 {
		t.Errorf("refused requests stored %d indicators", n)
	}
}

// TestOpenAPIServed: /v1/openapi.yaml serves the embedded document, which
// is the file beside the code.
func TestOpenAPIServed(t *testing.T) {
	s := newStack(t, nil, nil)
	onDisk, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := s.call(t, "GET", "/v1/openapi.yaml", nil, withoutAuth())
	expectStatus(t, r, http.StatusOK)
	if ct := r.header.Get("Content-Type"); ct != "application/yaml" {
		t.Errorf("Content-Type %q", ct)
	}
	if !bytes.Equal(r.body, api.OpenAPI) || !bytes.Equal(r.body, onDisk) {
		t.Errorf("served %d bytes; embedded %d, on disk %d", len(r.body), len(api.OpenAPI), len(onDisk))
	}
	var doc openAPIDoc
	if err := yaml.Unmarshal(r.body, &doc); err != nil || len(doc.Paths) == 0 {
		t.Errorf("served document does not parse: %v", err)
	}
}

// TestOpenAPIRefsResolve: every local $ref points at something.
func TestOpenAPIRefsResolve(t *testing.T) {
	b, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var root map[string]any
	if err := yaml.Unmarshal(b, &root); err != nil {
		t.Fatal(err)
	}
	resolve := func(ref string) bool {
		var node any = root
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			m, ok := node.(map[string]any)
			if !ok {
				return false
			}
			if node, ok = m[part]; !ok {
				return false
			}
		}
		return true
	}
	refs := 0
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				if s, ok := c.(string); ok && k == "$ref" {
					refs++
					if !strings.HasPrefix(s, "#/") || !resolve(s) {
						t.Errorf("$ref %q does not resolve", s)
					}
				}
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	walk(root)
	if refs == 0 {
		t.Error("found no $ref at all")
	}
}

// v1Schemas names the schema of openapi.yaml (under components/schemas)
// that documents each api/v1 type.
var v1Schemas = map[reflect.Type]string{
	reflect.TypeFor[v1.Error]():                     "Error",
	reflect.TypeFor[v1.IndicatorDecision]():         "IndicatorDecision",
	reflect.TypeFor[v1.StartInvestigationRequest](): "StartInvestigationRequest",
	reflect.TypeFor[v1.CaptureRequest]():            "CaptureRequest",
	reflect.TypeFor[v1.Health]():                    "Health",
	reflect.TypeFor[v1.Indicator]():                 "Indicator",
	reflect.TypeFor[v1.Observables]():               "Observables",
	reflect.TypeFor[v1.IndicatorBatch]():            "IndicatorBatch",
	reflect.TypeFor[v1.IntakeResponse]():            "IntakeResponse",
	reflect.TypeFor[v1.Accepted]():                  "Accepted",
	reflect.TypeFor[v1.SkippedAlert]():              "SkippedAlert",
	reflect.TypeFor[v1.PlanResponse]():              "PlanResponse",
	reflect.TypeFor[v1.Decision]():                  "Decision",
	reflect.TypeFor[v1.Explanation]():               "Explanation",
	reflect.TypeFor[v1.Plan]():                      "Plan",
	reflect.TypeFor[v1.PlanStep]():                  "PlanStep",
	reflect.TypeFor[v1.Change]():                    "Change",
	reflect.TypeFor[v1.Gate]():                      "Gate",
	reflect.TypeFor[v1.Incident]():                  "Incident",
	reflect.TypeFor[v1.IncidentList]():              "IncidentList",
	reflect.TypeFor[v1.IncidentDetail]():            "IncidentDetail",
	reflect.TypeFor[v1.IndicatorRecord]():           "IndicatorRecord",
	reflect.TypeFor[v1.RecordedIndicator]():         "RecordedIndicator",
	reflect.TypeFor[v1.Run]():                       "Run",
	reflect.TypeFor[v1.Step]():                      "Step",
	reflect.TypeFor[v1.RunList]():                   "RunList",
	reflect.TypeFor[v1.ApproveRequest]():            "ApproveRequest",
	reflect.TypeFor[v1.CancelRequest]():             "CancelRequest",
	reflect.TypeFor[v1.ResolveRequest]():            "ResolveRequest",
	reflect.TypeFor[v1.Resolved]():                  "Resolved",
	reflect.TypeFor[v1.StartRunbookRequest]():       "StartRunbookRequest",
	reflect.TypeFor[v1.RunbookDryRun]():             "RunbookDryRun",
	reflect.TypeFor[v1.Gateway]():                   "Gateway",
	reflect.TypeFor[v1.WireGuardEnd]():              "WireGuardEnd",
	reflect.TypeFor[v1.StrongSwanEnd]():             "StrongSwanEnd",
	reflect.TypeFor[v1.Posture]():                   "Posture",
	reflect.TypeFor[v1.GatewayList]():               "GatewayList",
	reflect.TypeFor[v1.AuditVerification]():         "AuditVerification",
	reflect.TypeFor[v1.BreakerResetRequest]():       "BreakerResetRequest",
	reflect.TypeFor[v1.BreakerReset]():              "BreakerReset",
	reflect.TypeFor[v1.DriftCheckRequest]():         "DriftCheckRequest",
	reflect.TypeFor[v1.DriftCheckResponse]():        "DriftCheckResponse",
	reflect.TypeFor[v1.DriftResult]():               "DriftResult",
	reflect.TypeFor[v1.BaselineCounts]():            "BaselineCounts",
	reflect.TypeFor[v1.BaselineChange]():            "BaselineChange",
	reflect.TypeFor[v1.BaselineEvidence]():          "BaselineEvidence",
	reflect.TypeFor[v1.PatchWaveRequest]():          "PatchWaveRequest",
	reflect.TypeFor[v1.PatchWave]():                 "PatchWave",
	reflect.TypeFor[v1.WhoAmI]():                    "WhoAmI",
	reflect.TypeFor[v1.Status]():                    "Status",
	reflect.TypeFor[v1.Lease]():                     "Lease",
	reflect.TypeFor[v1.Replica]():                   "Replica",
	reflect.TypeFor[v1.User]():                      "User",
	reflect.TypeFor[v1.UserList]():                  "UserList",
	reflect.TypeFor[v1.AddUserRequest]():            "AddUserRequest",
	reflect.TypeFor[v1.IssuedToken]():               "IssuedToken",
	reflect.TypeFor[v1.Evidence]():                  "Evidence",
	reflect.TypeFor[v1.Custody]():                   "Custody",
	reflect.TypeFor[v1.EvidenceList]():              "EvidenceList",
	reflect.TypeFor[v1.EvidenceDetail]():            "EvidenceDetail",
	reflect.TypeFor[v1.Block]():                     "Block",
	reflect.TypeFor[v1.GatewayBlocks]():             "GatewayBlocks",
	reflect.TypeFor[v1.BlockList]():                 "BlockList",
	reflect.TypeFor[v1.BlockRequest]():              "BlockRequest",
	reflect.TypeFor[v1.BlockDecision]():             "BlockDecision",
	reflect.TypeFor[v1.ThreatIntakeResponse]():      "ThreatIntakeResponse",
	reflect.TypeFor[v1.ThreatBlock]():               "ThreatBlock",
	reflect.TypeFor[v1.ThreatSkipped]():             "ThreatSkipped",
	reflect.TypeFor[v1.OpenC2Message]():             "OpenC2Message",
	reflect.TypeFor[v1.OpenC2Headers]():             "OpenC2Headers",
	reflect.TypeFor[v1.OpenC2Body]():                "OpenC2Body",
	reflect.TypeFor[v1.OpenC2Content]():             "OpenC2Content",
	reflect.TypeFor[v1.OpenC2Command]():             "OpenC2Command",
	reflect.TypeFor[v1.OpenC2Target]():              "OpenC2Target",
	reflect.TypeFor[v1.OpenC2Connection]():          "OpenC2Connection",
	reflect.TypeFor[v1.OpenC2Args]():                "OpenC2Args",
	reflect.TypeFor[v1.SLPFArgs]():                  "SLPFArgs",
	reflect.TypeFor[v1.OpenC2Warden]():              "OpenC2Warden",
	reflect.TypeFor[v1.OpenC2Response]():            "OpenC2Response",
	reflect.TypeFor[v1.OpenC2Results]():             "OpenC2Results",
	reflect.TypeFor[v1.SLPFResults]():               "SLPFResults",
	reflect.TypeFor[v1.OpenC2Blocks]():              "OpenC2Blocks",
	reflect.TypeFor[v1.GatewaySensors]():            "GatewaySensors",
	reflect.TypeFor[v1.AdminSource]():               "AdminSource",
}

// foreignSchemas are documented formats that are not Warden's types.
var foreignSchemas = []string{"AlertmanagerMessage"}

const schemaRef = "#/components/schemas/"

// openAPISchemas returns components/schemas of openapi.yaml, generically.
func openAPISchemas(tb testing.TB) map[string]any {
	tb.Helper()
	b, err := os.ReadFile("openapi.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	var root struct {
		Components struct {
			Schemas map[string]any `yaml:"schemas"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(b, &root); err != nil {
		tb.Fatal(err)
	}
	return root.Components.Schemas
}

// schemaProperties returns a schema's properties, merging those of allOf
// (resolving $ref) as JSON merges an embedded struct's fields.
func schemaProperties(tb testing.TB, schemas map[string]any, node any) map[string]any {
	tb.Helper()
	m, _ := node.(map[string]any)
	if ref, ok := m["$ref"].(string); ok {
		return schemaProperties(tb, schemas, schemas[strings.TrimPrefix(ref, schemaRef)])
	}
	props := map[string]any{}
	if p, ok := m["properties"].(map[string]any); ok {
		maps.Copy(props, p)
	}
	if all, ok := m["allOf"].([]any); ok {
		for _, part := range all {
			maps.Copy(props, schemaProperties(tb, schemas, part))
		}
	}
	return props
}

// jsonFieldsOf returns the JSON names of t's fields, as encoding/json
// sees them (embedded structs flattened), with each field's type.
func jsonFieldsOf(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for f := range fieldsOf(t) {
		out[f.name] = f.field
	}
	return out
}

type namedField struct {
	name  string
	field reflect.StructField
}

func fieldsOf(t reflect.Type) iter.Seq[namedField] {
	return func(yield func(namedField) bool) {
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !f.IsExported() || name == "-" {
				continue
			}
			if f.Anonymous && name == "" {
				for g := range fieldsOf(f.Type) {
					if !yield(g) {
						return
					}
				}
				continue
			}
			if name == "" {
				name = f.Name
			}
			if !yield(namedField{name, f}) {
				return
			}
		}
	}
}

// refOf is the $ref a property points at, directly or as its items.
func refOf(prop any) string {
	m, _ := prop.(map[string]any)
	if ref, ok := m["$ref"].(string); ok {
		return ref
	}
	if items, ok := m["items"].(map[string]any); ok {
		ref, _ := items["$ref"].(string)
		return ref
	}
	return ""
}

// TestOpenAPISchemasMatchV1: every api/v1 type's JSON fields are the
// properties of its schema, both ways, and a field whose type is another
// v1 type refers to that type's schema.
func TestOpenAPISchemasMatchV1(t *testing.T) {
	schemas := openAPISchemas(t)
	for typ, name := range v1Schemas {
		t.Run(typ.Name(), func(t *testing.T) {
			schema, ok := schemas[name]
			if !ok {
				t.Fatalf("openapi.yaml has no schema %s", name)
			}
			props := schemaProperties(t, schemas, schema)
			fields := jsonFieldsOf(typ)
			for _, f := range slices.Sorted(maps.Keys(fields)) {
				prop, ok := props[f]
				if !ok {
					t.Errorf("field %q of v1.%s is not in schema %s", f, typ.Name(), name)
					continue
				}
				elem := fields[f].Type
				for elem.Kind() == reflect.Pointer || elem.Kind() == reflect.Slice {
					elem = elem.Elem()
				}
				if want, ok := v1Schemas[elem]; ok {
					if got := refOf(prop); got != schemaRef+want {
						t.Errorf("property %s.%s refers to %q, want %q (v1.%s)", name, f, got, schemaRef+want, elem.Name())
					}
				}
			}
			for _, p := range slices.Sorted(maps.Keys(props)) {
				if _, ok := fields[p]; !ok {
					t.Errorf("schema %s documents %q, which v1.%s does not have", name, p, typ.Name())
				}
			}
		})
	}
	documented := slices.Collect(maps.Values(v1Schemas))
	for _, name := range slices.Sorted(maps.Keys(schemas)) {
		if !slices.Contains(documented, name) && !slices.Contains(foreignSchemas, name) {
			t.Errorf("schema %s is no api/v1 type", name)
		}
	}
}

// TestV1TypesHaveSchemas: every exported struct type of api/v1 is in
// v1Schemas, so TestOpenAPISchemasMatchV1 checks it.
func TestV1TypesHaveSchemas(t *testing.T) {
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join("v1", "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("listing api/v1: %v", err)
	}
	known := map[string]bool{}
	for typ := range v1Schemas {
		known[typ.Name()] = true
	}
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, spec := range gd.Specs {
				ts := spec.(*ast.TypeSpec)
				if _, isStruct := ts.Type.(*ast.StructType); isStruct && ts.Name.IsExported() && !known[ts.Name.Name] {
					t.Errorf("v1.%s (%s) has no schema in v1Schemas", ts.Name.Name, path)
				}
			}
		}
	}
}

// TestOpenAPIRoutesUseV1: each operation documents the v1 types the
// server takes and sends.
func TestOpenAPIRoutesUseV1(t *testing.T) {
	type io struct {
		request   string
		responses map[string]string
	}
	routes := map[string]io{
		"GET /healthz":                            {responses: map[string]string{"200": "Health"}},
		"GET /readyz":                             {responses: map[string]string{"200": "Health", "503": "Health"}},
		"POST /v1/indicators":                     {request: "IndicatorBatch", responses: map[string]string{"202": "IntakeResponse"}},
		"POST /v1/intake/alertmanager":            {request: "AlertmanagerMessage", responses: map[string]string{"202": "IntakeResponse"}},
		"POST /v1/intake/suricata":                {responses: map[string]string{"202": "IntakeResponse"}}, // the detector's own records
		"POST /v1/intake/zeek":                    {responses: map[string]string{"202": "IntakeResponse"}},
		"POST /v1/intake/wazuh":                   {responses: map[string]string{"202": "IntakeResponse"}},
		"POST /v1/intake/falco":                   {responses: map[string]string{"202": "IntakeResponse"}},
		"POST /v1/plan":                           {request: "Indicator", responses: map[string]string{"200": "PlanResponse"}},
		"GET /v1/incidents":                       {responses: map[string]string{"200": "IncidentList"}},
		"GET /v1/incidents/{id}":                  {responses: map[string]string{"200": "IncidentDetail"}},
		"GET /v1/runs":                            {responses: map[string]string{"200": "RunList"}},
		"GET /v1/runs/{id}":                       {responses: map[string]string{"200": "Run"}},
		"POST /v1/runs/{id}/approve":              {request: "ApproveRequest", responses: map[string]string{"200": "Run"}},
		"POST /v1/runs/{id}/cancel":               {request: "CancelRequest", responses: map[string]string{"200": "Run"}},
		"POST /v1/indicators/{id}/resolve":        {request: "ResolveRequest", responses: map[string]string{"200": "Resolved"}},
		"POST /v1/runbooks/{name}/runs":           {request: "StartRunbookRequest", responses: map[string]string{"200": "RunbookDryRun", "202": "Run"}},
		"GET /v1/gateways":                        {responses: map[string]string{"200": "GatewayList"}},
		"GET /v1/gateways/{id}":                   {responses: map[string]string{"200": "Gateway"}},
		"GET /v1/audit/verify":                    {responses: map[string]string{"200": "AuditVerification"}},
		"POST /v1/breaker/reset":                  {request: "BreakerResetRequest", responses: map[string]string{"200": "BreakerReset"}},
		"POST /v1/drift/check":                    {request: "DriftCheckRequest", responses: map[string]string{"200": "DriftCheckResponse"}},
		"POST /v1/patch/waves":                    {request: "PatchWaveRequest", responses: map[string]string{"202": "PatchWave"}},
		"GET /v1/patch/waves/{id}":                {responses: map[string]string{"200": "PatchWave"}},
		"GET /v1/whoami":                          {responses: map[string]string{"200": "WhoAmI"}},
		"GET /v1/status":                          {responses: map[string]string{"200": "Status"}},
		"GET /v1/users":                           {responses: map[string]string{"200": "UserList"}},
		"POST /v1/users":                          {request: "AddUserRequest", responses: map[string]string{"201": "IssuedToken"}},
		"POST /v1/users/{name}/disable":           {responses: map[string]string{"200": "User"}},
		"POST /v1/users/{name}/token":             {responses: map[string]string{"200": "IssuedToken"}},
		"GET /v1/incidents/{id}/evidence":         {responses: map[string]string{"200": "EvidenceList"}},
		"GET /v1/evidence/{id}":                   {responses: map[string]string{"200": "EvidenceDetail"}},
		"POST /v1/incidents/{id}/evidence/export": {}, // a tar.gz archive
		"POST /v1/incidents/{id}/investigations":  {request: "StartInvestigationRequest", responses: map[string]string{"202": "Run"}},
		"POST /v1/gateways/{id}/captures":         {request: "CaptureRequest", responses: map[string]string{"202": "Run"}},
		"GET /v1/incidents/{id}/report":           {}, // HTML or Markdown
		"POST /v1/intake/stix":                    {responses: map[string]string{"202": "ThreatIntakeResponse"}},
		"POST /v1/intake/misp":                    {responses: map[string]string{"202": "ThreatIntakeResponse"}},
		"POST /.well-known/openc2":                {request: "OpenC2Message", responses: map[string]string{"200": "OpenC2Message", "202": "OpenC2Message", "400": "OpenC2Message", "404": "OpenC2Message", "501": "OpenC2Message", "503": "OpenC2Message"}},
		"GET /v1/gateways/{id}/sensors":           {responses: map[string]string{"200": "GatewaySensors"}},
		"GET /v1/blocks":                          {responses: map[string]string{"200": "BlockList"}},
		"POST /v1/blocks":                         {request: "BlockRequest", responses: map[string]string{"200": "Block", "201": "Block"}},
		"GET /v1/blocks/{number}":                 {responses: map[string]string{"200": "Block"}},
		"POST /v1/blocks/{number}/approve":        {request: "BlockDecision", responses: map[string]string{"200": "Block"}},
		"POST /v1/blocks/{number}/refuse":         {request: "BlockDecision", responses: map[string]string{"200": "Block"}},
		"POST /v1/blocks/{number}/withdraw":       {request: "BlockDecision", responses: map[string]string{"200": "Block"}},
		"GET /metrics":                            {}, // Prometheus text
		"GET /v1/openapi.yaml":                    {}, // this document
	}
	b, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var root struct {
		Paths map[string]map[string]struct {
			RequestBody map[string]any `yaml:"requestBody"`
			Responses   map[string]any `yaml:"responses"`
		} `yaml:"paths"`
	}
	if err := yaml.Unmarshal(b, &root); err != nil {
		t.Fatal(err)
	}
	seen := 0
	for path, ops := range root.Paths {
		for method, op := range ops {
			key := routeKey(method, path)
			want, ok := routes[key]
			if !ok {
				t.Errorf("%s: no entry in this test's table", key)
				continue
			}
			seen++
			if want.request != "" && !slices.Contains(refsIn(op.RequestBody), schemaRef+want.request) {
				t.Errorf("%s: the request body does not refer to %s: %v", key, want.request, refsIn(op.RequestBody))
			}
			for code, schema := range want.responses {
				if got := refsIn(op.Responses[code]); !slices.Contains(got, schemaRef+schema) {
					t.Errorf("%s: response %s does not refer to %s: %v", key, code, schema, got)
				}
			}
		}
	}
	if seen != len(routes) {
		t.Errorf("the table names %d operations, openapi.yaml has %d", len(routes), seen)
	}
}

// refsIn lists the $refs anywhere under node.
func refsIn(node any) []string {
	var out []string
	switch n := node.(type) {
	case map[string]any:
		for k, v := range n {
			if s, ok := v.(string); ok && k == "$ref" {
				out = append(out, s)
			}
			out = append(out, refsIn(v)...)
		}
	case []any:
		for _, v := range n {
			out = append(out, refsIn(v)...)
		}
	}
	return out
}
