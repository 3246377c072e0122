#!/bin/bash
# Lifecycle under IO. While fio writes the origin through fleece-origin (with
# crc32c verification of everything it wrote) and readers compare the view
# with the pre-session image: suspend/resume fleece-origin, suspend/resume
# the view, and reload fleece-origin's table (same line) - repeatedly. fio's
# verification passes (no origin write lost or misplaced) and every view
# read equals the point in time. Then the view is removed while fio writes:
# fleece-origin goes on, the session ends, and fio's data verifies again
# afterwards (verify_only).
. "$(dirname "$0")/lib.sh"

sz=$(dev_sectors $ORIGIN)
mib=$((1024 * 1024))
R=$((64 * mib))
ODM=t018o
odev=/dev/mapper/$ODM
vdev=/dev/mapper/t018v
otable="0 $sz fleece-origin $ORIGIN - 8"
ref=$WORK/ref.img
pattern t018 $R > $ref
dmsetup create $ODM --table "$otable"
dd if=$ref of=$odev bs=1M oflag=direct status=none
view_create t018v $ODM "0 $sz fleece $ORIGIN $SCRATCH" || fail "cannot create the view"
trap 'touch $WORK/stop; wait; dmsetup resume $ODM 2>/dev/null || true; dmsetup resume t018v 2>/dev/null || true' EXIT

# fio_origin NAME [ARGS]: two verifying writers on fleece-origin in [0, R).
fio_origin() {
	local name=$1; shift
	fio --output=$WORK/$name.out --filename=$odev --ioengine=libaio --direct=1 \
		--verify=crc32c --do_verify=1 --verify_fatal=1 --randseed=18 "$@" \
		--name=rand --rw=randwrite --bs=4k --iodepth=8 --offset=0 --size=$((R / 2)) --loops=2 \
		--name=seq --rw=write --bs=256k --iodepth=4 --offset=$((R / 2)) --size=$((R / 2)) --loops=4
}
reader() {
	local n=0 off len
	RANDOM=$BASHPID
	while [ ! -e $WORK/stop ]; do
		if [ $((n % 4)) = 0 ]; then
			off=0 len=$R
		else
			len=$(( (RANDOM % 2048 + 1) * 512 ))
			off=$(( ((RANDOM * 32768 + RANDOM) % ((R - len) / 512)) * 512 ))
		fi
		dev_cmp $vdev $off $len $ref 2>> $WORK/errors || echo "MISMATCH: view read $off+$len" >> $WORK/errors
		n=$((n + 1))
	done
	echo $n > $WORK/reads
}

rm -f $WORK/stop
: > $WORK/errors
reader &
rpid=$!
fio_origin fio1 &
fpid=$!
cycles=0
while kill -0 $fpid 2>/dev/null; do
	sleep 0.5
	dmsetup suspend $ODM; sleep 0.5; dmsetup resume $ODM
	sleep 0.5
	dmsetup suspend t018v; sleep 0.5; dmsetup resume t018v
	sleep 0.5
	dmsetup reload $ODM --table "$otable" || fail "reloading fleece-origin's table with a session failed"
	dmsetup suspend $ODM; dmsetup resume $ODM
	[ "$(dmsetup table $ODM)" = "$otable" ] || fail "fleece-origin table after reload: '$(dmsetup table $ODM)'"
	cycles=$((cycles + 1))
done
wait $fpid || { cat $WORK/fio1.out >&2; fail "fio (with verification) on fleece-origin failed"; }
touch $WORK/stop
wait $rpid
if grep -q MISMATCH $WORK/errors; then
	head -n 20 $WORK/errors >&2
	fail "$(grep -c MISMATCH $WORK/errors) view reads were not the point in time"
fi
[ $cycles -gt 0 ] || fail "fio ended before one suspend/resume/reload cycle"
[ "$(cat $WORK/reads)" -gt 0 ] || fail "no view read completed"
info "$cycles suspend/resume/reload cycles under IO; fio verified; $(cat $WORK/reads) view reads at the point in time"
dev_cmp $vdev 0 $R $ref || fail "view differs from the point in time after the IO"
[ "$(view_stat t018v state)" = Active ] || fail "view is $(view_stat t018v state)"
[ "$(view_stat t018v inflight)" = 0 ] || fail "copies_inflight $(view_stat t018v inflight) at rest"
[ "$(origin_sessions $ODM)" = 1 ] || fail "fleece-origin has $(origin_sessions $ODM) sessions after reloads, expected 1"

# Remove the view while fio writes the origin. The copies were all made by
# fio1, so fio2 is fast: its writes are paced (16384 random ones at 2000/s,
# some 8 s) so that it still runs 3 s in, whatever the machine.
fio_origin fio2 --randseed=1818 --rate_iops=,2000 &
fpid=$!
sleep 3
kill -0 $fpid 2>/dev/null || fail "fio ended before the view could be removed under IO"
dmsetup remove t018v || fail "removing the view under origin IO failed"
[ "$(origin_sessions $ODM)" = 0 ] || fail "fleece-origin has $(origin_sessions $ODM) sessions after the view was removed"
wait $fpid || { cat $WORK/fio2.out >&2; fail "fio (with verification) failed across the view's removal"; }
# Everything fio wrote is still there, read back later.
fio_origin fio3 --randseed=1818 --verify_only ||
	{ cat $WORK/fio3.out >&2; fail "fio's data did not verify after the view was removed"; }
dmsetup remove $ODM
info "view removed under IO; fleece-origin went on and its data verified"
