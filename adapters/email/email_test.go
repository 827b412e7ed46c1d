package email

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"herald.dev/adapters/adaptertest"
	"herald.dev/adapters/registry"
	"herald.dev/platform/config"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
)

const fromHeader = "Herald 通知 <noreply@herald.example>"

func smtpConfig(s *testServer, mode string) config.SMTP {
	return config.SMTP{
		Host:     "127.0.0.1",
		Port:     s.addr.Port,
		Username: s.user,
		Password: s.pass,
		From:     fromHeader,
		TLS:      mode,
		Timeout:  5 * time.Second,
	}
}

func newAdapter(t *testing.T, cfg config.SMTP, opts ...Option) *Adapter {
	t.Helper()
	a, err := New(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

func delivery(id, to string) *contracts.Delivery {
	d := adaptertest.Delivery(domain.ChannelEmail, id)
	d.Address = to
	return d
}

func TestConformance(t *testing.T) {
	adaptertest.Run(t, adaptertest.Harness{
		Channel: domain.ChannelEmail,
		Setup: func(t *testing.T) *adaptertest.Env {
			s := newServer(t, serverOpts{startTLS: true, auth: true})
			cfg := config.Defaults()
			cfg.SMTP = smtpConfig(s, TLSRequire)
			cfg.SMTP.SkipVerifyTLS = true
			senders, err := registry.Build(registry.Deps{Config: cfg, Logf: t.Logf}, domain.ChannelEmail)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = registry.Close(senders) })
			return &adaptertest.Env{
				Sender:     senders[domain.ChannelEmail],
				Address:    func(d *contracts.Delivery) { d.Address = "alice@example.com" },
				Seen:       s.seen.IDs,
				FailNext:   s.fail.Arm,
				BadAddress: func(d *contracts.Delivery) { d.Address = "not an address" },
				Stall:      s.gate.Arm,
			}
		},
	})
}

func TestFactory(t *testing.T) {
	tests := []struct {
		name       string
		smtp       config.SMTP
		notConfig  bool
		wantErrSub string
	}{
		{"no host", config.SMTP{From: "a@b.c"}, true, "smtp.host"},
		{"bad from", config.SMTP{Host: "mail.example.com", From: "not an address"}, false, "smtp.from"},
		{"empty from", config.SMTP{Host: "mail.example.com"}, false, "smtp.from"},
		{"bad tls mode", config.SMTP{Host: "mail.example.com", From: "a@b.c", TLS: "sometimes"}, false, "smtp.tls"},
		{"ok", config.SMTP{Host: "mail.example.com", From: "a@b.c", TLS: "implicit"}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Defaults()
			cfg.SMTP = tt.smtp
			senders, err := registry.Build(registry.Deps{Config: cfg}, domain.ChannelEmail)
			if tt.wantErrSub == "" {
				if err != nil {
					t.Fatal(err)
				}
				a := senders[domain.ChannelEmail].(*Adapter)
				if a.addr != "mail.example.com:465" {
					t.Fatalf("implicit TLS default address = %s", a.addr)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErrSub) {
				t.Fatalf("err = %v, want %q", err, tt.wantErrSub)
			}
			if errors.Is(err, registry.ErrNotConfigured) != tt.notConfig {
				t.Fatalf("ErrNotConfigured = %v, want %v", errors.Is(err, registry.ErrNotConfigured), tt.notConfig)
			}
		})
	}
}

// TestMIME checks the message a real server received over STARTTLS + AUTH.
func TestMIME(t *testing.T) {
	s := newServer(t, serverOpts{startTLS: true, auth: true})
	a := newAdapter(t, smtpConfig(s, TLSStartTLS), WithRootCAs(s.pool))
	subject := "您的订单已发货 — order #1234 shipped, tracking number inside, arriving on Friday the 13th"
	text := "Hello Alice,\nYour order shipped.\nA line that is definitely longer than seventy-six characters so quoted-printable has to wrap it softly.\n"
	html := `<p>Hello <b>Alice</b>,</p><p>Your order shipped. Café crème costs 3 €.</p>`
	d := delivery("dlv_01MIME", "Alice Smith <alice@example.com>")
	d.Content = domain.Content{Subject: subject, Text: text, HTML: html}
	res, err := a.Send(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	if res.ProviderID != "<dlv_01MIME@herald.example>" {
		t.Fatalf("ProviderID = %q", res.ProviderID)
	}
	msgs := s.messages()
	if len(msgs) != 1 {
		t.Fatalf("server received %d messages", len(msgs))
	}
	got := msgs[0]
	if !got.tls || !got.authed {
		t.Fatalf("tls=%v authed=%v, want both", got.tls, got.authed)
	}
	if got.from != "noreply@herald.example" || len(got.to) != 1 || got.to[0] != "alice@example.com" {
		t.Fatalf("envelope from=%q to=%v", got.from, got.to)
	}
	checkCRLF(t, got.data)

	m, err := mail.ReadMessage(bytes.NewReader(got.data))
	if err != nil {
		t.Fatal(err)
	}
	dec := new(mime.WordDecoder)
	gotSubject, err := dec.DecodeHeader(m.Header.Get("Subject"))
	if err != nil || gotSubject != subject {
		t.Fatalf("Subject = %q (%v), want %q", gotSubject, err, subject)
	}
	from, err := m.Header.AddressList("From")
	if err != nil || from[0].Name != "Herald 通知" || from[0].Address != "noreply@herald.example" {
		t.Fatalf("From = %v (%v)", from, err)
	}
	to, err := m.Header.AddressList("To")
	if err != nil || to[0].Name != "Alice Smith" || to[0].Address != "alice@example.com" {
		t.Fatalf("To = %v (%v)", to, err)
	}
	if _, err := m.Header.Date(); err != nil {
		t.Fatalf("Date: %v", err)
	}
	for k, want := range map[string]string{
		"Message-Id":               "<dlv_01MIME@herald.example>",
		"X-Herald-Delivery-Id":     "dlv_01MIME",
		"X-Herald-Notification-Id": "ntf_dlv_01MIME",
		"Mime-Version":             "1.0",
	} {
		if got := m.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	parts := readParts(t, m)
	if len(parts) != 2 {
		t.Fatalf("got %d parts, want 2", len(parts))
	}
	if parts[0].ctype != "text/plain" || parts[0].body != strings.ReplaceAll(text, "\n", "\r\n") {
		t.Errorf("text part %q = %q", parts[0].ctype, parts[0].body)
	}
	if parts[1].ctype != "text/html" || strings.TrimRight(parts[1].body, "\r\n") != html {
		t.Errorf("html part %q = %q", parts[1].ctype, parts[1].body)
	}
	for _, p := range parts {
		if p.cte != "quoted-printable" || p.charset != "UTF-8" {
			t.Errorf("part %s: cte=%q charset=%q", p.ctype, p.cte, p.charset)
		}
	}
}

func TestChineseBodyBase64AndRepeatedMessageID(t *testing.T) {
	s := newServer(t, serverOpts{startTLS: true, auth: true})
	a := newAdapter(t, smtpConfig(s, TLSRequire), WithRootCAs(s.pool))
	d := delivery("dlv_zh", "bob@example.com")
	d.Content = domain.Content{Subject: "系统通知：您有一条新的待办事项", Text: "您好，\n您有一条新的待办事项，请及时处理。", HTML: "<p>您好，</p><p>您有一条新的待办事项，请及时处理。</p>"}
	for attempt := 1; attempt <= 2; attempt++ {
		d.Attempt = attempt
		if _, err := a.Send(context.Background(), d); err != nil {
			t.Fatal(err)
		}
	}
	msgs := s.messages()
	if len(msgs) != 2 {
		t.Fatalf("received %d", len(msgs))
	}
	var ids []string
	for _, got := range msgs {
		m, err := mail.ReadMessage(bytes.NewReader(got.data))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.Header.Get("Message-Id"))
		subj, _ := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
		if subj != d.Content.Subject {
			t.Fatalf("Subject = %q", subj)
		}
		parts := readParts(t, m)
		if len(parts) != 2 || parts[0].cte != "base64" || parts[1].cte != "base64" {
			t.Fatalf("parts = %+v, want two base64 parts", parts)
		}
		if parts[0].body != strings.ReplaceAll(d.Content.Text, "\n", "\n") || parts[1].body != d.Content.HTML {
			t.Fatalf("decoded bodies %q / %q", parts[0].body, parts[1].body)
		}
	}
	if ids[0] != "<dlv_zh@herald.example>" || ids[0] != ids[1] {
		t.Fatalf("Message-IDs %v, want the same id derived from the delivery", ids)
	}
}

func TestSinglePartBodies(t *testing.T) {
	s := newServer(t, serverOpts{})
	a := newAdapter(t, smtpConfig(s, TLSNone))
	tests := []struct {
		name      string
		content   domain.Content
		wantParts []string // content types; nil = single text/plain
		wantText  string
	}{
		{"text only", domain.Content{Subject: "s", Text: "just text"}, nil, "just text"},
		{"body fallback", domain.Content{Title: "t", Body: "in-app body"}, nil, "in-app body"},
		{"html only derives text", domain.Content{Subject: "s", HTML: "<style>p{}</style><p>Hi&nbsp;<b>there</b></p><p>Line 2<br>Line 3</p>"},
			[]string{"text/plain", "text/html"}, "Hi\u00a0there\nLine 2\nLine 3"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := delivery("dlv_single", "carol@example.com")
			d.Content = tt.content
			if _, err := a.Send(context.Background(), d); err != nil {
				t.Fatal(err)
			}
			got := s.messages()[i]
			checkCRLF(t, got.data)
			m, err := mail.ReadMessage(bytes.NewReader(got.data))
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantParts == nil {
				mt, params, _ := mime.ParseMediaType(m.Header.Get("Content-Type"))
				body, _ := io.ReadAll(decodeCTE(m.Header.Get("Content-Transfer-Encoding"), m.Body))
				if mt != "text/plain" || params["charset"] != "UTF-8" || strings.TrimRight(string(body), "\r\n") != tt.wantText {
					t.Fatalf("single part %s %v %q", mt, params, body)
				}
				return
			}
			parts := readParts(t, m)
			if len(parts) != len(tt.wantParts) || parts[0].ctype != tt.wantParts[0] || strings.ReplaceAll(parts[0].body, "\r\n", "\n") != tt.wantText {
				t.Fatalf("parts = %+v", parts)
			}
		})
	}
	d := delivery("dlv_empty", "carol@example.com")
	d.Content = domain.Content{Subject: "nothing"}
	_, err := a.Send(context.Background(), d)
	var se *contracts.SendError
	if !errors.As(err, &se) || se.Retryable || !errors.Is(err, ErrNoContent) {
		t.Fatalf("empty content: %v, want permanent ErrNoContent", err)
	}
}

func TestRecipientRejections(t *testing.T) {
	s := newServer(t, serverOpts{startTLS: true, auth: true})
	s.reply("nobody@example.com", 550, "Mailbox unavailable")
	s.reply("full@example.com", 552, "Mailbox full")
	s.reply("greylisted@example.com", 451, "Greylisted, try again later")
	s.reply("busy@example.com", 450, "Mailbox busy")
	a := newAdapter(t, smtpConfig(s, TLSRequire), WithRootCAs(s.pool))
	tests := []struct {
		to     string
		retry  bool
		reason string
	}{
		{"nobody@example.com", false, "smtp 550 at RCPT TO"},
		{"full@example.com", false, "smtp 552 at RCPT TO"},
		{"greylisted@example.com", true, "smtp 451 at RCPT TO"},
		{"busy@example.com", true, "smtp 450 at RCPT TO"},
	}
	for _, tt := range tests {
		t.Run(tt.to, func(t *testing.T) {
			_, err := a.Send(context.Background(), delivery("dlv_rej", tt.to))
			var se *contracts.SendError
			if !errors.As(err, &se) || se.Retryable != tt.retry || se.Reason != tt.reason {
				t.Fatalf("err = %v, want retry=%v reason %q", err, tt.retry, tt.reason)
			}
		})
	}
	// the rejected transactions were reset and the one connection kept
	if _, err := a.Send(context.Background(), delivery("dlv_ok", "alice@example.com")); err != nil {
		t.Fatal(err)
	}
	if n := s.ln.accepted.Load(); n != 1 {
		t.Fatalf("server accepted %d connections, want 1 reused", n)
	}
	if n := len(s.messages()); n != 1 {
		t.Fatalf("server stored %d messages, want 1", n)
	}
}

func TestInvalidAddresses(t *testing.T) {
	s := newServer(t, serverOpts{})
	a := newAdapter(t, smtpConfig(s, TLSNone))
	for _, addr := range []string{"", "   ", "not-an-address", "@example.com", "alice@", "alice@example.com\r\nRCPT TO:<evil@x.y>", "a@b.c, d@e.f"} {
		t.Run(addr, func(t *testing.T) {
			_, err := a.Send(context.Background(), delivery("dlv_bad", addr))
			var se *contracts.SendError
			if !errors.As(err, &se) || se.Retryable || se.Reason != "invalid email address" {
				t.Fatalf("err = %v, want permanent invalid address", err)
			}
		})
	}
	if n := s.ln.accepted.Load(); n != 0 {
		t.Fatalf("invalid addresses opened %d connections", n)
	}
}

func TestConnectionReuse(t *testing.T) {
	s := newServer(t, serverOpts{startTLS: true, auth: true})
	a := newAdapter(t, smtpConfig(s, TLSStartTLS), WithRootCAs(s.pool))
	for i := range 5 {
		if _, err := a.Send(context.Background(), delivery("dlv_seq_"+string(rune('a'+i)), "alice@example.com")); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.ln.accepted.Load(); n != 1 {
		t.Fatalf("5 sequential sends used %d connections, want 1", n)
	}
	// The server drops idle connections: the next send retries on a fresh one.
	s.ln.dropAll()
	if _, err := a.Send(context.Background(), delivery("dlv_after_drop", "alice@example.com")); err != nil {
		t.Fatalf("send after the server dropped the pooled connection: %v", err)
	}
	if n := s.ln.accepted.Load(); n != 2 {
		t.Fatalf("accepted %d connections, want 2", n)
	}
	if got := s.seen.IDs(); len(got) != 6 {
		t.Fatalf("server saw %v", got)
	}
}

func TestIdleTimeoutDiscardsConnection(t *testing.T) {
	s := newServer(t, serverOpts{})
	now := time.Unix(1_700_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	a := newAdapter(t, smtpConfig(s, TLSNone), WithClock(clock), WithIdleTimeout(time.Minute))
	send := func(id string) {
		t.Helper()
		if _, err := a.Send(context.Background(), delivery(id, "alice@example.com")); err != nil {
			t.Fatal(err)
		}
	}
	send("dlv_1")
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	send("dlv_2")
	if n := s.ln.accepted.Load(); n != 2 {
		t.Fatalf("accepted %d connections, want a fresh one after the idle timeout", n)
	}
}

func TestTLSModes(t *testing.T) {
	tests := []struct {
		name    string
		server  serverOpts
		mode    string
		trust   bool // give the adapter the server's CA
		skip    bool // smtp.skip_verify_tls
		wantTLS bool
		wantErr string // reason substring; "" = success
	}{
		{"starttls verified", serverOpts{startTLS: true, auth: true}, TLSStartTLS, true, false, true, ""},
		{"starttls skip verify", serverOpts{startTLS: true, auth: true}, TLSStartTLS, false, true, true, ""},
		{"starttls untrusted cert", serverOpts{startTLS: true}, TLSStartTLS, false, false, false, "smtp tls certificate rejected"},
		{"starttls falls back to plain", serverOpts{}, TLSStartTLS, false, false, false, ""},
		{"require without STARTTLS", serverOpts{}, TLSRequire, false, false, false, "smtp connection failed"},
		{"implicit", serverOpts{implicit: true, auth: true}, TLSImplicit, true, false, true, ""},
		{"none with insecure auth on loopback", serverOpts{auth: true, insecure: true}, TLSNone, false, false, false, ""},
		{"none never upgrades", serverOpts{startTLS: true}, TLSNone, false, false, false, ""},
		{"auth required but not offered without TLS", serverOpts{auth: true}, TLSNone, false, false, false, "smtp authentication failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t, tt.server)
			cfg := smtpConfig(s, tt.mode)
			if tt.name == "auth required but not offered without TLS" {
				cfg.Username, cfg.Password = "herald", "s3cret"
			}
			cfg.SkipVerifyTLS = tt.skip
			var opts []Option
			if tt.trust {
				opts = append(opts, WithRootCAs(s.pool))
			}
			a := newAdapter(t, cfg, opts...)
			_, err := a.Send(context.Background(), delivery("dlv_tls", "alice@example.com"))
			if tt.wantErr != "" {
				var se *contracts.SendError
				if !errors.As(err, &se) || !se.Retryable || !strings.Contains(se.Reason, tt.wantErr) {
					t.Fatalf("err = %v, want retryable %q", err, tt.wantErr)
				}
				if len(s.messages()) != 0 {
					t.Fatal("message delivered despite the error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			msgs := s.messages()
			if len(msgs) != 1 || msgs[0].tls != tt.wantTLS {
				t.Fatalf("messages %d, tls=%v want %v", len(msgs), len(msgs) > 0 && msgs[0].tls, tt.wantTLS)
			}
		})
	}
}

func TestRequireTLSErrorMentionsSetting(t *testing.T) {
	s := newServer(t, serverOpts{})
	a := newAdapter(t, smtpConfig(s, TLSRequire))
	_, err := a.Send(context.Background(), delivery("dlv_req", "alice@example.com"))
	if err == nil || !strings.Contains(err.Error(), "smtp.tls=require") {
		t.Fatalf("err = %v", err)
	}
}

func TestAuthFailure(t *testing.T) {
	s := newServer(t, serverOpts{startTLS: true, auth: true})
	cfg := smtpConfig(s, TLSRequire)
	cfg.Password = "wrong"
	a := newAdapter(t, cfg, WithRootCAs(s.pool))
	_, err := a.Send(context.Background(), delivery("dlv_auth", "alice@example.com"))
	var se *contracts.SendError
	if !errors.As(err, &se) || !se.Retryable || se.Reason != "smtp authentication failed" {
		t.Fatalf("err = %v, want retryable authentication failure", err)
	}
}

func TestTimeoutRetryable(t *testing.T) {
	s := newServer(t, serverOpts{})
	cfg := smtpConfig(s, TLSNone)
	cfg.Timeout = 100 * time.Millisecond
	a := newAdapter(t, cfg)
	_, release := s.gate.Arm()
	defer release()
	_, err := a.Send(context.Background(), delivery("dlv_slow", "alice@example.com"))
	var se *contracts.SendError
	if !errors.As(err, &se) || !se.Retryable || !strings.Contains(se.Reason, "timed out") {
		t.Fatalf("err = %v, want retryable timeout", err)
	}
	if errors.Is(err, context.Canceled) {
		t.Fatal("timeout reported as cancellation")
	}
}

func TestConnectionRefusedRetryable(t *testing.T) {
	s := newServer(t, serverOpts{})
	cfg := smtpConfig(s, TLSNone)
	s.stop() // nothing listens any more
	a := newAdapter(t, cfg)
	_, err := a.Send(context.Background(), delivery("dlv_down", "alice@example.com"))
	var se *contracts.SendError
	if !errors.As(err, &se) || !se.Retryable {
		t.Fatalf("err = %v, want retryable", err)
	}
}

func TestUTF8RecipientNeedsSMTPUTF8(t *testing.T) {
	s := newServer(t, serverOpts{})
	a := newAdapter(t, smtpConfig(s, TLSNone))
	_, err := a.Send(context.Background(), delivery("dlv_utf8", "用户@例子.广告"))
	var se *contracts.SendError
	if !errors.As(err, &se) || se.Retryable || se.Reason != "recipient needs SMTPUTF8" {
		t.Fatalf("err = %v", err)
	}
}

type part struct {
	ctype, charset, cte, body string
}

// readParts reads a multipart/alternative body; quoted-printable is decoded
// by mime/multipart itself, base64 here.
func readParts(t *testing.T, m *mail.Message) []part {
	t.Helper()
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" || params["boundary"] == "" {
		t.Fatalf("Content-Type %q: %v", m.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	var out []part
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ct, cp, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		cte := p.Header.Get("Content-Transfer-Encoding")
		body, err := io.ReadAll(decodeCTE(cte, p))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, part{ctype: ct, charset: cp["charset"], cte: cte, body: string(body)})
	}
	return out
}

func decodeCTE(cte string, r io.Reader) io.Reader {
	switch strings.ToLower(cte) {
	case "base64":
		return base64.NewDecoder(base64.StdEncoding, r)
	case "quoted-printable":
		return qpReader(r)
	}
	return r
}

// checkCRLF fails on a bare LF or CR or an over-long line.
func checkCRLF(t *testing.T, b []byte) {
	t.Helper()
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			t.Fatalf("bare LF at byte %d: %q", i, b[max(0, i-40):i+1])
		}
		if c == '\r' && (i+1 >= len(b) || b[i+1] != '\n') {
			t.Fatalf("bare CR at byte %d", i)
		}
	}
	for i, line := range bytes.Split(b, []byte("\r\n")) {
		if len(line) > 998 {
			t.Fatalf("line %d is %d bytes", i, len(line))
		}
		if bytes.ContainsFunc(line, func(r rune) bool { return r > 127 }) {
			t.Fatalf("line %d is not 7-bit: %q", i, line)
		}
	}
}
