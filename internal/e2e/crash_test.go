package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"herald.dev/platform/sqldb"
)

// TestCrashRecovery kills Herald with SIGKILL while thousands of accepted
// notifications are in flight, restarts it on the same data, and checks at
// the receiving end that every accepted notification is delivered: in-app
// exactly once, webhooks at least once and, when repeated, always under the
// same delivery id.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test builds and runs the herald binary; skipped in -short mode")
	}
	bin := heraldBinary(t)
	recv := startReceiver(t)
	dataDir := t.TempDir()
	env := []string{
		"HERALD_DATA_DIR=" + dataDir,
		"HERALD_WEBHOOK_ALLOW_PRIVATE=true",
		"HERALD_OUTBOUND_SWEEP_INTERVAL=300ms",
		"HERALD_OUTBOUND_STALE_AFTER=2s",
		"HERALD_OUTBOUND_BACKOFF_BASE=50ms",
		"HERALD_OUTBOUND_BACKOFF_MAX=1s",
		"HERALD_LOG_LEVEL=warn",
	}
	out, err := exec.Command(bin, "app", "create", "--name", "crash", "--data-dir", dataDir).Output()
	if err != nil {
		t.Fatalf("app create: %v", err)
	}
	var app struct {
		Key    string `json:"api_key"`
		Secret string `json:"webhook_secret"`
	}
	if err := json.Unmarshal(out, &app); err != nil || app.Key == "" {
		t.Fatalf("app create printed %s", out)
	}
	recv.setSecret(app.Secret)
	// The receiver is slow enough that a backlog builds up before the kill.
	recv.mu.Lock()
	recv.respond = func(hook) (int, http.Header) { time.Sleep(2 * time.Millisecond); return 200, nil }
	recv.mu.Unlock()

	p := startProc(t, bin, env)
	const users = 50
	for i := 0; i < users; i++ {
		st, m := call(t, p.base, app.Key, "PUT", fmt.Sprintf("/v1/users/u%d", i), map[string]any{"name": "U", "webhook_url": recv.URL + "/hook"})
		must(t, st, m, 200, 201)
	}

	// Fire sends from 16 workers; kill -9 once half are accepted.
	const total = 4000
	var accepted sync.Map
	var nAccepted atomic.Int64
	var seq atomic.Int64
	killed := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second}
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := seq.Add(1)
				if i > total {
					return
				}
				body, _ := json.Marshal(map[string]any{
					"content":    map[string]any{"*": map[string]any{"title": fmt.Sprintf("n%d", i), "body": "crash test"}},
					"recipients": []any{map[string]any{"user_id": fmt.Sprintf("u%d", i%users)}},
					"channels":   []string{"inapp", "webhook"},
				})
				req, _ := http.NewRequest("POST", p.base+"/v1/notifications", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+app.Key)
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					continue // the server is dead: not accepted
				}
				var ans struct{ ID string }
				_ = json.NewDecoder(resp.Body).Decode(&ans)
				resp.Body.Close()
				if resp.StatusCode == 202 && ans.ID != "" {
					accepted.Store(ans.ID, true)
					if nAccepted.Add(1) == total/2 {
						once.Do(func() { p.kill(); close(killed) })
					}
				}
			}
		}()
	}
	wg.Wait()
	select {
	case <-killed:
	default:
		t.Fatalf("only %d of %d sends were accepted before the kill", nAccepted.Load(), total)
	}
	n := int(nAccepted.Load())
	before := recv.count()
	t.Logf("accepted %d before SIGKILL; %d had reached the webhook receiver", n, before)
	if before >= n {
		t.Logf("warning: everything was delivered before the kill; the test proves less than it could")
	}

	p2 := startProc(t, bin, env)
	defer p2.stop()
	eventually(t, 90*time.Second, "every accepted notification at the webhook receiver", func() bool {
		recv.mu.Lock()
		defer recv.mu.Unlock()
		all := true
		accepted.Range(func(k, _ any) bool {
			all = len(recv.byNotif[k.(string)]) > 0
			return all
		})
		return all
	})

	// every accepted id reached the receiver, under one delivery id each
	recv.mu.Lock()
	var missing, multiID, repeats int
	accepted.Range(func(k, _ any) bool {
		ids := recv.byNotif[k.(string)]
		if len(ids) == 0 {
			missing++
		}
		if len(ids) > 1 {
			multiID++
		}
		for _, c := range ids {
			if c > 1 {
				repeats++
			}
		}
		return true
	})
	recv.mu.Unlock()
	if missing != 0 || multiID != 0 {
		t.Fatalf("webhooks: %d accepted notifications missing, %d delivered under more than one delivery id", missing, multiID)
	}
	t.Logf("webhook repeats (same delivery id, in flight at the kill): %d", repeats)

	// in-app: exactly one inbox item per accepted notification
	db, err := sqldb.Open(context.Background(), "", sqldb.Options{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	eventually(t, 60*time.Second, "every in-app item stored", func() bool {
		all := true
		accepted.Range(func(k, _ any) bool {
			var c int
			_ = db.R.QueryRow(`SELECT COUNT(*) FROM inbox_items WHERE notification_id = ?`, k.(string)).Scan(&c)
			all = c > 0
			return all
		})
		return all
	})
	var items, distinct int
	if err := db.R.QueryRow(`SELECT COUNT(*), COUNT(DISTINCT notification_id) FROM inbox_items`).Scan(&items, &distinct); err != nil {
		t.Fatal(err)
	}
	if items != distinct {
		t.Fatalf("in-app duplicated: %d items for %d notifications", items, distinct)
	}
	var stray int
	accepted.Range(func(k, _ any) bool {
		var c int
		_ = db.R.QueryRow(`SELECT COUNT(*) FROM inbox_items WHERE notification_id = ?`, k.(string)).Scan(&c)
		if c != 1 {
			stray++
		}
		return true
	})
	if stray != 0 {
		t.Fatalf("%d accepted notifications do not have exactly one inbox item", stray)
	}
	if err := p2.stop(); err != nil {
		t.Fatalf("graceful stop: %v\n%s", err, p2.log.String())
	}
}
