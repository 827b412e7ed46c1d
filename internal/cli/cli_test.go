package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"herald.dev/platform/auth"
	"herald.dev/platform/sqldb"
)

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Main(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestAppCreateAndMigrate(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := run(t, "migrate", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "applied") {
		t.Fatalf("migrate: %d %s %s", code, out, errOut)
	}
	if code, out, _ := run(t, "migrate", "--data-dir", dir); code != 0 || !strings.Contains(out, "up to date") {
		t.Fatalf("second migrate: %d %s", code, out)
	}
	code, out, errOut = run(t, "app", "create", "--name", "billing", "--data-dir", dir)
	if code != 0 {
		t.Fatalf("app create: %d %s", code, errOut)
	}
	var app struct {
		ID  string `json:"id"`
		Key string `json:"api_key"`
	}
	if err := json.Unmarshal([]byte(out), &app); err != nil || app.ID == "" || !strings.HasPrefix(app.Key, "hk_") {
		t.Fatalf("app create printed %q", out)
	}
	db, err := sqldb.Open(context.Background(), "", sqldb.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got, err := auth.NewStore(db, 0).Authenticate(context.Background(), app.Key)
	if err != nil || got != app.ID {
		t.Fatalf("printed key does not authenticate: %v", err)
	}
	var n int
	db.R.QueryRow(`SELECT COUNT(*) FROM api_keys WHERE hash = ?`, app.Key).Scan(&n)
	if n != 0 {
		t.Fatal("key stored in clear")
	}
	if code, _, errOut := run(t, "app", "create", "--data-dir", dir); code == 0 || !strings.Contains(errOut, "--name") {
		t.Fatalf("app create without a name: %d %s", code, errOut)
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	dir := t.TempDir()
	if code, _, errOut := run(t, "migrate", "--data-dir", dir); code != 0 {
		t.Fatal(errOut)
	}
	db, err := sqldb.Open(context.Background(), "", sqldb.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.W.Exec(`INSERT INTO herald_schema (component, version, name, applied_at) VALUES ('messages', 999, 'future', 0)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	code, _, errOut := run(t, "migrate", "--data-dir", dir)
	if code == 0 || !strings.Contains(errOut, "newer than this binary") {
		t.Fatalf("migrate on a newer schema: %d %s", code, errOut)
	}
}

func TestConfigDumpMasksSecrets(t *testing.T) {
	t.Setenv("HERALD_SMTP_PASSWORD", "hunter2")
	t.Setenv("HERALD_DATABASE_URL", "mysql://u:topsecret@db:3306/h")
	code, out, errOut := run(t, "config", "dump", "--addr", ":9999")
	if code != 0 {
		t.Fatal(errOut)
	}
	if strings.Contains(out, "hunter2") || strings.Contains(out, "topsecret") || !strings.Contains(out, ":9999") {
		t.Fatalf("dump:\n%s", out)
	}
	if code, _, _ := run(t, "config", "dump", "--set", "outbound.nope=1"); code == 0 {
		t.Fatal("unknown --set key accepted")
	}
}

func TestVersionAndUsage(t *testing.T) {
	if code, out, _ := run(t, "version"); code != 0 || !strings.HasPrefix(out, "herald ") {
		t.Fatalf("version: %d %q", code, out)
	}
	if code, _, errOut := run(t, "frobnicate"); code != 2 || !strings.Contains(errOut, "unknown command") {
		t.Fatalf("unknown command: %d %q", code, errOut)
	}
	if code, _, _ := run(t); code != 2 {
		t.Fatal("no args should be a usage error")
	}
}

func TestMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		mb   int
		env  string
		want int64
		ok   bool
	}{
		{0, "", 0, false},
		{150, "", 150 << 20, true},
		{150, "1GiB", 0, false}, // GOMEMLIMIT wins
		{-1, "", 0, false},
	} {
		got, ok := memoryLimit(tc.mb, tc.env)
		if got != tc.want || ok != tc.ok {
			t.Errorf("memoryLimit(%d, %q) = %d, %v; want %d, %v", tc.mb, tc.env, got, ok, tc.want, tc.ok)
		}
	}
}
