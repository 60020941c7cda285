/* migrate: forward-only migration runner.
 *
 * A service's migrations are sql/<service>/NNNN_name.sql, numbered from 0001 without gaps,
 * embedded into the binary. Each is applied in its own transaction together with its row in
 * schema_migrations(service, version, name, checksum, applied_at); checksum is the SHA-256 hex
 * of the SQL text applied. A migration whose text changed after it was applied is refused, as
 * are gaps and duplicate numbers. Concurrent runners (replicas starting together) are safe:
 * PostgreSQL serialises them on a transaction advisory lock, SQLite on BEGIN IMMEDIATE. */
#ifndef GH_MIGRATE_H
#define GH_MIGRATE_H

#include <stddef.h>

#include "err.h"
#include "store.h"

/* One migration file, compiled in by scripts/embed_sql.py from sql/<service>/NNNN_name.sql.
 * dialect is NULL for files shared by both backends, "pg" or "sqlite" for NNNN_name.pg.sql and
 * NNNN_name.sqlite.sql. The array gh_sql_files ends with an all-NULL row. */
typedef struct gh_sql_file_s {
	const char *service;
	const char *name;
	const char *dialect;
	const char *sql;
} gh_sql_file_t;

extern const gh_sql_file_t gh_sql_files[];

/* Apply the pending migrations of service from files (an array ending with a row whose
 * service is NULL; other services' rows are ignored; of a version's variants the one for the
 * store's backend is used: dialect NULL or "pg"/"sqlite"). Statements run as one script, so a
 * migration must not contain statements that refuse a transaction (CREATE INDEX CONCURRENTLY).
 * Returns 0, or negative errno with err filled:
 *   -EINVAL  bad file set (malformed name, gap, duplicate number, no variant for the backend)
 *   -EPROTO  an applied migration changed (FAILED_PRECONDITION naming both checksums)
 *   other    the database failed (the message names the migration). */
int gh_migrate_run(gh_store_t *s, const char *service, const gh_sql_file_t *files, gh_err_t *err);

typedef struct gh_migration_s {
	int version;
	char name[96];       /* "0001_init" */
	char checksum[65];   /* of the file text for this backend */
	int applied;         /* recorded in schema_migrations */
	int changed;         /* applied with another checksum */
	char applied_at[32]; /* RFC 3339, "" when pending */
} gh_migration_t;

/* The service's migrations in order with their state (*out is a talloc array under ctx, *n its
 * length). Does not write. Returns 0 or negative errno (as gh_migrate_run). */
int gh_migrate_status(gh_store_t *s, const char *service, const gh_sql_file_t *files, void *ctx,
                      gh_migration_t **out, size_t *n, gh_err_t *err);

#endif
