/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/* Why a socket ended: the error its application sees (sk_err), read at
 * the CLOSE that sock/inet_sock_set_state already reports (state.h). No
 * hook of its own: the kernel sets sk_err before tcp_done() reports CLOSE
 * (tcp_reset: ECONNREFUSED/ECONNRESET/EPIPE; tcp_write_err on the
 * retransmission, SYN, keepalive and TCP_USER_TIMEOUT timers: ETIMEDOUT,
 * or the soft ICMP error seen before it such as EHOSTUNREACH; an ICMP
 * unreachable answer to a SYN: the hard error at once), under the
 * socket's lock, so the application cannot have taken it yet. */
#ifndef TCPSTATE_ERRORS_H
#define TCPSTATE_ERRORS_H

/* The errno sk ends on, 0 for none; errnos past 255 (none that TCP sets)
 * are said as 255. */
static __always_inline __u8 sock_error(const struct sock *sk, bool btf)
{
	int err = READ(btf, sk, sk_err);

	if (err < 0)
		err = -err;
	return err > 255 ? 255 : err;
}

#endif
