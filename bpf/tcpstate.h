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
	__u8 reset_reason; /* enum rst_reason of the RST this socket sent */
	__u8 error;        /* errno the socket ended on (sk_err at CLOSE), 0 none */
	__u8 _pad2[6];
};

/* event.flags */
enum ev_flag {
	EV_SYNTH = 1,       /* derived by tcpstate, not reported by the kernel */
	EV_RESET_NOTE = 8,  /* not a transition: a RST for a socket already
	                     * reported CLOSE (the kernel sends it after) */
	EV_ORPHAN_NOTE = 16, /* not a transition: the connection lives on as an
	                      * orphaned FIN_WAIT2 timewait socket */
	EV_POLL_NOTE = 32,   /* not a transition, nothing else in the record:
	                      * timewait sockets are followed again: poll them */
	EV_PATH = 128,       /* a connection's path (struct path_record), sent
	                      * at its end instead of its transitions (life
	                      * mode); with EV_ORPHAN_NOTE it lives on as an
	                      * orphan, whose end comes as a transition */
	EV_NOSOCK_NOTE = 64, /* not a transition: a RST sent for a segment that
	                      * found no socket (tuple from the segment, pid 0);
	                      * `retrans` holds how many such RSTs on this CPU
	                      * were not recorded since the last record (rate
	                      * limit, also counted in COUNT_NOSOCK_SUPPRESSED) */
};

/* event.reset_reason: the kernel's enum sk_rst_reason (6.10+), whose
 * values differ between kernels, as tcpstate's own numbers (resets.h maps
 * them through CO-RE). Names in tracer/reason.go. */
enum rst_reason {
	RR_UNKNOWN,          /* the kernel gives no reason (before 6.10), or no RST sent */
	RR_NOT_SPECIFIED,
	RR_NO_SOCKET,
	RR_TCP_INVALID_ACK_SEQUENCE,
	RR_TCP_RFC7323_PAWS,
	RR_TCP_TOO_OLD_ACK,
	RR_TCP_ACK_UNSENT_DATA,
	RR_TCP_FLAGS,
	RR_TCP_OLD_ACK,
	RR_TCP_ABORT_ON_DATA,
	RR_TCP_TIMEWAIT_SOCKET,
	RR_INVALID_SYN,
	RR_TCP_ABORT_ON_CLOSE,
	RR_TCP_ABORT_ON_LINGER,
	RR_TCP_ABORT_ON_MEMORY,
	RR_TCP_STATE,
	RR_TCP_KEEPALIVE_TIMEOUT,
	RR_TCP_DISCONNECT_WITH_DATA,
	RR_ERROR,
	RR_MPTCP,            /* any of MPTCP's */
	RR_OTHER,            /* a name newer than this tcpstate */
	NR_RST_REASONS,
};

/* Life mode (tcpstate life): what a connection's entry keeps of its path,
 * sent whole with the event of its end. */
enum path_layout { PATH_STEPS = 8 }; /* a TCP life has at most 7 */

struct conn_path {
	__u64 ts[PATH_STEPS];    /* when each state was entered */
	__u8 state[PATH_STEPS];  /* the states, in order */
	__u8 n;                  /* steps kept */
	__u8 first_old;          /* the state before the first step */
	__u8 listener;           /* a listening socket: no connection */
	__u8 fin_dir;            /* who sent the first FIN: 1 we, 2 the peer */
	__u8 isn_known;          /* the handshake was seen */
	__u8 truncated;          /* more steps than kept: the last replaced */
	__u8 _pad[2];
	__u32 isn_snd_una;       /* snd_una and rcv_nxt on ESTABLISHED */
	__u32 isn_rcv_nxt;
	__u32 fin_snd_nxt;       /* snd_nxt at the peer's first FIN */
	__u32 _pad2;
	__u64 fin_rx;            /* bytes_received at our first FIN */
};

struct path_record {
	struct event e;          /* the connection's last transition */
	struct conn_path p;
};

/* event.reset */
#define RESET_SENT 1
#define RESET_RECEIVED 2

/* What the BPF side could not follow, counted per CPU in map `counters`.
 * Every one is reported by user space. */
enum counter {
	COUNT_LOST,         /* ring buffer full: an event dropped */
	COUNT_SOCKS_FULL,   /* owner table full: a socket without owner or age */
	COUNT_TW_FULL,      /* timewait table full: a TIME_WAIT not followed */
	COUNT_TW_UNFOUND,   /* a timewait socket not found in its hash chain
	                     * (the chain longer than we walk): a TIME_WAIT
	                     * shown as the kernel's CLOSE */
	COUNT_TW_EARLY,     /* a TIME_WAIT that ended before its timer with no
	                     * new socket on its 4-tuple shown (a RST, its
	                     * namespace removed): its end is shown when found */
	COUNT_ORPHANS_FULL, /* orphan table full: an orphan's FIN_WAIT2 ->
	                     * TIME_WAIT seen only at its next timer event */
	COUNT_TW_UNKNOWN,   /* a socket older than tcpstate closed from
	                     * FIN_WAIT1/2 or CLOSING: a TIME_WAIT it may have
	                     * left is not followed */
	COUNT_NESTED,       /* not a loss: transitions handled by the second
	                     * set_state program because the first was busy on
	                     * the CPU (the kernel counts a miss for it) */
	COUNT_CLOSED_FULL,  /* late-reset table full (tally mode): a
	                     * connection's end observed without waiting for
	                     * the RST that may follow its CLOSE */
	COUNT_CGROUP_HISTS_FULL, /* per-cgroup histogram table full (tally
	                          * mode by pod): durations of sockets of new
	                          * cgroups observed in the totals only */
	COUNT_UNSEEN_END,   /* a followed socket found gone (freed, or its
	                     * memory reused) without the tracepoint having
	                     * shown its CLOSE */
	COUNT_UNSEEN_STATE, /* a followed socket found in another state than
	                     * the tracepoint last showed: by its next
	                     * transition, or by two sweeps in a row */
	COUNT_NOSOCK_SEEN,  /* not a loss: RSTs sent for segments that found
	                     * no socket, all of them */
	COUNT_NOSOCK_SUPPRESSED, /* of those, not recorded one by one (rate
	                          * limit): counted here and on the next record */
	COUNT_PATH_LONG,    /* a connection with more states than a path
	                     * keeps: its last replaces the one before */
	NR_COUNTERS,
};

/* Tally mode (tcpstate metrics): the BPF side counts and observes in
 * per-CPU maps that user space reads at each scrape; no event crosses the
 * ring. Sums over the CPUs are the totals. */
enum tally_layout {
	NR_STATES = 16,       /* TCP states are 1..13; index by state */
	NR_DIRECTIONS = 2,    /* resets: 0 sent, 1 received */
	NR_REASONS = 4,       /* connect failures, enum connect_failure */
	NR_ROLES = 2,         /* enum role */
	NR_CLOSED_BY = 5,     /* enum closed_by */
	NR_RESET_REASONS = 24, /* enum rst_reason, padded */
	/* Native histogram buckets (Prometheus schema NATIVE_SCHEMA: bucket
	 * k holds (2^((k-1)/8), 2^(k/8)] seconds), for keys NATIVE_MIN_KEY
	 * .. NATIVE_MIN_KEY + NATIVE_BUCKETS - 1, i.e. from 2^-20 s (1 us)
	 * to 2^24 s (194 days); longer is counted in the last bucket, and
	 * 1 us or less in the zero bucket. */
	NATIVE_SCHEMA = 3,
	NATIVE_MIN_KEY = -159,
	NATIVE_BUCKETS = 352,
	CLASSIC_BUCKETS = 17, /* finite upper bounds, set by the loader */
	/* Histogram series (map hists): time in each state, then connection
	 * lifetimes by role and closed_by. */
	HIST_STATE = 0,
	HIST_CONN = NR_STATES,
	NR_HISTS = HIST_CONN + NR_ROLES * NR_CLOSED_BY,
};

enum connect_failure { FAIL_REFUSED, FAIL_TIMEOUT, FAIL_OTHER, FAIL_UNREACHABLE };
enum role { ROLE_CLIENT, ROLE_SERVER };
enum closed_by { CLOSED_LOCAL, CLOSED_REMOTE, CLOSED_SIMULTANEOUS, CLOSED_RESET, CLOSED_TIMEOUT };

/* The counters of tally mode, per CPU (map tallies, one entry). */
struct tallies {
	__u64 transitions[NR_STATES][NR_STATES]; /* [from][to] */
	/* [state left for CLOSE][direction][enum rst_reason]; a RST sent for
	 * a segment that found no socket counts in state CLOSE. */
	__u64 resets[NR_STATES][NR_DIRECTIONS][NR_RESET_REASONS];
	__u64 connect_failures[NR_REASONS];
};

/* One histogram, per CPU. Buckets are not cumulative. */
struct hist {
	__u64 count;
	__u64 sum_ns;
	__u64 zero;                       /* 1 us or less */
	__u64 native[NATIVE_BUCKETS];
	__u64 classic[CLASSIC_BUCKETS];   /* above the last bound: count only */
};

#endif
