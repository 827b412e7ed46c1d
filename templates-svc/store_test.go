package templatesvc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
	"herald.dev/platform/httpx"
	"herald.dev/platform/sqldb"
	"herald.dev/platform/sqldb/sqldbtest"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func simpleInput(code, subject string) Input {
	return Input{Code: code, Name: "T " + code, Category: "news", Variants: Variants{
		Email: &EmailVariant{Subject: subject, Text: "Hello {{.name}}"},
		SMS:   &SMSVariant{Text: "Hi {{.name}}"},
	}}
}

func TestStoreLifecycle(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := New(db, Options{})
		const app = "app_a"

		t1, err := s.Create(ctx, app, simpleInput("welcome", "Welcome {{.name}}"))
		sqldbtest.Must(t, err, "create")
		if t1.Version != 1 || !t1.VariablesDerived || len(t1.Variables) != 1 || t1.Variables[0].Name != "name" || !t1.Variables[0].Required {
			t.Fatalf("created %+v", t1)
		}
		if _, err := s.Create(ctx, app, simpleInput("welcome", "again")); !errors.Is(err, ErrExists) {
			t.Fatalf("duplicate create: %v, want ErrExists", err)
		}
		var p *httpx.Problem
		if _, err := s.Create(ctx, app, simpleInput("Bad", "x")); !errors.As(err, &p) || p.Status != 422 {
			t.Fatalf("bad code: %v", err)
		}

		in2 := simpleInput("welcome", "Welcome back {{.name}}")
		in2.Name = "Welcome v2"
		t2, err := s.Update(ctx, app, "welcome", in2, 1)
		sqldbtest.Must(t, err, "update")
		if t2.Version != 2 || t2.Name != "Welcome v2" || !t2.CreatedAt.Equal(t1.CreatedAt) {
			t.Fatalf("updated %+v (created %v)", t2, t1.CreatedAt)
		}
		if _, err := s.Update(ctx, app, "welcome", simpleInput("welcome", "stale"), 1); !errors.Is(err, ErrVersionConflict) {
			t.Fatalf("stale base: %v, want ErrVersionConflict", err)
		}
		if _, err := s.Update(ctx, app, "welcome", simpleInput("other", "x"), 0); !errors.As(err, &p) || p.Errors[0].Field != "code" {
			t.Fatalf("rename: %v", err)
		}
		got, err := s.Get(ctx, app, "welcome")
		sqldbtest.Must(t, err, "get")
		if got.Version != 2 || got.Variants.Email.Subject != "Welcome back {{.name}}" {
			t.Fatalf("get %+v", got)
		}
		v1, err := s.GetVersion(ctx, app, "welcome", 1)
		sqldbtest.Must(t, err, "get v1")
		if v1.Version != 1 || v1.Variants.Email.Subject != "Welcome {{.name}}" || v1.Name != "T welcome" {
			t.Fatalf("v1 %+v", v1)
		}
		if _, err := s.GetVersion(ctx, app, "welcome", 3); !errors.Is(err, ErrNotFound) {
			t.Fatalf("v3: %v", err)
		}

		info, err := s.Check(ctx, app, "welcome", map[string]any{"name": "Ada"})
		sqldbtest.Must(t, err, "check")
		if info.Version != 2 || info.Code != "welcome" || info.Category != "news" || joinChannels(info.Channels) != "email,sms" {
			t.Fatalf("check %+v", info)
		}
		var missing *contracts.MissingVariableError
		if _, err := s.Check(ctx, app, "welcome", nil); !errors.As(err, &missing) || missing.Variables[0] != "name" {
			t.Fatalf("check without data: %v", err)
		}
		c, err := s.Render(ctx, app, "welcome", 1, "", domain.ChannelEmail, map[string]any{"name": "Ada"})
		sqldbtest.Must(t, err, "render v1")
		if c.Subject != "Welcome Ada" || c.Text != "Hello Ada" {
			t.Fatalf("render v1 %+v", c)
		}

		_, err = s.Render(ctx, app, "welcome", 0, "", domain.ChannelEmail, map[string]any{})
		if retry, _ := contracts.Classify(err); !errors.As(err, &missing) || retry {
			t.Fatalf("render without data: %v (retry %v), want permanent MissingVariableError", err, retry)
		}
		_, err = s.Render(ctx, app, "welcome", 0, "", domain.ChannelWebhook, map[string]any{"name": "x"})
		if retry, _ := contracts.Classify(err); !errors.Is(err, ErrNoVariant) || retry {
			t.Fatalf("render webhook: %v (retry %v), want permanent ErrNoVariant", err, retry)
		}

		sqldbtest.Must(t, s.Delete(ctx, app, "welcome"), "delete")
		if err := s.Delete(ctx, app, "welcome"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second delete: %v", err)
		}
		if _, err := s.Get(ctx, app, "welcome"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("get deleted: %v", err)
		}
		if _, err := s.GetVersion(ctx, app, "welcome", 1); !errors.Is(err, ErrNotFound) {
			t.Fatalf("get deleted v1: %v", err)
		}
		if _, _, err := s.Versions(ctx, app, "welcome", 0, 0); !errors.Is(err, ErrNotFound) {
			t.Fatalf("versions of deleted: %v", err)
		}
		if _, err := s.Check(ctx, app, "welcome", map[string]any{"name": "x"}); !errors.Is(err, contracts.ErrTemplateNotFound) {
			t.Fatalf("check deleted: %v", err)
		}
		if _, err := s.Update(ctx, app, "welcome", simpleInput("welcome", "x"), 0); !errors.Is(err, ErrNotFound) {
			t.Fatalf("update deleted: %v", err)
		}
		_, err = s.Render(ctx, app, "welcome", 0, "", domain.ChannelEmail, map[string]any{"name": "x"})
		if retry, _ := contracts.Classify(err); !errors.Is(err, contracts.ErrTemplateNotFound) || retry {
			t.Fatalf("render latest of deleted: %v (retry %v), want permanent not found", err, retry)
		}
		// a pinned version (an accepted notification) still renders
		c, err = s.Render(ctx, app, "welcome", 2, "", domain.ChannelSMS, map[string]any{"name": "Ada"})
		sqldbtest.Must(t, err, "render pinned version of deleted")
		if c.Text != "Hi Ada" {
			t.Fatalf("pinned %+v", c)
		}

		t3, err := s.Create(ctx, app, simpleInput("welcome", "Reborn {{.name}}"))
		sqldbtest.Must(t, err, "re-create")
		if t3.Version != 3 || !t3.CreatedAt.After(t1.CreatedAt.Add(-time.Millisecond)) {
			t.Fatalf("re-created %+v", t3)
		}
		vs, next, err := s.Versions(ctx, app, "welcome", 2, 0)
		sqldbtest.Must(t, err, "versions")
		if len(vs) != 2 || vs[0].Version != 3 || vs[1].Version != 2 || next != 2 || vs[1].Name != "Welcome v2" {
			t.Fatalf("versions page 1 %+v next %d", vs, next)
		}
		vs, next, err = s.Versions(ctx, app, "welcome", 2, next)
		sqldbtest.Must(t, err, "versions page 2")
		if len(vs) != 1 || vs[0].Version != 1 || next != 0 || joinChannels(vs[0].Channels) != "email,sms" {
			t.Fatalf("versions page 2 %+v next %d", vs, next)
		}
		info, err = s.Check(ctx, app, "welcome", map[string]any{"name": "x"})
		if err != nil || info.Version != 3 {
			t.Fatalf("check re-created: %+v %v", info, err)
		}
	})
}

func TestStoreListAndTenancy(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := New(db, Options{})
		for _, code := range []string{"c", "a", "e", "b", "d"} {
			in := simpleInput(code, "S")
			if code == "e" {
				in.Category = "billing"
			}
			_, err := s.Create(ctx, "app_a", in)
			sqldbtest.Must(t, err, "create %s", code)
		}
		sqldbtest.Must(t, s.Delete(ctx, "app_a", "d"), "delete d")
		_, err := s.Create(ctx, "app_b", simpleInput("a", "B's a"))
		sqldbtest.Must(t, err, "create in b")

		var codes []string
		cursor := ""
		for pages := 0; ; pages++ {
			items, next, err := s.List(ctx, "app_a", ListFilter{}, 2, cursor)
			sqldbtest.Must(t, err, "list")
			for _, it := range items {
				codes = append(codes, it.Code)
				if it.Version != 1 || joinChannels(it.Channels) != "email,sms" {
					t.Fatalf("summary %+v", it)
				}
			}
			if next == "" {
				break
			}
			cursor = next
			if pages > 5 {
				t.Fatal("pagination does not end")
			}
		}
		if fmt.Sprint(codes) != "[a b c e]" {
			t.Fatalf("listed %v", codes)
		}
		items, _, err := s.List(ctx, "app_a", ListFilter{Category: "billing"}, 10, "")
		sqldbtest.Must(t, err, "list by category")
		if len(items) != 1 || items[0].Code != "e" {
			t.Fatalf("billing %+v", items)
		}

		// app B sees only its own "a", and none of A's templates
		items, _, err = s.List(ctx, "app_b", ListFilter{}, 10, "")
		sqldbtest.Must(t, err, "list b")
		if len(items) != 1 || items[0].Code != "a" {
			t.Fatalf("b lists %+v", items)
		}
		got, err := s.Get(ctx, "app_b", "a")
		if err != nil || got.Variants.Email.Subject != "B's a" || got.Version != 1 {
			t.Fatalf("b's a: %+v %v", got, err)
		}
		for name, err := range map[string]error{
			"get":    func() error { _, err := s.Get(ctx, "app_b", "c"); return err }(),
			"update": func() error { _, err := s.Update(ctx, "app_b", "c", simpleInput("c", "x"), 0); return err }(),
			"delete": s.Delete(ctx, "app_b", "c"),
			"check":  func() error { _, err := s.Check(ctx, "app_b", "c", map[string]any{"name": "x"}); return err }(),
			"render": func() error {
				_, err := s.Render(ctx, "app_b", "c", 1, "", domain.ChannelEmail, map[string]any{"name": "x"})
				return err
			}(),
			"versions": func() error { _, _, err := s.Versions(ctx, "app_b", "c", 0, 0); return err }(),
		} {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("app b %s of a's template: %v, want not found", name, err)
			}
		}
		if _, err := s.Get(ctx, "app_a", "c"); err != nil {
			t.Fatalf("a's c after b's attempts: %v", err)
		}
	})
}

func TestConcurrentWrites(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := New(db, Options{})
		const app = "app_c"
		_, err := s.Create(ctx, app, simpleInput("hot", "v1"))
		sqldbtest.Must(t, err, "create")

		const workers, each = 8, 4
		var wg sync.WaitGroup
		versions := make(chan int, workers*each)
		errs := make(chan error, workers*each)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; i < each; i++ {
					t, err := s.Update(ctx, app, "hot", simpleInput("hot", fmt.Sprintf("w%d-%d", w, i)), 0)
					if err != nil {
						errs <- err
						return
					}
					versions <- t.Version
				}
			}(w)
		}
		wg.Wait()
		close(versions)
		close(errs)
		for err := range errs {
			t.Fatalf("concurrent update: %v", err)
		}
		var got []int
		for v := range versions {
			got = append(got, v)
		}
		sort.Ints(got)
		for i, v := range got {
			if v != i+2 {
				t.Fatalf("versions returned %v: want 2..%d once each", got, workers*each+1)
			}
		}
		var n, max, distinct int
		sqldbtest.Must(t, db.R.QueryRow(`SELECT COUNT(*), MAX(version), COUNT(DISTINCT version) FROM template_versions WHERE app_id = ? AND code = ?`, app, "hot").
			Scan(&n, &max, &distinct), "count")
		var latest int
		sqldbtest.Must(t, db.R.QueryRow(`SELECT latest_version FROM templates WHERE app_id = ? AND code = ?`, app, "hot").Scan(&latest), "latest")
		if want := workers*each + 1; n != want || max != want || distinct != want || latest != want {
			t.Fatalf("stored %d versions (max %d, distinct %d, latest %d), want %d", n, max, distinct, latest, want)
		}
		// every stored version decodes and names the subject its writer sent
		for v := 2; v <= max; v++ {
			tv, err := s.GetVersion(ctx, app, "hot", v)
			sqldbtest.Must(t, err, "version %d", v)
			if tv.Variants.Email.Subject == "v1" {
				t.Fatalf("version %d holds the original body", v)
			}
		}

		// racing creates of a new code: exactly one wins
		for round, prep := range []func(){
			func() {},
			func() { sqldbtest.Must(t, s.Delete(ctx, app, "race"), "delete race") }, // racing re-creates
		} {
			prep()
			var ok, exists int
			var mu sync.Mutex
			var wg sync.WaitGroup
			for w := 0; w < 6; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := s.Create(ctx, app, simpleInput("race", "x"))
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err == nil:
						ok++
					case errors.Is(err, ErrExists):
						exists++
					default:
						t.Errorf("create race: %v", err)
					}
				}()
			}
			wg.Wait()
			if ok != 1 || exists != 5 {
				t.Fatalf("round %d: %d creates succeeded, %d conflicted; want 1 and 5", round, ok, exists)
			}
			tr, err := s.Get(ctx, app, "race")
			sqldbtest.Must(t, err, "get race")
			if tr.Version != round+1 {
				t.Fatalf("round %d: race at version %d", round, tr.Version)
			}
		}
	})
}

func TestCachesAcrossInstances(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		clockA, clockB := newClock(), newClock()
		a := New(db, Options{Now: clockA.Now, LatestTTL: 5 * time.Second})
		b := New(db, Options{Now: clockB.Now, LatestTTL: 5 * time.Second})
		data := map[string]any{"name": "Ada"}
		const app = "app_x"

		// negative entries expire too
		if _, err := b.Check(ctx, app, "promo", data); !errors.Is(err, ErrNotFound) {
			t.Fatalf("b check before create: %v", err)
		}
		_, err := a.Create(ctx, app, simpleInput("promo", "One {{.name}}"))
		sqldbtest.Must(t, err, "create")
		if info, err := a.Check(ctx, app, "promo", data); err != nil || info.Version != 1 {
			t.Fatalf("a sees its own create at once: %+v %v", info, err)
		}
		if _, err := b.Check(ctx, app, "promo", data); !errors.Is(err, ErrNotFound) {
			t.Fatalf("b within TTL: %v (cached miss expected)", err)
		}
		clockB.Advance(6 * time.Second)
		if info, err := b.Check(ctx, app, "promo", data); err != nil || info.Version != 1 {
			t.Fatalf("b after TTL: %+v %v", info, err)
		}

		_, err = a.Update(ctx, app, "promo", simpleInput("promo", "Two {{.name}}"), 0)
		sqldbtest.Must(t, err, "update")
		c, err := a.Render(ctx, app, "promo", 0, "", domain.ChannelEmail, data)
		if err != nil || c.Subject != "Two Ada" {
			t.Fatalf("a renders its update at once: %+v %v", c, err)
		}
		c, _ = b.Render(ctx, app, "promo", 0, "", domain.ChannelEmail, data)
		if c.Subject != "One Ada" {
			t.Fatalf("b within TTL renders %q, want the cached v1", c.Subject)
		}
		clockB.Advance(6 * time.Second)
		c, _ = b.Render(ctx, app, "promo", 0, "", domain.ChannelEmail, data)
		if c.Subject != "Two Ada" {
			t.Fatalf("b after TTL renders %q", c.Subject)
		}

		sqldbtest.Must(t, a.Delete(ctx, app, "promo"), "delete")
		if _, err := a.Check(ctx, app, "promo", data); !errors.Is(err, ErrNotFound) {
			t.Fatalf("a after delete: %v", err)
		}
		clockB.Advance(6 * time.Second)
		if _, err := b.Check(ctx, app, "promo", data); !errors.Is(err, ErrNotFound) {
			t.Fatalf("b after delete and TTL: %v", err)
		}

		// parsed versions are cached: v2 renders even with its row gone
		if _, err := db.W.Exec(`DELETE FROM template_versions WHERE app_id = ? AND code = ? AND version = 2`, app, "promo"); err != nil {
			t.Fatal(err)
		}
		if c, err := a.Render(ctx, app, "promo", 2, "", domain.ChannelSMS, data); err != nil || c.Text != "Hi Ada" {
			t.Fatalf("cached v2: %+v %v", c, err)
		}
	})
}

func TestPreviewSamples(t *testing.T) {
	db := sqldbtest.SQLite(t)
	ctx := context.Background()
	s := New(db, Options{})
	_, err := s.Create(ctx, "app", sampleInput())
	sqldbtest.Must(t, err, "create")
	res, err := s.Preview(ctx, "app", "order.shipped", PreviewRequest{Data: map[string]any{"name": "Lin"}, Locale: "zh-CN"})
	sqldbtest.Must(t, err, "preview")
	if res.Version != 1 || len(res.Channels) != 8 || res.Data["order_id"] != json.Number("1001") || res.Data["name"] != "Lin" {
		t.Fatalf("preview %+v", res)
	}
	if e := res.Channels[domain.ChannelEmail]; e.Locale != "zh-CN" || e.Subject != "订单 1001 已发货" {
		t.Fatalf("email %+v", e)
	}
	if e := res.Channels[domain.ChannelInApp]; e.Locale != "default" {
		t.Fatalf("inapp %+v", e)
	}
	res, err = s.Preview(ctx, "app", "order.shipped", PreviewRequest{Channel: domain.ChannelSMS})
	sqldbtest.Must(t, err, "preview sms")
	if len(res.Channels) != 1 || res.Channels[domain.ChannelSMS].Text != "Order 1001 shipped" {
		t.Fatalf("sms preview %+v", res)
	}
	var p *httpx.Problem
	if _, err := s.Preview(ctx, "app", "order.shipped", PreviewRequest{Channel: domain.ChannelWebhook}); !errors.As(err, &p) || p.Errors[0].Field != "channel" {
		t.Fatalf("webhook preview: %v", err)
	}
	if _, err := s.Preview(ctx, "app", "order.shipped", PreviewRequest{Version: 7}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("preview v7: %v", err)
	}
}

// TestReadsDuringWrites hammers Check and Render while versions are written:
// a writer always reads its own write, each reader sees versions in order,
// and every rendering matches the version it came from.
func TestReadsDuringWrites(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := New(db, Options{CacheSize: 64})
		const app, writes = "app_rw", 8
		_, err := s.Create(ctx, app, simpleInput("live", "v1 {{.name}}"))
		sqldbtest.Must(t, err, "create")
		data := map[string]any{"name": "Ada"}
		done := make(chan struct{})
		var wg sync.WaitGroup
		for r := 0; r < 3; r++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				last, lastSubject := 0, 0
				for {
					select {
					case <-done:
						return
					default:
					}
					info, err := s.Check(ctx, app, "live", data)
					if err != nil {
						t.Errorf("check: %v", err)
						return
					}
					if info.Version < last || info.Version > writes+1 {
						t.Errorf("check saw version %d after %d", info.Version, last)
						return
					}
					last = info.Version
					c, err := s.Render(ctx, app, "live", 0, "", domain.ChannelEmail, data)
					if err != nil {
						t.Errorf("render: %v", err)
						return
					}
					var n int
					if _, err := fmt.Sscanf(c.Subject, "v%d Ada", &n); err != nil || n < lastSubject {
						t.Errorf("render subject %q after v%d", c.Subject, lastSubject)
						return
					}
					lastSubject = n
				}
			}()
		}
		for v := 2; v <= writes+1; v++ {
			tv, err := s.Update(ctx, app, "live", simpleInput("live", fmt.Sprintf("v%d {{.name}}", v)), 0)
			sqldbtest.Must(t, err, "update")
			info, err := s.Check(ctx, app, "live", data)
			if err != nil || info.Version != tv.Version {
				t.Fatalf("writer reads %+v %v after writing v%d", info, err, tv.Version)
			}
		}
		close(done)
		wg.Wait()
	})
}
