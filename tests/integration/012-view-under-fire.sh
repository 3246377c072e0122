#!/bin/bash
# A view stays exactly at its point in time while the origin is under heavy
# mixed IO: fio writers on fleece-origin (4 KiB random writes, 1 MiB
# sequential writes, random writes of 512 B to 256 KiB, random trims) run
# while readers read the whole view and random sector-aligned ranges of it
# again and again; every byte read must equal the pre-session image.
# Done twice:
# 1. 256 MiB on the origin device directly, 4 KiB chunks;
# 2. 128 MiB with the origin behind dm-delay (reads 20 ms slower, writes
#    not delayed; fleece-origin and the view both on the delay device) and
#    scratch behind dm-delay too (writes 20 ms slower), 64 KiB chunks so
#    4 KiB writes are sub-chunk. This widens the windows a broken range lock
#    would expose: a view read sent to the origin for a chunk whose copy is
#    still being written to scratch, overtaken by the origin write that
#    follows the copy.
. "$(dirname "$0")/lib.sh"

sz=$(dev_sectors $ORIGIN)
mib=$((1024 * 1024))
R=$((256 * mib))
RUNTIME=${FLEECE_FIRE_RUNTIME:-15}
ref=$WORK/ref.img
pattern t012 $R > $ref
# Readers must not outlive the test (they would hold the view open).
trap 'touch $WORK/stop; wait' EXIT

# reader_whole VIEW LEN: compare the whole region until $WORK/stop exists.
reader_whole() {
	local view=$1 len=$2 n=0
	while [ ! -e $WORK/stop ]; do
		dev_cmp $view 0 $len $ref 2>> $WORK/errors || echo "MISMATCH: whole-region read #$n" >> $WORK/errors
		n=$((n + 1))
	done
	echo $n > $WORK/count.whole
}
# reader_ranges VIEW LEN ID MAX: compare random ranges (512 B .. MAX
# sectors, sector aligned, O_DIRECT) of the region with the image until
# $WORK/stop exists. One process, so it reads far more often than dd would.
cat > $WORK/reader.py <<'EOF'
import mmap, os, random, sys
view, rlen, ident, mx, work = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
ref = mmap.mmap(os.open(work + "/ref.img", os.O_RDONLY), rlen, prot=mmap.PROT_READ)
fd = os.open(view, os.O_RDONLY | os.O_DIRECT)
buf = mmap.mmap(-1, mx * 512)
rnd, n, bad = random.Random(os.getpid()), 0, 0
while not os.path.exists(work + "/stop"):
    ln = rnd.randint(1, mx) * 512
    off = rnd.randrange(0, (rlen - ln) // 512 + 1) * 512
    mv = memoryview(buf)[:ln]
    try:
        got = os.preadv(fd, [mv], off)
    except OSError as e:
        got = -1
        err = str(e)
    if got != ln or mv != ref[off:off + ln]:
        bad += 1
        with open(work + "/errors", "a") as f:
            f.write("MISMATCH: range read %d+%d (%s)\n" % (off, ln, "short/failed" if got != ln else "data"))
    mv.release()
    n += 1
open(work + "/count.ranges" + ident, "w").write("%d\n" % n)
EOF
reader_ranges() { python3 $WORK/reader.py "$@" $WORK; }

# fire ODEV VIEWNAME LEN JOB...: the fio writer jobs (fio arguments) on the
# first LEN bytes of ODEV for $RUNTIME s while readers read the view; then
# the view, read again at rest, must still be the image.
fire() {
	local odev=$1 name=$2 view=/dev/mapper/$2 R=$3 pids=() p c
	shift 3
	rm -f $WORK/stop $WORK/errors $WORK/count.*
	touch $WORK/errors
	reader_whole $view $R & pids+=($!)
	reader_ranges $view $R 1 4096 & pids+=($!)
	reader_ranges $view $R 2 512 & pids+=($!)
	reader_ranges $view $R 3 128 & pids+=($!)
	fio --output=$WORK/fio.out --filename=$odev --ioengine=libaio --direct=1 \
		--offset=0 --size=$R --time_based --runtime=$RUNTIME \
		--norandommap --randrepeat=0 --group_reporting "$@" ||
		{ touch $WORK/stop; wait; cat $WORK/fio.out >&2; fail "fio on fleece-origin failed"; }
	touch $WORK/stop
	for p in "${pids[@]}"; do wait $p; done
	if grep -q MISMATCH $WORK/errors; then
		head -n 20 $WORK/errors >&2
		echo "reads: $(cat $WORK/count.* | paste -sd' ')" >&2
		fail "$(grep -c MISMATCH $WORK/errors) view reads under fire were not the point in time"
	fi
	for c in whole ranges1 ranges2 ranges3; do
		[ "$(cat $WORK/count.$c)" -gt 0 ] || fail "reader $c completed no read"
	done
	info "$(grep -E '^ +(write|trim):' $WORK/fio.out | tr -s ' ' | paste -sd ';')"
	info "reads under fire: $(cat $WORK/count.whole) whole, $(cat $WORK/count.ranges1)+$(cat $WORK/count.ranges2)+$(cat $WORK/count.ranges3) ranges, all equal to the point in time"
	dev_cmp $view 0 $R $ref || fail "view differs from the point in time after the writers stopped"
	[ "$(view_stat $name state)" = Active ] || fail "view is $(view_stat $name state)"
	[ "$(view_stat $name inflight)" = 0 ] || fail "copies_inflight $(view_stat $name inflight) at rest"
	[ "$(view_stat $name copied)" -gt 0 ] || fail "no copy was made"
	# The origin really changed: the view is not just reading it.
	dev_cmp $odev 0 $((4 * mib)) $ref 2>/dev/null && fail "the origin did not change under fio"
	info "view == point in time ($(view_stat $name copied) chunks copied)"
}

# 1: origin device directly, 4 KiB chunks.
dmsetup create t012o --table "0 $sz fleece-origin $ORIGIN - 8"
dd if=$ref of=/dev/mapper/t012o bs=1M oflag=direct status=none
view_create t012v t012o "0 $sz fleece $ORIGIN $SCRATCH" || fail "cannot create the view"
# Full speed: every chunk is copied within seconds.
fire /dev/mapper/t012o t012v $R \
	--name=rand4k --rw=randwrite --bs=4k --iodepth=16 \
	--name=seq1m --rw=write --bs=1M --iodepth=4 \
	--name=randmix --rw=randwrite --bsrange=512-256k --iodepth=8 \
	--name=trim --rw=randtrim --bsrange=4k-1m --iodepth=2
dmsetup remove t012v
dmsetup remove t012o

# 2: origin reads +20 ms, scratch writes +20 ms, 64 KiB chunks.
dmsetup create t012d --table "0 $sz delay $ORIGIN 0 20 $ORIGIN 0 0"
ssz=$(dev_sectors $SCRATCH)
dmsetup create t012s --table "0 $ssz delay $SCRATCH 0 0 $SCRATCH 0 20"
dmsetup create t012o --table "0 $sz fleece-origin /dev/mapper/t012d - 128"
dd if=$ref of=/dev/mapper/t012o bs=1M count=128 oflag=direct status=none
view_create t012v t012o "0 $sz fleece /dev/mapper/t012d /dev/mapper/t012s" || fail "cannot create the view on dm-delay"
# Rate-limited, so that first writes to chunks (copies) go on all along.
fire /dev/mapper/t012o t012v $((128 * mib)) \
	--name=rand4k --rw=randwrite --bs=4k --iodepth=8 --rate_iops=100 \
	--name=seq64k --rw=write --bs=64k --iodepth=2 --rate_iops=60 \
	--name=randmix --rw=randwrite --bsrange=512-256k --iodepth=4 --rate_iops=40 \
	--name=trim --rw=randtrim --bsrange=4k-1m --iodepth=1 --rate_iops=5
dmsetup remove t012v
dmsetup remove t012o
dmsetup remove t012d t012s
