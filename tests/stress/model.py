#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""
Model-based randomized stress test of dm-fleece (issue 12, item 5), run as
root in the test VM.

A seeded generator drives random sequences of operations against a real
fleece-origin and its views: origin writes, discards and write-zeroes, views
of every kind created and removed, reads, releases, writable-view writes,
commits, bitmap messages, table reloads, removing and re-creating the
fleece-origin (after a "clean_detach" message or not, attached again with
no_gap or not: a possible gap either way but the first), and batches of
concurrent writers and readers. Alongside, a reference model keeps what the
documentation (Documentation/fleece.rst and fleece-origin.rst) says every
view, bitmap and frozen set must contain, and every answer of the kernel is
checked against it, byte for byte:

- the origin's content, every view's point-in-time content (with its
  releases and its own writes), which chunks of each view are still
  uncopied, preserved in scratch, released or outside its frozen set;
- every bitmap (the chunks written since it started), every frozen set and
  backup transaction, the slots they take; which bitmaps are untrusted
  after an attach that may have followed a gap (the origin's "gap", an
  incremental view refused), why (the kernel log: a detach without
  clean_detach, or an attach without no_gap), and how a full backup,
  bitmap_clear and bitmap_merge carry or end that;
- the status lines (Active/Invalid, scratch use, counters, transaction
  state; #sessions, bitmaps, dirty chunks, frozen sets), the errno of every
  refused message or table, and the kernel log (no splat, ever).

Every write stamps each 512-byte sector with the seed, the operation number
and the sector, so a sector read from the wrong place or the wrong time
never matches by accident, and a failure can say whose data it read.

All device IO is O_DIRECT from page-aligned buffers, so the page cache
never hides anything. The same seed draws the same operations, as long as
the kernel answers the same way. A failure prints the seed, the operation
number, the last operations and what differed, and exits 1.

Usage (see --help): model.py --seed N --ops N [--seconds S] [--legacy-txn]

--legacy-txn is for a module from before "one backup per bitmap" (which
also predates no_gap, origin_id and "clean_detach"): fleece-origin tables
then carry no feature arguments, no clean_detach message is sent, and no
attach is expected to distrust bitmaps.
"""
import argparse
import errno
import fcntl
import hashlib
import mmap
import os
import random
import stat
import struct
import sys
import threading
import time
import traceback
from collections import deque

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz"))
import dmfuzz  # noqa: E402  (the device-mapper ioctls and the kernel log)
from dmfuzz import (DM_DEV_CREATE, DM_DEV_STATUS, DM_DEV_SUSPEND, dm,  # noqa: E402
                    load, message, remove_dev, suspend, table_status)

SECTOR = 512
REGION = 2048			# sectors: fleece's region (1 MiB; chunks here are smaller)
MAX_SESSIONS = 8
MAX_BITMAPS = 8
SLOTS = 16			# live bitmaps + frozen sets
PREFIX = "fst-"			# every device this test makes
AREA = 65536			# sectors of $SCRATCH per scratch slice (32 MiB)
MAX_IO = 5120			# sectors: the largest single write or read (2.5 MiB)

BLKDISCARD = 0x1277		# _IO(0x12, 119)
BLKZEROOUT = 0x127f		# _IO(0x12, 127)

# Devices are made with the ioctls, without a udev cookie: udev's dm rules
# (55-dm.rules) then disable the disk rules for them, so udev never probes
# (reads) a view behind our back, which would change its reads_* counters.
# Our own nodes (Devices.node) need no udev either.

# origin_id: 1 to 127 printable characters, no blanks (nor a backslash, which the
# kernel's word splitting takes for an escape).
ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:/@#=+,~"

BITMAP_NAMES = ["b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8", "x.y-z_9", "Nightly"]


class Failure(Exception):
    """The kernel's answer differs from the model's."""


# ---------------------------------------------------------------------------
# Chunk sets are Python integers used as bitmaps: bit c is chunk c.

def span(first, end):
    """The chunks first .. end - 1."""
    return ((1 << (end - first)) - 1) << first if end > first else 0


def runs(mask):
    """[(first, count)] of the maximal runs of set bits, in order."""
    out, base = [], 0
    while mask:
        low = (mask & -mask).bit_length() - 1
        mask >>= low
        base += low
        n = (mask ^ (mask + 1)).bit_length() - 1
        out.append((base, n))
        mask >>= n
        base += n
    return out


def fmt_chunks(mask, limit=8):
    r = runs(mask)
    text = " ".join("%d+%d" % fc for fc in r[:limit])
    return text + (" ..." if len(r) > limit else "") if r else "none"


def parse_ranges(words):
    """Mask of "<first>+<count>" words."""
    mask = 0
    for w in words:
        first, count = w.split(b"+")
        mask |= span(int(first), int(first) + int(count))
    return mask


# ---------------------------------------------------------------------------
# Stamped data: every sector says who wrote it, when and where.

MAGIC = b"FLEECEst"
STAMP = struct.Struct("<8sQQQII")	# magic, seed, op, sector, kind, who
KIND_ORIGIN, KIND_VIEW, KIND_FILL = 0, 1, 2
ZERO_SECTOR = bytes(SECTOR)


def stamped(seed, op, kind, who, sector, nsect):
    """nsect sectors of data unique to (seed, op, kind, who, sector)."""
    filler = hashlib.shake_128(b"%d/%d/%d/%d" % (seed, op, kind, who)).digest(SECTOR)
    buf = bytearray(filler * nsect)
    for i in range(nsect):
        STAMP.pack_into(buf, i * SECTOR, MAGIC, seed, op, sector + i, kind, who)
    return buf


def whose(sect, seed):
    """What a 512-byte sector holds, in words."""
    if sect == ZERO_SECTOR:
        return "zeroes"
    if sect[:8] != MAGIC:
        return "unknown data (%s...)" % sect[:16].hex()
    _, s, op, sector, kind, who = STAMP.unpack_from(sect)
    if s != seed:
        return "data of another run (seed %d)" % s
    what = {KIND_ORIGIN: "origin write", KIND_FILL: "initial fill",
            KIND_VIEW: "write to view %d" % who}.get(kind, "kind %d" % kind)
    return "%s of op %d (sector %d)" % (what, op, sector)


def stamp_op(sect, seed):
    """(kind, op) of a stamped sector of this run, else None."""
    if sect[:8] != MAGIC:
        return None
    _, s, op, _, kind, _ = STAMP.unpack_from(sect)
    return (kind, op) if s == seed else None


# ---------------------------------------------------------------------------
# Block devices: O_DIRECT IO from page-aligned buffers.

class IoBuf:
    """A page-aligned buffer for O_DIRECT IO; one per thread."""

    def __init__(self, size=MAX_IO * SECTOR + 4096):
        self.map = mmap.mmap(-1, size)
        self.mv = memoryview(self.map)

    def read(self, fd, off, n):
        got = os.preadv(fd, [self.mv[:n]], off)
        if got != n:
            raise OSError(errno.EIO, "short read: %d of %d bytes" % (got, n))
        return bytes(self.mv[:n])

    def write(self, fd, off, data):
        n = len(data)
        self.mv[:n] = data
        got = os.pwritev(fd, [self.mv[:n]], off)
        if got != n:
            raise OSError(errno.EIO, "short write: %d of %d bytes" % (got, n))


def range_ioctl(fd, req, off, n):
    """BLKDISCARD or BLKZEROOUT of n bytes at off."""
    fcntl.ioctl(fd, req, struct.pack("QQ", off, n))


def majmin(dev):
    return "%d:%d" % (os.major(dev), os.minor(dev))


def blockdev_sectors(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_END) // SECTOR
    finally:
        os.close(fd)


class Devices:
    """The device-mapper devices of a run, and our own nodes for them."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.made = []		# names, oldest first

    def create(self, name, table, resume=True):
        """Create a one-target device and (unless not resume) activate it;
        returns the load's errno (then the device is gone again)."""
        r = dm(DM_DEV_CREATE, name)[0]
        if r:
            raise OSError(r, "DM_DEV_CREATE %s" % name)
        self.made.append(name)
        r = load(name, [table])
        if r:
            self.remove(name)
            return r
        if resume:
            self.resume(name)
        return 0

    def resume(self, name):
        r = dm(DM_DEV_SUSPEND, name)[0]
        if r:
            raise OSError(r, "resume %s" % name)

    def remove(self, name):
        r = remove_dev(name)
        if r:
            raise OSError(r, "DM_DEV_REMOVE %s" % name)
        self.made.remove(name)

    def node(self, name):
        """A node of our own (udev may not have made /dev/mapper/NAME yet)."""
        dev = dmfuzz.dev_number(name)
        path = os.path.join(self.workdir, "%s-%d" % (name, os.minor(dev)))
        if not os.path.exists(path):
            os.mknod(path, 0o600 | stat.S_IFBLK, dev)
        return path

    def cleanup(self):
        """Views first, then the fleece-origin, then what they stood on."""
        for name in sorted(self.made, key=removal_order):
            try:
                self.remove(name)
            except OSError as e:
                print("stress: cannot remove %s: %s" % (name, e), file=sys.stderr)


def removal_order(name):
    """Views, then the fleece-origin, then the slices under them."""
    kind = name[len(PREFIX):]
    return 0 if kind.startswith("v") else 1 if kind == "o" else 2


def remove_leftovers():
    """Devices of an earlier run that did not end (ours: PREFIX)."""
    left = sorted((n for n in dmfuzz.list_devices() if n.startswith(PREFIX)),
                  key=removal_order)
    for name in left:
        print("stress: removing %s, left by an earlier run" % name, file=sys.stderr)
        r = remove_dev(name)
        if r:
            raise OSError(r, "cannot remove %s, left by an earlier run" % name)


def status(name, inactive=False):
    """(errno, the INFO status words) of a one-target device."""
    r, tgts, _ = table_status(name, inactive=inactive, table=False)
    if r:
        return r, None
    return 0, tgts[0][3].decode().split()


def event_nr(name):
    r, buf = dm(DM_DEV_STATUS, name)
    return None if r else struct.unpack_from("<I", buf, 32)[0]


# ---------------------------------------------------------------------------
# The model of one view (session)

class View:
    """What one session must contain and report, per fleece.rst.

    Every chunk of the view is in exactly one of these sets:
      fresh     not copied yet: read from the origin, copied before a write;
      copied    has a scratch slot (old origin data, or the view's writes);
      released  released by a discard: reads zeroes;
      unprot    outside the frozen set of an incremental view: read from the
                origin, checked; EIO once the origin wrote it since the
                point in time;
      unsure    after an operation that partly failed: its state is not
                known, but its content is (content[] is right either way).
    """

    def __init__(self, vid, dev, length, cs, opts, pit_op, content, scratch):
        self.vid = vid
        self.dev = dev			# dm name
        self.length = length		# sectors
        self.cs = cs
        self.nr_chunks = -(-length // cs)
        self.coverage = span(0, self.nr_chunks)
        self.opts = opts
        self.writable = opts["writable"]
        self.on_full = opts["on_full"]
        self.low_water = opts["low_water"]
        self.bitmap = opts["bitmap"]
        self.full = opts["full"]
        self.pit_op = pit_op
        self.content = content		# bytearray: what every sector must read
        self.scratch = scratch
        self.total = scratch.sectors // cs
        self.fresh = self.coverage
        self.copied = self.released = self.unprot = self.unsure = 0
        self.written = 0		# chunks the origin changed since the point in time
        self.eio_extra = 0		# --legacy-txn: chunks merged into its bitmap
        self.frozen = 0			# the frozen set (bitmap views), whole
        self.frozen_gap = False		# it keeps its bitmap's untrusted (gap) mark
        self.txn = None			# open, committed, ended
        self.holds = False		# its frozen set takes a slot of the origin
        self.invalid = False
        self.state_known = True		# else adopt Active/Invalid from the status
        self.orphaned = False		# its fleece-origin was removed
        self.sync = False		# adopt the counters at the next check
        self.lw_hit = False
        self.event_due = False		# a dm event must come
        self.ctr = dict(used=0, preserved=0, copied=0, released=0, skipped=0,
                        reads_scratch=0, reads_origin=0)
        self.fd = None
        self.node = None
        self.inactive = False		# loaded into its device, not resumed yet

    def freeze(self, frozen):
        """Start its backup transaction with this frozen set: the whole
        bitmap, even past the end of a shorter view (it is merged back
        whole); changes lists only the view's part."""
        self.frozen = frozen
        self.txn = "open"
        self.holds = True
        if not self.full:
            self.unprot = self.coverage & ~frozen
            self.fresh = self.coverage & frozen

    def kind(self):
        if self.bitmap:
            k = "full backup of %s" % self.bitmap if self.full else "incremental on %s" % self.bitmap
        else:
            k = "full"
        if self.writable:
            k += ", writable"
        if self.on_full:
            k += ", on_full %s" % self.on_full
        return k

    def name(self):
        return "view %d (%s, %s, point in time op %d)" % (self.vid, self.dev, self.kind(),
                                                          self.pit_op)

    def chunk_state(self, c):
        bit = 1 << c
        for what in ("fresh", "copied", "released", "unprot", "unsure"):
            if getattr(self, what) & bit:
                return what
        return "nowhere (model bug)"

    def free(self):
        return self.total - self.ctr["used"]

    def need(self, mask, writing=False):
        """(at least, at most) scratch slots a write to these chunks takes:
        an origin write copies fresh chunks, a view's own write also gives
        released chunks a (zeroed) slot."""
        if self.invalid:
            return 0, 0
        m = mask & self.coverage
        sure = self.fresh | (self.released if writing else 0)
        return (m & sure).bit_count(), (m & (sure | self.unsure)).bit_count()

    def eio_ok(self, mask):
        """May a read of these chunks fail? Only for chunks outside the
        frozen set that the origin changed since the point in time (a read
        is checked as a whole: one such chunk fails all of it)."""
        return bool(mask & self.unprot & (self.written | self.eio_extra))

    def take_slots(self, n):
        self.ctr["used"] += n
        self.ctr["preserved"] += n
        if self.low_water and self.free() < self.low_water and not self.lw_hit and n:
            self.lw_hit = True
            self.event_due = not self.sync	# only if the count is sure

    def free_slots(self, n):
        self.ctr["used"] -= n
        self.ctr["preserved"] -= n
        if n and self.free() >= self.low_water:
            self.lw_hit = False		# re-armed

    def sectors_in(self, mask, start, end):
        """Sectors of [start, end) that lie in chunks of mask."""
        first, last = start // self.cs, (end - 1) // self.cs
        if first == last:
            return end - start if mask >> first & 1 else 0
        n = self.cs * (mask & span(first + 1, last)).bit_count()
        if mask >> first & 1:
            n += (first + 1) * self.cs - start
        if mask >> last & 1:
            n += end - last * self.cs
        return n


# ---------------------------------------------------------------------------
# The test

class Stress:
    def __init__(self, args):
        self.args = args
        self.seed = args.seed
        self.rng = random.Random(args.seed)
        self.legacy = args.legacy_txn
        self.single = args.single_backup
        self.op = 0
        self.log = deque(maxlen=args.log)
        self.kmsg = dmfuzz.Kmsg(fail=self.kernel_splat)
        self.klines = []
        self.events = {}		# view -> its dm event counter at the last check
        self.buf = IoBuf()
        self.devs = Devices(args.workdir)
        self.views = []			# every session, oldest first
        self.pending = 0			# views loaded, not resumed yet
        self.pending_held = []		# their bitmaps
        self.next_vid = 1
        self.areas = list(range(blockdev_sectors(args.scratch) // AREA))
        self.stats = dict(views=0, reads=0, bytes_checked=0, writes=0, releases=0,
                          view_writes=0, refusals=0, batches=0, eio=0, reloads=0,
                          attaches=0, gaps=0, gap_bypass=0, gap_refused=0, gap_full=0,
                          gap_back=0, clean_detach=0, clean_removals=0)
        # Attaches (fleece_track_create) and trust, fleece-origin.rst: a
        # live bitmap is untrusted (reason "gap") once an attach of existing
        # metadata distrusted it, until bitmap_clear or a committed full
        # backup; a frozen set keeps the mark of the bitmap it froze.
        # The detach (the removal of the last fleece-origin table; a reload
        # keeps the tracker) writes FLEECE_SB_BYPASS unless "clean_detach"
        # was sent to the tracker, and not taken back ("clean_detach
        # cancel"); the next attach distrusts the bitmaps even with no_gap,
        # and clears it.
        self.untrusted = set()		# live bitmaps untrusted for a gap
        self.clean_detach = False	# the tracker's flag, in memory (dies with it)
        self.bypass = False		# BYPASS on disk: the last detach was not clean
        self.id_on_disk = False		# the metadata holds self.origin_id

    # -- reporting -----------------------------------------------------

    def note(self, text):
        self.log.append("op %d: %s" % (self.op, text))
        if self.args.verbose:
            print("  " + self.log[-1], flush=True)

    def fail(self, why):
        raise Failure(why)

    def kernel_splat(self, why):
        raise Failure(why)

    def report(self, why):
        print("FAIL: stress: seed=%d op=%d: %s" % (self.seed, self.op, why))
        print("  recent operations (oldest first):")
        for line in self.log:
            print("    " + line)
        print("  model: bitmaps %s%s" % (" ".join("%s:%d%s" % (
            n, m.bit_count(), " (untrusted: gap)" if n in self.untrusted else "")
            for n, m in sorted(getattr(self, "live", {}).items())) or "none",
            ("; clean_detach in force" if getattr(self, "clean_detach", False) else "") +
            ("; BYPASS on disk (the last detach was not clean)" if self.bypass else "")))
        for v in self.views:
            print("    %s: %s%s, %s, frozen %d chunks%s, %d copied, %d released, %d unsure"
                  % (v.name(), "Invalid" if v.invalid else "Active",
                     " (orphaned)" if v.orphaned else "", v.txn or "no transaction",
                     v.frozen.bit_count(), " (untrusted: gap)" if v.frozen_gap else "",
                     v.copied.bit_count(), v.released.bit_count(), v.unsure.bit_count()))
        if getattr(self, "persistent", False):
            self.dump_meta()
        if self.klines:
            print("  kernel log since the last check:")
            for line in self.klines[-20:]:
                print("    " + line)
        opts = (" --legacy-txn" if self.legacy else "") + (" --single-backup" if self.single
                                                            else "")
        print("  reproduce: tests/stress/run --seed %d --seeds 1 --ops-per-seed %d%s --log 200"
              "\n    (in the VM: tests/stress/model.py --seed %d --ops %d%s)"
              % (self.seed, self.op, opts, self.seed, self.op, opts))
        sys.stdout.flush()

    def dump_meta(self):
        """The metadata device's superblocks and the blocks of slots in use
        (fleece-origin.rst, "On-disk format"), for a failure report."""
        nb = -(-self.nr_chunks // 32256)
        fd = os.open(self.args.meta, os.O_RDONLY | os.O_DIRECT)
        try:
            sbs = [self.buf.read(fd, c * 4096, 4096) for c in (0, 1)]
            best = max(sbs, key=lambda b: struct.unpack_from("<Q", b, 16)[0])
            print("  metadata: superblock seq %s, flags %s" % (" / ".join(
                str(struct.unpack_from("<Q", b, 16)[0]) for b in sbs), " / ".join(
                str(struct.unpack_from("<I", b, 68)[0]) for b in sbs)))
            for slot in range(SLOTS):
                name, state, flags, gen = struct.unpack_from("<32sIIQ", best, 72 + 48 * slot)
                if not state:
                    continue
                line = "    slot %d: %s %s gen %d flags %d:" % (
                    slot, name.rstrip(b"\0").decode(), {1: "live", 2: "frozen"}.get(state, state),
                    gen, flags)
                for i in range(nb):
                    for c in (0, 1):
                        b = self.buf.read(fd, (2 + slot * 2 * nb + 2 * i + c) * 4096, 4096)
                        _, magic, seq, bgen, bslot, index = struct.unpack_from("<IIQQII", b)
                        bits = int.from_bytes(b[64:], "little")
                        line += " [blk %d copy %d: seq %d gen %d slot %d%s %s]" % (
                            i, c, seq, bgen, bslot, "" if magic == 0x7469626c else " NO MAGIC",
                            fmt_chunks(bits << (i * 32256), 4))
                print(line)
        finally:
            os.close(fd)

    # -- setup ---------------------------------------------------------

    def setup(self):
        """Random geometry: chunk size, origin length, metadata or not."""
        r = self.rng
        self.cs = r.choices([8, 128, 16, 32], [40, 40, 10, 10])[0]
        self.shift = self.cs.bit_length() - 1
        length = r.randrange(8 << 11, (24 << 11) + 1)
        if r.random() < 0.5:
            length -= length % self.cs		# whole chunks
        elif length % self.cs == 0:
            length -= r.randrange(1, self.cs)	# a short last chunk
        self.length = length
        self.nr_chunks = -(-length // self.cs)
        self.persistent = r.random() < 0.6
        # What the origin is (origin_id), the same for the whole run.
        if r.random() < 0.5:
            self.origin_id = "virtio-origin-%d" % self.seed
        else:
            self.origin_id = "".join(r.choice(ID_CHARS)
                                     for _ in range(r.choice([1, 8, 40, 127])))
        print("stress: seed=%d chunk=%d sectors origin=%d sectors (%d chunks%s) %s%s"
              % (self.seed, self.cs, length, self.nr_chunks,
                 ", short last chunk" if length % self.cs else "",
                 "persistent" if self.persistent else "volatile",
                 " legacy-txn" if self.legacy else ""), flush=True)

        remove_leftovers()
        meta = os.open(self.args.meta, os.O_RDWR)
        try:
            range_ioctl(meta, BLKZEROOUT, 0, 4 << 20)
        finally:
            os.close(meta)
        self.meta_dev = majmin(os.stat(self.args.meta).st_rdev)
        r0 = self.devs.create(PREFIX + "os", (0, length, "linear", b"%s 2048" % majmin(
            os.stat(self.args.origin).st_rdev).encode()))
        if r0:
            raise OSError(r0, "cannot create the origin slice")
        self.slice = majmin(dmfuzz.dev_number(PREFIX + "os"))
        self.fill_origin()
        # Zeroed metadata: formatted, nothing to distrust, whatever the
        # features say.
        self.live = {}
        self.attach(self.origin_features(r.random() < 0.5, r.random() < 0.5))
        for _ in range(r.randrange(1, 4)):
            self.bitmap_add(self.new_bitmap_name())
        self.check_all()

    def fill_origin(self):
        """Stamp every sector of the origin, so that no two sectors match."""
        self.origin = bytearray(self.length * SECTOR)
        fd = os.open(self.devs.node(PREFIX + "os"), os.O_RDWR | os.O_DIRECT)
        try:
            for s in range(0, self.length, 4096):
                n = min(4096, self.length - s)
                data = stamped(self.seed, 0, KIND_FILL, 0, s, n)
                self.buf.write(fd, s * SECTOR, data)
                self.origin[s * SECTOR:(s + n) * SECTOR] = data
        finally:
            os.close(fd)

    def origin_table(self, length=None, meta=None, chunk=None, features=None):
        """The fleece-origin's table; features: the feature words (without
        their count), or None for none at all."""
        words = [self.slice, meta or (self.meta_dev if self.persistent else "-"),
                 str(chunk or self.cs)]
        if features is not None:
            words += [str(len(features))] + features
        return (0, length or self.length, "fleece-origin", " ".join(words).encode())

    def origin_features(self, no_gap, with_id, origin_id=None):
        """Feature words: no_gap, origin_id <id>, in random order, the
        keywords sometimes in upper case; None (no count at all) or []
        ("0") when there are none. --legacy-txn: an old module, none."""
        r = self.rng
        if self.legacy:
            return None
        groups = []
        if no_gap:
            groups.append(["no_gap"])
        if with_id:
            groups.append(["origin_id", origin_id or self.origin_id])
        r.shuffle(groups)
        if not groups:
            return [] if r.random() < 0.3 else None
        return [w for g in groups for w in [g[0].upper() if r.random() < 0.1 else g[0]] + g[1:]]

    def origin_create(self, features=None):
        """Create the fleece-origin (an attach): the kernel's errno."""
        err = self.devs.create(PREFIX + "o", self.origin_table(features=features))
        if not err:
            self.ofd = os.open(self.devs.node(PREFIX + "o"), os.O_RDWR | os.O_DIRECT)
        return err

    def attach(self, features, frozen=()):
        """Create the fleece-origin on the metadata as the model has it:
        self.live, the bitmaps on disk, and frozen, the frozen sets of
        transactions the last fleece-origin left open ((bitmap, chunks,
        untrusted)). An attach of existing metadata distrusts every bitmap
        and frozen set on it (reason "gap"), unless the table says no_gap
        and the last detach was clean (no BYPASS: "clean_detach" before
        it); then the frozen sets merge back into their bitmaps (with their
        mark). The kernel logs how many it marked and why: BYPASS when it
        was set (even with no_gap), else the missing no_gap. Every attach
        clears BYPASS. Volatile: nothing was kept, nothing is distrusted."""
        words = [w.lower() for w in features or []]
        no_gap = "no_gap" in words
        with_id = "origin_id" in words
        table = self.origin_table(features=features)
        self.note("create the fleece-origin: %s" % table[3].decode())
        self.kernel_lines()
        err = self.origin_create(features)
        lines = self.kernel_lines()
        if err:
            self.fail("creating the fleece-origin (%s) failed: %s; the kernel said:\n    %s"
                      % (table[3].decode(), errno.errorcode.get(err, err),
                         "\n    ".join(lines[-5:])))
        self.stats["attaches"] += 1
        gap = self.persistent and not self.legacy and (not no_gap or self.bypass)
        marked = 0
        if gap:
            marked = sum(1 for n in self.live if n not in self.untrusted)
            marked += sum(1 for _, _, u in frozen if not u)
            self.untrusted = set(self.live)
            frozen = [(n, m, True) for n, m, _ in frozen]
            self.stats["gaps"] += 1
            self.stats["gap_bypass"] += self.bypass
        for name, mask, untrusted in frozen:
            self.live[name] |= mask
            if untrusted:
                self.untrusted.add(name)
                self.stats["gap_back"] += 1
        # The kernel says how many it distrusted, and why.
        said = [l for l in lines if "untrusted until a full backup" in l]
        why = ("the origin was detached while the system ran (no clean_detach)"
               if self.bypass else
               "attached without no_gap, writes may have passed them while detached")
        want = "%d bitmap(s) untrusted until a full backup: %s" % (marked, why)
        if marked and (len(said) != 1 or ": " + want not in said[0]):
            self.fail("the attach (%s, the last detach %s) marked %d bitmaps and frozen sets "
                      "untrusted, but the kernel did not log '%s' (once); it said:\n    %s"
                      % ("no_gap" if no_gap else "without no_gap",
                         "not clean: BYPASS" if self.bypass else "clean", marked, want,
                         "\n    ".join(lines[-5:])))
        if not marked and said:
            self.fail("the attach marked nothing untrusted, but the kernel said: %s" % said[0])
        if any("not detached cleanly" in l for l in lines):
            self.fail("after a clean removal, the attach reports a crash: %s" % [
                l for l in lines if "not detached cleanly" in l][0])
        self.bypass = False
        if with_id and self.persistent:
            self.id_on_disk = True
        return marked

    # -- helpers -------------------------------------------------------

    def touched(self, start, n):
        """Chunks a write of n sectors at start touches."""
        return span(start >> self.shift, ((start + n - 1) >> self.shift) + 1)

    def sessions(self):
        """Sessions the kernel counts: views, and views loaded but not
        resumed yet (which hold a session from their constructor on)."""
        return len(self.views) + self.pending

    def held(self, name=None):
        """Views holding a bitmap: started ones with their frozen sets, and
        those loaded but not resumed, which reserved it (and a slot)."""
        return (sum(1 for v in self.views if v.holds and (name is None or v.bitmap == name)) +
                sum(1 for b in self.pending_held if name is None or b == name))

    def free_slots(self):
        return SLOTS - len(self.live) - self.held()

    def busy(self, name):
        """Does a view hold name's backup? (True, False, or "either" for a
        view orphaned by a removed fleece-origin, which the documentation
        does not settle.)"""
        if self.held(name):
            return True
        if not self.legacy and any(v.orphaned and v.bitmap == name and
                                   v.txn in ("open", "committed", "ended") for v in self.views):
            return "either"
        return False

    def pick_range(self, length, max_sectors=MAX_IO):
        """A random range of sectors: small, chunk-sized or large, often across
        chunk and region boundaries, sometimes at the very end."""
        r = self.rng
        k = r.random()
        if k < 0.4:
            n = r.randint(1, 16)
        elif k < 0.7:
            n = r.randint(1, 4 * self.cs)
        else:
            n = r.randint(1, max_sectors)
        n = min(n, length)
        k = r.random()
        if k < 0.12:
            start = length - n
        elif k < 0.45:
            unit = r.choice([self.cs, REGION])
            start = r.randrange(0, length // unit + 1) * unit + r.randint(-3, 3)
        else:
            start = r.randrange(0, length - n + 1)
        return max(0, min(start, length - n)), n

    def kernel_lines(self):
        lines = self.kmsg.read()
        self.klines += lines
        return lines

    # -- origin IO -----------------------------------------------------

    def origin_io(self, kind, start, n, data=None):
        """Write, discard or write-zeroes on the fleece-origin; errno or 0."""
        try:
            if kind == "write":
                self.buf.write(self.ofd, start * SECTOR, data)
            else:
                range_ioctl(self.ofd, BLKDISCARD if kind == "discard" else BLKZEROOUT,
                            start * SECTOR, n * SECTOR)
        except OSError as e:
            return e.errno
        return 0

    def plan_origin_write(self, mask):
        """For each valid session: 'fits' (its copies surely get slots),
        'overflow' (surely not) or 'maybe'."""
        plan = {}
        for v in self.views:
            if v.invalid or not v.state_known:
                continue
            lo, hi = v.need(mask)
            free = v.free()
            plan[v] = "fits" if hi <= free else "overflow" if lo > free else "maybe"
        return plan

    def apply_copies(self, v, mask):
        """A write to these chunks went through: v has copied what it needed."""
        m = mask & v.coverage
        new = m & v.fresh
        v.fresh &= ~m
        v.copied |= new
        if m & v.unsure:
            v.sync = True		# they may have needed slots too
        n = new.bit_count()
        v.take_slots(n)
        v.ctr["copied"] += n

    def settle_views(self, plan, mask, failed, what):
        """Judge whether a write (or a batch of them) to these chunks had to
        fail or succeed, then bring the sessions' model up to date."""
        fw_trouble = any(v.on_full == "fail_writes" and p != "fits" for v, p in plan.items())
        must_fail = [v for v, p in plan.items() if v.on_full == "fail_writes" and p == "overflow"]
        if must_fail and not failed:
            v = must_fail[0]
            self.fail("%s succeeded, but %s (on_full fail_writes) had %d free slots for %d "
                      "chunks to preserve" % (what, v.name(), v.free(), v.need(mask)[0]))
        if failed and not fw_trouble:
            self.fail("%s failed though every session had room for its copies" % what)
        for v, p in plan.items():
            if not failed and (p == "fits" or v.on_full == "fail_writes"):
                self.apply_copies(v, mask)	# every piece went through
            elif not failed and p == "overflow":
                v.invalid = True		# on_full invalidate: surely ran out
                v.sync = True
                v.event_due = True
            else:
                # Some pieces may have failed, or the session may have been
                # invalidated halfway: learn what it can from the status.
                v.unsure |= mask & (v.fresh | v.unsure) & v.coverage
                v.fresh &= ~mask
                v.sync = True
                if p != "fits" and v.on_full != "fail_writes":
                    v.state_known = False

    def settle_content(self, kind, start, n, data, err):
        """The origin's content after a write: what was written, or for a
        write that failed, what the device says now."""
        if err and err not in (errno.ENOSPC, errno.EIO):
            self.fail("origin %s of %d+%d failed with %s, expected ENOSPC or EIO"
                      % (kind, start, n, errno.errorcode.get(err, err)))
        off, end = start * SECTOR, (start + n) * SECTOR
        if err:
            self.resync_origin(kind, start, n, data)
        elif kind == "write":
            self.origin[off:end] = data
        elif kind == "zeroout":
            self.origin[off:end] = bytes(end - off)
        else:
            self.origin[off:end] = self.read_origin(start, n)

    def read_origin(self, start, n):
        out = bytearray()
        for s in range(start, start + n, MAX_IO):
            k = min(MAX_IO, start + n - s)
            out += self.buf.read(self.ofd, s * SECTOR, k * SECTOR)
        return out

    def resync_origin(self, kind, start, n, data):
        """After a write that failed in part: every sector holds the old or
        the new data (a piece either reached the origin or did not)."""
        got = self.read_origin(start, n)
        off = start * SECTOR
        if kind != "discard":
            new = data if kind == "write" else bytes(n * SECTOR)
            for i in range(n):
                s = got[i * SECTOR:(i + 1) * SECTOR]
                if s != self.origin[off + i * SECTOR:off + (i + 1) * SECTOR] and \
                   s != new[i * SECTOR:(i + 1) * SECTOR]:
                    self.fail("after a failed origin %s, sector %d holds %s: neither the old "
                              "data nor the new" % (kind, start + i, whose(s, self.seed)))
        self.origin[off:off + n * SECTOR] = got

    def record_origin_change(self, mask):
        """Every origin write, discard and write-zeroes sets its chunks in
        every live bitmap, whether it succeeds or not."""
        for name in self.live:
            self.live[name] |= mask
        for v in self.views:
            v.written |= mask

    # -- operations: the origin ----------------------------------------

    def op_origin_write(self, kind="write"):
        start, n = self.pick_range(self.length)
        mask = self.touched(start, n)
        data = stamped(self.seed, self.op, KIND_ORIGIN, 0, start, n) if kind == "write" else None
        plan = self.plan_origin_write(mask)
        self.record_origin_change(mask)
        err = self.origin_io(kind, start, n, data)
        self.note("origin %s %d+%d (chunks %s) -> %s%s" % (
            kind, start, n, fmt_chunks(mask, 3), errno.errorcode.get(err, err) if err else "ok",
            "".join(" v%d:%s" % (v.vid, p) for v, p in plan.items() if p != "fits")))
        self.stats["writes"] += 1
        self.settle_views(plan, mask, bool(err), "origin %s of %d+%d" % (kind, start, n))
        self.settle_content(kind, start, n, data, err)

    def op_origin_discard(self):
        self.op_origin_write("discard")

    def op_origin_zeroout(self):
        self.op_origin_write("zeroout")

    # -- operations: reading views -------------------------------------

    def read_view(self, v, start, n, buf=None):
        """(data, 0) or (None, errno) of a view read."""
        try:
            return (buf or self.buf).read(v.fd, start * SECTOR, n * SECTOR), 0
        except OSError as e:
            return None, e.errno

    def count_read(self, v, start, n):
        """The view's reads_* counters after a read it served."""
        end = start + n
        if (self.touched(start, n) & v.unsure):
            v.sync = True
        v.ctr["reads_origin"] += v.sectors_in(v.fresh | v.unprot, start, end)
        v.ctr["reads_scratch"] += v.sectors_in(v.copied, start, end)

    def judge_read(self, v, start, n, got, err, may_fail=False):
        """Is this answer of a view read one the documentation allows?
        Returns True if the read failed as allowed."""
        mask = self.touched(start, n) & v.coverage
        if v.invalid:
            if err != errno.EIO:
                self.fail("%s is Invalid, but a read of %d+%d %s" % (
                    v.name(), start, n, "succeeded" if not err else
                    "failed with %s instead of EIO" % errno.errorcode.get(err, err)))
            return True
        eio_ok = may_fail or v.eio_ok(mask)
        if err:
            if err != errno.EIO or not eio_ok:
                self.fail("read of %s at %d+%d (chunks %s) failed with %s; it must return the "
                          "point-in-time data" % (v.name(), start, n, fmt_chunks(mask, 4),
                                                  errno.errorcode.get(err, err)))
            self.stats["eio"] += 1
            return True
        want = v.content[start * SECTOR:(start + n) * SECTOR]
        if got != want:
            self.data_mismatch(v, start, n, got, want)
        self.stats["reads"] += 1
        self.stats["bytes_checked"] += len(got)
        return False

    def data_mismatch(self, v, start, n, got, want):
        bad = [i for i in range(n) if got[i * SECTOR:(i + 1) * SECTOR] !=
               want[i * SECTOR:(i + 1) * SECTOR]]
        i = bad[0]
        s = start + i
        g = got[i * SECTOR:(i + 1) * SECTOR]
        c = s // self.cs
        why = ("%s: read of %d+%d returned wrong data in %d sectors; first at view sector %d "
               "(chunk %d, %s%s): read %s, expected %s"
               % (v.name(), start, n, len(bad), s, c, v.chunk_state(c),
                  ", written on the origin since the point in time" if v.written >> c & 1 else "",
                  whose(g, self.seed), whose(want[i * SECTOR:(i + 1) * SECTOR], self.seed)))
        st = stamp_op(g, self.seed)
        now = self.origin[s * SECTOR:(s + 1) * SECTOR]
        if st and st[0] == KIND_ORIGIN and st[1] > v.pit_op:
            why += ("\n  => the view returned data WRITTEN AFTER ITS POINT IN TIME "
                    "(origin write of op %d, point in time op %d)" % (st[1], v.pit_op))
        elif g == now and v.written >> c & 1:
            # Zeroes or a device's discard result carry no stamp.
            why += ("\n  => the view returned the origin's data of now, WRITTEN (discarded or "
                    "zeroed) AFTER ITS POINT IN TIME (op %d)" % v.pit_op)
        self.fail(why)

    def readable(self):
        return [v for v in self.views if v.fd is not None]

    def op_view_read(self, v=None, start=None, n=None):
        v = v or self.rng.choice(self.readable())
        if start is None:
            start, n = self.pick_range(v.length)
        got, err = self.read_view(v, start, n)
        self.note("read v%d %d+%d -> %s" % (v.vid, start, n,
                                           errno.errorcode.get(err, err) if err else "ok"))
        if not v.invalid:
            self.count_read(v, start, n)
        if self.judge_read(v, start, n, got, err) and not v.invalid:
            self.recheck_chunks(v, start, n)

    def recheck_chunks(self, v, start, n):
        """A read that may fail failed: read its chunks one by one (a sample),
        each of which must still be right or fail only where allowed."""
        first, last = start // self.cs, (start + n - 1) // self.cs
        chunks = list(range(first, last + 1))
        sample = random.Random(self.seed * 1000003 + self.op)
        if len(chunks) > 32:
            chunks = sorted(sample.sample(chunks, 32))
        for c in chunks:
            s = max(start, c * self.cs)
            k = min(start + n, (c + 1) * self.cs, v.length) - s
            got, err = self.read_view(v, s, k)
            self.count_read(v, s, k)
            self.judge_read(v, s, k, got, err)

    def op_view_sweep(self):
        """Read a whole view."""
        v = self.rng.choice(self.readable())
        self.note("sweep v%d" % v.vid)
        for s in range(0, v.length, 4096):
            n = min(4096, v.length - s)
            got, err = self.read_view(v, s, n)
            if not v.invalid:
                self.count_read(v, s, n)
            if self.judge_read(v, s, n, got, err) and not v.invalid:
                self.recheck_chunks(v, s, n)

    # -- operations: views ---------------------------------------------

    def new_scratch(self, v_chunks):
        """A dm-linear slice of $SCRATCH of its own: most hold every chunk,
        some a few chunks (they overflow), some in between."""
        r = self.rng
        k = r.random()
        if k < 0.15:
            sectors = r.randint(1, 6) * self.cs + r.randrange(self.cs)
        elif k < 0.35:
            sectors = max(1, int(v_chunks * r.uniform(0.1, 0.5))) * self.cs
        else:
            sectors = (v_chunks + r.randrange(0, 64)) * self.cs
        sectors = min(sectors, AREA)
        area = self.areas.pop(0)
        name = "%ss%d" % (PREFIX, area)
        r0 = self.devs.create(name, (0, sectors, "linear", b"%s %d" % (
            majmin(os.stat(self.args.scratch).st_rdev).encode(), area * AREA)))
        if r0:
            raise OSError(r0, "cannot create scratch slice %s" % name)
        return Scratch(name, area, sectors, majmin(dmfuzz.dev_number(name)))

    def drop_scratch(self, sc):
        self.devs.remove(sc.name)
        self.areas.append(sc.area)

    def new_view_opts(self, allow_busy):
        """Random view options; bitmap views only on existing bitmaps."""
        r = self.rng
        kinds = ["plain", "writable"]
        if self.live:
            kinds += ["incr", "full", "full-writable"]
        kind = r.choices(kinds, [30, 15, 30, 15, 5][:len(kinds)])[0]
        o = dict(writable=kind in ("writable", "full-writable"), bitmap=None, full=False,
                 on_full=r.choice([None, None, "invalidate", "fail_writes"]), low_water=0)
        if kind in ("incr", "full", "full-writable"):
            names = sorted(self.live)
            busy = [b for b in names if self.busy(b)]
            idle = [b for b in names if not self.busy(b)]
            if busy and allow_busy and (not idle or r.random() < 0.35):
                o["bitmap"] = r.choice(busy)
            elif idle:
                o["bitmap"] = r.choice(idle)
            else:
                o["writable"] = False
            if kind == "incr" and o["bitmap"] in self.untrusted and r.random() < 0.5:
                kind = "full"		# refused half the time, a full backup the other
            o["full"] = bool(o["bitmap"]) and kind != "incr"
        return o

    def view_words(self, o, capacity):
        """The optional words of a view's table, in random order and case."""
        r = self.rng
        if r.random() < 0.2:
            o["low_water"] = r.randint(1, capacity + 1)
        groups = []
        if o["writable"]:
            groups.append(["writable"])
        if o["bitmap"]:
            groups.append(["bitmap", o["bitmap"]])
        if o["full"]:
            groups.append(["full"])
        if o["on_full"]:
            groups.append(["on_full", o["on_full"]])
        if o["low_water"]:
            groups.append(["low_water", str(o["low_water"])])
        r.shuffle(groups)
        words = [w.upper() if r.random() < 0.1 and w[0].islower() and g[0] != "bitmap"
                 else w for g in groups for w in g]
        return [str(len(words))] + words if words or r.random() < 0.5 else []

    def refusals(self, o, length):
        """{kernel log text: (errno, certain)}: the reasons to refuse a view
        of length sectors now; empty if it must be accepted. A reason that
        is not certain (the documentation does not settle it) allows either
        outcome."""
        why = {}
        if self.sessions() >= MAX_SESSIONS:
            why["Too many sessions on this origin"] = (errno.EBUSY, True)
        b = o["bitmap"]
        if b and length < self.length:
            # Its commit would forget changes beyond its end.
            why["View with bitmap is shorter than the fleece-origin device"] = (errno.EINVAL, True)
        if b:
            if b not in self.live:
                why["No such bitmap on this origin"] = (errno.ENOENT, True)
            else:
                busy = self.busy(b)
                if busy and not self.legacy:
                    why["Bitmap has a backup in progress"] = (errno.EBUSY, busy is True)
                if b in self.untrusted and not o["full"]:
                    why["Bitmap untrusted since the origin was attached after a possible "
                        "gap: use full"] = (errno.EINVAL, True)
                if self.free_slots() < 1:
                    why["No free bitmap slot to freeze into"] = (errno.ENOSPC, True)
        return why

    def view_length(self):
        r = self.rng
        if r.random() < 0.75:
            return self.length
        return r.randint(1, self.length)

    def judge_refusal(self, what, err, why, lines):
        """A table was refused (err) or accepted (0): was that right? why is
        from refusals(). Returns True if it was refused."""
        must = [t for t, (_, certain) in why.items() if certain]
        if err == 0:
            if must:
                self.fail("%s was accepted; expected a refusal: %s" % (what, ", ".join(must)))
            return False
        if not why:
            self.fail("%s was refused (%s), expected to be accepted; the kernel said:\n    %s"
                      % (what, errno.errorcode.get(err, err), "\n    ".join(lines[-5:])))
        allowed = {e for e, _ in why.values()}
        if err not in allowed:
            self.fail("%s was refused with %s, expected %s (%s)" % (
                what, errno.errorcode.get(err, err),
                " or ".join(errno.errorcode[e] for e in sorted(allowed)), ", ".join(why)))
        if not any(t in l for t in why for l in lines):
            self.fail("%s was refused (%s), but the kernel logged none of: %s; it said:\n    %s"
                      % (what, errno.errorcode.get(err, err), ", ".join(why),
                         "\n    ".join(lines[-5:])))
        self.stats["refusals"] += 1
        self.stats["gap_refused"] += any("after a possible gap" in l for l in lines)
        return True

    def op_view_create(self, mode=None):
        """mode "suspended": the origin suspended around the view's create
        (load and resume); "staged": load while the origin runs, write the
        origin a little, then suspend it, resume the view, resume the origin
        (as fleecectl does: the point in time is the view's first resume,
        and the ctr's allocations are not in the suspend window);
        "unsuspended": load while the origin runs, then resume the view
        without suspending it: the resume is refused (EBUSY) and removing
        the device leaves everything as it was."""
        mode = mode or self.rng.choice(["suspended", "staged"])
        o = self.new_view_opts(allow_busy=not self.single)
        length = self.view_length()
        nchunks = -(-length // self.cs)
        sc = self.new_scratch(nchunks)
        words = self.view_words(o, sc.sectors // self.cs)
        vid = self.next_vid
        self.next_vid += 1
        name = "%sv%d" % (PREFIX, vid)
        table = (0, length, "fleece", " ".join([self.slice, sc.dev] + words).encode())
        why = self.refusals(o, length)
        self.note("create v%d: %s (%s)" % (vid, table[3].decode(), mode))
        if mode == "suspended":
            suspend(PREFIX + "o", True)
            try:
                err = self.devs.create(name, table)
            finally:
                suspend(PREFIX + "o", False)
        else:
            err = self.devs.create(name, table, resume=False)
        lines = self.kernel_lines()
        if self.judge_refusal("view v%d (%s)" % (vid, table[3].decode()), err, why, lines):
            self.drop_scratch(sc)
            self.note("  refused: %s" % errno.errorcode.get(err, err))
            return
        held = [o["bitmap"]] if o["bitmap"] else []
        if mode == "unsuspended":
            self.pending += 1
            self.pending_held += held
            self.check_origin()
            self.resume_refused(name, "view v%d" % vid)
            self.devs.remove(name)
            self.pending -= 1
            self.pending_held = [b for b in self.pending_held if b not in held]
            self.drop_scratch(sc)
            return
        if mode == "staged":
            self.pending += 1
            self.pending_held += held
            # Before the point in time: in the view.
            for _ in range(self.rng.randrange(3)):
                self.op_origin_write()
                self.check_all()
            suspend(PREFIX + "o", True)
            try:
                self.devs.resume(name)
            finally:
                suspend(PREFIX + "o", False)
            self.pending -= 1
            self.pending_held = [b for b in self.pending_held if b not in held]
        v = View(vid, name, length, self.cs, o, self.op,
                 bytearray(self.origin[:length * SECTOR]), sc)
        if o["bitmap"]:
            self.freeze_bitmap(v)
        v.node = self.devs.node(name)
        v.fd = os.open(v.node, os.O_RDWR | os.O_DIRECT)
        self.views.append(v)
        self.stats["views"] += 1
        self.check_frozen(v)

    def resume_refused(self, name, what):
        """A view loaded while the origin runs cannot be resumed before the
        origin is suspended: EBUSY, and the kernel says why."""
        err = dm(DM_DEV_SUSPEND, name)[0]
        lines = self.kernel_lines()
        want = "Suspend the fleece-origin device before creating a view"
        if err != errno.EBUSY:
            self.fail("resume of %s with the origin running: %s, expected EBUSY" % (
                what, errno.errorcode.get(err, err) if err else "succeeded"))
        if not any(want in l for l in lines):
            self.fail("resume of %s refused, but the kernel did not say '%s':\n    %s"
                      % (what, want, "\n    ".join(lines[-5:])))
        self.stats["refusals"] += 1

    def freeze_bitmap(self, v):
        """A bitmap view was accepted: its bitmap is frozen into its frozen
        set (which keeps an untrusted mark) and starts again, empty and
        trusted."""
        v.freeze(self.live[v.bitmap])
        v.frozen_gap = v.bitmap in self.untrusted
        self.stats["gap_full"] += v.frozen_gap
        self.live[v.bitmap] = 0
        self.untrusted.discard(v.bitmap)

    def check_frozen(self, v):
        """A new bitmap view's frozen set is what the bitmap held at its
        point in time (within the view; a full one lists every chunk)."""
        if v.bitmap:
            want = v.coverage if v.full else v.frozen & v.coverage
            self.page_through(v.dev, b"changes", want, None, v.nr_chunks,
                              "changes of new %s" % v.name())

    def op_view_create_unsuspended(self):
        self.op_view_create("unsuspended")

    def op_view_release(self):
        v = self.rng.choice(self.readable())
        r = self.rng
        k = r.random()
        if k < 0.1:
            start, n = 0, v.length
        elif k < 0.4:
            first = r.randrange(v.nr_chunks)
            start = first * self.cs
            n = min(r.randint(1, 64) * self.cs, v.length - start)
        else:
            start, n = self.pick_range(v.length)
        first = -(-start // self.cs)
        end = (start + n) // self.cs if start + n < v.length else v.nr_chunks
        mask = span(first, end)
        try:
            range_ioctl(v.fd, BLKDISCARD, start * SECTOR, n * SECTOR)
            err = 0
        except OSError as e:
            err = e.errno
        self.note("release v%d %d+%d (chunks %s) -> %s" % (
            v.vid, start, n, fmt_chunks(mask, 3), errno.errorcode.get(err, err) if err else "ok"))
        self.stats["releases"] += 1
        if v.invalid:
            if err != errno.EIO:
                self.fail("release on Invalid %s: %s, expected EIO" % (
                    v.name(), errno.errorcode.get(err, err) if err else "succeeded"))
            return
        if err:
            self.fail("release of %d+%d on %s failed: %s" % (start, n, v.name(),
                                                            errno.errorcode.get(err, err)))
        self.apply_release(v, mask)

    def apply_release(self, v, mask):
        m = mask & v.coverage
        if m & v.unsure:
            v.sync = True
        counted = m & (v.fresh | v.copied | v.unprot | v.unsure)
        v.ctr["released"] += counted.bit_count()
        v.ctr["skipped"] += (m & v.fresh).bit_count()
        v.free_slots((m & v.copied).bit_count())
        v.fresh &= ~m
        v.copied &= ~m
        v.unprot &= ~m
        v.unsure &= ~m
        v.released |= m
        for first, count in runs(m):
            a = first * self.cs * SECTOR
            b = min((first + count) * self.cs, v.length) * SECTOR
            v.content[a:b] = bytes(b - a)

    def op_view_write(self):
        v = self.rng.choice([v for v in self.readable() if v.writable])
        start, n = self.pick_range(v.length)
        mask = self.touched(start, n) & v.coverage
        data = stamped(self.seed, self.op, KIND_VIEW, v.vid, start, n)
        lo, hi = v.need(mask, writing=True)
        free = v.free()
        try:
            self.buf.write(v.fd, start * SECTOR, data)
            err = 0
        except OSError as e:
            err = e.errno
        self.note("write v%d %d+%d (needs %d-%d of %d free slots) -> %s" % (
            v.vid, start, n, lo, hi, free, errno.errorcode.get(err, err) if err else "ok"))
        self.stats["view_writes"] += 1
        if v.invalid:
            if err != errno.EIO:
                self.fail("write to Invalid %s: %s, expected EIO" % (
                    v.name(), errno.errorcode.get(err, err) if err else "succeeded"))
            return
        if not err:
            if lo > free:
                self.fail("write of %d+%d to %s succeeded with %d free slots for %d chunks"
                          % (start, n, v.name(), free, lo))
            self.apply_view_write(v, mask)
            v.content[start * SECTOR:(start + n) * SECTOR] = data
            return
        if err != errno.ENOSPC or hi <= free:
            self.fail("write of %d+%d to %s failed with %s (%d free slots for at most %d "
                      "chunks)" % (start, n, v.name(), errno.errorcode.get(err, err), free, hi))
        # Some pieces may have gone through: each sector is old or new.
        got, rerr = self.read_view(v, start, n)
        if rerr:
            self.fail("reading back a failed write of %s: %s" % (v.name(),
                                                                errno.errorcode.get(rerr, rerr)))
        old = v.content[start * SECTOR:(start + n) * SECTOR]
        for i in range(n):
            s = got[i * SECTOR:(i + 1) * SECTOR]
            if s != old[i * SECTOR:(i + 1) * SECTOR] and s != data[i * SECTOR:(i + 1) * SECTOR]:
                self.fail("after a failed write to %s, sector %d holds %s: neither the old data "
                          "nor the new" % (v.name(), start + i, whose(s, self.seed)))
        v.content[start * SECTOR:(start + n) * SECTOR] = got
        v.unsure |= mask & (v.fresh | v.released)
        v.fresh &= ~mask
        v.released &= ~mask
        v.sync = True

    def apply_view_write(self, v, mask):
        """A writable view's write went through: every chunk has a slot."""
        if mask & v.unsure:
            v.sync = True		# they may have needed slots too
        v.ctr["copied"] += (mask & v.fresh).bit_count()
        v.take_slots((mask & (v.fresh | v.released)).bit_count())
        v.copied |= mask & (v.fresh | v.released | v.unsure)
        v.fresh &= ~mask
        v.released &= ~mask
        v.unsure &= ~mask

    def op_commit(self):
        v = self.rng.choice(self.views)
        r, answer, _ = message(v.dev, 0, b"commit")
        if v.invalid:
            want = errno.EIO
        elif not v.bitmap or v.txn == "ended":
            want = errno.ENOENT
        elif v.txn == "committed":
            want = errno.EALREADY
        else:
            want = 0
        self.note("commit v%d (%s) -> %s" % (v.vid, v.txn, errno.errorcode.get(r, r) if r else "ok"))
        if r != want:
            self.fail("commit of %s (transaction %s%s): %s, expected %s" % (
                v.name(), v.txn, ", Invalid" if v.invalid else "",
                errno.errorcode.get(r, r) if r else "ok",
                errno.errorcode.get(want, want) if want else "ok"))
        if not r:
            v.txn = "committed"

    def op_changes(self):
        """The view's changes, paged with a small max_ranges."""
        bm = [v for v in self.views if v.bitmap]
        v = self.rng.choice(bm or self.views)
        has = v.bitmap and v.txn in ("open", "committed") and not v.orphaned
        want = (v.coverage if v.full else v.frozen & v.coverage) if has else None
        mx = self.rng.choice([1, 2, 3, 7, None])
        self.note("changes v%d max %s" % (v.vid, mx))
        self.page_through(v.dev, b"changes", want, mx, v.nr_chunks, "changes of %s" % v.name())

    def page_through(self, dev, words, want, mx, nr_chunks, what):
        """Page through "<words> <start> <max>"; the union of the pages must be
        want (None: ENOENT), each page ranges in order, maximal, at most mx."""
        start, got, pages = 0, [], 0
        while True:
            text = words + b" %d" % start + (b" %d" % mx if mx else b"")
            r, answer, _ = message(dev, 0, text, size=1 << 20)
            if want is None:
                if r != errno.ENOENT:
                    self.fail("%s: %s, expected ENOENT" % (what, errno.errorcode.get(r, r)
                                                            if r else "answered"))
                return
            if r:
                self.fail("%s: '%s' failed with %s" % (what, text.decode(),
                                                       errno.errorcode.get(r, r)))
            page = (answer or b"").split()
            if not page:
                self.fail("%s: empty answer to '%s'" % (what, text.decode()))
            ranges = [tuple(map(int, w.split(b"+"))) for w in page[1:]]
            if mx and len(ranges) > mx:
                self.fail("%s: %d ranges in a page of at most %d" % (what, len(ranges), mx))
            for f, c in ranges:
                if f < start or c < 1 or (got and f <= got[-1][0] + got[-1][1]):
                    self.fail("%s: range %d+%d out of order (page from %d, after %s)"
                              % (what, f, c, start, got[-1:] or "nothing"))
                got.append((f, c))
            pages += 1
            if page[0] == b"end":
                break
            nxt = int(page[0])
            if nxt <= start or (ranges and nxt < ranges[-1][0] + ranges[-1][1]) or pages > 100000:
                self.fail("%s: bad cursor %d after a page from %d" % (what, nxt, start))
            start = nxt
        mask = 0
        for f, c in got:
            mask |= span(f, f + c)
        if mask != want or got != runs(want):
            self.fail("%s (max %s, %d pages): %s, expected %s" % (
                what, mx, pages, fmt_chunks(mask), fmt_chunks(want)))

    def end_session(self, v):
        """A session ends (removed, or replaced by a reload): an open
        transaction gives its frozen set back to the bitmap."""
        if v.holds and v.txn == "open":
            self.live[v.bitmap] |= v.frozen
            self.merged_into(v.bitmap, v.frozen)
            if v.frozen_gap:
                self.untrusted.add(v.bitmap)	# what the set may miss, so may it
                self.stats["gap_back"] += 1
        v.holds = False
        self.views.remove(v)

    def op_view_remove(self):
        v = self.rng.choice(self.views)
        if v.txn == "open" and not v.invalid and self.rng.random() < 0.4:
            self.op_commit_view(v)
        self.note("remove v%d (%s)" % (v.vid, v.txn))
        os.close(v.fd)
        v.fd = None
        self.devs.remove(v.dev)
        self.end_session(v)
        self.drop_scratch(v.scratch)

    def op_commit_view(self, v):
        r, _, _ = message(v.dev, 0, b"commit")
        self.note("commit v%d -> %s" % (v.vid, errno.errorcode.get(r, r) if r else "ok"))
        if r:
            self.fail("commit of %s failed: %s" % (v.name(), errno.errorcode.get(r, r)))
        v.txn = "committed"

    def op_view_reload(self):
        """Load a new table into a view (a new session, new scratch), with
        the origin suspended or running; write a little while the old
        session goes on; then suspend the origin and resume the view: the
        old session ends and the new one takes its point in time."""
        old = self.rng.choice([v for v in self.views if v.fd is not None])
        o = self.new_view_opts(allow_busy=not self.single)
        length = self.view_length()
        sc = self.new_scratch(-(-length // self.cs))
        words = self.view_words(o, sc.sectors // self.cs)
        table = (0, length, "fleece", " ".join([self.slice, sc.dev] + words).encode())
        why = self.refusals(o, length)
        at_load = self.rng.random() < 0.5
        self.note("reload v%d: %s (origin %s at the load)" % (
            old.vid, table[3].decode(), "suspended" if at_load else "running"))
        if at_load:
            suspend(PREFIX + "o", True)
        try:
            err = load(old.dev, [table])
        finally:
            if at_load:
                suspend(PREFIX + "o", False)
        lines = self.kernel_lines()
        if self.judge_refusal("reload of v%d (%s)" % (old.vid, table[3].decode()), err, why,
                              lines):
            self.drop_scratch(sc)
            return
        self.stats["reloads"] += 1
        self.pending += 1		# loaded, not started: counted, copies nothing
        held = [o["bitmap"]] if o["bitmap"] else []
        self.pending_held += held
        self.check_all()
        for _ in range(self.rng.randrange(3)):
            self.op_origin_write()
            self.check_all()
        if self.rng.random() < 0.5:
            self.op_view_read(old)		# still the old session
            self.check_all()
        suspend(PREFIX + "o", True)
        try:
            self.devs.resume(old.dev)
        finally:
            suspend(PREFIX + "o", False)
        self.note("resume v%d: the new session replaces the old" % old.vid)
        self.pending -= 1
        self.pending_held = [b for b in self.pending_held if b not in held]
        fd, node = old.fd, old.node
        old.fd = None
        self.end_session(old)
        self.drop_scratch(old.scratch)
        new = View(old.vid, old.dev, length, self.cs, o, self.op,
                   bytearray(self.origin[:length * SECTOR]), sc)
        if o["bitmap"]:
            self.freeze_bitmap(new)
        new.fd, new.node = fd, node
        self.views.append(new)
        self.check_frozen(new)

    # -- operations: the fleece-origin ---------------------------------

    def other_origin_id(self):
        i = self.origin_id
        return i + "x" if len(i) < 127 else i[:-1] + ("y" if i[-1] != "y" else "z")

    BAD_CLEAN_DETACH = [b"clean_detach foo", b"clean_detach cancel now", b"clean_detach Cancel",
                        b"clean_detach cancel cancel", b"clean_detach 1"]

    def clean_detach_msg(self, kind):
        """kind "set": the "clean_detach" message (the tracker's flag: the
        removal of the last fleece-origin table leaves no BYPASS); "cancel":
        "clean_detach cancel" (takes it back); "bad": another argument,
        EINVAL and nothing changes. Immediate, 0 also with volatile
        metadata, nothing written, nothing logged; the flag lives as long as
        the tracker (reloads keep it)."""
        text = (b"clean_detach" if kind == "set" else b"clean_detach cancel"
                if kind == "cancel" else self.rng.choice(self.BAD_CLEAN_DETACH))
        self.kernel_lines()
        r, answer, _ = message(PREFIX + "o", 0, text)
        lines = self.kernel_lines()
        self.note("message '%s' -> %s (clean_detach was %s)" % (
            text.decode(), errno.errorcode.get(r, r) if r else "ok",
            "set" if self.clean_detach else "clear"))
        want = errno.EINVAL if kind == "bad" else 0
        if r != want:
            self.fail("message '%s': %s, expected %s" % (
                text.decode(), errno.errorcode.get(r, r) if r else "ok",
                errno.errorcode[want] if want else "ok"))
        if answer:
            self.fail("message '%s' answered %r, expected nothing" % (text.decode(), answer))
        if lines:
            self.fail("message '%s': the kernel logged:\n    %s"
                      % (text.decode(), "\n    ".join(lines[-5:])))
        if kind == "set":
            self.clean_detach = True
            self.stats["clean_detach"] += 1
        elif kind == "cancel":
            self.clean_detach = False

    def clean_detach_random(self):
        """A random clean_detach message, as an admin might send one that
        the removal meant to follow does not come (or not yet)."""
        self.clean_detach_msg(self.rng.choices(["set", "cancel", "bad"], [3, 2, 1])[0])

    def op_origin_reload(self):
        """Reload the fleece-origin with the same table whatever its
        features (transparent: a reload is no attach, it distrusts nothing),
        or with one that differs (refused, nothing changes). Sometimes a
        clean_detach message first, or while suspended (the old table's):
        the tracker survives the reload, so does the flag, until the
        removal."""
        r = self.rng
        kinds = ["same", "same", "chunk", "meta", "length"]
        if self.persistent and self.id_on_disk and not self.legacy:
            kinds.append("id")
        k = r.choice(kinds)
        msg = None if self.legacy or r.random() >= 0.15 else r.choice(["before", "suspended"])
        if msg == "before":
            self.clean_detach_random()
        if k == "same":
            table, why = self.origin_table(features=self.origin_features(
                r.random() < 0.5, r.random() < 0.3)), {}
        elif k == "id":
            table = self.origin_table(features=self.origin_features(
                r.random() < 0.5, True, self.other_origin_id()))
            why = {"Metadata belongs to another origin (its origin_id differs)":
                   (errno.EINVAL, True)}
        elif k == "chunk":
            table = self.origin_table(chunk=self.cs * r.choice([2, 4]) if self.cs < 128
                                      else self.cs // 2)
            why = {"Chunk size differs from the one already in use on this device":
                   (errno.EINVAL, True)}
        elif k == "meta":
            table = self.origin_table(meta="-" if self.persistent else self.meta_dev)
            why = {"Metadata device differs from the one in use on this origin":
                   (errno.EINVAL, True)}
        else:
            table = self.origin_table(length=self.length - r.randint(1, self.cs))
            why = {"Length differs from the fleece-origin already on this device":
                   (errno.EINVAL, True)}
        early = r.random() < 0.5		# load before or after the suspend
        self.note("reload origin (%s): %s" % (k, table[3].decode()))
        if early:
            err = load(PREFIX + "o", [table])
        suspend(PREFIX + "o", True)
        if not early:
            err = load(PREFIX + "o", [table])
        lines = self.kernel_lines()
        if msg == "suspended":
            self.clean_detach_random()
        self.devs.resume(PREFIX + "o")
        lines += self.kernel_lines()
        self.judge_refusal("fleece-origin reload (%s)" % k, err, why, lines)

    def op_origin_recreate(self):
        """Remove the fleece-origin under its views, then create it again
        (an attach): the views become Invalid for good; persistent bitmaps
        come back with uncommitted frozen sets merged in, volatile ones are
        gone. Four ways, as an admin (or the boot units) would:
        (a) "clean_detach" before the removal (a shutdown), then no_gap:
            the bitmaps keep their trust;
        (b) a removal without clean_detach (a detach while the system runs:
            BYPASS on disk), then no_gap: distrusted all the same, the
            kernel says "no clean_detach";
        (c) clean_detach, then without no_gap: distrusted, "without no_gap";
        (d) neither: distrusted, "no clean_detach" (BYPASS wins).
        Whether the removal is clean is the tracker's flag, whatever set it:
        a message just before, or one sent before reloads (kept), taken
        back by "clean_detach cancel" (sometimes right after setting it:
        not clean), and never changed by an invalid argument. Sometimes
        with origin_id, sometimes after an attach with another origin's id
        (refused, changes nothing, not even BYPASS)."""
        r = self.rng
        clean, no_gap = False, False
        if not self.legacy:
            clean, no_gap = r.choices([(True, True), (False, True), (True, False),
                                       (False, False)], [3, 2, 1, 1])[0]
            msgs = []
            if clean:
                if not self.clean_detach or r.random() < 0.3:
                    msgs.append("set")
                if r.random() < 0.15:
                    msgs.append("set")		# twice: the same
            elif self.clean_detach:
                msgs.append("cancel")
            elif r.random() < 0.3:
                msgs += ["set", "cancel"]	# taken back: not clean
            elif r.random() < 0.15:
                msgs.append("cancel")		# nothing to take back
            if r.random() < 0.1:
                msgs.insert(r.randint(0, len(msgs)), "bad")
            for m in msgs:
                self.clean_detach_msg(m)
            assert self.clean_detach == clean
        how = "abcd"[(not clean) + 2 * (not no_gap)]
        self.note("remove the fleece-origin (%s: %s, then %s; views: %s)" % (
            how, "clean_detach" if clean else "no clean_detach",
            "no_gap" if no_gap else "without no_gap",
            " ".join("v%d:%s" % (v.vid, v.txn) for v in self.views)))
        os.close(self.ofd)
        self.ofd = None
        self.kernel_lines()
        self.devs.remove(PREFIX + "o")
        lines = self.kernel_lines()
        if any("cannot record the detach" in l for l in lines):
            self.fail("the removal: %s" % [l for l in lines if "cannot record" in l][0])
        # The detach: the tracker goes, and its flag with it.
        self.bypass = self.persistent and not self.clean_detach
        self.stats["clean_removals"] += self.clean_detach
        self.clean_detach = False
        back = dict(self.live) if self.persistent else {}
        frozen = []			# the frozen sets left on disk
        for v in self.views:
            v.event_due = not v.invalid	# an invalidation raises an event
            v.invalid = True
            v.orphaned = True
            if v.txn == "open":
                v.txn = "ended"
                if self.persistent:
                    frozen.append((v.bitmap, v.frozen, v.frozen_gap))
            v.holds = False
        if not self.persistent:
            self.untrusted = set()
        self.live = {}
        self.check_views()
        for v in self.views:
            if v.fd is not None and r.random() < 0.5:
                self.op_view_read(v)
        self.live = back
        if self.persistent and self.id_on_disk and not self.legacy and r.random() < 0.15:
            # Another origin's metadata: refused before anything is written
            # (BYPASS stays for the attach that follows).
            features = self.origin_features(no_gap, True, self.other_origin_id())
            self.note("create the fleece-origin with another origin's id: %s"
                      % self.origin_table(features=features)[3].decode())
            self.kernel_lines()
            err = self.origin_create(features)
            self.judge_refusal("fleece-origin with another origin_id", err, {
                "Metadata belongs to another origin (its origin_id differs)":
                (errno.EINVAL, True)}, self.kernel_lines())
        marked = self.attach(self.origin_features(no_gap, r.random() < 0.3), frozen)
        self.note("fleece-origin created again: bitmaps %s; %d marked untrusted" % (
            " ".join(sorted(back)) or "none", marked))

    # -- operations: bitmaps -------------------------------------------

    def new_bitmap_name(self):
        free = [n for n in BITMAP_NAMES if n not in self.live]
        return self.rng.choice(free)

    def bitmap_msg(self, text, want, what):
        r, answer, _ = message(PREFIX + "o", 0, text.encode())
        ok = want if isinstance(want, (set, frozenset)) else {want}
        self.note("%s -> %s" % (text, errno.errorcode.get(r, r) if r else "ok"))
        if r not in ok:
            self.fail("'%s' (%s): %s, expected %s" % (
                text, what, errno.errorcode.get(r, r) if r else "ok",
                " or ".join(errno.errorcode.get(w, w) if w else "ok" for w in sorted(ok))))
        if r:
            self.stats["refusals"] += 1
        return r

    def bitmap_add(self, name):
        if name in self.live:
            want, what = errno.EEXIST, "exists"
        elif len(self.live) >= MAX_BITMAPS or self.free_slots() < 1:
            want, what = errno.ENOSPC, "%d bitmaps, %d slots free" % (len(self.live),
                                                                       self.free_slots())
        else:
            want, what = 0, "new"
        if not self.bitmap_msg("bitmap_add %s" % name, want, what):
            self.live[name] = 0
            self.untrusted.discard(name)	# new: recording from now on

    def pick_bitmap(self, existing=0.85):
        if self.live and self.rng.random() < existing:
            return self.rng.choice(sorted(self.live))
        return self.rng.choice([n for n in BITMAP_NAMES if n not in self.live] or BITMAP_NAMES)

    def busy_errno(self, name):
        """The answers allowed for a message that needs name not busy."""
        b = self.busy(name)
        return {errno.EBUSY} if b is True else {0, errno.EBUSY} if b == "either" else {0}

    def op_bitmap_add(self):
        if len(self.live) < MAX_BITMAPS and self.rng.random() < 0.7:
            self.bitmap_add(self.new_bitmap_name())
        else:
            self.bitmap_add(self.pick_bitmap(0.5))

    def op_bitmap_remove(self):
        name = self.pick_bitmap()
        want = self.busy_errno(name) if name in self.live else {errno.ENOENT}
        if not self.bitmap_msg("bitmap_remove %s" % name, want, "remove"):
            del self.live[name]
            self.untrusted.discard(name)

    def op_bitmap_clear(self):
        name = self.pick_bitmap()
        want = self.busy_errno(name) if name in self.live else {errno.ENOENT}
        if not self.bitmap_msg("bitmap_clear %s" % name, want, "clear"):
            self.live[name] = 0
            self.untrusted.discard(name)	# empty, recording: it misses nothing

    def op_bitmap_merge(self):
        r = self.rng
        names = sorted(self.live)
        dst = self.pick_bitmap()
        src = r.choice(names) if names and r.random() < 0.9 else self.pick_bitmap(0)
        if self.single and self.busy(dst):
            idle = [n for n in names if not self.busy(n)]
            if not idle:
                return self.op_bitmap_list()
            dst = r.choice(idle)
        if dst not in self.live or src not in self.live:
            want = {errno.ENOENT}
            if dst in self.live and not self.legacy and self.busy(dst):
                want.add(errno.EBUSY)		# which check comes first is not documented
        elif self.legacy:
            want = {0}
        elif dst == src and self.busy(dst):
            want = {0, errno.EBUSY}	# "does nothing", or refused: not settled
        else:
            want = self.busy_errno(dst)
        if self.bitmap_msg("bitmap_merge %s %s" % (dst, src), want, "merge"):
            return
        self.live[dst] |= self.live[src]
        self.merged_into(dst, self.live[src])
        if src in self.untrusted:
            self.untrusted.add(dst)		# what src may miss, dst may miss now

    def merged_into(self, name, mask):
        """--legacy-txn: a view with bitmap name checks its reads of chunks
        outside its frozen set against the bitmap; chunks merged into it
        (bitmap_merge, or another view's frozen set given back) then fail
        to read too. Today's fleece.rst allows it ("only the ranges listed
        by changes are sure to read"); the new semantics refuse both."""
        if self.legacy:
            for v in self.views:
                if v.bitmap == name and v.holds:
                    v.eio_extra |= mask

    def op_bitmap_list(self):
        """bitmap_list, and one bitmap's changes paged with a small max."""
        r, answer, _ = message(PREFIX + "o", 0, b"bitmap_list")
        if r:
            self.fail("bitmap_list: %s" % errno.errorcode.get(r, r))
        want = sorted("%s %d %s %d" % (n, m.bit_count(), "persistent" if self.persistent
                                        else "volatile", self.held(n))
                      for n, m in self.live.items())
        got = sorted(l for l in (answer or b"").decode().split("\n") if l.strip())
        if got != want:
            self.fail("bitmap_list: %s, expected %s" % (got, want))
        name = self.pick_bitmap()
        mx = self.rng.choice([1, 2, 5, None])
        self.note("bitmap_list; bitmap_changes %s max %s" % (name, mx))
        self.page_through(PREFIX + "o", b"bitmap_changes " + name.encode(),
                          self.live.get(name), mx, self.nr_chunks, "bitmap_changes %s" % name)

    # -- concurrency ---------------------------------------------------

    def op_concurrent(self):
        """Writers on disjoint origin ranges and readers of views, at once.
        Every read must give the view's point in time, whatever the
        interleaving; the writes are applied to the model after the join."""
        r = self.rng
        writes, used = [], 0
        for i in range(r.randint(1, 3)):
            for _ in range(10):
                start, n = self.pick_range(self.length, 2048)
                if not used & span(start, start + n):
                    break
            else:
                continue
            used |= span(start, start + n)
            writes.append((start, n, stamped(self.seed, self.op, KIND_ORIGIN, i + 1, start, n)))
        readers = []
        for _ in range(r.randint(1, 3)):
            picks = []
            for _ in range(r.randint(1, 4)):
                v = r.choice(self.readable())
                picks.append((v,) + self.pick_range(v.length, 2048))
            readers.append(picks)
        mask = 0
        for start, n, _ in writes:
            mask |= self.touched(start, n)
        plan = self.plan_origin_write(mask)
        risky = {v for v, p in plan.items() if p != "fits"}
        self.note("concurrent: writes %s; reads %s" % (
            " ".join("%d+%d" % (s, n) for s, n, _ in writes),
            " ".join("v%d:%d+%d" % (v.vid, s, n) for rd in readers for v, s, n in rd)))
        self.record_origin_change(mask)
        results = self.run_threads(writes, readers)
        self.stats["batches"] += 1

        for v, start, n, got, err in results["reads"]:
            # (The batch's writes are in v.written already.)
            self.judge_read(v, start, n, got, err,
                            may_fail=v in risky and v.on_full != "fail_writes")
            v.sync = True		# reads_origin/scratch depend on the interleaving
        errs = results["writes"]
        self.settle_views(plan, mask, any(errs), "a batch of %d writes" % len(writes))
        for (start, n, data), err in zip(writes, errs):
            self.settle_content("write", start, n, data, err)

    def run_threads(self, writes, readers):
        out = {"writes": [None] * len(writes), "reads": []}
        lock = threading.Lock()
        go = threading.Barrier(len(writes) + len(readers))

        def writer(i, start, n, data):
            buf = IoBuf()
            go.wait()
            try:
                buf.write(self.ofd, start * SECTOR, data)
                out["writes"][i] = 0
            except OSError as e:
                out["writes"][i] = e.errno

        def reader(picks):
            buf = IoBuf()
            go.wait()
            for v, start, n in picks:
                got, err = self.read_view(v, start, n, buf)
                with lock:
                    out["reads"].append((v, start, n, got, err))

        threads = [threading.Thread(target=writer, args=(i,) + w) for i, w in enumerate(writes)]
        threads += [threading.Thread(target=reader, args=(rd,)) for rd in readers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return out

    # -- checks after every operation ----------------------------------

    def check_events(self):
        """A view that fell below its low-water mark, or was invalidated,
        raised a dm event since the last check (events may merge: at least
        one; the event is raised from a work item: wait for it a little)."""
        for v in self.views:
            if not v.event_due or v.inactive:
                continue
            v.event_due = False
            n = self.events.get(v)
            deadline = time.time() + 5
            while n is not None and event_nr(v.dev) == n:
                if time.time() > deadline:
                    self.fail("%s: no dm event after %s" % (
                        v.name(), "its invalidation" if v.invalid else
                        "falling below low_water %d (%d of %d slots free)"
                        % (v.low_water, v.free(), v.total)))
                time.sleep(0.05)

    def check_all(self):
        self.kernel_lines()
        self.check_views()
        self.check_events()
        self.check_origin()
        self.events = {v: event_nr(v.dev) for v in self.views if not v.inactive}
        self.klines = []

    def check_views(self):
        for v in self.views:
            self.check_view(v)

    def check_view(self, v):
        # Buffered copies (the copy buffer) let an origin write complete
        # before its copies reach scratch: with no IO of ours running they
        # still end on their own. Wait for that (a liveness bound, not a
        # speed one), then check.
        deadline = time.time() + 120
        while True:
            r, w = status(v.dev, v.inactive)
            if r:
                self.fail("status of %s: %s" % (v.name(), errno.errorcode.get(r, r)))
            if len(w) < 12:
                self.fail("status of %s is short: %s" % (v.name(), " ".join(w)))
            if w[9] == "0" or time.time() > deadline:
                break
            self.stats["copy_waits"] = self.stats.get("copy_waits", 0) + 1
            time.sleep(0.01)
        state = w[0]
        if not v.state_known:
            if v.invalid and state == "Active":
                self.fail("%s was Invalid and is Active again" % v.name())
            if state == "Invalid" and not v.invalid:
                v.event_due = True	# an invalidation raises an event
            v.invalid = state == "Invalid"
            v.state_known = True
        used, total = map(int, w[2].split("/"))
        got = dict(used=used, preserved=int(w[3]), copied=int(w[4]), released=int(w[5]),
                   skipped=int(w[6]), reads_scratch=int(w[7]), reads_origin=int(w[8]))
        want_state = "Invalid" if v.invalid else "Active"
        txn = v.txn or "-"
        problems = []
        if state != want_state:
            problems.append("state %s, expected %s" % (state, want_state))
        if int(w[1]) != self.cs:
            problems.append("chunk_sectors %s, expected %d" % (w[1], self.cs))
        if total != v.total:
            problems.append("scratch_total %d, expected %d" % (total, v.total))
        if w[9] != "0":
            problems.append("copies_inflight %s with no IO running, for 120 s" % w[9])
        if len(w) > 12 and w[12] != "0":
            problems.append("unreadable %s: no origin read ever fails here" % w[12])
        if w[10] != (v.bitmap or "-") or w[11] != txn:
            problems.append("bitmap/transaction '%s %s', expected '%s %s'" % (
                w[10], w[11], v.bitmap or "-", txn))
        if v.sync:
            v.ctr = got
            v.sync = False
            if v.low_water:
                v.lw_hit = v.free() < v.low_water and (v.lw_hit or got["copied"] > 0 or
                                                       got["preserved"] > 0)
        else:
            # Reads by others (udev's blkid probing a view whose device
            # number was just reused, seen once in 25,000 operations) can
            # only add to the read counters: those are lower bounds.
            reads = ("reads_scratch", "reads_origin")
            diff = ["%s %d (expected %s%d)" % (k, got[k], ">= " if k in reads else "", v.ctr[k])
                    for k in got
                    if got[k] < v.ctr[k] or (got[k] != v.ctr[k] and k not in reads)]
            if diff:
                problems.append("counters: " + ", ".join(diff))
            for k in reads:
                v.ctr[k] = got[k]
        if got["used"] != got["preserved"]:
            problems.append("scratch_used %d but preserved %d with no copy in flight"
                            % (got["used"], got["preserved"]))
        if problems:
            self.fail("status of %s: %s\n  status line: %s" % (v.name(), "; ".join(problems),
                                                             " ".join(w)))

    def check_origin(self):
        for name, mask in self.live.items():
            r, answer, _ = message(PREFIX + "o", 0, b"bitmap_changes " + name.encode(),
                                   size=1 << 20)
            if r:
                self.fail("bitmap_changes %s: %s" % (name, errno.errorcode.get(r, r)))
            page = answer.split()
            got = parse_ranges(page[1:])
            if page[0] != b"end" or got != mask:
                missing, extra = mask & ~got, got & ~mask
                self.fail("bitmap %s holds %s\n  expected %s\n  missing: %s\n  extra: %s" % (
                    name, fmt_chunks(got), fmt_chunks(mask), fmt_chunks(missing, 40),
                    fmt_chunks(extra, 40)))
        r, w = status(PREFIX + "o")
        if r:
            self.fail("status of the fleece-origin: %s" % errno.errorcode.get(r, r))
        want = ["persistent" if self.persistent else "volatile", str(self.sessions()),
                "gap" if self.untrusted else "ok", str(len(self.live))]
        triples = sorted(zip(w[4::3], w[5::3], w[6::3]))
        want_triples = sorted((n, str(m.bit_count()), str(self.held(n)))
                              for n, m in self.live.items())
        if w[:4] != want or triples != want_triples:
            self.fail("fleece-origin status: %s\n  expected: %s %s" % (
                " ".join(w), " ".join(want), " ".join(" ".join(t) for t in want_triples)))

    # -- the run -------------------------------------------------------

    OPS = [
        ("origin_write", 24, None), ("origin_discard", 3, None), ("origin_zeroout", 3, None),
        ("view_read", 22, "readable"), ("view_sweep", 1, "readable"),
        ("view_create", 8, "room"), ("view_create_unsuspended", 1, None),
        ("view_release", 6, "readable"), ("view_write", 5, "writable"),
        ("commit", 4, "views"), ("changes", 3, "views"), ("view_remove", 5, "views"),
        ("concurrent", 4, "readable"),
        ("bitmap_add", 2, None), ("bitmap_remove", 1, None), ("bitmap_clear", 1, None),
        ("bitmap_merge", 2, None), ("bitmap_list", 2, None),
        ("origin_reload", 2, None), ("view_reload", 2, "reloadable"),
        ("origin_recreate", 1, None),
    ]

    def applicable(self, need):
        if need is None:
            return True
        if need == "readable":
            return bool(self.readable())
        if need == "writable":
            return any(v.writable for v in self.readable())
        if need == "views":
            return bool(self.views)
        if need == "room":
            return bool(self.areas)
        if need == "reloadable":
            return bool(self.readable()) and bool(self.areas)
        raise ValueError(need)

    def pick_op(self):
        """Weights shift with the state: make views when there are few,
        remove them when there are many, so that several coexist often."""
        n = self.sessions()
        names, weights = [], []
        for name, w, need in self.OPS:
            if not self.applicable(need):
                continue
            if name == "view_create":
                w = w * 3 if n < 3 else w // 2 if n >= 6 else w
            if name == "view_remove" and n >= 6:
                w *= 3
            names.append(name)
            weights.append(w)
        return self.rng.choices(names, weights)[0]

    def run(self):
        t0 = time.time()
        self.setup()
        while self.op < self.args.ops:
            if self.args.seconds is not None and time.time() - t0 >= self.args.seconds:
                break
            self.op += 1
            name = self.pick_op()
            if self.args.verbose:
                print("op %d: %s ..." % (self.op, name), flush=True)
            getattr(self, "op_" + name)()
            self.check_all()
        self.stats["seconds"] = int(time.time() - t0)
        return self.op

    def cleanup(self):
        for v in self.views:
            if v.fd is not None:
                os.close(v.fd)
                v.fd = None
        if getattr(self, "ofd", None) is not None:
            try:
                os.close(self.ofd)
            except OSError:
                pass
            self.ofd = None
        self.devs.cleanup()


class Scratch:
    def __init__(self, name, area, sectors, dev):
        self.name, self.area, self.sectors, self.dev = name, area, sectors, dev


def main():
    p = argparse.ArgumentParser(description="dm-fleece model-based stress test (in the VM)")
    p.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    p.add_argument("--ops", type=int, default=None, help="operation budget")
    p.add_argument("--seconds", type=float, default=None,
                   help="start no new operation after this (long runs only)")
    p.add_argument("--legacy-txn", action="store_true",
                   help="the semantics before 'one backup per bitmap' (a module that old): a "
                        "second view on a bitmap under backup is accepted and freezes what "
                        "changed since the first one's point in time; merges into it too; "
                        "fleece-origin tables without features (no no_gap, origin_id), no "
                        "clean_detach message, no attach distrusts the bitmaps")
    p.add_argument("--single-backup", action="store_true",
                   help="never try a second backup of a bitmap under backup, nor a merge into "
                        "it (the same expectations under both semantics)")
    p.add_argument("--log", type=int, default=30, help="operations to print on a failure")
    p.add_argument("--verbose", action="store_true",
                   help="print every operation as it is done (when the kernel crashes)")
    p.add_argument("--origin", default="/dev/disk/by-id/virtio-origin")
    p.add_argument("--scratch", default="/dev/disk/by-id/virtio-scratch")
    p.add_argument("--meta", default="/dev/disk/by-id/virtio-meta")
    p.add_argument("--workdir", default=None, help="for device nodes (default: a new /tmp dir)")
    args = p.parse_args()
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 32)
    if not 0 <= args.seed < 1 << 63:
        p.error("--seed: 0 to 2^63 - 1")
    if args.ops is None:
        args.ops = 1 << 62 if args.seconds is not None else 300
    if args.workdir is None:
        args.workdir = "/tmp/fleece-stress.%d" % os.getpid()
    os.makedirs(args.workdir, exist_ok=True)

    st = Stress(args)
    rc = 0
    try:
        st.run()
    except Failure as e:
        st.report(str(e))
        rc = 1
    except Exception:
        st.report("the test itself broke:\n" + traceback.format_exc())
        rc = 2
    try:
        st.cleanup()
        st.kernel_lines()
    except Failure as e:
        st.report("after the run: " + str(e))
        rc = rc or 1
    except Exception:
        traceback.print_exc()
        rc = rc or 2
    if rc == 0:
        s = st.stats
        print("stress: seed=%d ops=%d views=%d reads=%d bytes_checked=%d writes=%d "
              "view_writes=%d releases=%d reloads=%d batches=%d eio=%d refusals=%d "
              "attaches=%d clean_removals=%d clean_detach=%d gaps=%d gap_bypass=%d "
              "gap_refused=%d gap_full=%d gap_back=%d seconds=%d OK"
              % (st.seed, st.op, s["views"], s["reads"], s["bytes_checked"], s["writes"],
                 s["view_writes"], s["releases"], s["reloads"], s["batches"], s["eio"],
                 s["refusals"], s["attaches"], s["clean_removals"], s["clean_detach"],
                 s["gaps"], s["gap_bypass"], s["gap_refused"], s["gap_full"], s["gap_back"],
                 s["seconds"]))
    try:
        for f in os.listdir(args.workdir):
            os.unlink(os.path.join(args.workdir, f))
        os.rmdir(args.workdir)
    except OSError:
        pass
    sys.exit(rc)


if __name__ == "__main__":
    main()
