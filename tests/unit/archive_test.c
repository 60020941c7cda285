/* archive: write-once puts (idempotent same bytes, -EEXIST other bytes), retention-gated
 * delete on a test clock, verified reads, read-only files, name rules, crash safety (a child
 * doing puts is SIGKILLed at random points, then every invariant is checked), and concurrent
 * puts of one name from threads. */
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <talloc.h>
#include <time.h>
#include <unistd.h>

#include "archive.h"
#include "clock.h"
#include "log.h"
#include "sign.h"
#include "testutil.h"

#define T0_MS   1790000000000LL
#define YEAR_MS (365LL * 86400 * 1000)

typedef struct {
	void *ctx;
	char *dir;
	gh_clock_t *clock;
	gh_archive_t *ar;
} fx_t;

static int setup(void **state)
{
	fx_t *f = talloc_zero(NULL, fx_t);
	f->ctx = f;
	f->dir = gh_test_tmpdir();
	if (!f->dir)
		return -1;
	f->clock = gh_clock_test_new(f, T0_MS);
	char *root = talloc_asprintf(f, "%s/var/archive", f->dir); /* created with parents */
	if (gh_archive_open(f, root, f->clock, &f->ar) != 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx_t *f = *state;
	gh_test_rmtree(f->dir);
	free(f->dir);
	talloc_free(f);
	return 0;
}

static char *apath(fx_t *f, const char *rel)
{
	return talloc_asprintf(f, "%s/var/archive/%s", f->dir, rel);
}

static void test_put_get_round_trip(void **state)
{
	fx_t *f = *state;
	static const char csv[] = "msisdn,state\n93700000001,ASSIGNED\n";
	json_t *meta = json_pack("{s:s, s:i}", "kind", "regulator-export", "rows", 1);
	gh_archive_ref_t *r;
	assert_int_equal(gh_archive_put(f->ar, "numbering/exports/2026-10/numbers.csv", csv,
	                                sizeof(csv) - 1, T0_MS + 7 * YEAR_MS, meta, f, &r),
	                 0);
	assert_false(r->existed);
	char sha[65];
	gh_sign_sha256_hex(csv, sizeof(csv) - 1, sha);
	assert_string_equal(r->sha256, sha);
	assert_int_equal(r->size, sizeof(csv) - 1);
	assert_int_equal(r->created_ms, T0_MS);
	assert_int_equal(r->retention_until_ms, T0_MS + 7 * YEAR_MS);

	void *data;
	size_t len;
	gh_archive_ref_t *g;
	assert_int_equal(
	    gh_archive_get(f->ar, "numbering/exports/2026-10/numbers.csv", f, &data, &len, &g), 0);
	assert_int_equal(len, sizeof(csv) - 1);
	assert_memory_equal(data, csv, len);
	assert_string_equal(g->name, "numbering/exports/2026-10/numbers.csv");
	assert_true(json_equal(g->meta, meta));
	assert_int_equal(g->retention_until_ms, T0_MS + 7 * YEAR_MS);
	json_decref(meta);

	/* Stored content-addressed, read-only, name manifest beside it. */
	char *obj = gh_archive_object_path(f->ar, f, g);
	assert_string_equal(obj, apath(f, talloc_asprintf(f, "objects/%.2s/%s", sha, sha)));
	struct stat st;
	assert_int_equal(stat(obj, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0444);
	assert_int_equal(
	    stat(apath(f, "names/numbering%2Fexports%2F2026-10%2Fnumbers.csv.json"), &st), 0);
	assert_int_equal(st.st_mode & 0777, 0444);

	/* Empty content is a valid object. */
	assert_int_equal(gh_archive_put(f->ar, "empty", NULL, 0, T0_MS, NULL, f, &r), 0);
	assert_int_equal(gh_archive_get(f->ar, "empty", f, &data, &len, NULL), 0);
	assert_int_equal(len, 0);
	assert_int_equal(gh_archive_get(f->ar, "missing", f, &data, &len, NULL), -ENOENT);
	assert_int_equal(gh_archive_stat(f->ar, "missing", f, &r), -ENOENT);
}

static void test_second_write_refused_same_bytes_idempotent(void **state)
{
	fx_t *f = *state;
	gh_archive_ref_t *r1, *r2;
	assert_int_equal(
	    gh_archive_put(f->ar, "x/report.json", "{\"a\":1}", 7, T0_MS + 1000, NULL, f, &r1), 0);
	gh_clock_test_advance(f->clock, 5000);
	/* Same bytes later, with another retention and meta: success, the stored record stands. */
	json_t *meta = json_pack("{s:s}", "try", "again");
	assert_int_equal(gh_archive_put(f->ar, "x/report.json", "{\"a\":1}", 7,
	                                T0_MS + 5000 + YEAR_MS, meta, f, &r2),
	                 0);
	json_decref(meta);
	assert_true(r2->existed);
	assert_int_equal(r2->created_ms, T0_MS);
	assert_int_equal(r2->retention_until_ms, T0_MS + 1000);
	assert_int_equal(json_object_size(r2->meta), 0);
	/* Other bytes: refused, the stored bytes unchanged. */
	assert_int_equal(gh_archive_put(f->ar, "x/report.json", "{\"a\":2}", 7,
	                                T0_MS + 5000 + YEAR_MS, NULL, f, &r2),
	                 -EEXIST);
	assert_int_equal(gh_archive_put(f->ar, "x/report.json", "{\"a\":1} ", 8,
	                                T0_MS + 5000 + YEAR_MS, NULL, f, &r2),
	                 -EEXIST);
	void *data;
	size_t len;
	assert_int_equal(gh_archive_get(f->ar, "x/report.json", f, &data, &len, NULL), 0);
	assert_memory_equal(data, "{\"a\":1}", 7);
}

static void test_delete_only_after_retention(void **state)
{
	fx_t *f = *state;
	assert_int_equal(gh_archive_put(f->ar, "a", "shared", 6, T0_MS + 1000, NULL, f, NULL), 0);
	assert_int_equal(gh_archive_put(f->ar, "b", "shared", 6, T0_MS + 5000, NULL, f, NULL), 0);
	gh_archive_ref_t *r;
	assert_int_equal(gh_archive_stat(f->ar, "a", f, &r), 0);
	char *obj = gh_archive_object_path(f->ar, f, r);

	assert_int_equal(gh_archive_delete(f->ar, "a"), -EPERM);
	gh_clock_test_set(f->clock, T0_MS + 999);
	assert_int_equal(gh_archive_delete(f->ar, "a"), -EPERM);
	gh_clock_test_set(f->clock, T0_MS + 1000);
	assert_int_equal(gh_archive_delete(f->ar, "a"), 0);
	assert_int_equal(gh_archive_stat(f->ar, "a", f, &r), -ENOENT);
	assert_int_equal(gh_archive_delete(f->ar, "a"), -ENOENT);
	/* "b" still refers to the bytes: the object stays and "b" reads. */
	assert_int_equal(access(obj, F_OK), 0);
	void *data;
	size_t len;
	assert_int_equal(gh_archive_get(f->ar, "b", f, &data, &len, NULL), 0);
	assert_int_equal(gh_archive_delete(f->ar, "b"), -EPERM);
	gh_clock_test_set(f->clock, T0_MS + 5000);
	assert_int_equal(gh_archive_delete(f->ar, "b"), 0);
	assert_int_equal(access(obj, F_OK), -1); /* last reference gone: object removed */
	/* A deleted name may be written again. */
	assert_int_equal(gh_archive_put(f->ar, "a", "new", 3, T0_MS + 5000, NULL, f, NULL), 0);
}

static void test_read_detects_corruption(void **state)
{
	fx_t *f = *state;
	gh_archive_ref_t *r;
	assert_int_equal(gh_archive_put(f->ar, "c", "0123456789", 10, T0_MS, NULL, f, &r), 0);
	char *obj = gh_archive_object_path(f->ar, f, r);
	assert_int_equal(chmod(obj, 0644), 0);
	FILE *fp = fopen(obj, "r+");
	assert_non_null(fp);
	fputc('X', fp);
	fclose(fp);
	void *data;
	size_t len;
	assert_int_equal(gh_archive_get(f->ar, "c", f, &data, &len, NULL), -EBADMSG);
	/* Truncated, then missing. */
	assert_int_equal(truncate(obj, 4), 0);
	assert_int_equal(gh_archive_get(f->ar, "c", f, &data, &len, NULL), -EBADMSG);
	assert_int_equal(unlink(obj), 0);
	assert_int_equal(gh_archive_get(f->ar, "c", f, &data, &len, NULL), -EBADMSG);
	/* A damaged manifest. */
	assert_int_equal(gh_archive_put(f->ar, "d", "abc", 3, T0_MS, NULL, f, &r), 0);
	char *man = apath(f, "names/d.json");
	assert_int_equal(chmod(man, 0644), 0);
	assert_int_equal(truncate(man, 20), 0);
	assert_int_equal(gh_archive_stat(f->ar, "d", f, &r), -EBADMSG);
	assert_int_equal(gh_archive_put(f->ar, "d", "abc", 3, T0_MS, NULL, f, &r), -EBADMSG);
}

static void test_invalid_arguments(void **state)
{
	fx_t *f = *state;
	const char *bad[] = {"",     "/a",  "a/",    "a//b",        "../x", "a/./b",
	                     "a/..", "a b", "a%2Fb", "caf\xc3\xa9", NULL};
	for (int i = 0; bad[i]; i++) {
		assert_false(gh_archive_name_valid(bad[i]));
		assert_int_equal(gh_archive_put(f->ar, bad[i], "x", 1, T0_MS, NULL, f, NULL),
		                 -EINVAL);
	}
	char longname[GH_ARCHIVE_NAME_MAX + 2];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_false(gh_archive_name_valid(longname));
	longname[GH_ARCHIVE_NAME_MAX] = '\0';
	assert_true(gh_archive_name_valid(longname));
	assert_int_equal(gh_archive_put(f->ar, longname, "x", 1, T0_MS, NULL, f, NULL), 0);
	assert_true(gh_archive_name_valid("a/b.c_d-e/..x"));
	/* Retention in the past, meta not an object. */
	assert_int_equal(gh_archive_put(f->ar, "r", "x", 1, T0_MS - 1, NULL, f, NULL), -EINVAL);
	json_t *arr = json_array();
	assert_int_equal(gh_archive_put(f->ar, "r", "x", 1, T0_MS, arr, f, NULL), -EINVAL);
	json_decref(arr);
	gh_archive_t *ar;
	assert_int_equal(gh_archive_open(f, "", f->clock, &ar), -EINVAL);
	/* A file where the directory should be. */
	char *file = talloc_asprintf(f, "%s/plainfile", f->dir);
	FILE *fp = fopen(file, "w");
	fclose(fp);
	assert_int_equal(gh_archive_open(f, file, f->clock, &ar), -EINVAL);
}

/* ---- crash safety ---- */

/* Bytes of item i: a few shared contents (i % 5 == 0) so objects are reused, and sizes up to
 * ~256 KiB so kills land inside writes. */
static size_t content(unsigned i, char *buf, size_t cap)
{
	unsigned k = i % 5 == 0 ? 0 : i;
	size_t n = (k * 7919u) % (256 * 1024) + 1;
	if (n > cap)
		n = cap;
	for (size_t j = 0; j < n; j++)
		buf[j] = (char)('a' + (j + k) % 26);
	return n;
}

static void crash_child(const char *root, unsigned start)
{
	void *ctx = talloc_new(NULL);
	gh_clock_t *clk = gh_clock_test_new(ctx, T0_MS);
	gh_archive_t *ar;
	if (gh_archive_open(ctx, root, clk, &ar) != 0)
		_exit(2);
	char *buf = malloc(256 * 1024 + 1);
	for (unsigned i = start;; i++) {
		char name[32];
		snprintf(name, sizeof(name), "crash/n%u", i % 400);
		size_t n = content(i % 400, buf, 256 * 1024);
		if (gh_archive_put(ar, name, buf, n, T0_MS + YEAR_MS, NULL, ctx, NULL) != 0)
			_exit(3);
	}
}

static void check_invariants(fx_t *f, const char *root, unsigned *names_seen)
{
	gh_archive_t *ar;
	assert_int_equal(gh_archive_open(f, root, f->clock, &ar), 0);
	char *buf = talloc_size(f, 256 * 1024 + 1);
	/* Every name reads back whole and holds exactly its item's bytes. */
	char *names = talloc_asprintf(f, "%s/names", root);
	DIR *d = opendir(names);
	assert_non_null(d);
	struct dirent *e;
	unsigned seen = 0;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		unsigned i;
		assert_int_equal(sscanf(e->d_name, "crash%%2Fn%u.json", &i), 1);
		char name[32];
		snprintf(name, sizeof(name), "crash/n%u", i);
		void *data;
		size_t len;
		assert_int_equal(gh_archive_get(ar, name, f, &data, &len, NULL), 0);
		size_t n = content(i, buf, 256 * 1024);
		assert_int_equal(len, n);
		assert_memory_equal(data, buf, n);
		talloc_free(data);
		seen++;
	}
	closedir(d);
	/* Every object file is complete: its content hashes to its name; read-only. */
	char *objects = talloc_asprintf(f, "%s/objects", root);
	DIR *od = opendir(objects);
	assert_non_null(od);
	while ((e = readdir(od))) {
		if (e->d_name[0] == '.')
			continue;
		char *sub = talloc_asprintf(f, "%s/%s", objects, e->d_name);
		DIR *sd = opendir(sub);
		assert_non_null(sd);
		struct dirent *o;
		while ((o = readdir(sd))) {
			if (o->d_name[0] == '.')
				continue;
			char *p = talloc_asprintf(f, "%s/%s", sub, o->d_name);
			char sha[65];
			assert_int_equal(gh_sign_sha256_file(p, sha, NULL), 0);
			assert_string_equal(sha, o->d_name);
			struct stat st;
			assert_int_equal(stat(p, &st), 0);
			assert_int_equal(st.st_mode & 0777, 0444);
		}
		closedir(sd);
	}
	closedir(od);
	*names_seen = seen;
}

static void test_crash_at_random_points_keeps_invariants(void **state)
{
	fx_t *f = *state;
	char *root = talloc_asprintf(f, "%s/crash-archive", f->dir);
	unsigned seed = (unsigned)time(NULL);
	srand(seed);
	unsigned seen = 0, start = 0;
	for (int round = 0; round < 25; round++) {
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0)
			crash_child(root, start);
		/* A random point: 1..40 ms into the child's loop of puts. */
		struct timespec ts = {0, (long)(1 + rand() % 40) * 1000000L};
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		int st;
		assert_int_equal(waitpid(pid, &st, 0), pid);
		if (!WIFSIGNALED(st))
			fail_msg("child exited %d before the kill (seed %u)", WEXITSTATUS(st),
			         seed);
		check_invariants(f, root, &seen);
		start = seen; /* the next child re-puts known names (idempotent) and goes on */
	}
	/* The children made progress, so the kills landed among real writes. */
	assert_true(seen > 10);
}

/* ---- concurrency ---- */

typedef struct {
	gh_archive_t *ar;
	pthread_barrier_t *bar;
	const char *name;
	const char *body;
	int rc;
	bool existed;
} racer_t;

static void *racer(void *arg)
{
	racer_t *r = arg;
	void *ctx = talloc_new(NULL);
	gh_archive_ref_t *ref = NULL;
	pthread_barrier_wait(r->bar);
	r->rc = gh_archive_put(r->ar, r->name, r->body, strlen(r->body), T0_MS + YEAR_MS, NULL, ctx,
	                       &ref);
	r->existed = r->rc == 0 && ref->existed;
	talloc_free(ctx);
	return NULL;
}

static void test_concurrent_puts_one_content_wins(void **state)
{
	fx_t *f = *state;
	enum { N = 12 };
	for (int round = 0; round < 30; round++) {
		char *name = talloc_asprintf(f, "race/%d", round);
		int same = round % 3 == 0; /* every third round: all racers bring the same bytes */
		pthread_barrier_t bar;
		pthread_barrier_init(&bar, NULL, N);
		racer_t r[N];
		pthread_t th[N];
		for (int i = 0; i < N; i++) {
			r[i] =
			    (racer_t){f->ar, &bar, name, same || i % 2 ? "content A" : "content B"};
			assert_int_equal(pthread_create(&th[i], NULL, racer, &r[i]), 0);
		}
		for (int i = 0; i < N; i++)
			pthread_join(th[i], NULL);
		pthread_barrier_destroy(&bar);
		void *data;
		size_t len;
		assert_int_equal(gh_archive_get(f->ar, name, f, &data, &len, NULL), 0);
		int created = 0;
		for (int i = 0; i < N; i++) {
			int won = strlen(r[i].body) == len && memcmp(r[i].body, data, len) == 0;
			assert_int_equal(r[i].rc, won ? 0 : -EEXIST);
			created += r[i].rc == 0 && !r[i].existed;
		}
		assert_int_equal(created, 1); /* exactly one racer wrote the name */
	}
}

/* Two archive handles on one directory (as two processes would have) also agree. */
static void test_second_handle_sees_same_state(void **state)
{
	fx_t *f = *state;
	gh_archive_t *ar2;
	assert_int_equal(gh_archive_open(f, apath(f, ""), f->clock, &ar2), 0);
	assert_int_equal(gh_archive_put(f->ar, "h", "one", 3, T0_MS, NULL, f, NULL), 0);
	assert_int_equal(gh_archive_put(ar2, "h", "two", 3, T0_MS, NULL, f, NULL), -EEXIST);
	gh_archive_ref_t *r;
	assert_int_equal(gh_archive_put(ar2, "h", "one", 3, T0_MS, NULL, f, &r), 0);
	assert_true(r->existed);
}

int main(void)
{
	gh_log_init("test", GH_LOG_ERROR);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_put_get_round_trip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_second_write_refused_same_bytes_idempotent, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_delete_only_after_retention, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_read_detects_corruption, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_invalid_arguments, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_crash_at_random_points_keeps_invariants, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_concurrent_puts_one_content_wins, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_second_handle_sees_same_state, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
