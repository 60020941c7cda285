/* benchutil: what the benchmarks share: a monotonic clock, a temp SQLite database, a store with
 * the core schema, removing a benchmark's JetStream stream, and the one parseable result line. */
#ifndef GH_BENCHUTIL_H
#define GH_BENCHUTIL_H

#include "store.h"

/* Seconds on CLOCK_MONOTONIC. */
double bench_now_s(void);

/* A SQLite database file in a fresh temp dir: /tmp/<name>.XXXXXX/bench.db. */
typedef struct bench_tmpdb_s {
	char dir[128];
	char path[256];
	char url[300]; /* "sqlite://<path>" */
} bench_tmpdb_t;

/* Creates the dir; 0 or a negative errno (reported on stderr). */
int bench_tmpdb_make(bench_tmpdb_t *t, const char *name);
/* Removes the database with its -wal and -shm files, then the dir. */
void bench_tmpdb_remove(const bench_tmpdb_t *t);

/* gh_store_open, then the core migrations when migrate is set. Failures are reported on stderr
 * as "<name>: ..."; returns 0 or a negative errno, *out NULL on failure. The store belongs to
 * ctx (NULL: close it with gh_store_close). */
int bench_store_open(void *ctx, const char *name, const char *url, const gh_store_opts_t *opts,
                     int migrate, gh_store_t **out);

/* A fresh PostgreSQL database named <prefix>_<pid>_<n> on the server of GH_TEST_PG_ADMIN_URL:
 * its URL (malloc'd), or NULL without that variable or when CREATE DATABASE fails (reported on
 * stderr). */
char *bench_pgdb_make(const char *prefix);
/* Drops a database bench_pgdb_make made (WITH (FORCE)) and frees url, so that no benchmark
 * database outlives its run (each left behind adds to autovacuum's rounds and slows the next
 * benchmarks); errors ignored. NULL is a no-op. */
void bench_pgdb_drop(char *url);

/* A free TCP port on 127.0.0.1 (bound once and released), or 0. */
uint16_t bench_free_port(void);
/* The ghasi binary a benchmark starts: $GHASI_BIN, else ../src/ghasi/ghasi next to the running
 * benchmark (build/bench/ -> build/src/ghasi/); NULL when /proc/self/exe cannot be read. */
const char *bench_ghasi_bin(void);

/* Deletes a JetStream stream so that no benchmark stream outlives its run; errors ignored. */
void bench_nats_drop_stream(const char *url, const char *stream);

/* Prints "<name> <fields>" as one line on stdout and flushes it, so that a line already
 * printed survives a later crash of the run. */
void bench_report(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
