#!/bin/bash
# fleecectl attach/detach under a mounted ext4 on a dm-linear device while
# fio writes and verifies: no IO error, files intact, the device path never
# changes; a snapshot through the attached device works; detach restores the
# original table exactly.
. "$(dirname "$0")/lib.sh"
F=$FLEECECTL
mnt=$WORK/mnt
vmnt=$WORK/view
kib=1024
mkdir -p $mnt $vmnt

cleanup() {
	[ -n "${fiopid:-}" ] && kill $fiopid 2>/dev/null
	umount $vmnt $mnt 2>/dev/null || true
	true
}
trap cleanup EXIT

start_fio() {
	fio --name=bg042 --directory=$mnt --size=32M --rw=randwrite --bs=4k \
		--ioengine=psync --direct=1 --time_based --runtime="$1" \
		--verify=crc32c --verify_backlog=64 --verify_fatal=1 \
		--output=$WORK/fio.$2 > /dev/null 2>&1 &
	fiopid=$!
}
wait_fio() {
	local rc=0
	wait $fiopid || rc=$?
	fiopid=
	[ $rc = 0 ] || { cat $WORK/fio.$1 >&2; fail "fio ($1) exited $rc"; }
	grep -q 'err= 0' $WORK/fio.$1 || { cat $WORK/fio.$1 >&2; fail "fio ($1) reported errors"; }
}
check_files() {
	(cd $mnt && sha256sum -c --quiet $WORK/a.sha) || fail "files changed ($1)"
}

sz=$((768 * 1024 * 2))
dmsetup create t042 --table "0 $sz linear $ORIGIN 0"
orig=$(dmsetup table t042)
mkfs.ext4 -q -F /dev/mapper/t042
mount /dev/mapper/t042 $mnt
for i in 1 2 3 4 5 6; do
	pattern a042-$i $((i * 256 * kib)) > $mnt/a$i
done
sync
(cd $mnt && sha256sum a*) > $WORK/a.sha
mark=$(dmesg_mark)

# Refusals first: not device-mapper, no such device, not attached.
expect_err 3 "attach $META: not a device-mapper device" $F attach $META
expect_err 3 'attach nosuch: no such device-mapper device' $F attach nosuch
expect_err 3 'detach t042: not attached \(its table is linear\)' $F detach t042
expect_err 2 "invalid --chunk-size '5K'" $F attach t042 --chunk-size 5K
[ "$(dmsetup table t042)" = "$orig" ] || fail "a refusal changed the table"

# attach while fio writes and verifies on the mounted filesystem.
start_fio 25 attach
sleep 5
expect_rc 0 $F attach /dev/mapper/t042
real=$(majmin /dev/mapper/t042-fleece-real)
[ "$(dmsetup table t042)" = "0 $sz fleece-origin $real - 128" ] ||
	fail "t042 table after attach: $(dmsetup table t042)"
[ "$(dmsetup table t042-fleece-real)" = "$orig" ] ||
	fail "t042-fleece-real table '$(dmsetup table t042-fleece-real)', expected '$orig'"
[ "$(dm_state t042)" = ACTIVE ] || fail "t042 left $(dm_state t042)"
info "attached under the mounted fs while fio ran: fleece-origin on t042-fleece-real ($real)"

expect_err 4 'attach t042: already a fleece-origin device' $F attach t042
expect_err 1 'remove t042: attached over t042-fleece-real; use .fleecectl detach t042.' $F remove t042
expect_rc 0 $F status --json
json_assert $WORK/stdout "[(o['name'], o['attached'], o['real_device']) for o in d['origins']] == [('t042', True, 't042-fleece-real')]"

# A snapshot through the attached device, still under fio.
expect_rc 0 $F snapshot t042 --scratch $SCRATCH
view=$(cat $WORK/stdout)
want="0 $sz fleece $real $(majmin $SCRATCH)"
[ "$(dmsetup table t042-snap0)" = "$want" ] || fail "view table '$(dmsetup table t042-snap0)', expected '$want'"
for i in 2 4; do
	pattern z042-$i $((i * 256 * kib)) > $mnt/a$i
done
sync
mount -o ro,noload $view $vmnt
(cd $vmnt && sha256sum -c --quiet $WORK/a.sha) || fail "view files differ from the snapshot-time sha list"
umount $vmnt
e2fsck -fn $view >/dev/null 2>&1 || fail "e2fsck finds errors in the view"
info "snapshot through the attached device: files of the point in time, e2fsck clean"
expect_err 4 'detach t042: 1 session still uses it \(views: t042-snap0\)' $F detach t042
expect_rc 0 $F release t042-snap0

wait_fio attach
(cd $mnt && sha256sum a*) > $WORK/a.sha
info "fio verified its writes across attach and snapshot"

# detach while fio writes again.
start_fio 20 detach
sleep 5
expect_rc 0 $F detach t042
[ "$(dmsetup table t042)" = "$orig" ] || fail "table after detach '$(dmsetup table t042)', expected '$orig'"
! dmsetup info t042-fleece-real >/dev/null 2>&1 || fail "detach left t042-fleece-real"
[ "$(dm_state t042)" = ACTIVE ] || fail "t042 left $(dm_state t042)"
wait_fio detach
check_files "after detach"
info "detached while fio ran: original table back, files intact"

if new_dmesg "$mark" | grep -E 'I/O error|EXT4-fs (error|warning)|Buffer I/O'; then
	fail "the kernel logged IO errors"
fi
umount $mnt
e2fsck -fn /dev/mapper/t042 >/dev/null 2>&1 || fail "e2fsck finds errors after detach"
dmsetup remove t042
info "no IO errors logged; e2fsck clean"
