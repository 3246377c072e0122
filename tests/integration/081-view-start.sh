#!/bin/bash
# A view's point in time is its first resume, so its table can be loaded
# while the origin runs and the origin is suspended only for the start
# (issue 16, item 3); the origin's status never waits for metadata IO
# (item 4).
#
# - Views (one plain, one incremental on bitmap "b") are loaded while the
#   origin is written: writes before their resume are in them, writes after
#   are not (whole-image sha256 for the plain view; the incremental one's
#   frozen set is exactly the chunks written since the last backup, up to
#   the resume, and reads them as of the resume).
# - Between load and start: the bitmap is held (bitmap_clear refused, state
#   unchanged), the session counts, and a resume with the origin running is
#   refused with the reason; the same view starts once the origin is
#   suspended.
# - Removing a view that was loaded but never started gives everything back
#   (bitmap state as before the load, no session).
# - fleecectl snapshot -v says how long the origin was suspended, and its
#   view is the image at that moment.
# - With the metadata device's IO held (its dm-linear suspended with
#   --noflush), a first write waits in a commit round that holds the
#   tracker's lock: dmsetup status still answers, with the new chunk
#   counted; a message queued behind the round proves the lock was held.
# - On a 512 MiB origin with 4 KiB chunks (4 regions of 2^15 chunks), the
#   incremental view's ctr takes the bitmap's complement, and the start
#   redoes only the regions written since: chunks first written between
#   load and start, in several regions and across a region's end, are in
#   the frozen set and read as of the start.
. "$(dirname "$0")/lib.sh"

CH=8				# 4 KiB chunks
CB=4096
SZ=$((16 * 2048))		# 16 MiB
OD=/dev/mapper/t081
SL=/dev/mapper/t081s
MD=/dev/mapper/t081m

cleanup() {
	dmsetup resume t081m 2>/dev/null || true
	for d in t081x t081w t081v t081f t081 t081s t081m t081a t081b t081c t081d \
		t081Lv t081L t081Ls t081Lm; do
		dmsetup remove $d 2>/dev/null || true
	done
}
trap cleanup EXIT

load_module
zero_dev $META 0 $((4 << 20))
dmsetup create t081s --table "0 $SZ linear $ORIGIN 0"
dmsetup create t081m --table "0 8192 linear $META 0"
for i in a b c d; do
	n=$(printf '%d' "'$i"); n=$((n - 97))
	dmsetup create t081$i --table "0 $SZ linear $SCRATCH $((n * SZ))"
done
dmsetup create t081 --table "0 $SZ fleece-origin $SL $MD $CH"
dmsetup message t081 0 bitmap_add b
pattern base $((SZ * 512)) > "$WORK/img"
dd if="$WORK/img" of=$OD bs=1M oflag=direct status=none

# The full backup that starts the chain.
view_create t081f t081 "0 $SZ fleece $SL /dev/mapper/t081a 3 bitmap b full"
dmsetup message t081f 0 commit
dmsetup remove t081f

# chunk_write N SEED: stamp chunk N of the origin; $WORK/img follows the
# origin until it is copied as a view's expected image.
chunk_write() {
	pattern "$2" $CB > "$WORK/c$1.$2"
	dd if="$WORK/c$1.$2" of=$OD bs=$CB seek="$1" oflag=direct status=none
	dd if="$WORK/c$1.$2" of="$WORK/img" bs=$CB seek="$1" conv=notrunc status=none
}
chunk_is() { dev_cmp "$1" $(($2 * CB)) $CB "$3" 0 || fail "$1 chunk $2 is not $3"; }
chunk_eio() {
	dd if="$1" of=/dev/null bs=$CB skip="$2" count=1 iflag=direct status=none 2>/dev/null &&
		fail "$1 chunk $2 read, where EIO was documented (written since the point in time)"
	return 0
}
# dirty NAME: the dirty_chunks of bitmap NAME in the origin's status.
dirty() { dmsetup status t081 | awk -v b="$1" '{ for (i = 8; i < NF; i += 3) if ($i == b) print $(i + 1) }'; }

# --- 1. Loaded while the origin runs, started at the resume -------------------
chunk_write 10 a10
before=$(bitmap_export t081 b)
dmsetup create t081v --notable
dmsetup load t081v --table "0 $SZ fleece $SL /dev/mapper/t081b 2 bitmap b"
dmsetup create t081w --notable
dmsetup load t081w --table "0 $SZ fleece $SL /dev/mapper/t081c"
[ "$(origin_sessions t081)" = 2 ] || fail "two loaded views: $(origin_sessions t081) sessions"
[ "$(bitmap_export t081 b)" = "$before" ] || fail "loading a view changed bitmap b"
[ "$(dirty b)" = 1 ] || fail "bitmap b counts $(dirty b) chunks after the load, expected 1"
msg_refused t081 "Device or resource busy" bitmap_clear b
msg_refused t081 "Device or resource busy" bitmap_remove b
chunk_write 20 b20

mark=$(dmesg_mark)
dmsetup resume t081v 2>/dev/null && fail "a view resumed while its origin runs"
new_dmesg "$mark" | grep -qE "fleece: [0-9]+:[0-9]+: cannot resume: Suspend the fleece-origin device before creating a view" ||
	{ new_dmesg "$mark" >&2; fail "the refused resume did not say why"; }
[ "$(dm_state t081)" = ACTIVE ] || fail "the refused resume suspended the origin"
info "a resume with the origin running is refused, with the reason"
chunk_write 30 c30
[ "$(dirty b)" = 3 ] || fail "bitmap b counts $(dirty b) chunks before the start, expected 3"

dmsetup suspend t081
dmsetup resume t081v
dmsetup resume t081w
dmsetup resume t081
udevadm settle 2>/dev/null || true
cp "$WORK/img" "$WORK/pit"
[ "$(dirty b)" = 0 ] || fail "bitmap b counts $(dirty b) chunks after the freeze, expected 0"
chunk_write 40 d40
chunk_write 10 e10
chunk_write 20 f20
[ "$(dirty b)" = 3 ] || fail "bitmap b counts $(dirty b) chunks after 3 writes, expected 3"

got=$(ranges_export /dev/mapper/t081v 100 changes | tr '\n' ' ')
[ "$got" = "10 1 20 1 30 1 " ] || fail "the frozen set is '$got', expected chunks 10, 20, 30"
chunk_is /dev/mapper/t081v 10 "$WORK/c10.a10"
chunk_is /dev/mapper/t081v 20 "$WORK/c20.b20"
chunk_is /dev/mapper/t081v 30 "$WORK/c30.c30"
chunk_eio /dev/mapper/t081v 40
[ "$(dev_sha /dev/mapper/t081w)" = "$(sha256sum < "$WORK/pit" | cut -d' ' -f1)" ] ||
	fail "the plain view is not the origin as of its resume"
info "writes before the resume are in the views, writes after are not"
dmsetup message t081v 0 commit
dmsetup remove t081v
dmsetup remove t081w

# --- 2. Loaded, never started, removed: nothing changed -----------------------
dmsetup create t081x --notable
dmsetup load t081x --table "0 $SZ fleece $SL /dev/mapper/t081b 2 bitmap b"
chunk_write 50 g50
dmsetup remove t081x
[ "$(origin_sessions t081)" = 0 ] || fail "$(origin_sessions t081) sessions after removing the unstarted view"
[ "$(dirty b)" = 4 ] || fail "bitmap b counts $(dirty b) chunks, expected 4 (10, 20, 40, 50)"
got=$(bitmap_export t081 b | tr '\n' ' ')
[ "$got" = "10 1 20 1 40 1 50 1 " ] || fail "bitmap b is '$got' after the unstarted view, expected 10 20 40 50"
dmsetup message t081 0 bitmap_clear b
info "a view removed before its start gave back the bitmap and the session"

# --- 3. fleecectl snapshot: load, suspend, start, resume ----------------------
"$FLEECECTL" snapshot -v t081 --scratch /dev/mapper/t081d --view t081x > "$WORK/snap.out" 2> "$WORK/snap.err" ||
	{ cat "$WORK/snap.err" >&2; fail "fleecectl snapshot failed"; }
grep -qE "snapshot t081: origin suspended for [0-9.]+ ms" "$WORK/snap.err" ||
	{ cat "$WORK/snap.err" >&2; fail "fleecectl snapshot -v did not say how long the origin was suspended"; }
cp "$WORK/img" "$WORK/pit"
chunk_write 60 h60
chunk_write 0 h0
[ "$(dev_sha /dev/mapper/t081x)" = "$(sha256sum < "$WORK/pit" | cut -d' ' -f1)" ] ||
	fail "fleecectl's view is not the origin as of the snapshot"
"$FLEECECTL" release t081x
info "fleecectl: $(grep -o 'suspended for .*' "$WORK/snap.err")"

# --- 4. Status while a commit round waits for the metadata device -------------
dmsetup message t081 0 bitmap_add q
dmsetup suspend --noflush t081m
pattern w70 $CB > "$WORK/c70"
dd if="$WORK/c70" of=$OD bs=$CB seek=70 oflag=direct status=none &
wpid=$!
# The write is recorded (counted) before it waits for its round.
for i in $(seq 200); do
	[ "$(dirty q)" = 1 ] && break
	sleep 0.1
done
[ "$(dirty q)" = 1 ] || fail "the first write to chunk 70 was not counted in bitmap q"
dmsetup message t081 0 bitmap_list > "$WORK/list.out" 2>&1 &
mpid=$!
sleep 1
out=$(timeout 300 dmsetup status t081) || fail "dmsetup status did not answer while a commit round waits (rc $?)"
echo "$out" | grep -q " q 1 0" || fail "status while the round waits: '$out'"
kill -0 $wpid 2>/dev/null || fail "the first write did not wait for its bit to be durable"
if kill -0 $mpid 2>/dev/null; then
	info "status answered while a message waited behind the commit round"
else
	info "inconclusive: the message did not wait (the round had not taken the lock)"
fi
dmsetup resume t081m
wait $wpid || fail "the write to chunk 70 failed"
wait $mpid || fail "bitmap_list failed after the metadata device came back"
chunk_is $OD 70 "$WORK/c70"
[ "$(bitmap_export t081 q | tr '\n' ' ')" = "70 1 " ] || fail "bitmap q is not chunk 70"
info "status does not wait for metadata IO"

# --- 5. Regions the freeze redoes ---------------------------------------------
LSZ=$((512 * 2048))		# 512 MiB: 131072 chunks, 4 regions
LD=/dev/mapper/t081L
zero_dev $META $((4 << 20)) $((4 << 20))
dmsetup create t081Ls --table "0 $LSZ linear $ORIGIN $((64 * 2048))"
dmsetup create t081Lm --table "0 8192 linear $META 8192"
dmsetup create t081L --table "0 $LSZ fleece-origin /dev/mapper/t081Ls /dev/mapper/t081Lm $CH"
dmsetup message t081L 0 bitmap_add b
# lw CHUNK COUNT SEED: write COUNT chunks at CHUNK; the data in $WORK/L.CHUNK.SEED.
lw() {
	pattern "$3" $(($2 * CB)) > "$WORK/L.$1.$3"
	dd if="$WORK/L.$1.$3" of=$LD bs=$CB seek="$1" oflag=direct status=none
}
lw 5 1 a
lw 40000 1 a
dmsetup create t081Lv --notable
dmsetup load t081Lv --table "0 $LSZ fleece /dev/mapper/t081Ls /dev/mapper/t081b 2 bitmap b"
# Between the load and the start: new chunks in regions 2 and 3, one write
# across the end of region 0 (the only one in region 1), and one chunk
# written again.
lw 70000 1 b
lw 32767 2 b
lw 131071 1 b
lw 5 1 b
dmsetup suspend t081L
dmsetup resume t081Lv
dmsetup resume t081L
udevadm settle 2>/dev/null || true
# After the start: all of them again, and a new chunk in region 3.
for c in 5 40000 70000 32767 32768 131071 100000; do lw $c 1 z; done
got=$(ranges_export /dev/mapper/t081Lv 100 changes | tr '\n' ' ')
[ "$got" = "5 1 32767 2 40000 1 70000 1 131071 1 " ] ||
	fail "the frozen set is '$got', expected 5, 32767-32768, 40000, 70000, 131071"
for f in 5.b 32767.b 40000.a 70000.b 131071.b; do
	dev_cmp /dev/mapper/t081Lv $((${f%.*} * CB)) $(stat -c %s "$WORK/L.$f") "$WORK/L.$f" 0 ||
		fail "view chunk ${f%.*} is not as of the start ($f)"
done
dd if=/dev/mapper/t081Lv of=/dev/null bs=$CB skip=100000 count=1 iflag=direct status=none 2>/dev/null &&
	fail "view chunk 100000 (written after the start) read, where EIO was documented"
info "writes between load and start, in four regions, are in the view as of the start"
dmsetup remove t081Lv
dmsetup remove t081L
