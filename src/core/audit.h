/* audit: append-only, hash-chained audit log (conventions.md "Append-only audit").
 *
 * Each chain (one per service: "numbering", "cdr", ...) is a sequence of rows seq = 1, 2, ...
 * in table gh_audit. Row n stores
 *     hash_n = hex(SHA-256(canonical JSON of {action, actor, chain, entity_id, entity_type,
 *                                              payload, prev_hash, request_id, seq, tenant_id,
 *                                              ts_ms}))
 * with prev_hash = hash_{n-1} (64 zeros for row 1) and payload the stored canonical JSON text,
 * so any change of any stored byte changes the hash. gh_audit_head keeps (seq, hash) of the last
 * row: appends lock it (PostgreSQL: SELECT ... FOR UPDATE; SQLite: the write transaction), so
 * concurrent writers serialise per chain, and verify notices a truncated tail.
 *
 * What the chain proves: any edit, deletion, insertion or reordering of rows by someone who does
 * not also recompute every later hash and the head. A writer with full database access can
 * rewrite the whole tail; that is caught by comparing the head with a copy kept elsewhere (the
 * daily verify logs it; exports carry it). */
#ifndef GH_AUDIT_H
#define GH_AUDIT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define GH_AUDIT_HASH_LEN 64

typedef struct gh_audit_rec_s {
	int64_t ts_ms;      /* when it happened (the caller's clock) */
	const char *actor;  /* "user:<sub>", "service:<cn>", "system" */
	const char *action; /* "number.reserve", "number.transition_refused", ... */
	const char *entity_type;
	const char *entity_id;
	const char *tenant_id;  /* may be NULL */
	const char *request_id; /* may be NULL */
	const json_t *payload;  /* may be NULL ({}); serialised canonically */
} gh_audit_rec_t;

/* Append n records to chain inside the caller's write transaction on c (they commit or roll
 * back with it). *last_seq (may be NULL) gets the seq of the last row.
 *
 * Every writer of a chain locks its head until commit, so the head is the one row all of a
 * service's transactions queue on. An append of up to 16 records without last_seq is therefore
 * kept (records copied) and written at commit, by a store commit hook: the head is locked then,
 * and the rows, the head and the COMMIT go out together (one round trip on PostgreSQL). Heads of
 * several chains are locked in chain-name order; a larger append, or one asking for last_seq,
 * is written at once, after what the transaction kept, so each chain keeps the order of the
 * calls. Rows kept for commit are not visible to the transaction's own queries before it ends.
 *
 * Returns 0, -EINVAL (no transaction open, missing field, payload not serialisable), -EAGAIN
 * (lost a race creating the chain: retry the transaction, as gh_store_tx does), or the store's
 * error; an error of the write at commit fails the commit. */
int gh_audit_append(gh_conn_t *c, const char *chain, const gh_audit_rec_t *recs, size_t n,
                    int64_t *last_seq);

typedef struct gh_audit_verify_s {
	int ok;                /* 1 when the whole chain checks */
	int64_t rows;          /* rows checked */
	int64_t first_bad_seq; /* 0 when ok */
	char head_hash[GH_AUDIT_HASH_LEN + 1];
	char reason[160];
} gh_audit_verify_t;

/* Walk chain from seq 1 and check every row: contiguous seq, prev_hash links, recomputed hash,
 * and the head. Reads in pages, in a read transaction, so memory stays flat. Returns 0 when
 * the walk completed (the verdict is in *out), or the store's error. */
int gh_audit_verify(gh_store_t *s, const char *chain, gh_audit_verify_t *out);

/* The row hash of the canonical form above, into out[65]. Exposed for tests and tools. */
int gh_audit_row_hash(const char *chain, int64_t seq, const gh_audit_rec_t *rec,
                      const char *payload_text, const char *prev_hash, char out[65]);

#endif
