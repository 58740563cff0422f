package e2e

import (
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// TestEveryTestParallelOrSerialWhy enforces the package's rule (see the
// package comment in harness.go): every top-level test calls t.Parallel()
// in its body, or its doc comment has a line starting "Serial:" saying why
// it must run alone.
func TestEveryTestParallelOrSerialWhy(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*_test.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files: %v", err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		file, err := parser.ParseFile(fset, f, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range file.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || !strings.HasPrefix(fn.Name.Name, "Test") || fn.Name.Name == "TestMain" {
				continue
			}
			if p := parallelIssue(fn); p != "" {
				t.Errorf("%s: %s: %s", fset.Position(fn.Pos()), fn.Name.Name, p)
			}
		}
	}
}

// parallelIssue says what is wrong with test fn under the rule, or "".
func parallelIssue(fn *ast.FuncDecl) string {
	params := fn.Type.Params.List
	if len(params) != 1 || len(params[0].Names) != 1 {
		return ""
	}
	tname := params[0].Names[0].Name
	calls := false
	for _, st := range fn.Body.List {
		if es, ok := st.(*ast.ExprStmt); ok {
			if c, ok := es.X.(*ast.CallExpr); ok {
				if sel, ok := c.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "Parallel" {
					if id, ok := sel.X.(*ast.Ident); ok && id.Name == tname {
						calls = true
					}
				}
			}
		}
	}
	serial := false
	if fn.Doc != nil {
		for _, l := range strings.Split(fn.Doc.Text(), "\n") {
			serial = serial || strings.HasPrefix(strings.TrimSpace(l), "Serial:")
		}
	}
	switch {
	case calls && serial:
		return "calls t.Parallel() but its doc comment says Serial:"
	case !calls && !serial:
		return "call t.Parallel() at its start, or say why it must run alone in a doc comment line starting \"Serial:\" (harness.go's package comment has the rule)"
	}
	return ""
}

// TestHarnessPortsAndAddresses: FreeUDPPort never returns a port twice
// (nor a server's), LoopbackIP never an address twice, and udpBound sees
// a socket bound to a port and no longer once it is closed.
func TestHarnessPortsAndAddresses(t *testing.T) {
	t.Parallel()
	seen := map[int]bool{}
	for range 300 {
		p := FreeUDPPort(t)
		if seen[p] {
			t.Fatalf("FreeUDPPort returned %d twice", p)
		}
		seen[p] = true
	}
	ips := map[string]bool{}
	for range 300 {
		ip := LoopbackIP(t)
		if ips[ip] || !strings.HasPrefix(ip, "127.0.") {
			t.Fatalf("LoopbackIP returned %s (twice or not loopback)", ip)
		}
		ips[ip] = true
	}
	ip := LoopbackIP(t)
	c, err := net.ListenPacket("udp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	port := c.LocalAddr().(*net.UDPAddr).Port
	if !udpBound(ip, port) {
		t.Fatalf("udpBound(%s, %d) false while bound", ip, port)
	}
	c.Close()
	if udpBound(ip, port) {
		t.Fatalf("udpBound(%s, %d) true after close", ip, port)
	}
}
