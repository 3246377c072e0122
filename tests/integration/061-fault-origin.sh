#!/bin/bash
# Faults on the origin device (a dm-error segment swapped into the device
# under fleece-origin):
# - a read error while preserving a chunk before a write: the old data
#   cannot be kept, so the chunk is lost to the view (its reads fail, the
#   status counts it) and the write goes on, to fail here on the device's
#   own write error, not because of the view; the view stays Active, and
#   every other chunk reads the point in time, also once the device
#   recovers (064 has a bad sector that takes the write);
# - the origin device vanishes under fio: the IO errors are the origin's,
#   no hang, no splat; the view's copied chunks still read from scratch.
. "$(dirname "$0")/lib.sh"
mib=$((1024 * 1024))
R=$((16 * mib))
sz=$((R / 512))
pattern t061pre $R > $WORK/pre.img
pattern t061new $R > $WORK/new.img
good="0 $sz linear $ORIGIN 0"
s4=$((4 * 2048))
s5=$((5 * 2048))
# 1 MiB at 4 MiB fails reads and writes.
holed="0 $s4 linear $ORIGIN 0
$s4 2048 error
$s5 $((sz - s5)) linear $ORIGIN $s5"
swap() { printf '%s\n' "$2" | { dmsetup suspend "$1" && dmsetup load "$1" && dmsetup resume "$1"; }; }

dmsetup create t061l --table "$good"
dmsetup create t061o --table "0 $sz fleece-origin /dev/mapper/t061l - 128"
O=/dev/mapper/t061o
dd if=$WORK/pre.img of=$O bs=1M oflag=direct status=none
dmsetup create t061s --table "0 $((64 * 2048)) linear $SCRATCH 0"
view_create t061v t061o "0 $sz fleece /dev/mapper/t061l /dev/mapper/t061s" || fail "cannot create the view"
dd if=$WORK/new.img of=$O bs=1M count=1 oflag=direct status=none

mark=$(dmesg_mark)
swap t061l "$holed"
if dd if=$WORK/new.img of=$O bs=64k skip=64 seek=64 count=1 oflag=direct status=none 2> $WORK/err; then
	fail "an origin write to a device that fails writes succeeded"
fi
grep -q "Input/output error" $WORK/err || fail "origin write: '$(cat $WORK/err)', not EIO"
new_dmesg $mark | grep -q "chunk 64 unreadable, lost to 1 view(s); the write goes on" ||
	fail "the kernel did not log the lost chunk: $(new_dmesg $mark | tail -3)"
[ "$(view_stat t061v state)" = Active ] || fail "view is $(view_stat t061v state) after an origin read error"
[ "$(dmsetup status t061v | awk '{ print $NF }')" = 1 ] || fail "status does not count the lost chunk"
dev_cmp /dev/mapper/t061v 0 $((4 * mib)) $WORK/pre.img || fail "view reads wrong before the bad range"
dev_cmp /dev/mapper/t061v $((5 * mib)) $((11 * mib)) $WORK/pre.img || fail "view reads wrong after the bad range"
swap t061l "$good"
dev_cmp /dev/mapper/t061v 0 $((4 * mib)) $WORK/pre.img || fail "view reads wrong before the lost chunk after recovery"
dev_cmp /dev/mapper/t061v $((4 * mib + 65536)) $((12 * mib - 65536)) $WORK/pre.img ||
	fail "view reads wrong after the lost chunk after recovery"
dd if=/dev/mapper/t061v of=/dev/null bs=64k skip=64 count=1 iflag=direct status=none 2>/dev/null &&
	fail "the lost chunk reads, but its point-in-time data could not be kept"
cp $WORK/pre.img $WORK/exp.img
dd if=$WORK/new.img of=$WORK/exp.img bs=1M count=1 conv=notrunc status=none
dev_cmp $O 0 $R $WORK/exp.img || fail "the failed write changed the origin"
info "origin read error while preserving: chunk lost to the view, the write went on (and failed on the device); view Active and right elsewhere"

# The origin vanishes under fio: errors are expected, hangs and splats not.
fio --output=$WORK/fio.out --filename=$O --ioengine=libaio --direct=1 --size=$R \
	--time_based --runtime=6 --norandommap --randrepeat=0 --group_reporting \
	--continue_on_error=all --name=rand --rw=randwrite --bs=4k --iodepth=16 \
	--name=read --rw=randread --bs=64k --iodepth=4 >/dev/null 2>&1 &
fio_pid=$!
sleep 2
swap t061l "0 $sz error"
wait $fio_pid || true
[ "$(view_stat t061v inflight)" = 0 ] || fail "$(view_stat t061v inflight) copies in flight at rest"
dev_cmp /dev/mapper/t061v 0 $mib $WORK/pre.img || fail "copied chunks do not read from scratch with the origin gone"
swap t061l "$good"
dmsetup remove t061v
dmsetup remove t061o t061l t061s
info "origin vanished under fio: no hang; copied chunks still read from scratch"
