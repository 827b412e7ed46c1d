package services_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	fws "github.com/fasthttp/websocket"

	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
	"herald.dev/platform/sqldb"
	"herald.dev/platform/sqldb/sqldbtest"
	"herald.dev/services/inbox"
	"herald.dev/services/ws"
)

func (e *env) deliver(app, user, delivery string, kind domain.Kind, todoKey string) {
	e.t.Helper()
	err := e.svc.Inbox().Deliver(context.Background(), contracts.InboxItem{
		AppID: app, UserID: user, NotificationID: "ntf_" + delivery, DeliveryID: delivery, Kind: kind,
		Category: "exams", Title: "Title " + delivery, Body: "Body " + delivery, TodoKey: todoKey,
		Data: map[string]any{"n": delivery},
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) inbox(key, user, query string) inbox.ListResponse {
	e.t.Helper()
	r := e.do("GET", "/v1/users/"+user+"/inbox"+query, key, nil)
	if r.status != 200 {
		e.t.Fatalf("inbox %s%s: %d %s", user, query, r.status, r.body)
	}
	var out inbox.ListResponse
	r.json(e.t, &out)
	return out
}

func TestInboxAPI(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db)
		e.deliver(e.appA, "u1", "d1", domain.KindNotice, "")
		e.deliver(e.appA, "u1", "d2", domain.KindReminder, "")
		e.deliver(e.appA, "u1", "d3", domain.KindTodo, "exam-1")
		e.deliver(e.appA, "u2", "d4", domain.KindTodo, "exam-1")
		e.deliver(e.appA, "u1", "d1", domain.KindNotice, "") // redelivery: ignored

		box := e.inbox(e.keyA, "u1", "")
		if len(box.Items) != 3 || box.Unread != 2 || box.Pending != 1 || box.NextCursor != "" {
			t.Fatalf("inbox: %+v", box)
		}
		newest := box.Items[0]
		if newest.Kind != domain.KindTodo || newest.State != inbox.StatePending || newest.TodoKey != "exam-1" ||
			newest.Title != "Title d3" || newest.Data["n"] != "d3" || newest.NotificationID != "ntf_d3" || newest.ReadAt != "" {
			t.Fatalf("newest item: %+v", newest)
		}
		if _, err := time.Parse(time.RFC3339, newest.CreatedAt); err != nil {
			t.Fatalf("created_at %q", newest.CreatedAt)
		}
		notice, reminder := box.Items[2], box.Items[1]

		// App B sees nothing of app A.
		if b := e.inbox(e.keyB, "u1", ""); len(b.Items) != 0 || b.Unread != 0 {
			t.Fatalf("app B sees app A's inbox: %+v", b)
		}
		for _, path := range []string{"/v1/users/u1/inbox/" + notice.ID + "/read", "/v1/users/u1/inbox/" + newest.ID + "/done"} {
			if r := e.do("POST", path, e.keyB, nil); r.status != 404 || r.problem(t).Code != "not_found" {
				t.Fatalf("app B %s: %d %s", path, r.status, r.body)
			}
		}
		// Another user of the same app cannot touch it either.
		if r := e.do("POST", "/v1/users/u2/inbox/"+notice.ID+"/read", e.keyA, nil); r.status != 404 {
			t.Fatalf("u2 reads u1's item: %d", r.status)
		}

		// Read a notice (twice: idempotent), wrong kinds are conflicts.
		for i := 0; i < 2; i++ {
			r := e.do("POST", "/v1/users/u1/inbox/"+notice.ID+"/read", e.keyA, nil)
			var v inbox.ItemView
			r.json(t, &v)
			if r.status != 200 || v.State != inbox.StateRead || v.ReadAt == "" {
				t.Fatalf("read: %d %s", r.status, r.body)
			}
		}
		if r := e.do("POST", "/v1/users/u1/inbox/"+newest.ID+"/read", e.keyA, nil); r.status != 409 {
			t.Fatalf("reading a to-do: %d", r.status)
		}
		if r := e.do("POST", "/v1/users/u1/inbox/"+reminder.ID+"/done", e.keyA, nil); r.status != 409 {
			t.Fatalf("completing a reminder: %d", r.status)
		}
		if r := e.do("POST", "/v1/users/u1/inbox/inb_nope/read", e.keyA, nil); r.status != 404 {
			t.Fatalf("unknown item: %d", r.status)
		}

		// Read all, then the filters.
		r := e.do("POST", "/v1/users/u1/inbox/read-all", e.keyA, nil)
		if r.status != 200 || strings.TrimSpace(string(r.body)) != `{"read":1}` {
			t.Fatalf("read-all: %d %s", r.status, r.body)
		}
		if box := e.inbox(e.keyA, "u1", "?state=read"); len(box.Items) != 2 || box.Unread != 0 {
			t.Fatalf("read items: %+v", box)
		}
		if box := e.inbox(e.keyA, "u1", "?kind=todo&state=pending"); len(box.Items) != 1 {
			t.Fatalf("pending to-dos: %+v", box)
		}
		p1 := e.inbox(e.keyA, "u1", "?limit=2")
		p2 := e.inbox(e.keyA, "u1", "?limit=2&cursor="+p1.NextCursor)
		if len(p1.Items) != 2 || len(p2.Items) != 1 || p2.Items[0].ID != notice.ID || p2.NextCursor != "" {
			t.Fatalf("paging: %+v / %+v", p1, p2)
		}
		for q, field := range map[string]string{"?kind=memo": "kind", "?state=gone": "state", "?limit=500": "limit", "?sort=asc": "sort"} {
			r := e.do("GET", "/v1/users/u1/inbox"+q, e.keyA, nil)
			if r.status != 422 || r.problem(t).Errors[0].Field != field {
				t.Fatalf("inbox %s: %d %s", q, r.status, r.body)
			}
		}

		// The user completes their to-do; the app completes exam-1 for everyone left.
		if r := e.do("POST", "/v1/users/u1/inbox/"+newest.ID+"/done", e.keyA, nil); r.status != 200 {
			t.Fatalf("done: %d %s", r.status, r.body)
		}
		if r := e.do("POST", "/v1/todos/done", e.keyB, map[string]any{"todo_key": "exam-1"}); string(r.body) != `{"done":0}` {
			t.Fatalf("app B completes app A's to-dos: %s", r.body)
		}
		r = e.do("POST", "/v1/todos/done", e.keyA, map[string]any{"todo_key": "exam-1"})
		if r.status != 200 || string(r.body) != `{"done":1}` {
			t.Fatalf("todos/done: %d %s", r.status, r.body)
		}
		if box := e.inbox(e.keyA, "u2", ""); box.Items[0].State != inbox.StateDone || box.Pending != 0 {
			t.Fatalf("u2's to-do: %+v", box)
		}
		for _, body := range []any{map[string]any{}, map[string]any{"todo_key": "k", "extra": 1}, `{"todo_key":`} {
			if r := e.do("POST", "/v1/todos/done", e.keyA, body); r.status/100 != 4 {
				t.Fatalf("todos/done %v: %d", body, r.status)
			}
		}
		for _, typ := range []string{contracts.EventRead, contracts.EventDone} {
			found := false
			for _, ev := range e.tr.all() {
				found = found || (ev.Type == typ && ev.Channel == domain.ChannelInApp && ev.AppID == e.appA)
			}
			if !found {
				t.Fatalf("no %s event tracked", typ)
			}
		}
	})
}

// ---- WebSocket ----

type tab struct {
	t    *testing.T
	conn *fws.Conn
}

type frame struct {
	Type string         `json:"type"`
	Item inbox.ItemView `json:"item"`
}

func (e *env) token(key, user string) ws.TokenResponse {
	e.t.Helper()
	r := e.do("POST", "/v1/users/"+user+"/tokens", key, nil)
	if r.status != 201 {
		e.t.Fatalf("token: %d %s", r.status, r.body)
	}
	var tr ws.TokenResponse
	r.json(e.t, &tr)
	return tr
}

func (e *env) dial(wsURL, lastID string) (*tab, *http.Response, error) {
	if lastID != "" {
		wsURL += "&last_id=" + url.QueryEscape(lastID)
	}
	d := fws.Dialer{HandshakeTimeout: 5 * time.Second}
	c, resp, err := d.Dial(wsURL, nil)
	if err != nil {
		return nil, resp, err
	}
	e.t.Cleanup(func() { c.Close() })
	return &tab{t: e.t, conn: c}, resp, nil
}

func (e *env) mustDial(wsURL, lastID string) *tab {
	e.t.Helper()
	tb, resp, err := e.dial(wsURL, lastID)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		e.t.Fatalf("dial: %v (status %d)", err, status)
	}
	return tb
}

// next reads one frame (failing after 10s, a liveness bound, not a timing check).
func (tb *tab) next() frame {
	tb.t.Helper()
	_ = tb.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := tb.conn.ReadMessage()
	if err != nil {
		tb.t.Fatalf("read frame: %v", err)
	}
	var f frame
	if err := json.Unmarshal(b, &f); err != nil {
		tb.t.Fatalf("frame %s: %v", b, err)
	}
	return f
}

func TestWebSocket(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db)
		tok := e.token(e.keyA, "u1")
		if !strings.HasPrefix(tok.WSURL, "ws://127.0.0.1:") || !strings.Contains(tok.WSURL, "/v1/ws?token=") {
			t.Fatalf("ws_url %q", tok.WSURL)
		}
		if exp, err := time.Parse(time.RFC3339, tok.ExpiresAt); err != nil || time.Until(exp) < 14*time.Minute || time.Until(exp) > 16*time.Minute {
			t.Fatalf("expires_at %q", tok.ExpiresAt)
		}
		if r := e.do("POST", "/v1/users/nobody/tokens", e.keyA, nil); r.status != 404 {
			t.Fatalf("token for an unknown user: %d", r.status)
		}
		if r := e.do("POST", "/v1/users/u2/tokens", e.keyB, nil); r.status != 404 {
			t.Fatalf("token for another app's user: %d", r.status)
		}

		tab1 := e.mustDial(tok.WSURL, "")
		tab2 := e.mustDial(tok.WSURL, "")
		tabB := e.mustDial(e.token(e.keyB, "u1").WSURL, "") // same user id, other app
		waitSubscribers(t, e, e.appA, "u1", 2)
		waitSubscribers(t, e, e.appB, "u1", 1)

		// A new item reaches both tabs, and not the other app's user.
		e.deliver(e.appA, "u1", "w1", domain.KindReminder, "")
		f1, f2 := tab1.next(), tab2.next()
		if f1.Type != "item" || f1.Item.Title != "Title w1" || f1.Item.State != inbox.StateUnread || f2.Item.ID != f1.Item.ID {
			t.Fatalf("tabs got %+v / %+v", f1, f2)
		}
		e.deliver(e.appB, "u1", "wb", domain.KindNotice, "")
		if f := tabB.next(); f.Item.Title != "Title wb" {
			t.Fatalf("app B tab got %+v (app A's item leaked?)", f)
		}
		// A redelivery is not pushed again: the next frame is the state change.
		e.deliver(e.appA, "u1", "w1", domain.KindReminder, "")
		if r := e.do("POST", "/v1/users/u1/inbox/"+f1.Item.ID+"/read", e.keyA, nil); r.status != 200 {
			t.Fatalf("read: %d", r.status)
		}
		for _, tb := range []*tab{tab1, tab2} {
			if f := tb.next(); f.Type != "state" || f.Item.ID != f1.Item.ID || f.Item.State != inbox.StateRead || f.Item.ReadAt == "" {
				t.Fatalf("state frame %+v", f)
			}
		}
		// To-do completion by key is pushed as well.
		e.deliver(e.appA, "u1", "w2", domain.KindTodo, "t-1")
		todo := tab1.next()
		tab2.next()
		if r := e.do("POST", "/v1/todos/done", e.keyA, map[string]any{"todo_key": "t-1", "user_id": "u1"}); string(r.body) != `{"done":1}` {
			t.Fatalf("todos/done: %s", r.body)
		}
		if f := tab1.next(); f.Type != "state" || f.Item.ID != todo.Item.ID || f.Item.State != inbox.StateDone {
			t.Fatalf("to-do state frame %+v", f)
		}

		// Tab 1 goes away; three items arrive meanwhile; it comes back with
		// last_id and gets exactly those, then live ones.
		lastSeen := todo.Item.ID
		tab1.conn.Close()
		waitSubscribers(t, e, e.appA, "u1", 1)
		for _, d := range []string{"m1", "m2", "m3"} {
			e.deliver(e.appA, "u1", d, domain.KindNotice, "")
		}
		back := e.mustDial(tok.WSURL, lastSeen)
		for _, want := range []string{"Title m1", "Title m2", "Title m3"} {
			if f := back.next(); f.Type != "item" || f.Item.Title != want {
				t.Fatalf("replay: got %+v, want %s", f, want)
			}
		}
		waitSubscribers(t, e, e.appA, "u1", 2)
		e.deliver(e.appA, "u1", "live", domain.KindNotice, "")
		if f := back.next(); f.Item.Title != "Title live" {
			t.Fatalf("after replay: %+v", f)
		}
	})
}

// TestWebSocketResumeUnderLoad reconnects with last_id while items keep
// arriving: every item after last_id arrives exactly once, in order.
func TestWebSocketResumeUnderLoad(t *testing.T) {
	e := newEnv(t, sqldbtest.SQLite(t))
	tok := e.token(e.keyA, "u1")
	for i := 0; i < 30; i++ {
		e.deliver(e.appA, "u1", fmt.Sprintf("before-%02d", i), domain.KindNotice, "")
	}
	box := e.inbox(e.keyA, "u1", "?limit=200")
	lastID := box.Items[9].ID // newest first: 9 items after it exist already

	const live = 60
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < live; i++ {
			e.deliver(e.appA, "u1", fmt.Sprintf("during-%02d", i), domain.KindNotice, "")
		}
	}()
	tb := e.mustDial(tok.WSURL, lastID)
	wg.Wait()
	want := 9 + live
	prev := lastID
	seen := map[string]bool{}
	for i := 0; i < want; i++ {
		f := tb.next()
		if f.Type != "item" || seen[f.Item.ID] || f.Item.ID <= prev {
			t.Fatalf("frame %d: %+v (previous id %s): duplicate or out of order", i, f, prev)
		}
		seen[f.Item.ID] = true
		prev = f.Item.ID
	}
	all := e.inbox(e.keyA, "u1", "?limit=200")
	var after int
	for _, it := range all.Items {
		if it.ID > lastID {
			after++
			if !seen[it.ID] {
				t.Fatalf("item %s (%s) never arrived", it.ID, it.Title)
			}
		}
	}
	if after != want {
		t.Fatalf("%d items after last_id, want %d", after, want)
	}
}

func TestWebSocketRefusals(t *testing.T) {
	e := newEnv(t, sqldbtest.SQLite(t))
	base := strings.Replace(e.base, "http://", "ws://", 1) + "/v1/ws?token="
	expired, _ := ws.NewTokens([]byte("test-secret-test-secret"), time.Minute).Issue(e.appA, "u1", time.Now().Add(-2*time.Minute))
	forged, _ := ws.NewTokens([]byte("another-secret"), time.Minute).Issue(e.appA, "u1", time.Now())
	good := e.token(e.keyA, "u1").Token
	tampered := strings.Replace(good, ".", "x.", 1)
	for name, tok := range map[string]string{"none": "", "garbage": "abc", "expired": expired, "forged": forged, "tampered": tampered} {
		_, resp, err := e.dial(base+url.QueryEscape(tok), "")
		if err == nil || resp == nil || resp.StatusCode != 401 {
			t.Fatalf("%s token: err %v, response %v", name, err, resp)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
			t.Fatalf("%s token: content type %q", name, ct)
		}
	}
	// The API key is not a WebSocket credential, and a plain GET is not an upgrade.
	r := e.do("GET", "/v1/ws", e.keyA, nil)
	if r.status != 401 {
		t.Fatalf("API key on /v1/ws: %d", r.status)
	}
	if r := e.do("GET", "/v1/ws?token="+url.QueryEscape(good), "", nil); r.status != 426 || r.problem(t).Code != "upgrade_required" {
		t.Fatalf("plain GET: %d %s", r.status, r.body)
	}
	// The client script and the demo page need no key.
	for path, ct := range map[string]string{"/v1/ws/client.js": "application/javascript", "/inbox-demo": "text/html"} {
		resp, err := http.Get(e.base + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), ct) || !strings.Contains(string(b), "HeraldInbox") {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
}

// waitSubscribers waits until the gateway has n live subscriptions for a
// user (dial returns before the server-side handler subscribed).
func waitSubscribers(t *testing.T, e *env, app, user string, n int) {
	t.Helper()
	local := e.svc.Gateway().Broadcaster().(*ws.Local)
	deadline := time.Now().Add(10 * time.Second)
	for local.Subscribers(ws.UserKey(app, user)) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d subscribers for %s/%s, want %d", local.Subscribers(ws.UserKey(app, user)), app, user, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
