package outbound

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"herald.dev/platform/config"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
	"herald.dev/platform/ids"
	"herald.dev/platform/messages"
	"herald.dev/platform/queue"
	"herald.dev/platform/queue/memqueue"
	"herald.dev/platform/sqldb"
)

// ---- directory ----

type fakeDir struct {
	mu     sync.Mutex
	users  map[string]*contracts.Profile
	groups map[string][]string
	// generated groups: name -> member count; members are "<group>-<i>"
	// with an email address and no quiet hours.
	gen   map[string]int
	calls atomic.Int64
	fail  error
}

func newDir() *fakeDir {
	return &fakeDir{users: map[string]*contracts.Profile{}, groups: map[string][]string{}, gen: map[string]int{}}
}

func (d *fakeDir) add(p *contracts.Profile) {
	d.mu.Lock()
	d.users[p.UserID] = p
	d.mu.Unlock()
}

func copyProfile(p *contracts.Profile) *contracts.Profile {
	c := *p
	return &c
}

func (d *fakeDir) Profiles(ctx context.Context, appID string, userIDs []string) (map[string]*contracts.Profile, error) {
	d.calls.Add(1)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fail != nil {
		return nil, d.fail
	}
	out := map[string]*contracts.Profile{}
	for _, id := range userIDs {
		if p := d.users[id]; p != nil {
			out[id] = copyProfile(p)
		} else if p := d.genProfile(id); p != nil {
			out[id] = p
		}
	}
	return out, nil
}

func (d *fakeDir) genProfile(id string) *contracts.Profile {
	g, _, ok := strings.Cut(id, "-")
	if !ok || d.gen[g] == 0 {
		return nil
	}
	return &contracts.Profile{UserID: id, Email: id + "@example.com", Locale: "en"}
}

func (d *fakeDir) GroupMembers(ctx context.Context, appID, groupID string, batch int, fn func([]*contracts.Profile) error) error {
	d.mu.Lock()
	members, ok := d.groups[groupID]
	n, gen := d.gen[groupID]
	d.mu.Unlock()
	switch {
	case gen:
		page := make([]*contracts.Profile, 0, batch)
		for i := 0; i < n; i++ {
			if err := ctx.Err(); err != nil {
				return err
			}
			id := fmt.Sprintf("%s-%d", groupID, i)
			page = append(page, &contracts.Profile{UserID: id, Email: id + "@example.com", Locale: "en"})
			if len(page) == batch {
				if err := fn(page); err != nil {
					return err
				}
				page = make([]*contracts.Profile, 0, batch)
			}
		}
		if len(page) > 0 {
			return fn(page)
		}
		return nil
	case ok:
		for start := 0; start < len(members); start += batch {
			var page []*contracts.Profile
			d.mu.Lock()
			for _, id := range members[start:min(start+batch, len(members))] {
				if p := d.users[id]; p != nil {
					page = append(page, copyProfile(p))
				}
			}
			d.mu.Unlock()
			if err := fn(page); err != nil {
				return err
			}
		}
		return nil
	}
	return contracts.ErrGroupNotFound
}

// ---- renderer ----

type fakeRenderer struct {
	channels []domain.Channel // template variants
	broken   map[domain.Channel]bool
	renders  atomic.Int64
}

func (r *fakeRenderer) Check(ctx context.Context, appID, code string, data map[string]any) (contracts.TemplateInfo, error) {
	if code == "missing" {
		return contracts.TemplateInfo{}, contracts.ErrTemplateNotFound
	}
	return contracts.TemplateInfo{Code: code, Version: 1, Channels: r.channels}, nil
}

func (r *fakeRenderer) Render(ctx context.Context, appID, code string, version int, locale string, ch domain.Channel, data map[string]any) (domain.Content, error) {
	r.renders.Add(1)
	if r.broken[ch] {
		return domain.Content{}, errors.New("template syntax error")
	}
	found := false
	for _, c := range r.channels {
		found = found || c == ch
	}
	if !found || code == "missing" {
		return domain.Content{}, fmt.Errorf("%s/%s: %w", code, ch, contracts.ErrTemplateNotFound)
	}
	return domain.Content{Subject: fmt.Sprintf("%s v%d %s", code, version, locale), Text: fmt.Sprintf("hello %v", data["name"])}, nil
}

// ---- sender ----

type call struct {
	d  *contracts.Delivery
	at time.Time
}

// fakeSender records every Send. behave decides the outcome of each call
// (nil = success); gate, when set, blocks each Send until it can receive.
type fakeSender struct {
	ch        domain.Channel
	delivered bool
	mu        sync.Mutex
	calls     []call
	byID      map[string]int
	behave    func(d *contracts.Delivery, n int) error
	gate      chan struct{}
	budget    *atomic.Int64 // sends allowed before Send hangs (shared between senders)
	onSend    func(d *contracts.Delivery)
	count     atomic.Int64
}

func newSender(ch domain.Channel) *fakeSender {
	return &fakeSender{ch: ch, byID: map[string]int{}, delivered: ch == domain.ChannelInApp}
}

func (s *fakeSender) Channel() domain.Channel { return s.ch }

func (s *fakeSender) Send(ctx context.Context, d *contracts.Delivery) (contracts.Result, error) {
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return contracts.Result{}, ctx.Err()
		}
	}
	if s.budget != nil && s.budget.Add(-1) < 0 {
		<-ctx.Done() // out of budget: hang like a stuck process
		return contracts.Result{}, ctx.Err()
	}
	s.mu.Lock()
	s.byID[d.ID]++
	n := s.byID[d.ID]
	cp := *d
	s.calls = append(s.calls, call{d: &cp, at: time.Now()})
	behave, on := s.behave, s.onSend
	s.mu.Unlock()
	s.count.Add(1)
	if on != nil {
		on(d)
	}
	if behave != nil {
		if err := behave(d, n); err != nil {
			return contracts.Result{}, err
		}
	}
	return contracts.Result{Delivered: s.delivered, ProviderID: "p-" + d.ID}, nil
}

func (s *fakeSender) snapshot() ([]call, map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	byID := map[string]int{}
	for k, v := range s.byID {
		byID[k] = v
	}
	return append([]call(nil), s.calls...), byID
}

// ---- tracker ----

type fakeTracker struct {
	mu     sync.Mutex
	events []contracts.Event
}

func (t *fakeTracker) Track(evs ...contracts.Event) {
	t.mu.Lock()
	t.events = append(t.events, evs...)
	t.mu.Unlock()
}

func (t *fakeTracker) types(deliveryID string) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for _, e := range t.events {
		if e.DeliveryID == deliveryID {
			out = append(out, e.Type)
		}
	}
	return out
}

func (t *fakeTracker) count(typ string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, e := range t.events {
		if e.Type == typ {
			n++
		}
	}
	return n
}

// ---- clock ----

type clock struct {
	mu     sync.Mutex
	offset time.Duration
	fixed  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.fixed.IsZero() {
		return c.fixed
	}
	return time.Now().Add(c.offset)
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.fixed.IsZero() {
		c.fixed = c.fixed.Add(d)
	}
	c.offset += d
}

// ---- environment ----

type env struct {
	t       testing.TB
	db      *sqldb.DB
	store   *messages.Store
	q       *memqueue.Queue
	dir     *fakeDir
	rend    *fakeRenderer
	senders map[domain.Channel]*fakeSender
	track   *fakeTracker
	clock   *clock
	deps    Deps
	h       *Handler
	cancel  context.CancelFunc
	done    chan error
	logs    *logBuf
}

type logBuf struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuf) logf(format string, args ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

func testConfig() config.Outbound {
	return config.Outbound{Workers: 4, MaxAttempts: 3, BackoffBase: 5 * time.Millisecond, BackoffMax: 20 * time.Millisecond,
		SweepInterval: 50 * time.Millisecond, StaleAfter: 2 * time.Second}
}

// newEnv builds a handler on db with senders for the given channels.
func newEnv(t testing.TB, db *sqldb.DB, chans ...domain.Channel) *env {
	t.Helper()
	e := &env{t: t, db: db, store: messages.New(db, messages.Options{}), dir: newDir(),
		rend:    &fakeRenderer{channels: []domain.Channel{domain.ChannelInApp, domain.ChannelEmail, domain.ChannelSMS}},
		senders: map[domain.Channel]*fakeSender{}, track: &fakeTracker{}, clock: &clock{}, logs: &logBuf{}}
	e.q = memqueue.New(memqueue.Options{Visibility: 10 * time.Second})
	t.Cleanup(func() { e.q.Close(); e.store.Close() })
	senders := map[domain.Channel]contracts.Sender{}
	for _, ch := range chans {
		s := newSender(ch)
		e.senders[ch] = s
		senders[ch] = s
	}
	e.deps = Deps{Store: e.store, Queue: e.q, Directory: e.dir, Renderer: e.rend, Senders: senders, Tracker: e.track,
		Config: testConfig(), Logf: e.logs.logf, Now: e.clock.Now}
	return e
}

func (e *env) start() *Handler {
	e.t.Helper()
	h, err := New(e.deps)
	if err != nil {
		e.t.Fatal(err)
	}
	e.h = h
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.done = make(chan error, 1)
	go func() { e.done <- h.Run(ctx) }()
	e.t.Cleanup(func() { e.stop() })
	return h
}

// stop shuts the handler down gracefully and waits for Run to return.
func (e *env) stop() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	e.cancel = nil
	select {
	case err := <-e.done:
		if err != nil {
			e.t.Errorf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		e.t.Errorf("Run did not return after cancel")
	}
}

// crash halts the handler like kill -9.
func (e *env) crash() {
	e.h.halt()
	e.stop()
}

type notif func(n *messages.Notification)

func withChannels(ch ...domain.Channel) notif {
	return func(n *messages.Notification) { n.Payload.Channels = ch }
}

func withPriority(p domain.Priority) notif { return func(n *messages.Notification) { n.Priority = p } }

// accept stores a notification (as the API does) and publishes it.
func (e *env) accept(recipients []domain.Recipient, opts ...notif) *messages.Notification {
	e.t.Helper()
	n := e.notification(recipients, opts...)
	if _, err := e.store.Accept(context.Background(), n); err != nil {
		e.t.Fatal(err)
	}
	if err := e.q.Publish(context.Background(), queue.Message{ID: n.ID, AppID: n.AppID, Priority: n.Priority}); err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *env) notification(recipients []domain.Recipient, opts ...notif) *messages.Notification {
	now := e.clock.Now()
	n := &messages.Notification{ID: ids.New("ntf"), AppID: "app_1", Status: domain.MessageAccepted, Priority: domain.PriorityMedium,
		Kind: domain.KindNotice, Category: "billing", TemplateCode: "welcome", TemplateVersion: 1,
		Payload: messages.Payload{Data: map[string]any{"name": "Ada"}, Recipients: recipients},
		NextAt:  now.Add(5 * time.Second), CreatedAt: now, UpdatedAt: now}
	for _, o := range opts {
		o(n)
	}
	return n
}

func users(idl ...string) []domain.Recipient {
	var out []domain.Recipient
	for _, id := range idl {
		out = append(out, domain.Recipient{UserID: id})
	}
	return out
}

// waitFor polls cond until it holds (the deadline only guards against a hang).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (e *env) status(id string) domain.MessageStatus {
	n, err := e.store.Load(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return n.Status
}

func (e *env) waitStatus(id string, want domain.MessageStatus) *messages.Notification {
	e.t.Helper()
	var n *messages.Notification
	waitFor(e.t, fmt.Sprintf("%s to be %s", id, want), func() bool {
		var err error
		n, err = e.store.Load(context.Background(), id)
		return err == nil && n.Status == want
	})
	return n
}

// deliveries returns a notification's rows keyed by "recipient/channel".
func (e *env) deliveries(id string) map[string]*messages.Delivery {
	e.t.Helper()
	ds, err := e.store.Deliveries(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]*messages.Delivery{}
	for _, d := range ds {
		out[d.Recipient+"/"+string(d.Channel)] = d
	}
	return out
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
