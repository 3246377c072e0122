#!/bin/bash
# A discard on the view releases the whole chunks it covers: their scratch
# is freed (scratch_used and preserved drop, released grows), chunks not yet
# copied are never copied (skipped counts them when released; later origin
# writes there leave copied and scratch_used unchanged), the view
# reads zeroes there, the origin is not touched by the view discard, and the
# partial chunks at the edges of a discard and every other range stay at
# the point in time.
. "$(dirname "$0")/lib.sh"

sz=$(dev_sectors $ORIGIN)
mib=$((1024 * 1024))
C=65536			# 128-sector chunks
R=$((32 * mib))
ODM=t016o
odev=/dev/mapper/$ODM
vdev=/dev/mapper/t016v
pattern t016pre $R > $WORK/pre.img
pattern t016new $R > $WORK/new.img
dmsetup create $ODM --table "0 $sz fleece-origin $ORIGIN - 128"
dd if=$WORK/pre.img of=$odev bs=1M oflag=direct status=none
view_create t016v $ODM "0 $sz fleece $ORIGIN $SCRATCH" || fail "cannot create the view"
cp $WORK/pre.img $WORK/exp.img		# the origin, expected
cp $WORK/pre.img $WORK/view.img		# the view, expected

st() { view_stat t016v $1; }
expect_stat() {
	local f v
	for f in "$@"; do
		v=${f#*=}; f=${f%%=*}
		[ "$(st $f)" = "$v" ] || fail "$f = $(st $f), expected $v ($(dmsetup status t016v))"
	done
}
# owrite OFF LEN: write the new image's bytes at OFF through fleece-origin.
owrite() {
	dd if=$WORK/new.img of=$odev bs=64K iflag=skip_bytes,count_bytes oflag=direct,seek_bytes \
		skip=$1 seek=$1 count=$2 conv=notrunc status=none || fail "origin write at $1 failed"
	dd if=$WORK/new.img of=$WORK/exp.img bs=64K iflag=skip_bytes,count_bytes oflag=seek_bytes \
		skip=$1 seek=$1 count=$2 conv=notrunc status=none
}
# vdiscard OFF LEN: discard on the view; ZOFF ZLEN: the whole chunks covered.
vdiscard() {
	blkdiscard -f -o $1 -l $2 $vdev || fail "blkdiscard -o $1 -l $2 on the view failed"
	local zoff=$(( ($1 + C - 1) / C * C )) zend=$(( ($1 + $2) / C * C ))
	[ $zend -gt $zoff ] && zero_file $WORK/view.img $zoff $((zend - zoff))
	true
}

# A: copied by an origin write, read through the view, then released.
A=$((4 * mib)) AL=$((2 * mib))
owrite $A $AL
expect_stat copied=32 preserved=32 used=32 released=0 skipped=0
dev_cmp $vdev $A $AL $WORK/pre.img || fail "view of A before the discard differs"
vdiscard $A $AL
expect_stat released=32 used=0 preserved=0 copied=32 skipped=0 state=Active
dev_cmp $vdev $A $AL $WORK/view.img || fail "view of A after the discard does not read zeroes"
info "A: 32 copied chunks released, their scratch freed, view reads zeroes"

# B: released before any origin write: never copied (skipped counts it at
# once), and the origin writes after it go straight through.
B=$((8 * mib)) BL=$((2 * mib))
vdiscard $B $BL
expect_stat released=64 used=0 copied=32 skipped=32
dev_cmp $odev 0 $R $WORK/exp.img || fail "a discard on the view changed the origin"
owrite $B $BL
expect_stat copied=32 skipped=32 used=0 preserved=0
dev_cmp $vdev $B $BL $WORK/view.img || fail "view of B does not read zeroes"
info "B: released first (32 skipped), then origin writes there made no copy"

# P: a discard covering 2 whole chunks and parts of 2 more.
P=$((12 * mib))
vdiscard $((P + 4096)) $((3 * C))
expect_stat released=66 used=0 skipped=34
owrite $P $((4 * C))
expect_stat copied=34 skipped=34 used=2 preserved=2
dev_cmp $vdev $P $((4 * C)) $WORK/view.img ||
	fail "view of P: released chunks not zero or partial chunks not at the point in time"
info "P: only the 2 whole chunks released; the partial ones were copied"

# Everything else is still the point in time; the origin has the new data.
owrite $((20 * mib)) $mib
expect_stat copied=50 skipped=34 used=18 preserved=18 released=66 state=Active
dev_cmp $vdev 0 $R $WORK/view.img || fail "view differs from the point in time (with released ranges zero)"
dev_cmp $odev 0 $R $WORK/exp.img || fail "origin data wrong"
dev_cmp $ORIGIN 0 $R $WORK/exp.img || fail "origin device data wrong"
dmsetup remove t016v
dmsetup remove $ODM
info "rest of the view at the point in time; origin data right"
