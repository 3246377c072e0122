#!/bin/bash
# bitmap_clear and bitmap_merge pass over a whole bitmap a piece of 1024
# chunks at a time, taking the tracker's spinlock for each piece, while
# writers record chunks in between. Three writer threads write 4 KiB
# chunks of a 1 GiB origin (4 KiB chunks: 262144 of them, 256 pieces, nine
# metadata blocks), each to its own 700 chunks spread over the origin, at
# random, again and again, and log a sequence number when each write
# starts and ends. Meanwhile a fourth thread, in
# rounds (at least ROUNDS, and until 2000 writes have ended): clears a;
# merges a into b; clears c and merges b into c. The writers stop 300
# writes after the last round, and:
# - a holds every chunk with a write started after the last clear of a
#   returned, and none whose writes all ended before it began;
# - b (never cleared, merged into) holds every chunk written and no other;
# - c holds every chunk with a write ended before the last merge into it
#   began, and only chunks written;
# - every bitmap's count in the status is the number of chunks its
#   bitmap_changes lists (the counts are kept as bits are set and cleared);
# - persistent: after clean_detach, removal and a new table (no_gap),
#   status and every bitmap's chunks are what they were in memory.
# The same with bitmaps in memory ('-'), without the last check.
. "$(dirname "$0")/lib.sh"

CH=8
sz=$(dev_sectors $ORIGIN)
ROUNDS=${FLEECE_RACE_ROUNDS:-12}

cleanup() { dmsetup remove t083 2>/dev/null || true; }
trap cleanup EXIT

load_module

# race MODE: the writers and the passes; prints the bitmaps' state.
race() {
	python3 -c "$FLEECE_DMPY
import mmap, random, threading
dev, rounds, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
CB = 4096
fd0 = os.open(dev, os.O_RDONLY)
nr = os.lseek(fd0, 0, os.SEEK_END) // CB
os.close(fd0)
# Each writer its own 700 chunks, spread over every piece, written again
# and again: a chunk's bit is on disk when it is written after a clear.
pool = random.Random(seed).sample(range(nr), 2100)
lock = threading.Lock()
seq = [0]
start, end = {}, {}	# chunk -> sequence numbers of its writes
done = [0]		# writes ended
stop_at = [0]		# writes ended at which the writers stop
first = [threading.Event() for _ in range(3)]
errors = []

def tick():
    with lock:
        seq[0] += 1
        return seq[0]

def writer(w):
    try:
        fd = os.open(dev, os.O_WRONLY | os.O_DIRECT)
        buf = mmap.mmap(-1, CB)
        buf.write(bytes([w + 1]) * CB)
        mine, rnd = pool[w::3], random.Random(seed + w)
        while not (stop_at[0] and done[0] >= stop_at[0]):
            k = rnd.choice(mine)
            start.setdefault(k, []).append(tick())
            os.pwritev(fd, [buf], k * CB)
            with lock:
                seq[0] += 1
                end.setdefault(k, []).append(seq[0])
                done[0] += 1
            first[w].set()
        os.close(fd)
    except Exception as e:
        errors.append('writer %d: %r' % (w, e))
    finally:
        first[w].set()

def msg(words):
    try:
        dm_message(dev_name, words)
    except OSError as e:
        errors.append('%s: %r' % (' '.join(words), e))

dev_name = os.path.basename(dev)
ws = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
for t in ws:
    t.start()
for e in first:
    e.wait()
last = {}
r = 0
# Counts, not time: at least ROUNDS rounds and 2000 writes, rounds all
# along; then 300 writes more after the last.
while r < rounds or done[0] < 2000:
    p0 = tick(); msg(['bitmap_clear', 'a']); p1 = tick()
    last['a'] = (p0, p1)
    msg(['bitmap_merge', 'b', 'a'])
    msg(['bitmap_clear', 'c'])
    p0 = tick(); msg(['bitmap_merge', 'c', 'b']); p1 = tick()
    last['c'] = (p0, p1)
    r += 1
    if errors:
        break
stop_at[0] = done[0] + 300
for t in ws:
    t.join()
if errors:
    sys.exit('; '.join(errors))
if any(len(start[k]) != len(end.get(k, [])) for k in start):
    sys.exit('a write did not end')

def chunks(name):
    out = set()
    for rg in bitmap_ranges(dev_name, name):
        f, n = rg.split('+')
        out.update(range(int(f), int(f) + int(n)))
    return out

got = {n: chunks(n) for n in 'abc'}
written = set(start)
st = dm_status(dev_name).split()
counts = {st[i]: int(st[i + 1]) for i in range(7, len(st), 3)}
fails = []
for n in 'abc':
    if counts.get(n) != len(got[n]):
        fails.append('%s: status counts %s, bitmap_changes lists %d' % (n, counts.get(n), len(got[n])))
    if got[n] - written:
        fails.append('%s: %d chunks never written, e.g. %d' % (n, len(got[n] - written), min(got[n] - written)))
a0, a1 = last['a']
after = {k for k in written if max(start[k]) > a1}
before = {k for k in written if max(end[k]) < a0}
if after - got['a']:
    fails.append('a: %d of %d writes started after the last clear are missing, e.g. chunk %d' % (len(after - got['a']), len(after), min(after - got['a'])))
if before & got['a']:
    fails.append('a: %d writes ended before the last clear are still set, e.g. chunk %d' % (len(before & got['a']), min(before & got['a'])))
if got['b'] != written:
    fails.append('b: %d chunks missing, e.g. %s' % (len(written - got['b']), sorted(written - got['b'])[:3]))
c0, c1 = last['c']
cbefore = {k for k in written if min(end[k]) < c0}
if cbefore - got['c']:
    fails.append('c: %d writes ended before the last merge into it are missing, e.g. chunk %d' % (len(cbefore - got['c']), min(cbefore - got['c'])))
if fails:
    sys.exit('; '.join(fails))
print('%d rounds, %d writes to %d chunks, %d pieces; a %d (%d started after its last clear, %d ended before it), c %d (%d ended before its last merge)' % (
    r, done[0], len(written), (nr + 1023) // 1024, len(got['a']), len(after), len(before), len(got['c']), len(cbefore)), file=sys.stderr)
" "/dev/mapper/t083" "$ROUNDS" "$1"
}

state() { python3 -c "$FLEECE_DMPY
main_state('t083')"; }

for mode in persistent volatile; do
	meta=$META
	[ $mode = volatile ] && meta=-
	zero_dev $META 0 $((4 << 20))
	dmsetup create t083 --table "0 $sz fleece-origin $ORIGIN $meta $CH"
	for b in a b c; do dmsetup message t083 0 bitmap_add $b; done
	seed=$RANDOM
	out=$(race $seed 2>&1) || fail "$mode (seed $seed): $out"
	info "$mode (seed $seed): $out"
	if [ $mode = persistent ]; then
		before=$(state)
		dmsetup message t083 0 clean_detach
		dmsetup remove t083
		dmsetup create t083 --table "0 $sz fleece-origin $ORIGIN $META $CH 1 no_gap"
		after=$(state)
		[ "$before" = "$after" ] ||
			fail "bitmaps on disk differ from memory: $(diff <(echo "$before") <(echo "$after") | head -c 600)"
		info "persistent: status and every bitmap's chunks the same after a new table"
	fi
	dmsetup remove t083
done
