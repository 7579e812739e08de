// SPDX-License-Identifier: Apache-2.0

// Package snapshot reads the host's TCP sockets as the kernel holds them
// now — sock_diag in every network namespace, the processes holding them
// from /proc, namespaces and cgroups —; it loads no BPF.
package snapshot

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpstate/tcpstate/tcp"
)

// A snapshot lists the TCP sockets that exist right now, read from the
// kernel's sock_diag netlink interface (as ss does) in every network
// namespace: also TIME_WAIT sockets, request sockets (SYN_RECV) and sockets
// older than any tracer.

// SocketKind tells which of the kernel's three kinds of TCP socket a
// Socket is.
type SocketKind uint8

const (
	// FullSocket is an ordinary socket (struct tcp_sock).
	FullSocket SocketKind = iota
	// TimeWaitSocket is the small stub the kernel keeps after a socket
	// is gone: in TIME_WAIT, or in FIN_WAIT2 after the owner closed it.
	TimeWaitSocket
	// RequestSocket is a connection in SYN_RECV that a listener has
	// answered with SYN-ACK and waits for the client's ACK.
	RequestSocket
)

// Timer is the kernel timer pending on a socket, as idiag_timer numbers it.
type Timer uint8

// The timers, named as ss(8) prints them.
const (
	TimerOff        Timer = 0
	TimerRetransmit Timer = 1 // retransmission (also loss probe and reordering)
	TimerKeepalive  Timer = 2 // keepalive, or the FIN_WAIT2 timer of a closed socket
	TimerTimeWait   Timer = 3
	TimerProbe      Timer = 4 // zero window probe
)

// String returns ss's name of the timer: off, on, keepalive, timewait,
// persist.
func (t Timer) String() string {
	switch t {
	case TimerOff:
		return "off"
	case TimerRetransmit:
		return "on"
	case TimerKeepalive:
		return "keepalive"
	case TimerTimeWait:
		return "timewait"
	case TimerProbe:
		return "persist"
	}
	return fmt.Sprintf("timer%d", uint8(t))
}

// TCPInfo is the part of the kernel's struct tcp_info a snapshot keeps.
type TCPInfo struct {
	Retransmits uint8 // tcpi_retransmits: unanswered retransmissions of the oldest segment
	Probes      uint8 // tcpi_probes: unanswered zero window or keepalive probes
	Backoff     uint8 // tcpi_backoff: how often the retransmission timeout was doubled
	RTO         time.Duration
	// How long ago the socket last sent data, received data and received
	// an acknowledgement, in the kernel's jiffies.
	LastDataSent, LastDataRecv, LastAckRecv time.Duration
}

// Socket is one TCP socket as sock_diag reports it.
type Socket struct {
	NetNS  uint32 // network namespace inode
	Kind   SocketKind
	Family tcp.Family
	// State is the kernel's state; a TimeWaitSocket is TIME_WAIT or
	// FIN_WAIT2 and a RequestSocket is SYN_RECV.
	State tcp.State
	LAddr netip.Addr // IPv4-mapped IPv6 addresses are unmapped
	LPort uint16
	RAddr netip.Addr
	RPort uint16
	// RecvQ and SendQ are what ss prints as Recv-Q and Send-Q
	// (idiag_rqueue, idiag_wqueue). For a connected socket RecvQ is
	// rcv_nxt - copied_seq: bytes not read yet, plus one for a FIN
	// received and not read; SendQ is bytes not acknowledged yet. For a
	// listener they are the accept queue's length and limit.
	RecvQ, SendQ uint32
	// Drops is the socket's sk_drops (HasDrops: the kernel said it). For
	// a listener it counts the SYNs and handshake ACKs dropped since it
	// exists (tcp_listendrop: the kernel's ListenDrops, of which
	// ListenOverflows are those of a full accept queue).
	Drops    uint32
	HasDrops bool
	Timer    Timer
	Expires  time.Duration // until Timer fires
	Retrans  uint8         // idiag_retrans: retransmissions or probes the timer counts
	Inode    uint64        // 0 when no file refers to it (TIME_WAIT, request, closed)
	CgroupID uint64        // cgroup v2 id of the socket (of the process that made it); 0 when unknown
	HasInfo  bool          // Info is set (full sockets only)
	Info     TCPInfo
	// Seen is when the kernel reported the socket.
	Seen time.Time
	// Age is a lower bound, at Seen, of how long the socket has been in
	// its state, estimated from the kernel's timestamps and timers (see
	// estimateAge); AgeKnown is false when the kernel gives nothing to
	// estimate it from.
	Age      time.Duration
	AgeKnown bool
	// AgeMax is an upper bound of the same, when the kernel gives one
	// (CLOSE_WAIT, CLOSING and FIN_WAIT2 full sockets): ACKs received in
	// the state, such as answers to keepalive probes, make Age small, and
	// the true age is somewhere between the two.
	AgeMax      time.Duration
	AgeMaxKnown bool
	// Owners are the processes holding the socket, when asked for.
	Owners []Owner
}

// AcceptQueueFull tells whether a listener's accept queue is full: the
// kernel then drops SYNs and handshake ACKs (sk_acceptq_is_full: more
// waiting than the backlog).
func (s *Socket) AcceptQueueFull() bool {
	return s.State == tcp.Listen && s.RecvQ > s.SendQ
}

// Since returns the earliest time the socket can have entered its state
// according to Age; ok is false when the age is unknown.
func (s *Socket) Since() (t time.Time, ok bool) {
	if !s.AgeKnown {
		return time.Time{}, false
	}
	return s.Seen.Add(-s.Age), true
}

// Kernel constants the estimates rest on.
const (
	timeWaitLen     = 60 * time.Second  // TCP_TIMEWAIT_LEN
	synAckTimeout   = 1 * time.Second   // TCP_TIMEOUT_INIT, the first SYN-ACK timeout
	maxRetransDelay = 120 * time.Second // TCP_RTO_MAX
)

// estimateAge sets Age to a lower bound of the time the socket has spent
// in its state, from what the kernel reports about it, or clears
// AgeKnown. finTimeout is the namespace's net.ipv4.tcp_fin_timeout.
//
//   - TIME_WAIT: the stub lives 60 s (TCP_TIMEWAIT_LEN); age = 60 s − time
//     left. Exact, unless a retransmitted FIN from the peer restarted the
//     60 s, which only makes the estimate smaller.
//   - FIN_WAIT2 of a closed socket (timewait stub): it lives
//     tcp_fin_timeout from close() or from entering FIN_WAIT2, whichever
//     was later; age = tcp_fin_timeout − time left.
//   - ESTABLISHED: the handshake sets all three tcp_info timestamps (last
//     data sent, last data received, last ACK received) and they only
//     move forward: the largest of the three "ms ago" values.
//   - CLOSE_WAIT, FIN_WAIT2, CLOSING: the socket entered the state on an
//     incoming segment that acknowledged something (the peer's FIN, or
//     its ACK of our FIN), which set tcpi_last_ack_recv: its value. ACKs
//     received since (answers to keepalive probes, ACKs of data we still
//     send) make it smaller. AgeMax is tcpi_last_data_recv (CLOSE_WAIT,
//     CLOSING: no data follows the peer's FIN) or tcpi_last_data_sent
//     (FIN_WAIT2: none follows ours).
//   - SYN_SENT (and SYN_RECV of a full socket): our SYN is retransmitted
//     each time the retransmission timeout expires, and the timeout
//     never shrinks and at most doubles; from tcp_info's current RTO,
//     retransmission count and backoff and the time left on the timer,
//     rtoBound gives the least time since connect() sent the first SYN.
//   - SYN_RECV request sockets: the same from the SYN-ACK timer (1 s,
//     2 s, 4 s, ...: the kernel's default first timeout of 1 s).
//   - FIN_WAIT1, LAST_ACK: once the retransmission timeout has expired
//     (backoff ≥ 1), the same bound, counting only backed-off timeouts,
//     of how long our oldest unacknowledged segment — our FIN, or data
//     sent before it — has gone unacknowledged. Before that, unknown.
//   - LISTEN, CLOSE: unknown.
//
// The kernel counts in jiffies, so every bound may be off by one jiffy.
func (s *Socket) estimateAge(finTimeout time.Duration) {
	s.Age, s.AgeKnown = 0, false
	s.AgeMax, s.AgeMaxKnown = 0, false
	set := func(d time.Duration) {
		s.Age, s.AgeKnown = max(d, 0), true
	}
	switch s.Kind {
	case TimeWaitSocket:
		life := timeWaitLen
		if s.State == tcp.FinWait2 {
			life = finTimeout
		}
		set(life - s.Expires)
		return
	case RequestSocket:
		if s.Timer == TimerRetransmit {
			set(synAckBound(s.Retrans, s.Expires))
		}
		return
	}
	if !s.HasInfo {
		return
	}
	in := &s.Info
	switch s.State {
	case tcp.Established:
		set(max(in.LastDataSent, in.LastDataRecv, in.LastAckRecv))
	case tcp.CloseWait, tcp.FinWait2, tcp.Closing:
		set(in.LastAckRecv)
		// No data comes after the peer's FIN (CLOSE_WAIT, CLOSING), none
		// leaves after ours (FIN_WAIT2): the last data received (sent)
		// was no later than the transition.
		up := in.LastDataRecv
		if s.State == tcp.FinWait2 {
			up = in.LastDataSent
		}
		s.AgeMax, s.AgeMaxKnown = max(up, s.Age), true
	case tcp.SynSent, tcp.SynRecv:
		if s.Timer == TimerRetransmit {
			set(rtoBound(in.RTO, in.Backoff, in.Retransmits, s.Expires))
		}
	case tcp.FinWait1, tcp.LastAck:
		// Only backed-off timeouts count: a loss probe or a retry after
		// local congestion may have come sooner.
		if s.Timer == TimerRetransmit && in.Backoff > 0 {
			set(rtoBound(in.RTO, in.Backoff, in.Backoff, s.Expires))
		}
	}
}

// rtoBound is the least time since the first transmission of a segment
// that has gone unanswered through retrans timeouts, backoff of which
// doubled the timeout, now rto with expires left until the next. The
// timeouts never shrink and at most double, so the sum of the finished
// ones is smallest when they stayed at rto/2^backoff as long as possible
// and doubled last: rto + (retrans − backoff − 1)·rto/2^backoff.
func rtoBound(rto time.Duration, backoff, retrans uint8, expires time.Duration) time.Duration {
	if backoff > 30 {
		backoff = 30
	}
	n, b := int64(max(retrans, backoff)), int64(backoff)
	d := max(rto-expires, 0)
	if n > 0 {
		d += rto + time.Duration(n-b-1)*(rto>>b)
	}
	return d
}

// synAckBound is rtoBound for a request socket, whose timeouts are
// 1 s, 2 s, 4 s, ... (at most 120 s) by default.
func synAckBound(retrans uint8, expires time.Duration) time.Duration {
	period := func(k uint8) time.Duration {
		if k >= 7 {
			return maxRetransDelay
		}
		return min(synAckTimeout<<k, maxRetransDelay)
	}
	d := max(period(retrans)-expires, 0)
	for k := range retrans {
		d += period(k)
	}
	return d
}

// Options select the sockets of a snapshot. Zero values mean "every
// socket". They filter as the tracer's do (tracer.Options), here in user
// space, with two differences: States selects sockets in these states, and
// PIDs and Comms match any of a shared socket's holders. Sockets that no
// process holds (TIME_WAIT, request, orphaned) match no PIDs or Comms
// filter; the kernel reports no cgroup for TIME_WAIT and request sockets,
// so they match no CgroupID filter either.
type Options struct {
	// Filter.NetNS limits the snapshot to one network namespace; by
	// default it covers every namespace.
	tcp.Filter
	// NetNSPath is the namespace file to enter when NetNS is set; without
	// it the namespace is looked for among those of the processes and of
	// /run/netns.
	NetNSPath string
	// Owners asks for the processes holding each socket (reading every
	// /proc/PID/fd, as ss -p does).
	Owners bool
	// Holders, when set, selects sockets by their holders (Owners are
	// read for it) beyond what PIDs and Comms can say: by the holders'
	// pod, say.
	Holders func(*Socket) bool
}

// ReadsOwners says whether a snapshot with o fills Socket.Owners: when
// asked to, and when a PIDs, Comms or Holders filter needs them.
func (o *Options) ReadsOwners() bool {
	return o.Owners || len(o.PIDs) > 0 || len(o.Comms) > 0 || o.Holders != nil
}

// Snapshotter reads snapshots repeatedly, keeping one sock_diag socket per
// network namespace open between them.
type Snapshotter struct {
	opts   Options
	filter socketFilter
	spaces map[uint32]*diagSocket
	ownNS  uint32
	buf    []byte
	sock   Socket
}

// NewSnapshotter checks the options. Close releases its sockets.
func NewSnapshotter(o Options) (*Snapshotter, error) {
	f, err := newSocketFilter(&o)
	if err != nil {
		return nil, err
	}
	// The calling thread's namespace: /proc/self is the main thread's,
	// which a goroutine that ended locked to it in another namespace
	// leaves there.
	own, err := netnsOf("/proc/thread-self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("read our network namespace: %w", err)
	}
	return &Snapshotter{opts: o, filter: f, spaces: map[uint32]*diagSocket{}, ownNS: own,
		buf: make([]byte, diagRecvBufferSize)}, nil
}

// SetStates changes the states the next snapshots select.
func (sn *Snapshotter) SetStates(states []tcp.State) {
	sn.opts.States = states
	sn.filter.states = 0
	for _, s := range states {
		sn.filter.states |= 1 << s
	}
}

// Close closes the sock_diag sockets, which hold their namespaces.
func (sn *Snapshotter) Close() error {
	for ino, d := range sn.spaces {
		d.close()
		delete(sn.spaces, ino)
	}
	return nil
}

// Snapshot calls visit for every socket that matches the options, one
// namespace after the other. The Socket is reused after visit returns;
// Owners may be shared between calls.
func (sn *Snapshotter) Snapshot(visit func(*Socket) error) error {
	if err := sn.openSpaces(); err != nil {
		return err
	}
	var owners map[uint64][]Owner
	if sn.opts.ReadsOwners() {
		var err error
		if owners, err = socketOwners(nil); err != nil {
			return err
		}
	}
	// IPv4 sockets include the IPv4-mapped ones of IPv6 sockets.
	families := []uint8{unix.AF_INET, unix.AF_INET6}
	if sn.opts.IPv6 && !sn.opts.IPv4 {
		families = families[1:]
	}
	mask := diagStates(sn.opts.States)
	for _, d := range sn.sortedSpaces() {
		for _, fam := range families {
			var now time.Time
			err := d.dumpTimed(fam, mask, sn.buf, &sn.sock, &now, func(s *Socket) error {
				s.NetNS = d.netns
				s.Seen = now
				s.estimateAge(d.finTimeout)
				if owners != nil && s.Inode != 0 {
					s.Owners = owners[s.Inode]
				} else {
					s.Owners = nil
				}
				if !sn.filter.match(s) {
					return nil
				}
				return visit(s)
			})
			if err != nil {
				return fmt.Errorf("network namespace %d: %w", d.netns, err)
			}
		}
	}
	return nil
}

// openSpaces opens a sock_diag socket in every namespace to read, and
// closes those of namespaces that are gone.
func (sn *Snapshotter) openSpaces() error {
	var spaces []NetNS
	if sn.opts.NetNS != 0 {
		if _, ok := sn.spaces[sn.opts.NetNS]; ok {
			return nil
		}
		if sn.opts.NetNSPath != "" {
			spaces = []NetNS{{Inode: sn.opts.NetNS, Path: sn.opts.NetNSPath}}
		} else {
			all, err := NetNamespaces()
			if err != nil {
				return err
			}
			for _, ns := range all {
				if ns.Inode == sn.opts.NetNS {
					spaces = []NetNS{ns}
				}
			}
			if spaces == nil {
				return fmt.Errorf("network namespace %d not found: no process is in it and it is not in /run/netns; give its path instead", sn.opts.NetNS)
			}
		}
	} else {
		var err error
		if spaces, err = NetNamespaces(); err != nil {
			return err
		}
	}
	seen := map[uint32]bool{}
	for _, ns := range spaces {
		seen[ns.Inode] = true
		if _, ok := sn.spaces[ns.Inode]; ok {
			continue
		}
		var d *diagSocket
		var err error
		for _, path := range append([]string{ns.Path}, ns.alt...) {
			if ns.Inode == sn.ownNS {
				path = ""
			}
			d, err = openDiagSocket(path, ns.Inode)
			if err == nil || !gone(err) {
				break
			}
		}
		if err != nil {
			if gone(err) && sn.opts.NetNS == 0 {
				continue // every process in it ended meanwhile
			}
			sn.Close()
			return err
		}
		sn.spaces[ns.Inode] = d
	}
	for ino, d := range sn.spaces {
		if !seen[ino] {
			d.close()
			delete(sn.spaces, ino)
		}
	}
	return nil
}

func gone(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH)
}

// sortedSpaces returns the open namespaces, ours first, then by inode.
func (sn *Snapshotter) sortedSpaces() []*diagSocket {
	out := make([]*diagSocket, 0, len(sn.spaces))
	for _, d := range sn.spaces {
		out = append(out, d)
	}
	for i := 1; i < len(out); i++ { // few namespaces: insertion sort
		for j := i; j > 0 && sn.before(out[j], out[j-1]); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func (sn *Snapshotter) before(a, b *diagSocket) bool {
	if (a.netns == sn.ownNS) != (b.netns == sn.ownNS) {
		return a.netns == sn.ownNS
	}
	return a.netns < b.netns
}

// dumpTimed is dump, setting *now to when each batch of replies arrived:
// the kernel computed their "ms ago" values before that, so ages stay
// lower bounds.
func (d *diagSocket) dumpTimed(family uint8, mask uint32, buf []byte, s *Socket, now *time.Time, fn func(*Socket) error) error {
	*now = time.Now()
	return d.dump(family, mask, buf, s, fn, now)
}

// Snapshot reads one snapshot; see Snapshotter.Snapshot.
func Snapshot(o Options, visit func(*Socket) error) error {
	sn, err := NewSnapshotter(o)
	if err != nil {
		return err
	}
	defer sn.Close()
	return sn.Snapshot(visit)
}

// FillOwners sets the Owners of the given sockets, reading every
// /proc/PID/fd once.
func FillOwners(socks []Socket) error {
	want := map[uint64]bool{}
	for i := range socks {
		if socks[i].Inode != 0 {
			want[socks[i].Inode] = true
		}
	}
	if len(want) == 0 {
		return nil
	}
	owners, err := socketOwners(want)
	if err != nil {
		return err
	}
	for i := range socks {
		if socks[i].Inode != 0 {
			socks[i].Owners = owners[socks[i].Inode]
		}
	}
	return nil
}

// socketFilter applies Options to snapshot sockets.
type socketFilter struct {
	o       *Options
	states  uint32
	pids    map[uint32]bool
	lports  map[uint16]bool
	rports  map[uint16]bool
	cgroups map[uint64]bool // the cgroup and every cgroup below it
}

func newSocketFilter(o *Options) (socketFilter, error) {
	f := socketFilter{o: o}
	for _, s := range o.States {
		f.states |= 1 << s
	}
	if len(o.PIDs) > 0 {
		f.pids = map[uint32]bool{}
		for _, p := range o.PIDs {
			f.pids[p] = true
		}
	}
	ports := func(list []uint16) map[uint16]bool {
		if len(list) == 0 {
			return nil
		}
		m := map[uint16]bool{}
		for _, p := range list {
			m[p] = true
		}
		return m
	}
	f.lports, f.rports = ports(o.LPorts), ports(o.RPorts)
	if o.CgroupID != 0 {
		var err error
		if f.cgroups, err = cgroupTree(o.CgroupID); err != nil {
			return f, err
		}
	}
	return f, nil
}

func (f *socketFilter) match(s *Socket) bool {
	o := f.o
	if !o.MatchFamily(s.Family, s.LAddr, s.RAddr) {
		return false
	}
	if f.states != 0 && f.states&(1<<s.State) == 0 {
		return false
	}
	if f.lports != nil && !f.lports[s.LPort] || f.rports != nil && !f.rports[s.RPort] {
		return false
	}
	if !o.MatchAddrs(s.LAddr, s.RAddr) {
		return false
	}
	if f.cgroups != nil && !f.cgroups[s.CgroupID] {
		return false
	}
	if f.pids != nil || len(o.Comms) > 0 {
		ok := false
		for _, ow := range s.Owners {
			if (f.pids == nil || f.pids[ow.Pid]) && (len(o.Comms) == 0 || inStrings(ow.Comm, o.Comms)) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return o.Holders == nil || o.Holders(s)
}

func inStrings(s string, list []string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
