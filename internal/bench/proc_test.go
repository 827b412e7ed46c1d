package bench

import (
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"testing"
)

func TestReadProcSelf(t *testing.T) {
	s, err := ReadProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.RSSKB <= 0 || s.PeakKB < s.RSSKB || s.Threads <= 0 {
		t.Fatalf("implausible: %+v", s)
	}
	x := 0
	for i := 0; i < 50_000_000; i++ {
		x += i
	}
	s2, _ := ReadProc(os.Getpid())
	if s2.CPU < s.CPU || x == 0 {
		t.Fatalf("cpu went backwards: %v -> %v", s.CPU, s2.CPU)
	}
}

// TestResetPeak: after a large allocation is freed and the peak reset,
// VmHWM falls back towards the current resident set.
func TestResetPeak(t *testing.T) {
	b := make([]byte, 200<<20)
	for i := range b {
		b[i] = 1
	}
	before, _ := ReadProc(os.Getpid())
	b = nil
	runtime.GC()
	debug.FreeOSMemory()
	if err := ResetPeak(os.Getpid()); err != nil {
		t.Skipf("this kernel cannot reset VmHWM: %v", err)
	}
	after, _ := ReadProc(os.Getpid())
	if after.PeakKB >= before.PeakKB-100<<10 {
		t.Fatalf("peak %d kB before the reset, %d kB after (rss %d kB)", before.PeakKB, after.PeakKB, after.RSSKB)
	}
}

// TestReadProcWrites: a synced 1 MiB write shows in the process's
// write_bytes and syscw.
func TestReadProcWrites(t *testing.T) {
	if _, err := os.ReadFile("/proc/self/io"); err != nil {
		t.Skipf("no /proc/self/io here: %v", err)
	}
	before, err := ReadProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(t.TempDir(), "w")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for i := 0; i < 16; i++ {
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	after, _ := ReadProc(os.Getpid())
	if got := after.WriteCalls - before.WriteCalls; got < 16 {
		t.Errorf("syscw rose by %d, want at least 16", got)
	}
	// tmpfs counts no storage writes; only check where the bytes reach a disk.
	if got := after.WriteBytes - before.WriteBytes; got != 0 && got < 1<<20 {
		t.Errorf("write_bytes rose by %d, want 0 (tmpfs) or at least 1 MiB", got)
	}
}

// TestListenerPID finds this test process by a port it listens on, and
// nothing on a port no one listens on.
func TestListenerPID(t *testing.T) {
	for _, network := range []string{"tcp4", "tcp6"} {
		addr := "127.0.0.1:0"
		if network == "tcp6" {
			addr = "[::1]:0"
		}
		ln, err := net.Listen(network, addr)
		if err != nil {
			t.Logf("%s: %v", network, err)
			continue
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pid, err := ListenerPID(port)
		if err != nil || pid != os.Getpid() {
			t.Errorf("%s port %d: pid %d, %v; want %d", network, port, pid, err, os.Getpid())
		}
		ln.Close()
		if pid, err := ListenerPID(port); err == nil {
			t.Errorf("%s port %d after close: pid %d, want an error", network, port, pid)
		}
	}
}
