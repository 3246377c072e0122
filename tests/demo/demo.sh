#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The demo, run inside the VM by 'make demo': dm-fleece at work end to end on
# the VM's virtual disks. Grows as features land.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
DISK=/dev/disk/by-id/virtio-origin
SCRATCH=/dev/disk/by-id/virtio-scratch
META=/dev/disk/by-id/virtio-meta
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { echo "# $*"; "$@"; }
sums() { (cd "$1" && sha256sum file* | sed 's/^\(.\{16\}\)[^ ]*/\1…/'); }

say "Load dm-fleece"
modprobe dm-mod
run insmod "$top/drivers/md/dm-fleece.ko"
run dmsetup targets

say "An origin device: 256 MiB of the VM's disk (backups go to the VM's RAM)"
sz=$((256 * 2048))
run dmsetup create disk --table "0 $sz linear $DISK 0"
ORIGIN=/dev/mapper/disk

say "Put fleece-origin on it (32 KiB chunks, bitmaps on the meta disk)"
run dmsetup create data --table "0 $sz fleece-origin $ORIGIN $META 64"
echo "# a changed-block bitmap for incremental backups; it survives power cuts"
run dmsetup message data 0 bitmap_add nightly

say "Make a filesystem on it, mount it, write files"
run mkfs.ext4 -q /dev/mapper/data
mkdir -p /mnt/data /mnt/view
run mount /dev/mapper/data /mnt/data
for i in 1 2 3; do
	head -c $((i * 1024 * 1024)) /dev/urandom > /mnt/data/file$i
done
echo "# mkfs and the files were written since the bitmap was added:"
sync
sums /mnt/data | tee /tmp/before
run dmsetup status data

say "Take a point-in-time view while the filesystem stays mounted"
echo "# suspend freezes ext4, the view registers, resume thaws it"
run dmsetup suspend data
echo "# a full backup that starts the bitmap's chain: committed when done"
run dmsetup create snap --table "0 $sz fleece $ORIGIN $SCRATCH 3 bitmap nightly full"
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

say "Full backup: read the whole view into an image, releasing as we go"
dd if=/dev/mapper/snap of=/tmp/backup.img bs=1M iflag=direct status=none
run blkdiscard -f /dev/mapper/snap
run dmsetup message snap 0 commit
run dmsetup status snap
run dmsetup remove snap
sha256sum /tmp/backup.img | cut -c1-16

say "Meanwhile the bitmap recorded every chunk written"
run dmsetup status data
head -c 3000000 /dev/urandom > /mnt/data/file5
head -c 100000 /dev/urandom >> /mnt/data/file1
sync
run dmsetup status data

say "Incremental backup: the view copies and the agent reads only changed chunks"
run dmsetup suspend data
run dmsetup create inc --table "0 $sz fleece $ORIGIN $SCRATCH 2 bitmap nightly"
run dmsetup resume data
ranges=$(dmsetup message inc 0 changes)
echo "# changed chunks (first+count): ${ranges:0:70}..."
chunk_bytes=$((64 * 512))
total=0
for r in ${ranges#* }; do
	first=${r%+*}; count=${r#*+}
	dd if=/dev/mapper/inc of=/tmp/backup.img bs=$chunk_bytes skip=$first seek=$first \
		count=$count iflag=direct conv=notrunc status=none
	total=$((total + count))
done
echo "# read $total of $((sz / 64)) chunks ($((total * 100 / (sz / 64)))%)"
run dmsetup message inc 0 commit
full=$(dd if=/dev/mapper/inc bs=1M iflag=direct status=none | sha256sum | cut -d' ' -f1)
mine=$(sha256sum < /tmp/backup.img | cut -d' ' -f1)
echo "full read of the view:      ${full:0:16}…"
echo "base image + changed chunks: ${mine:0:16}…"
if [ "$full" = "$mine" ]; then
	echo "incremental backup == full read of the view: byte-identical"
else
	echo "MISMATCH between the incremental image and the view" >&2
	exit 1
fi
run dmsetup status inc
run dmsetup remove inc
run dmsetup status data

run umount /mnt/data
run dmsetup remove data
run dmsetup remove disk
echo
echo "demo: done"
