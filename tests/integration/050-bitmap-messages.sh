#!/bin/bash
# Changed-block bitmaps of fleece-origin, driven by messages: bitmap_add,
# bitmap_list, bitmap_remove, bitmap_clear, bitmap_merge, bitmap_changes.
# - every refused message fails with its own errno and changes nothing
#   (status, bitmap_list and every bitmap's ranges are identical after it);
# - bitmap_changes is exactly the set of chunks written: sub-chunk,
#   chunk-straddling and multi-chunk writes, discards, write-zeroes; reads
#   and flushes record nothing; every live bitmap records every write;
# - paging with any MAX yields the same ranges as one call;
# - a view with "bitmap NAME" freezes NAME (bitmap_remove and bitmap_clear:
#   EBUSY); "changes" lists the frozen set; removed without commit, the set
#   is merged back; committed (twice: EALREADY), it is dropped; a plain view
#   has no transaction (ENOENT); a "full" one lists every chunk;
# - the same holds with bitmaps in memory ('-', status "volatile"): run by
#   053-bitmap-messages-volatile.sh as "050-bitmap-messages.sh volatile";
# - with a metadata device, removing and recreating the fleece-origin keeps
#   every bitmap and its content, and merges back a frozen set left behind.
. "$(dirname "$0")/lib.sh"

CH=128				# chunk: 64 KiB
CB=$((CH * 512))
sz=$(dev_sectors $ORIGIN)
last=$((sz / CH - 1))
dev=/dev/mapper/t050

EINVAL="Invalid argument"
ENOENT="No such file or directory"
EEXIST="File exists"
ENOSPC="No space left on device"
EBUSY="Device or resource busy"

origin_up() { dmsetup create t050 --table "0 $sz fleece-origin $ORIGIN $1 $CH"; }

# expect_changes NAME "end a+b ...": one bitmap_changes call says exactly that.
expect_changes() {
	local got
	got=$(dmsetup message t050 0 bitmap_changes "$1")
	[ "$got" = "$2" ] || fail "bitmap '$1': changes '$got', expected '$2'"
}

# expect_list "LINES": bitmap_list says LINES, in any order.
expect_list() {
	local got want
	got=$(dmsetup message t050 0 bitmap_list | sort)
	want=$(echo "$1" | sed '/^$/d' | sort)
	[ "$got" = "$want" ] || fail "bitmap_list: got '$got', expected '$want'"
}

# expect_status "INFO": the status INFO, bitmap triples in any order.
expect_status() {
	local got want
	norm() {
		local -a f
		local i
		read -r -a f
		echo "${f[*]:0:7}"
		for ((i = 7; i + 2 < ${#f[@]}; i += 3)); do
			echo "${f[i]} ${f[i + 1]} ${f[i + 2]}"
		done | sort
	}
	got=$(dmsetup status t050 | norm)
	want=$(echo "0 $sz fleece-origin $1" | norm)
	[ "$got" = "$want" ] || fail "status '$(dmsetup status t050)', expected '0 $sz fleece-origin $1'"
}

say() { info "$* [${SECONDS}s]"; }

wr() {	# wr BYTE_OFFSET LEN: write LEN random bytes (4 KiB multiples) at offset
	dd if=/dev/urandom of=$dev bs=4096 seek=$(($1 / 4096)) count=$(($2 / 4096)) \
		oflag=direct status=none
}

# Every refusal, each checked for its errno and for changing nothing
# (msgs_refused in lib.sh).
refusals() {
	msgs_refused t050 <<-EOF
	t050|$EEXIST|bitmap_add a
	t050|$EINVAL|bitmap_add x/y
	t050|$EINVAL|bitmap_add x*y
	t050|$EINVAL|bitmap_add x:y
	t050|$EINVAL|bitmap_add $(printf 'n%.0s' {1..32})
	t050|$EINVAL|bitmap_add
	t050|$EINVAL|bitmap_add c extra
	t050|$ENOENT|bitmap_remove nosuch
	t050|$ENOENT|bitmap_clear nosuch
	t050|$ENOENT|bitmap_changes nosuch
	t050|$ENOENT|bitmap_merge nosuch a
	t050|$ENOENT|bitmap_merge a nosuch
	t050|$EINVAL|bitmap_merge a
	t050|$EINVAL|bitmap_remove a b
	t050|$EINVAL|bitmap_changes a x
	t050|$EINVAL|bitmap_changes a 1x
	t050|$EINVAL|bitmap_changes a 0x10
	t050|$EINVAL|bitmap_changes a 0 0
	t050|$EINVAL|bitmap_changes a 0 x
	t050|$EINVAL|bitmap_changes a 0 1 2
	t050|$EINVAL|bitmap_list extra
	t050|$EINVAL|bitmap_frobnicate a
	t050|$EINVAL|frobnicate
	EOF
	say "$mode: 23 refused messages, each with its errno and no change"
}

exercise() {
	local mode=$1 meta m n exp pgs want

	meta=-
	[ "$mode" = persistent ] && meta=$META

	origin_up "$meta"
	expect_status "$mode 0 ok 0"
	expect_list ""
	dmsetup message t050 0 bitmap_add a
	expect_list "a 0 $mode 0"
	expect_status "$mode 0 ok 1 a 0 0"
	refusals

	# Eight bitmaps at most; names of 31 characters of [A-Za-z0-9_.-] are fine.
	long=Aa0_.-$(printf 'z%.0s' {1..25})
	for n in b c d e f g "$long"; do
		dmsetup message t050 0 bitmap_add "$n"
	done
	msg_refused t050 "$ENOSPC" bitmap_add h
	[ "$(dmsetup message t050 0 bitmap_list | wc -l)" = 8 ] || fail "not 8 bitmaps"
	for n in c d e f g "$long"; do
		dmsetup message t050 0 bitmap_remove "$n"
	done
	msg_refused t050 "$ENOENT" bitmap_remove c
	expect_list "a 0 $mode 0
b 0 $mode 0"
	say "$mode: 8 bitmaps allowed, the 9th refused with ENOSPC; removed ones are gone"

	# Known writes. Reads and flushes first: they record nothing.
	dd if=$dev of=/dev/null bs=1M skip=300 count=4 iflag=direct status=none
	dd if=/dev/null of=$dev conv=fsync status=none		# an empty flush
	blockdev --flushbufs $dev
	expect_changes a "end"
	dd if=/dev/urandom of=$dev bs=512 seek=1 count=1 oflag=direct status=none	# chunk 0, one sector
	wr $((5 * CB + 61440)) 4096			# chunk 5, its last 4 KiB
	wr $((10 * CB - 4096)) 8192			# chunks 9 and 10
	wr $((20 * CB)) $((1 << 20))			# chunks 20..35
	wr $((50 * CB + 32768)) $((200 << 10))		# chunks 50..53
	blkdiscard -o $((100 * CB)) -l $((2 * CB)) $dev	# chunks 100, 101
	blkdiscard -o $((110 * CB + 4096)) -l 4096 $dev	# chunk 110, part of it
	blkdiscard -z -o $((120 * CB)) -l $CB $dev	# chunk 120, write-zeroes
	wr $((sz * 512 - 4096)) 4096			# the last chunk
	exp="end 0+1 5+1 9+2 20+16 50+4 100+2 110+1 120+1 $last+1"
	expect_changes a "$exp"
	expect_changes b "$exp"
	expect_list "a 29 $mode 0
b 29 $mode 0"
	expect_status "$mode 0 ok 2 a 29 0 b 29 0"
	say "$mode: changes are exactly the 29 chunks written, discarded or zeroed"

	# Paging: any MAX gives the same ranges; a START inside a range starts there.
	want=$(bitmap_export t050 a)
	for m in 1 2 3 7; do
		[ "$(bitmap_export t050 a $m)" = "$want" ] || fail "paging with MAX=$m differs"
	done
	[ "$(dmsetup message t050 0 bitmap_changes a 0 2)" = "6 0+1 5+1" ] ||
		fail "first page of 2: '$(dmsetup message t050 0 bitmap_changes a 0 2)'"
	[ "$(dmsetup message t050 0 bitmap_changes a 25 2)" = "54 25+11 50+4" ] ||
		fail "page from 25: '$(dmsetup message t050 0 bitmap_changes a 25 2)'"
	[ "$(dmsetup message t050 0 bitmap_changes a $last)" = "end $last+1" ] || fail "page from the last chunk"
	[ "$(dmsetup message t050 0 bitmap_changes a $((last + 1)))" = "end" ] || fail "page past the end"
	[ "$(dmsetup message t050 0 bitmap_changes a 99999999999)" = "end" ] || fail "page far past the end"

	# 4000 more ranges of one chunk (buffered writes, then fsync): more
	# than one reply holds (16 KiB for dmsetup), so even one call per page
	# needs several pages.
	python3 - $dev $CB <<-'PY'
	import os, sys
	fd = os.open(sys.argv[1], os.O_WRONLY)
	cb = int(sys.argv[2])
	for c in range(1000, 9000, 2):
	    os.pwrite(fd, b"\x5a" * 4096, c * cb + 8192)
	os.fsync(fd)
	PY
	want=$( { printf '0 1\n5 1\n9 2\n20 16\n50 4\n100 2\n110 1\n120 1\n'
		  seq 1000 2 8998 | sed 's/$/ 1/'; echo "$last 1"; } )
	[ "$(bitmap_export t050 a)" = "$want" ] || fail "4009 ranges: export differs from what was written"
	[ "$(bitmap_export t050 a 300)" = "$want" ] || fail "4009 ranges: paging with MAX=300 differs"
	[ "$(bitmap_export t050 b 1000)" = "$want" ] || fail "4009 ranges: bitmap b (MAX=1000) differs"
	pgs=0
	n=0
	while :; do
		m=$(dmsetup message t050 0 bitmap_changes a $n)
		pgs=$((pgs + 1))
		n=${m%% *}
		[ "$n" = end ] && break
	done
	[ $pgs -gt 1 ] || fail "4009 ranges fit in one reply: the reply limit was not exercised"
	say "$mode: 4009 ranges identical in $pgs full pages, and paged by MAX=300 and 1000"

	# Clear and merge. Make a = {R}, b = {Q, R}: then merge a b gives a = {Q, R}.
	dmsetup message t050 0 bitmap_clear a
	dmsetup message t050 0 bitmap_clear b
	expect_changes a "end"
	expect_changes b "end"
	wr $((7000 * CB)) 4096				# P = 7000, in both
	dmsetup message t050 0 bitmap_clear b
	wr $((7100 * CB)) $((2 * CB))			# Q = 7100, 7101
	dmsetup message t050 0 bitmap_clear a
	wr $((7200 * CB)) 4096				# R = 7200
	expect_changes a "end 7200+1"
	expect_changes b "end 7100+2 7200+1"
	msg_refused t050 "$ENOENT" bitmap_merge a c
	dmsetup message t050 0 bitmap_merge a a
	expect_changes a "end 7200+1"
	dmsetup message t050 0 bitmap_merge a b
	expect_changes a "end 7100+2 7200+1"
	expect_changes b "end 7100+2 7200+1"
	dmsetup message t050 0 bitmap_clear b
	wr $((7300 * CB)) 4096
	dmsetup message t050 0 bitmap_merge b a
	expect_changes b "end 7100+2 7200+1 7300+1"
	expect_changes a "end 7100+2 7200+1 7300+1"
	say "$mode: clear empties one bitmap only; merge ORs src into dst, src unchanged"

	# A backup transaction: the view freezes a; a restarts empty.
	dmsetup message t050 0 bitmap_clear b
	expect_ctr_fail t050x "0 $sz fleece $ORIGIN $SCRATCH 1 bitmap" "Invalid bitmap name"
	expect_ctr_fail t050x "0 $sz fleece $ORIGIN $SCRATCH 2 bitmap x/y" "Invalid bitmap name"
	expect_ctr_fail t050x "0 $sz fleece $ORIGIN $SCRATCH 1 full" "Option full needs a bitmap"
	expect_ctr_fail t050x "0 $sz fleece $ORIGIN $SCRATCH 3 bitmap a writable" \
		"Writable incremental views are not supported"
	dmsetup suspend t050
	expect_ctr_fail t050x "0 $sz fleece $ORIGIN $SCRATCH 2 bitmap nosuch" "No such bitmap on this origin"
	dmsetup resume t050
	expect_list "a 4 $mode 0
b 0 $mode 0"
	view_create t050v t050 "0 $sz fleece $ORIGIN $SCRATCH 2 bitmap a"
	[ "$(dmsetup status t050v | awk '{ print $14, $15 }')" = "a open" ] || fail "view status: $(dmsetup status t050v)"
	expect_list "a 0 $mode 1
b 0 $mode 0"
	expect_status "$mode 1 ok 2 a 0 1 b 0 0"
	[ "$(dmsetup message t050v 0 changes)" = "end 7100+2 7200+1 7300+1" ] ||
		fail "view changes: '$(dmsetup message t050v 0 changes)'"
	[ "$(ranges_export t050v 1 changes)" = "$(printf '7100 2\n7200 1\n7300 1')" ] || fail "view changes paged"
	msgs_refused t050 <<-EOF
	t050|$EBUSY|bitmap_remove a
	t050|$EBUSY|bitmap_clear a
	t050v|$EINVAL|changes x
	t050v|$EINVAL|changes 0 0
	t050v|$EINVAL|changes 0 1 2
	t050v|$EINVAL|commit now
	t050v|$EINVAL|frobnicate
	EOF
	wr $((7400 * CB)) 4096
	expect_changes a "end 7400+1"
	expect_changes b "end 7400+1"
	dmsetup remove t050v
	expect_changes a "end 7100+2 7200+1 7300+1 7400+1"
	expect_list "a 5 $mode 0
b 1 $mode 0"
	say "$mode: a view froze a (EBUSY for remove and clear); removed uncommitted, the set came back"

	view_create t050v t050 "0 $sz fleece $ORIGIN $SCRATCH 2 bitmap a"
	wr $((7500 * CB)) 4096
	dmsetup message t050v 0 commit
	[ "$(dmsetup status t050v | awk '{ print $14, $15 }')" = "a committed" ] || fail "view status after commit"
	[ "$(dmsetup message t050v 0 changes)" = "end 7100+2 7200+1 7300+1 7400+1" ] ||
		fail "view changes after commit: '$(dmsetup message t050v 0 changes)'"
	msgs_refused t050 <<-EOF
	t050v|Operation already in progress|commit
	t050|$EBUSY|bitmap_remove a
	t050|$EBUSY|bitmap_clear a
	EOF
	expect_list "a 1 $mode 1
b 2 $mode 0"
	dmsetup remove t050v
	expect_changes a "end 7500+1"
	expect_list "a 1 $mode 0
b 2 $mode 0"
	say "$mode: committed (again: EALREADY), removed: a holds only what came after"

	# A plain view has no transaction; a full one lists every chunk.
	view_create t050p t050 "0 $sz fleece $ORIGIN $SCRATCH"
	msgs_refused t050 <<-EOF
	t050p|$ENOENT|commit
	t050p|$ENOENT|changes
	EOF
	[ "$(dmsetup status t050p | awk '{ print $14, $15 }')" = "- -" ] || fail "plain view status"
	dmsetup remove t050p
	view_create t050v t050 "0 $sz fleece $ORIGIN $SCRATCH 3 bitmap a full"
	[ "$(dmsetup message t050v 0 changes)" = "end 0+$((last + 1))" ] ||
		fail "full view changes: '$(dmsetup message t050v 0 changes)'"
	wr $((7700 * CB)) 4096
	dmsetup message t050v 0 commit
	dmsetup remove t050v
	expect_changes a "end 7700+1"
	say "$mode: a plain view has no transaction (ENOENT); a full one lists all chunks"
}

# The volatile pass is 053-bitmap-messages-volatile.sh (the same checks; one
# test each keeps both within the suite's time limit).
if [ "${1:-persistent}" = volatile ]; then
	exercise volatile
	dmsetup remove t050
	origin_up -
	expect_status "volatile 0 ok 0"
	expect_list ""
	dmsetup remove t050
	say "volatile: recreated, no bitmaps remain"
	exit 0
fi

zero_dev $META 0 $((4 << 20))
exercise persistent
before=$(bitmap_state t050)
# A clean detach and an attach that vouches (as the boot units do): the
# same bitmaps, trusted. Tests 069 and 045 cover the others.
dmsetup message t050 0 clean_detach
dmsetup remove t050
dmsetup create t050 --table "0 $sz fleece-origin $ORIGIN $META $CH 1 no_gap"
after=$(bitmap_state t050)
[ "$before" = "$after" ] || { echo "$before"; echo "--"; echo "$after"; fail "bitmaps differ after recreating the fleece-origin"; } >&2
say "persistent: recreated on the same metadata, bitmaps and ranges identical"

# A transaction left open when the fleece-origin goes away is merged back
# at the next activation.
view_create t050v t050 "0 $sz fleece $ORIGIN $SCRATCH 2 bitmap a"
wr $((7800 * CB)) 4096
dmsetup remove t050
dmsetup remove t050v
origin_up $META
expect_changes a "end 7700+1 7800+1"
expect_list "a 2 persistent 0
b 4 persistent 0"
dmsetup remove t050
say "persistent: an open transaction left on disk was merged back at activation"
