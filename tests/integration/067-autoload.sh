#!/bin/bash
# The module loads itself (issue 14, item 1): device-mapper asks modprobe
# for "dm-<target type>"; "dm-fleece" is the module's name and
# "dm-fleece-origin" its alias. Without the module installed, fleecectl
# says so in words. In the guest, /lib/modules is the host's under a tmpfs
# overlay, so installing there touches nothing outside the VM.
. "$(dirname "$0")/lib.sh"

KV=$(uname -r)
INST=/lib/modules/$KV/updates/dm-fleece.ko

# depmod -a reads every module of the kernel over 9p: minutes on a busy
# host. It runs once, after the install; the installed copy stays in the
# VM's overlay (the later tests load the module themselves).
cleanup() {
	dmsetup remove t067 2>/dev/null || true
	lsmod | grep -q '^dm_fleece ' || load_module
}
trap cleanup EXIT

modprobe dm-mod
rmmod dm_fleece || fail "cannot unload dm_fleece for the test (still in use?)"
# Installed on the host (make install): hide it from this VM first.
if modinfo -F filename dm_fleece >/dev/null 2>&1; then
	rm -f "$(modinfo -F filename dm_fleece)"
	depmod -a "$KV"
fi

# Not installed: a clear message, nothing created.
expect_err 1 "create t067: .*the dm-fleece module is not loaded and could not be loaded; is it installed for this kernel\\?" \
	"$FLEECECTL" create t067 "$ORIGIN"
dmsetup info t067 >/dev/null 2>&1 && fail "a refused create left t067 behind"

# Installed: a fleece-origin table loads the module by its alias.
mkdir -p "$(dirname "$INST")"
cp "$MODULE" "$INST"
depmod -a "$KV"
modinfo -F alias dm_fleece | grep -qx dm-fleece-origin || fail "no dm-fleece-origin alias in the installed module"
dmsetup create t067 --table "0 2048 fleece-origin $ORIGIN - 8" || fail "fleece-origin did not load the module"
lsmod | grep -q '^dm_fleece ' || fail "dm_fleece is not loaded after the fleece-origin table"
dd if=/dev/urandom of="$WORK/data" bs=4k count=16 status=none
dd if="$WORK/data" of=/dev/mapper/t067 bs=4k oflag=direct status=none
dev_cmp "$ORIGIN" 0 65536 "$WORK/data" 0 || fail "the autoloaded target did not write the origin"
dmsetup remove t067
info "a fleece-origin table loaded the module (alias dm-fleece-origin)"

# A view table loads it by the module's name: the constructor runs (and
# refuses: no fleece-origin), rather than "unknown target type".
rmmod dm_fleece || fail "cannot unload dm_fleece"
expect_ctr_fail t067 "0 8 fleece $ORIGIN $SCRATCH" "No fleece-origin device on this origin"
lsmod | grep -q '^dm_fleece ' || fail "dm_fleece is not loaded after the fleece table"
info "a fleece table loaded the module (dm-fleece)"
