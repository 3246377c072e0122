#!/bin/bash
# fleecectl snapshot of a mounted ext4 that is being written: the view holds
# exactly the files of the moment of the snapshot, and every file a writer
# had completed (written, then renamed into place) is whole in it. Then the
# refusals: no scratch, scratch in use (open in a process, held exclusively,
# mounted), scratch = origin, not a fleece-origin; release of non-views.
. "$(dirname "$0")/lib.sh"
F=$FLEECECTL
mnt=$WORK/mnt
vmnt=$WORK/view
smnt=$WORK/smnt
kib=1024
mkdir -p $mnt $vmnt $smnt

cleanup() {
	[ -n "${writer:-}" ] && kill $writer 2>/dev/null
	umount $vmnt $smnt $mnt 2>/dev/null || true
	true
}
trap cleanup EXIT

no_view() {
	if dmsetup ls | grep -q '^t041-snap'; then
		dmsetup ls >&2
		fail "a view was left behind"
	fi
	[ "$(dm_state t041)" = ACTIVE ] || fail "t041 left $(dm_state t041)"
	[ "$(origin_sessions t041)" = 0 ] || fail "t041 has $(origin_sessions t041) sessions"
}

expect_rc 0 $F create t041 $ORIGIN
mkfs.ext4 -q -F /dev/mapper/t041
mount /dev/mapper/t041 $mnt

# Files of the point in time.
for i in 1 2 3 4 5 6; do
	pattern a041-$i $((i * 192 * kib)) > $mnt/a$i
done
sync
(cd $mnt && sha256sum a*) > $WORK/a.sha

# A writer that keeps completing files: b.N holds the first (N % 16 + 1) *
# 64 KiB of src, written to tmp.N then renamed to b.N.
pattern src041 $((1024 * kib)) > $WORK/src
(
	n=0
	while [ ! -e $WORK/stop ]; do
		dd if=$WORK/src of=$mnt/tmp.$n bs=64K count=$((n % 16 + 1)) status=none
		mv $mnt/tmp.$n $mnt/b.$n
		n=$((n + 1))
	done
) &
writer=$!
sleep 2

expect_rc 0 $F snapshot t041 --scratch $SCRATCH
view=$(cat $WORK/stdout)
[ "$view" = /dev/mapper/t041-snap0 ] || fail "snapshot printed '$view'"
[ "$(dm_state t041)" = ACTIVE ] || fail "origin left $(dm_state t041)"
[ "$(origin_sessions t041)" = 1 ] || fail "origin has $(origin_sessions t041) sessions"
want="0 $(dev_sectors $ORIGIN) fleece $(majmin $ORIGIN) $(majmin $SCRATCH)"
[ "$(dmsetup table t041-snap0)" = "$want" ] || fail "view table '$(dmsetup table t041-snap0)', expected '$want'"
info "view $view taken while the writer ran"

# After the snapshot: overwrite, delete, keep writing.
for i in 1 3 5; do
	pattern z041-$i $((i * 192 * kib)) > $mnt/a$i
done
rm $mnt/a2
sleep 2
touch $WORK/stop
wait $writer
writer=
sync
nb=$(ls $mnt | grep -c '^b\.')
[ "$(view_stat t041-snap0 copied)" -gt 0 ] || fail "nothing was copied to scratch"
info "writer completed $nb files; $(view_stat t041-snap0 copied) chunks copied"

mount -o ro,noload $view $vmnt
(cd $vmnt && sha256sum a*) > $WORK/view.sha
diff -u $WORK/a.sha $WORK/view.sha >&2 || fail "view files differ from the snapshot-time sha list"
vb=0
for f in $vmnt/b.*; do
	[ -e "$f" ] || continue
	n=${f##*.}
	len=$(((n % 16 + 1) * 64 * kib))
	[ "$(stat -c %s "$f")" = $len ] || fail "$f: $(stat -c %s "$f") bytes, expected $len"
	cmp -s -n $len "$f" $WORK/src || fail "$f differs from what the writer wrote"
	vb=$((vb + 1))
done
[ $vb -gt 0 ] || fail "no writer file in the view (the writer ran 2 s before it)"
[ $vb -lt "$nb" ] || fail "the view has all $nb writer files, including later ones"
umount $vmnt
e2fsck -fn $view >/dev/null 2>&1 || fail "e2fsck finds errors in the view"
info "view: a* identical to the sha list, $vb whole writer files (of $nb), e2fsck clean"

expect_rc 0 $F release t041-snap0
[ ! -e /dev/mapper/t041-snap0 ] || fail "release left /dev/mapper/t041-snap0"
no_view
info "release: view gone, 0 sessions"

# Options go into the view table.
expect_rc 0 $F snapshot t041 --scratch $SCRATCH --view t041-opts --on-full fail-writes \
	--low-water 16 --writable
[ "$(cat $WORK/stdout)" = /dev/mapper/t041-opts ] || fail "--view: printed '$(cat $WORK/stdout)'"
dmsetup table t041-opts | grep -q ' 5 on_full fail_writes low_water 16 writable$' ||
	fail "options table: $(dmsetup table t041-opts)"
expect_err 4 'snapshot t041: a device named t041-opts exists already' \
	$F snapshot t041 --scratch $META --view t041-opts
expect_err 2 'exclude each other' $F release t041-opts --commit --abort
expect_rc 0 $F release t041-opts --abort

# Refusals: usage errors.
expect_err 2 'snapshot: --scratch DEV is required' $F snapshot t041
expect_err 2 "invalid --on-full 'sometimes'" $F snapshot t041 --scratch $SCRATCH --on-full sometimes
expect_err 2 "invalid --low-water 'lots'" $F snapshot t041 --scratch $SCRATCH --low-water lots
no_view

# Refusals: the scratch device.
expect_err 3 'snapshot t041: scratch device /dev/nonexistent: No such file or directory' \
	$F snapshot t041 --scratch /dev/nonexistent
expect_err 1 'snapshot t041: scratch device .* is the origin device' $F snapshot t041 --scratch $ORIGIN
expect_err 1 'snapshot t041: scratch device .* is the fleece-origin device itself' \
	$F snapshot t041 --scratch /dev/mapper/t041
no_view

sleep 60 3<$SCRATCH &
holder=$!
# Open and exec'ed: the message names the process by its command.
until [ "$(cat /proc/$holder/comm 2>/dev/null)" = sleep ]; do sleep 0.1; done
expect_err 4 "snapshot t041: scratch device $SCRATCH is open in process $holder \(sleep\)" \
	$F snapshot t041 --scratch $SCRATCH
kill $holder
wait $holder 2>/dev/null || true
no_view

python3 -c '
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_EXCL)
open(sys.argv[2], "w").close()
time.sleep(60)
' $SCRATCH $WORK/held &
holder=$!
for _ in $(seq 50); do [ -e $WORK/held ] && break; sleep 0.1; done
expect_err 4 "snapshot t041: scratch device $SCRATCH is in use" $F snapshot t041 --scratch $SCRATCH
kill $holder
wait $holder 2>/dev/null || true
no_view

mkfs.ext4 -q -F $SCRATCH
mount $SCRATCH $smnt
expect_err 4 "snapshot t041: scratch device $SCRATCH is mounted on $smnt" \
	$F snapshot t041 --scratch $SCRATCH
umount $smnt
no_view
# Unmounted, it still holds a file system: 048 tests that refusal.
wipefs -q -a $SCRATCH

# Refusals: what is snapshotted, what is released.
dmsetup create t041lin --table "0 2048 linear $META 0"
expect_err 3 'snapshot t041lin: not a fleece-origin device \(its table is linear\)' \
	$F snapshot t041lin --scratch $SCRATCH
expect_err 3 'snapshot nosuch: no such device-mapper device' $F snapshot nosuch --scratch $SCRATCH
expect_err 3 'release t041lin: not a fleece view \(its table is linear\)' $F release t041lin
dmsetup info t041lin >/dev/null || fail "release removed the linear device"
expect_err 3 'release t041: not a fleece view \(its table is fleece-origin\)' $F release t041
[ "$(dm_state t041)" = ACTIVE ] || fail "release touched the origin"
expect_err 3 'release nosuch: no such device-mapper device' $F release nosuch
dmsetup remove t041lin
no_view

# What only the kernel can refuse comes with the kernel's reason: a scratch
# device on the origin's disk (two partitions of the metadata disk).
python3 -c '
import struct, sys
mbr = bytearray(512)
for i, (start, count) in enumerate(((2048, 61440), (63488, 61440))):
    struct.pack_into("<B3sB3sII", mbr, 446 + 16 * i, 0, b"\0\0\0", 0x83, b"\0\0\0", start, count)
mbr[510:512] = b"\x55\xaa"
with open(sys.argv[1], "r+b") as f:
    f.write(mbr)
' $META
# udev probes the disk after that write (its watch rule): a re-read while
# it still has the disk open fails with EBUSY. Settle, and retry a little.
for try in 1 2 3 4 5; do
	udevadm settle
	blockdev --rereadpt $META 2> $WORK/rereadpt && break
	[ $try = 5 ] && fail "blockdev --rereadpt $META: $(cat $WORK/rereadpt)"
	sleep 1
done
udevadm settle
disk=/dev/$(basename "$(readlink -f $META)")
[ -b ${disk}1 ] && [ -b ${disk}2 ] || fail "no partitions ${disk}1, ${disk}2"
expect_rc 0 $F create t041p ${disk}1
expect_err 4 "snapshot t041p: cannot create the view t041p-snap0: .*\(kernel: fleece: Scratch device must not be on the origin's disk" \
	$F snapshot t041p --scratch ${disk}2
! dmsetup info t041p-snap0 >/dev/null 2>&1 || fail "a refused view was left behind"
[ "$(dm_state t041p)" = ACTIVE ] || fail "t041p left $(dm_state t041p)"
expect_rc 0 $F remove t041p
wipefs -q -a $META
blockdev --rereadpt $META 2>/dev/null || true
udevadm settle

# The snapshot still works after all that, and the origin's files are the
# current ones.
expect_rc 0 $F snapshot t041 --scratch $SCRATCH
expect_rc 0 $F release t041-snap0
for i in 1 3 5; do
	[ "$(sha256sum < $mnt/a$i | cut -d' ' -f1)" = "$(pattern z041-$i $((i * 192 * kib)) | sha256sum | cut -d' ' -f1)" ] ||
		fail "origin file a$i is not the rewritten one"
done
umount $mnt
expect_rc 0 $F remove t041
