#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# tests/boot/guest.sh STAGE: one boot of tests/boot/run, in the VM, on the
# disks the host keeps between boots. Each stage does what the shipped
# units and a sysadmin would do at that boot, and checks bytes.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
F=$top/userspace/fleecectl
O=/dev/disk/by-id/virtio-origin
M=/dev/disk/by-id/virtio-meta
S=/dev/disk/by-id/virtio-scratch
B=/dev/disk/by-id/virtio-store
tab=/tmp/fleecetab
mib=$((1024 * 1024))

fail() { echo "FAIL boot-$stage: $*"; exit 1; }
say() { echo "  boot-$stage: $*"; }
sha() { sha256sum < "$1" | cut -d' ' -f1; }
# stamp DEV OFFSET_MIB MIB SEED: seeded bytes, O_DIRECT.
stamp() {
	python3 -c '
import hashlib, os, sys
dev, off, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
fd = os.open(dev, os.O_WRONLY | os.O_DIRECT)
import mmap
buf = mmap.mmap(-1, 1 << 20)
for i in range(n):
    h = hashlib.sha256(("%s-%d" % (seed, i)).encode()).digest()
    buf.seek(0)
    buf.write(h * ((1 << 20) // 32))
    os.pwrite(fd, buf, (off + i) << 20)
os.fsync(fd)' "$@"
}
tracking() { $F status --json | python3 -c 'import json, sys; print([o["tracking"] for o in json.load(sys.stdin)["origins"]][0])'; }

stage=$1
modprobe dm-mod
insmod "$top/drivers/md/dm-fleece.ko"
echo "t080 $O $M mode=create,chunk-size=64K,bitmaps=b" > $tab

case $stage in
1)	# First boot: the units' ExecStart, a full backup, more writes, the
	# units' ExecStop at shutdown.
	$F up --tab $tab
	stamp /dev/mapper/t080 0 16 a
	$F snapshot t080 --scratch $S --bitmap b --full --view v >/dev/null
	$F backup v --to $B --quiet
	$F release v
	stamp /dev/mapper/t080 4 2 b
	stamp /dev/mapper/t080 40 1 b2
	$F down --shutdown --tab $tab
	say "up, 16 MiB written, full backup to the store, 3 MiB more, down --shutdown"
	;;
2)	# Second boot: up (vouching), the incremental holds exactly what the
	# first boot wrote after its backup, and the store becomes the origin.
	$F up --tab $tab
	[ "$(tracking)" = ok ] || fail "after a clean shutdown and up, tracking $(tracking)"
	got=$($F changes t080 b | tr '\n' ' ')
	[ "$got" = "$((4 * mib)) $((2 * mib)) $((40 * mib)) $((1 * mib)) " ] || fail "changes after the reboot: $got"
	want=$(sha /dev/mapper/t080)
	$F snapshot t080 --scratch $S --bitmap b --view v >/dev/null
	# Written after the point in time: the backup must not see it.
	stamp /dev/mapper/t080 8 1 late
	$F backup v --changed b --to $B --quiet
	[ "$(sha $B)" = "$want" ] || fail "the store after the incremental is not the origin at the view's point in time"
	$F release v
	$F down --shutdown --tab $tab
	say "up after reboot: tracking ok, changes exactly the 3 MiB, store + incremental == the point in time (sha256)"
	;;
3)	# A boot without the units (a rescue system): the origin written raw.
	stamp $O 20 1 rescue
	say "no up: 1 MiB written to the raw origin"
	;;
4)	# Attached again by hand, without the vouch: the gap is not silent,
	# and a full backup makes the store the origin again.
	$F up --no-vouch --tab $tab
	[ "$(tracking)" = gap ] || fail "after a boot without the units, tracking $(tracking)"
	if $F snapshot t080 --scratch $S --bitmap b --view v 2>/tmp/err; then
		fail "an incremental snapshot after a gap was taken"
	fi
	grep -q "attached after a time in which writes could pass it" /tmp/err || fail "refusal: $(cat /tmp/err)"
	$F snapshot t080 --scratch $S --bitmap b --full --view v >/dev/null
	$F backup v --to $B --quiet --force
	[ "$(sha $B)" = "$(sha $O)" ] || fail "the full backup after the gap is not the origin (nothing wrote since the view)"
	$F release v
	[ "$(tracking)" = ok ] || fail "after the full backup, tracking $(tracking)"
	$F down --shutdown --tab $tab
	say "attach by hand after it: gap, incremental refused, full backup == origin (sha256), trusted again"
	;;
esac
echo "PASS boot-$stage"
