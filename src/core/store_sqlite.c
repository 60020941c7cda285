/* store_sqlite: the SQLite backend of store.h (embedded profile).
 *
 * Each pooled connection is its own sqlite3 handle in WAL mode, so readers never block the
 * writer; writers serialise on BEGIN IMMEDIATE and wait up to busy_timeout for the lock.
 * The $1..$n placeholders of our SQL are SQLite named parameters "$1".."$n"; SQLite numbers
 * named parameters in order of first appearance, so each prepared statement keeps a map from
 * its parameter slots to our parameter numbers. */
#include <errno.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <talloc.h>

#include "store_impl.h"

static int lite_err(gh_conn_t *c, int rc)
{
	gh__conn_seterr(c, "%s", c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
	switch (rc & 0xff) {
	case SQLITE_CONSTRAINT:
		return rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY
		           ? -EEXIST
		           : -EINVAL;
	case SQLITE_BUSY:
	case SQLITE_LOCKED: return -EAGAIN;
	case SQLITE_NOMEM: return -ENOMEM;
	case SQLITE_INTERRUPT: return -EINTR;
	case SQLITE_ERROR:
	case SQLITE_RANGE:
	case SQLITE_MISMATCH:
	case SQLITE_TOOBIG:
	case SQLITE_READONLY:
	case SQLITE_AUTH: return -EINVAL;
	default: return -EIO;
	}
}

/* Create the directories above a database file (mkdir -p), so an embedded deployment starts
 * on an empty data directory. Errors surface at sqlite3_open. */
static void make_parent_dirs(const char *path)
{
	char buf[4096];
	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return;
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		mkdir(buf, 0750);
		*p = '/';
	}
}

static int lite_connect(gh_conn_t *c)
{
	const gh_store_opts_t *o = &c->store->opts;
	const char *path = c->store->url;
	bool mem = strncmp(path, "file:", 5) == 0;
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
	            (mem ? SQLITE_OPEN_URI : 0);
	sqlite3 *db = NULL;
	if (!mem)
		make_parent_dirs(path);
	int rc = sqlite3_open_v2(path, &db, flags, NULL);
	if (rc != SQLITE_OK) {
		gh__conn_seterr(c, "%s: %s", path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		sqlite3_close(db);
		return -EIO;
	}
	sqlite3_extended_result_codes(db, 1);
	sqlite3_busy_timeout(db, o->busy_timeout_ms);
	char pragmas[160];
	snprintf(pragmas, sizeof(pragmas), "%sPRAGMA synchronous=%s; PRAGMA foreign_keys=ON;",
	         mem ? "" : "PRAGMA journal_mode=WAL; ", o->sync_full ? "FULL" : "NORMAL");
	char *msg = NULL;
	rc = sqlite3_exec(db, pragmas, NULL, NULL, &msg);
	if (rc != SQLITE_OK) {
		gh__conn_seterr(c, "%s: %s", path, msg ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		sqlite3_close(db);
		return -EIO;
	}
	c->db = db;
	return 0;
}

static void lite_disconnect(gh_conn_t *c)
{
	/* cached statements were finalized by gh__stmt_clear before this */
	sqlite3_close_v2(c->db);
	c->db = NULL;
}

static bool lite_alive(gh_conn_t *c) { return c->db != NULL; }

static int stmt_destructor(gh__stmt_t *st)
{
	sqlite3_finalize(st->lite.st);
	return 0;
}

/* Parse "$N" (N >= 1) or return 0. */
static int param_number(const char *name)
{
	if (!name || name[0] != '$' || name[1] < '1' || name[1] > '9')
		return 0;
	char *end;
	long v = strtol(name + 1, &end, 10);
	return *end || v > 32767 ? 0 : (int)v;
}

/* A prepared statement for sql: the cached one when free, else a fresh one (cached when the
 * SQL is new and the cache has room). Checks that the statement uses exactly $1..$nparams. */
static int lite_prepare(gh_conn_t *c, const char *sql, int nparams, gh__stmt_t **out)
{
	gh__stmt_t *st = gh__stmt_lookup(c, sql, "");
	if (!st || st->lite.in_use) {
		bool cacheable = !st;
		st = gh__stmt_new(c, sql, "");
		if (!st)
			return -ENOMEM;
		const char *tail = NULL;
		int rc = sqlite3_prepare_v3(
		    c->db, sql, -1, cacheable ? SQLITE_PREPARE_PERSISTENT : 0, &st->lite.st, &tail);
		if (rc != SQLITE_OK || !st->lite.st) {
			talloc_free(st);
			if (rc == SQLITE_OK) {
				gh__conn_seterr(c, "empty statement");
				return -EINVAL;
			}
			return lite_err(c, rc);
		}
		talloc_set_destructor(st, stmt_destructor);
		while (tail && (*tail == ' ' || *tail == '\n' || *tail == '\t' || *tail == ';'))
			tail++;
		if (tail && *tail) {
			talloc_free(st);
			gh__conn_seterr(c, "one statement expected (use gh_conn_exec_script)");
			return -EINVAL;
		}
		int n = sqlite3_bind_parameter_count(st->lite.st);
		st->lite.map = talloc_array(st, int, n > 0 ? n : 1);
		if (!st->lite.map) {
			talloc_free(st);
			return -ENOMEM;
		}
		st->lite.nmap = n;
		for (int i = 0; i < n; i++) {
			const char *name = sqlite3_bind_parameter_name(st->lite.st, i + 1);
			int num = param_number(name);
			if (num == 0) {
				talloc_free(st);
				gh__conn_seterr(c, "placeholder %s: only $1..$n are supported",
				                name ? name : "?");
				return -EINVAL;
			}
			st->lite.map[i] = num - 1;
		}
		st->lite.cached = cacheable && gh__stmt_add(c, st);
	}
	/* SQLite numbers each distinct $N once, so the highest N is the count PostgreSQL wants */
	int max = 0;
	for (int i = 0; i < st->lite.nmap; i++)
		if (st->lite.map[i] + 1 > max)
			max = st->lite.map[i] + 1;
	if (max != nparams || st->lite.nmap != nparams) {
		gh__conn_seterr(c, "statement takes %d parameters, %d given", max, nparams);
		if (!st->lite.cached)
			talloc_free(st);
		return -EINVAL;
	}
	*out = st;
	return 0;
}

static void lite_done(gh__stmt_t *st)
{
	if (st->lite.cached) {
		sqlite3_reset(st->lite.st);
		st->lite.in_use = false;
	} else {
		talloc_free(st);
	}
}

static int lite_bind(gh_conn_t *c, gh__stmt_t *st, const gh_val_t *p, bool copy)
{
	sqlite3_destructor_type dtor = copy ? SQLITE_TRANSIENT : SQLITE_STATIC;
	for (int i = 0; i < st->lite.nmap; i++) {
		const gh_val_t *v = &p[st->lite.map[i]];
		int rc, idx = i + 1;
		switch (v->type) {
		case GH_VAL_NULL: rc = sqlite3_bind_null(st->lite.st, idx); break;
		case GH_VAL_INT64: rc = sqlite3_bind_int64(st->lite.st, idx, v->i64); break;
		case GH_VAL_DOUBLE: rc = sqlite3_bind_double(st->lite.st, idx, v->d); break;
		case GH_VAL_TEXT:
			rc = v->s ? sqlite3_bind_text(st->lite.st, idx, v->s, -1, dtor)
			          : sqlite3_bind_null(st->lite.st, idx);
			break;
		case GH_VAL_BLOB:
			/* a NULL pointer would bind SQL NULL: an empty blob is a zeroblob */
			rc = v->b.n == 0
			         ? sqlite3_bind_zeroblob(st->lite.st, idx, 0)
			         : sqlite3_bind_blob64(st->lite.st, idx, v->b.p, v->b.n, dtor);
			break;
		default:
			gh__conn_seterr(c, "parameter $%d: unknown type", st->lite.map[i] + 1);
			return -EINVAL;
		}
		if (rc != SQLITE_OK)
			return lite_err(c, rc);
	}
	return 0;
}

/* Step a bound statement to completion. */
static int lite_run(gh_conn_t *c, gh__stmt_t *st, int64_t *affected)
{
	int rc;
	while ((rc = sqlite3_step(st->lite.st)) == SQLITE_ROW)
		;
	if (rc != SQLITE_DONE)
		return lite_err(c, rc);
	if (affected && !sqlite3_stmt_readonly(st->lite.st))
		*affected += sqlite3_changes64(c->db);
	return 0;
}

static int lite_exec(gh_conn_t *c, const char *sql, const gh_val_t *p, int n, int64_t *affected)
{
	gh__stmt_t *st;
	int rc = lite_prepare(c, sql, n, &st);
	if (rc < 0)
		return rc;
	rc = lite_bind(c, st, p, false);
	if (rc == 0)
		rc = lite_run(c, st, affected);
	lite_done(st);
	return rc;
}

static int lite_exec_batch(gh_conn_t *c, const char *sql, const gh_val_t *p, int n, size_t nrows,
                           int64_t *affected)
{
	gh__stmt_t *st;
	int rc = lite_prepare(c, sql, n, &st);
	if (rc < 0)
		return rc;
	for (size_t r = 0; r < nrows && rc == 0; r++) {
		rc = lite_bind(c, st, p + r * (size_t)n, false);
		if (rc == 0)
			rc = lite_run(c, st, affected);
		sqlite3_reset(st->lite.st);
	}
	lite_done(st);
	return rc;
}

static int lite_exec_script(gh_conn_t *c, const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(c->db, sql, NULL, NULL, &msg);
	if (rc == SQLITE_OK)
		return 0;
	int err = lite_err(c, rc);
	if (msg)
		gh__conn_seterr(c, "%s", msg);
	sqlite3_free(msg);
	return err;
}

static int lite_query(gh_conn_t *c, const char *sql, const gh_val_t *p, int n, gh_rows_t *r)
{
	gh__stmt_t *st;
	int rc = lite_prepare(c, sql, n, &st);
	if (rc < 0)
		return rc;
	/* the cursor outlives the caller's parameter array: SQLite copies the values */
	rc = lite_bind(c, st, p, true);
	if (rc < 0) {
		lite_done(st);
		return rc;
	}
	st->lite.in_use = true;
	r->lite.stmt = st;
	return 0;
}

static int lite_begin(gh_conn_t *c, int flags)
{
	return lite_exec(c, flags & GH_TX_WRITE ? "BEGIN IMMEDIATE" : "BEGIN", NULL, 0, NULL);
}

static int lite_commit(gh_conn_t *c) { return lite_exec(c, "COMMIT", NULL, 0, NULL); }

static int lite_rollback(gh_conn_t *c)
{
	/* SQLite may already have rolled back on its own (SQLITE_FULL, some BUSY cases) */
	if (sqlite3_get_autocommit(c->db))
		return 0;
	return lite_exec(c, "ROLLBACK", NULL, 0, NULL);
}

static bool lite_in_tx(const gh_conn_t *c) { return !sqlite3_get_autocommit(c->db); }

static int lite_rows_next(gh_rows_t *r)
{
	int rc = sqlite3_step(r->lite.stmt->lite.st);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return lite_err(r->conn, rc);
}

static int lite_ncols(const gh_rows_t *r) { return sqlite3_column_count(r->lite.stmt->lite.st); }

static const char *lite_colname(const gh_rows_t *r, int col)
{
	return sqlite3_column_name(r->lite.stmt->lite.st, col);
}

static bool lite_isnull(gh_rows_t *r, int col)
{
	return sqlite3_column_type(r->lite.stmt->lite.st, col) == SQLITE_NULL;
}

static int64_t lite_i64(gh_rows_t *r, int col)
{
	return sqlite3_column_int64(r->lite.stmt->lite.st, col);
}

static double lite_dbl(gh_rows_t *r, int col)
{
	return sqlite3_column_double(r->lite.stmt->lite.st, col);
}

static const char *lite_text(gh_rows_t *r, int col)
{
	return (const char *)sqlite3_column_text(r->lite.stmt->lite.st, col);
}

static const void *lite_blob(gh_rows_t *r, int col, size_t *n)
{
	const void *p = sqlite3_column_blob(r->lite.stmt->lite.st, col);
	*n = (size_t)sqlite3_column_bytes(r->lite.stmt->lite.st, col);
	return p ? p : "";
}

static void lite_rows_free(gh_rows_t *r) { lite_done(r->lite.stmt); }

const gh__backend_t gh__store_sqlite = {
    .kind = GH_STORE_SQLITE,
    .connect = lite_connect,
    .disconnect = lite_disconnect,
    .alive = lite_alive,
    .exec = lite_exec,
    .exec_batch = lite_exec_batch,
    .exec_script = lite_exec_script,
    .query = lite_query,
    .begin = lite_begin,
    .commit = lite_commit,
    .rollback = lite_rollback,
    .in_tx = lite_in_tx,
    .rows_next = lite_rows_next,
    .ncols = lite_ncols,
    .colname = lite_colname,
    .isnull = lite_isnull,
    .i64 = lite_i64,
    .dbl = lite_dbl,
    .text = lite_text,
    .blob = lite_blob,
    .rows_free = lite_rows_free,
};
