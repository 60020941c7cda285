#include "numfx.h"

#include <stdlib.h>

#include "migrate.h"

int gh_test_num_db_open(void *ctx, gh_test_backend_t b, const gh_store_opts_t *opts, char **dir,
                        char **url, gh_store_t **store)
{
	*dir = gh_test_tmpdir();
	*url = gh_test_store_url(b, *dir);
	if (!*url) {
		gh_test_rmtree(*dir);
		free(*dir);
		*dir = NULL;
		return -1;
	}
	assert_int_equal(gh_store_open(ctx, *url, opts, store), 0);
	gh_err_t err = {0};
	if (gh_migrate_run(*store, "core", gh_sql_files, &err) != 0 ||
	    gh_migrate_run(*store, "numbering", gh_sql_files, &err) != 0)
		fail_msg("migrate: %s", err.message);
	return 0;
}

void gh_test_num_db_free(char *dir, char *url)
{
	if (dir && !getenv("NUM_TEST_KEEP"))
		gh_test_rmtree(dir);
	free(dir);
	free(url);
}
