// Package pgtest starts a private PostgreSQL cluster for a test: Debian's
// postgresql package's initdb and postgres, run as an unprivileged user
// (nobody, when the test runs as root: initdb refuses root) in a temporary
// folder of its own, listening only on 127.0.0.1 at a free port, with a
// password, and stopped when the test ends. Nothing depends on a system
// service, and clusters of tests running side by side never meet.
//
// It owns starting and stopping clusters and making databases in them;
// only tests (store, daemon, e2e, benchmarks) import it.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver, for the cluster's own chores
)

// User is the cluster's superuser; tests connect as it.
const User = "warden"

// Options shape a cluster.
type Options struct {
	// Durable keeps PostgreSQL's fsync and synchronous commit on (for
	// benchmarks that report a durable figure). Off by default: tests
	// assert outcomes, not what survives a power cut, and the machine is
	// shared.
	Durable bool
}

// Cluster is one running private cluster.
type Cluster struct {
	// Dir is the cluster's folder (data, password file, log).
	Dir string
	// Port is its TCP port on 127.0.0.1.
	Port int
	// Password is the superuser's password; PasswordFile holds it.
	Password     string
	PasswordFile string

	proc *exec.Cmd
	log  string

	mu  sync.Mutex
	seq int
}

// binDir finds Debian's PostgreSQL server programs (the newest version).
func binDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(dirs) == 0 {
		return "", errors.New("PostgreSQL is not installed (Debian package postgresql; `make test` installs it)")
	}
	best, bestV := "", -1
	for _, d := range dirs {
		v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(d))))
		if v > bestV {
			best, bestV = filepath.Dir(d), v
		}
	}
	return best, nil
}

// Available says why no cluster can be started here ("" when one can).
func Available() string {
	if _, err := binDir(); err != nil {
		return err.Error()
	}
	return ""
}

// Start starts a cluster for tb and stops it when tb ends. It skips tb
// when PostgreSQL is not installed.
func Start(tb testing.TB, opt Options) *Cluster {
	tb.Helper()
	bin, err := binDir()
	if err != nil {
		tb.Skip(err.Error())
	}
	cred, uid, gid, err := unprivileged()
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	// A folder of its own under the system's temporary directory: the
	// unprivileged user cannot enter the test's own (0700, root's).
	dir, err := os.MkdirTemp("", "wpg")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	pw := make([]byte, 16)
	_, _ = rand.Read(pw)
	c := &Cluster{Dir: dir, Password: hex.EncodeToString(pw), PasswordFile: filepath.Join(dir, "password"), log: filepath.Join(dir, "postgres.log")}
	if err := os.WriteFile(c.PasswordFile, []byte(c.Password+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	for _, p := range []string{dir, c.PasswordFile} {
		if err := os.Chown(p, uid, gid); err != nil {
			tb.Fatalf("pgtest: handing %s to the unprivileged user: %v", p, err)
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.CommandContext(tb.Context(), filepath.Join(bin, "initdb"), "-D", data, "-U", User, "--pwfile", c.PasswordFile,
		"--auth=scram-sha-256", "--no-locale", "-E", "UTF8", "--no-sync", "--no-instructions")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Env = []string{"PATH=/usr/bin:/bin", "LANG=C", "HOME=" + dir}
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		tb.Fatalf("pgtest: initdb: %v\n%s", err, out)
	}
	var lastErr error
	for range 5 { // a free port can be taken between choosing and binding it
		c.Port = freePort(tb)
		if lastErr = c.start(tb, bin, data, cred, opt); lastErr == nil {
			return c
		}
	}
	tb.Fatalf("pgtest: starting postgres: %v", lastErr)
	return nil
}

func (c *Cluster) start(tb testing.TB, bin, data string, cred *syscall.Credential, opt Options) error {
	args := []string{"-D", data, "-p", strconv.Itoa(c.Port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
		"-c", "max_connections=200", "-c", "shared_buffers=16MB",
		"-c", "logging_collector=off", "-c", "log_min_messages=warning"}
	if !opt.Durable {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	logf, err := os.OpenFile(c.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(bin, "postgres"), args...)
	// Pdeathsig: a test binary that dies takes its cluster with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL, Setpgid: true}
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C", "HOME=" + c.Dir}
	cmd.Dir = c.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() {
		// SIGINT is PostgreSQL's fast shutdown.
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		db, err := sql.Open("pgx", c.DSN("postgres"))
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err = db.PingContext(ctx)
			cancel()
			db.Close()
		}
		if err == nil {
			break
		}
		select {
		case <-exited:
			out, _ := os.ReadFile(c.log)
			return fmt.Errorf("postgres exited: %s", lastLines(string(out), 10))
		default:
		}
		if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("postgres did not accept connections within a minute: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.proc = cmd
	tb.Cleanup(stop)
	return nil
}

// unprivileged is whom the cluster runs as: this process when it is not
// root, nobody when it is.
func unprivileged() (*syscall.Credential, int, int, error) {
	if os.Geteuid() != 0 {
		return nil, os.Geteuid(), os.Getegid(), nil
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		return nil, 0, 0, fmt.Errorf("looking up the unprivileged user nobody: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, uid, gid, nil
}

func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// DSN is the URL of database db in the cluster, with the password.
func (c *Cluster) DSN(db string) string {
	return c.dsn(db, true)
}

// DSNWithoutPassword is DSN without the password (it then comes from
// PasswordFile or the environment).
func (c *Cluster) DSNWithoutPassword(db string) string {
	return c.dsn(db, false)
}

func (c *Cluster) dsn(db string, withPassword bool) string {
	u := url.URL{Scheme: "postgres", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Port)), Path: "/" + db, RawQuery: "sslmode=disable"}
	if withPassword {
		u.User = url.UserPassword(User, c.Password)
	} else {
		u.User = url.User(User)
	}
	return u.String()
}

// Addr is the cluster's host:port.
func (c *Cluster) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Port)) }

// CreateDB makes a new, empty database (a copy of template, or of
// template1 when template is empty) and returns its name. It lives as
// long as the cluster.
func (c *Cluster) CreateDB(tb testing.TB, template string) string {
	tb.Helper()
	c.mu.Lock()
	c.seq++
	name := fmt.Sprintf("db%d", c.seq)
	c.mu.Unlock()
	q := `CREATE DATABASE ` + name
	if template != "" {
		q += ` TEMPLATE ` + template + ` STRATEGY FILE_COPY`
	}
	c.Exec(tb, "postgres", q)
	return name
}

// Exec runs statement q in database db as the superuser, failing tb on an
// error.
func (c *Cluster) Exec(tb testing.TB, db, q string) {
	tb.Helper()
	h, err := sql.Open("pgx", c.DSN(db))
	if err != nil {
		tb.Fatal(err)
	}
	defer h.Close()
	if _, err := h.ExecContext(context.Background(), q); err != nil {
		tb.Fatalf("pgtest: %s: %v", q, err)
	}
}

// Databases hands out empty databases of one schema, reused: making a
// database takes a few hundred milliseconds, emptying one a few. A test
// takes one (Take); when it ends, the database goes back, and the next
// taker finds every table empty and every identity restarted.
type Databases struct {
	c        *Cluster
	template string
	mu       sync.Mutex
	free     []string
}

// Databases returns a pool of copies of template (a database whose schema
// is ready; it must have no open connection).
func (c *Cluster) Databases(template string) *Databases {
	return &Databases{c: c, template: template}
}

// Take returns the URL (with the password) of an empty database for tb,
// given back when tb ends: close every handle on it in a cleanup
// registered after Take.
func (d *Databases) Take(tb testing.TB) string {
	tb.Helper()
	d.mu.Lock()
	var name string
	if n := len(d.free); n > 0 {
		name, d.free = d.free[n-1], d.free[:n-1]
	}
	d.mu.Unlock()
	if name == "" {
		name = d.c.CreateDB(tb, d.template)
		// The database outlives tb: it is dropped with the cluster.
	} else if err := d.empty(tb.Context(), name); err != nil {
		tb.Fatalf("pgtest: emptying %s: %v", name, err)
	}
	tb.Cleanup(func() {
		d.mu.Lock()
		d.free = append(d.free, name)
		d.mu.Unlock()
	})
	return d.c.DSN(name)
}

// empty deletes the rows of every table but the schema's version record
// and restarts every sequence.
func (d *Databases) empty(ctx context.Context, name string) error {
	db, err := sql.Open("pgx", d.c.DSN(name))
	if err != nil {
		return err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public' AND tablename != 'schema_migrations'`)
	if err != nil {
		return err
	}
	var tables []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			rows.Close()
			return err
		}
		tables = append(tables, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(tables) == 0 {
		return err
	}
	// DELETE rather than TRUNCATE: on tables this small it is several
	// times faster (TRUNCATE makes new files for each).
	stmts := []string{`SET session_replication_role = replica`} // no foreign-key order to keep
	for _, t := range tables {
		stmts = append(stmts, `DELETE FROM `+t)
	}
	stmts = append(stmts, `SELECT setval(s.oid::regclass, 1, false) FROM pg_class s WHERE s.relkind = 'S'`)
	_, err = db.ExecContext(ctx, strings.Join(stmts, "; "))
	return err
}
