/* migrate: forward-only migration runner. (Interface of the embedded SQL bundle.) */
#ifndef GH_MIGRATE_H
#define GH_MIGRATE_H

#include <stddef.h>

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

#endif
