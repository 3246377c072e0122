#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# tests/crash/powercut.sh: power cuts under heavy writes, on the host.
#
# Persistent disk files in build/crash/ (origin 256M, meta 16M, ref 256M)
# survive the VMs. Each VM (tests/crash/powercut-guest.sh) first checks the
# previous power cut: the fleece-origin must activate on the metadata, and
# every 4 KiB chunk where the origin differs from ref (the copy taken right
# after bitmap_clear, i.e. the last backup) must have its bit set in bitmap
# b. Then it clears b, copies the origin to ref, and writes as hard as it
# can (fio randwrite 4k/64k, direct at iodepth 16 and buffered with fsyncs,
# discards, write-zeroes) until the host cuts the power: tests/vm/run's
# --timeout kills QEMU at a random moment of the load (exit 124). Every
# other VM opens a backup transaction on b before its load (a view with
# "bitmap b"), so that cut also checks that activation merges the frozen
# set left on disk back into b.
#
# One VM both checks cut N and makes cut N+1, so N cuts take N+1 boots.
# The timeout is the time the previous VM took to start its load, plus a
# random 1-15 s: a VM boots in 20-40 s here, so a fixed 12-26 s would
# mostly cut before any write. A cut before the load (during the boot, the
# check or the copy) is checked too, but does not count towards the cuts.
#
# tests/vm/run does not look for kernel splats in a VM it killed (it exits
# 124 first); this script greps the console tail it prints instead. The
# last VM only checks, and exits normally, so its whole log is checked.
#
# Prints "PASS powercut-N ..." / "FAIL powercut-N: ..." per cut and ends
# with "powercut: N passed, N failed". FLEECE_POWERCUT_LOOPS (default 6)
# cuts under load; no new VM starts after FLEECE_POWERCUT_BUDGET seconds
# (default 420; 8 cuts take about 5 minutes on an idle 2-core host). A busy
# host makes fewer cuts in the budget: that is reported, and fails only
# below FLEECE_POWERCUT_MIN cuts (default 3), when the harness itself is
# broken. 'make crash' runs many more.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
cd "$top"
loops=${FLEECE_POWERCUT_LOOPS:-6}
budget=${FLEECE_POWERCUT_BUDGET:-420}
min_cuts=${FLEECE_POWERCUT_MIN:-3}
dir=$top/build/crash
mkdir -p "$dir"
rm -f "$dir/origin.img" "$dir/meta.img" "$dir/ref.img"
disks=(--disk "origin:256M:file=$dir/origin.img" --disk "meta:16M:file=$dir/meta.img"
       --disk "ref:256M:file=$dir/ref.img" --disk scratch:64M)
splat='Oops|BUG:|WARNING:|soft lockup|hard LOCKUP|blocked for more than|KASAN|UBSAN|general protection fault|Kernel panic|kernel BUG at|refcount_t:|kmemleak:|possible circular locking|list_add corruption|list_del corruption'
out=$dir/vm.out
err=$dir/vm.err
pass=0
failed=0
cuts=0
verify=0		# the cut the next VM checks (0: none)
t_load=45		# seconds from launch to the load, measured each time
start=$SECONDS

# vm TIMEOUT VERIFY LOAD: one VM; its output is shown and kept in $out,
# with the launch-relative time at which each marker line appeared.
vm() {
	local t0=$SECONDS line
	: > "$out"
	FLEECE_PC_VERIFY=$2 FLEECE_PC_LOAD=$3 FLEECE_PC_SEED=$RANDOM FLEECE_PC_TXN=$((n % 2)) \
		"$top/tests/vm/run" --mem 1024 --timeout "$1" "${disks[@]}" -- \
		"$here/powercut-guest.sh" 2> "$err" |
	while IFS= read -r line; do
		case $line in
		REF-DONE|LOAD-START|TXN-OPEN) echo "$line $((SECONDS - t0))" >> "$out" ;;
		*) echo "$line"; echo "$line" >> "$out" ;;
		esac
	done
	return "${PIPESTATUS[0]}"
}

result() {	# result LINE: count and print a PASS/FAIL line
	case $1 in
	PASS*) pass=$((pass + 1)) ;;
	*) failed=$((failed + 1)) ;;
	esac
	echo "$1"
}

n=0			# VMs started
while [ $cuts -lt "$loops" ] && [ $((SECONDS - start)) -lt "$budget" ]; do
	n=$((n + 1))
	timeout=$((t_load + RANDOM % 15 + 1))
	vm "$timeout" "$verify" 1
	rc=$?
	checked=
	# The check of the previous cut, printed by the guest. A VM cut before
	# it got that far leaves the disks as they were: the next one checks.
	if [ "$verify" != 0 ]; then
		checked=$(grep -E "^(PASS|FAIL) powercut-$verify\b" "$out" | head -n1)
		if [ -n "$checked" ]; then
			result "$checked" >/dev/null
		elif [ $rc != 124 ]; then
			checked="FAIL powercut-$verify: no result (VM exited $rc)"
			result "$checked"
		fi
	fi
	if [ $rc != 124 ]; then
		# Refused activation, a failed check or a broken VM: the disks can
		# no longer be trusted for further cuts.
		case $checked in
		FAIL*) ;;
		*) result "FAIL powercut-$n: the VM was to be cut but exited $rc" ;;
		esac
		sed -n '1,40p' "$err"
		verify=0
		break
	fi
	if grep -qE "$splat" "$err"; then
		result "FAIL powercut-$n: kernel splat before the power cut"
		grep -E "$splat" "$err" | head -n 10
	fi
	# Once a first backup exists, every cut is checked, wherever it fell
	# (boot, check, copy or load): the disks are consistent at any instant.
	grep -q '^REF-DONE ' "$out" && ref=1
	was=$verify
	# This cut is the next to check, unless the previous one still is.
	[ -n "${ref:-}" ] && { [ "$verify" = 0 ] || [ -n "$checked" ]; } && verify=$n
	load_at=$(sed -n 's/^LOAD-START //p' "$out")
	if [ -n "$load_at" ]; then
		cuts=$((cuts + 1))
		# Boots vary by tens of seconds with the host's load: follow a
		# slower VM at once, a faster one only a few seconds at a time.
		if [ $((load_at + 2)) -ge "$t_load" ]; then
			t_load=$((load_at + 2))
		else
			t_load=$((t_load - 4 > load_at + 2 ? t_load - 4 : load_at + 2))
		fi
		# The first check adds an export and a compare of 2 x 256 MiB.
		[ "$was" = 0 ] && [ "$verify" != 0 ] && t_load=$((t_load + 12))
		txn=
		grep -q '^TXN-OPEN ' "$out" && txn=", a backup transaction open"
		echo "  powercut-$n: cut $((timeout - load_at))s into the load (timeout ${timeout}s$txn)"
	else
		t_load=$((t_load + 15))
		echo "  powercut-$n: cut ${timeout}s after launch, before the load (not counted)"
	fi
done

# The last check, in a VM that is not cut.
if [ "$verify" != 0 ]; then
	vm 300 "$verify" 0
	rc=$?
	line=$(grep -E "^(PASS|FAIL) powercut-$verify\b" "$out" | head -n1)
	[ -n "$line" ] || line="FAIL powercut-$verify: no result (VM exited $rc)"
	result "$line" >/dev/null
	if [ $rc != 0 ]; then
		case $line in PASS*) result "FAIL powercut-final: VM exited $rc"; sed -n '1,40p' "$err" ;; esac
	fi
fi
if [ "$cuts" -lt "$min_cuts" ]; then
	result "FAIL powercut: only $cuts cuts under load within ${budget}s (at least $min_cuts expected)"
elif [ "$cuts" -lt "$loops" ]; then
	echo "  powercut: $cuts of $loops cuts within the ${budget}s budget (a busy host)"
fi
echo "powercut: $pass passed, $failed failed ($cuts cuts in $((SECONDS - start))s)"
[ "$failed" -eq 0 ]
