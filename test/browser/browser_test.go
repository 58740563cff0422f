package browser

import (
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestNewRendersAPage starts Chromium, opens a page served on loopback and
// reads back text that only a script run by the browser writes: the
// launcher works and JavaScript runs.
func TestNewRendersAPage(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><title>t</title><p id="out">static</p>`+
			`<script>document.getElementById("out").textContent = "scripted " + (6*7)</script>`)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	ctx := New(t, time.Minute)
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+ln.Addr().String()+"/")); err != nil {
		t.Fatal(err)
	}
	text, err := chromedp.Run(ctx, chromedp.Text("#out"))
	if err != nil {
		t.Fatal(err)
	}
	if text != "scripted 42" {
		t.Fatalf("page text = %q, want %q", text, "scripted 42")
	}
}
