#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The demo, run inside the VM by 'make demo': dm-fleece at work end to end on
# the VM's virtual disks. Grows as features land.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
ORIGIN=/dev/disk/by-id/virtio-origin
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { echo "# $*"; "$@"; }

say "Load dm-fleece"
modprobe dm-mod
run insmod "$top/drivers/md/dm-fleece.ko"
run dmsetup targets

say "Put fleece-origin on the origin disk (64 KiB chunks, bitmaps in memory)"
sz=$(blockdev --getsz $ORIGIN)
run dmsetup create data --table "0 $sz fleece-origin $ORIGIN - 128"

say "Make a filesystem on it, mount it, write files"
run mkfs.ext4 -q /dev/mapper/data
mkdir -p /mnt/data
run mount /dev/mapper/data /mnt/data
for i in 1 2 3; do
	head -c $((i * 1024 * 1024)) /dev/urandom > /mnt/data/file$i
done
run ls -l /mnt/data
(cd /mnt/data && sha256sum file*)

say "Status"
run dmsetup table data
run dmsetup status data

run umount /mnt/data
run dmsetup remove data
echo
echo "demo: done"
