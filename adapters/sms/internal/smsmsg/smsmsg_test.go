package smsmsg

import (
	"fmt"
	"testing"

	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
)

func TestPhone(t *testing.T) {
	good := map[string]string{
		"+8613800138000":    "+8613800138000",
		"13800138000":       "+8613800138000",
		"8613800138000":     "+8613800138000",
		"008613800138000":   "+8613800138000",
		"+1 (415) 555-0100": "+14155550100",
		"+85261234567":      "+85261234567",
	}
	for in, want := range good {
		if got, err := Phone(in); err != nil || got != want {
			t.Errorf("Phone(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "abc", "+0123456789", "12345", "+12", "1380013800", "+123456789012345678"} {
		if _, err := Phone(bad); err == nil {
			t.Errorf("Phone(%q) accepted", bad)
		} else if retry, _ := contracts.Classify(err); retry {
			t.Errorf("Phone(%q) error is retryable", bad)
		}
	}
}

func TestTemplate(t *testing.T) {
	d := &contracts.Delivery{ID: "d"}
	if _, err := Template(d, ""); err == nil {
		t.Fatal("no template accepted")
	}
	if got, _ := Template(d, "DEF"); got != "DEF" {
		t.Fatal(got)
	}
	d.Content = domain.Content{VendorTemplate: " SMS_1 "}
	if got, _ := Template(d, "DEF"); got != "SMS_1" {
		t.Fatal(got)
	}
}

func TestOrdered(t *testing.T) {
	cases := []struct {
		params map[string]string
		order  []string
		want   string
	}{
		{nil, nil, "[]"},
		{map[string]string{"2": "b", "1": "a", "3": "c"}, nil, "[a b c]"},
		{map[string]string{"3": "c", "1": "a"}, nil, "[a  c]"},
		{map[string]string{"code": "1", "app": "H", "min": "5"}, []string{"code", "min"}, "[1 5 H]"},
		{map[string]string{"b": "2", "a": "1"}, nil, "[1 2]"},
	}
	for _, tc := range cases {
		if got := fmt.Sprint(Ordered(tc.params, tc.order)); got != tc.want {
			t.Errorf("Ordered(%v, %v) = %s, want %s", tc.params, tc.order, got, tc.want)
		}
	}
}
