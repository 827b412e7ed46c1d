package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// ProcStats are a process's CPU time, memory and writes, read from /proc.
type ProcStats struct {
	CPU     time.Duration // user + system
	RSSKB   int64         // current resident set
	PeakKB  int64         // VmHWM: peak resident set
	Threads int
	// WriteBytes is what the process caused to be written to storage
	// (/proc/<pid>/io write_bytes: page-cache writes counted when made
	// dirty), WriteCalls its write system calls (syscw). Both are 0 where
	// /proc/<pid>/io cannot be read.
	WriteBytes, WriteCalls int64
}

const clockTicks = 100 // USER_HZ on Linux

// ReadProc reads /proc/<pid>/stat, /proc/<pid>/status and, if it may,
// /proc/<pid>/io.
func ReadProc(pid int) (ProcStats, error) {
	var s ProcStats
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// fields after the ")" that ends the command name
	rest := string(b)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+2:]
	}
	f := strings.Fields(rest)
	if len(f) < 15 {
		return s, fmt.Errorf("short /proc stat for %d", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	s.CPU = time.Duration(ut+st) * time.Second / clockTicks
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	eachField(status, func(k string, n int64) {
		switch k {
		case "VmRSS":
			s.RSSKB = n
		case "VmHWM":
			s.PeakKB = n
		case "Threads":
			s.Threads = int(n)
		}
	})
	if io, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid)); err == nil {
		eachField(io, func(k string, n int64) {
			switch k {
			case "write_bytes":
				s.WriteBytes = n
			case "syscw":
				s.WriteCalls = n
			}
		})
	}
	return s, nil
}

// eachField calls fn with each "key: number" line of a /proc file (a
// trailing " kB" is dropped; a value that is no number reads as 0).
func eachField(b []byte, fn func(key string, n int64)) {
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		fn(k, n)
	}
}

// CPUPercent is the CPU used between two readings as a percentage of one core.
func CPUPercent(a, b ProcStats, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	return float64(b.CPU-a.CPU) / float64(wall) * 100
}

// ResetPeak sets the process's VmHWM back to its current resident set
// (Linux: clear_refs 5), so a later PeakKB is the peak of what follows.
func ResetPeak(pid int) error {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		return fmt.Errorf("reset peak RSS of %d: %w", pid, err)
	}
	return nil
}

// ListenerPID finds the process on this machine that listens on TCP port
// (IPv4 or IPv6): it reads the listening sockets' inodes from
// /proc/net/tcp{,6} and looks for a process holding one of them. A database
// server on the bench's machine is measured this way. It fails when no
// process of those this one may inspect holds the socket.
func ListenerPID(port int) (int, error) {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
			fs := strings.Fields(line)
			if len(fs) < 10 || fs[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, ok := strings.Cut(fs[1], ":")
			if p, err := strconv.ParseUint(hexPort, 16, 16); ok && err == nil && int(p) == port && fs[9] != "0" {
				inodes["socket:["+fs[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("no socket listens on TCP port %d", port)
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		dir := fmt.Sprintf("/proc/%d/fd", pid)
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue // gone, or not ours to inspect
		}
		for _, fd := range fds {
			if target, err := os.Readlink(dir + "/" + fd.Name()); err == nil && inodes[target] {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("no process this one may inspect holds the socket listening on TCP port %d", port)
}
