#!/bin/bash
# View constructors racing each other and the origin's removal (issue 12,
# item 3). The checks that depend on the origin's state are made again in
# one step with the session's registration, under one lock, after the
# bitmap's reservation; before, they were not.
# - Two views naming the same scratch device, constructed at once (each
#   with its own bitmap, whose freeze does metadata IO and so used to open
#   a wide window between the scratch check and the registration): exactly
#   one is created, the other refused with "Scratch device is in use by
#   another session"; the survivor reads its point in time.
# - Four first fleece-origin tables of one origin device, constructed at
#   once (the device's state is made before the module's lock is taken,
#   and a constructor that loses the race frees its own): all four share
#   one state, so a fifth is refused ("Too many fleece-origin tables on
#   this device"); a view then keeps its point in time under writes made
#   through each of the four.
# - A view constructed while the last fleece-origin is being removed:
#   either refused ("No fleece-origin device on this origin"), or created
#   before the removal and then Invalid with its transaction ended; never an
#   Active view of an origin that writes no longer copy for.
# - A view's changes messages while the last fleece-origin is removed
#   (the frozen set taken back and freed): each answer is the whole list,
#   or the error of an ended transaction.
. "$(dirname "$0")/lib.sh"

SZ=$((16 * 2048))
OD=/dev/mapper/t057
SL=/dev/mapper/t057s
ROUNDS=${FLEECE_RACE_ROUNDS:-12}

cleanup() {
	for d in t057x t057y t057v t057o1 t057o2 t057o3 t057o4 t057o5 t057 t057s t057a t057p; do
		dmsetup remove $d 2>/dev/null || true
	done
}
trap cleanup EXIT

load_module
zero_dev $META 0 $((4 << 20))
dmsetup create t057s --table "0 $SZ linear $ORIGIN 0"
dmsetup create t057a --table "0 $SZ linear $SCRATCH 0"
dmsetup create t057 --table "0 $SZ fleece-origin $SL $META 8"
for b in b0 b1 b2 b3; do dmsetup message t057 0 bitmap_add $b; done
pattern pit $((SZ * 512)) > "$WORK/pit"
dd if="$WORK/pit" of=$OD bs=1M oflag=direct status=none

# Two constructors, one scratch device.
for r in $(seq 1 $ROUNDS); do
	mark=$(dmesg_mark)
	dmsetup suspend t057
	dmsetup create t057x --table "0 $SZ fleece $SL /dev/mapper/t057a 3 bitmap b$((r % 2)) full" 2>/dev/null &
	px=$!
	dmsetup create t057y --table "0 $SZ fleece $SL /dev/mapper/t057a 3 bitmap b$((r % 2 + 2)) full" 2>/dev/null &
	py=$!
	rx=0; ry=0
	wait $px || rx=$?
	wait $py || ry=$?
	dmsetup resume t057
	n=0
	for v in t057x t057y; do
		dmsetup info $v >/dev/null 2>&1 && [ "$(dm_state $v)" = ACTIVE ] &&
			dmsetup table $v | grep -q fleece && n=$((n + 1))
	done
	[ $n -le 1 ] || fail "round $r: both views on one scratch device were created"
	[ $n = 1 ] || fail "round $r: neither view was created (exits $rx, $ry): $(new_dmesg "$mark" | tail -3)"
	new_dmesg "$mark" | grep -q "Scratch device is in use by another session" ||
		fail "round $r: the loser was not refused for the scratch device: $(new_dmesg "$mark" | tail -3)"
	for v in t057x t057y; do
		dmsetup info $v >/dev/null 2>&1 || continue
		# The view must read its point in time under new writes.
		dd if=/dev/urandom of=$OD bs=64k count=4 seek=$((r * 4)) oflag=direct status=none
		dev_cmp /dev/mapper/$v 0 $((SZ * 512)) "$WORK/pit" ||
			fail "round $r: view $v does not read its point in time"
		dmsetup remove $v
	done
	# No frozen set is left behind (status: ... <name> <dirty> <frozen>).
	awk '{ for (i = 10; i <= NF; i += 3) if ($i != 0) exit 1 }' <<< "$(dmsetup status t057)" ||
		fail "round $r: a frozen set is left: $(dmsetup status t057)"
	dd if=$OD of="$WORK/pit" bs=1M iflag=direct status=none
done
info "$ROUNDS rounds of two constructors on one scratch device: one view each time"

# A constructor racing the removal of the last fleece-origin. Each removal
# is a clean detach (clean_detach), each creation vouches (no_gap): the
# bitmaps stay trusted, so the incremental views can be taken.
dmsetup message t057 0 clean_detach
dmsetup remove t057
created=0
refused=0
for r in $(seq 1 $ROUNDS); do
	dmsetup create t057 --table "0 $SZ fleece-origin $SL $META 8 1 no_gap" 2>/dev/null ||
		fail "round $r: cannot create the origin again"
	dmsetup message t057 0 clean_detach
	dmsetup suspend t057
	mark=$(dmesg_mark)
	dmsetup create t057x --table "0 $SZ fleece $SL /dev/mapper/t057a 2 bitmap b$((r % 4))" 2>/dev/null &
	px=$!
	dmsetup remove t057 || fail "round $r: cannot remove the origin"
	rx=0
	wait $px || rx=$?
	if dmsetup info t057x >/dev/null 2>&1 && dmsetup table t057x | grep -q fleece; then
		st=$(dmsetup status t057x)
		[ "$(awk '{print $4}' <<< "$st")" = Invalid ] ||
			fail "round $r: a view outlived its fleece-origin and is Active: $st"
		[[ "$st " == *" b$((r % 4)) ended "* ]] ||
			fail "round $r: the transaction of a view without origin is not ended: $st"
		created=$((created + 1))
	else
		new_dmesg "$mark" | grep -qE "No fleece-origin device on this origin|Suspend the fleece-origin device" ||
			fail "round $r: view refused (exit $rx) without a reason: $(new_dmesg "$mark" | tail -3)"
		refused=$((refused + 1))
	fi
	dmsetup remove t057x 2>/dev/null || true
done
info "$ROUNDS constructors racing the origin's removal: $created created then Invalid, $refused refused"

# The frozen sets of the views that were created came back into their
# bitmaps.
dmsetup create t057 --table "0 $SZ fleece-origin $SL $META 8 1 no_gap"
[ "$(dmsetup message t057 0 bitmap_list | wc -l)" = 4 ] || fail "bitmaps lost: $(dmsetup message t057 0 bitmap_list)"
[[ "$(dmsetup status t057)" == *" ok 4 "* ]] || fail "origin status after the races: $(dmsetup status t057)"

HALF=$(((ROUNDS + 1) / 2))

# A view's changes messages racing the origin's removal, which takes the
# frozen set back and frees it (the message scans it under the device's
# attach_lock, not the module's lock). Every answer is the whole list of
# the chunks written before the view, or the error of an ended
# transaction; the loop runs until it sees that error, so the removal
# falls inside it.
for r in $(seq 1 $HALF); do
	dmsetup message t057 0 bitmap_clear b0
	for c in 5 6 $((r * 7 + 100)) 4000; do
		dd if=/dev/urandom of=$OD bs=4k count=1 seek=$c oflag=direct status=none
	done
	dmsetup message t057 0 clean_detach
	dmsetup suspend t057
	dmsetup create t057x --table "0 $SZ fleece $SL /dev/mapper/t057a 2 bitmap b0"
	dmsetup resume t057
	mark=$(dmesg_mark)
	want="end 5+2 $((r * 7 + 100))+1 4000+1"
	got=$(dmsetup message t057x 0 changes)
	[ "$got" = "$want" ] || fail "round $r: changes before the race: '$got', want '$want'"
	rm -f "$WORK/go"
	mkfifo "$WORK/go"
	(
		for i in $(seq 1 5000); do
			# The removal starts once the loop is answered (or
			# refused: the checks below then say how).
			if ! out=$(dmsetup message t057x 0 changes 2>&1); then
				echo "ERR $out"
				[ "$i" = 1 ] && echo go > "$WORK/go"
				exit 0
			fi
			echo "OK $out"
			[ "$i" = 1 ] && echo go > "$WORK/go"
		done
		echo "CAP"
	) > "$WORK/changes.$r" &
	pm=$!
	read -r _ < "$WORK/go"
	dmsetup remove t057 || fail "round $r: cannot remove the origin"
	wait $pm
	grep -q "^CAP" "$WORK/changes.$r" && fail "round $r: changes still answered 5000 times after the origin's removal"
	grep -q "^ERR .*No such file or directory" "$WORK/changes.$r" ||
		fail "round $r: changes after the removal: $(grep ^ERR "$WORK/changes.$r")"
	new_dmesg "$mark" | grep -q ": changes: no open bitmap transaction" ||
		fail "round $r: changes refused without the reason: $(new_dmesg "$mark" | tail -3)"
	bad=$(grep "^OK" "$WORK/changes.$r" | grep -vxF "OK $want" | head -1 || true)
	[ -z "$bad" ] || fail "round $r: changes answered '$bad' during the removal, want '$want'"
	[ "$(view_stat t057x state)" = Invalid ] || fail "round $r: view: $(dmsetup status t057x)"
	oks[r]=$(grep -c "^OK" "$WORK/changes.$r" || true)
	dmsetup remove t057x
	dmsetup create t057 --table "0 $SZ fleece-origin $SL $META 8 1 no_gap" ||
		fail "round $r: cannot create the origin again"
done
info "$HALF rounds of changes messages racing the origin's removal: answers before it (${oks[*]}) all whole, then the ended transaction's error"

# First tables of one origin device, at once: one device state.
dmsetup create t057p --table "0 $SZ linear $ORIGIN $SZ"
PD=/dev/mapper/t057p
for r in $(seq 1 $HALF); do
	mark=$(dmesg_mark)
	pids=
	for i in 1 2 3 4; do
		dmsetup create t057o$i --table "0 $SZ fleece-origin $PD - 8" &
		pids="$pids $!"
	done
	for p in $pids; do wait $p || fail "round $r: a first fleece-origin table was refused: $(new_dmesg "$mark" | tail -3)"; done
	dmsetup create t057o5 --table "0 $SZ fleece-origin $PD - 8" 2>/dev/null &&
		fail "round $r: a fifth fleece-origin table was accepted: the four do not share one state"
	new_dmesg "$mark" | grep -q "Too many fleece-origin tables on this device" ||
		fail "round $r: the fifth table was refused without the reason: $(new_dmesg "$mark" | tail -3)"
	if [ "$r" = 1 ]; then
		pattern pp$r $((SZ * 512)) > "$WORK/pp"
		dd if="$WORK/pp" of=/dev/mapper/t057o1 bs=1M oflag=direct status=none
		for i in 1 2 3 4; do dmsetup suspend t057o$i; done
		dmsetup create t057v --table "0 $SZ fleece $PD /dev/mapper/t057a"
		for i in 1 2 3 4; do dmsetup resume t057o$i; done
		for i in 1 2 3 4; do
			dd if=/dev/urandom of=/dev/mapper/t057o$i bs=64k count=2 seek=$((i * 8)) oflag=direct status=none
		done
		dev_cmp /dev/mapper/t057v 0 $((SZ * 512)) "$WORK/pp" ||
			fail "the view of four tables' origin does not read its point in time"
		[ "$(view_stat t057v state)" = Active ] || fail "view: $(dmsetup status t057v)"
		dmsetup remove t057v
	fi
	for i in 1 2 3 4; do dmsetup remove t057o$i; done
done
info "$HALF rounds of four first tables of one origin at once: one state, a fifth refused; a view of it kept its point in time"
