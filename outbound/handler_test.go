package outbound

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
	"herald.dev/platform/messages"
	"herald.dev/platform/queue"
	"herald.dev/platform/sqldb"
	"herald.dev/platform/sqldb/sqldbtest"
)

func TestNewValidates(t *testing.T) {
	db := sqldbtest.SQLite(t)
	e := newEnv(t, db, domain.ChannelInApp)
	d := e.deps
	d.Store = nil
	if _, err := New(d); err == nil {
		t.Fatal("New without a store succeeded")
	}
	d = e.deps
	d.Fallback = map[string][]domain.Channel{"*": {"pigeon"}}
	if _, err := New(d); err == nil || !strings.Contains(err.Error(), "pigeon") {
		t.Fatalf("bad fallback channel: %v", err)
	}
	d = e.deps
	d.Config.Workers = 0
	d.Config.ChannelWorkers = map[string]int{"inapp": 3}
	h, err := New(d)
	if err != nil {
		t.Fatal(err)
	}
	if h.pools[domain.ChannelInApp].workers != 3 || h.cfg.Workers != 16 {
		t.Fatalf("workers: pool %d, default %d", h.pools[domain.ChannelInApp].workers, h.cfg.Workers)
	}
	if len(h.defaults) != 1 || h.defaults[0] != domain.ChannelInApp {
		t.Fatalf("default channels %v", h.defaults)
	}
}

// TestFanout covers the main flow on both dialects: users, a group and a
// direct address, deduplicated, routed per channel, recorded, done.
func TestFanout(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db, domain.ChannelInApp, domain.ChannelEmail)
		e.dir.add(&contracts.Profile{UserID: "u1", Email: "u1@x.io", Locale: "fr"})
		e.dir.add(&contracts.Profile{UserID: "u2", Email: "u2@x.io"})
		e.dir.add(&contracts.Profile{UserID: "u3"}) // no email
		e.dir.groups["g1"] = []string{"u2", "u3"}
		e.start()
		n := e.accept([]domain.Recipient{{UserID: "u1"}, {UserID: "u2"}, {GroupID: "g1"}, {Email: "Ext@Example.com"}},
			withChannels(domain.ChannelInApp, domain.ChannelEmail))
		done := e.waitStatus(n.ID, domain.MessageDone)
		if done.DeliveriesTotal != 8 {
			t.Fatalf("deliveries_total = %d, want 8 (4 recipients x 2 channels)", done.DeliveriesTotal)
		}
		ds := e.deliveries(n.ID)
		want := map[string]domain.DeliveryStatus{
			"u1/inapp": domain.DeliveryDelivered, "u1/email": domain.DeliverySent,
			"u2/inapp": domain.DeliveryDelivered, "u2/email": domain.DeliverySent,
			"u3/inapp": domain.DeliveryDelivered, "u3/email": domain.DeliverySkipped,
			"email:ext@example.com/inapp": domain.DeliverySkipped, "email:ext@example.com/email": domain.DeliverySent,
		}
		if len(ds) != len(want) {
			t.Fatalf("rows %v, want %v", keys(ds), want)
		}
		for k, st := range want {
			d := ds[k]
			if d == nil || d.Status != st {
				t.Fatalf("%s = %+v, want %s", k, d, st)
			}
			if d.ID != messages.DeliveryID(n.ID, d.Recipient, d.Channel) {
				t.Fatalf("%s: id %s is not the deterministic id", k, d.ID)
			}
		}
		if ds["u3/email"].Error != "no email address" || ds["email:ext@example.com/inapp"].Error != "no inapp address" {
			t.Fatalf("skip reasons: %q, %q", ds["u3/email"].Error, ds["email:ext@example.com/inapp"].Error)
		}
		if d := ds["u1/email"]; d.Address != "u1@x.io" || d.Attempts != 1 || d.SentAt.IsZero() || d.ProviderID == "" {
			t.Fatalf("u1/email row %+v", d)
		}
		_, byID := e.senders[domain.ChannelEmail].snapshot()
		if len(byID) != 3 {
			t.Fatalf("email sends %v, want 3", byID)
		}
		for id, c := range byID {
			if c != 1 {
				t.Fatalf("email %s sent %d times", id, c)
			}
		}
		calls, _ := e.senders[domain.ChannelEmail].snapshot()
		for _, c := range calls {
			if c.d.UserID == "u1" && (c.d.Content.Subject != "welcome v1 fr" || c.d.Profile == nil || c.d.Attempt != 1) {
				t.Fatalf("u1 email delivery: %+v", c.d)
			}
			if c.d.Address == "ext@example.com" || c.d.Address == "Ext@Example.com" {
				continue
			}
		}
		// one render per (channel, locale), not per recipient
		if r := e.rend.renders.Load(); r != 4 {
			t.Fatalf("renders = %d, want 4 ((inapp,email) x (fr, \"\"))", r)
		}
		if got := e.track.types(ds["u1/inapp"].ID); strings.Join(got, ",") != "queued,delivered" {
			t.Fatalf("u1/inapp events %v", got)
		}
		// the done event follows the status change
		waitFor(t, "the done event", func() bool { return e.track.count(contracts.EventDone) == 1 })
	})
}

func TestUnknownRecipientsAndPreferences(t *testing.T) {
	db := sqldbtest.SQLite(t)
	e := newEnv(t, db, domain.ChannelInApp, domain.ChannelEmail)
	e.dir.add(&contracts.Profile{UserID: "out", Email: "o@x.io", OptOut: map[string]map[domain.Channel]bool{"billing": {domain.ChannelEmail: true}}})
	e.dir.add(&contracts.Profile{UserID: "unsub", Email: "u@x.io", Unsubscribed: map[string]bool{"billing": true}})
	e.dir.add(&contracts.Profile{UserID: "in", Email: "i@x.io",
		OptOut: map[string]map[domain.Channel]bool{"*": {domain.ChannelEmail: true}},
		OptIn:  map[string]map[domain.Channel]bool{"billing": {domain.ChannelEmail: true}}})
	e.start()
	n := e.accept([]domain.Recipient{{UserID: "ghost"}, {GroupID: "nogroup"}, {UserID: "out"}, {UserID: "unsub"}, {UserID: "in"}},
		withChannels(domain.ChannelInApp, domain.ChannelEmail))
	done := e.waitStatus(n.ID, domain.MessageDone)
	ds := e.deliveries(n.ID)
	check := func(key string, st domain.DeliveryStatus, reason string) {
		t.Helper()
		d := ds[key]
		if d == nil || d.Status != st || d.Error != reason {
			t.Fatalf("%s = %+v, want %s %q (rows %v)", key, d, st, reason, keys(ds))
		}
	}
	check("ghost/inapp", domain.DeliverySkipped, "unknown user")
	check("group:nogroup/inapp", domain.DeliverySkipped, "unknown group nogroup")
	check("out/email", domain.DeliverySkipped, "opted out of billing on email")
	check("out/inapp", domain.DeliveryDelivered, "")
	check("unsub/inapp", domain.DeliverySkipped, "unsubscribed from category billing")
	check("unsub/email", domain.DeliverySkipped, "unsubscribed from category billing")
	check("in/email", domain.DeliverySent, "")
	if len(ds) != 8 || done.DeliveriesTotal != 8 {
		t.Fatalf("rows %v total %d", keys(ds), done.DeliveriesTotal)
	}
	if _, ok := ds["ghost/email"]; ok {
		t.Fatal("unknown user got a row per channel; want one")
	}
	if got := e.track.types(ds["ghost/inapp"].ID); len(got) != 1 || got[0] != contracts.EventSkipped {
		t.Fatalf("ghost events %v", got)
	}
}

func TestChannelsResolution(t *testing.T) {
	db := sqldbtest.SQLite(t)
	e := newEnv(t, db, domain.ChannelInApp, domain.ChannelEmail, domain.ChannelSMS)
	e.rend.channels = []domain.Channel{domain.ChannelInApp, domain.ChannelSMS}
	e.rend.broken = map[domain.Channel]bool{domain.ChannelSMS: true}
	e.dir.add(&contracts.Profile{UserID: "u1", Email: "u1@x.io", Phone: "+100"})
	e.deps.DefaultChannels = []domain.Channel{domain.ChannelEmail}
	e.start()
	// template channels (sms fails to render: permanent failure)
	a := e.accept(users("u1"))
	// requested channel without a variant: skipped; unconfigured channel: failed
	b := e.accept(users("u1"), withChannels(domain.ChannelEmail, domain.ChannelWeCom))
	// no template: inline content per channel decides the channels
	c := e.accept(users("u1"), func(n *messages.Notification) {
		n.TemplateCode, n.TemplateVersion = "", 0
		n.Payload.Content = map[string]domain.Content{"sms": {Text: "inline sms"}}
	})
	// no template, only "*": default channels
	d := e.accept(users("u1"), func(n *messages.Notification) {
		n.TemplateCode, n.TemplateVersion = "", 0
		n.Payload.Content = map[string]domain.Content{"*": {Subject: "any", Text: "inline any"}}
	})
	for _, n := range []*messages.Notification{a, b, c, d} {
		e.waitStatus(n.ID, domain.MessageDone)
	}
	ra, rb, rc, rd := e.deliveries(a.ID), e.deliveries(b.ID), e.deliveries(c.ID), e.deliveries(d.ID)
	if len(ra) != 2 || ra["u1/inapp"].Status != domain.DeliveryDelivered || ra["u1/sms"].Status != domain.DeliveryFailed ||
		!strings.Contains(ra["u1/sms"].Error, "template syntax error") {
		t.Fatalf("template channels: %v %+v", keys(ra), ra["u1/sms"])
	}
	if ra["u1/sms"].Attempts != 0 {
		t.Fatal("a render failure was sent")
	}
	if rb["u1/email"].Status != domain.DeliverySkipped || rb["u1/email"].Error != "template welcome has no email variant" {
		t.Fatalf("no variant: %+v", rb["u1/email"])
	}
	// u1 has no wecom identity: the address check comes before the sender check
	if rb["u1/wecom"].Status != domain.DeliverySkipped || rb["u1/wecom"].Error != "no wecom address" {
		t.Fatalf("no address: %+v", rb["u1/wecom"])
	}
	if len(rc) != 1 || rc["u1/sms"].Status != domain.DeliverySent {
		t.Fatalf("inline channels: %v", keys(rc))
	}
	if len(rd) != 1 || rd["u1/email"].Status != domain.DeliverySent {
		t.Fatalf("default channels: %v", keys(rd))
	}
	calls, _ := e.senders[domain.ChannelSMS].snapshot()
	if len(calls) != 1 || calls[0].d.Content.Text != "inline sms" {
		t.Fatalf("inline content: %+v", calls)
	}
}

func TestNotConfiguredChannel(t *testing.T) {
	db := sqldbtest.SQLite(t)
	e := newEnv(t, db, domain.ChannelInApp)
	e.dir.add(&contracts.Profile{UserID: "u1", Identities: map[string]string{"wecom": "w1"}})
	e.rend.channels = append(e.rend.channels, domain.ChannelWeCom)
	e.start()
	n := e.accept(users("u1"), withChannels(domain.ChannelWeCom))
	e.waitStatus(n.ID, domain.MessageDone)
	d := e.deliveries(n.ID)["u1/wecom"]
	if d.Status != domain.DeliveryFailed || d.Error != "channel wecom is not configured" || d.Address != "w1" {
		t.Fatalf("%+v", d)
	}
	// a failure found during the fan-out follows the fallback chain too
	fb := e.accept(users("u1"), withChannels(domain.ChannelWeCom), func(n *messages.Notification) {
		n.Payload.Fallback = []domain.Channel{domain.ChannelWeCom, domain.ChannelInApp}
	})
	e.waitStatus(fb.ID, domain.MessageDone)
	rows := e.deliveries(fb.ID)
	if c := rows["u1/inapp"]; c == nil || c.Status != domain.DeliveryDelivered || c.ParentID != rows["u1/wecom"].ID {
		t.Fatalf("fallback rows %v: %+v", keys(rows), c)
	}
}

func TestExpiredAndScheduled(t *testing.T) {
	db := sqldbtest.SQLite(t)
	e := newEnv(t, db, domain.ChannelInApp)
	e.dir.add(&contracts.Profile{UserID: "u1"})
	e.start()
	exp := e.accept(users("u1"), func(n *messages.Notification) { n.ExpiresAt = e.clock.Now().Add(-time.Second) })
	sendAt := e.clock.Now().Add(time.Hour).Truncate(time.Millisecond)
	sch := e.accept(users("u1"), func(n *messages.Notification) { n.SendAt = sendAt })
	e.waitStatus(exp.ID, domain.MessageExpired)
	n := e.waitStatus(sch.ID, domain.MessageScheduled)
	if !n.NextAt.Equal(sendAt) {
		t.Fatalf("scheduled next_at = %v, want send_at %v", n.NextAt, sendAt)
	}
	if len(e.deliveries(exp.ID)) != 0 || e.senders[domain.ChannelInApp].count.Load() != 0 {
		t.Fatal("expired or scheduled message was sent")
	}
	waitFor(t, "the expired event", func() bool { return e.track.count(contracts.EventExpired) == 1 })
	e.clock.advance(time.Hour + time.Second) // the outbox sweeper publishes it now
	e.waitStatus(sch.ID, domain.MessageDone)
	if d := e.deliveries(sch.ID)["u1/inapp"]; d == nil || d.Status != domain.DeliveryDelivered {
		t.Fatalf("scheduled delivery %+v", d)
	}
}

// TestOutboxSweepPublishesUnpublished: accepted but never published (crash
// between commit and publish, or a full lane) is found by the outbox sweep.
func TestOutboxSweepPublishesUnpublished(t *testing.T) {
	db := sqldbtest.SQLite(t)
	e := newEnv(t, db, domain.ChannelInApp)
	e.dir.add(&contracts.Profile{UserID: "u1"})
	n := e.notification(users("u1"))
	n.NextAt = e.clock.Now().Add(-time.Millisecond)
	if _, err := e.store.Accept(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	e.start()
	e.waitStatus(n.ID, domain.MessageDone)
}

func TestQuietHours(t *testing.T) {
	db := sqldbtest.SQLite(t)
	e := newEnv(t, db, domain.ChannelInApp)
	// 2026-03-02 23:00 UTC, inside 22:00-07:00 quiet hours
	e.clock.fixed = time.Date(2026, 3, 2, 23, 0, 0, 0, time.UTC)
	quiet := &contracts.QuietHours{Start: 22 * 60, End: 7 * 60}
	e.dir.add(&contracts.Profile{UserID: "sleepy", Quiet: quiet, Timezone: "UTC"})
	e.dir.add(&contracts.Profile{UserID: "awake"})
	e.start()
	low := e.accept(users("sleepy", "awake"))
	high := e.accept(users("sleepy"), withPriority(domain.PriorityHigh))
	e.waitStatus(high.ID, domain.MessageDone)
	waitFor(t, "the awake user's delivery", func() bool {
		d := e.deliveries(low.ID)["awake/inapp"]
		return d != nil && d.Status == domain.DeliveryDelivered
	})
	var d *messages.Delivery
	waitFor(t, "the deferred row", func() bool { d = e.deliveries(low.ID)["sleepy/inapp"]; return d != nil })
	wantEnd := time.Date(2026, 3, 3, 7, 0, 0, 0, time.UTC)
	if d.Status != domain.DeliveryPending || !d.NextAt.Equal(wantEnd) {
		t.Fatalf("deferred row %+v, want pending until %v", d, wantEnd)
	}
	if e.status(low.ID) != domain.MessageProcessing {
		t.Fatalf("message with a deferred delivery is %s", e.status(low.ID))
	}
	waitFor(t, "the scheduled event", func() bool { return len(e.track.types(d.ID)) > 0 }) // tracked just after the write
	if got := e.track.types(d.ID); len(got) != 1 || got[0] != contracts.EventScheduled {
		t.Fatalf("deferred events %v", got)
	}
	e.clock.advance(8*time.Hour + 3*time.Second) // past 07:00 and the sweeper's grace
	e.waitStatus(low.ID, domain.MessageDone)
	d = e.deliveries(low.ID)["sleepy/inapp"]
	if d.Status != domain.DeliveryDelivered || d.Attempts != 1 {
		t.Fatalf("after quiet hours: %+v", d)
	}
	if _, byID := e.senders[domain.ChannelInApp].snapshot(); byID[d.ID] != 1 {
		t.Fatalf("sent %d times", byID[d.ID])
	}
}

func TestRetries(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db, domain.ChannelEmail)
		for _, u := range []string{"flaky", "perm", "down"} {
			e.dir.add(&contracts.Profile{UserID: u, Email: u + "@x.io"})
		}
		e.senders[domain.ChannelEmail].behave = func(d *contracts.Delivery, n int) error {
			switch {
			case d.UserID == "flaky" && n <= 2:
				return contracts.Retryable("smtp 451", errors.New("try later"), 0)
			case d.UserID == "perm":
				return contracts.Permanent("smtp 550", errors.New("no such mailbox"))
			case d.UserID == "down":
				return errors.New("connection refused") // unclassified: retryable
			}
			return nil
		}
		e.start()
		n := e.accept(users("flaky", "perm", "down"), withChannels(domain.ChannelEmail))
		e.waitStatus(n.ID, domain.MessageDone)
		ds := e.deliveries(n.ID)
		_, byID := e.senders[domain.ChannelEmail].snapshot()
		if d := ds["flaky/email"]; d.Status != domain.DeliverySent || d.Attempts != 3 || byID[d.ID] != 3 {
			t.Fatalf("flaky: %+v sent %d", d, byID[d.ID])
		}
		if got := e.track.types(ds["flaky/email"].ID); strings.Join(got, ",") != "queued,retrying,retrying,sent" {
			t.Fatalf("flaky events %v", got)
		}
		if d := ds["perm/email"]; d.Status != domain.DeliveryFailed || d.Attempts != 1 || byID[d.ID] != 1 ||
			!strings.Contains(d.Error, "no such mailbox") {
			t.Fatalf("perm: %+v sent %d", d, byID[d.ID])
		}
		if d := ds["down/email"]; d.Status != domain.DeliveryFailed || d.Attempts != 3 || byID[d.ID] != 3 ||
			!strings.Contains(d.Error, "gave up after 3 attempts") {
			t.Fatalf("down: %+v sent %d", d, byID[d.ID])
		}
	})
}

func TestRetryAfterAndBackoff(t *testing.T) {
	db := sqldbtest.SQLite(t)
	e := newEnv(t, db, domain.ChannelSMS)
	e.clock.fixed = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	e.dir.add(&contracts.Profile{UserID: "u1", Phone: "+100"})
	release := make(chan struct{})
	e.senders[domain.ChannelSMS].behave = func(d *contracts.Delivery, n int) error {
		if n == 1 {
			return contracts.Retryable("429", errors.New("rate limited"), 300*time.Millisecond)
		}
		<-release
		return nil
	}
	e.start()
	n := e.accept(users("u1"), withChannels(domain.ChannelSMS))
	var d *messages.Delivery
	waitFor(t, "the retry row", func() bool {
		d = e.deliveries(n.ID)["u1/sms"]
		return d != nil && d.Status == domain.DeliveryQueued
	})
	// jitter is capped at BackoffMax (20ms): the vendor's 300ms wins
	if want := e.clock.Now().Add(300 * time.Millisecond); !d.NextAt.Equal(want) || d.Attempts != 1 || !strings.Contains(d.Error, "rate limited") {
		t.Fatalf("retry row %+v, want next_at %v", d, want)
	}
	close(release)
	e.waitStatus(n.ID, domain.MessageDone)

	h := e.h
	for attempt := 1; attempt <= 12; attempt++ {
		ceil := min(h.cfg.BackoffBase<<(attempt-1), h.cfg.BackoffMax)
		for i := 0; i < 50; i++ {
			if b := h.backoff(attempt, 0); b < time.Millisecond || b > ceil {
				t.Fatalf("backoff(%d) = %v, want within [1ms, %v]", attempt, b, ceil)
			}
		}
	}
	if b := h.backoff(1, time.Hour); b != time.Hour {
		t.Fatalf("Retry-After not honoured: %v", b)
	}
}

func TestRetryBySweeper(t *testing.T) {
	// A retry beyond RetryTimerMax is left to the retry sweeper.
	db := sqldbtest.SQLite(t)
	e := newEnv(t, db, domain.ChannelEmail)
	e.deps.Tuning.RetryTimerMax = time.Millisecond
	e.deps.Config.BackoffBase, e.deps.Config.BackoffMax = time.Hour, time.Hour
	e.dir.add(&contracts.Profile{UserID: "u1", Email: "u1@x.io"})
	e.senders[domain.ChannelEmail].behave = func(d *contracts.Delivery, n int) error {
		if n == 1 {
			return contracts.Retryable("busy", nil, 2*time.Hour)
		}
		return nil
	}
	e.start()
	n := e.accept(users("u1"), withChannels(domain.ChannelEmail))
	waitFor(t, "the retry row", func() bool {
		d := e.deliveries(n.ID)["u1/email"]
		return d != nil && d.Status == domain.DeliveryQueued
	})
	if e.h.Stats().Timers != 0 {
		t.Fatal("a 2h retry armed an in-memory timer")
	}
	e.clock.advance(2*time.Hour + 3*time.Second)
	e.waitStatus(n.ID, domain.MessageDone)
	if d := e.deliveries(n.ID)["u1/email"]; d.Status != domain.DeliverySent || d.Attempts != 2 {
		t.Fatalf("%+v", d)
	}
}

func TestFallbackChain(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db, domain.ChannelEmail, domain.ChannelSMS, domain.ChannelInApp)
		e.deps.Fallback = map[string][]domain.Channel{"alerts": {domain.ChannelEmail, domain.ChannelInApp}}
		e.dir.add(&contracts.Profile{UserID: "u1", Email: "u1@x.io", Phone: "+100"})
		e.dir.add(&contracts.Profile{UserID: "u2", Email: "u2@x.io"}) // no phone: sms is skipped, chain continues
		e.senders[domain.ChannelEmail].behave = func(d *contracts.Delivery, n int) error {
			return contracts.Permanent("bounce", errors.New("mailbox full"))
		}
		e.start()
		// payload chain: email -> sms -> inapp
		n := e.accept(users("u1", "u2"), withChannels(domain.ChannelEmail), func(n *messages.Notification) {
			n.Payload.Fallback = []domain.Channel{domain.ChannelEmail, domain.ChannelSMS, domain.ChannelInApp}
		})
		// category chain: email -> inapp
		c := e.accept(users("u1"), withChannels(domain.ChannelEmail), func(n *messages.Notification) { n.Category = "alerts" })
		done := e.waitStatus(n.ID, domain.MessageDone)
		ds := e.deliveries(n.ID)
		mail1, sms1 := ds["u1/email"], ds["u1/sms"]
		if mail1.Status != domain.DeliveryFailed || sms1 == nil || sms1.Status != domain.DeliverySent || sms1.ParentID != mail1.ID {
			t.Fatalf("u1 chain: email %+v sms %+v", mail1, sms1)
		}
		if sms1.ID != messages.DeliveryID(n.ID, "u1", domain.ChannelSMS) {
			t.Fatal("fallback id is not deterministic")
		}
		if _, ok := ds["u1/inapp"]; ok {
			t.Fatal("chain went on after a successful fallback")
		}
		mail2, sms2, in2 := ds["u2/email"], ds["u2/sms"], ds["u2/inapp"]
		if sms2 == nil || sms2.Status != domain.DeliverySkipped || sms2.Error != "no sms address" || sms2.ParentID != mail2.ID {
			t.Fatalf("u2 sms %+v", sms2)
		}
		if in2 == nil || in2.Status != domain.DeliveryDelivered || in2.ParentID != mail2.ID {
			t.Fatalf("u2 inapp %+v", in2)
		}
		if done.DeliveriesTotal != 2 || len(ds) != 5 {
			t.Fatalf("total %d rows %v", done.DeliveriesTotal, keys(ds))
		}
		e.waitStatus(c.ID, domain.MessageDone)
		dc := e.deliveries(c.ID)
		if dc["u1/inapp"] == nil || dc["u1/inapp"].ParentID != dc["u1/email"].ID || dc["u1/sms"] != nil {
			t.Fatalf("category chain rows %v", keys(dc))
		}
	})
}

func TestRedeliveredMessageNeverSendsTwice(t *testing.T) {
	db := sqldbtest.SQLite(t)
	e := newEnv(t, db, domain.ChannelInApp)
	e.dir.add(&contracts.Profile{UserID: "u1"})
	e.dir.add(&contracts.Profile{UserID: "u2"})
	e.start()
	n := e.accept(users("u1", "u2"))
	e.waitStatus(n.ID, domain.MessageDone)
	for i := 0; i < 3; i++ {
		if err := e.q.Publish(context.Background(), queue.Message{ID: n.ID, AppID: n.AppID, Priority: n.Priority}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the lane to drain", func() bool { return e.q.Depth(domain.PriorityMedium) == 0 && e.q.InFlight() == 0 })
	if c := e.senders[domain.ChannelInApp].count.Load(); c != 2 {
		t.Fatalf("sends = %d, want 2", c)
	}
}

// TestResumeSkipsRecordedDeliveries: a processing message whose lease
// passed with part of its deliveries recorded resumes and sends only the
// rest.
func TestResumeSkipsRecordedDeliveries(t *testing.T) {
	db := sqldbtest.SQLite(t)
	e := newEnv(t, db, domain.ChannelInApp)
	for _, u := range []string{"u1", "u2", "u3"} {
		e.dir.add(&contracts.Profile{UserID: u})
	}
	ctx := context.Background()
	n := e.notification(users("u1", "u2", "u3"), withChannels(domain.ChannelInApp))
	if _, err := e.store.Accept(ctx, n); err != nil {
		t.Fatal(err)
	}
	// An earlier owner claimed it, sent to u1, and died.
	if _, err := e.store.Transition(ctx, []string{n.ID}, domain.MessageProcessing, e.clock.Now().Add(-time.Second), ""); err != nil {
		t.Fatal(err)
	}
	sent := &messages.Delivery{ID: messages.DeliveryID(n.ID, "u1", domain.ChannelInApp), AppID: n.AppID, NotificationID: n.ID,
		Recipient: "u1", UserID: "u1", Channel: domain.ChannelInApp, Status: domain.DeliveryDelivered, Attempts: 1}
	if err := e.store.SaveDeliveries(ctx, []*messages.Delivery{sent}); err != nil {
		t.Fatal(err)
	}
	e.start()
	done := e.waitStatus(n.ID, domain.MessageDone)
	_, byID := e.senders[domain.ChannelInApp].snapshot()
	if len(byID) != 2 || byID[sent.ID] != 0 {
		t.Fatalf("resumed sends %v; u1 (%s) must not be sent again", byID, sent.ID)
	}
	if done.DeliveriesTotal != 3 || len(e.deliveries(n.ID)) != 3 {
		t.Fatalf("total %d", done.DeliveriesTotal)
	}
}

func TestStatsAndRunOnce(t *testing.T) {
	db := sqldbtest.SQLite(t)
	e := newEnv(t, db, domain.ChannelInApp, domain.ChannelEmail)
	e.dir.add(&contracts.Profile{UserID: "u1", Email: "a@b.c"})
	e.senders[domain.ChannelEmail].behave = func(d *contracts.Delivery, n int) error {
		return contracts.Permanent("nope", nil)
	}
	h := e.start()
	n := e.accept(users("u1"), withChannels(domain.ChannelInApp, domain.ChannelEmail))
	e.waitStatus(n.ID, domain.MessageDone)
	s := h.Stats()
	if s.Channels[domain.ChannelInApp].Sent != 1 || s.Channels[domain.ChannelInApp].Delivered != 1 || s.Channels[domain.ChannelEmail].Failed != 1 {
		t.Fatalf("stats %+v", s)
	}
	if s.Channels[domain.ChannelEmail].Workers != 4 || s.Channels[domain.ChannelEmail].Depth[domain.PriorityLow] != 0 {
		t.Fatalf("stats %+v", s.Channels[domain.ChannelEmail])
	}
	if err := h.Run(context.Background()); err == nil {
		t.Fatal("second Run succeeded")
	}
}

func TestManyMessagesBothDialects(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db, domain.ChannelInApp)
		for i := 0; i < 20; i++ {
			e.dir.add(&contracts.Profile{UserID: fmt.Sprintf("u%d", i)})
		}
		e.start()
		var ns []*messages.Notification
		for i := 0; i < 60; i++ {
			p := domain.Priorities[i%3]
			ns = append(ns, e.accept(users(fmt.Sprintf("u%d", i%20), fmt.Sprintf("u%d", (i+1)%20)), withPriority(p)))
		}
		for _, n := range ns {
			e.waitStatus(n.ID, domain.MessageDone)
		}
		_, byID := e.senders[domain.ChannelInApp].snapshot()
		if len(byID) != 120 {
			t.Fatalf("%d distinct deliveries, want 120", len(byID))
		}
		for id, c := range byID {
			if c != 1 {
				t.Fatalf("%s sent %d times", id, c)
			}
		}
	})
}

// TestResend follows the API's resend: failed rows go back to pending, the
// notification to processing and onto its lane; the handler sends them at
// once and completes the message again.
func TestResend(t *testing.T) {
	db := sqldbtest.SQLite(t)
	e := newEnv(t, db, domain.ChannelEmail)
	e.deps.Config.SweepInterval = time.Hour // only the lane message can trigger the resend promptly
	e.dir.add(&contracts.Profile{UserID: "u1", Email: "u1@x.io"})
	var broken atomic.Bool
	broken.Store(true)
	e.senders[domain.ChannelEmail].behave = func(d *contracts.Delivery, n int) error {
		if broken.Load() {
			return contracts.Permanent("bounce", nil)
		}
		return nil
	}
	e.start()
	n := e.accept(users("u1"), withChannels(domain.ChannelEmail))
	e.waitStatus(n.ID, domain.MessageDone)
	if d := e.deliveries(n.ID)["u1/email"]; d.Status != domain.DeliveryFailed {
		t.Fatalf("%+v", d)
	}
	broken.Store(false)
	ctx := context.Background()
	if ds, err := e.store.ResetFailed(ctx, n.AppID, n.ID); err != nil || len(ds) != 1 {
		t.Fatalf("reset: %v %v", ds, err)
	}
	if err := e.q.Publish(ctx, queue.Message{ID: n.ID, AppID: n.AppID, Priority: n.Priority}); err != nil {
		t.Fatal(err)
	}
	e.waitStatus(n.ID, domain.MessageDone)
	d := e.deliveries(n.ID)["u1/email"]
	if d.Status != domain.DeliverySent || d.Attempts != 1 {
		t.Fatalf("after resend %+v", d)
	}
	if c := e.senders[domain.ChannelEmail].count.Load(); c != 2 {
		t.Fatalf("sends = %d", c)
	}
}

func TestRetryBeyondExpiryExpires(t *testing.T) {
	db := sqldbtest.SQLite(t)
	e := newEnv(t, db, domain.ChannelSMS)
	e.clock.fixed = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	e.dir.add(&contracts.Profile{UserID: "u1", Phone: "+100"})
	e.senders[domain.ChannelSMS].behave = func(d *contracts.Delivery, n int) error {
		return contracts.Retryable("429", errors.New("slow down"), 2*time.Hour)
	}
	e.start()
	n := e.accept(users("u1"), withChannels(domain.ChannelSMS), func(n *messages.Notification) {
		n.ExpiresAt = e.clock.Now().Add(time.Hour)
	})
	e.waitStatus(n.ID, domain.MessageDone)
	d := e.deliveries(n.ID)["u1/sms"]
	if d.Status != domain.DeliveryExpired || d.Attempts != 1 || !strings.Contains(d.Error, "slow down") {
		t.Fatalf("%+v", d)
	}
}
