package config

import (
	"fmt"
	"io"
	"os"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// The limits on a config file, which is input like any other: a file that
// breaks one is refused with one diagnostic, before HCL parses it.
const (
	// maxFileSize is the most bytes a config file may have: 256 KiB, some
	// 8,000 lines, where a golb config has a few KB. Load reads no more, so
	// /dev/zero or an endless pipe costs at most this much memory. HCL
	// takes up to 2.4 µs a byte of the worst input, so the costliest file
	// within the limits parses in 0.6 s (BenchmarkParseAtTheLimits) and
	// golb validate refuses it in about a second; at 4 MiB it took 15 s.
	maxFileSize = 256 << 10
	// maxNesting is how deep brackets, braces, parentheses, strings,
	// template sequences and directives, and operators may nest. HCL's
	// parser (and the evaluation of what it builds) recurses once per level,
	// and Go cannot recover from a stack overflow: 100,000 parentheses
	// killed golb validate.
	maxNesting = 100
	// maxTemplatePieces is how many literal pieces may follow each other in
	// one string or heredoc: a heredoc line, or a lone $ or % in a string.
	// HCL joins them in time quadratic in their number (7.4 s for a
	// 100,000-line heredoc); with 2,000 and maxFileSize the worst heredoc
	// parses in 0.2 s.
	maxTemplatePieces = 2000
)

// readFile reads the config file at path, at most maxFileSize bytes of it.
// It reads through a limit rather than trusting the file's size, so pipes
// and process substitution (golb validate <(…)) work, and a device that
// never ends costs no more than the limit.
func readFile(path string) ([]byte, *hcl.Diagnostic) {
	cannotRead := func(err error) *hcl.Diagnostic {
		return &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Cannot read config file",
			Detail:   fmt.Sprintf("%v. Give the path of an existing .hcl file (golb run without a file uses the embedded default).", err),
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, cannotRead(err)
	}
	defer f.Close()
	src, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, cannotRead(err)
	}
	if len(src) > maxFileSize {
		size := fmt.Sprintf("more than %d bytes", maxFileSize)
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			size = fmt.Sprintf("%d bytes", fi.Size())
		}
		return nil, tooLarge(path, size)
	}
	return src, nil
}

func tooLarge(filename, size string) *hcl.Diagnostic {
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "Config file too large",
		Detail: fmt.Sprintf("%s has %s; golb reads config files of at most %s (%d bytes). Check that it is the golb config you meant (one has a few KB).",
			filename, size, sizeText(maxFileSize), maxFileSize),
		Subject: &hcl.Range{Filename: filename, Start: hcl.InitialPos, End: hcl.InitialPos},
	}
}

// sizeText writes n bytes in KiB or MiB.
func sizeText(n int) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d KiB", n>>10)
}

// shapeFrame is one open bracket, brace, parenthesis, string, heredoc or
// template sequence (${ … } or %{ … }); the file's body is the first.
type shapeFrame struct {
	open hclsyntax.TokenType // the opening token's type; TokenNil for the body
	at   hcl.Range           // the opening token
	// newlines: a newline ends an expression here (in the body, a block or
	// an object; not within parentheses, brackets or template sequences,
	// where hcl skips newlines; for expressions are refused: checkLoop).
	newlines bool
	// ops counts what nests here without a bracket of its own: in an
	// expression, the operators since the last separator (hcl parses each
	// one a level deeper, and a chain such as 1+1+…+1 is evaluated one
	// level per operator). Template directives, which would nest in a
	// string, are refused (checkLoop).
	ops int
	// pieces counts, in a string or heredoc, the literal pieces in a row.
	pieces int
}

// checkShape refuses, with one diagnostic, a file that breaks maxFileSize,
// maxNesting or maxTemplatePieces, or holds a for expression or a template
// directive (checkLoop). It counts on HCL's own tokens, so that
// strings, heredocs and comments are told apart exactly as the parser will,
// and it errs on the side of counting more levels than the parser uses.
func checkShape(filename string, src []byte) *hcl.Diagnostic {
	if len(src) > maxFileSize {
		return tooLarge(filename, fmt.Sprintf("%d bytes", len(src)))
	}
	tokens, _ := hclsyntax.LexConfig(src, filename, hcl.InitialPos) // the parser reports lexical errors
	stack := []shapeFrame{{open: hclsyntax.TokenNil, newlines: true}}
	depth := 0                 // frames open beyond the body, plus the ops of every frame
	prev := hclsyntax.TokenNil // the previous token but newlines and comments
	for i, tok := range tokens {
		top := &stack[len(stack)-1]
		inTemplate := top.open == hclsyntax.TokenOQuote || top.open == hclsyntax.TokenOHeredoc
		switch tok.Type {
		case hclsyntax.TokenOBrace, hclsyntax.TokenOBrack, hclsyntax.TokenOParen,
			hclsyntax.TokenOQuote, hclsyntax.TokenOHeredoc,
			hclsyntax.TokenTemplateInterp, hclsyntax.TokenTemplateControl:
			if tok.Type == hclsyntax.TokenOBrack && !inTemplate {
				top.ops++ // an index nests like an operator: (x)[0][0]…
				depth++
			}
			top.pieces = 0
			stack = append(stack, shapeFrame{open: tok.Type, at: tok.Range, newlines: tok.Type == hclsyntax.TokenOBrace})
			depth++
		case hclsyntax.TokenCBrace, hclsyntax.TokenCBrack, hclsyntax.TokenCParen,
			hclsyntax.TokenCQuote, hclsyntax.TokenCHeredoc, hclsyntax.TokenTemplateSeqEnd:
			// A closer that does not match closes nothing: the parser
			// reports it, and counting on is the safe side.
			if len(stack) > 1 && closes(top.open, tok.Type) {
				depth -= 1 + top.ops
				stack = stack[:len(stack)-1]
			}
		case hclsyntax.TokenQuotedLit, hclsyntax.TokenStringLit:
			if inTemplate {
				if top.pieces++; top.pieces > maxTemplatePieces {
					return &hcl.Diagnostic{
						Severity: hcl.DiagError,
						Summary:  "String or heredoc too long",
						Detail: fmt.Sprintf("It has more than %d lines (a lone $ or %% counts as one more); golb reads at most that many in one string. Shorten it, or put the text in a file the worker reads.",
							maxTemplatePieces),
						Subject: top.at.Ptr(),
					}
				}
			}
		case hclsyntax.TokenIdent:
			if d := checkLoop(tokens, i, prev, inTemplate); d != nil {
				return d
			}
		case hclsyntax.TokenComma, hclsyntax.TokenEqual:
			depth -= top.ops
			top.ops = 0
		case hclsyntax.TokenNewline:
			if top.newlines {
				depth -= top.ops
				top.ops = 0
			}
		case hclsyntax.TokenPlus, hclsyntax.TokenMinus, hclsyntax.TokenStar, hclsyntax.TokenSlash, hclsyntax.TokenPercent,
			hclsyntax.TokenEqualOp, hclsyntax.TokenNotEqual, hclsyntax.TokenLessThan, hclsyntax.TokenLessThanEq,
			hclsyntax.TokenGreaterThan, hclsyntax.TokenGreaterThanEq, hclsyntax.TokenAnd, hclsyntax.TokenOr, hclsyntax.TokenBang,
			hclsyntax.TokenQuestion, hclsyntax.TokenDot, hclsyntax.TokenEllipsis, hclsyntax.TokenFatArrow, hclsyntax.TokenDoubleColon:
			top.ops++
			depth++
		}
		if depth > maxNesting {
			return &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  fmt.Sprintf("Nested more than %d levels deep", maxNesting),
				Detail: fmt.Sprintf("Remove brackets or operators: golb reads at most %d levels of brackets, braces, strings, directives and operators in one place, and a config needs a few.",
					maxNesting),
				Subject: tok.Range.Ptr(),
			}
		}
		if tok.Type != hclsyntax.TokenNewline && tok.Type != hclsyntax.TokenComment {
			prev = tok.Type
		}
	}
	return nil
}

// checkLoop refuses the for expression or template directive that the
// keyword tokens[i] begins: [for …], {for …}, %{for …} or %{if …}. golb
// has no variables, so a loop can only run over a list written out in the
// file, and its result could be written out as well; and the cost of one
// is the product of its lists' lengths, which nesting multiplies: four
// nested loops over 100 numbers each, 1.4 KB, ran golb validate (and a
// running agent's reload) out of memory, and a %{for} string of the same
// shape kept it busy for minutes. prev is the previous token but newlines
// and comments; inTemplate says tokens[i] is directly in a string or heredoc.
func checkLoop(tokens hclsyntax.Tokens, i int, prev hclsyntax.TokenType, inTemplate bool) *hcl.Diagnostic {
	tok := tokens[i]
	kw := string(tok.Bytes)
	switch {
	case inTemplate:
		return nil // text in a string: the lexer gives it no keywords
	case kw == "for" && (prev == hclsyntax.TokenOBrack || prev == hclsyntax.TokenOBrace):
		return &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "for expressions are not allowed",
			Detail:   `golb has no variables, so a for can only run over values written out here: write out the list or object it would make instead, e.g. retry_on = ["5xx"].`,
			Subject:  tok.Range.Ptr(),
		}
	case i > 0 && tokens[i-1].Type == hclsyntax.TokenTemplateControl:
		// The keyword of a template directive: %{ if … }, %{ for … },
		// or a stray %{ else }, %{ endif }, %{ endfor }.
		return &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Template directives are not allowed",
			Detail:   "golb has no variables, so %{for} and %{if} can only repeat or choose text written out here: write out the string they would make instead (a literal %{ is written %%{).",
			Subject:  hcl.RangeBetween(tokens[i-1].Range, tok.Range).Ptr(),
		}
	}
	return nil
}

// closes reports whether a token of type close ends a frame opened by open.
func closes(open, close hclsyntax.TokenType) bool {
	switch open {
	case hclsyntax.TokenOBrace:
		return close == hclsyntax.TokenCBrace
	case hclsyntax.TokenOBrack:
		return close == hclsyntax.TokenCBrack
	case hclsyntax.TokenOParen:
		return close == hclsyntax.TokenCParen
	case hclsyntax.TokenOQuote:
		return close == hclsyntax.TokenCQuote
	case hclsyntax.TokenOHeredoc:
		return close == hclsyntax.TokenCHeredoc
	case hclsyntax.TokenTemplateInterp, hclsyntax.TokenTemplateControl:
		return close == hclsyntax.TokenTemplateSeqEnd
	}
	return false
}
