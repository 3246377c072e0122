#!/bin/bash
# A torn copy of a bitmap block must not outlive the attach that finds it:
# else a slot reused by a new generation (bitmap_remove, bitmap_add) may
# write that block first to its only intact copy, and a second torn write
# leaves both copies damaged, which no single power cut can do: the metadata
# is refused ("Metadata bitmap block checksum mismatch").
#
# A torn write is simulated by overwriting one 4 KiB copy while the origin is
# detached: garbage (not a dm-fleece block), or a torn block (its first
# sector written, the rest garbage: magic right, checksum wrong).
# Slot s, block i, copy c is metadata block 2 + s*2*NB + 2*i + c. Sequence:
#   bitmap b (slot 0, gen 1), chunk 10   -> block 0 in copy 0
#   power cut 1 tears a later write of block 0, to copy 1 (garbage)
#   attach: loads b (copy 0); repairs copy 1 (rewrites it, gen 1, b's bits)
#   bitmap_remove b, bitmap_add c        -> slot 0 again, gen 2
#   chunks 20 (block 0), 32263 (block 1) -> the first write of each block
#   power cut 2 tears c's first write of block 0 (torn block)
#   attach: must load. Block 0 holds nothing of gen 2 (the write of chunk
#   20 was still held when its bit's write tore), block 1 holds 32263.
# Each repair must write the damaged copy and nothing else (sha256 of every
# metadata block but the superblocks, before and after each attach), and
# leave it a valid block of the slot's generation. Then the same for a free
# slot: a damaged copy left in slot 0 after bitmap_remove c is repaired at
# the next attach, so that bitmap d (slot 0, gen 3) survives a torn first
# write of block 0 too; but first that repair's write fails (dm-failnth
# under the metadata device), which fails the attach with its own error and
# writes nothing. A free slot that cannot be read (dm-failnth, every read
# after the superblocks) only makes the attach warn. The data of every
# chunk written reads back right.
. "$(dirname "$0")/lib.sh"

CH=8				# 4 KiB chunks
NB=2				# blocks per bitmap copy
NCH=$((NB * 32256))		# 64512 chunks
SZ=$((NCH * CH))		# 252 MiB
AREA=$((2 + 16 * 2 * NB))	# metadata blocks in use: 66
SL=/dev/mapper/t084s
M=/dev/mapper/t084m
OD=/dev/mapper/t084

cleanup() {
	for d in t084 t084s t084m; do
		dmsetup remove $d 2>/dev/null || true
	done
}
trap cleanup EXIT

say() { info "$* [${SECONDS}s]"; }
field() { local h=" $1"; h=${h#*" $2="}; echo "${h%% *}"; }
# blk SLOT INDEX COPY: the metadata block (as fleece-origin.rst, On-disk format)
blk() { echo $((2 + $1 * 2 * NB + 2 * $2 + $3)); }
# no_gap: each activation stands for a boot whose units vouch.
up() { dmsetup create t084 --table "0 $SZ fleece-origin $SL $M $CH 1 no_gap"; }
down() { dmsetup message t084 0 clean_detach; dmsetup remove t084; }
changes() { dmsetup message t084 0 bitmap_changes "$1"; }
declare -A data
# wr_chunk N: write chunk N with a pattern of its own, remember its sha256.
wr_chunk() { data[$1]=$(stamp $OD $(($1 * 4096)) 4096 "t084-$1-$SECONDS"); }
check_data() {
	local n
	for n in "${!data[@]}"; do
		[ "$(dev_sha $OD $((n * 4096)) 4096)" = "${data[$n]}" ] || fail "chunk $n: data differs from what was written"
	done
}

# block_shas FILE: sha256 of each metadata block of the area, one per line.
block_shas() {
	python3 - "$M" "$AREA" > "$1" <<'PY'
import hashlib, mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 4096)
for b in range(int(sys.argv[2])):
    os.preadv(fd, [buf], b * 4096)
    print(b, hashlib.sha256(buf).hexdigest())
PY
}
# changed_blocks BEFORE AFTER: the blocks that differ, superblocks aside.
changed_blocks() { { diff "$1" "$2" || true; } | awk '/^> / && $2 > 1 { printf "%s%s", s, $2; s = " " }'; }

# garble BLOCK SEED [KEEP]: overwrite a metadata block with deterministic
# garbage, keeping its first KEEP bytes (a write torn after KEEP bytes).
garble() {
	python3 - "$M" "$1" "$2" "${3:-0}" <<'PY'
import hashlib, mmap, os, sys
dev, blk, seed, keep = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode(), int(sys.argv[4])
fd = os.open(dev, os.O_RDWR | os.O_DIRECT)
buf = mmap.mmap(-1, 4096)
os.preadv(fd, [buf], blk * 4096)
junk = b"".join(hashlib.sha256(seed + i.to_bytes(4, "little")).digest() for i in range(128))
buf[keep:] = junk[keep:]
os.pwritev(fd, [buf], blk * 4096)
os.fsync(fd)
PY
}

# bits BLOCK: sha256 of a metadata block's bitmap (bytes 64-4095).
bits() { dd if=$M bs=4096 skip=$1 count=1 iflag=direct status=none | tail -c 4032 | sha256sum | cut -d' ' -f1; }
ZERO_BITS=$(head -c 4032 /dev/zero | sha256sum | cut -d' ' -f1)

# valid BLOCK SLOT INDEX GEN: the block is a dm-fleece bitmap block of that
# slot, index and generation, with a right checksum.
valid() {
	python3 - "$M" "$@" <<'PY' || fail "block $1 is not a valid block of slot $2, index $3, gen $4: $(meta_block $M $1)"
import mmap, os, struct, sys, zlib
dev, blk, slot, index, gen = sys.argv[1], *map(int, sys.argv[2:6])
fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 4096)
os.preadv(fd, [buf], blk * 4096)
b = bytes(buf)
csum, magic, seq, g, s, i = struct.unpack_from("<IIQQII", b, 0)
ok = (magic == 0x7469626c and (s, i, g) == (slot, index, gen) and
      csum == zlib.crc32(b[4:], 0x0f1eece5 ^ 0xffffffff) ^ 0xffffffff)
sys.exit(0 if ok else 1)
PY
}

# attach_repairs WHAT BLOCK: attach; the attach must rewrite BLOCK (the
# damaged copy) and no other block, and log one line for WHAT.
attach_repairs() {
	local what=$1 b=$2 mark ch
	block_shas $WORK/before
	mark=$(dmesg_mark)
	up || { new_dmesg "$mark" | grep fleece >&2; fail "attach with a damaged copy of $what's block $b refused"; }
	block_shas $WORK/after
	ch=$(changed_blocks $WORK/before $WORK/after)
	[ "$ch" = "$b" ] || fail "the attach wrote metadata blocks '$ch', expected only the damaged copy $b"
	new_dmesg "$mark" | grep -q "$what: 1 metadata block(s) had a damaged copy: rewritten" ||
		{ new_dmesg "$mark" >&2; fail "no repair logged for $what"; }
}

trap 'echo "  $TESTNAME: error at line $LINENO" >&2' ERR
load_module
load_fault_module failnth
dmsetup create t084s --table "0 $SZ linear $ORIGIN 0"
dmsetup create t084m --table "0 2048 failnth $META 0"
zero_dev $M 0 $((1 << 20))

# ---- bitmap b, slot 0 gen 1: block 0 written once, to copy 0 ----
up
dmsetup message t084 0 bitmap_add b
wr_chunk 10
[ "$(changes b)" = "end 10+1" ] || fail "b: $(changes b)"
down
b00=$(blk 0 0 0); b01=$(blk 0 0 1)
valid $b00 0 0 1
[ "$(field "$(meta_block $M $b01)" zero)" = 1 ] || fail "copy 1 of block 0 written: $(meta_block $M $b01)"
seq0=$(field "$(meta_block $M $b00)" seq)
bits0=$(bits $b00)

# Power cut 1 tore a write of block 0 to copy 1 (the one not holding the
# newest data, as a write always does).
garble $b01 tear1
say "b: chunk 10 in copy 0 (block $b00), copy 1 (block $b01) torn"

# ---- attach: loads b; the fix repairs copy 1 here ----
block_shas $WORK/before
mark=$(dmesg_mark)
up || { new_dmesg "$mark" | grep fleece >&2; fail "attach after one torn copy refused"; }
block_shas $WORK/after
[ "$(changes b)" = "end 10+1" ] || fail "after the first tear: b $(changes b)"
ch=$(changed_blocks $WORK/before $WORK/after)
repaired=0
case "$ch" in
"") info "the attach left the torn copy (block $b01) as it was" ;;
"$b01")
	valid $b01 0 0 1
	[ "$(field "$(meta_block $M $b01)" seq)" -gt "$seq0" ] || fail "repaired copy is not the newer: $(meta_block $M $b01)"
	[ "$(bits $b01)" = "$bits0" ] || fail "repaired copy 1 holds other bits than copy 0"
	new_dmesg "$mark" | grep -q "bitmap 'b': 1 metadata block(s) had a damaged copy: rewritten" ||
		{ new_dmesg "$mark" >&2; fail "no repair logged for bitmap b"; }
	repaired=1
	info "the attach rewrote the torn copy (block $b01) with b's bits, gen 1, a newer seq"
	;;
*) fail "the attach wrote metadata blocks '$ch', expected at most the torn copy $b01" ;;
esac

# ---- slot 0 reused: bitmap c, gen 2; the first write of blocks 0 and 1 ----
dmsetup message t084 0 bitmap_remove b
dmsetup message t084 0 bitmap_add c
wr_chunk 20
wr_chunk 32263
[ "$(changes c)" = "end 20+1 32263+1" ] || fail "c: $(changes c)"
down
w=
for b in $b00 $b01; do
	[ "$(field "$(meta_block $M $b)" gen)" = 2 ] && w="$w$b"
done
case "$w" in
"$b00" | "$b01") ;;
*) fail "c's first write of block 0 is not in exactly one copy of slot 0 (gen 2): '$w'" ;;
esac
valid "$(blk 0 1 0)" 0 1 2
# Power cut 2 tore that write after its first sector.
garble "$w" tear2 512
say "c (slot 0, gen 2): first write of block 0 went to block $w, torn"

# ---- attach: both copies of block 0 must not be damaged ----
block_shas $WORK/before
mark=$(dmesg_mark)
if ! up; then
	new_dmesg "$mark" | grep fleece >&2
	fail "two torn writes (one per power cut) made the metadata unusable: c's first write of block 0 went to block $w, the only intact copy"
fi
block_shas $WORK/after
[ "$repaired" = 1 ] || fail "the first attach did not repair the torn copy"
[ "$(changes c)" = "end 32263+1" ] || fail "after the second tear: c $(changes c), expected only 32263 (20's bit was in the torn write)"
[[ "$(dmsetup status t084)" == *" ok 1 c 1 0" ]] || fail "status: $(dmsetup status t084)"
ch=$(changed_blocks $WORK/before $WORK/after)
[ "$ch" = "$w" ] || fail "the attach wrote metadata blocks '$ch', expected only the torn copy $w"
valid "$w" 0 0 2
[ "$(bits "$w")" = "$ZERO_BITS" ] || fail "the repaired copy of block 0 holds bits, gen 2 has none"
new_dmesg "$mark" | grep -q "bitmap 'c': 1 metadata block(s) had a damaged copy: rewritten" ||
	{ new_dmesg "$mark" >&2; fail "no repair logged for bitmap c"; }
check_data
say "c loads after two torn writes: 32263 recorded, block $w rewritten (gen 2, no bits), nothing else written"

# ---- a damaged copy in a free slot is repaired too ----
dmsetup message t084 0 bitmap_remove c
down
# Copy 1: the one a new generation's first write does not go to.
garble $b01 tear3
# The repair is the attach's first write: failed, it fails the attach,
# and nothing is written (no superblock, no untrusted marks).
block_shas $WORK/before
dmsetup message t084m 0 fail write 0 1
expect_ctr_fail t084 "0 $SZ fleece-origin $SL $M $CH 1 no_gap" \
	"Cannot repair a damaged metadata bitmap block"
[ "$(dmsetup status t084m | awk '{ print $NF }')" = 1 ] || fail "failnth: $(dmsetup status t084m)"
block_shas $WORK/after
cmp -s $WORK/before $WORK/after || fail "the attach whose repair failed wrote metadata blocks: $(diff $WORK/before $WORK/after | tr '\n' ' ')"
attach_repairs "free slot 0" $b01
valid $b01 0 0 2
dmsetup message t084 0 bitmap_add d
wr_chunk 30
[ "$(changes d)" = "end 30+1" ] || fail "d: $(changes d)"
down
w=
for b in $b00 $b01; do
	[ "$(field "$(meta_block $M $b)" gen)" = 3 ] && w="$w$b"
done
[ "$w" = "$b00" ] || [ "$w" = "$b01" ] || fail "d's first write of block 0 is not in exactly one copy of slot 0 (gen 3): '$w'"
garble "$w" tear4 512
attach_repairs "bitmap 'd'" "$w"
[ "$(changes d)" = "end" ] || fail "after the fourth tear: d $(changes d)"
check_data
down
say "free slot 0: its damaged copy repaired at attach; d (gen 3) survives a torn first write"

# ---- a free slot that cannot be read does not stop the attach ----
# It holds nothing: the attach warns and goes on. Reads 1 and 2 are the
# superblocks; every read after them fails until disarmed.
up
dmsetup message t084 0 bitmap_remove d
down
mark=$(dmesg_mark)
dmsetup message t084m 0 fail read 2 1000000
if ! up; then
	dmsetup message t084m 0 fail read 0 0
	new_dmesg "$mark" | grep fleece >&2
	fail "an unreadable free slot failed the attach"
fi
dmsetup message t084m 0 fail read 0 0
new_dmesg "$mark" | grep -q "free slot 0 could not be read" || { new_dmesg "$mark" >&2; fail "no warning about the unreadable free slot"; }
[[ "$(dmsetup status t084)" == *" ok 0" ]] || fail "status: $(dmsetup status t084)"
check_data
down
say "an unreadable free slot: the attach warns and goes on"
