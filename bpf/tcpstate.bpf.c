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
/* Free ring space a tentative TIME_WAIT end needs: itself, and room for
 * its re-arm even if other CPUs write a few events in between. */
#define TENTATIVE_ROOM (16 * (sizeof(struct event) + 8))

char LICENSE[] SEC("license") = "GPL";

/* Not used by the programs: keeps enum ev_flag in the BTF, so that
 * bpf2go generates its values for the Go decoder. */
const volatile enum ev_flag ev_flag_btf = 0;
const volatile enum tally_layout tally_layout_btf = 0;
const volatile enum connect_failure connect_failure_btf = 0;
const volatile enum role role_btf = 0;
const volatile enum closed_by closed_by_btf = 0;

/* Filters, set by the loader before the program is loaded. */
const volatile __u16 filter_family = 0;     /* 0: any */
const volatile __u32 filter_states = 0;     /* bit per state; 0: any */
const volatile __u32 filter_netns = 0;      /* inode; 0: any */
const volatile __u64 filter_netns_cookie = 0; /* cookie; 0: any */
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
/* Report only what the kernel reports: no TIME_WAIT tracking. */
const volatile bool raw_mode = false;
/* Address of tw_timer_handler, from /proc/kallsyms: marks timewait timers. */
const volatile __u64 tw_timer_fn = 0;
/* Tally mode: count and observe in maps tally_counts and hists, send
 * nothing. */
const volatile bool tally_mode = false;
/* Tally mode: observe durations per socket cgroup too (map cgroup_hists),
 * for histograms by pod. */
const volatile bool tally_cgroups = false;
/* The reset hooks and the poll run (tp_btf flavour): a connection's end
 * may wait for a late RST in map closed. */
const volatile bool late_resets = false;
/* Histogram bucket bounds in ns, set by the loader: native_bounds[0] is
 * the zero bucket's, native_bounds[i] the upper bound of native bucket
 * i - 1; classic_bounds the classic buckets' upper bounds. Ascending, and
 * padded to a power of two with BOUND_PAD, above any duration. */
#define NATIVE_BOUNDS 512
#define CLASSIC_BOUNDS 32
#define BOUND_PAD (1ULL << 62) /* ns: 146 years */
const volatile __u64 native_bounds[NATIVE_BOUNDS] = {};
const volatile __u64 classic_bounds[CLASSIC_BOUNDS] = {};
/* How long a connection that may still send the RST of an abortive
 * close() waits for it before its end is observed (tally mode). */
#define LATE_RESET_WAIT_NS (10 * 1000 * 1000ULL)

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

/* What we remember per socket between transitions. */
struct sock_info {
	__u64 last_ts;
	__u64 cookie; /* to tell the socket from a later one at its address */
	__u32 pid;
	__u8 reset;   /* RESET_* */
	__u8 state;   /* the last new state shown */
	__u8 suspect; /* 1 + the other state the last sweep found it in */
	__u8 _pad;
	char comm[TASK_COMM_LEN];
	struct conn_life life;
};

/* A timewait socket we follow, by the cookie it shares with the full
 * socket it replaced. Created when its timer starts; the full socket's
 * CLOSE, right after, fills in the template for its own events. */
struct tw_info {
	struct event tmpl; /* the full socket's last event */
	__u64 twaddr;      /* struct inet_timewait_sock * */
	__u64 enter_ts;    /* when its current (sub)state began */
	struct conn_life life; /* of the full socket */
	__u8 substate;     /* TCP_TIME_WAIT, or TCP_FIN_WAIT2 for an orphan */
	__u8 cgroup_ok;    /* passes the --cgroup filter */
	__u8 paired;       /* tmpl is filled in */
	__u8 _pad[5];
};

/* A timewait timer cancelled on this CPU: if the next timewait timer
 * started on this CPU has the same cookie, the two were one mod_timer()
 * (a reschedule), not an end. Both happen back to back under the timer
 * base lock with interrupts off, so nothing runs between them on this CPU:
 * no other program can overwrite this slot in between. */
struct rearm_note {
	__u64 cookie;
	__u64 ts; /* of the cancel */
	struct tw_info info;
};

/* A connection closed from a state where close() may send a RST right
 * after reporting CLOSE (tally mode): its end waits for that RST. */
struct closed_conn {
	struct conn_life life;
	__u64 end_ts;
	__u64 cgroup; /* of the socket */
	__u8 from;  /* the state it left for CLOSE */
	__u8 reset; /* RESET_* counted so far */
	__u8 _pad[6];
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

/* enum counter, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NR_COUNTERS);
	__type(key, enum counter);
	__type(value, __u64);
} counters SEC(".maps");

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

/* Events held back until the socket's 4-tuple is final: SYN_SENT before
 * the local port is bound, SYN_RECV before the child has its peer. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 16);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct event);
} pending SEC(".maps");

/* Socket a task is connecting, to flush its SYN_SENT at connect() exit.
 * LRU: a lost entry only delays the flush to the socket's next event. */
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
	__uint(max_entries, 1 << 18);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct owner);
} seeds SEC(".maps");

/* Timewait sockets being followed, by cookie, until their timer ends. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 18);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct tw_info);
} tws SEC(".maps");

/* Orphaned FIN_WAIT2 timewait sockets (cookie -> struct
 * inet_timewait_sock *): the peer's FIN turns them into TIME_WAIT without
 * a timer event when the new expiry falls into the same timer wheel
 * bucket, so user space polls these (poll_orphans). A poll visits every
 * bucket (about 15 ns each), hence the modest size; orphans normally live
 * for a round trip. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 16);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, __u64);
} orphans SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rearm_note);
} rearm_notes SEC(".maps");

/* Tally mode: the counters and histograms, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tallies);
} tally_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NR_HISTS);
	__type(key, __u32);
	__type(value, struct hist);
} hists SEC(".maps");

/* Tally mode with tally_cgroups: the histograms per socket cgroup (v2 id)
 * and series. Shared by the CPUs (additions are atomic); user space
 * removes the entries of cgroups that are gone. */
struct cgroup_hist_key {
	__u64 cgroup;
	__u32 series;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 12);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct cgroup_hist_key);
	__type(value, struct hist);
} cgroup_hists SEC(".maps");

/* Zeroes, to create entries of cgroup_hists from (too big for the stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hist);
} hist_zero SEC(".maps");

/* Tally mode: connections waiting for a late RST, by cookie. Entries live
 * for microseconds (the RST follows at once) or LATE_RESET_WAIT_NS. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 14);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct closed_conn);
} closed SEC(".maps");

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

static __always_inline void count(enum counter what)
{
	__u64 *n = bpf_map_lookup_elem(&counters, &what);

	if (n)
		*n += 1;
}

/* Entries in orphans: a poll with none to look at costs nothing. */
__u64 orphans_live = 0;

/* Wake user space's poll of the orphans, which waits up to a second
 * while there are none. A full ring only delays the poll. */
static __always_inline void poll_note(void)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e)
		return;
	__builtin_memset(e, 0, sizeof(*e));
	e->flags = EV_POLL_NOTE;
	bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
}

static __always_inline void orphan_add(__u64 *cookie, __u64 *twaddr)
{
	long err = bpf_map_update_elem(&orphans, cookie, twaddr, BPF_NOEXIST);

	if (!err) {
		if (!__sync_fetch_and_add(&orphans_live, 1))
			poll_note();
	} else if (err != -17 /* EEXIST */) {
		count(COUNT_ORPHANS_FULL);
	}
}

static __always_inline void orphan_del(__u64 *cookie)
{
	if (!bpf_map_delete_elem(&orphans, cookie))
		__sync_fetch_and_sub(&orphans_live, 1);
}

/* Tally mode. Additions are atomic: a program interrupted on its CPU by
 * another (a packet in softirq during a connect()) must not lose one. */
#define ADD(var, n) __sync_fetch_and_add(&(var), n)

/* The index of the first of the ascending bounds (2 * half of them) that
 * v, below BOUND_PAD, does not exceed. A binary search without branches:
 * (bound - v) >> 63 is 1 when v exceeds it. One path for the verifier. */
static __always_inline __u32 bucket_of(const volatile __u64 *bounds, __u32 half, __u64 v)
{
	__u32 lo = 0;

	for (__u32 step = half; step; step >>= 1) {
		__u32 idx = lo + step - 1;

		/* Keep the mask: clang knows idx is in range and would drop
		 * it, and older verifiers (6.1) cannot tell from lo's bits. */
		barrier_var(idx);
		idx &= 2 * half - 1;
		lo += step & -(__u32)((bounds[idx] - v) >> 63);
	}
	return lo;
}

static __always_inline void add_to(struct hist *h, __u64 ns)
{
	__u32 i;

	if (ns >= BOUND_PAD)
		ns = BOUND_PAD - 1;
	ADD(h->count, 1);
	ADD(h->sum_ns, ns);
	i = bucket_of(native_bounds, NATIVE_BOUNDS / 2, ns);
	if (i == 0) {
		ADD(h->zero, 1);
	} else {
		i = i - 1;
		if (i > NATIVE_BUCKETS - 1)
			i = NATIVE_BUCKETS - 1; /* longer than 194 days */
		barrier_var(i); /* keep the bound the verifier needs to see */
		if (i < NATIVE_BUCKETS)
			ADD(h->native[i], 1);
	}
	i = bucket_of(classic_bounds, CLASSIC_BOUNDS / 2, ns);
	barrier_var(i);
	if (i < CLASSIC_BUCKETS)
		ADD(h->classic[i], 1);
}

/* The histogram of a cgroup's series, created at its first observation. */
static __always_inline struct hist *cgroup_hist(__u64 cgroup, __u32 series)
{
	struct cgroup_hist_key key = { .cgroup = cgroup, .series = series };
	struct hist *h = bpf_map_lookup_elem(&cgroup_hists, &key);
	__u32 zero = 0;
	void *zeros;

	if (h)
		return h;
	zeros = bpf_map_lookup_elem(&hist_zero, &zero);
	if (!zeros)
		return NULL;
	if (bpf_map_update_elem(&cgroup_hists, &key, zeros, BPF_NOEXIST) == -7 /* E2BIG */) {
		count(COUNT_CGROUP_HISTS_FULL);
		return NULL;
	}
	return bpf_map_lookup_elem(&cgroup_hists, &key);
}

/* Observe a duration of a socket of cgroup in a series. A global
 * function: the verifier checks it once, not at each of its callers. */
__noinline int observe(__u32 series, __u64 ns, __u64 cgroup)
{
	struct hist *h = bpf_map_lookup_elem(&hists, &series);

	if (!h)
		return 0;
	add_to(h, ns);
	if (tally_cgroups) {
		h = cgroup_hist(cgroup, series);
		if (h)
			add_to(h, ns);
	}
	return 0;
}

/* Who closed, as `tcpstate life` says it. */
static __always_inline __u32 closer_of(__u8 flags, __u8 reset)
{
	if (reset)
		return CLOSED_RESET;
	if (flags & LIFE_SIMULTANEOUS)
		return CLOSED_SIMULTANEOUS;
	if (flags & LIFE_FIN_REMOTE)
		return CLOSED_REMOTE;
	return CLOSED_LOCAL; /* our FIN, or no FIN: this host ended it */
}

/* A connection ended (CLOSE, or TIME_WAIT entered): its lifetime, if it
 * was established and began while we watched. */
static __always_inline void observe_end(const struct conn_life *life, __u64 end_ts, __u8 reset, __u64 cgroup)
{
	__u32 role;

	if (!(life->flags & LIFE_ESTABLISHED) || life->start_ts > end_ts)
		return;
	if (life->flags & LIFE_CLIENT)
		role = ROLE_CLIENT;
	else if (life->flags & LIFE_SERVER)
		role = ROLE_SERVER;
	else
		return;
	observe(HIST_CONN + role * NR_CLOSED_BY + closer_of(life->flags, reset), end_ts - life->start_ts, cgroup);
}

static __always_inline void count_resets(struct tallies *t, __u8 state, __u8 reset)
{
	if (reset & RESET_SENT)
		ADD(t->resets[state][0], 1);
	if (reset & RESET_RECEIVED)
		ADD(t->resets[state][1], 1);
}

/* Entries in closed: a sweep with none to look at costs nothing. */
__u64 closed_live = 0;

/* The states close() may leave with CLOSE and then send a RST: abortive
 * close (SO_LINGER 0, unread data) and tcp_disconnect(). */
static __always_inline bool late_reset_possible(__u8 from)
{
	return from == TCP_ESTABLISHED || from == TCP_CLOSE_WAIT || from == TCP_FIN_WAIT1 ||
	       from == TCP_FIN_WAIT2 || from == TCP_SYN_RECV;
}

/* Count one transition; life is the connection's when the transition
 * may end it (NULL otherwise); cookie is a full socket's (which may send
 * a RST after its CLOSE), 0 for a timewait socket's; cgroup the socket's. */
static __always_inline void tally(__u8 from, __u8 to, __u64 ts, __u64 prev_ts, __u8 reset, __u32 retrans,
				  const struct conn_life *life, __u64 cookie, __u64 cgroup)
{
	__u32 zero = 0;
	struct tallies *t = bpf_map_lookup_elem(&tally_counts, &zero);

	if (!t)
		return;
	from &= NR_STATES - 1;
	to &= NR_STATES - 1;
	ADD(t->transitions[from][to], 1);
	if (prev_ts && prev_ts <= ts && from != TCP_CLOSE)
		observe(HIST_STATE + from, ts - prev_ts, cgroup);
	if (to == TCP_CLOSE) {
		if (from == TCP_SYN_SENT) {
			__u32 reason = reset & RESET_RECEIVED ? FAIL_REFUSED : retrans ? FAIL_TIMEOUT : FAIL_OTHER;

			ADD(t->connect_failures[reason], 1);
		}
		count_resets(t, from, reset);
	}
	if (!life || (to != TCP_CLOSE && to != TCP_TIME_WAIT))
		return;
	if (late_resets && cookie && to == TCP_CLOSE && !(reset & RESET_SENT) && late_reset_possible(from)) {
		struct closed_conn c = { .life = *life, .end_ts = ts, .cgroup = cgroup, .from = from, .reset = reset };

		if (!bpf_map_update_elem(&closed, &cookie, &c, BPF_NOEXIST)) {
			__sync_fetch_and_add(&closed_live, 1);
			return;
		}
		count(COUNT_CLOSED_FULL);
	}
	observe_end(life, ts, reset, cgroup);
}

/* Observe the end of a closed connection, once: the one that deletes its
 * entry does it. */
static __always_inline void closed_end(__u64 *cookie, struct closed_conn *c)
{
	struct closed_conn copy = *c;

	if (bpf_map_delete_elem(&closed, cookie))
		return;
	__sync_fetch_and_sub(&closed_live, 1);
	observe_end(&copy.life, copy.end_ts, copy.reset, copy.cgroup);
}

/* The RST sent after CLOSE by close(): count it, and end the connection
 * as reset. */
static __always_inline void tally_late_reset(__u64 cookie, __u8 how)
{
	struct closed_conn *c = bpf_map_lookup_elem(&closed, &cookie);
	__u32 zero = 0;
	struct tallies *t;

	if (!c)
		return;
	t = bpf_map_lookup_elem(&tally_counts, &zero);
	if (t)
		count_resets(t, c->from & (NR_STATES - 1), how & ~c->reset);
	c->reset |= how;
	closed_end(&cookie, c);
}

static long sweep_one(struct bpf_map *map, __u64 *cookie, struct closed_conn *c, __u64 *now)
{
	if (c->end_ts + LATE_RESET_WAIT_NS <= *now)
		closed_end(cookie, c);
	return 0;
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
	/* The cookie when the kernel has one: an inode number is reused by
	 * a new namespace once the old one is gone. */
	if (filter_netns_cookie && e->netns_cookie != filter_netns_cookie)
		return false;
	if (!filter_netns_cookie && filter_netns && e->netns != filter_netns)
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
		count(COUNT_LOST);
}

/* A transition that passed the filters: to user space, or tallied. */
static __always_inline void emit(struct event *e, const struct conn_life *life)
{
	if (tally_mode)
		tally(e->oldstate, e->newstate, e->ts_ns, e->prev_ts_ns, e->reset, e->retrans, life, e->cookie, e->cgroup_id);
	else
		send(e);
}

/* Whether the filters look at the 4-tuple or family, which are final only
 * after SYN_SENT (local port) and SYN_RECV (peer) are reported. */
static __always_inline bool tuple_filtered(void)
{
	return filter_family || filter_lport || filter_rport || filter_laddr || filter_raddr;
}

/* Whether events need the tuple and counters read from the socket: always
 * for user space; in tally mode only for the filters. */
static __always_inline bool need_tuple(void)
{
	return !tally_mode || tuple_filtered() || filter_netns || filter_netns_cookie;
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

/* Send the held-back event of sk, if any, with its tuple read now. The
 * winner of the delete sends it, so it goes out once even when connect()
 * returns on one CPU while the next transition runs on another. */
static __always_inline void flush_pending(const struct sock *sk, __u64 key, bool btf)
{
	struct event *p = bpf_map_lookup_elem(&pending, &key);
	struct event e;

	if (!p)
		return;
	__builtin_memcpy(&e, p, sizeof(e));
	if (bpf_map_delete_elem(&pending, &key))
		return;
	fill_tuple(&e, sk, btf);
	fill_tcp(&e, sk, btf);
	/* Also the cookie: before 6.x a server child takes its request
	 * socket's cookie just after LISTEN -> SYN_RECV. */
	e.cookie = sock_cookie(sk, btf);
	if (wanted(&e))
		emit(&e, NULL);
}

static __always_inline bool state_ok(__u8 oldstate, __u8 newstate)
{
	return !filter_states || (filter_states & ((1U << oldstate) | (1U << newstate)));
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

/* The timewait socket tcp_time_wait() made for the closing sk just now,
 * found by the cookie they share. Its timer started just before this
 * CLOSE; the entry is filled in with e, the full socket's last event. */
static __always_inline bool pair_timewait(bool had_cookie, struct event *e, const struct conn_life *life, bool cgroup_ok,
					  __u8 *substate)
{
	struct tw_info *info;

	if (!had_cookie) {
		/* A socket we never saw before its CLOSE had no cookie when
		 * a timewait socket would have copied it. */
		count(COUNT_TW_UNKNOWN);
		return false;
	}
	info = bpf_map_lookup_elem(&tws, &e->cookie);
	if (!info || info->paired)
		return false;
	*substate = info->substate;
	if (info->substate == TCP_TIME_WAIT) {
		/* The connection lives on in TIME_WAIT, not CLOSE. */
		e->newstate = TCP_TIME_WAIT;
		e->flags = EV_SYNTH;
	}
	__builtin_memcpy(&info->tmpl, e, sizeof(*e));
	info->tmpl.newstate = TCP_CLOSE;
	info->life = *life;
	info->cgroup_ok = cgroup_ok;
	/* An orphan stays in FIN_WAIT2: its age counts from there. */
	if (info->substate != TCP_TIME_WAIT) {
		info->enter_ts = e->prev_ts_ns;
		orphan_add(&e->cookie, &info->twaddr);
	} else {
		info->enter_ts = e->ts_ns;
	}
	info->paired = 1;
	return true;
}

static __always_inline int on_set_state(const struct sock *sk, int oldstate, int newstate, bool btf)
{
	__u64 key = (__u64)sk;
	struct sock_info *si, fresh = {};
	struct conn_life life;
	long err;
	struct event e = {};
	__u8 substate = 0;
	bool cgroup_ok, had_cookie, tw = false;

	if (READ(btf, sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	e.ts_ns = bpf_ktime_get_ns();
	e.skaddr = key;
	e.oldstate = oldstate;
	e.newstate = newstate;
	/* A timewait socket copies the cookie the full socket had then. */
	e.cookie = READ(btf, sk, __sk_common.skc_cookie.counter);
	had_cookie = e.cookie != 0;
	if (!had_cookie)
		e.cookie = sock_cookie(sk, btf);

	/* Keep the per-socket order: what was held back goes first. Only
	 * SYN_SENT and SYN_RECV are held back, so only they need a look. */
	if ((oldstate == TCP_SYN_SENT || oldstate == TCP_SYN_RECV) && (!tally_mode || tuple_filtered()))
		flush_pending(sk, key, btf);

	if (oldstate == TCP_CLOSE || (oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV)) {
		/* A new life for this address: forget what was there. connect()
		 * and listen() run in the caller's context, so the task on CPU
		 * is the owner; a child of a listener has none until accept(). */
		if (newstate == TCP_SYN_SENT || newstate == TCP_LISTEN) {
			fresh.pid = bpf_get_current_pid_tgid() >> 32;
			bpf_get_current_comm(fresh.comm, sizeof(fresh.comm));
		}
		fresh.last_ts = e.ts_ns;
		life_step(&fresh.life, oldstate, newstate, e.ts_ns);
		fresh.cookie = e.cookie;
		fresh.state = newstate;
		/* An entry left at this address is of a socket whose CLOSE
		 * the tracepoint never showed. */
		err = bpf_map_update_elem(&socks, &key, &fresh, BPF_NOEXIST);
		if (err == -17 /* EEXIST */) {
			count(COUNT_UNSEEN_END);
			err = bpf_map_update_elem(&socks, &key, &fresh, BPF_ANY);
		}
		if (err)
			count(COUNT_SOCKS_FULL);
		si = &fresh;
	} else {
		si = bpf_map_lookup_elem(&socks, &key);
		if (si) {
			e.prev_ts_ns = si->last_ts;
			si->last_ts = e.ts_ns;
			si->state = newstate;
			si->suspect = 0;
		} else {
			fresh.cookie = e.cookie;
			fresh.state = newstate;
			si = sock_info_of(sk, key, e.ts_ns, btf, &fresh);
		}
	}
	e.pid = si->pid;
	e.reset = si->reset;
	__builtin_memcpy(e.comm, si->comm, sizeof(e.comm));
	if (si != &fresh)
		life_step(&si->life, oldstate, newstate, e.ts_ns);
	life = si->life;
	if (newstate == TCP_CLOSE)
		bpf_map_delete_elem(&socks, &key);

	cgroup_ok = !filter_cgroup || in_cgroup(sk);
	if (!tally_mode || tally_cgroups)
		e.cgroup_id = sock_cgroup_id(sk, btf);

	if (newstate == TCP_SYN_SENT || (oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV)) {
		if (!cgroup_ok || !state_ok(e.oldstate, e.newstate))
			return 0;
		if (tally_mode && !tuple_filtered()) {
			/* Nothing waits for the final tuple. */
			if (need_tuple())
				fill_tuple(&e, sk, btf);
			if (wanted(&e))
				emit(&e, NULL);
			return 0;
		}
		/* The local port (SYN_SENT) or the peer (SYN_RECV) is set just
		 * after this tracepoint; send at connect() exit or the next
		 * transition, whichever comes first. If it cannot wait, send
		 * it now with what is known. */
		if (!bpf_map_update_elem(&pending, &key, &e, BPF_ANY)) {
			if (newstate == TCP_SYN_SENT) {
				__u64 id = bpf_get_current_pid_tgid();

				bpf_map_update_elem(&connecting, &id, &key, BPF_ANY);
			}
			return 0;
		}
		count(COUNT_HELD_FULL);
	}

	if (need_tuple()) {
		fill_tuple(&e, sk, btf);
		fill_tcp(&e, sk, btf);
	} else if (oldstate == TCP_SYN_SENT && newstate == TCP_CLOSE) {
		/* Timeout or not: the reason of a failed connect. */
		const struct tcp_sock *tp = tcp_sk_of(sk, btf);

		if (tp)
			e.retrans = READ(btf, tp, total_retrans);
	}
	if (!raw_mode && tw_timer_fn && newstate == TCP_CLOSE &&
	    (oldstate == TCP_FIN_WAIT1 || oldstate == TCP_FIN_WAIT2 || oldstate == TCP_CLOSING)) {
		tw = pair_timewait(had_cookie, &e, &life, cgroup_ok, &substate);
		if (tw && substate != TCP_TIME_WAIT) {
			/* An orphan: still FIN_WAIT2 as far as anyone can tell.
			 * Tell user space that the connection lives on. */
			e.flags = EV_ORPHAN_NOTE;
			if (!tally_mode && cgroup_ok && wanted(&e))
				send(&e);
			return 0;
		}
	}
	if (cgroup_ok && state_ok(e.oldstate, e.newstate) && wanted(&e))
		emit(&e, &life);
	return 0;
}

/* Send an event of a followed timewait socket: oldstate -> newstate now. */
static __always_inline void send_tw(const struct tw_info *info, __u8 newstate, __u16 flags, __u64 now)
{
	struct event *e;

	if (!info->paired || !info->cgroup_ok || !state_ok(info->substate, newstate) || !wanted(&info->tmpl))
		return;
	if (tally_mode) {
		/* An orphan's connection ends now; a TIME_WAIT's ended when
		 * it entered TIME_WAIT. */
		tally(info->substate, newstate, now, info->enter_ts, info->tmpl.reset, 0,
		      info->substate == TCP_FIN_WAIT2 ? &info->life : NULL, 0, info->tmpl.cgroup_id);
		return;
	}
	/* A tentative end goes out only with room behind it for the re-arm
	 * that may retract it: without that, it could stand wrongly. */
	if ((flags & EV_TENTATIVE) && bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) + TENTATIVE_ROOM >
					      bpf_ringbuf_query(&events, BPF_RB_RING_SIZE)) {
		count(COUNT_LOST);
		return;
	}
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(COUNT_LOST);
		if (flags & EV_REARM)
			count(COUNT_REARM_LOST);
		return;
	}
	__builtin_memcpy(e, &info->tmpl, sizeof(*e));
	e->ts_ns = now;
	e->prev_ts_ns = info->enter_ts;
	e->oldstate = info->substate;
	e->newstate = newstate;
	e->flags = EV_SYNTH | flags;
	bpf_ringbuf_submit(e, wakeup_flags());
}

/* An orphan that got the peer's FIN is in TIME_WAIT now: say so. */
static __always_inline void check_substate(struct tw_info *info, __u64 cookie, __u64 now)
{
	const struct inet_timewait_sock *t = (const void *)info->twaddr;

	if (info->substate != TCP_FIN_WAIT2 || BPF_CORE_READ(t, tw_substate) != TCP_TIME_WAIT)
		return;
	send_tw(info, TCP_TIME_WAIT, 0, now);
	info->substate = TCP_TIME_WAIT;
	info->enter_ts = now;
	orphan_del(&cookie);
}

static __always_inline bool is_tw_timer(const struct timer_list *timer)
{
	return tw_timer_fn && (__u64)timer->function == tw_timer_fn; /* tp_btf: a plain load */
}

static __always_inline const struct inet_timewait_sock *timer_tw(const struct timer_list *timer)
{
	return container_of(timer, struct inet_timewait_sock, tw_timer);
}

static __always_inline __u64 tw_cookie(const struct inet_timewait_sock *tw)
{
	return BPF_CORE_READ(tw, __tw_common.skc_cookie.counter);
}

/* The timewait timer cancelled last on this CPU was not re-armed: in
 * tally mode its end counts now (user space was sent it at the cancel).
 * Only programs that run with interrupts off on this CPU touch the note:
 * the timer hooks, and flush_note through an IPI. */
static __always_inline void end_noted(struct rearm_note *note)
{
	if (tally_mode && note->cookie)
		send_tw(&note->info, TCP_CLOSE, 0, note->ts);
	note->cookie = 0;
}

SEC("tp_btf/timer_start")
int BPF_PROG(tw_timer_start, struct timer_list *timer)
{
	const struct inet_timewait_sock *tw;
	struct rearm_note *note;
	struct tw_info *info, fresh = {};
	__u32 zero = 0;
	__u64 cookie, now;

	if (!is_tw_timer(timer))
		return 0;
	tw = timer_tw(timer);
	cookie = tw_cookie(tw);
	if (!cookie)
		return 0; /* its full socket was never seen: counted at its CLOSE */
	now = bpf_ktime_get_ns();
	note = bpf_map_lookup_elem(&rearm_notes, &zero);
	if (note && note->cookie == cookie) {
		/* mod_timer() of a pending timer: cancel + start. Not an end. */
		note->cookie = 0;
		if (!tally_mode)
			send_tw(&note->info, TCP_CLOSE, EV_REARM, now);
		check_substate(&note->info, cookie, now);
		if (bpf_map_update_elem(&tws, &cookie, &note->info, BPF_ANY)) {
			count(COUNT_TW_FULL);
			return 0;
		}
		if (note->info.substate == TCP_FIN_WAIT2 && note->info.paired)
			orphan_add(&cookie, &note->info.twaddr);
		return 0;
	}
	if (note)
		end_noted(note);
	info = bpf_map_lookup_elem(&tws, &cookie);
	if (info) {
		check_substate(info, cookie, now);
		return 0;
	}
	/* A new timewait socket: its full socket reports CLOSE next. */
	fresh.twaddr = (__u64)tw;
	fresh.enter_ts = now;
	fresh.substate = BPF_CORE_READ(tw, tw_substate);
	if (bpf_map_update_elem(&tws, &cookie, &fresh, BPF_NOEXIST))
		count(COUNT_TW_FULL);
	return 0;
}

SEC("tp_btf/timer_cancel")
int BPF_PROG(tw_timer_cancel, struct timer_list *timer)
{
	struct rearm_note *note;
	struct tw_info *info;
	__u32 zero = 0;
	__u64 cookie, now;

	if (!is_tw_timer(timer))
		return 0;
	cookie = tw_cookie(timer_tw(timer));
	if (!cookie)
		return 0;
	info = bpf_map_lookup_elem(&tws, &cookie);
	note = bpf_map_lookup_elem(&rearm_notes, &zero);
	if (!info || !note)
		return 0;
	/* Reuse of the 4-tuple, a reset, or a reschedule: user space holds
	 * this end back until it knows no re-arm follows; tally mode keeps
	 * it in the note until then. */
	now = bpf_ktime_get_ns();
	check_substate(info, cookie, now);
	end_noted(note);
	if (!tally_mode)
		send_tw(info, TCP_CLOSE, EV_TENTATIVE, now);
	__builtin_memcpy(&note->info, info, sizeof(*info));
	note->ts = now;
	note->cookie = cookie;
	bpf_map_delete_elem(&tws, &cookie);
	orphan_del(&cookie);
	return 0;
}

SEC("tp_btf/timer_expire_entry")
int BPF_PROG(tw_timer_expire, struct timer_list *timer)
{
	struct tw_info *info;
	__u64 cookie, now;

	if (!is_tw_timer(timer))
		return 0;
	cookie = tw_cookie(timer_tw(timer));
	if (!cookie)
		return 0;
	info = bpf_map_lookup_elem(&tws, &cookie);
	if (!info)
		return 0;
	/* 60 s of TIME_WAIT, or tcp_fin_timeout for an orphan, are over. */
	now = bpf_ktime_get_ns();
	check_substate(info, cookie, now);
	send_tw(info, TCP_CLOSE, 0, now);
	bpf_map_delete_elem(&tws, &cookie);
	orphan_del(&cookie);
	return 0;
}

static long poll_one(struct bpf_map *map, __u64 *cookie, __u64 *twaddr, void *ctx)
{
	struct tw_info *info = bpf_map_lookup_elem(&tws, cookie);

	if (info)
		check_substate(info, *cookie, bpf_ktime_get_ns());
	else
		orphan_del(cookie);
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

	if (!refs || (si->cookie && cookie != si->cookie)) {
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

/* Run by user space (BPF_PROG_TEST_RUN, never attached) every poll
 * period while it returns 1: orphans that got their FIN; in tally mode
 * also the ends of connections that waited long enough for a late RST. */
SEC("raw_tp")
int poll_orphans(void *ctx)
{
	__u64 now;

	if (orphans_live)
		bpf_for_each_map_elem(&orphans, poll_one, NULL, 0);
	if (tally_mode && closed_live) {
		now = bpf_ktime_get_ns();
		bpf_for_each_map_elem(&closed, sweep_one, &now, 0);
	}
	/* Whether the next poll has anything to look at. */
	return orphans_live || (tally_mode && closed_live);
}

/* Run by user space on each CPU through an IPI (BPF_F_TEST_RUN_ON_CPU,
 * from another CPU: interrupts are off, as in the timer hooks) before a
 * scrape in tally mode: a timewait end noted there is final by now. */
SEC("raw_tp")
int flush_note(void *ctx)
{
	__u32 zero = 0;
	struct rearm_note *note = bpf_map_lookup_elem(&rearm_notes, &zero);

	if (note)
		end_noted(note);
	return 0;
}

/* The kernel does not run a program that is already running on the same
 * CPU: a transition in softirq (a packet arriving on loopback) that
 * interrupts set_state in process context would be lost. A second copy of
 * the program, attached after the first, does the work only then: it sees
 * set_state busy on its CPU. Otherwise it returns at once. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} set_state_busy SEC(".maps");

static __always_inline int set_state_outer(const struct sock *sk, int oldstate, int newstate, bool btf)
{
	__u32 zero = 0, *busy = bpf_map_lookup_elem(&set_state_busy, &zero);

	if (!busy)
		return 0;
	*busy = 1;
	on_set_state(sk, oldstate, newstate, btf);
	*busy = 0;
	return 0;
}

static __always_inline int set_state_inner(const struct sock *sk, int oldstate, int newstate, bool btf)
{
	__u32 zero = 0, *busy = bpf_map_lookup_elem(&set_state_busy, &zero);

	if (!busy || !*busy)
		return 0;
	/* The kernel counted a miss for the outer program: not lost. */
	count(COUNT_NESTED);
	return on_set_state(sk, oldstate, newstate, btf);
}

/* Two ways in: tp_btf where the kernel has BTF (cheaper, typed), the
 * classic tracepoint otherwise (e.g. with --kernel-btf). */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(set_state_btf, const struct sock *sk, int oldstate, int newstate)
{
	return set_state_outer(sk, oldstate, newstate, true);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(set_state_nested_btf, const struct sock *sk, int oldstate, int newstate)
{
	return set_state_inner(sk, oldstate, newstate, true);
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
	return set_state_outer(ctx->skaddr, ctx->oldstate, ctx->newstate, false);
}

SEC("tracepoint/sock/inet_sock_set_state")
int set_state_nested_tp(struct set_state_ctx *ctx)
{
	return set_state_inner(ctx->skaddr, ctx->oldstate, ctx->newstate, false);
}

/* A SYN_SENT socket whose connect() blocks with no answer: its first SYN
 * retransmission (1 s) shows the event rather than the final timeout. */
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(retransmit_btf, const struct sock *sk)
{
	flush_pending(sk, (__u64)sk, true);
	return 0;
}

SEC("tracepoint/tcp/tcp_retransmit_skb")
int retransmit_tp(struct retransmit_ctx *ctx)
{
	flush_pending(ctx->skaddr, (__u64)ctx->skaddr, false);
	return 0;
}

/* Remember a reset for the socket's later events; the kernel sends the
 * RST of close() with SO_LINGER 0 after reporting CLOSE, so then send a
 * note for `life` instead. */
static __always_inline void note_reset(const struct sock *sk, __u8 how)
{
	__u64 key = (__u64)sk;
	struct sock_info *si;
	struct event e = {};

	if (!sk)
		return;
	si = bpf_map_lookup_elem(&socks, &key);
	if (si) {
		si->reset |= how;
		return;
	}
	if (sk->__sk_common.skc_state != TCP_CLOSE)
		return; /* a timewait or request socket: nothing we report */
	if (tally_mode) {
		tally_late_reset(sk->__sk_common.skc_cookie.counter, how);
		return;
	}
	e.ts_ns = bpf_ktime_get_ns();
	e.skaddr = key;
	e.cookie = sk->__sk_common.skc_cookie.counter;
	e.oldstate = TCP_CLOSE;
	e.newstate = TCP_CLOSE;
	e.flags = EV_RESET_NOTE;
	e.reset = how;
	fill_tuple(&e, sk, true);
	send(&e);
}

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(send_reset, const struct sock *sk)
{
	note_reset(sk, RESET_SENT);
	return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(receive_reset, struct sock *sk)
{
	note_reset(sk, RESET_RECEIVED);
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
	flush_pending((const struct sock *)skaddr, skaddr, false);
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
