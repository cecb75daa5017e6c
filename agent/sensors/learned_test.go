package sensors

import (
	"encoding/json"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-ir/warden/internal/clock/clocktest"
)

var learnT0 = time.Date(2025, 3, 3, 10, 0, 0, 0, time.UTC) // a Monday

func learnOpen(t *testing.T, dir string, cfg LearningConfig, clk *clocktest.Fake) *Learned {
	t.Helper()
	l, err := OpenLearned(dir, cfg, clk)
	if err != nil {
		t.Fatalf("OpenLearned: %v", err)
	}
	return l
}

func TestLearningPeriod(t *testing.T) {
	tests := map[string]struct {
		cfg   LearningConfig
		after time.Duration
		want  bool
	}{
		"default period running":    {after: 7*24*time.Hour - time.Second, want: true},
		"default period over":       {after: 7 * 24 * time.Hour, want: false},
		"configured period over":    {cfg: LearningConfig{Period: time.Hour}, after: time.Hour, want: false},
		"configured period running": {cfg: LearningConfig{Period: time.Hour}, after: 59 * time.Minute, want: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			clk := clocktest.NewFake(learnT0)
			l := learnOpen(t, t.TempDir(), tc.cfg, clk)
			if !l.Learning(learnT0) {
				t.Fatal("a new state is not learning")
			}
			if got := l.Learning(learnT0.Add(tc.after)); got != tc.want {
				t.Errorf("Learning(start+%s) = %v, want %v", tc.after, got, tc.want)
			}
		})
	}
}

func TestLearnedSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	clk := clocktest.NewFake(learnT0)
	l := learnOpen(t, dir, LearningConfig{}, clk)
	src := netip.MustParseAddr("203.0.113.5")
	dst := Destination{Addr: netip.MustParseAddr("2001:db8::1"), Port: 443, Proto: "tcp"}
	key := ProfileKey{Interface: "wg0/peer=ab+c/d=", Direction: DirectionTX, Hour: 37}
	l.AdminSources().Observe(src, "root", learnT0)
	l.Destinations().Observe(dst, learnT0)
	l.Traffic().Update(key, 1000, 0.5, learnT0)
	l.EndLearning(learnT0.Add(time.Hour))
	if err := l.Save(); err != nil {
		t.Fatalf("Save: %v", err)
	}
	info, err := os.Stat(filepath.Join(dir, LearnedFile))
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("learned state mode %o, want 600", perm)
	}

	clk.Advance(24 * time.Hour) // a restart a day later keeps the old start
	again := learnOpen(t, dir, LearningConfig{}, clk)
	if !again.LearningStarted().Equal(learnT0) {
		t.Errorf("LearningStarted after restart = %v, want %v", again.LearningStarted(), learnT0)
	}
	if again.Learning(learnT0.Add(2 * time.Hour)) {
		t.Error("learning ended before the restart but runs again after it")
	}
	if !again.AdminSources().Known(src) {
		t.Error("admin source forgotten across restart")
	}
	if !again.Destinations().Known(dst, learnT0) {
		t.Error("destination forgotten across restart")
	}
	if p, ok := again.Traffic().Get(key); !ok || p.Mean != 1000 || p.Samples != 1 {
		t.Errorf("traffic profile after restart = %+v, %v", p, ok)
	}
}

func TestSaveWritesOnlyChanges(t *testing.T) {
	dir := t.TempDir()
	l := learnOpen(t, dir, LearningConfig{}, clocktest.NewFake(learnT0))
	if err := l.Save(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, LearnedFile)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := l.Save(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("an unchanged state was written again (stat: %v)", err)
	}
	l.AdminSources().Observe(netip.MustParseAddr("192.0.2.1"), "root", learnT0)
	if err := l.Save(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("a changed state was not written: %v", err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, ".*"))
	if len(leftovers) != 0 {
		t.Errorf("temporary files left behind: %v", leftovers)
	}
}

func TestSeedFile(t *testing.T) {
	seed := filepath.Join(t.TempDir(), "seed.json")
	learnWriteJSON(t, seed, map[string]any{
		"version":          1,
		"learning_started": "2024-01-01T00:00:00Z",
		"admin_sources":    []map[string]any{{"addr": "198.51.100.7", "users": []string{"root"}}},
		"destinations":     []map[string]any{{"proto": "udp", "addr": "192.0.2.53", "port": 53}},
		"traffic":          []map[string]any{{"interface": "eth0", "direction": "rx", "hour": 10, "mean": 5e6, "dev": 1e6, "samples": 100}},
	})
	tests := map[string]struct {
		endsLearning bool
		wantLearning bool
	}{
		"seed learned, period still runs": {wantLearning: true},
		"seed ends learning":              {endsLearning: true, wantLearning: false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := LearningConfig{SeedFile: seed, SeedEndsLearning: tc.endsLearning}
			l := learnOpen(t, dir, cfg, clocktest.NewFake(learnT0))
			if !l.AdminSources().Known(netip.MustParseAddr("198.51.100.7")) {
				t.Error("seeded admin source unknown")
			}
			if !l.Destinations().Known(Destination{Addr: netip.MustParseAddr("192.0.2.53"), Port: 53, Proto: "udp"}, learnT0) {
				t.Error("seeded destination unknown")
			}
			if _, ok := l.Traffic().Get(ProfileKey{Interface: "eth0", Direction: DirectionRX, Hour: 10}); !ok {
				t.Error("seeded traffic profile missing")
			}
			if !l.LearningStarted().Equal(learnT0) {
				t.Errorf("learning started %v, want now (%v), not the seed's time", l.LearningStarted(), learnT0)
			}
			if got := l.Learning(learnT0); got != tc.wantLearning {
				t.Errorf("Learning = %v, want %v", got, tc.wantLearning)
			}
		})
	}
}

func TestSeedIsOnlyReadWithoutState(t *testing.T) {
	dir := t.TempDir()
	clk := clocktest.NewFake(learnT0)
	l := learnOpen(t, dir, LearningConfig{}, clk)
	if err := l.Save(); err != nil {
		t.Fatal(err)
	}
	// The seed named later does not exist: with a state present it is not
	// even opened.
	if _, err := OpenLearned(dir, LearningConfig{SeedFile: filepath.Join(dir, "missing.json")}, clk); err != nil {
		t.Fatalf("OpenLearned with state and a missing seed: %v", err)
	}
}

func TestOpenLearnedErrors(t *testing.T) {
	tests := map[string]struct {
		state, seed string // file contents; "" = no file
		cfg         LearningConfig
		want        string
	}{
		"corrupt state":   {state: "{not json", want: "decoding"},
		"future version":  {state: `{"version": 9}`, want: "version 9"},
		"bad destination": {state: `{"version":1,"destinations":[{"proto":"tcp"}]}`, want: "destinations[0]"},
		"bad hour":        {state: `{"version":1,"traffic":[{"interface":"eth0","direction":"rx","hour":168}]}`, want: "traffic[0]"},
		"missing seed":    {cfg: LearningConfig{SeedFile: "/nonexistent/seed.json"}, want: "sensors.learning.seed_file"},
		"negative period": {cfg: LearningConfig{Period: -time.Hour}, want: "sensors.learning.period"},
		"corrupt seed":    {seed: "[]", want: "sensors.learning.seed_file"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.state != "" {
				learnWriteFile(t, filepath.Join(dir, LearnedFile), tc.state)
			}
			if tc.seed != "" {
				tc.cfg.SeedFile = filepath.Join(dir, "seed.json")
				learnWriteFile(t, tc.cfg.SeedFile, tc.seed)
			}
			_, err := OpenLearned(dir, tc.cfg, clocktest.NewFake(learnT0))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("OpenLearned error = %v, want one naming %q", err, tc.want)
			}
		})
	}
}

func TestObserveReportsNewOnce(t *testing.T) {
	l := learnOpen(t, t.TempDir(), LearningConfig{}, clocktest.NewFake(learnT0))
	a := netip.MustParseAddr("::ffff:203.0.113.9") // the same address as 203.0.113.9
	var wg sync.WaitGroup
	news := make(chan bool, 32)
	for i := range 32 {
		wg.Go(func() { news <- l.AdminSources().Observe(a, []string{"root", "alice"}[i%2], learnT0) })
	}
	wg.Wait()
	close(news)
	count := 0
	for n := range news {
		if n {
			count++
		}
	}
	if count != 1 {
		t.Errorf("32 concurrent first logins reported new %d times, want 1", count)
	}
	if !l.AdminSources().Known(netip.MustParseAddr("203.0.113.9")) {
		t.Error("IPv4-mapped address not known as its IPv4 form")
	}
}

func TestDestinationsBound(t *testing.T) {
	l := learnOpen(t, t.TempDir(), LearningConfig{MaxDestinations: 20}, clocktest.NewFake(learnT0))
	d := func(i int) Destination {
		return Destination{Addr: netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), Port: 443, Proto: "tcp"}
	}
	for i := range 21 {
		if !l.Destinations().Observe(d(i), learnT0.Add(time.Duration(i)*time.Second)) {
			t.Fatalf("destination %d not new", i)
		}
	}
	if n := l.Destinations().Len(); n != 18 {
		t.Errorf("after passing the bound of 20: %d destinations, want 18 (a tenth forgotten)", n)
	}
	if l.Destinations().Known(d(0), learnT0) || l.Destinations().Known(d(2), learnT0) {
		t.Error("the least recently seen destinations were kept")
	}
	if !l.Destinations().Known(d(20), learnT0) {
		t.Error("the newest destination was forgotten")
	}
}

func TestProfileNext(t *testing.T) {
	tests := map[string]struct {
		samples  []float64
		alpha    float64
		wantMean float64
		wantDev  float64
	}{
		"first sample sets the mean":   {samples: []float64{100}, alpha: 0.1, wantMean: 100, wantDev: 0},
		"steady rate has no deviation": {samples: []float64{100, 100, 100}, alpha: 0.1, wantMean: 100, wantDev: 0},
		// dev moves towards |200-100| = 100 by alpha before the mean moves.
		"jump": {samples: []float64{100, 200}, alpha: 0.5, wantMean: 150, wantDev: 50},
		"back": {samples: []float64{100, 200, 100}, alpha: 0.5, wantMean: 125, wantDev: 50},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var p ProfileStats
			for _, x := range tc.samples {
				p = p.Next(x, tc.alpha, learnT0)
			}
			if math.Abs(p.Mean-tc.wantMean) > 1e-9 || math.Abs(p.Dev-tc.wantDev) > 1e-9 {
				t.Errorf("mean, dev = %v, %v; want %v, %v", p.Mean, p.Dev, tc.wantMean, tc.wantDev)
			}
			if p.Samples != int64(len(tc.samples)) {
				t.Errorf("samples = %d, want %d", p.Samples, len(tc.samples))
			}
		})
	}
}

func TestTrafficUpdateReturnsBefore(t *testing.T) {
	l := learnOpen(t, t.TempDir(), LearningConfig{}, clocktest.NewFake(learnT0))
	k := ProfileKey{Interface: "eth0", Direction: DirectionRX, Hour: HourOfWeek(learnT0)}
	if k.Hour != 24+10 {
		t.Fatalf("HourOfWeek(Monday 10:00) = %d, want 34", k.Hour)
	}
	if before := l.Traffic().Update(k, 10, 0.5, learnT0); before.Samples != 0 {
		t.Errorf("first update's before = %+v, want empty", before)
	}
	if before := l.Traffic().Update(k, 20, 0.5, learnT0); before.Mean != 10 {
		t.Errorf("second update's before mean = %v, want 10", before.Mean)
	}
}

func TestPersistSavesOnTickAndAtEnd(t *testing.T) {
	dir := t.TempDir()
	clk := clocktest.NewFake(learnT0)
	tick := clocktest.NewFake(learnT0)
	l := learnOpen(t, dir, LearningConfig{SaveInterval: time.Minute}, clk)
	ctx, cancel := sensorsContext(t)
	done := make(chan error, 1)
	go func() { done <- l.Persist(ctx, tick) }()
	path := filepath.Join(dir, LearnedFile)
	sensorsPump(t, tick, time.Minute, func() bool { _, err := os.Stat(path); return err == nil })

	l.AdminSources().Observe(netip.MustParseAddr("192.0.2.44"), "root", learnT0)
	cancel()
	if err := <-done; err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("Persist = %v, want the context's end", err)
	}
	again := learnOpen(t, dir, LearningConfig{}, clk)
	if !again.AdminSources().Known(netip.MustParseAddr("192.0.2.44")) {
		t.Error("the change made just before the end was not saved")
	}
}

func learnWriteJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	learnWriteFile(t, path, string(b))
}

func learnWriteFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// An export of one gateway seeds another.
func TestExportSeedsAnother(t *testing.T) {
	clk := clocktest.NewFake(learnT0)
	a := learnOpen(t, t.TempDir(), LearningConfig{}, clk)
	a.Destinations().Observe(Destination{Addr: netip.MustParseAddr("192.0.2.53"), Port: 53, Proto: "udp"}, learnT0)
	data, err := a.Export()
	if err != nil {
		t.Fatal(err)
	}
	seed := filepath.Join(t.TempDir(), "seed.json")
	learnWriteFile(t, seed, string(data))
	b := learnOpen(t, t.TempDir(), LearningConfig{SeedFile: seed, SeedEndsLearning: true}, clk)
	if !b.Destinations().Known(Destination{Addr: netip.MustParseAddr("192.0.2.53"), Port: 53, Proto: "udp"}, learnT0) || b.Learning(learnT0) {
		t.Error("the exported state did not seed the other gateway")
	}
}
