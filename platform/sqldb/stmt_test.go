package sqldb_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"testing"

	"herald.dev/platform/sqldb"
	"herald.dev/platform/sqldb/sqldbtest"
)

func TestSizedEach(t *testing.T) {
	s := sqldb.NewSized(100, func(n int) string { return fmt.Sprint(n) })
	if s.Max() != 64 || len(s.Texts()) != 7 {
		t.Fatalf("max %d, %d texts; want 64 and 7", s.Max(), len(s.Texts()))
	}
	for _, tc := range []struct {
		n    int
		want string
	}{
		{0, ""},
		{1, "1"},
		{2, "2"},
		{3, "2 1"},
		{64, "64"},
		{65, "64 1"},
		{200, "64 64 64 8"},
		{127, "64 32 16 8 4 2 1"},
	} {
		var got []string
		next := 0
		err := s.Each(tc.n, func(q string, start, end int) error {
			if start != next || end-start != atoi(q) {
				t.Errorf("n=%d: span [%d,%d) with text %q after %d", tc.n, start, end, q, next)
			}
			next = end
			got = append(got, q)
			return nil
		})
		if err != nil || strings.Join(got, " ") != tc.want || next != tc.n {
			t.Errorf("n=%d: spans %q (end %d, err %v), want %q", tc.n, got, next, err, tc.want)
		}
	}
}

func atoi(s string) int {
	var n int
	fmt.Sscan(s, &n)
	return n
}

func TestRowsAndList(t *testing.T) {
	if got := sqldb.Rows("INSERT INTO t VALUES ", "(?, ?)", " ON X")(3); got != "INSERT INTO t VALUES (?, ?), (?, ?), (?, ?) ON X" {
		t.Errorf("Rows: %q", got)
	}
	if got := sqldb.List("SELECT a FROM t WHERE a IN (", ")")(2); got != "SELECT a FROM t WHERE a IN (?, ?)" {
		t.Errorf("List: %q", got)
	}
}

// Prepared and unprepared statements give the same results, inside
// transactions and across commits and rollbacks, on both dialects.
func TestPreparedStatements(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		table := "stmt_test_t"
		if _, err := db.W.ExecContext(ctx, `DROP TABLE IF EXISTS `+table); err != nil {
			t.Fatal(err)
		}
		if _, err := db.W.ExecContext(ctx, `CREATE TABLE `+table+` (id VARCHAR(20) PRIMARY KEY, v INTEGER NOT NULL)`); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.W.ExecContext(ctx, `DROP TABLE `+table) })
		ins := sqldb.NewSized(8, sqldb.Rows(`INSERT INTO `+table+` (id, v) VALUES `, "(?, ?)", ""))
		sel := `SELECT COUNT(*), COALESCE(SUM(v), 0) FROM ` + table + ` WHERE v >= ?`
		if err := db.Prepare(ctx, append(ins.Texts(), sel)...); err != nil {
			t.Fatal(err)
		}
		if err := db.Prepare(ctx, sel); err != nil { // twice is fine
			t.Fatal(err)
		}
		write := func(from, n int, fail bool) error {
			return db.Tx(ctx, func(tx *sql.Tx) error {
				err := ins.Each(n, func(q string, start, end int) error {
					var args []any
					for i := start; i < end; i++ {
						args = append(args, fmt.Sprintf("k%d", from+i), from+i)
					}
					_, err := db.Exec(ctx, tx, q, args...)
					return err
				})
				if err != nil {
					return err
				}
				var c, sum int
				if err := db.QueryRow(ctx, tx, sel, 0).Scan(&c, &sum); err != nil {
					return err
				}
				if c < n {
					return fmt.Errorf("inside the transaction: %d rows, want at least %d", c, n)
				}
				if fail {
					return errRollback
				}
				return nil
			})
		}
		if err := write(0, 13, false); err != nil {
			t.Fatal(err)
		}
		if err := write(100, 5, true); err != errRollback {
			t.Fatalf("rolled-back write: %v", err)
		}
		if err := write(13, 20, false); err != nil {
			t.Fatal(err)
		}
		var c, sum int
		if err := db.ReadQueryRow(ctx, db.R, sel, 0).Scan(&c, &sum); err != nil {
			t.Fatal(err)
		}
		if c != 33 || sum != 33*32/2 {
			t.Fatalf("count %d sum %d, want 33 and %d", c, sum, 33*32/2)
		}
		if err := db.ReadQueryRow(ctx, db.R, sel, 30).Scan(&c, &sum); err != nil || c != 3 || sum != 30+31+32 {
			t.Fatalf("count %d sum %d err %v, want 3 and 93", c, sum, err)
		}
	})
}

var errRollback = fmt.Errorf("roll back")

// On MySQL, registered write statements run as server-side prepared
// statements; when the server refuses to prepare one more
// (max_prepared_stmt_count), the write still lands, as text, in the same
// transaction, and later writes run as text too.
func TestMySQLPreparedAndRefused(t *testing.T) {
	db := sqldbtest.MySQL(t)
	ctx := context.Background()
	if _, err := db.W.ExecContext(ctx, `CREATE TABLE stmt_refused_t (id VARCHAR(20) PRIMARY KEY, v INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	ins := sqldb.NewSized(4, sqldb.Rows(`INSERT INTO stmt_refused_t (id, v) VALUES `, "(?, ?)", ""))
	if err := db.Prepare(ctx, ins.Texts()...); err != nil {
		t.Fatal(err)
	}
	globalStatus := func(name string) int64 {
		var k string
		var v int64
		if err := db.W.QueryRowContext(ctx, `SHOW GLOBAL STATUS LIKE '`+name+`'`).Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	write := func(from, n int) error {
		return db.Tx(ctx, func(tx *sql.Tx) error {
			return ins.Each(n, func(q string, start, end int) error {
				var args []any
				for i := start; i < end; i++ {
					args = append(args, fmt.Sprintf("k%d", from+i), from+i)
				}
				_, err := db.Exec(ctx, tx, q, args...)
				return err
			})
		})
	}

	before := globalStatus("Com_stmt_execute")
	if err := write(0, 7); err != nil { // 4 + 2 + 1 rows: three executions
		t.Fatal(err)
	}
	if got := globalStatus("Com_stmt_execute") - before; got < 3 {
		t.Fatalf("%d prepared executions on the server, want at least 3", got)
	}

	// Refuse every new prepared statement for a moment, and make the next
	// transaction take a connection that has prepared nothing yet.
	var limit int64
	if err := db.W.QueryRowContext(ctx, `SELECT @@GLOBAL.max_prepared_stmt_count`).Scan(&limit); err != nil {
		t.Fatal(err)
	}
	db.W.SetMaxIdleConns(0)
	db.W.SetMaxIdleConns(16)
	// The setting is the server's, shared with whatever else runs on it:
	// it is restored right after the one write, and in any case when the
	// test ends.
	var restored sync.Once
	restore := func() {
		restored.Do(func() {
			if _, err := db.W.ExecContext(ctx, fmt.Sprintf(`SET GLOBAL max_prepared_stmt_count = %d`, limit)); err != nil {
				t.Errorf("restore max_prepared_stmt_count: %v", err)
			}
		})
	}
	t.Cleanup(restore)
	if _, err := db.W.ExecContext(ctx, `SET GLOBAL max_prepared_stmt_count = 0`); err != nil {
		t.Fatal(err)
	}
	err := write(7, 5)
	restore()
	if err != nil {
		t.Fatalf("write while the server refuses to prepare: %v", err)
	}
	if err := write(12, 3); err != nil {
		t.Fatal(err)
	}
	var c, sum int
	if err := db.W.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(v), 0) FROM stmt_refused_t`).Scan(&c, &sum); err != nil {
		t.Fatal(err)
	}
	if c != 15 || sum != 15*14/2 {
		t.Fatalf("count %d sum %d, want 15 and %d", c, sum, 15*14/2)
	}
}
