package core

import (
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// attrRangeOf is the source range of attribute name in body, or the body's.
func attrRangeOf(body hcl.Body, name string) hcl.Range {
	if sb, ok := body.(*hclsyntax.Body); ok {
		if a, ok := sb.Attributes[name]; ok {
			return a.Expr.Range()
		}
		return sb.SrcRange
	}
	if body == nil {
		return hcl.Range{}
	}
	return body.MissingItemRange()
}

// blockRangeOf is the range where the block whose body is body starts.
func blockRangeOf(body hcl.Body) hcl.Range {
	if sb, ok := body.(*hclsyntax.Body); ok {
		return hcl.Range{Filename: sb.SrcRange.Filename, Start: sb.SrcRange.Start, End: sb.SrcRange.Start}
	}
	if body == nil {
		return hcl.Range{}
	}
	return body.MissingItemRange()
}
