#!/bin/bash
# Gaps are never silent, and metadata is bound to its origin (issue 14,
# item 3). Walks through what a sysadmin does:
# - a clean detach (shutdown), writes to the raw origin, an attach without
#   no_gap: bitmaps untrusted ("gap"), an incremental view refused, a full
#   backup (byte-exact, with the raw write) restores trust;
# - a clean detach and an attach with no_gap (the boot units vouch):
#   bitmaps kept, and an incremental view built on them reads right;
# - a detach while the system runs (no clean_detach, or one taken back):
#   the next attach distrusts the bitmaps even with no_gap;
# - a crash (the detach record cannot be written): the next attach says
#   so, and with no_gap keeps the bitmaps (they are crash-safe);
# - origin_id: printed back exactly (one with a backslash too: the printed
#   table loads as the same id), another origin's id refused at attach
#   and at reload, the metadata unchanged;
# - fleecectl create puts an origin_id in the table; fleecectl remove and
#   create --no-gap leave the bitmaps untrusted, and status/JSON say "gap";
#   fleecectl down --shutdown (the units) keeps them trusted.
. "$(dirname "$0")/lib.sh"

CH=8				# 4 KiB chunks
# An origin_id with a backslash (udev escapes blanks in by-id names as
# \x20): libdevmapper passes it to the kernel as it is, and the table
# printed back must load as the same id.
ID='test\origin-1'
CB=4096
SZ=$((16 * 2048))		# 16 MiB
OD=/dev/mapper/t069
SL=/dev/mapper/t069s
MD=/dev/mapper/t069m
F=$FLEECECTL

cleanup() {
	for d in t069v t069 t069c t069s t069a t069m; do
		dmsetup remove $d 2>/dev/null || true
	done
}
trap cleanup EXIT

load_module
zero_dev $META 0 $((4 << 20))
dmsetup create t069s --table "0 $SZ linear $ORIGIN 0"
dmsetup create t069a --table "0 $SZ linear $SCRATCH 0"
dmsetup create t069m --table "0 8192 linear $META 0"

# tracking: the <ok|lost|gap> field of the fleece-origin status.
tracking() { dmsetup status t069 | awk '{ print $6 }'; }
origin_up() { dmsetup create t069 --table "0 $SZ fleece-origin $SL $MD $CH $*"; }
# full_backup: a full view of bitmap b, committed: b trusted again.
full_backup() {
	view_create t069v t069 "0 $SZ fleece $SL /dev/mapper/t069a 3 bitmap b full"
	dmsetup message t069v 0 commit
	dmsetup remove t069v
}
chunk_write() { pattern "$2" $CB | dd of="$3" bs=$CB seek="$1" oflag=direct status=none; }

origin_up 3 no_gap origin_id $ID
[ "$(dmsetup table t069 | cut -d' ' -f4-)" = "$SL $MD $CH 3 no_gap origin_id $ID" ] ||
	[ "$(dmsetup table t069 | cut -d' ' -f6-)" = "$CH 3 no_gap origin_id $ID" ] ||
	fail "table not printed back: $(dmsetup table t069)"
dmsetup message t069 0 bitmap_add b
pattern base $((SZ * 512)) | dd of=$OD bs=1M oflag=direct status=none
full_backup
chunk_write 5 c5 $OD
[ "$(bitmap_export t069 b)" = "5 1" ] || fail "bitmap b is not chunk 5: $(bitmap_export t069 b)"
[ "$(tracking)" = ok ] || fail "tracking $(tracking) on a new origin"

# 1. A clean detach, a write that passes the fleece-origin, an attach
# without no_gap: the gap is not silent.
dmsetup message t069 0 clean_detach
dmsetup remove t069
chunk_write 9 raw9 $SL
mark=$(dmesg_mark)
origin_up 2 origin_id $ID
[ "$(tracking)" = gap ] || fail "attach after a detach without no_gap: tracking $(tracking)"
new_dmesg "$mark" | grep -q "untrusted until a full backup: attached without no_gap" ||
	fail "the kernel did not say why the bitmaps are untrusted"
dmsetup suspend t069
expect_ctr_fail t069v "0 $SZ fleece $SL /dev/mapper/t069a 2 bitmap b" \
	"Bitmap untrusted since the origin was attached after a possible gap: use full"
dmsetup resume t069
ref=$(dev_sha $SL)
view_create t069v t069 "0 $SZ fleece $SL /dev/mapper/t069a 3 bitmap b full"
chunk_write 9 late9 $OD
[ "$(dev_sha /dev/mapper/t069v)" = "$ref" ] || fail "the full view after a gap is not the origin"
dmsetup message t069v 0 commit
dmsetup remove t069v
[ "$(tracking)" = ok ] || fail "a committed full backup did not restore trust: $(tracking)"
info "detach, raw write, attach: gap; incremental refused; full backup byte-exact, trust back"

# 2. Shutdown (clean_detach) and boot units that vouch (no_gap): what the
# bitmap recorded is kept, and an incremental view built on it is right.
chunk_write 3 c3 $OD
dmsetup message t069 0 clean_detach
dmsetup remove t069
origin_up 3 origin_id $ID no_gap
[ "$(tracking)" = ok ] || fail "attach with no_gap: tracking $(tracking)"
[ "$(bitmap_export t069 b)" = "3 1
9 1" ] || fail "bitmap b after a clean detach and no_gap: $(bitmap_export t069 b)"
view_create t069v t069 "0 $SZ fleece $SL /dev/mapper/t069a 2 bitmap b"
chunk_write 3 late3 $OD
chunk_write 7 late7 $OD
# An incremental view holds its changed chunks (3 and 9) at its point in
# time; a chunk outside them written since (7) fails rather than lie.
pattern c3 $CB > "$WORK/c3"
pattern late9 $CB > "$WORK/late9"
dev_cmp /dev/mapper/t069v $((3 * CB)) $CB "$WORK/c3" 0 || fail "incremental view: chunk 3 is not its point in time"
dev_cmp /dev/mapper/t069v $((9 * CB)) $CB "$WORK/late9" 0 || fail "incremental view: chunk 9 is not its point in time"
dd if=/dev/mapper/t069v of=/dev/null bs=$CB skip=7 count=1 iflag=direct status=none 2>/dev/null &&
	fail "incremental view: chunk 7, outside its set and overwritten, read without error"
dmsetup message t069v 0 commit
dmsetup remove t069v
info "clean detach, attach with no_gap: bitmaps kept, incremental view byte-exact"

# 3. A detach while the system runs (dmsetup remove, fleecectl detach,
# LVM swapping its table in): no_gap does not cover it. A clean_detach
# taken back counts for nothing; a malformed one is refused.
msg_refused t069 "Invalid argument" clean_detach now
dmsetup message t069 0 clean_detach
dmsetup message t069 0 clean_detach cancel
dmsetup remove t069
chunk_write 11 raw11 $SL
mark=$(dmesg_mark)
origin_up 3 no_gap origin_id $ID
[ "$(tracking)" = gap ] || fail "attach after a detach while running, with no_gap: tracking $(tracking)"
new_dmesg "$mark" | grep -q "the origin was detached while the system ran (no clean_detach)" ||
	fail "the kernel did not say why"
full_backup
dmsetup message t069 0 clean_detach
dmsetup remove t069
origin_up 1 no_gap
[ "$(tracking)" = ok ] || fail "the detach mark outlived the next attach: $(tracking)"
# A clean_detach followed by a resume, not a removal: the origin ran on, so
# a detach much later is not the declared one. A reload of the origin's own
# table is the same.
dmsetup message t069 0 clean_detach
dmsetup suspend t069 && dmsetup resume t069
dmsetup remove t069
origin_up 1 no_gap
[ "$(tracking)" = gap ] || fail "clean_detach, suspend and resume, remove, attach: tracking $(tracking)"
full_backup
dmsetup message t069 0 clean_detach
dmsetup reload t069 --table "$(dmsetup table t069)"
dmsetup suspend t069 && dmsetup resume t069
dmsetup remove t069
origin_up 1 no_gap
[ "$(tracking)" = gap ] || fail "clean_detach, reload, remove, attach: tracking $(tracking)"
full_backup
dmsetup message t069 0 clean_detach
dmsetup remove t069
origin_up 1 no_gap
[ "$(tracking)" = ok ] || fail "a clean detach after a full backup: tracking $(tracking)"
info "detach while running (clean_detach taken back), raw write, attach with no_gap: gap all the same"
info "clean_detach then a resume or a reload instead of the removal: taken back, the later detach leaves a gap"

# 4. A crash: the clean-detach record never reaches the disk. The next
# attach says so; with no_gap the bitmaps are kept (crash-safe).
chunk_write 13 c13 $OD
dmsetup suspend t069m
dmsetup reload t069m --table "0 8192 error"
dmsetup resume t069m
dmsetup remove t069
dmsetup suspend t069m
dmsetup reload t069m --table "0 8192 linear $META 0"
dmsetup resume t069m
mark=$(dmesg_mark)
origin_up 1 no_gap
new_dmesg "$mark" | grep -q "not detached cleanly" || fail "the attach after a crash did not say so"
[ "$(tracking)" = ok ] || fail "after a crash, with no_gap: tracking $(tracking)"
bitmap_export t069 b | grep -q "^13 1$" || fail "the write before the crash is not in bitmap b"
info "crash (no clean-detach record), attach with no_gap: reported, bitmaps kept"

# 5. origin_id binds the metadata to its origin.
dmsetup message t069 0 clean_detach
dmsetup remove t069
before=$(dev_sha $MD)
expect_ctr_fail t069 "0 $SZ fleece-origin $SL $MD $CH 3 no_gap origin_id other-origin" \
	"Metadata belongs to another origin (its origin_id differs)"
[ "$(dev_sha $MD)" = "$before" ] || fail "a refused origin_id changed the metadata"
expect_ctr_fail t069 "0 $SZ fleece-origin $SL $MD $CH 1 origin_id" \
	"Invalid origin_id: 1 to 127 printable ASCII characters"
expect_ctr_fail t069 "0 $SZ fleece-origin $SL $MD $CH 2 origin_id $(printf 'x%.0s' $(seq 128))" \
	"Invalid origin_id: 1 to 127 printable ASCII characters"
expect_ctr_fail t069 "0 $SZ fleece-origin $SL $MD $CH 1 gap_ok" "Unknown feature argument"
origin_up 3 no_gap origin_id $ID
if dmsetup reload t069 --table "0 $SZ fleece-origin $SL $MD $CH 2 origin_id other-origin" 2>/dev/null; then
	dmsetup clear t069
	fail "a reload with another origin_id was accepted"
fi
[ "$(tracking)" = ok ] || fail "a refused reload changed tracking: $(tracking)"
dmsetup reload t069 --table "$(dmsetup table t069)"
dmsetup suspend t069 && dmsetup resume t069
[ "$(dmsetup table t069 | cut -d' ' -f6-)" = "$CH 3 no_gap origin_id $ID" ] ||
	fail "the table loaded from its own printed line reads back as $(dmsetup table t069)"
dmsetup reload t069 --table "0 $SZ fleece-origin $SL $MD $CH 0"
dmsetup suspend t069 && dmsetup resume t069
[ "$(tracking)" = ok ] || fail "a reload (no gap: the old table tracked) made tracking $(tracking)"
info "origin_id: another origin refused at attach and reload, metadata untouched; reload keeps trust"

# 6. fleecectl: the table carries an origin_id; remove says "detaching".
dmsetup remove t069
dmsetup create t069c --table "0 $SZ linear $ORIGIN 0"
zero_dev $META 0 $((4 << 20))
expect_rc 0 $F create t069 /dev/mapper/t069c --meta $MD --chunk-size 4K --no-gap
dmsetup table t069 | grep -q " no_gap origin_id dm-name-t069c$" ||
	fail "fleecectl create: no origin_id in the table: $(dmsetup table t069)"
expect_rc 0 $F bitmap add t069 b
expect_rc 0 $F remove t069
expect_rc 0 $F create t069 /dev/mapper/t069c --meta $MD --chunk-size 4K --no-gap
[ "$(tracking)" = gap ] || fail "fleecectl remove, create --no-gap: tracking $(tracking)"
expect_err 5 "attached after a time in which writes could pass it" \
	$F snapshot t069 --scratch /dev/mapper/t069a --bitmap b
$F status --json > "$WORK/status.json"
json_assert "$WORK/status.json" "[o['tracking'] for o in d['origins'] if o['name'] == 't069'] == ['gap']"
expect_rc 0 $F snapshot t069 --scratch /dev/mapper/t069a --bitmap b --full --view t069v
ref=$(dev_sha /dev/mapper/t069c)
chunk_write 2 late2 $OD
[ "$(dev_sha /dev/mapper/t069v)" = "$ref" ] || fail "fleecectl's full view is not its point in time"
expect_rc 0 $F release t069v --commit
$F status --json > "$WORK/status.json"
json_assert "$WORK/status.json" "[o['tracking'] for o in d['origins'] if o['name'] == 't069'] == ['ok']"
# At shutdown the units remove it with down --shutdown: a clean detach.
printf 't069 /dev/mapper/t069c %s mode=create,chunk-size=4K,bitmaps=b\n' $MD > "$WORK/tab"
expect_rc 0 $F down --shutdown --tab "$WORK/tab"
expect_rc 0 $F up --tab "$WORK/tab"
[ "$(tracking)" = ok ] || fail "down --shutdown, up: tracking $(tracking)"
expect_rc 0 $F remove t069
info "fleecectl: origin_id in the table; remove + create --no-gap: gap, full backup byte-exact, ok; down --shutdown + up: ok"
