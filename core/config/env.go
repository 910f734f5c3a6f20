package config

import (
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// EnvEntry is one entry of a config block's env attribute, as the file
// writes it: env = { KEY = "value" }.
type EnvEntry struct {
	Key, Value string
	// KeyRange is where the file writes the key.
	KeyRange hcl.Range
	// StringValue is false when the value is no string (the driver's
	// schema reports it).
	StringValue bool
}

// ConfigEnv returns the entries of the env attribute of a group's config
// block (its Body), in file order; nil when there is none, or when it is
// not an object written out, { … }, which the driver's schema reports.
func ConfigEnv(body hcl.Body) []EnvEntry {
	sb, ok := body.(*hclsyntax.Body)
	if !ok {
		return nil
	}
	attr := sb.Attributes["env"]
	if attr == nil {
		return nil
	}
	obj, ok := attr.Expr.(*hclsyntax.ObjectConsExpr)
	if !ok {
		return nil
	}
	var out []EnvEntry
	for _, item := range obj.Items {
		k, diags := item.KeyExpr.Value(nil)
		if diags.HasErrors() || !k.IsKnown() || k.IsNull() || k.Type() != cty.String {
			continue // reported when the block is decoded
		}
		e := EnvEntry{Key: k.AsString(), KeyRange: item.KeyExpr.Range()}
		if v, diags := item.ValueExpr.Value(nil); !diags.HasErrors() && v.IsKnown() && !v.IsNull() && v.Type() == cty.String {
			e.Value, e.StringValue = v.AsString(), true
		}
		out = append(out, e)
	}
	return out
}

// checkEnv reports the env entries of g's config block that no process
// can have: a key that is empty or holds '=' or a NUL byte, a value that
// holds a NUL byte. The environment is a list of KEY=VALUE C strings, so
// such an entry is split wrongly, cut short, or refused when the worker
// starts.
func (v *validator) checkEnv(g *Group) {
	if g.Config == nil {
		return
	}
	for _, e := range ConfigEnv(g.Config.Body) {
		switch {
		case e.Key == "":
			v.errorf(e.KeyRange, "env has an empty name", "Give the variable a name, e.g. LOG_LEVEL = \"debug\", or remove it.")
		case strings.ContainsAny(e.Key, "=\x00"):
			v.errorf(e.KeyRange, "env name %q holds '=' or a NUL byte", "An environment entry is NAME=VALUE: a name can hold neither; rename it, e.g. to letters, digits and _.", e.Key)
		case e.StringValue && strings.ContainsRune(e.Value, 0):
			v.errorf(e.KeyRange, "env %q holds a NUL byte", fmt.Sprintf("The environment is a list of C strings: its value would end at the NUL (byte %d); remove it.", strings.IndexByte(e.Value, 0)), e.Key)
		}
	}
}
