#!/bin/bash
# Another user of this machine's bpffs, until killed: in a loop it loads, attaches,
# detaches and unloads procmon-ctl instances of its own (neighbour-*), runs `doctor`
# and a short `run` (procmon-doctor-<pid>, procmon-run-<pid>, as a second test suite
# would), creates and removes a pinned map and an empty directory under /sys/fs/bpf,
# and forks under a command line that is not UTF-8.
# Pin dirs, programs, maps and links come and go while the suite runs next to it:
#
#     scripts/noisy_neighbour.sh & .venv/bin/pytest -v; kill $!
#
# As root, after `make`.  NEIGHBOUR_PAUSE (s, default 0.2) is the pause between rounds.
set -u

here=$(cd "$(dirname "$0")/.." && pwd)
ctl=${PROCMON_CTL:-$here/.venv/bin/procmon-ctl}
pause=${NEIGHBOUR_PAUSE:-0.2}
bpffs=/sys/fs/bpf
tag=neighbour-$$

cleanup() {
	trap - EXIT INT TERM
	for d in "$bpffs/$tag"-*; do
		[ -e "$d" ] || continue
		"$ctl" --pin-dir "$d" unload >/dev/null 2>&1
		rm -rf "$d"
	done
	rm -f /run/procmon-ctl/sys_fs_bpf_"$tag"-*.lock
	exit 0
}
trap cleanup EXIT INT TERM

[ "$(id -u)" = 0 ] || { echo "noisy_neighbour: run as root" >&2; exit 1; }
[ -x "$ctl" ] || { echo "noisy_neighbour: no $ctl (run make)" >&2; exit 1; }

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
