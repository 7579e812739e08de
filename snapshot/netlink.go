// SPDX-License-Identifier: Apache-2.0

package snapshot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tcpstate/tcpstate/tcp"
)

// The sock_diag netlink interface (include/uapi/linux/inet_diag.h,
// sock_diag.h): one SOCK_DIAG_BY_FAMILY dump request per address family
// answers with one inet_diag_msg per socket, followed by attributes.
// golang.org/x/sys/unix has the netlink framing and struct tcp_info, but
// not inet_diag's structures and attributes: those are spelled out here.

const (
	sizeofInetDiagReq  = 56 // struct inet_diag_req_v2
	sizeofInetDiagMsg  = 72 // struct inet_diag_msg
	inetDiagInfo       = 2  // INET_DIAG_INFO: struct tcp_info
	inetDiagCgroupID   = 21 // INET_DIAG_CGROUP_ID
	inetDiagSkMemInfo  = 7  // INET_DIAG_SKMEMINFO: __u32[SK_MEMINFO_VARS]
	skMemInfoDrops     = 8  // SK_MEMINFO_DROPS: sk_drops
	diagRecvBufferSize = 64 << 10

	// nlaTypeMask leaves the type of a netlink attribute.
	nlaTypeMask = ^uint16(unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)

	// Offsets in struct inet_diag_msg.
	offDiagFamily  = 0
	offDiagState   = 1
	offDiagTimer   = 2
	offDiagRetrans = 3
	offDiagSport   = 4 // network byte order
	offDiagDport   = 6
	offDiagSrc     = 8
	offDiagDst     = 24
	offDiagExpires = 52 // ms
	offDiagRqueue  = 56
	offDiagWqueue  = 60
	offDiagInode   = 68

	// minTCPInfo is struct tcp_info up to tcpi_last_ack_recv, the last
	// field read: every kernel has it. A kernel sends its own tcp_info,
	// shorter than unix.TCPInfo when older, longer when newer.
	minTCPInfo = int(unsafe.Offsetof(unix.TCPInfo{}.Last_ack_recv) + unsafe.Sizeof(unix.TCPInfo{}.Last_ack_recv))
)

var nativeEndian = binary.NativeEndian

// diagRequest builds the dump request for one address family and a
// bitmask of states (1 << State), asking for tcp_info and the memory
// counters (for sk_drops).
func diagRequest(family uint8, states uint32, seq uint32) []byte {
	b := make([]byte, unix.SizeofNlMsghdr+sizeofInetDiagReq)
	nativeEndian.PutUint32(b[0:], uint32(len(b)))
	nativeEndian.PutUint16(b[4:], unix.SOCK_DIAG_BY_FAMILY)
	nativeEndian.PutUint16(b[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	nativeEndian.PutUint32(b[8:], seq)
	req := b[unix.SizeofNlMsghdr:]
	req[0] = family
	req[1] = unix.IPPROTO_TCP
	req[2] = 1<<(inetDiagInfo-1) | 1<<(inetDiagSkMemInfo-1) // idiag_ext
	nativeEndian.PutUint32(req[4:], states)
	return b
}

// diagStates returns the kernel's state bitmask for a list of states:
// every state when the list is empty. Request sockets are NEW_SYN_RECV in
// the kernel's tables and reported as SYN_RECV, so SYN_RECV asks for both.
func diagStates(states []tcp.State) uint32 {
	if len(states) == 0 {
		var all uint32
		for s := tcp.Established; s <= tcp.NewSynRecv; s++ {
			all |= 1 << s
		}
		return all
	}
	var mask uint32
	for _, s := range states {
		mask |= 1 << s
		if s == tcp.SynRecv || s == tcp.NewSynRecv {
			mask |= 1<<tcp.SynRecv | 1<<tcp.NewSynRecv
		}
	}
	return mask
}

// errDumpDone ends parsing at NLMSG_DONE.
var errDumpDone = errors.New("dump done")

// parseDiagMessages parses the netlink messages in b, one recvfrom's worth,
// calling fn for each socket. It returns errDumpDone at the end of the dump
// and the kernel's error for an NLMSG_ERROR. s is reused for every socket.
func parseDiagMessages(b []byte, seq uint32, s *Socket, fn func(*Socket) error) error {
	for len(b) > 0 {
		if len(b) < unix.SizeofNlMsghdr {
			return fmt.Errorf("sock_diag: truncated netlink header (%d bytes)", len(b))
		}
		msgLen := int(nativeEndian.Uint32(b[0:]))
		typ := nativeEndian.Uint16(b[4:])
		msgSeq := nativeEndian.Uint32(b[8:])
		if msgLen < unix.SizeofNlMsghdr || msgLen > len(b) {
			return fmt.Errorf("sock_diag: bad netlink message length %d (%d bytes left)", msgLen, len(b))
		}
		data := b[unix.SizeofNlMsghdr:msgLen]
		if next := nlAlign(msgLen); next < len(b) {
			b = b[next:]
		} else {
			b = nil
		}
		if msgSeq != seq {
			continue // a reply to an earlier request
		}
		switch typ {
		case unix.NLMSG_DONE:
			if len(data) >= 4 {
				if errno := int32(nativeEndian.Uint32(data)); errno < 0 {
					return fmt.Errorf("sock_diag dump: %w", unix.Errno(-errno))
				}
			}
			return errDumpDone
		case unix.NLMSG_ERROR:
			if len(data) < 4 {
				return errors.New("sock_diag: truncated error message")
			}
			if errno := int32(nativeEndian.Uint32(data)); errno < 0 {
				return fmt.Errorf("sock_diag: %w", unix.Errno(-errno))
			}
			continue // an acknowledgement
		case unix.SOCK_DIAG_BY_FAMILY:
			if err := parseInetDiagMsg(data, s); err != nil {
				return err
			}
			if err := fn(s); err != nil {
				return err
			}
		}
	}
	return nil
}

// nlAlign rounds a netlink message or attribute length up to where the
// next one starts (NLMSG_ALIGN, NLA_ALIGN: both 4).
func nlAlign(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }

// parseInetDiagMsg fills s from one inet_diag_msg and its attributes. It
// sets what the kernel says; NetNS, Seen, Age and Owners are the caller's.
func parseInetDiagMsg(b []byte, s *Socket) error {
	if len(b) < sizeofInetDiagMsg {
		return fmt.Errorf("sock_diag: inet_diag_msg is %d bytes, want %d", len(b), sizeofInetDiagMsg)
	}
	*s = Socket{Owners: s.Owners[:0]}
	switch b[offDiagFamily] {
	case unix.AF_INET:
		s.Family = tcp.IPv4
		s.LAddr = netip.AddrFrom4([4]byte(b[offDiagSrc : offDiagSrc+4]))
		s.RAddr = netip.AddrFrom4([4]byte(b[offDiagDst : offDiagDst+4]))
	case unix.AF_INET6:
		s.Family = tcp.IPv6
		s.LAddr = netip.AddrFrom16([16]byte(b[offDiagSrc : offDiagSrc+16])).Unmap()
		s.RAddr = netip.AddrFrom16([16]byte(b[offDiagDst : offDiagDst+16])).Unmap()
	default:
		return fmt.Errorf("sock_diag: unknown address family %d", b[offDiagFamily])
	}
	s.State = tcp.State(b[offDiagState])
	s.Timer = Timer(b[offDiagTimer])
	s.Retrans = b[offDiagRetrans]
	s.LPort = binary.BigEndian.Uint16(b[offDiagSport:])
	s.RPort = binary.BigEndian.Uint16(b[offDiagDport:])
	s.Expires = time.Duration(nativeEndian.Uint32(b[offDiagExpires:])) * time.Millisecond
	s.RecvQ = nativeEndian.Uint32(b[offDiagRqueue:])
	s.SendQ = nativeEndian.Uint32(b[offDiagWqueue:])
	s.Inode = uint64(nativeEndian.Uint32(b[offDiagInode:]))

	for a := b[sizeofInetDiagMsg:]; len(a) >= unix.SizeofRtAttr; {
		l := int(nativeEndian.Uint16(a[0:]))
		typ := nativeEndian.Uint16(a[2:]) & nlaTypeMask
		if l < unix.SizeofRtAttr || l > len(a) {
			return fmt.Errorf("sock_diag: bad attribute length %d", l)
		}
		v := a[unix.SizeofRtAttr:l]
		switch typ {
		case inetDiagInfo:
			if len(v) >= minTCPInfo {
				var ti unix.TCPInfo // what v lacks stays zero
				copy(unsafe.Slice((*byte)(unsafe.Pointer(&ti)), unsafe.Sizeof(ti)), v)
				s.HasInfo = true
				s.Info = TCPInfo{
					Retransmits:  ti.Retransmits,
					Probes:       ti.Probes,
					Backoff:      ti.Backoff,
					RTO:          time.Duration(ti.Rto) * time.Microsecond,
					LastDataSent: time.Duration(ti.Last_data_sent) * time.Millisecond,
					LastDataRecv: time.Duration(ti.Last_data_recv) * time.Millisecond,
					LastAckRecv:  time.Duration(ti.Last_ack_recv) * time.Millisecond,
				}
			}
		case inetDiagCgroupID:
			if len(v) >= 8 {
				s.CgroupID = nativeEndian.Uint64(v)
			}
		case inetDiagSkMemInfo:
			if len(v) >= 4*(skMemInfoDrops+1) {
				s.Drops, s.HasDrops = nativeEndian.Uint32(v[4*skMemInfoDrops:]), true
			}
		}
		a = a[min(nlAlign(l), len(a)):]
	}

	switch {
	case s.Timer == TimerTimeWait:
		s.Kind = TimeWaitSocket // TIME_WAIT, or FIN_WAIT2 after close()
	case s.State == tcp.SynRecv && !s.HasInfo && s.Inode == 0:
		s.Kind = RequestSocket
	default:
		s.Kind = FullSocket
	}
	return nil
}

// diagSocket is a NETLINK_SOCK_DIAG socket created inside one network
// namespace; it keeps answering for that namespace wherever we are.
type diagSocket struct {
	netns      uint32
	fd         int
	finTimeout time.Duration // net.ipv4.tcp_fin_timeout of the namespace
	seq        uint32
}

// openDiagSocket creates a sock_diag socket inside the network namespace
// of the file path (our own when path is ""). Only one OS thread, locked
// for the purpose, ever enters the namespace; if it cannot come back it
// is left locked so that the Go runtime ends it.
func openDiagSocket(path string, netns uint32) (*diagSocket, error) {
	type result struct {
		d   *diagSocket
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		d, restored, err := openDiagSocketLocked(path, netns)
		if restored {
			runtime.UnlockOSThread()
		}
		ch <- result{d, err}
	}()
	r := <-ch
	return r.d, r.err
}

func openDiagSocketLocked(path string, netns uint32) (d *diagSocket, restored bool, err error) {
	var orig int = -1
	if path != "" {
		orig, err = unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, true, fmt.Errorf("open our network namespace: %w", err)
		}
		defer unix.Close(orig)
		target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, true, err
		}
		// Already there (the thread's own namespace, whatever the
		// process's main thread is in): no setns, which needs root.
		if sameFile(orig, target) {
			path = ""
		} else {
			err = unix.Setns(target, unix.CLONE_NEWNET)
		}
		unix.Close(target)
		if err != nil {
			if errors.Is(err, unix.EPERM) {
				return nil, true, fmt.Errorf("reading the sockets of other network namespaces needs root (CAP_SYS_ADMIN to enter %s: %w): run tcpstate with sudo", path, err)
			}
			return nil, true, fmt.Errorf("enter network namespace %s: %w", path, err)
		}
	}
	d = &diagSocket{netns: netns, fd: -1, finTimeout: 60 * time.Second}
	// The sysctl files show the namespace of the thread that opens them.
	if b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_fin_timeout"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n > 0 {
			d.finTimeout = time.Duration(n) * time.Second
		}
	}
	d.fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err == nil {
		err = unix.Bind(d.fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		if err != nil {
			unix.Close(d.fd)
		}
	}
	if path != "" {
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			if d.fd >= 0 {
				unix.Close(d.fd)
			}
			return nil, false, fmt.Errorf("return to our network namespace: %w", err)
		}
	}
	if err != nil {
		return nil, true, fmt.Errorf("open sock_diag socket: %w", err)
	}
	return d, true, nil
}

// sameFile tells whether two open files are the same (for namespace
// files: the same namespace).
func sameFile(a, b int) bool {
	var sa, sb unix.Stat_t
	return unix.Fstat(a, &sa) == nil && unix.Fstat(b, &sb) == nil && sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

func (d *diagSocket) close() {
	if d.fd >= 0 {
		unix.Close(d.fd)
		d.fd = -1
	}
}

// dump asks for every socket of one family in the states of mask and
// calls fn for each, with s reused. When now is not nil it is set to the
// time each batch of replies arrived.
func (d *diagSocket) dump(family uint8, mask uint32, buf []byte, s *Socket, fn func(*Socket) error, now *time.Time) error {
	d.seq++
	req := diagRequest(family, mask, d.seq)
	if err := unix.Sendto(d.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("sock_diag request: %w", err)
	}
	// On a failure of fn, read the dump to its end anyway: the kernel
	// refuses a new dump on this socket while one is unfinished.
	var fnErr error
	visit := func(s *Socket) error {
		if fnErr == nil {
			fnErr = fn(s)
		}
		return nil
	}
	for {
		n, _, err := unix.Recvfrom(d.fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("sock_diag read: %w", err)
		}
		if n == 0 {
			return errors.New("sock_diag read: connection closed")
		}
		if now != nil {
			*now = time.Now()
		}
		err = parseDiagMessages(buf[:n], d.seq, s, visit)
		if err == errDumpDone {
			return fnErr
		}
		if err != nil {
			return err
		}
	}
}
