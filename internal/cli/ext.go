package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"os"
	"strconv"
	"strings"

	"github.com/switchboard-pbx/switchboard/internal/digest"
	"github.com/switchboard-pbx/switchboard/internal/privfile"
	"github.com/switchboard-pbx/switchboard/internal/store"
	storeopen "github.com/switchboard-pbx/switchboard/internal/store/open"
	"github.com/switchboard-pbx/switchboard/internal/view"
	"golang.org/x/term"
)

const extUsage = `
Usage: switchboard ext COMMAND [ARGS] [--data DIR] [--json]

Manage the extension directory. Changes reach a running server at once.

Commands:
  add NUMBER [--password P|-] [--name NAME] [--domain D] ... add an extension (prints a generated password when none is given;
                                                              --password - reads it from standard input)
  list [--domain D]                                           list extensions
  show NUMBER [--domain D]                                    show one extension
  set NUMBER [--password P|-] [--enabled=false] [--name N] ... change an extension
  passwd NUMBER [--domain D]                                  set a new generated password and print it
  rm NUMBER [--domain D]                                      remove an extension and its registrations
  import FILE.csv|-                                           bulk add from CSV in one transaction (all or nothing)
  export [FILE.csv|-] [--with-hashes] [--force]               write the directory as CSV (no password hashes unless --with-hashes)

Run 'switchboard ext COMMAND --help' for a command's flags.`

// Ext runs `switchboard ext ...`.
func Ext(ctx context.Context, env Env, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(env.Stdout, strings.TrimSpace(extUsage))
		return nil
	}
	sub, err := subcommand("ext", args[0], "add", "list", "show", "set", "passwd", "rm", "import", "export")
	if err != nil {
		return err
	}
	switch sub {
	case "add":
		return extAdd(ctx, env, args[1:])
	case "list":
		return extList(ctx, env, args[1:])
	case "show":
		return extShow(ctx, env, args[1:])
	case "set":
		return extSet(ctx, env, args[1:])
	case "passwd":
		return extPasswd(ctx, env, args[1:])
	case "rm":
		return extRm(ctx, env, args[1:])
	case "import":
		return extImport(ctx, env, args[1:])
	default:
		return extExport(ctx, env, args[1:])
	}
}

// extView is the JSON shape of an extension (no secrets). Its names are
// the extension vocabulary shared by ext show, ext list, ext export (JSON
// keys and CSV columns) and ext import.
type extView = view.Extension

func viewOf(e store.Extension) extView { return view.ExtensionOf(e) }

// GeneratePassword returns a strong random password (20 chars, ~119 bits)
// without characters people confuse (0/O, 1/l/I).
func GeneratePassword() string {
	const alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	b := make([]byte, 20)
	for i := range b {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		if err != nil {
			panic(err)
		}
		b[i] = alphabet[n.Int64()]
	}
	return string(b)
}

// setHA1 stores the password's digest hashes, made for realm (the
// extension's domain's realm, see realmOf).
func setHA1(e *store.Extension, realm, password string) {
	e.HA1MD5 = digest.HA1(digest.MD5, e.Number, realm, password)
	e.HA1SHA256 = digest.HA1(digest.SHA256, e.Number, realm, password)
}

// realmOf returns the digest realm of a domain.
func realmOf(ctx context.Context, db storeopen.Backend, domain string) (string, error) {
	d, err := db.Domain(ctx, domain)
	if err != nil {
		return "", err
	}
	return d.Realm, nil
}

type extFlags struct {
	data, db, domain, password, name, cidNumber, desc, acl string
	enabled                                                bool
	maxRegs, timeout                                       int
	json                                                   bool
}

func (f *extFlags) common(fs *flag.FlagSet) {
	fs.StringVar(&f.data, "data", defaultData(), "data directory (env SWITCHBOARD_DATA)")
	fs.StringVar(&f.db, "db", os.Getenv(storeopen.Env), "database URL: sqlite:DIR or postgres://USER@HOST/DB (env SWITCHBOARD_DB; default: SQLite in --data)")
	fs.StringVar(&f.domain, "domain", "", "domain (default: the server's default domain)")
	fs.BoolVar(&f.json, "json", false, "print JSON")
}

// fields registers the extension's settable fields. With defaults (ext
// add) they carry the defaults add applies; without (ext set, which changes
// only the flags given) they carry none, so --help shows none.
func (f *extFlags) fields(fs *flag.FlagSet, defaults bool) {
	enabled, maxRegs, timeout, cid := true, 5, 30, "caller-ID number (default: the extension)"
	if !defaults {
		enabled, maxRegs, timeout, cid = false, 0, 0, "caller-ID number"
	}
	fs.StringVar(&f.password, "password", "", "SIP password (at least 8 characters); - reads it from standard input, keeping it out of ps")
	fs.StringVar(&f.name, "name", "", "caller-ID name, e.g. \"Front desk\"")
	fs.StringVar(&f.cidNumber, "cid-number", "", cid)
	fs.StringVar(&f.desc, "description", "", "free text")
	fs.StringVar(&f.acl, "acl", "", "ACL the phone's address must match to authenticate")
	fs.BoolVar(&f.enabled, "enabled", enabled, "whether the extension may register and be called (--enabled=false to disable)")
	fs.IntVar(&f.maxRegs, "max-registrations", maxRegs, "how many phones may register at once (1-100)")
	fs.IntVar(&f.timeout, "call-timeout", timeout, "seconds to ring before giving up (NO_ANSWER; 1-3600)")
}

// open opens the database (creating it only for edit commands, see
// openFor) and resolves --domain.
func open(ctx context.Context, env Env, f *extFlags, edit bool) (storeopen.Backend, string, error) {
	db, err := openFor(ctx, env, f.data, f.db, edit)
	if err != nil {
		return nil, "", err
	}
	dom, err := resolveDomain(ctx, db, f.domain)
	if err != nil {
		db.Close()
		return nil, "", err
	}
	return db, dom, nil
}

func oneNumber(pos []string, cmd string) (string, error) {
	if len(pos) != 1 {
		return "", usagef("`switchboard ext %s` takes one extension number, e.g. switchboard ext %s 2002", cmd, cmd)
	}
	return pos[0], validNumber(pos[0])
}

func extAdd(ctx context.Context, env Env, args []string) error {
	f, fs, num, done, err := parseOne(env, args, "add", "Usage: switchboard ext add NUMBER [--password P] [--name NAME] [--domain D] [flags]", true)
	if done || err != nil {
		return err
	}
	generated := false
	if !isSet(fs, "password") {
		f.password, generated = GeneratePassword(), true
	} else if f.password, err = passwordArg(env, num, f.password); err != nil {
		return err
	} else if err := checkPassword(num, f.password); err != nil {
		return err
	}
	if err := checkLimits(f.maxRegs, f.timeout); err != nil {
		return err
	}
	db, dom, err := open(ctx, env, f, true)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := checkACLRef(ctx, db, "--acl", f.acl); err != nil {
		return err
	}
	e := store.Extension{Domain: dom, Number: num, Enabled: f.enabled, CallerIDName: f.name,
		CallerIDNumber: f.cidNumber, Description: f.desc, MaxRegistrations: f.maxRegs, CallTimeout: f.timeout, ACL: f.acl}
	if e.CallerIDNumber == "" {
		e.CallerIDNumber = num
	}
	realm, err := realmOf(ctx, db, e.Domain)
	if err != nil {
		return err
	}
	setHA1(&e, realm, f.password)
	e, err = db.AddExtension(ctx, e)
	if errors.Is(err, store.ErrDuplicate) {
		return usagef("extension %s already exists in %s: change it with `switchboard ext set %s ...`", num, dom, num)
	}
	if err != nil {
		return err
	}
	syncServer(ctx, env, f.data, db)
	v := viewOf(e)
	if generated {
		v.Password = f.password
	}
	if f.json {
		return writeJSON(env.Stdout, v)
	}
	fmt.Fprintf(env.Stdout, "added extension %s@%s\n", num, dom)
	if generated {
		fmt.Fprintf(env.Stdout, "password: %s\n(shown once: it is stored only as a hash; `switchboard ext passwd %s` makes a new one)\n", f.password, num)
	}
	return nil
}

// parseOne parses the flags of `ext NAME NUMBER` (withFields adds the
// extension's settable fields), prints its help when asked (done), and
// validates the number.
func parseOne(env Env, args []string, name, usage string, withFields bool) (f *extFlags, fs *flag.FlagSet, num string, done bool, err error) {
	f = &extFlags{}
	fs = flag.NewFlagSet("ext "+name, flag.ContinueOnError)
	f.common(fs)
	if withFields {
		f.fields(fs, name == "add")
	}
	pos, err := parse(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		helpText(env.Stdout, fs, usage)
		return f, fs, "", true, nil
	}
	if err != nil {
		return f, fs, "", false, err
	}
	num, err = oneNumber(pos, name)
	return f, fs, num, false, err
}

func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

func checkLimits(maxRegs, timeout int) error {
	if maxRegs < 1 || maxRegs > 100 {
		return usagef("--max-registrations must be 1..100, got %d", maxRegs)
	}
	if timeout < 1 || timeout > 3600 {
		return usagef("--call-timeout must be 1..3600 seconds, got %d", timeout)
	}
	return nil
}

func extList(ctx context.Context, env Env, args []string) error {
	var f extFlags
	fs := flag.NewFlagSet("ext list", flag.ContinueOnError)
	f.common(fs)
	pos, err := parse(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		helpText(env.Stdout, fs, "Usage: switchboard ext list [--domain D] [--json]")
		return nil
	}
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("`switchboard ext list` takes no arguments; to see one extension: switchboard ext show %s", pos[0])
	}
	db, err := openExisting(ctx, f.data, f.db)
	if err != nil {
		return err
	}
	defer db.Close()
	dom := ""
	if f.domain != "" {
		if dom, err = resolveDomain(ctx, db, f.domain); err != nil {
			return err
		}
	}
	exts, err := db.Extensions(ctx, dom)
	if err != nil {
		return err
	}
	views := make([]extView, 0, len(exts))
	for _, e := range exts {
		views = append(views, viewOf(e))
	}
	if f.json {
		return writeJSON(env.Stdout, views)
	}
	if len(views) == 0 {
		fmt.Fprintln(env.Stdout, "no extensions yet: add one with `switchboard ext add 2001`")
		return nil
	}
	tw := table(env.Stdout)
	fmt.Fprintln(tw, "EXTENSION\tDOMAIN\tENABLED\tNAME\tMAX REGS\tTIMEOUT\tDESCRIPTION")
	for _, v := range views {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%ds\t%s\n", v.Extension, v.Domain, yesno(v.Enabled), v.Name,
			v.MaxRegistrations, v.CallTimeout, v.Description)
	}
	tw.Flush()
	fmt.Fprintf(env.Stdout, "%d extension(s)\n", len(views))
	return nil
}

func lookupExt(ctx context.Context, db storeopen.Backend, dom, num string) (store.Extension, error) {
	e, err := db.Extension(ctx, dom, num)
	if errors.Is(err, store.ErrNotFound) {
		return e, usagef("unknown extension %s in %s: see `switchboard ext list`", num, dom)
	}
	return e, err
}

func extShow(ctx context.Context, env Env, args []string) error {
	f, _, num, done, err := parseOne(env, args, "show", "Usage: switchboard ext show NUMBER [--domain D] [--json]", false)
	if done || err != nil {
		return err
	}
	db, dom, err := open(ctx, env, f, false)
	if err != nil {
		return err
	}
	defer db.Close()
	e, err := lookupExt(ctx, db, dom, num)
	if err != nil {
		return err
	}
	regs, err := db.BindingsOf(ctx, dom, num)
	if err != nil {
		return err
	}
	v := viewOf(e)
	if f.json {
		return writeJSON(env.Stdout, struct {
			extView
			Registrations int `json:"registrations"`
		}{v, countLive(regs)})
	}
	tw := table(env.Stdout)
	for _, kv := range [][2]string{{"Extension", v.Extension}, {"Domain", v.Domain}, {"Enabled", yesno(v.Enabled)},
		{"Caller-ID name", v.Name}, {"Caller-ID number", v.CallerIDNumber}, {"Description", v.Description},
		{"Max registrations", strconv.Itoa(v.MaxRegistrations)}, {"Call timeout", strconv.Itoa(v.CallTimeout) + " s"},
		{"ACL", dash(v.ACL)}, {"Registrations", strconv.Itoa(countLive(regs))}, {"Created", localTime(e.CreatedAt)},
		{"Updated", localTime(e.UpdatedAt)}} {
		fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func extSet(ctx context.Context, env Env, args []string) error {
	f, fs, num, done, err := parseOne(env, args, "set", "Usage: switchboard ext set NUMBER [--password P] [--enabled=false] [--name N] [flags]", true)
	if done || err != nil {
		return err
	}
	changed := 0
	fs.Visit(func(fl *flag.Flag) {
		if fl.Name != "data" && fl.Name != "db" && fl.Name != "domain" && fl.Name != "json" {
			changed++
		}
	})
	if changed == 0 {
		return usagef("nothing to change: give at least one of --password, --enabled, --name, --cid-number, --description, --acl, --max-registrations, --call-timeout")
	}
	db, dom, err := open(ctx, env, f, true)
	if err != nil {
		return err
	}
	defer db.Close()
	e, err := lookupExt(ctx, db, dom, num)
	if err != nil {
		return err
	}
	if isSet(fs, "acl") {
		if err := checkACLRef(ctx, db, "--acl", f.acl); err != nil {
			return err
		}
	}
	if isSet(fs, "password") {
		if f.password, err = passwordArg(env, num, f.password); err != nil {
			return err
		}
		if err := checkPassword(num, f.password); err != nil {
			return err
		}
		realm, err := realmOf(ctx, db, e.Domain)
		if err != nil {
			return err
		}
		setHA1(&e, realm, f.password)
	}
	if isSet(fs, "enabled") {
		e.Enabled = f.enabled
	}
	if isSet(fs, "name") {
		e.CallerIDName = f.name
	}
	if isSet(fs, "cid-number") {
		e.CallerIDNumber = f.cidNumber
	}
	if isSet(fs, "description") {
		e.Description = f.desc
	}
	if isSet(fs, "acl") {
		e.ACL = f.acl
	}
	if isSet(fs, "max-registrations") {
		e.MaxRegistrations = f.maxRegs
	}
	if isSet(fs, "call-timeout") {
		e.CallTimeout = f.timeout
	}
	if err := checkLimits(e.MaxRegistrations, e.CallTimeout); err != nil {
		return err
	}
	if err := db.UpdateExtension(ctx, e); err != nil {
		return err
	}
	syncServer(ctx, env, f.data, db)
	e, err = lookupExt(ctx, db, dom, num)
	if err != nil {
		return err
	}
	if f.json {
		return writeJSON(env.Stdout, viewOf(e))
	}
	fmt.Fprintf(env.Stdout, "updated extension %s@%s\n", num, dom)
	return nil
}

func extPasswd(ctx context.Context, env Env, args []string) error {
	f, _, num, done, err := parseOne(env, args, "passwd", "Usage: switchboard ext passwd NUMBER [--domain D] [--json]", false)
	if done || err != nil {
		return err
	}
	db, dom, err := open(ctx, env, f, true)
	if err != nil {
		return err
	}
	defer db.Close()
	e, err := lookupExt(ctx, db, dom, num)
	if err != nil {
		return err
	}
	pw := GeneratePassword()
	realm, err := realmOf(ctx, db, e.Domain)
	if err != nil {
		return err
	}
	setHA1(&e, realm, pw)
	if err := db.UpdateExtension(ctx, e); err != nil {
		return err
	}
	syncServer(ctx, env, f.data, db)
	if f.json {
		return writeJSON(env.Stdout, map[string]string{"extension": num, "domain": dom, "password": pw})
	}
	fmt.Fprintf(env.Stdout, "new password for %s@%s: %s\n(shown once; phones with the old password will now fail until updated)\n", num, dom, pw)
	return nil
}

func extRm(ctx context.Context, env Env, args []string) error {
	f, _, num, done, err := parseOne(env, args, "rm", "Usage: switchboard ext rm NUMBER [--domain D]", false)
	if done || err != nil {
		return err
	}
	db, dom, err := open(ctx, env, f, true)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.RemoveExtension(ctx, dom, num); errors.Is(err, store.ErrNotFound) {
		return usagef("unknown extension %s in %s: see `switchboard ext list`", num, dom)
	} else if err != nil {
		return err
	}
	syncServer(ctx, env, f.data, db)
	if f.json {
		return writeJSON(env.Stdout, map[string]any{"extension": num, "domain": dom, "removed": true})
	}
	fmt.Fprintf(env.Stdout, "removed extension %s@%s\n", num, dom)
	return nil
}

// CSV columns, in export order, named like extView's JSON keys. Import
// needs "extension" and either "password" or both ha1 columns; every other
// column is optional.
var csvColumns = []string{"extension", "password", "name", "caller_id_number", "description", "enabled",
	"max_registrations", "call_timeout_s", "acl", "domain", "ha1_md5", "ha1_sha256", "realm"}

// csvAlias maps the column names of older exports to today's.
func csvAlias(col string) string {
	switch col {
	case "cid_number":
		return "caller_id_number"
	case "call_timeout":
		return "call_timeout_s"
	}
	return col
}

// parseEnabled reads the enabled column: what ext list prints (yes/no) and
// what export writes (true/false), or 1/0.
func parseEnabled(v string) (bool, bool) {
	switch strings.ToLower(v) {
	case "yes", "y", "true", "t", "1", "on":
		return true, true
	case "no", "n", "false", "f", "0", "off":
		return false, true
	}
	return false, false
}

func extImport(ctx context.Context, env Env, args []string) error {
	var f extFlags
	fs := flag.NewFlagSet("ext import", flag.ContinueOnError)
	f.common(fs)
	pos, err := parse(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		helpText(env.Stdout, fs, `Usage: switchboard ext import FILE.csv|- [--domain D]

The first row names the columns: extension (required), password (or ha1_md5
and ha1_sha256 from an export), and optionally name, caller_id_number,
description, enabled (yes/no, true/false or 1/0), max_registrations,
call_timeout_s, acl, domain: the names of 'ext show --json'. Exports of
older versions (cid_number, call_timeout) import unchanged. All rows are
added in one transaction: on any bad row nothing is added and the row's
line is named.`)
		return nil
	}
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("`switchboard ext import` takes one file name, or - for standard input")
	}
	var in io.Reader = env.Stdin
	name := "stdin"
	if pos[0] != "-" {
		fh, err := os.Open(pos[0])
		if err != nil {
			return usagef("cannot read %s: %v", pos[0], errors.Unwrap(err))
		}
		defer fh.Close()
		in, name = fh, pos[0]
	}
	db, dom, err := open(ctx, env, &f, true)
	if err != nil {
		return err
	}
	defer db.Close()
	exts, lines, err := readCSV(ctx, db, in, name, dom)
	if err != nil {
		return err
	}
	if err := db.ImportExtensions(ctx, exts); err != nil {
		if i, ok := storeopen.ImportIndex(err); ok {
			if errors.Is(err, store.ErrDuplicate) {
				return usagef("%s line %d: extension %s already exists in %s; nothing was imported",
					name, lines[i], exts[i].Number, exts[i].Domain)
			}
			return usagef("%s line %d: %v; nothing was imported", name, lines[i], errors.Unwrap(err))
		}
		return err
	}
	syncServer(ctx, env, f.data, db)
	if f.json {
		return writeJSON(env.Stdout, map[string]any{"imported": len(exts)})
	}
	fmt.Fprintf(env.Stdout, "imported %d extension(s)\n", len(exts))
	return nil
}

func readCSV(ctx context.Context, db storeopen.Backend, in io.Reader, name, defDomain string) ([]store.Extension, []int, error) {
	r := csv.NewReader(in)
	r.FieldsPerRecord = -1
	r.TrimLeadingSpace = true
	header, err := r.Read()
	if err == io.EOF {
		return nil, nil, usagef("%s is empty: the first row must name the columns, e.g. extension,password,name", name)
	}
	if err != nil {
		return nil, nil, usagef("%s: %v", name, err)
	}
	col := map[string]int{}
	for i, h := range header {
		h = csvAlias(strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))))
		known := false
		for _, c := range csvColumns {
			known = known || c == h
		}
		if !known {
			return nil, nil, usagef("%s line 1: unknown column %q; columns are %s", name, h, strings.Join(csvColumns, ","))
		}
		if _, dup := col[h]; dup {
			return nil, nil, usagef("%s line 1: column %q appears twice", name, h)
		}
		col[h] = i
	}
	if _, ok := col["extension"]; !ok {
		return nil, nil, usagef("%s line 1: no \"extension\" column; the header must name the columns, e.g. extension,password,name", name)
	}
	_, hasPw := col["password"]
	_, hasMD5 := col["ha1_md5"]
	_, hasSHA := col["ha1_sha256"]
	if !hasPw && !(hasMD5 && hasSHA) {
		return nil, nil, usagef("%s line 1: need a \"password\" column (or ha1_md5 and ha1_sha256 from an export)", name)
	}
	domains := map[string]string{}
	realms := map[string]string{} // lower-case domain -> its realm
	var foreign []foreignRow      // hash-only rows made for another realm
	var exts []store.Extension
	var lines []int
	seen := map[string]int{}
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		line, _ := r.FieldPos(0)
		if err != nil {
			return nil, nil, usagef("%s: %v; nothing was imported", name, err)
		}
		get := func(c string) string {
			if i, ok := col[c]; ok && i < len(rec) {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		bad := func(format string, a ...any) error {
			return usagef("%s line %d: %s; nothing was imported", name, line, fmt.Sprintf(format, a...))
		}
		if len(rec) == 1 && rec[0] == "" {
			continue
		}
		e := store.Extension{Number: get("extension"), Domain: defDomain, Enabled: true, MaxRegistrations: 5, CallTimeout: 30,
			CallerIDName: get("name"), CallerIDNumber: get("caller_id_number"), Description: get("description"), ACL: get("acl")}
		if err := validNumber(e.Number); err != nil {
			return nil, nil, bad("%v", err)
		}
		if err := checkACLRef(ctx, db, "acl", e.ACL); err != nil {
			return nil, nil, bad("%v", err)
		}
		if d := get("domain"); d != "" {
			canon, ok := domains[strings.ToLower(d)]
			if !ok {
				dd, err := db.Domain(ctx, d)
				if errors.Is(err, store.ErrNotFound) {
					return nil, nil, bad("unknown domain %s (create it with `switchboard domain add %s`)", d, d)
				} else if err != nil {
					return nil, nil, err
				}
				canon = dd.Name
				domains[strings.ToLower(d)] = canon
			}
			e.Domain = canon
		}
		key := strings.ToLower(e.Domain) + "/" + e.Number
		if prev, dup := seen[key]; dup {
			return nil, nil, bad("extension %s appears again (first on line %d)", e.Number, prev)
		}
		seen[key] = line
		if e.CallerIDNumber == "" {
			e.CallerIDNumber = e.Number
		}
		if v := get("enabled"); v != "" {
			b, ok := parseEnabled(v)
			if !ok {
				return nil, nil, bad("enabled must be yes or no (or true/false, 1/0), not %q", v)
			}
			e.Enabled = b
		}
		for _, p := range []struct {
			c   string
			dst *int
		}{{"max_registrations", &e.MaxRegistrations}, {"call_timeout_s", &e.CallTimeout}} {
			if v := get(p.c); v != "" {
				n, err := strconv.Atoi(v)
				if err != nil {
					return nil, nil, bad("%s must be a number, not %q", p.c, v)
				}
				*p.dst = n
			}
		}
		if err := checkLimits(e.MaxRegistrations, e.CallTimeout); err != nil {
			return nil, nil, bad("%v", err)
		}
		realm, ok := realms[strings.ToLower(e.Domain)]
		if !ok {
			if realm, err = realmOf(ctx, db, e.Domain); err != nil {
				return nil, nil, bad("%v", err)
			}
			realms[strings.ToLower(e.Domain)] = realm
		}
		if pw := get("password"); pw != "" {
			if err := checkPassword(e.Number, pw); err != nil {
				return nil, nil, bad("extension %s: %v", e.Number, err)
			}
			setHA1(&e, realm, pw)
		} else if m, s := get("ha1_md5"), get("ha1_sha256"); len(m) == 32 && len(s) == 64 && isHex(m) && isHex(s) {
			e.HA1MD5, e.HA1SHA256 = strings.ToLower(m), strings.ToLower(s)
			// A hash works only in the realm it was made for: an export
			// names it (realm, or domain in older exports).
			made := get("realm")
			if made == "" {
				made = get("domain")
			}
			if !strings.EqualFold(made, realm) {
				foreign = append(foreign, foreignRow{line: line, number: e.Number, realm: made})
			}
		} else {
			return nil, nil, bad("extension %s has no password (and no valid ha1_md5/ha1_sha256)", e.Number)
		}
		exts = append(exts, e)
		lines = append(lines, line)
	}
	if len(exts) == 0 {
		return nil, nil, usagef("%s has a header but no rows", name)
	}
	if len(foreign) > 0 {
		return nil, nil, foreignError(name, foreign, exts, lines)
	}
	return exts, lines, nil
}

// foreignRow is an imported row whose password hashes were made for
// another realm than the one of the domain it goes to.
type foreignRow struct {
	line          int
	number, realm string
}

// foreignError explains why hash-only rows cannot go where they were asked
// to, and what to do instead.
func foreignError(name string, rows []foreignRow, exts []store.Extension, lines []int) error {
	var where []string
	for i, r := range rows {
		if i == 5 {
			where = append(where, fmt.Sprintf("and %d more", len(rows)-5))
			break
		}
		where = append(where, fmt.Sprintf("line %d (%s)", r.line, r.number))
	}
	first := rows[0]
	dom := ""
	for i := range exts {
		if lines[i] == first.line {
			dom = exts[i].Domain
		}
	}
	if first.realm == "" {
		return usagef("%s: %s carry password hashes but no realm or domain column, and a hash logs a phone in only in the realm it was made for: add the export's realm (or domain) column, or give those rows a password column; nothing was imported",
			name, strings.Join(where, ", "))
	}
	return usagef("%s: %s carry password hashes made for realm %s, which cannot log in to domain %s: give those rows a password column, or import them into a domain with that realm (switchboard domain add NAME --realm %s); nothing was imported",
		name, strings.Join(where, ", "), first.realm, dom, first.realm)
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// exportRow is one extension in `ext export --json`.
type exportRow struct {
	Extension        string `json:"extension"`
	Name             string `json:"name"`
	CIDNumber        string `json:"caller_id_number"`
	Description      string `json:"description"`
	Enabled          bool   `json:"enabled"`
	MaxRegistrations int    `json:"max_registrations"`
	CallTimeout      int    `json:"call_timeout_s"`
	ACL              string `json:"acl"`
	Domain           string `json:"domain"`
	HA1MD5           string `json:"ha1_md5,omitempty"`
	HA1SHA256        string `json:"ha1_sha256,omitempty"`
	Realm            string `json:"realm,omitempty"` // with the hashes: the digest realm they are made for
}

const exportHelp = `Usage: switchboard ext export [FILE.csv|-] [--with-hashes] [--force] [--domain D] [--json]

Writes every extension as CSV: to FILE.csv (created with mode 0600; an
existing file is kept unless --force), or to standard output without a
file name or with -. With --json the same columns come as one JSON array
(for scripts; import reads CSV only).

Passwords are not stored, only their digest hashes, and the export leaves
those out: its password column is empty, to be filled in before an import.
--with-hashes adds ha1_md5 and ha1_sha256, so that 'switchboard ext import'
takes the file back unchanged (a backup, a move to another server). Keep
such a file as secret as the passwords: a hash logs a phone in as well as
its password does (an HA1 is what a SIP digest is computed from), whoever
holds it can register as the extension and call out as it.`

func extExport(ctx context.Context, env Env, args []string) error {
	var f extFlags
	fs := flag.NewFlagSet("ext export", flag.ContinueOnError)
	f.common(fs)
	withHashes := fs.Bool("with-hashes", false, "include the password hashes (ha1_md5, ha1_sha256): password-equivalent secrets")
	force := fs.Bool("force", false, "overwrite FILE.csv when it exists")
	pos, err := parse(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		helpText(env.Stdout, fs, exportHelp)
		return nil
	}
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usagef("`switchboard ext export` takes at most one file name")
	}
	toFile := len(pos) == 1 && pos[0] != "-"
	if toFile && !*force {
		if _, err := os.Lstat(pos[0]); err == nil {
			return usagef("%s already exists: pass --force to overwrite it, or choose another file name", pos[0])
		}
	}
	db, err := openExisting(ctx, f.data, f.db)
	if err != nil {
		return err
	}
	defer db.Close()
	dom := ""
	if f.domain != "" {
		if dom, err = resolveDomain(ctx, db, f.domain); err != nil {
			return err
		}
	}
	exts, err := db.Extensions(ctx, dom)
	if err != nil {
		return err
	}
	doms, err := db.Domains(ctx)
	if err != nil {
		return err
	}
	realms := map[string]string{}
	for _, d := range doms {
		realms[d.Name] = d.Realm
	}
	var buf bytes.Buffer
	out := io.Writer(env.Stdout)
	if toFile {
		out = &buf
	}
	if f.json {
		// The same columns as the CSV (without the always empty password),
		// as one JSON array.
		rows := make([]exportRow, 0, len(exts))
		for _, e := range exts {
			r := exportRow{e.Number, e.CallerIDName, e.CallerIDNumber, e.Description, e.Enabled,
				e.MaxRegistrations, e.CallTimeout, e.ACL, e.Domain, "", "", ""}
			if *withHashes {
				r.HA1MD5, r.HA1SHA256, r.Realm = e.HA1MD5, e.HA1SHA256, realms[e.Domain]
			}
			rows = append(rows, r)
		}
		if err := writeJSON(out, rows); err != nil {
			return err
		}
	} else {
		cols := csvColumns
		if !*withHashes {
			cols = cols[:len(cols)-3] // ha1_md5, ha1_sha256 and realm come last
		}
		w := csv.NewWriter(out)
		_ = w.Write(cols)
		for _, e := range exts {
			row := []string{e.Number, "", e.CallerIDName, e.CallerIDNumber, e.Description, strconv.FormatBool(e.Enabled),
				strconv.Itoa(e.MaxRegistrations), strconv.Itoa(e.CallTimeout), e.ACL, e.Domain, e.HA1MD5, e.HA1SHA256, realms[e.Domain]}
			_ = w.Write(row[:len(cols)])
		}
		w.Flush()
		if err := w.Error(); err != nil {
			return err
		}
	}
	if !toFile {
		return nil
	}
	if err := writePrivate(pos[0], buf.Bytes(), *force); err != nil {
		return err
	}
	note := ""
	if *withHashes {
		note = " with password hashes (password-equivalent: keep the file private)"
	}
	fmt.Fprintf(env.Stderr, "exported %d extension(s) to %s%s\n", len(exts), pos[0], note)
	return nil
}

// writePrivate writes b to path with mode 0600 (privfile.Write); an
// existing path is kept unless overwrite.
func writePrivate(path string, b []byte, overwrite bool) error {
	err := privfile.Write(path, b, overwrite)
	if errors.Is(err, os.ErrExist) {
		return usagef("%s already exists: pass --force to overwrite it, or choose another file name", path)
	}
	return err
}

// passwordArg resolves --password: "-" means one line from standard input
// (its line break removed), so the password shows neither in ps nor in the
// shell's history; on a terminal it is asked for without echo. Any other
// value is the password itself.
func passwordArg(env Env, number, pw string) (string, error) {
	if pw != "-" {
		return pw, nil
	}
	if f, ok := env.Stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprintf(env.Stderr, "password for %s: ", number)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(env.Stderr)
		if err != nil {
			return "", fmt.Errorf("read the password from the terminal: %w", err)
		}
		return string(b), nil
	}
	if env.Stdin == nil {
		return "", usagef("--password -: no standard input; pipe the password in, e.g. printf '%%s\\n' \"$PW\" | switchboard ext add %s --password -", number)
	}
	line, err := bufio.NewReaderSize(io.LimitReader(env.Stdin, 4096), 4096).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read the password from standard input: %w", err)
	}
	if line == "" {
		return "", usagef("--password -: standard input is empty; pipe the password in, e.g. printf '%%s\\n' \"$PW\" | switchboard ext add %s --password -", number)
	}
	line = strings.TrimSuffix(line, "\n")
	return strings.TrimSuffix(line, "\r"), nil
}
