/* store: one SQL API over SQLite (embedded profile, WAL) and PostgreSQL 15 (scale-out profile).
 *
 * A gh_store_t is a pool of connections to one database. A thread checks a connection out with
 * gh_store_acquire(), uses it alone, and gives it back with gh_store_release(); a gh_conn_t is
 * never shared between threads while checked out. SQL text is written once for both backends
 * with PostgreSQL-style $1..$n placeholders; parameters are a small tagged array:
 *
 *   int64_t n;
 *   rc = gh_conn_exec(c, "UPDATE numbers SET state=$1, version=version+1 WHERE id=$2 AND
 * version=$3", (gh_val_t[]){GH_TEXT(s), GH_I64(id), GH_I64(v)}, 3, &n);
 *   // rc == 0 && n == 0: somebody else won the compare-and-swap
 *
 * Statements are prepared once per connection and cached by SQL text. Errors are negative errno:
 *   -EEXIST    unique (or primary key) violation
 *   -EAGAIN    serialization failure, deadlock, SQLITE_BUSY: retry the transaction
 *              (gh_store_tx does this)
 *   -EIO       connection lost or database failure; a lost PostgreSQL connection is reopened on
 *              its next checkout
 *   -EINVAL    bad SQL, bad parameters, other constraint violations, invalid input for a type
 *   -ETIMEDOUT statement cancelled (statement_timeout), pool checkout timed out
 * and the database's own message is kept in gh_conn_errmsg() for the caller's log line. */
#ifndef GH_STORE_H
#define GH_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gh_store_s gh_store_t;
typedef struct gh_conn_s gh_conn_t;
typedef struct gh_rows_s gh_rows_t;

typedef enum {
	GH_STORE_SQLITE,
	GH_STORE_PG,
} gh_store_backend_t;

extern const char *const gh_store_backend_names[]; /* "sqlite", "pg" */

typedef struct gh_store_opts_s {
	unsigned pool_size;    /* connections at most; 0 -> 8 */
	int busy_timeout_ms;   /* SQLite busy_timeout; 0 -> 5000 */
	int sync_full;         /* SQLite synchronous=FULL instead of NORMAL */
	int connect_timeout_s; /* PostgreSQL connect_timeout unless the URL sets one; 0 -> 5 */
} gh_store_opts_t;

typedef enum {
	GH_VAL_NULL,
	GH_VAL_INT64,
	GH_VAL_TEXT,
	GH_VAL_BLOB,
	GH_VAL_DOUBLE,
} gh_val_type_t;

/* One parameter. Pointers are borrowed for the duration of the call only. */
typedef struct gh_val_s {
	gh_val_type_t type;
	union {
		int64_t i64;
		double d;
		const char *s; /* NUL-terminated UTF-8 */
		struct {
			const void *p;
			size_t n;
		} b;
	};
} gh_val_t;

#define GH_NULLV          ((gh_val_t){.type = GH_VAL_NULL})
#define GH_I64(x)         ((gh_val_t){.type = GH_VAL_INT64, .i64 = (int64_t)(x)})
#define GH_DOUBLE(x)      ((gh_val_t){.type = GH_VAL_DOUBLE, .d = (double)(x)})
#define GH_TEXT(str)      ((gh_val_t){.type = GH_VAL_TEXT, .s = (str)})
#define GH_BLOB(ptr, len) ((gh_val_t){.type = GH_VAL_BLOB, .b = {.p = (ptr), .n = (len)}})
/* NULL when str is NULL, else text: for optional columns. */
#define GH_TEXT_OR_NULL(str) ((str) ? GH_TEXT(str) : GH_NULLV)

/* Open a store. url:
 *   sqlite:///abs/path.db, sqlite://relative/path.db  file database (created when missing)
 *   sqlite::memory:                                    private in-memory database (tests),
 *                                                      shared by the store's connections
 *   postgresql://... or postgres://...                 passed to libpq as is
 * One connection is opened at once, so a wrong path or an unreachable server fails here.
 * The store is a talloc child of ctx; freeing it closes every connection (none may be checked
 * out then). opts may be NULL. Returns 0, -EINVAL (unknown URL), -EIO (cannot open/connect;
 * the reason is logged), -ENOMEM. */
int gh_store_open(void *ctx, const char *url, const gh_store_opts_t *opts, gh_store_t **out);
void gh_store_close(gh_store_t *s);
gh_store_backend_t gh_store_backend(const gh_store_t *s);

/* Check a connection out, waiting up to timeout_ms (< 0: forever) for one to be free.
 * A PostgreSQL connection found dead (server restarted, backend terminated) is reopened here.
 * Returns 0, -ETIMEDOUT (pool exhausted), -EIO (database unreachable). Thread-safe. */
int gh_store_acquire(gh_store_t *s, int timeout_ms, gh_conn_t **out);
/* Give a connection back. An open transaction is rolled back and open cursors are closed. */
void gh_store_release(gh_conn_t *c);
/* Readiness check: check out a connection and run SELECT 1. 0 or negative errno. */
int gh_store_ping(gh_store_t *s, int timeout_ms);

gh_store_backend_t gh_conn_backend(const gh_conn_t *c);
/* PostgreSQL: a parameter the server reported (server_encoding, server_version, ...); NULL on
 * SQLite, on a closed connection, or when not reported. */
const char *gh_conn_server_param(const gh_conn_t *c, const char *name);
gh_store_t *gh_conn_store(const gh_conn_t *c);
/* Database message of the last failed call on this connection ("" when none). Valid until the
 * next call on the connection. */
const char *gh_conn_errmsg(const gh_conn_t *c);

/* Run one statement. rows_affected (may be NULL) gets the INSERT/UPDATE/DELETE row count. */
int gh_conn_exec(gh_conn_t *c, const char *sql, const gh_val_t *params, int nparams,
                 int64_t *rows_affected);
/* Run one statement nrows times, the parameters of row r being params[r*nparams ..]: the cheap
 * way to insert many rows (SQLite: one prepared statement re-bound; PostgreSQL: pipeline mode).
 * Atomic: runs in the caller's transaction, or in one of its own when none is open.
 * rows_affected (may be NULL) gets the sum. On failure nothing of the batch remains when the
 * batch had its own transaction; in the caller's transaction the caller rolls back. */
int gh_conn_exec_batch(gh_conn_t *c, const char *sql, const gh_val_t *params, int nparams,
                       size_t nrows, int64_t *rows_affected);
/* Run a parameterless script of one or more statements (migrations). Not cached. */
int gh_conn_exec_script(gh_conn_t *c, const char *sql);

/* Query with a cursor. *out is owned by the caller until gh_rows_close (or the connection's
 * release). PostgreSQL materialises the whole result: page big result sets with LIMIT. */
int gh_conn_query(gh_conn_t *c, const char *sql, const gh_val_t *params, int nparams,
                  gh_rows_t **out);
/* Query expecting one row: on 0 the cursor is positioned on the first row (close it after use);
 * -ENOENT when the query returned no row (nothing to close). */
int gh_conn_query_one(gh_conn_t *c, const char *sql, const gh_val_t *params, int nparams,
                      gh_rows_t **out);
/* Advance: 1 row available, 0 end, negative errno on failure. */
int gh_rows_next(gh_rows_t *r);
int gh_rows_ncols(const gh_rows_t *r);
const char *gh_rows_colname(const gh_rows_t *r, int col);
int gh_rows_isnull(gh_rows_t *r, int col);
/* Getters of the current row. NULL reads as 0 / 0.0 / NULL. Pointers stay valid until the next
 * gh_rows_next or gh_rows_close. A PostgreSQL boolean reads as 1/0 through gh_rows_i64. */
int64_t gh_rows_i64(gh_rows_t *r, int col);
double gh_rows_double(gh_rows_t *r, int col);
const char *gh_rows_text(gh_rows_t *r, int col);
/* Blob bytes and their count; a zero-length blob is a non-NULL pointer with *n == 0. */
const void *gh_rows_blob(gh_rows_t *r, int col, size_t *n);
void gh_rows_close(gh_rows_t *r);

/* Transactions. GH_TX_WRITE takes the write lock up front on SQLite (BEGIN IMMEDIATE), so
 * concurrent writers queue on busy_timeout instead of failing at commit. GH_TX_READ is
 * READ ONLY on PostgreSQL. GH_TX_SERIALIZABLE asks PostgreSQL for SERIALIZABLE isolation
 * (SQLite is always serializable); the default there is READ COMMITTED, which suits
 * compare-and-swap on a version column. */
enum {
	GH_TX_READ = 0,
	GH_TX_WRITE = 1,
	GH_TX_SERIALIZABLE = 2,
};
int gh_conn_begin(gh_conn_t *c, int flags);
/* Commit; -EAGAIN when PostgreSQL reports a serialization failure at commit. */
int gh_conn_commit(gh_conn_t *c);
int gh_conn_rollback(gh_conn_t *c);
int gh_conn_in_tx(const gh_conn_t *c);

/* Work deferred to commit. gh_conn_commit runs each registered hook, in registration order,
 * before it commits; the last one (last = true) may end the transaction itself with
 * gh_conn_exec_commit, so its final statement and the COMMIT share one round trip on
 * PostgreSQL. A hook's error fails the commit and leaves the transaction open for the
 * caller's rollback (gh_store_tx retries on -EAGAIN as for any statement). Hooks and their
 * data are dropped when the transaction ends either way. */
typedef int (*gh_commit_hook_fn)(gh_conn_t *c, void *data, bool last);
/* The zeroed per-transaction data of fn, registering fn on the first call of the transaction
 * (size > 0); with size 0 only the existing data. NULL outside a transaction, on ENOMEM, or
 * when the transaction has its maximum of 4 hooks. The data is a talloc chunk: what is
 * allocated under it goes with it. */
void *gh_conn_commit_data(gh_conn_t *c, gh_commit_hook_fn fn, size_t size);
/* A statement of the open transaction whose result nobody reads (a write that must succeed,
 * its row count unchecked). PostgreSQL sends it in the pipeline of the transaction's next round
 * trip (the next statement, or the COMMIT), whose call then reports its failure; SQLite runs it
 * at once. Parameters are copied; the statement is prepared when queued, so it cannot name a
 * table a queued statement creates. 0, -EINVAL outside a transaction, or the store's error. */
int gh_conn_exec_deferred(gh_conn_t *c, const char *sql, const gh_val_t *params, int nparams);
/* Run one statement then COMMIT: on PostgreSQL one pipeline, one round trip. On an error of
 * the statement the transaction stays open (aborted) for the caller's rollback. */
int gh_conn_exec_commit(gh_conn_t *c, const char *sql, const gh_val_t *params, int nparams,
                        int64_t *rows_affected);

typedef int (*gh_tx_fn)(gh_conn_t *c, void *ud);
typedef struct gh_tx_opts_s {
	int flags;              /* GH_TX_*; default GH_TX_READ, so writers pass GH_TX_WRITE */
	unsigned max_attempts;  /* 0 -> 10 */
	int acquire_timeout_ms; /* 0 -> 5000; < 0 forever */
} gh_tx_opts_t;
/* Run fn in a transaction on a pooled connection: begin, fn, commit. When fn or the commit
 * returns -EAGAIN (serialization failure, deadlock, busy, or a compare-and-swap the caller lost
 * and wants retried) the transaction is rolled back and run again, with jittered backoff, up to
 * max_attempts times. Any other failure of fn rolls back and is returned as is. fn must not
 * commit or roll back itself, and must be safe to run more than once. -EIO is never retried:
 * a commit whose answer was lost may have happened. opts may be NULL. */
int gh_store_tx(gh_store_t *s, gh_tx_fn fn, void *ud, const gh_tx_opts_t *opts);

#endif
