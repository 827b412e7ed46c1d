package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"math/bits"
	"sync"
	"sync/atomic"

	"github.com/go-sql-driver/mysql"
)

// Prepared statements.
//
// modernc's SQLite compiles every statement it is given from its text, and
// for the multi-row inserts of the hot paths that compilation costs as much
// as running them. MySQL is no different: a multi-row insert sent as text,
// with its values interpolated on the client, spends a quarter of the
// server's CPU in the parser, lexing every value. Statements registered
// with Prepare are compiled once per connection and reused in every
// transaction: on SQLite by Exec, Query and QueryRow, on MySQL by Exec, as
// server-side prepared statements whose values travel in the binary
// protocol. Other text runs unprepared: on MySQL the driver interpolates
// its parameters on the client (one round trip, no server-side statement).
//
// The writer pool of SQLite has a single connection, held by whichever
// transaction is running, so statements cannot be prepared from inside a
// transaction: register them when the store is built (Prepare), and any
// other text simply runs unprepared.

type stmtCache struct {
	mu sync.RWMutex
	w  map[string]*sql.Stmt // prepared on the write pool
	r  map[string]*sql.Stmt // prepared on the read pool
	// refused: MySQL refused to prepare more statements (its global
	// max_prepared_stmt_count is reached, for example by many processes
	// on one server); from then on every text runs unprepared.
	refused atomic.Bool
}

// errPrepareRefused is MySQL's ER_MAX_PREPARED_STMT_COUNT_REACHED: the
// server holds as many prepared statements as max_prepared_stmt_count
// allows. It can only come from preparing, never from running a statement.
const errPrepareRefused = 1461

func prepareRefused(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == errPrepareRefused
}

// refusePrepared turns prepared statements off for db, and says so once.
func (db *DB) refusePrepared(err error) {
	if db.stmts.refused.CompareAndSwap(false, true) {
		log.Printf("sqldb: %s refused to prepare one more statement (%v): writing as text from now on; raise max_prepared_stmt_count or lower database.max_open", db.Name, err)
	}
}

// Prepare registers write statements: they are compiled now on the write
// pool (so call it while no transaction runs, when a store is built) and
// reused from then on (see Exec, Query, QueryRow); a MySQL connection that
// has not run one yet prepares it the first time it does. A text already
// registered is skipped.
func (db *DB) Prepare(ctx context.Context, queries ...string) error {
	if db.stmts.refused.Load() {
		return nil
	}
	for _, q := range queries {
		db.stmts.mu.RLock()
		_, ok := db.stmts.w[q]
		db.stmts.mu.RUnlock()
		if ok {
			continue
		}
		st, err := db.W.PrepareContext(ctx, q)
		if prepareRefused(err) {
			db.refusePrepared(err)
			return nil
		}
		if err != nil {
			return fmt.Errorf("prepare %.60q: %w", q, err)
		}
		db.stmts.mu.Lock()
		if db.stmts.w == nil {
			db.stmts.w = map[string]*sql.Stmt{}
		}
		if _, dup := db.stmts.w[q]; dup {
			st.Close()
		} else {
			db.stmts.w[q] = st
		}
		db.stmts.mu.Unlock()
	}
	return nil
}

func (db *DB) writeStmt(ctx context.Context, tx *sql.Tx, q string) *sql.Stmt {
	if db.stmts.refused.Load() {
		return nil
	}
	db.stmts.mu.RLock()
	st := db.stmts.w[q]
	db.stmts.mu.RUnlock()
	if st == nil {
		return nil
	}
	return tx.StmtContext(ctx, st)
}

// Exec runs q in tx, from its prepared statement when q was registered.
// A MySQL connection that has not run q yet prepares it first; should the
// server refuse (max_prepared_stmt_count), q runs as text, and so does
// every statement after it.
func (db *DB) Exec(ctx context.Context, tx *sql.Tx, q string, args ...any) (sql.Result, error) {
	if st := db.writeStmt(ctx, tx, q); st != nil {
		res, err := st.ExecContext(ctx, args...)
		if !prepareRefused(err) {
			return res, err
		}
		db.refusePrepared(err) // a failed prepare leaves tx as it was
	}
	return tx.ExecContext(ctx, q, args...)
}

// Query runs q in tx, from its prepared statement when q was registered
// (on SQLite; on MySQL q runs as text).
func (db *DB) Query(ctx context.Context, tx *sql.Tx, q string, args ...any) (*sql.Rows, error) {
	if db.Dialect == SQLite {
		if st := db.writeStmt(ctx, tx, q); st != nil {
			return st.QueryContext(ctx, args...)
		}
	}
	return tx.QueryContext(ctx, q, args...)
}

// QueryRow runs q in tx, from its prepared statement when q was registered
// (on SQLite; on MySQL q runs as text).
func (db *DB) QueryRow(ctx context.Context, tx *sql.Tx, q string, args ...any) *sql.Row {
	if db.Dialect == SQLite {
		if st := db.writeStmt(ctx, tx, q); st != nil {
			return st.QueryRowContext(ctx, args...)
		}
	}
	return tx.QueryRowContext(ctx, q, args...)
}

// readStmt returns q prepared on pool (lazily: a read pool has several
// connections, so preparing never waits for a transaction to end).
func (db *DB) readStmt(ctx context.Context, pool *sql.DB, q string) *sql.Stmt {
	if db.Dialect != SQLite || pool != db.R || db.R == db.W {
		return nil
	}
	db.stmts.mu.RLock()
	st := db.stmts.r[q]
	db.stmts.mu.RUnlock()
	if st != nil {
		return st
	}
	st, err := pool.PrepareContext(ctx, q)
	if err != nil {
		return nil // the plain query reports the error
	}
	db.stmts.mu.Lock()
	defer db.stmts.mu.Unlock()
	if old := db.stmts.r[q]; old != nil {
		st.Close()
		return old
	}
	if db.stmts.r == nil {
		db.stmts.r = map[string]*sql.Stmt{}
	}
	db.stmts.r[q] = st
	return st
}

// ReadQueryRow reads one row on pool (db.R, or db.W for reads that must see
// the primary), from a cached prepared statement on SQLite's read pool.
func (db *DB) ReadQueryRow(ctx context.Context, pool *sql.DB, q string, args ...any) *sql.Row {
	if st := db.readStmt(ctx, pool, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return pool.QueryRowContext(ctx, q, args...)
}

func (db *DB) closeStmts() {
	db.stmts.mu.Lock()
	defer db.stmts.mu.Unlock()
	for _, st := range db.stmts.w {
		st.Close()
	}
	for _, st := range db.stmts.r {
		st.Close()
	}
	db.stmts.w, db.stmts.r = nil, nil
}

// Sized is a family of statements that differ only in how many rows (or
// list items) they carry, built for power-of-two counts up to a maximum: a
// batch of any size runs as a few statements whose texts repeat, so they
// can be prepared once (Texts) instead of compiled per batch.
type Sized struct {
	texts []string // texts[i] carries 1<<i items
}

// NewSized builds the texts for 1, 2, 4, … max items (max is rounded down
// to a power of two) with build(n).
func NewSized(max int, build func(n int) string) *Sized {
	if max < 1 {
		max = 1
	}
	k := bits.Len(uint(max)) - 1
	s := &Sized{texts: make([]string, k+1)}
	for i := range s.texts {
		s.texts[i] = build(1 << i)
	}
	return s
}

// Texts returns every text, for Prepare.
func (s *Sized) Texts() []string { return s.texts }

// Max is the largest item count of one statement.
func (s *Sized) Max() int { return 1 << (len(s.texts) - 1) }

// Each splits n items into consecutive spans [start, end), each as large as
// possible, and calls fn with the text for each span.
func (s *Sized) Each(n int, fn func(q string, start, end int) error) error {
	maxN := s.Max()
	for start := 0; start < n; {
		k := min(n-start, maxN)
		i := bits.Len(uint(k)) - 1
		end := start + 1<<i
		if err := fn(s.texts[i], start, end); err != nil {
			return err
		}
		start = end
	}
	return nil
}

// Rows returns a builder for NewSized of "prefix (row), (row), … suffix"
// multi-row statements, with row the text of one row's values.
func Rows(prefix, row, suffix string) func(n int) string {
	return func(n int) string {
		b := make([]byte, 0, len(prefix)+n*(len(row)+2)+len(suffix))
		b = append(b, prefix...)
		for i := 0; i < n; i++ {
			if i > 0 {
				b = append(b, ", "...)
			}
			b = append(b, row...)
		}
		b = append(b, suffix...)
		return string(b)
	}
}

// List returns a builder for NewSized of statements with one IN list:
// prefix + "?, ?, …" + suffix.
func List(prefix, suffix string) func(n int) string {
	return func(n int) string { return prefix + Placeholders(n) + suffix }
}
