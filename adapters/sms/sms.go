// Package sms is Herald's SMS channel: a router over the SMS vendor
// providers (Alibaba Cloud SMS, Tencent Cloud SMS) an app configures, or the
// config file's defaults. Traffic is split by provider weight; when the
// chosen provider fails retryably (5xx, network, throttling), reports a
// provider fault (credentials, balance, unapproved template) or has its
// circuit open, the next provider carries the message. A recipient error
// (a malformed number) or a per-number frequency limit is returned at once.
//
// Addressing: Delivery.Address is the phone number in E.164
// (+8613800138000); an 11-digit mainland mobile number is taken as +86.
// Content: VendorTemplate (or the provider's default template) and Params.
package sms

import (
	"herald.dev/adapters/providers/vendor"
	"herald.dev/adapters/registry"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"

	// The SMS provider kinds.
	_ "herald.dev/adapters/sms/aliyun"
	_ "herald.dev/adapters/sms/tencent"
)

func init() {
	registry.Register(domain.ChannelSMS, func(deps registry.Deps) (contracts.Sender, error) {
		return New(deps, vendor.RouterOptions{})
	})
}

var _ contracts.Sender = (*vendor.Router)(nil)

// New returns the SMS channel router; failover is always on.
func New(deps registry.Deps, opt vendor.RouterOptions) (*vendor.Router, error) {
	opt.Failover = true
	return vendor.NewRouter(domain.ChannelSMS, deps, opt)
}
