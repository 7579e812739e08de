/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/* What every part of tcpstate's BPF side shares: TCP's constants, the ring
 * of records to user space and its per-CPU counters of what was missed,
 * the readers of a socket's 4-tuple, cookie, cgroup and counters, and the
 * path of a connection (conn_life). */
#ifndef TCPSTATE_COMMON_H
#define TCPSTATE_COMMON_H

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_FIN_WAIT1 4
#define TCP_FIN_WAIT2 5
#define TCP_TIME_WAIT 6
#define TCP_CLOSE 7
#define TCP_CLOSE_WAIT 8
#define TCP_LISTEN 10
#define TCP_CLOSING 11
#define MAX_COMMS 8
#define MAX_CGROUP_LEVEL 32
#define TCP_LAST_ACK 9
#define PF_KTHREAD 0x00200000
#define ENETUNREACH 101
#define ETIMEDOUT 110
#define EHOSTUNREACH 113

/* Wake user space only once this much is queued; it polls on a short
 * timer anyway, so batching costs latency of at most one poll period. */
const volatile __u64 wakeup_bytes = 0;
/* Tally mode (tally.h): count and observe in maps, send no records. */
const volatile bool tally_mode = false;
/* Life mode (state.h): one record per connection, at its end, with its
 * path (struct path_record), not one per transition. */
const volatile bool life_mode = false;

/* What tally mode needs of a connection's path (sock_info.life.flags). */
enum life_flag {
	LIFE_CLIENT = 1,        /* began with CLOSE -> SYN_SENT */
	LIFE_SERVER = 2,        /* began with LISTEN -> SYN_RECV */
	LIFE_ESTABLISHED = 4,
	LIFE_FIN_LOCAL = 8,     /* the first FIN was ours (-> FIN_WAIT1) */
	LIFE_FIN_REMOTE = 16,   /* the first FIN was the peer's (-> CLOSE_WAIT) */
	LIFE_SIMULTANEOUS = 32, /* went through CLOSING */
};

struct conn_life {
	__u64 start_ts; /* its first transition */
	__u8 flags;     /* LIFE_* */
	__u8 _pad[7];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} events SEC(".maps");

/* enum counter, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NR_COUNTERS);
	__type(key, enum counter);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(enum counter what)
{
	__u64 *n = bpf_map_lookup_elem(&counters, &what);

	if (n)
		*n += 1;
}

/* Wake user space's polls (poll_timewait), which sleep while nothing
 * needs them soon. A full ring only delays the poll. */
static __always_inline void poll_note(void)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e)
		return;
	__builtin_memset(e, 0, sizeof(*e));
	e->flags = EV_POLL_NOTE;
	bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
}

static __always_inline __u64 wakeup_flags(void)
{
	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

/* Read a field of a kernel object. Where the verifier knows the pointer's
 * type (tp_btf, `btf` true) a plain load is enough and much cheaper than
 * bpf_probe_read_kernel, which other program types need. `btf` is a
 * constant in every caller, so only one branch is compiled in. */
#define READ(btf, ptr, ...) ((btf) ? (ptr)->__VA_ARGS__ : BPF_CORE_READ(ptr, __VA_ARGS__))

static __always_inline __u64 sock_ino(const struct sock *sk, bool btf)
{
	struct socket *so = READ(btf, sk, sk_socket);
	struct socket_alloc *sa;

	if (!so)
		return 0;
	if (!btf) {
		sa = container_of(so, struct socket_alloc, socket);
		return BPF_CORE_READ(sa, vfs_inode.i_ino);
	}
	/* The verifier does not follow container_of; the file leads there. */
	struct file *file = so->file;
	struct inode *inode = file ? file->f_inode : NULL;

	return inode ? inode->i_ino : 0;
}

/* The socket's cookie. With tp_btf the kernel makes one if the socket has
 * none yet, so every socket we see has one by the time it may leave a
 * timewait socket (which copies it). Classic tracepoints can only read it. */
static __always_inline __u64 sock_cookie(const struct sock *sk, bool btf)
{
	if (btf)
		return bpf_get_socket_cookie((void *)sk);
	return BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
}

/* The tcp_sock around sk. With tp_btf the verifier must be told (it
 * knows sk only as a struct sock); elsewhere a cast is as good. */
static __always_inline const struct tcp_sock *tcp_sk_of(const struct sock *sk, bool btf)
{
	return btf ? bpf_skc_to_tcp_sock((void *)sk) : (const struct tcp_sock *)sk;
}

static __always_inline __u64 net_cookie(const struct net *net, bool btf)
{
	if (!bpf_core_field_exists(net->net_cookie))
		return 0;
	return READ(btf, net, net_cookie);
}

/* Addresses, ports and namespace: read again whenever an event is sent,
 * since a held-back event's tuple is only final later. */
static __always_inline void fill_tuple(struct event *e, const struct sock *sk, bool btf)
{
	const struct tcp_sock *tp = tcp_sk_of(sk, btf);
	struct net *net;

	e->family = READ(btf, sk, __sk_common.skc_family);
	/* inet_sport, not skc_num: the port is released before CLOSE is
	 * reported, and skc_num is zeroed with it. */
	if (tp)
		e->sport = bpf_ntohs(READ(btf, tp, inet_conn.icsk_inet.inet_sport));
	e->dport = bpf_ntohs(READ(btf, sk, __sk_common.skc_dport));
	if (e->family == AF_INET) {
		*(__u32 *)e->saddr = READ(btf, sk, __sk_common.skc_rcv_saddr);
		*(__u32 *)e->daddr = READ(btf, sk, __sk_common.skc_daddr);
	} else if (btf) {
		__builtin_memcpy(e->saddr, sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8, 16);
		__builtin_memcpy(e->daddr, sk->__sk_common.skc_v6_daddr.in6_u.u6_addr8, 16);
	} else {
		bpf_core_read(e->saddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(e->daddr, 16, &sk->__sk_common.skc_v6_daddr);
	}
	net = READ(btf, sk, __sk_common.skc_net.net);
	e->netns = READ(btf, net, ns.inum);
	e->netns_cookie = net_cookie(net, btf);
}

/* Sequence numbers and counters, for --seq and `life`. */
static __always_inline void fill_tcp(struct event *e, const struct sock *sk, bool btf)
{
	const struct tcp_sock *tp = tcp_sk_of(sk, btf);

	if (!tp)
		return;
	e->snd_una = READ(btf, tp, snd_una);
	e->snd_nxt = READ(btf, tp, snd_nxt);
	e->rcv_nxt = READ(btf, tp, rcv_nxt);
	e->tx_bytes = READ(btf, tp, bytes_acked);
	e->rx_bytes = READ(btf, tp, bytes_received);
	e->retrans = READ(btf, tp, total_retrans);
}

static __always_inline __u64 sock_cgroup_id(const struct sock *sk, bool btf)
{
	struct cgroup *cg;
	struct kernfs_node *kn;

	if (!bpf_core_field_exists(sk->sk_cgrp_data.cgroup))
		return 0;
	cg = READ(btf, sk, sk_cgrp_data.cgroup);
	if (!cg)
		return 0;
	kn = READ(btf, cg, kn);
	return kn ? READ(btf, kn, id) : 0;
}

static __always_inline void send(struct event *e)
{
	if (bpf_ringbuf_output(&events, e, sizeof(*e), wakeup_flags()))
		count(COUNT_LOST);
}

/* Follow the path of a connection for tally mode. */
static __always_inline void life_step(struct conn_life *l, __u8 oldstate, __u8 newstate, __u64 now)
{
	if (oldstate == TCP_CLOSE && newstate == TCP_SYN_SENT) {
		l->start_ts = now;
		l->flags = LIFE_CLIENT;
	} else if (oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV) {
		l->start_ts = now;
		l->flags = LIFE_SERVER;
	} else if (newstate == TCP_ESTABLISHED) {
		l->flags |= LIFE_ESTABLISHED;
	} else if (newstate == TCP_CLOSING) {
		l->flags |= LIFE_SIMULTANEOUS;
	} else if (!(l->flags & (LIFE_FIN_LOCAL | LIFE_FIN_REMOTE))) {
		if (newstate == TCP_FIN_WAIT1)
			l->flags |= LIFE_FIN_LOCAL;
		else if (newstate == TCP_CLOSE_WAIT)
			l->flags |= LIFE_FIN_REMOTE;
	}
}

#endif
