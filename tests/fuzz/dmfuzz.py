# SPDX-License-Identifier: GPL-2.0
"""
Hostile input for dm-fleece in a kernel, as root in the test VM: malformed
table lines for fleece-origin and fleece, malformed messages, and damaged
metadata, from a seeded random generator. Driven by
tests/integration/019-fuzz-tables.sh, which sets up the devices and passes
them in FZ_* environment variables.

Most cases go straight to the device-mapper ioctls (no process per case,
any byte but NUL); some go through dmsetup(8) as a user would. Every case
is judged by a model of what the documentation allows:

- a table is refused, or accepted only if it is a valid form, its inactive
  table prints back what was loaded and uses the devices it names; a table
  the documentation says must work is accepted;
- a message gets exactly the errno the model predicts (bitmaps exist or
  not, 8 at most, a backup in progress, a view committed), and answers in
  the documented format;
- every error the kernel logs for a refused table is one the documentation
  lists; nothing is left behind (no device, no inactive table, no session);
- the kernel log, read from /dev/kmsg after every case, has no splat and
  lost no record (a wrapped log could hide one).

Then ("after"): no fleece-origin state is left on the devices the tables
named, and damaged copies of a metadata device are refused or accepted
exactly as the documentation says: a refused one is never written, an
accepted one only in its superblock (the attach and detach records).

Usage: dmfuzz.py tables|after (see main() and 019-fuzz-tables.sh).
"""
import errno
import fcntl
import glob
import mmap
import os
import random
import re
import stat
import struct
import subprocess
import sys
import time
import zlib

# ---------------------------------------------------------------------------
# Device-mapper ioctls (include/uapi/linux/dm-ioctl.h)

HDR = 312
DM_VERSION, DM_REMOVE_ALL, DM_LIST_DEVICES, DM_DEV_CREATE, DM_DEV_REMOVE = 0, 1, 2, 3, 4
DM_DEV_SUSPEND, DM_DEV_STATUS, DM_TABLE_LOAD, DM_TABLE_CLEAR = 6, 7, 9, 10
DM_TABLE_DEPS, DM_TABLE_STATUS, DM_TARGET_MSG = 11, 12, 14
F_READONLY = 1 << 0
F_SUSPEND = 1 << 1
F_STATUS_TABLE = 1 << 4
F_ACTIVE_PRESENT = 1 << 5
F_INACTIVE_PRESENT = 1 << 6
F_BUFFER_FULL = 1 << 8
F_QUERY_INACTIVE = 1 << 12
F_DATA_OUT = 1 << 16

_ctl = None
TIMES = {}	# ioctl number -> seconds spent in it


def _req(nr):
    return (3 << 30) | (HDR << 16) | (0xfd << 8) | nr


def dm(nr, name=b"", payload=b"", flags=0, size=None, count=0):
    """One ioctl; returns (errno or 0, the buffer)."""
    global _ctl
    if _ctl is None:
        _ctl = os.open("/dev/mapper/control", os.O_RDWR)
    if size is None:
        size = max(16384, HDR + len(payload) + 64)
    size = max(size, HDR + len(payload))
    buf = bytearray(size)
    struct.pack_into("<3IIIIiII", buf, 0, 4, 0, 0, size, HDR, count, 0, flags, 0)
    if isinstance(name, str):
        name = name.encode()
    buf[48:48 + len(name)] = name
    buf[HDR:HDR + len(payload)] = payload
    t = time.time()
    try:
        fcntl.ioctl(_ctl, _req(nr), buf, True)
    except OSError as e:
        return e.errno, buf
    finally:
        TIMES[nr] = TIMES.get(nr, 0) + time.time() - t
    return 0, buf


def flags_of(buf):
    return struct.unpack_from("<I", buf, 28)[0]


def cstr(buf, off):
    return bytes(buf[off:buf.index(0, off)])


def list_devices():
    r, buf = dm(DM_LIST_DEVICES)
    if r:
        raise OSError(r, "DM_LIST_DEVICES")
    out, off = set(), HDR
    while True:
        dev, nxt = struct.unpack_from("<QI", buf, off)
        if not dev:
            break
        out.add(cstr(buf, off + 12).decode())
        if not nxt:
            break
        off += nxt
    return out


def dev_flags(name):
    r, buf = dm(DM_DEV_STATUS, name)
    return None if r else flags_of(buf)


def table_status(name, inactive=False, table=True, size=None):
    """[(start, len, type, params)] of a live (or inactive) table."""
    fl = (F_STATUS_TABLE if table else 0) | (F_QUERY_INACTIVE if inactive else 0)
    r, buf = dm(DM_TABLE_STATUS, name, flags=fl, size=size)
    if r:
        return r, None, 0
    count = struct.unpack_from("<I", buf, 20)[0]
    out, off = [], HDR
    for _ in range(count):
        start, length, _st, nxt = struct.unpack_from("<QQiI", buf, off)
        ttype = bytes(buf[off + 24:off + 40]).split(b"\0")[0].decode()
        out.append((start, length, ttype, cstr(buf, off + 40)))
        off = HDR + nxt
    return 0, out, flags_of(buf)


def table_deps(name, inactive=True):
    r, buf = dm(DM_TABLE_DEPS, name, flags=F_QUERY_INACTIVE if inactive else 0)
    if r:
        return None
    count = struct.unpack_from("<I", buf, HDR)[0]
    return {struct.unpack_from("<Q", buf, HDR + 8 + 8 * i)[0] for i in range(count)}


def load(name, targets, flags=0):
    """DM_TABLE_LOAD of [(start, len, type, params bytes)]; returns errno."""
    payload = b""
    for i, (start, length, ttype, params) in enumerate(targets):
        spec = bytearray(40)
        body = params + b"\0"
        body += b"\0" * (-(40 + len(body)) % 8)
        nxt = 40 + len(body) if i + 1 < len(targets) else 0
        struct.pack_into("<QQiI16s", spec, 0, start, length, 0, nxt, ttype.encode())
        payload += bytes(spec) + body
    return dm(DM_TABLE_LOAD, name, payload, flags=flags, count=len(targets))[0]


def remove_dev(name):
    """DM_DEV_REMOVE, retried while the device is busy (up to 10 s).

    A resume sends a uevent, and udev answers it by opening the device to
    probe it: a remove soon after a resume can meet that open and get EBUSY
    (seen on CI's machine). Anything that still holds it after 10 s is ours.
    """
    for _ in range(50):
        r = dm(DM_DEV_REMOVE, name)[0]
        if r != errno.EBUSY:
            return r
        time.sleep(0.2)
    return r


def message(name, sector, text, size=None):
    """DM_TARGET_MSG; returns (errno, answer or None, flags)."""
    payload = struct.pack("<Q", sector) + text + b"\0"
    if size is None:
        size = 16384
    r, buf = dm(DM_TARGET_MSG, name, payload, size=size)
    if r:
        return r, None, 0
    fl = flags_of(buf)
    if not fl & F_DATA_OUT:
        return 0, None, fl
    return 0, cstr(buf, HDR), fl


def suspend(name, on):
    r = dm(DM_DEV_SUSPEND, name, flags=F_SUSPEND if on else 0)[0]
    if r:
        raise OSError(r, "suspend %s %s" % (name, on))


# ---------------------------------------------------------------------------
# The kernel log: every record since we started, checked for splats.

SPLAT = re.compile(r"Oops|BUG:|WARNING:|soft lockup|hard LOCKUP|blocked for more than|"
                   r"KASAN|UBSAN|general protection fault|Kernel panic|kernel BUG at|"
                   r"refcount_t:|kmemleak:|possible circular locking|list_add corruption|"
                   r"list_del corruption|still has references|dm_put_device call missing")
# Text any fuzz input may contain: nothing the splat checks (ours, the
# suite's, the VM harness's) could mistake for a kernel problem when the
# kernel echoes it (unknown messages, invalid names are logged verbatim).
FORBIDDEN = re.compile(rb"oops|bug|warn|lockup|blocked|kasan|ubsan|fault|panic|refcount|"
                       rb"kmemleak|circular|corruption|references|missing|call trace",
                       re.I)


class Kmsg:
    def __init__(self, fail=None):
        """fail(why): called on a splat or lost records (default: die)."""
        self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self.fd, 0, os.SEEK_END)
        self.records = 0
        self.case = "(no case yet)"
        self.fail = fail or die

    def read(self):
        """New records as text; fails on a splat or on lost records."""
        out = []
        while True:
            try:
                rec = os.read(self.fd, 8192)
            except BlockingIOError:
                break
            except BrokenPipeError:
                self.fail("the kernel log wrapped between two reads: records lost "
                          "(a splat could have gone unseen)")
                continue
            text = rec.decode("utf-8", "replace")
            msg = text.split(";", 1)[1].split("\n", 1)[0] if ";" in text else text
            out.append(msg)
        self.records += len(out)
        for i, m in enumerate(out):
            if SPLAT.search(m):
                self.fail("kernel splat: %s\n  after %s\n  " % (m, self.case) +
                          "\n  ".join(out[max(0, i - 10):i + 30]))
        return out


def die(why):
    sys.stdout.flush()
    sys.stderr.write("FAIL: 019-fuzz-tables: %s\n" % why)
    sys.exit(1)


def say(what):
    print("  019-fuzz-tables: %s" % what, flush=True)


# ---------------------------------------------------------------------------
# How the kernel reads words (dm_split_args, kstrto*, isspace, names).

KSPACE = frozenset(b"\t\n\v\f\r \xa0")


def ksplit(b):
    out, i, n = [], 0, len(b)
    while True:
        while i < n and b[i] in KSPACE:
            i += 1
        if i >= n:
            return out
        tok = bytearray()
        while i < n:
            c = b[i]
            if c == 0x5c and i + 1 < n:
                tok.append(b[i + 1])
                i += 2
                continue
            if c in KSPACE:
                break
            tok.append(c)
            i += 1
        if i < n:
            i += 1
        out.append(bytes(tok))


def knum(tok, bits):
    """kstrtou64/kstrtouint(tok, 10) as documented: a decimal number."""
    m = re.fullmatch(rb"\+?([0-9]+)\n?", tok)
    if not m:
        return None
    v = int(m.group(1))
    return v if v < (1 << bits) else None


def kcount(tok, maxv):
    """A group's count: digits only, at most maxv."""
    if not re.fullmatch(rb"[0-9]+", tok):
        return None
    v = int(tok)
    return v if v <= maxv else None


def valid_name(tok):
    return re.fullmatch(rb"[A-Za-z0-9_.-]{1,31}", tok) is not None


def keq(tok, word):
    return tok.lower() == word


# ---------------------------------------------------------------------------
# Devices: what a device word may open (dm_get_device() on 6.1 and 6.12:
# major:minor, a path, or name_to_dev_t()/early_lookup_bdev() forms).

def majmin(dev):
    return "%d:%d" % (os.major(dev), os.minor(dev))


def blockdev_exists(maj, mi):
    return os.path.exists("/sys/dev/block/%d:%d" % (maj, mi))


NONEXISTENT = [b"/dev/fz-nonexistent", b"/nonexistent", b"/dev/mapper/fz-nonexistent",
               b"/proc/self/status", b"/dev/null", b"/", b"0:0", b"4095:1048575",
               b"4096:0", b"1:1048576", b"-"]


def resolve(tok):
    """('dev', dev_t), ('none', None) or ('unknown', None)."""
    if re.fullmatch(rb"[0-9]+:[0-9]+", tok):
        a, b = (int(x) % (1 << 32) for x in tok.split(b":"))
        if a > 4095 or b > (1 << 20) - 1:
            return ("none", None)
        return ("dev", os.makedev(a, b)) if blockdev_exists(a, b) else ("none", None)
    if any(c in KSPACE for c in tok) or b":" in tok:
        return ("unknown", None)
    try:
        st = os.stat(tok)
        if stat.S_ISBLK(st.st_mode):
            return ("dev", st.st_rdev)
        if tok.startswith(b"/"):
            return ("none", None)
    except (OSError, ValueError):
        if tok in NONEXISTENT:
            return ("none", None)
        if tok.startswith(b"/dev/"):
            return ("unknown", None)
        if tok.startswith(b"/"):
            return ("none", None)
    # Not a path: a hexadecimal dev_t (new_decode_dev()), else nothing.
    m = re.fullmatch(rb"(?:0[xX])?([0-9a-fA-F]+)", tok)
    if tok.upper().startswith((b"PARTUUID=", b"PARTLABEL=")):
        return ("unknown", None)
    if not m:
        return ("none", None)
    d = int(m.group(1), 16) % (1 << 64) & 0xffffffff
    maj, mi = (d & 0xfff00) >> 8, (d & 0xff) | ((d >> 12) & 0xfff00)
    return ("dev", os.makedev(maj, mi)) if blockdev_exists(maj, mi) else ("none", None)


class Env:
    """The devices 019-fuzz-tables.sh set up (FZ_* variables)."""

    def __init__(self):
        e = os.environ
        self.names = {}		# role -> dm name or disk path
        self.dev = {}		# role -> dev_t
        self.size = {}		# role -> sectors
        for role in ("X", "XM", "BO", "BM", "B", "VO", "V", "S1", "S2", "S3", "TINY",
                     "V1", "V2", "LIN", "ORIGIN", "SCRATCH", "META"):
            n = e.get("FZ_" + role)
            if not n:
                continue
            path = n if n.startswith("/") else "/dev/mapper/" + n
            st = os.stat(path)
            self.names[role] = n
            self.dev[role] = st.st_rdev
            with open(path, "rb") as f:
                self.size[role] = f.seek(0, 2) // 512
        self.role_of = {d: r for r, d in self.dev.items()}
        self.b_chunk = int(e["FZ_B_CHUNK"])
        self.v_chunk = int(e["FZ_V_CHUNK"])

    def path(self, role):
        n = self.names[role]
        return (n if n.startswith("/") else "/dev/mapper/" + n).encode()

    def words(self, role):
        """Ways to name a device: path, major:minor, /dev/dm-N."""
        d = self.dev[role]
        out = [self.path(role), majmin(d).encode()]
        if os.major(d) == os.major(self.dev["B"]):
            out.append(b"/dev/dm-%d" % os.minor(d))
        return out


# ---------------------------------------------------------------------------
# Random words

KEYWORDS = [b"writable", b"full", b"on_full", b"invalidate", b"fail_writes", b"bitmap",
            b"low_water", b"commit", b"changes", b"bitmap_add", b"bitmap_remove",
            b"bitmap_clear", b"bitmap_merge", b"bitmap_list", b"bitmap_changes", b"-"]
POOL = [b"keep", b"b1", b"b2", b"b3", b"nightly", b"x.y-z_9", b"A", b"a" * 31,
        b"Keep", b"b4", b"b5", b"b6", b"b7", b"b8"]


class Gen:
    def __init__(self, rnd, env):
        self.r = rnd
        self.env = env

    def chance(self, p):
        return self.r.random() < p

    def pick(self, seq):
        return self.r.choice(seq)

    def number(self):
        r = self.r
        k = r.randrange(14)
        if k == 0:
            return str(r.randrange(10)).encode()
        if k == 1:
            return str(1 << r.randrange(0, 70)).encode()
        if k == 2:
            return str((1 << r.randrange(0, 70)) + r.choice((-1, 1))).encode()
        if k == 3:
            return b"-" + str(r.randrange(1 << 40)).encode()
        if k == 4:
            return b"+" + str(r.randrange(1 << 22)).encode()
        if k == 5:
            return r.choice([b"4294967295", b"4294967296", b"4294967297", b"18446744073709551615",
                             b"18446744073709551616", b"99999999999999999999999999", b"0x10",
                             b"8x", b"1e3", b"08", b"0008", b"00", b"8.0", b"\\ 8", b"8\\\n",
                             b"\\\n8", b"2097152", b"4194304", b"16", b"128", b"1048576"])
        if k == 6:
            return str(r.randrange(1 << 64)).encode()
        if k == 7:
            return b"0" * r.randrange(1, 40) + str(r.randrange(100)).encode()
        return str(r.randrange(0, 1 << r.randrange(1, 34))).encode()

    def name(self):
        r = self.r
        k = r.randrange(8)
        if k < 4:
            return r.choice(POOL)
        if k == 4:
            n = r.choice([1, 2, 30, 31, 32, 33, 100])
            return bytes(r.choice(b"abcXYZ019_.-") for _ in range(n))
        if k == 5:
            return r.choice([b"caf\xe9", b"\xc0\xc0", b"a/b", b"a b", b"a\\ b", b"n\xa0m",
                             b"%s%n", b"..", b"-", b"_", b"\x01", b"a'b", b"\xff" * 4])
        if k == 6:
            return self.junk(1, 40)
        return self.word()

    def junk(self, lo, hi):
        n = self.r.randrange(lo, hi + 1)
        return bytes(self.r.randrange(1, 256) for _ in range(n))

    def word(self):
        r = self.r
        k = r.randrange(10)
        if k < 3:
            w = r.choice(KEYWORDS)
            if r.random() < 0.3:
                w = w.upper() if r.random() < 0.5 else w.title()
            if r.random() < 0.2:
                w = w[:-1] if r.random() < 0.5 else w + r.choice([b"e", b"_", b"\\", b"0"])
            return w
        if k == 3:
            return self.number()
        if k == 4:
            return self.junk(1, 30)
        if k == 5:
            return bytes(r.choice(b"abcdefghijklmnopqrstuvwxyz_") for _ in range(r.randrange(1, 12)))
        if k == 6:
            return b"x" * r.randrange(100, r.choice([300, 1000, 4000]))
        if k == 7:
            return self.devword()
        if k == 8:
            return self.name()
        return r.choice([b"", b"\\", b"\\\\", b"#", b"@x", b"%s", b"%n%n%n", b"'", b"\"",
                         b";", b"\\ ", b"\xa0", b"--", b"0", b"1"])

    # Devices a random word may name anywhere. Never the base's metadata,
    # the views or their scratch devices: a valid table using one of those
    # as metadata would (rightly) merge or format it, and change the state
    # the model keeps of the base.
    SAFE = ("X", "XM", "BO", "B", "VO", "V", "S3", "TINY", "LIN", "ORIGIN", "SCRATCH", "META")

    def devword(self, roles=None):
        r = self.r
        env = self.env
        if r.random() < 0.2:
            return r.choice(NONEXISTENT)
        roles = roles or [x for x in self.SAFE if x in env.names]
        return r.choice(env.words(r.choice(roles)))

    def length(self, role):
        r = self.r
        size = self.env.size[role]
        k = r.randrange(10)
        if k < 5:
            return size
        if k == 5:
            return r.choice([0, 1, 7, 8, 9])
        if k == 6:
            return size + r.choice([1, 8, 1 << 20])
        if k == 7:
            return r.choice([(1 << 32) * 8, (1 << 63) - 1, (1 << 64) - 1, 1 << 40])
        return r.randrange(1, size + 1)

    def mutate(self, words):
        r = self.r
        words = list(words)
        for _ in range(r.choice([0, 0, 1, 1, 1, 2, 3])):
            k = r.randrange(6)
            i = r.randrange(len(words) + 1)
            if k == 0 and words:
                del words[min(i, len(words) - 1)]
            elif k == 1:
                words.insert(i, self.word())
            elif k == 2 and words:
                words[min(i, len(words) - 1)] = self.word()
            elif k == 3 and len(words) > 1:
                j = r.randrange(len(words))
                i = min(i, len(words) - 1)
                words[i], words[j] = words[j], words[i]
            elif k == 4 and words:
                words.insert(i, r.choice(words))
            else:
                words.append(self.word())
        return words

    def join(self, words):
        r = self.r
        if r.random() < 0.9:
            return b" ".join(words)
        out = b""
        for w in words:
            out += r.choice([b" ", b"  ", b"\t", b"\n", b"\xa0", b" \\\n"[:1]]) + w
        return out + r.choice([b"", b" ", b"\t\n"])

    def ok(self, text):
        return not FORBIDDEN.search(text) and b"\0" not in text


# ---------------------------------------------------------------------------
# Tables

def group_end(words, maxv):
    """Where an argument group (a count, then that many words) ends, or None
    if the count is not one (read_count() in dm-fleece-args.c)."""
    n = kcount(words[0], maxv)
    return None if n is None or n > len(words) - 1 else 1 + n


def view_opts(words):
    """Documented view options; (error or None, opts)."""
    o = {"bitmap": None, "full": False, "writable": False}
    if not words:
        return None, o
    end = group_end(words, 8)
    if end is None:
        return "Invalid number of optional arguments", o
    i = 1
    while i < end:
        a = words[i]
        i += 1
        if keq(a, b"writable"):
            o["writable"] = True
            continue
        if keq(a, b"full"):
            o["full"] = True
            continue
        v = words[i] if i < end else b""
        i = min(i + 1, end)
        if keq(a, b"on_full"):
            if not (keq(v, b"invalidate") or keq(v, b"fail_writes")):
                return "Invalid on_full policy", o
        elif keq(a, b"bitmap"):
            if not valid_name(v):
                return "Invalid bitmap name", o
            o["bitmap"] = v
        elif keq(a, b"low_water"):
            if knum(v, 64) is None:
                return "Invalid low_water", o
        else:
            return "Unknown optional argument", o
    if end < len(words):
        return "Too many arguments", o
    if o["full"] and not o["bitmap"]:
        return "Option full needs a bitmap", o
    if o["writable"] and o["bitmap"] and not o["full"]:
        return "Writable incremental views are not supported", o
    return None, o


def origin_features(words):
    """The feature arguments after <chunk_sectors> (no_gap, origin_id <id>):
    {"no_gap": bool, "origin_id": bytes or None}, or None if refused."""
    f = {"no_gap": False, "origin_id": None}
    if not words:
        return f
    end = group_end(words, 3)
    if end is None:
        return None
    i = 1
    while i < end:
        a = words[i]
        i += 1
        if keq(a, b"no_gap"):
            f["no_gap"] = True
        elif keq(a, b"origin_id"):
            v = words[i] if i < end else b""
            i += 1 if i < end else 0
            if not 1 <= len(v) <= 127 or any(ch <= 0x20 or ch > 0x7e for ch in v):
                return None
            f["origin_id"] = v
        else:
            return None
    return f if end == len(words) else None


def origin_syntax(words):
    if len(words) < 3:
        return None
    c = knum(words[2], 32)
    if c is None or c < 8 or c > (1 << 21) or c & (c - 1):
        return None
    if origin_features(words[3:]) is None:
        return None
    return c


class TableFuzz:
    """Tables for fleece-origin and fleece, loaded into one spare device."""

    def __init__(self, env, gen, kmsg, state):
        self.env, self.g, self.kmsg, self.st = env, gen, kmsg, state
        self.dev = "fz-t"
        self.accepted = 0
        self.refused = 0
        self.expected_ok = 0
        self.errors = {}
        self.xm_format = None	# (chunk, len) once XM holds metadata
        self.slab = {}		# kind -> (cases, bytes, top caches) of a run's second half

    # -- generation
    def origin_words(self):
        g, r = self.g, self.g.r
        env = self.env
        roles = ["X", "X", "X", "V", "B", "TINY", "S3", "ORIGIN", "BO", "VO"]
        origin = g.devword(roles)
        meta = r.choice([b"-", b"-", g.devword(["XM", "XM", "X", "TINY", "S3"])])
        chunk = r.choice([b"8", b"16", b"128", str(env.v_chunk).encode(), g.number()])
        if origin in env.words("BO") and r.random() < 0.5:
            # A reload of the base's table: its own metadata device, not
            # read again. Not mutated, so BM never becomes another
            # table's metadata.
            return [origin, env.path("BM"), str(env.b_chunk).encode()]
        words = [origin, meta, chunk]
        if r.random() < 0.3:
            words += [r.choice([b"0", g.number()])] + ([g.word()] if r.random() < 0.3 else [])
        return g.mutate(words) if r.random() < 0.7 else words

    def view_words(self):
        g, r = self.g, self.g.r
        origin = g.devword(["BO", "BO", "BO", "BO", "VO", "X", "B", "ORIGIN"])
        scratch = g.devword(["S3", "S3", "S3", "S3", "S1", "TINY", "BO", "BM", "X", "XM"])
        opts = []
        for _ in range(r.randrange(0, 5)):
            k = r.randrange(6)
            if k == 0:
                opts.append(b"writable")
            elif k == 1:
                opts.append(b"full")
            elif k == 2:
                opts += [b"on_full", r.choice([b"invalidate", b"fail_writes", g.word()])]
            elif k == 3:
                opts += [b"bitmap", g.name()]
            elif k == 4:
                opts += [b"low_water", g.number()]
            else:
                opts.append(g.word())
        words = [origin, scratch]
        if opts or r.random() < 0.3:
            n = str(len(opts)).encode() if r.random() < 0.8 else g.number()
            words += [n] + opts
        return g.mutate(words) if r.random() < 0.6 else words

    def case(self, kind):
        """One table: [(start, len, type, params)], as bytes."""
        g, r = self.g, self.g.r
        for _ in range(100):
            if r.random() < 0.05:
                params = g.junk(0, 200) if r.random() < 0.7 else b""
            else:
                params = g.join(self.origin_words() if kind == "origin" else self.view_words())
            if not g.ok(params):
                continue
            ttype = "fleece-origin" if kind == "origin" else "fleece"
            role = "X" if kind == "origin" else "BO"
            length = g.length(role)
            words = ksplit(params)
            if kind == "origin" and len(words) > 1 and words[1] == self.env.path("BM"):
                return [(0, self.env.size["BO"], ttype, params)]
            if r.random() < 0.12:
                # Two targets. A valid one first: the second's failure
                # runs its destructor. Or a linear target on a device the
                # fuzzed one names, before or after it: the two get the
                # device in different modes.
                sib = self.sibling(kind, words)
                if r.random() < 0.5:
                    return [sib, (sib[1], length or 8, ttype, params)]
                return [(0, length or 8, ttype, params), (length or 8,) + sib[1:]]
            return [(0, length, ttype, params)]
        return [(0, 8, "fleece-origin", b"")]

    def sibling(self, kind, words):
        env, r = self.env, self.g.r
        if r.random() < 0.3:
            if kind == "origin":
                return (0, env.size["X"], "fleece-origin", b"%s - 8" % env.path("X"))
            return (0, 2048, "linear", b"%s 0" % env.path("S3"))
        devs = [w for w in words[:2] if resolve(w)[0] == "dev"]
        w = r.choice(devs) if devs else r.choice(env.words(r.choice(["X", "S3", "BO"])))
        d = resolve(w)[1]
        role = env.role_of.get(d)
        size = env.size[role] if role else 8
        return (0, max(1, min(size, r.choice([8, 2048, size]))), "linear", b"%s 0" % w)

    # -- judging
    def origin_target_ok(self, t, seen):
        """May this fleece-origin target be accepted? (None: must not be.)"""
        env = self.env
        _start, length, _type, params = t
        words = ksplit(params)
        chunk = origin_syntax(words)
        if chunk is None or length == 0:
            return None
        okind, odev = resolve(words[0])
        mkind, mdev = resolve(words[1]) if words[1] != b"-" else ("dash", None)
        if okind == "none" or mkind == "none":
            return None
        if odev is not None and odev == mdev:
            return None
        if -(-length // chunk) > 0xffffffff:
            return None
        if okind == "unknown" or mkind == "unknown":
            return "maybe"
        role = env.role_of.get(odev)
        size = env.size.get(role) if role else None
        if size is None:
            with open("/sys/dev/block/%s/size" % majmin(odev)) as f:
                size = int(f.read())
        if length > size:
            return None
        key = (odev, mdev, chunk, length)
        prev = seen.get(odev)
        if prev is not None and prev != key:
            return None		# two in one table must agree
        seen[odev] = key
        # A fleece-origin already on the device decides (a table reload).
        if role == "BO":
            ok = mdev == env.dev["BM"] and chunk == env.b_chunk and length == env.size["BO"]
            return "must" if ok and len(seen) == 1 else ("maybe" if ok else None)
        if role == "VO":
            ok = mdev is None and chunk == env.v_chunk and length == env.size["VO"]
            return "must" if ok and len(seen) == 1 else ("maybe" if ok else None)
        if mdev is not None and mdev == env.dev.get("XM"):
            # An origin_id may differ from the one the metadata keeps.
            if origin_features(words[3:])["origin_id"] is not None:
                return "maybe-xm"
            nr_chunks = -(-length // chunk)
            need = (2 + 32 * -(-nr_chunks // 32256)) * 8
            if need > env.size["XM"]:
                return None
            if self.xm_format not in (None, (chunk, length)):
                return None
            return "must-xm" if role == "X" and len(seen) == 1 else "maybe-xm"
        if role == "X" and mdev is None and len(seen) == 1:
            return "must"
        return "maybe"

    def view_target_ok(self, t, used_scratch):
        env, st = self.env, self.st
        _start, length, _type, params = t
        words = ksplit(params)
        if len(words) < 2 or length == 0:
            return None
        err, o = view_opts(words[2:])
        if err:
            return None
        okind, odev = resolve(words[0])
        skind, sdev = resolve(words[1])
        if okind == "none" or skind == "none":
            return None
        if okind == "unknown" or skind == "unknown":
            return "maybe"
        # Loaded, never resumed: whether the origin is suspended does not
        # matter (the point in time, which needs it, is taken at the view's
        # first resume).
        if odev == env.dev["BO"]:
            who = "B"
        elif odev == env.dev["VO"]:
            who = "V"
        else:
            return None		# only BO and VO have a fleece-origin
        if sdev in (odev, env.dev["BM"], env.dev["S1"], env.dev["S2"], env.dev["VO"],
                    env.dev["BO"]):
            return None
        if sdev in used_scratch:
            return None
        used_scratch.add(sdev)
        if length > env.size[who + "O"]:
            return None
        if o["bitmap"] is not None and o["bitmap"] not in st.bm[who]:
            return None
        if sdev == env.dev["S3"] and who == "B":
            return "must"
        if sdev == env.dev["TINY"]:
            return None
        return "maybe"

    def judge(self, targets, r, kind, loaded=True):
        """Check the outcome r (errno) of loading targets."""
        verdicts, seen, used = [], {}, set()
        for t in targets:
            if t[2] == "linear":
                verdicts.append("must")
            elif t[2] == "fleece-origin":
                verdicts.append(self.origin_target_ok(t, seen))
            else:
                verdicts.append(self.view_target_ok(t, used))
        desc = " | ".join("%d %d %s %r" % t for t in targets)
        if r == 0:
            if None in verdicts:
                die("table accepted, but it is not a valid form: %s" % desc)
            if loaded:
                self.check_loaded(targets, desc)
            self.accepted += 1
            for t, v in zip(targets, verdicts):
                if v in ("must-xm", "maybe-xm") and self.xm_format is None:
                    self.xm_format = (origin_syntax(ksplit(t[3])), t[1])
        else:
            if all(v in ("must", "must-xm") for v in verdicts):
                die("valid table refused (errno %d): %s" % (r, desc))
            self.refused += 1
        if all(v in ("must", "must-xm") for v in verdicts):
            self.expected_ok += 1

    def check_loaded(self, targets, desc):
        r, got, _ = table_status(self.dev, inactive=True)
        if r:
            die("accepted table has no inactive table (errno %d): %s" % (r, desc))
        # Ours print their words back as given; linear prints major:minor.
        want = [(t[0], t[1], t[2], b" ".join(ksplit(t[3]))) for t in targets]
        got = [g if g[2] != "linear" else w for g, w in zip(got, want)] + got[len(want):]
        if got != want or [t[:3] for t in got] != [t[:3] for t in want]:
            die("inactive table prints back %r, loaded %r" % (got, want))
        deps = table_deps(self.dev)
        names = set()
        for t in targets:
            words = ksplit(t[3])
            n = 1 if t[2] == "linear" else 2
            for w in words[:n]:
                if t[2] == "fleece-origin" and w == b"-":
                    continue
                names.add(resolve(w))
        if all(k == "dev" for k, _ in names) and deps != {self.env_enc(d) for _, d in names}:
            die("accepted table uses devices %s, it names %s: %s" % (deps, names, desc))

    @staticmethod
    def env_enc(d):
        # huge_encode_dev(): the new dev_t encoding of <linux/kdev_t.h>.
        maj, mi = os.major(d), os.minor(d)
        return (mi & 0xff) | (maj << 8) | ((mi & ~0xff) << 12)

    def fixed(self, kind):
        """Cases that once went wrong: one device twice in a target, or in
        two targets, in different modes (dm_get_device() then reopens it
        and the first dm_dev is gone); a device smaller than the target."""
        env = self.env
        x, bo, s3 = env.path("X"), env.path("BO"), env.path("S3")
        bo_mm = majmin(env.dev["BO"]).encode()
        if kind == "origin":
            return [([(0, env.size["X"], "fleece-origin", b"%s %s 8" % (x, x))], 0),
                    ([(0, env.size["X"], "fleece-origin", b"%s %s 8" % (x, x))], F_READONLY),
                    ([(0, env.size["X"] + 8, "fleece-origin", b"%s - 8" % x)], 0),
                    ([(0, 8, "linear", b"%s 0" % x),
                      (8, env.size["X"], "fleece-origin", b"%s - 8" % x)], F_READONLY),
                    ([(0, env.size["X"], "fleece-origin", b"%s - 8" % x),
                      (env.size["X"], 8, "linear", b"%s 0" % x)], F_READONLY)]
        view = (0, env.size["BO"], "fleece", b"%s %s" % (bo, s3))
        return [([(0, env.size["BO"], "fleece", b"%s %s" % (bo, bo))], 0),
                ([(0, env.size["BO"], "fleece", b"%s %s" % (bo, bo_mm))], F_READONLY),
                ([view, (env.size["BO"], 8, "linear", b"%s 0" % bo)], 0),
                ([view, (env.size["BO"], 8, "linear", b"%s 0" % s3)], F_READONLY),
                ([(0, 8, "linear", b"%s 0" % bo), (8,) + view[1:]], 0)]

    def run(self, kind, n):
        todo = self.fixed(kind)
        for i in range(n):
            if i == n // 2:
                half = slab()
            if todo:
                targets, flags = todo.pop(0)
            else:
                targets = self.case(kind)
                # Read-only tables too: the targets' devices open
                # read-only then, scratch and metadata still read-write.
                # Not with two targets: getting a device read-write that an
                # earlier target got read-only makes dm_get_device() reopen
                # it under that target (dm core; dm-linear then puts a
                # dm_dev that is gone). A known limit, see the report.
                flags = 0
                if len(targets) == 1 and self.g.r.random() < 0.15:
                    flags = F_READONLY
            r = load(self.dev, targets, flags)
            self.judge(targets, r, kind)
            if r == 0:
                rc = dm(DM_TABLE_CLEAR, self.dev)[0]
                if rc:
                    die("cannot clear the inactive table: errno %d" % rc)
            self.st.after_case("table %s (flags %d): errno %d" % (
                " | ".join("%d %d %s %r" % t for t in targets), flags, r))
        total, top = slab_growth(half, slab(), LEAKY)
        self.slab[kind] = (n - n // 2, total, top)
        # Warmed up by the first half, a leak of 0.5 KiB a table shows.
        if total > max(128 << 10, 512 * (n - n // 2)):
            die("kmalloc and block caches grew by %d KiB over the last %d %s tables (%s): a leak?"
                % (total // 1024, n - n // 2, kind, top))

    def log_check(self, lines, documented):
        """Every table error logged for our targets is documented."""
        pat = re.compile(r"device-mapper: table: [0-9]+:[0-9]+: (fleece-origin|fleece): (.*) \((-?[A-Z0-9]+)\)$")
        for m in filter(None, map(pat.search, lines)):
            err = m.group(2)
            if not any(err == d or (d.endswith("...") and err.startswith(d[:-3]))
                       for d in documented):
                die("undocumented table error logged: %r" % m.group(0))
            self.errors[err] = self.errors.get(err, 0) + 1


# ---------------------------------------------------------------------------
# Messages

class MsgFuzz:
    def __init__(self, env, gen, state):
        self.env, self.g, self.st = env, gen, state
        self.ok = 0
        self.refused = 0
        self.answers = 0

    def words(self, target):
        g, r = self.g, self.g.r
        if target in ("B", "V"):
            cmd = r.choice([b"bitmap_add", b"bitmap_add", b"bitmap_remove", b"bitmap_clear",
                            b"bitmap_merge", b"bitmap_list", b"bitmap_changes",
                            b"bitmap_changes", b"bitmap_", b"BITMAP_ADD"])
            words = [cmd]
            if cmd != b"bitmap_list" or r.random() < 0.2:
                words.append(g.name())
            if cmd == b"bitmap_merge":
                words.append(g.name())
            if cmd == b"bitmap_changes":
                words += [g.number() for _ in range(r.choice([0, 1, 1, 2, 2, 3]))]
        else:
            words = [r.choice([b"commit", b"changes", b"changes", b"COMMIT", b"Changes"])]
            if keq(words[0], b"changes"):
                words += [g.number() for _ in range(r.choice([0, 1, 1, 2, 2, 3]))]
        if r.random() < 0.5:
            words = g.mutate(words)
        return words

    def case(self):
        g, r = self.g, self.g.r
        for _ in range(100):
            target = r.choice(["B", "B", "B", "V", "V", "V1", "V1", "V2", "LIN", "none"])
            if r.random() < 0.04:
                text = g.junk(0, 100)
            elif r.random() < 0.02:
                text = r.choice([b"", b" ", b"\t\n", b"\\"])
            else:
                text = g.join(self.words(target if target in ("B", "V", "V1", "V2") else "B"))
            words = ksplit(text)
            if words and words[0][:1] == b"@":
                continue	# dm core's own messages, not ours
            if not g.ok(text):
                continue
            sector = 0
            if r.random() < 0.05:
                sector = r.choice([1, 7, 8, 1 << 20, (1 << 64) - 1, r.randrange(1 << 64)])
            size = None
            if r.random() < 0.1:
                size = HDR + 8 + len(text) + 1 + r.randrange(0, 80)
            return target, sector, text, words, size
        return "B", 0, b"bitmap_list", [b"bitmap_list"], None

    def expect_origin(self, role, words):
        """(errno, what happens) for a fleece-origin message."""
        bm, busy = self.st.bm[role], self.st.busy[role]
        cmd, argc = words[0], len(words)
        if not cmd.startswith(b"bitmap_"):
            return errno.EINVAL, None
        if cmd == b"bitmap_list":
            return (0, ("list",)) if argc == 1 else (errno.EINVAL, None)
        if argc < 2 or not valid_name(words[1]):
            return errno.EINVAL, None
        name = words[1]
        if cmd == b"bitmap_add":
            if argc != 2:
                return errno.EINVAL, None
            if name in bm:
                return errno.EEXIST, None
            if len(bm) >= 8:
                return errno.ENOSPC, None
            return 0, ("add", name)
        if name not in bm:
            return errno.ENOENT, None
        if cmd in (b"bitmap_remove", b"bitmap_clear") and argc == 2:
            if name in busy:
                return errno.EBUSY, None
            return 0, (cmd[7:].decode(), name)
        if cmd == b"bitmap_merge" and argc == 3:
            if words[2] not in bm:
                return errno.ENOENT, None
            # Not into a bitmap whose backup view checks reads against it.
            if name in busy and words[2] != name:
                return errno.EBUSY, None
            return 0, None
        if cmd == b"bitmap_changes" and 2 <= argc <= 4:
            start = knum(words[2], 64) if argc > 2 else 0
            mx = knum(words[3], 64) if argc > 3 else 65536
            if start is None or not mx:
                return errno.EINVAL, None
            return 0, ("changes", start, mx)
        return errno.EINVAL, None

    def expect_view(self, role, words):
        argc = len(words)
        if argc == 1 and keq(words[0], b"commit"):
            if role == "V2":
                return errno.ENOENT, None
            return (errno.EALREADY, None) if self.st.committed else (0, ("commit",))
        if argc <= 3 and keq(words[0], b"changes"):
            start = knum(words[1], 64) if argc > 1 else 0
            mx = knum(words[2], 64) if argc > 2 else 65536
            if start is None or not mx:
                return errno.EINVAL, None
            if role == "V2":
                return errno.ENOENT, None
            return 0, ("changes", start, mx)
        return errno.EINVAL, None

    def check_ranges(self, answer, start, mx, nr, size, desc):
        if size is not None and size - HDR < 48 and answer in (None, b""):
            return		# no room for a page: an empty answer
        if answer is None:
            die("%s: no answer" % desc)
        parts = answer.split(b" ")
        nxt = parts[0]
        if nxt != b"end" and not (nxt.isdigit() and start < int(nxt) <= nr):
            die("%s: bad cursor in %r" % (desc, answer[:200]))
        last = start
        for p in parts[1:]:
            m = re.fullmatch(rb"([0-9]+)\+([0-9]+)", p)
            if not m:
                die("%s: bad range %r in %r" % (desc, p, answer[:200]))
            a, c = int(m.group(1)), int(m.group(2))
            if a < last or c < 1 or a + c > nr:
                die("%s: range %r out of order or past %d chunks" % (desc, p, nr))
            last = a + c
        if len(parts) - 1 > mx:
            die("%s: %d ranges, at most %d asked" % (desc, len(parts) - 1, mx))

    def run(self, n):
        env, st = self.env, self.st
        for _ in range(n):
            target, sector, text, words, size = self.case()
            name = env.names[target] if target != "none" else "fz-nonexistent"
            r, answer, fl = message(name, sector, text, size)
            desc = "message %r to %s (sector %d)" % (text, target, sector)
            if target == "none":
                want, what = errno.ENXIO, None
            elif not words or sector >= env.size[target]:
                want, what = errno.EINVAL, None
            elif target == "LIN":
                want, what = errno.EINVAL, None
            elif target in ("B", "V"):
                want, what = self.expect_origin(target, words)
            else:
                want, what = self.expect_view(target, words)
            if r != want:
                die("%s: errno %d, expected %d" % (desc, r, want))
            if r:
                self.refused += 1
            else:
                self.ok += 1
            if what and what[0] == "add":
                st.bm[target].add(what[1])
            elif what and what[0] == "remove":
                st.bm[target].discard(what[1])
            elif what and what[0] == "commit":
                st.committed = True
            elif what and what[0] == "changes":
                nr = -(-env.size[target if target in ("B", "V") else "B"] //
                       (env.v_chunk if target == "V" else env.b_chunk))
                self.check_ranges(answer, what[1], what[2], nr, size, desc)
                self.answers += 1
            elif what and what[0] == "list":
                names = {l.split(b" ")[0] for l in (answer or b"").split(b"\n") if l}
                if not fl & F_BUFFER_FULL and names != st.bm[target]:
                    die("%s: lists %s, expected %s" % (desc, names, st.bm[target]))
                self.answers += 1
            st.after_case(desc)


# ---------------------------------------------------------------------------
# State shared by the phases, checked after every batch

class State:
    def __init__(self, env, kmsg, batch, documented):
        self.env, self.kmsg, self.batch, self.documented = env, kmsg, batch, documented
        self.cases = 0
        self.tables = None
        self.b_suspended = False
        self.committed = False
        self.bm = {"B": set(os.environ["FZ_B_BITMAPS"].encode().split()),
                   "V": set(os.environ["FZ_V_BITMAPS"].encode().split())}
        self.busy = {"B": set(os.environ["FZ_B_BUSY"].encode().split()), "V": set()}
        self.devices = list_devices()
        self.sessions = {"B": int(os.environ["FZ_B_SESSIONS"]), "V": 0}

    def after_case(self, desc):
        """After each case: its kernel log lines (a splat names the case),
        and every batch the devices, tables, sessions and bitmaps."""
        self.cases += 1
        self.kmsg.case = desc
        self.log_check(self.kmsg.read())
        if self.cases % self.batch == 0:
            self.check()

    def log_check(self, lines):
        if self.tables:
            self.tables.log_check(lines, self.documented)

    def check(self):
        self.log_check(self.kmsg.read())
        now = list_devices()
        if now != self.devices:
            die("devices changed: %s, expected %s" % (sorted(now), sorted(self.devices)))
        fl = dev_flags("fz-t")
        if fl is None or fl & (F_INACTIVE_PRESENT | F_ACTIVE_PRESENT):
            die("the spare device fz-t has a table left: flags %s" % fl)
        for role in ("B", "V"):
            r, st, _ = table_status(self.env.names[role], table=False)
            if r:
                die("status of %s: errno %d" % (role, r))
            f = st[0][3].split()
            # <persistent|volatile> <#sessions> <ok|lost> <#bitmaps> [<name> <dirty> <frozen>]...
            names = set(f[4::3])
            if int(f[1]) != self.sessions[role] or f[2] != b"ok" or names != self.bm[role]:
                die("%s status '%s': expected %d sessions, ok, bitmaps %s"
                    % (role, st[0][3].decode("latin-1"), self.sessions[role],
                       sorted(self.bm[role])))


def slab():
    """Bytes in use per slab cache (active objects times object size)."""
    # SLUB counts the free objects of per-CPU slabs as active: flush them
    # first, or a cache of big objects (kcopyd_job, 3 KiB) shows slabs of
    # growth that are only cached (seen on 6.12).
    for shrink in glob.glob("/sys/kernel/slab/*/shrink"):
        try:
            with open(shrink, "w") as f:
                f.write("1")
        except OSError:
            pass
    out = {}
    with open("/proc/slabinfo") as f:
        for line in f:
            p = line.split()
            if len(p) > 4 and p[1].isdigit():
                out[p[0]] = int(p[1]) * int(p[3])
    return out


# The caches a leak in a ctr or dtr would grow (not the reclaimable ones,
# nor those of files, pages and sysfs, which other work in the VM grows).
LEAKY = re.compile(r"kmalloc-(cg-)?[0-9]+k?$|bio|dm_|kcopyd|fleece")


def slab_growth(before, after, only=None):
    d = {k: after.get(k, 0) - before.get(k, 0) for k in set(before) | set(after)
         if only is None or only.match(k)}
    top = sorted(d.items(), key=lambda kv: -kv[1])[:4]
    return sum(d.values()), ", ".join("%s %+d KiB" % (k, v // 1024) for k, v in top)


def documented_errors(top):
    """The ctr errors Documentation/ lists (first column of its tables)."""
    out = set()
    for f in ("fleece-origin.rst", "fleece.rst"):
        for line in open(os.path.join(top, "Documentation", f), encoding="utf-8"):
            m = re.match(r"``([A-Z][^`]*)``\s", line)
            if m:
                out.add(m.group(1))
    return out


# ---------------------------------------------------------------------------
# dmsetup(8): the same kind of cases through the command line

# Our devices need no udev rules, nor waiting for them (slow under TCG).
DMSETUP = [b"dmsetup", b"--noudevrules", b"--noudevsync"]


def cli_cases(env, gen, tables, msgs, state, n):
    r = gen.r
    done = 0
    while done < n:
        if r.random() < 0.5:
            kind = "origin" if r.random() < 0.6 else "view"
            targets = tables.case(kind)
            start, length, ttype, params = targets[-1]
            if any(c in params for c in (b"\n", b"\r", b"#", b"\\")):
                continue	# dmsetup reads those as table syntax itself
            line = b"0 %d %s %s" % (length, ttype.encode(), params)
            p = subprocess.run(DMSETUP + [b"create", b"fz-c", b"--table", line],
                               stdin=subprocess.DEVNULL, capture_output=True)
            if p.returncode == 0:
                out = subprocess.run(["dmsetup", "table", "fz-c"], capture_output=True).stdout
                # What the kernel holds must be a valid form (dmsetup may
                # have reformatted the numbers: judge the kernel's copy).
                kept = []
                for l in out.splitlines():
                    s, ln, tt, rest = (l.split(b" ", 3) + [b""])[:4]
                    kept.append((int(s), int(ln), tt.decode(), rest))
                tables.judge(kept, 0, kind, loaded=False)
                # udev answers the resume's uevent by probing the new
                # device (blkid); without udev sync that can still hold it
                # open here, and the remove fails with EBUSY: retry then.
                p = subprocess.run(DMSETUP + [b"--retry", b"remove", b"fz-c"], capture_output=True)
                if p.returncode:
                    info = subprocess.run(["dmsetup", "info", "-c", "--noheadings", "-o",
                                           "open,attr,major,minor", "fz-c"],
                                          capture_output=True).stdout.strip()
                    die("cannot remove fz-c (table %r): %s; open,attr,major,minor: %s"
                        % (line, p.stderr.strip()[:200], info))
            else:
                if subprocess.run(["dmsetup", "info", "fz-c"], capture_output=True).returncode == 0:
                    die("refused table %r left device fz-c behind" % line)
                tables.refused += 1
        else:
            target, sector, text, words, _size = msgs.case()
            if target == "none" or not words or b"\n" in text:
                continue
            name = env.names[target]
            p = subprocess.run([b"dmsetup", b"message", name.encode(), str(sector).encode()] + words,
                               stdin=subprocess.DEVNULL, capture_output=True)
            if target == "LIN" or sector >= env.size[target]:
                want = errno.EINVAL
                what = None
            elif target in ("B", "V"):
                want, what = msgs.expect_origin(target, words)
            else:
                want, what = msgs.expect_view(target, words)
            if (p.returncode == 0) != (want == 0):
                die("dmsetup message %s %d %r exited %d (%s), expected errno %d"
                    % (name, sector, words, p.returncode, p.stderr.strip()[:200], want))
            if what and what[0] == "add":
                state.bm[target].add(what[1])
            elif what and what[0] == "remove":
                state.bm[target].discard(what[1])
            elif what and what[0] == "commit":
                state.committed = True
            msgs.ok += want == 0
            msgs.refused += want != 0
        done += 1
        state.after_case("dmsetup case %d" % done)


# ---------------------------------------------------------------------------
# Phases

def phase_tables(top, seed, cases, cli, batch):
    env = Env()
    gen = Gen(random.Random(seed), env)
    kmsg = Kmsg()
    state = State(env, kmsg, batch, documented_errors(top))
    tables = TableFuzz(env, gen, kmsg, state)
    msgs = MsgFuzz(env, gen, state)
    state.tables = tables
    if dm(DM_DEV_CREATE, "fz-t")[0]:
        die("cannot create the spare device fz-t")
    state.devices = list_devices()
    t0 = time.time()
    slab0 = slab()

    bulk = max(cases - cli, 0)
    n_origin = bulk * 2 // 5
    n_view = bulk * 2 // 5
    n_msg = bulk - n_origin - n_view

    cli_cases(env, gen, tables, msgs, state, cli)
    state.check()
    say("%d cases through dmsetup: %d tables accepted, %d refused; %d messages answered, "
        "%d refused [%.0fs]" % (cli, tables.accepted, tables.refused, msgs.ok, msgs.refused,
                                time.time() - t0))

    tables.accepted = tables.refused = tables.expected_ok = 0
    msgs.ok = msgs.refused = 0
    tables.run("origin", n_origin)
    state.check()
    # Views: with the fleece-origin suspended, as a real view is created.
    suspend(env.names["B"], True)
    state.b_suspended = True
    try:
        tables.run("view", n_view)
    finally:
        suspend(env.names["B"], False)
        state.b_suspended = False
    state.check()
    say("%d tables through the ioctls: %d accepted (%d that the documentation says must be), "
        "%d refused, %d distinct documented errors logged [%.0fs]"
        % (n_origin + n_view, tables.accepted, tables.expected_ok, tables.refused,
           len(tables.errors), time.time() - t0))

    msgs.run(n_msg)
    state.check()
    say("%d messages through the ioctls: %d answered as expected, %d refused as expected, "
        "%d answers checked [%.0fs]" % (n_msg, msgs.ok, msgs.refused, msgs.answers,
                                        time.time() - t0))
    # Room for one more bitmap on fz-b (the shell adds one): remove those
    # no view holds.
    for name in sorted(state.bm["B"] - state.busy["B"]):
        r, _, _ = message(env.names["B"], 0, b"bitmap_remove " + name)
        if r:
            die("bitmap_remove %r after the fuzzing: errno %d" % (name, r))
        state.bm["B"].discard(name)
    state.check()
    if remove_dev("fz-t"):
        die("cannot remove the spare device fz-t")
    kmsg.read()
    total, top = slab_growth(slab0, slab())
    say("slab in use grew by %d KiB over all cases (most: %s)" % (total // 1024, top))
    for kind, (n, total, top) in sorted(tables.slab.items()):
        say("  kmalloc and block caches over the last %d %s tables: %+d KiB (most: %s)"
            % (n, kind, total // 1024, top))
    # The final state for the shell: which bitmaps exist now.
    with open(os.environ["FZ_STATE"], "w") as f:
        f.write("B %s\nV %s\ncommitted %d\nrecords %d\n"
                % (b" ".join(sorted(state.bm["B"])).decode(),
                   b" ".join(sorted(state.bm["V"])).decode(), state.committed,
                   kmsg.records))


# ---------------------------------------------------------------------------
# Damaged metadata: random byte flips in a formatted metadata device

CSUM_SEED = 0xf1eece5
BLOCK = 4096


def crc32_le(seed, data):
    # The kernel's crc32_le() has no pre/post inversion; zlib's has both.
    return zlib.crc32(data, seed ^ 0xffffffff) ^ 0xffffffff


def classify(block, magic):
    if block == bytes(BLOCK):
        return "zero"
    if struct.unpack_from("<I", block, 4)[0] != magic:
        return "foreign"
    if struct.unpack_from("<I", block, 0)[0] != crc32_le(CSUM_SEED, block[4:]):
        return "corrupt"
    return "valid"


def read_dev(path, off, n):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        buf = mmap.mmap(-1, n)
        os.preadv(fd, [buf], off)
        return bytes(buf)
    finally:
        os.close(fd)


def write_dev(path, off, data):
    fd = os.open(path, os.O_RDWR | os.O_DIRECT)
    try:
        buf = mmap.mmap(-1, len(data))
        buf[:] = data
        os.pwritev(fd, [buf], off)
        os.fsync(fd)
    finally:
        os.close(fd)


def bitmap_state(name):
    """status, bitmap_list and every bitmap's ranges, as one text."""
    r, st, _ = table_status(name, table=False)
    if r:
        return None
    lines = [st[0][3]]
    r, lst, _ = message(name, 0, b"bitmap_list")
    names = sorted(l.split()[0] for l in (lst or b"").split(b"\n") if l.strip())
    lines += sorted(l for l in (lst or b"").split(b"\n") if l.strip())
    for n in names:
        start, ranges = 0, []
        while True:
            r, page, _ = message(name, 0, b"bitmap_changes %s %d" % (n, start))
            if r:
                return None
            page = page.split()
            ranges += page[1:]
            if page[0] == b"end":
                break
            start = int(page[0])
        lines.append(b"== %s %s" % (n, b" ".join(ranges)))
    return b"\n".join(lines)


def dev_number(name):
    """The dev_t of a dm device, or None if there is no such device."""
    r, buf = dm(DM_DEV_STATUS, name)
    if r:
        return None
    # struct dm_ioctl.dev is huge_encode_dev(): minor bits 0-7 and 20-31.
    d = struct.unpack_from("<Q", buf, 40)[0]
    return os.makedev((d >> 8) & 0xfff, (d & 0xff) | ((d >> 12) & 0xfff00))


def node(name):
    """A block device node of our own for a dm device (no udev needed)."""
    d = dev_number(name)
    if d is None:
        die("no device %s" % name)
    path = os.path.join(os.environ["FZ_WORK"], "node-" + name)
    if os.path.exists(path):
        os.unlink(path)
    os.mknod(path, 0o600 | stat.S_IFBLK, d)
    return path


def must_msg(name, text, want=None):
    r, answer, _ = message(name, 0, text)
    if r or (want is not None and answer != want):
        die("message %r to %s: errno %d, answer %r (expected %r)" % (text, name, r, answer, want))


def phase_flips(seed, flips, batch):
    """FZ_MOD: the origin (dm name), FZ_MM: a metadata device (dm name) of
    at least the area the origin needs with 4 KiB chunks, plus 4 blocks.
    Formats it with two bitmaps: b (slot 0, three chunks in three blocks)
    and e (slot 1, empty: its blocks hold a generation before its clear),
    such that both copies of the superblock and of every block of b and e
    are valid and hold the same bitmaps."""
    e = os.environ
    rnd = random.Random(seed)
    kmsg = Kmsg()
    origin, chunk = "fz-mo", 8
    mod, mpath = "/dev/mapper/" + e["FZ_MOD"], "/dev/mapper/" + e["FZ_MM"]
    with open(mod, "rb") as f:
        osize = f.seek(0, 2) // 512
    with open(mpath, "rb") as f:
        msize = f.seek(0, 2)
    nr_chunks = osize // chunk
    nb = -(-nr_chunks // 32256)
    area = 2 + 16 * 2 * nb
    if msize < (area + 4) * BLOCK or nb < 3:
        die("setup: metadata device of %d bytes for %d blocks per bitmap" % (msize, nb))
    used_slots = 2
    table = [(0, osize, "fleece-origin", b"%s %s %d" % (mod.encode(), mpath.encode(), chunk))]

    def activate():
        if dm(DM_DEV_CREATE, origin)[0]:
            die("cannot create %s" % origin)
        r = load(origin, table)
        if r == 0:
            r2 = dm(DM_DEV_SUSPEND, origin)[0]
            if r2:
                die("resume of %s: errno %d" % (origin, r2))
        return r

    def deactivate():
        r = remove_dev(origin)
        if r:
            die("cannot remove %s: errno %d" % (origin, r))

    write_dev(mpath, 0, bytes(msize))
    if activate():
        die("an all-zero metadata device is refused")
    must_msg(origin, b"bitmap_add b")
    must_msg(origin, b"bitmap_add e")
    dev = node(origin)
    chunks = (100, 40000, 65000)	# one in each block
    for c in chunks:
        write_dev(dev, c * chunk * 512, os.urandom(chunk * 512))
    # b and e recorded the same chunks. A merge rewrites the blocks of its
    # destination where the source has bits (all three) into the copy that
    # is not the newest, with the same bits: merging both ways leaves two
    # equal copies of every block of b and of e. Two clears of e write the
    # superblock twice, each time with a new generation of e that no block
    # has: both copies then hold the same two bitmaps, b and an empty e.
    must_msg(origin, b"bitmap_merge b e")
    must_msg(origin, b"bitmap_merge e b")
    must_msg(origin, b"bitmap_clear e")
    must_msg(origin, b"bitmap_clear e")
    must_msg(origin, b"bitmap_changes b", b"end 100+1 40000+1 65000+1")
    deactivate()
    os.unlink(dev)

    good = read_dev(mpath, 0, msize)
    blocks = [good[i:i + BLOCK] for i in range(0, msize, BLOCK)]

    # The precondition: every pair in use holds two valid, equal copies.
    pairs = {("sb", 0): (0, 1)}
    for sl in range(used_slots):
        for i in range(nb):
            b0 = 2 + sl * 2 * nb + 2 * i
            pairs[("slot", sl, i)] = (b0, b0 + 1)
    for key, (a, b) in pairs.items():
        magic = 0x6365656c if key[0] == "sb" else 0x7469626c
        ka, kb = classify(blocks[a], magic), classify(blocks[b], magic)
        if key[0] == "sb" and (ka, kb) != ("valid", "valid"):
            die("setup: superblock copies are %s, %s" % (ka, kb))
        if key[0] == "slot":
            if (ka, kb) not in (("valid", "valid"), ("zero", "zero")):
                die("setup: the copies of %s are %s, %s" % (key, ka, kb))
            if blocks[a][64:] != blocks[b][64:]:
                die("setup: the copies of %s hold different bits" % (key,))
    pair_of = {blk: key for key, bl in pairs.items() for blk in bl}

    # An accepted activation records the attach and then the detach in the
    # superblock (blocks 0 and 1); nothing else is written.
    if activate():
        die("the intact metadata is refused")
    want_state = bitmap_state(origin)
    deactivate()
    if read_dev(mpath, 2 * BLOCK, msize - 2 * BLOCK) != good[2 * BLOCK:]:
        die("activating intact metadata wrote past its superblock")
    kmsg.read()

    counts = {"refused": 0, "accepted": 0, "repaired": 0}
    errs = {}
    t0 = time.time()
    for n in range(flips):
        damaged = bytearray(good)
        spots = set()
        for _ in range(rnd.choice([1, 1, 1, 2, 3])):
            k = rnd.random()
            if k < 0.35:
                blk = rnd.randrange(2)
            elif k < 0.8:
                blk = 2 + rnd.randrange(used_slots * 2 * nb)
            elif k < 0.9:
                blk = rnd.randrange(2 + used_slots * 2 * nb, area)
            else:
                blk = rnd.randrange(area, msize // BLOCK)
            off = rnd.randrange(64) if rnd.random() < 0.5 else rnd.randrange(BLOCK)
            if (blk, off) in spots:
                continue
            spots.add((blk, off))
            damaged[blk * BLOCK + off] ^= rnd.randrange(1, 256)
        # Which copies of which pairs are damaged decides the outcome.
        hit = {}
        for blk, _off in spots:
            key = pair_of.get(blk)
            if key is not None:
                hit.setdefault(key, set()).add(blk)
        sb = hit.get(("sb", 0), set())
        expect = None
        if len(sb) == 2:
            kinds = {classify(bytes(damaged[b * BLOCK:(b + 1) * BLOCK]), 0x6365656c) for b in (0, 1)}
            expect = ("Metadata superblock checksum mismatch" if "corrupt" in kinds else
                      "Metadata device holds something else: refusing to overwrite it")
        elif any(len(v) == 2 for k, v in hit.items() if k[0] == "slot"):
            expect = "Metadata bitmap block checksum mismatch"
        write_dev(mpath, 0, bytes(damaged))
        desc = "flips %s" % sorted(spots)
        r = activate()
        lines = kmsg.read()
        if r == 0:
            got = bitmap_state(origin)
            deactivate()
            if expect:
                die("%s: accepted, expected '%s'" % (desc, expect))
            if got != want_state:
                die("%s: accepted with other bitmaps:\n%s\nexpected:\n%s"
                    % (desc, got.decode("latin-1"), want_state.decode("latin-1")))
            counts["accepted"] += 1
            # The damaged copy of each pair hit in a slot in use is
            # rewritten at once (and nothing else past the superblock): a
            # valid block of its slot and index.
            after = read_dev(mpath, 0, msize)
            want = bytearray(damaged)
            repaired = [(key, blk) for key, v in hit.items() if key[0] == "slot" for blk in v]
            for key, blk in repaired:
                b = after[blk * BLOCK:(blk + 1) * BLOCK]
                if (classify(b, 0x7469626c) != "valid" or
                        struct.unpack_from("<II", b, 24) != (key[1], key[2])):
                    die("%s: the damaged copy %d of %s was not rewritten as a valid block of it"
                        % (desc, blk, key))
                want[blk * BLOCK:(blk + 1) * BLOCK] = b
            if after[2 * BLOCK:] != bytes(want[2 * BLOCK:]):
                die("%s: the metadata device was written past its superblock, "
                    "other than the damaged copies" % desc)
            said = any("had a damaged copy: rewritten" in l for l in lines)
            if said != bool(repaired):
                die("%s: %d damaged copies, but the kernel %s a repair: %s"
                    % (desc, len(repaired), "logged" if said else "did not log", lines))
            # Repaired with the right content: the next activation finds the
            # same bitmaps and nothing to repair.
            if repaired:
                if activate():
                    die("%s: refused after its repair" % desc)
                got = bitmap_state(origin)
                deactivate()
                kmsg.read()
                if got != want_state:
                    die("%s: after the repair, other bitmaps:\n%s\nexpected:\n%s"
                        % (desc, got.decode("latin-1"), want_state.decode("latin-1")))
                if read_dev(mpath, 2 * BLOCK, msize - 2 * BLOCK) != after[2 * BLOCK:]:
                    die("%s: the activation after the repair wrote past its superblock" % desc)
                counts["repaired"] += 1
        else:
            deactivate()
            logged = [l for l in lines if ": fleece-origin: " in l]
            if not expect:
                die("%s: refused (errno %d, %s), but only redundant copies were hit"
                    % (desc, r, logged))
            if not any(expect in l for l in logged):
                die("%s: refused, but the kernel did not say '%s': %s" % (desc, expect, logged))
            counts["refused"] += 1
            errs[expect] = errs.get(expect, 0) + 1
        # Refused: never written.
        if r and read_dev(mpath, 0, msize) != bytes(damaged):
            die("%s: the metadata device was written" % desc)
        if (n + 1) % batch == 0:
            kmsg.read()
    write_dev(mpath, 0, good)
    kmsg.read()
    say("%d damaged metadata images: %d refused (%s), %d accepted with identical bitmaps "
        "(only one copy of each pair hit), %d of them with their damaged copies rewritten "
        "(and nothing else past the superblock; loaded again the same); "
        "not written at all when refused [%.0fs]"
        % (flips, counts["refused"], ", ".join("%s: %d" % kv for kv in sorted(errs.items())),
           counts["accepted"], counts["repaired"], time.time() - t0))


def phase_leaks():
    """Each device in FZ_LEAK takes a fleece-origin with 2048-sector chunks:
    no fleece-origin state the fuzzed tables created was left on it."""
    for path in os.environ["FZ_LEAK"].split():
        with open(path, "rb") as f:
            size = f.seek(0, 2) // 512
        if dm(DM_DEV_CREATE, "fz-leak")[0]:
            die("cannot create fz-leak")
        r = load("fz-leak", [(0, size, "fleece-origin", b"%s - 2048" % path.encode())])
        if remove_dev("fz-leak"):
            die("cannot remove fz-leak")
        if r:
            die("no fleece-origin with another chunk size on %s (errno %d): "
                "origin state left behind?" % (path, r))
    say("no fleece-origin state left on %s" % os.environ["FZ_LEAK"])


def main():
    top = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    e = os.environ
    seed = int(e.get("FLEECE_FUZZ_SEED", "19"))
    batch = int(e.get("FZ_BATCH", "100"))
    if sys.argv[1:] == ["tables"] and e.get("FZ_PROFILE"):
        import cProfile
        import pstats
        cProfile.runctx("phase_tables(top, seed, int(e['FZ_CASES']), int(e['FZ_CLI']), batch)",
                        globals(), locals(), e["FZ_PROFILE"])
        pstats.Stats(e["FZ_PROFILE"]).sort_stats("tottime").print_stats(8)
        print("seconds per ioctl number:", {k: round(v, 2) for k, v in TIMES.items()})
    elif sys.argv[1:] == ["tables"]:
        phase_tables(top, seed, int(e["FZ_CASES"]), int(e["FZ_CLI"]), batch)
    elif sys.argv[1:] == ["after"]:
        phase_leaks()
        phase_flips(seed, int(e["FZ_FLIPS"]), batch)
    else:
        sys.exit("usage: dmfuzz.py tables|after")


if __name__ == "__main__":
    main()
