#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# tests/pkg/guest.sh PKGDIR SRCDIR: the VM half of tests/pkg/check. Runs as
# root in a throw-away VM (tests/vm/run) with two disks, origin (64 MiB) and
# scratch (32 MiB); what it installs lands in the VM's tmpfs overlay.
#
#   1. dpkg -i the dm-fleece-dkms and fleecectl packages from PKGDIR: DKMS
#      builds the module for the running kernel (timed);
#   2. modprobe dm_fleece (from /lib/modules/$(uname -r)/updates);
#   3. fleecectl create, snapshot, a write to the origin: the view must read
#      back the origin's bytes from before the snapshot; release, remove;
#   4. dpkg -r both: the module file must be gone;
#   5. make install in SRCDIR (built on the host for this kernel), modprobe,
#      the same session test, make uninstall: everything gone again.
#
# Prints "PASS what" / "FAIL what" lines and stops at the first failure.
set -uo pipefail

pkgdir=${1:?usage: tests/pkg/guest.sh PKGDIR SRCDIR}
src=${2:?usage: tests/pkg/guest.sh PKGDIR SRCDIR}
kver=$(uname -r)
ORIGIN=/dev/disk/by-id/virtio-origin
SCRATCH=/dev/disk/by-id/virtio-scratch
work=/tmp/pkg-check
mkdir -p "$work"

pass() { echo "PASS [$kver] $*"; }
fail() {
	echo "FAIL [$kver] $*" >&2
	exit 1
}
# run LOG CMD...: run CMD with its output in LOG; on failure show LOG's tail.
run() {
	local log=$1
	shift
	if ! "$@" > "$log" 2>&1; then
		echo "---- $* (tail of its output) ----" >&2
		tail -n 40 "$log" >&2
		echo "----" >&2
		return 1
	fi
}

dev_sha() { dd if="$1" bs=1M iflag=direct status=none | sha256sum | cut -d' ' -f1; }

# session_test FLEECECTL: a point-in-time view must keep the origin's bytes
# from before the snapshot while the origin is overwritten.
session_test() {
	local fc=$1 sz pre post view expect
	sz=$(blockdev --getsize64 "$ORIGIN") || fail "cannot size $ORIGIN"
	head -c "$sz" /dev/urandom > "$work/before" || fail "cannot make test data"
	dd if="$work/before" of="$ORIGIN" bs=1M oflag=direct conv=fsync status=none ||
		fail "cannot write $ORIGIN"

	"$fc" create pkgtest "$ORIGIN" > "$work/create.out" 2>&1 ||
		fail "fleecectl create pkgtest $ORIGIN: $(cat "$work/create.out")"
	[ -b /dev/mapper/pkgtest ] || fail "fleecectl create made no /dev/mapper/pkgtest"
	pre=$(dev_sha /dev/mapper/pkgtest)
	[ "$pre" = "$(sha256sum < "$work/before" | cut -d' ' -f1)" ] ||
		fail "/dev/mapper/pkgtest does not read back what was written to $ORIGIN"

	view=$("$fc" snapshot pkgtest --scratch "$SCRATCH" 2> "$work/snapshot.err") ||
		fail "fleecectl snapshot pkgtest --scratch $SCRATCH: $(cat "$work/snapshot.err")"
	[ -b "$view" ] || fail "fleecectl snapshot printed '$view', not a block device"

	# Overwrite 8 MiB in the middle of the origin through fleece-origin.
	head -c 8M /dev/urandom > "$work/new" || fail "cannot make test data"
	cp "$work/before" "$work/after"
	dd if="$work/new" of="$work/after" bs=1M seek=16 conv=notrunc status=none
	dd if="$work/new" of=/dev/mapper/pkgtest bs=1M seek=16 oflag=direct conv=fsync status=none ||
		fail "cannot write /dev/mapper/pkgtest"
	post=$(dev_sha /dev/mapper/pkgtest)
	expect=$(sha256sum < "$work/after" | cut -d' ' -f1)
	[ "$post" = "$expect" ] || fail "the origin does not read back the new write"
	[ "$post" != "$pre" ] || fail "the write did not change the origin's bytes"
	[ "$(dev_sha "$view")" = "$pre" ] ||
		fail "the view $view does not read the origin's bytes from before the snapshot"
	pass "$fc: the view reads the pre-snapshot bytes (sha256 ${pre:0:16}...) after the origin changed"

	"$fc" release "$view" > "$work/release.out" 2>&1 ||
		fail "fleecectl release $view: $(cat "$work/release.out")"
	[ ! -e "$view" ] || fail "fleecectl release left $view"
	"$fc" remove pkgtest > "$work/remove.out" 2>&1 ||
		fail "fleecectl remove pkgtest: $(cat "$work/remove.out")"
	[ ! -e /dev/mapper/pkgtest ] || fail "fleecectl remove left /dev/mapper/pkgtest"
	pass "fleecectl release and remove"
}

# load_module WHERE: modprobe dm_fleece must take the module from WHERE
# (a directory under /lib/modules/$kver/updates). Sets modpath.
modpath=
load_module() {
	local where=$1 path
	path=$(modinfo -n dm_fleece 2>/dev/null) || fail "modinfo finds no dm_fleece module (depmod?)"
	case "$path" in
	"$where"/dm-fleece.ko|"$where"/dm-fleece.ko.*) ;;
	*) fail "modinfo -n dm_fleece is $path, expected it in $where" ;;
	esac
	[ -f "$path" ] || fail "$path is missing"
	run "$work/modprobe.log" modprobe dm_fleece || fail "modprobe dm_fleece failed"
	[ -d /sys/module/dm_fleece ] || fail "modprobe dm_fleece loaded nothing"
	dmsetup targets > "$work/targets" || fail "dmsetup targets failed"
	grep -q '^fleece-origin ' "$work/targets" && grep -q '^fleece ' "$work/targets" ||
		fail "dmsetup targets lists no fleece/fleece-origin after modprobe"
	pass "modprobe dm_fleece loads $path"
	modpath=$path
}

unload_module() {
	run "$work/rmmod.log" modprobe -r dm_fleece || fail "modprobe -r dm_fleece failed"
	[ ! -d /sys/module/dm_fleece ] || fail "dm_fleece is still loaded"
}

# --- preconditions --------------------------------------------------------
# The VM's /dev is a bare devtmpfs: give it the links systemd would make, as
# dkms uses <(...) (bash's /dev/fd/N).
for l in fd:/proc/self/fd stdin:/proc/self/fd/0 stdout:/proc/self/fd/1 stderr:/proc/self/fd/2; do
	[ -e "/dev/${l%%:*}" ] || ln -s "${l#*:}" "/dev/${l%%:*}" || fail "cannot create /dev/${l%%:*}"
done
export DEBIAN_FRONTEND=noninteractive
[ -e "/lib/modules/$kver/build/Makefile" ] ||
	fail "no kernel headers for $kver in the VM (/lib/modules/$kver/build): apt-get install linux-headers-$kver on the host"
command -v dkms > /dev/null || fail "dkms is not installed on the host (make deps-pkg)"
[ -b "$ORIGIN" ] && [ -b "$SCRATCH" ] || fail "the VM has no $ORIGIN or $SCRATCH disk"
if modinfo -n dm_fleece > /dev/null 2>&1; then
	fail "a dm_fleece module is already installed for $kver ($(modinfo -n dm_fleece)): remove it from the host first"
fi
debs=("$pkgdir"/dm-fleece-dkms_*_all.deb "$pkgdir"/fleecectl_*_*.deb)
[ -f "${debs[0]}" ] && [ -f "${debs[1]}" ] || fail "no dm-fleece-dkms/fleecectl .deb in $pkgdir"
[ ${#debs[@]} -eq 2 ] || fail "more than one version of the packages in $pkgdir: ${debs[*]}"
version=$(dpkg-deb -f "${debs[0]}" Version)
pass "headers for $kver, dkms and both packages ($version) present"

# --- packages -------------------------------------------------------------
start=$SECONDS
run "$work/dpkg-i-fleecectl.log" dpkg -i "${debs[1]}" || fail "dpkg -i ${debs[1]##*/} failed"
echo "  dpkg -i ${debs[1]##*/} took $((SECONDS - start))s"

# DKMS's postinst builds for the running kernel and for the newest one in
# /boot (here the host's other kernel series, tested in its own VM): hide the
# others' config files meanwhile so that TCG compiles the module only once.
mkdir -p "$work/boot"
for f in /boot/config-*; do
	[ "$f" = "/boot/config-$kver" ] || mv "$f" "$work/boot/" || fail "cannot move $f aside"
done
start=$SECONDS
run "$work/dpkg-i-dkms.log" dpkg -i "${debs[0]}" || fail "dpkg -i ${debs[0]##*/} failed"
echo "  dpkg -i ${debs[0]##*/} ($(grep -o 'Building for .*' "$work/dpkg-i-dkms.log" | head -n1)) took $((SECONDS - start))s"
for f in "$work"/boot/config-*; do
	[ -e "$f" ] || continue
	mv "$f" /boot/ || fail "cannot move $f back"
done
dkms status dm-fleece > "$work/dkms-status" 2>&1
grep -q "^dm-fleece/$version, $kver, [^:]*: installed" "$work/dkms-status" ||
	fail "dkms status does not say dm-fleece/$version is installed for $kver: $(cat "$work/dkms-status")"
pass "dpkg -i: DKMS built and installed dm-fleece/$version for $kver"

[ "$(command -v fleecectl)" = /usr/sbin/fleecectl ] || fail "fleecectl is not /usr/sbin/fleecectl after dpkg -i"
[ "$(fleecectl --version)" = "fleecectl $version" ] ||
	fail "fleecectl --version says '$(fleecectl --version)', the package is $version"
[ -f /usr/share/man/man8/fleecectl.8.gz ] || fail "no /usr/share/man/man8/fleecectl.8.gz"
pass "fleecectl $version and its man page installed"

load_module "/lib/modules/$kver/updates/dkms"
session_test /usr/sbin/fleecectl
unload_module

run "$work/dpkg-r.log" dpkg -r fleecectl dm-fleece-dkms || fail "dpkg -r fleecectl dm-fleece-dkms failed"
[ ! -e "$modpath" ] || fail "dpkg -r left $modpath"
! modinfo -n dm_fleece > /dev/null 2>&1 || fail "modinfo still finds dm_fleece after dpkg -r: $(modinfo -n dm_fleece)"
[ ! -e /usr/sbin/fleecectl ] || fail "dpkg -r left /usr/sbin/fleecectl"
[ ! -e "/usr/src/dm-fleece-$version" ] || fail "dpkg -r left /usr/src/dm-fleece-$version"
[ ! -e /var/lib/dkms/dm-fleece ] || fail "dpkg -r left /var/lib/dkms/dm-fleece"
pass "dpkg -r removed $modpath, fleecectl and the DKMS source"

# --- make install ---------------------------------------------------------
start=$SECONDS
run "$work/make-install.log" make -C "$src" install || fail "make install failed"
echo "  make install took $((SECONDS - start))s ($(grep -c ' CC \[M\] ' "$work/make-install.log") files compiled)"
for f in /usr/sbin/fleecectl /usr/share/man/man8/fleecectl.8 /usr/share/doc/dm-fleece/fleece.rst; do
	[ -f "$f" ] || fail "make install did not install $f"
done
load_module "/lib/modules/$kver/updates"
session_test /usr/sbin/fleecectl
unload_module

run "$work/make-uninstall.log" make -C "$src" uninstall || fail "make uninstall failed"
for f in "$modpath" /usr/sbin/fleecectl /usr/share/man/man8/fleecectl.8 /usr/share/doc/dm-fleece; do
	[ ! -e "$f" ] || fail "make uninstall left $f"
done
! modinfo -n dm_fleece > /dev/null 2>&1 || fail "modinfo still finds dm_fleece after make uninstall"
pass "make install: modprobe and a session work; make uninstall removes it all"
exit 0
