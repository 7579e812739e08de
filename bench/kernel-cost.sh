#!/usr/bin/env bash
# BPF time per connection of one tcpstate mode under the bench's loopback
# churn: ./bench/kernel-cost.sh [tcpstate arguments...]   (as root)
# Turns kernel.bpf_stats_enabled on for the run (its own overhead, some
# 20-40 ns per program run, is included), reads the run time of the
# programs tcpstate loaded with bpftool, and divides by the connections
# (state-program runs / 10.65, the transitions per connection of this load).
set -euo pipefail
cd "$(dirname "$0")/.."
TCPSTATE=${TCPSTATE:-bin/tcpstate}
GO=${GO:-go}
command -v bpftool >/dev/null || { echo "kernel-cost: needs bpftool (apt-get install bpftool)" >&2; exit 1; }
$GO build -o /tmp/tcpstate-bench.$$ ./cmd/tcpstate-bench
trap 'rm -f /tmp/tcpstate-bench.$$; sysctl -qw kernel.bpf_stats_enabled=0' EXIT
sysctl -qw kernel.bpf_stats_enabled=1
ids() { bpftool prog show -j | python3 -c 'import json,sys; print(" ".join(str(p["id"]) for p in json.load(sys.stdin)))'; }
old=" $(ids) "
"$TCPSTATE" "$@" > /dev/null 2> /tmp/kernel-cost.$$.err &
pid=$!
for _ in $(seq 200); do grep -q "^Tracing\|^Serving\|^Drawing" /tmp/kernel-cost.$$.err && break; sleep 0.05; done
mine=""; for i in $(ids); do [[ "$old" == *" $i "* ]] || mine="$mine $i"; done
stats() { bpftool prog show -j | python3 -c "
import json, sys
mine = set(int(x) for x in '$mine'.split())
progs = [p for p in json.load(sys.stdin) if p['id'] in mine]
print(json.dumps({p['name']: [p.get('run_cnt', 0), p.get('run_time_ns', 0)] for p in progs}))"; }
before=$(stats)
/tmp/tcpstate-bench.$$ -tcpstate "$TCPSTATE" -modes baseline -duration "${DURATION:-3s}" -warmup 0s -conns "${CONNS:-4}" 2>/dev/null | grep '^baseline' || true
after=$(stats)
kill -INT $pid; wait $pid || true; rm -f /tmp/kernel-cost.$$.err
python3 -c "
import json
a, b = json.loads('$before'), json.loads('$after')
conns = (b.get('set_state_btf', [0])[0] - a.get('set_state_btf', [0])[0]) / 10.65
total = 0
for n in sorted(b):
    c, t = b[n][0] - a.get(n, [0, 0])[0], b[n][1] - a.get(n, [0, 0])[1]
    total += t
    if c:
        print(f'  {n:24s} {c:9d} runs {t / c:6.0f} ns/run')
print(f'BPF time per connection: {total / 1000 / max(conns, 1):.2f} us ({conns:.0f} connections)')"
