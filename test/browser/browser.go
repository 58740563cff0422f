// Package browser starts a real headless Chromium for tests and returns a
// chromedp context driving it.
//
// It looks for Debian's chromium (/usr/bin/chromium), then chromium-browser,
// google-chrome and google-chrome-stable on PATH, or the binary named by
// SWITCHBOARD_CHROMIUM. When none is found the test is skipped locally and
// fails under CI (CI=true), so a missing install step (.ci/run installs
// chromium) cannot hide behind a skip.
//
// Every browser gets a fresh profile directory (t.TempDir), runs headless
// without GPU, QUIC, sync, component updates or background networking, so
// it sends nothing beyond the pages the test opens, and --no-sandbox when
// running as root (Chromium refuses to start otherwise). The browser is
// stopped by t.Cleanup.
//
// Example:
//
//	ctx := browser.New(t)
//	err := chromedp.Do(ctx, chromedp.Navigate(url))
//	title, err := chromedp.Run(ctx, chromedp.Title())
package browser

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Binary returns the path of a Chromium (or Chrome) executable, or "" when
// none is installed.
func Binary() string {
	if p := os.Getenv("SWITCHBOARD_CHROMIUM"); p != "" {
		return p
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// Need skips the test when no Chromium is installed, except under CI
// (CI set) where it fails; it returns the binary's path.
func Need(t testing.TB) string {
	t.Helper()
	bin := Binary()
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is not installed: .ci/run must install it")
		}
		t.Skip("chromium is not installed (apt-get install chromium, or run .ci/run)")
	}
	return bin
}

// Options are the Chromium flags New uses, for the binary bin and the
// profile directory dir: headless, no GPU, no QUIC, no first-run, no
// background traffic, a fresh profile, and --no-sandbox when the process
// runs as root.
func Options(bin, dir string) []chromedp.ExecAllocatorOption {
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.UserDataDir(dir),
		chromedp.Flag("headless", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("mute-audio", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("safebrowsing-disable-auto-update", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.WindowSize(1280, 900),
	}
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	return opts
}

// New starts a headless Chromium with a fresh profile and returns a
// context driving its first tab. The browser stops when the test ends (or
// after timeout, 2 minutes when zero, so a hung page cannot hang the test
// run). It skips or fails the test as Need does when Chromium is missing.
func New(t testing.TB, timeout time.Duration) context.Context {
	t.Helper()
	bin := Need(t)
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	ctx, cancelTimeout := context.WithTimeout(context.Background(), timeout)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, Options(bin, t.TempDir())...)
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
		cancelTimeout()
	})
	// Start the browser now, so a broken install fails here with a clear
	// message rather than at the first action.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("browser: start %s: %v", bin, err)
	}
	return bctx
}
