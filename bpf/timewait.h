/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/* TIME_WAIT, which the tracepoint never shows: the full socket reports
 * CLOSE while a timewait socket (struct inet_timewait_sock) lives on for
 * 60 s, or as an orphaned FIN_WAIT2 for tcp_fin_timeout.
 *
 * No hook on the host's timers. At the full socket's CLOSE the timewait
 * socket that tcp_time_wait() hashed just before is found in its ehash
 * chain (same hash, same cookie); it is followed in map tws, by namespace
 * and 4-tuple. It ends in one of three ways:
 *   - a new socket takes its 4-tuple (connect() reusing the port, or a SYN
 *     to the server): seen when that socket's tuple is final (tw_reused);
 *   - its timer expires: the FIFO twq holds each in the order of the
 *     jiffy its timer wheel bucket expires (all TIME_WAITs last 60 s), and
 *     poll_timewait, run by user space every poll period, looks at those
 *     due and finds them gone;
 *   - anything else (a RST, its namespace removed): found gone early by
 *     sweep_timewait, run with the sweep of followed sockets every 10 s
 *     (counted: its end is shown when found).
 * Orphans (substate FIN_WAIT2) are looked at every poll, since the peer's
 * FIN turns them into TIME_WAIT without any event. */
#ifndef TCPSTATE_TIMEWAIT_H
#define TCPSTATE_TIMEWAIT_H

/* Follow TIME_WAIT: set by the loader unless --raw (report only what the
 * kernel reports), and only for tp_btf (whose cookies pair the sockets). */
const volatile bool follow_tw = false;

/* How far a hash chain is walked for the timewait socket: chains hold a
 * socket or two on average; a longer one is counted (COUNT_TW_UNFOUND). */
#define TW_CHAIN_MAX 16
/* How many due timewait sockets one poll looks at; user space runs the
 * poll again at once while more are due. */
#define TW_POLL_BATCH 8192

/* A timewait socket as a new socket on its 4-tuple would show it: the
 * namespace and tuple fields of its event, in place (no copy on the
 * stack, where an event and a tw_info do not both fit). */
struct tw_key {
	__u32 netns;
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u16 family;
} __attribute__((packed));

_Static_assert(__builtin_offsetof(struct event, family) - __builtin_offsetof(struct event, netns) ==
		       __builtin_offsetof(struct tw_key, family) && __builtin_offsetof(struct event, saddr) - __builtin_offsetof(struct event, netns) == __builtin_offsetof(struct tw_key, saddr),
	       "struct tw_key mirrors struct event");

static __always_inline struct tw_key *key_of(const struct event *e)
{
	return (struct tw_key *)&e->netns;
}

/* An entry of twq: look at key's timewait socket at jiffy due. */
struct tw_due {
	struct tw_key key;
	__u8 _pad[6];
	__u64 due;
};

/* A timewait socket we follow. */
struct tw_info {
	struct event tmpl;     /* the full socket's last event */
	__u64 twaddr;          /* struct inet_timewait_sock * */
	__u64 cookie;          /* shared with the full socket */
	__u64 enter_ts;        /* when its current (sub)state began */
	__u64 expires;         /* its timer's expiry (jiffies) as last read */
	struct tw_due q;       /* its twq entry: due, the jiffy that timer's
	                        * wheel bucket runs */
	struct conn_life life; /* of the full socket */
	__u64 ended;           /* counted up by the one that says its end */
	__u8 substate;         /* TCP_TIME_WAIT, or TCP_FIN_WAIT2 for an orphan */
	__u8 cgroup_ok;        /* passes the --cgroup filter (always: only those
	                        * are followed) */
	__u8 _pad[6];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 18);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tw_key);
	__type(value, struct tw_info);
} tws SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 1 << 18);
	__type(value, struct tw_due);
} twq SEC(".maps");

/* A zeroed tw_info, never written: new tws entries are made from it and
 * filled in place (a tw_info does not fit on the stack beside an event). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tw_info);
} tw_zero SEC(".maps");

/* Timewait sockets past their due jiffy but not gone yet (the timer
 * softirq runs late), or whose expiry could not be read: looked at every
 * poll until they are. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 12);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tw_key);
	__type(value, __u8);
} overdue SEC(".maps");

/* Orphaned FIN_WAIT2 timewait sockets: the peer's FIN turns them into
 * TIME_WAIT with no event, so each poll looks at every one: it takes each
 * from the queue and puts back those still orphans (a queue, not a set,
 * so that a poll costs what is in it, not the table's size). They
 * normally live for a round trip, hence the modest size; past it they
 * are seen when their timer runs. */
#define ORPHANS_MAX (1 << 14)
struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, ORPHANS_MAX);
	__type(value, struct tw_key);
} orphans SEC(".maps");

/* Entries in tws, overdue and orphans: a poll with none to look at costs
 * nothing. */
__u64 tws_live = 0;
__u64 overdue_live = 0;
__u64 orphans_live = 0;

static __always_inline bool set_add(void *set, __u64 *live, struct tw_key *key)
{
	__u8 one = 1;
	long err = bpf_map_update_elem(set, key, &one, BPF_NOEXIST);

	if (!err)
		__sync_fetch_and_add(live, 1);
	return !err || err == -17 /* EEXIST */;
}

static __always_inline void set_del(void *set, __u64 *live, struct tw_key *key)
{
	if (!bpf_map_delete_elem(set, key))
		__sync_fetch_and_sub(live, 1);
}

/* The jiffy at which the timer wheel runs a timer of expiry `expires`
 * armed at jiffy `now` (kernel/time/timer.c, calc_wheel_index): level n
 * (delta from LVL_START(n) = 63 << 3(n-1)) rounds up to 8^n jiffies; a
 * 60 s timer fires up to 4 s (at HZ 1000) after its expiry. */
static __always_inline __u64 wheel_due(__u64 expires, __u64 now)
{
	__u64 delta = expires - now;
	__u32 shift = 0;

	if ((__s64)delta <= 0)
		return now;
	for (int lvl = 1; lvl < 9; lvl++) {
		if (delta < (63ULL << (3 * (lvl - 1))))
			break;
		shift = 3 * lvl;
	}
	return ((expires >> shift) + 1) << shift;
}

static __always_inline __u64 tw_expires(const struct inet_timewait_sock *tw)
{
	if (!bpf_core_field_exists(tw->tw_timer.expires))
		return 0;
	return BPF_CORE_READ(tw, tw_timer.expires);
}

/* Whether the timewait socket is no more: unhashed, freed, or its memory
 * holding another socket. */
static __always_inline bool tw_gone(const struct tw_info *info)
{
	const struct inet_timewait_sock *tw = (const void *)info->twaddr;

	return BPF_CORE_READ(tw, __tw_common.skc_cookie.counter) != info->cookie ||
	       !BPF_CORE_READ(tw, __tw_common.skc_refcnt.refs.counter) ||
	       !BPF_CORE_READ(tw, __tw_common.skc_nulls_node.pprev) ||
	       BPF_CORE_READ(tw, __tw_common.skc_state) != TCP_TIME_WAIT;
}

/* The timewait socket that tcp_time_wait() hashed for the closing sk just
 * before its CLOSE: in the ehash chain of sk's hash, with sk's cookie.
 * NULL when there is none (tcp_time_wait found the TIME_WAIT table full);
 * *unsure when the chain was longer than we walk. */
static __always_inline const struct inet_timewait_sock *find_tw(const struct sock *sk, __u64 cookie, bool *unsure,
								    bool btf)
{
	const struct net *net = READ(btf, sk, __sk_common.skc_net.net);
	struct inet_hashinfo *h = NULL;
	struct hlist_nulls_node *node;
	__u32 hash = READ(btf, sk, __sk_common.skc_hash);
	__u64 bucket;

	/* Per-namespace tables since 6.1; the protocol's before. */
	if (bpf_core_field_exists(net->ipv4.tcp_death_row.hashinfo))
		h = READ(btf, net, ipv4.tcp_death_row.hashinfo);
	if (!h)
		h = BPF_CORE_READ(sk, __sk_common.skc_prot, h.hashinfo);
	if (!h)
		return NULL;
	/* h may come from a helper's read, the bucket's address is computed:
	 * read with a helper, as is every node of the chain. */
	bucket = (__u64)BPF_CORE_READ(h, ehash);
	if (!bucket)
		return NULL;
	bucket += (hash & BPF_CORE_READ(h, ehash_mask)) * bpf_core_type_size(struct inet_ehash_bucket);
	node = BPF_CORE_READ((struct inet_ehash_bucket *)bucket, chain.first);
	for (int i = 0; i < TW_CHAIN_MAX; i++) {
		const struct sock_common *skc;

		if ((__u64)node & 1) /* the nulls marker: the chain's end */
			return NULL;
		skc = container_of(node, struct sock_common, skc_nulls_node);
		if (BPF_CORE_READ(skc, skc_cookie.counter) == cookie && BPF_CORE_READ(skc, skc_state) == TCP_TIME_WAIT)
			return (const struct inet_timewait_sock *)skc;
		node = BPF_CORE_READ(node, next);
	}
	*unsure = true;
	return NULL;
}

/* Send an event of a followed timewait socket: substate -> newstate at ts
 * (or tally it). */
static __always_inline void send_tw(const struct tw_info *info, __u8 newstate, __u64 ts)
{
	struct event *e;

	if (!info->cgroup_ok || !state_ok(info->substate, newstate) || !wanted(&info->tmpl))
		return;
	/* Life mode sent the connection on entering TIME_WAIT. */
	if (life_mode && info->substate == TCP_TIME_WAIT)
		return;
	if (tally_mode) {
		/* An orphan's connection ends now; a TIME_WAIT's ended when
		 * it entered TIME_WAIT. */
		tally(info->substate, newstate, ts, info->enter_ts, info->tmpl.reset, info->tmpl.reset_reason, 0, 0,
		      info->substate == TCP_FIN_WAIT2 ? &info->life : NULL, 0, info->tmpl.cgroup_id);
		return;
	}
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(COUNT_LOST);
		return;
	}
	__builtin_memcpy(e, &info->tmpl, sizeof(*e));
	e->ts_ns = ts;
	e->prev_ts_ns = info->enter_ts;
	e->oldstate = info->substate;
	e->newstate = newstate;
	e->flags = EV_SYNTH;
	bpf_ringbuf_submit(e, wakeup_flags());
}

/* The timewait socket of key ended at ts: say so and forget it. The one
 * that marks it ended says it, once. */
static __always_inline void tw_end(struct tw_key *key, struct tw_info *info, __u64 ts)
{
	const struct inet_timewait_sock *tw = (const void *)info->twaddr;

	if (__sync_fetch_and_add(&info->ended, 1))
		return;
	/* An orphan that got the peer's FIN since it was last looked at
	 * (unwatched with the orphan queue full, or its TIME_WAIT ended at
	 * once by a reuse): its TIME_WAIT first, while its memory (typesafe
	 * by RCU) still holds it. */
	if (info->substate == TCP_FIN_WAIT2 && BPF_CORE_READ(tw, __tw_common.skc_cookie.counter) == info->cookie &&
	    BPF_CORE_READ(tw, tw_substate) == TCP_TIME_WAIT) {
		send_tw(info, TCP_TIME_WAIT, ts);
		info->substate = TCP_TIME_WAIT;
		info->enter_ts = ts;
	}
	send_tw(info, TCP_CLOSE, ts);
	if (!bpf_map_delete_elem(&tws, key))
		__sync_fetch_and_sub(&tws_live, 1);
}

/* Queue the timewait socket to be looked at when its timer runs, or,
 * where that cannot be (expiry unknown, queue full), at every poll. */
static __always_inline void tw_watch(struct tw_info *info, __u64 now_j)
{
	info->q.due = info->expires ? wheel_due(info->expires, now_j) : 0;
	if (info->q.due && !bpf_map_push_elem(&twq, &info->q, 0))
		return;
	if (!set_add(&overdue, &overdue_live, &info->q.key))
		count(COUNT_TW_FULL);
}

/* An orphan that got the peer's FIN is in TIME_WAIT now: say so, and
 * wait for its timer. Returns whether it did. */
static __always_inline bool check_substate(struct tw_key *key, struct tw_info *info, __u64 now, __u64 now_j)
{
	const struct inet_timewait_sock *tw = (const void *)info->twaddr;

	if (info->substate != TCP_FIN_WAIT2 || BPF_CORE_READ(tw, tw_substate) != TCP_TIME_WAIT)
		return false;
	send_tw(info, TCP_TIME_WAIT, now);
	info->substate = TCP_TIME_WAIT;
	info->enter_ts = now;
	info->expires = tw_expires(tw);
	tw_watch(info, now_j);
	return true;
}

/* Follow the timewait socket of the closing sk, whose last event is e.
 * Returns its substate (TCP_TIME_WAIT, or TCP_FIN_WAIT2 for an orphan),
 * or 0 when there is none to follow. */
static __always_inline __u8 tw_follow(const struct sock *sk, bool had_cookie, struct event *e,
				      const struct conn_life *life, bool cgroup_ok, bool btf)
{
	const struct inet_timewait_sock *tw;
	struct tw_info *info;
	struct tw_key *key;
	bool unsure = false;
	__u32 zero = 0;
	__u8 substate;
	void *zeros;

	if (!had_cookie) {
		/* A socket we never saw before its CLOSE had no cookie when
		 * a timewait socket would have copied it. */
		count(COUNT_TW_UNKNOWN);
		return 0;
	}
	tw = find_tw(sk, e->cookie, &unsure, btf);
	if (!tw) {
		if (unsure) {
			count(COUNT_TW_UNFOUND);
			return 0;
		}
		/* Gone already, or never made: tcp_time_wait() takes sk out
		 * of the ehash for its timewait socket just before this
		 * CLOSE, and only then (not when the TIME_WAIT table is
		 * full). A SYN reusing the tuple (or a RST) on another CPU
		 * may have ended it since. It was in TIME_WAIT if the peer's
		 * FIN had come (SOCK_DONE); an orphan's killed FIN_WAIT2 is
		 * the CLOSE shown. */
		if (READ(btf, sk, __sk_common.skc_nulls_node.pprev) ||
		    !(READ(btf, sk, __sk_common.skc_flags) & (1UL << SOCK_DONE)))
			return 0;
	}
	if (!need_tuple())
		fill_tuple(e, sk, btf);
	/* Only what the filters select is followed (and counted). */
	if (!cgroup_ok || !wanted(e))
		return 0;
	/* Without tw, followed as one that ended before its timer: its end
	 * shown by the socket that reuses the tuple, or by the next poll
	 * (tw_gone), and counted then (COUNT_TW_EARLY). */
	substate = tw ? BPF_CORE_READ(tw, tw_substate) : TCP_TIME_WAIT;
	/* An orphan's timewait socket may take the peer's FIN between its
	 * making and here (FIN_WAIT2 -> TIME_WAIT on another CPU): the
	 * connection received it, as a full socket's counters would say. */
	if (tw && substate == TCP_TIME_WAIT && e->rcv_nxt &&
	    BPF_CORE_READ(tw, __tw_common.skc_tw_rcv_nxt) - e->rcv_nxt == 1) {
		e->rcv_nxt++;
		e->rx_bytes++;
	}
	key = key_of(e);
	zeros = bpf_map_lookup_elem(&tw_zero, &zero);
	if (!zeros)
		return 0;
	if (bpf_map_update_elem(&tws, key, zeros, BPF_NOEXIST)) {
		/* Full, or an entry left for this tuple: a timewait socket
		 * whose end we missed. */
		count(COUNT_TW_FULL);
		return 0;
	}
	info = bpf_map_lookup_elem(&tws, key);
	if (!info)
		return 0;
	__builtin_memcpy(&info->tmpl, e, sizeof(*e));
	__builtin_memcpy(&info->q.key, key, sizeof(*key));
	info->tmpl.newstate = TCP_CLOSE;
	info->twaddr = (__u64)tw;
	info->cookie = e->cookie;
	info->expires = tw ? tw_expires(tw) : 0;
	info->life = *life;
	info->cgroup_ok = cgroup_ok;
	info->substate = substate;
	/* An orphan stays in FIN_WAIT2: its age counts from there. */
	info->enter_ts = substate == TCP_TIME_WAIT ? e->ts_ns : e->prev_ts_ns;
	if (!__sync_fetch_and_add(&tws_live, 1))
		poll_note();
	if (substate != TCP_TIME_WAIT && !bpf_map_push_elem(&orphans, key, 0)) {
		/* The polls may sleep until a TIME_WAIT is due: wake them. */
		if (!__sync_fetch_and_add(&orphans_live, 1))
			poll_note();
		return substate;
	}
	if (substate != TCP_TIME_WAIT)
		count(COUNT_ORPHANS_FULL); /* its FIN seen late, at its timer's due */
	tw_watch(info, bpf_jiffies64());
	return substate;
}

/* A new socket whose 4-tuple is final now (sk, its event e with the tuple
 * filled in): a timewait socket on the same tuple ended when the new one
 * took it over, at ts. */
static __always_inline void tw_reused(struct tw_key *key, __u64 ts)
{
	struct tw_info *info;

	if (!tws_live || !key->sport || !key->dport)
		return;
	info = bpf_map_lookup_elem(&tws, key);
	/* Still there: the new socket failed to take the tuple over. */
	if (info && tw_gone(info))
		tw_end(key, info, ts);
}

struct poll_state {
	__u64 now;
	__u64 now_j;
	__u32 more; /* more are due than one poll looks at */
};

/* End key's timewait socket if it is gone: by its timer, or before it was
 * due by something else (a RST, its namespace removed), which is counted
 * since the time shown is when it was found. Returns whether it was. */
static __always_inline bool tw_end_if_gone(struct tw_key *key, struct tw_info *info, struct poll_state *ps)
{
	if (!tw_gone(info))
		return false;
	if (!info->q.due || ps->now_j < info->q.due)
		count(COUNT_TW_EARLY);
	tw_end(key, info, ps->now);
	return true;
}

/* Look at key's timewait socket, due or overdue: ended, re-armed (a FIN
 * repeated in TIME_WAIT restarts its 60 s), or late. Returns whether it
 * still needs looking at every poll. */
static __always_inline bool tw_look(struct tw_key *key, struct tw_info *info, struct poll_state *ps)
{
	const struct inet_timewait_sock *tw = (const void *)info->twaddr;
	__u64 expires;

	if (tw_end_if_gone(key, info, ps))
		return false;
	if (check_substate(key, info, ps->now, ps->now_j))
		return false;
	expires = tw_expires(tw);
	if (expires && expires != info->expires) {
		info->expires = expires;
		info->q.due = wheel_due(expires, ps->now_j);
		return bpf_map_push_elem(&twq, &info->q, 0) != 0;
	}
	return true;
}

static long due_one(__u32 i, struct poll_state *ps)
{
	struct tw_info *info;
	struct tw_due d;

	if (bpf_map_peek_elem(&twq, &d) || d.due > ps->now_j)
		return 1;
	if (bpf_map_pop_elem(&twq, &d))
		return 1;
	info = bpf_map_lookup_elem(&tws, &d.key);
	/* Ended already (reused), or queued again with a later due. */
	if (!info || info->q.due != d.due)
		return 0;
	if (tw_look(&d.key, info, ps) && !set_add(&overdue, &overdue_live, &d.key))
		count(COUNT_TW_FULL);
	return 0;
}

static long overdue_one(struct bpf_map *map, struct tw_key *key, __u8 *v, struct poll_state *ps)
{
	struct tw_info *info = bpf_map_lookup_elem(&tws, key);

	if (!info || !tw_look(key, info, ps))
		set_del(&overdue, &overdue_live, key);
	return 0;
}

/* The next orphan in the queue: ended, in TIME_WAIT now, or put back to
 * be looked at again next poll. */
static long orphan_one(__u32 i, struct poll_state *ps)
{
	struct tw_info *info;
	struct tw_key key;

	if (bpf_map_pop_elem(&orphans, &key))
		return 1;
	info = bpf_map_lookup_elem(&tws, &key);
	/* Not there or no orphan any more: ended by a new socket on its
	 * tuple, or followed again as another timewait socket. */
	if (info && info->substate == TCP_FIN_WAIT2 && !info->ended) {
		if (tw_gone(info)) {
			/* Its tcp_fin_timeout is over, or it was killed. */
			tw_end(&key, info, ps->now);
		} else if (!check_substate(&key, info, ps->now, ps->now_j)) {
			if (!bpf_map_push_elem(&orphans, &key, 0))
				return 0;
			/* No room to put it back: its FIN is seen late, at its
			 * timer's due. */
			count(COUNT_ORPHANS_FULL);
			tw_watch(info, ps->now_j);
		}
	}
	__sync_fetch_and_sub(&orphans_live, 1);
	return 0;
}

static long sweep_tw_one(struct bpf_map *map, struct tw_key *key, struct tw_info *info, struct poll_state *ps)
{
	tw_end_if_gone(key, info, ps);
	return 0;
}

/* Run by user space (BPF_PROG_TEST_RUN, never attached) with sweep_socks:
 * timewait sockets that ended before their timer with no new socket on
 * their tuple (a RST, their namespace removed), which no poll looks at
 * until they are due. */
SEC("raw_tp")
int sweep_timewait(void *ctx)
{
	struct poll_state ps = { .now = bpf_ktime_get_ns(), .now_j = bpf_jiffies64() };

	if (tws_live)
		bpf_for_each_map_elem(&tws, sweep_tw_one, &ps, 0);
	return 0;
}

/* What the last poll_timewait saw: the jiffy then, and the due jiffy of the
 * first timewait socket still queued (0: none), so that user space can
 * sleep until then when nothing else needs a look every poll period. */
__u64 poll_now_j = 0;
__u64 poll_next_due_j = 0;

/* What poll_timewait returns. */
enum poll_result {
	POLL_IDLE = 0,  /* nothing followed */
	POLL_AGAIN = 1, /* poll again in a poll period */
	POLL_MORE = 2,  /* more are due than one poll looks at: again now */
	POLL_SLEEP = 3, /* only queued ones: poll again at poll_next_due_j */
};
const volatile enum poll_result poll_result_btf = 0;

/* Run by user space (BPF_PROG_TEST_RUN, never attached): timewait sockets
 * due, overdue, and orphans; in tally mode also the ends of connections
 * that waited long enough for a late RST. */
SEC("raw_tp")
int poll_timewait(void *ctx)
{
	struct poll_state ps = { .now = bpf_ktime_get_ns(), .now_j = bpf_jiffies64() };
	struct tw_due d;
	__u32 n;

	if (tws_live) {
		n = bpf_loop(TW_POLL_BATCH, due_one, &ps, 0);
		ps.more = n >= TW_POLL_BATCH;
	}
	if (overdue_live)
		bpf_for_each_map_elem(&overdue, overdue_one, &ps, 0);
	if (orphans_live)
		bpf_loop(orphans_live < ORPHANS_MAX ? orphans_live : ORPHANS_MAX, orphan_one, &ps, 0);
	if (tally_mode && closed_live)
		bpf_for_each_map_elem(&closed, sweep_one, &ps.now, 0);
	poll_now_j = ps.now_j;
	poll_next_due_j = bpf_map_peek_elem(&twq, &d) ? 0 : d.due;
	if (ps.more)
		return POLL_MORE;
	if (overdue_live || orphans_live || (tally_mode && closed_live))
		return POLL_AGAIN;
	if (tws_live && poll_next_due_j)
		return POLL_SLEEP;
	return tws_live ? POLL_AGAIN : POLL_IDLE;
}

#endif
