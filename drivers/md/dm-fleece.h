/* SPDX-License-Identifier: GPL-2.0 */
/*
 * dm-fleece: copy-before-write point-in-time views of a live block device,
 * with change tracking for incremental backups.
 *
 * Two targets share this module:
 *   fleece-origin  sits on the origin device that applications use;
 *   fleece         a point-in-time view of that origin (a "session").
 *
 * Both refer to the same underlying origin block device. Their shared state
 * (sessions, range lock, copy engine) lives in a struct fleece_dev found by
 * that device's dev_t, so a fleece-origin table can be reloaded while views
 * exist without losing them.
 */
#ifndef DM_FLEECE_H
#define DM_FLEECE_H

#include <linux/bio.h>
#include <linux/device-mapper.h>
#include <linux/kref.h>
#include <linux/list.h>
#include <linux/llist.h>
#include <linux/mempool.h>
#include <linux/mutex.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

#include "dm-fleece-compat.h"
#include "dm-fleece-rangelock.h"
#include "dm-fleece-slotmap.h"
#include "dm-fleece-track.h"

#define DM_MSG_PREFIX "fleece"

/* Smallest chunk: one 4 KiB page. Largest: 1 GiB. */
#define FLEECE_MIN_CHUNK_SECTORS 8
#define FLEECE_MAX_CHUNK_SECTORS BIT(21)

/*
 * Range lock regions, and so the largest bio either target takes, cover
 * 1 MiB or one chunk, whichever is larger: big enough for full-speed
 * sequential IO, small enough that a region's lock list stays short.
 */
#define FLEECE_REGION_SECTORS 2048

/* fleece-origin tables on one device at once: live, reloading, and spare. */
#define FLEECE_MAX_ORIGINS 4

/* One copy reads a chunk once and writes it to every session (kcopyd's limit). */
#define FLEECE_MAX_SESSIONS 8

/**
 * struct fleece_table_line - a target's table line, kept verbatim.
 * @text: the arguments joined by single spaces.
 */
struct fleece_table_line {
	char *text;
};

struct dm_kcopyd_client;
struct fleece_session;

/**
 * struct fleece_cbuf - the copy buffer: pages for buffered copies.
 * @lock: guards @pages, @nr_free and @waiters.
 * @pages: the free pages are @pages[0 .. @nr_free).
 * @nr_free: pages free.
 * @nr: pages in all; 0 without a buffer.
 * @waiters: copies waiting for pages, oldest first.
 * @work: starts waiting copies once pages are back.
 * @wq: where @work runs.
 */
struct fleece_cbuf {
	spinlock_t lock;		/* guards pages[], nr_free, waiters */
	struct page **pages;
	unsigned int nr_free;
	unsigned int nr;
	struct list_head waiters;
	struct work_struct work;
	struct workqueue_struct *wq;
};

/**
 * struct fleece_cbuf_wait - a request for pages of the copy buffer.
 * @node: on fleece_cbuf.waiters while it waits.
 * @bio: an empty bio with room for the pages; they are added to it.
 * @len: bytes wanted.
 * @ready: called, from the buffer's work, once a waiting request has its
 *	pages.
 */
struct fleece_cbuf_wait {
	struct list_head node;
	struct bio *bio;
	unsigned int len;
	void (*ready)(struct fleece_cbuf_wait *w);
};

/**
 * struct fleece_dev - what fleece-origin targets and views of one origin
 * block device share.
 * @list: on the module's list of devices.
 * @kref: one reference per target (fleece-origin or fleece) using it.
 * @bd_dev: the origin block device.
 * @bdev: the same; every target holding a reference has it open.
 * @nr_origins: fleece-origin targets on the device; two while a table is
 *	being reloaded. Sessions are invalidated when it drops to zero.
 * @origin_ti: those targets, to check they are suspended when a view
 *	takes its point in time.
 * @origin_running: for each of @origin_ti, from its preresume (before IO
 *	flows again) to its postsuspend (after IO drained), under the
 *	module's device lock and @start_lock: dm_suspended() turns false
 *	only after the origin's IO is let go, too late to keep a view's
 *	start out.
 * @chunk_sectors: copy and tracking unit.
 * @chunk_shift: log2(@chunk_sectors).
 * @region_sectors: the largest bio the targets take, see
 *	FLEECE_REGION_SECTORS.
 * @sessions_lock: serializes adding and removing sessions.
 * @sessions: the sessions, RCU-protected for the IO path; those of views
 *	not resumed yet too (FLEECE_SESSION_STARTED clear).
 * @nr_sessions: length of @sessions. While it is zero, origin writes skip
 *	copy-before-write; a session added while the origin runs is not
 *	started, and starts only while every fleece-origin is suspended.
 * @rl: range lock over chunks: view reads hold ranges shared, copies and
 *	releases hold them exclusive.
 * @wq: runs deferred origin writes and view IO (WQ_MEM_RECLAIM).
 * @commit_wq: runs the tracker's work, its commit rounds and the freeing
 *	of what a freeze gave up (WQ_MEM_RECLAIM, unbound): a round queued
 *	from a busy writer's CPU can start on another one rather than wait
 *	for that writer to yield its CPU.
 * @done_wq: runs what ends a copy and gives back what @wq's work waits
 *	for (pages of @cbuf, @copy_pool, @hold_pool): the buffered copies'
 *	reads done, their scratch writes, their ends, retries (WQ_MEM_RECLAIM).
 *	Under memory pressure a workqueue's rescuer runs its items one at a
 *	time, so a work item of @wq waiting in mempool_alloc() would keep
 *	these from running if they shared it.
 * @kc: copies old chunks to scratch.
 * @copy_pool: struct fleece_copy for in-flight copies.
 * @cbuf: the copy buffer (copy_buffer_kb), see dm-fleece-cbuf.c.
 * @cbs: the reads of buffered copies.
 * @cws: their writes to scratch: a reserve of their own, as the reads may
 *	hold every bio of @cbs while they wait for pages, which only the
 *	writes give back.
 * @hold_pool: struct fleece_hold for buffered copies.
 * @writes: origin writes whose chunks are locked, waiting for their copies
 *	to be planned and started, newest first.
 * @writes_left: those taken off @writes but left to the next run of
 *	@writes_work, oldest first; only that work touches it.
 * @writes_work: starts them in runs, each under one plug (see
 *	dm-fleece-cbw.c).
 * @reads_done: buffered copies whose old data was read, newest first.
 * @reads_left: as @writes_left, for @reads_done_work.
 * @reads_done_work: lets their origin writes go, and hands them to
 *	@to_scratch.
 * @to_scratch: buffered copies to write to scratch, newest first.
 * @to_scratch_left: as @writes_left, for @to_scratch_work.
 * @to_scratch_work: writes them in runs, each under one plug.
 * @trk: changed-block bitmaps; exists while a fleece-origin table does,
 *	once the first one's constructor has loaded them. Set and cleared
 *	under the module's device lock and @attach_lock; views reach it
 *	only under one of them (dm-fleece-dev.c).
 * @attach_lock: serializes what does metadata IO for this device's views
 *	and tables (loading @trk and destroying it, a view's reservation at
 *	its ctr, its commit and release) without the module's device lock,
 *	so that a slow metadata device holds up no other origin's tables or
 *	views.
 * @start_lock: held by a view's start from its check that every origin
 *	table is suspended to its point in time, over the freeze, by origin
 *	tables' preresume and postsuspend (no origin resumes in between), and
 *	where @trk is taken away and reservations revoked. Taken after
 *	@attach_lock.
 * @meta: the metadata device of @trk, from the start of its load to the
 *	end of its destruction (under both locks), so that no view takes it
 *	as scratch meanwhile; NULL without one.
 */
struct fleece_dev {
	struct list_head list;
	struct kref kref;
	dev_t bd_dev;
	struct block_device *bdev;
	unsigned int nr_origins;
	struct dm_target *origin_ti[FLEECE_MAX_ORIGINS];
	bool origin_running[FLEECE_MAX_ORIGINS];
	sector_t chunk_sectors;
	unsigned int chunk_shift;
	sector_t region_sectors;

	struct mutex sessions_lock;	/* adds and removes @sessions */
	struct list_head sessions;
	unsigned int nr_sessions;

	struct fleece_rl rl;
	struct workqueue_struct *wq;
	struct workqueue_struct *commit_wq;
	struct workqueue_struct *done_wq;
	struct dm_kcopyd_client *kc;
	mempool_t copy_pool;
	struct fleece_cbuf cbuf;
	struct bio_set cbs;
	struct bio_set cws;
	mempool_t hold_pool;
	struct llist_head writes;
	struct llist_node *writes_left;
	struct work_struct writes_work;
	struct llist_head reads_done;
	struct llist_node *reads_left;
	struct work_struct reads_done_work;
	struct llist_head to_scratch;
	struct llist_node *to_scratch_left;
	struct work_struct to_scratch_work;
	struct fleece_tracker *trk;
	struct mutex attach_lock;	/* metadata IO of @trk's users */
	struct mutex start_lock;	/* views' starts against origin resumes */
	struct block_device *meta;
};

/**
 * struct fleece_hold - keeps an origin write's chunks locked while its
 * buffered copies are written to scratch, after the write itself is gone.
 * @req: the range, handed over from the write (fleece_rl_transfer()).
 * @refs: one per buffered copy still writing, plus one for the write.
 * @fd: the origin state.
 */
struct fleece_hold {
	struct fleece_rl_req req;
	atomic_t refs;
	struct fleece_dev *fd;
};

enum fleece_on_full {
	FLEECE_ON_FULL_INVALIDATE,
	FLEECE_ON_FULL_FAIL_WRITES,
};

/* Bits of fleece_session.flags. */
enum {
	FLEECE_SESSION_INVALID,
	FLEECE_SESSION_LOW_WATER_HIT,
	FLEECE_SESSION_STARTED,		/* the view was resumed: its point in time */
};

/* States of a view's backup transaction (struct fleece_txn). */
enum fleece_txn_state {
	FLEECE_TXN_NONE,	/* no "bitmap <name>" */
	FLEECE_TXN_OPEN,
	FLEECE_TXN_COMMITTED,	/* the backup succeeded; the view goes on */
	FLEECE_TXN_ENDED,	/* open when the fleece-origin went away */
};

/**
 * struct fleece_txn - a view's backup transaction on a changed-block bitmap.
 * @name: the bitmap ("bitmap <name>"), or NULL without a transaction.
 * @full: "full": the backup reads every chunk, not only the frozen set.
 * @state: a FLEECE_TXN_* value. Changed under the origin device's
 *	attach_lock (the start's under its start_lock), and the module's
 *	device lock but for a commit's (dm-fleece-dev.c); status reads it
 *	without.
 * @fresh: between the view's ctr and its first resume, the empty bitmap
 *	reserved to record writes after the point in time
 *	(fleece_track_reserve()); owned by the tracker, NULL otherwise.
 * @frozen: what the bitmap held at the view's point in time. Owned by the
 *	origin's tracker and lent to the view until the view is removed or the
 *	tracker goes (committed or not); NULL then. Read under the module's
 *	device lock, or under the origin device's attach_lock (taken back and
 *	freed only under it; the start publishes it with a release store).
 * @after: the live bitmap of the same name, recording writes since the point
 *	in time. Owned by the tracker, which keeps it (no clear, remove, merge
 *	into or second freeze while @frozen exists) as long as @frozen. RCU,
 *	for view_end_io(); NULL with @frozen.
 * @unprotected: owned by the view. Without @full: chunks outside the frozen
 *	set, not released yet. They are not copied before origin writes: view
 *	reads of them go to the origin and are checked against @after when
 *	they complete. NULL with @full or without a transaction.
 *
 * The transaction ends when the view is removed (the frozen set is then
 * merged back into its bitmap, unless committed), or earlier when the last
 * fleece-origin goes and takes the tracker with it: the tracker then
 * revokes both loans (the set stays on disk, merged back at the next
 * activation).
 */
struct fleece_txn {
	char *name;
	bool full;
	enum fleece_txn_state state;
	struct fleece_bitmap *fresh;
	struct fleece_bitmap *frozen;
	struct fleece_bitmap __rcu *after;
	unsigned long *unprotected;
};

/**
 * struct fleece_session - one point-in-time view of an origin.
 * @list: on fleece_dev.sessions (RCU).
 * @fd: the shared origin state.
 * @ti: the view target.
 * @origin_dev: the view's reference to the origin device.
 * @scratch_dev: where preserved chunks go.
 * @flags: FLEECE_SESSION_* bits.
 * @on_full: what a full scratch device does.
 * @writable: the view accepts writes (kept in scratch).
 * @nr_chunks: origin chunks the view covers.
 * @settled: one bit per chunk, set once no origin write needs to copy the
 *	chunk any more: its point-in-time data is in scratch (or in the copy
 *	buffer on its way there, the chunk locked until it lands), or the reader
 *	released it, or the backup does not need it (outside the frozen set),
 *	or it could not be read. Set under the chunk's exclusive range lock,
 *	never cleared; origin writes test it without a lock.
 * @slots: the scratch device's chunk-sized slots and the chunks they hold.
 *	A chunk that is settled but has no slot was released: it reads as
 *	zeroes. One whose slot is marked unreadable was lost: reads fail.
 * @low_water: raise an event when free slots fall below this.
 * @inflight: copies writing to this session's scratch; the dtr waits for 0
 *	(wait_var_event(): the copy that drops it to zero wakes the dtr
 *	without touching the session, which may be freed at once).
 * @event_work: raises a dm event from process context.
 * @bs: bioset for splitting view bios between origin, scratch and zeroes.
 * @table: the table line.
 * @txn: the backup transaction ("bitmap <name>").
 * @copied: chunks copied to scratch since the session began.
 * @preserved: chunks with data in scratch now.
 * @unreadable: chunks lost to the view: their old data could not be read
 *	from the origin when a write needed the copy.
 * @released: chunks released by discards on the view.
 * @skipped: of those, released before they were copied: copies avoided.
 * @reads_scratch: sectors of view reads served from scratch.
 * @reads_origin: sectors of view reads served from the origin.
 */
struct fleece_session {
	struct list_head list;
	struct fleece_dev *fd;
	struct dm_target *ti;
	struct dm_dev *origin_dev;
	struct dm_dev *scratch_dev;
	unsigned long flags;
	enum fleece_on_full on_full;
	bool writable;

	u64 nr_chunks;
	unsigned long *settled;
	struct fleece_slotmap slots;
	u64 low_water;

	atomic_t inflight;
	struct work_struct event_work;
	struct bio_set bs;
	struct fleece_table_line table;
	struct fleece_txn txn;

	atomic64_t copied;
	atomic64_t preserved;
	atomic64_t unreadable;
	atomic64_t released;
	atomic64_t skipped;
	atomic64_t reads_scratch;
	atomic64_t reads_origin;
};

/**
 * struct fleece_io - per-bio state of both targets (ti->per_io_data_size).
 * @req: the range this bio holds or waits for.
 * @work: a view bio: runs its deferred part on fleece_dev.wq.
 * @wnode: an origin write: on fleece_dev.writes until its copies start.
 * @fd: the shared origin state.
 * @session: the view, for view bios; NULL for origin bios.
 * @locked: @req is held and must be released when the bio ends.
 * @pending: copies (plus one) this bio waits for.
 * @status: first error of those copies.
 * @checked: a view read that went to the origin for unprotected chunks.
 * @hold: origin writes with buffered copies: what keeps @req's range
 *	locked once the write goes on; NULL otherwise.
 * @copies_done: what to do once the copies are over.
 */
struct fleece_io {
	struct fleece_rl_req req;
	union {
		struct work_struct work;
		struct llist_node wnode;
	};
	struct fleece_dev *fd;
	struct fleece_session *session;
	bool locked;
	atomic_t pending;
	blk_status_t status;
	bool checked;
	struct fleece_hold *hold;
	void (*copies_done)(struct fleece_io *io);
};

/**
 * fleece_table_save() - keep a copy of a target's arguments.
 * @line: where to keep them.
 * @argc: argument count.
 * @argv: arguments as given to the ctr.
 *
 * Context: process context (ctr), may sleep.
 * Return: 0 or -ENOMEM.
 */
int fleece_table_save(struct fleece_table_line *line, unsigned int argc,
		      char **argv);

/**
 * fleece_table_free() - release what fleece_table_save() kept.
 * @line: the kept line; may be empty.
 */
void fleece_table_free(struct fleece_table_line *line);

/**
 * fleece_parse_chunk_sectors() - read and check a chunk size in sectors.
 * @ti: target whose ti->error is set on failure.
 * @arg: the argument text.
 * @out: the chunk size on success.
 *
 * A chunk is a power of two between FLEECE_MIN_CHUNK_SECTORS and
 * FLEECE_MAX_CHUNK_SECTORS.
 *
 * Return: 0, or -EINVAL with ti->error naming the fault.
 */
int fleece_parse_chunk_sectors(struct dm_target *ti, const char *arg,
			       sector_t *out);

/**
 * fleece_parse_origin_features() - the feature arguments of fleece-origin.
 * @ti: target whose ti->error is set on failure.
 * @as: the arguments after <chunk_sectors>.
 * @opts: filled in: "no_gap", "origin_id <id>" (points into @as).
 *
 * Return: 0, or -EINVAL with ti->error naming the fault.
 */
int fleece_parse_origin_features(struct dm_target *ti, struct dm_arg_set *as,
				 struct fleece_attach_opts *opts);

/**
 * struct fleece_view_opts - the optional arguments of a view.
 * @on_full: "on_full invalidate|fail_writes".
 * @writable: "writable".
 * @full: "full".
 * @low_water: "low_water <chunks>", 0 without.
 * @bitmap_name: "bitmap <name>", a kmalloc'ed copy, or NULL.
 */
struct fleece_view_opts {
	enum fleece_on_full on_full;
	bool writable;
	bool full;
	u64 low_water;
	char *bitmap_name;
};

/**
 * fleece_parse_view_opts() - the optional arguments of a view.
 * @ti: target whose ti->error is set on failure.
 * @as: the arguments after <scratch_dev>.
 * @o: filled in; on success the caller owns @o->bitmap_name.
 *
 * Also refuses the combinations a view does not support.
 *
 * Context: process context (ctr), may sleep.
 * Return: 0, or a negative errno with ti->error naming the fault (then
 * nothing is left allocated).
 */
int fleece_parse_view_opts(struct dm_target *ti, struct dm_arg_set *as,
			   struct fleece_view_opts *o);

enum fleece_view_msg_cmd {
	FLEECE_VIEW_MSG_UNKNOWN,
	FLEECE_VIEW_MSG_COMMIT,
	FLEECE_VIEW_MSG_CHANGES,
};

/**
 * struct fleece_view_msg - a parsed view message.
 * @cmd: which message; FLEECE_VIEW_MSG_UNKNOWN for a word or argument
 *	count the view does not know.
 * @start: "changes": first chunk (default 0).
 * @max: "changes": most ranges (default 65536, never 0).
 */
struct fleece_view_msg {
	enum fleece_view_msg_cmd cmd;
	u64 start;
	u64 max;
};

/**
 * fleece_parse_view_message() - "commit" or "changes [<start> [<max>]]".
 * @argc: word count, at least 1.
 * @argv: the words.
 * @m: the message.
 *
 * Return: 0, or -EINVAL for a "changes" with a bad number.
 */
int fleece_parse_view_message(unsigned int argc, char **argv,
			      struct fleece_view_msg *m);

enum fleece_bitmap_msg_cmd {
	FLEECE_BM_MSG_UNKNOWN,
	FLEECE_BM_MSG_BAD_ARGS,
	FLEECE_BM_MSG_LIST,
	FLEECE_BM_MSG_ADD,
	FLEECE_BM_MSG_REMOVE,
	FLEECE_BM_MSG_CLEAR,
	FLEECE_BM_MSG_MERGE,
	FLEECE_BM_MSG_CHANGES,
};

/**
 * struct fleece_bitmap_msg - a parsed bitmap_* message of fleece-origin.
 * @cmd: which message. FLEECE_BM_MSG_UNKNOWN (an unknown word or a wrong
 *	argument count) and FLEECE_BM_MSG_BAD_ARGS (a bad number) are
 *	refused with -EINVAL, but only once @name is known to exist.
 * @name: the bitmap (a valid name) for all but FLEECE_BM_MSG_LIST.
 * @src: bitmap_merge: the bitmap to merge (not checked).
 * @start: bitmap_changes: first chunk (default 0).
 * @max: bitmap_changes: most ranges (default 65536, never 0).
 */
struct fleece_bitmap_msg {
	enum fleece_bitmap_msg_cmd cmd;
	const char *name;
	const char *src;
	u64 start;
	u64 max;
};

/**
 * fleece_parse_bitmap_message() - parse a fleece-origin message.
 * @argc: word count, at least 1.
 * @argv: the words; @m points into them.
 * @m: the message.
 *
 * Return: 0; -EOPNOTSUPP for a word not starting with "bitmap_"; -EINVAL
 * for a missing or invalid bitmap name (logged), or a bitmap_list or
 * bitmap_add with a wrong argument count.
 */
int fleece_parse_bitmap_message(unsigned int argc, char **argv,
				struct fleece_bitmap_msg *m);

/* dm-fleece-dev.c */

/**
 * fleece_dev_get_origin() - attach a fleece-origin target to its device.
 * @ti: the fleece-origin target.
 * @bdev: the origin block device.
 * @chunk_sectors: the target's chunk size.
 * @error: set to a message for ti->error on failure.
 *
 * Finds or creates the device's shared state and counts one more
 * fleece-origin on it. A second fleece-origin (a table reload) must use the
 * same chunk size.
 *
 * Context: process context (ctr), may sleep.
 * Return: the state with a reference, or an ERR_PTR.
 */
struct fleece_dev *fleece_dev_get_origin(struct dm_target *ti,
					 struct block_device *bdev,
					 sector_t chunk_sectors, char **error);

/**
 * fleece_dev_origin_running() - a fleece-origin target starts or stops
 * passing IO.
 * @fd: from fleece_dev_get_origin().
 * @ti: the same target.
 * @running: true from its preresume, false from its postsuspend.
 *
 * A view starts only while no fleece-origin target of its device runs;
 * this serializes the two.
 *
 * Context: process context, may sleep.
 */
void fleece_dev_origin_running(struct fleece_dev *fd, struct dm_target *ti,
			       bool running);

/**
 * fleece_dev_put_origin() - detach a fleece-origin target from its device.
 * @fd: from fleece_dev_get_origin().
 * @ti: the same target.
 *
 * When the last fleece-origin goes, writes reach the origin without copies,
 * so every session on it is invalidated, and the bitmaps are detached (a
 * superblock write, under @fd's own lock only). Drops the reference.
 *
 * Context: process context (dtr), may sleep and do IO.
 */
void fleece_dev_put_origin(struct fleece_dev *fd, struct dm_target *ti);

/**
 * fleece_dev_attach_tracker() - give an origin device its bitmaps.
 * @fd: from fleece_dev_get_origin().
 * @meta: the metadata device, or NULL for bitmaps in memory only.
 * @origin_sectors: the fleece-origin target's length.
 * @opts: the table's no_gap and origin_id.
 * @error: reason for ti->error on failure.
 *
 * The first fleece-origin table of a device loads them (an attach); a
 * reloaded table must name the same metadata device, length and origin,
 * and shares them (no gap: the old table tracked until the swap). Only
 * @fd's own lock is held over the load's IO: other devices' tables and
 * views are not held up, tables of this device wait for it.
 *
 * Context: process context (ctr), may sleep and do IO.
 * Return: 0 or a negative errno.
 */
int fleece_dev_attach_tracker(struct fleece_dev *fd, struct block_device *meta,
			      sector_t origin_sectors,
			      const struct fleece_attach_opts *opts, char **error);

/**
 * fleece_dev_add_session() - set up a view's session, not started yet.
 * @fd: from fleece_dev_find().
 * @s: the session, set up but for its transaction's bitmaps.
 * @error: reason for ti->error on failure.
 *
 * What the view's ctr can check and allocate while the origin still runs,
 * so that the suspend for its point in time is short: the device has a
 * fleece-origin; the view is not longer than it; the scratch device
 * overlaps no origin, metadata, scratch or dm-fleece device; the origin
 * has room for one more session; with "bitmap <name>", the bitmap has no
 * other backup in progress, and its successor is allocated
 * (fleece_track_reserve()). Origin writes ignore the session until
 * fleece_dev_start_session().
 *
 * Context: process context (view ctr), may sleep and do IO.
 * Return: 0 or a negative errno (then nothing has changed).
 */
int fleece_dev_add_session(struct fleece_dev *fd, struct fleece_session *s,
			   char **error);

/**
 * fleece_dev_start_session() - a view's point in time (its first resume).
 * @fd: the origin state.
 * @s: from fleece_dev_add_session(); a started one is left alone.
 *
 * Every fleece-origin of the device must be suspended (a view of an active
 * origin would not have an exact point in time): this is the whole of the
 * suspend window a view costs. With "bitmap <name>", the bitmap is frozen
 * (s->txn begins). From then on origin writes copy for the session.
 * Failures are logged with the reason.
 *
 * Context: process context (view preresume), may sleep and do IO.
 * Return: 0, -EBUSY when an origin is not suspended, or a negative errno.
 */
int fleece_dev_start_session(struct fleece_dev *fd, struct fleece_session *s);

/**
 * fleece_dev_remove_session() - end a view's session.
 * @fd: the origin state.
 * @s: a session fleece_dev_add_session() started.
 *
 * Origin writes stop copying for it; once none is in flight, its backup
 * transaction ends: the frozen set is merged back into its bitmap unless it
 * was committed. No view IO may be in flight.
 *
 * Context: process context (view dtr), may sleep and do IO.
 */
void fleece_dev_remove_session(struct fleece_dev *fd, struct fleece_session *s);

/**
 * fleece_dev_commit() - the backup of a view's frozen set succeeded.
 * @fd: the origin state.
 * @s: the session.
 *
 * The frozen set is dropped from the metadata; the view keeps working.
 *
 * Context: process context, may sleep and do IO.
 * Return: 0, -ENOENT without an open transaction, -EALREADY if committed,
 * or a negative errno.
 */
int fleece_dev_commit(struct fleece_dev *fd, struct fleece_session *s);

/**
 * fleece_dev_emit_changes() - a page of the chunks a view's backup must read.
 * @fd: the origin state.
 * @s: the session.
 * @start: first chunk.
 * @max: most ranges.
 * @result: response buffer.
 * @maxlen: its size.
 *
 * Context: process context.
 * Return: 1 with a response, or -ENOENT when the view has no frozen set
 * (no transaction, or it ended).
 */
int fleece_dev_emit_changes(struct fleece_dev *fd, struct fleece_session *s,
			    u64 start, u64 max, char *result,
			    unsigned int maxlen);

/**
 * fleece_origin_resume_bio() - go on with an origin write whose bits are
 * durable: copy-before-write if sessions need it, then submit.
 * @ctx: the struct fleece_dev.
 * @bio: the write.
 */
void fleece_origin_resume_bio(void *ctx, struct bio *bio);

/**
 * fleece_dev_find() - find the state of a device with a fleece-origin on it.
 * @bd_dev: the origin block device.
 *
 * Context: process context (ctr), may sleep.
 * Return: the state with a reference (drop it with fleece_dev_put()), or
 * NULL when no fleece-origin is on @bd_dev.
 */
struct fleece_dev *fleece_dev_find(dev_t bd_dev);

/**
 * fleece_dev_put() - drop a reference from fleece_dev_find().
 * @fd: the state.
 *
 * Context: process context, may sleep.
 */
void fleece_dev_put(struct fleece_dev *fd);

/**
 * fleece_chunk_range() - the chunks a bio touches.
 * @fd: the shared origin state.
 * @sector: first sector, relative to the device.
 * @nr_sectors: length; not 0.
 * @first: first chunk.
 * @end: one past the last chunk.
 */
static inline void fleece_chunk_range(struct fleece_dev *fd, sector_t sector,
				      unsigned int nr_sectors, u64 *first,
				      u64 *end)
{
	*first = sector >> fd->chunk_shift;
	*end = ((sector + nr_sectors - 1) >> fd->chunk_shift) + 1;
}

/* dm-fleece-scratch.c */

/**
 * fleece_scratch_take() - give a chunk a scratch slot.
 * @s: the session.
 * @chunk: a chunk without a slot.
 * @want: the slot to try first (e.g. one after the previous allocation,
 *	so runs of chunks land in runs of slots); U32_MAX for any.
 * @slot: the slot on success.
 *
 * Raises the low-water event when free slots fall below the mark.
 *
 * Context: process context; doesn't sleep or allocate.
 * Return: 0, or -ENOSPC when scratch is full.
 */
int fleece_scratch_take(struct fleece_session *s, u64 chunk, u32 want,
			u32 *slot);

/**
 * fleece_scratch_drop() - free a chunk's scratch slot, if it has one.
 * @s: the session.
 * @chunk: the chunk.
 *
 * Context: process context; doesn't sleep.
 * Return: true if it had one.
 */
bool fleece_scratch_drop(struct fleece_session *s, u64 chunk);

/* dm-fleece-session.c */

/**
 * fleece_session_invalidate() - stop preserving data for a session.
 * @s: the session.
 * @why: logged once.
 *
 * View reads fail from now on; origin writes no longer copy for it. Raises
 * a dm event on the view.
 *
 * Context: any; doesn't sleep.
 */
void fleece_session_invalidate(struct fleece_session *s, const char *why);

/**
 * fleece_session_needs_copy() - does any chunk of a range need a copy?
 * @s: the session.
 * @first: first chunk.
 * @end: one past the last chunk.
 *
 * Lockless: a stale "yes" is rechecked under the range lock, and "no" is
 * final because chunks never become unsettled.
 *
 * Context: any; doesn't sleep.
 */
static inline bool fleece_session_needs_copy(struct fleece_session *s,
					     u64 first, u64 end)
{
	if (!test_bit(FLEECE_SESSION_STARTED, &s->flags) ||
	    test_bit(FLEECE_SESSION_INVALID, &s->flags) || first >= s->nr_chunks)
		return false;
	end = min(end, s->nr_chunks);
	return find_next_zero_bit(s->settled, end, first) < end;
}

/**
 * fleece_session_event() - work function raising a dm event on the view.
 * @work: fleece_session.event_work.
 */
void fleece_session_event(struct work_struct *work);

/* dm-fleece-cbuf.c */

/**
 * fleece_cbuf_init() - allocate the copy buffer.
 * @cb: the buffer.
 * @nr: pages; 0 for none.
 * @wq: where waiting copies are started.
 *
 * Context: process context, may sleep.
 * Return: 0 or -ENOMEM (then nothing is allocated).
 */
int fleece_cbuf_init(struct fleece_cbuf *cb, unsigned int nr,
		     struct workqueue_struct *wq);

/**
 * fleece_cbuf_exit() - free the copy buffer; every page must be back.
 * @cb: the buffer.
 */
void fleece_cbuf_exit(struct fleece_cbuf *cb);

/**
 * fleece_cbuf_fits() - can a request of @len bytes ever be served?
 * @cb: the buffer.
 * @len: bytes.
 */
bool fleece_cbuf_fits(struct fleece_cbuf *cb, unsigned int len);

/**
 * fleece_cbuf_take() - pages for a request, now or in turn.
 * @cb: the buffer.
 * @w: the request (@w->len must fit, see fleece_cbuf_fits()).
 *
 * Context: any; doesn't sleep.
 * Return: true when @w->bio has its pages; false when @w waits in line,
 * and @w->ready is called once it has them.
 */
bool fleece_cbuf_take(struct fleece_cbuf *cb, struct fleece_cbuf_wait *w);

/**
 * fleece_cbuf_put() - give back the pages of a bio from fleece_cbuf_take().
 * @cb: the buffer.
 * @bio: the bio; its pages are no longer its to use.
 *
 * Context: any; doesn't sleep.
 */
void fleece_cbuf_put(struct fleece_cbuf *cb, struct bio *bio);

/* dm-fleece-cbw.c */

/**
 * fleece_origin_write() - copy-before-write for a bio to the origin.
 * @fd: the shared origin state.
 * @bio: a remapped write, discard or write-zeroes bio.
 *
 * Lets the bio through when no session needs any chunk it touches;
 * otherwise locks its chunks exclusively, copies their old data to every
 * session that needs it, and submits the bio once the copies are done.
 *
 * Context: the origin's map function.
 * Return: a DM_MAPIO_* value.
 */
int fleece_origin_write(struct fleece_dev *fd, struct bio *bio);

/**
 * fleece_view_prepare_write() - give chunks of a writable view their own
 * scratch slots before the view writes them.
 * @io: the view write, holding its chunks exclusively.
 * @first: first chunk.
 * @end: one past the last chunk.
 * @done: called (from kcopyd's thread or the caller) once every chunk has
 *	a slot holding its point-in-time data, with io->status set.
 *
 * Context: process context (worker), may sleep.
 */
void fleece_view_prepare_write(struct fleece_io *io, u64 first, u64 end,
			       void (*done)(struct fleece_io *io));

/**
 * fleece_cbw_init() - module-wide setup of the copy engine.
 * Return: 0 or -ENOMEM.
 */
int fleece_cbw_init(void);

/** fleece_cbw_exit() - undo fleece_cbw_init(). */
void fleece_cbw_exit(void);

/**
 * fleece_cbw_dev_init() - set up the copy engine's queues of a device.
 * @fd: the device, being created.
 */
void fleece_cbw_dev_init(struct fleece_dev *fd);

/**
 * fleece_copy_pool_init() - the mempool of in-flight copies of a device.
 * @pool: the pool to set up.
 * Return: 0 or -ENOMEM.
 */
int fleece_copy_pool_init(mempool_t *pool);

/**
 * fleece_cbw_write_pad() - the front pad of the bio_set of buffered copies'
 * writes to scratch (fleece_dev.cws).
 * Return: bytes before each bio.
 */
unsigned int fleece_cbw_write_pad(void);

extern struct target_type fleece_origin_target;
extern struct target_type fleece_view_target;

#endif /* DM_FLEECE_H */
