package config

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"

	"github.com/golb/golb/drivers"
)

var testSchema = []drivers.Attribute{
	{Name: "image", Type: drivers.TypeString},
	{Name: "cpus", Type: drivers.TypeNumber},
	{Name: "privileged", Type: drivers.TypeBool},
	{Name: "command", Type: drivers.TypeStringList},
	{Name: "env", Type: drivers.TypeStringMap},
}

// configBody parses a one-group file whose group has the given config block
// contents and returns that block's body, decoded by Parse as core does.
func configBody(t *testing.T, inner string) hcl.Body {
	t.Helper()
	cfg := mustParse(t, "group \"a\" {\n  port = 7000\n  config {\n"+inner+"\n  }\n}\n")
	if cfg.Groups[0].Config == nil {
		t.Fatal("no config block decoded")
	}
	return cfg.Groups[0].Config.Body
}

func TestDecodeBlockTypes(t *testing.T) {
	body := configBody(t, `    image      = "myapp:1.2"
    cpus       = 1.5
    privileged = true
    command    = ["./server", "-v"]
    env        = { A = "1", B = "two" }`)
	raw, diags := DecodeBlock(body, testSchema, "the test driver's config block")
	if diags.HasErrors() {
		t.Fatalf("diagnostics: %v", diags)
	}
	var got map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatalf("DecodeBlock returned invalid JSON %s: %v", raw, err)
	}
	want := map[string]any{
		"image":      "myapp:1.2",
		"cpus":       1.5,
		"privileged": true,
		"command":    []any{"./server", "-v"},
		"env":        map[string]any{"A": "1", "B": "two"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoded %s\nwant %v", raw, want)
	}
}

func TestDecodeBlockOmitsUnset(t *testing.T) {
	raw, diags := DecodeBlock(configBody(t, `    image = "x:1"`), testSchema, "block")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if string(raw) != `{"image":"x:1"}` {
		t.Errorf("got %s, want only the attribute written", raw)
	}
	raw, diags = DecodeBlock(configBody(t, ""), testSchema, "block")
	if diags.HasErrors() || string(raw) != `{}` {
		t.Errorf("empty block: got %s %v, want {}", raw, diags)
	}
}

func TestDecodeBlockConvertsCompatibleValues(t *testing.T) {
	// HCL converts a number to a string and a numeric string to a number, as
	// it does everywhere else; drivers get the schema's type.
	raw, diags := DecodeBlock(configBody(t, `    image = 12
    cpus  = "2"
    command = [1, "b"]`), testSchema, "block")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if string(raw) != `{"command":["1","b"],"cpus":2,"image":"12"}` {
		t.Errorf("got %s", raw)
	}
}

func TestDecodeBlockWrongType(t *testing.T) {
	for _, c := range []struct{ attr, value string }{
		{"cpus", `"many"`},
		{"privileged", `"sure"`},
		{"command", `"./server"`},
		{"env", `["A"]`},
		{"image", `["a", "b"]`},
	} {
		t.Run(c.attr, func(t *testing.T) {
			inner := "    " + c.attr + strings.Repeat(" ", 13-len(c.attr)) + "= " + c.value
			raw, diags := DecodeBlock(configBody(t, inner), testSchema, "block")
			if !diags.HasErrors() || raw != nil {
				t.Fatalf("got %s %v, want an error and no JSON", raw, diags)
			}
			// The value starts at column 4+13+2+1 on line 4 (the block opens on 3).
			if s := diags[0].Subject; s == nil || s.Start.Line != 4 || s.Start.Column != 20 {
				t.Errorf("%s: error at %v, want 4:20, the value", diags[0].Summary, s)
			}
		})
	}
}

func TestDecodeBlockUnknownAttributeListsAccepted(t *testing.T) {
	raw, diags := DecodeBlock(configBody(t, `    imag = "x:1"`), testSchema, "the docker driver's config block")
	if !diags.HasErrors() || raw != nil {
		t.Fatalf("got %s %v, want an error", raw, diags)
	}
	d := diags[0]
	if d.Summary != "Unsupported argument" {
		t.Errorf("summary %q", d.Summary)
	}
	if want := "The docker driver's config block accepts: image, cpus, privileged, command, env."; !strings.Contains(d.Detail, want) {
		t.Errorf("detail %q does not contain %q", d.Detail, want)
	}
	if d.Subject == nil || d.Subject.Start.Line != 4 || d.Subject.Start.Column != 5 {
		t.Errorf("subject %v, want 4:5", d.Subject)
	}
}

func TestDecodeBlockNestedBlockRejected(t *testing.T) {
	_, diags := DecodeBlock(configBody(t, "    mount {\n      path = \"/x\"\n    }"), testSchema, "block")
	if !diags.HasErrors() || diags[0].Summary != "Unsupported block type" || !strings.Contains(diags[0].Detail, "accepts: image") {
		t.Fatalf("got %v, want an unsupported block listing the accepted names", diags)
	}
}

func TestDecodeBlockEmptySchema(t *testing.T) {
	_, diags := DecodeBlock(configBody(t, `    x = 1`), nil, "the process driver's settings")
	if !diags.HasErrors() || !strings.Contains(diags[0].Detail, "accepts: no attributes.") {
		t.Fatalf("got %v", diags)
	}
}

func TestDecodeBlockMissingRequired(t *testing.T) {
	schema := append([]drivers.Attribute{{Name: "socket", Type: drivers.TypeString, Required: true}}, testSchema...)
	raw, diags := DecodeBlock(configBody(t, `    image = "x:1"`), schema, "block")
	if !diags.HasErrors() || raw != nil {
		t.Fatalf("got %s %v, want an error", raw, diags)
	}
	if diags[0].Summary != "Missing required argument" || !strings.Contains(diags[0].Detail, `"socket"`) {
		t.Errorf("got %q: %q", diags[0].Summary, diags[0].Detail)
	}
	if diags[0].Subject == nil || diags[0].Subject.Filename != "test.hcl" {
		t.Errorf("no position: %v", diags[0].Subject)
	}
}

func TestDecodeBlockNilBody(t *testing.T) {
	raw, diags := DecodeBlock(nil, testSchema, "block")
	if raw != nil || diags != nil {
		t.Errorf("got %s %v, want nil, nil", raw, diags)
	}
}

func TestDecodeBlockUnknownSchemaType(t *testing.T) {
	_, diags := DecodeBlock(configBody(t, ""), []drivers.Attribute{{Name: "x", Type: "tuple"}}, "block")
	if !diags.HasErrors() || !strings.Contains(diags[0].Summary, `unknown type "tuple"`) {
		t.Fatalf("got %v", diags)
	}
}

func TestDecodeBlockDriverSettings(t *testing.T) {
	cfg := mustParse(t, "driver \"docker\" {\n  host = \"unix:///var/run/docker.sock\"\n}\ngroup \"a\" { port = 7000 }\n")
	raw, diags := DecodeBlock(cfg.DriverBlock("docker").Body, []drivers.Attribute{{Name: "host", Type: drivers.TypeString}}, `driver "docker"`)
	if diags.HasErrors() || string(raw) != `{"host":"unix:///var/run/docker.sock"}` {
		t.Fatalf("got %s %v", raw, diags)
	}
}

func TestDriverDiagnostics(t *testing.T) {
	body := configBody(t, "    image   = \"x:1\"\n    command = [\"./server\"]")
	ds := []drivers.Diagnostic{
		{Attribute: "command", Summary: "not executable", Detail: "Build ./server first."},
		{Summary: "image and command are exclusive"},
		{Attribute: "env", Summary: "env is required"},
	}
	out := DriverDiagnostics(body, ds, "docker")
	if len(out) != 3 {
		t.Fatalf("got %d diagnostics, want 3", len(out))
	}
	for i, want := range []struct {
		summary, detail string
		line, col       int
	}{
		{"docker driver: command: not executable", "Build ./server first.", 5, 15},                         // the value of command
		{"docker driver: image and command are exclusive", "Fix the docker driver's config block.", 3, 10}, // the block's brace
		{"docker driver: env: env is required", "Fix the docker driver's config block.", 3, 10},            // not written: the brace
	} {
		d := out[i]
		if d.Severity != hcl.DiagError || d.Summary != want.summary || d.Detail != want.detail {
			t.Errorf("%d: got %v %q %q, want %q %q", i, d.Severity, d.Summary, d.Detail, want.summary, want.detail)
		}
		if d.Subject == nil || d.Subject.Filename != "test.hcl" || d.Subject.Start.Line != want.line || d.Subject.Start.Column != want.col {
			t.Errorf("%d: subject %v, want test.hcl:%d:%d", i, d.Subject, want.line, want.col)
		}
	}
	if DriverDiagnostics(body, nil, "docker") != nil {
		t.Error("no driver diagnostics must give none")
	}
}

// Regression: DriverDiagnostics dereferenced a nil body (a group without a
// config block whose driver still reported problems) and panicked.
func TestDriverDiagnosticsNilBody(t *testing.T) {
	out := DriverDiagnostics(nil, []drivers.Diagnostic{{Attribute: "command", Summary: "required"}}, "process")
	if len(out) != 1 || out[0].Subject != nil || out[0].Severity != hcl.DiagError {
		t.Fatalf("got %v", out)
	}
}
