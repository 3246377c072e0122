#!/bin/bash
# Lifecycle under load, fio writing to the fleece-origin all along (no IO
# error allowed):
# - sessions created and removed in a loop; each view, read twice while the
#   writes go on, gives the same bytes both times (it does not move);
# - the origin suspended and resumed, and reloaded with its own table;
# - a view suspended and resumed while it is read;
# - a view removed while a reader has just stopped and writes go on;
# - rmmod refused while devices exist.
. "$(dirname "$0")/lib.sh"
mib=$((1024 * 1024))
R=$((64 * mib))
sz=$((R / 512))
RUN=${FLEECE_LIFECYCLE_SECONDS:-30}

dmsetup create t063l --table "0 $sz linear $ORIGIN 0"
dmsetup create t063 --table "0 $sz fleece-origin /dev/mapper/t063l - 128"
O=/dev/mapper/t063
dd if=/dev/urandom of=$O bs=1M count=64 oflag=direct status=none
half=$(($(dev_sectors $SCRATCH) / 2))
dmsetup create t063s1 --table "0 $half linear $SCRATCH 0"
dmsetup create t063s2 --table "0 $half linear $SCRATCH $half"

fio --output=$WORK/fio.out --filename=$O --ioengine=libaio --direct=1 --size=$R \
	--time_based --runtime=3600 --norandommap --randrepeat=0 --group_reporting \
	--name=rand --rw=randwrite --bs=4k --iodepth=8 --rate_iops=300 \
	--name=seq --rw=write --bs=1M --iodepth=1 --rate=4m &
fio_pid=$!
trap 'kill $fio_pid 2>/dev/null; true' EXIT
sleep 2

# At least 4 sessions whatever the host's speed (every other one also
# suspends its view and reloads the origin), more while time is left.
t0=$SECONDS n=0 reloads=0
while [ $n -lt 4 ] || { [ $((SECONDS - t0)) -lt $RUN ] && [ $n -lt 40 ]; }; do
	s=/dev/mapper/t063s$((n % 2 + 1))
	view_create t063v t063 "0 $sz fleece /dev/mapper/t063l $s" || fail "session $n: cannot create the view"
	a=$(dev_sha /dev/mapper/t063v 0 $((2 * mib)))
	if [ $((n % 2)) = 1 ]; then
		dmsetup suspend t063v
		dmsetup resume t063v
	fi
	b=$(dev_sha /dev/mapper/t063v 0 $((2 * mib)))
	[ "$a" = "$b" ] || fail "session $n: the view moved under the writes"
	[ "$(view_stat t063v state)" = Active ] || fail "session $n: view $(view_stat t063v state)"
	if [ $((n % 2)) = 1 ]; then
		# The same table loaded again and made live: the origin keeps its
		# sessions (its state is per device, not per table).
		dmsetup table t063 > $WORK/table
		dmsetup load t063 < $WORK/table
		dmsetup suspend t063
		dmsetup resume t063
		reloads=$((reloads + 1))
		[ "$(view_stat t063v state)" = Active ] || fail "session $n: view $(view_stat t063v state) after an origin reload"
		c=$(dev_sha /dev/mapper/t063v 0 $((2 * mib)))
		[ "$a" = "$c" ] || fail "session $n: the view moved across an origin reload"
	fi
	if rmmod dm_fleece 2>/dev/null; then
		fail "rmmod dm_fleece succeeded with devices in use"
	fi
	dmsetup remove t063v
	n=$((n + 1))
done
[ "$(origin_sessions t063)" = 0 ] || fail "$(origin_sessions t063) sessions left"
kill $fio_pid 2>/dev/null
wait $fio_pid 2>/dev/null || true
trap - EXIT
if grep -qE 'err= *[1-9]' $WORK/fio.out; then
	fail "fio saw IO errors: $(grep err= $WORK/fio.out)"
fi
info "$n sessions created and removed under fio ($reloads origin reloads), views stable, no IO error"

dmsetup remove t063 t063l t063s1 t063s2
