package e2e

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"mime"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/xs-backup/xs-backup/internal/journalgen"
)

// chromiumPath finds Debian's chromium (installed by .ci/run).
func chromiumPath(t *testing.T) string {
	for _, p := range []string{os.Getenv("XS_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p == "" {
			continue
		}
		if _, err := exec.LookPath(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed; .ci/run installs it (apt-get install -y chromium)")
	}
	t.Skip("chromium is not installed (apt-get install -y chromium): browser test skipped")
	return ""
}

func newBrowser(t *testing.T) (context.Context, context.CancelFunc) {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(480, 800), // a small screen, like the XO's Browse
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 90*time.Second)
	return ctx, func() { cancelT(); cancelB(); cancelA() }
}

// TestRestorePageInChromium: a laptop makes its link with xo-backup
// restore-link; in a real headless Chromium the student picks a date, sees
// the titles (in several scripts), downloads an entry as a .xoj and as a
// file, and both match the backed-up bytes. Another laptop's backup, a
// forged link and an expired one are refused.
func TestRestorePageInChromium(t *testing.T) {
	ctx, cancel := newBrowser(t)
	defer cancel()
	d := StartDaemon(t, t.TempDir(), "--page", "127.0.0.1:0")
	type lap struct{ state, src, serial string }
	var laps []lap
	for i := 0; i < 2; i++ {
		l := lap{state: t.TempDir(), src: t.TempDir(), serial: fmt.Sprintf("PG%02d", i)}
		ents, err := journalgen.Generate(l.src, journalgen.Small(uint64(20+i)))
		if err != nil {
			t.Fatal(err)
		}
		// A title in three scripts.
		multi := journalgen.Entry{UID: fmt.Sprintf("e%07d-0000-4000-8000-000000000000", i), Title: "Рисунок 我的画 العلوم",
			Activity: "org.laptop.Oficina", Mime: "image/png", Data: previewPNG(9)}
		if err := journalgen.WriteEntry(l.src, multi, time.Date(2026, 9, 2, 8, 0, 0, 0, time.UTC)); err != nil {
			t.Fatal(err)
		}
		// Sugar keeps a small PNG preview for most entries.
		for k, e := range ents {
			if k%2 == 0 {
				os.WriteFile(filepath.Join(l.src, e.UID[:2], e.UID, "metadata", "preview"), previewPNG(k), 0o644)
			}
		}
		if out, errOut, code := xo(t, l.state, "register", "--server", d.Addr, "--serial", l.serial, "--nickname", "Ana"); code != 0 {
			t.Fatalf("register: %s %s", out, errOut)
		}
		runBackup(t, l.state, l.src)
		laps = append(laps, l)
	}
	out, errOut, code := xo(t, laps[0].state, "restore-link", "--json", "--no-open")
	var link struct{ URL string }
	if code != 0 || json.Unmarshal([]byte(out), &link) != nil || !strings.Contains(link.URL, "/r/") {
		t.Fatalf("restore-link: %d %s %s", code, out, errOut)
	}
	// The entries the page must show, from the backed-up Journal itself.
	var listing struct {
		Snapshot string
		Entries  []struct {
			UID, Title string
			Size       int64
		}
	}
	adminJSON(t, d.Data, &listing, "ls", laps[0].serial)
	if len(listing.Entries) < 5 {
		t.Fatalf("ls: %+v", listing)
	}

	dl := t.TempDir()
	done := make(chan string, 4)
	if err := chromedp.ListenBrowser(ctx, func(ev any) {
		if e, ok := ev.(*browser.EventDownloadProgress); ok && e.State == browser.DownloadProgressStateCompleted {
			select {
			case done <- e.GUID:
			default:
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: dl, EventsEnabled: new(true)}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(link.URL)); err != nil {
		t.Fatal(err)
	}
	dates := pageText(t, ctx, "ul.dates")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("ul.dates a")), chromedp.WaitVisible(chromedp.CSS("ul.entries"))); err != nil {
		t.Fatal(err)
	}
	body := pageText(t, ctx, "main")
	loaded, err := chromedp.Run(ctx, chromedp.Evaluate[int](`[...document.querySelectorAll('img.preview')].filter(i => i.complete && i.naturalWidth == 80).length`))
	if err != nil || loaded < 3 {
		t.Fatalf("%d preview images shown (%v), want the entries' previews", loaded, err)
	}
	if !strings.Contains(dates, time.Now().Format("2006")) {
		t.Fatalf("dates page: %q", dates)
	}
	for _, e := range listing.Entries {
		if !strings.Contains(body, e.Title) {
			t.Errorf("the page does not show %q:\n%s", e.Title, body)
		}
	}
	if shot := os.Getenv("XS_SCREENSHOT"); shot != "" {
		shotPNG, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(shot, shotPNG, 0o644)
	}
	if !strings.Contains(body, "Рисунок 我的画 العلوم") {
		t.Fatalf("the multi-script title is not shown:\n%s", body)
	}
	// It downloads under its own name (RFC 6266 filename*), in a header
	// that is ASCII, with an ASCII name for browsers that want one.
	resp, err := http.Get(link.URL + "s/" + listing.Snapshot + "/f/e0000000-0000-4000-8000-000000000000")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cd := resp.Header.Get("Content-Disposition")
	for _, r := range cd {
		if r > 0x7e {
			t.Fatalf("Content-Disposition is not ASCII: %q", cd)
		}
	}
	if _, params, err := mime.ParseMediaType(cd); err != nil || params["filename"] != "Рисунок 我的画 العلوم.png" {
		t.Fatalf("download name %q (%v), want the title and the type's extension", cd, err)
	}
	if plain, _, _ := strings.Cut(cd, "; filename*="); !strings.HasSuffix(plain, `filename="Risunok.png"`) {
		t.Fatalf("ASCII download name in %q", cd)
	}
	// Download the first entry with a data file, both ways.
	var target struct {
		UID, Title string
		Size       int64
	}
	for _, e := range listing.Entries {
		if e.Size > 0 {
			target = e
			break
		}
	}
	want, err := os.ReadFile(filepath.Join(laps[0].src, target.UID[:2], target.UID, "data"))
	if err != nil {
		t.Fatal(err)
	}
	download := func(sel string) []byte {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel))); err != nil {
			t.Fatal(err)
		}
		select {
		case guid := <-done:
			b, err := os.ReadFile(filepath.Join(dl, guid))
			if err != nil {
				t.Fatal(err)
			}
			return b
		case <-ctx.Done():
			t.Fatal("download did not finish")
		}
		return nil
	}
	raw := download(fmt.Sprintf(`a.raw[href$="/f/%s"]`, target.UID))
	if !bytes.Equal(raw, want) {
		t.Fatalf("downloaded file: %d bytes, backed up %d", len(raw), len(want))
	}
	xoj := download(fmt.Sprintf(`a.xoj[href$="/x/%s"]`, target.UID))
	zr, err := zip.NewReader(bytes.NewReader(xoj), int64(len(xoj)))
	if err != nil {
		t.Fatalf("the .xoj is not a zip: %v", err)
	}
	var gotData []byte
	for _, f := range zr.File {
		if f.Name == target.UID+"/"+target.UID {
			rc, _ := f.Open()
			gotData, _ = io.ReadAll(rc)
			rc.Close()
		}
	}
	if !bytes.Equal(gotData, want) {
		t.Fatalf("the .xoj's data: %d bytes, backed up %d", len(gotData), len(want))
	}

	// Refusals: another laptop's backup through this link, a forged link,
	// a link of another laptop used on this one's snapshot.
	var other struct{ Snapshot string }
	adminJSON(t, d.Data, &other, "ls", laps[1].serial)
	refused := func(url string, status int, text string) {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
			t.Fatal(err)
		}
		got := pageText(t, ctx, "main")
		if !strings.Contains(got, text) {
			t.Errorf("%s: page says %q, want %q", url, got, text)
		}
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != status {
			t.Errorf("%s: status %d, want %d", url, resp.StatusCode, status)
		}
	}
	refused(link.URL+"s/"+other.Snapshot+"/", http.StatusNotFound, "not in your list")
	forged := strings.Replace(link.URL, "/r/", "/r/x", 1)
	refused(forged, http.StatusForbidden, "does not work")
	staffOut, _, code := admin(t, d.Data, "restore-link", laps[1].serial, "--json")
	var staff struct{ URL string }
	if code != 0 || json.Unmarshal([]byte(staffOut), &staff) != nil {
		t.Fatalf("xs-admin restore-link: %s", staffOut)
	}
	// The staff link's path, on this test's loopback address.
	i := strings.Index(staff.URL, "/r/")
	base := link.URL[:strings.Index(link.URL, "/r/")]
	if err := chromedp.Do(ctx, chromedp.Navigate(base+staff.URL[i:])); err != nil {
		t.Fatal(err)
	}
	if staffBody := pageText(t, ctx, "main"); !strings.Contains(staffBody, "Your backups") {
		t.Fatalf("staff link: %q", staffBody)
	}
	// The staff link for laptop 1 cannot open laptop 0's snapshot either.
	refused(base+staff.URL[i:]+"s/"+listing.Snapshot+"/", http.StatusNotFound, "not in your list")
}

// updateScreenshots (XS_UPDATE_SCREENSHOTS=1) writes the restore page's
// screenshots in docs/screenshots; without it the test only checks, so
// that CI never changes the tree.
var updateScreenshots = os.Getenv("XS_UPDATE_SCREENSHOTS") != ""

// TestRestorePageLanguagesInChromium: a child's browser asking for Spanish
// gets the page in Spanish, dates included; the switch on the page turns it
// into Arabic, right to left, with the signed link still working; both are
// screenshot for docs/screenshots (with XS_UPDATE_SCREENSHOTS=1).
func TestRestorePageLanguagesInChromium(t *testing.T) {
	ctx, cancel := newBrowser(t)
	defer cancel()
	d := StartDaemon(t, t.TempDir(), "--page", "127.0.0.1:0")
	state, src := t.TempDir(), t.TempDir()
	when := time.Date(2026, 9, 2, 8, 0, 0, 0, time.UTC)
	for i, e := range []journalgen.Entry{
		{Title: "Mi dibujo del sol", Activity: "org.laptop.Oficina", Mime: "image/png", Data: previewPNG(1)},
		{Title: "رسمتي: بيتنا", Activity: "org.laptop.Oficina", Mime: "image/png", Data: previewPNG(2)},
		{Title: "El cuento del río", Activity: "org.laptop.AbiWordActivity", Mime: "text/plain", Data: []byte("Había una vez un río.")},
		{Title: "قصة القطة الصغيرة", Activity: "org.laptop.AbiWordActivity", Mime: "text/plain", Data: []byte("كان يا ما كان")},
		{Title: "Tortuga cuadrada", Activity: "org.laptop.TurtleArtActivity", Mime: "application/x-turtle-art", Data: []byte("[[0, \"start\"]]")},
	} {
		e.UID = fmt.Sprintf("%08x-0000-4000-8000-000000000000", uint32(0xa0000000)+uint32(i))
		if err := journalgen.WriteEntry(src, e, when.Add(time.Duration(i)*time.Hour)); err != nil {
			t.Fatal(err)
		}
		if e.Mime == "image/png" {
			os.WriteFile(filepath.Join(src, e.UID[:2], e.UID, "metadata", "preview"), e.Data, 0o644)
		}
	}
	if out, errOut, code := xo(t, state, "register", "--server", d.Addr, "--serial", "LANG01", "--nickname", "Amina"); code != 0 {
		t.Fatalf("register: %s %s", out, errOut)
	}
	// Two backups a few seconds apart: the list tells them apart.
	runBackup(t, state, src)
	os.WriteFile(filepath.Join(src, "a0", "a0000002-0000-4000-8000-000000000000", "data"), []byte("Había una vez un río largo."), 0o644)
	runBackup(t, state, src, "--force")
	out, errOut, code := xo(t, state, "restore-link", "--json", "--no-open")
	var link struct{ URL string }
	if code != 0 || json.Unmarshal([]byte(out), &link) != nil || !strings.Contains(link.URL, "/r/") {
		t.Fatalf("restore-link: %d %s %s", code, out, errOut)
	}

	// Spanish, as a browser set to Latin American Spanish asks for it.
	if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
		Headers: network.Headers{"Accept-Language": "es-419,es;q=0.9"}}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(link.URL), chromedp.WaitVisible(chromedp.CSS("ul.dates"))); err != nil {
		t.Fatal(err)
	}
	if h1 := pageText(t, ctx, "h1"); h1 != "Tus copias de seguridad" {
		t.Fatalf("dates page in Spanish: h1 %q", h1)
	}
	dates, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('ul.dates a')].map(a => a.innerText)`))
	if err != nil || len(dates) != 2 || dates[0] == dates[1] {
		t.Fatalf("two backups of the same minute must read differently: %q (%v)", dates, err)
	}
	weekdays := []string{"domingo", "lunes", "martes", "miércoles", "jueves", "viernes", "sábado"}
	if !strings.Contains(dates[0], weekdays[time.Now().Weekday()]) || !strings.Contains(dates[0], " de ") {
		t.Fatalf("date in Spanish: %q", dates[0])
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("ul.dates a")), chromedp.WaitVisible(chromedp.CSS("ul.entries"))); err != nil {
		t.Fatal(err)
	}
	body := pageText(t, ctx, "main")
	for _, want := range []string{"Toca Diario para devolver", "Otros días", "Mi dibujo del sol", "رسمتي: بيتنا", "2 de septiembre de 2026", "Archivo"} {
		if !strings.Contains(body, want) {
			t.Errorf("entries page in Spanish lacks %q:\n%s", want, body)
		}
	}
	if updateScreenshots {
		writeScreenshot(t, ctx, "restore-page-es.png")
	}

	// Arabic, from the switch on the page: right to left, same signed link.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`nav.langs a[lang="ar"]`)), chromedp.WaitVisible(chromedp.CSS(`html[lang="ar"] ul.entries`))); err != nil {
		t.Fatal(err)
	}
	var layout struct {
		Dir, Direction, URL string
		HomeLeft, WhoRight  float64
		Width               float64
	}
	layout, err = chromedp.Run(ctx, chromedp.Evaluate[struct {
		Dir, Direction, URL string
		HomeLeft, WhoRight  float64
		Width               float64
	}](`({Dir: document.documentElement.dir, Direction: getComputedStyle(document.body).direction, URL: location.href,
		HomeLeft: document.querySelector('header a.home').getBoundingClientRect().left,
		WhoRight: document.querySelector('header .who').getBoundingClientRect().right,
		Width: document.documentElement.clientWidth})`))
	if err != nil {
		t.Fatal(err)
	}
	if layout.Dir != "rtl" || layout.Direction != "rtl" {
		t.Fatalf("Arabic page: dir %q, computed direction %q", layout.Dir, layout.Direction)
	}
	// Mirrored: "my backups" on the right, the child's name on the left.
	if layout.HomeLeft < layout.Width/2 || layout.WhoRight > layout.Width/2 {
		t.Errorf("the Arabic header is not mirrored: %+v", layout)
	}
	if !strings.HasPrefix(layout.URL, link.URL) || !strings.HasSuffix(layout.URL, "?lang=ar") {
		t.Errorf("after the switch the page is %s, want the signed link with ?lang=ar", layout.URL)
	}
	body = pageText(t, ctx, "main")
	for _, want := range []string{"أيام أخرى", "المس اليوميات", "2 سبتمبر 2026", "Mi dibujo del sol", "قصة القطة الصغيرة", "ملف"} {
		if !strings.Contains(body, want) {
			t.Errorf("entries page in Arabic lacks %q:\n%s", want, body)
		}
	}
	if updateScreenshots {
		writeScreenshot(t, ctx, "restore-page-ar.png")
	}
	// Back to the dates: the choice of Arabic is kept.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("a.back")), chromedp.WaitVisible(chromedp.CSS(`html[lang="ar"] ul.dates`))); err != nil {
		t.Fatal(err)
	}
	if h1 := pageText(t, ctx, "h1"); h1 != "نسخك الاحتياطية" {
		t.Fatalf("dates page in Arabic: h1 %q", h1)
	}
}

// writeScreenshot saves the browser's viewport (480×800, as on an XO) as
// docs/screenshots/name.
func writeScreenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if len(png) > 200<<10 {
		t.Fatalf("%s: %d bytes, keep screenshots under 200 KiB", name, len(png))
	}
	if err := os.WriteFile(filepath.Join("..", "docs", "screenshots", name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// text returns the visible text of the first element matching a CSS selector.
func pageText(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// previewPNG draws a small preview image.
func previewPNG(seed int) []byte {
	img := image.NewRGBA(image.Rect(0, 0, 80, 60))
	for y := 0; y < 60; y++ {
		for x := 0; x < 80; x++ {
			img.Set(x, y, color.RGBA{uint8(40 + seed*30 + x), uint8(120 + y*2), uint8(200 - seed*20), 255})
		}
	}
	var b bytes.Buffer
	png.Encode(&b, img)
	return b.Bytes()
}
