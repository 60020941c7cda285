/* lease: one holder at a time, expiry hands over, release, on SQLite and PostgreSQL. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>

#include "lease.h"
#include "store.h"
#include "storefx.h"
#include "testutil.h"

static void test_one_holder_then_expiry_hands_over(void **state)
{
	for (int b = GH_TEST_SQLITE; b <= GH_TEST_PG; b++) {
		void *ctx = talloc_new(NULL);
		char *dir = gh_test_tmpdir();
		gh_store_t *s = gh_test_store_open_core(ctx, (gh_test_backend_t)b, dir, NULL);
		if (s) {
			assert_int_equal(gh_lease_try(s, "job:x", "A", 1000, 500), 0);
			assert_int_equal(gh_lease_try(s, "job:x", "B", 1200, 500), -EBUSY);
			/* the holder renews */
			assert_int_equal(gh_lease_try(s, "job:x", "A", 1400, 500), 0);
			assert_int_equal(gh_lease_try(s, "job:x", "B", 1800, 500), -EBUSY);
			/* expired at 1900: B takes it, A cannot renew */
			assert_int_equal(gh_lease_try(s, "job:x", "B", 1900, 500), 0);
			assert_int_equal(gh_lease_try(s, "job:x", "A", 2000, 500), -EBUSY);
			/* another name is independent */
			assert_int_equal(gh_lease_try(s, "job:y", "A", 2000, 500), 0);
			/* only the holder releases */
			assert_int_equal(gh_lease_release(s, "job:x", "A"), 0);
			assert_int_equal(gh_lease_try(s, "job:x", "A", 2100, 500), -EBUSY);
			assert_int_equal(gh_lease_release(s, "job:x", "B"), 0);
			assert_int_equal(gh_lease_try(s, "job:x", "A", 2100, 500), 0);
			gh_lease_ctx_t lc = {s, "A"};
			assert_int_equal(gh_lease_sched_hook(&lc, "daily", 2100, 500), 0);
			lc.holder = "B";
			assert_int_equal(gh_lease_sched_hook(&lc, "daily", 2200, 500), -EBUSY);
		}
		talloc_free(ctx);
		gh_test_rmtree(dir);
		free(dir);
	}
}

typedef struct {
	gh_store_t *s;
	char holder[8];
	int got;
} racer_t;

static void *race(void *p)
{
	racer_t *r = p;
	r->got = gh_lease_try(r->s, "job:race", r->holder, 5000, 60000) == 0;
	return NULL;
}

static void test_racing_replicas_one_winner(void **state)
{
	for (int b = GH_TEST_SQLITE; b <= GH_TEST_PG; b++) {
		void *ctx = talloc_new(NULL);
		char *dir = gh_test_tmpdir();
		gh_store_t *s = gh_test_store_open_core(ctx, (gh_test_backend_t)b, dir, NULL);
		if (s) {
			pthread_t th[8];
			racer_t r[8];
			for (int i = 0; i < 8; i++) {
				r[i] = (racer_t){.s = s};
				snprintf(r[i].holder, sizeof(r[i].holder), "h%d", i);
				pthread_create(&th[i], NULL, race, &r[i]);
			}
			int winners = 0;
			for (int i = 0; i < 8; i++) {
				pthread_join(th[i], NULL);
				winners += r[i].got;
			}
			assert_int_equal(winners, 1);
		}
		talloc_free(ctx);
		gh_test_rmtree(dir);
		free(dir);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_one_holder_then_expiry_hands_over),
	    cmocka_unit_test(test_racing_replicas_one_winner),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
