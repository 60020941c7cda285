/* import: signed MNO CSV imports, the operators' signing keys and the MNO contracts (numbering
 * spec, "MNO CSV import"; admin API imports, signing-keys, contracts). docs/numbering.md
 * "Imports" tells the decisions; the row rules are import_rows.h.
 *
 * An upload is verified, then imported, then reported, and always recorded:
 *   1. the detached signature is verified over the exact file bytes with each signing key of
 *      the operator valid at upload time (the key's own algorithm); the first that verifies is
 *      recorded. Missing or bad signature, no key, or a signature only a key outside its
 *      validity verifies: the batch is REJECTED with that reason and nothing is imported;
 *   2. a file already imported by the operator (same SHA-256, batch not REJECTED) returns that
 *      batch again and changes nothing;
 *   3. rows are read in one streaming pass (core csv over the bytes in memory or mmap'd),
 *      keeping per valid row only its 64-bit key, line and position (24 bytes); duplicates
 *      inside the file are found by sorting those keys: every occurrence is refused (which
 *      one is right is not ours to guess);
 *   4. in ONE write transaction: the batch row; the valid keys checked against the database in
 *      key order (numbers of another operator: HELD_BY_OTHER_OPERATOR; numbers the operator
 *      already has: skipped, idempotent, so a corrected file can be re-sent whole); the new
 *      numbers inserted AVAILABLE in key order in batches of 1000 (each row read again at its
 *      position, never held); the error report; the batch counts and status; ONE audit row
 *      (file SHA-256, counts, key id) and the events numbering.import.completed.v1 and
 *      num.cache.invalidate.v1 {"import_batch"} (every replica's index stops answering
 *      NOT_REGISTERED by itself for keys it has not seen).
 * Status: ACCEPTED without refused rows; PARTIAL with some; REJECTED for the signature, the
 * header, or when no row is usable. numbering_import_rows_total{result=imported|skipped|
 * rejected} counts rows. */
#ifndef NUM_IMPORT_H
#define NUM_IMPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gh-core.h"
#include "import_rows.h"
#include "multipart.h"

typedef enum {
	NUM_IMPORT_ACCEPTED,
	NUM_IMPORT_PARTIAL,
	NUM_IMPORT_REJECTED,
} num_import_status_t;

extern const char *const num_import_status_names[]; /* "ACCEPTED", "PARTIAL", "REJECTED" */

typedef struct num_import_req_s {
	const char *operator_id;
	const char *contract_id; /* NULL: rows name their contract by contract_ref, or none */
	const char *data;        /* the exact file bytes (borrowed) */
	size_t len;
	const void *sig; /* the detached signature, raw or base64; NULL/0 = missing */
	size_t sig_len;
	const char *file_name;  /* for the record; may be NULL */
	const char *actor;      /* audit actor: "user:<sub>", "cli:<user>" */
	const char *request_id; /* may be NULL */
	const char *traceparent;
	int64_t now_ms; /* upload time: key validity, prefixes, timestamps */
} num_import_req_t;

/* Run an upload (see top) on store (migrated with sql/numbering). metrics may be NULL.
 * Returns 0 with *batch (new reference: the batch resource, as GET returns it) and *status,
 * *replayed (may be NULL) telling whether it is an earlier batch of the same file; or:
 *   -ENOENT  NOT_FOUND: no such operator or contract (err.field names which)
 *   -EINVAL  INVALID_ARGUMENT: the contract belongs to another operator, or a bad argument
 *   -EPROTO  FAILED_PRECONDITION: the contract has ended
 *   -EIO     UNAVAILABLE: the database failed
 *   -ENOMEM */
int num_import_run(gh_store_t *store, gh_metrics_t *metrics, const num_import_req_t *req,
                   json_t **batch, num_import_status_t *status, bool *replayed, gh_err_t *err);

/* The batch resource {id, operator_id, contract_id, status, reason?, sha256, size_bytes,
 * file_name?, key_id?, algorithm?, rows_total, rows_imported, rows_skipped, rows_rejected,
 * errors_url, created_at, actor}. 0, -ENOENT, -EIO. */
int num_import_get(gh_store_t *store, const char *id, json_t **out, gh_err_t *err);

/* Error report page: rows with seq > after_seq, at most limit, as
 * {"errors": [{line, field, code, reason}], "next_page_token"?}. 0, -ENOENT, -EIO. */
int num_import_errors_page(gh_store_t *store, const char *id, int64_t after_seq, int limit,
                           json_t **out, gh_err_t *err);

/* ---- HTTP (ud = num_svc_t), routes in http.c ------------------------------------------- */

int num_h_signing_key_add(gh_http_req_t *req, void *ud);
int num_h_signing_keys_list(gh_http_req_t *req, void *ud);
int num_h_contracts_list(gh_http_req_t *req, void *ud);
int num_h_contract_create(gh_http_req_t *req, void *ud);
int num_h_import_create(gh_http_req_t *req, void *ud);
int num_h_import_get(gh_http_req_t *req, void *ud);
int num_h_import_errors(gh_http_req_t *req, void *ud);

#endif
