/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/* Tally mode (tcpstate metrics): transitions counted and durations
 * observed in per-CPU maps that user space reads at each scrape, instead
 * of records through the ring; emit() picks one or the other. */
#ifndef TCPSTATE_TALLY_H
#define TCPSTATE_TALLY_H

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

/* A connection closed from a state where close() may send a RST right
 * after reporting CLOSE (tally mode): its end waits for that RST. */
struct closed_conn {
	struct conn_life life;
	__u64 end_ts;
	__u64 cgroup; /* of the socket */
	__u8 from;  /* the state it left for CLOSE */
	__u8 reset; /* RESET_* counted so far */
	__u8 error; /* errno it ended on */
	__u8 _pad[5];
};

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
static __always_inline __u32 closer_of(__u8 flags, __u8 reset, __u8 error)
{
	if (error == ETIMEDOUT)
		return CLOSED_TIMEOUT; /* the kernel's timers gave up (a keepalive's RST too) */
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
static __always_inline void observe_end(const struct conn_life *life, __u64 end_ts, __u8 reset, __u8 error,
					__u64 cgroup)
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
	observe(HIST_CONN + role * NR_CLOSED_BY + closer_of(life->flags, reset, error), end_ts - life->start_ts, cgroup);
}

/* Count a RST in resets[state][dir][reason], indexed flat and bounded
 * where the verifier sees it (6.1's loses the bound of a 3-D index). */
static __always_inline void count_reset(struct tallies *t, __u8 state, __u32 dir, __u8 reason)
{
	__u32 i = ((state & (NR_STATES - 1)) * NR_DIRECTIONS + dir) * NR_RESET_REASONS + reason;

	barrier_var(i);
	if (i < NR_STATES * NR_DIRECTIONS * NR_RESET_REASONS)
		ADD(((__u64 *)t->resets)[i], 1);
}

static __always_inline void count_resets(struct tallies *t, __u8 state, __u8 reset, __u8 reason)
{
	if (reason >= NR_RESET_REASONS)
		reason = RR_OTHER;
	if (reset & RESET_SENT)
		count_reset(t, state, 0, reason);
	if (reset & RESET_RECEIVED)
		count_reset(t, state, 1, RR_UNKNOWN); /* the peer's reason is not on the wire */
}

/* A RST sent for a segment that found no socket (resets.h). */
static __always_inline void tally_nosock(__u8 reason)
{
	__u32 zero = 0;
	struct tallies *t = bpf_map_lookup_elem(&tally_counts, &zero);

	if (t)
		count_resets(t, TCP_CLOSE, RESET_SENT, reason);
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
static __always_inline void tally(__u8 from, __u8 to, __u64 ts, __u64 prev_ts, __u8 reset, __u8 reason,
				  __u8 error, __u32 retrans, const struct conn_life *life, __u64 cookie, __u64 cgroup)
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
			__u32 why = reset & RESET_RECEIVED		      ? FAIL_REFUSED
				    : error == EHOSTUNREACH || error == ENETUNREACH ? FAIL_UNREACHABLE
				    : retrans || error == ETIMEDOUT		      ? FAIL_TIMEOUT
										      : FAIL_OTHER;

			ADD(t->connect_failures[why], 1);
		}
		count_resets(t, from, reset, reason);
	}
	if (!life || (to != TCP_CLOSE && to != TCP_TIME_WAIT))
		return;
	if (late_resets && cookie && to == TCP_CLOSE && !(reset & RESET_SENT) && late_reset_possible(from)) {
		struct closed_conn c = {
			.life = *life, .end_ts = ts, .cgroup = cgroup, .from = from, .reset = reset, .error = error,
		};

		if (!bpf_map_update_elem(&closed, &cookie, &c, BPF_NOEXIST)) {
			if (!__sync_fetch_and_add(&closed_live, 1))
				poll_note(); /* the polls may be asleep */
			return;
		}
		count(COUNT_CLOSED_FULL);
	}
	observe_end(life, ts, reset, error, cgroup);
}

/* Observe the end of a closed connection, once: the one that deletes its
 * entry does it. */
static __always_inline void closed_end(__u64 *cookie, struct closed_conn *c)
{
	struct closed_conn copy = *c;

	if (bpf_map_delete_elem(&closed, cookie))
		return;
	__sync_fetch_and_sub(&closed_live, 1);
	observe_end(&copy.life, copy.end_ts, copy.reset, copy.error, copy.cgroup);
}

/* The RST sent after CLOSE by close(): count it, and end the connection
 * as reset. */
static __always_inline void tally_late_reset(__u64 cookie, __u8 how, __u8 reason)
{
	struct closed_conn *c = bpf_map_lookup_elem(&closed, &cookie);
	__u32 zero = 0;
	struct tallies *t;

	if (!c)
		return;
	t = bpf_map_lookup_elem(&tally_counts, &zero);
	if (t)
		count_resets(t, c->from & (NR_STATES - 1), how & ~c->reset, reason);
	c->reset |= how;
	closed_end(&cookie, c);
}

static long sweep_one(struct bpf_map *map, __u64 *cookie, struct closed_conn *c, __u64 *now)
{
	if (c->end_ts + LATE_RESET_WAIT_NS <= *now)
		closed_end(cookie, c);
	return 0;
}

/* A transition that passed the filters: to user space, or tallied. */
static __always_inline void emit(struct event *e, const struct conn_life *life)
{
	if (tally_mode)
		tally(e->oldstate, e->newstate, e->ts_ns, e->prev_ts_ns, e->reset, e->reset_reason, e->error, e->retrans,
		      life, e->cookie, e->cgroup_id);
	else
		send(e);
}

#endif
