// SPDX-License-Identifier: Apache-2.0

package output

import (
	"testing"
	"time"
)

func TestAppendAge(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second: "0ms", 0: "0ms", 999 * time.Millisecond: "999ms", time.Second: "1.0s",
		59*time.Second + 990*time.Millisecond: "59.9s", time.Minute: "1m00s", 4*time.Minute + 5*time.Second: "4m05s",
		time.Hour - time.Millisecond: "59m59s", 3*time.Hour + 2*time.Minute: "3h02m",
		24 * time.Hour: "1d00h", 52 * time.Hour: "2d04h",
	} {
		if got := string(AppendAge(nil, d)); got != want {
			t.Errorf("%v: %q, want %q", d, got, want)
		}
	}
}
