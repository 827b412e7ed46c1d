package profilesvc

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"

	"herald.dev/platform/httpx"
	"herald.dev/platform/sqldb"
)

// ImportResult reports a bulk import.
type ImportResult struct {
	// Imported counts rows written (created or replaced).
	Imported int `json:"imported"`
	// Failed counts rows rejected; nothing of a rejected row is written.
	Failed int `json:"failed"`
	// Errors lists the first problems (capped, by default at 100), by line.
	Errors []ImportError `json:"errors"`
}

// ImportError names one problem of one input line.
type ImportError struct {
	Line   int    `json:"line"`
	Field  string `json:"field,omitempty"`
	Reason string `json:"reason"`
}

// ImportUsers imports users pulled from next until it reports false, with
// the same validation as PUT /v1/users/{id}; line numbers in errors are the
// 1-based position in the sequence. Each user is created or replaced and
// added to the groups it lists (existing memberships are kept). Valid rows
// are written in batches of Options.ImportBatch, each batch one multi-row
// upsert in one transaction, while the next batch is validated. An error from
// next stops the import: the valid rows read before it are written and the
// error is returned with the counts. A database error stops the import too;
// batches already committed stay.
func (s *Service) ImportUsers(ctx context.Context, appID string, next func() (UserInput, bool, error)) (ImportResult, error) {
	im := s.newImporter(ctx, appID)
	for line := 1; ; line++ {
		in, ok, err := next()
		if err != nil {
			res, _ := im.finish()
			return res, fmt.Errorf("import users: %w", err)
		}
		if !ok {
			break
		}
		if err := im.add(line, in); err != nil {
			res, _ := im.finish()
			return res, err
		}
	}
	return im.finish()
}

type importRow struct {
	line int
	in   UserInput
}

// importer validates rows on the caller's goroutine and writes full batches
// on its own, so parsing and writing overlap.
type importer struct {
	s      *Service
	ctx    context.Context
	appID  string
	groups map[string]bool // group id -> exists (looked up once)
	batch  []importRow
	work   chan []importRow
	wg     sync.WaitGroup

	mu     sync.Mutex
	res    ImportResult
	werr   error
	failed map[int]bool // lines already counted as failed
}

func (s *Service) newImporter(ctx context.Context, appID string) *importer {
	im := &importer{
		s: s, ctx: ctx, appID: appID,
		groups: map[string]bool{},
		batch:  make([]importRow, 0, s.opts.ImportBatch),
		work:   make(chan []importRow, 1),
		res:    ImportResult{Errors: []ImportError{}},
		failed: map[int]bool{},
	}
	im.wg.Add(1)
	go im.writer()
	return im
}

// fail records a problem of line; a line counts once in Failed.
func (im *importer) fail(line int, field, reason string) {
	im.mu.Lock()
	defer im.mu.Unlock()
	if !im.failed[line] {
		im.failed[line] = true
		im.res.Failed++
	}
	if len(im.res.Errors) < im.s.opts.MaxImportErrors {
		im.res.Errors = append(im.res.Errors, ImportError{Line: line, Field: field, Reason: reason})
	}
}

func (im *importer) failProblem(line int, err error) {
	var p *httpx.Problem
	if errors.As(err, &p) {
		if len(p.Errors) == 0 {
			im.fail(line, "", p.Detail)
		}
		for _, fe := range p.Errors {
			im.fail(line, fe.Field, fe.Reason)
		}
		return
	}
	im.fail(line, "", err.Error())
}

func (im *importer) writeErr() error {
	im.mu.Lock()
	defer im.mu.Unlock()
	return im.werr
}

// add validates one row and queues it; it returns the writer's error, if any.
func (im *importer) add(line int, in UserInput) error {
	if err := im.writeErr(); err != nil {
		return err
	}
	if err := im.ctx.Err(); err != nil {
		return err
	}
	in.normalize()
	fe := in.validate(true)
	if len(fe) == 0 {
		for i, g := range in.Groups {
			ok, err := im.groupExists(g)
			if err != nil {
				return err
			}
			if !ok {
				fe.add("groups["+strconv.Itoa(i)+"]", "unknown group %q", g)
			}
		}
	}
	if len(fe) > 0 {
		for _, f := range fe {
			im.fail(line, f.Field, f.Reason)
		}
		return nil
	}
	im.batch = append(im.batch, importRow{line: line, in: in})
	if len(im.batch) >= im.s.opts.ImportBatch {
		im.flush()
	}
	return nil
}

func (im *importer) groupExists(g string) (bool, error) {
	if ok, seen := im.groups[g]; seen {
		return ok, nil
	}
	found, err := existing(im.ctx, im.s.db.W, "profile_groups", im.appID, []string{g}, "") // the primary: a replica may lag
	if err != nil {
		return false, fmt.Errorf("import users: look up group %s: %w", g, err)
	}
	im.groups[g] = found[g]
	return found[g], nil
}

func (im *importer) flush() {
	if len(im.batch) == 0 {
		return
	}
	select {
	case im.work <- im.batch:
	case <-im.ctx.Done():
	}
	im.batch = make([]importRow, 0, im.s.opts.ImportBatch)
}

// finish writes the last batch, waits for the writer and returns the result.
func (im *importer) finish() (ImportResult, error) {
	if im.writeErr() == nil && im.ctx.Err() == nil {
		im.flush()
	}
	close(im.work)
	im.wg.Wait()
	im.mu.Lock()
	defer im.mu.Unlock()
	sort.SliceStable(im.res.Errors, func(i, j int) bool { return im.res.Errors[i].Line < im.res.Errors[j].Line })
	err := im.werr
	if err == nil {
		err = im.ctx.Err()
	}
	return im.res, err
}

func (im *importer) writer() {
	defer im.wg.Done()
	for rows := range im.work {
		if im.writeErr() != nil {
			continue // drain
		}
		n, err := im.write(rows)
		im.mu.Lock()
		im.res.Imported += n
		if err != nil && im.werr == nil {
			im.werr = fmt.Errorf("import users: %w", err)
		}
		im.mu.Unlock()
	}
}

// write stores one batch in one transaction and returns how many rows it wrote.
func (im *importer) write(rows []importRow) (int, error) {
	s := im.s
	ctx := im.ctx
	if len(rows) == s.opts.ImportBatch {
		// Full-size batches run prepared on SQLite (compiling a 1000-row
		// statement costs as much as running it); preparing happens outside
		// the transaction, which holds SQLite's one write connection.
		_ = s.db.Prepare(ctx, usersUpsert(s.db, len(rows)), membersInsert(s.db, memberChunk))
	}
	var written []importRow
	err := s.tx(ctx, func(tx *sql.Tx) error {
		written = rows
		// Re-check the batch's groups under a shared lock: one may have been
		// deleted since validation; its rows fail instead of dangling.
		var gids []string
		seen := map[string]bool{}
		for _, r := range rows {
			for _, g := range r.in.Groups {
				if !seen[g] {
					seen[g] = true
					gids = append(gids, g)
				}
			}
		}
		if len(gids) > 0 {
			found, err := existing(ctx, tx, "profile_groups", im.appID, gids, s.shareLock())
			if err != nil {
				return fmt.Errorf("check groups: %w", err)
			}
			if len(found) < len(gids) {
				written = make([]importRow, 0, len(rows))
				for _, r := range rows {
					bad := -1
					for i, g := range r.in.Groups {
						if !found[g] {
							bad = i
							break
						}
					}
					if bad >= 0 {
						im.fail(r.line, "groups["+strconv.Itoa(bad)+"]", fmt.Sprintf("unknown group %q", r.in.Groups[bad]))
						continue
					}
					written = append(written, r)
				}
			}
		}
		if len(written) == 0 {
			return nil
		}
		now := sqldb.Now()
		args := make([]any, 0, 14*len(written))
		for _, r := range written {
			in := &r.in
			args = append(args, im.appID, in.ID, in.Name, in.Email, in.Phone, in.Locale, in.Timezone,
				in.Identities.WeChat, in.Identities.WeCom, in.Identities.DingTalk, in.Identities.QQ, in.WebhookURL, now, now)
		}
		if _, err := s.db.Exec(ctx, tx, usersUpsert(s.db, len(written)), args...); err != nil {
			return fmt.Errorf("upsert users: %w", err)
		}
		margs := make([]any, 0, 3*len(written))
		for _, r := range written {
			for _, g := range r.in.Groups {
				margs = append(margs, im.appID, g, r.in.ID)
				if len(margs) >= 3*memberChunk {
					if err := im.insertMembers(tx, margs); err != nil {
						return err
					}
					margs = margs[:0]
				}
			}
		}
		return im.insertMembers(tx, margs)
	})
	if err != nil {
		return 0, err
	}
	ids := make([]string, len(written))
	for i, r := range written {
		ids[i] = r.in.ID
	}
	s.cache.invalidate(im.appID, ids...)
	return len(written), nil
}

func (im *importer) insertMembers(tx *sql.Tx, args []any) error {
	if len(args) == 0 {
		return nil
	}
	if _, err := im.s.db.Exec(im.ctx, tx, membersInsert(im.s.db, len(args)/3), args...); err != nil {
		return fmt.Errorf("add memberships: %w", err)
	}
	return nil
}

const memberChunk = 1000 // membership rows per INSERT

func usersUpsert(db *sqldb.DB, n int) string {
	return `INSERT INTO profile_users (app_id, id, name, email, phone, locale, timezone, wechat, wecom, dingtalk, qq, webhook_url, created_at, updated_at) VALUES ` +
		rowsOf(14, n) + ` ` +
		db.Upsert([]string{"app_id", "id"}, "name", "email", "phone", "locale", "timezone", "wechat", "wecom", "dingtalk", "qq", "webhook_url", "updated_at")
}

func membersInsert(db *sqldb.DB, n int) string {
	return db.InsertIgnore() + ` INTO profile_group_members (app_id, group_id, user_id) VALUES ` + rowsOf(3, n)
}

// ---- stream formats ----

// csvColumns are the columns a CSV import may have (any order; id required).
var csvColumns = []string{"id", "name", "email", "phone", "locale", "timezone", "wechat", "wecom", "dingtalk", "qq", "groups", "webhook_url"}

// ImportCSV imports users from CSV: a header row naming columns (id
// required; name, email, phone, locale, timezone, wechat, wecom, dingtalk,
// qq, groups separated by "|", webhook_url), then one user per row. Line
// numbers count the header as line 1. A bad header is a *httpx.Problem and
// nothing is imported.
func (s *Service) ImportCSV(ctx context.Context, appID string, r io.Reader) (ImportResult, error) {
	cr := csv.NewReader(bufio.NewReaderSize(r, 64<<10))
	cr.ReuseRecord = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return ImportResult{Errors: []ImportError{}}, httpx.CodeMalformed.New("the CSV body is empty: send a header row and one user per row")
	}
	if err != nil {
		return ImportResult{Errors: []ImportError{}}, httpx.Invalid("header", "unreadable CSV header: %v", err)
	}
	col := map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		known := false
		for _, c := range csvColumns {
			known = known || c == h
		}
		switch {
		case !known:
			return ImportResult{Errors: []ImportError{}}, httpx.Invalid("header", "unknown column %q; known columns: %s", h, strings.Join(csvColumns, ", "))
		case col[h] != 0:
			return ImportResult{Errors: []ImportError{}}, httpx.Invalid("header", "column %q appears twice", h)
		}
		col[h] = i + 1 // 0 means absent
	}
	if col["id"] == 0 {
		return ImportResult{Errors: []ImportError{}}, httpx.Invalid("header", "the id column is required")
	}
	cell := func(rec []string, name string) string {
		if i := col[name]; i > 0 && i <= len(rec) {
			return rec[i-1]
		}
		return ""
	}
	im := s.newImporter(ctx, appID)
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		line, _ := cr.FieldPos(0)
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			if errors.Is(pe.Err, csv.ErrFieldCount) {
				im.fail(pe.StartLine, "", fmt.Sprintf("the row has %d fields, the header has %d", len(rec), len(header)))
			} else {
				im.fail(pe.StartLine, "", "malformed CSV: "+pe.Err.Error())
			}
			continue
		}
		if err != nil {
			res, _ := im.finish()
			return res, readProblem(err, res)
		}
		in := UserInput{
			ID: cell(rec, "id"), Name: cell(rec, "name"), Email: cell(rec, "email"), Phone: cell(rec, "phone"),
			Locale: cell(rec, "locale"), Timezone: cell(rec, "timezone"), WebhookURL: cell(rec, "webhook_url"),
			Identities: Identities{WeChat: cell(rec, "wechat"), WeCom: cell(rec, "wecom"), DingTalk: cell(rec, "dingtalk"), QQ: cell(rec, "qq")},
		}
		if g := strings.TrimSpace(cell(rec, "groups")); g != "" {
			for _, part := range strings.Split(g, "|") {
				if part = strings.TrimSpace(part); part != "" {
					in.Groups = append(in.Groups, part)
				}
			}
		}
		if err := im.add(line, in); err != nil {
			res, _ := im.finish()
			return res, err
		}
	}
	return im.finish()
}

// maxNDJSONLine bounds one NDJSON line.
const maxNDJSONLine = 1 << 20

// ImportNDJSON imports users from newline-delimited JSON: one object per line
// with the PUT /v1/users/{id} fields plus "id". Blank lines are skipped.
func (s *Service) ImportNDJSON(ctx context.Context, appID string, r io.Reader) (ImportResult, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	im := s.newImporter(ctx, appID)
	sawLine := false
	var buf []byte
	for line := 1; ; line++ {
		buf = buf[:0]
		tooLong := false
		var err error
		for {
			var part []byte
			part, err = br.ReadSlice('\n')
			if len(buf)+len(part) <= maxNDJSONLine {
				buf = append(buf, part...)
			} else {
				tooLong = true
			}
			if !errors.Is(err, bufio.ErrBufferFull) {
				break
			}
		}
		if err != nil && !errors.Is(err, io.EOF) {
			res, _ := im.finish()
			return res, readProblem(err, res)
		}
		eof := errors.Is(err, io.EOF)
		text := bytes.TrimSpace(buf)
		switch {
		case tooLong:
			sawLine = true
			im.fail(line, "", fmt.Sprintf("the line is longer than %d bytes", maxNDJSONLine))
		case len(text) > 0:
			sawLine = true
			var in UserInput
			if perr := httpx.DecodeJSON(text, &in); perr != nil {
				im.failProblem(line, perr)
			} else if aerr := im.add(line, in); aerr != nil {
				res, _ := im.finish()
				return res, aerr
			}
		}
		if eof {
			break
		}
	}
	res, err := im.finish()
	if err == nil && !sawLine {
		return res, httpx.CodeMalformed.New("the NDJSON body is empty: send one user object per line")
	}
	return res, err
}

// readProblem turns a body read failure into a client problem that says how
// far the import got.
func readProblem(err error, res ImportResult) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if strings.Contains(err.Error(), "body size exceeds") || strings.Contains(err.Error(), "too large") {
		return httpx.CodeTooLarge.New("the import body exceeds %d bytes; %d rows were imported before the limit", httpx.StreamLimit, res.Imported)
	}
	return httpx.CodeMalformed.New("reading the body failed after %d imported rows: %v", res.Imported, err)
}
