/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/* Shared between bpf/tcpstate.bpf.c and the Go decoder in tracer/. */
#ifndef TCPSTATE_H
#define TCPSTATE_H

#define TASK_COMM_LEN 16

/* One TCP state transition. Layout is mirrored by tracer/decode.go; a test
 * there checks every offset against the bpf2go-generated type. */
struct event {
	__u64 ts_ns;      /* bpf_ktime_get_ns() at the transition */
	__u64 prev_ts_ns; /* previous transition of this socket, 0 if unknown */
	__u64 skaddr;     /* struct sock *, identifies the socket while it lives */
	__u64 cgroup_id;  /* cgroup v2 id of the socket (not of the CPU's task) */
	__u32 pid;        /* owner tgid, 0 when no process owns it yet */
	__u32 netns;      /* network namespace inode */
	__u8 saddr[16];   /* local address; IPv4 in the first 4 bytes */
	__u8 daddr[16];   /* remote address */
	__u16 sport;      /* local port, host byte order */
	__u16 dport;      /* remote port, host byte order */
	__u16 family;     /* AF_INET or AF_INET6 */
	__u8 oldstate;
	__u8 newstate;
	char comm[TASK_COMM_LEN]; /* owner comm */
	__u64 cookie;     /* socket cookie: one connection, never reused; its
	                   * timewait socket inherits it. 0 if unknown. */
	__u64 tx_bytes;   /* tcp_sock bytes_acked */
	__u64 rx_bytes;   /* tcp_sock bytes_received */
	__u32 snd_una;
	__u32 snd_nxt;
	__u32 rcv_nxt;
	__u32 retrans;    /* tcp_sock total_retrans */
	__u16 flags;      /* EV_* */
	__u8 reset;       /* RESET_* seen on this socket so far */
	__u8 _pad[5];
	__u64 netns_cookie; /* network namespace cookie, never reused; 0 if
	                     * the kernel has none (before 5.14) */
};

/* event.flags */
enum ev_flag {
	EV_SYNTH = 1,       /* derived by tcpstate, not reported by the kernel */
	EV_TENTATIVE = 2,   /* a timewait timer was cancelled: the end of
	                     * TIME_WAIT unless an EV_REARM for the same cookie
	                     * follows */
	EV_REARM = 4,       /* the cancelled timer was re-armed: not an end */
	EV_RESET_NOTE = 8,  /* not a transition: a RST for a socket already
	                     * reported CLOSE (the kernel sends it after) */
	EV_ORPHAN_NOTE = 16, /* not a transition: the connection lives on as an
	                      * orphaned FIN_WAIT2 timewait socket */
};

/* event.reset */
#define RESET_SENT 1
#define RESET_RECEIVED 2

/* What the BPF side could not follow, counted per CPU in map `counters`.
 * Every one is reported by user space. */
enum counter {
	COUNT_LOST,         /* ring buffer full: an event dropped */
	COUNT_SOCKS_FULL,   /* owner table full: a socket without owner or age */
	COUNT_HELD_FULL,    /* held-back table full: SYN_SENT/SYN_RECV sent
	                     * before its 4-tuple was final */
	COUNT_TW_FULL,      /* timewait table full: a TIME_WAIT not followed */
	COUNT_ORPHANS_FULL, /* orphan table full: an orphan's FIN_WAIT2 ->
	                     * TIME_WAIT seen only at its next timer event */
	COUNT_TW_UNKNOWN,   /* a socket older than tcpstate closed from
	                     * FIN_WAIT1/2 or CLOSING: a TIME_WAIT it may have
	                     * left is not followed */
	COUNT_REARM_LOST,   /* a re-arm lost (ring full): the TIME_WAIT end it
	                     * should have retracted was shown */
	COUNT_NESTED,       /* not a loss: transitions handled by the second
	                     * set_state program because the first was busy on
	                     * the CPU (the kernel counts a miss for it) */
	NR_COUNTERS,
};

#endif
