#!/bin/bash
# A filesystem on fleece-origin: files written, unmounted, remounted, identical.
. "$(dirname "$0")/lib.sh"

sz=$(dev_sectors $ORIGIN)
dmsetup create t005 --table "0 $sz fleece-origin $ORIGIN - 8"
mkfs.ext4 -q -F /dev/mapper/t005
mkdir -p $WORK/mnt
mount /dev/mapper/t005 $WORK/mnt
for i in $(seq 1 20); do
	pattern "file$i" $((i * 37 * 1024)) > $WORK/mnt/file$i
done
mkdir $WORK/mnt/dir && cp $WORK/mnt/file1* $WORK/mnt/dir/
(cd $WORK/mnt && find . -type f ! -path './lost+found/*' -print0 | sort -z | xargs -0 sha256sum) > $WORK/before
umount $WORK/mnt
dmsetup remove t005
dmsetup create t005 --table "0 $sz fleece-origin $ORIGIN - 8"
e2fsck -fn /dev/mapper/t005 >/dev/null || fail "e2fsck found errors"
mount /dev/mapper/t005 $WORK/mnt
(cd $WORK/mnt && find . -type f ! -path './lost+found/*' -print0 | sort -z | xargs -0 sha256sum) > $WORK/after
umount $WORK/mnt
dmsetup remove t005
cmp -s $WORK/before $WORK/after || { diff $WORK/before $WORK/after >&2; fail "files changed across remount"; }
info "$(wc -l < $WORK/before) files identical after remount, fsck clean"
