#!/bin/bash
# A view stays exactly at its point in time while the origin is under heavy
# mixed IO: fio writers on fleece-origin (4 KiB random writes, 1 MiB
# sequential writes, random writes of 512 B to 256 KiB, random trims) run
# while readers read the whole view and random sector-aligned ranges of it
# again and again; every byte read must equal the pre-session image. Done
# twice: on the origin device directly (4 KiB chunks), then with the origin
# behind dm-delay (reads 20 ms slower, writes not delayed; fleece-origin and
# the view both on the delay device; 64 KiB chunks so 4 KiB writes are
# sub-chunk) to widen the windows between a copy's read and its write.
. "$(dirname "$0")/lib.sh"

sz=$(dev_sectors $ORIGIN)
mib=$((1024 * 1024))
R=$((256 * mib))
RUNTIME=${FLEECE_FIRE_RUNTIME:-15}
ref=$WORK/ref.img
pattern t012 $R > $ref
# Readers must not outlive the test (they would hold the view open).
trap 'touch $WORK/stop; wait' EXIT

# reader_whole VIEW: compare the whole region until $WORK/stop exists.
reader_whole() {
	local view=$1 n=0
	while [ ! -e $WORK/stop ]; do
		dev_cmp $view 0 $R $ref 2>> $WORK/errors || echo "MISMATCH: whole-region read #$n" >> $WORK/errors
		n=$((n + 1))
	done
	echo $n > $WORK/count.whole
}
# reader_ranges VIEW ID: compare random ranges (512 B .. 2 MiB, sector
# aligned) until $WORK/stop exists.
reader_ranges() {
	local view=$1 id=$2 n=0 off len
	RANDOM=$BASHPID
	while [ ! -e $WORK/stop ]; do
		len=$(( (RANDOM % 4096 + 1) * 512 ))
		off=$(( ((RANDOM * 32768 + RANDOM) % ((R - len) / 512)) * 512 ))
		dev_cmp $view $off $len $ref 2>> $WORK/errors || echo "MISMATCH: range read $off+$len" >> $WORK/errors
		n=$((n + 1))
	done
	echo $n > $WORK/count.ranges$id
}

# fire ODEV VIEWNAME: fio writers on ODEV for $RUNTIME s while readers read
# the view; then the view, read again at rest, must still be the image.
fire() {
	local odev=$1 view=/dev/mapper/$2 pids=() p c
	rm -f $WORK/stop $WORK/errors $WORK/count.*
	touch $WORK/errors
	reader_whole $view & pids+=($!)
	reader_ranges $view 1 & pids+=($!)
	reader_ranges $view 2 & pids+=($!)
	fio --output=$WORK/fio.out --filename=$odev --ioengine=libaio --direct=1 \
		--offset=0 --size=$R --time_based --runtime=$RUNTIME \
		--norandommap --randrepeat=0 --group_reporting \
		--name=rand4k --rw=randwrite --bs=4k --iodepth=16 \
		--name=seq1m --rw=write --bs=1M --iodepth=4 \
		--name=randmix --rw=randwrite --bsrange=512-256k --iodepth=8 \
		--name=trim --rw=randtrim --bsrange=4k-1m --iodepth=2 ||
		{ touch $WORK/stop; wait; cat $WORK/fio.out >&2; fail "fio on fleece-origin failed"; }
	touch $WORK/stop
	for p in "${pids[@]}"; do wait $p; done
	if grep -q MISMATCH $WORK/errors; then
		head -n 20 $WORK/errors >&2
		fail "$(grep -c MISMATCH $WORK/errors) view reads under fire were not the point in time"
	fi
	for c in whole ranges1 ranges2; do
		[ "$(cat $WORK/count.$c)" -gt 0 ] || fail "reader $c completed no read"
	done
	info "$(grep -E '^ +(write|trim):' $WORK/fio.out | tr -s ' ' | paste -sd ';')"
	info "reads under fire: $(cat $WORK/count.whole) whole, $(cat $WORK/count.ranges1)+$(cat $WORK/count.ranges2) ranges, all equal to the point in time"
	dev_cmp $view 0 $R $ref || fail "view differs from the point in time after the writers stopped"
	[ "$(view_stat $2 state)" = Active ] || fail "view is $(view_stat $2 state)"
	[ "$(view_stat $2 inflight)" = 0 ] || fail "copies_inflight $(view_stat $2 inflight) at rest"
	[ "$(view_stat $2 copied)" -gt 0 ] || fail "no copy was made"
	# The origin really changed: the view is not just reading it.
	dev_cmp $odev 0 $R $ref 2>/dev/null && fail "the origin did not change under fio"
	info "view == point in time ($(view_stat $2 copied) chunks copied)"
}

# 1: origin device directly, 4 KiB chunks.
dmsetup create t012o --table "0 $sz fleece-origin $ORIGIN - 8"
dd if=$ref of=/dev/mapper/t012o bs=1M oflag=direct status=none
view_create t012v t012o "0 $sz fleece $ORIGIN $SCRATCH" || fail "cannot create the view"
fire /dev/mapper/t012o t012v
dmsetup remove t012v
dmsetup remove t012o

# 2: behind dm-delay (reads +20 ms, writes +0 ms), 64 KiB chunks.
dmsetup create t012d --table "0 $sz delay $ORIGIN 0 20 $ORIGIN 0 0"
dmsetup create t012o --table "0 $sz fleece-origin /dev/mapper/t012d - 128"
dd if=$ref of=/dev/mapper/t012o bs=1M oflag=direct status=none
view_create t012v t012o "0 $sz fleece /dev/mapper/t012d $SCRATCH" || fail "cannot create the view on dm-delay"
fire /dev/mapper/t012o t012v
dmsetup remove t012v
dmsetup remove t012o
dmsetup remove t012d
