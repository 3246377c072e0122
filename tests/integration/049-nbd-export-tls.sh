#!/bin/bash
# fleecectl export --name and --tls-creds: a libvirt-style client connects
# by export name, and a remote pull can be encrypted and authenticated.
# Every pull is compared byte for byte (sha256) with a local read of the
# view. A client that asks for another name, a client without TLS and a
# TLS client without a certificate of the CA are refused; --tls-authz lets
# only one certificate name in. A bad --tls-creds directory is refused
# before anything starts: exit 1, the path named, no server, no socket.
. "$(dirname "$0")/lib.sh"
F=$FLEECECTL
mib=$((1024 * 1024))
size=$((32 * mib))
PORT=10849
S=$WORK/nbd.sock
PKI=$WORK/pki

ip link set lo up
trap stop_exports EXIT

# make_pki DIR: a throwaway CA and two certificates it signs, in qemu's
# file names: DIR/server (CN=server) for fleecectl, DIR/client (CN=client)
# for the clients; DIR/nocert holds the CA only.
make_pki() {
	local d=$1 who
	rm -rf "$d"
	mkdir -p "$d/server" "$d/client" "$d/nocert"
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=fleece test CA" \
		-keyout "$d/ca-key.pem" -out "$d/ca-cert.pem" \
		-addext basicConstraints=critical,CA:TRUE \
		-addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
	for who in server client; do
		openssl req -newkey rsa:2048 -nodes -subj "/CN=$who" \
			-keyout "$d/$who/$who-key.pem" -out "$d/$who.csr" 2>/dev/null
		printf '%s\n' basicConstraints=critical,CA:FALSE \
			keyUsage=critical,digitalSignature,keyEncipherment \
			extendedKeyUsage=${who}Auth subjectAltName=DNS:localhost,IP:127.0.0.1 \
			> "$d/$who.ext"
		openssl x509 -req -in "$d/$who.csr" -CA "$d/ca-cert.pem" -CAkey "$d/ca-key.pem" \
			-CAcreateserial -days 2 -extfile "$d/$who.ext" \
			-out "$d/$who/$who-cert.pem" 2>/dev/null
		cp "$d/ca-cert.pem" "$d/$who/"
	done
	cp "$d/ca-cert.pem" "$d/nocert/"
	[ -s "$d/client/client-cert.pem" ] && [ -s "$d/server/server-cert.pem" ] ||
		fail "openssl made no certificates"
}

# pull OUT SERVER EXPORT [TLSDIR]: qemu-img convert the whole export into
# OUT; SERVER is the nbd driver's server options. Returns qemu-img's status.
pull() {
	local out=$1 server=$2 name=$3 tls=${4:-}
	rm -f "$out"
	if [ -n "$tls" ]; then
		qemu-img convert --object "tls-creds-x509,id=tls0,endpoint=client,dir=$tls" \
			--image-opts "driver=nbd,$server,export=$name,tls-creds=tls0,tls-hostname=localhost" \
			-O raw "$out" 2>"$WORK/pull.err"
	else
		qemu-img convert --image-opts "driver=nbd,$server,export=$name" \
			-O raw "$out" 2>"$WORK/pull.err"
	fi
}
# refused WHAT ARGS...: pull ARGS must fail, and must not leave an image.
refused() {
	local what=$1
	shift
	! pull "$@" || fail "$what was served"
	# qemu-img's reason comes after the options it echoes.
	info "refused: $what ($(head -n1 "$WORK/pull.err" | sed "s/.*': //" | cut -c1-120))"
}

make_pki $PKI
dmsetup create t049o --table "0 $((size / 512)) linear $ORIGIN 0"
blkdiscard -f /dev/mapper/t049o 2>/dev/null
expect_rc 0 $F create t049 /dev/mapper/t049o --meta $META
D=/dev/mapper/t049
expect_rc 0 $F bitmap add t049 nightly
stamp $D 0 $((4 * mib)) a >/dev/null
stamp $D $((20 * mib)) $((2 * mib)) b >/dev/null

# T0: a full view under the export name "disk0" over a unix socket.
expect_rc 0 $F snapshot t049 --scratch $SCRATCH --bitmap nightly --full --view t049v
ref0=$(dev_sha /dev/mapper/t049v)
export_bg named t049v --socket $S --name disk0
U="nbd+unix:///disk0?socket=$S"
grep -qx "  uri:      $U" $WORK/named.out || fail "export gave another URI: $(cat $WORK/named.out)"
grep -qx "  name:     'disk0'" $WORK/named.out || fail "export said: $(cat $WORK/named.out)"
server_reads_direct /dev/mapper/t049v
stamp $D $mib $mib c >/dev/null
pull $WORK/full.img "server.type=unix,server.path=$S" disk0 ||
	fail "qemu-img convert of export disk0: $(cat $WORK/pull.err)"
[ "$(whole_sha $WORK/full.img)" = "$ref0" ] || fail "the pull of export disk0 differs from the view"
nbdinfo --json "$U" > $WORK/info.json
json_assert $WORK/info.json 'd["exports"][0]["export-name"] == "disk0" and d["exports"][0]["is_read_only"] is True'
refused "export 'disk1' (another name)" $WORK/x.img "server.type=unix,server.path=$S" disk1
refused "the empty export name" $WORK/x.img "server.type=unix,server.path=$S" ""
[ ! -e $WORK/x.img ] || fail "a refused pull made an image"
export_stop $XPID named
no_leftovers "after the named export"
expect_rc 0 $F release t049v --commit
info "T0: export 'disk0': pull sha256 == view ($ref0); other names refused"

# T1: incremental, --bitmap over TCP with TLS, as a daemon.
stamp $D $((8 * mib + 4096)) 8192 d >/dev/null
stamp $D $((size - 65536)) 65536 e >/dev/null
expect_rc 0 $F snapshot t049 --scratch $SCRATCH --bitmap nightly --view t049v
ref1=$(dev_sha /dev/mapper/t049v)
expect_rc 0 $F changes t049v
merge < $WORK/stdout > $WORK/changes1
expect_rc 0 $F export t049v --bitmap nightly --port $PORT --bind 127.0.0.1 --name disk0 \
	--tls-creds $PKI/server --daemon --pid-file $WORK/export.pid
dpid=$(cat $WORK/export.pid)
T="nbds://127.0.0.1:$PORT/disk0"
grep -qx "  uri:      $T" $WORK/stdout || fail "export gave another URI: $(cat $WORK/stdout)"
grep -q "^  tls:      x509 from $PKI/server; clients show a certificate its CA signed$" $WORK/stdout ||
	fail "export said: $(cat $WORK/stdout)"
server_reads_direct /dev/mapper/t049v
TCP="server.type=inet,server.host=127.0.0.1,server.port=$PORT"
pull $WORK/full1.img "$TCP" disk0 $PKI/client || fail "the TLS pull failed: $(cat $WORK/pull.err)"
[ "$(whole_sha $WORK/full1.img)" = "$ref1" ] || fail "the TLS pull differs from the view"
rm -f $WORK/full1.img
# The dirty bitmap over TLS: the ranges fleecectl changes lists, and
# pulling them onto T0's image gives the view.
dirty_map "$T?tls-certificates=$PKI/client" > $WORK/map1
[ "$(cat $WORK/map1)" = "$(cat $WORK/changes1)" ] ||
	fail "over TLS nbdinfo --map lists $(tr '\n' ' ' < $WORK/map1), fleecectl changes $(tr '\n' ' ' < $WORK/changes1)"
cp --sparse=always $WORK/full.img $WORK/inc1.img
# (pull_changes's options are those of the raw driver's file child.)
pulled=$(pull_changes $WORK/inc1.img "file.server.type=inet,file.server.host=127.0.0.1,file.server.port=$PORT,file.export=disk0,file.tls-creds=tls0,file.tls-hostname=localhost" \
	"$T?tls-certificates=$PKI/client" --object "tls-creds-x509,id=tls0,endpoint=client,dir=$PKI/client")
[ "$(whole_sha $WORK/inc1.img)" = "$ref1" ] || fail "full.img + the changes pulled over TLS differs from the view"
refused "a client without TLS" $WORK/x.img "$TCP" disk0
! nbdinfo "nbd://127.0.0.1:$PORT/disk0" >$WORK/plain.out 2>&1 ||
	fail "nbdinfo without TLS was served: $(cat $WORK/plain.out)"
refused "a TLS client without a certificate" $WORK/x.img "$TCP" disk0 $PKI/nocert
refused "a TLS client asking for another name" $WORK/x.img "$TCP" disk1 $PKI/client
[ ! -e $WORK/x.img ] || fail "a refused pull made an image"
info "T1: --bitmap over TLS: nbdinfo --map == fleecectl changes; $pulled bytes pulled onto full.img: sha256 == view ($ref1)"

# A bad --tls-creds is refused before anything starts (the daemon runs on).
mkdir -p $WORK/nokey
cp $PKI/server/ca-cert.pem $PKI/server/server-cert.pem $WORK/nokey/
expect_err 1 "export t049v: --tls-creds $WORK/nope: No such file or directory" \
	$F export t049v --socket $WORK/x.sock --tls-creds $WORK/nope
expect_err 1 "export t049v: --tls-creds $WORK/nokey/server-key.pem: No such file or directory \(the directory needs ca-cert.pem, server-cert.pem and server-key.pem\)" \
	$F export t049v --socket $WORK/x.sock --tls-creds $WORK/nokey
expect_err 1 "export t049v: --tls-creds $PKI/ca-cert.pem is not a directory" \
	$F export t049v --socket $WORK/x.sock --tls-creds $PKI/ca-cert.pem
expect_err 2 "--tls-authz goes with --tls-creds" $F export t049v --socket $WORK/x.sock --tls-authz CN=client
expect_err 2 "invalid --name '': an export name is 1 to 255 bytes" $F export t049v --socket $WORK/x.sock --name ''
[ ! -e $WORK/x.sock ] || fail "a refused export left $WORK/x.sock"
[ "$(pgrep -xc qemu-nbd)" = 1 ] || fail "a refused export started a qemu-nbd ($(pgrep -xc qemu-nbd) running)"
kill -0 "$dpid" || fail "a refused export stopped the running one"
kill -TERM "$dpid"
for _ in $(seq 100); do kill -0 "$dpid" 2>/dev/null || break; sleep 0.1; done
! kill -0 "$dpid" 2>/dev/null || fail "the daemon did not stop on SIGTERM"
dpid=
no_leftovers "after the TLS daemon"
info "refused: no such --tls-creds, one without server-key.pem, a file; --tls-authz alone, an empty --name"

# --tls-authz: only the client certificate with that name gets in.
export_bg authz t049v --socket $S --name disk0 --tls-creds $PKI/server --tls-authz CN=client
pull $WORK/full2.img "server.type=unix,server.path=$S" disk0 $PKI/client ||
	fail "the TLS pull with --tls-authz CN=client failed: $(cat $WORK/pull.err)"
[ "$(whole_sha $WORK/full2.img)" = "$ref1" ] || fail "the TLS pull (--tls-authz) differs from the view"
export_stop $XPID authz
export_bg authz2 t049v --socket $S --name disk0 --tls-creds $PKI/server --tls-authz CN=someone-else
refused "CN=client where --tls-authz is CN=someone-else" $WORK/x.img "server.type=unix,server.path=$S" disk0 $PKI/client
export_stop $XPID authz2
no_leftovers "after --tls-authz"
expect_rc 0 $F release t049v --commit
info "--tls-authz CN=client: pull sha256 == view; CN=someone-else refuses that client"

expect_rc 0 $F remove t049
dmsetup remove t049o
