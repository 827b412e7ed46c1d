// Package email delivers over SMTP (github.com/emersion/go-smtp): STARTTLS,
// implicit TLS or plain, AUTH PLAIN/LOGIN, a small pool of reusable
// connections, multipart text+HTML MIME with UTF-8 headers, and a Message-ID
// derived from the delivery id so a retried send carries the same id.
package email

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"herald.dev/adapters/registry"
	"herald.dev/platform/config"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
)

func init() {
	registry.Register(domain.ChannelEmail, func(deps registry.Deps) (contracts.Sender, error) {
		return New(deps.Config.SMTP, WithClock(deps.Clock()), WithLogf(deps.Log))
	})
}

var _ contracts.Sender = (*Adapter)(nil)

// Defaults for settings the configuration leaves empty.
const (
	DefaultTimeout     = 15 * time.Second
	DefaultMaxIdle     = 4
	DefaultIdleTimeout = 30 * time.Second
)

// TLS modes (config smtp.tls).
const (
	TLSStartTLS = "starttls" // upgrade when the server offers STARTTLS
	TLSRequire  = "require"  // refuse to send unless STARTTLS succeeds
	TLSImplicit = "implicit" // TLS from the first byte (SMTPS, port 465)
	TLSNone     = "none"     // never use TLS
)

// Option adjusts an Adapter.
type Option func(*Adapter)

// WithRootCAs verifies the server certificate against pool instead of the
// system roots.
func WithRootCAs(pool *x509.CertPool) Option { return func(a *Adapter) { a.rootCAs = pool } }

// WithMaxIdle keeps at most n idle connections (0 disables reuse).
func WithMaxIdle(n int) Option { return func(a *Adapter) { a.maxIdle = n } }

// WithIdleTimeout discards pooled connections idle for longer than d.
func WithIdleTimeout(d time.Duration) Option { return func(a *Adapter) { a.idleTimeout = d } }

// WithClock sets the clock used for Date headers and idle tracking.
func WithClock(now func() time.Time) Option { return func(a *Adapter) { a.now = now } }

// WithLogf sets the logger.
func WithLogf(logf func(string, ...any)) Option { return func(a *Adapter) { a.logf = logf } }

// WithHelo sets the name sent in EHLO (default: the host name).
func WithHelo(name string) Option { return func(a *Adapter) { a.helo = name } }

// Adapter sends email. It is safe for concurrent use: each send holds its
// own connection, taken from the idle pool or freshly dialled.
type Adapter struct {
	cfg         config.SMTP
	addr        string
	host        string
	mode        string
	timeout     time.Duration
	from        *mail.Address
	msgHost     string
	helo        string
	rootCAs     *x509.CertPool
	maxIdle     int
	idleTimeout time.Duration
	now         func() time.Time
	logf        func(string, ...any)

	noStartTLS atomic.Bool // the server did not offer STARTTLS (starttls mode)
	bufs       sync.Pool

	mu     sync.Mutex
	idle   []*conn
	closed bool
}

type conn struct {
	c        *smtp.Client
	raw      net.Conn
	tls      bool
	lastUsed time.Time
}

// New returns an email adapter. It fails with registry.ErrNotConfigured
// when no SMTP host is set.
func New(cfg config.SMTP, opts ...Option) (*Adapter, error) {
	if cfg.Host == "" {
		return nil, fmt.Errorf("email: smtp.host is empty: %w", registry.ErrNotConfigured)
	}
	a := &Adapter{
		cfg:         cfg,
		host:        cfg.Host,
		mode:        strings.ToLower(cfg.TLS),
		timeout:     cfg.Timeout,
		maxIdle:     DefaultMaxIdle,
		idleTimeout: DefaultIdleTimeout,
		now:         time.Now,
		logf:        func(string, ...any) {},
		bufs:        sync.Pool{New: func() any { return new(bytes.Buffer) }},
	}
	for _, o := range opts {
		o(a)
	}
	switch a.mode {
	case "":
		a.mode = TLSStartTLS
	case TLSStartTLS, TLSRequire, TLSImplicit, TLSNone:
	default:
		return nil, fmt.Errorf("email: smtp.tls %q: want starttls, require, implicit or none", cfg.TLS)
	}
	if a.timeout <= 0 {
		a.timeout = DefaultTimeout
	}
	port := cfg.Port
	if port == 0 {
		port = 587
		if a.mode == TLSImplicit {
			port = 465
		}
	}
	a.addr = net.JoinHostPort(cfg.Host, strconv.Itoa(port))
	if cfg.From == "" {
		return nil, fmt.Errorf("email: smtp.from is empty")
	}
	from, err := mail.ParseAddress(cfg.From)
	if err != nil {
		return nil, fmt.Errorf("email: smtp.from %q: %w", cfg.From, err)
	}
	a.from = from
	a.msgHost = from.Address[strings.LastIndexByte(from.Address, '@')+1:]
	if a.helo == "" {
		a.helo, _ = os.Hostname()
		if a.helo == "" || strings.ContainsAny(a.helo, " \r\n") {
			a.helo = "localhost"
		}
	}
	return a, nil
}

// Channel implements contracts.Sender.
func (a *Adapter) Channel() domain.Channel { return domain.ChannelEmail }

// Close quits the pooled connections; later sends dial without pooling.
func (a *Adapter) Close() error {
	a.mu.Lock()
	idle := a.idle
	a.idle, a.closed = nil, true
	a.mu.Unlock()
	for _, cn := range idle {
		cn.quit()
	}
	return nil
}

// stage names the SMTP step a failure happened in.
type stage string

const (
	stageConnect stage = "connect"
	stageAuth    stage = "AUTH"
	stageMail    stage = "MAIL FROM"
	stageRcpt    stage = "RCPT TO"
	stageData    stage = "DATA"
	stageDataEnd stage = "end of DATA"
)

// Send delivers one email. A 4xx reply, a network error or a timeout is
// retryable, a 5xx reply to MAIL/RCPT/DATA and a malformed address are
// permanent; see docs/adapters.md for the full table.
func (a *Adapter) Send(ctx context.Context, d *contracts.Delivery) (contracts.Result, error) {
	if err := ctx.Err(); err != nil {
		return contracts.Result{}, fmt.Errorf("email send %s: %w", d.ID, err)
	}
	to, err := Recipient(d)
	if err != nil {
		return contracts.Result{}, contracts.Permanent("invalid email address", err)
	}
	msgID := MessageID(d.ID, a.msgHost)
	buf := a.bufs.Get().(*bytes.Buffer)
	buf.Reset()
	defer a.bufs.Put(buf)
	m := Message{
		From:           a.from,
		To:             to,
		Subject:        firstNonEmpty(d.Content.Subject, d.Content.Title),
		Text:           firstNonEmpty(d.Content.Text, d.Content.Body, d.Content.Markdown),
		HTML:           d.Content.HTML,
		MessageID:      msgID,
		DeliveryID:     d.ID,
		NotificationID: d.NotificationID,
		Date:           a.now(),
	}
	if err := m.WriteTo(buf); err != nil {
		return contracts.Result{}, contracts.Permanent("email has no content", fmt.Errorf("build email %s: %w", d.ID, err))
	}
	utf8Addr := !isASCII(to.Address)

	// One deadline for the whole exchange (dial, TLS, AUTH, transaction);
	// go-smtp also bounds each command by the timeout.
	opCtx, cancel := context.WithTimeout(ctx, 3*a.timeout)
	defer cancel()
	for try := 0; ; try++ {
		cn, reused, err := a.acquire(opCtx)
		if err != nil {
			return contracts.Result{}, a.failure(ctx, opCtx, d, err)
		}
		st, err := a.transact(opCtx, cn, to.Address, buf.Bytes(), utf8Addr)
		if err == nil {
			a.release(cn)
			return contracts.Result{ProviderID: msgID}, nil
		}
		var se *smtp.SMTPError
		answered := errors.As(err, &se) && se.Code != 421 && opCtx.Err() == nil
		if errors.Is(err, errUTF8) {
			a.release(cn) // nothing was sent on it
		} else if answered && st != stageDataEnd {
			// The server refused a command: end the transaction and keep the connection.
			if cn.c.Reset() == nil {
				a.release(cn)
			} else {
				cn.close()
			}
		} else if answered {
			a.release(cn) // the transaction is over either way
		} else {
			cn.close()
		}
		// A pooled connection the server dropped while idle fails on its
		// first command, before anything was sent: retry once on a new one.
		if reused && try == 0 && st == stageMail && !answered && opCtx.Err() == nil {
			continue
		}
		return contracts.Result{}, a.failure(ctx, opCtx, d, &stageError{stage: st, err: err})
	}
}

type stageError struct {
	stage stage
	err   error
}

func (e *stageError) Error() string { return fmt.Sprintf("smtp %s: %v", e.stage, e.err) }
func (e *stageError) Unwrap() error { return e.err }

// errUTF8 means the recipient needs SMTPUTF8, which the server lacks.
var errUTF8 = errors.New("recipient address is not ASCII and the server does not offer SMTPUTF8")

func (a *Adapter) transact(ctx context.Context, cn *conn, to string, msg []byte, utf8Addr bool) (stage, error) {
	stop := context.AfterFunc(ctx, func() { cn.raw.Close() })
	defer stop()
	if utf8Addr {
		if ok, _ := cn.c.Extension("SMTPUTF8"); !ok {
			return stageRcpt, errUTF8
		}
	}
	if err := cn.c.Mail(a.from.Address, &smtp.MailOptions{UTF8: utf8Addr, Size: int64(len(msg))}); err != nil {
		return stageMail, err
	}
	if err := cn.c.Rcpt(to, nil); err != nil {
		return stageRcpt, err
	}
	w, err := cn.c.Data()
	if err != nil {
		return stageData, err
	}
	if _, err := w.Write(msg); err != nil {
		return stageDataEnd, err
	}
	if err := w.Close(); err != nil {
		return stageDataEnd, err
	}
	return stageDataEnd, nil
}

// failure classifies err; ctx is the caller's context, opCtx the send's own deadline.
func (a *Adapter) failure(ctx, opCtx context.Context, d *contracts.Delivery, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("email send %s: %w", d.ID, ctx.Err())
	}
	if opCtx.Err() != nil {
		return contracts.Retryable("smtp timed out", fmt.Errorf("send %s via %s: %w", d.ID, a.addr, err), 0)
	}
	return Classify(fmt.Errorf("send %s via %s: %w", d.ID, a.addr, err))
}

// Classify maps an SMTP failure to a retryable or permanent SendError:
//   - connect/AUTH problems (including 5xx greetings and 535 bad
//     credentials) are retryable: they concern Herald's setup, not the message;
//   - a reply to MAIL/RCPT/DATA: 4xx retryable, 5xx permanent (550 unknown
//     mailbox, 552 too big, 554 rejected);
//   - network errors, TLS failures and timeouts are retryable.
func Classify(err error) error {
	var st *stageError
	stg := stageConnect
	if errors.As(err, &st) {
		stg = st.stage
	}
	if stg == stageAuth {
		return contracts.Retryable("smtp authentication failed", err, 0)
	}
	if errors.Is(err, errUTF8) {
		return contracts.Permanent("recipient needs SMTPUTF8", err)
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		reason := fmt.Sprintf("smtp %d at %s", se.Code, stg)
		switch {
		case se.Code == 530 || se.Code == 534 || se.Code == 535 || se.Code == 538:
			return contracts.Retryable("smtp authentication failed", err, 0)
		case stg == stageConnect:
			return contracts.Retryable(reason, err, 0)
		case se.Code >= 500 && se.Code < 600:
			return contracts.Permanent(reason, err)
		default:
			return contracts.Retryable(reason, err, 0)
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return contracts.Retryable("smtp timed out", err, 0)
	}
	var certErr *tls.CertificateVerificationError
	if errors.As(err, &certErr) {
		return contracts.Retryable("smtp tls certificate rejected", err, 0)
	}
	return contracts.Retryable(fmt.Sprintf("smtp connection failed at %s", stg), err, 0)
}

func (a *Adapter) acquire(ctx context.Context) (*conn, bool, error) {
	var stale []*conn
	a.mu.Lock()
	var cn *conn
	for len(a.idle) > 0 {
		last := a.idle[len(a.idle)-1]
		a.idle = a.idle[:len(a.idle)-1]
		if a.now().Sub(last.lastUsed) > a.idleTimeout {
			stale = append(stale, last)
			continue
		}
		cn = last
		break
	}
	a.mu.Unlock()
	for _, s := range stale {
		s.quit()
	}
	if cn != nil {
		return cn, true, nil
	}
	cn, err := a.dial(ctx)
	return cn, false, err
}

func (a *Adapter) release(cn *conn) {
	cn.lastUsed = a.now()
	a.mu.Lock()
	if a.closed || len(a.idle) >= a.maxIdle {
		a.mu.Unlock()
		cn.quit()
		return
	}
	a.idle = append(a.idle, cn)
	a.mu.Unlock()
}

func (cn *conn) quit() {
	cn.c.CommandTimeout = 2 * time.Second
	if err := cn.c.Quit(); err != nil {
		cn.c.Close()
	}
}

func (cn *conn) close() { cn.c.Close() }

func (a *Adapter) tlsConfig() *tls.Config {
	return &tls.Config{
		ServerName:         a.host,
		RootCAs:            a.rootCAs,
		InsecureSkipVerify: a.cfg.SkipVerifyTLS, //nolint:gosec // an explicit operator choice (smtp.skip_verify_tls)
		MinVersion:         tls.VersionTLS12,
	}
}

// errNoStartTLS is go-smtp's message when STARTTLS is not offered.
const errNoStartTLS = "smtp: server doesn't support STARTTLS"

func (a *Adapter) dial(ctx context.Context) (*conn, error) {
	cn, err := a.dialOnce(ctx, a.mode == TLSImplicit, a.mode == TLSRequire || (a.mode == TLSStartTLS && !a.noStartTLS.Load()))
	if err != nil && a.mode == TLSStartTLS && err.Error() == errNoStartTLS {
		// Opportunistic TLS: the server has none, remember and go plain.
		a.noStartTLS.Store(true)
		a.logf("email: %s does not offer STARTTLS; sending without TLS (set smtp.tls=require to refuse)", a.addr)
		cn, err = a.dialOnce(ctx, false, false)
	}
	if err != nil && err.Error() == errNoStartTLS {
		err = fmt.Errorf("smtp.tls=require but %s does not offer STARTTLS: %w", a.addr, err)
	}
	return cn, err
}

func (a *Adapter) dialOnce(ctx context.Context, implicit, startTLS bool) (*conn, error) {
	d := net.Dialer{Timeout: a.timeout}
	raw, err := d.DialContext(ctx, "tcp", a.addr)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	cn, err := a.handshake(ctx, raw, implicit, startTLS)
	if !stop() { // ctx ended: the connection is closed
		if cn != nil {
			cn.close()
		}
		return nil, ctx.Err()
	}
	if err != nil {
		raw.Close()
		return nil, err
	}
	return cn, nil
}

func (a *Adapter) handshake(ctx context.Context, raw net.Conn, implicit, startTLS bool) (*conn, error) {
	var c *smtp.Client
	isTLS := false
	switch {
	case implicit:
		tc := tls.Client(raw, a.tlsConfig())
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, fmt.Errorf("tls handshake: %w", err)
		}
		c, isTLS = smtp.NewClient(tc), true
	case startTLS:
		var err error
		if c, err = smtp.NewClientStartTLS(raw, a.tlsConfig()); err != nil {
			return nil, err
		}
		isTLS = true
	default:
		c = smtp.NewClient(raw)
	}
	c.CommandTimeout = a.timeout
	c.SubmissionTimeout = 2 * a.timeout
	if err := c.Hello(a.helo); err != nil {
		c.Close()
		return nil, fmt.Errorf("ehlo: %w", err)
	}
	if a.cfg.Username != "" {
		if err := a.auth(c, isTLS); err != nil {
			c.Close()
			return nil, &stageError{stage: stageAuth, err: err}
		}
	}
	return &conn{c: c, raw: raw, tls: isTLS}, nil
}

func (a *Adapter) auth(c *smtp.Client, isTLS bool) error {
	if !isTLS && !isLoopback(a.host) {
		return fmt.Errorf("refusing to send credentials to %s without TLS (smtp.tls=%s)", a.addr, a.mode)
	}
	var mech sasl.Client
	switch {
	case c.SupportsAuth("PLAIN"):
		mech = sasl.NewPlainClient("", a.cfg.Username, a.cfg.Password)
	case c.SupportsAuth("LOGIN"):
		mech = sasl.NewLoginClient(a.cfg.Username, a.cfg.Password)
	default:
		return fmt.Errorf("%s offers neither AUTH PLAIN nor LOGIN", a.addr)
	}
	if err := c.Auth(mech); err != nil {
		return fmt.Errorf("authenticate as %s: %w", a.cfg.Username, err)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Recipient parses the delivery's address ("a@b.c" or "Name <a@b.c>"); the
// profile's name is used as the display name when the address has none.
func Recipient(d *contracts.Delivery) (*mail.Address, error) {
	raw := strings.TrimSpace(d.Address)
	if raw == "" {
		return nil, fmt.Errorf("delivery %s has no email address", d.ID)
	}
	if strings.ContainsAny(raw, "\r\n\x00") {
		return nil, fmt.Errorf("email address %q contains control characters", raw)
	}
	addr, err := mail.ParseAddress(raw)
	if err != nil {
		return nil, fmt.Errorf("email address %q: %w", raw, err)
	}
	at := strings.LastIndexByte(addr.Address, '@')
	if at <= 0 || at == len(addr.Address)-1 || strings.ContainsAny(addr.Address, " <>") {
		return nil, fmt.Errorf("email address %q: missing local part or domain", raw)
	}
	if addr.Name == "" && d.Profile != nil {
		addr.Name = d.Profile.Name
	}
	return addr, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
