#!/bin/bash
# What fleece-origin does with the metadata device it is given:
# - all zero: formatted (superblock magic appears in copy 1, nothing else
#   is written); zero only in the area it uses: formatted, the rest untouched;
# - anything else is refused and left untouched (sha256 of the whole device
#   before and after): a foreign ext4, garbage inside the area, both
#   superblock copies damaged, both copies of a bitmap block damaged (or one
#   damaged and one of another index), another chunk size, another origin
#   length, a device too small (by one block, and 8 sectors);
# - one damaged copy is a torn write and is tolerated: a damaged older copy
#   loses nothing; a damaged newer copy falls back to the state before it.
. "$(dirname "$0")/lib.sh"

CH=8				# 4 KiB chunks
SZ=$((256 * 2048))		# 256 MiB origin: 65536 chunks, 3 blocks per bitmap copy
NB=3
AREA=$((2 + 16 * 2 * NB))	# metadata blocks used: 98
SL=/dev/mapper/t052s
M=/dev/mapper/t052m		# 4 MiB of $META
MSZ=$((4 << 20))
GOOD=$WORK/meta.good

say() { info "$* [${SECONDS}s]"; }

dmsetup create t052s --table "0 $SZ linear $ORIGIN 0"
dmsetup create t052m --table "0 $((MSZ / 512)) linear $META 0"

# no_gap: each activation here stands for a boot whose units vouch.
table() { echo "0 ${2:-$SZ} fleece-origin $SL ${3:-$M} ${1:-$CH} 1 no_gap"; }
up() { dmsetup create t052 --table "$(table "$@")"; }
down() { dmsetup remove t052; }
restore() { dd if=$GOOD of=$M bs=1M oflag=direct conv=fsync status=none; }
msha() { dev_sha $M; }
changes() { dmsetup message t052 0 bitmap_changes b; }
wr_chunk() { dd if=/dev/urandom of=/dev/mapper/t052 bs=4096 seek=$1 count=1 oflag=direct status=none; }
# field "HEADER" KEY: a key=value of meta_block's line (no process).
field() { local h=" $1"; h=${h#*" $2="}; echo "${h%% *}"; }

# refused ERROR [CHUNK [LEN [META]]]: the table is refused with ERROR and the
# metadata device is not changed at all.
refused() {
	local err=$1 dev=${4:-$M} before
	shift
	before=$(dev_sha "$dev")
	expect_ctr_fail t052 "$(table "$@")" "$err"
	[ "$(dev_sha "$dev")" = "$before" ] || fail "refused ($err), but the metadata device was written"
}

# ---- all zero: formatted ----
zero_dev $M 0 $MSZ
up
[ "$(dmsetup status t052)" = "0 $SZ fleece-origin persistent 0 ok 0" ] || fail "status: $(dmsetup status t052)"
[ "$(dd if=$M bs=4096 skip=1 count=1 iflag=direct status=none | head -c 8 | tail -c 4)" = leec ] || fail "no superblock magic in copy 1"
[ "$(meta_sb_seq $M 1)" = 1 ] || fail "superblock copy 1 seq $(meta_sb_seq $M 1), expected 1"
[ "$(meta_sb_seq $M 0)" = -1 ] || fail "superblock copy 0 written at format"
zero8k_on=$(head -c $((MSZ - 8192)) /dev/zero | sha256sum | cut -d' ' -f1)
[ "$(dev_sha $M 8192 $((MSZ - 8192)))" = "$zero8k_on" ] || fail "formatting wrote more than the superblock"
say "all-zero device formatted: magic 'leec' in superblock copy 1 (seq 1), nothing else written"

# Bitmap b in slot 0. Two commit rounds per block, so each of blocks 0 and 1
# has an older copy (first bit) and a newer one (both bits).
dmsetup message t052 0 bitmap_add b
[ "$(meta_sb_seq $M 0)" = 2 ] || fail "bitmap_add did not write superblock copy 0 with seq 2"
wr_chunk 100
wr_chunk 40000
wr_chunk 40001
wr_chunk 101
[ "$(changes)" = "end 100+2 40000+2" ] || fail "changes: $(changes)"
# The image before the clean detach's superblock write (seq 3): as a crash
# leaves it, with superblock copies seq 1 (format) and 2 (bitmap_add).
dd if=$M of=$GOOD bs=1M iflag=direct status=none
down
[ "$(meta_sb_seq $M 1)" = 3 ] || fail "the clean detach did not write superblock copy 1 with seq 3"
# slot 0, block i, copy c is block 2 + 2i + c
declare -A hdr
for blk in 2 3 4 5 6 7; do
	hdr[$blk]=$(meta_block $M $blk)
done
for blk in 2 3 4 5; do
	h=${hdr[$blk]}
	[ "$(field "$h" magic)" = 7469626c ] && [ "$(field "$h" slot)" = 0 ] &&
		[ "$(field "$h" index)" = $(((blk - 2) / 2)) ] && [ "$(field "$h" gen)" = 1 ] ||
		fail "block $blk: $h"
done
[ "$(field "${hdr[6]}" zero)" = 1 ] && [ "$(field "${hdr[7]}" zero)" = 1 ] || fail "block 2 of the bitmap was written"
[ "$(field "${hdr[5]}" seq)" -gt "$(field "${hdr[4]}" seq)" ] &&
	[ "$(field "${hdr[3]}" seq)" -gt "$(field "${hdr[2]}" seq)" ] ||
	fail "copy 1 of blocks 0 and 1 is not the newer one: ${hdr[*]}"
up
[ "$(changes)" = "end 100+2 40000+2" ] || fail "after re-activation, changes: $(changes)"
down
say "bitmap blocks laid out as documented (slot 0: blocks 2-7), content survives re-activation"

# ---- something else: refused, untouched ----
zero_dev $M 0 $MSZ
mkfs.ext4 -q -F $M
refused "Metadata device holds something else: refusing to overwrite it"
say "an ext4 filesystem is refused and left untouched"

zero_dev $M 0 $MSZ
printf 'not zero' | dd of=$M bs=4096 seek=$((AREA - 1)) conv=notrunc oflag=direct status=none
refused "Metadata device holds something else: refusing to overwrite it"
say "zero superblocks but data in the last block of the area: refused, untouched"

# Outside the area nothing is read or written.
zero_dev $M 0 $MSZ
printf 'keep me' | dd of=$M bs=4096 seek=$AREA conv=notrunc oflag=direct status=none
tail_sha=$(dev_sha $M $((AREA * 4096)) $((MSZ - AREA * 4096)))
up
down
[ "$(dev_sha $M $((AREA * 4096)) $((MSZ - AREA * 4096)))" = "$tail_sha" ] || fail "data past the area changed"
[ "$(meta_sb_seq $M 1)" = 1 ] || fail "not formatted with data past the area"
say "data just past the $AREA-block area does not prevent formatting and is kept"

# ---- superblock damage ----
restore
meta_flip $M 0 100
meta_flip $M 1 100
refused "Metadata superblock checksum mismatch"
say "both superblock copies damaged: refused, untouched"

restore
meta_flip $M 1 100			# the older copy (seq 1)
up
[ "$(dmsetup status t052)" = "0 $SZ fleece-origin persistent 0 ok 1 b 4 0" ] || fail "status: $(dmsetup status t052)"
[ "$(changes)" = "end 100+2 40000+2" ] || fail "older superblock copy damaged: changes $(changes)"
down
say "older superblock copy damaged: activates, bitmap b and its 4 chunks intact"

restore
meta_flip $M 0 100			# the newer copy (seq 2): the bitmap_add was torn
up
[ "$(dmsetup status t052)" = "0 $SZ fleece-origin persistent 0 ok 0" ] ||
	fail "newer superblock copy damaged: status $(dmsetup status t052)"
down
say "newer superblock copy damaged: activates with the superblock before it (no bitmap yet)"

# ---- bitmap block damage: block 1 of slot 0 is blocks 4 (older) and 5 ----
restore
meta_flip $M 4 1000
meta_flip $M 5 1000
refused "Metadata bitmap block checksum mismatch"
say "both copies of a bitmap block damaged: refused, untouched"

restore
dd if=$M of=$M bs=4096 skip=2 seek=5 count=1 iflag=direct oflag=direct conv=notrunc status=none
meta_flip $M 4 1000
refused "Metadata bitmap block checksum mismatch"
say "one copy damaged, the other a valid block of another index: refused, untouched"

restore
meta_flip $M 4 1000
up
[ "$(changes)" = "end 100+2 40000+2" ] || fail "older copy of block 1 damaged: changes $(changes)"
down
say "older copy of a bitmap block damaged: activates, all bits there"

restore
meta_flip $M 5 1000
up
[ "$(changes)" = "end 100+2 40000+1" ] || fail "newer copy of block 1 damaged: changes $(changes)"
down
say "newer copy of a bitmap block damaged (a torn write): activates with the older copy's bits"

# ---- not this origin's metadata ----
restore
refused "Metadata is for another chunk size" 16
refused "Metadata is for an origin of another size" $CH $((SZ - CH))
refused "Metadata is for an origin of another size" $CH $((SZ / 2))
say "another chunk size or origin length: refused, untouched"

# ---- too small ----
dmsetup create t052t --table "0 $((AREA * 8 - 8)) linear $META $((MSZ / 512))"
zero_dev $META $MSZ $((1 << 20))
refused "Metadata device is too small for this origin" $CH $SZ /dev/mapper/t052t
dmsetup remove t052t
dmsetup create t052t --table "0 8 linear $META $((MSZ / 512))"
refused "Metadata device is too small for this origin" $CH $SZ /dev/mapper/t052t
dmsetup remove t052t
dmsetup create t052t --table "0 $((AREA * 8)) linear $META $((MSZ / 512))"
up $CH $SZ /dev/mapper/t052t
down
dmsetup remove t052t
say "a device one block short, or of 8 sectors, is too small; exactly $AREA blocks is enough"
