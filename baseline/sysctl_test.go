package baseline

import (
	"fmt"
	"slices"
	"testing"
)

func TestNormaliseSysctlKey(t *testing.T) {
	tests := map[string]string{
		"net.ipv4.ip_forward":                 "net/ipv4/ip_forward",
		"net/ipv4/ip_forward":                 "net/ipv4/ip_forward",
		"  net.ipv4.ip_forward  ":             "net/ipv4/ip_forward",
		"net.ipv4.conf.eth0/100.rp_filter":    "net/ipv4/conf/eth0.100/rp_filter",
		"net/ipv4/conf/eth0.100/rp_filter":    "net/ipv4/conf/eth0.100/rp_filter",
		"net.ipv4.conf.*.rp_filter":           "net/ipv4/conf/*/rp_filter",
		"net//ipv4///ip_forward":              "net/ipv4/ip_forward",
		"kernel":                              "kernel",
		"/net.ipv4.conf.all.rp_filter":        "net.ipv4.conf.all.rp_filter", // first separator is a slash: nothing swapped
		"/proc/sys/net/ipv4/ip_forward":       "proc/sys/net/ipv4/ip_forward",
		"net/./ipv4/ip_forward":               "net/ipv4/ip_forward",
		"net.ipv4.conf.enp3s0/200.forwarding": "net/ipv4/conf/enp3s0.200/forwarding",
		"net/ipv4/conf/enp3s0.200/forwarding": "net/ipv4/conf/enp3s0.200/forwarding",
	}
	for in, want := range tests {
		t.Run(in, func(t *testing.T) {
			if got := normaliseSysctlKey(in); got != want {
				t.Errorf("normaliseSysctlKey(%q) = %q, want %q", in, got, want)
			}
		})
	}
}

// TestSysctlBootFiles checks which files systemd-sysctl reads, in which
// order, and which it skips, on a Debian 12 tree.
func TestSysctlBootFiles(t *testing.T) {
	type file struct{ path, content string }
	type link struct{ target, path string }
	tests := map[string]struct {
		files []file
		links []link
		want  []string // "path[ -> target][ (skipped)]"
	}{
		"by name across directories, /etc wins a name": {
			files: []file{
				{"/usr/lib/sysctl.d/50-pid-max.conf", "kernel.pid_max = 4194304\n"},
				{"/usr/lib/sysctl.d/10-a.conf", "a = 1\n"},
				{"/etc/sysctl.d/10-a.conf", "a = 2\n"},
				{"/run/sysctl.d/30-run.conf", "a = 3\n"},
				{"/usr/local/lib/sysctl.d/20-local.conf", "a = 4\n"},
				{"/lib/sysctl.d/05-lib.conf", "a = 5\n"},
				{"/etc/sysctl.d/README", "not a .conf\n"},
				{"/etc/sysctl.d/.hidden.conf", "a = 6\n"},
			},
			want: []string{"/lib/sysctl.d/05-lib.conf", "/etc/sysctl.d/10-a.conf", "/usr/local/lib/sysctl.d/20-local.conf", "/run/sysctl.d/30-run.conf", "/usr/lib/sysctl.d/50-pid-max.conf"},
		},
		"/run wins over /usr/local/lib and /usr/lib": {
			files: []file{
				{"/usr/lib/sysctl.d/10-a.conf", "a = 1\n"},
				{"/usr/local/lib/sysctl.d/10-a.conf", "a = 2\n"},
				{"/run/sysctl.d/10-a.conf", "a = 3\n"},
			},
			want: []string{"/run/sysctl.d/10-a.conf"},
		},
		"sysctl.conf through Debian's link, in name order": {
			files: []file{{"/etc/sysctl.conf", "a = 1\n"}, {"/usr/lib/sysctl.d/99-zz.conf", "a = 2\n"}},
			links: []link{{"../sysctl.conf", "/etc/sysctl.d/99-sysctl.conf"}},
			want:  []string{"/etc/sysctl.d/99-sysctl.conf -> /etc/sysctl.conf", "/usr/lib/sysctl.d/99-zz.conf"},
		},
		"sysctl.conf without the link is not read": {
			files: []file{{"/etc/sysctl.conf", "a = 1\n"}},
			want:  nil,
		},
		"masked by /dev/null, absent from the image": {
			files: []file{{"/usr/lib/sysctl.d/10-a.conf", "a = 1\n"}},
			links: []link{{"/dev/null", "/etc/sysctl.d/10-a.conf"}},
			want:  []string{"/etc/sysctl.d/10-a.conf -> /dev/null (masked)"},
		},
		"masked by an empty file": {
			files: []file{{"/usr/lib/sysctl.d/10-a.conf", "a = 1\n"}, {"/etc/sysctl.d/10-a.conf", ""}},
			want:  []string{"/etc/sysctl.d/10-a.conf (masked)"},
		},
		"dangling link skipped": {
			links: []link{{"../sysctl.conf", "/etc/sysctl.d/99-sysctl.conf"}},
			want:  []string{"/etc/sysctl.d/99-sysctl.conf -> /etc/sysctl.conf (target missing)"},
		},
		"a directory link is followed inside the root": {
			files: []file{{"/srv/sysctl/10-a.conf", "a = 1\n"}},
			links: []link{{"/srv/sysctl", "/etc/sysctl.d"}},
			want:  []string{"/etc/sysctl.d/10-a.conf -> /srv/sysctl/10-a.conf"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := &gatewayFixture{t: t, root: t.TempDir()}
			for _, fl := range tc.files {
				f.write(fl.path, fl.content)
			}
			for _, l := range tc.links {
				f.symlink(l.target, l.path)
			}
			b, err := loadSysctlBoot(f.root)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, bf := range b.Files {
				s := bf.Path
				if bf.Target != "" {
					s += " -> " + bf.Target
				}
				if bf.Skipped != "" {
					s += " (" + bf.Skipped + ")"
				}
				got = append(got, s)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("files read:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestSysctlBootValues checks the value systemd-sysctl writes to one key.
func TestSysctlBootValues(t *testing.T) {
	tests := map[string]struct {
		files map[string]string
		key   string
		want  string // "value @ source", "unset", "excluded @ source"
	}{
		"last assignment wins":          {map[string]string{"/etc/sysctl.d/10-a.conf": "k.x = 1\n", "/usr/lib/sysctl.d/20-b.conf": "k.x = 2\n"}, "k/x", "2 @ /usr/lib/sysctl.d/20-b.conf:1"},
		"same value keeps the first":    {map[string]string{"/etc/sysctl.d/10-a.conf": "k.x = 1\n", "/usr/lib/sysctl.d/20-b.conf": "k.x=1\n"}, "k/x", "1 @ /etc/sysctl.d/10-a.conf:1"},
		"value whitespace stripped":     {map[string]string{"/etc/sysctl.d/10-a.conf": "\t k.x\t=\t4096  87380 \n"}, "k/x", "4096  87380 @ /etc/sysctl.d/10-a.conf:1"},
		"comments":                      {map[string]string{"/etc/sysctl.d/10-a.conf": "# k.x = 1\n ; k.x = 2\nk.x = 3\n"}, "k/x", "3 @ /etc/sysctl.d/10-a.conf:3"},
		"not an assignment is ignored":  {map[string]string{"/etc/sysctl.d/10-a.conf": "k.x = 3\nk.x\n"}, "k/x", "3 @ /etc/sysctl.d/10-a.conf:1"},
		"ignore-errors prefix":          {map[string]string{"/etc/sysctl.d/10-a.conf": "-k.x = 3\n"}, "k/x", "3 @ /etc/sysctl.d/10-a.conf:1"},
		"exclusion cancels":             {map[string]string{"/etc/sysctl.d/10-a.conf": "k.x = 3\n-k.x\n"}, "k/x", "excluded @ /etc/sysctl.d/10-a.conf:2"},
		"assignment after exclusion":    {map[string]string{"/etc/sysctl.d/10-a.conf": "-k.x\n", "/etc/sysctl.d/20-a.conf": "k.x = 5\n"}, "k/x", "5 @ /etc/sysctl.d/20-a.conf:1"},
		"explicit beats a later glob":   {map[string]string{"/etc/sysctl.d/10-a.conf": "k.a.x = 1\n", "/etc/sysctl.d/20-a.conf": "k.*.x = 2\n"}, "k/a/x", "1 @ /etc/sysctl.d/10-a.conf:1"},
		"glob fills the rest":           {map[string]string{"/etc/sysctl.d/10-a.conf": "k.a.x = 1\n", "/etc/sysctl.d/20-a.conf": "k.*.x = 2\n"}, "k/b/x", "2 @ /etc/sysctl.d/20-a.conf:1"},
		"glob does not cross a slash":   {map[string]string{"/etc/sysctl.d/10-a.conf": "k.* = 2\n"}, "k/b/x", "unset"},
		"glob skips an excluded key":    {map[string]string{"/etc/sysctl.d/10-a.conf": "k.*.x = 2\n-k.b.x\n"}, "k/b/x", "excluded @ /etc/sysctl.d/10-a.conf:2"},
		"later glob wins":               {map[string]string{"/etc/sysctl.d/10-a.conf": "k.*.x = 2\n", "/etc/sysctl.d/20-a.conf": "k.[ab].x = 3\n"}, "k/b/x", "3 @ /etc/sysctl.d/20-a.conf:1"},
		"restated glob keeps its place": {map[string]string{"/etc/sysctl.d/10-a.conf": "k.*.x = 2\n", "/etc/sysctl.d/20-a.conf": "k.[ab].x = 3\n", "/etc/sysctl.d/30-a.conf": "k.*.x = 2\n"}, "k/b/x", "3 @ /etc/sysctl.d/20-a.conf:1"},
		"changed glob moves last":       {map[string]string{"/etc/sysctl.d/10-a.conf": "k.*.x = 2\n", "/etc/sysctl.d/20-a.conf": "k.[ab].x = 3\n", "/etc/sysctl.d/30-a.conf": "k.*.x = 4\n"}, "k/b/x", "4 @ /etc/sysctl.d/30-a.conf:1"},
		"excluded glob applies to none": {map[string]string{"/etc/sysctl.d/10-a.conf": "k.*.x = 2\n-k.*.x\n"}, "k/b/x", "unset"},
		"nothing":                       {map[string]string{"/etc/sysctl.d/10-a.conf": "other = 1\n"}, "k/x", "unset"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := &gatewayFixture{t: t, root: t.TempDir()}
			for p, c := range tc.files {
				f.write(p, c)
			}
			b, err := loadSysctlBoot(f.root)
			if err != nil {
				t.Fatal(err)
			}
			v := b.lookup(tc.key)
			got := "unset"
			switch {
			case v.Set:
				got = fmt.Sprintf("%s @ %s", v.By.Value, v.By.source())
			case v.By != nil:
				got = "excluded @ " + v.By.source()
			}
			if got != tc.want {
				t.Errorf("lookup(%q) = %q, want %q", tc.key, got, tc.want)
			}
		})
	}
}
