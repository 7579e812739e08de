/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/* Resets, from tcp/tcp_send_reset and tcp/tcp_receive_reset (tp_btf only):
 * remembered for the socket's later records, or sent as a note when the
 * RST comes after the socket's CLOSE (abortive close()). */
#ifndef TCPSTATE_RESETS_H
#define TCPSTATE_RESETS_H

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

#endif
