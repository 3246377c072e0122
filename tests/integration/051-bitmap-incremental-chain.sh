#!/bin/bash
# A chain of incremental backups of a mounted ext4 through a persistent
# bitmap, checked byte for byte:
# - T0: a "bitmap daily full" view is read whole into an image and committed;
# - each Tn: data changes (fio randwrite with a new seed, files created,
#   deleted and appended), then a view with "bitmap daily" is taken and ONLY
#   the chunks its "changes" lists are read into the previous image, after
#   writes to the origin during the backup; the image must equal, byte for
#   byte, a full read of the same view taken before those writes, and a
#   plain (full-session) view taken at the same point in time;
# - a chunk outside the frozen set that is overwritten during the backup
#   cannot be read from the incremental view (EIO), a frozen one can;
# - the incremental view copies far fewer chunks than the full session;
# - one backup in the middle fails (the view is removed without commit):
#   its changes are merged back and the next incremental still yields the
#   exact image; the final image passes e2fsck.
. "$(dirname "$0")/lib.sh"

CH=128				# 64 KiB chunks
CB=$((CH * 512))
SZ=$((64 * 2048))		# a 64 MiB slice of $ORIGIN is the origin
NCH=$((SZ / CH))
SL=/dev/mapper/t051s
FO=/dev/mapper/t051
INC=/dev/mapper/t051i
REF=/dev/mapper/t051r
MNT=$WORK/mnt
IMG=$WORK/img
CYCLES=6
FAILED=3			# this cycle's backup fails

say() { info "$* [${SECONDS}s]"; }

cleanup() {
	umount "$MNT" 2>/dev/null || true
	for d in t051i t051r t051 t051s t051a t051b; do
		dmsetup remove $d 2>/dev/null || true
	done
}
trap cleanup EXIT

zero_dev $META 0 $((4 << 20))
dmsetup create t051s --table "0 $SZ linear $ORIGIN 0"
dmsetup create t051a --table "0 $SZ linear $SCRATCH 0"
dmsetup create t051b --table "0 $SZ linear $SCRATCH $SZ"
dmsetup create t051 --table "0 $SZ fleece-origin $SL $META $CH"
dmsetup message t051 0 bitmap_add daily
mkfs.ext4 -q -F -b 4096 $FO
mkdir -p $MNT
mount $FO $MNT
# data.bin changes every cycle; other[012].bin only while backups run.
fio --rw=write --bs=1M --direct=1 --refill_buffers --name=data --filename=$MNT/data.bin --size=16M \
	--name=o0 --filename=$MNT/other0.bin --size=8M --name=o1 --filename=$MNT/other1.bin --size=8M \
	--name=o2 --filename=$MNT/other2.bin --size=8M >/dev/null
sync

# views [full]: suspend the origin, create the incremental view (or a
# "full" one with $1 = full) and the plain reference view, resume.
views() {
	local opt="2 bitmap daily"
	[ "${1:-}" = full ] && opt="3 bitmap daily full"
	dmsetup suspend t051
	dmsetup create t051i --table "0 $SZ fleece $SL /dev/mapper/t051a $opt" &&
		dmsetup create t051r --table "0 $SZ fleece $SL /dev/mapper/t051b" || {
		dmsetup resume t051; fail "cannot create the views"; }
	dmsetup resume t051
	st=$(dmsetup status t051i)
	[[ $st == *" daily open "* ]] || fail "incremental view status: $st"
}

# Writes while backup N runs: mostly to other$((N % 3)).bin, which nothing
# wrote since the backup before (or the one before that, if it failed):
# outside the frozen set; a few to data.bin, partly inside it.
writes_during() {
	fio --direct=1 --bs=4k --rw=randwrite --randrepeat=0 --refill_buffers \
		--name=other --filename=$MNT/other$(($1 % 3)).bin --size=8M --io_size=512k \
		--randseed=$((1000 + $1)) \
		--name=data --filename=$MNT/data.bin --size=16M --io_size=64k --randseed=$((2000 + $1)) \
		>/dev/null
	sync
}

# The changes of a cycle: random overwrites and file churn.
change() {
	local n=$1
	fio --name=change --filename=$MNT/data.bin --rw=randwrite --bs=4k --size=16M \
		--io_size=512k --direct=1 --randrepeat=0 --randseed=$n --refill_buffers >/dev/null
	dd if=/dev/urandom of=$MNT/f$n bs=64k count=$((n * 3 + 1)) status=none
	rm -f $MNT/f$((n - 2))
	mkdir $MNT/d$n
	echo "cycle $n" >> $MNT/log
	echo "cycle $n" > $MNT/d$n/log
	sync
}

# backup_incremental N: with the changes of view t051i in $WORK/changes,
# in one process (a process costs about 0.3 s in the VM):
# - a chunk written since the point in time (bitmap daily now) and not in
#   the frozen set must fail to read from the view (EIO), a frozen one that
#   was overwritten must read;
# - copy the frozen chunks from the view into the image at the same
#   offsets, with O_DIRECT (no readahead into chunks the backup must not
#   read); print the number of chunks copied and of those checked above.
backup_incremental() {
	python3 -c "$FLEECE_DMPY
import mmap
n, view, img, changes, cb = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
frozen = []
for line in open(changes):
    first, count = map(int, line.split())
    frozen.append((first, count))
fset = {c for f, k in frozen for c in range(f, f + k)}
after, start = set(), 0
while True:
    page = dm_message('t051', ['bitmap_changes', 'daily', str(start)]).split()
    for r in page[1:]:
        f, k = map(int, r.split('+'))
        after.update(range(f, f + k))
    if page[0] == 'end':
        break
    start = int(page[0])
v = os.open(view, os.O_RDONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 1 << 20)
outside = sorted(after - fset)
if not outside:
    sys.exit('T%s: nothing written outside the frozen set during the backup' % n)
try:
    os.preadv(v, [memoryview(buf)[:cb]], outside[0] * cb)
    sys.exit('T%s: chunk %d, overwritten and not frozen, was readable from the view' % (n, outside[0]))
except OSError as e:
    if e.errno != 5:
        raise
inside = sorted(after & fset)
if inside:
    os.preadv(v, [memoryview(buf)[:cb]], inside[0] * cb)
f = os.open(img, os.O_RDWR)
copied = 0
for first, count in frozen:
    off, left = first * cb, count * cb
    while left:
        k = min(left, 1 << 20)
        if os.preadv(v, [memoryview(buf)[:k]], off) != k:
            sys.exit('short read at %d' % off)
        os.pwrite(f, buf[:k], off)
        off += k
        left -= k
    copied += count
print(copied, len(outside), len(inside))
" "$1" $INC $IMG $WORK/changes $CB
}

# same_as_view FILE VIEW: FILE holds exactly what VIEW reads (cmp, not a
# hash: hashing 64 MiB takes seconds in the VM).
same_as_view() {
	dd if="$2" bs=1M iflag=direct status=none | cmp -s - "$1"
}

# copied VIEW: the <copied> field of a view's status.
copied() {
	local -a f
	read -r -a f <<< "$(dmsetup status "$1")"
	echo "${f[7]}"
}

# ---- T0: the full backup that starts the chain ----
views full
[ "$(dmsetup message t051i 0 changes)" = "end 0+$NCH" ] || fail "full view changes: $(dmsetup message t051i 0 changes)"
writes_during 0
dd if=$INC of=$IMG bs=1M iflag=direct status=none
same_as_view $IMG $REF || fail "T0: full image differs from the reference view"
dmsetup message t051i 0 commit
dmsetup remove t051i t051r
say "T0: full backup ($NCH chunks) equals the reference view"

total_read=0
prev_failed=
for n in $(seq 1 $CYCLES); do
	change $n
	views
	ranges_export t051i 65536 changes > $WORK/changes
	frozen=0
	while read -r _ count; do
		frozen=$((frozen + count))
	done < $WORK/changes
	[ "$frozen" -gt 0 ] || fail "T$n: empty frozen set"
	# A failed backup's set was merged back: it is part of this one.
	if [ -n "$prev_failed" ]; then
		ranges_chunks < $WORK/changes | sort > $WORK/frozen
		missing=$(ranges_chunks < $prev_failed | sort | comm -23 - $WORK/frozen | wc -l)
		[ "$missing" = 0 ] || fail "T$n: $missing chunks of the failed backup are not in this one"
	fi

	# Before any write: the whole incremental view is the point in time.
	dd if=$INC of=$WORK/full bs=1M iflag=direct status=none
	writes_during $n

	if [ "$n" = "$FAILED" ]; then
		# Read some of it, then give up: no commit.
		dd if=$INC of=/dev/null bs=1M count=8 iflag=direct status=none 2>/dev/null || true
		cp $WORK/changes $WORK/failed
		prev_failed=$WORK/failed
		dmsetup remove t051i t051r
		st=$(dmsetup status t051)
		[[ $st == *" daily "*" 0" ]] || fail "frozen set still there: $st"
		say "T$n: backup of $frozen chunks failed, view removed without commit"
		continue
	fi
	prev_failed=

	out=$(backup_incremental $n) || fail "$out"
	read -r got outside inside <<< "$out"
	[ "$got" = "$frozen" ] || fail "T$n: copied $got chunks, expected $frozen"
	cmp -s $IMG $WORK/full || fail "T$n: image after the incremental differs from a full read of the view"
	same_as_view $IMG $REF || fail "T$n: image differs from the reference view"

	inc_copied=$(copied t051i)
	ref_copied=$(copied t051r)
	[ "$inc_copied" -le "$frozen" ] || fail "T$n: copied $inc_copied > $frozen frozen chunks"
	[ "$ref_copied" -ge 48 ] && [ $((inc_copied * 4)) -le "$ref_copied" ] ||
		fail "T$n: the incremental view copied $inc_copied chunks, the full session $ref_copied"
	[ $((frozen * 2)) -lt $NCH ] || fail "T$n: $frozen of $NCH chunks frozen: hardly incremental"
	dmsetup message t051i 0 commit
	dmsetup remove t051i t051r
	total_read=$((total_read + frozen))
	say "T$n: read $frozen of $NCH chunks: image == view == reference;" \
		"$outside unfrozen overwritten chunks unreadable; copied $inc_copied vs full session $ref_copied"
done

umount $MNT
e2fsck -fn $IMG >/dev/null 2>&1 || fail "the final image is not a consistent ext4"
say "final image passes e2fsck; $((CYCLES - 1)) incrementals read $total_read chunks in all ($NCH per full backup)"
