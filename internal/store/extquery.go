package store

import (
	"cmp"
	"slices"
	"strings"
	"unicode/utf8"
)

// ExtensionQuery selects one page of the directory for
// Directory.ListExtensions.
//
// Rows come in the order of Directory.Extensions: by domain name
// (case-insensitively), then by number, shorter numbers first, so numbers
// of the same length sort numerically. The page starts after the cursor
// (AfterDomain, AfterNumber) when AfterDomain is set, else after skipping
// Offset matching rows; a cursor costs the same at any depth, an offset
// costs in proportion to it.
type ExtensionQuery struct {
	// Domain restricts the listing to one domain (its name in any case);
	// "" lists every domain. An unknown domain is store.ErrNotFound.
	Domain string
	// Search, when not "", keeps the extensions whose number, caller-ID
	// name or description contains it (case-insensitively for ASCII
	// letters). '%' and '_' match themselves.
	Search string
	// AfterDomain and AfterNumber are the cursor: the page starts with the
	// first row after that extension (which need not exist any more).
	AfterDomain, AfterNumber string
	// Offset is how many matching rows to skip; ignored with a cursor.
	Offset int
	// Limit caps the rows returned; 0 or less returns none (only the
	// total).
	Limit int
}

// LikePattern returns the SQL LIKE pattern (with ESCAPE '\') that matches
// any text containing s literally.
func LikePattern(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(s) + "%"
}

// foldASCII is s with ASCII letters in lower case (the folding of SQLite's
// NOCASE and of domain names).
func foldASCII(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + ('a' - 'A')
		}
		return r
	}, s)
}

// NumberRange is the part of one domain's extensions an ExtensionPage
// reads, in the directory's number order (length, then number): every
// number (the zero value); the numbers of Length characters greater than
// After (After != ""); or the numbers longer than Length characters
// (Longer). Each is one range of an index on (domain, length, number).
type NumberRange struct {
	Length int
	After  string
	Longer bool
}

// ExtensionPage is how a backend reads the rows of one domain for
// PageExtensions: at most limit rows of domain d in r that match the
// query's search, in number order, after skipping offset of them.
type ExtensionPage func(d Domain, r NumberRange, offset, limit int) ([]Extension, error)

// PageExtensions implements Directory.ListExtensions over a backend's
// per-domain reads: doms are the domains to list (sorted here by name,
// case-insensitively), counts the matching rows of each (by domain ID),
// read one domain's rows. A page takes one read per domain it touches,
// two in the cursor's domain.
func PageExtensions(q ExtensionQuery, doms []Domain, counts map[int64]int, read ExtensionPage) ([]Extension, int, error) {
	doms = slices.Clone(doms)
	slices.SortFunc(doms, func(a, b Domain) int { return cmp.Compare(foldASCII(a.Name), foldASCII(b.Name)) })
	total := 0
	for _, d := range doms {
		total += counts[d.ID]
	}
	var out []Extension
	off := max(q.Offset, 0)
	after := foldASCII(q.AfterDomain)
	for _, d := range doms {
		want := q.Limit - len(out)
		if want <= 0 {
			break
		}
		n := counts[d.ID]
		if n == 0 {
			continue
		}
		var rows []Extension
		var err error
		switch name := foldASCII(d.Name); {
		case q.AfterDomain != "" && name < after:
			continue
		case q.AfterDomain != "" && name == after && q.AfterNumber != "":
			l := utf8.RuneCountInString(q.AfterNumber)
			rows, err = read(d, NumberRange{Length: l, After: q.AfterNumber}, 0, want)
			if err == nil && len(rows) < want {
				var more []Extension
				more, err = read(d, NumberRange{Length: l, Longer: true}, 0, want-len(rows))
				rows = append(rows, more...)
			}
		case q.AfterDomain != "":
			rows, err = read(d, NumberRange{}, 0, want)
		case off >= n:
			off -= n
			continue
		default:
			rows, err = read(d, NumberRange{}, off, want)
			off = 0
		}
		if err != nil {
			return nil, 0, err
		}
		out = append(out, rows...)
	}
	return out, total, nil
}
