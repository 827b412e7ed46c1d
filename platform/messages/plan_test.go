package messages_test

import (
	"strings"
	"testing"

	"herald.dev/platform/sqldb/sqldbtest"
)

// TestSweepQueriesUseIndexes guards the sweeps' query plans on SQLite: the
// partial indexes are used only when the query repeats their condition, and
// a full scan of millions of finished rows every few seconds would starve
// the single writer.
func TestSweepQueriesUseIndexes(t *testing.T) {
	db := sqldbtest.SQLite(t)
	for q, index := range map[string]string{
		`SELECT id FROM notifications WHERE status IN ('accepted', 'scheduled', 'queued', 'processing') AND status = 'accepted' AND next_at > 0 AND next_at <= 5 ORDER BY next_at LIMIT 10`: "notifications_due",
		`SELECT id FROM deliveries WHERE status IN ('pending', 'queued') AND next_at > 0 AND next_at <= 5 ORDER BY next_at LIMIT 10`:                                                        "deliveries_due",
		// ByNotification's condition: both indexes, once each.
		`SELECT id FROM deliveries WHERE ((id >= 'dlv_A' AND id < 'dlv_B' AND notification_id = 'x') OR (notification_id = 'x' AND substr(id, 1, 30) <> 'dlv_' || substr(notification_id, 5, 26)))`: "MULTI-INDEX OR; INDEX 1; SEARCH deliveries USING PRIMARY KEY (id>? AND id<?); INDEX 2; SEARCH deliveries USING INDEX deliveries_notification_legacy (notification_id=?)",
	} {
		rows, err := db.R.Query(`EXPLAIN QUERY PLAN ` + q)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		if p := strings.Join(plan, "; "); !strings.Contains(p, index) {
			t.Errorf("%s\nplan %q does not use %s", q, p, index)
		}
	}
}
