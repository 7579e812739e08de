// SPDX-License-Identifier: Apache-2.0

package output

import (
	"net/netip"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"
)

// This file appends the text of table cells that several tables share.

// appendOwner appends the PID and COMM columns and a blank.
func appendOwner(dst []byte, pid uint32, comm string) []byte {
	start := len(dst)
	if pid == 0 {
		dst = append(dst, '-') // nobody owns the socket yet
	} else {
		dst = strconv.AppendUint(dst, uint64(pid), 10)
	}
	dst = padLeft(dst, start, widthPid)
	dst = append(dst, ' ')
	dst, n := appendComm(dst, comm)
	dst = appendSpaces(dst, widthComm-n)
	return append(dst, ' ')
}

// appendEndpoints appends the LADDR:LPORT and RADDR:RPORT columns, each
// width wide, and a blank after each.
func appendEndpoints(dst []byte, width int, laddr netip.Addr, lport uint16, raddr netip.Addr, rport uint16) []byte {
	start := len(dst)
	dst = appendEndpoint(dst, laddr, lport)
	dst = padRight(dst, start, width)
	dst = append(dst, ' ')
	start = len(dst)
	dst = appendEndpoint(dst, raddr, rport)
	dst = padRight(dst, start, width)
	return append(dst, ' ')
}

// appendEndpoint appends addr:port, with IPv6 in brackets so the port
// stays distinguishable.
func appendEndpoint(dst []byte, addr netip.Addr, port uint16) []byte {
	switch {
	case !addr.IsValid():
		dst = append(dst, '-')
	case addr.Is6():
		dst = append(dst, '[')
		dst = addr.AppendTo(dst)
		dst = append(dst, ']')
	default:
		dst = addr.AppendTo(dst)
	}
	dst = append(dst, ':')
	return strconv.AppendUint(dst, uint64(port), 10)
}

// appendMillis appends d in milliseconds with three decimals.
func appendMillis(dst []byte, d time.Duration) []byte {
	us := int64(d / time.Microsecond)
	if us < 0 {
		dst = append(dst, '-')
		us = -us
	}
	dst = strconv.AppendInt(dst, us/1000, 10)
	frac := us % 1000
	return append(dst, '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
}

// appendComm appends at most widthComm characters of comm and returns how
// many it wrote. Comm is set by the traced process, so control characters
// and invalid UTF-8 become '?' rather than reaching the terminal.
func appendComm(dst []byte, comm string) ([]byte, int) {
	if comm == "" {
		return append(dst, '-'), 1
	}
	return appendSafe(dst, comm, widthComm)
}

// appendSafe appends at most max characters of s, with control characters
// and invalid UTF-8 as '?', and returns how many it wrote.
func appendSafe(dst []byte, s string, max int) ([]byte, int) {
	n := 0
	for i := 0; i < len(s) && n < max; n++ {
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || unicode.IsControl(r) {
			dst = append(dst, '?')
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return dst, n
}

// appendOwnerName appends pid/comm, or "-" for no process.
func appendOwnerName(b []byte, pid uint32, comm string) []byte {
	if pid == 0 {
		return append(b, '-')
	}
	b = strconv.AppendUint(b, uint64(pid), 10)
	b = append(b, '/')
	b, _ = appendComm(b, comm)
	return b
}

// appendAddr appends an address, IPv6 in brackets as in endpoints.
func appendAddr(b []byte, a netip.Addr) []byte {
	switch {
	case !a.IsValid():
		return append(b, '-')
	case a.Is6():
		b = append(b, '[')
		b = a.AppendTo(b)
		return append(b, ']')
	}
	return a.AppendTo(b)
}

// AppendAge appends a duration for people: 850ms, 12.3s, 4m05s, 3h02m,
// 2d04h.
func AppendAge(b []byte, d time.Duration) []byte {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Second:
		b = strconv.AppendInt(b, int64(d/time.Millisecond), 10)
		return append(b, "ms"...)
	case d < time.Minute:
		ds := int64(d / (100 * time.Millisecond)) // tenths, rounded down
		b = strconv.AppendInt(b, ds/10, 10)
		return append(b, '.', byte('0'+ds%10), 's')
	case d < time.Hour:
		s := int64(d / time.Second)
		b = strconv.AppendInt(b, s/60, 10)
		return append(b, 'm', byte('0'+s%60/10), byte('0'+s%10), 's')
	case d < 24*time.Hour:
		m := int64(d / time.Minute)
		b = strconv.AppendInt(b, m/60, 10)
		return append(b, 'h', byte('0'+m%60/10), byte('0'+m%10), 'm')
	}
	h := int64(d / time.Hour)
	b = strconv.AppendInt(b, h/24, 10)
	return append(b, 'd', byte('0'+h%24/10), byte('0'+h%24%10), 'h')
}

// appendPrintable appends s, read from files a user controls (pod
// names), with control characters and invalid UTF-8 as '?'.
func appendPrintable(b []byte, s string) []byte {
	b, _ = appendSafe(b, s, len(s))
	return b
}
