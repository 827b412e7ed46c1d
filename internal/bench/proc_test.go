package bench

import (
	"os"
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
