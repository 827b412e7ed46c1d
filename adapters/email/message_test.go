package email

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"herald.dev/platform/contracts"
)

func qpReader(r io.Reader) io.Reader { return quotedprintable.NewReader(r) }

func TestEncodeHeaderRoundTrip(t *testing.T) {
	tests := []string{
		"plain ascii",
		"订单通知",
		"混合 mixed 主题 with a rather long tail that will need more than one encoded word to carry it all 一二三四五六七八九十",
		"line\r\nbreak injection\nBcc: evil@example.com",
		"",
	}
	for _, in := range tests {
		t.Run(in, func(t *testing.T) {
			var buf bytes.Buffer
			writeHeader(&buf, "Subject", EncodeHeader(in))
			buf.WriteString("\r\n")
			m, err := mail.ReadMessage(&buf)
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Header) != 1 {
				t.Fatalf("header injection: %v", m.Header)
			}
			got, err := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
			if err != nil {
				t.Fatal(err)
			}
			if want := oneLine(in); got != want {
				t.Fatalf("round trip = %q, want %q", got, want)
			}
		})
	}
}

func TestWriteHeaderFolds(t *testing.T) {
	var buf bytes.Buffer
	writeHeader(&buf, "Subject", strings.Repeat("word ", 40))
	for _, line := range strings.Split(strings.TrimSuffix(buf.String(), "\r\n"), "\r\n") {
		if len(line) > 78 {
			t.Fatalf("line of %d chars: %q", len(line), line)
		}
	}
}

func TestHTMLToText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"<p>Hello</p><p>World</p>", "Hello\nWorld"},
		{"a<br>b<br/>c", "a\nb\nc"},
		{"<style>.x{color:red}</style><script>alert(1)</script><b>bold</b> &amp; &lt;tag&gt;", "bold & <tag>"},
		{"<ul><li>one</li><li>two</li></ul>", "one\ntwo"},
		{"<div>\n  spaced\n   out  </div>", "spaced out"},
		{"<p>中文</p>", "中文"},
	}
	for _, tt := range tests {
		if got := HTMLToText(tt.in); got != tt.want {
			t.Errorf("HTMLToText(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestMessageID(t *testing.T) {
	tests := []struct{ id, want string }{
		{"dlv_01HZX", "<dlv_01HZX@example.com>"},
		{"a b<c>@d", "<a-b-c--d@example.com>"},
		{"投递", "<--@example.com>"},
	}
	for _, tt := range tests {
		if got := MessageID(tt.id, "example.com"); got != tt.want {
			t.Errorf("MessageID(%q) = %q, want %q", tt.id, got, tt.want)
		}
	}
}

func TestTransferEncoding(t *testing.T) {
	tests := []struct{ in, want string }{
		{"hello", "quoted-printable"},
		{"Café crème", "quoted-printable"},
		{"您好，世界", "base64"},
		{"Hello 您好", "base64"},
	}
	for _, tt := range tests {
		if got := transferEncoding(tt.in); got != tt.want {
			t.Errorf("transferEncoding(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestClassify(t *testing.T) {
	smtpErr := func(code int) error { return &smtp.SMTPError{Code: code, Message: "x"} }
	tests := []struct {
		name   string
		err    error
		retry  bool
		reason string
	}{
		{"550 at RCPT", &stageError{stageRcpt, smtpErr(550)}, false, "smtp 550 at RCPT TO"},
		{"553 at MAIL", &stageError{stageMail, smtpErr(553)}, false, "smtp 553 at MAIL FROM"},
		{"554 at end of DATA", &stageError{stageDataEnd, smtpErr(554)}, false, "smtp 554 at end of DATA"},
		{"451 at RCPT", &stageError{stageRcpt, smtpErr(451)}, true, "smtp 451 at RCPT TO"},
		{"421 at MAIL", &stageError{stageMail, smtpErr(421)}, true, "smtp 421 at MAIL FROM"},
		{"452 at end of DATA", &stageError{stageDataEnd, smtpErr(452)}, true, "smtp 452 at end of DATA"},
		{"535 credentials", &stageError{stageAuth, smtpErr(535)}, true, "smtp authentication failed"},
		{"530 at MAIL", &stageError{stageMail, smtpErr(530)}, true, "smtp authentication failed"},
		{"554 greeting", smtpErr(554), true, "smtp 554 at connect"},
		{"network", &stageError{stageData, io.ErrUnexpectedEOF}, true, "smtp connection failed at DATA"},
		{"utf8", &stageError{stageRcpt, errUTF8}, false, "recipient needs SMTPUTF8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Classify(tt.err)
			var se *contracts.SendError
			if !errors.As(err, &se) || se.Retryable != tt.retry || se.Reason != tt.reason {
				t.Fatalf("Classify = %v, want retry=%v reason=%q", err, tt.retry, tt.reason)
			}
			if !errors.Is(err, tt.err) {
				t.Fatal("the SMTP error is not wrapped")
			}
		})
	}
}

func TestRecipientDisplayName(t *testing.T) {
	d := &contracts.Delivery{ID: "d", Address: "bob@example.com", Profile: &contracts.Profile{Name: "王小明"}}
	a, err := Recipient(d)
	if err != nil || a.Name != "王小明" || a.Address != "bob@example.com" {
		t.Fatalf("Recipient = %v, %v", a, err)
	}
	d.Address = "Robert <bob@example.com>"
	if a, _ := Recipient(d); a.Name != "Robert" {
		t.Fatalf("explicit display name replaced: %v", a)
	}
}
