#!/bin/bash
# low_water N raises a dm event on the view once its free scratch chunks
# (scratch_total - scratch_used) fall below N, and not before: the event
# counter stays put while free >= N and moves (dmsetup wait returns) on the
# copy that leaves N - 1 free. The event goes to that view only: a second
# session without low_water on the same origin sees no event. Both views
# stay Active and at their point in time.
. "$(dirname "$0")/lib.sh"

sz=$(dev_sectors $ORIGIN)
mib=$((1024 * 1024))
C=32768			# 64-sector chunks
N=16			# low_water
R=$((8 * mib))
pattern t015pre $R > $WORK/pre.img
pattern t015new $R > $WORK/new.img
dmsetup create t015o --table "0 $sz fleece-origin $ORIGIN - 64"
odev=/dev/mapper/t015o
dd if=$WORK/pre.img of=$odev bs=1M oflag=direct status=none
dmsetup create t015s --table "0 8192 linear $SCRATCH 0"		# 4 MiB
dmsetup create t015s2 --table "0 32768 linear $SCRATCH 8192"	# 16 MiB

table="0 $sz fleece $ORIGIN /dev/mapper/t015s 2 low_water $N"
view_create t015v t015o "$table" || fail "cannot create the view"
view_create t015n t015o "0 $sz fleece $ORIGIN /dev/mapper/t015s2" || fail "cannot create the second view"
[ "$(dmsetup table t015v)" = "$table" ] || fail "table came back as '$(dmsetup table t015v)'"
T=$(view_stat t015v total)
[ "$T" -gt $((N + 4)) ] || fail "scratch_total $T too small for low_water $N"
[ "$T" -le $((R / C)) ] || fail "scratch_total $T: the test region is too small"
[ "$(view_stat t015v used)" = 0 ] || fail "new view uses $(view_stat t015v used) chunks"
ev0=$(dm_events t015v)
evn=$(dm_events t015n)
nfree() { echo $(($(view_stat t015v total) - $(view_stat t015v used))); }
no_event_yet() {
	[ "$(dm_events t015v)" = "$ev0" ] || fail "low_water event with $(nfree) free chunks, low_water $N ($1)"
}

# Copy all but N + 2 chunks in one write, then one chunk at a time.
bulk=$((T - N - 2))
dd if=$WORK/new.img of=$odev bs=$C count=$bulk oflag=direct conv=notrunc status=none
[ "$(view_stat t015v used)" = $bulk ] || fail "scratch_used $(view_stat t015v used) after copying $bulk chunks"
no_event_yet "after $bulk chunks"
i=$bulk
while [ "$(nfree)" -ge $N ]; do
	# Give a late event every chance to show, at the mark itself.
	[ "$(nfree)" = $N ] && sleep 1
	no_event_yet "chunk $i"
	dd if=$WORK/new.img of=$odev bs=$C skip=$i seek=$i count=1 oflag=direct conv=notrunc status=none
	i=$((i + 1))
	[ $i -le $T ] || fail "free never fell below $N"
done
[ "$(nfree)" = $((N - 1)) ] || fail "$(nfree) free chunks after one more copy (expected $((N - 1)))"
timeout 10 dmsetup wait t015v $ev0 > /dev/null ||
	fail "no low_water event within 10 s of free falling to $((N - 1)) (events $ev0 -> $(dm_events t015v))"
info "low_water: no event at $N free, event at $((N - 1)) free (events $ev0 -> $(dm_events t015v))"

# The sessions go on; the other view saw no event; both are at their point in time.
dd if=$WORK/new.img of=$odev bs=$C skip=$i seek=$i count=2 oflag=direct conv=notrunc status=none ||
	fail "origin write failed below the low water mark"
[ "$(view_stat t015v state)" = Active ] || fail "view is $(view_stat t015v state) below the low water mark"
[ "$(dm_events t015n)" = "$evn" ] || fail "the view without low_water got an event ($evn -> $(dm_events t015n))"
dev_cmp /dev/mapper/t015v 0 $R $WORK/pre.img || fail "view differs from the point in time"
dev_cmp /dev/mapper/t015n 0 $R $WORK/pre.img || fail "second view differs from the point in time"
dmsetup remove t015v
dmsetup remove t015n
dmsetup remove t015o
dmsetup remove t015s
dmsetup remove t015s2
