#!/bin/bash
# fleecectl says nothing while an origin is suspended: its stderr may be a
# file on the very filesystem the suspend froze. With -v -v -v, libdevmapper
# logs every ioctl, the view's resume among them, inside the window; a write
# to the frozen filesystem then blocks, and the origin stays suspended
# behind it. The lines must come out after the resume, all of them, and the
# view must hold the files of its point in time.
. "$(dirname "$0")/lib.sh"
F=$FLEECECTL
mnt=$WORK/mnt
vmnt=$WORK/view
mkdir -p $mnt $vmnt

cleanup() {
	umount $vmnt $mnt 2>/dev/null || true
	dmsetup remove t075-v 2>/dev/null || true
	true
}
trap cleanup EXIT

expect_rc 0 $F create t075 $ORIGIN
mkfs.ext4 -q -F /dev/mapper/t075
mount /dev/mapper/t075 $mnt
pattern a075 $((512 * 1024)) > $mnt/a
sync
sha_a=$(sha256sum < $mnt/a)

$F -v -v -v snapshot t075 --scratch $SCRATCH --view t075-v > $WORK/out 2> $mnt/stderr.log &
pid=$!
# A hang detector, not a timing: 600 looks at the process, 0.2 s apart.
for _ in $(seq 600); do
	kill -0 $pid 2>/dev/null || break
	sleep 0.2
done
if kill -0 $pid 2>/dev/null; then
	state=$(dm_state t075)
	dmsetup resume t075	# thaw, so that the blocked write ends
	wait $pid
	fail "fleecectl blocked on its stderr in the frozen filesystem (origin $state)"
fi
wait $pid || fail "snapshot failed ($?): $(tail -n 3 $mnt/stderr.log)"
[ "$(cat $WORK/out)" = /dev/mapper/t075-v ] || fail "snapshot printed '$(cat $WORK/out)'"
[ "$(dm_state t075)" = ACTIVE ] || fail "origin left $(dm_state t075)"
# The lines of the window are there: the view's resume (libdevmapper's
# debug line names it) came while the origin was suspended.
grep -q "libdevmapper: .*resume.*t075-v\|libdevmapper: .*t075-v.*resume" $mnt/stderr.log ||
	grep -q "libdevmapper: .*t075-v" $mnt/stderr.log ||
	fail "no libdevmapper line about the view in stderr: the test proved nothing ($(wc -l < $mnt/stderr.log) lines)"

# The point in time: a written after the snapshot, the view still has the old.
pattern b075 $((512 * 1024)) > $mnt/a
sync
mount -o ro,noload /dev/mapper/t075-v $vmnt
[ "$(sha256sum < $vmnt/a)" = "$sha_a" ] || fail "the view's file is not the point in time"
[ "$(sha256sum < $mnt/a)" != "$sha_a" ] || fail "the origin's file did not change"
umount $vmnt
expect_rc 0 $F release t075-v
umount $mnt
expect_rc 0 $F remove t075
info "-v -v -v snapshot with stderr on the frozen filesystem: no hang, log complete, view byte-exact"
