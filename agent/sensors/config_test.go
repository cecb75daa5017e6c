package sensors

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "s.yaml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c, err := LoadConfig(write(""))
	if err != nil || len(c.Enabled()) != 0 || c.Learning.Period != DefaultLearningPeriod {
		t.Errorf("an empty file: %+v, %v; want every sensor off, defaults filled", c.Enabled(), err)
	}
	c, err = LoadConfig(write("learning: {period: 48h}\nconn: {enabled: true}\nconfig: {enabled: true}\n"))
	if err != nil || !slices.Equal(c.Enabled(), []string{"conn", "config"}) || c.Learning.Period != 48*time.Hour {
		t.Errorf("conn and config: %v, %+v, %v", c.Enabled(), c.Learning, err)
	}
	for body, want := range map[string]string{
		"conn: {enabled: true, colour: red}\n": "colour",
		"learning: {period: -1h}\n":            "sensors.learning.period",
		"nonsense: [\n":                        "parsing the sensors file",
	} {
		if _, err := LoadConfig(write(body)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error naming %q", body, err, want)
		}
	}
	if _, err := LoadConfig(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("a missing sensors file is no error")
	}
}

func TestBuildMakesOnlyEnabledSensors(t *testing.T) {
	c := Config{Config: ConfigWatchConfig{Enabled: true, Root: t.TempDir(), Paths: []string{"/etc"}}}.WithDefaults()
	b, err := Build(c, t.TempDir(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range b.Sensors {
		names = append(names, s.Name())
	}
	if !slices.Equal(b.Enabled, []string{"config"}) || len(names) != 1 || b.Learned == nil {
		t.Errorf("built %v (enabled %v), want the config watcher only", names, b.Enabled)
	}
	sum := b.Learned.Summary(time.Now(), b.Enabled, 5)
	if !sum.Learning || !slices.Equal(sum.Enabled, []string{"config"}) || sum.LearningEnds.Sub(sum.LearningStarted) != DefaultLearningPeriod {
		t.Errorf("summary %+v", sum)
	}
}
