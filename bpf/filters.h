/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/* The kernel-side filters: what the user asked to see, set by the loader
 * before the programs load (constants, and maps for lists of pids, ports
 * and prefixes), applied to the final event of a transition. */
#ifndef TCPSTATE_FILTERS_H
#define TCPSTATE_FILTERS_H

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

struct lpm_key {
	__u32 prefixlen;
	__u8 addr[16]; /* IPv4 as ::ffff:a.b.c.d */
};

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

static __always_inline bool v4_mapped(const __u8 *a)
{
	return !*(const __u64 *)a && *(const __u32 *)(a + 8) == bpf_htonl(0xffff);
}

/* The family as tcpstate prints it: an IPv6 socket with an IPv4-mapped
 * address (a dual-stack server's IPv4 client) is IPv4; a "::" listener
 * stays IPv6. */
static __always_inline __u16 family_of(const struct event *e)
{
	if (e->family == AF_INET6 && (v4_mapped(e->saddr) || v4_mapped(e->daddr)))
		return AF_INET;
	return e->family;
}

/* Filters on the final event's tuple and namespace. */
static __always_inline bool wanted_where(const struct event *e)
{
	if (filter_family && family_of(e) != filter_family)
		return false;
	/* The cookie when the kernel has one: an inode number is reused by
	 * a new namespace once the old one is gone. */
	if (filter_netns_cookie && e->netns_cookie != filter_netns_cookie)
		return false;
	if (!filter_netns_cookie && filter_netns && e->netns != filter_netns)
		return false;
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

/* Whether sk is in the namespace the filter selects (any without one).
 * Sockets of other namespaces are not followed at all: nothing of them
 * costs a table entry or is counted in what the summary reports. */
static __always_inline bool netns_ok(const struct sock *sk, bool btf)
{
	const struct net *net;

	if (!filter_netns_cookie && !filter_netns)
		return true;
	net = READ(btf, sk, __sk_common.skc_net.net);
	if (filter_netns_cookie)
		return net_cookie(net, btf) == filter_netns_cookie;
	return READ(btf, net, ns.inum) == filter_netns;
}

/* Filters on the final event: its owner, tuple and namespace. */
static __always_inline bool wanted(const struct event *e)
{
	/* A copy: e may be ring buffer memory, no map key before 6.2 or so. */
	__u32 pid = e->pid;

	if (!wanted_where(e))
		return false;
	if (filter_pid && !bpf_map_lookup_elem(&pids, &pid))
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
	return true;
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

static __always_inline bool state_ok(__u8 oldstate, __u8 newstate)
{
	return !filter_states || (filter_states & ((1U << oldstate) | (1U << newstate)));
}

#endif
