#!/bin/bash
# Faults on the metadata device (dm-error swapped in under a fleece-origin
# with persistent bitmaps): origin IO goes on and lands; tracking turns
# "lost" in the status (fleecectl: LOST, and an incremental snapshot is
# refused: a full backup is needed); messages that must write metadata fail
# with EIO; nothing hangs. Never a silent loss: the status says it.
. "$(dirname "$0")/lib.sh"
F=$FLEECECTL
mib=$((1024 * 1024))
R=$((16 * mib))
sz=$((R / 512))
msz=$((8 * 2048))
good="0 $msz linear $META 0"
swap() { dmsetup suspend "$1" && dmsetup load "$1" --table "$2" && dmsetup resume "$1"; }
tracking() { dmsetup status t062 | awk '{ print $6 }'; }

pattern t062a $R > $WORK/a.img
dmsetup create t062m --table "$good"
dmsetup create t062l --table "0 $sz linear $ORIGIN 0"
dmsetup create t062 --table "0 $sz fleece-origin /dev/mapper/t062l /dev/mapper/t062m 128"
dmsetup message t062 0 bitmap_add a
dd if=$WORK/a.img of=/dev/mapper/t062 bs=1M count=2 oflag=direct status=none
[ "$(tracking)" = ok ] || fail "tracking $(tracking) before any fault"
[ "$(bitmap_export t062 a)" = "0 32" ] || fail "bitmap a: $(bitmap_export t062 a)"

mark=$(dmesg_mark)
swap t062m "0 $msz error"
dd if=$WORK/a.img of=/dev/mapper/t062 bs=1M skip=2 seek=2 count=14 oflag=direct status=none ||
	fail "origin writes failed with the metadata device failing"
dev_cmp /dev/mapper/t062 0 $R $WORK/a.img || fail "origin data wrong with the metadata device failing"
dev_cmp $ORIGIN 0 $R $WORK/a.img || fail "origin device data wrong with the metadata device failing"
[ "$(tracking)" = lost ] || fail "tracking '$(tracking)' after metadata write errors"
new_dmesg $mark | grep -qE "bitmap block write failed|superblock write failed" ||
	fail "the kernel did not log the metadata write failure"
info "metadata device failing: 14 MiB of origin writes landed, tracking lost"

# What needs metadata writes is refused; reads of the state still work.
expect_rc 1 dmsetup message t062 0 bitmap_add b
expect_rc 0 $F status t062
grep -qE '^t062 .* LOST$' $WORK/stdout || { cat $WORK/stdout; fail "fleecectl status does not say LOST"; }
expect_err 5 "snapshot t062: tracking is lost .* take a --full backup" \
	$F snapshot t062 --scratch $SCRATCH --bitmap a
# The bitmap still lists what it recorded in memory: a superset in memory.
[ "$(bitmap_export t062 a)" = "0 256" ] || fail "bitmap a in memory: $(bitmap_export t062 a)"
info "bitmap_add refused, fleecectl says LOST and refuses an incremental snapshot"

# A plain session still works: the view is the point in time.
dmsetup create t062s --table "0 $((32 * 2048)) linear $SCRATCH 0"
view_create t062v t062 "0 $sz fleece /dev/mapper/t062l /dev/mapper/t062s" || fail "no plain view with tracking lost"
dd if=/dev/zero of=/dev/mapper/t062 bs=1M count=4 oflag=direct status=none
dev_cmp /dev/mapper/t062v 0 $R $WORK/a.img || fail "the view is not the point in time with tracking lost"
dmsetup remove t062v
swap t062m "$good"
dmsetup remove t062
info "a plain view still holds its point in time"

# Only the bitmap blocks fail: the superblock records that tracking was lost.
blkdiscard -f /dev/mapper/t062m
dmsetup create t062 --table "0 $sz fleece-origin /dev/mapper/t062l /dev/mapper/t062m 128"
dmsetup message t062 0 bitmap_add a
dmsetup message t062 0 bitmap_add b
dd if=$WORK/a.img of=/dev/mapper/t062 bs=1M count=1 oflag=direct status=none
swap t062m "0 16 linear $META 0
16 $((msz - 16)) error"
dd if=$WORK/a.img of=/dev/mapper/t062 bs=1M skip=4 seek=4 count=1 oflag=direct status=none ||
	fail "an origin write failed with the bitmap blocks failing"
[ "$(tracking)" = lost ] || fail "tracking '$(tracking)' after a bitmap block write error"
# The superblock still takes writes: a new bitmap's slot would say trusted,
# and no round would write its blocks.
mark=$(dmesg_mark)
expect_rc 1 dmsetup message t062 0 bitmap_add c
new_dmesg $mark | grep -q "bitmap_add: tracking is lost" ||
	fail "bitmap_add with the bitmap blocks failing: no reason logged"
swap t062m "$good"
dmsetup remove t062
dmsetup create t062 --table "0 $sz fleece-origin /dev/mapper/t062l /dev/mapper/t062m 128" ||
	fail "cannot activate again on the repaired metadata device"
[ "$(tracking)" = lost ] || fail "tracking '$(tracking)' after re-creation: the loss was forgotten"
expect_rc 0 $F status t062
grep -qE '^t062 .* LOST$' $WORK/stdout || { cat $WORK/stdout; fail "fleecectl status does not say LOST after re-creation"; }
info "bitmap blocks failing: lost, and still lost after re-creation on the repaired device"

# Incremental views are refused; a full backup commits a trusted chain.
dmsetup suspend t062
dmsetup create t062v --table "0 $sz fleece /dev/mapper/t062l /dev/mapper/t062s 2 bitmap a" 2> $WORK/err &&
	{ dmsetup resume t062; fail "an incremental view of an untrusted bitmap was created"; }
dmsetup resume t062
grep -q "Bitmap untrusted since tracking was lost: use full" $WORK/err ||
	new_dmesg $mark | grep -q "Bitmap untrusted since tracking was lost" || fail "no reason for the refused view: $(cat $WORK/err)"
view_create t062v t062 "0 $sz fleece /dev/mapper/t062l /dev/mapper/t062s 3 bitmap a full" ||
	fail "no full view of an untrusted bitmap"
dd if=$WORK/a.img of=/dev/mapper/t062 bs=1M skip=8 seek=8 count=1 oflag=direct status=none
dmsetup message t062v 0 commit
dmsetup remove t062v
[ "$(tracking)" = lost ] || fail "tracking '$(tracking)' with bitmap b still untrusted"
[ "$(bitmap_export t062 a)" = "128 16" ] || fail "bitmap a after its full backup: $(bitmap_export t062 a)"
dmsetup message t062 0 bitmap_clear b
[ "$(tracking)" = ok ] || fail "tracking '$(tracking)' after a's full backup and b's clear"
dmsetup message t062 0 clean_detach
dmsetup remove t062
dmsetup create t062 --table "0 $sz fleece-origin /dev/mapper/t062l /dev/mapper/t062m 128 1 no_gap"
[ "$(tracking)" = ok ] || fail "tracking '$(tracking)' after re-creation (no_gap) of a trusted chain"
info "incremental view refused; a full backup (a) and a clear (b) made the bitmaps trusted again"

dmsetup remove t062 t062s t062l t062m
