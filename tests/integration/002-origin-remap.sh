#!/bin/bash
# fleece-origin without a session is a pass-through: every byte written
# through it lands at the same offset of the origin, and reads match.
. "$(dirname "$0")/lib.sh"

sz=$(dev_sectors $ORIGIN)
dmsetup create t002 --table "0 $sz fleece-origin $ORIGIN - 128"
dev=/dev/mapper/t002
[ "$(dev_sectors $dev)" = "$sz" ] || fail "size $(dev_sectors $dev) != $sz"

# Patterns at the start, in the middle at an odd 4 KiB offset, at the end.
mib=$((1024 * 1024))
for spec in "0 $((8 * mib)) a" "$((300 * mib + 4096)) $((3 * mib)) b" "$((sz * 512 - 2 * mib)) $((2 * mib)) c"; do
	set -- $spec
	want=$(stamp $dev "$1" "$2" "$3")
	got_dm=$(dev_sha $dev "$1" "$2")
	got_raw=$(dev_sha $ORIGIN "$1" "$2")
	[ "$want" = "$got_dm" ] || fail "read through fleece-origin at $1 differs"
	[ "$want" = "$got_raw" ] || fail "origin device at $1 differs from what was written"
done
info "3 patterns written through fleece-origin read back identically (dm and raw)"

# Buffered writes and fsync (flush) reach the origin.
pattern flushme $((4 * mib)) > $WORK/f
want=$(sha256sum < $WORK/f | cut -d' ' -f1)
dd if=$WORK/f of=$dev bs=64K seek=$((100 * mib / 65536)) conv=fsync status=none
[ "$(dev_sha $ORIGIN $((100 * mib)) $((4 * mib)))" = "$want" ] || fail "buffered write + fsync did not reach the origin"

# Discard passes through: the virtual disk returns zeroes after it.
blkdiscard -o 0 -l $((8 * mib)) $dev
zero=$(head -c $((8 * mib)) /dev/zero | sha256sum | cut -d' ' -f1)
[ "$(dev_sha $ORIGIN 0 $((8 * mib)))" = "$zero" ] || fail "discard did not reach the origin"
info "flush and discard pass through"

# A target that does not start at sector 0 of the table maps its own
# sector 0 to origin sector 0.
dmsetup remove t002
half=$((sz / 2))
printf '0 %s linear %s 0\n%s %s fleece-origin %s - 8\n' $half $SCRATCH $half $half $ORIGIN | dmsetup create t002b
want=$(stamp /dev/mapper/t002b $((half * 512)) $mib d)
[ "$(dev_sha $ORIGIN 0 $mib)" = "$want" ] || fail "offset target does not map to origin sector 0"
dmsetup remove t002b
info "second-segment target maps to origin offset 0"
