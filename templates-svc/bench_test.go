package templatesvc

import (
	"context"
	"encoding/json"
	"testing"

	"herald.dev/platform/domain"
	"herald.dev/platform/sqldb/sqldbtest"
)

func benchService(b *testing.B) (*Service, map[string]any) {
	b.Helper()
	db := sqldbtest.SQLite(b)
	s := New(db, Options{})
	in := Input{Code: "otp.login", Name: "Login", Category: "security", Variants: Variants{
		Email: &EmailVariant{
			Subject: "Your {{.app}} code",
			Text:    "Hi {{.name}}, your code is {{.code}}. It expires in {{.ttl}} minutes.",
			HTML:    "<p>Hi {{.name}},</p><p>Your code is <b>{{.code}}</b>. It expires in {{.ttl}} minutes.</p>",
		},
		SMS:   &SMSVariant{Text: "[{{.app}}] {{.code}} is your code, valid {{.ttl}} min."},
		InApp: &InAppVariant{Title: "Sign-in code", Body: "{{.name | upper}}, use {{.code}}{{if .device}} on {{.device}}{{end}}"},
	}, Locales: map[string]Variants{
		"zh-CN": {SMS: &SMSVariant{Text: "【{{.app}}】验证码{{.code}}，{{.ttl}}分钟内有效。"}},
	}}
	if _, err := s.Create(context.Background(), "app_bench", in); err != nil {
		b.Fatal(err)
	}
	data := map[string]any{"app": "Herald", "name": "Ada", "code": "493817", "ttl": json.Number("5"), "device": "Firefox"}
	return s, data
}

// BenchmarkRender renders cached templates from parallel goroutines, as the
// outbound workers do: sms (simple fields, fast path), zh-CN sms (locale
// lookup), email (html/template) and inapp (a pipeline and an if).
func BenchmarkRender(b *testing.B) {
	s, data := benchService(b)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		ch     domain.Channel
		locale string
	}{
		{"sms", domain.ChannelSMS, ""},
		{"sms-zh-CN", domain.ChannelSMS, "zh-CN"},
		{"email", domain.ChannelEmail, "en-US"},
		{"inapp", domain.ChannelInApp, ""},
	} {
		b.Run(tc.name, func(b *testing.B) {
			if _, err := s.Render(ctx, "app_bench", "otp.login", 0, tc.locale, tc.ch, data); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.Render(ctx, "app_bench", "otp.login", 0, tc.locale, tc.ch, data); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkCheck is the accept path's template check (latest version and
// required variables), from parallel goroutines.
func BenchmarkCheck(b *testing.B) {
	s, data := benchService(b)
	ctx := context.Background()
	if _, err := s.Check(ctx, "app_bench", "otp.login", data); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Check(ctx, "app_bench", "otp.login", data); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
