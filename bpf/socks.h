/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/* Sockets followed between transitions (map socks: owner, time of the
 * last transition, path): whose they are and since when.
 *
 * Owners come without a hook that every process pays for (no syscall
 * tracepoints): connect() and listen() run set_state in the owner's task;
 * an accepted socket gets its owner from fexit on inet_csk_accept where
 * the kernel allows fentry/fexit, and otherwise at its first transition
 * that only a process can make (close() or shutdown(): ESTABLISHED ->
 * FIN_WAIT1, CLOSE_WAIT -> LAST_ACK; any, under the socket's lock). Sockets older than the tracer get
 * theirs from /proc (map seeds). A periodic sweep counts the followed
 * sockets that the tracepoint stopped showing. */
#ifndef TCPSTATE_SOCKS_H
#define TCPSTATE_SOCKS_H

/* A SYN_SENT or SYN_RECV event held back until the socket's 4-tuple is
 * final (SYN_SENT before the local port is bound, SYN_RECV before the
 * child has its peer): what it had then. The rest of the event is read
 * when it is sent: at the socket's next transition, or at its first SYN
 * retransmission. Kept in the socket's entry: no table of its own. */
struct held {
	__u64 ts;      /* 0: nothing held */
	__u64 taken;   /* counted up by the one that sends it */
	/* The event's counters then, tx_bytes to retrans, in its order. */
	__u64 tx_bytes;
	__u64 rx_bytes;
	__u32 snd_una;
	__u32 snd_nxt;
	__u32 rcv_nxt;
	__u32 retrans;
	__u8 oldstate;
	__u8 newstate;
	__u8 _pad[6];
};

#define HELD_COUNTERS (__builtin_offsetof(struct held, oldstate) - __builtin_offsetof(struct held, tx_bytes))
_Static_assert(__builtin_offsetof(struct event, retrans) + 4 - __builtin_offsetof(struct event, tx_bytes) == HELD_COUNTERS,
	       "struct held keeps struct event's counters in its order");

/* What we remember per socket between transitions. */
struct sock_info {
	__u64 last_ts;
	__u64 cookie; /* to tell the socket from a later one at its address */
	__u32 pid;
	__u8 reset;   /* RESET_* */
	__u8 state;   /* the last new state shown */
	__u8 suspect; /* 1 + the other state the last sweep found it in */
	__u8 reset_reason; /* enum rst_reason of the RST it sent (resets.h) */
	char comm[TASK_COMM_LEN];
	struct conn_life life;
	union {
		struct held held; /* trace: an event held back */
		struct conn_path path; /* life mode: the path so far */
	};
};

/* A process that holds a socket, as found in /proc at start-up. */
struct owner {
	__u32 pid;
	char comm[TASK_COMM_LEN];
};

/* Owner and last transition time per socket; removed at CLOSE. Not LRU:
 * an entry must not vanish while its socket lives; a full table is
 * counted (COUNT_SOCKS_FULL). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 20);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct sock_info);
} socks SEC(".maps");

/* Owners of sockets older than the tracer, by socket inode: filled from
 * /proc before attaching, moved into socks at the socket's first event. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 18);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct owner);
} seeds SEC(".maps");

/* The owner of a socket older than the tracer, if /proc named one. */
static __always_inline void seed_owner(const struct sock *sk, struct sock_info *si, bool btf)
{
	__u64 ino = sock_ino(sk, btf);
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

/* The sock_info of sk for a transition that is not its first. */
static __always_inline struct sock_info *sock_info_of(const struct sock *sk, __u64 key, __u64 now, bool btf,
						      struct sock_info *fresh)
{
	struct sock_info *si = bpf_map_lookup_elem(&socks, &key);

	if (si)
		return si;
	/* Older than the tracer (or the table was full): no age, and the
	 * owner only if /proc named one at start-up. */
	seed_owner(sk, fresh, btf);
	fresh->last_ts = now;
	if (bpf_map_update_elem(&socks, &key, fresh, BPF_ANY))
		count(COUNT_SOCKS_FULL);
	return fresh;
}

/* An accepted socket still without owner, at a transition only its
 * owner's task can make: close() or shutdown() of it (FIN_WAIT1,
 * LAST_ACK), or any made while a task holds the socket's lock (an
 * abortive close with SO_LINGER 0, a RST read from the backlog at
 * release_sock: the kernel defers packets and timers of a socket so held).
 * Never a kernel thread's: an in-kernel user, or a deferred fput. */
static __always_inline void own_in_owner_task(struct sock_info *si, const struct sock *sk, __u8 newstate, bool btf)
{
	struct task_struct *task;

	if (si->pid)
		return;
	if (newstate != TCP_FIN_WAIT1 && newstate != TCP_LAST_ACK && !READ(btf, sk, sk_lock.owned))
		return;
	task = (struct task_struct *)bpf_get_current_task();
	if (BPF_CORE_READ(task, flags) & PF_KTHREAD)
		return;
	si->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(si->comm, sizeof(si->comm));
}

/* accept() hands a child socket to a process: from now on it owns it.
 * Attached where the kernel allows fexit; the return value is read with
 * bpf_get_func_ret, which spares knowing the function's arguments (they
 * changed in 6.10). */
SEC("fexit/inet_csk_accept")
int accept_exit(__u64 *ctx)
{
	struct sock_info *si, fresh = {};
	struct sock *sk;
	__u64 ret, key;

	if (bpf_get_func_ret(ctx, &ret) || !ret)
		return 0;
	sk = (struct sock *)ret;
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP || !netns_ok(sk, false))
		return 0;
	key = ret;
	si = bpf_map_lookup_elem(&socks, &key);
	if (!si) {
		/* Connected before the tracer started (age unknown), or closed
		 * already (a RST while it waited in the accept queue): nothing
		 * more will be shown of it, so nothing to remember. */
		fresh.state = BPF_CORE_READ(sk, __sk_common.skc_state);
		if (fresh.state == TCP_CLOSE)
			return 0;
		si = &fresh;
	}
	si->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(si->comm, sizeof(si->comm));
	if (si == &fresh) {
		fresh.cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
		bpf_map_update_elem(&socks, &key, &fresh, BPF_NOEXIST);
	}
	return 0;
}

/* A followed socket the tracepoint stopped showing. Gone: no references
 * left, or its memory holds another socket now, with no CLOSE shown.
 * Moved on: in another state than the last one shown, at two sweeps in a
 * row (a sweep may fall between a tracepoint and the state it reports).
 * The kernel sometimes runs no tracing program at all for a transition
 * (seen on 6.18 in bursts of thousands of closes, and no miss counted):
 * this is how such gaps get counted rather than go unnoticed. */
static long sweep_sock(struct bpf_map *map, __u64 *key, struct sock_info *si, void *ctx)
{
	const struct sock *sk = (const void *)*key;
	__u64 cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
	__u32 refs = BPF_CORE_READ(sk, __sk_common.skc_refcnt.refs.counter);
	__u8 state = BPF_CORE_READ(sk, __sk_common.skc_state);

	/* A server child in SYN_RECV may not have its final cookie yet (see
	 * on_set_state): only its references tell whether it is gone. */
	if (!refs || (si->cookie && cookie != si->cookie && si->state != TCP_SYN_RECV)) {
		count(COUNT_UNSEEN_END);
		bpf_map_delete_elem(&socks, key);
	} else if (state == si->state) {
		si->suspect = 0;
	} else if (si->suspect != state + 1) {
		si->suspect = state + 1;
	} else {
		count(COUNT_UNSEEN_STATE);
		si->state = state;
		si->suspect = 0;
	}
	return 0;
}

/* Run by user space (BPF_PROG_TEST_RUN, never attached) every few
 * seconds: the followed sockets, checked against the kernel's. */
SEC("raw_tp")
int sweep_socks(void *ctx)
{
	bpf_for_each_map_elem(&socks, sweep_sock, NULL, 0);
	return 0;
}

#endif
