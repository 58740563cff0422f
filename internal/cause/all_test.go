package cause

import (
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"testing"
)

// TestAllListsEveryCode: every Code constant declared in this package is in
// All (journal --cause checks names against it), once.
func TestAllListsEveryCode(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "cause.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	all := All()
	n := 0
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Code" {
				continue
			}
			for i, name := range vs.Names {
				lit := vs.Values[i].(*ast.BasicLit)
				code := Code(lit.Value[1 : len(lit.Value)-1])
				n++
				if !slices.Contains(all, code) {
					t.Errorf("%s (%q) is not in All()", name.Name, code)
				}
			}
		}
	}
	if n != len(all) || n < 40 {
		t.Fatalf("All() has %d codes, the package declares %d", len(all), n)
	}
}
