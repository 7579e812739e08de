// SPDX-License-Identifier: Apache-2.0

package output

import (
	"net/netip"
	"strconv"
	"unicode/utf8"

	"github.com/tcpstate/tcpstate/container"
)

// This file writes what the JSON records say alike about a socket, so that
// they say it with the same keys and the same text: its owner (pid, comm),
// its 4-tuple and family, where it lives (netns, cgroup_id) and its owner's
// container and pod. The event
// of 'trace', the connection of 'life', the row of 'stuck' (and, for the
// owner and addresses, the row of 'ls') all write these through here.
//
// Each function appends one or more "key":value members with no comma
// before or after, so every record keeps its own key order: the caller
// writes the separators.

// appendOwnerJSON appends "pid":P,"comm":"C": the process owning or
// holding a socket; 0 and "" for none.
func appendOwnerJSON(b []byte, pid uint32, comm string) []byte {
	b = append(b, `"pid":`...)
	b = strconv.AppendUint(b, uint64(pid), 10)
	b = append(b, `,"comm":`...)
	return appendJSONString(b, comm)
}

// appendTupleJSON appends
// "family":"F","laddr":"L","lport":N,"raddr":"R","rport":N, where family
// is the String of the socket's family. An invalid address is "".
func appendTupleJSON(b []byte, family string, laddr netip.Addr, lport uint16, raddr netip.Addr, rport uint16) []byte {
	b = append(b, `"family":"`...)
	b = append(b, family...)
	b = append(b, `","laddr":"`...)
	b = appendAddrJSON(b, laddr)
	b = append(b, `","lport":`...)
	b = strconv.AppendUint(b, uint64(lport), 10)
	b = append(b, `,"raddr":"`...)
	b = appendAddrJSON(b, raddr)
	b = append(b, `","rport":`...)
	return strconv.AppendUint(b, uint64(rport), 10)
}

// appendNetNSJSON appends "netns":N, the network namespace's inode.
func appendNetNSJSON(b []byte, netns uint32) []byte {
	b = append(b, `"netns":`...)
	return strconv.AppendUint(b, uint64(netns), 10)
}

// appendNetNSCgroupJSON appends "netns":N,"cgroup_id":C.
func appendNetNSCgroupJSON(b []byte, netns uint32, cgroup uint64) []byte {
	b = appendNetNSJSON(b, netns)
	b = append(b, `,"cgroup_id":`...)
	return strconv.AppendUint(b, cgroup, 10)
}

// netNSCgroupCache keeps the text of the last "netns":N,"cgroup_id":C:
// consecutive records of a host mostly share both, and formatting their
// digits is a good part of a record's cost.
type netNSCgroupCache struct {
	netns  uint32
	cgroup uint64
	text   []byte
}

// append appends appendNetNSCgroupJSON(netns, cgroup).
func (c *netNSCgroupCache) append(b []byte, netns uint32, cgroup uint64) []byte {
	if c.text == nil || netns != c.netns || cgroup != c.cgroup {
		c.netns, c.cgroup = netns, cgroup
		c.text = appendNetNSCgroupJSON(c.text[:0], netns, cgroup)
	}
	return append(b, c.text...)
}

// appendIdentityJSON appends the container and pod of a socket's owner,
// each key with a comma before it and only when known:
// ,"container_id":"C","pod_uid":"U","namespace":"N","pod":"P","container":"C".
// Nothing for nil (not in a container), so scripts test a key's presence.
func appendIdentityJSON(b []byte, id *container.Identity) []byte {
	if id == nil {
		return b
	}
	for _, kv := range [...]struct{ key, val string }{
		{`,"container_id":`, id.ContainerID}, {`,"pod_uid":`, id.PodUID},
		{`,"namespace":`, id.Namespace}, {`,"pod":`, id.Pod}, {`,"container":`, id.Container},
	} {
		if kv.val != "" {
			b = append(b, kv.key...)
			b = appendJSONString(b, kv.val)
		}
	}
	return b
}

// appendAddrJSON appends the text of an address inside a JSON string
// (it never needs escaping): nothing for an invalid address.
func appendAddrJSON(b []byte, a netip.Addr) []byte {
	if a.IsValid() {
		b = a.AppendTo(b)
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a quoted JSON string. Comm is chosen by
// the traced process, so it may hold anything: control characters become
// \u00XX and bytes that are not UTF-8 become \ufffd (as encoding/json
// does), keeping every line valid JSON.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0 // s[start:i] is pending, copied verbatim
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			if c == '"' || c == '\\' {
				dst = append(dst, '\\', c)
			} else {
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
