/* numfx: the numbering storage tests' database: a fresh database of one backend in a new temp
 * dir with the core and numbering migrations applied, and the SQLite-then-PostgreSQL loop of
 * their cases. */
#ifndef GH_TEST_NUMFX_H
#define GH_TEST_NUMFX_H

#include "store.h"
#include "testutil.h"

/* On ctx: a new temp dir (*dir), a fresh database of backend b in it (*url; both malloc'd, for
 * gh_test_num_db_free) and the store on it (*store, opened with opts) with the core and numbering
 * migrations applied. -1 when the backend is unavailable, with *dir and *url NULL. */
int gh_test_num_db_open(void *ctx, gh_test_backend_t b, const gh_store_opts_t *opts, char **dir,
                        char **url, gh_store_t **store);
/* Remove dir (kept under NUM_TEST_KEEP) and free dir and url; NULLs are ignored. Close the
 * store (free its ctx) first. */
void gh_test_num_db_free(char *dir, char *url);

/* A cmocka case `name` running name##_on(&fx) on SQLite and then on PostgreSQL, with fx (of
 * type fx_type) opened by open_fn(&fx, backend) (< 0: backend unavailable, that run skipped)
 * and closed by close_fn(&fx). */
#define GH_TEST_NUM_BOTH(name, fx_type, open_fn, close_fn)              \
	static void name(void **state)                                  \
	{                                                               \
		(void)state;                                            \
		for (int b_ = GH_TEST_SQLITE; b_ <= GH_TEST_PG; b_++) { \
			fx_type fx;                                     \
			if (open_fn(&fx, (gh_test_backend_t)b_) < 0)    \
				continue;                               \
			name##_on(&fx);                                 \
			close_fn(&fx);                                  \
		}                                                       \
	}

#endif
