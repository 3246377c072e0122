#!/bin/bash
# Faults on the scratch device, injected by swapping its table under a live
# view (dm-flakey, dm-error):
# - write errors: the copy fails; the origin write still succeeds and
#   lands, the view turns Invalid (under both on_full policies: a broken
#   scratch device is not a full one), reads fail with EIO, a dm event is
#   raised;
# - read errors: a view read of a copied chunk fails with EIO; chunks read
#   from the origin still read; the session stays Active, and once the
#   device recovers the same read returns the point in time;
# - the scratch device vanishes (dm-error) under fio on the origin: no IO
#   error on the origin, no hang, no splat; the view turns Invalid.
. "$(dirname "$0")/lib.sh"
mib=$((1024 * 1024))
R=$((16 * mib))
sz=$((R / 512))
pattern t060pre $R > $WORK/pre.img
pattern t060new $R > $WORK/new.img

ssz=$((64 * 2048))
good="0 $ssz linear $SCRATCH 0"
# swap DEV TABLE: replace DEV's table, suspended in between.
swap() { dmsetup suspend "$1" && dmsetup load "$1" --table "$2" && dmsetup resume "$1"; }
# read_ok VIEW OFF LEN: the view's bytes equal pre.img there.
read_ok() { dev_cmp "$1" "$2" "$3" $WORK/pre.img; }
# read_eio VIEW OFF: a 4 KiB read fails with EIO.
read_eio() {
	if dd if="$1" of=$WORK/r bs=4096 count=1 iflag=direct,skip_bytes skip="$2" status=none 2> $WORK/err; then
		fail "reading $1 at $2 succeeded"
	fi
	grep -q "Input/output error" $WORK/err || fail "reading $1 at $2: '$(cat $WORK/err)', not EIO"
}

dmsetup create t060s --table "$good"
dmsetup create t060l --table "0 $sz linear $ORIGIN 0"
dmsetup create t060o --table "0 $sz fleece-origin /dev/mapper/t060l - 128"
O=/dev/mapper/t060o
dd if=$WORK/pre.img of=$O bs=1M oflag=direct status=none

for policy in invalidate fail_writes; do
	opts=
	[ $policy = fail_writes ] && opts=" 2 on_full fail_writes"
	dd if=$WORK/pre.img of=$O bs=1M oflag=direct status=none
	view_create t060v t060o "0 $sz fleece /dev/mapper/t060l /dev/mapper/t060s$opts" || fail "cannot create the view"
	dd if=$WORK/new.img of=$O bs=1M count=1 oflag=direct status=none
	[ "$(view_stat t060v copied)" = 16 ] || fail "copied $(view_stat t060v copied) chunks, expected 16"
	ev0=$(dm_events t060v)
	mark=$(dmesg_mark)
	# Writes to scratch fail from now on; reads still work.
	swap t060s "0 $ssz flakey $SCRATCH 0 0 1 1 error_writes"
	read_ok /dev/mapper/t060v 0 $mib || fail "$policy: a copied chunk did not read back with scratch writes failing"
	dd if=$WORK/new.img of=$O bs=1M skip=4 seek=4 count=1 oflag=direct status=none ||
		fail "$policy: the origin write failed when its copy could not be written"
	[ "$(view_stat t060v state)" = Invalid ] || fail "$policy: view is $(view_stat t060v state) after a scratch write error"
	new_dmesg $mark | grep -q "session invalidated: scratch write error" ||
		fail "$policy: the kernel did not log why the session ended"
	cp $WORK/pre.img $WORK/exp.img
	dd if=$WORK/new.img of=$WORK/exp.img bs=1M count=1 conv=notrunc status=none
	dd if=$WORK/new.img of=$WORK/exp.img bs=1M skip=4 seek=4 count=1 conv=notrunc status=none
	dev_cmp $O 0 $R $WORK/exp.img || fail "$policy: origin data wrong after the scratch write error"
	read_eio /dev/mapper/t060v 0
	read_eio /dev/mapper/t060v $((8 * mib))
	[ "$(dm_events t060v)" -gt "$ev0" ] || fail "$policy: no dm event when the session was invalidated"
	dmsetup remove t060v
	swap t060s "$good"
	info "$policy: scratch write error: origin write landed, view Invalid, reads EIO, event raised"
done

# Read errors: a copied chunk fails with EIO, an uncopied one reads; the
# session stays Active; after recovery the copied chunk reads back right.
dd if=$WORK/pre.img of=$O bs=1M oflag=direct status=none
view_create t060v t060o "0 $sz fleece /dev/mapper/t060l /dev/mapper/t060s" || fail "cannot create the view"
dd if=$WORK/new.img of=$O bs=1M count=1 oflag=direct status=none
swap t060s "0 $ssz flakey $SCRATCH 0 0 1"
read_eio /dev/mapper/t060v 0
read_ok /dev/mapper/t060v $((8 * mib)) $mib || fail "a chunk read from the origin failed with scratch reads failing"
[ "$(view_stat t060v state)" = Active ] || fail "view is $(view_stat t060v state) after a scratch read error"
swap t060s "$good"
read_ok /dev/mapper/t060v 0 $R || fail "the view is not the point in time after scratch recovered"
dmsetup remove t060v
info "scratch read error: EIO for copied chunks only, session Active, right data after recovery"

# A writable view's own write whose copy cannot be written to scratch fails
# with EIO; the session stays valid and the chunk is as it was. (It used to
# invalidate the session, and warn: the suite fails on a kernel warning.)
dd if=$WORK/pre.img of=$O bs=1M oflag=direct status=none
view_create t060v t060o "0 $sz fleece /dev/mapper/t060l /dev/mapper/t060s 1 writable" ||
	fail "cannot create the writable view"
swap t060s "0 $ssz flakey $SCRATCH 0 0 1 1 error_writes"
if dd if=$WORK/new.img of=/dev/mapper/t060v bs=4096 count=1 seek=512 oflag=direct status=none 2> $WORK/err; then
	fail "a view write succeeded with its copy failing to reach scratch"
fi
[ "$(view_stat t060v state)" = Active ] ||
	fail "view is $(view_stat t060v state) after its own write failed to reach scratch"
read_ok /dev/mapper/t060v 0 $R || fail "the view is not the point in time after its failed write"
swap t060s "$good"
dd if=$WORK/new.img of=/dev/mapper/t060v bs=4096 count=1 seek=512 oflag=direct status=none ||
	fail "the view write failed once scratch recovered"
cp $WORK/pre.img $WORK/exp.img
dd if=$WORK/new.img of=$WORK/exp.img bs=4096 count=1 seek=512 conv=notrunc status=none
dev_cmp /dev/mapper/t060v 0 $R $WORK/exp.img || fail "the view does not hold its write after scratch recovered"
dev_cmp $O 0 $R $WORK/pre.img || fail "the origin changed under a writable view's writes"
dmsetup remove t060v
info "writable view, scratch write error: its write fails with EIO, session Active, data unchanged"

# The scratch device vanishes under load: fio on the origin sees no error.
dd if=$WORK/pre.img of=$O bs=1M oflag=direct status=none
view_create t060v t060o "0 $sz fleece /dev/mapper/t060l /dev/mapper/t060s" || fail "cannot create the view"
# fio stays in the first half: on a fast machine it can copy every chunk it
# touches before the swap, so a write to the untouched second half, made
# while fio still runs, is the one that must meet the dead scratch device.
fio --output=$WORK/fio.out --filename=$O --ioengine=libaio --direct=1 --size=$((R / 2)) \
	--time_based --runtime=6 --norandommap --randrepeat=0 --group_reporting \
	--name=rand --rw=randwrite --bs=4k --iodepth=16 \
	--name=seq --rw=write --bs=256k --iodepth=2 &
fio_pid=$!
sleep 2
swap t060s "0 $ssz error"
dd if=$WORK/new.img of=$O bs=1M skip=12 seek=12 count=1 oflag=direct status=none ||
	fail "an origin write failed after scratch vanished"
kill -0 $fio_pid 2> /dev/null || info "note: fio ended before the second-half write"
wait $fio_pid || { cat $WORK/fio.out >&2; fail "fio on the origin failed when scratch vanished"; }
grep -qE 'err= *[1-9]' $WORK/fio.out && fail "fio saw IO errors: $(grep err= $WORK/fio.out)"
[ "$(view_stat t060v state)" = Invalid ] || fail "view is $(view_stat t060v state) after scratch vanished under load"
[ "$(view_stat t060v inflight)" = 0 ] || fail "$(view_stat t060v inflight) copies in flight at rest"
dmsetup remove t060v
info "scratch vanished under fio: no origin IO error, view Invalid, nothing in flight"

# A scratch device whose driver points the failed write at its own lower
# device before completing it (md raid0, no io accounting: the bio itself
# goes down): the copy must still know whose write failed. It did not when
# it looked at the bio's device: the view stayed Active and read back what
# the slot held before.
modprobe raid0 || fail "no md raid0 in this kernel"
mdn=60
md=/sys/block/md$mdn/md
stop_md() { [ -e $md/array_state ] && echo clear > $md/array_state; }
trap 'stop_md 2>/dev/null' EXIT
swap t060s "$good"
zero_dev /dev/mapper/t060s 0 $((ssz * 512))
echo md$mdn > /sys/module/md_mod/parameters/new_array
echo none > $md/metadata_version
echo raid0 > $md/level
echo 65536 > $md/chunk_size
echo 1 > $md/raid_disks
echo "$(majmin /dev/mapper/t060s)" > $md/new_dev
mem=$(basename "$(readlink -f /dev/mapper/t060s)")
echo 0 > $md/dev-$mem/slot
echo $((ssz / 2)) > $md/dev-$mem/size
echo active > $md/array_state
[ -b /dev/md$mdn ] || mknod /dev/md$mdn b 9 $mdn
echo 0 > /sys/block/md$mdn/queue/iostats
MD=/dev/md$mdn
dd if=$WORK/pre.img of=$O bs=1M oflag=direct status=none
view_create t060v t060o "0 $sz fleece /dev/mapper/t060l $MD" || fail "md raid0 scratch: cannot create the view"
dd if=$WORK/new.img of=$O bs=1M count=1 oflag=direct status=none
read_ok /dev/mapper/t060v 0 $R || fail "md raid0 scratch: the view is not the point in time"
mark=$(dmesg_mark)
swap t060s "0 $ssz flakey $SCRATCH 0 0 1 1 error_writes"
dd if=$WORK/new.img of=$O bs=1M skip=4 seek=4 count=1 oflag=direct status=none ||
	fail "md raid0 scratch: the origin write failed when its copy could not be written"
[ "$(view_stat t060v state)" = Invalid ] ||
	fail "md raid0 scratch: view is $(view_stat t060v state) after a scratch write error (reads of 4 MiB: $(dev_cmp /dev/mapper/t060v $((4 * mib)) $mib $WORK/pre.img 2>&1 && echo the point in time || echo NOT the point in time))"
new_dmesg $mark | grep -q "session invalidated: scratch write error" ||
	fail "md raid0 scratch: the kernel did not log why the session ended"
read_eio /dev/mapper/t060v $((4 * mib))
dmsetup remove t060v
stop_md
trap - EXIT
swap t060s "$good"
info "md raid0 scratch (the write's device changed under it): write error seen, view Invalid, reads EIO"

dmsetup remove t060o t060l t060s
