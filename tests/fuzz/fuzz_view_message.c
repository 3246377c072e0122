// SPDX-License-Identifier: GPL-2.0
/*
 * Fuzz target: a fleece (view) message: "commit" or
 * "changes [<start> [<max>]]" (Documentation/fleece.rst), parsed by
 * fleece_parse_view_message() as view_message() does, checked against the
 * documented forms; anything else is an unknown message.
 */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum fleece_view_msg_cmd cmd = FLEECE_VIEW_MSG_UNKNOWN;
	uint64_t start = 0, max = 65536;
	struct fleece_view_msg m;
	struct fuzz_words w;
	int r, want_r = 0;

	if (size > FUZZ_MAX_INPUT)
		return -1;
	fuzz_split(&w, data, size);
	if (!w.argc || w.argv[0][0] == '@')
		goto out;

	if (w.argc == 1 && ref_word_is(w.argv[0], "commit")) {
		cmd = FLEECE_VIEW_MSG_COMMIT;
	} else if (w.argc <= 3 && ref_word_is(w.argv[0], "changes")) {
		cmd = FLEECE_VIEW_MSG_CHANGES;
		if ((w.argc > 1 && !ref_number(w.argv[1], UINT64_MAX, &start)) ||
		    (w.argc > 2 && (!ref_number(w.argv[2], UINT64_MAX, &max) || !max)))
			want_r = -EINVAL;
	}

	r = fleece_parse_view_message(w.argc, w.argv, &m);
	fuzz_check(r == want_r, "returned %d, expected %d", r, want_r);
	if (r)
		goto out;
	fuzz_check(m.cmd == cmd, "message %d, expected %d", m.cmd, cmd);
	if (cmd == FLEECE_VIEW_MSG_CHANGES) {
		fuzz_check(m.start == start, "start %llu, expected %llu",
			   (unsigned long long)m.start, (unsigned long long)start);
		fuzz_check(m.max == max && m.max, "max %llu, expected %llu",
			   (unsigned long long)m.max, (unsigned long long)max);
	}
out:
	fuzz_words_free(&w);
	return 0;
}
