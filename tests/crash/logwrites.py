# SPDX-License-Identifier: GPL-2.0
"""
Reading a dm-log-writes log and replaying it to chosen crash points.

The log format is the kernel's (drivers/md/dm-log-writes.c and
Documentation/admin-guide/device-mapper/log-writes.rst): a super block at
sector 0 (magic, version, number of entries, sector size), then per entry
one header sector (sector, nr_sectors, flags, data_len) followed by the
data written (nr_sectors sectors; none for a discard; a mark's text is in
the header sector after the header).

Order, as dm-log-writes guarantees it: a write without FUA is logged only
when a later flush completes, just before that FLUSH entry; a FUA write is
logged when it completes; a mark when it is asked for. So the entries
between two FLUSH entries are an *epoch*: its FUA writes (durable each when
it completed, in log order) and its plain writes (completed before the
flush was issued, but on the device's volatile cache until then: a power
cut may have kept any subset of them, in any order).

A crash point is therefore: every entry up to the end of an epoch, then
within the next epoch a prefix of its FUA writes and any subset of its
plain writes; at most one write of the point may be torn (only a prefix of
its 512-byte sectors reached the media).
"""
import fcntl
import os
import random
import struct

MAGIC = 0x6a736677736872
BLKFLSBUF = 0x1261
FLUSH, FUA, DISCARD, MARK, METADATA = 1, 2, 4, 8, 16


class Entry:
    """One log entry; its data is read from the log when needed."""

    __slots__ = ("idx", "sector", "nr", "flags", "data_off", "mark")

    def __init__(self, idx, sector, nr, flags, data_off, mark):
        self.idx, self.sector, self.nr, self.flags = idx, sector, nr, flags
        self.data_off, self.mark = data_off, mark

    def is_write(self):
        return not self.flags & MARK and self.nr > 0

    def __repr__(self):
        f = "".join(c for c, b in (("F", FLUSH), ("U", FUA), ("D", DISCARD),
                                   ("M", MARK)) if self.flags & b)
        if self.mark is not None:
            return "#%d mark %s" % (self.idx, self.mark)
        return "#%d %s %d+%d" % (self.idx, f or "W", self.sector, self.nr)


class Log:
    """The entries of a log device (or an image of one)."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_RDONLY)
        # dm-log-writes wrote the log under the device's page cache, which
        # may hold what a reader (udev's blkid, after the device was
        # discarded) saw before: drop it, or we read stale zeroes.
        try:
            fcntl.ioctl(self.fd, BLKFLSBUF)
        except OSError:
            pass		# an image file, not a device
        os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_DONTNEED)
        sb = os.pread(self.fd, 32, 0)
        magic, version, nr, ssize = struct.unpack_from("<QQQI", sb)
        if magic != MAGIC:
            raise ValueError("%s: not a dm-log-writes log (magic %#x)" % (path, magic))
        self.ssize = ssize
        self.entries = []
        off = ssize
        for i in range(nr):
            hdr = os.pread(self.fd, ssize, off)
            sector, nsec, flags, dlen = struct.unpack_from("<QQQQ", hdr)
            mark = None
            if flags & MARK:
                mark = hdr[32:32 + dlen].split(b"\0")[0].decode(errors="replace")
            off += ssize
            data_off = off
            if not flags & (DISCARD | MARK):
                off += nsec * ssize
            self.entries.append(Entry(i, sector, nsec, flags, data_off, mark))

    def data(self, e):
        """The bytes an entry wrote (zeroes for a discard)."""
        if e.flags & DISCARD:
            return bytes(e.nr * self.ssize)
        return os.pread(self.fd, e.nr * self.ssize, e.data_off)

    def marks(self):
        return {e.mark: e.idx for e in self.entries if e.mark is not None}


class Mirror:
    """The replayed device in memory, with undo for trial writes."""

    def __init__(self, log, size):
        self.log = log
        self.buf = bytearray(size)
        self.undo = []
        # Per 4 KiB block: bumped by every write that touches it.
        self.ver = [0] * ((size + 4095) // 4096)

    def _put(self, off, data, keep_undo):
        if keep_undo:
            self.undo.append((off, bytes(self.buf[off:off + len(data)])))
        self.buf[off:off + len(data)] = data
        for b in range(off // 4096, (off + len(data) + 4095) // 4096):
            self.ver[b] += 1

    def apply(self, e, torn=None, trial=False):
        """Write entry @e; @torn: only its first @torn sectors."""
        data = self.log.data(e)
        if torn is not None:
            data = data[:torn * self.log.ssize]
        off = e.sector * self.log.ssize
        if off + len(data) > len(self.buf):
            data = data[:max(0, len(self.buf) - off)]
        self._put(off, data, trial)

    def rollback(self):
        """Undo the trial writes, newest first (versions stay bumped)."""
        while self.undo:
            off, old = self.undo.pop()
            self.buf[off:off + len(old)] = old


def epochs(entries):
    """Split the log into epochs: lists of entries, each ending with its
    FLUSH entry (the last one may have none)."""
    cur = []
    for e in entries:
        cur.append(e)
        if e.flags & FLUSH:
            yield cur
            cur = []
    if cur:
        yield cur


class CrashPoint:
    """A state of the media after a power cut inside an epoch.

    @fua: the epoch's FUA writes on the media (a prefix, in log order);
    @plain: its plain writes on the media (a subset); @torn: (entry,
    sectors) of a write of which only the first sectors reached the media,
    or None. The cut came after log entry @lo and before the entry after
    @hi: marks up to @lo were set before it, marks after @hi after it, and
    those in between may have been either."""

    def __init__(self, lo, hi, fua, plain, torn, desc):
        self.lo, self.hi = lo, hi
        self.fua, self.plain, self.torn, self.desc = fua, plain, torn, desc


def crash_points(epoch, rnd, subsets):
    """The crash points of one epoch, on top of everything before it:
    before and after each FUA write, with none and random subsets of the
    plain writes; a torn FUA write; a torn plain write; the whole epoch."""
    fuas = [e for e in epoch if e.is_write() and e.flags & FUA]
    plains = [e for e in epoch if e.is_write() and not e.flags & FUA]
    start, last = epoch[0].idx - 1, epoch[-1].idx
    pts = []

    def some():
        return [e for e in plains if rnd.random() < 0.5]

    # After FUA j-1 completed and before FUA j did (marks logged after FUA
    # j were asked for after it completed).
    def window(j):
        return (fuas[j - 1].idx if j else start), (fuas[j].idx - 1 if j < len(fuas) else last)

    for j in range(len(fuas) + 1):
        lo, hi = window(j)
        pts.append(CrashPoint(lo, hi, fuas[:j], [], None, "fua %d/%d" % (j, len(fuas))))
        for _ in range(subsets if plains else 0):
            pts.append(CrashPoint(lo, hi, fuas[:j], some(), None,
                                  "fua %d/%d + cached" % (j, len(fuas))))
    if fuas:
        j = rnd.randrange(len(fuas))
        e = fuas[j]
        if e.nr > 1:
            lo, hi = window(j)
            pts.append(CrashPoint(lo, hi, fuas[:j], some(), (e, rnd.randrange(1, e.nr)),
                                  "torn fua #%d" % e.idx))
    if plains:
        e = rnd.choice(plains)
        if e.nr > 1:
            kept = [p for p in some() if p is not e]
            pts.append(CrashPoint(start, last, fuas, kept, (e, rnd.randrange(1, e.nr)),
                                  "torn cached #%d" % e.idx))
    # The flush completed: the whole epoch is on the media.
    pts.append(CrashPoint(last, last, fuas, plains, None, "end of epoch"))
    return pts
