#!/bin/bash
# fleecectl backup --resume: an interrupted backup continues on the same
# view from what the view released (a durable, verified prefix), and the
# result is byte for byte the view.
# - full backup to an image file, SIGKILL mid-way, origin overwritten
#   meanwhile: --resume --verify gives the view's sha256, commits, and
#   copies only what was not released;
# - incremental onto a copy (--base), SIGTERM mid-way: --resume gives the
#   view, the base untouched;
# - to a device, SIGKILL mid-way: --resume gives the view;
# - the target file system full mid-way: the partial is kept, --resume once
#   there is room gives the view;
# - refused: --resume to another output, to a partial replaced since;
#   --resume with nothing to resume is an ordinary backup.
. "$(dirname "$0")/lib.sh"
F=$FLEECECTL
mib=$((1024 * 1024))
size=$((128 * mib))
P=.fleece-partial
V=t076v

txn() { view_txn $V nightly; }

cleanup() {
	[ -n "${pid:-}" ] && kill -9 $pid 2>/dev/null
	mountpoint -q $WORK/small 2>/dev/null && umount $WORK/small
	true
}
trap cleanup EXIT

# interrupt SIG ARGS...: a paced backup of $V, sent SIG once the view
# released something and well before the end. Sets $rc.
interrupt() {
	local sig=$1 i
	shift
	$F backup $V "$@" --rate-limit 16M --batch 4M >$WORK/bg.out 2>$WORK/bg.err &
	pid=$!
	for i in $(seq 600); do
		[ "$(view_stat $V released)" -gt 0 ] && break
		kill -0 $pid 2>/dev/null || break
		sleep 0.05
	done
	if [ -n "${second:-}" ]; then
		# One backup of a view at a time: each would release what the
		# other has not read yet.
		expect_err 4 "another fleecectl backup of this view is running" \
			$F backup $V --full --to $img --resume
		[ -e /run/fleecectl/backup-$V.resume ] ||
			fail "the refused second backup removed the running backup's resume record"
	fi
	kill -$sig $pid
	rc=0
	{ wait $pid; } 2>/dev/null || rc=$?
	pid=
	released=$(view_stat $V released)
	[ "$released" -gt 0 ] || { cat $WORK/bg.err >&2; fail "the backup released nothing before SIG$sig"; }
	[ "$released" -lt $((size / 65536)) ] || fail "the backup was done before SIG$sig"
}

# overwrite: the applications go on writing while the backup is stopped.
overwrite() { dd if=/dev/urandom of=$D bs=1M seek=$1 count=$2 oflag=direct status=none; }

dmsetup create t076o --table "0 $((size / 512)) linear $ORIGIN 0"
blkdiscard -f /dev/mapper/t076o 2>/dev/null
expect_rc 0 $F create t076 /dev/mapper/t076o --meta $META
D=/dev/mapper/t076
expect_rc 0 $F bitmap add t076 nightly
overwrite 0 $((size / mib))
img=$WORK/full.img

# 1. Full backup to an image file, SIGKILL mid-way.
expect_rc 0 $F snapshot t076 --scratch $SCRATCH --bitmap nightly --full --view $V
ref=$(dev_sha /dev/mapper/$V)
second=1 interrupt KILL --full --to $img --verify
[ $rc = 137 ] || { cat $WORK/bg.err >&2; fail "the backup exited $rc before SIGKILL"; }
[ ! -e $img ] && [ -e $img$P ] || fail "SIGKILL left $img, or no $img$P"
overwrite 0 $((size / mib))
expect_err 5 "released already .*continue the interrupted backup with --resume" \
	$F backup $V --full --to $img
# --force would read the released chunks as zeroes: refused while the
# interrupted backup that holds them can be resumed; without its record
# (gone at a reboot, say) such an image is made but never committed.
expect_err 5 "an interrupted backup of this view holds what it released; continue it with --resume" \
	$F backup $V --full --force --no-release --to $WORK/forced.img
mv /run/fleecectl/backup-$V.resume $WORK/record
expect_rc 0 $F backup $V --full --force --no-release --to $WORK/forced.img
mv $WORK/record /run/fleecectl/backup-$V.resume
grep -q "released earlier read as zeroes; the bitmap is not committed" $WORK/stderr ||
	fail "--force over released chunks: no word that it does not commit: $(cat $WORK/stderr)"
grep -q "release $V --commit" $WORK/stdout && fail "--force over released chunks advises a commit: $(cat $WORK/stdout)"
[ "$(txn)" != committed ] || fail "--force over released chunks committed the bitmap"
rm -f $WORK/forced.img $WORK/forced.img.fleece-manifest
# An interrupted --resume --no-release keeps the partial and the record:
# what the view released is only there.
$F backup $V --full --to $img --resume --no-release --rate-limit 4M >$WORK/bg.out 2>$WORK/bg.err &
pid=$!
for i in $(seq 600); do
	ls -l /proc/$pid/fd 2>/dev/null | grep -q -- "$P" && break
	kill -0 $pid 2>/dev/null || break
	sleep 0.05
done
kill -TERM $pid
rc=0
{ wait $pid; } 2>/dev/null || rc=$?
pid=
[ $rc != 0 ] || fail "the --resume --no-release backup was done before SIGTERM"
[ -e $img$P ] || { cat $WORK/bg.err >&2; fail "an interrupted --resume --no-release removed $img$P, what the view released"; }
expect_rc 0 $F backup $V --full --to $img --resume --verify
grep -q "resumed: " $WORK/stdout || fail "no 'resumed' in the summary: $(cat $WORK/stdout)"
[ "$(whole_sha $img)" = "$ref" ] || fail "the resumed image differs from the view"
[ ! -e $img$P ] || fail "the resumed backup left $img$P"
copied=$(awk '/^backup /{ print $3 }' $WORK/stdout)
[ "$copied" -eq $((size - released * 65536)) ] ||
	fail "the resumed backup read $copied bytes; $released chunks were released, $((size - released * 65536)) bytes were left"
[ "$(txn)" = committed ] || fail "the resumed full backup left the transaction '$(txn)'"
info "SIGKILL after $released chunks, origin overwritten, --resume: sha256 ${ref:0:16}... == view, $copied bytes read, committed"
expect_rc 0 $F release $V

# 2. Incremental onto a copy (--base), SIGTERM mid-way.
overwrite 16 96
expect_rc 0 $F snapshot t076 --scratch $SCRATCH --bitmap nightly --view $V
ref=$(dev_sha /dev/mapper/$V)
base=$(whole_sha $img)
inc=$WORK/inc.img
interrupt TERM --changed nightly --base $img --to $inc
[ $rc = 7 ] || { cat $WORK/bg.err >&2; fail "the incremental exited $rc after SIGTERM"; }
grep -q "kept the incomplete image $inc$P" $WORK/bg.err || { cat $WORK/bg.err >&2; fail "no 'kept' message"; }
overwrite 16 96
expect_rc 0 $F backup $V --changed nightly --base $img --to $inc --resume
[ "$(whole_sha $inc)" = "$ref" ] || fail "the resumed incremental differs from the view"
[ "$(whole_sha $img)" = "$base" ] || fail "the resumed incremental changed its base"
[ "$(txn)" = committed ] || fail "the resumed incremental left the transaction '$(txn)'"
info "incremental --base, SIGTERM after $released chunks, --resume: == view, base untouched, committed"
expect_rc 0 $F release $V

# 3. To a device, SIGKILL mid-way.
dmsetup create t076t --table "0 $((size / 512)) linear $ORIGIN $((size / 512))"
expect_rc 0 $F snapshot t076 --scratch $SCRATCH --view $V
ref=$(dev_sha /dev/mapper/$V)
interrupt KILL --full --to /dev/mapper/t076t --force
overwrite 0 64
expect_rc 0 $F backup $V --full --to /dev/mapper/t076t --resume
[ "$(dev_sha /dev/mapper/t076t)" = "$ref" ] || fail "the device resumed differs from the view"
info "to a device, SIGKILL after $released chunks, --resume: == view"
# Refused: another output than the one interrupted.
expect_rc 0 $F release $V
expect_rc 0 $F snapshot t076 --scratch $SCRATCH --view $V
interrupt KILL --full --to /dev/mapper/t076t --force
expect_err 1 "--resume: the interrupted backup was to another output" \
	$F backup $V --full --to $WORK/other.img --resume
[ ! -e $WORK/other.img ] && [ ! -e $WORK/other.img$P ] || fail "a refused --resume wrote other.img"
expect_rc 0 $F release $V
dmsetup remove t076t

# 4. The target file system fills up mid-way: the partial is kept; once
# there is room, --resume completes it.
mkdir -p $WORK/small
mount -t tmpfs -o size=48m tmpfs $WORK/small
expect_rc 0 $F snapshot t076 --scratch $SCRATCH --view $V
ref=$(dev_sha /dev/mapper/$V)
expect_err 6 "writing $WORK/small/img$P at byte [0-9]+ failed: No space left on device" \
	$F backup $V --full --to $WORK/small/img --batch 4M
grep -q "kept the incomplete image $WORK/small/img$P" $WORK/stderr || fail "ENOSPC: the partial was not kept"
released=$(view_stat $V released)
mount -o remount,size=160m $WORK/small
expect_rc 0 $F backup $V --full --to $WORK/small/img --resume --verify
[ "$(whole_sha $WORK/small/img)" = "$ref" ] || fail "the image resumed after ENOSPC differs from the view"
info "target full after $released chunks, room made, --resume --verify: == view"
expect_rc 0 $F release $V

# 5. A partial replaced since the interruption is not resumed into; nothing
# to resume is an ordinary backup.
expect_rc 0 $F snapshot t076 --scratch $SCRATCH --view $V
ref=$(dev_sha /dev/mapper/$V)
rm -f $WORK/small/img
interrupt KILL --full --to $WORK/small/img
cp $WORK/small/img$P $WORK/small/copy && mv $WORK/small/copy $WORK/small/img$P
expect_err 1 "--resume: the interrupted backup was to an output that was replaced since" \
	$F backup $V --full --to $WORK/small/img --resume
[ -e /run/fleecectl/backup-$V.resume ] || fail "the interrupted backup left no record to resume from"
expect_rc 0 $F release $V
[ ! -e /run/fleecectl/backup-$V.resume ] || fail "release left the record of an interrupted backup of $V"
expect_rc 0 $F snapshot t076 --scratch $SCRATCH --view $V
ref=$(dev_sha /dev/mapper/$V)
rm -f $WORK/small/img$P
expect_rc 0 $F backup $V --full --to $WORK/small/img --resume
[ "$(whole_sha $WORK/small/img)" = "$ref" ] || fail "--resume with nothing to resume: image differs from the view"
info "refused: a replaced partial; nothing to resume: an ordinary backup, == view"
expect_rc 0 $F release $V
umount $WORK/small

rm -f $img $inc
expect_rc 0 $F remove t076
dmsetup remove t076o
