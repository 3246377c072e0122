#!/bin/bash
# SIGINT/SIGTERM to fleecectl while it has a device suspended (held there by
# FLEECECTL_TEST_PAUSE_AFTER_SUSPEND): the device is resumed, nothing is left
# half-done (no view, no -fleece-real device, the old table), and writes to
# the mounted filesystem still complete.
. "$(dirname "$0")/lib.sh"
F=$FLEECECTL
mnt=$WORK/mnt
mkdir -p $mnt

cleanup() {
	[ -n "${pid:-}" ] && kill -9 $pid 2>/dev/null
	for d in t044 t044l; do
		[ "$(dm_state $d 2>/dev/null)" = SUSPENDED ] && dmsetup resume $d
	done
	umount $mnt 2>/dev/null || true
	true
}
trap cleanup EXIT

# run_interrupted SIG DEV CMD...: start CMD with the pause, wait until DEV is
# suspended, send SIG; CMD must exit 7 (interrupted) saying so.
run_interrupted() {
	local sig=$1 dev=$2 rc=0 i
	shift 2
	FLEECECTL_TEST_PAUSE_AFTER_SUSPEND=60 "$@" >$WORK/stdout 2>$WORK/stderr &
	pid=$!
	for i in $(seq 200); do
		[ "$(dm_state $dev)" = SUSPENDED ] && break
		kill -0 $pid 2>/dev/null || break
		sleep 0.1
	done
	[ "$(dm_state $dev)" = SUSPENDED ] || { cat $WORK/stderr >&2; fail "$* never suspended $dev"; }
	kill -$sig $pid
	wait $pid || rc=$?
	pid=
	[ $rc = 7 ] || { cat $WORK/stderr >&2; fail "'$*' exited $rc after SIG$sig, expected 7"; }
	grep -q 'interrupted by signal' $WORK/stderr || { cat $WORK/stderr >&2; fail "'$*' did not say it was interrupted"; }
	[ "$(dm_state $dev)" = ACTIVE ] || fail "$dev left $(dm_state $dev) after SIG$sig"
	info "SIG$sig while $dev was suspended: $dev ACTIVE, $(grep interrupted $WORK/stderr)"
}

# A write to the mounted filesystem completes and reads back.
check_writes() {
	local f=$mnt/w.$1
	pattern w044-$1 $((1024 * 1024)) > $WORK/w
	timeout 30 cp $WORK/w $f || fail "writing $f did not complete ($2)"
	timeout 30 sync || fail "sync did not complete ($2)"
	echo 3 > /proc/sys/vm/drop_caches
	cmp -s $f $WORK/w || fail "$f reads back wrong ($2)"
}

sz=$((256 * 1024 * 2))
dmsetup create t044b --table "0 $sz linear $ORIGIN 0"
expect_rc 0 $F create t044 /dev/mapper/t044b
mkfs.ext4 -q -F /dev/mapper/t044
mount /dev/mapper/t044 $mnt
check_writes 0 "before"

# snapshot, interrupted between suspend and view creation.
for sig in INT TERM; do
	run_interrupted $sig t044 $F snapshot t044 --scratch $SCRATCH
	! dmsetup ls | grep -q '^t044-snap' || fail "a view was left after SIG$sig"
	[ "$(origin_sessions t044)" = 0 ] || fail "$(origin_sessions t044) sessions after SIG$sig"
	check_writes $sig "after snapshot + SIG$sig"
done
info "interrupted snapshots: no view, no session, the filesystem takes writes"

# The same command without a signal still works.
expect_rc 0 $F snapshot t044 --scratch $SCRATCH

# backup, interrupted: it stops and keeps the partial image it was writing
# (img.fleece-partial; img never appears): what it released is only there,
# for --resume (076); the session goes on.
# Paced (256 MiB at 32M/s, 8 s) so that it still runs 2 s in on any
# machine; the signal may then come during a read or during a wait.
$F backup t044-snap0 --to $WORK/img --verify --batch 1M --rate-limit 32M \
	>$WORK/stdout 2>$WORK/stderr &
pid=$!
for _ in $(seq 100); do [ -e $WORK/img.fleece-partial ] && break; sleep 0.1; done
sleep 2
kill -INT $pid
rc=0
wait $pid || rc=$?
pid=
[ $rc = 7 ] || { cat $WORK/stderr >&2; fail "interrupted backup exited $rc, expected 7"; }
grep -q 'backup t044-snap0: interrupted by signal 2' $WORK/stderr || { cat $WORK/stderr >&2; fail "backup did not say it was interrupted"; }
grep -q 'kept the incomplete image .*--resume' $WORK/stderr || { cat $WORK/stderr >&2; fail "backup did not keep its image for --resume"; }
[ ! -e $WORK/img ] && [ -e $WORK/img.fleece-partial ] || fail "the interrupted backup made img, or removed img.fleece-partial"
[ "$(view_stat t044-snap0 state)" = Active ] || fail "session $(view_stat t044-snap0 state) after an interrupted backup"
released=$(view_stat t044-snap0 released)
[ "$released" -gt 0 ] && [ "$released" -lt $((sz / 128)) ] ||
	fail "$released chunks released by a backup interrupted after 2 s"
info "SIGINT during backup: $(grep 'interrupted by' $WORK/stderr); partial kept, $released chunks released"
expect_err 5 "chunks were released already .*continue the interrupted backup with --resume" \
	$F backup t044-snap0 --to $WORK/img
rm -f $WORK/img.fleece-partial
expect_rc 0 $F release t044-snap0

# attach and detach, interrupted.
umount $mnt
expect_rc 0 $F remove t044
dmsetup remove t044b
dmsetup create t044l --table "0 $sz linear $ORIGIN 0"
orig=$(dmsetup table t044l)
mkfs.ext4 -q -F /dev/mapper/t044l
mount /dev/mapper/t044l $mnt

run_interrupted INT t044l $F attach t044l
[ "$(dmsetup table t044l)" = "$orig" ] || fail "interrupted attach changed the table: $(dmsetup table t044l)"
! dmsetup info t044l-fleece-real >/dev/null 2>&1 || fail "interrupted attach left t044l-fleece-real"
dmsetup info t044l | grep -q '^Tables present: *LIVE$' || fail "interrupted attach left an inactive table"
check_writes a "after attach + SIGINT"

expect_rc 0 $F attach t044l
attached=$(dmsetup table t044l)
run_interrupted TERM t044l $F detach t044l
[ "$(dmsetup table t044l)" = "$attached" ] || fail "interrupted detach changed the table: $(dmsetup table t044l)"
dmsetup info t044l-fleece-real >/dev/null 2>&1 || fail "interrupted detach removed t044l-fleece-real"
dmsetup info t044l | grep -q '^Tables present: *LIVE$' || fail "interrupted detach left an inactive table"
check_writes d "after detach + SIGTERM"
info "interrupted attach/detach: table unchanged, no inactive table, writes complete"

expect_rc 0 $F detach t044l
[ "$(dmsetup table t044l)" = "$orig" ] || fail "detach did not restore the table"
check_writes e "after detach"
umount $mnt
dmsetup remove t044l
