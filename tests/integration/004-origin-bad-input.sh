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
dmsetup ls | grep -q t004 && fail "a device was left behind"

# Two writers of the same sectors: an origin, a metadata device and a
# session's scratch device are each one device's only.
half=$(((sz / 2) & ~127))
msz=32768
dmsetup create t004a --table "0 $half linear $ORIGIN 0"
dmsetup create t004b --table "0 $half linear $ORIGIN $half"
dmsetup create t004m --table "0 $msz linear $META 0"
dd if=/dev/zero of=/dev/mapper/t004m bs=1M count=$((msz / 2048)) oflag=direct status=none
dmsetup create t004oa --table "0 $half fleece-origin /dev/mapper/t004a /dev/mapper/t004m 128"
pre=$(range_sha /dev/mapper/t004m 0 $((msz * 512)))
expect_ctr_fail t004ob "0 $half fleece-origin /dev/mapper/t004b /dev/mapper/t004m 128" \
	"Metadata device is in use by another fleece-origin"
expect_ctr_fail t004ob "0 $msz fleece-origin /dev/mapper/t004m - 128" \
	"Origin device is the metadata device of another fleece-origin"
expect_ctr_fail t004ob "0 $half fleece-origin /dev/mapper/t004b /dev/mapper/t004a 128" \
	"Metadata device is the origin of another fleece-origin"
expect_ctr_fail t004ob "0 $half fleece-origin /dev/mapper/t004b /dev/mapper/t004oa 128" \
	"Metadata device is a fleece-origin device"
[ "$(range_sha /dev/mapper/t004m 0 $((msz * 512)))" = "$pre" ] ||
	fail "a refused table changed the metadata device in use"
view_create t004v t004oa "0 $half fleece /dev/mapper/t004a $SCRATCH" || fail "cannot create the view"
pre=$(range_sha /dev/mapper/t004m 0 $((msz * 512)))
expect_ctr_fail t004ob "0 $half fleece-origin /dev/mapper/t004b $SCRATCH 128" \
	"Metadata device is the scratch device of a session"
expect_ctr_fail t004ob "0 $half fleece-origin $SCRATCH - 128" \
	"Origin device is the scratch device of a session"
[ "$(range_sha /dev/mapper/t004m 0 $((msz * 512)))" = "$pre" ] ||
	fail "a refused table changed the metadata device in use"
dmsetup remove t004v t004oa
# Each is taken once the other is gone.
dmsetup create t004ob --table "0 $half fleece-origin /dev/mapper/t004b /dev/mapper/t004m 128" ||
	fail "the metadata device was refused once its fleece-origin was gone"
dmsetup remove t004ob t004m t004b t004a
# The origin is untouched by all of this.
dmsetup ls | grep -q t004 && fail "a device was left behind"
true
