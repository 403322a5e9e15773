package pgtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// commandTimeout bounds every program the package runs.
const commandTimeout = 60 * time.Second

// serverOSUser is the OS account that runs PostgreSQL when we are root.
const serverOSUser = "postgres"

// account is an OS identity to run programs as.
type account struct {
	uid, gid uint32
}

// runner runs PostgreSQL programs for one server: from its bin directory,
// as the right OS user, inside the right network namespace.
type runner struct {
	binDir string
	dir    string   // working directory and HOME of every program
	netns  string   // network namespace, or ""
	as     *account // nil: run as the current user
}

// serverAccount returns the account PostgreSQL programs must run as: the
// postgres OS user when we are root, nil (the current user) otherwise.
func serverAccount() (*account, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(serverOSUser)
	if err != nil {
		return nil, fmt.Errorf("pgtest: running as root needs the %q OS user: %w", serverOSUser, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgtest: uid of %s: %w", serverOSUser, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgtest: gid of %s: %w", serverOSUser, err)
	}
	return &account{uid: uint32(uid), gid: uint32(gid)}, nil
}

// chown hands path to the server account, if there is one.
func (r *runner) chown(path string) error {
	if r.as == nil {
		return nil
	}
	return os.Chown(path, int(r.as.uid), int(r.as.gid))
}

// writeFile writes a file the server account can read.
func (r *runner) writeFile(path, content string) error {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	if err := r.chown(path); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	return nil
}

// command builds the exec.Cmd for a program of the bin directory.
//
// Without a namespace, the process gets the server account's credentials
// directly. With one, it is started as
//
//	ip netns exec NS setpriv --reuid U --regid G --clear-groups -- PROG ARGS
//
// because entering a namespace needs root; every step execs the next, so
// the process started here ends up being PROG itself.
func (r *runner) command(ctx context.Context, prog string, args ...string) *exec.Cmd {
	argv := append([]string{filepath.Join(r.binDir, prog)}, args...)
	if r.netns != "" {
		prefix := []string{lookTool("ip"), "netns", "exec", r.netns}
		if r.as != nil {
			prefix = append(prefix, lookTool("setpriv"),
				"--reuid", strconv.Itoa(int(r.as.uid)),
				"--regid", strconv.Itoa(int(r.as.gid)),
				"--clear-groups", "--")
		}
		argv = append(prefix, argv...)
	}

	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = r.dir
	cmd.Env = r.env()
	as := r.as
	if r.netns != "" {
		as = nil
	}
	cmd.SysProcAttr = groupLeader(as)
	// On timeout, kill the whole process group, not only the direct child.
	// The postmaster is unaffected: pg_ctl puts it in a session of its own.
	cmd.Cancel = func() error {
		return killGroup(cmd.Process.Pid)
	}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// env is the environment of every program: ours without the libpq/PG*
// variables that could redirect it, with HOME set to the server directory
// and messages in English.
func (r *runner) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "PG") || name == "HOME" || name == "LC_ALL" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+r.dir, "LC_ALL=C")
}

// run runs a program with stdin as its input and returns its standard
// output. A failure wraps the cause and carries the tail of the output.
func (r *runner) run(stdin, prog string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()

	cmd := r.command(ctx, prog, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err == nil {
		return stdout.String(), nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		err = fmt.Errorf("%w (%w)", err, ctxErr)
	}
	output := strings.TrimSpace(stderr.String() + "\n" + stdout.String())
	return stdout.String(), fmt.Errorf("pgtest: %s %s: %w\n%s", prog, strings.Join(args, " "), err, tail(output))
}

// lookTool finds a system tool such as ip or setpriv, which may live in an
// sbin directory missing from PATH.
func lookTool(name string) string {
	if path, err := exec.LookPath(name); err == nil {
		return path
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		path := filepath.Join(dir, name)
		if _, err := os.Stat(path); err == nil {
			return path
		}
	}
	return name // let exec report it missing
}

// tailBytes is how much output or log text error messages carry.
const tailBytes = 4096

// tail returns the end of s, cut at a line boundary when possible.
func tail(s string) string {
	if len(s) <= tailBytes {
		return s
	}
	s = s[len(s)-tailBytes:]
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return "..." + "\n" + s
}
