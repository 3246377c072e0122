// SPDX-License-Identifier: GPL-2.0
/*
 * Unit tests for userspace/nbdserver.c (qemu-nbd's command line, the
 * --name and --tls-creds checks) and the client URI of nbdsock.c: what
 * export starts and prints, without a view or a server.
 */
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "nbdserver.h"
#include "nbdsock.h"

/* s->argv as one string, arguments joined by spaces. */
static const char *joined(const struct nbd_server *s)
{
	static char buf[16384];
	char *const *a;
	size_t o = 0;

	buf[0] = '\0';
	for (a = s->argv; *a; a++)
		o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s%s", o ? " " : "", *a);
	return buf;
}

static void test_argv_full(void **state)
{
	struct nbd_server s = { .qemu_nbd = "/usr/bin/qemu-nbd", .view_path = "/dev/mapper/v",
				.description = "d", .direct = 1 };

	(void)state;
	assert_int_equal(nbd_server_argv(&s), 0);
	assert_string_equal(joined(&s), "/usr/bin/qemu-nbd --read-only --persistent --shared=0 "
			    "--description d --format=raw --cache=none --aio=native /dev/mapper/v");
	s.direct = 0;
	s.name = "disk0";
	assert_int_equal(nbd_server_argv(&s), 0);
	assert_string_equal(joined(&s), "/usr/bin/qemu-nbd --read-only --persistent --shared=0 "
			    "--description d --export-name disk0 --format=raw /dev/mapper/v");
}

/* The bitmap's overlay: O_DIRECT on the view's node only; commas doubled. */
static void test_argv_bitmap_tls(void **state)
{
	struct nbd_server s = { .qemu_nbd = "q", .view_path = "/dev/mapper/a,b",
				.image = "/run/x/view.qcow2", .bitmap = "nightly",
				.description = "d", .tls_dir = "/etc/pki/a,b",
				.tls_authz = "CN=backup,O=example", .direct = 1 };

	(void)state;
	assert_int_equal(nbd_server_argv(&s), 0);
	assert_string_equal(joined(&s), "q --read-only --persistent --shared=0 --description d "
		"--object tls-creds-x509,id=tls0,endpoint=server,dir=/etc/pki/a,,b "
		"--tls-creds=tls0 "
		"--object authz-simple,id=authz0,identity=CN=backup,,O=example "
		"--tls-authz=authz0 --bitmap nightly --image-opts "
		"driver=qcow2,file.driver=file,file.filename=/run/x/view.qcow2,"
		"backing.driver=raw,backing.file.filename=/dev/mapper/a,,b,"
		"backing.cache.direct=on,backing.file.aio=native");
}

static void test_name_check(void **state)
{
	char why[256], longname[NBD_NAME_MAX + 2];

	(void)state;
	assert_int_equal(nbd_name_check("disk0", why, sizeof(why)), 0);
	assert_int_equal(nbd_name_check("", why, sizeof(why)), -1);
	assert_int_equal(nbd_name_check("a\tb", why, sizeof(why)), -1);
	assert_string_equal(why, "an export name has no control characters");
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_int_equal(nbd_name_check(longname, why, sizeof(why)), -1);
	longname[NBD_NAME_MAX] = '\0';
	assert_int_equal(nbd_name_check(longname, why, sizeof(why)), 0);
}

/* Each missing piece is named by its path. */
static void test_tls_check(void **state)
{
	char dir[] = "/tmp/nbdtls.XXXXXX", abs[PATH_MAX], why[PATH_MAX + 256], path[256];
	static const char *const files[] = { "ca-cert.pem", "server-cert.pem",
					     "server-key.pem" };
	unsigned int i;
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	for (i = 0; i < 3; i++) {
		assert_int_equal(nbd_tls_check(dir, abs, why, sizeof(why)), -1);
		snprintf(path, sizeof(path), "%s/%s: No such file or directory", dir, files[i]);
		assert_non_null(strstr(why, path));
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		f = fopen(path, "w");
		assert_non_null(f);
		fclose(f);
	}
	assert_int_equal(nbd_tls_check(dir, abs, why, sizeof(why)), 0);
	assert_string_equal(abs, dir);
	snprintf(path, sizeof(path), "%s/ca-cert.pem", dir);
	assert_int_equal(nbd_tls_check(path, abs, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "is not a directory"));
	for (i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		unlink(path);
	}
	rmdir(dir);
	assert_int_equal(nbd_tls_check(dir, abs, why, sizeof(why)), -1);
	snprintf(path, sizeof(path), "%s: No such file or directory", dir);
	assert_string_equal(why, path);
}

static void test_uri(void **state)
{
	struct nbd_listen l = { .fd = -1 };
	char buf[1024];

	(void)state;
	strcpy(l.uri, "nbd+unix:///?socket=/run/a%20b.sock");
	nbd_listen_uri(&l, NULL, 0, buf, sizeof(buf));
	assert_string_equal(buf, "nbd+unix:///?socket=/run/a%20b.sock");
	nbd_listen_uri(&l, "disk 0", 1, buf, sizeof(buf));
	assert_string_equal(buf, "nbds+unix:///disk%200?socket=/run/a%20b.sock");
	strcpy(l.uri, "nbd://[::1]:10809/");
	nbd_listen_uri(&l, "vm/disk0", 1, buf, sizeof(buf));
	assert_string_equal(buf, "nbds://[::1]:10809/vm/disk0");
	strcpy(l.uri, "nbd://127.0.0.1:10809/");
	nbd_listen_uri(&l, "d?#", 0, buf, sizeof(buf));
	assert_string_equal(buf, "nbd://127.0.0.1:10809/d%3F%23");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_argv_full),
		cmocka_unit_test(test_argv_bitmap_tls),
		cmocka_unit_test(test_name_check),
		cmocka_unit_test(test_tls_check),
		cmocka_unit_test(test_uri),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
