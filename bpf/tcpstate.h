/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/* Shared between bpf/tcpstate.bpf.c and the Go decoder in tracer/. */
#ifndef TCPSTATE_H
#define TCPSTATE_H

#define TASK_COMM_LEN 16

/* One TCP state transition. Layout is mirrored by tracer/decode.go;
 * keep both in step (the decoder checks the size). */
struct event {
	__u64 ts_ns;      /* bpf_ktime_get_ns() at the transition */
	__u64 prev_ts_ns; /* previous transition of this socket, 0 if unknown */
	__u64 skaddr;     /* struct sock *, identifies the socket */
	__u64 cgroup_id;  /* cgroup v2 id of the socket (not of the CPU's task) */
	__u64 ino;        /* socket inode, 0 while no struct socket is attached */
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
};

#endif
