// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* tcpstate: every TCP state transition, attributed to the socket's owner. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "tcpstate.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_CLOSE 7
#define TCP_LISTEN 10
#define MAX_COMMS 8
#define MAX_CGROUP_LEVEL 32

char LICENSE[] SEC("license") = "GPL";

/* Filters, set by the loader before the program is loaded. */
const volatile __u16 filter_family = 0;     /* 0: any */
const volatile __u32 filter_states = 0;     /* bit per state; 0: any */
const volatile __u32 filter_netns = 0;      /* 0: any */
const volatile __u64 filter_cgroup = 0;     /* 0: any */
const volatile bool filter_pid = false;     /* use map pids */
const volatile bool filter_lport = false;   /* use map lports */
const volatile bool filter_rport = false;   /* use map rports */
const volatile bool filter_laddr = false;   /* use map laddrs */
const volatile bool filter_raddr = false;   /* use map raddrs */
const volatile __u32 filter_ncomms = 0;
const volatile char filter_comms[MAX_COMMS][TASK_COMM_LEN] = {};
/* Wake user space only once this much is queued; it polls on a short
 * timer anyway, so batching costs latency of at most one poll period. */
const volatile __u64 wakeup_bytes = 0;

/* What we remember per socket between transitions. */
struct sock_info {
	__u64 last_ts;
	__u32 pid;
	__u32 _pad;
	char comm[TASK_COMM_LEN];
};

/* A process that holds a socket, as found in /proc at start-up. */
struct owner {
	__u32 pid;
	char comm[TASK_COMM_LEN];
};

struct lpm_key {
	__u32 prefixlen;
	__u8 addr[16]; /* IPv4 as ::ffff:a.b.c.d */
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} events SEC(".maps");

/* Events dropped because the ring buffer was full. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

/* Owner and last transition time per socket; removed at CLOSE. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct sock_info);
} socks SEC(".maps");

/* Events held back until the socket's 4-tuple is final: SYN_SENT before
 * the local port is bound, SYN_RECV before the child has its peer. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct event);
} pending SEC(".maps");

/* Socket a task is connecting, to flush its SYN_SENT at connect() exit. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u64);
} connecting SEC(".maps");

/* Owners of sockets older than the tracer, by socket inode: filled from
 * /proc before attaching, moved into socks at the socket's first event. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct owner);
} seeds SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} pids SEC(".maps");

/* Port sets as 65536-bit bitmaps. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} lports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} rports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 256);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_key);
	__type(value, __u8);
} laddrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 256);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_key);
	__type(value, __u8);
} raddrs SEC(".maps");

static __always_inline void count_lost(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&lost, &zero);

	if (n)
		*n += 1;
}

static __always_inline __u64 wakeup_flags(void)
{
	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

static __always_inline __u64 sock_ino(const struct sock *sk)
{
	struct socket *so = BPF_CORE_READ(sk, sk_socket);
	struct socket_alloc *sa;

	if (!so)
		return 0;
	sa = container_of(so, struct socket_alloc, socket);
	return BPF_CORE_READ(sa, vfs_inode.i_ino);
}

/* Addresses, ports and namespace: read again whenever an event is sent,
 * since a held-back event's tuple is only final later. */
static __always_inline void fill_tuple(struct event *e, const struct sock *sk)
{
	const struct inet_sock *inet = (const struct inet_sock *)sk;

	e->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	/* inet_sport, not skc_num: the port is released before CLOSE is
	 * reported, and skc_num is zeroed with it. */
	e->sport = bpf_ntohs(BPF_CORE_READ(inet, inet_sport));
	e->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (e->family == AF_INET) {
		bpf_core_read(e->saddr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(e->daddr, 4, &sk->__sk_common.skc_daddr);
	} else {
		bpf_core_read(e->saddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(e->daddr, 16, &sk->__sk_common.skc_v6_daddr);
	}
	e->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	e->ino = sock_ino(sk);
}

/* The owner of a socket older than the tracer, if /proc named one. */
static __always_inline void seed_owner(const struct sock *sk, struct sock_info *si)
{
	__u64 ino = sock_ino(sk);
	struct owner *o;

	if (!ino)
		return;
	o = bpf_map_lookup_elem(&seeds, &ino);
	if (!o)
		return;
	si->pid = o->pid;
	__builtin_memcpy(si->comm, o->comm, sizeof(si->comm));
	bpf_map_delete_elem(&seeds, &ino);
}

static __always_inline bool port_in(void *bitmap, __u16 port)
{
	__u32 idx = port >> 6;
	__u64 *word = bpf_map_lookup_elem(bitmap, &idx);

	return word && (*word & (1ULL << (port & 63)));
}

static __always_inline bool addr_in(void *trie, const struct event *e, const __u8 *addr)
{
	struct lpm_key key = { .prefixlen = 128 };

	if (e->family == AF_INET) {
		key.addr[10] = 0xff;
		key.addr[11] = 0xff;
		__builtin_memcpy(&key.addr[12], addr, 4);
	} else {
		__builtin_memcpy(key.addr, addr, 16);
	}
	return bpf_map_lookup_elem(trie, &key) != NULL;
}

static __always_inline bool comm_eq(const char *a, const volatile char *b)
{
	for (int i = 0; i < TASK_COMM_LEN; i++) {
		if (a[i] != b[i])
			return false;
		if (a[i] == 0)
			return true;
	}
	return true;
}

/* Filters on the final event: its owner, tuple and namespace. */
static __always_inline bool wanted(const struct event *e)
{
	if (filter_family && e->family != filter_family)
		return false;
	if (filter_netns && e->netns != filter_netns)
		return false;
	if (filter_pid && !bpf_map_lookup_elem(&pids, &e->pid))
		return false;
	if (filter_ncomms) {
		bool found = false;

		for (int i = 0; i < MAX_COMMS; i++) {
			if (i >= filter_ncomms)
				break;
			if (comm_eq(e->comm, filter_comms[i])) {
				found = true;
				break;
			}
		}
		if (!found)
			return false;
	}
	if (filter_lport && !port_in(&lports, e->sport))
		return false;
	if (filter_rport && !port_in(&rports, e->dport))
		return false;
	if (filter_laddr && !addr_in(&laddrs, e, e->saddr))
		return false;
	if (filter_raddr && !addr_in(&raddrs, e, e->daddr))
		return false;
	return true;
}

static __always_inline __u64 sock_cgroup_id(const struct sock *sk)
{
	if (!bpf_core_field_exists(sk->sk_cgrp_data.cgroup))
		return 0;
	return BPF_CORE_READ(sk, sk_cgrp_data.cgroup, kn, id);
}

/* Before 6.2 a cgroup listed its ancestors' ids, not pointers. */
struct cgroup___old {
	int level;
	__u64 ancestor_ids[];
} __attribute__((preserve_access_index));

/* True when the socket's cgroup is filter_cgroup or below it. */
static __always_inline bool in_cgroup(const struct sock *sk)
{
	struct cgroup *cg;
	int level;

	if (!bpf_core_field_exists(sk->sk_cgrp_data.cgroup))
		return false;
	cg = BPF_CORE_READ(sk, sk_cgrp_data.cgroup);
	if (!cg)
		return false;
	level = BPF_CORE_READ(cg, level);
	for (int i = 0; i < MAX_CGROUP_LEVEL; i++) {
		struct cgroup *anc;

		if (i > level)
			break;
		if (bpf_core_field_exists(cg->ancestors)) {
			anc = BPF_CORE_READ(cg, ancestors[i]);
			if (anc && BPF_CORE_READ(anc, kn, id) == filter_cgroup)
				return true;
		} else {
			struct cgroup___old *old = (void *)cg;

			if (BPF_CORE_READ(old, ancestor_ids[i]) == filter_cgroup)
				return true;
		}
	}
	return false;
}

static __always_inline void send(struct event *e)
{
	if (bpf_ringbuf_output(&events, e, sizeof(*e), wakeup_flags()))
		count_lost();
}

/* Send the held-back event of sk, if any, with its tuple read now. The
 * winner of the delete sends it, so it goes out once even when connect()
 * returns on one CPU while the next transition runs on another. */
static __always_inline void flush_pending(const struct sock *sk, __u64 key)
{
	struct event *p = bpf_map_lookup_elem(&pending, &key);
	struct event e;

	if (!p)
		return;
	__builtin_memcpy(&e, p, sizeof(e));
	if (bpf_map_delete_elem(&pending, &key))
		return;
	fill_tuple(&e, sk);
	if (wanted(&e))
		send(&e);
}

static __always_inline int on_set_state(const struct sock *sk, int oldstate, int newstate)
{
	__u64 key = (__u64)sk;
	struct sock_info *si, fresh = {};
	struct event e = {};

	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;

	e.ts_ns = bpf_ktime_get_ns();
	e.skaddr = key;
	e.oldstate = oldstate;
	e.newstate = newstate;

	/* Keep the per-socket order: what was held back goes first. */
	flush_pending(sk, key);

	if (oldstate == TCP_CLOSE || (oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV)) {
		/* A new life for this address: forget what was there. connect()
		 * and listen() run in the caller's context, so the task on CPU
		 * is the owner; a child of a listener has none until accept(). */
		if (newstate == TCP_SYN_SENT || newstate == TCP_LISTEN) {
			fresh.pid = bpf_get_current_pid_tgid() >> 32;
			bpf_get_current_comm(fresh.comm, sizeof(fresh.comm));
		}
		fresh.last_ts = e.ts_ns;
		bpf_map_update_elem(&socks, &key, &fresh, BPF_ANY);
		si = &fresh;
	} else {
		si = bpf_map_lookup_elem(&socks, &key);
		if (si) {
			e.prev_ts_ns = si->last_ts;
			si->last_ts = e.ts_ns;
		} else {
			/* Older than the tracer (or evicted): no age, and the
			 * owner only if /proc named one at start-up. */
			seed_owner(sk, &fresh);
			fresh.last_ts = e.ts_ns;
			bpf_map_update_elem(&socks, &key, &fresh, BPF_ANY);
			si = &fresh;
		}
	}
	e.pid = si->pid;
	__builtin_memcpy(e.comm, si->comm, sizeof(e.comm));
	if (newstate == TCP_CLOSE)
		bpf_map_delete_elem(&socks, &key);

	if (filter_states && !(filter_states & ((1U << oldstate) | (1U << newstate))))
		return 0;
	if (filter_cgroup && !in_cgroup(sk))
		return 0;
	e.cgroup_id = sock_cgroup_id(sk);

	if (newstate == TCP_SYN_SENT || (oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV)) {
		/* The local port (SYN_SENT) or the peer (SYN_RECV) is set just
		 * after this tracepoint; send at connect() exit or the next
		 * transition, whichever comes first. */
		bpf_map_update_elem(&pending, &key, &e, BPF_ANY);
		if (newstate == TCP_SYN_SENT) {
			__u64 id = bpf_get_current_pid_tgid();

			bpf_map_update_elem(&connecting, &id, &key, BPF_ANY);
		}
		return 0;
	}

	fill_tuple(&e, sk);
	if (wanted(&e))
		send(&e);
	return 0;
}

/* Two ways in: tp_btf where the kernel has BTF (cheaper, typed), the
 * classic tracepoint otherwise (e.g. with --kernel-btf). */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(set_state_btf, const struct sock *sk, int oldstate, int newstate)
{
	return on_set_state(sk, oldstate, newstate);
}

/* Tracepoint records, as in their format files; the leading fields are
 * stable since 4.16, so no CO-RE is needed for them. */
struct set_state_ctx {
	__u64 common;
	const struct sock *skaddr;
	int oldstate;
	int newstate;
};

struct retransmit_ctx {
	__u64 common;
	const void *skbaddr;
	const struct sock *skaddr;
};

SEC("tracepoint/sock/inet_sock_set_state")
int set_state_tp(struct set_state_ctx *ctx)
{
	return on_set_state(ctx->skaddr, ctx->oldstate, ctx->newstate);
}

/* A SYN_SENT socket whose connect() blocks with no answer: its first SYN
 * retransmission (1 s) shows the event rather than the final timeout. */
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(retransmit_btf, const struct sock *sk)
{
	flush_pending(sk, (__u64)sk);
	return 0;
}

SEC("tracepoint/tcp/tcp_retransmit_skb")
int retransmit_tp(struct retransmit_ctx *ctx)
{
	flush_pending(ctx->skaddr, (__u64)ctx->skaddr);
	return 0;
}

struct sys_exit_ctx {
	__u64 common;
	int nr;
	long ret;
};

SEC("tracepoint/syscalls/sys_exit_connect")
int connect_exit(struct sys_exit_ctx *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u64 *key = bpf_map_lookup_elem(&connecting, &id);
	__u64 skaddr;

	if (!key)
		return 0;
	skaddr = *key;
	bpf_map_delete_elem(&connecting, &id);
	flush_pending((const struct sock *)skaddr, skaddr);
	return 0;
}

/* accept() hands a child socket to a process: from now on it owns it. */
static __always_inline int accepted(struct sys_exit_ctx *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct file **fds, *file;
	struct socket *so;
	struct sock *sk;
	struct sock_info *si, fresh = {};
	__u64 key;
	long fd = ctx->ret;

	if (fd < 0)
		return 0;
	fds = BPF_CORE_READ(task, files, fdt, fd);
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return 0;
	so = BPF_CORE_READ(file, private_data);
	sk = BPF_CORE_READ(so, sk);
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	key = (__u64)sk;
	si = bpf_map_lookup_elem(&socks, &key);
	if (!si) {
		si = &fresh;
		/* Connected before the tracer started: age unknown. */
	}
	si->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(si->comm, sizeof(si->comm));
	if (si == &fresh)
		bpf_map_update_elem(&socks, &key, &fresh, BPF_NOEXIST);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int accept4_exit(struct sys_exit_ctx *ctx)
{
	return accepted(ctx);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int accept_exit(struct sys_exit_ctx *ctx)
{
	return accepted(ctx);
}
