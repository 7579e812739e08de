# SPDX-License-Identifier: Apache-2.0
#
# make vmtest: boot Debian's kernels in QEMU (TCG, no KVM needed) - amd64
# and arm64, 6.1 and 6.12 - and run the tracer integration tests inside
# each, to prove the same BPF object loads and gives the same transition
# sequences there as on the host kernel (which `make test` covers); one run
# takes the classic-tracepoint path (--kernel-btf, /sys/kernel/btf/vmlinux
# hidden). Needs root (apt-get), the Debian apt mirrors and the Go
# toolchain. See vmtest/README.md.
#
# Environment (all optional):
#   VMTEST_CONFIGS       the VM runs, each ARCH/SERIES[/PATH[:VAR=VAL,...]]
#                        (default below); ARCH x86_64 or aarch64 (amd64,
#                        arm64 too), PATH tp_btf (default), classic, or any
#                        label (tp_btf, named); VAR=VAL go into the tests'
#                        environment, e.g. TCPSTATE_TEST_HOOKS=tracepoint
#   VMTEST_ENV           VAR=VAL ... for the tests' environment in every run
#   VMTEST_FLAVOUR       Debian kernel flavour: cloud (default) or generic
#   VMTEST_RUN           the tests' -test.run regex (tp_btf and labelled runs)
#   VMTEST_RUN_CLASSIC   the tests' -test.run regex in classic runs
#   VMTEST_PARALLEL      how many VMs run at once (default 2; 0 or 1: one by one)
#   VMTEST_ACCEL         QEMU -accel (default tcg,thread=single)
#   VMTEST_ICOUNT        QEMU -icount (default shift=0; empty: real-time clock)
#   VMTEST_SMP           vCPUs per VM (default 1)
#   VMTEST_CPU_aarch64   QEMU -cpu for arm64 (default max,pauth-impdef=on)
#   VMTEST_QEMU_ARGS     more QEMU arguments
#   VMTEST_TIMEOUT       seconds one VM may run before it is killed (600;
#                        twice that for aarch64)
#   VMTEST_TEST_TIMEOUT  the test binary's own -test.timeout (560s; twice
#                        that for aarch64)
#   VMTEST_NO_UPDATE=1   skip apt-get update (use the package lists as they are)
#   VMTEST_KEEP_LOGS=1   print every VM's console log, also on success
#   VMTEST_SERIES        old form: "6.1 6.12" means x86_64/6.1 x86_64/6.12
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-$(command -v go 2>/dev/null || echo /usr/local/go/bin/go)}
# Longest first: with two at a time, the short ones fill in behind. Each
# hook choice of the tracer (tracer.Hooks) runs somewhere: fentry forced on
# the 6.12s, the tracer's own choice on the 6.1s, tracepoints forced on one
# 6.1, and (always) on the classic path.
CONFIGS=${VMTEST_CONFIGS:-aarch64/6.12/tp_btf:TCPSTATE_TEST_HOOKS=fentry x86_64/6.12/tp_btf:TCPSTATE_TEST_HOOKS=fentry aarch64/6.1 x86_64/6.1 x86_64/6.1/tp_btf:TCPSTATE_TEST_HOOKS=tracepoint aarch64/6.1/classic x86_64/6.1/classic}
if [ -z "${VMTEST_CONFIGS:-}" ] && [ -n "${VMTEST_SERIES:-}" ]; then
	CONFIGS=$(for s in $VMTEST_SERIES; do printf 'x86_64/%s ' "$s"; done)
fi
FLAVOUR=${VMTEST_FLAVOUR:-cloud}
RUN=${VMTEST_RUN:-TestTransitions|TestOwnerAcrossProcesses|TestOwnerOfAbortiveClose|TestFilters|TestTimeWaitEndsOnReuse|TestTimeWaitReuseLoop|TestServerTimeWaitReusedBySyn|TestOrphanFinWait2Timeout|TestSequenceNumbers|TestLife|TestLoadsEverything|TestTallyMatchesEvents|TestTimeWaitEndsWithItsNamespace|TestWhy|TestNoSocketFlood|TestSweep}
# The classic path follows no TIME_WAIT (the probe checks that it says
# so): the tests that expect nothing of TIME_WAIT there (TestTransitions
# expects the kernel's FIN_WAIT2 -> CLOSE instead), and start their tracers
# with startTracer, which gives them --kernel-btf.
RUN_CLASSIC=${VMTEST_RUN_CLASSIC:-TestTransitions|TestOwnerAcrossProcesses|TestFilters|TestSequenceNumbers}
PARALLEL=${VMTEST_PARALLEL:-2}
# The guest clock counts executed instructions (-icount shift=0: 1 ns
# each), so TCG's overhead (e.g. translating freshly JITed BPF programs) is
# not seen by the guest as milliseconds passing inside kernel code; the BPF
# side's same-CPU time windows then behave as on hardware. icount needs
# single-threaded TCG, and with 2 vCPUs under icount the 6.1 kernel hangs
# at "x86: Booting SMP configuration:", hence one vCPU. See README.md.
ACCEL=${VMTEST_ACCEL:-tcg,thread=single}
ICOUNT=${VMTEST_ICOUNT-shift=0}
SMP=${VMTEST_SMP:-1}
# Pointer authentication as the architecture defines it (QARMA) costs TCG
# much time; the implementation-defined algorithm is cheap.
CPU_aarch64=${VMTEST_CPU_aarch64:-max,pauth-impdef=on}
QEMU_ARGS=${VMTEST_QEMU_ARGS:-}
VM_TIMEOUT=${VMTEST_TIMEOUT:-600}
TEST_TIMEOUT=${VMTEST_TEST_TIMEOUT:-560s}
GLOBAL_ENV=${VMTEST_ENV:-}

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

# --- the runs ----------------------------------------------------------------

# Per architecture: Debian's name (Go's too), the QEMU binary and its
# package, the machine and the console.
debarch() { case $1 in x86_64) echo amd64 ;; aarch64) echo arm64 ;; esac; }
qemu_pkg() { case $1 in x86_64) echo qemu-system-x86 ;; aarch64) echo qemu-system-arm ;; esac; }
qemu_machine() { case $1 in x86_64) echo "-cpu max" ;; aarch64) echo "-machine virt -cpu $CPU_aarch64" ;; esac; }
console() { case $1 in x86_64) echo ttyS0 ;; aarch64) echo ttyAMA0 ;; esac; }

# VMTEST_CONFIGS as parallel arrays: arch, series, path, environment.
c_arch=() c_series=() c_path=() c_env=() archs=()
for conf in $CONFIGS; do
	spec=${conf%%:*} env=
	[ "$spec" = "$conf" ] || env=${conf#*:}
	IFS=/ read -r arch series path extra <<<"$spec"
	case $arch in amd64) arch=x86_64 ;; arm64) arch=aarch64 ;; esac
	case $arch in x86_64 | aarch64) ;; *) die "VMTEST_CONFIGS: $conf: the architecture is x86_64 or aarch64" ;; esac
	[ -n "$series" ] && [ -z "$extra" ] || die "VMTEST_CONFIGS: $conf: want ARCH/SERIES[/PATH[:VAR=VAL,...]]"
	c_arch+=("$arch") c_series+=("$series") c_path+=("${path:-tp_btf}") c_env+=("${env//,/ }")
	[[ " ${archs[*]} " == *" $arch "* ]] || archs+=("$arch")
done
[ ${#c_arch[@]} -gt 0 ] || die "VMTEST_CONFIGS is empty"

# --- host tools and package lists -------------------------------------------

apt_updated=
apt_update() {
	[ -z "$apt_updated" ] || return 0
	apt_updated=1
	apt-get update -qq || say "warning: apt-get update failed; using the package lists as they are"
}
[ "${VMTEST_NO_UPDATE:-}" = 1 ] || apt_update

# A foreign architecture's kernels, busybox and ip come from Debian's
# packages of that architecture.
host_da=$(dpkg --print-architecture)
for arch in "${archs[@]}"; do
	da=$(debarch "$arch")
	if [ "$da" != "$host_da" ] && ! dpkg --print-foreign-architectures | grep -qx "$da"; then
		say "dpkg --add-architecture $da (for its kernels, busybox and ip)"
		dpkg --add-architecture "$da"
		apt_updated=
		apt_update
	fi
done

need=()
for arch in "${archs[@]}"; do
	command -v "qemu-system-$arch" >/dev/null || need+=("$(qemu_pkg "$arch")")
done
command -v ldd >/dev/null || need+=(libc-bin)
command -v ip >/dev/null || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
	say "installing ${need[*]}"
	apt_update
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# apt_opts: more options for apt-get and apt-cache (an older release's
# package lists, see old_release).
apt_opts=()

# apt_download DIR PKG[=VERSION]; as root, apt would warn that its _apt
# sandbox user cannot write to DIR.
apt_download() { (cd "$1" && apt-get "${apt_opts[@]}" download -qq -o APT::Sandbox::User=root "$2"); }

# deb PKG[:ARCH]: the path of the newest cached .deb of PKG for ARCH (the
# host's by default), downloaded when missing.
deb() {
	local name=${1%%:*} da=${1#*:} f
	[ "$da" != "$1" ] || da=$host_da
	f=$(find "$DEBS" -name "${name}_*_${da}.deb" | sort -V | tail -n 1)
	if [ -z "$f" ]; then
		apt_download "$DEBS" "$name:$da" >&2 || die "apt-get download $name:$da failed"
		f=$(find "$DEBS" -name "${name}_*_${da}.deb" | sort -V | tail -n 1)
		[ -n "$f" ] || die "apt-get download $name:$da left no .deb in $DEBS"
	fi
	echo "$f"
}

# newest REGEX: "VERSION PACKAGE" of the linux-image package matching REGEX
# with the highest candidate version.
newest() {
	local names
	names=$(apt-cache "${apt_opts[@]}" pkgnames linux-image- | grep -E "$1" || true)
	[ -n "$names" ] || return 1
	# shellcheck disable=SC2086
	apt-cache "${apt_opts[@]}" show --no-all-versions $names 2>/dev/null |
		awk '/^Package:/ { p = $2 } /^Version:/ { print $2, p }' |
		sort -V | tail -n 1
}

# old_release SERIES: for the kernel series of an older Debian release
# (5.10: bullseye), sets apt_opts to package lists of that release alone, in
# vmtest/.cache/apt-RELEASE (updated once a day): the host's apt sources
# stay as they are. Returns 1 for other series.
old_release() {
	local rel dir
	case $1 in 5.10) rel=bullseye ;; *) return 1 ;; esac
	dir=$PWD/$CACHE/apt-$rel
	mkdir -p "$dir/lists/partial" "$dir/archives/partial"
	# The release itself: its -security pool answered 404 here (2026-12-02).
	echo "deb http://deb.debian.org/debian $rel main" >"$dir/sources.list"
	apt_opts=(-o "Dir::Etc::SourceList=$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
		-o "Dir::State::Lists=$dir/lists" -o "Dir::Cache::Archives=$dir/archives"
		-o "Dir::Cache::pkgcache=$dir/pkgcache.bin" -o "Dir::Cache::srcpkgcache=$dir/srcpkgcache.bin")
	if [ -z "$(find "$dir/lists" -maxdepth 1 -name '*Packages*' -mmin -1440)" ] || grep -q security "$dir/lists"/*Packages* 2>/dev/null; then
		say "package lists of $rel (for $1) in $dir"
		apt-get "${apt_opts[@]}" update -qq || die "apt-get update of $rel's package lists failed"
	fi
}

# kernel ARCH SERIES: sets kver (Debian version) and kdir (cache directory
# with vmlinuz) for the newest image of SERIES, downloading it when needed.
kernel() {
	local arch=$1 series=$2 flavour re found pkg deb tmp
	flavour=$(debarch "$arch")
	[ "$FLAVOUR" = generic ] || flavour=$FLAVOUR-$flavour
	re="^linux-image-${series//./\\.}\.[0-9]+[-+][^ ]*-${flavour}(-unsigned)?\$"
	apt_opts=()
	old_release "$series" || true
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
	[ -n "$found" ] || die "no linux-image-$series*-$flavour package is available from the configured apt sources (apt-cache search linux-image-$series)"
	kver=${found%% *}
	pkg=${found#* }
	kdir=$KERNELS/${pkg}_$kver
	if [ -s "$kdir/vmlinuz" ]; then
		apt_opts=()
		return 0
	fi
	deb=$(find "$DEBS" -name "${pkg}_${kver//:/%3a}_*.deb" | head -n 1)
	if [ -z "$deb" ]; then
		say "downloading $pkg $kver"
		apt_download "$DEBS" "$pkg=$kver" || die "apt-get download $pkg=$kver failed"
		deb=$(find "$DEBS" -name "${pkg}_${kver//:/%3a}_*.deb" | head -n 1)
		[ -n "$deb" ] || die "apt-get download $pkg=$kver left no .deb in $DEBS"
	fi
	apt_opts=()
	tmp=$(mktemp -d "$CACHE/extract.XXXXXX")
	dpkg-deb -x "$deb" "$tmp"
	mkdir -p "$kdir"
	cp "$tmp"/boot/vmlinuz-* "$kdir/vmlinuz"
	cp "$tmp"/boot/config-* "$kdir/config"
	echo "$pkg" >"$kdir/package"
	rm -rf "$tmp"
}

say "resolving kernels (flavour $FLAVOUR)"
c_kdir=() c_kver=()
for i in "${!c_arch[@]}"; do
	kernel "${c_arch[$i]}" "${c_series[$i]}"
	c_kdir+=("$kdir") c_kver+=("$kver")
	say "${c_arch[$i]} ${c_series[$i]} ${c_path[$i]}: $(cat "$kdir/package") $kver"
done

# --- an initramfs per architecture: busybox, ip, the test binary, the probe -

# The host's busybox lists the applets and packs the archives, whatever
# the guest's architecture.
host_bb=$BUILD/busybox.$host_da
if [ ! -x "$host_bb" ]; then
	tmp=$(mktemp -d "$CACHE/extract.XXXXXX")
	dpkg-deb -x "$(deb busybox-static)" "$tmp"
	cp "$tmp/bin/busybox" "$host_bb"
	rm -rf "$tmp"
fi

# ip_libs: the libraries (and loader) of the host's real ip, as ldd names them.
ip_bin=$(readlink -f "$(command -v ip)")
ip_libs() { ldd "$ip_bin" | awk '/=> \// { print $3 } /^[[:space:]]*\// { print $1 }'; }

# foreign_ip ARCH ROOT: iproute2's ip of ARCH into ROOT/bin, with the
# libraries the host's ip has, from the packages of ARCH that hold them on
# the host, and the loader of ARCH.
foreign_ip() {
	local arch=$1 root=$2 da triplet sysroot lib pkg pkgs=(iproute2 libc6) f loader
	da=$(debarch "$arch") triplet=$arch-linux-gnu
	sysroot=$BUILD/sysroot-$da
	rm -rf "$sysroot"
	mkdir -p "$sysroot"
	while read -r lib; do
		pkg=$(dpkg -S "$lib" 2>/dev/null || dpkg -S "$(readlink -f "$lib")" 2>/dev/null || dpkg -S "/usr$lib" 2>/dev/null) ||
			die "no package owns $lib (a library of $ip_bin)"
		pkg=${pkg%%:*}
		[[ " ${pkgs[*]} " == *" $pkg "* ]] || pkgs+=("$pkg")
	done < <(ip_libs)
	for pkg in "${pkgs[@]}"; do
		dpkg-deb -x "$(deb "$pkg:$da")" "$sysroot"
	done
	f=$(find "$sysroot/bin" "$sysroot/sbin" -name ip -type f 2>/dev/null | head -n 1)
	[ -n "$f" ] || die "iproute2:$da has no ip"
	cp "$f" "$root/bin/ip"
	mkdir -p "$root/lib/$triplet"
	while read -r lib; do
		case $lib in
		*/ld-linux*) lib=$(find "$sysroot" -name "ld-linux-${arch//_/-}.so.*" -not -type d | head -n 1) ;;
		*) lib=$(find "$sysroot" -name "$(basename "$lib")" -not -type d | head -n 1) ;;
		esac
		[ -n "$lib" ] || die "a library of ip is missing from the $da packages (${pkgs[*]})"
		cp -L "$lib" "$root/lib/$triplet/"
	done < <(ip_libs)
	# The loader at the path the ELF header names (/lib/ld-linux-aarch64.so.1).
	loader=$(basename "$(find "$root/lib/$triplet" -name 'ld-linux-*' | head -n 1)")
	ln -s "$triplet/$loader" "$root/lib/$loader"
}

# initramfs ARCH: builds $BUILD/initramfs-ARCH.cpio.gz.
initramfs() {
	local arch=$1 da root tmp applet bb
	da=$(debarch "$arch")
	say "$arch: building the integration test binary and the load probe (GOARCH=$da)"
	CGO_ENABLED=0 GOARCH=$da "$GO" test -c -trimpath -o "$BUILD/tracer.test.$da" ./tracer
	CGO_ENABLED=0 GOARCH=$da "$GO" build -trimpath -o "$BUILD/probe.$da" ./vmtest/probe

	root=$BUILD/root-$da
	rm -rf "$root"
	mkdir -p "$root"/{bin,dev,proc,sys,run,tmp,etc,var,lib64,btf}
	ln -s ../run "$root/var/run"
	tmp=$(mktemp -d "$CACHE/extract.XXXXXX")
	dpkg-deb -x "$(deb "busybox-static:$da")" "$tmp"
	cp "$tmp/bin/busybox" "$root/bin/busybox"
	rm -rf "$tmp"
	for applet in $("$host_bb" --list); do
		case $applet in busybox | ip) ;; *) ln -s busybox "$root/bin/$applet" ;; esac
	done

	if [ "$da" = "$host_da" ]; then
		# The real ip from iproute2 (busybox's ip has no netns), with its
		# libraries and the dynamic loader at the paths ldd names.
		cp "$ip_bin" "$root/bin/ip"
		ip_libs | while read -r lib; do
			mkdir -p "$root$(dirname "$lib")"
			cp -L "$lib" "$root$lib"
		done
	else
		foreign_ip "$arch" "$root"
	fi

	cp "$BUILD/tracer.test.$da" "$root/tracer.test"
	cp "$BUILD/probe.$da" "$root/probe"
	cp tracer/tcpstate_bpfel.o "$root/"
	# A run's settings come on the kernel command line: the kernel hands
	# the VAR=VAL words it does not know to init, as its environment.
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
# Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK (8 MiB here), which
# nothing in tcpstate raises: VMTEST_ULIMIT_L=unlimited (a run's setting)
# shows what else such a kernel does.
[ -z "\$VMTEST_ULIMIT_L" ] || ulimit -l "\$VMTEST_ULIMIT_L"
echo "VMTEST-KERNEL \$(cat /proc/version)"
probe_args=
run='$RUN'
if [ "\$VMTEST_PATH" = classic ]; then
	# As on a kernel built without CONFIG_DEBUG_INFO_BTF: the BTF comes
	# from a file (as from BTFHub), /sys/kernel/btf is an empty directory.
	cp /sys/kernel/btf/vmlinux /btf/vmlinux
	mount -t tmpfs -o ro,size=4k tmpfs /sys/kernel/btf
	[ ! -e /sys/kernel/btf/vmlinux ] || echo "VMTEST-CLASSIC: /sys/kernel/btf/vmlinux is still there"
	export TCPSTATE_TEST_KERNEL_BTF=/btf/vmlinux
	probe_args="-kernel-btf /btf/vmlinux"
	run='$RUN_CLASSIC'
fi
echo "VMTEST-ENV \$(env | grep -E '^(TCPSTATE_|VMTEST_)' | sort | tr '\n' ' ')"
/probe -obj /tcpstate_bpfel.o -path "\$VMTEST_PATH" \$probe_args
echo "VMTEST-PROBE exit=\$?"
cd /tmp
CI=true /tracer.test -test.v -test.timeout=$TEST_TIMEOUT -test.run "\$run"
echo "VMTEST-RESULT exit=\$?"
poweroff -f
EOF
	chmod 755 "$root/init"
	mknod -m 600 "$root/dev/console" c 5 1
	bb=$PWD/$host_bb
	(cd "$root" && find . | "$bb" cpio -o -H newc -R 0:0 2>/dev/null) | gzip -1 >"$BUILD/initramfs-$arch.cpio.gz"
}

for arch in "${archs[@]}"; do
	initramfs "$arch"
done

# --- boot -------------------------------------------------------------------

# boot I: run VM run I, print its verdict, return 1 on failure.
boot() {
	local i=$1 arch series path kdir kver env name log t0 secs rc=0 probe result splat progs why timeout n skipped uses hooks
	arch=${c_arch[$i]} series=${c_series[$i]} path=${c_path[$i]} kdir=${c_kdir[$i]} kver=${c_kver[$i]}
	env="VMTEST_PATH=$path $GLOBAL_ENV ${c_env[$i]}"
	log=$LOGS/$i-$arch-$series-$path.log
	timeout=$VM_TIMEOUT
	[ "$arch" = x86_64 ] || timeout=$((VM_TIMEOUT * 2))
	t0=$(date +%s)
	# shellcheck disable=SC2046,SC2086 # the machine, VMTEST_QEMU_ARGS and env are split into words
	timeout -k 10 "$timeout" "qemu-system-$arch" -accel "$ACCEL" $(qemu_machine "$arch") -m 1024 -smp "$SMP" \
		-nographic -no-reboot -nic none ${ICOUNT:+-icount "$ICOUNT"} $QEMU_ARGS \
		-kernel "$kdir/vmlinuz" -initrd "$BUILD/initramfs-$arch.cpio.gz" \
		-append "console=$(console "$arch") panic=-1 quiet $env" </dev/null >"$log.raw" 2>&1 || rc=$?
	tr -d '\r' <"$log.raw" >"$log"
	rm -f "$log.raw"
	secs=$(($(date +%s) - t0))
	probe=$(grep -a -o 'VMTEST-PROBE exit=[0-9]*' "$log" | tail -n 1 || true)
	result=$(grep -a -o 'VMTEST-RESULT exit=[0-9]*' "$log" | tail -n 1 || true)
	splat=$(grep -a -m 1 -E '\] (WARNING:|BUG:|Oops|Kernel panic)|^VMTEST-CLASSIC' "$log" || true)
	progs=$(grep -a -c '^probe: program .*: loaded$' "$log" || true)
	n=$(grep -a -c -E '^ *--- PASS' "$log" || true)
	skipped=$(grep -a -c -E '^ *--- SKIP' "$log" || true)
	uses=$(grep -a -o -m 1 'probe: tracer.New uses .*' "$log" || true)
	hooks=$(grep -a -o -m 1 'probe: tracer.New uses .*, hooks [a-z]*' "$log" || true)
	name="$arch ${kver%%-*} $path${hooks:+ hooks=${hooks##* }}"
	if [ "$probe" = "VMTEST-PROBE exit=0" ] && [ "$result" = "VMTEST-RESULT exit=0" ] && [ -z "$splat" ] && [ "$n" -gt 0 ]; then
		say "PASS $name ($n tests and subtests, $skipped skipped, $secs s; $(cat "$kdir/package") $kver; $progs BPF programs load, ${uses#probe: })"
		[ "${VMTEST_KEEP_LOGS:-}" != 1 ] || sed 's/^/    /' "$log"
		return 0
	fi
	probe=${probe#VMTEST-PROBE } result=${result#VMTEST-RESULT }
	why="probe ${probe:-did not finish}, tests ${result:-did not finish}"
	[ "$n" -gt 0 ] || why="$why, no test passed"
	[ -z "$splat" ] || why="$why, ${splat#*] }"
	if [ $rc = 124 ] || [ $rc = 137 ]; then why="$why, killed after ${timeout}s"; fi
	say "FAIL $name ($why; $secs s). Console ($log):"
	sed 's/^/    /' "$log"
	say "FAIL $name ($(cat "$kdir/package") $kver)"
	return 1
}

[ "$PARALLEL" -ge 1 ] 2>/dev/null || PARALLEL=1
say "booting ${#c_arch[@]} VMs, $PARALLEL at a time: -accel $ACCEL -smp $SMP${ICOUNT:+ -icount $ICOUNT}${QEMU_ARGS:+ $QEMU_ARGS}"
failed=0
# Single-threaded TCG keeps one host CPU busy per VM: PARALLEL of them at
# a time; the verdicts in the order of VMTEST_CONFIGS.
pids=()
for i in "${!c_arch[@]}"; do
	while [ "$(jobs -rp | wc -l)" -ge "$PARALLEL" ]; do wait -n || true; done
	boot "$i" >"$LOGS/run-$i.verdict" 2>&1 &
	pids+=($!)
done
for i in "${!pids[@]}"; do
	wait "${pids[$i]}" 2>/dev/null || true # wait -n may have taken its status
	cat "$LOGS/run-$i.verdict"
	grep -q '^vmtest: PASS ' "$LOGS/run-$i.verdict" || failed=1
done

say "host kernel $(uname -r): covered by make test"
say "$([ $failed = 0 ] && echo PASS || echo FAIL) in $(($(date +%s) - start))s"
exit $failed
