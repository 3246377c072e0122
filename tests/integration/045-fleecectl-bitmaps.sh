#!/bin/bash
# fleecectl bitmap add/remove/clear/merge/list and changes: each command
# against what the kernel says (bitmap_list, bitmap_changes); the changed
# byte ranges equal the bytes written; snapshot --bitmap opens a backup
# transaction, release merges it back and release --commit drops it; every
# refusal names the device and the reason and changes nothing.
. "$(dirname "$0")/lib.sh"
F=$FLEECECTL
mib=$((1024 * 1024))
size=$((64 * mib))
CB=65536

# bitmap_dirty NAME BITMAP: dirty chunks as the kernel's bitmap_list says.
bitmap_dirty() { dmsetup message "$1" 0 bitmap_list | awk -v b="$2" '$1 == b { print $2 }'; }
# kernel_bytes NAME BITMAP: the kernel's ranges as "offset length" in bytes.
kernel_bytes() {
	bitmap_export "$1" "$2" | awk -v cb=$CB -v sz=$size \
		'{ o = $1 * cb; l = $2 * cb; if (o + l > sz) l = sz - o; print o, l }'
}

dmsetup create t045o --table "0 $((size / 512)) linear $ORIGIN 0"
expect_rc 0 $F create t045 /dev/mapper/t045o --meta $META
D=/dev/mapper/t045

# add, list (human and JSON), refusals.
expect_rc 0 $F bitmap add t045 daily
expect_rc 0 $F bitmap add $D weekly
expect_rc 0 $F bitmap list t045
grep -qE '^daily +0 +0B? +0$' $WORK/stdout || { cat $WORK/stdout; fail "bitmap list: no empty daily"; }
expect_rc 0 $F bitmap list t045 --json
json_assert $WORK/stdout 'd["origin"] == "t045" and d["metadata"] == "persistent" and d["tracking"] == "ok" and sorted(b["name"] for b in d["bitmaps"]) == ["daily", "weekly"]'
before=$(dmsetup message t045 0 bitmap_list | sort)
expect_err 4 "bitmap add t045: daily: a bitmap of that name exists" $F bitmap add t045 daily
expect_err 1 "bitmap add t045: 'a b' is not a valid bitmap name" $F bitmap add t045 "a b"
expect_err 1 "bitmap add t045: '12345678901234567890123456789012' is not a valid" \
	$F bitmap add t045 12345678901234567890123456789012
expect_err 1 "bitmap remove t045: nosuch: no such bitmap" $F bitmap remove t045 nosuch
expect_err 1 "bitmap clear t045: nosuch: no such bitmap" $F bitmap clear t045 nosuch
expect_err 1 "bitmap merge t045: nosuch into daily: no such bitmap" $F bitmap merge t045 daily nosuch
expect_err 3 "bitmap add t045o: not a fleece-origin device \(its table is linear\)" \
	$F bitmap add t045o x
expect_err 3 "bitmap add nosuch: no such device-mapper device" $F bitmap add nosuch x
expect_err 2 "unknown verb 'drop'" $F bitmap drop t045 daily
expect_err 2 "merge takes NAME DST SRC" $F bitmap merge t045 daily
expect_err 2 "--json goes with list only" $F bitmap add t045 x --json
[ "$(dmsetup message t045 0 bitmap_list | sort)" = "$before" ] || fail "a refused bitmap command changed the bitmaps"
for i in 3 4 5 6 7 8; do expect_rc 0 $F bitmap add t045 b$i; done
expect_err 1 "bitmap add t045: b9: no free slot" $F bitmap add t045 b9
for i in 3 4 5 6 7 8; do expect_rc 0 $F bitmap remove t045 b$i; done
[ "$(dmsetup message t045 0 bitmap_list | sort)" = "$before" ] || fail "bitmaps after adding and removing six"
info "add, list, remove and their refusals; 8 bitmaps, the 9th refused"

# Writes: 4 KiB in chunk 0, 96 KiB across chunks 3-4, 1 MiB at 10 MiB,
# a discard of 2 MiB at 20 MiB, and the last 4 KiB of the device.
stamp $D 0 4096 a >/dev/null
stamp $D $((3 * CB + 32768)) $((96 * 1024)) b >/dev/null
stamp $D $((10 * mib)) $mib c >/dev/null
blkdiscard -o $((20 * mib)) -l $((2 * mib)) $D
stamp $D $((size - 4096)) 4096 d >/dev/null
want="0 65536
196608 131072
10485760 1048576
20971520 2097152
67043328 65536"
expect_rc 0 $F changes t045 daily
[ "$(cat $WORK/stdout)" = "$want" ] || { cat $WORK/stdout; fail "changes t045 daily: not the bytes written"; }
[ "$(kernel_bytes t045 daily)" = "$want" ] || fail "the kernel's ranges differ from fleecectl's"
expect_rc 0 $F changes $D weekly --json
json_assert $WORK/stdout 'd["bitmap"] == "weekly" and d["chunk_bytes"] == 65536 and d["nr_ranges"] == 5 and d["changed_bytes"] == 3407872 and d["ranges"][1] == {"offset": 196608, "length": 131072}'
[ "$(bitmap_dirty t045 daily)" = 52 ] || fail "daily has $(bitmap_dirty t045 daily) chunks, expected 52"
expect_err 1 "changes t045: no bitmap 'nosuch'" $F changes t045 nosuch
expect_err 2 "t045 is a fleece-origin device: name one of its bitmaps" $F changes t045
info "changes: the 5 ranges written, in bytes (human and JSON), equal to the kernel's"

# clear and merge.
expect_rc 0 $F bitmap clear t045 weekly
[ "$(bitmap_dirty t045 weekly)" = 0 ] || fail "clear left $(bitmap_dirty t045 weekly) chunks"
[ "$(bitmap_dirty t045 daily)" = 52 ] || fail "clear of weekly changed daily"
stamp $D $((30 * mib)) 4096 e >/dev/null
expect_rc 0 $F bitmap merge t045 weekly daily
[ "$(bitmap_dirty t045 weekly)" = 53 ] || fail "weekly has $(bitmap_dirty t045 weekly) chunks after merge, expected 53"
[ "$(kernel_bytes t045 weekly)" = "$(kernel_bytes t045 daily)" ] || fail "weekly != daily after merge"
info "clear empties one bitmap; merge ORs daily into weekly"

# snapshot --bitmap: refusals first, nothing changes.
state=$(bitmap_state t045)
expect_err 1 "snapshot t045: no bitmap 'nosuch' on it" $F snapshot t045 --scratch $SCRATCH --bitmap nosuch
expect_err 2 "--full goes with --bitmap" $F snapshot t045 --scratch $SCRATCH --full
expect_err 2 "--writable and --bitmap exclude each other" $F snapshot t045 --scratch $SCRATCH --bitmap daily --writable
expect_err 2 "invalid --bitmap 'a/b'" $F snapshot t045 --scratch $SCRATCH --bitmap a/b
[ "$(bitmap_state t045)" = "$state" ] || fail "a refused snapshot changed the bitmaps"
[ "$(dm_state t045)" = ACTIVE ] || fail "t045 left $(dm_state t045)"
[ -z "$(dmsetup ls | grep t045-snap)" ] || fail "a refused snapshot left a view"

# snapshot --bitmap daily: the view lists daily's 53 chunks, daily restarts.
old=$(kernel_bytes t045 daily)
expect_rc 0 $F snapshot t045 --scratch $SCRATCH --bitmap daily --view t045v
[ "$(cat $WORK/stdout)" = /dev/mapper/t045v ] || fail "snapshot printed $(cat $WORK/stdout)"
[ "$(bitmap_dirty t045 daily)" = 0 ] || fail "daily not empty after the snapshot"
expect_rc 0 $F changes t045v
[ "$(cat $WORK/stdout)" = "$old" ] || fail "changes of the view differ from daily before the snapshot"
expect_rc 0 $F changes t045v daily --json
json_assert $WORK/stdout 'd["kind"] == "backup transaction" and d["nr_ranges"] == 6'
expect_err 1 "the view's bitmap is 'daily', not 'weekly'" $F changes t045v weekly
expect_rc 0 $F status t045 --json
json_assert $WORK/stdout '[(v["bitmap"], v["transaction"], v["full"]) for v in d["origins"][0]["views"]] == [("daily", "open", False)] and [b["backups_in_progress"] for b in d["origins"][0]["bitmaps"] if b["name"] == "daily"] == [1]'
expect_rc 0 $F status
grep -qE '^t045v .* daily \(open\)$' $WORK/stdout || { cat $WORK/stdout; fail "status: no 'daily (open)' for the view"; }
grep -qE '^daily +t045 +0 ' $WORK/stdout || { cat $WORK/stdout; fail "status: no bitmap row for daily"; }
expect_err 4 "bitmap remove t045: daily: a backup is in progress on it" $F bitmap remove t045 daily
expect_err 4 "bitmap clear t045: daily: a backup is in progress on it" $F bitmap clear t045 daily
info "snapshot --bitmap: the view lists the 6 old ranges, daily restarts; remove/clear refused"

# release without --commit merges back: daily = old ranges + new writes.
stamp $D $((40 * mib)) 4096 f >/dev/null
expect_rc 0 $F release t045v
grep -q "changes since the last committed backup kept in bitmap 'daily'" $WORK/stdout ||
	fail "release did not say the changes were kept: $(cat $WORK/stdout)"
want=$(printf '%s\n%s\n' "$old" "41943040 65536" | sort -n)
[ "$(kernel_bytes t045 daily)" = "$want" ] || fail "daily after release is not the old ranges plus the new write"
info "release (no commit): the frozen ranges merged back into daily, with the write since"

# release --commit: daily keeps only what was written after the point in time.
expect_rc 0 $F snapshot t045 --scratch $SCRATCH --bitmap daily --view t045v
stamp $D $((50 * mib)) 4096 g >/dev/null
# Not while a program still reads the view (an export's client may fail).
exec 7< /dev/mapper/t045v
expect_err 4 "release t045v: in use .*not committed, the session goes on" $F release t045v --commit
exec 7<&-
[ "$(view_txn t045v daily)" = open ] || fail "release --commit of an open view: transaction '$(view_txn t045v daily)'"
[ "$(dm_state t045v)" = ACTIVE ] || fail "a refused release --commit removed the view"
expect_rc 0 $F release t045v --commit
[ "$(kernel_bytes t045 daily)" = "52428800 65536" ] || fail "daily after commit: $(kernel_bytes t045 daily)"
# --abort after a commit says so; a plain view has nothing to commit.
expect_rc 0 $F snapshot t045 --scratch $SCRATCH --bitmap daily --view t045v
dmsetup message t045v 0 commit
expect_err 0 "the backup was committed already" $F release t045v --abort
[ "$(bitmap_dirty t045 daily)" = 0 ] || fail "daily not empty after a committed view ended"
expect_rc 0 $F snapshot t045 --scratch $SCRATCH --view t045p
expect_err 1 "release t045p: --commit: the view has no bitmap" $F release t045p --commit
[ "$(dm_state t045p)" = ACTIVE ] || fail "a refused release --commit removed the view"
expect_err 1 "changes t045p: the view has no bitmap" $F changes t045p
expect_err 2 "--commit and --abort exclude each other" $F release t045p --commit --abort
expect_rc 0 $F release t045p
info "release --commit drops the frozen set; --abort after a commit warns; plain views refuse --commit"

# An invalid view cannot be committed: overflow a 1-chunk scratch (with
# --full every chunk is part of the backup, so both writes are copied).
dmsetup create t045s --table "0 128 linear $SCRATCH 0"
expect_rc 0 $F snapshot t045 --scratch /dev/mapper/t045s --bitmap daily --full --view t045v
stamp $D $((50 * mib)) 4096 h >/dev/null
stamp $D $((60 * mib)) 4096 i >/dev/null
[ "$(view_stat t045v state)" = Invalid ] || fail "the view is $(view_stat t045v state) with scratch full"
expect_err 5 "release t045v: --commit: the session is invalid" $F release t045v --commit
expect_rc 0 $F release t045v
[ "$(kernel_bytes t045 daily)" = "52428800 65536
62914560 65536" ] || fail "daily after an invalid view ended: $(kernel_bytes t045 daily)"
info "an invalid view's --commit refused; released, its set merged back"

dmsetup remove t045s
expect_rc 0 $F remove t045
# The bitmaps are on the metadata device: recreated, they are still there,
# untrusted: remove recorded a detach for maintenance (writes could pass).
expect_rc 0 $F create t045 /dev/mapper/t045o --meta $META --no-gap
expect_rc 0 $F bitmap list t045 --json
json_assert $WORK/stdout '{b["name"]: b["dirty_chunks"] for b in d["bitmaps"]} == {"daily": 2, "weekly": 56}'
json_assert $WORK/stdout 'd["tracking"] == "gap"'
expect_rc 0 $F remove t045
dmsetup remove t045o
info "bitmaps persist across remove and create with the same metadata"
