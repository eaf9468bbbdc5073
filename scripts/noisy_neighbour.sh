#!/bin/bash
# Another user of this machine, until killed: what a shared CI runner or a developer's
# machine looks like to the test suite.
#
# - Instances of its own (neighbour-*): in a loop it loads, attaches, detaches and
#   unloads them, runs `doctor` and a short `run` (procmon-doctor-<pid>,
#   procmon-run-<pid>, as a second test suite would), creates and removes a pinned
#   map and an empty directory under /sys/fs/bpf, and forks under a command line
#   that is not UTF-8.
# - Storms (scripts/bench/storm.c, built into a temporary directory): bursts of forks,
#   execs and threads, each as fast as one process makes them (a few thousand
#   processes or tens of thousands of threads a second here), with a pause between.
#   Every instance loaded on the machine, the suite's own included, sees them.
#
# Pin dirs, programs, maps and links come and go while the suite runs next to it:
#
#     scripts/noisy_neighbour.sh & .venv/bin/pytest -v; kill $!
#
# As root, after `make`.  NEIGHBOUR_PAUSE (s, default 0.2) is the pause between rounds
# of the instance loop; NEIGHBOUR_STORM_SECONDS (default 2) how long each burst lasts
# and NEIGHBOUR_STORM_PAUSE (default 1) the pause after it; NEIGHBOUR_STORMS=0 leaves
# the storms out.
set -u

here=$(cd "$(dirname "$0")/.." && pwd)
ctl=${PROCMON_CTL:-$here/.venv/bin/procmon-ctl}
pause=${NEIGHBOUR_PAUSE:-0.2}
storm_seconds=${NEIGHBOUR_STORM_SECONDS:-2}
storm_pause=${NEIGHBOUR_STORM_PAUSE:-1}
bpffs=/sys/fs/bpf
tag=neighbour-$$
work=$(mktemp -d /tmp/noisy-neighbour.XXXXXX)
storms=

cleanup() {
	trap - EXIT INT TERM
	[ -n "$storms" ] && kill "$storms" 2>/dev/null && wait "$storms" 2>/dev/null
	for d in "$bpffs/$tag"-*; do
		[ -e "$d" ] || continue
		"$ctl" --pin-dir "$d" unload --force >/dev/null 2>&1
		rm -rf "$d"
	done
	rm -f /run/procmon-ctl/sys_fs_bpf_"$tag"-*.lock
	rm -rf "$work"
	exit 0
}
trap cleanup EXIT INT TERM

[ "$(id -u)" = 0 ] || { echo "noisy_neighbour: run as root" >&2; exit 1; }
[ -x "$ctl" ] || { echo "noisy_neighbour: no $ctl (run make)" >&2; exit 1; }

# Bursts of forks, execs and threads, one kind after another, until killed.  Each burst
# is bounded by time (storm stops at COUNT or SECONDS): COUNT is only a ceiling.
storm_loop() {
	trap 'kill $burst 2>/dev/null; exit 0' TERM
	while :; do
		for mode in fork exec thread; do
			"$work/storm" "$mode" 10000000 "$storm_seconds" >>"$work/storms.jsonl" 2>&1 &
			burst=$!
			wait "$burst"
			sleep "$storm_pause"
		done
	done
}

if [ "${NEIGHBOUR_STORMS:-1}" != 0 ]; then
	cc=$(command -v clang || command -v cc) || { echo "noisy_neighbour: no C compiler" >&2; exit 1; }
	"$cc" -O2 -pthread "$here/scripts/bench/storm.c" -o "$work/storm" ||
		{ echo "noisy_neighbour: cannot build storm" >&2; exit 1; }
	storm_loop &
	storms=$!
fi

i=0
while :; do
	i=$((i + 1))
	# A few names in turn, so that its lock files in /run/procmon-ctl do not pile up.
	pin=$bpffs/$tag-$((i % 3))
	"$ctl" --pin-dir "$pin" load >/dev/null 2>&1
	if [ $((i % 2)) = 0 ]; then
		"$ctl" --pin-dir "$pin" attach >/dev/null 2>&1
		sleep "$pause"
		[ $((i % 4)) = 0 ] && "$ctl" --pin-dir "$pin" detach >/dev/null 2>&1
	fi
	bpftool map create "$bpffs/$tag-map" type hash key 4 value 4 entries 1 name n >/dev/null 2>&1
	mkdir -p "$bpffs/$tag-dir"
	sleep "$pause"
	"$ctl" --pin-dir "$pin" unload >/dev/null 2>&1
	rm -f "$bpffs/$tag-map"
	rmdir "$bpffs/$tag-dir" 2>/dev/null
	# A process whose command line is not UTF-8 forks (tracers print it).
	sh -c '/bin/true; /bin/true' $'neighbour-caf\xe9'
	case $((i % 10)) in
	3) "$ctl" doctor >/dev/null 2>&1 ;;
	7)
		"$ctl" run --duration 0.3 >/dev/null 2>&1 &
		run=$!
		wait "$run"
		rm -f /run/procmon-ctl/sys_fs_bpf_procmon-run-"$run".*.lock
		;;
	esac
	sleep "$pause"
done
