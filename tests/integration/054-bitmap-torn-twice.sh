#!/bin/bash
# Two power cuts, each tearing the bitmap block write in flight, must not
# make the metadata unusable: a torn write damages only the copy being
# written, and "a new write of a block goes to the copy that does not hold
# it" (fleece-origin.rst, Choosing a copy), so the other copy stays intact.
#
# Sequence (slot 0 has one block per copy, blocks 2 and 3):
#   write chunk 10            -> copy 0 (gen 1)
#   bitmap_clear              -> gen 2
#   write chunk 20            -> copy 1 (gen 2)   torn by power cut 1
#   activate: copy 0 is of gen 1, copy 1 damaged: the block holds nothing
#                                (and copy 1 is rewritten so, gen 2, empty)
#   write chunk 30            -> must not go to the only intact copy:
#                                to copy 1 while it is damaged, to either
#                                once the activation rewrote it
#                                torn by power cut 2
#   activate: must succeed with an empty bitmap (no write was promised)
# A torn write is simulated by damaging the copy that was just written.
# 084 covers the repair itself, and a slot reused by a new generation.
. "$(dirname "$0")/lib.sh"

CH=8
SZ=$((64 * 2048))		# 64 MiB: 16384 chunks, one block per bitmap copy
SL=/dev/mapper/t054s
M=/dev/mapper/t054m

say() { info "$* [${SECONDS}s]"; }
field() { local h=" $1"; h=${h#*" $2="}; echo "${h%% *}"; }
# no_gap: each activation stands for a boot whose units vouch.
up() { dmsetup create t054 --table "0 $SZ fleece-origin $SL $M $CH 1 no_gap"; }
wr_chunk() { dd if=/dev/urandom of=/dev/mapper/t054 bs=4096 seek=$1 count=1 oflag=direct status=none; }
changes() { dmsetup message t054 0 bitmap_changes b; }

dmsetup create t054s --table "0 $SZ linear $ORIGIN 0"
dmsetup create t054m --table "0 2048 linear $META 0"
zero_dev $M 0 $((1 << 20))

up
dmsetup message t054 0 bitmap_add b
wr_chunk 10
dmsetup message t054 0 bitmap_clear b
wr_chunk 20
[ "$(changes)" = "end 20+1" ] || fail "changes: $(changes)"
dmsetup remove t054
h2=$(meta_block $M 2)
h3=$(meta_block $M 3)
[ "$(field "$h2" gen)" = 1 ] && [ "$(field "$h3" gen)" = 2 ] || fail "unexpected layout: $h2 / $h3"
meta_flip $M 3 1000		# power cut 1 tore the write of copy 1
say "chunk 10 in copy 0 (gen 1), clear, chunk 20 in copy 1 (gen 2); copy 1 torn"

up
[ "$(changes)" = "end" ] || fail "after the first tear: changes $(changes), expected none"
wr_chunk 30
[ "$(changes)" = "end 30+1" ] || fail "changes: $(changes)"
dmsetup remove t054
n2=$(meta_block $M 2)
n3=$(meta_block $M 3)
written=3
[ "$n2" != "$h2" ] && written=2
[ "$(field "$(meta_block $M $written)" gen)" = 2 ] || fail "no gen 2 block written: $n2 / $n3"
info "the write of chunk 30 went to block $written (copy $((written - 2)))"
meta_flip $M $written 1000	# power cut 2 tore that write
say "second tear, of the copy just written"

mark=$(dmesg_mark)
if ! up; then
	new_dmesg "$mark" | grep fleece >&2
	fail "two torn writes (one per power cut) made the metadata unusable: the write after the first tear went to the only intact copy (block $written)"
fi
[ "$(changes)" = "end" ] || fail "after the second tear: changes $(changes), expected none"
dmsetup remove t054
say "activates after two torn writes; nothing that was promised is lost"
