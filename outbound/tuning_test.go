package outbound

import (
	"testing"

	"herald.dev/platform/sqldb"
)

// TestLowChunkDefaults: bulk rows go in 1,024-row transactions on SQLite
// and 512-row ones on MySQL, where larger ones cut a fan-out's rate to a
// third (docs/benchmarks.md); an explicit setting wins.
func TestLowChunkDefaults(t *testing.T) {
	for _, tc := range []struct {
		d        sqldb.Dialect
		set, low int
		busy     int
	}{
		{sqldb.SQLite, 0, 1024, 512},
		{sqldb.MySQL, 0, 512, 512},
		{sqldb.MySQL, 2000, 2000, 512},
	} {
		tun := Tuning{RecordLowTxRows: tc.set}
		tun.defaults(testConfig(), tc.d)
		if tun.RecordLowTxRows != tc.low || tun.RecordLowTxRowsBusy != tc.busy {
			t.Errorf("%s with %d: low %d busy %d, want %d and %d", tc.d, tc.set, tun.RecordLowTxRows, tun.RecordLowTxRowsBusy, tc.low, tc.busy)
		}
	}
}
