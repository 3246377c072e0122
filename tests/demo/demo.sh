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

F=$top/userspace/fleecectl
fc() { echo "# fleecectl $*" >&2; "$F" "$@"; }

say "A volume in use: 256 MiB of the VM's disk (stand-in for an LVM volume)"
sz=$((256 * 2048))
run dmsetup create disk --table "0 $sz linear $DISK 0"
run mkfs.ext4 -q -E lazy_itable_init=0,lazy_journal_init=0 /dev/mapper/disk
mkdir -p /mnt/data /mnt/view
run mount /dev/mapper/disk /mnt/data
for i in 1 2 3; do
	head -c $((i * 1024 * 1024)) /dev/urandom > /mnt/data/file$i
done

say "Attach fleece-origin under it, mounted (32 KiB chunks, bitmaps on the meta disk)"
fc attach disk --meta $META --chunk-size 32K
echo "# a changed-block bitmap for incremental backups; it survives power cuts"
fc bitmap add disk nightly
sync
sums /mnt/data | tee /tmp/before
fc status

say "Take a point-in-time view while the filesystem stays mounted"
echo "# --full: the first backup of the bitmap's chain (committed when done)"
VIEW=$(fc snapshot disk --scratch $SCRATCH --bitmap nightly --full --view snap)
echo "$VIEW"

say "Applications keep writing: overwrite, delete, create"
head -c $((2 * 1024 * 1024)) /dev/urandom > /mnt/data/file2
rm /mnt/data/file3
head -c 500000 /dev/urandom > /mnt/data/file4
sync
sums /mnt/data
echo "# the view copied the old chunks before they were overwritten:"
fc status snap

say "Mount the view: it still shows the moment of the snapshot"
run mount -o ro,noload "$VIEW" /mnt/view
sums /mnt/view | tee /tmp/after
if cmp -s /tmp/before /tmp/after; then
	echo "view == files at snapshot time: byte-identical"
else
	echo "MISMATCH between the view and the files at snapshot time" >&2
	exit 1
fi
run umount /mnt/view
ref=$(dd if="$VIEW" bs=1M iflag=direct status=none | sha256sum | cut -d' ' -f1)

say "Full backup: the agent copies the view, releasing what it has copied"
fc backup snap --to /tmp/full.img --full --verify --quiet
mine=$(sha256sum < /tmp/full.img | cut -d' ' -f1)
echo "full read of the view: ${ref:0:16}…   image: ${mine:0:16}…"
[ "$ref" = "$mine" ] || { echo "MISMATCH between the full image and the view" >&2; exit 1; }
echo "full image == the view: byte-identical"
fc release snap

say "Meanwhile the bitmap records every chunk written"
head -c 3000000 /dev/urandom > /mnt/data/file5
head -c 100000 /dev/urandom >> /mnt/data/file1
sync
fc bitmap list disk

say "Incremental backup: only the changed chunks are copied (and read)"
fc snapshot disk --scratch $SCRATCH --bitmap nightly --view inc
echo "# changed byte ranges (offset length), first lines:"
"$F" changes inc | head -n 4
ref=$(dd if=/dev/mapper/inc bs=1M iflag=direct status=none | sha256sum | cut -d' ' -f1)
fc backup inc --changed nightly --base /tmp/full.img --to /tmp/inc.img --verify --quiet
mine=$(sha256sum < /tmp/inc.img | cut -d' ' -f1)
echo "full read of the view: ${ref:0:16}…   full image + changes: ${mine:0:16}…"
[ "$ref" = "$mine" ] || { echo "MISMATCH between the incremental image and the view" >&2; exit 1; }
echo "incremental image == the view: byte-identical"
fc release inc
fc status --json | python3 -c 'import json, sys; d = json.load(sys.stdin)["origins"][0]; print("# status --json:", d["name"], d["metadata"], d["tracking"], d["bitmaps"])'

say "Detach: the volume gets its own table back, still mounted"
fc detach disk
run umount /mnt/data
run e2fsck -fn /dev/mapper/disk
run dmsetup remove disk
echo
echo "demo: done"
