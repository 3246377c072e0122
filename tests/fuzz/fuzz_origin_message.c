// SPDX-License-Identifier: GPL-2.0
/*
 * Fuzz target: a fleece-origin message (dmsetup message <dev> 0 ...):
 *
 *   bitmap_add <name>, bitmap_remove <name>, bitmap_clear <name>,
 *   bitmap_merge <dst> <src>, bitmap_list,
 *   bitmap_changes <name> [<start> [<max_ranges>]]
 *
 * parsed by fleece_parse_bitmap_message() as fleece_track_message() does,
 * checked against Documentation/fleece-origin.rst: which message it is,
 * its arguments, and which faults are refused at once (-EINVAL, or
 * -EOPNOTSUPP for a message that is not a bitmap_* one) and which only
 * once the bitmap is known to exist.
 */
#include "fuzz.h"

struct ref_msg {
	int r;
	enum fleece_bitmap_msg_cmd cmd;
	const char *name, *src;
	uint64_t start, max;
};

static void ref_message(const struct fuzz_words *w, struct ref_msg *m)
{
	unsigned int argc = w->argc;
	char **argv = w->argv;
	const char *c = argv[0];

	memset(m, 0, sizeof(*m));
	m->cmd = FLEECE_BM_MSG_UNKNOWN;
	m->max = 65536;
	if (strncmp(c, "bitmap_", 7)) {
		m->r = -EOPNOTSUPP;
		return;
	}
	if (!strcmp(c, "bitmap_list")) {
		m->cmd = FLEECE_BM_MSG_LIST;
		m->r = argc == 1 ? 0 : -EINVAL;
		return;
	}
	if (argc < 2 || !ref_valid_name(argv[1])) {
		m->r = -EINVAL;
		return;
	}
	m->name = argv[1];
	if (!strcmp(c, "bitmap_add")) {
		m->cmd = FLEECE_BM_MSG_ADD;
		m->r = argc == 2 ? 0 : -EINVAL;
		return;
	}
	if (!strcmp(c, "bitmap_remove") && argc == 2) {
		m->cmd = FLEECE_BM_MSG_REMOVE;
	} else if (!strcmp(c, "bitmap_clear") && argc == 2) {
		m->cmd = FLEECE_BM_MSG_CLEAR;
	} else if (!strcmp(c, "bitmap_merge") && argc == 3) {
		m->cmd = FLEECE_BM_MSG_MERGE;
		m->src = argv[2];
	} else if (!strcmp(c, "bitmap_changes") && argc <= 4) {
		m->cmd = FLEECE_BM_MSG_CHANGES;
		if ((argc > 2 && !ref_number(argv[2], UINT64_MAX, &m->start)) ||
		    (argc > 3 && (!ref_number(argv[3], UINT64_MAX, &m->max) ||
				  !m->max)))
			m->cmd = FLEECE_BM_MSG_BAD_ARGS;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fleece_bitmap_msg m;
	struct fuzz_words w;
	struct ref_msg want;
	int r;

	if (size > FUZZ_MAX_INPUT)
		return -1;
	fuzz_split(&w, data, size);
	/* dm core refuses empty messages and keeps "@..." ones to itself. */
	if (!w.argc || w.argv[0][0] == '@')
		goto out;
	ref_message(&w, &want);

	r = fleece_parse_bitmap_message(w.argc, w.argv, &m);
	fuzz_check(r == want.r, "returned %d, expected %d", r, want.r);
	if (r)
		goto out;
	fuzz_check(m.cmd == want.cmd, "message %d, expected %d", m.cmd, want.cmd);
	fuzz_check(m.name == want.name, "name");
	if (m.cmd == FLEECE_BM_MSG_MERGE)
		fuzz_check(m.src == want.src, "merge source");
	if (m.cmd == FLEECE_BM_MSG_CHANGES) {
		fuzz_check(m.start == want.start, "start %llu, expected %llu",
			   (unsigned long long)m.start,
			   (unsigned long long)want.start);
		fuzz_check(m.max == want.max && m.max, "max %llu, expected %llu",
			   (unsigned long long)m.max, (unsigned long long)want.max);
	}
	/* What the kernel then takes from a name stays inside the word. */
	if (m.name)
		fuzz_check(strlen(m.name) <= FLEECE_NAME_MAX, "name too long");
out:
	fuzz_words_free(&w);
	return 0;
}
