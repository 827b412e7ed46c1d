// Package otp sends one-time codes and verifies them. A code is random,
// stored only as an HMAC (keyed by a server secret, so a leaked table cannot
// be brute-forced offline), expires (default 5 minutes), allows a limited
// number of attempts (default 5), is single-use, and is compared in constant
// time. Sends are always on the high lane, on the channel asked for (sms or
// email) and never rerouted to another kind of channel unless the request
// lists fallback channels itself. A resend cooldown, a per-recipient hourly
// cap and a per-app rate limit answer 429 problem+json with Retry-After.
//
// The code travels to the adapter inside the notification's payload; the
// payload is scrubbed as soon as the code is used or expires.
package otp

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"math/big"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"golang.org/x/time/rate"

	"herald.dev/platform/auth"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
	"herald.dev/platform/httpx"
	"herald.dev/platform/ids"
	"herald.dev/platform/messages"
	"herald.dev/platform/queue"
	"herald.dev/platform/sqldb"
)

//go:embed migrations
var migrations embed.FS

func init() {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		panic(err)
	}
	sqldb.Register("otp", sub)
}

// Problem codes of this API.
var (
	CodeInvalid  = httpx.Code{Name: "otp_invalid", Status: 422, Title: "The one-time code is not valid"}
	CodeExpired  = httpx.Code{Name: "otp_expired", Status: 422, Title: "The one-time code has expired"}
	CodeUsed     = httpx.Code{Name: "otp_used", Status: 422, Title: "The one-time code was already used"}
	CodeLocked   = httpx.Code{Name: "otp_locked", Status: 429, Title: "Too many wrong attempts: request a new code"}
	CodeNotFound = httpx.Code{Name: "otp_not_found", Status: 404, Title: "No one-time code is pending"}
)

// Options tune the service; zero values take the defaults shown.
type Options struct {
	TTL           time.Duration // 5m; requests may ask for 1m..30m
	MaxAttempts   int           // 5
	Cooldown      time.Duration // 60s between sends to one recipient and purpose
	PerHour       int           // 10 sends per recipient and purpose per hour
	AppRate       rate.Limit    // 50 sends/s per app
	AppBurst      int           // 100
	SweepInterval time.Duration // 30s: scrub used and expired codes from payloads
	Now           func() time.Time
}

// Deps are what the service needs.
type Deps struct {
	DB       *sqldb.DB
	Store    *messages.Store
	Queue    queue.Queue
	Renderer contracts.Renderer
	Tracker  contracts.Tracker
	// Secret keys the code HMAC (at least 32 bytes).
	Secret []byte
	Logf   func(string, ...any)
}

// Service is the OTP API.
type Service struct {
	d    Deps
	o    Options
	mu   sync.Mutex
	apps map[string]*rate.Limiter
	// stripes serialise sends per recipient inside this process so the
	// cooldown cannot be raced.
	stripes [64]sync.Mutex
}

// New returns the service.
func New(d Deps, o Options) (*Service, error) {
	if len(d.Secret) < 32 {
		return nil, errors.New("otp: secret must be at least 32 bytes")
	}
	if d.Tracker == nil {
		d.Tracker = contracts.NopTracker{}
	}
	if d.Logf == nil {
		d.Logf = func(string, ...any) {}
	}
	if o.TTL <= 0 {
		o.TTL = 5 * time.Minute
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	if o.Cooldown <= 0 {
		o.Cooldown = time.Minute
	}
	if o.PerHour <= 0 {
		o.PerHour = 10
	}
	if o.AppRate <= 0 {
		o.AppRate = 50
	}
	if o.AppBurst <= 0 {
		o.AppBurst = 100
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Service{d: d, o: o, apps: map[string]*rate.Limiter{}}, nil
}

// Mount adds POST /otp and POST /otp/verify to a router under /v1 behind auth.
func (s *Service) Mount(r fiber.Router) {
	r.Post("/otp", s.send)
	r.Post("/otp/verify", s.verify)
}

// OpenAPI returns the paths this service mounts.
func (s *Service) OpenAPI() map[string]any {
	op := func(summary string, codes ...string) map[string]any {
		resp := map[string]any{}
		for _, c := range codes {
			resp[c] = map[string]any{"description": c}
		}
		return map[string]any{"summary": summary, "tags": []string{"otp"}, "responses": resp}
	}
	return map[string]any{
		"/v1/otp":        map[string]any{"post": op("Send a one-time code (high priority)", "202", "404", "422", "429")},
		"/v1/otp/verify": map[string]any{"post": op("Verify a one-time code", "200", "404", "422", "429")},
	}
}

type sendReq struct {
	UserID   string         `json:"user_id" validate:"omitempty,max=128"`
	Phone    string         `json:"phone" validate:"omitempty,e164"`
	Email    string         `json:"email" validate:"omitempty,email,max=254"`
	Channel  string         `json:"channel" validate:"omitempty,oneof=sms email"`
	Purpose  string         `json:"purpose" validate:"omitempty,max=64"`
	Template string         `json:"template" validate:"omitempty,max=64"`
	Data     map[string]any `json:"data"`
	Length   int            `json:"length" validate:"omitempty,min=4,max=10"`
	TTL      string         `json:"ttl"`
	Locale   string         `json:"locale" validate:"omitempty,max=35"`
	// Fallback opts this code into other channels (sms, email) when its channel fails for good.
	Fallback []string `json:"fallback" validate:"max=2,dive,oneof=sms email"`
}

func (r *sendReq) recipient() (domain.Recipient, string, *httpx.Problem) {
	n := 0
	for _, v := range []string{r.UserID, r.Phone, r.Email} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return domain.Recipient{}, "", httpx.Invalid("user_id", "exactly one of user_id, phone or email is required")
	}
	switch {
	case r.UserID != "":
		return domain.Recipient{UserID: r.UserID}, r.UserID, nil
	case r.Phone != "":
		return domain.Recipient{Phone: r.Phone}, "phone:" + r.Phone, nil
	default:
		return domain.Recipient{Email: r.Email}, "email:" + strings.ToLower(r.Email), nil
	}
}

func (s *Service) appLimiter(appID string) *rate.Limiter {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.apps[appID]
	if !ok {
		l = rate.NewLimiter(s.o.AppRate, s.o.AppBurst)
		s.apps[appID] = l
	}
	return l
}

func (s *Service) stripe(key string) *sync.Mutex {
	h := fnv.New32a()
	h.Write([]byte(key))
	return &s.stripes[h.Sum32()%uint32(len(s.stripes))]
}

func rateLimited(after time.Duration, format string, args ...any) *httpx.Problem {
	p := httpx.CodeRateLimited.New(format, args...)
	p.RetryAfter = max(1, int((after+time.Second-1)/time.Second))
	return p
}

func (s *Service) send(c *fiber.Ctx) error {
	appID := auth.AppID(c)
	var req sendReq
	if err := httpx.Bind(c, &req); err != nil {
		return err
	}
	rcpt, key, perr := req.recipient()
	if perr != nil {
		return perr
	}
	ch := domain.Channel(req.Channel)
	if ch == "" {
		ch = domain.ChannelSMS
		if req.Email != "" {
			ch = domain.ChannelEmail
		}
	}
	if ch == domain.ChannelSMS && req.Email != "" {
		return httpx.Invalid("channel", "an email recipient needs channel email")
	}
	if ch == domain.ChannelEmail && req.Phone != "" {
		return httpx.Invalid("channel", "a phone recipient needs channel sms")
	}
	ttl := s.o.TTL
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d < time.Minute || d > 30*time.Minute {
			return httpx.Invalid("ttl", "must be a duration between 1m and 30m, such as 5m")
		}
		ttl = d
	}
	length := req.Length
	if length == 0 {
		length = 6
	}
	purpose := req.Purpose
	if purpose == "" {
		purpose = "default"
	}
	if !s.appLimiter(appID).Allow() {
		return rateLimited(time.Second, "this app sends at most %.0f codes per second", float64(s.o.AppRate))
	}
	ctx := c.UserContext()
	mu := s.stripe(appID + "\x00" + key + "\x00" + purpose)
	mu.Lock()
	defer mu.Unlock()
	now := s.o.Now()
	if p, err := s.checkLimits(ctx, appID, key, purpose, now); err != nil {
		return err
	} else if p != nil {
		return p
	}

	code, err := randomDigits(length)
	if err != nil {
		return fmt.Errorf("otp: %w", err)
	}
	data := map[string]any{}
	for k, v := range req.Data {
		data[k] = v
	}
	data["code"] = code
	data["ttl_minutes"] = int(ttl / time.Minute)
	n := &messages.Notification{
		ID: ids.New("ntf"), AppID: appID, Status: domain.MessageAccepted, Priority: domain.PriorityHigh,
		Kind: domain.KindNotice, Category: "otp",
		Payload:   messages.Payload{Data: data, Recipients: []domain.Recipient{rcpt}, Channels: []domain.Channel{ch}, Locale: req.Locale},
		ExpiresAt: now.Add(ttl), NextAt: now.Add(30 * time.Second), CreatedAt: now, UpdatedAt: now,
	}
	for _, f := range req.Fallback {
		if domain.Channel(f) != ch {
			n.Payload.Fallback = append(n.Payload.Fallback, domain.Channel(f))
		}
	}
	if req.Template != "" {
		if s.d.Renderer == nil {
			return httpx.Invalid("template", "templates are not available")
		}
		info, err := s.d.Renderer.Check(ctx, appID, req.Template, data)
		var missing *contracts.MissingVariableError
		switch {
		case errors.Is(err, contracts.ErrTemplateNotFound):
			return httpx.Invalid("template", "no template %q", req.Template)
		case errors.As(err, &missing):
			return httpx.Invalid("data", "missing template variables: %s", strings.Join(missing.Variables, ", "))
		case err != nil:
			return fmt.Errorf("check otp template: %w", err)
		}
		n.TemplateCode, n.TemplateVersion = info.Code, info.Version
	} else {
		mins := int(ttl / time.Minute)
		n.Payload.Content = map[string]domain.Content{"*": {
			Subject: "Your verification code",
			Text:    fmt.Sprintf("Your verification code is %s. It expires in %d minutes.", code, mins),
			HTML:    fmt.Sprintf("<p>Your verification code is <b>%s</b>. It expires in %d minutes.</p>", code, mins),
		}}
	}
	otpID := ids.New("otp")
	if _, err := s.d.DB.W.ExecContext(ctx, `INSERT INTO otp_codes (id, app_id, recipient, purpose, channel, code_hash, max_attempts, expires_at, notification_id, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, otpID, appID, key, purpose, string(ch), s.hash(otpID, code), s.o.MaxAttempts,
		domain.Millis(now.Add(ttl)), n.ID, domain.Millis(now)); err != nil {
		return fmt.Errorf("store otp: %w", err)
	}
	if _, err := s.d.Store.Accept(ctx, n); err != nil {
		_, _ = s.d.DB.W.ExecContext(context.Background(), `DELETE FROM otp_codes WHERE id = ?`, otpID)
		return fmt.Errorf("accept otp notification: %w", err)
	}
	if err := s.d.Queue.Publish(ctx, queue.Message{ID: n.ID, AppID: appID, Priority: domain.PriorityHigh}); err != nil {
		s.d.Logf("otp %s: publish %s: %v (the outbox sweeper will dispatch it)", otpID, n.ID, err)
	}
	s.d.Tracker.Track(contracts.Event{AppID: appID, NotificationID: n.ID, Category: "otp", Priority: domain.PriorityHigh, Type: contracts.EventAccepted, At: now})
	return c.Status(fiber.StatusAccepted).JSON(fiber.Map{
		"id": otpID, "notification_id": n.ID, "channel": ch, "expires_at": now.Add(ttl).UTC().Format(time.RFC3339),
		"resend_after": now.Add(s.o.Cooldown).UTC().Format(time.RFC3339),
	})
}

func (s *Service) checkLimits(ctx context.Context, appID, key, purpose string, now time.Time) (*httpx.Problem, error) {
	var last sql.NullInt64
	var count int
	err := s.d.DB.W.QueryRowContext(ctx, `SELECT MAX(created_at), COUNT(*) FROM otp_codes WHERE app_id = ? AND recipient = ? AND purpose = ? AND created_at > ?`,
		appID, key, purpose, domain.Millis(now.Add(-time.Hour))).Scan(&last, &count)
	if err != nil {
		return nil, fmt.Errorf("otp limits: %w", err)
	}
	if last.Valid {
		if wait := domain.FromMillis(last.Int64).Add(s.o.Cooldown).Sub(now); wait > 0 {
			return rateLimited(wait, "a code was sent to this recipient moments ago; wait %s before asking again", wait.Round(time.Second)), nil
		}
	}
	if count >= s.o.PerHour {
		return rateLimited(time.Hour/time.Duration(s.o.PerHour), "at most %d codes per hour may be sent to one recipient", s.o.PerHour), nil
	}
	return nil, nil
}

type verifyReq struct {
	ID      string `json:"id" validate:"omitempty,max=64"`
	UserID  string `json:"user_id" validate:"omitempty,max=128"`
	Phone   string `json:"phone" validate:"omitempty,e164"`
	Email   string `json:"email" validate:"omitempty,email"`
	Purpose string `json:"purpose" validate:"omitempty,max=64"`
	Code    string `json:"code" validate:"required,max=16"`
}

func (s *Service) verify(c *fiber.Ctx) error {
	appID := auth.AppID(c)
	var req verifyReq
	if err := httpx.Bind(c, &req); err != nil {
		return err
	}
	ctx := c.UserContext()
	now := s.o.Now()
	var (
		id, notifID          string
		hash                 []byte
		attempts, maxAttempt int
		expires, used        int64
	)
	q := `SELECT id, code_hash, attempts, max_attempts, expires_at, used_at, notification_id FROM otp_codes WHERE app_id = ? `
	args := []any{appID}
	if req.ID != "" {
		q += `AND id = ?`
		args = append(args, req.ID)
	} else {
		sr := sendReq{UserID: req.UserID, Phone: req.Phone, Email: req.Email}
		_, key, perr := sr.recipient()
		if perr != nil {
			return httpx.Invalid("id", "give the code's id, or exactly one of user_id, phone or email")
		}
		purpose := req.Purpose
		if purpose == "" {
			purpose = "default"
		}
		q += `AND recipient = ? AND purpose = ? ORDER BY created_at DESC LIMIT 1`
		args = append(args, key, purpose)
	}
	err := s.d.DB.W.QueryRowContext(ctx, q, args...).Scan(&id, &hash, &attempts, &maxAttempt, &expires, &used, &notifID)
	if errors.Is(err, sql.ErrNoRows) {
		return CodeNotFound.New("no one-time code was sent to this recipient")
	}
	if err != nil {
		return fmt.Errorf("load otp: %w", err)
	}
	switch {
	case used != 0:
		return CodeUsed.New("this code was already used; request a new one")
	case now.UnixMilli() >= expires:
		return CodeExpired.New("this code expired at %s; request a new one", domain.FromMillis(expires).Format(time.RFC3339))
	case attempts >= maxAttempt:
		return CodeLocked.New("%d wrong attempts; request a new code", attempts)
	}
	// Count the attempt first (atomically), so concurrent guesses cannot exceed the limit.
	res, err := s.d.DB.W.ExecContext(ctx, `UPDATE otp_codes SET attempts = attempts + 1 WHERE id = ? AND attempts < max_attempts AND used_at = 0 AND expires_at > ?`, id, now.UnixMilli())
	if err != nil {
		return fmt.Errorf("count otp attempt: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return CodeLocked.New("too many attempts or the code is no longer valid; request a new code")
	}
	if !hmac.Equal(hash, s.hash(id, strings.TrimSpace(req.Code))) {
		left := maxAttempt - attempts - 1
		if left <= 0 {
			return CodeLocked.New("wrong code; no attempts left: request a new code")
		}
		p := CodeInvalid.Fields(httpx.FieldError{Field: "code", Reason: fmt.Sprintf("wrong code; %d attempts left", left)})
		return p
	}
	res, err = s.d.DB.W.ExecContext(ctx, `UPDATE otp_codes SET used_at = ? WHERE id = ? AND used_at = 0`, now.UnixMilli(), id)
	if err != nil {
		return fmt.Errorf("mark otp used: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return CodeUsed.New("this code was already used; request a new one")
	}
	if err := s.scrub(ctx, id, notifID); err != nil {
		s.d.Logf("otp %s: scrub: %v", id, err)
	}
	return c.JSON(fiber.Map{"verified": true, "id": id})
}

func (s *Service) hash(id, code string) []byte {
	m := hmac.New(sha256.New, s.d.Secret)
	m.Write([]byte(id))
	m.Write([]byte{0})
	m.Write([]byte(code))
	return m.Sum(nil)
}

func (s *Service) scrub(ctx context.Context, otpID, notifID string) error {
	if err := s.d.Store.Scrub(ctx, notifID, "code"); err != nil {
		return err
	}
	_, err := s.d.DB.W.ExecContext(ctx, `UPDATE otp_codes SET scrubbed = 1 WHERE id = ?`, otpID)
	return err
}

// Run scrubs codes from the payloads of used and expired OTPs until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(s.o.SweepInterval)
	defer t.Stop()
	for {
		if err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.d.Logf("otp sweep: %v", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Sweep scrubs one batch of used or expired codes.
func (s *Service) Sweep(ctx context.Context) error {
	rows, err := s.d.DB.W.QueryContext(ctx, `SELECT id, notification_id FROM otp_codes WHERE scrubbed = 0 AND (used_at > 0 OR expires_at <= ?) LIMIT 500`, s.o.Now().UnixMilli())
	if err != nil {
		return err
	}
	type pair struct{ id, notif string }
	var todo []pair
	for rows.Next() {
		var p pair
		if err := rows.Scan(&p.id, &p.notif); err != nil {
			rows.Close()
			return err
		}
		todo = append(todo, p)
	}
	rows.Close()
	for _, p := range todo {
		if err := s.scrub(ctx, p.id, p.notif); err != nil {
			return err
		}
	}
	return rows.Err()
}

func randomDigits(n int) (string, error) {
	var b strings.Builder
	ten := big.NewInt(10)
	for i := 0; i < n; i++ {
		d, err := rand.Int(rand.Reader, ten)
		if err != nil {
			return "", err
		}
		b.WriteByte(byte('0' + d.Int64()))
	}
	return b.String(), nil
}
