#!/usr/bin/env bash
# BPF time per second of an idle tcpstate on a host busy with timers but
# not with TCP: ./bench/timer-load.sh [tcpstate arguments...]   (as root)
# 500 threads sleep 1 ms in a loop and 200 timerfds fire every 1 ms, for
# 10 s, while tcpstate is attached; bpftool gives its programs' run time.
set -euo pipefail
cd "$(dirname "$0")/.."
TCPSTATE=${TCPSTATE:-bin/tcpstate}
trap 'sysctl -qw kernel.bpf_stats_enabled=0' EXIT
sysctl -qw kernel.bpf_stats_enabled=1
ids() { bpftool prog show -j | python3 -c 'import json,sys; print(" ".join(str(p["id"]) for p in json.load(sys.stdin)))'; }
old=" $(ids) "
"$TCPSTATE" "$@" > /dev/null 2> /tmp/timer-load.$$.err &
pid=$!
for _ in $(seq 200); do grep -q "^Tracing\|^Serving" /tmp/timer-load.$$.err && break; sleep 0.05; done
mine=""; for i in $(ids); do [[ "$old" == *" $i "* ]] || mine="$mine $i"; done
snap() { bpftool prog show -j | python3 -c "
import json, sys
mine = set(int(x) for x in '$mine'.split())
print(json.dumps({p['name']: [p.get('run_cnt', 0), p.get('run_time_ns', 0)] for p in json.load(sys.stdin) if p['id'] in mine}))"; }
a=$(snap)
python3 - <<'PY'
import ctypes, select, threading, time
end = time.time() + 10
def sleeper():
    while time.time() < end:
        time.sleep(0.001)
threads = [threading.Thread(target=sleeper) for _ in range(500)]
for t in threads:
    t.start()
libc = ctypes.CDLL(None, use_errno=True)
class Timespec(ctypes.Structure):
    _fields_ = [("s", ctypes.c_long), ("ns", ctypes.c_long)]
class Itimerspec(ctypes.Structure):
    _fields_ = [("interval", Timespec), ("value", Timespec)]
ep = select.epoll()
for _ in range(200):
    fd = libc.timerfd_create(1, 0o4000)  # CLOCK_MONOTONIC, TFD_NONBLOCK
    spec = Itimerspec(Timespec(0, 1000000), Timespec(0, 1000000))
    libc.timerfd_settime(fd, 0, ctypes.byref(spec), None)
    ep.register(fd, select.EPOLLIN)
n = 0
while time.time() < end:
    for fd, _ in ep.poll(0.01):
        try:
            n += int.from_bytes(__import__("os").read(fd, 8), "little")
        except BlockingIOError:
            pass
for t in threads:
    t.join()
print("timerfd expirations:", n)
PY
b=$(snap)
kill -INT $pid; wait $pid || true; rm -f /tmp/timer-load.$$.err
python3 -c "
import json
a, b = json.loads('$a'), json.loads('$b')
total = 0
for n in sorted(b):
    c, t = b[n][0] - a[n][0], b[n][1] - a[n][1]
    total += t
    if c:
        print(f'  {n:22s} {c / 10:10.0f} runs/s {t / 10 / 1e3:8.1f} us/s')
print(f'BPF run time: {total / 10 / 1e3:.1f} us per second ({total / 10 / 1e9 * 100:.3f}% of a CPU)')"
