#!/bin/bash
# fleecectl backup --changed: a chain of images (full, then incrementals
# onto a copy of the previous image or in place) each byte-identical to a
# full read of its view; only the changed ranges are read; the commit moves
# the chain on, and a failed or uncommitted backup leaves the changes for
# the next one. Writes go on during each backup window.
. "$(dirname "$0")/lib.sh"
F=$FLEECECTL
mib=$((1024 * 1024))
size=$((64 * mib))
CB=65536
chunks=$((size / CB))

sha() { sha256sum < "$1" | cut -d' ' -f1; }
# dirty BITMAP: chunks set in it.
dirty() { dmsetup message t046 0 bitmap_list | awk -v b="$1" '$1 == b { print $2 }'; }

dmsetup create t046o --table "0 $((size / 512)) linear $ORIGIN 0"
blkdiscard -f /dev/mapper/t046o 2>/dev/null
expect_rc 0 $F create t046 /dev/mapper/t046o --meta $META
D=/dev/mapper/t046
expect_rc 0 $F bitmap add t046 nightly
stamp $D 0 $((6 * mib)) a >/dev/null
stamp $D $((40 * mib)) $((3 * mib)) b >/dev/null

# T0: the full backup that starts the chain. Writes after the point in time
# are copied before they land; the image is the point in time.
expect_rc 0 $F snapshot t046 --scratch $SCRATCH --bitmap nightly --full --view t046v
ref0=$(dev_sha /dev/mapper/t046v)
stamp $D $mib $mib c >/dev/null
expect_rc 0 $F backup t046v --to $WORK/full.img --full --verify --quiet
grep -q "committed: bitmap 'nightly'" $WORK/stdout || fail "the full backup did not commit: $(cat $WORK/stdout)"
[ "$(sha $WORK/full.img)" = "$ref0" ] || fail "full.img differs from the full read of the view"
[ "$(view_stat t046v released)" = $chunks ] || fail "the full backup released $(view_stat t046v released) chunks"
expect_rc 0 $F release t046v
[ "$(dirty nightly)" = 16 ] || fail "nightly holds $(dirty nightly) chunks after T0, expected the 16 written since"
info "T0: full image == view, committed; nightly holds the 16 chunks written during the backup"

# T1: more writes (sub-chunk, zeroes over data, a discard), then an
# incremental onto a copy of full.img, with writes during the window.
stamp $D $((20 * mib + 4096)) 8192 d >/dev/null
zero_dev $D $((40 * mib)) $mib
blkdiscard -o $((42 * mib)) -l $((512 * 1024)) $D
stamp $D $((size - 4096)) 4096 e >/dev/null
n1=$(dirty nightly)
expect_rc 0 $F snapshot t046 --scratch $SCRATCH --bitmap nightly --view t046v
ref1=$(dev_sha /dev/mapper/t046v)
expect_rc 0 $F changes t046v
want=$(awk '{ s += $2 } END { print s }' $WORK/stdout)
stamp $D $((2 * mib)) $mib f >/dev/null
expect_rc 0 $F backup t046v --changed nightly --base $WORK/full.img --to $WORK/inc1.img --verify --quiet
cat $WORK/stdout
grep -q "^backup t046v: $want bytes" $WORK/stdout || fail "the incremental read more or less than its $want changed bytes"
[ "$(sha $WORK/inc1.img)" = "$ref1" ] || fail "inc1.img differs from the full read of the view"
[ "$(sha $WORK/full.img)" = "$ref0" ] || fail "--base changed the base image"
[ "$(view_stat t046v released)" = "$n1" ] || fail "released $(view_stat t046v released) chunks, expected $n1"
expect_rc 0 $F release t046v
[ "$(dirty nightly)" = 16 ] || fail "nightly holds $(dirty nightly) chunks after T1, expected 16"
info "T1: $n1 chunks ($want bytes) read; full.img + changes == view; full.img untouched"

# T2: in place (no --base), to a copy of inc1.img; zeroes written over data
# must reach the image (the old data there must go).
cp --sparse=always $WORK/inc1.img $WORK/chain.img
zero_dev $D 0 $mib
expect_rc 0 $F snapshot t046 --scratch $SCRATCH --bitmap nightly --view t046v
ref2=$(dev_sha /dev/mapper/t046v)
expect_rc 0 $F backup t046v --changed nightly --to $WORK/chain.img --quiet
[ "$(sha $WORK/chain.img)" = "$ref2" ] || fail "chain.img updated in place differs from the view"
expect_rc 0 $F release t046v
info "T2: the image updated in place == view (zeroes over old data included)"

# T3: a backup that is not committed leaves its changes for the next one.
stamp $D $((30 * mib)) 4096 g >/dev/null
expect_rc 0 $F snapshot t046 --scratch $SCRATCH --bitmap nightly --view t046v
expect_rc 0 $F backup t046v --changed nightly --base $WORK/chain.img --to $WORK/lost.img --no-commit --quiet
grep -q "not committed (--no-commit)" $WORK/stdout || fail "--no-commit not reported: $(cat $WORK/stdout)"
expect_rc 0 $F release t046v --abort
[ "$(dirty nightly)" = 1 ] || fail "nightly holds $(dirty nightly) chunks after an uncommitted backup, expected 1"
stamp $D $((31 * mib)) 4096 h >/dev/null
expect_rc 0 $F snapshot t046 --scratch $SCRATCH --bitmap nightly --view t046v
ref3=$(dev_sha /dev/mapper/t046v)
expect_rc 0 $F backup t046v --changed nightly --base $WORK/chain.img --to $WORK/inc3.img --quiet
[ "$(sha $WORK/inc3.img)" = "$ref3" ] || fail "inc3.img (after an uncommitted backup) differs from the view"
expect_rc 0 $F release t046v
rm -f $WORK/lost.img $WORK/inc1.img
info "T3: an uncommitted backup's changes went to the next one, whose image == view"

# Refusals: each leaves the transaction open and no image behind.
half=$(($(dev_sectors $SCRATCH) / 2))
dmsetup create t046s1 --table "0 $half linear $SCRATCH 0"
dmsetup create t046s2 --table "0 $half linear $SCRATCH $half"
expect_rc 0 $F snapshot t046 --scratch /dev/mapper/t046s1 --bitmap nightly --view t046v
expect_rc 0 $F snapshot t046 --scratch /dev/mapper/t046s2 --view t046p
expect_err 2 "--base goes with --changed" $F backup t046v --to $WORK/x --base $WORK/inc3.img
expect_err 2 "--full and --changed exclude each other" $F backup t046v --to $WORK/x --full --changed nightly
expect_err 1 "backup t046p: --changed nightly: the view has no bitmap" \
	$F backup t046p --changed nightly --to $WORK/x --base $WORK/inc3.img
expect_err 1 "backup t046v: --changed weekly: the view's bitmap is 'nightly'" \
	$F backup t046v --changed weekly --to $WORK/x --base $WORK/inc3.img
expect_err 1 "backup t046v: $WORK/x does not exist: an incremental backup updates" \
	$F backup t046v --changed nightly --to $WORK/x
truncate -s $mib $WORK/small.img
expect_err 1 "the base image $WORK/small.img has 1048576 bytes, the view $size" \
	$F backup t046v --changed nightly --base $WORK/small.img --to $WORK/x
expect_err 1 "the base image $WORK/inc3.img is the output itself" \
	$F backup t046v --changed nightly --base $WORK/inc3.img --to $WORK/inc3.img
[ ! -e $WORK/x ] || fail "a refused backup left $WORK/x"
[ "$(view_stat t046v released)" = 0 ] || fail "a refused backup released chunks"
[ "$(sha $WORK/inc3.img)" = "$ref3" ] || fail "a refused backup changed inc3.img"
dmsetup status t046v | grep -q ' nightly open ' || fail "a refused backup ended the transaction: $(dmsetup status t046v)"
expect_rc 0 $F release t046p
expect_rc 0 $F release t046v
dmsetup remove t046s1 t046s2
info "refusals: usage, no bitmap, wrong bitmap, no image, wrong size, base == output"

expect_rc 0 $F remove t046
dmsetup remove t046o
