/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/* The state transitions themselves, from sock/inet_sock_set_state: each
 * becomes a record (or a tally) attributed to the socket's owner, with its
 * time in the previous state; SYN_SENT and SYN_RECV are held back (in
 * the socket's entry) until their 4-tuple is final. */
#ifndef TCPSTATE_STATE_H
#define TCPSTATE_STATE_H

/* Send the event held back in sk's entry, if any, with its tuple read
 * now. The one that marks it taken sends it, so it goes out once even
 * when a retransmission runs on one CPU while the next transition runs on
 * another. Returns whether there was one. */
static __always_inline bool send_held(const struct sock *sk, struct sock_info *si, bool btf)
{
	struct held *h = &si->held;
	struct tw_key key;
	struct event *e;

	/* Life mode holds nothing back (and keeps a path in its place). */
	if (life_mode || !h->ts || __sync_fetch_and_add(&h->taken, 1))
		return false;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		h->ts = 0;
		count(COUNT_LOST);
		return true;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = h->ts;
	e->skaddr = (__u64)sk;
	e->oldstate = h->oldstate;
	e->newstate = h->newstate;
	__builtin_memcpy(&e->tx_bytes, &h->tx_bytes, HELD_COUNTERS);
	h->ts = 0;
	e->pid = si->pid;
	__builtin_memcpy(e->comm, si->comm, sizeof(e->comm));
	/* Also the cookie: before 6.x a server child takes its request
	 * socket's cookie just after LISTEN -> SYN_RECV. */
	e->cookie = sock_cookie(sk, btf);
	if (!tally_mode || tally_cgroups)
		e->cgroup_id = sock_cgroup_id(sk, btf);
	fill_tuple(e, sk, btf);
	/* A TIME_WAIT this socket took the tuple of ended first. The key
	 * is copied: before 6.2 or so, ring buffer memory is no map key. */
	__builtin_memcpy(&key, key_of(e), sizeof(key));
	tw_reused(&key, e->ts_ns);
	if (!wanted(e)) {
		bpf_ringbuf_discard(e, BPF_RB_NO_WAKEUP);
	} else if (tally_mode) {
		emit(e, NULL);
		bpf_ringbuf_discard(e, BPF_RB_NO_WAKEUP);
	} else {
		bpf_ringbuf_submit(e, wakeup_flags());
	}
	return true;
}

/* Hold back the event e of sk (CLOSE -> SYN_SENT, LISTEN -> SYN_RECV) in
 * fresh, its new entry, with the counters it has now. */
static __always_inline void hold(struct sock_info *fresh, struct event *e, const struct sock *sk, bool btf)
{
	struct held *h = &fresh->held;

	fill_tcp(e, sk, btf);
	h->ts = e->ts_ns;
	h->oldstate = e->oldstate;
	h->newstate = e->newstate;
	__builtin_memcpy(&h->tx_bytes, &e->tx_bytes, HELD_COUNTERS);
}

/* Life mode: add newstate, entered at ts, to the path, and what the
 * connection's record needs of the socket then: the initial sequence
 * numbers on ESTABLISHED, the counters at the first FIN (half-close). */
static __always_inline void path_step(struct conn_path *p, __u8 oldstate, __u8 newstate, __u64 ts, const struct sock *sk,
				      bool btf)
{
	const struct tcp_sock *tp;
	__u32 i = p->n;

	if (!i)
		p->first_old = oldstate;
	if (newstate == TCP_LISTEN || (oldstate == TCP_LISTEN && newstate == TCP_CLOSE))
		p->listener = 1;
	if (i >= PATH_STEPS) {
		/* Keep the end right: the last state replaces the one before. */
		i = PATH_STEPS - 1;
		if (!p->truncated)
			count(COUNT_PATH_LONG);
		p->truncated = 1;
	}
	p->ts[i & (PATH_STEPS - 1)] = ts;
	p->state[i & (PATH_STEPS - 1)] = newstate;
	p->n = i + 1;
	if (newstate == TCP_ESTABLISHED && (oldstate == TCP_SYN_SENT || oldstate == TCP_SYN_RECV)) {
		tp = tcp_sk_of(sk, btf);
		if (tp) {
			p->isn_snd_una = READ(btf, tp, snd_una);
			p->isn_rcv_nxt = READ(btf, tp, rcv_nxt);
			p->isn_known = 1;
		}
	} else if (!p->fin_dir && newstate == TCP_FIN_WAIT1) {
		tp = tcp_sk_of(sk, btf);
		p->fin_dir = 1;
		if (tp)
			p->fin_rx = READ(btf, tp, bytes_received);
	} else if (!p->fin_dir && newstate == TCP_CLOSE_WAIT) {
		tp = tcp_sk_of(sk, btf);
		p->fin_dir = 2;
		if (tp)
			p->fin_snd_nxt = READ(btf, tp, snd_nxt);
	}
}

/* Life mode: the connection of e ended (or lives on as an orphan, flags
 * EV_ORPHAN_NOTE): its one record. */
static __always_inline void send_path(const struct event *e, const struct conn_path *p, __u16 flags)
{
	struct path_record *r;

	if (p->listener)
		return;
	r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
	if (!r) {
		count(COUNT_LOST);
		return;
	}
	__builtin_memcpy(&r->e, e, sizeof(*e));
	__builtin_memcpy(&r->p, p, sizeof(*p));
	r->e.flags |= flags | EV_PATH;
	bpf_ringbuf_submit(r, wakeup_flags());
}

/* A new socket's entry as it is made, per CPU: one for set_state, one
 * for its nested twin (see below). Off the stack, where the event is. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct sock_info);
} fresh_socks SEC(".maps");

static __always_inline int on_set_state(const struct sock *sk, int oldstate, int newstate, bool btf, __u32 nested)
{
	__u64 key = (__u64)sk;
	struct sock_info *si, *fresh = bpf_map_lookup_elem(&fresh_socks, &nested);
	struct conn_life life;
	struct event ev = {};
	struct event *e = &ev;
	__u8 substate = 0;
	bool cgroup_ok, had_cookie, held = false, syn_new;
	long err;

	if (!fresh || READ(btf, sk, sk_protocol) != IPPROTO_TCP || !netns_ok(sk, btf))
		return 0;
	e->ts_ns = bpf_ktime_get_ns();
	e->skaddr = key;
	e->oldstate = oldstate;
	e->newstate = newstate;
	/* A timewait socket copies the cookie the full socket had then. */
	e->cookie = READ(btf, sk, __sk_common.skc_cookie.counter);
	had_cookie = e->cookie != 0;
	if (!had_cookie)
		e->cookie = sock_cookie(sk, btf);
	cgroup_ok = !filter_cgroup || in_cgroup(sk);
	if (!tally_mode || tally_cgroups)
		e->cgroup_id = sock_cgroup_id(sk, btf);
	/* A new socket whose local port (SYN_SENT) or peer (a listener's
	 * child in SYN_RECV) is set just after this tracepoint: its event
	 * waits in its entry for the next transition, or the first SYN
	 * retransmission, whichever comes first. Tally mode needs the tuple
	 * only for a filter. */
	syn_new = newstate == TCP_SYN_SENT || (oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV);

	if (oldstate == TCP_CLOSE || (oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV)) {
		/* A new life for this address: forget what was there. connect()
		 * and listen() run in the caller's context, so the task on CPU
		 * is the owner; a child of a listener has none until accept(). */
		__builtin_memset(fresh, 0, sizeof(*fresh));
		if (newstate == TCP_SYN_SENT || newstate == TCP_LISTEN) {
			fresh->pid = bpf_get_current_pid_tgid() >> 32;
			bpf_get_current_comm(fresh->comm, sizeof(fresh->comm));
		}
		fresh->last_ts = e->ts_ns;
		life_step(&fresh->life, oldstate, newstate, e->ts_ns);
		fresh->cookie = e->cookie;
		fresh->state = newstate;
		held = syn_new && !life_mode && (!tally_mode || tuple_filtered()) && cgroup_ok &&
		       state_ok(oldstate, newstate);
		if (life_mode)
			path_step(&fresh->path, oldstate, newstate, e->ts_ns, sk, btf);
		if (held)
			hold(fresh, e, sk, btf);
		/* An entry left at this address is of a socket whose CLOSE
		 * the tracepoint never showed. */
		err = bpf_map_update_elem(&socks, &key, fresh, BPF_NOEXIST);
		if (err == -17 /* EEXIST */) {
			count(COUNT_UNSEEN_END);
			err = bpf_map_update_elem(&socks, &key, fresh, BPF_ANY);
		}
		if (err) {
			count(COUNT_SOCKS_FULL);
			held = false; /* it cannot wait: sent now with what is known */
		}
		si = fresh;
	} else {
		si = bpf_map_lookup_elem(&socks, &key);
		if (si) {
			/* The kernel ran no program for a transition between
			 * the last one shown and this one (see socks.h). */
			if (si->state != oldstate)
				count(COUNT_UNSEEN_STATE);
			e->prev_ts_ns = si->last_ts;
			si->last_ts = e->ts_ns;
			si->state = newstate;
			si->suspect = 0;
			/* Before 6.x a server child takes its request socket's
			 * cookie just after LISTEN -> SYN_RECV: the one it has
			 * from now on tells it from a later socket (the sweep). */
			if (oldstate == TCP_SYN_RECV)
				si->cookie = e->cookie;
			/* Keep the per-socket order: what was held back goes
			 * first. Its tuple is final now. */
			if (oldstate == TCP_SYN_SENT || oldstate == TCP_SYN_RECV)
				held = send_held(sk, si, btf);
		} else {
			__builtin_memset(fresh, 0, sizeof(*fresh));
			fresh->cookie = e->cookie;
			fresh->state = newstate;
			if (life_mode && newstate != TCP_CLOSE)
				path_step(&fresh->path, oldstate, newstate, e->ts_ns, sk, btf);
			si = sock_info_of(sk, key, e->ts_ns, btf, fresh);
		}
		if (!held && tws_live && (oldstate == TCP_SYN_SENT || oldstate == TCP_SYN_RECV)) {
			/* Nothing held back: read the final tuple only to see
			 * whether it ends a followed TIME_WAIT. */
			fill_tuple(e, sk, btf);
			tw_reused(key_of(e), e->ts_ns);
		}
	}
	if (si != fresh) {
		life_step(&si->life, oldstate, newstate, e->ts_ns);
		own_in_owner_task(si, sk, newstate, btf);
		if (life_mode && newstate != TCP_CLOSE)
			path_step(&si->path, oldstate, newstate, e->ts_ns, sk, btf);
	}
	e->pid = si->pid;
	e->reset = si->reset;
	e->reset_reason = si->reset_reason;
	__builtin_memcpy(e->comm, si->comm, sizeof(e->comm));
	life = si->life;
	if (newstate == TCP_CLOSE)
		e->error = sock_error(sk, btf); /* errors.h */
	else if (life_mode)
		return 0; /* only a connection's end is sent */

	if (syn_new) {
		if (held || !cgroup_ok || !state_ok(e->oldstate, e->newstate))
			return 0;
		if (tally_mode && !tuple_filtered()) {
			/* Nothing waits for the final tuple. */
			if (need_tuple())
				fill_tuple(e, sk, btf);
			if (wanted(e))
				emit(e, NULL);
			return 0;
		}
		/* It could not wait (no room in socks): sent with what is
		 * known now. */
	}

	if (need_tuple()) {
		fill_tuple(e, sk, btf);
		fill_tcp(e, sk, btf);
	} else if (oldstate == TCP_SYN_SENT && newstate == TCP_CLOSE) {
		/* Timeout or not: the reason of a failed connect. */
		const struct tcp_sock *tp = tcp_sk_of(sk, btf);

		if (tp)
			e->retrans = READ(btf, tp, total_retrans);
	}
	if (follow_tw && newstate == TCP_CLOSE &&
	    (oldstate == TCP_FIN_WAIT1 || oldstate == TCP_FIN_WAIT2 || oldstate == TCP_CLOSING)) {
		substate = tw_follow(sk, had_cookie, e, &life, cgroup_ok, btf);
		if (substate == TCP_TIME_WAIT) {
			/* The connection lives on in TIME_WAIT, not CLOSE. */
			e->newstate = TCP_TIME_WAIT;
			e->flags = EV_SYNTH;
		} else if (substate) {
			/* An orphan: still FIN_WAIT2 as far as anyone can tell.
			 * Tell user space that the connection lives on. */
			e->flags = EV_ORPHAN_NOTE;
		}
	}
	if (life_mode) {
		if (substate && substate != TCP_TIME_WAIT) {
			if (cgroup_ok && wanted(e))
				send_path(e, &si->path, EV_ORPHAN_NOTE);
		} else {
			path_step(&si->path, oldstate, e->newstate, e->ts_ns, sk, btf);
			if (cgroup_ok && wanted(e))
				send_path(e, &si->path, 0);
		}
	} else if (substate && substate != TCP_TIME_WAIT) {
		if (!tally_mode && cgroup_ok && wanted(e))
			send(e);
	} else if (cgroup_ok && state_ok(e->oldstate, e->newstate) && wanted(e)) {
		emit(e, &life);
	}
	/* Forgotten only now: life mode's path was in the entry. */
	if (newstate == TCP_CLOSE)
		bpf_map_delete_elem(&socks, &key);
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
	on_set_state(sk, oldstate, newstate, btf, 0);
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
	return on_set_state(sk, oldstate, newstate, btf, 1);
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
static __always_inline void send_held_on_retransmit(const struct sock *sk, bool btf)
{
	__u64 key = (__u64)sk;
	struct sock_info *si;

	if (READ(btf, sk, __sk_common.skc_state) != TCP_SYN_SENT)
		return;
	si = bpf_map_lookup_elem(&socks, &key);
	if (si)
		send_held(sk, si, btf);
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(retransmit_btf, const struct sock *sk)
{
	send_held_on_retransmit(sk, true);
	return 0;
}

SEC("tracepoint/tcp/tcp_retransmit_skb")
int retransmit_tp(struct retransmit_ctx *ctx)
{
	send_held_on_retransmit(ctx->skaddr, false);
	return 0;
}

#endif
