package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"herald.dev/platform/config"
)

func TestLayers(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yml")
	if err := os.WriteFile(file, []byte("http:\n  addr: ':9000'\noutbound:\n  workers: 4\nsmtp:\n  host: mail.local\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(dir, "pw")
	if err := os.WriteFile(secret, []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file, []string{
		"HERALD_OUTBOUND_WORKERS=8",
		"HERALD_SMTP_PASSWORD_FILE=" + secret,
		"HERALD_DATABASE_URL=mysql://u:pw@db:3306/herald",
		"HERALD_OUTBOUND_BACKOFF_BASE=250ms",
		"HERALD_OUTBOUND_DEFAULT_CHANNELS=inapp, email",
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.Addr != ":9000" || cfg.Outbound.Workers != 8 || cfg.SMTP.Host != "mail.local" || cfg.SMTP.Password != "hunter2" {
		t.Fatalf("layers not applied: %+v", cfg)
	}
	if cfg.Outbound.BackoffBase != 250*time.Millisecond || len(cfg.Outbound.DefaultChannels) != 2 {
		t.Fatalf("env parsing: %+v", cfg.Outbound)
	}
	if err := cfg.Set("outbound.workers", "2"); err != nil || cfg.Outbound.Workers != 2 {
		t.Fatalf("set: %v", err)
	}
	if err := cfg.Set("outbound.nope", "2"); err == nil {
		t.Fatal("unknown key accepted")
	}
	out, err := cfg.Dump()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "hunter2") || strings.Contains(string(out), ":pw@") {
		t.Fatalf("dump leaks secrets:\n%s", out)
	}
}

func TestBadValues(t *testing.T) {
	for _, env := range []string{"HERALD_OUTBOUND_WORKERS=x", "HERALD_QUEUE_DRIVER=kafka", "HERALD_SMTP_TLS=maybe", "HERALD_OUTBOUND_BACKOFF_BASE=soon", "HERALD_LOG_LEVEL=loud", "HERALD_DATABASE_CACHE_MB=0", "HERALD_MEMORY_LIMIT_MB=-1", "HERALD_HTTP_IDLE_TIMEOUT=-1s", "HERALD_OUTBOUND_BULK_PAUSE=-1ms", "HERALD_OUTBOUND_BULK_PAUSE=2s"} {
		if _, err := config.Load("", []string{env}); err == nil {
			t.Errorf("%s accepted", env)
		}
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yml")
	os.WriteFile(file, []byte("htp:\n  addr: x\n"), 0o600)
	if _, err := config.Load(file, nil); err == nil {
		t.Error("unknown YAML key accepted")
	}
}

// TestUserIndexDefault: the per-user delivery index is on unless a layer
// turns it off.
func TestUserIndexDefault(t *testing.T) {
	cfg, err := config.Load("", nil)
	if err != nil || !cfg.Database.UserIndex {
		t.Fatalf("default user_index = %v (%v), want true", cfg.Database.UserIndex, err)
	}
	cfg, err = config.Load("", []string{"HERALD_DATABASE_USER_INDEX=false"})
	if err != nil || cfg.Database.UserIndex {
		t.Fatalf("HERALD_DATABASE_USER_INDEX=false gave %v (%v)", cfg.Database.UserIndex, err)
	}
}

// TestIdleTimeout: idle keep-alive connections close after two minutes
// unless configured otherwise.
func TestIdleTimeout(t *testing.T) {
	cfg, err := config.Load("", nil)
	if err != nil || cfg.HTTP.IdleTimeout != 2*time.Minute {
		t.Fatalf("default idle_timeout = %v (%v), want 2m", cfg.HTTP.IdleTimeout, err)
	}
	cfg, err = config.Load("", []string{"HERALD_HTTP_IDLE_TIMEOUT=0s"})
	if err != nil || cfg.HTTP.IdleTimeout != 0 {
		t.Fatalf("HERALD_HTTP_IDLE_TIMEOUT=0s gave %v (%v)", cfg.HTTP.IdleTimeout, err)
	}
}
