#!/bin/bash
# One superblock write fails, the next works (issue 12, item 3): what is on
# disk afterwards is the state from before the failed operation, marked
# untrusted, never the operation's half. dm-failnth (built by 'make
# faults') under the metadata device fails exactly the next FUA write:
# superblock writes are FUA, bitmap block writes are not.
# - bitmap_add x fails: tracking is lost; after a reactivation x does not
#   exist (before the fix: a trusted, empty bitmap x that recorded nothing)
#   and a is untrusted;
# - bitmap_remove a fails: a still exists, also after a reactivation
#   (before: gone from disk while the message said it failed);
# - a view with "bitmap a" whose freeze fails is refused ("Cannot write
#   metadata"); after a reactivation a has no frozen set and is untrusted.
. "$(dirname "$0")/lib.sh"

SZ=$((16 * 2048))
OD=/dev/mapper/t065
MD=/dev/mapper/t065m
TABLE="0 $SZ fleece-origin /dev/mapper/t065s $MD 8"

cleanup() {
	for d in t065v t065 t065m t065s t065a; do
		dmsetup remove $d 2>/dev/null || true
	done
}
trap cleanup EXIT

load_module
load_fault_module failnth
dmsetup create t065s --table "0 $SZ linear $ORIGIN 0"
dmsetup create t065a --table "0 $SZ linear $SCRATCH 0"
dmsetup create t065m --table "0 $((16 * 2048)) failnth $META 0"

# fresh: new metadata, bitmap a with chunks 1 and 2 set.
fresh() {
	dmsetup remove t065 2>/dev/null || true
	zero_dev $MD 0 $((16 << 20))
	dmsetup create t065 --table "$TABLE"
	dmsetup message t065 0 bitmap_add a
	dd if=/dev/urandom of=$OD bs=4k seek=1 count=2 oflag=direct status=none
}
# fail_next_sb: the next superblock write fails, then all work again.
fail_next_sb() { dmsetup message t065m 0 fail fua 0 1; }
failed_writes() { dmsetup status t065m | awk '{ print $NF }'; }
reactivate() {
	dmsetup remove t065
	dmsetup create t065 --table "$TABLE" || fail "metadata refused after a failed superblock write"
}
bitmaps() { dmsetup message t065 0 bitmap_list | awk '{ print $1 }' | sort | tr '\n' ' '; }
is_lost() { [[ "$(dmsetup status t065)" == *" lost "* ]]; }

fresh
fail_next_sb
dmsetup message t065 0 bitmap_add x 2>/dev/null && fail "bitmap_add x succeeded after its superblock write failed"
[ "$(failed_writes)" -ge 1 ] || fail "failnth failed no write (status $(dmsetup status t065m))"
is_lost || fail "tracking is not lost after a failed superblock write: $(dmsetup status t065)"
reactivate
[ "$(bitmaps)" = "a " ] || fail "after a failed bitmap_add x, the bitmaps on disk are '$(bitmaps)'"
is_lost || fail "bitmap a is trusted after tracking was lost: $(dmsetup status t065)"
info "a failed bitmap_add left no bitmap on disk; the others untrusted"

fresh
fail_next_sb
dmsetup message t065 0 bitmap_remove a 2>/dev/null && fail "bitmap_remove a succeeded after its superblock write failed"
[ "$(bitmaps)" = "a " ] || fail "a failed bitmap_remove removed the bitmap in memory: '$(bitmaps)'"
reactivate
[ "$(bitmaps)" = "a " ] || fail "after a failed bitmap_remove a, the bitmaps on disk are '$(bitmaps)'"
is_lost || fail "bitmap a is trusted after tracking was lost: $(dmsetup status t065)"
[ "$(bitmap_export t065 a | tr '\n' ' ')" = "1 2 " ] || fail "bitmap a lost its chunks: $(bitmap_export t065 a)"
info "a failed bitmap_remove kept the bitmap, in memory and on disk"

fresh
fail_next_sb
mark=$(dmesg_mark)
view_create t065v t065 "0 $SZ fleece /dev/mapper/t065s /dev/mapper/t065a 2 bitmap a" &&
	fail "a view whose freeze failed was created"
new_dmesg "$mark" | grep -q "Cannot write metadata" || fail "the view was not refused for the metadata write"
reactivate
[[ "$(dmsetup status t065)" == *" a 2 0"* ]] ||
	fail "after a failed freeze, a is not intact with no frozen set: $(dmsetup status t065)"
is_lost || fail "bitmap a is trusted after tracking was lost: $(dmsetup status t065)"
info "a failed freeze left the bitmap whole and untrusted, no frozen set"
