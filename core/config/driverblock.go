package config

import (
	"encoding/json"
	"fmt"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/golb/golb/drivers"
)

var attrTypes = map[drivers.AttrType]cty.Type{
	drivers.TypeString:     cty.String,
	drivers.TypeNumber:     cty.Number,
	drivers.TypeBool:       cty.Bool,
	drivers.TypeStringList: cty.List(cty.String),
	drivers.TypeStringMap:  cty.Map(cty.String),
}

// DecodeBlock decodes a driver's `config { }` or `driver "NAME" { }` block
// against the schema the driver announced, into the JSON the driver receives.
// Unknown attributes, nested blocks and wrong types are diagnostics at their
// source position. A nil body decodes to nil.
func DecodeBlock(body hcl.Body, schema []drivers.Attribute, what string) (json.RawMessage, hcl.Diagnostics) {
	if body == nil {
		return nil, nil
	}
	spec := hcldec.ObjectSpec{}
	for _, a := range schema {
		t, ok := attrTypes[a.Type]
		if !ok {
			return nil, hcl.Diagnostics{{
				Severity: hcl.DiagError,
				Summary:  fmt.Sprintf("Driver schema has an unknown type %q for %s", a.Type, a.Name),
				Detail:   "The driver plugin is broken; report it to its author.",
				Subject:  body.MissingItemRange().Ptr(),
			}}
		}
		spec[a.Name] = &hcldec.AttrSpec{Name: a.Name, Type: t, Required: a.Required}
	}
	val, diags := hcldec.Decode(body, spec, nil)
	for _, d := range diags {
		if d.Summary == "Unsupported argument" || d.Summary == "Unsupported block type" {
			d.Detail += fmt.Sprintf(" %s accepts: %s.", capitalize(what), attrNames(schema))
		}
	}
	if diags.HasErrors() {
		return nil, diags
	}
	// Drop null (unset) attributes so drivers see only what was written.
	obj := map[string]cty.Value{}
	for k, v := range val.AsValueMap() {
		if !v.IsNull() {
			obj[k] = v
		}
	}
	out := cty.EmptyObjectVal
	if len(obj) > 0 {
		out = cty.ObjectVal(obj)
	}
	raw, err := ctyjson.Marshal(out, out.Type())
	if err != nil {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot encode " + what, Detail: err.Error(), Subject: body.MissingItemRange().Ptr()}}
	}
	return raw, diags
}

// DriverDiagnostics turns a driver's ValidateConfig answer into HCL
// diagnostics at the attributes they name.
func DriverDiagnostics(body hcl.Body, ds []drivers.Diagnostic, driver string) hcl.Diagnostics {
	var out hcl.Diagnostics
	for _, d := range ds {
		var subject *hcl.Range
		switch {
		case body == nil:
			// No block in the file (the driver validated its defaults): no position.
		case d.Attribute != "":
			subject = attrRange(body, d.Attribute).Ptr()
		default:
			subject = body.MissingItemRange().Ptr()
		}
		detail := d.Detail
		if detail == "" {
			detail = "Fix the " + driver + " driver's config block."
		}
		out = append(out, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("%s driver: %s", driver, d.Error()),
			Detail:   detail,
			Subject:  subject,
		})
	}
	return out
}

func attrNames(schema []drivers.Attribute) string {
	if len(schema) == 0 {
		return "no attributes"
	}
	s := ""
	for i, a := range schema {
		if i > 0 {
			s += ", "
		}
		s += a.Name
	}
	return s
}

// capitalize upper-cases s's first letter, to start a sentence with it.
func capitalize(s string) string {
	if s == "" {
		return s
	}
	r, n := utf8.DecodeRuneInString(s)
	return string(unicode.ToUpper(r)) + s[n:]
}
