#!/bin/bash
# Every fault in a fleece (view) table is refused with its own error (the
# kernel logs it), no device is created and no session is left registered;
# afterwards the fleece-origin's table and the origin's data, read through
# it and on the device, are unchanged. The corrected tables are accepted and
# come back exactly. Up to 8 sessions per origin: a scratch device in use by
# another session is refused, the 9th session is refused and, once one view
# is removed, accepted.
. "$(dirname "$0")/lib.sh"

sz=$(dev_sectors $ORIGIN)
mib=$((1024 * 1024))
region=$((1 * mib))
ODM=t010o
odev=/dev/mapper/$ODM
otable="$ORIGIN - 8"

dmsetup create $ODM --table "0 $sz fleece-origin $otable"
dmsetup message $ODM 0 bitmap_add t010b
want=$(stamp $odev 0 $region t010)
sessions=0

# The fleece-origin device is as it was: table, sessions and data read
# through it (the origin device itself is checked after each group).
check_intact() {
	[ "$(dmsetup table $ODM)" = "0 $sz fleece-origin $otable" ] ||
		fail "$1: fleece-origin table changed to '$(dmsetup table $ODM)'"
	[ "$(origin_sessions $ODM)" = "$sessions" ] ||
		fail "$1: fleece-origin has $(origin_sessions $ODM) sessions, expected $sessions"
	[ "$(range_sha $odev 0 $region)" = "$want" ] || fail "$1: data read through fleece-origin changed"
}
check_origin() {
	[ "$(range_sha $ORIGIN 0 $region)" = "$want" ] || fail "$1: origin device data changed"
}

# bad ARGS ERROR: "0 LEN fleece ARGS" (LEN the origin's size unless ARGS
# starts with "len=N") is refused with ERROR and leaves no session. Called
# with the fleece-origin suspended, as a real session would be created.
bad() {
	local args=$1 err=$2 len=$sz
	case "$args" in len=*) len=${args%% *}; len=${len#len=}; args=${args#* } ;; esac
	expect_ctr_fail t010v "0 $len fleece $args" "$err"
	[ "$(origin_sessions $ODM)" = "$sessions" ] ||
		fail "'$args': fleece-origin has $(origin_sessions $ODM) sessions, expected $sessions"
}
trap 'dmsetup resume $ODM 2>/dev/null || true' EXIT

dmsetup suspend $ODM
# No fleece-origin exists on $META at all.
bad "len=$(dev_sectors $META) $META $SCRATCH" "No fleece-origin device on this origin"
bad "" "Not enough arguments"
bad "$ORIGIN" "Not enough arguments"
bad "/dev/nonexistent $SCRATCH" "Cannot open origin device"
# The fleece-origin dm device is not the origin: the device under it is.
bad "$odev $SCRATCH" "No fleece-origin device on this origin"
bad "$ORIGIN /dev/nonexistent" "Cannot open scratch device"
bad "$ORIGIN $ORIGIN" "Scratch device must not be the origin device"
majmin=$(printf '%d:%d' $(stat -L -c '0x%t 0x%T' $ORIGIN))
bad "$ORIGIN $majmin" "Scratch device must not be the origin device"
# A backup of part of the origin would commit the changes of all of it.
bad "len=$((sz - 8)) $ORIGIN $SCRATCH 2 bitmap t010b" "View with bitmap is shorter than the fleece-origin device"
bad "len=$((sz - 8)) $ORIGIN $SCRATCH 3 bitmap t010b full" "View with bitmap is shorter than the fleece-origin device"
# A scratch device of 4 sectors with 8-sector chunks.
dmsetup create t010tiny --table "0 4 linear $SCRATCH 0"
bad "$ORIGIN /dev/mapper/t010tiny" "Scratch device is smaller than one chunk"
dmsetup remove t010tiny
bad "$ORIGIN $SCRATCH 1" "Invalid number of optional arguments"
bad "$ORIGIN $SCRATCH x" "Invalid number of optional arguments"
bad "$ORIGIN $SCRATCH 99 writable" "Invalid number of optional arguments"
bad "$ORIGIN $SCRATCH 1 bogus" "Unknown optional argument"
bad "$ORIGIN $SCRATCH 2 on_full explode" "Invalid on_full policy"
bad "$ORIGIN $SCRATCH 1 on_full" "Invalid on_full policy"
bad "$ORIGIN $SCRATCH 2 low_water abc" "Invalid low_water"
bad "$ORIGIN $SCRATCH 2 low_water -1" "Invalid low_water"
bad "$ORIGIN $SCRATCH 2 low_water 1x" "Invalid low_water"
bad "$ORIGIN $SCRATCH 1 low_water" "Invalid low_water"
bad "$ORIGIN $SCRATCH 1 writable extra" "Too many arguments"
bad "len=$((sz + 8)) $ORIGIN $SCRATCH" "View is larger than the origin device"
# dm-fleece devices as scratch: the copies would go through them again.
bad "$ORIGIN $odev" "Scratch device is a fleece-origin device"
# A scratch device beyond what the scratch map can hold (2^37 chunks; the
# map uses 2^28 at most, about 3.3 GiB): refused before any allocation,
# since the map would take over a quarter of this VM's memory (before:
# an allocation warning for the 16 GiB slot bitmap).
dmsetup create t010huge --table "0 $((1 << 40)) zero"
bad "$ORIGIN /dev/mapper/t010huge" "Scratch map would take over a quarter of the memory"
dmsetup remove t010huge
dmsetup resume $ODM
# A valid table while the fleece-origin is live (not suspended).
bad "$ORIGIN $SCRATCH" "Suspend the fleece-origin device before creating a view"
check_intact "after the refused tables"
check_origin "after the refused tables"

# Positive control: the same tables, corrected, are accepted and come back
# exactly; each registers a session that its removal ends.
good() {
	view_create t010v $ODM "0 $sz fleece $1" || fail "valid table '$1' was refused"
	sessions=1
	[ "$(dmsetup table t010v)" = "0 $sz fleece $1" ] || fail "table '$1' came back as '$(dmsetup table t010v)'"
	check_intact "valid '$1'"
	dmsetup remove t010v
	sessions=0
	check_intact "after removing '$1'"
	check_origin "after removing '$1'"
}
good "$ORIGIN $SCRATCH"
good "$ORIGIN $SCRATCH 3 on_full fail_writes writable"
good "$ORIGIN $SCRATCH 4 low_water 16 on_full invalidate"
info "valid tables accepted and returned exactly"

# A larger scratch device: 16 GiB of dm-zero with 8-sector chunks is 2^22
# slots, a map of about 52 MiB; every slot counts in the total.
dmsetup create t010big --table "0 $((1 << 25)) zero"
view_create t010v $ODM "0 $sz fleece $ORIGIN /dev/mapper/t010big" || fail "a 16 GiB scratch device was refused"
[ "$(view_stat t010v total)" = $((1 << 22)) ] || fail "16 GiB scratch: $(view_stat t010v total) slots, expected 4194304"
dmsetup remove t010v t010big
info "16 GiB scratch: 4194304 slots"

# 8 sessions, each on its own 32 MiB slice of $SCRATCH; the 9th is refused.
slice=$((32 * mib / 512))
for i in $(seq 0 8); do
	dmsetup create t010s$i --table "0 $slice linear $SCRATCH $((i * slice))"
done
for i in $(seq 0 7); do
	view_create t010v$i $ODM "0 $sz fleece $ORIGIN /dev/mapper/t010s$i" ||
		fail "session $((i + 1)) of 8 refused"
	sessions=$((i + 1))
done
check_intact "8 sessions"
dmsetup suspend $ODM
# A scratch device another session uses is refused; so is another view
# as scratch, and a 9th session.
bad "$ORIGIN /dev/mapper/t010s0" "Scratch device is in use by another session"
bad "$ORIGIN /dev/mapper/t010v0" "Scratch device is a fleece view"
bad "$ORIGIN /dev/mapper/t010s8" "Too many sessions on this origin"
dmsetup resume $ODM
# A session slot is free again once a view is gone.
dmsetup remove t010v3
sessions=7
view_create t010v8 $ODM "0 $sz fleece $ORIGIN /dev/mapper/t010s8" ||
	fail "a 9th view was refused after one of 8 was removed"
sessions=8
check_intact "8 sessions again"
# Every view still reads the origin's (unchanged) data.
for i in 0 1 2 4 5 6 7 8; do
	[ "$(range_sha /dev/mapper/t010v$i 0 $region)" = "$want" ] || fail "view t010v$i does not read the origin's data"
done
for i in 0 1 2 4 5 6 7 8; do
	dmsetup remove t010v$i
done
sessions=0
check_intact "all views removed"
check_origin "all views removed"
for i in $(seq 0 8); do
	dmsetup remove t010s$i
done
info "8 sessions accepted, the 9th refused, accepted after a removal"

# The fleece-origin still works as a plain remap with no session.
want=$(stamp $odev 0 $region t010b)
check_intact "write after all sessions ended"
check_origin "write after all sessions ended"
dmsetup remove $ODM
