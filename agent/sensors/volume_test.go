package sensors

import (
	"encoding/json"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	vnl "github.com/vishvananda/netlink"

	"github.com/warden-ir/warden/agent/wire"
	"github.com/warden-ir/warden/internal/clock/clocktest"
)

// volumeCell is one profile cell of a seed file.
type volumeCell struct {
	series, dir string
	hour        int
	mean, dev   float64
	samples     int64
}

// volumeLearned opens a learned state seeded, through a seed file as an
// operator would, with cells; learning is over unless learning is set.
func volumeLearned(t *testing.T, clk *clocktest.Fake, learning bool, cells ...volumeCell) *Learned {
	t.Helper()
	traffic := []map[string]any{}
	for _, c := range cells {
		traffic = append(traffic, map[string]any{
			"interface": c.series, "direction": c.dir, "hour": c.hour,
			"mean": c.mean, "dev": c.dev, "samples": c.samples, "updated": clk.Now().Add(-7 * 24 * time.Hour),
		})
	}
	seed, err := json.Marshal(map[string]any{
		"version": 1, "learning_started": clk.Now().Add(-8 * 24 * time.Hour),
		"admin_sources": []any{}, "destinations": []any{}, "traffic": traffic,
	})
	if err != nil {
		t.Fatal(err)
	}
	seedFile := filepath.Join(t.TempDir(), "seed.json")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := OpenLearned(t.TempDir(), LearningConfig{SeedFile: seedFile, SeedEndsLearning: !learning}, clk)
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Learning(clk.Now()); got != learning {
		t.Fatalf("Learning() = %v after seeding, want %v", got, learning)
	}
	return l
}

// hourT0 is connT0's hour of the week in UTC (Tuesday 10:00).
var hourT0 = HourOfWeek(connT0)

func TestVolumeJudgeRate(t *testing.T) {
	rules, err := VolumeConfig{}.WithDefaults().compile()
	if err != nil {
		t.Fatal(err)
	}
	mature := func(mean, dev float64) ProfileStats { return ProfileStats{Mean: mean, Dev: dev, Samples: 720} }
	tests := map[string]struct {
		rate       float64
		cell       ProfileStats
		spike      bool
		threshold  float64
		wantFactor float64
	}{
		"ten times the mean":                    {rate: 1e6, cell: mature(1e5, 1e4), spike: true, threshold: 5e5, wantFactor: 10},
		"four times the mean":                   {rate: 4e5, cell: mature(1e5, 1e4), threshold: 5e5, wantFactor: 4},
		"a noisy profile raises the threshold":  {rate: 8e5, cell: mature(1e5, 2e5), threshold: 9e5, wantFactor: 8},
		"above a noisy profile's threshold":     {rate: 1e6, cell: mature(1e5, 2e5), spike: true, threshold: 9e5, wantFactor: 10},
		"below the minimum rate":                {rate: 1e5, cell: mature(1e3, 1e2), threshold: 5e3, wantFactor: 100},
		"a profile cell with too few samples":   {rate: 1e7, cell: ProfileStats{Mean: 1e5, Dev: 1e4, Samples: 59}, threshold: 5e5, wantFactor: 100},
		"an idle link wakes up":                 {rate: 2e5, cell: mature(0, 0), spike: true, threshold: 0, wantFactor: 2e5},
		"exactly at the threshold is not above": {rate: 5e5, cell: mature(1e5, 0), threshold: 5e5, wantFactor: 5},
		"no profile at all":                     {rate: 1e9, cell: ProfileStats{}, threshold: 0, wantFactor: 1e9},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			v := judgeRate(tc.rate, tc.cell, rules)
			if v.spike != tc.spike || v.threshold != tc.threshold || math.Abs(v.factor-tc.wantFactor) > 1e-9 {
				t.Fatalf("judgeRate(%g) = %+v, want spike %v threshold %g factor %g", tc.rate, v, tc.spike, tc.threshold, tc.wantFactor)
			}
		})
	}
}

// eth0 counters after n steps of 5s at the learned 100 kB/s, plus extra.
func eth0(rx, tx uint64) []volumeCounter {
	return []volumeCounter{{series: "eth0", device: "eth0", rx: rx, tx: tx}}
}

func TestVolumeObserve(t *testing.T) {
	const step = 5 * time.Second
	normal := uint64(500_000) // 100 kB/s over 5s, the learned mean
	profile := []volumeCell{
		{series: "eth0", dir: "rx", hour: hourT0, mean: 1e5, dev: 1e4, samples: 720},
		{series: "eth0", dir: "tx", hour: hourT0, mean: 1e5, dev: 1e4, samples: 720},
	}
	tokyo, err := time.LoadLocation("Asia/Tokyo")
	if err != nil {
		t.Skipf("no time zone database: %v", err)
	}
	tokyoHour := HourOfWeek(connT0.In(tokyo))

	type want struct{ series, dir, severity, factor string }
	tests := map[string]struct {
		cfg      VolumeConfig
		cells    []volumeCell
		learning bool
		samples  [][]volumeCounter // one every 5s
		want     []want
	}{
		"steady traffic": {
			samples: [][]volumeCounter{eth0(0, 0), eth0(normal, normal), eth0(2*normal, 2*normal)},
		},
		"20× the learned rate received is high": {
			samples: [][]volumeCounter{eth0(0, 0), eth0(20*normal, normal)},
			want:    []want{{"eth0", "rx", "high", "20.0"}},
		},
		"10× the learned rate sent is medium": {
			samples: [][]volumeCounter{eth0(0, 0), eth0(normal, 10*normal)},
			want:    []want{{"eth0", "tx", "medium", "10.0"}},
		},
		"a spike lasting three samples is reported once": {
			samples: [][]volumeCounter{eth0(0, 0), eth0(20*normal, 0), eth0(40*normal, 0), eth0(60*normal, 0)},
			want:    []want{{"eth0", "rx", "high", "20.0"}},
		},
		"no spikes during learning": {
			learning: true,
			samples:  [][]volumeCounter{eth0(0, 0), eth0(20*normal, normal)},
		},
		"below the minimum rate": {
			cfg:     VolumeConfig{MinRate: 5e6},
			samples: [][]volumeCounter{eth0(0, 0), eth0(20*normal, normal)},
		},
		"a counter that went back was reset": {
			samples: [][]volumeCounter{eth0(100*normal, 0), eth0(normal, 0)},
		},
		"an excluded interface": {
			cfg:     VolumeConfig{Exclude: []string{"eth*"}},
			samples: [][]volumeCounter{eth0(0, 0), eth0(20*normal, 0)},
		},
		"only the listed interfaces": {
			cfg:     VolumeConfig{Interfaces: []string{"wg*"}},
			samples: [][]volumeCounter{eth0(0, 0), eth0(20*normal, 0)},
		},
		"an interface without a profile": {
			samples: [][]volumeCounter{
				{{series: "eth1", device: "eth1"}},
				{{series: "eth1", device: "eth1", rx: 20 * normal}},
			},
		},
		"an IPsec peer, which no pattern filters": {
			cfg:   VolumeConfig{Interfaces: []string{"wg*"}},
			cells: []volumeCell{{series: "ipsec/203.0.113.2", dir: "tx", hour: hourT0, mean: 1e5, dev: 1e4, samples: 720}},
			samples: [][]volumeCounter{
				{{series: "ipsec/203.0.113.2"}},
				{{series: "ipsec/203.0.113.2", tx: 30 * normal}},
			},
			want: []want{{"ipsec/203.0.113.2", "tx", "high", "30.0"}},
		},
		"hours of the week count in the site's time zone": {
			cfg:     VolumeConfig{TimeZone: "Asia/Tokyo"},
			cells:   []volumeCell{{series: "eth0", dir: "rx", hour: tokyoHour, mean: 1e5, dev: 1e4, samples: 720}},
			samples: [][]volumeCounter{eth0(0, 0), eth0(20*normal, 0)},
			want:    []want{{"eth0", "rx", "high", "20.0"}},
		},
		"a profile of another hour is not this hour's": {
			cfg:     VolumeConfig{TimeZone: "Asia/Tokyo"},
			cells:   profile, // UTC hours
			samples: [][]volumeCounter{eth0(0, 0), eth0(20*normal, 20*normal)},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			clk := clocktest.NewFake(connT0)
			cells := tc.cells
			if cells == nil {
				cells = profile
			}
			learned := volumeLearned(t, clk, tc.learning, cells...)
			w, err := newVolumeWatcher(tc.cfg, VolumeDeps{Learned: learned, Clock: clk}, nil)
			if err != nil {
				t.Fatal(err)
			}
			var got []wire.Finding
			for i, s := range tc.samples {
				if i > 0 {
					clk.Advance(step)
				}
				got = append(got, w.observe(clk.Now(), s)...)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d findings, want %d: %+v", len(got), len(tc.want), got)
			}
			for i, f := range got {
				wf := tc.want[i]
				if f.Kind != KindTrafficSpike || f.Sensor != "volume" || f.Key != "traffic_spike/"+wf.series+"/"+wf.dir {
					t.Errorf("finding %d: kind %s sensor %s key %s", i, f.Kind, f.Sensor, f.Key)
				}
				if f.Labels["interface"] != wf.series || f.Labels["direction"] != wf.dir || f.Severity != wf.severity || f.Labels["factor"] != wf.factor {
					t.Errorf("finding %d: interface %s direction %s severity %s factor %s; want %+v",
						i, f.Labels["interface"], f.Labels["direction"], f.Severity, f.Labels["factor"], wf)
				}
				if len(f.Evidence) != 2 || !strings.Contains(f.Evidence[0], wf.series+" "+wf.dir+"_bytes") || !strings.Contains(f.Evidence[1], "mean 100000 B/s") {
					t.Errorf("finding %d: evidence %q does not show the counters and the profile", i, f.Evidence)
				}
				if f.Confidence != DefaultVolumeConfidence {
					t.Errorf("finding %d: confidence %g", i, f.Confidence)
				}
			}
		})
	}
}

// TestVolumeLearning checks what the profile learns: every sample, in its
// hour of the week, and a spike only up to the threshold.
func TestVolumeLearning(t *testing.T) {
	const step = 5 * time.Second
	rxKey := ProfileKey{Interface: "eth0", Direction: "rx", Hour: hourT0}
	txKey := ProfileKey{Interface: "eth0", Direction: "tx", Hour: hourT0}
	for name, learning := range map[string]bool{"during learning": true, "after learning": false} {
		t.Run(name, func(t *testing.T) {
			clk := clocktest.NewFake(connT0)
			learned := volumeLearned(t, clk, learning,
				volumeCell{series: "eth0", dir: "rx", hour: hourT0, mean: 1e5, dev: 1e4, samples: 720})
			w, err := newVolumeWatcher(VolumeConfig{}, VolumeDeps{Learned: learned, Clock: clk}, nil)
			if err != nil {
				t.Fatal(err)
			}
			before, _ := learned.Traffic().Get(rxKey)
			w.observe(clk.Now(), eth0(0, 0))
			clk.Advance(step)
			w.observe(clk.Now(), eth0(50_000_000, 1_000_000)) // rx 10 MB/s, tx 200 kB/s

			alpha := 1 - math.Exp2(-step.Seconds()/DefaultVolumeHalfLife.Seconds())
			wantRX := before.Next(5e5, alpha, clk.Now()) // the threshold, not 10 MB/s
			if got, _ := learned.Traffic().Get(rxKey); math.Abs(got.Mean-wantRX.Mean) > 1e-6 || got.Samples != 721 {
				t.Errorf("rx cell = %+v, want mean %g (learned up to the threshold) after 721 samples", got, wantRX.Mean)
			}
			if got, ok := learned.Traffic().Get(txKey); !ok || got.Mean != 2e5 || got.Samples != 1 {
				t.Errorf("tx cell = %+v (found %v), want a first sample of 200000 B/s", got, ok)
			}
		})
	}
}

func TestVolumeConfigValidate(t *testing.T) {
	tests := map[string]struct {
		cfg  VolumeConfig
		want string // "" for valid
	}{
		"defaults":    {},
		"full":        {cfg: VolumeConfig{Interval: 2 * time.Second, Sources: []string{"interfaces", "ipsec", "wireguard_peers"}, Interfaces: []string{"wg*", "eth0"}, Exclude: []string{"docker*"}, TimeZone: "Asia/Tokyo", Factor: 3, HighFactor: 3}},
		"interval":    {cfg: VolumeConfig{Interval: 100 * time.Millisecond}, want: "sensors.volume.interval"},
		"source":      {cfg: VolumeConfig{Sources: []string{"interfaces", "netflow"}}, want: "sensors.volume.sources[1]"},
		"pattern":     {cfg: VolumeConfig{Exclude: []string{"eth["}}, want: "sensors.volume.exclude[0]"},
		"time zone":   {cfg: VolumeConfig{TimeZone: "Mars/Olympus"}, want: "sensors.volume.time_zone"},
		"half-life":   {cfg: VolumeConfig{HalfLife: time.Second}, want: "sensors.volume.half_life"},
		"factor":      {cfg: VolumeConfig{Factor: 0.5}, want: "sensors.volume.factor"},
		"deviations":  {cfg: VolumeConfig{Deviations: -1}, want: "sensors.volume.deviations"},
		"min rate":    {cfg: VolumeConfig{MinRate: -1}, want: "sensors.volume.min_rate_bytes_per_second"},
		"min samples": {cfg: VolumeConfig{MinSamples: -1}, want: "sensors.volume.min_samples"},
		"high factor": {cfg: VolumeConfig{Factor: 10, HighFactor: 5}, want: "sensors.volume.high_factor"},
		"confidence":  {cfg: VolumeConfig{Confidence: 2}, want: "sensors.volume.confidence"},
		"repeat":      {cfg: VolumeConfig{RepeatAfter: -time.Minute}, want: "sensors.volume.repeat_after"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			sensorsCheckValidate(t, tc.cfg.WithDefaults().Validate(), tc.want)
		})
	}
}

func TestVolumeCounters(t *testing.T) {
	t.Run("links, without loopback", func(t *testing.T) {
		links := []vnl.Link{
			&vnl.Device{LinkAttrs: vnl.LinkAttrs{Name: "lo", Flags: net.FlagLoopback | net.FlagUp, Statistics: &vnl.LinkStatistics{RxBytes: 9, TxBytes: 9}}},
			&vnl.Veth{LinkAttrs: vnl.LinkAttrs{Name: "eth0", Statistics: &vnl.LinkStatistics{RxBytes: 100, TxBytes: 200}}},
			&vnl.Wireguard{LinkAttrs: vnl.LinkAttrs{Name: "wg0", Statistics: &vnl.LinkStatistics{RxBytes: 3, TxBytes: 4}}},
			&vnl.Device{LinkAttrs: vnl.LinkAttrs{Name: "nostats"}},
		}
		got := linkCounters(links)
		want := []volumeCounter{{series: "eth0", device: "eth0", rx: 100, tx: 200}, {series: "wg0", device: "wg0", rx: 3, tx: 4}}
		if !equalCounters(got, want) {
			t.Fatalf("linkCounters = %+v, want %+v", got, want)
		}
	})
	t.Run("IPsec SAs summed per peer", func(t *testing.T) {
		local := []netip.Addr{netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("2001:db8::1")}
		sa := func(src, dst string, bytes uint64) vnl.XfrmState {
			return vnl.XfrmState{Src: net.ParseIP(src), Dst: net.ParseIP(dst), Proto: vnl.XFRM_PROTO_ESP, Statistics: vnl.XfrmStateStats{Bytes: bytes}}
		}
		states := []vnl.XfrmState{
			sa("198.51.100.1", "203.0.113.2", 1000), // out, old SA
			sa("198.51.100.1", "203.0.113.2", 50),   // out, rekeyed SA
			sa("203.0.113.2", "198.51.100.1", 700),  // in
			sa("2001:db8::9", "2001:db8::1", 5),     // in from an IPv6 peer
			sa("192.0.2.1", "192.0.2.2", 99999),     // not ours
		}
		got := ipsecCounters(states, local)
		want := []volumeCounter{{series: "ipsec/203.0.113.2", rx: 700, tx: 1050}, {series: "ipsec/2001:db8::9", rx: 5}}
		if !equalCounters(got, want) {
			t.Fatalf("ipsecCounters = %+v, want %+v", got, want)
		}
	})
}

func equalCounters(a, b []volumeCounter) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// fakeCounters is a counterReader the test sets by hand.
type fakeCounters struct {
	mu       sync.Mutex
	counters []volumeCounter
	closed   bool
}

func (f *fakeCounters) set(c []volumeCounter) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.counters = c
}

func (f *fakeCounters) readCounters() ([]volumeCounter, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]volumeCounter(nil), f.counters...), nil
}

func (f *fakeCounters) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

// volumeSampled hooks w so that the test can wait for each sample.
func volumeSampled(w *volumeWatcher) <-chan struct{} {
	ch := make(chan struct{}, 16)
	w.sampled = func() { ch <- struct{}{} }
	return ch
}

func awaitSample(t *testing.T, sampled <-chan struct{}) {
	t.Helper()
	select {
	case <-sampled:
	case <-time.After(10 * time.Second):
		t.Fatal("no sample within 10s")
	}
}

// TestVolumeRun drives the sampling loop with the fake clock: a sample at
// start, the next one when the interval has passed, and the spike between
// them emitted.
func TestVolumeRun(t *testing.T) {
	clk := clocktest.NewFake(connT0)
	learned := volumeLearned(t, clk, false, volumeCell{series: "eth0", dir: "rx", hour: hourT0, mean: 1e5, dev: 1e4, samples: 720})
	src := &fakeCounters{counters: eth0(0, 0)}
	w, err := newVolumeWatcher(VolumeConfig{Interval: 10 * time.Second}, VolumeDeps{Learned: learned, Clock: clk}, func() (counterReader, error) { return src, nil })
	if err != nil {
		t.Fatal(err)
	}
	sampled := volumeSampled(w)
	found := trafficRun(t, w)
	awaitSample(t, sampled)

	src.set(eth0(30_000_000, 0)) // 3 MB/s over 10s: 30×
	clk.Advance(9 * time.Second)
	select {
	case <-sampled:
		t.Fatal("sampled before the interval passed")
	default:
	}
	clk.Advance(time.Second)
	awaitSample(t, sampled)
	f := sensorsNext(t, found)
	if f.Labels["interface"] != "eth0" || f.Labels["direction"] != "rx" || f.Labels["factor"] != "30.0" || !f.ObservedAt.Equal(connT0.Add(10*time.Second)) {
		t.Fatalf("finding = %+v, want eth0 rx at 30× at t0+10s", f)
	}
}

// TestVolumeNamespace sends a burst from a LAN host through the gateway of
// a namespace lab and reads the gateway's real link counters over netlink.
func TestVolumeNamespace(t *testing.T) {
	lab := newTrafficLab(t)
	clk := clocktest.NewFake(connT0)
	learned := volumeLearned(t, clk, false,
		volumeCell{series: "lan0", dir: "rx", hour: hourT0, mean: 1000, dev: 100, samples: 720},
		volumeCell{series: "wan0", dir: "tx", hour: hourT0, mean: 1000, dev: 100, samples: 720},
	)
	// Resolve the neighbours first, so that the burst is not queued behind
	// ARP.
	trafficSendUDP(t, lab.lan, connAddrPort("203.0.113.30:9"), 1, 64)

	var w *volumeWatcher
	if err := lab.gw.Do(func() error {
		s, err := NewVolume(VolumeConfig{Enabled: true, MinRate: 100_000}, VolumeDeps{Learned: learned, Clock: clk})
		if err == nil {
			w = s.(*volumeWatcher)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	sampled := volumeSampled(w)
	found := trafficRun(t, w)
	awaitSample(t, sampled)

	trafficSendUDP(t, lab.lan, connAddrPort("203.0.113.30:9"), 1000, 1400) // ~1.4 MB: ~280 kB/s over 5s
	clk.Advance(DefaultVolumeInterval)
	awaitSample(t, sampled)

	want := map[string]bool{"lan0 rx": true, "wan0 tx": true}
	for len(want) > 0 {
		f := sensorsNext(t, found)
		k := f.Labels["interface"] + " " + f.Labels["direction"]
		if !want[k] {
			t.Fatalf("unexpected finding %s: %+v", k, f)
		}
		delete(want, k)
		if f.Severity != SeverityHigh { // ~280×
			t.Errorf("%s: severity %s, factor %s; want high", k, f.Severity, f.Labels["factor"])
		}
	}
}
