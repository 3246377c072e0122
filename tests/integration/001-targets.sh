#!/bin/bash
# The module registers both targets and unloads cleanly.
. "$(dirname "$0")/lib.sh"

targets=$(dmsetup targets)
echo "$targets" | grep -qE '^fleece-origin +v[0-9]+\.[0-9]+\.[0-9]+' || fail "fleece-origin not in 'dmsetup targets'"
echo "$targets" | grep -qE '^fleece +v[0-9]+\.[0-9]+\.[0-9]+' || fail "fleece not in 'dmsetup targets'"
info "$(echo "$targets" | grep fleece | tr -s ' ' | paste -sd ';')"

# A device holds a module reference: rmmod must refuse while it exists.
dmsetup create t001 --table "0 $(dev_sectors $ORIGIN) fleece-origin $ORIGIN - 8"
if rmmod dm_fleece 2>/dev/null; then
	fail "rmmod succeeded while a fleece-origin device exists"
fi
dmsetup remove t001
rmmod dm_fleece || fail "rmmod failed with no device left"
insmod "$MODULE" || fail "insmod after rmmod failed"
dmsetup targets | grep -q '^fleece-origin' || fail "targets missing after reload"
