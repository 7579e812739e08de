# SPDX-License-Identifier: Apache-2.0
#
# make vmtest: boot Debian's newest 6.1 and 6.12 kernels in QEMU (TCG, no
# KVM needed) and run the tracer integration tests inside each, to prove the
# same BPF object loads and gives the same transition sequences there as on
# the host kernel (which `make test` covers). Needs root (apt-get), the
# Debian apt mirrors and the Go toolchain. See vmtest/README.md.
#
# Environment (all optional):
#   VMTEST_SERIES        kernel series to boot (default "6.1 6.12")
#   VMTEST_FLAVOUR       Debian kernel flavour (default cloud-amd64; or amd64)
#   VMTEST_RUN           the tests' -test.run regex
#   VMTEST_PARALLEL=0    boot the kernels one after the other, not at once
#   VMTEST_ACCEL         QEMU -accel (default tcg,thread=single)
#   VMTEST_ICOUNT        QEMU -icount (default shift=0; empty: real-time clock)
#   VMTEST_SMP           vCPUs per VM (default 1)
#   VMTEST_QEMU_ARGS     more QEMU arguments
#   VMTEST_TIMEOUT       seconds one VM may run before it is killed (420)
#   VMTEST_TEST_TIMEOUT  the test binary's own -test.timeout (200s)
#   VMTEST_NO_UPDATE=1   skip apt-get update (use the package lists as they are)
#   VMTEST_KEEP_LOGS=1   print every VM's console log, also on success
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-$(command -v go 2>/dev/null || echo /usr/local/go/bin/go)}
SERIES=${VMTEST_SERIES:-6.1 6.12}
FLAVOUR=${VMTEST_FLAVOUR:-cloud-amd64}
RUN=${VMTEST_RUN:-TestTransitions|TestOwnerAcrossProcesses|TestFilters|TestTimeWaitEndsOnReuse|TestTimeWaitReuseLoop|TestOrphanFinWait2Timeout|TestSequenceNumbers|TestLife|TestLoadsEverything|TestTallyMatchesEvents}
PARALLEL=${VMTEST_PARALLEL:-1}
# The guest clock counts executed instructions (-icount shift=0: 1 ns
# each), so TCG's overhead (e.g. translating freshly JITed BPF programs) is
# not seen by the guest as milliseconds passing inside kernel code; the BPF
# side's same-CPU time windows then behave as on hardware. icount needs
# single-threaded TCG, and with 2 vCPUs under icount the 6.1 kernel hangs
# at "x86: Booting SMP configuration:", hence one vCPU. See README.md.
ACCEL=${VMTEST_ACCEL:-tcg,thread=single}
ICOUNT=${VMTEST_ICOUNT-shift=0}
SMP=${VMTEST_SMP:-1}
QEMU_ARGS=${VMTEST_QEMU_ARGS:-}
VM_TIMEOUT=${VMTEST_TIMEOUT:-420}
TEST_TIMEOUT=${VMTEST_TEST_TIMEOUT:-380s}

CACHE=vmtest/.cache
DEBS=$CACHE/debs
KERNELS=$CACHE/kernels
BUILD=$CACHE/build
LOGS=$CACHE/logs
mkdir -p "$DEBS" "$KERNELS" "$BUILD" "$LOGS"

export DEBIAN_FRONTEND=noninteractive
say() { echo "vmtest: $*"; }
die() {
	echo "vmtest: $*" >&2
	exit 1
}

[ "$(id -u)" = 0 ] || die "run as root (apt-get installs qemu and downloads kernels)"
start=$(date +%s)

# --- host tools and package lists -------------------------------------------

apt_updated=
apt_update() {
	[ -z "$apt_updated" ] || return 0
	apt_updated=1
	apt-get update -qq || say "warning: apt-get update failed; using the package lists as they are"
}
[ "${VMTEST_NO_UPDATE:-}" = 1 ] || apt_update

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v ldd >/dev/null || need+=(libc-bin)
command -v ip >/dev/null || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
	say "installing ${need[*]}"
	apt_update
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# apt_download DIR PKG[=VERSION]; as root, apt would warn that its _apt
# sandbox user cannot write to DIR.
apt_download() { (cd "$1" && apt-get download -qq -o APT::Sandbox::User=root "$2"); }

# newest REGEX: "VERSION PACKAGE" of the linux-image package matching REGEX
# with the highest candidate version.
newest() {
	local names
	names=$(apt-cache pkgnames linux-image- | grep -E "$1" || true)
	[ -n "$names" ] || return 1
	# shellcheck disable=SC2086
	apt-cache show --no-all-versions $names 2>/dev/null |
		awk '/^Package:/ { p = $2 } /^Version:/ { print $2, p }' |
		sort -V | tail -n 1
}

# kernel SERIES: sets kver (Debian version) and kdir (cache directory with
# vmlinuz) for the newest image of SERIES, downloading it when needed.
kernel() {
	local series=$1 re found pkg deb tmp
	re="^linux-image-${series//./\\.}\.[0-9]+[-+][^ ]*-${FLAVOUR}(-unsigned)?\$"
	found=$(newest "$re" || true)
	if [ -z "$found" ] && [ "$series" = 6.12 ]; then
		# bookworm has 6.12 in bookworm-security; older mirrors only in backports.
		local list=/etc/apt/sources.list.d/vmtest-bookworm-backports.list
		if [ ! -e "$list" ]; then
			say "no 6.12 image in the configured apt sources; adding bookworm-backports in $list"
			echo "deb http://deb.debian.org/debian bookworm-backports main" >"$list"
			apt_updated=
			apt_update
			found=$(newest "$re" || true)
		fi
	fi
	[ -n "$found" ] || die "no linux-image-$series*-$FLAVOUR package is available from the configured apt sources (apt-cache search linux-image-$series)"
	kver=${found%% *}
	pkg=${found#* }
	kdir=$KERNELS/${pkg}_$kver
	[ -s "$kdir/vmlinuz" ] && return 0
	deb=$(find "$DEBS" -name "${pkg}_${kver//:/%3a}_*.deb" | head -n 1)
	if [ -z "$deb" ]; then
		say "downloading $pkg $kver"
		apt_download "$DEBS" "$pkg=$kver" || die "apt-get download $pkg=$kver failed"
		deb=$(find "$DEBS" -name "${pkg}_${kver//:/%3a}_*.deb" | head -n 1)
		[ -n "$deb" ] || die "apt-get download $pkg=$kver left no .deb in $DEBS"
	fi
	tmp=$(mktemp -d "$CACHE/extract.XXXXXX")
	dpkg-deb -x "$deb" "$tmp"
	mkdir -p "$kdir"
	cp "$tmp"/boot/vmlinuz-* "$kdir/vmlinuz"
	cp "$tmp"/boot/config-* "$kdir/config"
	echo "$pkg" >"$kdir/package"
	rm -rf "$tmp"
}

say "resolving kernels (flavour $FLAVOUR)"
names=() dirs=() vers=()
for s in $SERIES; do
	kernel "$s"
	names+=("$s") dirs+=("$kdir") vers+=("$kver")
	say "$s: $(cat "$kdir/package") $kver"
done

# --- initramfs: busybox, ip, the test binary, the probe ---------------------

busybox_deb=$(find "$DEBS" -name 'busybox-static_*.deb' | head -n 1)
if [ -z "$busybox_deb" ]; then
	say "downloading busybox-static"
	apt_download "$DEBS" busybox-static || die "apt-get download busybox-static failed"
	busybox_deb=$(find "$DEBS" -name 'busybox-static_*.deb' | head -n 1)
fi

say "building the integration test binary and the load probe"
CGO_ENABLED=0 "$GO" test -c -trimpath -o "$BUILD/tracer.test" ./tracer
CGO_ENABLED=0 "$GO" build -trimpath -o "$BUILD/probe" ./vmtest/probe

root=$BUILD/root
rm -rf "$root"
mkdir -p "$root"/{bin,dev,proc,sys,run,tmp,etc,var,lib64}
ln -s ../run "$root/var/run"
tmp=$(mktemp -d "$CACHE/extract.XXXXXX")
dpkg-deb -x "$busybox_deb" "$tmp"
cp "$tmp/bin/busybox" "$root/bin/busybox"
rm -rf "$tmp"
for applet in $("$root/bin/busybox" --list); do
	case $applet in busybox | ip) ;; *) ln -s busybox "$root/bin/$applet" ;; esac
done

# The real ip from iproute2 (busybox's ip has no netns), with its libraries
# and the dynamic loader at the paths ldd names.
ip_bin=$(readlink -f "$(command -v ip)")
cp "$ip_bin" "$root/bin/ip"
ldd "$ip_bin" | awk '/=> \// { print $3 } /^[[:space:]]*\// { print $1 }' |
	while read -r lib; do
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done

cp "$BUILD/tracer.test" "$BUILD/probe" tracer/tcpstate_bpfel.o "$root/"
cat >"$root/init" <<EOF
#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# vmtest init: mount what the integration tests need, run them, power off.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
mkdir -p /run/netns
mount -t tmpfs tmpfs /tmp
mount -t tracefs tracefs /sys/kernel/tracing
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
ip link set lo up
echo "VMTEST-KERNEL \$(cat /proc/version)"
/probe -obj /tcpstate_bpfel.o
echo "VMTEST-PROBE exit=\$?"
cd /tmp
CI=true /tracer.test -test.v -test.timeout=$TEST_TIMEOUT -test.run '$RUN'
echo "VMTEST-RESULT exit=\$?"
poweroff -f
EOF
chmod 755 "$root/init"
mknod -m 600 "$root/dev/console" c 5 1
initrd=$BUILD/initramfs.cpio.gz
bb=$PWD/$root/bin/busybox
(cd "$root" && find . | "$bb" cpio -o -H newc -R 0:0 2>/dev/null) | gzip -1 >"$initrd"

# --- boot -------------------------------------------------------------------

# boot SERIES KDIR KVER: run one VM, print its verdict, return 1 on failure.
boot() {
	local series=$1 kdir=$2 kver=$3 log=$LOGS/$1.log t0 secs rc=0 probe result splat name progs why
	t0=$(date +%s)
	# shellcheck disable=SC2086 # VMTEST_QEMU_ARGS is split into words
	timeout -k 10 "$VM_TIMEOUT" qemu-system-x86_64 -accel "$ACCEL" -cpu max -m 1024 -smp "$SMP" \
		-nographic -no-reboot -nic none ${ICOUNT:+-icount "$ICOUNT"} $QEMU_ARGS \
		-kernel "$kdir/vmlinuz" -initrd "$initrd" \
		-append "console=ttyS0 panic=-1 quiet" </dev/null >"$log.raw" 2>&1 || rc=$?
	tr -d '\r' <"$log.raw" >"$log"
	rm -f "$log.raw"
	secs=$(($(date +%s) - t0))
	probe=$(grep -a -o 'VMTEST-PROBE exit=[0-9]*' "$log" | tail -n 1 || true)
	result=$(grep -a -o 'VMTEST-RESULT exit=[0-9]*' "$log" | tail -n 1 || true)
	splat=$(grep -a -m 1 -E '\] (WARNING:|BUG:|Oops|Kernel panic)' "$log" || true)
	progs=$(grep -a -c '^probe: program .*: loaded$' "$log" || true)
	name="${kver%%-*} ($(cat "$kdir/package") $kver)"
	if [ "$probe" = "VMTEST-PROBE exit=0" ] && [ "$result" = "VMTEST-RESULT exit=0" ] && [ -z "$splat" ]; then
		say "$name: PASS (${secs}s; all $progs BPF programs load, tracer uses tp_btf, tests pass)"
		[ "${VMTEST_KEEP_LOGS:-}" != 1 ] || sed 's/^/    /' "$log"
		return 0
	fi
	probe=${probe#VMTEST-PROBE } result=${result#VMTEST-RESULT }
	why="probe ${probe:-did not finish}, tests ${result:-did not finish}"
	[ -z "$splat" ] || why="$why, kernel: ${splat#*] }"
	if [ $rc = 124 ] || [ $rc = 137 ]; then why="$why, killed after ${VM_TIMEOUT}s"; fi
	say "$name: FAIL ($why; ${secs}s). Console ($log):"
	sed 's/^/    /' "$log"
	say "$name: FAIL"
	return 1
}

say "booting: qemu-system-x86_64 -accel $ACCEL -cpu max -m 1024 -smp $SMP${ICOUNT:+ -icount $ICOUNT}${QEMU_ARGS:+ $QEMU_ARGS}"
failed=0
if [ "$PARALLEL" = 1 ]; then
	# Single-threaded TCG keeps one host CPU busy per VM: boot all at once.
	pids=()
	for i in "${!names[@]}"; do
		boot "${names[$i]}" "${dirs[$i]}" "${vers[$i]}" >"$LOGS/${names[$i]}.verdict" 2>&1 &
		pids+=($!)
	done
	for i in "${!pids[@]}"; do
		wait "${pids[$i]}" || failed=1
		cat "$LOGS/${names[$i]}.verdict"
	done
else
	for i in "${!names[@]}"; do
		boot "${names[$i]}" "${dirs[$i]}" "${vers[$i]}" || failed=1
	done
fi

say "host kernel $(uname -r): covered by make test"
say "$([ $failed = 0 ] && echo PASS || echo FAIL) in $(($(date +%s) - start))s"
exit $failed
