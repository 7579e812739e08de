// SPDX-License-Identifier: Apache-2.0

package output

import "time"

// clock formats event times. Formatting a full timestamp is the dearest
// part of printing an event, and consecutive events almost always share
// the second, so the text up to the second is kept and only the fraction
// is appended each time.
type clock struct {
	layout string // up to and including the seconds
	zone   bool   // append the zone offset (RFC 3339)
	digits int    // fractional digits
	sec    int64
	loc    *time.Location
	prefix []byte
	suffix []byte
}

func (c *clock) append(dst []byte, t time.Time) []byte {
	if sec := t.Unix(); sec != c.sec || t.Location() != c.loc || c.prefix == nil {
		c.sec, c.loc = sec, t.Location()
		c.prefix = t.AppendFormat(c.prefix[:0], c.layout)
		c.suffix = c.suffix[:0]
		if c.zone {
			c.suffix = t.AppendFormat(c.suffix, "Z07:00")
		}
	}
	dst = append(dst, c.prefix...)
	dst = append(dst, '.')
	frac := t.Nanosecond()
	for i := 9; i > c.digits; i-- {
		frac /= 10
	}
	var buf [9]byte
	for i := c.digits - 1; i >= 0; i-- {
		buf[i] = byte('0' + frac%10)
		frac /= 10
	}
	dst = append(dst, buf[:c.digits]...)
	return append(dst, c.suffix...)
}
