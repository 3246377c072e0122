#!/bin/bash
# ext4 on fleece-origin. A session taken while the filesystem is mounted and
# busy (suspend freezes it) gives a view that mounts (ro,noload) with every
# file exactly as it was, and fsck -fn is clean, however the origin's files
# were modified, deleted, created and renamed afterwards. A second session,
# 'writable' and taken without freezing (--nolockfs, so its journal needs
# recovery), mounts read-write (journal replay), takes writes, stays fsck
# clean and keeps them across remounts, while the origin device does not
# change by a byte and the origin filesystem keeps its own files.
. "$(dirname "$0")/lib.sh"

L=$((256 * 1024 * 2))	# 256 MiB filesystem, in sectors
ODM=t013o
odev=/dev/mapper/$ODM
O=$WORK/o V=$WORK/v
mkdir -p $O $V
trap 'umount $V 2>/dev/null || true; umount $O 2>/dev/null || true' EXIT
flist() { (cd "$1" && find . -type f ! -path './lost+found/*' -print0 | sort -z | xargs -0 sha256sum); }
same() { cmp -s "$1" "$2" || { diff "$1" "$2" >&2; fail "$3"; }; }
# data K LEN: LEN bytes of file content number K (slices of one pattern
# blob; different K give different bytes).
pattern t013 $((16 * 1024 * 1024)) > $WORK/blob
data() { dd if=$WORK/blob bs=64K iflag=skip_bytes,count_bytes skip=$(($1 * 4096 * 37 % (12 * 1024 * 1024))) count=$2 status=none; }

dmsetup create $ODM --table "0 $L fleece-origin $ORIGIN - 8"
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 $odev
mount -o noatime $odev $O
mkdir -p $O/dir/sub
for i in $(seq 1 30); do
	data $i $((i * 37 * 1024 + i)) > $O/f$i
done
for i in 1 2 3; do data $((100 + i)) $((i * 300 * 1024)) > $O/dir/sub/s$i; done
truncate -s 50M $O/sparse && data 110 4096 | dd of=$O/sparse bs=4096 seek=6000 conv=notrunc status=none
sync
flist $O > $WORK/t1

# Session 1, with the filesystem mounted (dmsetup suspend freezes it).
view_create t013v $ODM "0 $L fleece $ORIGIN $SCRATCH" || fail "cannot create the view"
# Modify, delete, create, rename on the origin.
data 111 $((37 * 1024 + 1)) > $O/f1
data 112 100000 >> $O/f2
truncate -s 1000 $O/f3
rm $O/f4 $O/f5 $O/f6 $O/dir/sub/s2
mv $O/f7 $O/dir/f7-renamed
for i in 1 2 3 4 5; do data $((120 + i)) $((2 * 1024 * 1024)) > $O/new$i; done
dd if=/dev/zero of=$O/sparse bs=1M count=8 seek=10 conv=notrunc status=none
sync
flist $O > $WORK/t1-origin
cmp -s $WORK/t1 $WORK/t1-origin && fail "the origin's files did not change"

mount -o ro,noload /dev/mapper/t013v $V || fail "cannot mount the view ro,noload"
flist $V > $WORK/t1-view
umount $V
same $WORK/t1 $WORK/t1-view "the view's files are not those of the point in time"
info "view: $(wc -l < $WORK/t1) files as at the point in time"
e2fsck -fn /dev/mapper/t013v > $WORK/fsck1 2>&1 || { cat $WORK/fsck1 >&2; fail "e2fsck -fn on the view found errors"; }
flist $O > $WORK/now
same $WORK/t1-origin $WORK/now "the origin's files changed while the view was read"
[ "$(view_stat t013v copied)" -gt 0 ] || fail "no chunk was copied"
dmsetup remove t013v
info "view fsck clean; origin files untouched"

# Session 2: writable, taken without freezing; the journal needs recovery.
for i in 1 2 3; do data $((130 + i)) $((500 * 1024)) > $O/t2-$i; done
rm $O/f8
sync
flist $O > $WORK/t2
dmsetup suspend --nolockfs $ODM
dmsetup create t013w --table "0 $L fleece $ORIGIN $SCRATCH 1 writable" || { dmsetup resume $ODM; fail "cannot create a writable view"; }
dmsetup resume $ODM
udevadm settle
[ "$(dmsetup table t013w)" = "0 $L fleece $ORIGIN $SCRATCH 1 writable" ] || fail "table came back as '$(dmsetup table t013w)'"
features() { dumpe2fs -h "$1" 2>/dev/null | grep '^Filesystem features:'; }
[[ $(features /dev/mapper/t013w) == *needs_recovery* ]] ||
	fail "the unfrozen view's journal does not need recovery (test premise)"
# The origin goes on, then is unmounted: from here on it must not change.
data 140 777777 > $O/f9
rm $O/t2-1
sync
flist $O > $WORK/t3
umount $O
osha=$(range_sha $ORIGIN 0 $((L * 512)))

mount /dev/mapper/t013w $V || fail "cannot mount the writable view read-write"
flist $V > $WORK/t2-view
same $WORK/t2 $WORK/t2-view "the writable view's files are not those of its point in time"
data 141 $((3 * 1024 * 1024)) > $V/inview
data 142 5000 > $V/f10
rm $V/f11
mkdir $V/newdir && cp $V/f12 $V/newdir/
sync
flist $V > $WORK/t2-written
umount $V
[[ $(features /dev/mapper/t013w) != *needs_recovery* ]] ||
	fail "the view's journal still needs recovery after a read-write mount and unmount"
e2fsck -fn /dev/mapper/t013w > $WORK/fsck2 2>&1 || { cat $WORK/fsck2 >&2; fail "e2fsck -fn on the written view found errors"; }
mount -o ro /dev/mapper/t013w $V || fail "cannot remount the written view"
flist $V > $WORK/now
umount $V
same $WORK/t2-written $WORK/now "writes to the view did not persist across a remount"
[ "$(view_stat t013w state)" = Active ] || fail "writable view is $(view_stat t013w state)"
info "writable view: journal replayed, written, fsck clean, writes kept"

[ "$(range_sha $ORIGIN 0 $((L * 512)))" = "$osha" ] || fail "writing to the view changed the origin device"
e2fsck -fn $odev > $WORK/fsck3 2>&1 || { cat $WORK/fsck3 >&2; fail "e2fsck -fn on the origin found errors"; }
mount -o noatime $odev $O
flist $O > $WORK/now
umount $O
same $WORK/t3 $WORK/now "the origin's files changed"
dmsetup remove t013w
dmsetup remove $ODM
info "origin device unchanged by view writes; origin fs clean with its own files"
