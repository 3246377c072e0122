#!/bin/bash
# fleecectl create, status (table and JSON) and remove, and their refusals:
# every refusal exits non-zero with its class (fleecectl(8), EXIT STATUS:
# 2 usage, 3 no such device, 4 busy, else 1), names the device and the
# reason, and creates nothing.
. "$(dirname "$0")/lib.sh"
F=$FLEECECTL
sz=$(dev_sectors $ORIGIN)
mib=$((1024 * 1024))

no_device() { ! dmsetup info "$1" >/dev/null 2>&1 || fail "device $1 exists"; }

# Command line basics.
expect_rc 0 $F --help
grep -q '^usage: fleecectl' $WORK/stdout || fail "--help prints no usage"
expect_rc 0 $F --version
grep -qE '^fleecectl [0-9]+\.[0-9]+' $WORK/stdout || fail "--version: $(cat $WORK/stdout)"
expect_rc 0 $F create --help
expect_err 2 'no command' $F
expect_err 2 "unknown command 'frobnicate'" $F frobnicate
expect_err 2 'needs NAME and ORIGIN_DEV' $F create t040
expect_err 2 'unrecognized option' $F create --bogus t040 $ORIGIN

# Nothing there yet.
expect_rc 0 $F status
grep -q 'no fleece-origin devices' $WORK/stdout || fail "empty status: $(cat $WORK/stdout)"
expect_rc 0 $F status --json
python3 -m json.tool $WORK/stdout >/dev/null || fail "status --json is not JSON"
json_assert $WORK/stdout 'd["origins"] == [] and d["orphan_views"] == []'

# create: a fleece-origin on the whole device, 64 KiB chunks by default.
expect_rc 0 $F create t040 $ORIGIN
[ "$(cat $WORK/stdout)" = /dev/mapper/t040 ] || fail "create printed '$(cat $WORK/stdout)'"
[ -b /dev/mapper/t040 ] || fail "/dev/mapper/t040 did not appear"
want="0 $sz fleece-origin $(majmin $ORIGIN) - 128"
[ "$(dmsetup table t040)" = "$want" ] || fail "table '$(dmsetup table t040)', expected '$want'"
info "create: $want"

# Bytes written through it land on the origin at the same offsets.
sum=$(stamp /dev/mapper/t040 $((5 * mib + 4096)) $((2 * mib)) c040)
[ "$(dev_sha $ORIGIN $((5 * mib + 4096)) $((2 * mib)))" = "$sum" ] || fail "write through t040 not on the origin"
[ "$(dev_sha /dev/mapper/t040 $((5 * mib + 4096)) $((2 * mib)))" = "$sum" ] || fail "read back through t040 differs"
info "2 MiB written through /dev/mapper/t040 read back identically from the origin"

# --chunk-size and --meta.
expect_rc 0 $F create t040m $SCRATCH --chunk-size 1M --meta $META
# With metadata, the table binds it to the device by its stable name.
want="0 $(dev_sectors $SCRATCH) fleece-origin $(majmin $SCRATCH) $(majmin $META) 2048 2 origin_id virtio-scratch"
[ "$(dmsetup table t040m)" = "$want" ] || fail "table '$(dmsetup table t040m)', expected '$want'"
[ "$(dmsetup status t040m | awk '{print $4}')" = persistent ] || fail "--meta: not persistent"

# status: table for people, JSON for programs.
expect_rc 0 $F status
grep -qE '^t040 +1G +64K +/dev/vd[a-z] +volatile +0 +ok$' $WORK/stdout || { cat $WORK/stdout; fail "status line of t040"; }
grep -qE '^t040m +512M +1M +.* +persistent +0 +ok$' $WORK/stdout || { cat $WORK/stdout; fail "status line of t040m"; }
expect_rc 0 $F status --json
python3 -m json.tool $WORK/stdout >/dev/null || fail "status --json is not JSON"
json_assert $WORK/stdout "sorted(o['name'] for o in d['origins']) == ['t040', 't040m']"
json_assert $WORK/stdout "[o for o in d['origins'] if o['name'] == 't040'][0] == {**[o for o in d['origins'] if o['name'] == 't040'][0], 'chunk_bytes': 65536, 'chunk_sectors': 128, 'size_bytes': $((sz * 512)), 'origin_dev': '$(majmin $ORIGIN)', 'metadata': 'volatile', 'attached': False, 'sessions': 0, 'views': []}"
expect_rc 0 $F status t040m --json
json_assert $WORK/stdout "[o['name'] for o in d['origins']] == ['t040m'] and d['origins'][0]['metadata_dev'] == '$(majmin $META)'"
info "status and status --json list both origins"
expect_rc 0 $F remove t040m
no_device t040m

# Refusals of create: bad chunk sizes are usage errors.
for cs in 3K 24K abc 2G 512 0 1.5M ""; do
	expect_err 2 "invalid --chunk-size '$cs'" $F create t040x $META --chunk-size "$cs"
	no_device t040x
done
expect_err 3 "create t040x: origin device /dev/nonexistent: No such file or directory" \
	$F create t040x /dev/nonexistent
expect_err 3 'create t040x: origin device /etc/hostname: not a block device' \
	$F create t040x /etc/hostname
expect_err 4 'create t040: a device-mapper device of that name exists' $F create t040 $META
expect_err 4 "create t040x: origin device $ORIGIN is in use by device-mapper device t040" \
	$F create t040x $ORIGIN
expect_err 1 'metadata device .* must not be the origin device' $F create t040x $META --meta $META
expect_err 3 'metadata device /dev/nonexistent: No such file' $F create t040x $META --meta /dev/nonexistent
expect_err 2 'not a valid device-mapper name' $F create a/b $META
no_device t040x

# Refusals of remove.
expect_err 3 'remove nosuch: no such device-mapper device' $F remove nosuch
dmsetup create t040lin --table "0 2048 linear $META 0"
expect_err 3 'remove t040lin: not a fleece-origin device \(its table is linear\)' $F remove t040lin
dmsetup info t040lin >/dev/null || fail "t040lin was removed"
dmsetup remove t040lin
expect_err 3 "remove $META: not a device-mapper device" $F remove $META

# A device with a view cannot be removed.
expect_rc 0 $F snapshot t040 --scratch $SCRATCH
[ "$(cat $WORK/stdout)" = /dev/mapper/t040-snap0 ] || fail "snapshot printed '$(cat $WORK/stdout)'"
expect_err 4 'remove t040: 1 session still uses it \(views: t040-snap0\); release it first' $F remove t040
[ "$(dm_state t040)" = ACTIVE ] || fail "t040 is $(dm_state t040) after a refused remove"
expect_rc 0 $F status --json
json_assert $WORK/stdout "d['origins'][0]['sessions'] == 1 and [v['name'] for v in d['origins'][0]['views']] == ['t040-snap0']"
json_assert $WORK/stdout "d['origins'][0]['views'][0]['state'] == 'Active' and d['origins'][0]['views'][0]['scratch_total'] == $(($(dev_sectors $SCRATCH) / 128)) and d['origins'][0]['views'][0]['scratch_dev'] == '$(majmin $SCRATCH)'"
expect_rc 0 $F status t040-snap0
grep -qE '^t040-snap0 +t040 +Active +/dev/vd[a-z] +0\.0% \(0/[0-9]+\) +0 +0 +0 +-$' $WORK/stdout || { cat $WORK/stdout; fail "status of the view"; }
expect_rc 0 $F release t040-snap0
no_device t040-snap0
[ "$(origin_sessions t040)" = 0 ] || fail "sessions $(origin_sessions t040) after release"
# A long view name (device-mapper takes up to 127 characters) is shown
# whole, its scratch device too.
long=t040-$(printf 'v%.0s' $(seq 100))
expect_rc 0 $F snapshot t040 --scratch $SCRATCH --view $long
expect_rc 0 $F status $long
grep -qE "^$long +t040 +Active +/dev/vd[a-z] " $WORK/stdout || { cat $WORK/stdout; fail "status of a view with a 105-character name"; }
expect_rc 0 $F release $long

# Open (e.g. mounted) devices are not removed.
sleep 30 3</dev/mapper/t040 &
holder=$!
until [ "$(dmsetup info -c --noheadings -o open t040)" -ge 1 ]; do sleep 0.1; done
expect_err 4 'remove t040: in use \(open 1 time' $F remove t040
kill $holder
wait $holder 2>/dev/null || true
# An open that ends within a second (as udev's probe after a write) is
# waited out, not refused.
sleep 1 3</dev/mapper/t040 &
holder=$!
until [ "$(dmsetup info -c --noheadings -o open t040)" -ge 1 ]; do sleep 0.1; done
expect_rc 0 $F remove t040
wait $holder
no_device t040
[ "$(dev_sha $ORIGIN $((5 * mib + 4096)) $((2 * mib)))" = "$sum" ] || fail "origin data changed by create/remove"
info "remove: device gone, origin data unchanged"
