#!/bin/bash
# fleecectl export: a view served read-only over NBD (qemu-nbd) and pulled
# by stock clients on the same machine. A full pull (nbdcopy, qemu-img
# convert) is byte-identical to a local read of the view; with --bitmap the
# view's changed ranges are the metadata context qemu:dirty-bitmap:BITMAP,
# nbdinfo --map lists exactly the ranges "fleecectl changes" prints, and
# pulling only those onto a copy of the full image gives the view. Over a
# unix socket (foreground and --daemon) and TCP on 127.0.0.1, under the
# default (empty) export name; qemu-nbd reads the view with O_DIRECT.
# Refusals name the device and the reason, exit non-zero (3 no such view,
# 5 invalid session, else 1) and change nothing. (--name: also 049.)
. "$(dirname "$0")/lib.sh"
F=$FLEECECTL
mib=$((1024 * 1024))
size=$((64 * mib))
PORT=10847
S=$WORK/nbd.sock

# The guest brings up no network: loopback is all the TCP run needs.
ip link set lo up

sha() { sha256sum < "$1" | cut -d' ' -f1; }
trap stop_exports EXIT

dmsetup create t047o --table "0 $((size / 512)) linear $ORIGIN 0"
blkdiscard -f /dev/mapper/t047o 2>/dev/null
expect_rc 0 $F create t047 /dev/mapper/t047o --meta $META
D=/dev/mapper/t047
expect_rc 0 $F bitmap add t047 nightly
stamp $D 0 $((6 * mib)) a >/dev/null
stamp $D $((40 * mib)) $((3 * mib)) b >/dev/null

# T0: full snapshot, exported in the foreground over a unix socket.
expect_rc 0 $F snapshot t047 --scratch $SCRATCH --bitmap nightly --full --view t047v
ref0=$(dev_sha /dev/mapper/t047v)
# A socket nobody listens on (left by a killed server) is replaced.
python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' $S
[ -S $S ] || fail "no stale socket made"
export_bg full t047v --socket $S
U="nbd+unix:///?socket=$S"
grep -q "^export t047v: serving /dev/mapper/t047v read-only over NBD ($size bytes)" $WORK/full.out ||
	fail "export said: $(cat $WORK/full.out)"
grep -qx "  uri:      $U" $WORK/full.out || fail "export gave another URI: $(cat $WORK/full.out)"
[ "$(stat -c %a $S)" = 600 ] || fail "the socket is mode $(stat -c %a $S), not 600"
# Without --name the export name is empty, as before --name: a client
# that asks for another name is refused.
grep -qx "  name:     '' (the default export name: empty)" $WORK/full.out ||
	fail "export named another export: $(cat $WORK/full.out)"
! nbdinfo "nbd+unix:///other?socket=$S" >$WORK/other.out 2>&1 ||
	fail "a client asking for export 'other' was served: $(cat $WORK/other.out)"
server_reads_direct /dev/mapper/t047v
# Writes while the export runs are copied before they land: the pull is T0.
stamp $D $mib $mib c >/dev/null
nbdinfo --json "$U" > $WORK/info.json
json_assert $WORK/info.json 'd["exports"][0]["is_read_only"] is True and d["exports"][0]["export-size"] == '$size
if qemu-io -f raw "$U" -c 'write -P 0x55 0 4096' >$WORK/qio.out 2>&1 && ! grep -q 'failed\|denied' $WORK/qio.out; then
	fail "a write over NBD was accepted: $(cat $WORK/qio.out)"
fi
# base:allocation is truthful (all data): a naive full copy is complete.
nbdinfo --map "$U" | awk '$3 != 0 { bad = 1 } END { exit bad }' ||
	fail "base:allocation reports holes: $(nbdinfo --map "$U")"
nbdcopy "$U" $WORK/full.img
[ "$(sha $WORK/full.img)" = "$ref0" ] || fail "nbdcopy's full image differs from the view"
qemu-img convert -f raw -O raw "$U" $WORK/full2.img
[ "$(sha $WORK/full2.img)" = "$ref0" ] || fail "qemu-img convert's full image differs from the view"
rm -f $WORK/full2.img
[ "$(view_stat t047v released)" = 0 ] || fail "the export released chunks"
export_stop $XPID full
no_leftovers "after the full export"
expect_rc 0 $F release t047v --commit
info "T0: full pull over a unix socket (nbdcopy, qemu-img convert): $size bytes, sha256 == view ($ref0)"

# T1: more writes (sub-chunk, zeroes over data, a discard, the last block),
# an incremental snapshot, exported with --bitmap as a daemon.
stamp $D $((20 * mib + 4096)) 8192 d >/dev/null
zero_dev $D $((40 * mib)) $mib
blkdiscard -o $((42 * mib)) -l $((512 * 1024)) $D
stamp $D $((size - 4096)) 4096 e >/dev/null
expect_rc 0 $F snapshot t047 --scratch $SCRATCH --bitmap nightly --view t047v
ref1=$(dev_sha /dev/mapper/t047v)
expect_rc 0 $F changes t047v
merge < $WORK/stdout > $WORK/changes1
expect_rc 0 $F changes t047v --json
cp $WORK/stdout $WORK/changes1.json
nr=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["nr_ranges"])' $WORK/changes1.json)
bytes=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["changed_bytes"])' $WORK/changes1.json)
expect_rc 0 $F export t047v --bitmap nightly --socket $S --daemon --pid-file $WORK/export.pid
grep -q "changes:  meta context qemu:dirty-bitmap:nightly, $nr ranges, $bytes bytes" $WORK/stdout ||
	fail "export --bitmap said: $(cat $WORK/stdout)"
dpid=$(cat $WORK/export.pid)
kill -0 "$dpid" || fail "the daemon's pid file names no process"
# The overlay is qemu-nbd's image; the view under it is still read with O_DIRECT.
server_reads_direct /dev/mapper/t047v
# A client that ignores the bitmap gets a correct full copy, as long as
# nothing outside the changed ranges has been overwritten since the point
# in time (an incremental view does not preserve those chunks: their reads
# fail then, see Documentation/nbd.rst).
qemu-img convert -f raw -O raw "$U" $WORK/full1.img
[ "$(sha $WORK/full1.img)" = "$ref1" ] || fail "a full pull from the --bitmap export differs from the view"
rm -f $WORK/full1.img
# Writes during the pull: the changed chunks are preserved.
stamp $D $((2 * mib)) $mib f >/dev/null
dirty_map "$U" > $WORK/map1
[ "$(cat $WORK/map1)" = "$(cat $WORK/changes1)" ] ||
	fail "nbdinfo --map lists $(cat $WORK/map1 | tr '\n' ' ') but fleecectl changes $(cat $WORK/changes1 | tr '\n' ' ')"
cp --sparse=always $WORK/full.img $WORK/inc1.img
pulled=$(pull_changes $WORK/inc1.img "file.server.type=unix,file.server.path=$S" "$U")
[ "$pulled" = "$bytes" ] || fail "pulled $pulled bytes, the changes are $bytes"
[ "$(sha $WORK/inc1.img)" = "$ref1" ] || fail "full.img + the pulled changes differs from the view"
info "T1: nbdinfo --map == fleecectl changes ($nr ranges, $bytes bytes); pulled $pulled bytes onto full.img: sha256 == view ($ref1)"

# Refusals while the daemon serves: each exits non-zero, says why, changes nothing.
state=$(bitmap_state t047)
vstatus=$(dmsetup status t047v)
expect_err 1 "export t047v: socket $S is busy: a server listens on it" $F export t047v --socket $S
touch $WORK/plain
expect_err 1 "export t047v: $WORK/plain exists and is not a socket" $F export t047v --socket $WORK/plain
[ -f $WORK/plain ] || fail "a refused export removed a file"
expect_err 3 "export nosuch: no such device-mapper device" $F export nosuch --socket $WORK/x.sock
expect_err 3 "export t047: not a fleece view" $F export t047 --socket $WORK/x.sock
expect_err 1 "export t047v: --bitmap weekly: the view's bitmap is 'nightly'" \
	$F export t047v --bitmap weekly --socket $WORK/x.sock
mkdir -p $WORK/nobin
expect_err 1 "export t047v: qemu-nbd not found in PATH" env PATH=$WORK/nobin $F export t047v --socket $WORK/x.sock
mkdir -p $WORK/onlynbd
ln -sf "$(command -v qemu-nbd)" $WORK/onlynbd/qemu-nbd
expect_err 1 "export t047v: qemu-img not found in PATH" \
	env PATH=$WORK/onlynbd $F export t047v --bitmap nightly --socket $WORK/x.sock
expect_err 2 "needs --socket PATH or --port N" $F export t047v
expect_err 2 "--bind goes with --port" $F export t047v --socket $WORK/x.sock --bind 127.0.0.1
expect_err 2 "invalid --port '70000'" $F export t047v --port 70000
[ ! -e $WORK/x.sock ] || fail "a refused export left $WORK/x.sock"
[ "$(bitmap_state t047)" = "$state" ] || fail "a refused export changed the bitmaps"
[ "$(dmsetup status t047v)" = "$vstatus" ] || fail "a refused export changed the view: $(dmsetup status t047v)"
kill -0 "$dpid" || fail "a refused export stopped the running one"
info "refused: busy socket, not a socket, no such view, not a view, wrong bitmap, no qemu-nbd/qemu-img, usage"

kill -TERM "$dpid"
for i in $(seq 100); do kill -0 "$dpid" 2>/dev/null || break; sleep 0.1; done
! kill -0 "$dpid" 2>/dev/null || fail "the daemon did not stop on SIGTERM"
dpid=
[ ! -e $WORK/export.pid ] || fail "the daemon left its pid file"
no_leftovers "after the daemon"
expect_rc 0 $F release t047v --commit
info "the daemon stopped on SIGTERM: no socket, pid file or files left"

# T2: TCP on 127.0.0.1, --bitmap, in the foreground; a busy port refused.
stamp $D $((30 * mib)) 65536 g >/dev/null
stamp $D $((50 * mib + 512)) 512 h >/dev/null
expect_rc 0 $F snapshot t047 --scratch $SCRATCH --bitmap nightly --view t047v
ref2=$(dev_sha /dev/mapper/t047v)
expect_rc 0 $F changes t047v
merge < $WORK/stdout > $WORK/changes2
export_bg tcp t047v --bitmap nightly --port $PORT --bind 127.0.0.1
T="nbd://127.0.0.1:$PORT/"
grep -qx "  uri:      $T" $WORK/tcp.out || fail "export gave another URI: $(cat $WORK/tcp.out)"
expect_err 1 "export t047v: port $PORT on 127.0.0.1 is busy" $F export t047v --port $PORT
dirty_map "$T" > $WORK/map2
[ "$(cat $WORK/map2)" = "$(cat $WORK/changes2)" ] || fail "over TCP nbdinfo --map lists $(cat $WORK/map2 | tr '\n' ' ')"
nbdcopy "$T" $WORK/full2.img
[ "$(sha $WORK/full2.img)" = "$ref2" ] || fail "nbdcopy over TCP differs from the view"
pulled2=$(pull_changes $WORK/inc1.img "file.server.type=inet,file.server.host=127.0.0.1,file.server.port=$PORT" "$T")
[ "$(sha $WORK/inc1.img)" = "$ref2" ] || fail "inc1.img + the changes pulled over TCP differs from the view"
export_stop $XPID tcp
no_leftovers "after the TCP export"
ss -ltn | grep -q ":$PORT " && fail "port $PORT still listening"
expect_rc 0 $F release t047v --commit
info "T2: TCP 127.0.0.1:$PORT: full pull sha256 == view ($ref2); $pulled2 changed bytes pulled, image == view"

# A plain view has no bitmap; an invalid view is refused (1-chunk scratch).
expect_rc 0 $F snapshot t047 --scratch $SCRATCH --view t047p
expect_err 1 "export t047p: --bitmap nightly: the view has no bitmap" \
	$F export t047p --bitmap nightly --socket $S
expect_rc 0 $F release t047p
dmsetup create t047s --table "0 128 linear $SCRATCH 0"
expect_rc 0 $F snapshot t047 --scratch /dev/mapper/t047s --bitmap nightly --full --view t047v
stamp $D $((50 * mib)) 4096 i >/dev/null
stamp $D $((60 * mib)) 4096 j >/dev/null
[ "$(view_stat t047v state)" = Invalid ] || fail "the view is $(view_stat t047v state) with scratch full"
expect_err 5 "export t047v: the session is invalid" $F export t047v --socket $S
no_leftovers "after the refusals"
expect_rc 0 $F release t047v
dmsetup remove t047s
info "refused: a plain view with --bitmap, an invalid view"

expect_rc 0 $F remove t047
dmsetup remove t047o
