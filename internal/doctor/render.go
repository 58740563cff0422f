package doctor

import (
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
)

// TextOptions control the text layout.
type TextOptions struct {
	// UTF8 selects the ✔ ✘ ! marks and the em dash; false writes ASCII.
	UTF8 bool
	// Color adds ANSI colors (only when writing to a terminal).
	Color bool
}

// LocaleUTF8 reports whether the locale in the environment is UTF-8, as
// the C library decides: the first of LC_ALL, LC_CTYPE and LANG that is
// set wins. getenv is os.Getenv in the CLI.
func LocaleUTF8(getenv func(string) string) bool {
	if getenv == nil {
		getenv = os.Getenv
	}
	for _, k := range []string{"LC_ALL", "LC_CTYPE", "LANG"} {
		if v := getenv(k); v != "" {
			v = strings.ToLower(v)
			return strings.Contains(v, "utf-8") || strings.Contains(v, "utf8")
		}
	}
	return false
}

const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiGreen  = "\x1b[32m"
	ansiRed    = "\x1b[31m"
	ansiYellow = "\x1b[33m"
	ansiGray   = "\x1b[90m"
)

func (o TextOptions) mark(s Status) string {
	var m, c string
	switch s {
	case OK:
		m, c = "✔", ansiGreen
		if !o.UTF8 {
			m = "ok"
		}
	case Fail:
		m, c = "✘", ansiRed
		if !o.UTF8 {
			m = "XX"
		}
	case Warn:
		m, c = "!", ansiYellow
		if !o.UTF8 {
			m = "!!"
		}
	default:
		m, c = "-", ansiGray
		if !o.UTF8 {
			m = "--"
		}
	}
	if o.Color {
		// Every color code has the same length, so tabwriter still aligns.
		return c + m + ansiReset
	}
	return m
}

// text adapts s to the options (ASCII fallback for the em dash and arrows).
func (o TextOptions) text(s string) string {
	if o.UTF8 {
		return s
	}
	return strings.NewReplacer("—", "-", "→", "->", "…", "...").Replace(s)
}

func (o TextOptions) verdict(s string, good bool) string {
	s = o.text(s)
	if !o.Color {
		return s
	}
	c := ansiRed
	if good {
		c = ansiGreen
	}
	return ansiBold + c + s + ansiReset
}

func serveLine(running bool) string {
	if running {
		return "(switchboard serve is running; facts read from its data directory and probed live)"
	}
	return "(switchboard serve is not running; facts read from the data directory)"
}

// WriteText writes r for a terminal: the verdict, whether serve runs, then
// one aligned row per finding (mark, check, cause, evidence) with its
// evidence lines and fix below.
func WriteText(w io.Writer, r Report, o TextOptions) error {
	fmt.Fprintln(w, o.verdict(r.Verdict, r.Callable))
	fmt.Fprintln(w, serveLine(r.ServeRunning))
	fmt.Fprintln(w)
	return writeFindings(w, r.Findings, o, "")
}

func writeFindings(w io.Writer, fs []Finding, o TextOptions, indent string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, f := range fs {
		label := string(f.Cause)
		ev := f.Evidence
		if len(ev) == 0 {
			ev = []string{""}
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\n", indent, o.mark(f.Status), f.Check, label, o.text(ev[0]))
		for _, line := range ev[1:] {
			fmt.Fprintf(tw, "%s%s\t\t\t%s\n", indent, o.pad(), o.text(line))
		}
		if f.Fix != "" {
			fmt.Fprintf(tw, "%s%s\t\t\t%s\n", indent, o.pad(), o.text("fix: "+f.Fix))
		}
	}
	return tw.Flush()
}

// pad is an empty mark cell that tabwriter counts as wide as a mark: with
// colors, a blank wrapped in a color code of the same length.
func (o TextOptions) pad() string {
	if o.Color {
		return ansiGray + " " + ansiReset
	}
	return ""
}

// WriteCallText writes a call report: the verdict, then the caller's and
// the callee's findings and the last call.
func WriteCallText(w io.Writer, r CallReport, o TextOptions) error {
	fmt.Fprintln(w, o.verdict(r.Verdict, r.WouldWork))
	fmt.Fprintln(w, serveLine(r.ServeRunning))
	fmt.Fprintln(w)
	fmt.Fprintf(w, "caller %s@%s:\n", r.From, r.Caller.Domain)
	if err := writeFindings(w, r.Caller.Findings, o, "  "); err != nil {
		return err
	}
	fmt.Fprintf(w, "\ncallee %s@%s:\n", r.To, r.Callee.Domain)
	if err := writeFindings(w, r.Callee.Findings, o, "  "); err != nil {
		return err
	}
	fmt.Fprintln(w, "\ncall:")
	return writeFindings(w, r.Findings, o, "  ")
}
