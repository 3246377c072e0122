#!/bin/bash
# fleecectl backup: the image of a view equals a full dd read of it, with and
# without release; images are sparse; with release every chunk ends released
# and scratch empty; --verify; --rate-limit paces the reads; a device as target while the origin is being
# overwritten; refusals.
. "$(dirname "$0")/lib.sh"
F=$FLEECECTL
mib=$((1024 * 1024))
size=$((64 * mib))
chunks=$((size / 65536))

cleanup() {
	[ -n "${writer:-}" ] && kill $writer 2>/dev/null
	true
}
trap cleanup EXIT

# A 64 MiB origin (part of the origin disk), zeroed, with data in three
# places; the rest stays zero so that images have holes.
dmsetup create t043o --table "0 $((size / 512)) linear $ORIGIN 0"
blkdiscard -f /dev/mapper/t043o 2>/dev/null
expect_rc 0 $F create t043 /dev/mapper/t043o
stamp /dev/mapper/t043 0 $((4 * mib)) p1 >/dev/null
stamp /dev/mapper/t043 $((24 * mib)) $((8 * mib)) p2 >/dev/null
stamp /dev/mapper/t043 $((size - 2 * mib)) $((2 * mib)) p3 >/dev/null

expect_rc 0 $F snapshot t043 --scratch $SCRATCH
v1=$(cat $WORK/stdout)
# Overwrites after the point in time: chunks are copied to scratch.
stamp /dev/mapper/t043 0 $((2 * mib)) q1 >/dev/null
stamp /dev/mapper/t043 $((26 * mib)) $((1 * mib)) q2 >/dev/null
stamp /dev/mapper/t043 $((50 * mib)) $((512 * 1024)) q3 >/dev/null
copied=$(view_stat t043-snap0 copied)
[ "$copied" -eq 56 ] || fail "copied $copied chunks, expected 56"
ref=$(dev_sha $v1)
[ "$(view_stat t043-snap0 released)" = 0 ] || fail "a dd read released chunks"
info "view $v1: sha256 of a dd read ${ref:0:16}..., $copied chunks in scratch"

# 1. --full --no-release: image == dd read, sparse, nothing released.
expect_rc 0 $F backup $v1 --to $WORK/img1 --full --no-release
cat $WORK/stdout
grep -q "^backup t043-snap0: $size bytes" $WORK/stdout || fail "summary: $(cat $WORK/stdout)"
[ "$(stat -c %s $WORK/img1)" = $size ] || fail "img1 is $(stat -c %s $WORK/img1) bytes"
[ "$(sha256sum < $WORK/img1 | cut -d' ' -f1)" = "$ref" ] || fail "img1 differs from the dd read of the view"
used=$(($(stat -c %b $WORK/img1) * $(stat -c %B $WORK/img1)))
[ $used -le $((16 * mib)) ] || fail "img1 is not sparse: $used bytes allocated for 14 MiB of data"
[ "$(view_stat t043-snap0 released)" = 0 ] || fail "--no-release released chunks"
[ "$(view_stat t043-snap0 used)" = "$copied" ] || fail "--no-release changed scratch use"
info "--no-release: image identical, $((used / mib)) MiB allocated, nothing released"

# 1b. --rate-limit 16M: 64 MiB take at least 4 s less the 0.25 s burst;
# the image is the same. Refused: a rate under 64K, not a rate.
t0=$(date +%s.%N)
expect_rc 0 $F backup $v1 --to $WORK/img1r --full --no-release --rate-limit 16M/s
el=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
grep -q 'limited:  reads paced at 16 MiB/s' $WORK/stdout || fail "summary: $(cat $WORK/stdout)"
awk -v e="$el" 'BEGIN { exit !(e >= 3.7) }' || fail "--rate-limit 16M read 64 MiB in $el s"
[ "$(sha256sum < $WORK/img1r | cut -d' ' -f1)" = "$ref" ] || fail "img1r differs from the dd read of the view"
rm -f $WORK/img1r
for r in 1K 0 16Q -5M; do
	expect_err 2 "invalid --rate-limit '$r'" $F backup $v1 --to $WORK/img1r --full --rate-limit $r
	[ ! -e $WORK/img1r ] || fail "--rate-limit $r created the image"
done
info "--rate-limit 16M: 64 MiB in $el s, image identical; 4 bad rates refused"

# 2. --verify with release: image == dd read; every chunk released, scratch empty.
expect_rc 0 $F backup t043-snap0 --to $WORK/img2 --verify --batch 16M
cat $WORK/stdout
grep -q 'verified: 4 batches read back, equal to the view' $WORK/stdout || fail "summary: $(cat $WORK/stdout)"
grep -q "released: $chunks chunks of $chunks in the view; scratch in use: 0 of" $WORK/stdout ||
	fail "summary: $(cat $WORK/stdout)"
[ "$(sha256sum < $WORK/img2 | cut -d' ' -f1)" = "$ref" ] || fail "img2 differs from the dd read of the view"
[ "$(view_stat t043-snap0 released)" = $chunks ] || fail "released $(view_stat t043-snap0 released), expected $chunks"
[ "$(view_stat t043-snap0 used)" = 0 ] || fail "scratch still holds $(view_stat t043-snap0 used) chunks"
[ "$(view_stat t043-snap0 preserved)" = 0 ] || fail "$(view_stat t043-snap0 preserved) chunks still preserved"
[ "$(view_stat t043-snap0 skipped)" = $((chunks - copied)) ] || fail "skipped $(view_stat t043-snap0 skipped)"
zero=$(head -c $((16 * mib)) /dev/zero | sha256sum | cut -d' ' -f1)
[ "$(dev_sha $v1 0 $((16 * mib)))" = "$zero" ] || fail "released view does not read as zeroes"
info "release: image identical, $chunks chunks released, scratch empty, the view reads zeroes"

# A released view is not backed up again (it would give zeroes).
expect_err 5 "backup t043-snap0: $chunks chunks were released already" $F backup t043-snap0 --to $WORK/img3
[ ! -e $WORK/img3 ] || fail "a refused backup created its image"
expect_rc 0 $F release t043-snap0
rm -f $WORK/img1 $WORK/img2

# 3. To a device, --verify, while the origin is overwritten.
dmsetup create t043t --table "0 $((size / 512)) linear $ORIGIN $((size / 512))"
expect_rc 0 $F snapshot t043 --scratch $SCRATCH
v2=$(cat $WORK/stdout)
ref2=$(dev_sha $v2)
(
	i=0
	while [ ! -e $WORK/stop ]; do
		dd if=/dev/urandom of=/dev/mapper/t043 bs=1M seek=$(((i * 37) % 64)) count=1 \
			oflag=direct status=none
		i=$((i + 1))
	done
) &
writer=$!
expect_rc 0 $F backup $v2 --to /dev/mapper/t043t --verify
touch $WORK/stop
wait $writer
writer=
cat $WORK/stdout
[ "$(dev_sha /dev/mapper/t043t)" = "$ref2" ] || fail "device image differs from the view's point in time"
[ "$(view_stat t043-snap0 released)" = $chunks ] || fail "released $(view_stat t043-snap0 released), expected $chunks"
[ "$(view_stat t043-snap0 used)" = 0 ] || fail "scratch still holds $(view_stat t043-snap0 used) chunks"
[ "$(view_stat t043-snap0 state)" = Active ] || fail "session $(view_stat t043-snap0 state)"
info "device target under concurrent overwrites: image = point in time, all released, scratch empty"

# Refusals.
expect_err 2 'backup: --to FILE\|DEV\|- is required' $F backup $v2
expect_err 2 "invalid --batch '1K'" $F backup $v2 --to $WORK/x --batch 1K
expect_err 3 'backup t043: not a fleece view \(its table is fleece-origin\)' $F backup t043 --to $WORK/x
expect_err 3 'backup nosuch: no such device-mapper device' $F backup nosuch --to $WORK/x
expect_err 1 "is the view's own scratch device" $F backup $v2 --force --to $SCRATCH
dmsetup create t043s --table "0 2048 linear $META 0"
expect_err 1 'backup t043-snap0: /dev/mapper/t043s is smaller than the view' \
	$F backup $v2 --force --to /dev/mapper/t043s
expect_err 1 'neither a regular file nor a block device' $F backup $v2 --force --to /dev/null
[ ! -e $WORK/x ] || fail "a refused backup created its image"
expect_rc 0 $F release t043-snap0
dmsetup remove t043s t043t
expect_rc 0 $F remove t043
dmsetup remove t043o
