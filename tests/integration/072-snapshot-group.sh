#!/bin/bash
# Consistency groups (issue 14, item 5): 'fleecectl snapshot A B --scratch
# SA --scratch SB' takes both views at one point in time: every origin is
# suspended, every view created, then every origin resumed.
#
# A writer stamps sequence numbers on two origins in order (A=k, then B=k
# once A=k has completed, then A=k+1). Views that share a point in time see
# A=B or A=B+1 (the write to B of the same k in flight); B>A would mean B's
# view is later than A's, which two snapshots one after the other allow.
# Rounds are checked byte for byte against the stamp blocks. Then: all or
# nothing (a signal between the suspends: both origins resumed, no view;
# a refused second origin: nothing done), and the refusals of bad groups.
. "$(dirname "$0")/lib.sh"
F=$FLEECECTL
SZ=$((64 * 2048))

cleanup() {
	[ -n "${wpid:-}" ] && kill "$wpid" 2>/dev/null
	for d in t072a-v t072b-v t072a t072b t072la t072lb t072sa t072sb t072sc; do
		dmsetup remove $d 2>/dev/null || true
	done
}
trap cleanup EXIT

dmsetup create t072la --table "0 $SZ linear $ORIGIN 0"
dmsetup create t072lb --table "0 $SZ linear $ORIGIN $SZ"
dmsetup create t072sa --table "0 $SZ linear $SCRATCH 0"
dmsetup create t072sb --table "0 $SZ linear $SCRATCH $SZ"
dmsetup create t072sc --table "0 $SZ linear $SCRATCH $((2 * SZ))"
expect_rc 0 $F create t072a /dev/mapper/t072la
expect_rc 0 $F create t072b /dev/mapper/t072lb

# The writer: block 0 of each origin holds "seq <k>" padded to 4 KiB,
# written with O_DIRECT, A before B, each write complete before the next.
cat > $WORK/writer.py <<'PY'
import mmap, os, sys
a = os.open("/dev/mapper/t072a", os.O_WRONLY | os.O_DIRECT)
b = os.open("/dev/mapper/t072b", os.O_WRONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 4096)
k = 0
while True:
    k += 1
    buf.seek(0)
    buf.write(("seq %d\n" % k).encode().ljust(4096, b"\0"))
    os.pwrite(a, buf, 0)
    os.pwrite(b, buf, 0)
    if k % 64 == 0:
        # Renamed into place: a reader never sees the file empty.
        with open(sys.argv[1] + ".new", "w") as f:
            f.write("%d\n" % k)
        os.rename(sys.argv[1] + ".new", sys.argv[1])
PY
# stamp_of DEV: the k of block 0, checking the whole block is the stamp.
stamp_of() {
	local k
	k=$(dd if="$1" bs=4096 count=1 iflag=direct status=none | head -c 32 | tr -d '\0' | awk '/^seq/ { print $2 }')
	[ -n "$k" ] || fail "$1: block 0 holds no stamp"
	python3 -c '
import sys
k = int(sys.argv[2])
want = ("seq %d\n" % k).encode().ljust(4096, b"\0")
got = open(sys.argv[1], "rb").read(4096)
sys.exit(0 if got == want else 1)' "$1" "$k" || fail "$1: block 0 is not the stamp block of $k"
	echo "$k"
}

python3 $WORK/writer.py $WORK/progress &
wpid=$!
for _ in $(seq 100); do [ -s $WORK/progress ] && break; sleep 0.1; done
[ -s $WORK/progress ] || fail "the writer did not start"

ROUNDS=${FLEECE_GROUP_ROUNDS:-8}
same=0
ahead=0
for r in $(seq $ROUNDS); do
	expect_rc 0 $F snapshot t072a t072b --scratch /dev/mapper/t072sa --scratch /dev/mapper/t072sb \
		--view t072a-v --view t072b-v
	[ "$(cat $WORK/stdout)" = "/dev/mapper/t072a-v
/dev/mapper/t072b-v" ] || fail "round $r: snapshot printed '$(cat $WORK/stdout)'"
	# Let the writer go on past the point in time: the views must not.
	before=$(cat $WORK/progress)
	for _ in $(seq 100); do [ "$(cat $WORK/progress)" -gt "$((before + 64))" ] && break; sleep 0.1; done
	ka=$(stamp_of /dev/mapper/t072a-v)
	kb=$(stamp_of /dev/mapper/t072b-v)
	if [ "$ka" = "$kb" ]; then
		same=$((same + 1))
	elif [ "$ka" = $((kb + 1)) ]; then
		ahead=$((ahead + 1))
	else
		fail "round $r: view A holds seq $ka, view B seq $kb: not one point in time"
	fi
	expect_rc 0 $F release t072a-v
	expect_rc 0 $F release t072b-v
done
kill $wpid
wait $wpid 2>/dev/null || true
wpid=
[ "$(cat $WORK/progress)" -gt 0 ] || fail "the writer wrote nothing"
info "$ROUNDS group snapshots under a writer: A=B $same times, A=B+1 $ahead times, never B>A"

# All or nothing: a signal after both are suspended, before the views.
FLEECECTL_TEST_PAUSE_AFTER_SUSPEND=60 $F snapshot t072a t072b --scratch /dev/mapper/t072sa \
	--scratch /dev/mapper/t072sb >$WORK/stdout 2>$WORK/stderr &
pid=$!
for _ in $(seq 300); do
	[ "$(dm_state t072b)" = SUSPENDED ] && break
	sleep 0.1
done
[ "$(dm_state t072a)" = SUSPENDED ] && [ "$(dm_state t072b)" = SUSPENDED ] ||
	{ kill $pid; fail "the group snapshot never had both origins suspended"; }
kill -INT $pid
rc=0
wait $pid || rc=$?
[ $rc = 7 ] || { cat $WORK/stderr >&2; fail "interrupted group snapshot exited $rc, expected 7"; }
grep -q "interrupted by signal 2 (Interrupt); every origin resumed, no view created" $WORK/stderr ||
	{ cat $WORK/stderr >&2; fail "the interrupted group snapshot did not say so"; }
[ "$(dm_state t072a)" = ACTIVE ] && [ "$(dm_state t072b)" = ACTIVE ] || fail "an origin was left suspended"
dmsetup info t072a-snap0 >/dev/null 2>&1 && fail "an interrupted group left a view of t072a"
dmsetup info t072b-snap0 >/dev/null 2>&1 && fail "an interrupted group left a view of t072b"
info "SIGINT with both origins suspended: both resumed, no view"

# A refusal of the second origin: nothing done to the first.
expect_err 1 "snapshot t072a: .*nightly" \
	$F snapshot t072a t072b --scratch /dev/mapper/t072sa --scratch /dev/mapper/t072sb \
	--bitmap nightly --full
$F bitmap add t072a nightly >/dev/null
expect_err 1 "snapshot t072b: .*nightly" \
	$F snapshot t072a t072b --scratch /dev/mapper/t072sa --scratch /dev/mapper/t072sb \
	--bitmap nightly --full
dmsetup info t072a-snap0 >/dev/null 2>&1 && fail "a refused group left a view of t072a"
[ "$(origin_sessions t072a)" = 0 ] || fail "a refused group left a session on t072a"
# Bad groups.
expect_err 2 "2 origins need 2 --scratch" $F snapshot t072a t072b --scratch /dev/mapper/t072sa
expect_err 2 "2 origins need 2 --view" $F snapshot t072a t072b --scratch /dev/mapper/t072sa \
	--scratch /dev/mapper/t072sb --view x
expect_err 1 "snapshot t072b: scratch device /dev/mapper/t072sa is t072a's too" \
	$F snapshot t072a t072b --scratch /dev/mapper/t072sa --scratch /dev/mapper/t072sa
expect_err 1 "snapshot t072a: t072a is on the same origin device" \
	$F snapshot t072a t072a --scratch /dev/mapper/t072sa --scratch /dev/mapper/t072sc
[ "$(origin_sessions t072a)" = 0 ] && [ "$(origin_sessions t072b)" = 0 ] || fail "a refused group left a session"
info "refused: a bitmap missing on the second origin, too few --scratch or --view, a shared scratch, an origin twice"

expect_rc 0 $F remove t072a
expect_rc 0 $F remove t072b
