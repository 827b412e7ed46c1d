// Package config loads Herald's configuration in layers: defaults in code,
// then a YAML file, then HERALD_* environment variables (a variable named
// X_FILE reads the value of X from a file, for secrets), then flags applied
// by the caller. config.example.yml at the repository root documents every key.
package config

import (
	"bytes"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole configuration. The env tag names the variable.
type Config struct {
	HTTP     HTTP   `yaml:"http"`
	DataDir  string `yaml:"data_dir" env:"HERALD_DATA_DIR"`
	Targets  string `yaml:"targets" env:"HERALD_TARGETS"`
	LogLevel string `yaml:"log_level" env:"HERALD_LOG_LEVEL"`
	// MemoryLimitMB is the Go runtime's soft memory limit in MiB for
	// `herald serve` (0 = none; GOMEMLIMIT, when set, wins).
	MemoryLimitMB int       `yaml:"memory_limit_mb" env:"HERALD_MEMORY_LIMIT_MB"`
	Database      Database  `yaml:"database"`
	Queue         Queue     `yaml:"queue"`
	Outbound      Outbound  `yaml:"outbound"`
	SMTP          SMTP      `yaml:"smtp"`
	Webhook       Webhook   `yaml:"webhook"`
	Inbox         Inbox     `yaml:"inbox"`
	Security      Security  `yaml:"security"`
	Analytics     Analytics `yaml:"analytics"`
	// Providers holds default vendor-channel settings (SMS, WeChat, ...),
	// keyed by provider name; apps may override them through /v1/providers.
	Providers map[string]map[string]string `yaml:"providers"`
}

// HTTP configures the API listener.
type HTTP struct {
	Addr      string `yaml:"addr" env:"HERALD_HTTP_ADDR"`
	BodyLimit int    `yaml:"body_limit" env:"HERALD_HTTP_BODY_LIMIT"`
	// IdleTimeout closes a keep-alive connection that has sent no request
	// for this long (default 2m; 0 keeps idle connections open). Each open
	// connection holds a 16 KiB read buffer.
	IdleTimeout time.Duration `yaml:"idle_timeout" env:"HERALD_HTTP_IDLE_TIMEOUT"`
	// PublicURL is how browsers reach Herald (used in the JS client and links).
	PublicURL string `yaml:"public_url" env:"HERALD_PUBLIC_URL"`
}

// Database selects the store.
type Database struct {
	URL     string `yaml:"url" env:"HERALD_DATABASE_URL" secret:"url"`
	ReadURL string `yaml:"read_url" env:"HERALD_DATABASE_READ_URL" secret:"url"`
	MaxOpen int    `yaml:"max_open" env:"HERALD_DATABASE_MAX_OPEN"`
	// CacheMB is the embedded SQLite writer's page cache in MiB.
	CacheMB int `yaml:"cache_mb" env:"HERALD_DATABASE_CACHE_MB"`
	// CommitWindow is how long the group committer waits to gather writes.
	CommitWindow time.Duration `yaml:"commit_window" env:"HERALD_DATABASE_COMMIT_WINDOW"`
	// CommitBatch caps how many writes share one transaction.
	CommitBatch int `yaml:"commit_batch" env:"HERALD_DATABASE_COMMIT_BATCH"`
	// UserIndex keeps the per-user delivery index that serves
	// GET /v1/notifications?user_id= (default true). Off, every delivery
	// costs one random index page less, and the user filter is refused.
	// Every process on one database should agree: each sets it at start.
	UserIndex bool `yaml:"user_index" env:"HERALD_DATABASE_USER_INDEX"`
}

// Queue selects the priority lanes.
type Queue struct {
	// Driver is "embedded" (in-process lanes backed by the SQL outbox) or "rocketmq".
	Driver string `yaml:"driver" env:"HERALD_QUEUE_DRIVER"`
	// LaneCapacity bounds each in-process lane; overflow stays in the outbox.
	LaneCapacity int `yaml:"lane_capacity" env:"HERALD_QUEUE_LANE_CAPACITY"`
	// AgeLimit promotes a waiting lower-priority message ahead of fresher
	// higher-priority ones once it has waited this long (starvation guard).
	AgeLimit time.Duration `yaml:"age_limit" env:"HERALD_QUEUE_AGE_LIMIT"`
	// Visibility is how long a received message may stay unsettled before
	// the lane delivers it again; it must exceed the longest fan-out.
	Visibility time.Duration `yaml:"visibility" env:"HERALD_QUEUE_VISIBILITY"`
	RocketMQ   RocketMQ      `yaml:"rocketmq"`
}

// RocketMQ configures the production queue.
type RocketMQ struct {
	NameServers []string `yaml:"name_servers" env:"HERALD_ROCKETMQ_NAMESRV"`
	TopicPrefix string   `yaml:"topic_prefix" env:"HERALD_ROCKETMQ_TOPIC_PREFIX"`
	Group       string   `yaml:"group" env:"HERALD_ROCKETMQ_GROUP"`
	AccessKey   string   `yaml:"access_key" env:"HERALD_ROCKETMQ_ACCESS_KEY"`
	SecretKey   string   `yaml:"secret_key" env:"HERALD_ROCKETMQ_SECRET_KEY" secret:"true"`
}

// Outbound tunes dispatch.
type Outbound struct {
	// Workers is the default worker-pool size per channel.
	Workers int `yaml:"workers" env:"HERALD_OUTBOUND_WORKERS"`
	// ChannelWorkers overrides Workers per channel.
	ChannelWorkers map[string]int `yaml:"channel_workers"`
	MaxAttempts    int            `yaml:"max_attempts" env:"HERALD_OUTBOUND_MAX_ATTEMPTS"`
	BackoffBase    time.Duration  `yaml:"backoff_base" env:"HERALD_OUTBOUND_BACKOFF_BASE"`
	BackoffMax     time.Duration  `yaml:"backoff_max" env:"HERALD_OUTBOUND_BACKOFF_MAX"`
	// SweepInterval is how often the outbox, retry and reconciliation jobs run.
	SweepInterval time.Duration `yaml:"sweep_interval" env:"HERALD_OUTBOUND_SWEEP_INTERVAL"`
	// StaleAfter is how long a message may sit in a non-final state before
	// the reconciliation job takes it over.
	StaleAfter time.Duration `yaml:"stale_after" env:"HERALD_OUTBOUND_STALE_AFTER"`
	// DefaultChannels are used when a send names no channels and its template has no variants.
	DefaultChannels []string `yaml:"default_channels" env:"HERALD_OUTBOUND_DEFAULT_CHANNELS"`
	// BulkPause is how long a group fan-out that is not high priority
	// waits, every 64 members, while high-priority sends are being accepted
	// and dispatched (default 2ms; 0 never waits). It trades bulk throughput
	// during a high-priority stream for the high lane's latency
	// (docs/benchmarks.md).
	BulkPause time.Duration `yaml:"bulk_pause" env:"HERALD_OUTBOUND_BULK_PAUSE"`
	// Fallback chains per category ("*" for every category): when a
	// delivery fails for good on one channel, the next channel is tried.
	Fallback map[string][]string `yaml:"fallback"`
}

// SMTP configures the email adapter.
type SMTP struct {
	Host     string `yaml:"host" env:"HERALD_SMTP_HOST"`
	Port     int    `yaml:"port" env:"HERALD_SMTP_PORT"`
	Username string `yaml:"username" env:"HERALD_SMTP_USERNAME"`
	Password string `yaml:"password" env:"HERALD_SMTP_PASSWORD" secret:"true"`
	From     string `yaml:"from" env:"HERALD_SMTP_FROM"`
	// TLS is "starttls" (use it when offered, the default), "require"
	// (refuse to send without STARTTLS), "implicit" (SMTPS) or "none".
	TLS           string        `yaml:"tls" env:"HERALD_SMTP_TLS"`
	Timeout       time.Duration `yaml:"timeout" env:"HERALD_SMTP_TIMEOUT"`
	SkipVerifyTLS bool          `yaml:"skip_verify_tls" env:"HERALD_SMTP_SKIP_VERIFY_TLS"`
}

// Webhook configures the webhook adapter.
type Webhook struct {
	Timeout time.Duration `yaml:"timeout" env:"HERALD_WEBHOOK_TIMEOUT"`
	// AllowPrivate permits webhook URLs on loopback and private networks.
	AllowPrivate bool `yaml:"allow_private" env:"HERALD_WEBHOOK_ALLOW_PRIVATE"`
}

// Inbox configures the in-app inbox and WebSocket gateway.
type Inbox struct {
	TokenTTL time.Duration `yaml:"token_ttl" env:"HERALD_INBOX_TOKEN_TTL"`
}

// Security holds keys.
type Security struct {
	// TokenSecret signs WebSocket tokens; empty = generated and kept in the data dir.
	TokenSecret string `yaml:"token_secret" env:"HERALD_TOKEN_SECRET" secret:"true"`
	// EncryptionKey (32 bytes, base64) encrypts provider credentials at rest;
	// empty = generated and kept in the data dir.
	EncryptionKey string `yaml:"encryption_key" env:"HERALD_ENCRYPTION_KEY" secret:"true"`
	// CookieKey seals dashboard sessions; empty = generated and kept in the
	// data dir. Instances behind one load balancer must share it.
	CookieKey string `yaml:"cookie_key" env:"HERALD_COOKIE_KEY" secret:"true"`
}

// Analytics selects the tracker's event store.
type Analytics struct {
	// Driver is "sql" (the main database, default) or "cassandra".
	Driver            string   `yaml:"driver" env:"HERALD_ANALYTICS_DRIVER"`
	CassandraHosts    []string `yaml:"cassandra_hosts" env:"HERALD_CASSANDRA_HOSTS"`
	CassandraKeyspace string   `yaml:"cassandra_keyspace" env:"HERALD_CASSANDRA_KEYSPACE"`
	// Retention is how long raw events are kept in the SQL store (rollups
	// stay); Cassandra expires events with a TTL of the same length.
	Retention time.Duration `yaml:"retention" env:"HERALD_ANALYTICS_RETENTION"`
}

// Defaults returns the built-in configuration: everything embedded.
func Defaults() Config {
	return Config{
		HTTP:     HTTP{Addr: ":8080", BodyLimit: 1 << 20, IdleTimeout: 2 * time.Minute},
		DataDir:  "./herald-data",
		Targets:  "all",
		LogLevel: "info",
		Database: Database{MaxOpen: 32, CacheMB: 32, CommitWindow: 0, CommitBatch: 512, UserIndex: true},
		Queue:    Queue{Driver: "embedded", LaneCapacity: 65536, AgeLimit: 5 * time.Second, Visibility: 5 * time.Minute, RocketMQ: RocketMQ{TopicPrefix: "herald", Group: "herald-outbound"}},
		Outbound: Outbound{Workers: 16, MaxAttempts: 8, BackoffBase: time.Second, BackoffMax: 10 * time.Minute,
			SweepInterval: 5 * time.Second, StaleAfter: 2 * time.Minute, DefaultChannels: []string{"inapp"}, BulkPause: 2 * time.Millisecond},
		SMTP:      SMTP{Port: 587, TLS: "starttls", Timeout: 15 * time.Second, From: "herald@localhost"},
		Webhook:   Webhook{Timeout: 10 * time.Second},
		Inbox:     Inbox{TokenTTL: 15 * time.Minute},
		Analytics: Analytics{Driver: "sql", CassandraKeyspace: "herald", Retention: 90 * 24 * time.Hour},
	}
}

// Load builds the configuration from defaults, the YAML file at path (if not
// empty) and the environment.
func Load(path string, environ []string) (Config, error) {
	cfg := Defaults()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("read config %s: %w", path, err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil && err.Error() != "EOF" {
			return cfg, fmt.Errorf("parse config %s: %w", path, err)
		}
	}
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	if err := applyEnv(reflect.ValueOf(&cfg).Elem(), env); err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

func applyEnv(v reflect.Value, env map[string]string) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f, fv := t.Field(i), v.Field(i)
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)) {
			if err := applyEnv(fv, env); err != nil {
				return err
			}
			continue
		}
		name := f.Tag.Get("env")
		if name == "" {
			continue
		}
		val, ok := env[name]
		if file, fok := env[name+"_FILE"]; fok && !ok {
			b, err := os.ReadFile(file)
			if err != nil {
				return fmt.Errorf("%s_FILE: %w", name, err)
			}
			val, ok = strings.TrimSpace(string(b)), true
		}
		if !ok {
			continue
		}
		if err := setString(fv, val); err != nil {
			return fmt.Errorf("%s=%q: %w", name, val, err)
		}
	}
	return nil
}

func setString(fv reflect.Value, val string) error {
	switch {
	case fv.Type() == reflect.TypeOf(time.Duration(0)):
		d, err := time.ParseDuration(val)
		if err != nil {
			return err
		}
		fv.SetInt(int64(d))
	case fv.Kind() == reflect.String:
		fv.SetString(val)
	case fv.Kind() == reflect.Int:
		n, err := strconv.Atoi(val)
		if err != nil {
			return err
		}
		fv.SetInt(int64(n))
	case fv.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(val)
		if err != nil {
			return err
		}
		fv.SetBool(b)
	case fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.String:
		var parts []string
		for _, p := range strings.Split(val, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		fv.Set(reflect.ValueOf(parts))
	default:
		return fmt.Errorf("unsupported type %s", fv.Type())
	}
	return nil
}

// Set applies one "section.key=value" override (used for flags), by YAML name.
func (c *Config) Set(path, val string) error {
	v := reflect.ValueOf(c).Elem()
	for _, part := range strings.Split(path, ".") {
		if v.Kind() != reflect.Struct {
			return fmt.Errorf("config key %q: not a section", path)
		}
		found := false
		for i := 0; i < v.NumField(); i++ {
			name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ",")
			if name == part {
				v, found = v.Field(i), true
				break
			}
		}
		if !found {
			return fmt.Errorf("unknown config key %q", path)
		}
	}
	return setString(v, val)
}

// Validate checks values that would otherwise fail later and obscurely.
func (c *Config) Validate() error {
	if c.HTTP.Addr == "" {
		return fmt.Errorf("http.addr must not be empty")
	}
	switch c.Queue.Driver {
	case "embedded", "rocketmq":
	default:
		return fmt.Errorf("queue.driver %q: want embedded or rocketmq", c.Queue.Driver)
	}
	switch c.SMTP.TLS {
	case "starttls", "require", "implicit", "none":
	default:
		return fmt.Errorf("smtp.tls %q: want starttls, require, implicit or none", c.SMTP.TLS)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log_level %q: want debug, info, warn or error", c.LogLevel)
	}
	switch c.Analytics.Driver {
	case "sql", "cassandra":
	default:
		return fmt.Errorf("analytics.driver %q: want sql or cassandra", c.Analytics.Driver)
	}
	if c.HTTP.IdleTimeout < 0 {
		return fmt.Errorf("http.idle_timeout %v: want 0 (no limit) or more", c.HTTP.IdleTimeout)
	}
	if c.MemoryLimitMB < 0 {
		return fmt.Errorf("memory_limit_mb %d: want 0 (no limit) or more", c.MemoryLimitMB)
	}
	if c.Database.CacheMB < 1 || c.Database.CacheMB > 65536 {
		return fmt.Errorf("database.cache_mb %d: want 1 to 65536", c.Database.CacheMB)
	}
	if c.Outbound.BulkPause < 0 || c.Outbound.BulkPause > time.Second {
		return fmt.Errorf("outbound.bulk_pause %v: want 0 to 1s", c.Outbound.BulkPause)
	}
	if c.Outbound.MaxAttempts < 1 {
		return fmt.Errorf("outbound.max_attempts must be at least 1")
	}
	if c.Outbound.Workers < 1 {
		return fmt.Errorf("outbound.workers must be at least 1")
	}
	return nil
}

// Dump renders the configuration as YAML with secrets masked.
func (c Config) Dump() ([]byte, error) {
	masked := c
	maskSecrets(reflect.ValueOf(&masked).Elem())
	if len(masked.Providers) > 0 {
		pm := map[string]map[string]string{}
		for name, kv := range masked.Providers {
			pm[name] = map[string]string{}
			for k, v := range kv {
				if isSecretKey(k) && v != "" {
					v = "xxxxx"
				}
				pm[name][k] = v
			}
		}
		masked.Providers = pm
	}
	return yaml.Marshal(masked)
}

func isSecretKey(k string) bool {
	k = strings.ToLower(k)
	for _, s := range []string{"secret", "password", "token", "key"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

func maskSecrets(v reflect.Value) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f, fv := t.Field(i), v.Field(i)
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)) {
			maskSecrets(fv)
			continue
		}
		switch f.Tag.Get("secret") {
		case "true":
			if fv.String() != "" {
				fv.SetString("xxxxx")
			}
		case "url":
			fv.SetString(redactURL(fv.String()))
		}
	}
}

func redactURL(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return s
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return s
	}
	user, _, hasPass := strings.Cut(rest[:at], ":")
	if !hasPass {
		return s
	}
	return scheme + "://" + user + ":xxxxx" + rest[at:]
}
