package pgtest

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// postmasterPID returns the PID recorded in the data directory's
// postmaster.pid, or 0 if there is none.
func (s *Server) postmasterPID() int {
	return readPIDFile(filepath.Join(s.dataDir, "postmaster.pid"))
}

// lockFiles are the lock files a postmaster leaves behind when killed.
func (s *Server) lockFiles() []string {
	return []string{
		filepath.Join(s.dataDir, "postmaster.pid"),
		filepath.Join(s.baseDir, fmt.Sprintf(".s.PGSQL.%d.lock", s.port)),
	}
}

// readPIDFile returns the PID on the first line of a PostgreSQL lock file,
// or 0 if there is none.
func readPIDFile(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(sc.Text()))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// runningPID returns the PID of the live postmaster of this server, or 0.
func (s *Server) runningPID() int {
	if pid := s.postmasterPID(); pid != 0 && isPostgres(pid) {
		return pid
	}
	return 0
}

// removeStaleLockFiles deletes the lock files of a postmaster that was
// killed. PostgreSQL removes stale lock files itself, but it takes a zombie
// (a killed postmaster nobody has reaped yet, common in containers whose
// init is slow to reap orphans) for a live server.
func (s *Server) removeStaleLockFiles() error {
	for _, path := range s.lockFiles() {
		pid := readPIDFile(path)
		if pid == 0 || isPostgres(pid) {
			continue
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("pgtest: removing stale lock file: %w", err)
		}
	}
	return nil
}

// isPostgres reports whether pid is a live (not zombie) postgres process.
func isPostgres(pid int) bool {
	comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	if err != nil {
		// No usable /proc: fall back to asking the kernel.
		return processExists(pid)
	}
	if strings.TrimSpace(string(comm)) != "postgres" {
		return false
	}
	state, _, ok := procStat(pid)
	return ok && state != 'Z' && state != 'X'
}

// procStat returns the state and parent PID of pid from /proc/PID/stat.
func procStat(pid int) (state byte, ppid int, ok bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// The command name, in parentheses, may itself contain spaces and
	// parentheses: the fields we want follow the last ')'.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0, 0, false
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 2 || len(fields[0]) != 1 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(fields[1])
	if err != nil {
		return 0, 0, false
	}
	return fields[0][0], ppid, true
}

// children returns the PIDs of the processes whose parent is pid.
func children(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var kids []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, ppid, ok := procStat(child); ok && ppid == pid {
			kids = append(kids, child)
		}
	}
	return kids
}

// killServer sends SIGKILL to a postmaster and to all its children (backends and
// auxiliary processes, which are not in its process group), then waits up
// to timeout for the postmaster to disappear.
func killServer(pid int, timeout time.Duration) bool {
	for _, child := range children(pid) {
		if isPostgres(child) {
			_ = killPID(child)
		}
	}
	_ = killPID(pid)
	return waitGone(pid, timeout)
}

// waitGone polls until pid is no longer a live postgres process.
func waitGone(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for isPostgres(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}
