#!/bin/bash
# Metadata faults the crash replay cannot show (issue 13): a metadata device
# that fails flushes, and one that fails FUA writes (superblocks), through
# dm-failnth ('make faults'). What the state is afterwards, on disk, after
# the fleece-origin is removed and created again:
# - flushes fail: the commit round that made a bit durable fails, tracking
#   is lost, the origin write goes on (its data lands); the superblock that
#   marks the bitmaps untrusted is written without a flush before it (a
#   device that fails flushes may take it), so the next activation says
#   "lost" and refuses incremental views. Before: the mark went with a
#   flush and failed, and the bitmaps came back trusted.
# - FUA writes fail: a bitmap_add fails, tracking is lost, the mark fails
#   too; writes go on unrecorded. Every later superblock write carries the
#   mark, and removing the fleece-origin tries once more: the device works
#   again by then, so the next activation says "lost". Before: trusted.
# - FUA writes fail and the device is gone (dm-error) when the
#   fleece-origin is removed, as in a crash: neither the mark nor the clean
#   detach reaches the disk. An attach without no_gap says "gap"; one with
#   no_gap (the boot units) brings the bitmaps back trusted, missing the
#   writes made since. That is the documented limit (fleece-origin.rst,
#   "Crash safety"): checked here as documented, so that a change to it is
#   seen.
. "$(dirname "$0")/lib.sh"

SZ=$((16 * 2048))
OD=/dev/mapper/t066
MD=/dev/mapper/t066m
TABLE="0 $SZ fleece-origin /dev/mapper/t066s $MD 8"
FAULTY="0 $SZ failnth $META 0"

cleanup() {
	for d in t066v t066 t066m t066s t066a; do
		dmsetup remove $d 2>/dev/null || true
	done
}
trap cleanup EXIT

load_module
load_fault_module failnth
dmsetup create t066s --table "0 $SZ linear $ORIGIN 0"
dmsetup create t066a --table "0 $SZ linear $SCRATCH 0"
dmsetup create t066m --table "$FAULTY"

fresh() {
	dmsetup remove t066 2>/dev/null || true
	dmsetup message t066m 0 fail write 0 0
	zero_dev $MD 0 $((16 << 20))
	dmsetup create t066 --table "$TABLE"
	dmsetup message t066 0 bitmap_add b
	write_chunk 5
}
# write_chunk N: a new 4 KiB chunk through the origin; it must succeed and
# land.
write_chunk() {
	pattern "c$1" 4096 > "$WORK/c$1"
	dd if="$WORK/c$1" of=$OD bs=4096 seek="$1" oflag=direct status=none ||
		fail "the origin write to chunk $1 failed"
	dev_cmp /dev/mapper/t066s $(($1 * 4096)) 4096 "$WORK/c$1" 0 || fail "chunk $1 did not land"
}
reactivate() {
	dmsetup remove t066
	dmsetup create t066 --table "$TABLE" || fail "metadata refused after the fault"
}
state() { dmsetup status t066 | awk '{ print $6 }'; }
incremental_refused() {
	local mark
	mark=$(dmesg_mark)
	view_create t066v t066 "0 $SZ fleece /dev/mapper/t066s /dev/mapper/t066a 2 bitmap b" &&
		fail "an incremental view of an untrusted bitmap was created"
	new_dmesg "$mark" | grep -q "Bitmap untrusted since tracking was lost: use full" ||
		fail "the incremental view was not refused as untrusted"
}

# Flushes fail.
fresh
dmsetup message t066m 0 fail flush 0 1000000
write_chunk 10
[ "$(state)" = lost ] || fail "tracking is $(state) after a failed flush"
write_chunk 20
dmsetup message t066m 0 fail flush 0 0
reactivate
[ "$(state)" = lost ] || fail "after failed flushes and a reactivation, tracking is $(state), not lost"
incremental_refused
info "flushes failed: writes landed, the bitmaps came back untrusted"

# FUA writes fail: the mark reaches the disk when the origin is removed.
fresh
dmsetup message t066m 0 fail fua 0 1000000
dmsetup message t066 0 bitmap_add c 2>/dev/null && fail "bitmap_add succeeded with every FUA write failing"
[ "$(state)" = lost ] || fail "tracking is $(state) after a failed superblock write"
write_chunk 30
dmsetup message t066m 0 fail fua 0 0
mark=$(dmesg_mark)
reactivate
new_dmesg "$mark" | grep -q "bitmaps marked untrusted on disk at last" ||
	fail "the removal did not write the untrusted mark"
[ "$(state)" = lost ] || fail "after failed FUA writes and a reactivation, tracking is $(state), not lost"
[ "$(dmsetup message t066 0 bitmap_list | awk '{ print $1 }' | tr '\n' ' ')" = "b " ] ||
	fail "bitmaps after the failed bitmap_add: $(dmsetup message t066 0 bitmap_list)"
incremental_refused
info "FUA writes failed: the untrusted mark was written when the origin was removed"

# FUA writes fail, and the device is gone when the origin is removed.
fresh
dmsetup message t066m 0 fail fua 0 1000000
dmsetup message t066 0 bitmap_add c 2>/dev/null && fail "bitmap_add succeeded with every FUA write failing"
write_chunk 40
printf '0 %d error\n' $SZ | { dmsetup suspend t066m && dmsetup load t066m && dmsetup resume t066m; }
dmsetup remove t066
printf '%s\n' "$FAULTY" | { dmsetup suspend t066m && dmsetup load t066m && dmsetup resume t066m; }
dmsetup message t066m 0 fail write 0 0
dmsetup create t066 --table "$TABLE 1 no_gap" || fail "metadata refused after the device came back"
[ "$(state)" = ok ] ||
	fail "documented limit changed: tracking is $(state) (update fleece-origin.rst, Crash safety)"
got=$(bitmap_export t066 b | tr '\n' ' ')
[ "$got" = "5 1 " ] ||
	fail "documented limit changed: bitmap b holds '$got' (update fleece-origin.rst, Crash safety)"
info "documented limit: FUA writes failing, device gone at removal, no_gap: b trusted, chunk 40 missing"
