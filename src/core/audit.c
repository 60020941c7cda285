/* audit: hash-chained audit log. See audit.h for the chain's definition and guarantees. */
#include "audit.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

static const char genesis[GH_AUDIT_HASH_LEN + 1] =
    "0000000000000000000000000000000000000000000000000000000000000000";

static void hex(const unsigned char *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

static json_t *str_or_null(const char *s) { return s ? json_string(s) : json_null(); }

int gh_audit_row_hash(const char *chain, int64_t seq, const gh_audit_rec_t *rec,
                      const char *payload_text, const char *prev_hash, char out[65])
{
	json_t *row = json_object();
	if (!row)
		return -ENOMEM;
	json_object_set_new(row, "action", json_string(rec->action));
	json_object_set_new(row, "actor", json_string(rec->actor));
	json_object_set_new(row, "chain", json_string(chain));
	json_object_set_new(row, "entity_id", json_string(rec->entity_id));
	json_object_set_new(row, "entity_type", json_string(rec->entity_type));
	json_object_set_new(row, "payload", json_string(payload_text));
	json_object_set_new(row, "prev_hash", json_string(prev_hash));
	json_object_set_new(row, "request_id", str_or_null(rec->request_id));
	json_object_set_new(row, "seq", json_integer(seq));
	json_object_set_new(row, "tenant_id", str_or_null(rec->tenant_id));
	json_object_set_new(row, "ts_ms", json_integer(rec->ts_ms));
	/* json_string() refuses invalid UTF-8: such a row cannot be hashed canonically */
	if (json_object_size(row) != 11) {
		json_decref(row);
		return -EINVAL;
	}
	char *text = json_dumps(row, JSON_SORT_KEYS | JSON_COMPACT);
	json_decref(row);
	if (!text)
		return -ENOMEM;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	int ok = EVP_Digest(text, strlen(text), md, &mdlen, EVP_sha256(), NULL);
	free(text);
	if (!ok)
		return -EIO;
	hex(md, mdlen, out);
	return 0;
}

/* Lock and read the head of chain; creates it (seq 0) on first use. */
static int head_lock(gh_conn_t *c, const char *chain, int64_t *seq, char hash[65])
{
	const char *sql = gh_conn_backend(c) == GH_STORE_PG
	                      ? "SELECT seq, hash FROM gh_audit_head WHERE chain = $1 FOR UPDATE"
	                      : "SELECT seq, hash FROM gh_audit_head WHERE chain = $1";
	gh_rows_t *r;
	int rc = gh_conn_query_one(c, sql, (gh_val_t[]){GH_TEXT(chain)}, 1, &r);
	if (rc == 0) {
		*seq = gh_rows_i64(r, 0);
		snprintf(hash, 65, "%s", gh_rows_text(r, 1));
		gh_rows_close(r);
		return 0;
	}
	if (rc != -ENOENT)
		return rc;
	rc = gh_conn_exec(c, "INSERT INTO gh_audit_head (chain, seq, hash) VALUES ($1, 0, $2)",
	                  (gh_val_t[]){GH_TEXT(chain), GH_TEXT(genesis)}, 2, NULL);
	if (rc == -EEXIST)
		return -EAGAIN; /* another transaction created it first: retry ours */
	if (rc < 0)
		return rc;
	*seq = 0;
	memcpy(hash, genesis, 65);
	return 0;
}

int gh_audit_append(gh_conn_t *c, const char *chain, const gh_audit_rec_t *recs, size_t n,
                    int64_t *last_seq)
{
	if (!gh_conn_in_tx(c) || !chain || !*chain)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		const gh_audit_rec_t *r = &recs[i];
		if (!r->actor || !r->action || !r->entity_type || !r->entity_id)
			return -EINVAL;
	}
	int64_t seq = 0;
	char prev[65];
	int rc = head_lock(c, chain, &seq, prev);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		const gh_audit_rec_t *r = &recs[i];
		char *payload = r->payload ? json_dumps(r->payload, JSON_SORT_KEYS | JSON_COMPACT)
		                           : strdup("{}");
		if (!payload) {
			rc = -EINVAL;
			goto out;
		}
		char hash[65];
		seq++;
		rc = gh_audit_row_hash(chain, seq, r, payload, prev, hash);
		if (rc == 0)
			rc = gh_conn_exec(
			    c,
			    "INSERT INTO gh_audit (chain, seq, ts_ms, actor, action, entity_type, "
			    "entity_id, tenant_id, request_id, payload, prev_hash, hash) VALUES "
			    "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
			    (gh_val_t[]){
			        GH_TEXT(chain), GH_I64(seq), GH_I64(r->ts_ms), GH_TEXT(r->actor),
			        GH_TEXT(r->action), GH_TEXT(r->entity_type), GH_TEXT(r->entity_id),
			        GH_TEXT_OR_NULL(r->tenant_id), GH_TEXT_OR_NULL(r->request_id),
			        GH_TEXT(payload), GH_TEXT(prev), GH_TEXT(hash)},
			    12, NULL);
		free(payload);
		if (rc < 0)
			goto out;
		memcpy(prev, hash, 65);
	}
	rc = gh_conn_exec(c, "UPDATE gh_audit_head SET seq = $1, hash = $2 WHERE chain = $3",
	                  (gh_val_t[]){GH_I64(seq), GH_TEXT(prev), GH_TEXT(chain)}, 3, NULL);
	if (rc == 0 && last_seq)
		*last_seq = seq;
out:
	return rc;
}

enum { VERIFY_PAGE = 5000 };

static void verdict(gh_audit_verify_t *out, int64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void verdict(gh_audit_verify_t *out, int64_t seq, const char *fmt, ...)
{
	out->ok = 0;
	out->first_bad_seq = seq;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(out->reason, sizeof(out->reason), fmt, ap);
	va_end(ap);
}

static int verify_in_tx(gh_conn_t *c, void *ud)
{
	gh_audit_verify_t *out = ((void **)ud)[0];
	const char *chain = ((void **)ud)[1];
	char prev[65];
	memcpy(prev, genesis, 65);
	int64_t expect = 1;
	out->rows = 0;
	out->ok = 1;
	for (;;) {
		gh_rows_t *r;
		int rc = gh_conn_query(
		    c,
		    "SELECT seq, ts_ms, actor, action, entity_type, entity_id, tenant_id, "
		    "request_id, payload, prev_hash, hash FROM gh_audit WHERE chain = $1 AND seq "
		    ">= $2 "
		    "ORDER BY seq LIMIT $3",
		    (gh_val_t[]){GH_TEXT(chain), GH_I64(expect), GH_I64(VERIFY_PAGE)}, 3, &r);
		if (rc < 0)
			return rc;
		int got = 0;
		while ((rc = gh_rows_next(r)) == 1) {
			got++;
			int64_t seq = gh_rows_i64(r, 0);
			gh_audit_rec_t rec = {
			    .ts_ms = gh_rows_i64(r, 1),
			    .actor = gh_rows_text(r, 2),
			    .action = gh_rows_text(r, 3),
			    .entity_type = gh_rows_text(r, 4),
			    .entity_id = gh_rows_text(r, 5),
			    .tenant_id = gh_rows_isnull(r, 6) ? NULL : gh_rows_text(r, 6),
			    .request_id = gh_rows_isnull(r, 7) ? NULL : gh_rows_text(r, 7),
			};
			const char *payload = gh_rows_text(r, 8);
			const char *prev_hash = gh_rows_text(r, 9);
			const char *hash = gh_rows_text(r, 10);
			char calc[65];
			if (seq != expect) {
				verdict(out, expect, "row %lld is missing (next row is %lld)",
				        (long long)expect, (long long)seq);
			} else if (strcmp(prev_hash, prev) != 0) {
				verdict(out, seq, "prev_hash does not link to the previous row");
			} else if (gh_audit_row_hash(chain, seq, &rec, payload, prev_hash, calc) <
			               0 ||
			           strcmp(calc, hash) != 0) {
				verdict(out, seq, "row content does not match its hash");
			}
			if (!out->ok)
				break;
			memcpy(prev, hash, 65);
			expect++;
			out->rows++;
		}
		gh_rows_close(r);
		if (rc < 0)
			return rc;
		if (!out->ok || got < VERIFY_PAGE)
			break;
	}
	memcpy(out->head_hash, prev, 65);
	if (!out->ok)
		return 0;
	gh_rows_t *h;
	int rc = gh_conn_query_one(c, "SELECT seq, hash FROM gh_audit_head WHERE chain = $1",
	                           (gh_val_t[]){GH_TEXT(chain)}, 1, &h);
	if (rc == -ENOENT) {
		if (out->rows > 0)
			verdict(out, 1, "chain head is missing");
		return 0;
	}
	if (rc < 0)
		return rc;
	int64_t head_seq = gh_rows_i64(h, 0);
	if (head_seq != out->rows || strcmp(gh_rows_text(h, 1), prev) != 0) {
		verdict(out, head_seq > out->rows ? out->rows + 1 : head_seq + 1,
		        "chain head (seq %lld) does not match the last row (seq %lld)",
		        (long long)head_seq, (long long)out->rows);
	}
	gh_rows_close(h);
	return 0;
}

int gh_audit_verify(gh_store_t *s, const char *chain, gh_audit_verify_t *out)
{
	memset(out, 0, sizeof(*out));
	void *ud[2] = {out, (void *)chain};
	int rc = gh_store_tx(s, verify_in_tx, ud, &(gh_tx_opts_t){.flags = GH_TX_READ});
	if (rc == 0 && !out->ok)
		gh_log(GH_LOG_ERROR, "audit chain verification failed", "chain", chain, "reason",
		       out->reason, NULL);
	return rc;
}
