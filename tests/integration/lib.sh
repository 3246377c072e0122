# SPDX-License-Identifier: GPL-2.0
#
# Helpers for integration tests. Sourced by each test, which runs as root in
# the test VM (tests/vm/run) with the default disks:
#   $ORIGIN  1 GiB   /dev/disk/by-id/virtio-origin
#   $SCRATCH 512 MiB /dev/disk/by-id/virtio-scratch
#   $META    64 MiB  /dev/disk/by-id/virtio-meta
# A test prints what it does, calls fail() on the first wrong byte, and
# leaves no device-mapper device behind (the suite removes leftovers anyway).
set -euo pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MODULE=$TOP/drivers/md/dm-fleece.ko
FLEECECTL=$TOP/userspace/fleecectl
ORIGIN=/dev/disk/by-id/virtio-origin
SCRATCH=/dev/disk/by-id/virtio-scratch
META=/dev/disk/by-id/virtio-meta
TESTNAME=$(basename "$0" .sh)
WORK=/tmp/$TESTNAME
mkdir -p "$WORK"

fail() {
	echo "FAIL: $TESTNAME: $*" >&2
	exit 1
}

info() { echo "  $TESTNAME: $*"; }

# Sectors of a block device.
dev_sectors() { blockdev --getsz "$1"; }

# sha256 of a whole device, or of LEN bytes at OFFSET (bytes, 4 KiB aligned).
dev_sha() {
	local dev=$1 off=${2:-} len=${3:-}
	if [ -z "$off" ]; then
		dd if="$dev" bs=1M iflag=direct status=none | sha256sum | cut -d' ' -f1
	else
		dd if="$dev" bs=4096 skip=$((off / 4096)) count=$((len / 4096)) \
			iflag=direct status=none | sha256sum | cut -d' ' -f1
	fi
}

# Fill LEN bytes at OFFSET of DEV with a deterministic pattern from SEED.
# Prints the pattern's sha256.
stamp() {
	local dev=$1 off=$2 len=$3 seed=$4
	local f=$WORK/stamp.$seed
	pattern "$seed" "$len" > "$f"
	dd if="$f" of="$dev" bs=4096 seek=$((off / 4096)) oflag=direct conv=notrunc,fsync status=none
	sha256sum < "$f" | cut -d' ' -f1
	rm -f "$f"
}

# pattern SEED LEN: LEN deterministic bytes; every 4 KiB block differs
# (a counter hashed with the seed), so a block read from the wrong place or
# the wrong time never matches by accident.
pattern() {
	local seed=$1 len=$2
	python3 -c '
import hashlib, sys
seed, n = sys.argv[1].encode(), int(sys.argv[2])
out = sys.stdout.buffer
block = 0
while n > 0:
    h = hashlib.sha256(seed + block.to_bytes(8, "little")).digest()
    chunk = (h * 128)[:min(4096, n)]
    out.write(chunk)
    n -= len(chunk)
    block += 1
' "$seed" "$len"
}

# Number of kernel log lines so far; new_dmesg N prints what came after.
dmesg_mark() { dmesg | wc -l; }
new_dmesg() { dmesg | tail -n +$(($1 + 1)); }

# expect_ctr_fail NAME "TABLE" "ERROR": creating NAME with TABLE must fail,
# the kernel must log ERROR (the target's ti->error), NAME must not exist.
expect_ctr_fail() {
	local name=$1 table=$2 err=$3 mark
	mark=$(dmesg_mark)
	if dmsetup create "$name" --table "$table" 2>/dev/null; then
		dmsetup remove "$name" 2>/dev/null || true
		fail "table '$table' was accepted"
	fi
	if ! new_dmesg "$mark" | grep -qF -- "$err"; then
		new_dmesg "$mark" >&2
		fail "table '$table': kernel did not say '$err'"
	fi
	if dmsetup info "$name" >/dev/null 2>&1; then
		dmsetup remove "$name" 2>/dev/null || true
		fail "table '$table': device $name left behind"
	fi
	info "refused as expected: $err"
}

load_module() {
	modprobe dm-mod
	lsmod | grep -q '^dm_fleece ' || insmod "$MODULE"
}

# Remove every device-mapper device this test may have left.
dm_cleanup() {
	local d
	for _ in 1 2 3; do
		for d in $(dmsetup ls 2>/dev/null | awk '$1 != "No" { print $1 }'); do
			dmsetup remove --retry "$d" >/dev/null 2>&1 || true
		done
	done
}
