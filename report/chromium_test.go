//go:build linux

package report

import (
	"context"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

const chromiumPath = "/usr/bin/chromium"

// screenshot renders html with headless Chromium and returns the decoded
// PNG. Chromium starts helper processes; they share a process group that is
// killed on timeout.
func screenshot(t *testing.T, html []byte) image.Image {
	t.Helper()
	dir := t.TempDir()
	page := filepath.Join(dir, "r.html")
	shot := filepath.Join(dir, "r.png")
	if err := os.WriteFile(page, html, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromiumPath,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
		"--hide-scrollbars", "--force-device-scale-factor=1",
		"--user-data-dir="+filepath.Join(dir, "profile"),
		"--screenshot="+shot, "--window-size=1280,2000",
		"file://"+page)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, out)
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("chromium wrote no screenshot: %v\n%s", err, out)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("decoding screenshot: %v", err)
	}
	if keep := os.Getenv("REPORT_SCREENSHOT_DIR"); keep != "" {
		if b, err := os.ReadFile(shot); err == nil {
			_ = os.WriteFile(filepath.Join(keep, "report-"+t.Name()[len("TestHTMLScreenshot/"):]+".png"), b, 0o644)
		}
	}
	return img
}

func near(a, b uint32) bool {
	d := int(a>>8) - int(b)
	return d >= -6 && d <= 6
}

// TestHTMLScreenshot renders the report in a real browser and checks that
// the page is not blank and that the SVG timeline is drawn (its colour is
// used nowhere else).
func TestHTMLScreenshot(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("skipping the browser rendering test: %s not found (install the Debian package chromium, and fonts-noto-cjk for Japanese glyphs)", chromiumPath)
	}
	m, _, _ := fixture(t)
	r64, _ := strconv.ParseUint(TimelineColour[1:3], 16, 8)
	g64, _ := strconv.ParseUint(TimelineColour[3:5], 16, 8)
	b64, _ := strconv.ParseUint(TimelineColour[5:7], 16, 8)
	for _, lang := range []string{LangJapanese, LangEnglish} {
		t.Run(lang, func(t *testing.T) {
			html := mustRender(t, m, lang, FormatHTML)
			img := screenshot(t, html)
			bounds := img.Bounds()
			total, ink, timeline := 0, 0, 0
			for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
				for x := bounds.Min.X; x < bounds.Max.X; x++ {
					r, g, b, _ := img.At(x, y).RGBA()
					total++
					if r>>8 < 235 || g>>8 < 235 || b>>8 < 235 {
						ink++
					}
					if near(r, uint32(r64)) && near(g, uint32(g64)) && near(b, uint32(b64)) {
						timeline++
					}
				}
			}
			t.Logf("%dx%d screenshot: %d non-white pixels (%.1f%%), %d timeline-colour pixels", bounds.Dx(), bounds.Dy(), ink, 100*float64(ink)/float64(total), timeline)
			if float64(ink) < 0.03*float64(total) {
				t.Errorf("page looks blank: only %d of %d pixels are not white", ink, total)
			}
			if timeline < 3000 {
				t.Errorf("timeline not drawn: %d pixels of %s, want at least 3000", timeline, TimelineColour)
			}
		})
	}
}
