#!/bin/bash
# A full scratch device, under both on_full policies.
# invalidate (the default): origin writes keep succeeding and land intact;
#   the view turns Invalid, every view read fails with EIO (copied chunk or
#   not), and a dm event is raised on the view.
# fail_writes: once scratch holds scratch_total chunks, an origin write that
#   needs a copy fails with ENOSPC and changes nothing; writes to chunks
#   already copied still succeed; the view stays Active and exactly at its
#   point in time. Once the view is removed, all writes succeed again.
. "$(dirname "$0")/lib.sh"

sz=$(dev_sectors $ORIGIN)
mib=$((1024 * 1024))
R=$((16 * mib))
pattern t014pre $R > $WORK/pre.img
pattern t014new $R > $WORK/new.img
dmsetup create t014s --table "0 4096 linear $SCRATCH 0"	# 2 MiB of scratch
dmsetup create t014s2 --table "0 2048 linear $SCRATCH 4096"	# 1 MiB of scratch

#---- invalidate, 4 KiB chunks ------------------------------------------------
dmsetup create t014o --table "0 $sz fleece-origin $ORIGIN - 8"
odev=/dev/mapper/t014o
dd if=$WORK/pre.img of=$odev bs=1M oflag=direct status=none
view_create t014v t014o "0 $sz fleece $ORIGIN /dev/mapper/t014s" || fail "cannot create the view"
total=$(view_stat t014v total)
[ "$total" -gt 0 ] && [ "$total" -le 512 ] || fail "scratch_total $total for 2 MiB of 4 KiB chunks"
ev0=$(dm_events t014v)

# 8 MiB of new data: 2048 chunks to copy, at most $total fit.
dd if=$WORK/new.img of=$odev bs=1M count=8 oflag=direct status=none ||
	fail "an origin write failed when the invalidate policy's scratch filled up"
[ "$(view_stat t014v state)" = Invalid ] || fail "view is $(view_stat t014v state) after overflowing its scratch"
# Origin writes go on after the view is invalid, and all land.
dd if=$WORK/new.img of=$odev bs=1M skip=10 seek=10 count=2 oflag=direct status=none ||
	fail "an origin write failed after the view was invalidated"
cp $WORK/pre.img $WORK/exp.img
dd if=$WORK/new.img of=$WORK/exp.img bs=1M count=8 conv=notrunc status=none
dd if=$WORK/new.img of=$WORK/exp.img bs=1M skip=10 seek=10 count=2 conv=notrunc status=none
dev_cmp $odev 0 $R $WORK/exp.img || fail "origin data wrong after the view was invalidated"
dev_cmp $ORIGIN 0 $R $WORK/exp.img || fail "origin device data wrong after the view was invalidated"
info "invalidate: origin writes succeeded and landed"

# Every view read fails with EIO: a copied chunk, an uncopied one, the end.
for off in 0 $((12 * mib)) $((sz * 512 - 4096)); do
	if dd if=/dev/mapper/t014v of=$WORK/r bs=4096 count=1 iflag=direct,skip_bytes skip=$off status=none 2> $WORK/err; then
		fail "reading an invalid view at $off succeeded"
	fi
	grep -q "Input/output error" $WORK/err || fail "reading an invalid view at $off: '$(cat $WORK/err)', not EIO"
done
ev1=$(dm_events t014v)
[ "$ev1" -gt "$ev0" ] || fail "no dm event on the view when it was invalidated (events $ev0 -> $ev1)"
timeout 10 dmsetup wait t014v $ev0 > /dev/null || fail "dmsetup wait t014v $ev0 did not return"
info "invalidate: view Invalid, reads EIO, events $ev0 -> $ev1"

dmsetup remove t014v
[ "$(origin_sessions t014o)" = 0 ] || fail "$(origin_sessions t014o) sessions after the invalid view was removed"
dd if=$WORK/new.img of=$odev bs=1M oflag=direct status=none || fail "origin write failed after the session ended"
dev_cmp $ORIGIN 0 $R $WORK/new.img || fail "origin data wrong after the session ended"
dmsetup remove t014o

#---- fail_writes, 32 KiB chunks ----------------------------------------------
C=32768
dmsetup create t014o --table "0 $sz fleece-origin $ORIGIN - 64"
dd if=$WORK/pre.img of=$odev bs=1M oflag=direct status=none
table="0 $sz fleece $ORIGIN /dev/mapper/t014s2 2 on_full fail_writes"
view_create t014v t014o "$table" || fail "cannot create the fail_writes view"
[ "$(dmsetup table t014v)" = "$table" ] || fail "table came back as '$(dmsetup table t014v)'"
total=$(view_stat t014v total)
[ "$total" -gt 0 ] && [ "$total" -le 32 ] || fail "scratch_total $total for 1 MiB of 32 KiB chunks"
cp $WORK/pre.img $WORK/exp.img

# wchunk I [J]: write chunk I with chunk J (default I) of the new image;
# 0 if the write succeeded.
wchunk() {
	dd if=$WORK/new.img of=$odev bs=$C skip=${2:-$1} seek=$1 count=1 oflag=direct conv=notrunc status=none 2> $WORK/err
}
# expect_chunk I [J]: the origin's chunk I now holds chunk J of the new image.
expect_chunk() {
	dd if=$WORK/new.img of=$WORK/exp.img bs=$C skip=${2:-$1} seek=$1 count=1 conv=notrunc status=none
}
i=0
while wchunk $i; do
	i=$((i + 1))
	[ $i -le $((total + 4)) ] || fail "$i chunks copied into a scratch of $total without ENOSPC"
done
dd if=$WORK/new.img of=$WORK/exp.img bs=$C count=$i conv=notrunc status=none
grep -q "No space left on device" $WORK/err || fail "write $i failed with '$(cat $WORK/err)', not ENOSPC"
[ $i = $total ] || fail "the first write refused was chunk $i; scratch holds $total chunks"
[ "$(view_stat t014v used)" = $total ] || fail "scratch_used $(view_stat t014v used) of $total when writes were refused"
info "fail_writes: $i chunks copied, the next write refused with ENOSPC"

# More writes needing a copy: refused, and nothing changes (sub-chunk too).
wchunk $((i + 5)) && fail "a write needing a copy succeeded with scratch full"
grep -q "No space left on device" $WORK/err || fail "write to chunk $((i + 5)): '$(cat $WORK/err)', not ENOSPC"
pattern x2 512 > $WORK/s
if dd if=$WORK/s of=$odev bs=512 seek=$(((i + 7) * C / 512 + 3)) oflag=direct conv=notrunc status=none 2> $WORK/err; then
	fail "a 512-byte write needing a copy succeeded with scratch full"
fi
grep -q "No space left on device" $WORK/err || fail "sub-chunk write: '$(cat $WORK/err)', not ENOSPC"
dev_cmp $odev 0 $R $WORK/exp.img || fail "a refused write changed the origin"
# Chunks already copied can be written again.
for j in 0 $((i / 2)) $((i - 1)); do
	wchunk $j $((j + 256)) || fail "rewriting already-copied chunk $j failed: $(cat $WORK/err)"
	expect_chunk $j $((j + 256))
done
dev_cmp $odev 0 $R $WORK/exp.img || fail "origin data wrong after rewriting copied chunks"
dev_cmp $ORIGIN 0 $R $WORK/exp.img || fail "origin device data wrong after rewriting copied chunks"
[ "$(view_stat t014v state)" = Active ] || fail "fail_writes view is $(view_stat t014v state)"
dev_cmp /dev/mapper/t014v 0 $R $WORK/pre.img || fail "fail_writes view differs from the point in time"
info "fail_writes: refused writes change nothing, copied chunks writable, view intact"

dmsetup remove t014v
wchunk $i $((i + 300)) || fail "a write failed after the fail_writes session ended: $(cat $WORK/err)"
expect_chunk $i $((i + 300))
dev_cmp $ORIGIN 0 $R $WORK/exp.img || fail "origin data wrong after the fail_writes session ended"
dmsetup remove t014o
dmsetup remove t014s t014s2
