/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/* The state transitions themselves, from sock/inet_sock_set_state: each
 * becomes a record (or a tally) attributed to the socket's owner, with its
 * time in the previous state; SYN_SENT and SYN_RECV are held back (map
 * pending) until their 4-tuple is final. */
#ifndef TCPSTATE_STATE_H
#define TCPSTATE_STATE_H

/* Send the held-back event of sk, if any, with its tuple read now, in
 * place (no second event fits on the stack). The one that marks it taken
 * sends it, so it goes out once even when a retransmission runs on one
 * CPU while the next transition runs on another. */
static __always_inline void flush_pending(const struct sock *sk, __u64 key, bool btf)
{
	struct held *p = bpf_map_lookup_elem(&pending, &key);

	if (!p || __sync_fetch_and_add(&p->taken, 1))
		return;
	fill_tuple(&p->e, sk, btf);
	fill_tcp(&p->e, sk, btf);
	/* Also the cookie: before 6.x a server child takes its request
	 * socket's cookie just after LISTEN -> SYN_RECV. */
	p->e.cookie = sock_cookie(sk, btf);
	/* A TIME_WAIT this socket took the tuple of ended first. */
	tw_reused(&p->e, p->e.ts_ns);
	if (wanted(&p->e))
		emit(&p->e, NULL);
	bpf_map_delete_elem(&pending, &key);
}

static __always_inline int on_set_state(const struct sock *sk, int oldstate, int newstate, bool btf)
{
	__u64 key = (__u64)sk;
	struct sock_info *si, fresh = {};
	struct conn_life life;
	long err;
	/* The event, in the form map pending holds it (taken 0). */
	struct held held = {};
	struct event *e = &held.e;
	__u8 substate = 0;
	bool cgroup_ok, had_cookie;

	if (READ(btf, sk, sk_protocol) != IPPROTO_TCP)
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

	/* Keep the per-socket order: what was held back goes first. Only
	 * SYN_SENT and SYN_RECV are held back, so only they need a look.
	 * Their tuple is final now: a TIME_WAIT it was taken from ended. */
	if (oldstate == TCP_SYN_SENT || oldstate == TCP_SYN_RECV) {
		if (!tally_mode || tuple_filtered())
			flush_pending(sk, key, btf);
		else if (tws_live) {
			/* Nothing held back: read the final tuple only to see
			 * whether it ends a followed TIME_WAIT. */
			fill_tuple(e, sk, btf);
			tw_reused(e, e->ts_ns);
		}
	}

	if (oldstate == TCP_CLOSE || (oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV)) {
		/* A new life for this address: forget what was there. connect()
		 * and listen() run in the caller's context, so the task on CPU
		 * is the owner; a child of a listener has none until accept(). */
		if (newstate == TCP_SYN_SENT || newstate == TCP_LISTEN) {
			fresh.pid = bpf_get_current_pid_tgid() >> 32;
			bpf_get_current_comm(fresh.comm, sizeof(fresh.comm));
		}
		fresh.last_ts = e->ts_ns;
		life_step(&fresh.life, oldstate, newstate, e->ts_ns);
		fresh.cookie = e->cookie;
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
			/* The kernel ran no program for a transition between
			 * the last one shown and this one (see socks.h). */
			if (si->state != oldstate)
				count(COUNT_UNSEEN_STATE);
			e->prev_ts_ns = si->last_ts;
			si->last_ts = e->ts_ns;
			si->state = newstate;
			si->suspect = 0;
		} else {
			fresh.cookie = e->cookie;
			fresh.state = newstate;
			si = sock_info_of(sk, key, e->ts_ns, btf, &fresh);
		}
	}
	if (si != &fresh) {
		life_step(&si->life, oldstate, newstate, e->ts_ns);
		own_if_closing(si, newstate);
	}
	e->pid = si->pid;
	e->reset = si->reset;
	e->reset_reason = si->reset_reason;
	__builtin_memcpy(e->comm, si->comm, sizeof(e->comm));
	life = si->life;
	if (newstate == TCP_CLOSE) {
		bpf_map_delete_elem(&socks, &key);
		e->error = sock_error(sk, btf); /* errors.h */
	}

	cgroup_ok = !filter_cgroup || in_cgroup(sk);
	if (!tally_mode || tally_cgroups)
		e->cgroup_id = sock_cgroup_id(sk, btf);

	if (newstate == TCP_SYN_SENT || (oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV)) {
		if (!cgroup_ok || !state_ok(e->oldstate, e->newstate))
			return 0;
		if (tally_mode && !tuple_filtered()) {
			/* Nothing waits for the final tuple. */
			if (need_tuple())
				fill_tuple(e, sk, btf);
			if (wanted(e))
				emit(e, NULL);
			return 0;
		}
		/* The local port (SYN_SENT) or the peer (SYN_RECV) is set just
		 * after this tracepoint; send at the next transition, or the
		 * first SYN retransmission, whichever comes first. If it cannot
		 * wait, send it now with what is known. */
		if (!bpf_map_update_elem(&pending, &key, &held, BPF_ANY))
			return 0;
		count(COUNT_HELD_FULL);
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
			if (!tally_mode && cgroup_ok && wanted(e))
				send(e);
			return 0;
		}
	}
	if (cgroup_ok && state_ok(e->oldstate, e->newstate) && wanted(e))
		emit(e, &life);
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

#endif
