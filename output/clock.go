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
	// Two digits a division: the fraction is formatted for every record.
	var buf [9]byte
	n := c.digits
	for ; n >= 2; n -= 2 {
		q := frac / 100
		d := (frac - q*100) * 2
		buf[n-2], buf[n-1] = digitPairs[d], digitPairs[d+1]
		frac = q
	}
	if n == 1 {
		buf[0] = byte('0' + frac)
	}
	dst = append(dst, buf[:c.digits]...)
	return append(dst, c.suffix...)
}

const digitPairs = "00010203040506070809" +
	"10111213141516171819" +
	"20212223242526272829" +
	"30313233343536373839" +
	"40414243444546474849" +
	"50515253545556575859" +
	"60616263646566676869" +
	"70717273747576777879" +
	"80818283848586878889" +
	"90919293949596979899"
