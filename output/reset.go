// SPDX-License-Identifier: Apache-2.0

package output

import "github.com/tcpstate/tcpstate/tracer"

// This file appends why a connection ended, as the transitions' and the
// connections' formats share it.

// appendEndJSON appends the keys reset, reset_reason (of a RST sent) and
// error, those that apply.
func appendEndJSON(dst []byte, reset tracer.Reset, reason tracer.ResetReason, err tracer.Errno) []byte {
	if reset != 0 {
		dst = append(dst, `,"reset":"`...)
		dst = append(dst, reset.String()...)
		dst = append(dst, '"')
		if reset&tracer.ResetSent != 0 {
			dst = append(dst, `,"reset_reason":"`...)
			dst = append(dst, reason.String()...)
			dst = append(dst, '"')
		}
	}
	if err != 0 {
		dst = append(dst, `,"error":"`...)
		dst = append(dst, err.String()...)
		dst = append(dst, '"')
	}
	return dst
}

// appendEndWords appends the same for people: "reset sent: closed with
// unread data", "reset received, ECONNRESET", "ETIMEDOUT"; nothing when
// none applies. rst is how a RST is named ("RST", "reset").
func appendEndWords(dst []byte, rst string, reset tracer.Reset, reason tracer.ResetReason, err tracer.Errno) []byte {
	if reset != 0 {
		dst = append(dst, rst...)
		dst = append(dst, ' ')
		dst = append(dst, reset.String()...)
		if reset&tracer.ResetSent != 0 && reason != tracer.ReasonUnknown {
			dst = append(dst, ": "...)
			dst = append(dst, reason.Words()...)
		}
	}
	if err != 0 {
		if reset != 0 {
			dst = append(dst, ", "...)
		}
		dst = append(dst, err.String()...)
	}
	return dst
}
