#!/bin/bash
# One backup at a time per bitmap, and no view ever returns data written
# after its point in time (issue 12, bug 1).
#
# A full backup starts the chain of bitmap "b". Then: write chunk 10, view V1
# with "bitmap b", write chunk 20, try view V2 with "bitmap b", write chunk 30.
# Before the fix, V2 was accepted and took over the bitmap V1 checks its
# reads against: V1 then returned chunk 30 as written after its point in time,
# and removing V2 freed that bitmap under V1 (an oops on V1's next read).
# Now:
# - V2 is refused while V1 exists ("Bitmap has a backup in progress"), even
#   after V1's commit, and the refusal changes nothing (bitmap state, V1);
# - V1's frozen set is exactly chunk 10; V1 reads chunk 10 as it was at V1's
#   point in time; chunks 20 and 30 (outside its set, written since) fail
#   with EIO, never newer data; chunk 40 (outside, untouched) reads right;
# - bitmap_merge into "b" is refused while V1 exists, as a source it works;
# - after V1 is removed, V2 is accepted and its frozen set is {20, 30}
#   (V1 committed) and reads the data of its own point in time.
. "$(dirname "$0")/lib.sh"

CH=8				# 4 KiB chunks
CB=4096
SZ=$((16 * 2048))		# 16 MiB
OD=/dev/mapper/t055
SL=/dev/mapper/t055s

cleanup() {
	for d in t055v2 t055v1 t055f t055 t055s t055a t055b t055c; do
		dmsetup remove $d 2>/dev/null || true
	done
}
trap cleanup EXIT

load_module
zero_dev $META 0 $((4 << 20))
dmsetup create t055s --table "0 $SZ linear $ORIGIN 0"
dmsetup create t055a --table "0 $SZ linear $SCRATCH 0"
dmsetup create t055b --table "0 $SZ linear $SCRATCH $SZ"
dmsetup create t055c --table "0 $SZ linear $SCRATCH $((2 * SZ))"
dmsetup create t055 --table "0 $SZ fleece-origin $SL $META $CH"
dmsetup message t055 0 bitmap_add b
dmsetup message t055 0 bitmap_add other
pattern base $((SZ * 512)) > "$WORK/base"
dd if="$WORK/base" of=$OD bs=1M oflag=direct status=none

# The full backup that starts the chain.
view_create t055f t055 "0 $SZ fleece $SL /dev/mapper/t055a 3 bitmap b full"
dmsetup message t055f 0 commit
dmsetup remove t055f
[ "$(bitmap_export t055 b)" = "" ] || fail "bitmap b not empty after the full backup"

# chunk_write N SEED: stamp chunk N; keeps $WORK/cN.SEED as the data written.
chunk_write() {
	pattern "$2" $CB > "$WORK/c$1.$2"
	dd if="$WORK/c$1.$2" of=$OD bs=$CB seek="$1" oflag=direct status=none
}
# chunk_is DEV N FILE: chunk N of DEV reads as FILE.
chunk_is() { dev_cmp "$1" $(($2 * CB)) $CB "$3" 0 || fail "$1 chunk $2 is not $3"; }
# chunk_eio DEV N: reading chunk N of DEV fails.
chunk_eio() {
	if dd if="$1" of=/dev/null bs=$CB skip="$2" count=1 iflag=direct status=none 2>/dev/null; then
		dd if="$1" of="$WORK/got" bs=$CB skip="$2" count=1 iflag=direct status=none
		cmp -s "$WORK/got" "$WORK/chunk$2.pit" &&
			fail "$1 chunk $2 read (point-in-time data) where EIO was documented"
		fail "$1 chunk $2 returned data written after the view's point in time"
	fi
}
for c in 10 20 30 40; do
	dd if="$WORK/base" of="$WORK/chunk$c.pit" bs=$CB skip=$c count=1 status=none
done

chunk_write 10 w10
view_create t055v1 t055 "0 $SZ fleece $SL /dev/mapper/t055b 2 bitmap b"
[ "$(ranges_export /dev/mapper/t055v1 100 changes)" = "10 1" ] ||
	fail "V1's frozen set is not chunk 10: $(ranges_export /dev/mapper/t055v1 100 changes)"
chunk_write 20 w20

before=$(bitmap_state t055)
mark=$(dmesg_mark)
if view_create t055v2 t055 "0 $SZ fleece $SL /dev/mapper/t055c 2 bitmap b"; then
	fail "a second view on bitmap b was accepted while V1 exists"
fi
new_dmesg "$mark" | grep -qF "Bitmap has a backup in progress" ||
	{ new_dmesg "$mark" >&2; fail "the refusal did not say why"; }
[ "$(bitmap_state t055)" = "$before" ] || fail "the refused view changed the bitmaps"
# fleecectl says which view holds the bitmap, and creates nothing.
expect_err 4 "bitmap 'b' has a backup in progress \(view t055v1\)" \
	"$FLEECECTL" snapshot t055 --scratch /dev/mapper/t055c --bitmap b --view t055v2
dmsetup info t055v2 >/dev/null 2>&1 && fail "fleecectl left view t055v2 behind"
[ "$(bitmap_state t055)" = "$before" ] || fail "the refused snapshot changed the bitmaps"
[ "$(dm_state t055)" = ACTIVE ] || fail "the refused snapshot left t055 suspended"
info "second view on b refused while V1 is open"

chunk_write 30 w30
chunk_is /dev/mapper/t055v1 10 "$WORK/c10.w10"
chunk_eio /dev/mapper/t055v1 20
chunk_eio /dev/mapper/t055v1 30
chunk_is /dev/mapper/t055v1 40 "$WORK/chunk40.pit"
info "V1 reads its point in time or EIO, never newer data"

msg_refused t055 "Device or resource busy" bitmap_merge b other
dmsetup message t055 0 bitmap_merge other b

# Committed, V1 still holds the bitmap: still refused.
dmsetup message t055v1 0 commit
if view_create t055v2 t055 "0 $SZ fleece $SL /dev/mapper/t055c 2 bitmap b"; then
	fail "a second view on bitmap b was accepted after V1's commit"
fi
chunk_eio /dev/mapper/t055v1 30
dmsetup remove t055v1

view_create t055v2 t055 "0 $SZ fleece $SL /dev/mapper/t055c 2 bitmap b"
got=$(ranges_export /dev/mapper/t055v2 100 changes | tr '\n' ' ')
[ "$got" = "20 1 30 1 " ] || fail "V2's frozen set is '$got', expected chunks 20 and 30"
chunk_write 20 x20
chunk_write 30 x30
chunk_is /dev/mapper/t055v2 20 "$WORK/c20.w20"
chunk_is /dev/mapper/t055v2 30 "$WORK/c30.w30"
chunk_is /dev/mapper/t055v2 10 "$WORK/c10.w10"
dmsetup message t055v2 0 commit
dmsetup remove t055v2
got=$(bitmap_export t055 b | tr '\n' ' ')
[ "$got" = "20 1 30 1 " ] || fail "bitmap b after V2's commit is '$got', expected chunks 20 and 30"
info "after V1 ended, V2 took the bitmap and read its own point in time"
