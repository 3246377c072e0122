#!/bin/bash
# A bad sector on the origin never fails an application's write because a
# backup is running (issue 12, item 2). dm-dust (built by 'make faults')
# under fleece-origin fails reads of chosen 4 KiB blocks until they are
# written, as a disk that remaps a sector on write.
# - A write to a chunk whose old data cannot be read succeeds, and so does
#   the next one; the chunk is lost to the view: its reads fail with EIO,
#   the status counts it (<unreadable>), a dm event is raised, the view
#   stays Active and every other chunk reads the point in time.
# - A write over three chunks with the bad block in the middle: only the
#   middle chunk is lost, its neighbours are preserved (per-chunk retry).
# - An incremental view's frozen chunk is lost the same way, and the
#   backup transaction goes on; chunks outside the set are untouched.
# - A writable view's own write that needs an unreadable origin chunk
#   fails (it is not an application write), and so does a view write to a
#   lost chunk; releasing a lost chunk makes it read zeroes.
. "$(dirname "$0")/lib.sh"

CB=4096
SZ=$((16 * 2048))		# 16 MiB, 4096 chunks of 4 KiB
OD=/dev/mapper/t064
DUST=/dev/mapper/t064d

cleanup() {
	for d in t064w t064i t064v t064 t064d t064a t064b t064c; do
		dmsetup remove $d 2>/dev/null || true
	done
}
trap cleanup EXIT

load_module
load_fault_module dust
zero_dev $META 0 $((4 << 20))
dmsetup create t064d --table "0 $SZ dust $ORIGIN 0 $CB"
dmsetup create t064a --table "0 $SZ linear $SCRATCH 0"
dmsetup create t064b --table "0 $SZ linear $SCRATCH $SZ"
dmsetup create t064c --table "0 $SZ linear $SCRATCH $((2 * SZ))"
dmsetup create t064 --table "0 $SZ fleece-origin $DUST $META 8"
dmsetup message t064 0 bitmap_add b
pattern base $((SZ * 512)) > "$WORK/pit"
head -c $CB /dev/zero > "$WORK/zero"
dd if="$WORK/pit" of=$OD bs=1M oflag=direct status=none

# chunk_write N SEED [COUNT]: write COUNT (1) chunks from N through the
# origin, which must succeed; updates $WORK/now, the expected origin.
cp "$WORK/pit" "$WORK/now"
chunk_write() {
	local n=$1 count=${3:-1}
	pattern "$2" $((count * CB)) > "$WORK/w"
	dd if="$WORK/w" of=$OD bs=$CB seek="$n" oflag=direct status=none 2> "$WORK/err" ||
		fail "origin write to chunks $n+$count failed with a view present: $(cat "$WORK/err")"
	dd if="$WORK/w" of="$WORK/now" bs=$CB seek="$n" conv=notrunc status=none
}
# chunk_reads DEV N IMAGE: chunk N of DEV reads as in IMAGE.
chunk_reads() {
	dev_cmp "$1" $(($2 * CB)) $CB "$3" || fail "$1 chunk $2 does not read as $3"
}
# chunk_zero DEV N: chunk N of DEV reads zeroes.
chunk_zero() {
	dev_cmp "$1" $(($2 * CB)) $CB "$WORK/zero" 0 || fail "$1 chunk $2 does not read zeroes"
}
# chunk_eio DEV N: reading chunk N of DEV fails.
chunk_eio() {
	dd if="$1" of=/dev/null bs=$CB skip="$2" count=1 iflag=direct status=none 2>/dev/null &&
		fail "$1 chunk $2 read without error, but its point-in-time data was lost"
	return 0
}
unreadable() { dmsetup status "$1" | awk '{ print $NF }'; }
bad_block() { dmsetup message t064d 0 addbadblock "$1" >/dev/null; }

view_create t064v t064 "0 $SZ fleece $DUST /dev/mapper/t064a"
bad_block 10
bad_block 20
bad_block 30
dmsetup message t064d 0 enable
ev=$(dm_events t064v)
mark=$(dmesg_mark)

chunk_write 10 w10
new_dmesg "$mark" | grep -q "chunk 10 unreadable, lost to 1 view(s); the write goes on" ||
	{ new_dmesg "$mark" >&2; fail "the kernel did not say chunk 10 was lost"; }
[ "$(view_stat t064v state)" = Active ] || fail "the view is $(view_stat t064v state)"
[ "$(unreadable t064v)" = 1 ] || fail "status says $(unreadable t064v) unreadable chunks, not 1"
timeout 60 dmsetup wait t064v "$ev" || fail "no dm event on the view for the lost chunk"
chunk_write 10 x10
chunk_eio /dev/mapper/t064v 10
chunk_reads /dev/mapper/t064v 9 "$WORK/pit"
chunk_reads /dev/mapper/t064v 11 "$WORK/pit"
chunk_reads $OD 10 "$WORK/now"
info "write over an unreadable chunk succeeded twice; the view lost that chunk only"

# Three chunks in one bio, the middle one bad: the neighbours survive.
chunk_write 19 w19 3
chunk_eio /dev/mapper/t064v 20
chunk_reads /dev/mapper/t064v 19 "$WORK/pit"
chunk_reads /dev/mapper/t064v 21 "$WORK/pit"
[ "$(unreadable t064v)" = 2 ] || fail "status says $(unreadable t064v) unreadable chunks, not 2"
[ "$(view_stat t064v copied)" = 2 ] || fail "copied $(view_stat t064v copied) chunks, expected 2 (19 and 21)"
info "a run with one bad chunk kept its neighbours"

# The rest of the view is the point in time, lost chunks aside.
for c in 0 1 9 11 18 22 29 31 4095; do
	chunk_reads /dev/mapper/t064v $c "$WORK/pit"
done
dd if=/dev/mapper/t064v of=/dev/null bs=$CB iflag=direct count=10 status=none ||
	fail "chunks 0-9 of the view do not read"

# Release a lost chunk: it reads zeroes, and frees its slot.
used=$(view_stat t064v used)
blkdiscard -o $((10 * CB)) -l $CB /dev/mapper/t064v
chunk_zero /dev/mapper/t064v 10
[ "$(view_stat t064v used)" = $((used - 1)) ] || fail "releasing a lost chunk did not free its slot"
dmsetup remove t064v
info "a released lost chunk reads zeroes"

# An incremental view: a frozen chunk is lost, the transaction goes on.
view_create t064f t064 "0 $SZ fleece $DUST /dev/mapper/t064a 3 bitmap b full"
dmsetup message t064f 0 commit
dmsetup remove t064f
chunk_write 40 w40
chunk_write 50 w50
cp "$WORK/now" "$WORK/pit2"
view_create t064i t064 "0 $SZ fleece $DUST /dev/mapper/t064b 2 bitmap b"
bad_block 40
chunk_write 40 y40
chunk_eio /dev/mapper/t064i 40
chunk_reads /dev/mapper/t064i 50 "$WORK/pit2"
[ "$(view_stat t064i state)" = Active ] || fail "the incremental view is $(view_stat t064i state)"
dmsetup message t064i 0 commit
dmsetup remove t064i
info "an incremental view lost a frozen chunk, its transaction went on"

# A writable view: its own writes fail where the origin cannot be read.
cp "$WORK/now" "$WORK/pit3"
view_create t064w t064 "0 $SZ fleece $DUST /dev/mapper/t064c 1 writable"
if dd if="$WORK/zero" of=/dev/mapper/t064w bs=512 seek=$((30 * 8)) count=1 oflag=direct status=none 2>/dev/null; then
	fail "a view write over an unreadable origin chunk succeeded"
fi
[ "$(unreadable t064w)" = 0 ] || fail "a failed view write lost a chunk"
chunk_write 30 w30
chunk_eio /dev/mapper/t064w 30
if dd if="$WORK/zero" of=/dev/mapper/t064w bs=$CB seek=30 count=1 oflag=direct status=none 2>/dev/null; then
	fail "a view write to a lost chunk succeeded"
fi
dd if="$WORK/zero" of=/dev/mapper/t064w bs=$CB seek=31 count=1 oflag=direct status=none ||
	fail "a view write to a good chunk failed"
chunk_zero /dev/mapper/t064w 31
chunk_reads /dev/mapper/t064w 32 "$WORK/pit3"
info "a writable view's own writes fail over unreadable chunks, work elsewhere"

# The backup agent stops at the lost chunk and says why.
expect_err 6 "failed: the view lost 1 chunk\\(s\\): the origin could not be read" \
	"$FLEECECTL" backup t064w --to "$WORK/img"
info "fleecectl backup stops at the lost chunk, naming the cause"
