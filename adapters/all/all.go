// Package all registers every channel adapter: blank-import it once (the
// herald binary does) and call registry.Build.
package all

// Core channels.
import (
	_ "herald.dev/adapters/bench"
	_ "herald.dev/adapters/console"
	_ "herald.dev/adapters/email"
	_ "herald.dev/adapters/inapp"
	_ "herald.dev/adapters/webhook"
)

// Vendor channels (sms, otp, wechat, wecom, dingtalk, qq): one blank import
// per adapter package in this block.
import (
	_ "herald.dev/adapters/dingtalk"
	_ "herald.dev/adapters/qq"
	_ "herald.dev/adapters/sms"
	_ "herald.dev/adapters/wechat"
	_ "herald.dev/adapters/wecom"
)
