# SPDX-License-Identifier: GPL-2.0
"""
Crash safety of fleece-origin's bitmaps, proven at every flush point: runs
as root in the test VM (tests/crash/replay starts it).

1. Record. The origin and the metadata device are two dm-linear slices of
   one dm-log-writes device, so one log holds every write, flush and FUA
   to both, in one order. A seeded random workload goes through
   fleece-origin: writes of mixed sizes and alignments from several
   threads (some O_DSYNC, i.e. FUA), discards, write-zeroes, fsyncs,
   bitmap add/clear/merge/remove, backup transactions (views with "bitmap
   <name>" and "full") committed or left open, views removed, the
   fleece-origin removed and created again. Each control operation is
   bracketed by log marks; each point a bitmap's contents are measured
   from (its add, its clear, a view's point in time) is a mark right
   after a flush of the log device, so the log up to it is exactly the
   origin's data then.

2. Replay. Our reader (logwrites.py) rebuilds the device in memory epoch
   by epoch, and at crash points inside each epoch (after each FUA write;
   with none, all and random subsets of the epoch's plain writes, which
   were only in the volatile cache; with one torn write) it writes the
   metadata as it would be on the media to a scratch device, activates a
   fleece-origin on it and reads the bitmaps back.

3. Check, at every point: the table loads; no frozen set is left (they are
   merged back at activation); no bitmap is untrusted (nothing failed);
   the bitmaps are those the operations known to be durable made (those
   in flight may or may not have happened: every combination is allowed);
   and every chunk whose data differs from the bitmap's base (the data at
   its last committed backup's point in time, or at its add or clear) has
   its bit set. A chunk outside is a violation: an incremental backup
   would have missed it.

Prints a line per violation and ends with
"replay: seed S, N crash points, V violations, ...".
"""
import argparse
import hashlib
import os
import random
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "fuzz"))
import dmfuzz  # noqa: E402  (ioctls, kernel log)
import logwrites  # noqa: E402

SECTOR = 512
BLOCK = 4096
BITS_PER_BLOCK = (4096 - 64) * 8
BLKDISCARD = 0x1277
BLKZEROOUT = 0x127f


def say(*a):
    print("replay:", *a, flush=True)


def die(why):
    print("FAIL: replay: %s" % why, flush=True)
    sys.exit(1)


def run(*cmd):
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if p.returncode:
        die("%s: %s" % (" ".join(cmd), (p.stdout + p.stderr).strip()))
    return p.stdout


def meta_area(nr_chunks):
    """Bytes of metadata fleece-origin uses (fleece_meta_sectors_needed)."""
    nb = -(-nr_chunks // BITS_PER_BLOCK)
    return (2 + 16 * 2 * nb) * BLOCK


# ---------------------------------------------------------------------------
# 1. Record


class Recorder:
    """Devices, the workload, and the journal of control operations."""

    def __init__(self, args):
        self.a = args
        self.r = random.Random(args.seed)
        self.osz = args.origin_mib << 20		# origin slice, bytes
        self.msz = args.meta_mib << 20			# metadata slice, bytes
        self.chunk = args.chunk * SECTOR
        self.ops = []		# [kind, args, begin mark, end mark]
        self.nmark = 0
        self.bitmaps = set()
        self.views = {}		# name -> (bitmap, full, committed)
        self.nview = 0
        self.origin_up = False
        self.kmsg = dmfuzz.Kmsg(fail=lambda why: die(why))
        self.slot = 0		# next scratch slice
        self.quiet_marks = []	# marks set with no data write in flight

    # -- devices
    def setup(self):
        a = self.a
        run("dmsetup", "create", "cr-lw", "--table",
            "0 %d log-writes %s %s" % ((self.osz + self.msz) // SECTOR, a.data, a.log))
        run("dmsetup", "create", "cr-os", "--table",
            "0 %d linear /dev/mapper/cr-lw 0" % (self.osz // SECTOR))
        run("dmsetup", "create", "cr-ms", "--table",
            "0 %d linear /dev/mapper/cr-lw %d" % (self.msz // SECTOR, self.osz // SECTOR))
        self.mark("start")
        self.origin_create()

    def table(self):
        # no_gap: nothing writes the origin while it is detached here, as
        # the boot units vouch on a real host.
        return "0 %d fleece-origin /dev/mapper/cr-os /dev/mapper/cr-ms %d 1 no_gap" % (
            self.osz // SECTOR, self.a.chunk)

    def origin_create(self):
        run("dmsetup", "create", "cr-o", "--table", self.table())
        self.origin_up = True
        self.fd = os.open("/dev/mapper/cr-o", os.O_RDWR | os.O_DIRECT)

    def mark(self, label):
        r, _, _ = dmfuzz.message("cr-lw", 0, b"mark " + label.encode())
        if r:
            die("mark %s: errno %d" % (label, r))

    def flush_log(self):
        """A flush of the log device: every write completed so far gets
        logged before the next mark."""
        fd = os.open("/dev/mapper/cr-lw", os.O_RDWR)
        os.fsync(fd)
        os.close(fd)

    def op(self, kind, fn, quiet=True, **kw):
        """Run control operation @fn between two marks. @quiet ones come
        right after a flush (the origin's writers are stopped, so the log
        up to the begin mark is the data at that moment: a base)."""
        n = len(self.ops)
        if quiet:
            self.flush_log()
        b, e = "op%d-b" % n, "op%d-e" % n
        self.mark(b)
        ok = fn()
        self.mark(e)
        if quiet:
            # The writers are stopped from before @b until after @e.
            self.quiet_marks += [b, e]
        if ok:
            self.ops.append((kind, kw, b, e))
        return ok

    def msg(self, dev, text):
        r, ans, _ = dmfuzz.message(dev, 0, text.encode())
        return r, ans

    # -- the data workload
    def writer(self, seed, count, errors):
        r = random.Random(seed)
        fd = os.open("/dev/mapper/cr-o", os.O_RDWR | os.O_DIRECT)
        fds = os.open("/dev/mapper/cr-o", os.O_RDWR | os.O_DIRECT | os.O_DSYNC)
        try:
            import mmap
            buf = mmap.mmap(-1, 1 << 20)
            for i in range(count):
                k = r.random()
                if k < 0.55:
                    size = r.choice([512, 4096, 4096, 8192, 65536, r.randrange(1, 256) * 512])
                elif k < 0.8:
                    size = r.choice([128 << 10, 1 << 20, r.randrange(1, 2048) * 512])
                else:
                    size = r.randrange(1, 64) * 4096
                off = r.randrange(0, (self.osz - size) // SECTOR + 1) * SECTOR
                if r.random() < 0.2:		# concentrate: many writes hit few chunks
                    off = r.randrange(0, 64) * self.chunk
                    off = min(off, self.osz - size)
                w = r.random()
                if w < 0.06:
                    range_ioctl(fd, BLKDISCARD, off, size)
                elif w < 0.1:
                    range_ioctl(fd, BLKZEROOUT, off, size)
                elif w < 0.13:
                    os.fsync(fd)
                else:
                    buf[:size] = r.randbytes(size)
                    os.pwritev(fds if r.random() < 0.12 else fd, [memoryview(buf)[:size]], off)
        except OSError as e:
            errors.append("writer: %s" % e)
        finally:
            os.close(fd)
            os.close(fds)

    def gang_writer(self, seed, count, slot, gate, errors):
        """One of a gang of threads that write, together, each its own
        4 KiB of the same chunk: those that arrive while the commit round
        writing the chunk's bit is under way wait for that round (the
        track code's in_open_round()), the others for the next."""
        r = random.Random(seed)     # the same seed in each: the same chunks
        fd = os.open("/dev/mapper/cr-o", os.O_RDWR | os.O_DIRECT)
        try:
            import mmap
            buf = mmap.mmap(-1, 4096)
            per = max(1, self.chunk // 4096)
            for i in range(count):
                c = r.randrange(0, self.osz // self.chunk)
                buf[:] = r.randbytes(4096)
                gate.wait()
                os.pwritev(fd, [buf], c * self.chunk + (slot % per) * 4096)
        except (OSError, threading.BrokenBarrierError) as e:
            gate.abort()
            errors.append("gang writer: %s" % e)
        finally:
            os.close(fd)

    def burst(self, during=None):
        """Writers for a while; @during runs meanwhile (an operation that
        may overlap writes)."""
        errors = []
        ths = [threading.Thread(target=self.writer,
                                args=(self.r.randrange(1 << 30), self.a.writes, errors))
               for _ in range(self.a.threads)]
        gate = threading.Barrier(4)
        gseed = self.r.randrange(1 << 30)
        ths += [threading.Thread(target=self.gang_writer,
                                 args=(gseed, self.a.writes, k, gate, errors))
                for k in range(4)]
        for t in ths:
            t.start()
        if during:
            during()
        for t in ths:
            t.join()
        if errors:
            die("; ".join(errors[:3]))
        self.kmsg.read()

    # -- control operations
    def scratch(self):
        """A fresh dm-linear slice of the scratch disk for a view."""
        size = self.osz // SECTOR
        n = self.slot
        self.slot += 1
        name = "cr-s%d" % n
        total = int(run("blockdev", "--getsz", self.a.scratch))
        run("dmsetup", "create", name, "--table",
            "0 %d linear %s %d" % (size, self.a.scratch, (n * size) % (total - size)))
        return name

    def view_create(self):
        if not self.bitmaps or len(self.views) >= 4:
            return
        free = [b for b in sorted(self.bitmaps)
                if b not in {v[0] for v in self.views.values()}]
        if not free:
            return
        bm = self.r.choice(free)
        full = self.r.random() < 0.3
        name = "cr-v%d" % self.nview
        self.nview += 1
        scr = self.scratch()
        opts = "3 bitmap %s full" % bm if full else "2 bitmap %s" % bm

        def fn():
            dmfuzz.suspend("cr-o", True)
            p = subprocess.run(["dmsetup", "create", name, "--table",
                                "0 %d fleece /dev/mapper/cr-os /dev/mapper/%s %s" %
                                (self.osz // SECTOR, scr, opts)],
                               capture_output=True, text=True)
            dmfuzz.suspend("cr-o", False)
            return p.returncode == 0
        # The point in time: a flush with the origin suspended, then the mark.
        if self.op("view", fn, view=name, bitmap=bm):
            self.views[name] = (bm, full, False)
        else:
            run("dmsetup", "remove", scr)

    def commit(self):
        open_ = [v for v, (_, _, c) in self.views.items() if not c]
        if not open_:
            return
        v = self.r.choice(open_)
        bm, full, _ = self.views[v]
        if self.op("commit", lambda: self.msg(v, "commit")[0] == 0, quiet=False, view=v):
            self.views[v] = (bm, full, True)

    def view_remove(self):
        if not self.views:
            return
        v = self.r.choice(sorted(self.views))
        self.op("view_remove", lambda: dmfuzz.remove_dev(v) == 0, quiet=False, view=v)
        del self.views[v]

    def bitmap_add(self):
        if len(self.bitmaps) >= 6:
            return
        name = "b%d" % self.r.randrange(10)
        if name in self.bitmaps:
            return
        if self.op("add", lambda: self.msg("cr-o", "bitmap_add " + name)[0] == 0, bitmap=name):
            self.bitmaps.add(name)

    def busy(self):
        return {v[0] for v in self.views.values()}

    def bitmap_clear(self):
        idle = sorted(self.bitmaps - self.busy())
        if idle:
            b = self.r.choice(idle)
            self.op("clear", lambda: self.msg("cr-o", "bitmap_clear " + b)[0] == 0, bitmap=b)

    def bitmap_remove(self):
        idle = sorted(self.bitmaps - self.busy())
        if idle:
            b = self.r.choice(idle)
            if self.op("remove", lambda: self.msg("cr-o", "bitmap_remove " + b)[0] == 0, bitmap=b):
                self.bitmaps.discard(b)

    def bitmap_merge(self):
        idle = sorted(self.bitmaps - self.busy())
        if idle and self.bitmaps:
            d, s = self.r.choice(idle), self.r.choice(sorted(self.bitmaps))
            self.op("merge", lambda: self.msg("cr-o", "bitmap_merge %s %s" % (d, s))[0] == 0,
                    quiet=False, dst=d, src=s)

    def origin_cycle(self):
        """The fleece-origin removed (views left open become invalid, their
        frozen sets stay on disk) and created again (merged back), as at a
        shutdown and the next boot: clean_detach first, no_gap after."""
        def fn():
            os.close(self.fd)
            if self.msg("cr-o", "clean_detach")[0]:
                die("clean_detach refused")
            r = dmfuzz.remove_dev("cr-o")
            if r:
                die("cannot remove cr-o: errno %d" % r)
            self.origin_create()
            return True
        self.op("origin_cycle", fn)
        for v in list(self.views):
            dmfuzz.remove_dev(v)
        self.views.clear()

    def workload(self):
        r = self.r
        self.bitmap_add()
        self.bitmap_add()
        anytime = [self.commit, self.view_remove, self.bitmap_merge, None, None]
        quiet = [self.view_create, self.view_create, self.view_create, self.bitmap_add,
                 self.bitmap_clear, self.bitmap_remove, self.commit, self.view_remove]
        for phase in range(self.a.phases):
            self.burst(during=r.choice(anytime))
            for _ in range(r.randrange(1, 3)):
                r.choice(quiet)()
            if r.random() < 0.04:
                self.origin_cycle()
            self.kmsg.read()
        say("recorded %d phases, %d control operations, %d views" %
            (self.a.phases, len(self.ops), self.nview))

    def teardown(self):
        for v in list(self.views):
            dmfuzz.remove_dev(v)
        os.close(self.fd)
        # A shutdown, as the units do it: the detach is a clean one, and a
        # crash point after its superblock write attaches trusted.
        if self.msg("cr-o", "clean_detach")[0]:
            die("clean_detach refused")
        for d in ["cr-o", "cr-os", "cr-ms"] + ["cr-s%d" % i for i in range(self.slot)]:
            dmfuzz.remove_dev(d)
        # Removing the log device writes its end mark and its super block.
        r = dmfuzz.remove_dev("cr-lw")
        if r:
            die("cannot remove cr-lw: errno %d" % r)
        self.kmsg.read()


def range_ioctl(fd, req, off, size):
    """BLKDISCARD / BLKZEROOUT of [off, off + size)."""
    import fcntl
    import struct
    fcntl.ioctl(fd, req, struct.pack("QQ", off, size))


# ---------------------------------------------------------------------------
# 2. The model: what the bitmaps may be at a crash point

# Operations that move a bitmap's base, or make or end a bitmap. The others
# (merge, views made and removed, the origin removed and made again) only
# add bits: the frozen sets of open transactions are merged back.
BASE_OPS = ("add", "clear", "remove", "commit")


class Model:
    """@ops: (kind, args, begin entry, end entry). A state is a dict
    bitmap -> the log entry of the mark its base was measured at."""

    def __init__(self, ops):
        self.ops = [o for o in ops if o[0] in BASE_OPS]
        # A view's point in time: its begin mark, right after a flush with
        # the writers stopped (and then the origin suspended).
        views = {kw["view"]: (kw["bitmap"], b) for kind, kw, b, _e in ops if kind == "view"}
        self.commits = {}
        for kind, kw, _b, _e in self.ops:
            if kind == "commit":
                self.commits[kw["view"]] = views[kw["view"]]

    def bases(self):
        """The marks some state measures from."""
        out = {b for kind, _kw, b, _e in self.ops if kind in ("add", "clear")}
        return out | {pit for _bm, pit in self.commits.values()}

    def step(self, state, kind, kw, b):
        s = dict(state)
        if kind in ("add", "clear"):
            s[kw["bitmap"]] = b
        elif kind == "remove":
            s.pop(kw["bitmap"], None)
        else:
            bm, pit = self.commits[kw["view"]]
            s[bm] = pit
        return s

    def states(self, lo, hi):
        """Every state possible after a cut that came after log entry @lo
        and before the entry after @hi: an operation that ended by @lo
        happened, one begun after @hi did not, one in between may have."""
        states = [{}]
        for kind, kw, b, e in self.ops:
            if b > hi:
                break
            nxt = []
            for st in states:
                new = self.step(st, kind, kw, b)
                if e > lo and st not in nxt:
                    nxt.append(st)
                if new not in nxt:
                    nxt.append(new)
            states = nxt
        return states


# ---------------------------------------------------------------------------
# 3. Replay and check


class Base:
    """The origin's data at one mark, remembered lazily: a chunk's hash at
    the mark is taken before the first write to it after the mark."""

    def __init__(self):
        self.known = {}		# chunk -> hash at the mark
        self.diff = set()	# chunks whose data differs from it now


class Trial:
    """The writes of one crash point on top of the durable mirror."""

    def __init__(self):
        self.pre = {}		# chunk -> its durable hash, before the trial
        self.diff = {}		# base mark -> its diff with the trial


class Checker:
    def __init__(self, args, log, ops, quiet_marks):
        self.a = args
        self.log = log
        self.osz = args.origin_mib << 20
        self.chunk = args.chunk * SECTOR
        self.area = meta_area(self.osz // self.chunk)
        self.mirror = logwrites.Mirror(log, self.osz + (args.meta_mib << 20))
        marks = log.marks()
        for kind, kw, b, e in ops:
            if b not in marks or e not in marks:
                die("mark %s or %s of %s is not in the log" % (b, e, kind))
        self.model = Model([(k, kw, marks[b], marks[e]) for k, kw, b, e in ops])
        self.quiet = sorted(marks[m] for m in quiet_marks if m in marks)
        self.base_marks = self.model.bases()
        self.bases = {}		# mark entry -> Base
        self.points = self.violations = self.torn = self.cached = 0
        self.budget = args.max_points
        self.kmsg = dmfuzz.Kmsg(fail=lambda why: die(why))
        self.rnd = random.Random(args.seed ^ 0x5eed)
        self.rmeta = os.open(args.rmeta, os.O_RDWR | os.O_DIRECT)
        import mmap
        self.mbuf = mmap.mmap(-1, self.area)
        zsz = self.osz // SECTOR
        run("dmsetup", "create", "cr-rz", "--table", "0 %d zero" % zsz)
        self.rtable = [(0, zsz, "fleece-origin",
                        b"/dev/mapper/cr-rz %s %d 1 no_gap" % (args.rmeta.encode(), args.chunk))]

    def chash(self, c):
        o = c * self.chunk
        return hashlib.blake2b(self.mirror.buf[o:o + self.chunk], digest_size=16).digest()

    def chunks_of(self, e, torn=None):
        start = e.sector * self.log.ssize
        end = min(start + (e.nr if torn is None else torn) * self.log.ssize, self.osz)
        return range(start // self.chunk, (end - 1) // self.chunk + 1) if start < end else ()

    def write(self, e, torn=None, trial=None):
        """Apply a write to the mirror and keep every base's diff right;
        with @trial, only for that crash point (undone afterwards)."""
        chunks = list(self.chunks_of(e, torn))
        pre = {}
        for c in chunks:
            if trial is not None:
                if c not in trial.pre:
                    trial.pre[c] = self.chash(c)
                pre[c] = trial.pre[c]
            elif any(c not in b.known for b in self.bases.values()):
                pre[c] = self.chash(c)
        self.mirror.apply(e, torn, trial is not None)
        for c in chunks:
            h = self.chash(c)
            for m, b in self.bases.items():
                ref = b.known.get(c)
                if ref is None:
                    if trial is None:
                        ref = b.known[c] = pre[c]
                    else:
                        ref = pre[c]
                if trial is None:
                    (b.diff.add if h != ref else b.diff.discard)(c)
                else:
                    d = trial.diff.setdefault(m, set(b.diff))
                    (d.add if h != ref else d.discard)(c)

    def activate(self):
        """fleece-origin on the metadata as the mirror has it now: returns
        {bitmap: [chunks set, untrusted, frozen sets]}, or why it failed."""
        self.mbuf[:] = self.mirror.buf[self.osz:self.osz + self.area]
        os.pwritev(self.rmeta, [self.mbuf], 0)
        r = dmfuzz.dm(dmfuzz.DM_DEV_CREATE, "cr-r")[0]
        if r:
            die("cannot create cr-r: errno %d" % r)
        try:
            r = dmfuzz.load("cr-r", self.rtable)
            if r:
                msgs = [m for m in self.kmsg.read() if "fleece" in m]
                return "table refused (errno %d): %s" % (r, " / ".join(msgs))
            r = dmfuzz.dm(dmfuzz.DM_DEV_SUSPEND, "cr-r")[0]
            if r:
                return "resume failed: errno %d" % r
            r, st, _ = dmfuzz.table_status("cr-r", table=False)
            words = st[0][3].split()
            out = {}
            for i in range(int(words[3])):
                name, _dirty, frozen = words[4 + 3 * i:7 + 3 * i]
                # A crash is no gap (no_gap): anything but "ok" is a fault.
                out[name.decode()] = [set(), words[2] != b"ok", int(frozen)]
            for name, v in out.items():
                start = 0
                while True:
                    r, page, _ = dmfuzz.message("cr-r", 0, b"bitmap_changes %s %d" %
                                                (name.encode(), start))
                    if r:
                        return "bitmap_changes %s: errno %d" % (name, r)
                    page = page.split()
                    for rg in page[1:]:
                        f, n = rg.split(b"+")
                        v[0].update(range(int(f), int(f) + int(n)))
                    if page[0] == b"end":
                        break
                    start = int(page[0])
            return out
        finally:
            r = dmfuzz.remove_dev("cr-r")
            if r:
                die("cannot remove cr-r: errno %d" % r)
            self.kmsg.read()

    def submitted_before(self, p):
        """Keep only the data writes of @p that may have been submitted
        before its cut. An epoch's plain writes are all candidates, as one
        in flight at the cut may reach the media, but none logged after a
        mark set with no data write in flight (a quiet operation's), if
        that mark was set after the cut: such a write was submitted after
        it. (Without this, a write made after a bitmap_remove returned,
        logged in the same epoch, was put on the media without the
        remove's superblock write that completed before it was made.)
        Returns False to skip @p, whose torn write is one of those."""
        q = next((m for m in self.quiet if m > p.hi), None)
        if q is None:
            return True

        def later(e):
            return e.idx > q and e.sector * self.log.ssize < self.osz
        if p.torn and later(p.torn[0]):
            return False
        p.plain = [e for e in p.plain if not later(e)]
        return True

    def check(self, pt, trial):
        got = self.activate()
        self.points += 1
        if isinstance(got, str):
            return self.violation(pt, got)
        for name, (_bits, lost, frozen) in got.items():
            if lost:
                return self.violation(pt, "bitmap %s untrusted after a crash without faults" % name)
            if frozen:
                return self.violation(pt, "bitmap %s kept %d frozen sets" % (name, frozen))
        why = []
        for st in self.model.states(pt.lo, pt.hi):
            if set(st) != set(got):
                why.append("bitmaps %s, expected %s" % (sorted(got), sorted(st)))
                continue
            bad = {}
            for name, base in st.items():
                diff = trial.diff.get(base, self.bases[base].diff)
                missing = diff - got[name][0]
                if missing:
                    bad[name] = sorted(missing)
            if not bad:
                return
            why.append("; ".join("%s (base #%d) misses %d changed chunks: %s" %
                                 (n, st[n], len(m), " ".join(map(str, m[:8])))
                                 for n, m in bad.items()))
        self.violation(pt, " | ".join(why) or "no state possible")

    def violation(self, pt, why):
        self.violations += 1
        if self.violations <= 20:
            print("VIOLATION after entry %d, before %d (%s): %s" %
                  (pt.lo, pt.hi + 1, pt.desc, why), flush=True)

    def run(self):
        t0 = time.time()
        eps = list(logwrites.epochs(self.log.entries))
        cands = [logwrites.crash_points(ep, self.rnd, self.a.subsets) for ep in eps]
        # A uniform sample of the round's budget over all its crash points.
        total = sum(len(c) for c in cands)
        keep = min(1.0, self.budget / max(1, total))
        for ep, pts in zip(eps, cands):
            # Bases: marks right after a flush (writers stopped), so the
            # durable mirror is the data at the mark.
            for e in ep:
                if e.idx in self.base_marks:
                    if any(w.is_write() for w in ep if w.idx < e.idx):
                        die("base mark #%d is not right after a flush" % e.idx)
                    self.bases[e.idx] = Base()
            nplain = sum(1 for e in ep if e.is_write() and not e.flags & logwrites.FUA)
            for p in pts:
                if self.rnd.random() >= keep:
                    continue
                if not self.submitted_before(p):
                    continue
                trial = Trial()
                for e in p.fua + p.plain:
                    self.write(e, trial=trial)
                if p.torn:
                    self.write(p.torn[0], torn=p.torn[1], trial=trial)
                    self.torn += 1
                if 0 < len(p.plain) < nplain:
                    self.cached += 1
                self.check(p, trial)
                self.mirror.rollback()
            for e in ep:
                if e.is_write():
                    self.write(e)
        dmfuzz.remove_dev("cr-rz")
        say("seed %d: %d of %d crash points checked (%d with some of the cached writes, "
            "%d torn), %d violations; %d log entries in %d epochs; %.0f s" %
            (self.a.seed, self.points, total, self.cached, self.torn, self.violations,
             len(self.log.entries), len(eps), time.time() - t0))
        return self.violations


def one_seed(a, seed):
    """Record a workload, replay it, check it; returns (points, violations)."""
    a.seed = seed
    for d in (a.data, a.log, a.rmeta):
        run("blkdiscard", d)
    rec = Recorder(a)
    rec.setup()
    rec.workload()
    rec.teardown()
    log = logwrites.Log(a.log)
    chk = Checker(a, log, rec.ops, rec.quiet_marks)
    v = chk.run()
    return chk.points, v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=None,
                    help="first seed (default: random); each further round takes the next")
    ap.add_argument("--points", type=int, default=200,
                    help="rounds go on until this many crash points were checked")
    ap.add_argument("--phases", type=int, default=12, help="workload phases per round")
    ap.add_argument("--writes", type=int, default=25, help="writes per thread per phase")
    ap.add_argument("--threads", type=int, default=3)
    ap.add_argument("--per-round", type=int, default=None,
                    help="crash points checked per round, a uniform sample of all its "
                    "points (default: --points, at most 600)")
    ap.add_argument("--subsets", type=int, default=2, help="random subsets per FUA prefix")
    ap.add_argument("--chunk", type=int, default=8, help="chunk size, sectors")
    ap.add_argument("--origin-mib", type=int, default=160)
    ap.add_argument("--meta-mib", type=int, default=4)
    ap.add_argument("--data", required=True, help="the log-writes data device")
    ap.add_argument("--log", required=True, help="the log device")
    ap.add_argument("--scratch", required=True, help="disk for the views' scratch slices")
    ap.add_argument("--rmeta", required=True, help="metadata device for the replays")
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else random.randrange(1 << 31)
    a.max_points = a.per_round or min(a.points, 600)
    t0 = time.time()
    points = violations = rounds = 0
    while points < a.points:
        say("round %d: seed %d (reproduce: --seed %d --points %d)" %
            (rounds + 1, seed, seed, a.max_points))
        p, v = one_seed(a, seed)
        points += p
        violations += v
        rounds += 1
        seed += 1
        if v:
            break
    say("%d rounds, %d crash points, %d violations, %.0f s" %
        (rounds, points, violations, time.time() - t0))
    sys.exit(1 if violations else 0)


if __name__ == "__main__":
    main()
