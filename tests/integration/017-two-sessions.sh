#!/bin/bash
# Two sessions on one origin, taken at T1 and T2, each with its own scratch
# (slices of $SCRATCH): with writes before T2 and after, each view shows its
# own point in time, and each preserves exactly the chunks written since its
# own start. Removing the first leaves the second correct through further
# writes; a new session then taken (reusing the first one's scratch) shows
# its own point in time.
. "$(dirname "$0")/lib.sh"

sz=$(dev_sectors $ORIGIN)
mib=$((1024 * 1024))
R=$((64 * mib))
ODM=t017o
odev=/dev/mapper/$ODM
half=$(($(dev_sectors $SCRATCH) / 2))
dmsetup create t017s1 --table "0 $half linear $SCRATCH 0"
dmsetup create t017s2 --table "0 $half linear $SCRATCH $half"
dmsetup create $ODM --table "0 $sz fleece-origin $ORIGIN - 8"
pattern t017pre $R > $WORK/img
pattern t017data $((8 * mib)) > $WORK/data
dd if=$WORK/img of=$odev bs=1M oflag=direct status=none

# ow OFF LEN SRC BS: write LEN bytes of $WORK/data from SRC at OFF (bytes)
# with BS-byte writes; the expected image follows; chunks go to $WORK/chunks.
ow() {
	dd if=$WORK/data of=$odev bs=$4 iflag=skip_bytes,count_bytes oflag=direct,seek_bytes \
		skip=$3 seek=$1 count=$2 conv=notrunc status=none || fail "origin write at $1 failed"
	dd if=$WORK/data of=$WORK/img bs=$4 iflag=skip_bytes,count_bytes oflag=seek_bytes \
		skip=$3 seek=$1 count=$2 conv=notrunc status=none
	seq $(($1 / 4096)) $((($1 + $2 - 1) / 4096)) >> $WORK/chunks
}
# nchunks FILE...: distinct chunks in those lists.
nchunks() { cat "$@" | sort -u | wc -l; }
newview() {
	view_create $1 $ODM "0 $sz fleece $ORIGIN /dev/mapper/$2" || fail "cannot create $1"
	cp $WORK/img $WORK/$1.img
}
check() { # check VIEW: the view equals the image saved at its start
	dev_cmp /dev/mapper/$1 0 $R $WORK/$1.img || fail "$1 differs from its point in time ($2)"
}

newview t017v1 t017s1
: > $WORK/chunks
ow 0 $((4 * mib)) 0 1M
ow $((10 * mib)) $((2 * mib)) $mib 64K
ow $((20 * mib + 512)) 1024 $((3 * mib)) 512
mv $WORK/chunks $WORK/w1
newview t017v2 t017s2
[ "$(origin_sessions $ODM)" = 2 ] || fail "fleece-origin has $(origin_sessions $ODM) sessions, expected 2"
ow $((2 * mib)) $((4 * mib)) $((4 * mib)) 1M	# over W1 and beyond
ow $((30 * mib)) $mib 4096 4096
ow $((20 * mib)) 4096 8192 4096			# the chunk W1 wrote into
ow $((10 * mib)) $mib $((5 * mib)) 256K
mv $WORK/chunks $WORK/w2
check t017v1 "T1, after writes before and after T2"
check t017v2 "T2"
dev_cmp $odev 0 $R $WORK/img || fail "origin data wrong"
[ "$(view_stat t017v1 preserved)" = $(nchunks $WORK/w1 $WORK/w2) ] ||
	fail "t017v1 preserves $(view_stat t017v1 preserved) chunks, $(nchunks $WORK/w1 $WORK/w2) were written since T1"
[ "$(view_stat t017v2 preserved)" = $(nchunks $WORK/w2) ] ||
	fail "t017v2 preserves $(view_stat t017v2 preserved) chunks, $(nchunks $WORK/w2) were written since T2"
info "two views at T1 and T2 correct; origin correct"

dmsetup remove t017v1
[ "$(origin_sessions $ODM)" = 1 ] || fail "fleece-origin has $(origin_sessions $ODM) sessions, expected 1"
: > $WORK/chunks
ow 0 $mib $((6 * mib)) 64K
ow $((40 * mib)) $mib $((7 * mib)) 1M
ow $((2 * mib)) 4096 0 4096
mv $WORK/chunks $WORK/w3
check t017v2 "after the first view was removed"
dev_cmp $odev 0 $R $WORK/img || fail "origin data wrong after the first view was removed"
[ "$(view_stat t017v2 preserved)" = $(nchunks $WORK/w2 $WORK/w3) ] ||
	fail "t017v2 preserves $(view_stat t017v2 preserved) chunks, $(nchunks $WORK/w2 $WORK/w3) were written since T2"
info "second view still correct after the first was removed"

newview t017v3 t017s1
: > $WORK/chunks
ow 0 $((8 * mib)) 0 4M
ow $((40 * mib + 4096)) 4096 12288 4096
mv $WORK/chunks $WORK/w4
check t017v2 "T2, with a third session"
check t017v3 "T3"
dev_cmp $odev 0 $R $WORK/img || fail "origin data wrong with the third session"
[ "$(view_stat t017v3 preserved)" = $(nchunks $WORK/w4) ] ||
	fail "t017v3 preserves $(view_stat t017v3 preserved) chunks, $(nchunks $WORK/w4) were written since T3"
dmsetup remove t017v2
check t017v3 "after the second view was removed"
dmsetup remove t017v3
[ "$(origin_sessions $ODM)" = 0 ] || fail "fleece-origin has $(origin_sessions $ODM) sessions, expected 0"
dev_cmp $ORIGIN 0 $R $WORK/img || fail "origin device data wrong at the end"
dmsetup remove $ODM t017s1 t017s2
info "a new session reusing the first scratch shows T3; all removed cleanly"
