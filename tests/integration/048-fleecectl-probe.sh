#!/bin/bash
# fleecectl never overwrites data by mistake (issue 15, item 1): a scratch
# device or a backup target that holds something mkfs or wipefs would find
# (a file system, an LVM PV, a partition table) or dm-fleece metadata is
# refused, naming what it holds, and is left exactly as it was; --force
# uses it. An incremental backup updating the previous image in place on a
# device needs no --force. Releasing a view erases the signatures its
# copies left on scratch, so the next snapshot takes it again.
. "$(dirname "$0")/lib.sh"
F=$FLEECECTL
mib=$((1024 * 1024))
SZ=$((32 * 2048))

cleanup() {
	for d in t048-snap0 t048x t048 t048o t048s t048t t048m; do
		dmsetup remove $d 2>/dev/null || true
	done
}
trap cleanup EXIT

dmsetup create t048o --table "0 $SZ linear $ORIGIN 0"
dmsetup create t048s --table "0 $SZ linear $SCRATCH 0"
dmsetup create t048t --table "0 $SZ linear $SCRATCH $SZ"
dmsetup create t048m --table "0 $SZ linear $META 0"
S=/dev/mapper/t048s
T=/dev/mapper/t048t
expect_rc 0 $F create t048 /dev/mapper/t048o
stamp /dev/mapper/t048 0 $((4 * mib)) o1 >/dev/null

# refused_scratch WHAT: snapshot refuses $S, saying it holds WHAT, and
# changes nothing: no view, origin active, $S unchanged.
refused_scratch() {
	local before
	before=$(dev_sha $S)
	expect_err 1 "scratch device $S holds $1; it would be overwritten \\(use --force" \
		$F snapshot t048 --scratch $S
	dmsetup info t048-snap0 >/dev/null 2>&1 && fail "a refused snapshot left a view"
	[ "$(dm_state t048)" = ACTIVE ] || fail "a refused snapshot left t048 suspended"
	[ "$(dev_sha $S)" = "$before" ] || fail "a refused snapshot changed the scratch device"
}

mkfs.ext4 -q -F -L precious $S
refused_scratch "ext4 \\(a file system\\) labelled 'precious'"
pvcreate -q -y -ff $S >/dev/null 2>&1 || fail "pvcreate on $S failed"
refused_scratch "LVM2_member \\(a RAID or LVM member\\)"
pvremove -q -y -ff $S >/dev/null 2>&1
blkdiscard -f $S
# An MBR with one Linux partition at 1 MiB (no sfdisk in the VM).
python3 - $S <<'PY'
import os, struct, sys
mbr = bytearray(512)
struct.pack_into("<B3sB3sII", mbr, 446, 0, b"\0\0\0", 0x83, b"\0\0\0", 2048, 8192)
mbr[510:512] = b"\x55\xaa"
fd = os.open(sys.argv[1], os.O_WRONLY)
os.pwrite(fd, mbr, 0)
os.fsync(fd)
PY
refused_scratch "a partition table \\(dos\\)"
blkdiscard -f $S
# dm-fleece metadata: a fleece-origin formatted it.
dmsetup create t048x --table "0 2048 fleece-origin $ORIGIN $S 8"
dmsetup remove t048x
refused_scratch "dm-fleece metadata \\(a fleece-origin's bitmaps\\)"
info "scratch holding ext4, an LVM PV, a partition table, dm-fleece metadata: refused, untouched"

# --force takes it; the view reads the origin's point in time.
mkfs.ext4 -q -F $S
expect_rc 0 $F snapshot t048 --scratch $S --force
ref=$(dev_sha /dev/mapper/t048o)
stamp /dev/mapper/t048 0 $((2 * mib)) o2 >/dev/null
[ "$(dev_sha /dev/mapper/t048-snap0)" = "$ref" ] || fail "the view on a --force'd scratch is not the point in time"
info "--force: the scratch device taken, the view right"

# The backup target: a device holding a file system is refused, untouched.
mkfs.ext4 -q -F -L target $T
before=$(dev_sha $T)
expect_err 1 "backup t048-snap0: $T holds ext4 \\(a file system\\) labelled 'target'; it would be overwritten" \
	$F backup t048-snap0 --to $T --full --no-release
[ "$(dev_sha $T)" = "$before" ] || fail "a refused backup changed the target device"
expect_rc 0 $F backup t048-snap0 --to $T --full --no-release --force
[ "$(dev_sha $T)" = "$ref" ] || fail "the backup on the target device is not the view"
info "backup to a device holding ext4: refused untouched, then written with --force"

# Release erases what the copies left on scratch: the origin holds ext4,
# and its first chunk, with the superblock, is copied to the first slot.
expect_rc 0 $F release t048-snap0
mkfs.ext4 -q -F /dev/mapper/t048 >/dev/null
expect_rc 0 $F snapshot t048 --scratch $S
stamp /dev/mapper/t048 0 $((1 * mib)) o3 >/dev/null
[ -n "$(blkid -p -o value -s TYPE $S 2>/dev/null)" ] ||
	fail "the view's copies left no ext4 signature on scratch: this check proves nothing"
expect_rc 0 $F release t048-snap0
[ -z "$(blkid -p -o value -s TYPE $S 2>/dev/null)" ] || fail "release left a signature on scratch: $(blkid -p $S)"
expect_rc 0 $F snapshot t048 --scratch $S
expect_rc 0 $F release t048-snap0
info "release erased the ext4 signature the copies left on scratch; the next snapshot took it"
