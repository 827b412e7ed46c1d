package email

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrNoContent means a delivery has neither a text nor an HTML body.
var ErrNoContent = errors.New("email has no text or html body")

// Message is what goes into one email.
type Message struct {
	From           *mail.Address
	To             *mail.Address
	Subject        string
	Text           string
	HTML           string
	MessageID      string // with angle brackets
	DeliveryID     string
	NotificationID string
	Date           time.Time
}

// WriteTo renders the message as RFC 5322 / MIME with CRLF line endings:
// UTF-8 headers as RFC 2047 encoded words, bodies quoted-printable (mostly
// ASCII) or base64 (mostly non-ASCII, e.g. Chinese), and text + HTML as
// multipart/alternative. With only HTML, a text part is derived from it.
func (m *Message) WriteTo(w *bytes.Buffer) error {
	text, htmlBody := m.Text, m.HTML
	if text == "" && htmlBody == "" {
		return ErrNoContent
	}
	if text == "" {
		text = HTMLToText(htmlBody)
	}
	writeHeader(w, "From", m.From.String())
	writeHeader(w, "To", m.To.String())
	writeHeader(w, "Subject", EncodeHeader(m.Subject))
	writeHeader(w, "Date", m.Date.Format(time.RFC1123Z))
	writeHeader(w, "Message-ID", m.MessageID)
	writeHeader(w, "MIME-Version", "1.0")
	writeHeader(w, "Auto-Submitted", "auto-generated")
	writeHeader(w, "X-Herald-Delivery-Id", oneLine(m.DeliveryID))
	if m.NotificationID != "" {
		writeHeader(w, "X-Herald-Notification-Id", oneLine(m.NotificationID))
	}
	if htmlBody == "" {
		writeBodyPart(w, "text/plain; charset=UTF-8", text)
		return nil
	}
	mw := multipart.NewWriter(w)
	writeHeader(w, "Content-Type", `multipart/alternative; boundary="`+mw.Boundary()+`"`)
	w.WriteString("\r\n")
	for _, p := range []struct{ ctype, body string }{
		{"text/plain; charset=UTF-8", text},
		{"text/html; charset=UTF-8", htmlBody},
	} {
		enc := transferEncoding(p.body)
		pw, err := mw.CreatePart(textproto.MIMEHeader{
			"Content-Type":              {p.ctype},
			"Content-Transfer-Encoding": {enc},
		})
		if err != nil {
			return fmt.Errorf("mime part: %w", err)
		}
		if err := encodeBody(pw, enc, p.body); err != nil {
			return err
		}
	}
	if err := mw.Close(); err != nil {
		return fmt.Errorf("mime close: %w", err)
	}
	return nil
}

// writeBodyPart writes Content-Type, Content-Transfer-Encoding, the blank
// line and the encoded body of a single-part message.
func writeBodyPart(w *bytes.Buffer, ctype, body string) {
	enc := transferEncoding(body)
	writeHeader(w, "Content-Type", ctype)
	writeHeader(w, "Content-Transfer-Encoding", enc)
	w.WriteString("\r\n")
	_ = encodeBody(w, enc, body) // a bytes.Buffer does not fail
}

// transferEncoding picks base64 when more than a third of the bytes are not
// ASCII (quoted-printable would triple them), quoted-printable otherwise.
func transferEncoding(s string) string {
	high := 0
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			high++
		}
	}
	if high*3 > len(s) {
		return "base64"
	}
	return "quoted-printable"
}

func encodeBody(w io.Writer, enc, body string) error {
	if !utf8.ValidString(body) {
		body = strings.ToValidUTF8(body, "\uFFFD")
	}
	switch enc {
	case "base64":
		b := base64.StdEncoding.EncodeToString([]byte(body))
		for len(b) > 76 {
			if _, err := io.WriteString(w, b[:76]+"\r\n"); err != nil {
				return fmt.Errorf("write body: %w", err)
			}
			b = b[76:]
		}
		if _, err := io.WriteString(w, b); err != nil {
			return fmt.Errorf("write body: %w", err)
		}
		return nil
	default:
		qw := quotedprintable.NewWriter(w) // converts line breaks to CRLF
		if _, err := io.WriteString(qw, body); err != nil {
			return fmt.Errorf("write body: %w", err)
		}
		if err := qw.Close(); err != nil {
			return fmt.Errorf("write body: %w", err)
		}
		return nil
	}
}

// EncodeHeader makes an unstructured header value safe: line breaks become
// spaces and non-ASCII text becomes RFC 2047 "B" encoded words in UTF-8.
func EncodeHeader(s string) string {
	s = oneLine(s)
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return mime.BEncoding.Encode("UTF-8", s)
}

func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.Join(strings.Fields(strings.NewReplacer("\r", " ", "\n", " ").Replace(s)), " ")
}

// writeHeader writes "Name: value" CRLF, folding at spaces so lines stay
// within 78 characters where the value allows it.
func writeHeader(w *bytes.Buffer, name, value string) {
	w.WriteString(name)
	w.WriteString(":")
	lineLen := len(name) + 1
	for i, word := range strings.Split(value, " ") {
		if i > 0 && lineLen+1+len(word) > 78 && lineLen > len(name)+1 {
			w.WriteString("\r\n")
			lineLen = 0
		}
		w.WriteString(" ")
		w.WriteString(word)
		lineLen += 1 + len(word)
	}
	w.WriteString("\r\n")
}

var (
	dropBlocks = regexp.MustCompile(`(?is)<(script|style|head)\b.*?</(script|style|head)\s*>`)
	lineTags   = regexp.MustCompile(`(?i)<\s*(br|/p|/div|/li|/h[1-6]|/tr|/table|/ul|/ol|/blockquote|hr)\b[^>]*>`)
	anyTag     = regexp.MustCompile(`(?s)<[^>]*>`)
	spaces     = regexp.MustCompile(`[ \t\f\v]+`)
	blankLines = regexp.MustCompile(`\n{3,}`)
)

// HTMLToText derives a plain-text alternative from HTML: scripts and styles
// are dropped, block ends become line breaks, tags are removed and entities
// decoded.
func HTMLToText(h string) string {
	s := dropBlocks.ReplaceAllString(h, "")
	s = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
	s = lineTags.ReplaceAllString(s, "\n")
	s = anyTag.ReplaceAllString(s, "")
	s = html.UnescapeString(s)
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSpace(spaces.ReplaceAllString(l, " "))
	}
	s = blankLines.ReplaceAllString(strings.Join(lines, "\n"), "\n\n")
	return strings.TrimSpace(s)
}

// MessageID returns "<id@host>" for a delivery id: the same delivery always
// gets the same Message-ID, so a retried send can be recognised as a
// duplicate. Characters outside [A-Za-z0-9_-] are replaced by '-'.
func MessageID(deliveryID, host string) string {
	var b strings.Builder
	b.WriteByte('<')
	for _, r := range deliveryID {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	b.WriteByte('@')
	b.WriteString(host)
	b.WriteByte('>')
	return b.String()
}
