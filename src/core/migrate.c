/* migrate: forward-only migration runner over store.h (contract in migrate.h).
 *
 * Each step is one transaction that takes the migration lock, (re)reads what is applied,
 * verifies the checksums of everything applied, applies the next pending migration and records
 * it. Re-reading under the lock is what makes concurrent runners apply each migration once. */
#include <errno.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "migrate.h"

/* pg_advisory_xact_lock key of the migration runners: "ghasi-mg" */
#define MIGRATE_LOCK_KEY   0x67686173692d6d67LL
#define ACQUIRE_TIMEOUT_MS 30000
#define BUSY_ATTEMPTS      20

typedef struct mig_s {
	int version;
	const char *name;
	const char *dialect;
	const char *sql;
	char checksum[65];
} mig_t;

static void sha256_hex(const char *text, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	if (!EVP_Digest(text, strlen(text), md, &len, EVP_sha256(), NULL))
		len = 0;
	for (unsigned i = 0; i < len && i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	out[2 * (len < 32 ? len : 32)] = '\0';
}

/* "NNNN_name": version NNNN (>= 1), or 0 when malformed. */
static int name_version(const char *name)
{
	for (int i = 0; i < 4; i++)
		if (name[i] < '0' || name[i] > '9')
			return 0;
	if (name[4] != '_' || !name[5])
		return 0;
	for (const char *p = name + 5; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
			return 0;
	return (int)strtol(name, NULL, 10); /* 0 for "0000_x": numbers start at 0001 */
}

static int mig_cmp(const void *a, const void *b)
{
	const mig_t *x = a, *y = b;
	if (x->version != y->version)
		return x->version < y->version ? -1 : 1;
	/* shared file (NULL dialect) first, then by dialect name */
	if (!x->dialect || !y->dialect)
		return !x->dialect ? (!y->dialect ? 0 : -1) : 1;
	return strcmp(x->dialect, y->dialect);
}

static const char *file_label(const mig_t *m)
{
	static __thread char buf[128];
	snprintf(buf, sizeof(buf), "%s%s%s.sql", m->name, m->dialect ? "." : "",
	         m->dialect ? m->dialect : "");
	return buf;
}

/* The service's migrations for backend be, validated and in order; *out under ctx. */
static int collect(gh_store_backend_t be, const char *service, const gh_sql_file_t *files,
                   void *ctx, mig_t **out, size_t *nout, gh_err_t *err)
{
	const char *mine = be == GH_STORE_PG ? "pg" : "sqlite";
	size_t total = 0;
	for (const gh_sql_file_t *f = files; f && f->service; f++)
		total += strcmp(f->service, service) == 0;
	mig_t *all = talloc_zero_array(ctx, mig_t, total ? total : 1);
	mig_t *sel = talloc_zero_array(ctx, mig_t, total ? total : 1);
	if (!all || !sel)
		return -ENOMEM;
	size_t n = 0;
	for (const gh_sql_file_t *f = files; f && f->service; f++) {
		if (strcmp(f->service, service) != 0)
			continue;
		mig_t *m = &all[n++];
		m->name = f->name ? f->name : "";
		m->dialect = f->dialect;
		m->sql = f->sql;
		m->version = name_version(m->name);
		if (!m->version || !m->sql)
			return gh_err_set(err, GH_E_INVALID_ARGUMENT, NULL,
			                  "migrations of %s: bad migration %s (want NNNN_name, "
			                  "NNNN from 0001)",
			                  service, m->name);
		if (m->dialect && strcmp(m->dialect, "pg") != 0 &&
		    strcmp(m->dialect, "sqlite") != 0)
			return gh_err_set(err, GH_E_INVALID_ARGUMENT, NULL,
			                  "migrations of %s: %s has unknown dialect %s", service,
			                  m->name, m->dialect);
	}
	qsort(all, n, sizeof(*all), mig_cmp);
	size_t nsel = 0;
	for (size_t i = 0; i < n;) {
		size_t j = i;
		const mig_t *pick = NULL;
		for (; j < n && all[j].version == all[i].version; j++) {
			if (strcmp(all[j].name, all[i].name) != 0)
				return gh_err_set(
				    err, GH_E_INVALID_ARGUMENT, NULL,
				    "migrations of %s: duplicate number %04d (%s, %s)", service,
				    all[i].version, all[i].name, all[j].name);
			if (j > i && (!all[j - 1].dialect || !all[j].dialect ||
			              strcmp(all[j - 1].dialect, all[j].dialect) == 0)) {
				char first[128];
				snprintf(first, sizeof(first), "%s", file_label(&all[j - 1]));
				return gh_err_set(err, GH_E_INVALID_ARGUMENT, NULL,
				                  "migrations of %s: %s and %s both define %04d "
				                  "for the same backend",
				                  service, first, file_label(&all[j]),
				                  all[i].version);
			}
			if (!all[j].dialect || strcmp(all[j].dialect, mine) == 0)
				pick = &all[j];
		}
		if (!pick)
			return gh_err_set(err, GH_E_INVALID_ARGUMENT, NULL,
			                  "migrations of %s: %s has no variant for %s", service,
			                  all[i].name, mine);
		if (all[i].version != (int)nsel + 1)
			return gh_err_set(err, GH_E_INVALID_ARGUMENT, NULL,
			                  "migrations of %s: %s follows %04d (numbers must run "
			                  "from 0001 without gaps)",
			                  service, all[i].name, (int)nsel);
		sel[nsel] = *pick;
		sha256_hex(pick->sql, sel[nsel].checksum);
		nsel++;
		i = j;
	}
	talloc_free(all);
	*out = sel;
	*nout = nsel;
	return 0;
}

typedef struct applied_s {
	int version;
	char name[96];
	char checksum[65];
	char applied_at[32];
} applied_t;

/* Rows of schema_migrations for service, by version. -EINVAL when the table is missing. */
static int read_applied(gh_conn_t *c, const char *service, void *ctx, applied_t **out, size_t *n)
{
	gh_rows_t *r;
	*out = NULL;
	*n = 0;
	int rc = gh_conn_query(c,
	                       "SELECT version, name, checksum, applied_at FROM schema_migrations "
	                       "WHERE service = $1 ORDER BY version",
	                       (gh_val_t[]){GH_TEXT(service)}, 1, &r);
	if (rc < 0)
		return rc;
	size_t cap = 0;
	applied_t *a = NULL;
	while ((rc = gh_rows_next(r)) == 1) {
		if (*n == cap) {
			cap = cap ? cap * 2 : 16;
			applied_t *na = talloc_realloc(ctx, a, applied_t, cap);
			if (!na) {
				rc = -ENOMEM;
				break;
			}
			a = na;
		}
		applied_t *x = &a[(*n)++];
		x->version = (int)gh_rows_i64(r, 0);
		snprintf(x->name, sizeof(x->name), "%s", gh_rows_text(r, 1) ?: "");
		snprintf(x->checksum, sizeof(x->checksum), "%s", gh_rows_text(r, 2) ?: "");
		snprintf(x->applied_at, sizeof(x->applied_at), "%s", gh_rows_text(r, 3) ?: "");
	}
	gh_rows_close(r);
	*out = a;
	return rc < 0 ? rc : 0;
}

static const applied_t *find_applied(const applied_t *a, size_t n, int version)
{
	for (size_t i = 0; i < n; i++)
		if (a[i].version == version)
			return &a[i];
	return NULL;
}

static int refuse_changed(gh_err_t *err, const char *service, const mig_t *m, const applied_t *a)
{
	int rc = gh_err_set(err, GH_E_FAILED_PRECONDITION, NULL,
	                    "migration %s/%s was changed after it was applied (applied checksum "
	                    "%.64s, file checksum %.64s); add a new migration instead",
	                    service, m->name, a->checksum, m->checksum);
	gh_log(GH_LOG_ERROR, "migrate: applied migration changed", "migration_service", service,
	       "migration", m->name, "applied_checksum", a->checksum, "file_checksum", m->checksum,
	       NULL);
	return rc;
}

static const char *const create_table = "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                        " service TEXT NOT NULL,"
                                        " version INTEGER NOT NULL,"
                                        " name TEXT NOT NULL,"
                                        " checksum TEXT NOT NULL,"
                                        " applied_at TEXT NOT NULL,"
                                        " PRIMARY KEY (service, version))";

/* One step under the lock: verify what is applied, apply the next pending migration.
 * *done is set when nothing is pending. */
static int step(gh_conn_t *c, const char *service, const mig_t *migs, size_t n, bool *done,
                gh_err_t *err)
{
	void *tmp = talloc_new(NULL);
	applied_t *a = NULL;
	size_t na = 0;
	int rc;
	if (gh_conn_backend(c) == GH_STORE_PG &&
	    (rc = gh_conn_exec(c, "SELECT pg_advisory_xact_lock($1)",
	                       (gh_val_t[]){GH_I64(MIGRATE_LOCK_KEY)}, 1, NULL)) < 0)
		goto out;
	if ((rc = gh_conn_exec(c, create_table, NULL, 0, NULL)) < 0)
		goto out;
	if ((rc = read_applied(c, service, tmp, &a, &na)) < 0)
		goto out;
	const mig_t *next = NULL;
	for (size_t i = 0; i < n; i++) {
		const applied_t *x = find_applied(a, na, migs[i].version);
		if (x && strcmp(x->checksum, migs[i].checksum) != 0) {
			rc = refuse_changed(err, service, &migs[i], x);
			goto out;
		}
		if (!x && !next)
			next = &migs[i];
	}
	if (!next) {
		*done = true;
		goto out;
	}
	if ((rc = gh_conn_exec_script(c, next->sql)) < 0) {
		gh_err_set(err, GH_E_INTERNAL, NULL, "migration %s/%s failed: %s", service,
		           next->name, gh_conn_errmsg(c));
		gh_log(GH_LOG_ERROR, "migrate: migration failed", "migration_service", service,
		       "migration", next->name, "error", gh_conn_errmsg(c), NULL);
		goto out;
	}
	char ts[25];
	gh_time_format(gh_clock_now_ms(gh_clock_real()), ts);
	rc = gh_conn_exec(c,
	                  "INSERT INTO schema_migrations (service, version, name, checksum, "
	                  "applied_at) VALUES ($1, $2, $3, $4, $5)",
	                  (gh_val_t[]){GH_TEXT(service), GH_I64(next->version), GH_TEXT(next->name),
	                               GH_TEXT(next->checksum), GH_TEXT(ts)},
	                  5, NULL);
	if (rc == 0)
		gh_log(GH_LOG_INFO, "migrate: applied", "migration_service", service, "migration",
		       next->name, "checksum", next->checksum, NULL);
out:
	talloc_free(tmp);
	return rc;
}

static void backoff_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* What run and status start with: the service's migrations in order (talloc children of tmp)
 * and a connection (*c NULL on failure). */
static int prepare(gh_store_t *s, const char *service, const gh_sql_file_t *files, void *tmp,
                   mig_t **migs, size_t *n, gh_conn_t **c, gh_err_t *err)
{
	*c = NULL;
	int rc = collect(gh_store_backend(s), service, files, tmp, migs, n, err);
	if (rc < 0)
		return rc;
	if ((rc = gh_store_acquire(s, ACQUIRE_TIMEOUT_MS, c)) < 0)
		gh_err_set(err, GH_E_UNAVAILABLE, NULL, "migrations of %s: database unavailable",
		           service);
	return rc;
}

int gh_migrate_run(gh_store_t *s, const char *service, const gh_sql_file_t *files, gh_err_t *err)
{
	void *tmp = talloc_new(NULL);
	mig_t *migs = NULL;
	size_t n = 0;
	gh_conn_t *c = NULL;
	int rc = prepare(s, service, files, tmp, &migs, &n, &c, err);
	if (rc < 0)
		goto out;
	bool done = false;
	int busy = 0;
	while (!done) {
		rc = gh_conn_begin(c, GH_TX_WRITE);
		if (rc == 0)
			rc = step(c, service, migs, n, &done, err);
		if (rc == 0)
			rc = gh_conn_commit(c);
		if (rc == 0) {
			busy = 0;
			continue;
		}
		if (gh_conn_in_tx(c))
			gh_conn_rollback(c);
		/* another runner holds the lock past busy_timeout, or a serialization failure */
		if (rc == -EAGAIN && ++busy < BUSY_ATTEMPTS) {
			done = false;
			backoff_ms(10 * busy);
			continue;
		}
		if (err && err->code == GH_OK)
			gh_err_set(err, GH_E_INTERNAL, NULL, "migrations of %s: %s", service,
			           gh_conn_errmsg(c));
		break;
	}
out:
	gh_store_release(c);
	talloc_free(tmp);
	return rc;
}

int gh_migrate_status(gh_store_t *s, const char *service, const gh_sql_file_t *files, void *ctx,
                      gh_migration_t **out, size_t *nout, gh_err_t *err)
{
	void *tmp = talloc_new(NULL);
	mig_t *migs = NULL;
	size_t n = 0;
	applied_t *a = NULL;
	size_t na = 0;
	gh_conn_t *c = NULL;
	*out = NULL;
	*nout = 0;
	int rc = prepare(s, service, files, tmp, &migs, &n, &c, err);
	if (rc < 0)
		goto out;
	/* a database never migrated has no table: everything is pending */
	rc = read_applied(c, service, tmp, &a, &na);
	if (rc == -EINVAL) {
		na = 0;
		rc = 0;
	}
	if (rc < 0) {
		gh_err_set(err, GH_E_INTERNAL, NULL, "migrations of %s: %s", service,
		           gh_conn_errmsg(c));
		goto out;
	}
	gh_migration_t *m = talloc_zero_array(ctx, gh_migration_t, n ? n : 1);
	if (!m) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		m[i].version = migs[i].version;
		snprintf(m[i].name, sizeof(m[i].name), "%s", migs[i].name);
		memcpy(m[i].checksum, migs[i].checksum, sizeof(m[i].checksum));
		const applied_t *x = find_applied(a, na, migs[i].version);
		if (x) {
			m[i].applied = 1;
			m[i].changed = strcmp(x->checksum, migs[i].checksum) != 0;
			snprintf(m[i].applied_at, sizeof(m[i].applied_at), "%s", x->applied_at);
		}
	}
	*out = m;
	*nout = n;
out:
	gh_store_release(c);
	talloc_free(tmp);
	return rc;
}
