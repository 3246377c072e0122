#!/bin/bash
# fleecectl backup: reads in flight (--jobs), idle I/O priority (--ioprio),
# and a stream on standard output (--to -).
# - --jobs 1, 4 (the default) and 16 give images byte-identical to the view,
#   with --verify; bad --jobs refused;
# - the reader threads run at idle I/O priority by default, at the process's
#   own with --ioprio inherit;
# - --to - streams the whole image in order: piped through zstd and back it
#   is the view's sha256; a stream neither releases nor commits unless
#   --release / --commit; with them, every chunk released and committed;
#   the summary goes to stderr; --to - with --changed, --verify or --resume
#   refused.
. "$(dirname "$0")/lib.sh"
F=$FLEECECTL
mib=$((1024 * 1024))
size=$((96 * mib))
V=t077v

txn() { view_txn $V nightly; }

cleanup() {
	[ -n "${pid:-}" ] && kill -9 $pid 2>/dev/null
	true
}
trap cleanup EXIT

dmsetup create t077o --table "0 $((size / 512)) linear $ORIGIN 0"
blkdiscard -f /dev/mapper/t077o 2>/dev/null
expect_rc 0 $F create t077 /dev/mapper/t077o --meta $META
D=/dev/mapper/t077
expect_rc 0 $F bitmap add t077 nightly
dd if=/dev/urandom of=$D bs=1M count=40 oflag=direct status=none
stamp $D $((60 * mib)) $((8 * mib)) a >/dev/null

# 1. --jobs: the same image however many reads are in flight, while the
# origin is overwritten (copies race the readers).
expect_rc 0 $F snapshot t077 --scratch $SCRATCH --view $V
ref=$(dev_sha /dev/mapper/$V)
for j in 1 4 16; do
	dd if=/dev/urandom of=$D bs=1M seek=$((j * 2)) count=16 oflag=direct status=none &
	w=$!
	expect_rc 0 $F backup $V --full --to $WORK/img$j --jobs $j --verify --no-release --quiet
	wait $w
	[ "$(whole_sha $WORK/img$j)" = "$ref" ] || fail "--jobs $j: the image differs from the view"
	rm -f $WORK/img$j
done
for j in 0 65 x; do
	expect_err 2 "invalid --jobs '$j'" $F backup $V --full --to $WORK/imgx --jobs $j
done
info "--jobs 1, 4, 16 under origin writes: images == view (${ref:0:16}...); 3 bad --jobs refused"

# 2. I/O priority of the reader threads, seen while a paced backup runs.
# prio_classes ARGS...: the classes ionice reports for the backup's reader
# threads (named fleece-read; the thread that ends batches, fleece-batch,
# writes and reads back the output at the writer's priority).
prio_classes() {
	local t i
	$F backup $V --full --to $WORK/imgp --no-release --rate-limit 8M --quiet "$@" \
		>/dev/null 2>$WORK/bg.err &
	pid=$!
	for i in $(seq 100); do
		[ "$(ls /proc/$pid/task 2>/dev/null | wc -l)" -gt 1 ] && break
		sleep 0.05
	done
	sleep 0.5
	for t in $(ls /proc/$pid/task); do
		[ "$(cat /proc/$pid/task/$t/comm 2>/dev/null)" = fleece-read ] || continue
		ionice -p $t | cut -d: -f1
	done | sort | uniq -c | tr -s ' ' | tr '\n' ';'
	grep -lx fleece-batch /proc/$pid/task/*/comm 2>/dev/null | wc -l > $WORK/batch-threads
	kill -INT $pid
	wait $pid 2>/dev/null || true
	pid=
	rm -f $WORK/imgp $WORK/imgp.fleece-partial
}
c=$(prio_classes)
[ "$c" = " 4 idle;" ] || fail "default: the reader threads' classes are '$c', expected 4 idle"
[ "$(cat $WORK/batch-threads)" = 1 ] ||
	fail "$(cat $WORK/batch-threads) threads named fleece-batch, expected 1"
c=$(prio_classes --ioprio inherit --jobs 2)
case "$c" in *idle*|"") fail "--ioprio inherit: the reader threads' classes are '$c'" ;; esac
expect_err 2 "invalid --ioprio 'fast'" $F backup $V --full --to $WORK/imgx --ioprio fast
info "readers at idle I/O priority by default; --ioprio inherit: $c"
expect_rc 0 $F release $V

# 3. --to -: a stream, compressed and back.
expect_rc 0 $F snapshot t077 --scratch $SCRATCH --bitmap nightly --full --view $V
ref=$(dev_sha /dev/mapper/$V)
$F backup $V --to - --quiet 2>$WORK/stream.err | zstd -q -1 > $WORK/img.zst ||
	{ cat $WORK/stream.err >&2; fail "backup --to - | zstd failed"; }
got=$(zstd -q -d -c $WORK/img.zst | sha256sum | cut -d' ' -f1)
[ "$got" = "$ref" ] || fail "the stream differs from the view"
grep -q "^backup $V: $size bytes .* to - " $WORK/stream.err || fail "summary not on stderr: $(cat $WORK/stream.err)"
grep -q "released: nothing (a stream" $WORK/stream.err || fail "summary: $(cat $WORK/stream.err)"
grep -q "not committed (a stream" $WORK/stream.err || fail "summary: $(cat $WORK/stream.err)"
[ "$(view_stat $V released)" = 0 ] || fail "a stream released $(view_stat $V released) chunks"
[ "$(txn)" = open ] || fail "a stream left the transaction '$(txn)'"
info "--to - | zstd: == view (${ref:0:16}...), nothing released, not committed, summary on stderr"

# With --release --commit: the same bytes, every chunk released, committed.
$F backup $V --to - --release --commit --quiet 2>$WORK/stream.err > $WORK/img.raw ||
	{ cat $WORK/stream.err >&2; fail "backup --to - --release --commit failed"; }
[ "$(whole_sha $WORK/img.raw)" = "$ref" ] || fail "the stream with --release differs from the view"
[ "$(view_stat $V released)" = $((size / 65536)) ] || fail "released $(view_stat $V released) of $((size / 65536))"
[ "$(txn)" = committed ] || fail "--commit left the transaction '$(txn)'"
info "--to - --release --commit: == view, $((size / 65536)) chunks released, committed"
expect_rc 0 $F release $V

expect_rc 0 $F snapshot t077 --scratch $SCRATCH --bitmap nightly --view $V
expect_err 2 "--to - streams a full image" $F backup $V --changed nightly --to -
expect_err 2 "a stream cannot be read back" $F backup $V --full --to - --verify
expect_err 2 "a stream cannot be resumed" $F backup $V --full --to - --resume
# A stream that nobody reads to the end: an error, nothing committed.
rc=0
$F backup $V --full --to - --commit 2>$WORK/stream.err | head -c 1M > /dev/null || rc=$?
[ $rc = 6 ] || fail "a broken stream: the pipeline exited $rc, expected 6 (fleecectl's: an I/O error)"
[ "$(txn)" = open ] || fail "a broken stream left the transaction '$(txn)'"
grep -q "writing standard output at byte [0-9]* failed: Broken pipe" $WORK/stream.err ||
	fail "a broken stream: $(cat $WORK/stream.err)"
info "refused: --to - with --changed, --verify, --resume; a broken pipe commits nothing"
expect_rc 0 $F release $V

rm -f $WORK/img.zst $WORK/img.raw
expect_rc 0 $F remove t077
dmsetup remove t077o
