#!/bin/bash
# Activation at scale (issue 16, item 2). Counted in read requests, not
# seconds: the metadata device is a dm-linear over a sparse file, and its
# /sys/block/dm-N/stat counts every bio dm-fleece sends it.
# - First activation of a 1 TiB origin (dm-zero) with 4 KiB chunks on a
#   2 GiB sparse metadata device: the zero check reads the whole area
#   (1.02 GiB: read sectors >= the area) in at most area/1 MiB + 16 reads
#   (it was one read per 4 KiB block: 266,338).
# - Two bitmaps written all over the origin (first and last chunk, both
#   sides of metadata block boundaries, a chunk in every 37th block) load
#   back byte-identical (bitmap_changes) after a re-activation, which reads
#   at most 2 * slot/1 MiB + 16 requests; a table reload reads nothing.
# - One non-zero byte in the last 4 KiB of the area: refused, after reading
#   up to it, and the device is left untouched (the allocated blocks of
#   the sparse file, sha256 of both ends of the area, before and after).
# - While one origin's activation waits for a metadata read (its metadata
#   device is a suspended dm-linear; its stack says it waits there), other
#   origins and views are created, used and removed, and a view of the
#   origin being loaded is refused at once; a second table of the same
#   origin waits in the attach, then shares the bitmaps. Before, all of
#   them waited for the module-wide lock.
. "$(dirname "$0")/lib.sh"

CH=8					# 4 KiB chunks
OSZ=$((1 << 31))			# 1 TiB: 2^28 chunks
NCH=$((OSZ / CH))
NB=$(((NCH + 32255) / 32256))		# 8323 blocks per bitmap copy
AREA=$(((2 + 16 * 2 * NB) * 8))		# sectors: 266,338 blocks
SLOT=$((2 * NB * 8))			# sectors of one slot's area
MIB=2048				# sectors per MiB
IMG=$WORK/meta.img
OD=/dev/mapper/t080
M=/dev/mapper/t080m
loopdev=

cleanup() {
	for d in t080x t080v t080a t080a2 t080b t080c t080 t080h t080m t080mb t080s t080z t080o1 t080o2 t080o3; do
		dmsetup remove $d 2>/dev/null || true
	done
	[ -n "$loopdev" ] && losetup -d "$loopdev" 2>/dev/null || true
}
trap cleanup EXIT

say() { info "$* [${SECONDS}s]"; }
reads() { awk '{ print $1 }' "/sys/block/$(basename "$(readlink -f "$1")")/stat"; }
read_sectors() { awk '{ print $3 }' "/sys/block/$(basename "$(readlink -f "$1")")/stat"; }
table() { echo "0 $OSZ fleece-origin /dev/mapper/t080z $M $CH 1 no_gap"; }

# new_meta: a fresh sparse 2 GiB file under $M. Runs $1 on the file first.
new_meta() {
	dmsetup remove t080m 2>/dev/null || true
	[ -n "$loopdev" ] && losetup -d "$loopdev"
	rm -f "$IMG"
	truncate -s 2G "$IMG"
	[ -z "${1:-}" ] || "$1"
	loopdev=$(losetup -f --show "$IMG")
	dmsetup create t080m --table "0 $(dev_sectors "$loopdev") linear $loopdev 0"
	udevadm settle
}

modprobe loop 2>/dev/null || true
load_module
dmsetup create t080z --table "0 $OSZ zero"

# ---- first activation: the zero check ----
new_meta
r0=$(reads $M); s0=$(read_sectors $M)
start=$SECONDS
dmsetup create t080 --table "$(table)"
took=$((SECONDS - start))
nr=$(($(reads $M) - r0)); ns=$(($(read_sectors $M) - s0))
max=$((AREA / MIB + 16))
[ "$(dmsetup status t080)" = "0 $OSZ fleece-origin persistent 0 ok 0" ] || fail "status: $(dmsetup status t080)"
[ "$ns" -ge "$AREA" ] || fail "the zero check read $ns sectors, less than the area ($AREA)"
[ "$nr" -le "$max" ] || fail "first activation: $nr read requests, more than $max"
[ "$(meta_sb_seq $M 1)" = 1 ] || fail "no superblock written by the format"
say "first activation, $((AREA / MIB)) MiB area: $nr read requests (<= $max), $ns sectors, ${took}s"

# ---- bitmaps written all over load back byte-identical ----
dmsetup message t080 0 bitmap_add b1
python3 - "$OD" "$NCH" "$NB" <<'PY'
import mmap, os, sys
dev, nch, nb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
chunks = {0, 1, nch - 1, nch - 2, 32255, 32256, 32256 * 100 - 1, 32256 * 100}
chunks |= {i * 32256 + (i * 7919) % 32256 for i in range(0, nb, 37)}
fd = os.open(dev, os.O_WRONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 4096)
buf.write(b"\x5a" * 4096)
for c in sorted(c for c in chunks if c < nch):
    os.pwritev(fd, [buf], c * 4096)
os.close(fd)
PY
dmsetup message t080 0 bitmap_add b2
dd if=/dev/zero of=$OD bs=4096 seek=$((NCH - 1)) count=1 oflag=direct status=none
dd if=/dev/zero of=$OD bs=4096 seek=$((NCH / 2)) count=1 oflag=direct status=none
bitmap_export t080 b1 > $WORK/b1.before
bitmap_export t080 b2 > $WORK/b2.before
n1=$(ranges_chunks < $WORK/b1.before | wc -l)
[ "$n1" -ge 230 ] || fail "b1 holds $n1 chunks, expected at least 230"
[ "$(cat $WORK/b2.before)" = "$((NCH / 2)) 1
$((NCH - 1)) 1" ] || fail "b2: $(cat $WORK/b2.before)"

# A table reload shares the bitmaps in memory: nothing is read.
r0=$(reads $M)
dmsetup reload t080 --table "$(table)"
dmsetup resume t080
[ "$(reads $M)" = "$r0" ] || fail "a table reload read the metadata ($(($(reads $M) - r0)) requests)"
bitmap_export t080 b1 | cmp -s - $WORK/b1.before || fail "b1 differs after a table reload"

dmsetup message t080 0 clean_detach
dmsetup remove t080
r0=$(reads $M)
dmsetup create t080 --table "$(table)"
nr=$(($(reads $M) - r0))
max=$((2 * SLOT / MIB + 16))
[ "$nr" -le "$max" ] || fail "re-activation with 2 bitmaps: $nr read requests, more than $max"
[[ "$(dmsetup status t080)" == *" ok 2 "* ]] || fail "status after re-activation: $(dmsetup status t080)"
bitmap_export t080 b1 | cmp -s - $WORK/b1.before || fail "b1 differs after re-activation"
bitmap_export t080 b2 | cmp -s - $WORK/b2.before || fail "b2 differs after re-activation"
say "re-activation: $n1 + 2 chunks in 2 bitmaps load back identical in $nr read requests (<= $max); a reload reads none"
dmsetup remove t080

# ---- one non-zero byte in the last 4 KiB of the area ----
last_byte() { printf '\001' | dd of="$IMG" bs=1 seek=$((AREA * 512 - 1)) conv=notrunc status=none; }
new_meta last_byte
# A write anywhere allocates blocks of the sparse file (tmpfs): the count
# covers the whole device; the checksums, what is at both ends of the area.
ends() { file_sha "$IMG" 0 $((1 << 20)); file_sha "$IMG" $((AREA * 512 - (1 << 20))) $((1 << 20)); }
sha0=$(ends); blk0=$(stat -c %b "$IMG")
r0=$(reads $M); s0=$(read_sectors $M)
expect_ctr_fail t080 "$(table)" "Metadata device holds something else: refusing to overwrite it"
ns=$(($(read_sectors $M) - s0)); nr=$(($(reads $M) - r0))
[ "$ns" -ge "$AREA" ] || fail "refused after reading $ns sectors: the byte is at the end of the area ($AREA)"
[ "$(ends)" = "$sha0" ] || fail "the refused device was written"
[ "$(stat -c %b "$IMG")" = "$blk0" ] || fail "the refused device was written (allocated blocks changed)"
say "a non-zero byte in the area's last 4 KiB: refused after $nr read requests, device unchanged"
dmsetup remove t080m
losetup -d "$loopdev"
loopdev=
rm -f "$IMG"

# ---- one activation held in a metadata read, others go on ----
SZ=$((64 * MIB))
DMSETUP=$(type -P dmsetup)
zero_dev $META 0 $((32 << 20))
for i in 1 2 3; do
	dmsetup create t080o$i --table "0 $SZ linear $ORIGIN $(((i - 1) * SZ))"
done
# The metadata of t080a: a dm-linear, suspended so that reads of it wait
# (probed by udev before, while it answers).
dmsetup create t080h --table "0 $((4 * MIB)) linear $META 0"
udevadm settle
dmsetup suspend t080h
# An origin in use before, to be removed while t080a loads.
dmsetup create t080c --table "0 $SZ fleece-origin /dev/mapper/t080o3 - $CH"
# in_kernel PID FUNCTION: wait until PID's kernel stack holds FUNCTION.
in_kernel() {
	local i
	for i in $(seq 1 300); do
		grep -q "$2" /proc/$1/stack 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}
"$DMSETUP" create t080a --table "0 $SZ fleece-origin /dev/mapper/t080o1 /dev/mapper/t080h $CH" &
pa=$!
in_kernel $pa fleece_meta_load || fail "the activation of t080a never waited for its metadata: $(cat /proc/$pa/stack 2>&1)"
# A second table of the same origin waits for the first's load.
"$DMSETUP" create t080a2 --table "0 $SZ fleece-origin /dev/mapper/t080o1 /dev/mapper/t080h $CH" &
pa2=$!
in_kernel $pa2 fleece_dev_attach_tracker || fail "t080a2 does not wait in the attach: $(cat /proc/$pa2/stack 2>&1)"

# blocked: what the kernel's tasks wait for, for the failure's message.
blocked() { echo w > /proc/sysrq-trigger; dmesg | tail -n 60 >&2; }
# qrc ARG...: dmsetup ARG..., done within 30 s (else let t080a's reads
# go, so that the test ends, and fail); its exit status in $rc.
qrc() {
	local p i
	"$DMSETUP" --retry "$@" 2>/dev/null &
	p=$!
	for i in $(seq 1 300); do
		kill -0 $p 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 $p 2>/dev/null; then
		blocked
		"$DMSETUP" resume t080h
		wait $p || true
		fail "'dmsetup $*' waited for t080a's metadata read"
	fi
	rc=0
	wait $p || rc=$?
}
q() { qrc "$@"; [ $rc = 0 ] || fail "'dmsetup $*' failed"; }

# Meanwhile: another origin with metadata, a bitmap, a view; removals.
q create t080mb --table "0 $((4 * MIB)) linear $META $((8 * MIB))"
q create t080s --table "0 $SZ linear $SCRATCH 0"
q create t080b --table "0 $SZ fleece-origin /dev/mapper/t080o2 /dev/mapper/t080mb $CH"
pattern b0 $((SZ * 512)) > $WORK/b0
dd if=$WORK/b0 of=/dev/mapper/t080b bs=1M oflag=direct status=none
q message t080b 0 bitmap_add x
q suspend t080b
q create t080v --table "0 $SZ fleece /dev/mapper/t080o2 /dev/mapper/t080s"
q resume t080b
dd if=/dev/urandom of=/dev/mapper/t080b bs=64k count=16 seek=7 oflag=direct status=none
dev_cmp /dev/mapper/t080v 0 $((SZ * 512)) $WORK/b0 || fail "the view does not read its point in time"
[ "$(dmsetup message t080b 0 bitmap_changes x 0 100)" = "end 112+256" ] ||
	fail "bitmap x: $(dmsetup message t080b 0 bitmap_changes x 0 100)"
q remove t080v
q remove t080b
q remove t080c
# A view of the origin being loaded is refused at once: no bitmaps yet.
mark=$(dmesg_mark)
qrc create t080x --table "0 $SZ fleece /dev/mapper/t080o1 /dev/mapper/t080s"
[ $rc = 1 ] || fail "a view of the origin being loaded: exit $rc, expected a refusal (1)"
new_dmesg "$mark" | grep -q "No fleece-origin device on this origin" ||
	fail "a view of the origin being loaded was refused without its reason: $(new_dmesg "$mark" | tail -2)"
"$DMSETUP" remove t080x 2>/dev/null || true
kill -0 $pa 2>/dev/null && kill -0 $pa2 2>/dev/null || fail "t080a's activation ended before its read was let go"
grep -q fleece_meta_load /proc/$pa/stack || fail "t080a's activation no longer waits for its metadata"
say "while t080a's activation waits for a metadata read: another origin, its bitmap and a view created, used, removed; an origin removed; a view of t080a's origin refused"

# Let the reads go.
dmsetup resume t080h
wait $pa || fail "t080a was not created"
wait $pa2 || fail "t080a2 (the same origin) was not created"
[ "$(dmsetup status t080a)" = "0 $SZ fleece-origin persistent 0 ok 0" ] || fail "t080a: $(dmsetup status t080a)"
dmsetup message t080a 0 bitmap_add y
[ "$(dmsetup message t080a2 0 bitmap_list)" = "$(dmsetup message t080a 0 bitmap_list)" ] ||
	fail "t080a2 does not share t080a's bitmaps: $(dmsetup message t080a2 0 bitmap_list)"
[ "$(meta_sb_seq /dev/mapper/t080h 0)" = 2 ] || fail "the metadata was not formatted once (copy 0 seq $(meta_sb_seq /dev/mapper/t080h 0))"
dmsetup remove t080a2
dmsetup remove t080a
say "then t080a and a second table of its origin, which waited, share one tracker"
