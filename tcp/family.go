// SPDX-License-Identifier: Apache-2.0

package tcp

// Family is a socket's address family.
type Family uint8

// Address families, as printed.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// String returns "ipv4" or "ipv6".
func (f Family) String() string {
	switch f {
	case IPv4:
		return "ipv4"
	case IPv6:
		return "ipv6"
	}
	return "unknown"
}
