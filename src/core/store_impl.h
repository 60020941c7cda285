/* store_impl: what store.c (pool, statement cache, dispatch) shares with the two backends
 * store_sqlite.c and store_pg.c. Not part of the public API. */
#ifndef GH_STORE_IMPL_H
#define GH_STORE_IMPL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>

#include "store.h"

struct sqlite3;
struct sqlite3_stmt;
struct pg_conn;
struct pg_result;

/* Cached prepared statement, keyed by SQL text plus (PostgreSQL) the parameter type signature. */
typedef struct gh__stmt_s {
	struct gh__stmt_s *next; /* hash chain */
	uint64_t hash;
	char *sql;
	char *sig;
	union {
		struct {
			struct sqlite3_stmt *st;
			int *map; /* SQLite parameter index i+1 -> our parameter number - 1 */
			int nmap;
			bool in_use; /* a cursor is reading it; a nested use prepares a fresh one */
			bool cached;
		} lite;
		struct {
			char name[24];
			int nparams;
		} pg;
	};
} gh__stmt_t;

#define GH__HOOKS_MAX    4
#define GH__STMT_BUCKETS 128
#define GH__STMT_MAX     512

typedef struct gh__backend_s gh__backend_t;

struct gh_conn_s {
	gh_store_t *store;
	struct gh_conn_s *next_idle;
	void *stmt_ctx; /* talloc parent of the cached statements */
	void *rows_ctx; /* talloc parent of open cursors */
	gh__stmt_t *buckets[GH__STMT_BUCKETS];
	unsigned nstmt;
	unsigned stmt_seq;
	bool open;   /* handle connected */
	bool broken; /* connection lost: reopen on next checkout */
	bool checked_out;
	union {
		struct sqlite3 *db;
		struct pg_conn *pg;
	};
	/* PostgreSQL: the BEGIN of the open transaction, not sent yet; it goes out in one
	 * pipeline with the transaction's first statement (one round trip less). */
	const char *pending_begin;
	/* PostgreSQL: statements of the open transaction nobody reads the result of
	 * (gh_conn_exec_deferred), sent in the pipeline of its next round trip; under tx_ctx. */
	struct gh__later_s *later, **later_tail;
	/* Work run at commit (gh_conn_at_commit), and the memory it lives in until the
	 * transaction ends. */
	struct {
		gh_commit_hook_fn fn;
		void *data;
	} hooks[GH__HOOKS_MAX];
	int nhooks;
	void *tx_ctx;
	bool ended_by_hook; /* a hook committed with gh_conn_exec_commit */
	char errmsg[512];
};

struct gh_rows_s {
	gh_conn_t *conn;
	bool done; /* end or error seen: SQLite would restart a finished statement */
	union {
		struct {
			gh__stmt_t *stmt; /* cached or private (freed with the cursor) */
		} lite;
		struct {
			struct pg_result *res;
			int row;
			int nrows;
			unsigned char *bytea; /* last unescaped bytea, PQfreemem'd */
		} pg;
	};
};

struct gh__backend_s {
	gh_store_backend_t kind;
	/* Open c's handle from the store's URL; on failure fill c->errmsg and return -EIO. */
	int (*connect)(gh_conn_t *c);
	void (*disconnect)(gh_conn_t *c);
	/* Cheap checkout check: false when the handle is known dead. */
	bool (*alive)(gh_conn_t *c);
	int (*exec)(gh_conn_t *c, const char *sql, const gh_val_t *p, int n, int64_t *affected);
	int (*exec_batch)(gh_conn_t *c, const char *sql, const gh_val_t *p, int n, size_t nrows,
	                  int64_t *affected);
	int (*exec_script)(gh_conn_t *c, const char *sql);
	int (*query)(gh_conn_t *c, const char *sql, const gh_val_t *p, int n, gh_rows_t *rows);
	int (*begin)(gh_conn_t *c, int flags);
	int (*commit)(gh_conn_t *c);
	/* Run one statement and COMMIT (one round trip on PostgreSQL). */
	int (*exec_commit)(gh_conn_t *c, const char *sql, const gh_val_t *p, int n,
	                   int64_t *affected);
	/* Queue a statement for the transaction's next round trip (NULL: run it now). */
	int (*exec_later)(gh_conn_t *c, const char *sql, const gh_val_t *p, int n);
	int (*rollback)(gh_conn_t *c);
	bool (*in_tx)(const gh_conn_t *c);
	int (*rows_next)(gh_rows_t *r);
	int (*ncols)(const gh_rows_t *r);
	const char *(*colname)(const gh_rows_t *r, int col);
	bool (*isnull)(gh_rows_t *r, int col);
	int64_t (*i64)(gh_rows_t *r, int col);
	double (*dbl)(gh_rows_t *r, int col);
	const char *(*text)(gh_rows_t *r, int col);
	const void *(*blob)(gh_rows_t *r, int col, size_t *n);
	void (*rows_free)(gh_rows_t *r);
};

const char *gh__pg_param(const gh_conn_t *c, const char *name);

extern const gh__backend_t gh__store_sqlite;
extern const gh__backend_t gh__store_pg;

struct gh_store_s {
	const gh__backend_t *be;
	char *url; /* PostgreSQL: libpq URL; SQLite: file path or memdb URI */
	gh_store_opts_t opts;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	gh_conn_t **conns; /* opts.pool_size slots, created on demand */
	unsigned nconns;
	gh_conn_t *idle;
};

/* Statement cache of a connection. lookup returns NULL when absent. add takes ownership of a
 * statement talloc'd under c->stmt_ctx and returns false when the cache is full (the caller
 * then uses the statement once and frees it). */
gh__stmt_t *gh__stmt_lookup(gh_conn_t *c, const char *sql, const char *sig);
gh__stmt_t *gh__stmt_new(gh_conn_t *c, const char *sql, const char *sig);
bool gh__stmt_add(gh_conn_t *c, gh__stmt_t *st);
/* Drop every cached statement (their destructors release backend handles). */
void gh__stmt_clear(gh_conn_t *c);

void gh__conn_seterr(gh_conn_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
