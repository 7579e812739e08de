/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/* Resets, from tcp/tcp_send_reset and tcp/tcp_receive_reset (tp_btf only;
 * both run only for RSTs): remembered with the kernel's reason (6.10+) for
 * the socket's later records, or sent as a note when the RST comes after
 * the socket's CLOSE (abortive close()). A RST sent for a segment that
 * found no socket (6.9+ report those) becomes a record of its own, with
 * the tuple read from the segment, at most nosock_per_sec per CPU: the
 * rest are counted (COUNT_NOSOCK_SUPPRESSED) and the count rides on the
 * next record. */
#ifndef TCPSTATE_RESETS_H
#define TCPSTATE_RESETS_H

/* RSTs to no socket recorded one by one, per CPU and second. */
const volatile __u32 nosock_per_sec = 100;

struct nosock_rate {
	__u64 window;     /* start of the current second */
	__u32 sent;       /* records in it */
	__u32 suppressed; /* not recorded since the last record */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nosock_rate);
} nosock_rates SEC(".maps");

/* The kernel's enum sk_rst_reason has other values on other kernels: each
 * name is looked up in the running kernel's (CO-RE); absent names are
 * never matched. */
#define RR_IS(name)                                                              \
	(bpf_core_enum_value_exists(enum sk_rst_reason, SK_RST_REASON_##name) && \
	 r == bpf_core_enum_value(enum sk_rst_reason, SK_RST_REASON_##name))

static __always_inline __u8 rst_reason_of(__u64 r)
{
	if (RR_IS(NOT_SPECIFIED))
		return RR_NOT_SPECIFIED;
	if (RR_IS(NO_SOCKET))
		return RR_NO_SOCKET;
	if (RR_IS(TCP_INVALID_ACK_SEQUENCE))
		return RR_TCP_INVALID_ACK_SEQUENCE;
	if (RR_IS(TCP_RFC7323_PAWS))
		return RR_TCP_RFC7323_PAWS;
	if (RR_IS(TCP_TOO_OLD_ACK))
		return RR_TCP_TOO_OLD_ACK;
	if (RR_IS(TCP_ACK_UNSENT_DATA))
		return RR_TCP_ACK_UNSENT_DATA;
	if (RR_IS(TCP_FLAGS))
		return RR_TCP_FLAGS;
	if (RR_IS(TCP_OLD_ACK))
		return RR_TCP_OLD_ACK;
	if (RR_IS(TCP_ABORT_ON_DATA))
		return RR_TCP_ABORT_ON_DATA;
	if (RR_IS(TCP_TIMEWAIT_SOCKET))
		return RR_TCP_TIMEWAIT_SOCKET;
	if (RR_IS(INVALID_SYN))
		return RR_INVALID_SYN;
	if (RR_IS(TCP_ABORT_ON_CLOSE))
		return RR_TCP_ABORT_ON_CLOSE;
	if (RR_IS(TCP_ABORT_ON_LINGER))
		return RR_TCP_ABORT_ON_LINGER;
	if (RR_IS(TCP_ABORT_ON_MEMORY))
		return RR_TCP_ABORT_ON_MEMORY;
	if (RR_IS(TCP_STATE))
		return RR_TCP_STATE;
	if (RR_IS(TCP_KEEPALIVE_TIMEOUT))
		return RR_TCP_KEEPALIVE_TIMEOUT;
	if (RR_IS(TCP_DISCONNECT_WITH_DATA))
		return RR_TCP_DISCONNECT_WITH_DATA;
	if (RR_IS(ERROR))
		return RR_ERROR;
	if (RR_IS(MPTCP_RST_EUNSPEC) || RR_IS(MPTCP_RST_EMPTCP) || RR_IS(MPTCP_RST_ERESOURCE) ||
	    RR_IS(MPTCP_RST_EPROHIBIT) || RR_IS(MPTCP_RST_EWQ2BIG) || RR_IS(MPTCP_RST_EBADPERF) ||
	    RR_IS(MPTCP_RST_EMIDDLEBOX))
		return RR_MPTCP;
	return RR_OTHER;
}

/* Remember a reset for the socket's later events; the kernel sends the
 * RST of an abortive close() after reporting CLOSE, so then send a note
 * for `life` and the trace instead. */
static __always_inline void note_reset(const struct sock *sk, __u8 how, __u8 reason)
{
	__u64 key = (__u64)sk;
	struct sock_info *si;
	struct event e = {};

	si = bpf_map_lookup_elem(&socks, &key);
	if (si) {
		si->reset |= how;
		if (how == RESET_SENT)
			si->reset_reason = reason;
		return;
	}
	if (sk->__sk_common.skc_state != TCP_CLOSE)
		return; /* a timewait or request socket: nothing we report */
	if (tally_mode) {
		tally_late_reset(sk->__sk_common.skc_cookie.counter, how, reason);
		return;
	}
	e.ts_ns = bpf_ktime_get_ns();
	e.skaddr = key;
	e.cookie = sk->__sk_common.skc_cookie.counter;
	e.oldstate = TCP_CLOSE;
	e.newstate = TCP_CLOSE;
	e.flags = EV_RESET_NOTE;
	e.reset = how;
	e.reset_reason = reason;
	fill_tuple(&e, sk, true);
	/* Its owner is forgotten (at CLOSE): the owner filters let it by,
	 * user space matches it with its connection. */
	if ((filter_cgroup && !in_cgroup(sk)) || !wanted_where(&e))
		return;
	send(&e);
}

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

/* A RST sent for skb, a segment that found no socket: the RST goes to its
 * sender, so the segment's destination is the local end. */
static __always_inline void note_nosock(const struct sk_buff *skb, __u8 reason)
{
	__u32 zero = 0;
	struct nosock_rate *rate;
	struct event e = {};
	unsigned char *head = skb->head;
	struct net_device *dev = skb->dev;
	struct tcphdr th;
	struct net *net;

	if (bpf_probe_read_kernel(&th, sizeof(th), head + skb->transport_header))
		return;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_probe_read_kernel(&ip, sizeof(ip), head + skb->network_header))
			return;
		e.family = AF_INET;
		*(__u32 *)e.saddr = ip.daddr;
		*(__u32 *)e.daddr = ip.saddr;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;

		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), head + skb->network_header))
			return;
		e.family = AF_INET6;
		__builtin_memcpy(e.saddr, &ip6.daddr, 16);
		__builtin_memcpy(e.daddr, &ip6.saddr, 16);
	} else {
		return;
	}
	e.sport = bpf_ntohs(th.dest);
	e.dport = bpf_ntohs(th.source);
	net = dev ? dev->nd_net.net : NULL;
	if (net) {
		e.netns = net->ns.inum;
		e.netns_cookie = net_cookie(net, true);
	}
	e.oldstate = TCP_CLOSE;
	e.newstate = TCP_CLOSE;
	if (filter_cgroup || !state_ok(e.oldstate, e.newstate) || !wanted(&e))
		return;
	count(COUNT_NOSOCK_SEEN);
	if (tally_mode) {
		tally_nosock(reason);
		return;
	}
	e.ts_ns = bpf_ktime_get_ns();
	rate = bpf_map_lookup_elem(&nosock_rates, &zero);
	if (!rate)
		return;
	if (e.ts_ns - rate->window >= 1000000000ULL) {
		rate->window = e.ts_ns;
		rate->sent = 0;
	}
	if (rate->sent >= nosock_per_sec) {
		rate->suppressed++;
		count(COUNT_NOSOCK_SUPPRESSED);
		return;
	}
	rate->sent++;
	e.retrans = rate->suppressed;
	rate->suppressed = 0;
	e.flags = EV_NOSOCK_NOTE;
	e.reset = RESET_SENT;
	e.reset_reason = reason;
	send(&e);
}

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(send_reset, const struct sock *sk, const struct sk_buff *skb)
{
	__u8 reason = RR_UNKNOWN;

	/* The reason came with the enum, in 6.10; reading the third
	 * argument is dead code (not verified) where it does not exist. */
	if (bpf_core_enum_value_exists(enum sk_rst_reason, SK_RST_REASON_NOT_SPECIFIED))
		reason = rst_reason_of(((volatile __u64 *)ctx)[2]);
	if (sk)
		note_reset(sk, RESET_SENT, reason);
	else if (skb)
		note_nosock(skb, reason);
	return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(receive_reset, struct sock *sk)
{
	if (sk)
		note_reset(sk, RESET_RECEIVED, RR_UNKNOWN);
	return 0;
}

#endif
