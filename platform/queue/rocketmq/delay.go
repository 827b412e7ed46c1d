package rocketmq

import "time"

// DelayLevels is the broker's default messageDelayLevel table
// ("1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h"): level n
// (1-based) delays a message by DelayLevels[n-1].
var DelayLevels = [...]time.Duration{
	time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 3 * time.Minute, 4 * time.Minute, 5 * time.Minute,
	6 * time.Minute, 7 * time.Minute, 8 * time.Minute, 9 * time.Minute, 10 * time.Minute,
	20 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour,
}

// MaxDelayLevel is the longest level of the default table (2 h).
const MaxDelayLevel = len(DelayLevels)

// DelayLevel maps a Nack delay to a broker delay level: the smallest level
// whose delay is at least d, so a message never comes back early. Delays
// above 2 h map to level 18; the consume side then sends the message round
// again until its not-before time (see notBefore). d <= 0 yields 0 (no
// broker delay).
func DelayLevel(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	for i, l := range DelayLevels {
		if l >= d {
			return i + 1
		}
	}
	return MaxDelayLevel
}
