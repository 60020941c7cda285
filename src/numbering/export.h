/* export: the monthly regulator export (numbering spec, "Regulator export"; issue 4 item 5).
 *
 * For a month M (UTC) it produces four files:
 *   inventory.csv   every number registered at the end of M with its state, operator, tenant,
 *                   lease and quarantine at that instant
 *   events.csv      every lifecycle event of M
 *   manifest.json   canonical JSON: month, period, the audit-chain segment covered (first and
 *                   last seq, hash of the last row), per CSV its row count, byte count and
 *                   SHA-256, the signing key's id and algorithm
 *   manifest.sig    the detached signature (raw bytes) over the exact manifest bytes
 * and writes them to the write-once archive as numbering/regulator/<M>/<file>, kept
 * retention_years after the month's end, then records the export (table num_exports) and emits
 * numbering.regulator.export.generated.v1 through the outbox, once. docs/numbering.md documents
 * the columns.
 *
 * Where the data comes from: the audit chain "numbering" alone, replayed. Every transition is
 * an audit row with its payload (repo.c), and the chain is append-only and hash-linked, so the
 * state of every number at any past point of the chain is a pure function of a chain prefix.
 * Current rows (num_numbers, leases) are never read: they change after the month.
 *
 * Which rows belong to M: not "ts_ms < end of M", because a row can be committed after the
 * month with an earlier timestamp (a transaction that started at 23:59:59.999, a lagging
 * clock), and regenerating the month later would then include it and give other bytes. M's
 * boundary is a chain position: B(t) = (the seq of the first row stamped at or after t) - 1.
 * Once such a row exists, B(t) never changes again. The inventory is the replay of rows
 * 1..B(end of M), the events are rows B(start of M)+1..B(end of M); a row stamped in M but
 * committed after the boundary is reported with the next month, in chain order. A real (not
 * dry-run) generation first closes the month: when no row is stamped at or after the month's
 * end yet (a quiet system), it appends one, "chain.month_closed" (in a write transaction, which
 * serialises with every other append). A dry run writes nothing; for a month not yet closed it
 * covers the chain as it stands (reported as month_closed = false).
 *
 * Byte identity: the files depend only on the chain prefix and the signing key. CSV and JSON
 * formatting are fixed (csv.h writer, CRLF; canonical JSON), rows are sorted (inventory by
 * identifier bytes, events by seq), and Ed25519 signatures are deterministic (RFC 8032), so a
 * regeneration gives the same bytes and the archive takes it as an idempotent put. Other bytes
 * for an archived month mean the chain or the key changed: the archive refuses them (-EEXIST,
 * CONFLICT) and the refusal is logged as an error.
 *
 * Thread-safe: an export keeps no mutable state; concurrent generations of one month write the
 * same bytes and only one of them records and emits. */
#ifndef NUM_EXPORT_H
#define NUM_EXPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "gh-core.h"

#define NUM_EXPORT_CHAIN     "numbering"
#define NUM_EXPORT_EVENT     "numbering.regulator.export.generated.v1"
#define NUM_EXPORT_PREFIX    "numbering/regulator/"
#define NUM_EXPORT_FORMAT    "ghasi.numbering.regulator-export.v1"
#define NUM_EXPORT_FILES     4
#define NUM_EXPORT_MONTH_LEN 8 /* "2026-10" + NUL */

/* The file names, in archive order (the manifest and its signature last). */
extern const char *const num_export_file_names[NUM_EXPORT_FILES];

typedef struct num_export_s num_export_t;

typedef struct num_export_opts_s {
	gh_store_t *store;        /* migrated (sql/core, sql/numbering) */
	gh_clock_t *clock;        /* NULL: real time */
	gh_signer_t *signer;      /* NULL: every generation is FAILED_PRECONDITION */
	gh_archive_t *archive;    /* NULL: dry runs only */
	int64_t retention_years;  /* archive retention after the month's end; 0: 7 */
	gh_outbox_relay_t *relay; /* kicked after the event; may be NULL */
	gh_metrics_t *metrics;    /* numbering_regulator_exports_total{result}; may be NULL */
} num_export_opts_t;

/* A new exporter (talloc child of ctx; it borrows everything in opts). 0, -EINVAL, -ENOMEM. */
int num_export_new(void *ctx, const num_export_opts_t *opts, num_export_t **out);

/* Parse "YYYY-MM" (2000-01 .. 9999-12, exactly 7 characters) into the month's first instant and
 * the next month's first instant, in ms UTC. 0 or -EINVAL. */
int num_export_month_parse(const char *month, int64_t *start_ms, int64_t *end_ms);
/* The month before the one containing now_ms, as "YYYY-MM" (the monthly job's month). */
void num_export_prev_month(int64_t now_ms, char out[NUM_EXPORT_MONTH_LEN]);

typedef struct num_export_file_s {
	const char *name; /* one of num_export_file_names */
	char *data;       /* talloc child of the result; NUL-terminated for convenience */
	size_t len;
	char sha256[GH_SHA256_HEX_LEN + 1];
	int64_t rows; /* CSV data rows (without the header); -1 for the manifest and signature */
} num_export_file_t;

typedef struct num_export_result_s {
	char month[NUM_EXPORT_MONTH_LEN];
	bool dry_run;
	bool month_closed; /* the chain holds a row stamped at or after the month's end */
	bool archived;     /* the four files are in the archive (new or already there) */
	bool recorded;     /* this call recorded the export and emitted the event */
	int64_t first_seq; /* audit rows of the month's events: first_seq .. last_seq */
	int64_t last_seq;  /* == the chain position of the inventory */
	char chain_hash[GH_AUDIT_HASH_LEN + 1];
	char event_id[37]; /* when recorded */
	num_export_file_t files[NUM_EXPORT_FILES];
} num_export_result_t;

/* Generate month (see top). dry_run: build and return the files only (no archive, no audit
 * row, no record, no event). actor and request_id go to the audit rows ("admin:<sub>",
 * "system:export"). *out is a talloc child of ctx.
 * Returns 0, or negative errno with err filled:
 *   INVALID_ARGUMENT (-EINVAL)     bad month, or a month that has not ended yet
 *   FAILED_PRECONDITION (-EPROTO)  no signing key, or no archive for a real generation
 *   CONFLICT (-EEXIST)             the archive holds other bytes for this month (the chain or
 *                                  the key changed since it was archived)
 *   INTERNAL (-EBADMSG)            an audit row the replay cannot read
 *   UNAVAILABLE (-EIO)             the database or the archive failed */
int num_export_generate(num_export_t *x, const char *month, bool dry_run, const char *actor,
                        const char *request_id, void *ctx, num_export_result_t **out,
                        gh_err_t *err);

/* The monthly job: generate the month before now_ms's month (actor "system:export"). 0 or a
 * negative errno (logged, counted). An already archived month is an idempotent success. */
int num_export_run_monthly(num_export_t *x, int64_t now_ms);

/* Recorded exports as JSON: list = {"exports":[...]} newest month first; get = one export
 * {id, month, created_at, actor, audit_chain{chain, first_seq, last_seq, head_hash},
 * files[{name, archive_name, sha256, bytes, rows}], key_id, algorithm, event_id}.
 * get: NOT_FOUND (-ENOENT) for a month never recorded. New references. */
int num_export_list(num_export_t *x, json_t **out, gh_err_t *err);
int num_export_get(num_export_t *x, const char *month, json_t **out, gh_err_t *err);
/* One archived file of a recorded month, verified by the archive against its SHA-256;
 * *data is a talloc child of ctx. NOT_FOUND for an unknown month or file name. */
int num_export_file(num_export_t *x, const char *month, const char *name, void *ctx, void **data,
                    size_t *len, gh_err_t *err);

/* Verify an export on disk: manifest_path's signature (manifest.sig next to it, or sig_path)
 * with the public key in key_pem_path (required: a verifier must use a key obtained out of
 * band, never one that came with the files), the key id, then every listed file next to the
 * manifest (byte count and SHA-256). Writes one line per check to out (may be NULL).
 * Returns 0 all good; -EBADMSG a mismatch (a file, the signature, the key id); -EINVAL a
 * manifest that is not an export manifest, or a bad key; -ENOENT, -EIO. */
int num_export_verify(const char *manifest_path, const char *sig_path, const char *key_pem_path,
                      FILE *out);
/* `ghasi numbering verify-export [--key PUB.pem] [--sig FILE] FILE`: FILE is manifest.json or
 * any file next to it. Exit status: 0 verified, 1 mismatch, 2 usage or unreadable input. */
int num_export_cli_verify(int argc, char **argv);

/* Build the service's exporter from its configuration (numbering.export_*, archive.dir) into
 * s->exp: the signer (PEM file or PKCS#11 token; none configured is a warning, and every
 * generation then fails), the archive (none: dry runs only). A configured key or archive that
 * cannot be opened fails the start. 0 or negative errno (logged). */
struct num_svc_s;
int num_export_setup(struct num_svc_s *s);

/* HTTP handlers (ud = num_svc_t *), routed in http.c with JWT and these roles. */
#define NUM_EXPORT_ROLES (GH_ROLE_PLATFORM_ADMIN | GH_ROLE_COMPLIANCE)
int num_export_h_create(gh_http_req_t *req, void *ud);
int num_export_h_list(gh_http_req_t *req, void *ud);
int num_export_h_get(gh_http_req_t *req, void *ud);
int num_export_h_file(gh_http_req_t *req, void *ud);
/* The leased monthly job (ud = num_svc_t *). */
int num_export_job(void *ud, int64_t now_ms);

#endif
