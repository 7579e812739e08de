// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"testing"
	"time"
)

func TestSnapJiffy(t *testing.T) {
	for _, tc := range []struct{ in, want time.Duration }{
		{4 * time.Millisecond, 4 * time.Millisecond},
		{3900 * time.Microsecond, 4 * time.Millisecond},
		{1020 * time.Microsecond, time.Millisecond},
		{3340 * time.Microsecond, 3333333 * time.Nanosecond},
		{10100 * time.Microsecond, 10 * time.Millisecond},
		{7 * time.Millisecond, 7 * time.Millisecond}, // no HZ near: as measured
	} {
		if got := snapJiffy(tc.in); got != tc.want {
			t.Errorf("snapJiffy(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
