#!/bin/bash
# STATUSTYPE_TABLE gives the table line back exactly; INFO has its fields.
. "$(dirname "$0")/lib.sh"

sz=$(dev_sectors $ORIGIN)
check_table() {
	local args=$1
	dmsetup create t003 --table "0 $sz fleece-origin $args"
	got=$(dmsetup table t003)
	[ "$got" = "0 $sz fleece-origin $args" ] || fail "table '$args' came back as '$got'"
	dmsetup remove t003
	info "table back exactly: $args"
}
check_table "$ORIGIN - 8"
check_table "$ORIGIN $META 128"
check_table "$ORIGIN - 1024 0"
majmin=$(printf '%d:%d' $(stat -L -c '0x%t 0x%T' $ORIGIN))
check_table "$majmin - 64"

dmsetup create t003 --table "0 $sz fleece-origin $ORIGIN - 8"
set -- $(dmsetup status t003)
[ "$4" = volatile ] || fail "status metadata mode '$4', expected volatile"
[ "$5" = 0 ] || fail "status sessions '$5', expected 0"
dmsetup remove t003
# The metadata formatted above is for 128-sector chunks: start afresh.
blkdiscard $META
dmsetup create t003 --table "0 $sz fleece-origin $ORIGIN $META 8"
set -- $(dmsetup status t003)
[ "$4" = persistent ] || fail "status metadata mode '$4', expected persistent"
dmsetup remove t003
