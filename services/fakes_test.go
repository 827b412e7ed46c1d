package services_test

import (
	"context"
	"slices"
	"sync"

	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
	"herald.dev/platform/queue"
)

// fakeQueue records published messages. check, when set, runs inside
// Publish (the accept-then-publish test asserts the row is committed there).
type fakeQueue struct {
	mu    sync.Mutex
	msgs  []queue.Message
	err   error
	check func(queue.Message)
}

func (q *fakeQueue) Publish(_ context.Context, msgs ...queue.Message) error {
	q.mu.Lock()
	check, err := q.check, q.err
	q.mu.Unlock()
	for _, m := range msgs {
		if check != nil {
			check(m)
		}
	}
	if err != nil {
		return err
	}
	q.mu.Lock()
	q.msgs = append(q.msgs, msgs...)
	q.mu.Unlock()
	return nil
}

func (q *fakeQueue) Receive(ctx context.Context) (queue.Lease, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (q *fakeQueue) Close() error { return nil }

func (q *fakeQueue) published() []queue.Message {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.msgs)
}

func (q *fakeQueue) setCheck(fn func(queue.Message)) {
	q.mu.Lock()
	q.check = fn
	q.mu.Unlock()
}

func (q *fakeQueue) setErr(err error) {
	q.mu.Lock()
	q.err = err
	q.mu.Unlock()
}

// countQueue counts publishes without keeping them (benchmarks).
type countQueue struct {
	mu sync.Mutex
	n  int
}

func (q *countQueue) Publish(_ context.Context, msgs ...queue.Message) error {
	q.mu.Lock()
	q.n += len(msgs)
	q.mu.Unlock()
	return nil
}
func (q *countQueue) Receive(ctx context.Context) (queue.Lease, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
func (q *countQueue) Close() error { return nil }

type fakeTemplate struct {
	version  int
	category string
	vars     []string
}

// fakeRenderer knows a fixed set of templates per app (a map read, like the
// real renderer's cache hit).
type fakeRenderer struct {
	templates map[string]fakeTemplate // "app/code"
}

func (r *fakeRenderer) Check(_ context.Context, appID, code string, data map[string]any) (contracts.TemplateInfo, error) {
	t, ok := r.templates[appID+"/"+code]
	if !ok {
		return contracts.TemplateInfo{}, contracts.ErrTemplateNotFound
	}
	var missing []string
	for _, v := range t.vars {
		if _, ok := data[v]; !ok {
			missing = append(missing, v)
		}
	}
	if len(missing) > 0 {
		return contracts.TemplateInfo{}, &contracts.MissingVariableError{Variables: missing}
	}
	return contracts.TemplateInfo{Code: code, Version: t.version, Category: t.category}, nil
}

func (r *fakeRenderer) Render(context.Context, string, string, int, string, domain.Channel, map[string]any) (domain.Content, error) {
	return domain.Content{}, nil
}

type fakeTracker struct {
	mu     sync.Mutex
	events []contracts.Event
}

func (t *fakeTracker) Track(evs ...contracts.Event) {
	t.mu.Lock()
	t.events = append(t.events, evs...)
	t.mu.Unlock()
}

func (t *fakeTracker) all() []contracts.Event {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.events)
}

func (t *fakeTracker) types(notificationID string) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for _, e := range t.events {
		if e.NotificationID == notificationID {
			out = append(out, e.Type)
		}
	}
	return out
}

// fakeDirectory knows a set of users per app.
type fakeDirectory struct {
	users map[string]bool // "app/user"
}

func (d *fakeDirectory) Profiles(_ context.Context, appID string, userIDs []string) (map[string]*contracts.Profile, error) {
	out := map[string]*contracts.Profile{}
	for _, u := range userIDs {
		if d.users[appID+"/"+u] {
			out[u] = &contracts.Profile{UserID: u}
		}
	}
	return out, nil
}

func (d *fakeDirectory) GroupMembers(context.Context, string, string, int, func([]*contracts.Profile) error) error {
	return contracts.ErrGroupNotFound
}
