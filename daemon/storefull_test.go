package daemon_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/warden-ir/warden/config"
	"github.com/warden-ir/warden/daemon"
	"github.com/warden-ir/warden/internal/testsupport"
	"github.com/warden-ir/warden/inventory"
	"github.com/warden-ir/warden/store"
)

// mountTmpfs mounts a tmpfs of size bytes on a fresh temporary directory
// and unmounts it when the test ends, also when it fails. The mount point
// is unique to the test, so nothing else on the host sees a change.
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root (CAP_SYS_ADMIN)")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0700,size="+strconv.Itoa(size)); err != nil {
		t.Skipf("mounting a tmpfs on %s: %v (needs CAP_SYS_ADMIN)", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmounting the tmpfs on %s: %v; detaching it", dir, err)
			_ = unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	return dir
}

// fill writes to path until the file system is full and returns how much
// it wrote.
func fill(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	var n int64
	for {
		w, err := f.Write(chunk)
		n += int64(w)
		if errors.Is(err, syscall.ENOSPC) {
			return n
		}
		if err != nil {
			t.Fatalf("filling %s: %v", path, err)
		}
	}
}

type reply struct {
	status     int
	retryAfter string
	body       string
}

// TestFullDiskMakesControllerUnreadyNotBroken puts the store on a small
// tmpfs, fills it, and checks what a load balancer and an alert sender
// see: /readyz 503 and intake 503, both with Retry-After, the cause in the
// log and in /metrics; then frees space and checks that the controller is
// ready again without a restart and that every indicator it accepted (202)
// is in the store.
func TestFullDiskMakesControllerUnreadyNotBroken(t *testing.T) {
	mnt := mountTmpfs(t, 4<<20)
	const token = "store-full-test-token"
	cfg := config.Defaults()
	cfg.Server.APIToken = token
	cfg.Store.Path = filepath.Join(mnt, "warden.db")
	cfg.Evidence.Dir = filepath.Join(t.TempDir(), "evidence")
	cfg.Inventory = inventory.Inventory{
		Sites:    []inventory.Site{{Name: "hq", TimeZone: "Asia/Tokyo"}},
		Gateways: []inventory.Gateway{{ID: "gw-hq", Site: "hq", VM: "gw-hq", Addresses: []string{"203.0.113.10"}, ManagementNetworks: []string{"192.0.2.0/28"}}},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &testsupport.SyncBuffer{}
	d, err := daemon.Build(t.Context(), cfg, daemon.Options{
		Log:                slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		StoreProbeInterval: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	addr, err := d.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.WithoutCancel(t.Context()))
	served := make(chan error, 1)
	go func() { served <- d.Serve(ctx) }()
	shutdown := sync.OnceValue(func() error {
		stop()
		err := <-served
		d.Close(context.Background())
		return err
	})
	// Registered after the mount: runs before the unmount, so that no
	// file on the tmpfs is open when it goes.
	t.Cleanup(func() { _ = shutdown() })

	client := &http.Client{Timeout: 20 * time.Second}
	call := func(method, path, body string) reply {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, "http://"+addr+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return reply{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), body: string(b)}
	}
	waitReady := func(want int) reply {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			r := call("GET", "/readyz", "")
			if r.status == want {
				return r
			}
			if time.Now().After(deadline) {
				t.Fatalf("/readyz still answers %d %s, want %d", r.status, r.body, want)
			}
			time.Sleep(20 * time.Millisecond) // polling the system under test, not timing its logic
		}
	}
	var accepted []string
	submit := func(n int) reply {
		t.Helper()
		body := `{"kind":"config_tamper","gateway":"gw-hq","severity":"high","confidence":0.9,"source":"test","summary":"delivery ` + strconv.Itoa(n) + `"}`
		r := call("POST", "/v1/indicators", body)
		if r.status == http.StatusAccepted {
			var res struct {
				Results []struct {
					IndicatorID string `json:"indicator_id"`
				} `json:"results"`
			}
			if err := json.Unmarshal([]byte(r.body), &res); err != nil || len(res.Results) != 1 {
				t.Fatalf("202 with body %s (%v)", r.body, err)
			}
			accepted = append(accepted, res.Results[0].IndicatorID)
		}
		return r
	}
	metric := func(re string) string {
		t.Helper()
		m := regexp.MustCompile(`(?m)^` + re + ` (\S+)$`).FindStringSubmatch(call("GET", "/metrics", "").body)
		if m == nil {
			return ""
		}
		return m[1]
	}
	wantRetryAfter := func(what string, r reply) {
		t.Helper()
		if s, err := strconv.Atoi(r.retryAfter); err != nil || s < 1 {
			t.Errorf("%s: Retry-After %q, want a positive number of seconds", what, r.retryAfter)
		}
	}

	waitReady(http.StatusOK)
	for i := range 3 {
		if r := submit(i); r.status != http.StatusAccepted {
			t.Fatalf("before the disk fills: intake answered %d %s", r.status, r.body)
		}
	}
	if got := metric(`warden_store_writable`); got != "1" {
		t.Errorf("warden_store_writable = %q while the store commits, want 1", got)
	}

	filler := filepath.Join(mnt, "filler")
	if n := fill(t, filler); n == 0 {
		t.Fatal("the tmpfs was full before the test filled it")
	}
	r := waitReady(http.StatusServiceUnavailable)
	wantRetryAfter("/readyz", r)
	if !strings.Contains(r.body, "disk_full") {
		t.Errorf("/readyz body %s does not name the reason disk_full", r.body)
	}
	if strings.Contains(r.body, mnt) {
		t.Errorf("unauthenticated /readyz shows the store's path: %s", r.body)
	}
	r = submit(100)
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("intake on a full disk: %d %s, want 503", r.status, r.body)
	}
	wantRetryAfter("intake", r)
	if !strings.Contains(r.body, "disk_full") || !strings.Contains(r.body, "nothing was stored") {
		t.Errorf("intake 503 body %s does not say why and that nothing was stored", r.body)
	}
	if got := metric(`warden_store_writable`); got != "0" {
		t.Errorf("warden_store_writable = %q on a full disk, want 0", got)
	}
	if got, _ := strconv.Atoi(metric(`warden_store_commit_failures_total\{reason="disk_full"\}`)); got < 1 {
		t.Errorf(`warden_store_commit_failures_total{reason="disk_full"} = %d, want at least 1`, got)
	}
	if got := metric(`warden_indicators_rejected_total\{reason="store_unwritable"\}`); got != "1" {
		t.Errorf(`warden_indicators_rejected_total{reason="store_unwritable"} = %q, want 1`, got)
	}
	if l := logs.String(); !strings.Contains(l, "the store cannot commit") || !strings.Contains(l, "reason=disk_full") {
		t.Errorf("the log does not say the store cannot commit and why:\n%s", l)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitReady(http.StatusOK)
	if r := submit(100); r.status != http.StatusAccepted {
		t.Fatalf("intake once space is free: %d %s, want 202", r.status, r.body)
	}
	if got := metric(`warden_store_writable`); got != "1" {
		t.Errorf("warden_store_writable = %q once space is free, want 1", got)
	}

	// Every 202 is in the store, as a fresh process reads it.
	if err := shutdown(); err != nil {
		t.Fatalf("serve ended with %v, want a clean stop", err)
	}
	st, err := store.Open(t.Context(), cfg.Store.Path, "full")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	stored := map[string]bool{}
	rows, err := st.DB().QueryContext(t.Context(), `SELECT id FROM indicators`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		stored[id] = true
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	for _, id := range accepted {
		if !stored[id] {
			t.Errorf("indicator %s was accepted (202) but is not in the store", id)
		}
	}
	if len(stored) != len(accepted) {
		t.Errorf("the store holds %d indicators, %d were accepted: a refused delivery was stored", len(stored), len(accepted))
	}
}
