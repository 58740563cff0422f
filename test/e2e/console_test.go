package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/switchboard-pbx/switchboard/test/browser"
)

var setupURLRE = regexp.MustCompile(`open (http://127\.0\.0\.1:\d+)(/setup\S*)`)

// screenshot saves the page as docs/screenshots/name.png when
// SWITCHBOARD_SCREENSHOTS=1 (how the README's pictures are made).
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if os.Getenv("SWITCHBOARD_SCREENSHOTS") == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := filepath.Join("..", "..", "docs", "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// do runs browser actions and fails the test with the server's log.
func do(t *testing.T, ctx context.Context, s *Server, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("browser: %s: %v\nserver log:\n%s", what, err, s.Log())
	}
}

// navigate loads url. Chromium aborts a navigation (net::ERR_ABORTED) that
// another one replaces, such as the form post of the cross-site page or the
// redirect of the logout still settling: such a navigation is tried again,
// up to three times; any other error fails the test.
func navigate(t *testing.T, ctx context.Context, s *Server, what, url string) {
	t.Helper()
	var err error
	for range 3 {
		if err = chromedp.Do(ctx, chromedp.Navigate(url)); err == nil || !strings.Contains(err.Error(), "ERR_ABORTED") {
			break
		}
	}
	if err != nil {
		t.Fatalf("browser: %s: %v\nserver log:\n%s", what, err, s.Log())
	}
}

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("browser: evaluate %s: %v", js, err)
	}
	return v
}

// TestConsoleInBrowser drives the console in headless Chromium against the
// real binary: first-run setup from the URL printed on stderr, logout and
// login, adding an extension in the page; SIPp registers it and the row
// turns "registered" within 1 s without a reload; a wrong password from
// 127.0.0.5 turns it "failing" and the Doctor page shows wrong_password
// with that IP and user agent; a form on another site cannot add an
// extension; logout ends the session.
//
// Serial: it bounds the time until the page shows a registration to 1 s
// (and runs Chromium).
func TestConsoleInBrowser(t *testing.T) {
	Need(t, "sipp")
	browser.Need(t)
	s := Start(t, "", "--http", "127.0.0.1:0")
	var base, setup string
	WaitFor(t, 10*time.Second, "the setup URL on stderr", func() bool {
		m := setupURLRE.FindStringSubmatch(s.Log())
		if m != nil {
			base, setup = m[1], m[1]+m[2]
		}
		return m != nil
	})
	ctx := browser.New(t, 3*time.Minute)
	t.Cleanup(func() {
		if t.Failed() {
			out, errOut, _ := s.TryCLI("journal", "--limit", "15")
			t.Logf("journal:\n%s%s", out, errOut)
		}
	})

	// First run: the setup page creates the admin and signs in.
	do(t, ctx, s, "setup", chromedp.Navigate(setup),
		chromedp.WaitVisible(chromedp.CSS("#password2")),
		chromedp.SendKeys(chromedp.CSS("#name"), "alice"),
		chromedp.SendKeys(chromedp.CSS("#password"), "correct horse battery"),
		chromedp.SendKeys(chromedp.CSS("#password2"), "correct horse battery"),
		chromedp.Submit(chromedp.CSS("#password2")),
		chromedp.WaitVisible(chromedp.CSS("#counts")))
	// Log out, then in again with the new password.
	do(t, ctx, s, "logout", chromedp.Click(chromedp.CSS("form[action='/logout'] button")),
		chromedp.WaitVisible(chromedp.CSS("input[name=password]")))
	screenshot(t, ctx, "login")
	do(t, ctx, s, "login",
		chromedp.SendKeys(chromedp.CSS("#name"), "alice"),
		chromedp.SendKeys(chromedp.CSS("#password"), "correct horse battery"),
		chromedp.Submit(chromedp.CSS("#password")),
		chromedp.WaitVisible(chromedp.CSS("#counts")))

	// Add 2002 in the page, with a password the SIPp phone knows.
	do(t, ctx, s, "extensions page", chromedp.Navigate(base+"/extensions"), chromedp.WaitVisible(chromedp.CSS("details.add")))
	eval[bool](t, ctx, `document.querySelector("details.add").open = true`)
	do(t, ctx, s, "add an extension",
		chromedp.SendKeys(chromedp.CSS("#new-number"), "2002"),
		chromedp.SendKeys(chromedp.CSS("#new-name"), "Front desk"),
		chromedp.SendKeys(chromedp.CSS("#new-password"), "secret-2002-pw"),
		chromedp.Submit(chromedp.CSS("#new-number")),
		// The answer page (the password shown once), not the form page's
		// own links: the next navigation must not race the form's post.
		chromedp.WaitVisible(chromedp.Search(`//a[text()="Back to the extensions"]`)))
	navigate(t, ctx, s, "extensions page", base+"/extensions")
	do(t, ctx, s, "extensions page",
		chromedp.WaitVisible(chromedp.CSS(`tr[data-ext="127.0.0.1/2002"]`)),
		chromedp.WaitVisible(chromedp.CSS("#live")))
	rowStatus := `(document.querySelector('tr[data-ext="127.0.0.1/2002"]') || {}).getAttribute ? document.querySelector('tr[data-ext="127.0.0.1/2002"]').getAttribute("data-status") : ""`
	if st := eval[string](t, ctx, rowStatus); st != "offline" {
		t.Fatalf("new extension shows %q, want offline", st)
	}
	// A marker that a reload would lose.
	eval[bool](t, ctx, `window.__noReload = true`)

	phone := docPhone{IP: "127.0.0.4", UA: "Yealink T46U", User: "2002", Password: "secret-2002-pw"}
	phone.register(t, s, 200, 1)
	registeredAt := time.Now()
	for st := ""; st != "registered"; st = eval[string](t, ctx, rowStatus) {
		if time.Since(registeredAt) > time.Second {
			t.Fatalf("the row still shows %q 1 s after the registration (want registered, no reload)\n%s", st, s.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("row turned registered %v after SIPp's 200", time.Since(registeredAt))
	if !eval[bool](t, ctx, `window.__noReload === true`) {
		t.Fatal("the page was reloaded")
	}
	screenshot(t, ctx, "extensions")

	// A wrong password from another address: the row turns failing.
	bad := docPhone{IP: "127.0.0.5", UA: "Grandstream GXP1625", User: "2002", Password: "wrong-password"}
	bad.register(t, s, 403, 1)
	failedAt := time.Now()
	for st := ""; st != "failing"; st = eval[string](t, ctx, rowStatus) {
		if time.Since(failedAt) > 5*time.Second {
			t.Fatalf("the row shows %q 5 s after a wrong password, want failing", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !eval[bool](t, ctx, `window.__noReload === true`) {
		t.Fatal("the page was reloaded")
	}

	// The Doctor page explains it, with the phone's address and model.
	do(t, ctx, s, "doctor", chromedp.Navigate(base+"/doctor?ext=2002"), chromedp.WaitVisible(chromedp.CSS("#findings")))
	findings, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#content")))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"wrong_password", "127.0.0.5", "Grandstream GXP1625"} {
		if !strings.Contains(findings, want) {
			t.Errorf("the Doctor page does not show %q:\n%s", want, findings)
		}
	}
	screenshot(t, ctx, "doctor")
	for _, p := range []struct{ name, path, sel string }{
		{"overview", "/", "#counts"},
		{"registrations", "/registrations", "#regs"},
		{"failed", "/failed", "#attempts"},
		{"journal", "/journal", "#events"},
		{"extension", "/extensions/127.0.0.1/2002", "#bindings"},
		{"admins", "/admins", "#a-name"},
	} {
		do(t, ctx, s, p.name, chromedp.Navigate(base+p.path), chromedp.WaitVisible(chromedp.CSS(p.sel)))
		screenshot(t, ctx, p.name)
	}

	// Registrations: rows go away live when the registrations are dropped
	// (here with the CLI, so the page itself does not navigate).
	regRow := `document.querySelectorAll('#regs tr[data-ext="127.0.0.1/2002"]').length`
	do(t, ctx, s, "registrations", chromedp.Navigate(base+"/registrations"), chromedp.WaitVisible(chromedp.CSS("#regs")))
	if n := eval[int](t, ctx, regRow); n < 1 {
		t.Fatalf("%d registration rows for 2002, want at least 1", n)
	}
	eval[bool](t, ctx, `window.__noReload = true`)
	s.CLI("reg", "rm", "2002")
	WaitFor(t, 2*time.Second, "the registration row to go without a reload", func() bool { return eval[int](t, ctx, regRow) == 0 })
	if !eval[bool](t, ctx, `window.__noReload === true`) {
		t.Fatal("the registrations page was reloaded")
	}

	// A phone's screen: the Extensions page at 390 px wide.
	do(t, ctx, s, "phone width", chromedp.EmulateViewport(390, 844), chromedp.Navigate(base+"/extensions"),
		chromedp.WaitVisible(chromedp.CSS("#ext-table")))
	if w := eval[float64](t, ctx, `document.querySelector("#q").getBoundingClientRect().right`); w > 390 {
		t.Errorf("the search box ends at %.0f px on a 390 px screen", w)
	}
	screenshot(t, ctx, "extensions-phone")
	do(t, ctx, s, "laptop width", chromedp.EmulateViewport(1280, 900))

	// A form on another site (another origin, 127.0.0.2) posting to the
	// console is refused, and adds nothing.
	evil := evilSite(t, base+"/extensions/add")
	do(t, ctx, s, "cross-site post", chromedp.Navigate(evil), chromedp.WaitVisible(chromedp.CSS("body")))
	WaitFor(t, 5*time.Second, "the cross-site answer", func() bool {
		txt := eval[string](t, ctx, `document.body ? document.body.innerText : ""`)
		return strings.Contains(strings.ToLower(txt), "cross-origin")
	})
	if out, _, _ := s.TryCLI("ext", "show", "6666"); !strings.Contains(out, "unknown") && strings.Contains(out, "6666") {
		t.Fatalf("the cross-site post added 6666:\n%s", out)
	}

	// Logout ends the session: the console sends to the login page.
	navigate(t, ctx, s, "back to the console", base+"/extensions")
	do(t, ctx, s, "logout", chromedp.WaitVisible(chromedp.CSS("#ext-table")),
		chromedp.Click(chromedp.CSS("form[action='/logout'] button")),
		chromedp.WaitVisible(chromedp.CSS("input[name=password]")))
	navigate(t, ctx, s, "the console after logout", base+"/extensions")
	do(t, ctx, s, "the login page after logout", chromedp.WaitVisible(chromedp.CSS("input[name=password]")))
	if n := eval[int](t, ctx, `document.querySelectorAll("#ext-table").length`); n != 0 {
		t.Fatal("the extensions page is shown after logout")
	}
}

// evilSite serves, on 127.0.0.2, a page whose form posts to target at
// once, as a malicious site would; it returns the page's URL.
func evilSite(t *testing.T, target string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.2: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><form id="f" method="post" action="%s"><input name="number" value="6666"></form>`+
			`<script>document.getElementById("f").submit()</script>`, target)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String() + "/"
}

// TestConsoleCSVImport: a CSV uploaded on the Extensions page goes through
// the CLI's importer (all rows or none, the bad line named) and the new
// extensions are live at once; the upload is journaled with the admin.
func TestConsoleCSVImport(t *testing.T) {
	t.Parallel()
	s := Start(t, "", "--http", "127.0.0.1:0")
	var base string
	WaitFor(t, 10*time.Second, "the console URL", func() bool {
		m := setupURLRE.FindStringSubmatch(s.Log())
		if m != nil {
			base = m[1]
		}
		return m != nil
	})
	if _, errOut, code := RunCLI(t, s.Data, "correct horse battery\n", "admin", "add", "alice", "--password-stdin"); code != 0 {
		t.Fatalf("admin add: %s", errOut)
	}
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	res, err := hc.PostForm(base+"/login", url.Values{"name": {"alice"}, "password": {"correct horse battery"}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	upload := func(csv string) string {
		t.Helper()
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		fw, _ := mw.CreateFormFile("csv", "exts.csv")
		fw.Write([]byte(csv))
		mw.WriteField("domain", "127.0.0.1")
		mw.Close()
		res, err := hc.Post(base+"/extensions/import", mw.FormDataContentType(), &body)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b)
	}
	page := upload("extension,password,name\n2100,imported-pass-1,Lobby\n2101,imported-pass-2,Stock room\n")
	if !strings.Contains(page, "imported 2 extension") || !strings.Contains(page, `data-ext="127.0.0.1/2100"`) {
		t.Fatalf("import answer:\n%s", page)
	}
	page = upload("extension,password\n2102,good-password-3\n../x,bad-number-4\n")
	if !strings.Contains(page, "nothing was imported") || !strings.Contains(page, "line 3") {
		t.Fatalf("bad import answer:\n%s", page)
	}
	if out, _, code := s.TryCLI("ext", "show", "2102"); code == 0 {
		t.Fatalf("2102 was imported from a file with a bad row:\n%s", out)
	}
	WaitFor(t, 5*time.Second, "the import in the journal", func() bool {
		out, _, _ := s.TryCLI("journal", "--kind", "admin")
		return strings.Contains(out, "imported") && strings.Contains(out, "alice")
	})
}
