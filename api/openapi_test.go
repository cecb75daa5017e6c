package api_test

import (
	"bytes"
	"maps"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/warden-ir/warden/api"
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

// TestOpenAPIOperations checks each operation against what the server does:
// path parameters are declared, authenticated operations document 401, and
// operations that take a body document 400 and 413.
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
					want = append(want, "401")
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
