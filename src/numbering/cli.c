/* cli: the numbering command line. See cli.h. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <talloc.h>
#include <unistd.h>

#include "export.h"
#include "import.h"

#define SIG_MAX (64 * 1024)

enum { EXIT_FAIL = 1, EXIT_USAGE = 2, EXIT_PARTIAL = 3, EXIT_REJECTED = 4 };

static int usage(FILE *f)
{
	fprintf(f, "usage: ghasi [--config FILE] numbering <verb> ...\n"
	           "verbs:\n"
	           "  import --csv FILE --sig FILE --operator ID [--contract ID]\n"
	           "         import a signed MNO CSV; prints the batch; exit 0 ACCEPTED,\n"
	           "         3 PARTIAL, 4 REJECTED, 1 failure\n"
	           "  verify-export --key PUB.pem FILE\n"
	           "         check a regulator export against its manifest and signature\n");
	return f == stderr ? EXIT_USAGE : 0;
}

/* A whole small file into a talloc buffer of ctx. 0 or negative errno. */
static int read_small(void *ctx, const char *path, size_t max, char **out, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	char *buf = talloc_size(ctx, max + 1);
	size_t n = 0;
	int rc = buf ? 0 : -ENOMEM;
	while (rc == 0) {
		ssize_t r = read(fd, buf + n, max + 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			rc = -errno;
		else if (r == 0)
			break;
		else if ((n += (size_t)r) > max)
			rc = -EFBIG;
	}
	close(fd);
	if (rc < 0) {
		talloc_free(buf);
		return rc;
	}
	*out = buf;
	*len = n;
	return 0;
}

/* The CSV mapped read-only: a million-row file costs page cache, not heap, and the bytes the
 * signature is verified over are the bytes parsed. The file must not be truncated meanwhile. */
typedef struct map_s {
	void *p;
	size_t len;
} map_t;

static int map_destroy(map_t *m)
{
	if (m->p && m->len)
		munmap(m->p, m->len);
	return 0;
}

static int map_file(void *ctx, const char *path, map_t **out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	int rc = fstat(fd, &st) < 0 ? -errno : S_ISREG(st.st_mode) ? 0 : -EINVAL;
	map_t *m = rc == 0 ? talloc_zero(ctx, map_t) : NULL;
	if (rc == 0 && !m)
		rc = -ENOMEM;
	if (rc == 0 && st.st_size > 0) {
		void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (p == MAP_FAILED) {
			rc = -errno;
		} else {
			m->p = p;
			m->len = (size_t)st.st_size;
			madvise(p, m->len, MADV_SEQUENTIAL);
		}
	}
	close(fd);
	if (rc < 0) {
		talloc_free(m);
		return rc;
	}
	talloc_set_destructor(m, map_destroy);
	*out = m;
	return 0;
}

static const char *actor(void *ctx)
{
	const char *u = getenv("SUDO_USER");
	if (!u || !*u)
		u = getenv("USER");
	char clean[64];
	size_t n = 0;
	for (; u && *u && n + 1 < sizeof clean; u++)
		clean[n++] = ((*u >= 'a' && *u <= 'z') || (*u >= 'A' && *u <= 'Z') ||
		              (*u >= '0' && *u <= '9') || *u == '.' || *u == '_' || *u == '-')
		                 ? *u
		                 : '_';
	clean[n] = '\0';
	return talloc_asprintf(ctx, "cli:%s", n ? clean : "unknown");
}

static int cmd_import(void *ctx, const gh_config_t *cfg, int argc, char **argv)
{
	const char *csv = NULL, *sig = NULL, *op = NULL, *contract = NULL;
	for (int i = 1; i < argc; i++) {
		const char **dst = strcmp(argv[i], "--csv") == 0        ? &csv
		                   : strcmp(argv[i], "--sig") == 0      ? &sig
		                   : strcmp(argv[i], "--operator") == 0 ? &op
		                   : strcmp(argv[i], "--contract") == 0 ? &contract
		                                                        : NULL;
		if (!dst || i + 1 >= argc || *dst) {
			fprintf(stderr, "ghasi numbering import: unexpected argument '%s'\n",
			        argv[i]);
			return usage(stderr);
		}
		*dst = argv[++i];
	}
	if (!csv || !sig || !op) {
		fprintf(stderr,
		        "ghasi numbering import: --csv, --sig and --operator are required\n");
		return usage(stderr);
	}
	map_t *m = NULL;
	char *sigbuf = NULL;
	size_t siglen = 0;
	int rc = map_file(ctx, csv, &m);
	if (rc < 0) {
		fprintf(stderr, "ghasi numbering import: %s: %s\n", csv, strerror(-rc));
		return EXIT_FAIL;
	}
	if ((rc = read_small(ctx, sig, SIG_MAX, &sigbuf, &siglen)) < 0) {
		fprintf(stderr, "ghasi numbering import: %s: %s\n", sig, strerror(-rc));
		return EXIT_FAIL;
	}
	gh_store_opts_t so = {.pool_size = 2,
	                      .busy_timeout_ms = (int)cfg->store.busy_timeout_ms,
	                      .sync_full = cfg->store.synchronous == GH_SYNC_FULL};
	gh_store_t *store;
	gh_err_t err = {0};
	if ((rc = gh_store_open(ctx, cfg->store.url, &so, &store)) < 0) {
		fprintf(stderr, "ghasi numbering import: cannot open the store: %s\n",
		        strerror(-rc));
		return EXIT_FAIL;
	}
	/* the same forward-only migrations `ghasi serve` and `ghasi migrate` apply */
	if ((rc = gh_migrate_run(store, "core", gh_sql_files, &err)) < 0 ||
	    (rc = gh_migrate_run(store, "numbering", gh_sql_files, &err)) < 0) {
		fprintf(stderr, "ghasi numbering import: migrations: %s\n", err.message);
		gh_err_clear(&err);
		return EXIT_FAIL;
	}
	num_import_req_t q = {.operator_id = op,
	                      .contract_id = contract,
	                      .data = m->p ? m->p : "",
	                      .len = m->len,
	                      .sig = sigbuf,
	                      .sig_len = siglen,
	                      .file_name = strrchr(csv, '/') ? strrchr(csv, '/') + 1 : csv,
	                      .actor = actor(ctx),
	                      .now_ms = gh_clock_now_ms(gh_clock_real())};
	json_t *batch;
	num_import_status_t st;
	if ((rc = num_import_run(store, NULL, &q, &batch, &st, NULL, &err)) < 0) {
		fprintf(stderr, "ghasi numbering import: %s: %s\n", gh_code_name(err.code),
		        err.message);
		gh_err_clear(&err);
		return EXIT_FAIL;
	}
	char *out = json_dumps(batch, JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(batch);
	if (!out)
		return EXIT_FAIL;
	puts(out);
	free(out);
	fflush(stdout);
	return st == NUM_IMPORT_ACCEPTED  ? 0
	       : st == NUM_IMPORT_PARTIAL ? EXIT_PARTIAL
	                                  : EXIT_REJECTED;
}

int num_cli_main(void *ctx, const gh_config_t *cfg, int argc, char **argv)
{
	if (argc < 1)
		return usage(stderr);
	if (strcmp(argv[0], "-h") == 0 || strcmp(argv[0], "--help") == 0)
		return usage(stdout);
	void *tmp = talloc_new(ctx);
	int rc;
	if (strcmp(argv[0], "import") == 0) {
		rc = cmd_import(tmp, cfg, argc, argv);
	} else if (strcmp(argv[0], "verify-export") == 0) {
		rc = num_export_cli_verify(argc, argv);
	} else {
		fprintf(stderr, "ghasi numbering: unknown verb '%s'\n", argv[0]);
		rc = usage(stderr);
	}
	talloc_free(tmp);
	return rc;
}
