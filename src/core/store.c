/* store: URL parsing, the connection pool, the per-connection statement cache, the transaction
 * retry helper and the dispatch to the SQLite and PostgreSQL backends (store_sqlite.c,
 * store_pg.c). Contracts are in store.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "store_impl.h"

const char *const gh_store_backend_names[] = {"sqlite", "pg"};

/* ---- statement cache ---- */

static uint64_t stmt_hash(const char *sql, const char *sig)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (const unsigned char *p = (const unsigned char *)sql; *p; p++)
		h = (h ^ *p) * 1099511628211ULL;
	h = (h ^ 0xff) * 1099511628211ULL;
	for (const unsigned char *p = (const unsigned char *)sig; *p; p++)
		h = (h ^ *p) * 1099511628211ULL;
	return h;
}

gh__stmt_t *gh__stmt_lookup(gh_conn_t *c, const char *sql, const char *sig)
{
	uint64_t h = stmt_hash(sql, sig);
	for (gh__stmt_t *st = c->buckets[h % GH__STMT_BUCKETS]; st; st = st->next)
		if (st->hash == h && strcmp(st->sql, sql) == 0 && strcmp(st->sig, sig) == 0)
			return st;
	return NULL;
}

gh__stmt_t *gh__stmt_new(gh_conn_t *c, const char *sql, const char *sig)
{
	gh__stmt_t *st = talloc_zero(c->stmt_ctx, gh__stmt_t);
	if (!st)
		return NULL;
	st->sql = talloc_strdup(st, sql);
	st->sig = talloc_strdup(st, sig);
	if (!st->sql || !st->sig) {
		talloc_free(st);
		return NULL;
	}
	st->hash = stmt_hash(sql, sig);
	return st;
}

bool gh__stmt_add(gh_conn_t *c, gh__stmt_t *st)
{
	if (c->nstmt >= GH__STMT_MAX)
		return false;
	gh__stmt_t **b = &c->buckets[st->hash % GH__STMT_BUCKETS];
	st->next = *b;
	*b = st;
	c->nstmt++;
	return true;
}

void gh__stmt_clear(gh_conn_t *c)
{
	talloc_free_children(c->stmt_ctx);
	memset(c->buckets, 0, sizeof(c->buckets));
	c->nstmt = 0;
}

void gh__conn_seterr(gh_conn_t *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->errmsg, sizeof(c->errmsg), fmt, ap);
	va_end(ap);
	/* libpq messages end in a newline; log lines should not */
	size_t n = strlen(c->errmsg);
	while (n > 0 && (c->errmsg[n - 1] == '\n' || c->errmsg[n - 1] == ' '))
		c->errmsg[--n] = '\0';
}

/* ---- pool ---- */

/* The transaction ended (commit, rollback, lost connection): its commit work goes. */
static void tx_end(gh_conn_t *c)
{
	c->nhooks = 0;
	c->ended_by_hook = false;
	c->later = NULL;
	c->later_tail = NULL;
	TALLOC_FREE(c->tx_ctx);
}

static void conn_close_handle(gh_conn_t *c)
{
	tx_end(c);
	c->pending_begin = NULL;
	if (!c->open)
		return;
	talloc_free_children(c->rows_ctx);
	gh__stmt_clear(c);
	c->store->be->disconnect(c);
	c->open = false;
	c->broken = false;
}

static int conn_destructor(gh_conn_t *c)
{
	conn_close_handle(c);
	return 0;
}

static gh_conn_t *conn_new(gh_store_t *s)
{
	gh_conn_t *c = talloc_zero(s, gh_conn_t);
	if (!c)
		return NULL;
	c->store = s;
	c->stmt_ctx = talloc_new(c);
	c->rows_ctx = talloc_new(c);
	if (!c->stmt_ctx || !c->rows_ctx) {
		talloc_free(c);
		return NULL;
	}
	talloc_set_destructor(c, conn_destructor);
	return c;
}

static int conn_open(gh_conn_t *c)
{
	c->errmsg[0] = '\0';
	int rc = c->store->be->connect(c);
	if (rc == 0)
		c->open = true;
	return rc;
}

static int store_destructor(gh_store_t *s)
{
	/* connections are talloc children and close in their own destructors */
	for (unsigned i = 0; i < s->nconns; i++)
		talloc_free(s->conns[i]);
	s->nconns = 0;
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	return 0;
}

static int parse_url(gh_store_t *s, const char *url)
{
	static unsigned mem_seq;
	if (strcmp(url, "sqlite::memory:") == 0) {
		/* memdb VFS: a named in-memory database shared by the store's connections, with
		 * real locking (a plain ":memory:" would give each connection its own database) */
		unsigned seq = __atomic_add_fetch(&mem_seq, 1, __ATOMIC_RELAXED);
		s->be = &gh__store_sqlite;
		s->url = talloc_asprintf(s, "file:/ghasi-mem-%d-%u?vfs=memdb", (int)getpid(), seq);
	} else if (strncmp(url, "sqlite://", 9) == 0 && url[9]) {
		s->be = &gh__store_sqlite;
		s->url = talloc_strdup(s, url + 9);
	} else if (strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0) {
		s->be = &gh__store_pg;
		s->url = talloc_strdup(s, url);
	} else {
		return -EINVAL;
	}
	return s->url ? 0 : -ENOMEM;
}

int gh_store_open(void *ctx, const char *url, const gh_store_opts_t *opts, gh_store_t **out)
{
	*out = NULL;
	if (!url)
		return -EINVAL;
	gh_store_t *s = talloc_zero(ctx, gh_store_t);
	if (!s)
		return -ENOMEM;
	if (opts)
		s->opts = *opts;
	if (s->opts.pool_size == 0)
		s->opts.pool_size = 8;
	if (s->opts.busy_timeout_ms <= 0)
		s->opts.busy_timeout_ms = 5000;
	if (s->opts.connect_timeout_s <= 0)
		s->opts.connect_timeout_s = 5;
	int rc = parse_url(s, url);
	if (rc < 0) {
		gh_log(GH_LOG_ERROR,
		       "store: unsupported database URL (want sqlite://, "
		       "sqlite::memory:, postgresql://)",
		       NULL);
		talloc_free(s);
		return rc;
	}
	s->conns = talloc_zero_array(s, gh_conn_t *, s->opts.pool_size);
	if (!s->conns) {
		talloc_free(s);
		return -ENOMEM;
	}
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&s->mu, NULL);
	talloc_set_destructor(s, store_destructor);

	gh_conn_t *c = conn_new(s);
	if (!c) {
		talloc_free(s);
		return -ENOMEM;
	}
	s->conns[s->nconns++] = c;
	rc = conn_open(c);
	if (rc < 0) {
		gh_log(GH_LOG_ERROR, "store: cannot open database", "backend",
		       gh_store_backend_names[s->be->kind], "error", c->errmsg, NULL);
		talloc_free(s);
		return rc;
	}
	s->idle = c;
	*out = s;
	return 0;
}

void gh_store_close(gh_store_t *s) { talloc_free(s); }

gh_store_backend_t gh_store_backend(const gh_store_t *s) { return s->be->kind; }

int gh_store_acquire(gh_store_t *s, int timeout_ms, gh_conn_t **out)
{
	*out = NULL;
	struct timespec deadline;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	if (timeout_ms > 0) {
		deadline.tv_sec += timeout_ms / 1000;
		deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
		if (deadline.tv_nsec >= 1000000000L) {
			deadline.tv_sec++;
			deadline.tv_nsec -= 1000000000L;
		}
	}
	gh_conn_t *c = NULL;
	pthread_mutex_lock(&s->mu);
	for (;;) {
		if (s->idle) {
			c = s->idle;
			s->idle = c->next_idle;
			break;
		}
		if (s->nconns < s->opts.pool_size) {
			c = conn_new(s);
			if (!c) {
				pthread_mutex_unlock(&s->mu);
				return -ENOMEM;
			}
			s->conns[s->nconns++] = c;
			break;
		}
		int w = timeout_ms < 0 ? pthread_cond_wait(&s->cv, &s->mu)
		                       : pthread_cond_timedwait(&s->cv, &s->mu, &deadline);
		if (w == ETIMEDOUT && !s->idle) {
			pthread_mutex_unlock(&s->mu);
			return -ETIMEDOUT;
		}
	}
	c->next_idle = NULL;
	c->checked_out = true;
	pthread_mutex_unlock(&s->mu);

	/* connect outside the lock: it may take up to connect_timeout */
	if (c->open && (c->broken || !s->be->alive(c))) {
		gh_log(GH_LOG_WARN, "store: connection lost, reconnecting", "backend",
		       gh_store_backend_names[s->be->kind], NULL);
		conn_close_handle(c);
	}
	if (!c->open) {
		int rc = conn_open(c);
		if (rc < 0) {
			gh_log(GH_LOG_ERROR, "store: cannot connect", "backend",
			       gh_store_backend_names[s->be->kind], "error", c->errmsg, NULL);
			gh_store_release(c);
			return rc;
		}
	}
	c->errmsg[0] = '\0';
	*out = c;
	return 0;
}

void gh_store_release(gh_conn_t *c)
{
	if (!c)
		return;
	gh_store_t *s = c->store;
	talloc_free_children(c->rows_ctx);
	if (c->open && !c->broken && s->be->in_tx(c)) {
		if (s->be->rollback(c) < 0)
			c->broken = true;
	}
	tx_end(c);
	pthread_mutex_lock(&s->mu);
	c->checked_out = false;
	c->next_idle = s->idle;
	s->idle = c;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

int gh_store_ping(gh_store_t *s, int timeout_ms)
{
	gh_conn_t *c;
	int rc = gh_store_acquire(s, timeout_ms, &c);
	if (rc < 0)
		return rc;
	gh_rows_t *r;
	rc = gh_conn_query_one(c, "SELECT 1", NULL, 0, &r);
	if (rc == 0) {
		rc = gh_rows_i64(r, 0) == 1 ? 0 : -EIO;
		gh_rows_close(r);
	}
	gh_store_release(c);
	return rc;
}

/* ---- dispatch ---- */

gh_store_backend_t gh_conn_backend(const gh_conn_t *c) { return c->store->be->kind; }
gh_store_t *gh_conn_store(const gh_conn_t *c) { return c->store; }
const char *gh_conn_errmsg(const gh_conn_t *c) { return c->errmsg; }

const char *gh_conn_server_param(const gh_conn_t *c, const char *name)
{
	if (!c || !c->open || c->broken || c->store->be->kind != GH_STORE_PG)
		return NULL;
	return gh__pg_param(c, name);
}

static int conn_usable(gh_conn_t *c, const gh_val_t *params, int nparams)
{
	if (!c->open || c->broken) {
		gh__conn_seterr(c, "connection lost");
		return -EIO;
	}
	if (nparams < 0 || (nparams > 0 && !params)) {
		gh__conn_seterr(c, "bad parameter array");
		return -EINVAL;
	}
	c->errmsg[0] = '\0';
	return 0;
}

int gh_conn_exec(gh_conn_t *c, const char *sql, const gh_val_t *params, int nparams,
                 int64_t *rows_affected)
{
	int64_t dummy;
	if (!rows_affected)
		rows_affected = &dummy;
	*rows_affected = 0;
	int rc = conn_usable(c, params, nparams);
	return rc < 0 ? rc : c->store->be->exec(c, sql, params, nparams, rows_affected);
}

int gh_conn_exec_batch(gh_conn_t *c, const char *sql, const gh_val_t *params, int nparams,
                       size_t nrows, int64_t *rows_affected)
{
	int64_t dummy;
	if (!rows_affected)
		rows_affected = &dummy;
	*rows_affected = 0;
	int rc = conn_usable(c, params, nparams);
	if (rc < 0 || nrows == 0)
		return rc;
	if (nparams == 0) {
		gh__conn_seterr(c, "a batch needs parameters");
		return -EINVAL;
	}
	bool own_tx = !c->store->be->in_tx(c);
	if (own_tx && (rc = gh_conn_begin(c, GH_TX_WRITE)) < 0)
		return rc;
	rc = c->store->be->exec_batch(c, sql, params, nparams, nrows, rows_affected);
	if (own_tx) {
		if (rc == 0) {
			rc = gh_conn_commit(c);
		} else {
			char keep[sizeof(c->errmsg)];
			memcpy(keep, c->errmsg, sizeof(keep));
			gh_conn_rollback(c);
			memcpy(c->errmsg, keep, sizeof(keep));
		}
	}
	if (rc < 0)
		*rows_affected = 0;
	return rc;
}

int gh_conn_exec_script(gh_conn_t *c, const char *sql)
{
	int rc = conn_usable(c, NULL, 0);
	return rc < 0 ? rc : c->store->be->exec_script(c, sql);
}

static int rows_destructor(gh_rows_t *r)
{
	r->conn->store->be->rows_free(r);
	return 0;
}

int gh_conn_query(gh_conn_t *c, const char *sql, const gh_val_t *params, int nparams,
                  gh_rows_t **out)
{
	*out = NULL;
	int rc = conn_usable(c, params, nparams);
	if (rc < 0)
		return rc;
	gh_rows_t *r = talloc_zero(c->rows_ctx, gh_rows_t);
	if (!r)
		return -ENOMEM;
	r->conn = c;
	rc = c->store->be->query(c, sql, params, nparams, r);
	if (rc < 0) {
		talloc_free(r); /* no destructor yet: the backend cleaned up */
		return rc;
	}
	talloc_set_destructor(r, rows_destructor);
	*out = r;
	return 0;
}

int gh_conn_query_one(gh_conn_t *c, const char *sql, const gh_val_t *params, int nparams,
                      gh_rows_t **out)
{
	int rc = gh_conn_query(c, sql, params, nparams, out);
	if (rc < 0)
		return rc;
	rc = gh_rows_next(*out);
	if (rc == 1)
		return 0;
	gh_rows_close(*out);
	*out = NULL;
	return rc == 0 ? -ENOENT : rc;
}

int gh_rows_next(gh_rows_t *r)
{
	if (r->done)
		return 0;
	int rc = r->conn->store->be->rows_next(r);
	if (rc <= 0)
		r->done = true;
	return rc;
}
int gh_rows_ncols(const gh_rows_t *r) { return r->conn->store->be->ncols(r); }

static bool col_ok(const gh_rows_t *r, int col)
{
	return col >= 0 && col < r->conn->store->be->ncols(r);
}

const char *gh_rows_colname(const gh_rows_t *r, int col)
{
	return col_ok(r, col) ? r->conn->store->be->colname(r, col) : NULL;
}

int gh_rows_isnull(gh_rows_t *r, int col)
{
	return !col_ok(r, col) || r->conn->store->be->isnull(r, col);
}

int64_t gh_rows_i64(gh_rows_t *r, int col)
{
	return gh_rows_isnull(r, col) ? 0 : r->conn->store->be->i64(r, col);
}

double gh_rows_double(gh_rows_t *r, int col)
{
	return gh_rows_isnull(r, col) ? 0.0 : r->conn->store->be->dbl(r, col);
}

const char *gh_rows_text(gh_rows_t *r, int col)
{
	return gh_rows_isnull(r, col) ? NULL : r->conn->store->be->text(r, col);
}

const void *gh_rows_blob(gh_rows_t *r, int col, size_t *n)
{
	*n = 0;
	return gh_rows_isnull(r, col) ? NULL : r->conn->store->be->blob(r, col, n);
}

void gh_rows_close(gh_rows_t *r) { talloc_free(r); }

/* ---- transactions ---- */

int gh_conn_begin(gh_conn_t *c, int flags)
{
	int rc = conn_usable(c, NULL, 0);
	tx_end(c);
	return rc < 0 ? rc : c->store->be->begin(c, flags);
}

/* The open transaction's memory (freed by tx_end), created on first use; NULL on ENOMEM. */
static void *tx_ctx(gh_conn_t *c)
{
	if (!c->tx_ctx)
		c->tx_ctx = talloc_new(c);
	return c->tx_ctx;
}

void *gh_conn_commit_data(gh_conn_t *c, gh_commit_hook_fn fn, size_t size)
{
	if (!c->open || c->broken || !c->store->be->in_tx(c))
		return NULL;
	for (int i = 0; i < c->nhooks; i++)
		if (c->hooks[i].fn == fn)
			return c->hooks[i].data;
	if (size == 0 || c->nhooks == GH__HOOKS_MAX)
		return NULL;
	void *data = tx_ctx(c) ? talloc_zero_size(c->tx_ctx, size) : NULL;
	if (!data)
		return NULL;
	c->hooks[c->nhooks].fn = fn;
	c->hooks[c->nhooks].data = data;
	c->nhooks++;
	return data;
}

int gh_conn_exec_deferred(gh_conn_t *c, const char *sql, const gh_val_t *params, int nparams)
{
	int rc = conn_usable(c, params, nparams);
	if (rc < 0)
		return rc;
	if (!c->store->be->in_tx(c))
		return -EINVAL;
	if (!c->store->be->exec_later)
		return c->store->be->exec(c, sql, params, nparams, &(int64_t){0});
	return tx_ctx(c) ? c->store->be->exec_later(c, sql, params, nparams) : -ENOMEM;
}

int gh_conn_exec_commit(gh_conn_t *c, const char *sql, const gh_val_t *params, int nparams,
                        int64_t *rows_affected)
{
	int64_t n = 0;
	int rc = conn_usable(c, params, nparams);
	if (rc < 0)
		return rc;
	if (!c->store->be->in_tx(c))
		return -EINVAL;
	if (c->store->be->exec_commit) {
		rc = c->store->be->exec_commit(c, sql, params, nparams, &n);
	} else {
		rc = c->store->be->exec(c, sql, params, nparams, &n);
		if (rc == 0)
			rc = c->store->be->commit(c);
	}
	if (rc == 0) {
		c->ended_by_hook = true;
		if (rows_affected)
			*rows_affected = n;
	}
	return rc;
}

int gh_conn_commit(gh_conn_t *c)
{
	int rc = conn_usable(c, NULL, 0);
	if (rc < 0)
		return rc;
	/* Commit work first, in registration order; only the last may end the transaction
	 * itself (gh_conn_exec_commit). A failure leaves the transaction open to roll back. */
	for (int i = 0; i < c->nhooks && rc == 0; i++) {
		if (c->ended_by_hook) {
			gh__conn_seterr(c, "commit work after the transaction was committed");
			rc = -EINVAL;
			break;
		}
		rc = c->hooks[i].fn(c, c->hooks[i].data, i == c->nhooks - 1);
	}
	if (rc < 0)
		return rc;
	if (!c->ended_by_hook)
		rc = c->store->be->commit(c);
	tx_end(c);
	return rc;
}

int gh_conn_rollback(gh_conn_t *c)
{
	int rc = conn_usable(c, NULL, 0);
	tx_end(c);
	return rc < 0 ? rc : c->store->be->rollback(c);
}

int gh_conn_in_tx(const gh_conn_t *c) { return c->open && !c->broken && c->store->be->in_tx(c); }

/* Jittered exponential backoff: up to 0.2 ms << attempt, capped at 20 ms. */
static void tx_backoff(unsigned attempt, unsigned *seed)
{
	long cap_us = 200L << (attempt < 7 ? attempt : 7);
	if (cap_us > 20000)
		cap_us = 20000;
	long us = 1 + (long)(rand_r(seed) % cap_us);
	struct timespec ts = {.tv_sec = 0, .tv_nsec = us * 1000L};
	nanosleep(&ts, NULL);
}

int gh_store_tx(gh_store_t *s, gh_tx_fn fn, void *ud, const gh_tx_opts_t *opts)
{
	gh_tx_opts_t o = opts ? *opts : (gh_tx_opts_t){0};
	if (o.max_attempts == 0)
		o.max_attempts = 10;
	if (o.acquire_timeout_ms == 0)
		o.acquire_timeout_ms = 5000;
	gh_conn_t *c;
	int rc = gh_store_acquire(s, o.acquire_timeout_ms, &c);
	if (rc < 0)
		return rc;
	unsigned seed = (unsigned)(uintptr_t)&o ^ (unsigned)time(NULL);
	for (unsigned attempt = 0; attempt < o.max_attempts; attempt++) {
		if (attempt > 0)
			tx_backoff(attempt, &seed);
		rc = gh_conn_begin(c, o.flags);
		if (rc < 0)
			break;
		rc = fn(c, ud);
		if (rc == 0)
			rc = gh_conn_commit(c);
		if (rc == 0)
			break;
		if (gh_conn_in_tx(c)) {
			char keep[sizeof(c->errmsg)];
			memcpy(keep, c->errmsg, sizeof(keep));
			gh_conn_rollback(c);
			memcpy(c->errmsg, keep, sizeof(keep));
		}
		if (rc != -EAGAIN)
			break;
	}
	if (rc < 0 && rc != -EAGAIN && c->errmsg[0])
		gh_log(GH_LOG_DEBUG, "store: transaction failed", "error", c->errmsg, NULL);
	gh_store_release(c);
	return rc;
}
