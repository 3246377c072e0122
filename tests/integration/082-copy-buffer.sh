#!/bin/bash
# A slow scratch does not slow the origin while the copy buffer has room
# (issue 16, item 5), and a view never returns data newer than its point in
# time while a copy is in the buffer.
#
# The scratch device's IO is held (its dm-linear suspended with --noflush):
# - an origin write to a chunk the view needs completes anyway (its old data
#   was read into the buffer), and the origin holds the new data;
# - a view read of that chunk waits (it does not read the origin, which has
#   the new data, nor scratch, which does not have the old yet) and returns
#   the old data once scratch IO goes on;
# - with a buffer of 4 pages (copy_buffer_kb=16, 4 KiB chunks), four first
#   writes complete, the fifth waits in line for buffer pages, which come
#   back when scratch IO goes on, and then completes;
# - afterwards both views read as their point in time (sha256 of the image)
#   and the origin as written;
# - a writer with far more first writes in flight than the copy engine
#   takes per run of its work items (64) completes, every write landed
#   (fio verifies them) and the view is its point in time: the work must
#   run again for what came in meanwhile (a lost wakeup here hangs writes);
# - with a scratch whose request queue is full (request-based dm-multipath,
#   4 requests, its one path failed with queue_if_no_path: every scratch
#   write keeps its request), 32 first writes whose copies fit in the buffer
#   all complete, and none of the copies has landed meanwhile; once the path
#   is back, the copies land and the view is its point in time. Submitting
#   to such a scratch sleeps; the origin writes must not wait for it (they
#   did: the fifth write hung, and a slow scratch's full queue paced a burst
#   the buffer could hold).
. "$(dirname "$0")/lib.sh"

CH=8				# 4 KiB chunks
CB=4096
SZ=$((8 * 2048))		# 8 MiB
PARAM=/sys/module/dm_fleece/parameters/copy_buffer_kb
DEPTH=/sys/module/dm_mod/parameters/dm_mq_queue_depth

cleanup() {
	dmsetup resume t082sa 2>/dev/null || true
	dmsetup resume t082sb 2>/dev/null || true
	if [ -n "${scr_dev:-}" ]; then
		dmsetup message t082m 0 reinstate_path "$scr_dev" 2>/dev/null || true
	fi
	for d in t082va t082vb t082vc t082vd t082a t082b t082c t082d t082m t082sa t082sb \
		t082oa t082ob; do
		dmsetup remove $d 2>/dev/null || true
	done
	[ -n "${saved:-}" ] && echo "$saved" > $PARAM
	[ -n "${saved_depth:-}" ] && echo "$saved_depth" > $DEPTH
	true
	true
}
trap cleanup EXIT

load_module
saved=$(cat $PARAM)
[ "$saved" -gt 0 ] || fail "copy_buffer_kb is $saved by default"
dmsetup create t082oa --table "0 $SZ linear $ORIGIN 0"
dmsetup create t082ob --table "0 $SZ linear $ORIGIN $SZ"
dmsetup create t082sa --table "0 $SZ linear $SCRATCH 0"
dmsetup create t082sb --table "0 $SZ linear $SCRATCH $SZ"
pattern base $((SZ * 512)) > "$WORK/base"
base_sha=$(sha256sum < "$WORK/base" | cut -d' ' -f1)

# chunk_write DEV N SEED [&]: stamp chunk N; $WORK/<seed> keeps the data.
chunk_write() {
	pattern "$3" $CB > "$WORK/$3"
	dd if="$WORK/$3" of="$1" bs=$CB seek="$2" oflag=direct status=none
}
chunk_is() { dev_cmp "$1" $(($2 * CB)) $CB "$3" 0 || fail "$1 chunk $2 is not $3"; }

# --- 1. The default buffer: the write goes on, the view read waits -----------
dmsetup create t082a --table "0 $SZ fleece-origin /dev/mapper/t082oa - $CH"
dd if="$WORK/base" of=/dev/mapper/t082a bs=1M oflag=direct status=none
view_create t082va t082a "0 $SZ fleece /dev/mapper/t082oa /dev/mapper/t082sa"
dmsetup suspend --noflush t082sa
chunk_write /dev/mapper/t082a 5 w5 &
wpid=$!
wait $wpid || fail "the origin write failed while scratch IO was held"
chunk_is /dev/mapper/t082a 5 "$WORK/w5"
info "an origin write completed while scratch IO was held"
dd if="$WORK/base" of="$WORK/old5" bs=$CB skip=5 count=1 status=none
dd if=/dev/mapper/t082va of="$WORK/got5" bs=$CB skip=5 count=1 iflag=direct status=none &
rpid=$!
sleep 2
kill -0 $rpid 2>/dev/null || {
	cmp -s "$WORK/got5" "$WORK/w5" && fail "the view returned data written after its point in time"
	fail "the view read of a chunk on its way to scratch returned before scratch IO went on"
}
dmsetup resume t082sa
wait $rpid || fail "the view read failed"
cmp -s "$WORK/got5" "$WORK/old5" || fail "the view read of chunk 5 is not its point-in-time data"
[ "$(dev_sha /dev/mapper/t082va)" = "$base_sha" ] || fail "view A is not its point in time"
[ "$(view_stat t082va copied)" = 1 ] || fail "view A copied $(view_stat t082va copied) chunks, expected 1"
info "the view read waited for the copy and returned the old data"
dmsetup remove t082va
dmsetup remove t082a

# --- 2. A buffer of four chunks: the fifth first write waits -------------------
echo 16 > $PARAM
dmsetup create t082b --table "0 $SZ fleece-origin /dev/mapper/t082ob - $CH"
echo "$saved" > $PARAM
dd if="$WORK/base" of=/dev/mapper/t082b bs=1M oflag=direct status=none
view_create t082vb t082b "0 $SZ fleece /dev/mapper/t082ob /dev/mapper/t082sb"
dmsetup suspend --noflush t082sb
for c in 10 20 30 40; do
	chunk_write /dev/mapper/t082b $c b$c || fail "write $c failed"
done
info "four first writes completed with scratch IO held (a 16 KiB buffer)"
chunk_write /dev/mapper/t082b 50 b50 &
wpid=$!
sleep 2
kill -0 $wpid 2>/dev/null || fail "the fifth first write completed with the buffer full and scratch IO held"
dmsetup resume t082sb
wait $wpid || fail "the fifth write failed"
for c in 10 20 30 40 50; do
	chunk_is /dev/mapper/t082b $c "$WORK/b$c"
done
[ "$(dev_sha /dev/mapper/t082vb)" = "$base_sha" ] || fail "view B is not its point in time"
[ "$(view_stat t082vb copied)" = 5 ] || fail "view B copied $(view_stat t082vb copied) chunks, expected 5"
info "the fifth waited for buffer pages until scratch IO went on; view B is its point in time"
dmsetup remove t082vb
dmsetup remove t082b

# --- 3. More first writes in flight than one run of the work takes ------------
dmsetup create t082c --table "0 $SZ fleece-origin /dev/mapper/t082oa - $CH"
pit_sha=$(dev_sha /dev/mapper/t082c)
view_create t082vc t082c "0 $SZ fleece /dev/mapper/t082oa /dev/mapper/t082sa"
# 2048 chunks, each written once, 256 at a time; fio reads them back.
fio --name=deep --filename=/dev/mapper/t082c --ioengine=libaio --direct=1 \
	--rw=randwrite --bs=$CB --iodepth=256 --iodepth_batch_submit=256 \
	--size=$((SZ * 512)) --verify=crc32c --do_verify=1 \
	--output="$WORK/fio-deep.out" || { cat "$WORK/fio-deep.out" >&2; fail "fio at qd 256 failed"; }
[ "$(dev_sha /dev/mapper/t082vc)" = "$pit_sha" ] || fail "view C is not its point in time"
copied=$(view_stat t082vc copied)
[ "$copied" = 2048 ] || fail "view C copied $copied chunks, expected 2048"
info "2048 first writes at qd 256 completed and verified; view C is its point in time"
dmsetup remove t082vc
dmsetup remove t082c

# --- 4. A scratch whose request queue is full ---------------------------------
modprobe dm-multipath && modprobe dm-round-robin || fail "cannot load dm-multipath"
saved_depth=$(cat $DEPTH)
echo 4 > $DEPTH
scr_dev=$(readlink -f "$SCRATCH")
# A request-based device: its queue (4 requests, no scheduler) is what fills.
dmsetup create t082m --table \
	"0 $SZ multipath 1 queue_if_no_path 0 1 1 round-robin 0 1 1 $scr_dev 1000"
echo "$saved_depth" > $DEPTH
echo none > "/sys/block/$(basename "$(readlink -f /dev/mapper/t082m)")/queue/scheduler"
dmsetup create t082d --table "0 $SZ fleece-origin /dev/mapper/t082ob - 128"
dd if="$WORK/base" of=/dev/mapper/t082d bs=1M oflag=direct status=none
view_create t082vd t082d "0 $SZ fleece /dev/mapper/t082ob /dev/mapper/t082m"
dmsetup message t082m 0 fail_path "$scr_dev"
# 32 chunks of 64 KiB (2 MiB: the default buffer holds them), one at a time:
# each waits for its copy's read only. The timeout only turns a hang into a
# failure.
for c in $(seq 0 31); do
	pattern "d$c" $CB > "$WORK/d$c"
	timeout 120 dd if="$WORK/d$c" of=/dev/mapper/t082d bs=$CB seek=$((c * 16 * 3)) \
		oflag=direct status=none ||
		fail "first write $c did not complete with scratch's queue full (copied $(view_stat t082vd copied))"
done
copied=$(view_stat t082vd copied)
[ "$copied" = 0 ] || fail "$copied copies landed with scratch's path failed: the queue was not held"
inflight=$(view_stat t082vd inflight)
[ "$inflight" -gt 4 ] || fail "only $inflight copies in flight: scratch's queue never filled"
info "32 first writes completed with scratch's queue full ($inflight copies in flight, none landed)"
dmsetup message t082m 0 reinstate_path "$scr_dev"
for _ in $(seq 600); do
	[ "$(view_stat t082vd inflight)" = 0 ] && break
	sleep 0.1
done
[ "$(view_stat t082vd copied)" = 32 ] || fail "view D copied $(view_stat t082vd copied) chunks, expected 32"
[ "$(dev_sha /dev/mapper/t082vd)" = "$base_sha" ] || fail "view D is not its point in time"
for c in $(seq 0 31); do
	dev_cmp /dev/mapper/t082d $((c * 16 * 3 * CB)) $CB "$WORK/d$c" 0 || fail "origin chunk of write $c"
done
info "the copies landed once the path was back; view D is its point in time, the origin as written"
dmsetup remove t082vd
dmsetup remove t082d
dmsetup remove t082m
