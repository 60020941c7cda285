/* store_pg: the PostgreSQL backend of store.h (scale-out profile), on libpq.
 *
 * Statements are prepared once per connection (PQprepare, generated names) and cached by SQL
 * text plus the parameter type signature: INT64 goes as int8, DOUBLE as float8, BLOB as bytea
 * (binary), TEXT and NULL as "unknown" so the server types them from context (timestamptz,
 * uuid, jsonb columns take text). Results come in text format and the getters convert.
 * A connection that reports CONNECTION_BAD is marked broken; the pool reopens it on its next
 * checkout. Batches use pipeline mode: one round trip per chunk instead of one per row. */
#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>

#include "store_impl.h"

#define OID_INT8   20
#define OID_BYTEA  17
#define OID_FLOAT8 701
#define OID_BOOL   16

/* rows per pipeline sync in a batch: bounds what is buffered on either side */
#define PG_BATCH_CHUNK 1000

static int map_sqlstate(const char *st)
{
	if (!st || strlen(st) != 5)
		return -EIO;
	if (strcmp(st, "23505") == 0)
		return -EEXIST;
	/* serialization_failure, deadlock_detected, lock_not_available */
	if (strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0 || strcmp(st, "55P03") == 0)
		return -EAGAIN;
	if (strcmp(st, "57014") == 0) /* query_canceled: statement_timeout */
		return -ETIMEDOUT;
	if (strcmp(st, "08P01") == 0) /* protocol violation: e.g. fewer parameters than $n */
		return -EINVAL;
	if (strncmp(st, "08", 2) == 0 || strncmp(st, "57P", 3) == 0) /* connection, shutdown */
		return -EIO;
	/* integrity constraints, data exceptions, syntax/undefined objects, transaction state,
	 * unsupported features: the statement or its input is wrong, retrying will not help */
	if (strncmp(st, "23", 2) == 0 || strncmp(st, "22", 2) == 0 || strncmp(st, "42", 2) == 0 ||
	    strncmp(st, "25", 2) == 0 || strncmp(st, "0A", 2) == 0)
		return -EINVAL;
	return -EIO;
}

/* Turn a failed result (or none) into an errno; marks the connection broken when it is. */
static int pg_fail(gh_conn_t *c, PGresult *res)
{
	const char *msg = res ? PQresultErrorMessage(res) : "";
	if (!msg || !*msg)
		msg = PQerrorMessage(c->pg);
	gh__conn_seterr(c, "%s", msg);
	int rc = map_sqlstate(res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL);
	if (PQstatus(c->pg) == CONNECTION_BAD) {
		c->broken = true;
		rc = -EIO;
	}
	PQclear(res);
	return rc;
}

static void notice_drop(void *arg, const char *message) { (void)arg, (void)message; }

static int pg_connect(gh_conn_t *c)
{
	char timeout[16];
	snprintf(timeout, sizeof(timeout), "%d", c->store->opts.connect_timeout_s);
	/* keywords before dbname are defaults the URL may override; after it, fixed: every string
	 * this program sends or hashes (the audit chain) is UTF-8 */
	const char *keys[] = {"connect_timeout", "application_name", "dbname", "client_encoding",
	                      NULL};
	const char *vals[] = {timeout, "ghasi", c->store->url, "UTF8", NULL};
	PGconn *pg = PQconnectdbParams(keys, vals, 1);
	if (!pg) {
		gh__conn_seterr(c, "out of memory");
		return -ENOMEM;
	}
	if (PQstatus(pg) != CONNECTION_OK) {
		gh__conn_seterr(c, "%s", PQerrorMessage(pg));
		PQfinish(pg);
		return -EIO;
	}
	PQsetNoticeProcessor(pg, notice_drop, NULL);
	c->pg = pg;
	return 0;
}

static void pg_disconnect(gh_conn_t *c)
{
	PQfinish(c->pg);
	c->pg = NULL;
}

/* An idle connection has nothing to read; if the socket is readable the server has sent an
 * error (backend terminated, server shutdown) and/or closed it: consume and look. */
static bool pg_alive(gh_conn_t *c)
{
	if (PQstatus(c->pg) != CONNECTION_OK)
		return false;
	for (int i = 0; i < 4; i++) {
		struct pollfd pfd = {.fd = PQsocket(c->pg), .events = POLLIN};
		if (pfd.fd < 0)
			return false;
		if (poll(&pfd, 1, 0) <= 0)
			break;
		if (!PQconsumeInput(c->pg))
			return false;
		PGnotify *n;
		while ((n = PQnotifies(c->pg)))
			PQfreemem(n);
	}
	return PQstatus(c->pg) == CONNECTION_OK;
}

typedef char pg_num_t[32];

/* Wire form of one parameter row. */
typedef struct pg_params_s {
	const char **values;
	int *lengths;
	int *formats;
	Oid *types;
	pg_num_t *num;
	char *sig; /* one type letter per parameter (type_sig), NUL-terminated: the statement key */
} pg_params_t;

static char type_sig(gh_val_type_t t)
{
	switch (t) {
	case GH_VAL_INT64: return 'i';
	case GH_VAL_DOUBLE: return 'd';
	case GH_VAL_BLOB: return 'b';
	default: return 'u';
	}
}

static Oid sig_oid(char s)
{
	switch (s) {
	case 'i': return OID_INT8;
	case 'd': return OID_FLOAT8;
	case 'b': return OID_BYTEA;
	default: return 0;
	}
}

static int pg_params_alloc(void *ctx, int n, pg_params_t *pp)
{
	size_t k = n > 0 ? (size_t)n : 1;
	pp->values = talloc_array(ctx, const char *, k);
	pp->lengths = talloc_array(ctx, int, k);
	pp->formats = talloc_array(ctx, int, k);
	pp->types = talloc_array(ctx, Oid, k);
	pp->num = talloc_array(ctx, pg_num_t, k);
	pp->sig = talloc_zero_size(ctx, k + 1);
	return pp->values && pp->lengths && pp->formats && pp->types && pp->num && pp->sig
	           ? 0
	           : -ENOMEM;
}

static int pg_encode(gh_conn_t *c, const gh_val_t *p, int n, pg_params_t *pp)
{
	for (int i = 0; i < n; i++) {
		const gh_val_t *v = &p[i];
		pp->lengths[i] = 0;
		pp->formats[i] = 0;
		switch (v->type) {
		case GH_VAL_NULL: pp->values[i] = NULL; break;
		case GH_VAL_INT64:
			snprintf(pp->num[i], sizeof(pp->num[i]), "%lld", (long long)v->i64);
			pp->values[i] = pp->num[i];
			break;
		case GH_VAL_DOUBLE:
			snprintf(pp->num[i], sizeof(pp->num[i]), "%.17g", v->d);
			pp->values[i] = pp->num[i];
			break;
		case GH_VAL_TEXT: pp->values[i] = v->s; break;
		case GH_VAL_BLOB:
			if (v->b.n > (size_t)0x7fffffff) {
				gh__conn_seterr(c, "parameter $%d: blob too large", i + 1);
				return -EINVAL;
			}
			pp->values[i] =
			    v->b.n ? (const char *)v->b.p : ""; /* NULL would mean NULL */
			pp->lengths[i] = (int)v->b.n;
			pp->formats[i] = 1;
			break;
		default: gh__conn_seterr(c, "parameter $%d: unknown type", i + 1); return -EINVAL;
		}
	}
	return 0;
}

/* The prepared statement for (sql, sig), preparing it on first use. *out is NULL when the
 * cache is full: the caller then runs the statement unnamed with PQexecParams. */
static int pg_prepare(gh_conn_t *c, const char *sql, const char *sig, int n, const Oid *types,
                      gh__stmt_t **out)
{
	*out = gh__stmt_lookup(c, sql, sig);
	if (*out)
		return 0;
	if (c->nstmt >= GH__STMT_MAX)
		return 0;
	gh__stmt_t *st = gh__stmt_new(c, sql, sig);
	if (!st)
		return -ENOMEM;
	snprintf(st->pg.name, sizeof(st->pg.name), "gh_%u", ++c->stmt_seq);
	st->pg.nparams = n;
	PGresult *res = PQprepare(c->pg, st->pg.name, sql, n, types);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		talloc_free(st);
		return pg_fail(c, res);
	}
	PQclear(res);
	gh__stmt_add(c, st);
	*out = st;
	return 0;
}

static int64_t cmd_tuples(PGresult *r);

const char *gh__pg_param(const gh_conn_t *c, const char *name)
{
	return PQparameterStatus(c->pg, name);
}

/* The pipeline's results of one query: 0 with *keep (may be NULL: cleared) the result,
 * skipping a query aborted by an earlier error (-ECANCELED), or the error. */
static int pipe_result(gh_conn_t *c, PGresult **keep)
{
	PGresult *r = PQgetResult(c->pg);
	int rc = 0;
	if (!r)
		return pg_fail(c, NULL);
	ExecStatusType s = PQresultStatus(r);
	if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) {
		if (keep)
			*keep = r;
		else
			PQclear(r);
	} else if (s == PGRES_PIPELINE_ABORTED) {
		PQclear(r);
		rc = -ECANCELED;
	} else {
		rc = pg_fail(c, r);
	}
	if (!c->broken) /* each query's results end with a NULL */
		while ((r = PQgetResult(c->pg)))
			PQclear(r);
	return rc;
}

/* A statement queued by gh_conn_exec_deferred, its parameters copied under it. */
struct gh__later_s {
	struct gh__later_s *next;
	gh__stmt_t *st; /* prepared; NULL: sent unnamed */
	char *sql;
	int n;
	pg_params_t pp;
};

static bool send_one(gh_conn_t *c, gh__stmt_t *st, const char *sql, int n, const pg_params_t *pp)
{
	return st ? PQsendQueryPrepared(c->pg, st->pg.name, n, pp->values, pp->lengths, pp->formats,
	                                0)
	          : PQsendQueryParams(c->pg, sql, n, pp->types, pp->values, pp->lengths,
	                              pp->formats, 0);
}

/* One round trip: the pending BEGIN (if any), the queued statements, the statement (none when
 * sql is NULL), and COMMIT when `commit`. *res gets the statement's result; *committed whether
 * COMMIT ran (and did not turn into ROLLBACK). On an error the transaction stays open,
 * aborted, for the caller's ROLLBACK. */
static int pg_pipe(gh_conn_t *c, gh__stmt_t *st, const char *sql, int n, const pg_params_t *pp,
                   bool commit, PGresult **res, bool *committed)
{
	const char *begin = c->pending_begin;
	struct gh__later_s *later = c->later;
	c->pending_begin = NULL;
	c->later = NULL;
	c->later_tail = NULL;
	*res = NULL;
	if (committed)
		*committed = false;
	if (!PQenterPipelineMode(c->pg))
		return pg_fail(c, NULL);
	bool sent = !begin || PQsendQueryParams(c->pg, begin, 0, NULL, NULL, NULL, NULL, 0);
	for (struct gh__later_s *l = later; l && sent; l = l->next)
		sent = send_one(c, l->st, l->sql, l->n, &l->pp);
	sent = sent && (!sql || send_one(c, st, sql, n, pp)) &&
	       (!commit || PQsendQueryParams(c->pg, "COMMIT", 0, NULL, NULL, NULL, NULL, 0)) &&
	       PQpipelineSync(c->pg);
	if (!sent) {
		int rc = pg_fail(c, NULL);
		c->broken = true; /* results half sent: the handle is not reusable */
		return rc < 0 ? rc : -EIO;
	}
	int rc = 0, e;
	if (begin && (e = pipe_result(c, NULL)) < 0)
		rc = e;
	for (struct gh__later_s *l = later; l && !c->broken; l = l->next)
		if ((e = pipe_result(c, NULL)) < 0 && rc == 0)
			rc = e;
	if (sql && !c->broken && (e = pipe_result(c, res)) < 0 && rc == 0)
		rc = e;
	if (!c->broken && commit) {
		PGresult *cr = NULL;
		if ((e = pipe_result(c, &cr)) < 0 && rc == 0)
			rc = e;
		if (cr) {
			/* COMMIT of an aborted transaction "succeeds" as ROLLBACK */
			if (strcmp(PQcmdStatus(cr), "ROLLBACK") == 0 && rc == 0) {
				gh__conn_seterr(
				    c, "transaction aborted by an earlier error; rolled back");
				rc = -EINVAL;
			} else if (committed) {
				*committed = true;
			}
			PQclear(cr);
		}
	}
	if (!c->broken) {
		PGresult *r = PQgetResult(c->pg);
		if (!r || PQresultStatus(r) != PGRES_PIPELINE_SYNC) {
			e = pg_fail(c, r);
			if (rc == 0)
				rc = e;
		} else {
			PQclear(r);
		}
	}
	if (!c->broken && !PQexitPipelineMode(c->pg) && rc == 0)
		rc = pg_fail(c, NULL);
	if (rc < 0 && *res) {
		PQclear(*res);
		*res = NULL;
	}
	return rc;
}

/* Run sql with one parameter row, then COMMIT when `commit`; *res gets the successful
 * result. */
static int pg_run2(gh_conn_t *c, const char *sql, const gh_val_t *p, int n, bool commit,
                   PGresult **res, bool *committed)
{
	*res = NULL;
	void *tmp = talloc_new(NULL);
	if (!tmp)
		return -ENOMEM;
	pg_params_t pp;
	int rc = pg_params_alloc(tmp, n, &pp);
	if (rc < 0)
		goto out;
	char *sig = pp.sig;
	for (int i = 0; i < n; i++) {
		sig[i] = type_sig(p[i].type);
		pp.types[i] = sig_oid(sig[i]);
	}
	sig[n] = '\0';
	if ((rc = pg_encode(c, p, n, &pp)) < 0)
		goto out;
	gh__stmt_t *st;
	if ((rc = pg_prepare(c, sql, sig, n, pp.types, &st)) < 0)
		goto out;
	if (c->pending_begin || c->later || commit) {
		rc = pg_pipe(c, st, sql, n, &pp, commit, res, committed);
		goto out;
	}
	PGresult *r;
	if (st) {
		r = PQexecPrepared(c->pg, st->pg.name, n, pp.values, pp.lengths, pp.formats, 0);
	} else {
		r = PQexecParams(c->pg, sql, n, pp.types, pp.values, pp.lengths, pp.formats, 0);
	}
	ExecStatusType s = PQresultStatus(r);
	if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
		rc = pg_fail(c, r);
		goto out;
	}
	*res = r;
out:
	talloc_free(tmp);
	return rc;
}

static int pg_run(gh_conn_t *c, const char *sql, const gh_val_t *p, int n, PGresult **res)
{
	return pg_run2(c, sql, p, n, false, res, NULL);
}

static int64_t cmd_tuples(PGresult *r)
{
	const char *t = PQcmdTuples(r);
	return t && *t ? strtoll(t, NULL, 10) : 0;
}

static int pg_exec(gh_conn_t *c, const char *sql, const gh_val_t *p, int n, int64_t *affected)
{
	PGresult *r;
	int rc = pg_run(c, sql, p, n, &r);
	if (rc < 0)
		return rc;
	*affected = cmd_tuples(r);
	PQclear(r);
	return 0;
}

static int pg_exec_commit(gh_conn_t *c, const char *sql, const gh_val_t *p, int n,
                          int64_t *affected)
{
	PGresult *r;
	bool committed = false;
	int rc = pg_run2(c, sql, p, n, true, &r, &committed);
	if (rc < 0)
		return rc;
	*affected = cmd_tuples(r);
	PQclear(r);
	return committed ? 0 : -EIO;
}

static int pg_exec_later(gh_conn_t *c, const char *sql, const gh_val_t *p, int n)
{
	struct gh__later_s *l = talloc_zero(c->tx_ctx, struct gh__later_s);
	if (!l || !(l->sql = talloc_strdup(l, sql)) || pg_params_alloc(l, n, &l->pp) < 0)
		goto nomem;
	for (int i = 0; i < n; i++) {
		l->pp.sig[i] = type_sig(p[i].type);
		l->pp.types[i] = sig_oid(l->pp.sig[i]);
	}
	l->pp.sig[n] = '\0';
	int rc = pg_encode(c, p, n, &l->pp);
	if (rc < 0) {
		talloc_free(l);
		return rc;
	}
	/* copy what pg_encode pointed at in the caller's values (numbers are in pp.num already) */
	for (int i = 0; i < n; i++) {
		if (p[i].type == GH_VAL_TEXT && l->pp.values[i] &&
		    !(l->pp.values[i] = talloc_strdup(l, l->pp.values[i])))
			goto nomem;
		if (p[i].type == GH_VAL_BLOB) {
			size_t len = (size_t)l->pp.lengths[i];
			char *copy =
			    talloc_size(l, len ? len : 1); /* "" stays non-NULL: not NULL */
			if (!copy)
				goto nomem;
			memcpy(copy, l->pp.values[i], len);
			l->pp.values[i] = copy;
		}
	}
	if ((rc = pg_prepare(c, sql, l->pp.sig, n, l->pp.types, &l->st)) < 0) {
		talloc_free(l);
		return rc;
	}
	l->n = n;
	if (!c->later_tail)
		c->later_tail = &c->later;
	*c->later_tail = l;
	c->later_tail = &l->next;
	return 0;
nomem:
	talloc_free(l);
	return -ENOMEM;
}

/* Read the results of k pipelined queries and the sync that follows them. The first error
 * wins; later queries of the chunk come back PGRES_PIPELINE_ABORTED. */
static int pg_pipeline_collect(gh_conn_t *c, size_t k, int64_t *affected)
{
	int rc = 0;
	for (size_t i = 0; i < k; i++) {
		PGresult *r = PQgetResult(c->pg);
		if (!r)
			return pg_fail(c, NULL);
		ExecStatusType s = PQresultStatus(r);
		if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) {
			*affected += cmd_tuples(r);
			PQclear(r);
		} else if (s == PGRES_PIPELINE_ABORTED) {
			PQclear(r);
		} else {
			int e = pg_fail(c, r);
			if (rc == 0)
				rc = e;
			if (c->broken)
				return rc;
		}
		/* each query's results end with a NULL */
		while ((r = PQgetResult(c->pg)))
			PQclear(r);
	}
	PGresult *r = PQgetResult(c->pg);
	if (!r || PQresultStatus(r) != PGRES_PIPELINE_SYNC) {
		int e = pg_fail(c, r);
		return rc ? rc : e;
	}
	PQclear(r);
	return rc;
}

static int pg_flush_later(gh_conn_t *c);

static int pg_exec_batch(gh_conn_t *c, const char *sql, const gh_val_t *p, int n, size_t nrows,
                         int64_t *affected)
{
	if (c->later) {
		int e = pg_flush_later(c);
		if (e < 0)
			return e;
	}
	void *tmp = talloc_new(NULL);
	if (!tmp)
		return -ENOMEM;
	pg_params_t pp;
	int rc = pg_params_alloc(tmp, n, &pp);
	if (rc < 0)
		goto out;
	char *sig = pp.sig;
	/* one type per column across the batch; NULLs fit any type */
	memset(sig, '?', (size_t)n);
	sig[n] = '\0';
	for (size_t r = 0; r < nrows; r++) {
		for (int i = 0; i < n; i++) {
			const gh_val_t *v = &p[r * (size_t)n + i];
			if (v->type == GH_VAL_NULL)
				continue;
			char t = type_sig(v->type);
			if (sig[i] == '?') {
				sig[i] = t;
			} else if (sig[i] != t) {
				gh__conn_seterr(c, "parameter $%d changes type within the batch",
				                i + 1);
				rc = -EINVAL;
				goto out;
			}
		}
	}
	for (int i = 0; i < n; i++) {
		if (sig[i] == '?')
			sig[i] = 'u';
		pp.types[i] = sig_oid(sig[i]);
	}
	gh__stmt_t *st;
	if ((rc = pg_prepare(c, sql, sig, n, pp.types, &st)) < 0)
		goto out;
	if (!st) {
		/* cache full: fall back to one statement per row */
		for (size_t r = 0; r < nrows && rc == 0; r++) {
			int64_t one = 0;
			rc = pg_exec(c, sql, p + r * (size_t)n, n, &one);
			*affected += one;
		}
		goto out;
	}
	if (!PQenterPipelineMode(c->pg)) {
		rc = pg_fail(c, NULL);
		goto out;
	}
	for (size_t done = 0; done < nrows && rc == 0;) {
		size_t k = nrows - done < PG_BATCH_CHUNK ? nrows - done : PG_BATCH_CHUNK;
		size_t sent = 0, extra = 0;
		if (c->pending_begin) { /* the transaction's BEGIN goes first in the pipeline */
			const char *begin = c->pending_begin;
			c->pending_begin = NULL;
			if (!PQsendQueryParams(c->pg, begin, 0, NULL, NULL, NULL, NULL, 0)) {
				rc = pg_fail(c, NULL);
				c->broken = true;
				goto out;
			}
			extra = 1;
		}
		for (; sent < k; sent++) {
			if ((rc = pg_encode(c, p + (done + sent) * (size_t)n, n, &pp)) < 0)
				break;
			if (!PQsendQueryPrepared(c->pg, st->pg.name, n, pp.values, pp.lengths,
			                         pp.formats, 0)) {
				rc = pg_fail(c, NULL);
				break;
			}
		}
		if (c->broken)
			goto out;
		if (!PQpipelineSync(c->pg)) {
			rc = pg_fail(c, NULL);
			goto out;
		}
		int e = pg_pipeline_collect(c, sent + extra, affected);
		if (c->broken)
			goto out;
		if (rc == 0)
			rc = e;
		done += k;
	}
	if (!PQexitPipelineMode(c->pg) && rc == 0)
		rc = pg_fail(c, NULL);
out:
	talloc_free(tmp);
	return rc;
}

/* Send what is queued (and a pending BEGIN) in one round trip of its own. */
static int pg_flush_later(gh_conn_t *c)
{
	PGresult *r = NULL;
	int rc = pg_pipe(c, NULL, NULL, 0, NULL, false, &r, NULL);
	PQclear(r);
	return rc;
}

static int pg_simple(gh_conn_t *c, const char *sql, PGresult **keep)
{
	if (c->later) {
		int rc = pg_flush_later(c);
		if (rc < 0)
			return rc;
	}
	if (c->pending_begin) {
		const char *begin = c->pending_begin;
		c->pending_begin = NULL;
		int rc = pg_simple(c, begin, NULL);
		if (rc < 0)
			return rc;
	}
	PGresult *r = PQexec(c->pg, sql);
	ExecStatusType s = PQresultStatus(r);
	if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK && s != PGRES_EMPTY_QUERY)
		return pg_fail(c, r);
	if (keep)
		*keep = r;
	else
		PQclear(r);
	return 0;
}

static int pg_exec_script(gh_conn_t *c, const char *sql) { return pg_simple(c, sql, NULL); }

static int pg_query(gh_conn_t *c, const char *sql, const gh_val_t *p, int n, gh_rows_t *rows)
{
	PGresult *r;
	int rc = pg_run(c, sql, p, n, &r);
	if (rc < 0)
		return rc;
	rows->pg.res = r;
	rows->pg.row = -1;
	rows->pg.nrows = PQntuples(r);
	return 0;
}

static int pg_begin(gh_conn_t *c, int flags)
{
	const char *sql = "BEGIN";
	if (flags & GH_TX_SERIALIZABLE)
		sql = flags & GH_TX_WRITE ? "BEGIN ISOLATION LEVEL SERIALIZABLE"
		                          : "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY";
	else if (!(flags & GH_TX_WRITE))
		sql = "BEGIN READ ONLY";
	/* sent with the transaction's first statement (pg_pipe, pg_exec_batch, pg_simple) */
	c->pending_begin = sql;
	return 0;
}

static int pg_commit(gh_conn_t *c)
{
	if (c->later) { /* the queued statements and COMMIT in one round trip */
		PGresult *r = NULL;
		bool committed = false;
		int rc = pg_pipe(c, NULL, NULL, 0, NULL, true, &r, &committed);
		PQclear(r);
		return rc < 0 ? rc : committed ? 0 : -EIO;
	}
	if (c->pending_begin) { /* nothing was sent: nothing to commit */
		c->pending_begin = NULL;
		return 0;
	}
	bool failed = PQtransactionStatus(c->pg) == PQTRANS_INERROR;
	PGresult *r = NULL;
	int rc = pg_simple(c, "COMMIT", &r);
	if (rc < 0)
		return rc;
	/* COMMIT of an aborted transaction "succeeds" as ROLLBACK */
	bool rolled_back = strcmp(PQcmdStatus(r), "ROLLBACK") == 0;
	PQclear(r);
	if (failed || rolled_back) {
		gh__conn_seterr(c, "transaction aborted by an earlier error; rolled back");
		return -EINVAL;
	}
	return 0;
}

static int pg_rollback(gh_conn_t *c)
{
	c->later = NULL; /* never sent; the memory goes with the transaction (tx_end) */
	c->later_tail = NULL;
	if (c->pending_begin) {
		c->pending_begin = NULL;
		return 0;
	}
	return pg_simple(c, "ROLLBACK", NULL);
}

static bool pg_in_tx(const gh_conn_t *c)
{
	if (c->pending_begin)
		return true;
	PGTransactionStatusType t = PQtransactionStatus(c->pg);
	return t == PQTRANS_INTRANS || t == PQTRANS_INERROR || t == PQTRANS_ACTIVE;
}

static void bytea_drop(gh_rows_t *r)
{
	if (r->pg.bytea) {
		PQfreemem(r->pg.bytea);
		r->pg.bytea = NULL;
	}
}

static int pg_rows_next(gh_rows_t *r)
{
	bytea_drop(r);
	if (r->pg.row + 1 >= r->pg.nrows) {
		r->pg.row = r->pg.nrows;
		return 0;
	}
	r->pg.row++;
	return 1;
}

static int pg_ncols(const gh_rows_t *r) { return PQnfields(r->pg.res); }

static const char *pg_colname(const gh_rows_t *r, int col) { return PQfname(r->pg.res, col); }

static bool pg_isnull(gh_rows_t *r, int col)
{
	return r->pg.row < 0 || r->pg.row >= r->pg.nrows || PQgetisnull(r->pg.res, r->pg.row, col);
}

static int64_t pg_i64(gh_rows_t *r, int col)
{
	const char *v = PQgetvalue(r->pg.res, r->pg.row, col);
	if (PQftype(r->pg.res, col) == OID_BOOL)
		return v[0] == 't';
	return strtoll(v, NULL, 10);
}

static double pg_dbl(gh_rows_t *r, int col)
{
	return strtod(PQgetvalue(r->pg.res, r->pg.row, col), NULL);
}

static const char *pg_text(gh_rows_t *r, int col) { return PQgetvalue(r->pg.res, r->pg.row, col); }

static const void *pg_blob(gh_rows_t *r, int col, size_t *n)
{
	const char *v = PQgetvalue(r->pg.res, r->pg.row, col);
	if (PQftype(r->pg.res, col) != OID_BYTEA) {
		*n = (size_t)PQgetlength(r->pg.res, r->pg.row, col);
		return v;
	}
	bytea_drop(r);
	r->pg.bytea = PQunescapeBytea((const unsigned char *)v, n);
	if (!r->pg.bytea) {
		*n = 0;
		return NULL;
	}
	return r->pg.bytea;
}

static void pg_rows_free(gh_rows_t *r)
{
	bytea_drop(r);
	PQclear(r->pg.res);
	r->pg.res = NULL;
}

const gh__backend_t gh__store_pg = {
    .kind = GH_STORE_PG,
    .connect = pg_connect,
    .disconnect = pg_disconnect,
    .alive = pg_alive,
    .exec = pg_exec,
    .exec_batch = pg_exec_batch,
    .exec_script = pg_exec_script,
    .query = pg_query,
    .begin = pg_begin,
    .commit = pg_commit,
    .exec_commit = pg_exec_commit,
    .exec_later = pg_exec_later,
    .rollback = pg_rollback,
    .in_tx = pg_in_tx,
    .rows_next = pg_rows_next,
    .ncols = pg_ncols,
    .colname = pg_colname,
    .isnull = pg_isnull,
    .i64 = pg_i64,
    .dbl = pg_dbl,
    .text = pg_text,
    .blob = pg_blob,
    .rows_free = pg_rows_free,
};
