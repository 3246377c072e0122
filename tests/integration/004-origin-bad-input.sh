#!/bin/bash
# Every constructor fault is refused with its own error, and nothing is created.
. "$(dirname "$0")/lib.sh"

sz=$(dev_sectors $ORIGIN)
t="0 $sz fleece-origin"
expect_ctr_fail t004 "$t" "Not enough arguments"
expect_ctr_fail t004 "$t $ORIGIN" "Not enough arguments"
expect_ctr_fail t004 "$t $ORIGIN -" "Not enough arguments"
expect_ctr_fail t004 "$t /dev/nonexistent - 8" "Cannot open origin device"
expect_ctr_fail t004 "$t $ORIGIN /dev/nonexistent 8" "Cannot open metadata device"
expect_ctr_fail t004 "$t $ORIGIN $ORIGIN 8" "Metadata device must not be the origin device"
expect_ctr_fail t004 "$t $ORIGIN - abc" "Invalid chunk size: not a number"
expect_ctr_fail t004 "$t $ORIGIN - -8" "Invalid chunk size: not a number"
expect_ctr_fail t004 "$t $ORIGIN - 8x" "Invalid chunk size: not a number"
expect_ctr_fail t004 "$t $ORIGIN - 99999999999999999999" "Invalid chunk size: not a number"
expect_ctr_fail t004 "$t $ORIGIN - 24" "Invalid chunk size: not a power of two"
expect_ctr_fail t004 "$t $ORIGIN - 0" "Invalid chunk size: not a power of two"
expect_ctr_fail t004 "$t $ORIGIN - 4" "Invalid chunk size: under 8 sectors"
expect_ctr_fail t004 "$t $ORIGIN - 4194304" "Invalid chunk size: over 2097152 sectors"
expect_ctr_fail t004 "$t $ORIGIN - 8 1 foo" "Unknown feature argument"
expect_ctr_fail t004 "$t $ORIGIN - 8 4 no_gap no_gap no_gap no_gap" "Invalid number of feature arguments"
expect_ctr_fail t004 "$t $ORIGIN - 8 2 no_gap" "Invalid number of feature arguments"
expect_ctr_fail t004 "$t $ORIGIN - 8 x" "Invalid number of feature arguments"
expect_ctr_fail t004 "$t $ORIGIN - 8 0 extra" "Too many arguments"
expect_ctr_fail t004 "$t $ORIGIN - 8 1 no_gap extra" "Too many arguments"
expect_ctr_fail t004 "$t $ORIGIN - 8 1 origin_id" "Invalid origin_id: 1 to 127 printable ASCII characters"
expect_ctr_fail t004 "0 $((sz + 8)) fleece-origin $ORIGIN - 8" "Origin device is smaller than the target"
# The origin is untouched by all of this.
dmsetup ls | grep -q t004 && fail "a device was left behind"
true
