// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/* tcpstate: every TCP state transition, attributed to the socket's owner.
 *
 * One object for the loader, one file per concern, each saying first what
 * it keeps and which hooks feed it:
 *   common.h   constants, the ring and its counters, socket readers
 *   filters.h  what the user asked to see
 *   tally.h    tally mode's counters and histograms (tcpstate metrics)
 *   socks.h    followed sockets: owners and ages; accept; the sweep
 *   timewait.h TIME_WAIT, which the tracepoint never shows
 *   state.h    sock/inet_sock_set_state, and the held-back SYN events
 *   resets.h   RSTs sent and received, the kernel's reason, RSTs sent
 *              for segments that found no socket (rate-limited)
 *   errors.h   the error a socket ended on (sk_err at CLOSE)
 * Every hook runs only for TCP's own events: nothing that every syscall,
 * packet or timer of the host pays for. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "tcpstate.h"

char LICENSE[] SEC("license") = "GPL";

/* Not used by the programs: keeps these enums in the BTF, so that bpf2go
 * generates their values for the Go side. */
const volatile enum ev_flag ev_flag_btf = 0;
const volatile enum tally_layout tally_layout_btf = 0;
const volatile enum connect_failure connect_failure_btf = 0;
const volatile enum role role_btf = 0;
const volatile enum closed_by closed_by_btf = 0;
const volatile enum rst_reason rst_reason_btf = 0;
const volatile enum path_layout path_layout_btf = 0;

#include "common.h"
#include "filters.h"
#include "tally.h"
#include "socks.h"
#include "timewait.h"
#include "errors.h"
#include "state.h"
#include "resets.h"
