#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The demo, run inside the VM by 'make demo': dm-fleece at work end to end on
# the VM's virtual disks. Grows as features land.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
ORIGIN=/dev/disk/by-id/virtio-origin
SCRATCH=/dev/disk/by-id/virtio-scratch
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { echo "# $*"; "$@"; }
sums() { (cd "$1" && sha256sum file* | sed 's/^\(.\{16\}\)[^ ]*/\1…/'); }

say "Load dm-fleece"
modprobe dm-mod
run insmod "$top/drivers/md/dm-fleece.ko"
run dmsetup targets

say "Put fleece-origin on the origin disk (32 KiB chunks, bitmaps in memory)"
sz=$(blockdev --getsz $ORIGIN)
run dmsetup create data --table "0 $sz fleece-origin $ORIGIN - 64"

say "Make a filesystem on it, mount it, write files"
run mkfs.ext4 -q /dev/mapper/data
mkdir -p /mnt/data /mnt/view
run mount /dev/mapper/data /mnt/data
for i in 1 2 3; do
	head -c $((i * 1024 * 1024)) /dev/urandom > /mnt/data/file$i
done
sync
sums /mnt/data | tee /tmp/before
run dmsetup status data

say "Take a point-in-time view while the filesystem stays mounted"
echo "# suspend freezes ext4, the view registers, resume thaws it"
run dmsetup suspend data
run dmsetup create snap --table "0 $sz fleece $ORIGIN $SCRATCH"
run dmsetup resume data

say "Applications keep writing: overwrite, delete, create"
head -c $((2 * 1024 * 1024)) /dev/urandom > /mnt/data/file2
rm /mnt/data/file3
head -c 500000 /dev/urandom > /mnt/data/file4
sync
sums /mnt/data
echo "# the view copied the old chunks before they were overwritten:"
run dmsetup status snap

say "Mount the view: it still shows the moment of the snapshot"
run mount -o ro,noload /dev/mapper/snap /mnt/view
sums /mnt/view | tee /tmp/after
if cmp -s /tmp/before /tmp/after; then
	echo "view == files at snapshot time: byte-identical"
else
	echo "MISMATCH between the view and the files at snapshot time" >&2
	exit 1
fi
run umount /mnt/view
run e2fsck -fn /dev/mapper/snap

say "The backup is done: release what was read, end the session"
run blkdiscard -f /dev/mapper/snap
run dmsetup status snap
run dmsetup remove snap
run dmsetup status data

run umount /mnt/data
run dmsetup remove data
echo
echo "demo: done"
