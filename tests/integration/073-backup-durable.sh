#!/bin/bash
# fleecectl backup to an image file is durable: it writes NAME.fleece-partial
# and renames it to NAME only when complete and fsync'ed, then commits.
# SIGKILL, SIGINT or SIGTERM in the middle of a full backup, an incremental
# onto a copy (--base) or an incremental in place: NAME absent or as it was
# (sha256), the transaction not committed (the next snapshot lists the same
# changes), and a rerun gives an image byte-identical to the view with no
# partial file left. A second backup to an image being written is refused.
. "$(dirname "$0")/lib.sh"
F=$FLEECECTL
mib=$((1024 * 1024))
size=$((128 * mib))
P=.fleece-partial

txn() { view_txn t073v nightly; }

cleanup() {
	[ -n "${pid:-}" ] && kill -9 $pid 2>/dev/null
	true
}
trap cleanup EXIT

# start_backup VIEW ARGS...: a paced backup in the background, its output
# in $WORK/bg.out and $WORK/bg.err.
start_backup() {
	$F backup "$@" >$WORK/bg.out 2>$WORK/bg.err &
	pid=$!
}

# wait_data PARTIAL: until PARTIAL holds data (the backup has it locked).
wait_data() {
	local i
	for i in $(seq 300); do
		[ -e "$1" ] && [ "$(stat -c %b "$1")" -gt 0 ] && return 0
		kill -0 $pid 2>/dev/null || break
		sleep 0.1
	done
	cat $WORK/bg.err >&2
	fail "the backup never wrote $1"
}

# kill_backup SIG PARTIAL: once PARTIAL holds data and a second has passed,
# send SIG; the backup must still have been running. Sets $rc.
kill_backup() {
	local sig=$1
	wait_data "$2"
	sleep 1
	kill -$sig $pid
	rc=0
	{ wait $pid; } 2>/dev/null || rc=$?
	pid=
}

# interrupted_partial VIEW IMAGE: after a signal, the partial image is kept
# for --resume when the view released part of it (what was released is
# only there), and removed when it released nothing. Sets $left.
interrupted_partial() {
	if [ "$(view_stat $1 released)" -gt 0 ]; then
		grep -q "kept the incomplete image $2$P: .*--resume" $WORK/bg.err ||
			{ cat $WORK/bg.err >&2; fail "no 'kept' message"; }
		[ -e $2$P ] || fail "the signal removed $2$P, which holds what $1 released"
		left=kept
	else
		grep -q "removed the incomplete image $2$P; $2 is as it was" $WORK/bg.err ||
			{ cat $WORK/bg.err >&2; fail "no 'removed' message"; }
		[ ! -e $2$P ] || fail "the signal left $2$P"
		left=removed
	fi
}

# The changes t073v lists, as the offsets of their 64 KiB chunks.
changes() {
	expect_rc 0 $F changes t073v
	awk '{ for (o = $1; o < $1 + $2; o += 65536) print o }' $WORK/stdout | sort
}
# kept OLD NEW: chunks listed in OLD that NEW does not list (no /dev/fd in
# the VM: no process substitution).
kept() {
	echo "$1" > $WORK/kept.old
	echo "$2" > $WORK/kept.new
	comm -23 $WORK/kept.old $WORK/kept.new | wc -l
}

dmsetup create t073o --table "0 $((size / 512)) linear $ORIGIN 0"
blkdiscard -f /dev/mapper/t073o 2>/dev/null
expect_rc 0 $F create t073 /dev/mapper/t073o --meta $META
D=/dev/mapper/t073
expect_rc 0 $F bitmap add t073 nightly
stamp $D 0 $((8 * mib)) a >/dev/null
stamp $D $((100 * mib)) $((4 * mib)) b >/dev/null
img=$WORK/full.img

# 1. A full backup killed (SIGKILL) in the middle: no full.img; the partial
# file stays (nothing can remove it) and the next backup writes it again;
# the transaction is still open.
expect_rc 0 $F snapshot t073 --scratch $SCRATCH --bitmap nightly --full --view t073v
start_backup t073v --full --to $img --rate-limit 16M --batch 4M
kill_backup KILL $img$P
[ $rc = 137 ] || { cat $WORK/bg.err >&2; fail "the full backup exited $rc before SIGKILL"; }
[ ! -e $img ] || fail "a full backup killed in the middle left $img"
[ -e $img$P ] || fail "a killed backup left no $img$P"
[ "$(txn)" = open ] || fail "the transaction is '$(txn)' after a killed backup, expected open"
[ "$(view_stat t073v released)" -gt 0 ] || fail "the killed backup released nothing: not in the middle"
info "SIGKILL during a full backup: no $(basename $img), the partial left, transaction open"
expect_rc 0 $F release t073v

# Rerun from a new snapshot, over the stale partial: (a) image == view,
# committed, no partial left.
expect_rc 0 $F snapshot t073 --scratch $SCRATCH --bitmap nightly --full --view t073v
ref0=$(dev_sha /dev/mapper/t073v)
expect_rc 0 $F backup t073v --full --to $img --verify --quiet
grep -q "$img$P was left by an interrupted backup" $WORK/stderr || { cat $WORK/stderr >&2; fail "the stale partial was not reported"; }
grep -q "committed: bitmap 'nightly'" $WORK/stdout || fail "the full backup did not commit: $(cat $WORK/stdout)"
[ "$(whole_sha $img)" = "$ref0" ] || fail "full.img differs from the view"
[ ! -e $img$P ] || fail "a completed backup left $img$P"
[ "$(stat -c %a $img)" = 600 ] || fail "full.img has mode $(stat -c %a $img)"
expect_rc 0 $F release t073v
info "(a) full backup over a stale partial: sha256 ${ref0:0:16}... == view, committed, no partial"

# A full backup that replaces an existing image, SIGINT in the middle: the
# old image is as it was, the partial removed; the lock refuses a second
# backup to the same image meanwhile.
chmod 640 $img
stamp $D $((20 * mib)) $((4 * mib)) c >/dev/null
expect_rc 0 $F snapshot t073 --scratch $SCRATCH --view t073p
start_backup t073p --full --to $img --rate-limit 16M --batch 4M
wait_data $img$P
expect_err 4 "another fleecectl backup of this view is running" \
	$F backup t073p --full --force --to $img
kill_backup INT $img$P
[ $rc = 7 ] || { cat $WORK/bg.err >&2; fail "the backup exited $rc after SIGINT, expected 7"; }
grep -q "interrupted by signal 2" $WORK/bg.err || { cat $WORK/bg.err >&2; fail "no 'interrupted' message"; }
interrupted_partial t073p $img
[ "$(whole_sha $img)" = "$ref0" ] || fail "an interrupted full backup changed the image it was to replace"
expect_rc 0 $F release t073p
info "(c) SIGINT during a full backup over an image: the image as it was, partial $left; a second backup refused"

# 2. An incremental onto a copy (--base), SIGKILL in the middle: the base
# untouched, no inc.img, not committed (the next view lists the same
# changes and more), and a rerun gives the view.
dd if=/dev/urandom of=$D bs=1M seek=32 count=48 oflag=direct status=none
expect_rc 0 $F snapshot t073 --scratch $SCRATCH --bitmap nightly --view t073v
c1=$(changes)
[ -n "$c1" ] || fail "no changes listed"
inc=$WORK/inc.img
start_backup t073v --changed nightly --base $img --to $inc --rate-limit 8M --batch 4M
kill_backup KILL $inc$P
[ $rc = 137 ] || { cat $WORK/bg.err >&2; fail "the incremental exited $rc before SIGKILL"; }
[ ! -e $inc ] || fail "an incremental killed in the middle left $inc"
[ "$(whole_sha $img)" = "$ref0" ] || fail "the killed incremental changed its base"
[ "$(txn)" = open ] || fail "the transaction is '$(txn)' after a killed incremental"
expect_rc 0 $F release t073v
stamp $D $((120 * mib)) 4096 d >/dev/null
expect_rc 0 $F snapshot t073 --scratch $SCRATCH --bitmap nightly --view t073v
c2=$(changes)
missing=$(kept "$c1" "$c2")
[ "$missing" = 0 ] || fail "$missing chunks of the killed incremental are missing from the next one's changes"
ref1=$(dev_sha /dev/mapper/t073v)
expect_rc 0 $F backup t073v --changed nightly --base $img --to $inc --quiet
grep -q "committed: bitmap 'nightly'" $WORK/stdout || fail "the incremental did not commit"
[ "$(whole_sha $inc)" = "$ref1" ] || fail "inc.img differs from the view"
[ "$(whole_sha $img)" = "$ref0" ] || fail "--base changed the base image"
[ ! -e $inc$P ] || fail "a completed incremental left $inc$P"
expect_rc 0 $F release t073v
info "(b) SIGKILL during an incremental --base: base untouched, no image, changes kept; rerun == view (${ref1:0:16}...)"

# 3. An incremental in place (no --base), SIGTERM then SIGKILL in the
# middle: the image is the previous one each time; the rerun updates it.
dd if=/dev/urandom of=$D bs=1M seek=40 count=48 oflag=direct status=none
chmod 640 $inc
expect_rc 0 $F snapshot t073 --scratch $SCRATCH --bitmap nightly --view t073v
c1=$(changes)
start_backup t073v --changed nightly --to $inc --rate-limit 8M --batch 4M
kill_backup TERM $inc$P
[ $rc = 7 ] || { cat $WORK/bg.err >&2; fail "the incremental exited $rc after SIGTERM, expected 7"; }
grep -q "interrupted by signal 15" $WORK/bg.err || { cat $WORK/bg.err >&2; fail "no 'interrupted' message"; }
interrupted_partial t073v $inc
[ "$(whole_sha $inc)" = "$ref1" ] || fail "an interrupted in-place incremental changed the image"
[ "$(txn)" = open ] || fail "the transaction is '$(txn)' after an interrupted incremental"
expect_rc 0 $F release t073v
info "(c) SIGTERM during an incremental in place: the image as it was, partial $left, not committed"

expect_rc 0 $F snapshot t073 --scratch $SCRATCH --bitmap nightly --view t073v
c2=$(changes)
missing=$(kept "$c1" "$c2")
[ "$missing" = 0 ] || fail "$missing chunks of the interrupted incremental are missing from the next one's changes"
start_backup t073v --changed nightly --to $inc --rate-limit 8M --batch 4M
kill_backup KILL $inc$P
[ $rc = 137 ] || { cat $WORK/bg.err >&2; fail "the incremental exited $rc before SIGKILL"; }
[ "$(whole_sha $inc)" = "$ref1" ] || fail "a killed in-place incremental changed the image"
[ "$(txn)" = open ] || fail "the transaction is '$(txn)' after a killed incremental"
expect_rc 0 $F release t073v
info "(b) SIGKILL during an incremental in place: the image as it was (${ref1:0:16}...), not committed"

expect_rc 0 $F snapshot t073 --scratch $SCRATCH --bitmap nightly --view t073v
c3=$(changes)
missing=$(kept "$c1" "$c3")
[ "$missing" = 0 ] || fail "$missing chunks of the killed incremental are missing from the next one's changes"
ref2=$(dev_sha /dev/mapper/t073v)
expect_rc 0 $F backup t073v --changed nightly --to $inc --verify --quiet
grep -q "committed: bitmap 'nightly'" $WORK/stdout || fail "the incremental did not commit"
[ "$(whole_sha $inc)" = "$ref2" ] || fail "inc.img updated in place differs from the view"
[ ! -e $inc$P ] || fail "a completed incremental left $inc$P"
[ "$(stat -c %a $inc)" = 640 ] || fail "inc.img updated in place has mode $(stat -c %a $inc), was 640"
expect_rc 0 $F release t073v
info "rerun in place over a stale partial: sha256 ${ref2:0:16}... == view, committed, no partial"

rm -f $img $inc
expect_rc 0 $F remove t073
dmsetup remove t073o
