/* import: signed MNO CSV imports, signing keys, contracts. See import.h for the contract and
 * docs/numbering.md "Imports" for the decisions. */
#include "import.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>

#include "service.h"

#define CHAIN         "numbering"
#define SOURCE        "ghasi/numbering"
#define EV_COMPLETED  "numbering.import.completed.v1"
#define EV_INVALIDATE "num.cache.invalidate.v1"
#define ADMIN_PATH    "/v1/admin/numbering"
#define LOOKUP_CHUNK  500  /* keys per existence query */
#define INSERT_CHUNK  1000 /* numbers per gh_conn_exec_batch */
#define ERROR_CHUNK   1000
#define KEYS_MAX      64 /* signing keys of one operator considered */
#define OPS_MAX       256
#define CONTRACTS_MAX 4096
#define ID_MAX        64
#define IMPORT_MAX    (64u << 20) /* bytes of the file part over HTTP */

const char *const num_import_status_names[] = {"ACCEPTED", "PARTIAL", "REJECTED", NULL};

static const gh_tx_opts_t tx_write = {.flags = GH_TX_WRITE};

static int db_fail(gh_err_t *err, int rc, const char *what)
{
	if (err && err->code != GH_OK)
		return gh_code_errno(err->code);
	gh_log(GH_LOG_ERROR, "numbering import: database failure", "what", what, "errno",
	       strerror(rc < 0 ? -rc : EIO), NULL);
	return gh_err_set(err, GH_E_UNAVAILABLE, NULL, "the numbering database failed");
}

static json_t *time_json(int64_t ms)
{
	char buf[25];
	gh_time_format(ms, buf);
	return json_string(buf);
}

/* Ids of contracts and given batch ids: 1..64 of [A-Za-z0-9._:-]. */
static bool id_ok(const char *s)
{
	size_t n = 0;
	for (; s && s[n]; n++) {
		char c = s[n];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == ':' || c == '-'))
			return false;
	}
	return n >= 1 && n <= ID_MAX;
}

/* ---- batches as JSON ------------------------------------------------------------------- */

#define BATCH_COLS                                                                              \
	"id, operator_id, contract_id, status, reason, sha256, size_bytes, file_name, key_id, " \
	"algorithm, rows_total, rows_imported, rows_skipped, rows_rejected, created_ms, actor"

static json_t *batch_json(gh_rows_t *r)
{
	const char *id = gh_rows_text(r, 0);
	json_t *o = json_object();
	if (!o)
		return NULL;
	json_object_set_new(o, "id", json_string(id));
	json_object_set_new(o, "operator_id", json_string(gh_rows_text(r, 1)));
	json_object_set_new(o, "contract_id",
	                    gh_rows_isnull(r, 2) ? json_null() : json_string(gh_rows_text(r, 2)));
	json_object_set_new(o, "status", json_string(gh_rows_text(r, 3)));
	if (!gh_rows_isnull(r, 4))
		json_object_set_new(o, "reason", json_string(gh_rows_text(r, 4)));
	json_object_set_new(o, "sha256", json_string(gh_rows_text(r, 5)));
	json_object_set_new(o, "size_bytes", json_integer(gh_rows_i64(r, 6)));
	if (!gh_rows_isnull(r, 7))
		json_object_set_new(o, "file_name", json_string(gh_rows_text(r, 7)));
	if (!gh_rows_isnull(r, 8))
		json_object_set_new(o, "key_id", json_string(gh_rows_text(r, 8)));
	if (!gh_rows_isnull(r, 9))
		json_object_set_new(o, "algorithm", json_string(gh_rows_text(r, 9)));
	json_object_set_new(o, "rows_total", json_integer(gh_rows_i64(r, 10)));
	json_object_set_new(o, "rows_imported", json_integer(gh_rows_i64(r, 11)));
	json_object_set_new(o, "rows_skipped", json_integer(gh_rows_i64(r, 12)));
	json_object_set_new(o, "rows_rejected", json_integer(gh_rows_i64(r, 13)));
	char url[160];
	snprintf(url, sizeof url, ADMIN_PATH "/imports/%s/errors", id);
	json_object_set_new(o, "errors_url", json_string(url));
	json_object_set_new(o, "created_at", time_json(gh_rows_i64(r, 14)));
	json_object_set_new(o, "actor", json_string(gh_rows_text(r, 15)));
	return o;
}

static int batch_read(gh_conn_t *c, const char *id, json_t **out)
{
	gh_rows_t *r;
	int rc = gh_conn_query_one(c, "SELECT " BATCH_COLS " FROM num_import_batches WHERE id = $1",
	                           (gh_val_t[]){GH_TEXT(id)}, 1, &r);
	if (rc < 0)
		return rc;
	*out = batch_json(r);
	gh_rows_close(r);
	return *out ? 0 : -ENOMEM;
}

int num_import_get(gh_store_t *store, const char *id, json_t **out, gh_err_t *err)
{
	gh_conn_t *c;
	int rc = gh_store_acquire(store, 5000, &c);
	if (rc < 0)
		return db_fail(err, rc, "acquire");
	rc = batch_read(c, id, out);
	gh_store_release(c);
	if (rc == -ENOENT)
		return gh_err_set(err, GH_E_NOT_FOUND, NULL, "no such import batch");
	return rc < 0 ? db_fail(err, rc, "batch read") : 0;
}

int num_import_errors_page(gh_store_t *store, const char *id, int64_t after_seq, int limit,
                           json_t **out, gh_err_t *err)
{
	gh_conn_t *c;
	gh_rows_t *r;
	int rc = gh_store_acquire(store, 5000, &c);
	if (rc < 0)
		return db_fail(err, rc, "acquire");
	rc = gh_conn_query_one(c, "SELECT 1 FROM num_import_batches WHERE id = $1",
	                       (gh_val_t[]){GH_TEXT(id)}, 1, &r);
	if (rc == -ENOENT) {
		gh_store_release(c);
		return gh_err_set(err, GH_E_NOT_FOUND, NULL, "no such import batch");
	}
	if (rc < 0)
		goto fail;
	gh_rows_close(r);
	rc = gh_conn_query(c,
	                   "SELECT seq, line, field, code, reason FROM num_import_errors "
	                   "WHERE batch_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
	                   (gh_val_t[]){GH_TEXT(id), GH_I64(after_seq), GH_I64(limit + 1)}, 3, &r);
	if (rc < 0)
		goto fail;
	json_t *arr = json_array();
	int n = 0;
	int64_t last = 0;
	bool more = false;
	while ((rc = gh_rows_next(r)) > 0) {
		if (n == limit) {
			more = true;
			break;
		}
		last = gh_rows_i64(r, 0);
		json_array_append_new(
		    arr, json_pack(
		             "{s:I, s:o, s:s, s:s}", "line", (json_int_t)gh_rows_i64(r, 1), "field",
		             gh_rows_isnull(r, 2) ? json_null() : json_string(gh_rows_text(r, 2)),
		             "code", gh_rows_text(r, 3), "reason", gh_rows_text(r, 4)));
		n++;
	}
	gh_rows_close(r);
	if (rc < 0) {
		json_decref(arr);
		goto fail;
	}
	gh_store_release(c);
	*out = json_pack("{s:o}", "errors", arr);
	if (more) {
		char tok[24];
		snprintf(tok, sizeof tok, "%lld", (long long)last);
		json_object_set_new(*out, "next_page_token", json_string(tok));
	}
	return 0;
fail:
	gh_store_release(c);
	return db_fail(err, rc, "errors read");
}

/* ---- preparation: operator, contract, keys --------------------------------------------- */

typedef struct skey_s {
	char key_id[GH_SHA256_HEX_LEN + 1];
	gh_sign_alg_t alg;
	char *pem;
	int64_t from, until;
} skey_t;

typedef struct prep_s {
	gh_operator_t ops[OPS_MAX];
	size_t nops;
	int64_t op_idx;
	num_imp_contract_t contract; /* the upload's, when given */
	bool has_contract;
	num_imp_contract_t *contracts;
	size_t ncontracts;
	skey_t *keys;
	size_t nkeys;
} prep_t;

static int prepare(void *ctx, gh_conn_t *c, num_repo_t *repo, const num_import_req_t *q, prep_t *p,
                   gh_err_t *err)
{
	gh_rows_t *r;
	int rc = gh_conn_query_one(c, "SELECT idx FROM num_operators WHERE id = $1",
	                           (gh_val_t[]){GH_TEXT(q->operator_id)}, 1, &r);
	if (rc == -ENOENT)
		return gh_err_set(err, GH_E_NOT_FOUND, "operator_id", "no such operator");
	if (rc < 0)
		return rc;
	p->op_idx = gh_rows_i64(r, 0);
	gh_rows_close(r);
	if (q->contract_id) {
		rc = gh_conn_query_one(c,
		                       "SELECT id, operator_id, contract_ref, status, ends_ms FROM "
		                       "num_contracts WHERE id = $1",
		                       (gh_val_t[]){GH_TEXT(q->contract_id)}, 1, &r);
		if (rc == -ENOENT)
			return gh_err_set(err, GH_E_NOT_FOUND, "contract_id", "no such contract");
		if (rc < 0)
			return rc;
		bool other = strcmp(gh_rows_text(r, 1), q->operator_id) != 0;
		bool ended = strcmp(gh_rows_text(r, 3), "ACTIVE") != 0 ||
		             (gh_rows_i64(r, 4) && gh_rows_i64(r, 4) <= q->now_ms);
		p->contract.id = talloc_strdup(ctx, gh_rows_text(r, 0));
		p->contract.ref = talloc_strdup(ctx, gh_rows_text(r, 2));
		gh_rows_close(r);
		if (other)
			return gh_err_set(err, GH_E_INVALID_ARGUMENT, "contract_id",
			                  "the contract is with another operator");
		if (ended) {
			rc = gh_err_set(err, GH_E_FAILED_PRECONDITION, "contract_id",
			                "the contract has ended");
			if (err)
				err->details = json_pack("{s:s}", "reason", "CONTRACT_ENDED");
			return rc;
		}
		if (!p->contract.id || !p->contract.ref)
			return -ENOMEM;
		p->has_contract = true;
	}
	rc = gh_conn_query(c,
	                   "SELECT id, contract_ref FROM num_contracts WHERE operator_id = $1 AND "
	                   "status = 'ACTIVE' AND (ends_ms = 0 OR ends_ms > $2) ORDER BY id",
	                   (gh_val_t[]){GH_TEXT(q->operator_id), GH_I64(q->now_ms)}, 2, &r);
	if (rc < 0)
		return rc;
	p->contracts = talloc_zero_array(ctx, num_imp_contract_t, CONTRACTS_MAX);
	while (p->contracts && (rc = gh_rows_next(r)) > 0 && p->ncontracts < CONTRACTS_MAX) {
		num_imp_contract_t *k = &p->contracts[p->ncontracts++];
		k->id = talloc_strdup(p->contracts, gh_rows_text(r, 0));
		k->ref = talloc_strdup(p->contracts, gh_rows_text(r, 1));
	}
	gh_rows_close(r);
	if (!p->contracts)
		return -ENOMEM;
	if (rc < 0)
		return rc;
	rc =
	    gh_conn_query(c,
	                  "SELECT key_id, algorithm, public_key_pem, valid_from_ms, valid_until_ms "
	                  "FROM num_signing_keys WHERE operator_id = $1 ORDER BY valid_from_ms "
	                  "DESC, key_id",
	                  (gh_val_t[]){GH_TEXT(q->operator_id)}, 1, &r);
	if (rc < 0)
		return rc;
	p->keys = talloc_zero_array(ctx, skey_t, KEYS_MAX);
	while (p->keys && (rc = gh_rows_next(r)) > 0 && p->nkeys < KEYS_MAX) {
		skey_t *k = &p->keys[p->nkeys];
		snprintf(k->key_id, sizeof k->key_id, "%s", gh_rows_text(r, 0));
		if (gh_sign_alg_parse(gh_rows_text(r, 1), &k->alg) < 0)
			continue;
		k->pem = talloc_strdup(p->keys, gh_rows_text(r, 2));
		k->from = gh_rows_i64(r, 3);
		k->until = gh_rows_i64(r, 4);
		p->nkeys++;
	}
	gh_rows_close(r);
	if (!p->keys)
		return -ENOMEM;
	if (rc < 0)
		return rc;
	rc = num_repo_operator_table(repo, p->ops, OPS_MAX, &p->nops);
	return rc;
}

/* ---- the signature ------------------------------------------------------------------- */

typedef struct verdict_s {
	const char *reason; /* NULL: verified */
	const char *key_id; /* the key that verified (or would have, outside its validity) */
	const char *alg;
} verdict_t;

static bool key_verifies(void *ctx, const skey_t *k, const num_import_req_t *q)
{
	gh_sign_pubkey_t *pk;
	uint8_t *sig;
	size_t sig_len;
	if (!k->pem || gh_sign_pubkey_load(ctx, k->pem, strlen(k->pem), &pk) < 0) {
		gh_log(GH_LOG_WARN, "numbering import: a stored signing key does not load",
		       "key_id", k->key_id, NULL);
		return false;
	}
	bool ok = gh_sign_sig_decode(ctx, pk, q->sig, q->sig_len, &sig, &sig_len) == 0 &&
	          gh_sign_verify(pk, k->alg, q->data, q->len, sig, sig_len) == 0;
	talloc_free(pk);
	return ok;
}

static void verify(void *ctx, const prep_t *p, const num_import_req_t *q, verdict_t *v)
{
	*v = (verdict_t){0};
	if (!q->sig || q->sig_len == 0) {
		v->reason = "SIGNATURE_MISSING";
		return;
	}
	if (p->nkeys == 0) {
		v->reason = "NO_SIGNING_KEY";
		return;
	}
	size_t nvalid = 0;
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < p->nkeys; i++) {
			const skey_t *k = &p->keys[i];
			bool valid =
			    k->from <= q->now_ms && (k->until == 0 || q->now_ms < k->until);
			if (valid != (pass == 0))
				continue;
			nvalid += valid;
			if (!key_verifies(ctx, k, q))
				continue;
			v->key_id = k->key_id;
			v->alg = gh_sign_alg_names[k->alg];
			/* pass 1 only tells a key outside its validity apart from a bad signature
			 */
			v->reason = valid                 ? NULL
			            : k->from > q->now_ms ? "KEY_NOT_YET_VALID"
			                                  : "KEY_EXPIRED";
			return;
		}
	v->reason = nvalid ? "SIGNATURE_INVALID" : "NO_VALID_KEY";
}

static const char *reason_text(const char *reason)
{
	static const struct {
		const char *code, *text;
	} t[] = {
	    {"SIGNATURE_MISSING", "no detached signature was uploaded"},
	    {"NO_SIGNING_KEY", "the operator has no signing key"},
	    {"NO_VALID_KEY", "no signing key of the operator is valid at upload time"},
	    {"SIGNATURE_INVALID", "the signature verifies with no valid key of the operator"},
	    {"KEY_EXPIRED", "the signature verifies only with an expired key"},
	    {"KEY_NOT_YET_VALID", "the signature verifies only with a key not yet valid"},
	    {"NO_VALID_ROWS", "no row of the file is valid"},
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
		if (strcmp(t[i].code, reason) == 0)
			return t[i].text;
	return reason;
}

/* ---- rows ---------------------------------------------------------------------------- */

enum { ROW_OK, ROW_DUP, ROW_SKIP, ROW_HELD };

typedef struct row_s {
	uint64_t key;
	uint64_t offset; /* num_imp_pos_t, split to keep the row at 24 bytes */
	uint32_t line;
	uint32_t skip;
} row_t;

typedef struct run_s {
	void *ctx;
	const num_import_req_t *q;
	prep_t *p;
	num_imp_rules_t rules;
	num_imp_reader_t *rd;
	char sha[GH_SHA256_HEX_LEN + 1];
	verdict_t v;
	char batch_id[37];
	/* REJECTED before rows: the reason, and the header problem when that is it */
	const char *reject;
	char header_detail[160];
	row_t *rows;
	uint8_t *st; /* ROW_* per row, in rows order */
	size_t nrows, caprows;
	num_imp_err_t *errs;
	size_t nerrs, caperrs, nerrs_pass1;
	uint64_t rows_total, imported, skipped, rejected;
	num_import_status_t status;
	bool replayed;
	char existing_id[ID_MAX + 1];
	gh_err_t *err;
} run_t;

static int err_push(run_t *u, const num_imp_err_t *e)
{
	if (u->nerrs == u->caperrs) {
		size_t cap = u->caperrs ? u->caperrs * 2 : 1024;
		num_imp_err_t *n = talloc_realloc(u->ctx, u->errs, num_imp_err_t, cap);
		if (!n)
			return -ENOMEM;
		u->errs = n;
		u->caperrs = cap;
	}
	u->errs[u->nerrs++] = *e;
	return 0;
}

static int row_push(run_t *u, uint64_t key, uint64_t line, const num_imp_pos_t *w)
{
	if (u->nrows == u->caprows) {
		size_t cap = u->caprows ? u->caprows * 2 : 4096;
		row_t *n = talloc_realloc(u->ctx, u->rows, row_t, cap);
		if (!n)
			return -ENOMEM;
		u->rows = n;
		u->caprows = cap;
	}
	u->rows[u->nrows++] =
	    (row_t){.key = key, .offset = w->offset, .line = (uint32_t)line, .skip = w->skip};
	return 0;
}

static int cmp_row(const void *a, const void *b)
{
	const row_t *x = a, *y = b;
	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	return x->line < y->line ? -1 : x->line > y->line;
}

static int cmp_err(const void *a, const void *b)
{
	const num_imp_err_t *x = a, *y = b;
	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->code < y->code ? -1 : x->code > y->code;
}

/* Pass 1: every row read once; valid rows kept as (key, line, position). Then duplicates. */
static int read_rows(run_t *u)
{
	num_imp_row_t row;
	num_imp_err_t e;
	num_imp_pos_t w;
	int rc;
	while ((rc = num_imp_reader_next(u->rd, &row, &e, &w)) >= 0) {
		if (rc == 1) {
			if ((rc = err_push(u, &e)) < 0)
				return rc;
			continue;
		}
		if (row.line > UINT32_MAX)
			return gh_err_set(u->err, GH_E_INVALID_ARGUMENT, "file",
			                  "the file has more lines than an import takes");
		if ((rc = row_push(u, row.id.key, row.line, &w)) < 0)
			return rc;
	}
	if (rc != -ENODATA)
		return rc;
	return 0;
}

/* ---- the import transaction -------------------------------------------------------------- */

static int insert_errors(gh_conn_t *c, run_t *u)
{
	enum { NP = 6 };
	void *tmp = talloc_new(NULL);
	gh_val_t *p = talloc_array(tmp, gh_val_t, ERROR_CHUNK * NP);
	typedef char reason_t[160];
	reason_t *reasons = talloc_array(tmp, reason_t, ERROR_CHUNK);
	int rc = p && reasons ? 0 : -ENOMEM;
	for (size_t i = 0; rc == 0 && i < u->nerrs; i += ERROR_CHUNK) {
		size_t n = u->nerrs - i < ERROR_CHUNK ? u->nerrs - i : ERROR_CHUNK;
		for (size_t j = 0; j < n; j++) {
			const num_imp_err_t *e = &u->errs[i + j];
			gh_val_t *r = p + j * NP;
			if (e->code == NUM_IMP_HEADER)
				snprintf(reasons[j], sizeof reasons[j], "%s", u->header_detail);
			else
				num_imp_err_reason(e, reasons[j], sizeof reasons[j]);
			r[0] = GH_TEXT(u->batch_id);
			r[1] = GH_I64(i + j + 1);
			r[2] = GH_I64(e->line);
			r[3] = e->field < NUM_IMP_F__COUNT ? GH_TEXT(num_imp_columns[e->field])
			                                   : GH_NULLV;
			r[4] = GH_TEXT(num_imp_code_name((num_imp_code_t)e->code));
			r[5] = GH_TEXT(reasons[j]);
		}
		rc =
		    gh_conn_exec_batch(c,
		                       "INSERT INTO num_import_errors (batch_id, seq, line, field, "
		                       "code, reason) VALUES ($1, $2, $3, $4, $5, $6)",
		                       p, NP, n, NULL);
	}
	talloc_free(tmp);
	return rc;
}

static char *lookup_sql;
static void lookup_sql_build(void)
{
	char *s = talloc_strdup(NULL, "SELECT key, operator_id FROM num_numbers WHERE key IN (");
	for (int i = 1; s && i <= LOOKUP_CHUNK; i++)
		s = talloc_asprintf_append(s, "%s$%d", i > 1 ? ", " : "", i);
	if (s)
		s = talloc_asprintf_append(s, ")");
	lookup_sql = s;
}

/* Mark the valid keys the database already has: SKIP (this operator), HELD (another). */
static int check_existing(gh_conn_t *c, run_t *u)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, lookup_sql_build);
	const char *sql = lookup_sql;
	if (!sql)
		return -ENOMEM;
	gh_val_t params[LOOKUP_CHUNK];
	size_t i = 0;
	int rc = 0;
	while (i < u->nrows && rc == 0) {
		size_t n = 0, first = i;
		for (; i < u->nrows && n < LOOKUP_CHUNK; i++)
			if (u->st[i] == ROW_OK)
				params[n++] = GH_I64((int64_t)u->rows[i].key);
		if (n == 0)
			break;
		for (size_t k = n; k < LOOKUP_CHUNK; k++)
			params[k] = params[n - 1];
		gh_rows_t *r;
		if ((rc = gh_conn_query(c, sql, params, LOOKUP_CHUNK, &r)) < 0)
			return rc;
		while ((rc = gh_rows_next(r)) > 0) {
			uint64_t key = (uint64_t)gh_rows_i64(r, 0);
			const char *op = gh_rows_text(r, 1);
			/* rows[first..i) is sorted by key; the key is there, once, as ROW_OK */
			size_t lo = first, hi = i;
			while (lo < hi) {
				size_t mid = lo + (hi - lo) / 2;
				if (u->rows[mid].key < key)
					lo = mid + 1;
				else
					hi = mid;
			}
			while (lo < i && u->rows[lo].key == key && u->st[lo] != ROW_OK)
				lo++;
			if (lo == i || u->rows[lo].key != key)
				continue;
			if (op && strcmp(op, u->q->operator_id) == 0) {
				u->st[lo] = ROW_SKIP;
			} else {
				u->st[lo] = ROW_HELD;
				num_imp_err_t e = {.line = u->rows[lo].line,
				                   .code = NUM_IMP_HELD_BY_OTHER_OPERATOR,
				                   .field = NUM_IMP_F_MSISDN};
				if (err_push(u, &e) < 0) {
					gh_rows_close(r);
					return -ENOMEM;
				}
			}
		}
		gh_rows_close(r);
	}
	return rc < 0 ? rc : 0;
}

/* Insert the ROW_OK rows in key order, INSERT_CHUNK at a time, each read again from the file. */
/* One creation row per imported number in the audit chain, as num_repo_add writes: the
 * chain is the history the regulator export replays, so a number it does not see being
 * created would be missing from every inventory until its first transition. */
static int audit_numbers(gh_conn_t *c, run_t *u, const gh_ident_t *ids, const gh_val_t *p, size_t n)
{
	enum { NP = 12 };
	gh_audit_rec_t *recs = talloc_array(NULL, gh_audit_rec_t, n);
	json_t **pl = talloc_zero_array(recs, json_t *, n);
	int rc = recs && pl ? 0 : -ENOMEM;
	for (size_t j = 0; rc == 0 && j < n; j++) {
		pl[j] = json_pack("{s:s, s:s, s:I, s:i, s:s}", "kind", "MSISDN", "operator_id",
		                  u->q->operator_id, "vanity_tier", (json_int_t)p[j * NP + 5].i64,
		                  "version", 1, "import_batch_id", u->batch_id);
		if (!pl[j]) {
			rc = -ENOMEM;
			break;
		}
		recs[j] = (gh_audit_rec_t){.ts_ms = u->q->now_ms,
		                           .actor = u->q->actor ? u->q->actor : "system",
		                           .action = "number.import",
		                           .entity_type = "number",
		                           .entity_id = ids[j].canonical,
		                           .payload = pl[j]};
	}
	if (rc == 0)
		rc = gh_audit_append(c, CHAIN, recs, n, NULL);
	for (size_t j = 0; pl && j < n; j++)
		json_decref(pl[j]);
	talloc_free(recs);
	return rc;
}

static int insert_numbers(gh_conn_t *c, run_t *u)
{
	enum { NP = 12 };
	int rc = 0;
	size_t i = 0;
	while (i < u->nrows && rc == 0) {
		void *tmp = talloc_new(NULL);
		gh_val_t *p = talloc_array(tmp, gh_val_t, INSERT_CHUNK * NP);
		gh_ident_t *ids = talloc_array(tmp, gh_ident_t, INSERT_CHUNK);
		if (!tmp || !p || !ids) {
			talloc_free(tmp);
			return -ENOMEM;
		}
		size_t n = 0;
		for (; i < u->nrows && n < INSERT_CHUNK && rc == 0; i++) {
			if (u->st[i] != ROW_OK)
				continue;
			num_imp_pos_t w = {.offset = u->rows[i].offset, .skip = u->rows[i].skip};
			num_imp_row_t row;
			num_imp_err_t e;
			rc = num_imp_reader_at(u->rd, &w, &row, &e);
			if (rc != 0 || row.id.key != u->rows[i].key) {
				gh_log(GH_LOG_ERROR,
				       "numbering import: a row read differently twice", NULL);
				rc = -EIO;
				break;
			}
			ids[n] = row.id;
			char *block =
			    row.block_id ? talloc_strndup(tmp, row.block_id, row.block_len) : NULL;
			char *notes =
			    row.notes ? talloc_strndup(tmp, row.notes, row.notes_len) : NULL;
			if ((row.block_id && !block) || (row.notes && !notes)) {
				rc = -ENOMEM;
				break;
			}
			gh_val_t *r = p + n * NP;
			r[0] = GH_I64((int64_t)row.id.key);
			r[1] = GH_TEXT(ids[n].canonical);
			r[2] = GH_TEXT(ids[n].display);
			r[3] = GH_TEXT(u->q->operator_id);
			r[4] = GH_I64(u->p->op_idx);
			r[5] = GH_I64(row.vanity_tier);
			r[6] = GH_TEXT_OR_NULL(block);
			r[7] = GH_TEXT_OR_NULL(row.contract_id);
			r[8] = GH_I64(u->q->now_ms);
			r[9] = GH_I64(u->q->now_ms);
			r[10] = GH_TEXT(u->batch_id);
			r[11] = GH_TEXT_OR_NULL(notes);
			n++;
		}
		if (rc == 0 && n > 0)
			rc = gh_conn_exec_batch(
			    c,
			    "INSERT INTO num_numbers (key, identifier, display, kind, operator_id, "
			    "operator_idx, state, vanity_tier, block_id, contract_id, version, "
			    "created_ms, updated_ms, import_batch_id, notes) VALUES ($1, $2, $3, "
			    "'MSISDN', $4, $5, 'AVAILABLE', $6, $7, $8, 1, $9, $10, $11, $12)",
			    p, NP, n, NULL);
		if (rc == 0 && n > 0)
			rc = audit_numbers(c, u, ids, p, n);
		talloc_free(tmp);
		u->imported += rc == 0 ? n : 0;
	}
	/* A number committed by a concurrent import since our check: do it all again. */
	return rc == -EEXIST ? -EAGAIN : rc;
}

static json_t *audit_payload(const run_t *u)
{
	json_t *o =
	    json_pack("{s:s, s:s, s:I, s:s, s:I, s:I, s:I, s:I}", "sha256", u->sha, "operator_id",
	              u->q->operator_id, "size_bytes", (json_int_t)u->q->len, "status",
	              num_import_status_names[u->status], "rows_total", (json_int_t)u->rows_total,
	              "rows_imported", (json_int_t)u->imported, "rows_skipped",
	              (json_int_t)u->skipped, "rows_rejected", (json_int_t)u->rejected);
	if (!o)
		return NULL;
	json_object_set_new(o, "contract_id",
	                    u->q->contract_id ? json_string(u->q->contract_id) : json_null());
	json_object_set_new(o, "key_id", u->v.key_id ? json_string(u->v.key_id) : json_null());
	json_object_set_new(o, "algorithm", u->v.alg ? json_string(u->v.alg) : json_null());
	if (u->reject)
		json_object_set_new(o, "reason", json_string(u->reject));
	return o;
}

/* The batch's audit row and events, in the import's transaction. */
static int record(gh_conn_t *c, run_t *u)
{
	json_t *payload = audit_payload(u), *batch = NULL, *inv = NULL;
	int rc = -ENOMEM;
	if (!payload)
		goto out;
	gh_audit_rec_t a = {.ts_ms = u->q->now_ms,
	                    .actor = u->q->actor ? u->q->actor : "system",
	                    .action = "numbering.import",
	                    .entity_type = "import_batch",
	                    .entity_id = u->batch_id,
	                    .request_id = u->q->request_id,
	                    .payload = payload};
	if ((rc = gh_audit_append(c, CHAIN, &a, 1, NULL)) < 0)
		goto out;
	if ((rc = batch_read(c, u->batch_id, &batch)) < 0)
		goto out;
	json_object_set_new(batch, "request_id",
	                    u->q->request_id ? json_string(u->q->request_id) : json_null());
	char agg[48];
	snprintf(agg, sizeof agg, "import/%s", u->batch_id);
	gh_event_t ev[2] = {{.type = EV_COMPLETED,
	                     .source = SOURCE,
	                     .aggregate_id = agg,
	                     .traceparent = u->q->traceparent,
	                     .time_ms = u->q->now_ms,
	                     .data = batch}};
	size_t nev = 1;
	if (u->imported > 0) {
		inv = json_pack("{s:s, s:I}", "import_batch", u->batch_id, "rows_imported",
		                (json_int_t)u->imported);
		if (!inv) {
			rc = -ENOMEM;
			goto out;
		}
		ev[nev++] = (gh_event_t){.type = EV_INVALIDATE,
		                         .source = SOURCE,
		                         .aggregate_id = agg,
		                         .time_ms = u->q->now_ms,
		                         .data = inv};
	}
	rc = gh_outbox_add_many(c, ev, nev, NULL, NULL);
out:
	json_decref(payload);
	json_decref(batch);
	json_decref(inv);
	return rc;
}

/* An earlier batch of this file by this operator (not REJECTED): 1 and its id, 0 none. */
static int find_existing(gh_conn_t *c, run_t *u)
{
	gh_rows_t *r;
	int rc =
	    gh_conn_query_one(c,
	                      "SELECT id FROM num_import_batches WHERE operator_id = $1 AND "
	                      "sha256 = $2 AND status <> 'REJECTED'",
	                      (gh_val_t[]){GH_TEXT(u->q->operator_id), GH_TEXT(u->sha)}, 2, &r);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	snprintf(u->existing_id, sizeof u->existing_id, "%s", gh_rows_text(r, 0));
	gh_rows_close(r);
	return 1;
}

static int insert_batch(gh_conn_t *c, run_t *u, const char *status)
{
	return gh_conn_exec(c,
	                    "INSERT INTO num_import_batches (id, operator_id, contract_id, sha256, "
	                    "size_bytes, file_name, status, reason, key_id, algorithm, created_ms, "
	                    "actor) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
	                    (gh_val_t[]){GH_TEXT(u->batch_id), GH_TEXT(u->q->operator_id),
	                                 GH_TEXT_OR_NULL(u->q->contract_id), GH_TEXT(u->sha),
	                                 GH_I64(u->q->len), GH_TEXT_OR_NULL(u->q->file_name),
	                                 GH_TEXT(status), GH_TEXT_OR_NULL(u->reject),
	                                 GH_TEXT_OR_NULL(u->v.key_id), GH_TEXT_OR_NULL(u->v.alg),
	                                 GH_I64(u->q->now_ms),
	                                 GH_TEXT(u->q->actor ? u->q->actor : "system")},
	                    12, NULL);
}

static int update_batch(gh_conn_t *c, run_t *u)
{
	return gh_conn_exec(
	    c,
	    "UPDATE num_import_batches SET status = $2, reason = $3, rows_total = "
	    "$4, rows_imported = $5, rows_skipped = $6, rows_rejected = $7 WHERE id "
	    "= $1",
	    (gh_val_t[]){GH_TEXT(u->batch_id), GH_TEXT(num_import_status_names[u->status]),
	                 GH_TEXT_OR_NULL(u->reject), GH_I64(u->rows_total), GH_I64(u->imported),
	                 GH_I64(u->skipped), GH_I64(u->rejected)},
	    7, NULL);
}

/* A REJECTED batch: the record, its one error (why), the audit row and the event. */
static int rejected_tx(gh_conn_t *c, void *ud)
{
	run_t *u = ud;
	u->status = NUM_IMPORT_REJECTED;
	u->imported = u->skipped = u->rejected = 0;
	int rc;
	if ((rc = insert_batch(c, u, "REJECTED")) < 0 || (rc = update_batch(c, u)) < 0)
		return rc;
	if (u->nerrs) {
		rc = insert_errors(c, u);
	} else {
		/* the signature: one report line saying why */
		rc =
		    gh_conn_exec(c,
		                 "INSERT INTO num_import_errors (batch_id, seq, line, field, code, "
		                 "reason) VALUES ($1, 1, 0, NULL, $2, $3)",
		                 (gh_val_t[]){GH_TEXT(u->batch_id), GH_TEXT(u->reject),
		                              GH_TEXT(reason_text(u->reject))},
		                 3, NULL);
	}
	return rc < 0 ? rc : record(c, u);
}

static int import_tx(gh_conn_t *c, void *ud)
{
	run_t *u = ud;
	int rc = find_existing(c, u);
	if (rc != 0)
		return rc < 0 ? rc : 0; /* replay: nothing written */
	/* a retry starts from the state pass 1 left */
	u->nerrs = u->nerrs_pass1;
	u->imported = u->skipped = 0;
	u->reject = NULL;
	for (size_t i = 0; i < u->nrows; i++)
		if (u->st[i] == ROW_SKIP || u->st[i] == ROW_HELD)
			u->st[i] = ROW_OK;
	if ((rc = insert_batch(c, u, "PARTIAL")) < 0 || (rc = check_existing(c, u)) < 0 ||
	    (rc = insert_numbers(c, u)) < 0)
		return rc;
	for (size_t i = 0; i < u->nrows; i++)
		u->skipped += u->st[i] == ROW_SKIP;
	if (u->nerrs)
		qsort(u->errs, u->nerrs, sizeof *u->errs, cmp_err);
	u->rejected = u->nerrs;
	if (u->nerrs == 0) {
		u->status = NUM_IMPORT_ACCEPTED;
	} else if (u->imported + u->skipped == 0) {
		u->status = NUM_IMPORT_REJECTED;
		u->reject = "NO_VALID_ROWS";
	} else {
		u->status = NUM_IMPORT_PARTIAL;
	}
	if ((rc = insert_errors(c, u)) < 0 || (rc = update_batch(c, u)) < 0)
		return rc;
	return record(c, u);
}

static void count_rows(gh_metrics_t *m, const run_t *u)
{
	if (!m)
		return;
	static const char *const res[3] = {"imported", "skipped", "rejected"};
	uint64_t v[3] = {u->imported, u->skipped, u->rejected};
	for (int i = 0; i < 3; i++) {
		char labels[32];
		snprintf(labels, sizeof labels, "result=\"%s\"", res[i]);
		gh_counter_t *c = gh_metrics_counter(m, "numbering_import_rows_total",
		                                     "Rows of MNO imports, by result", labels);
		gh_counter_add(c, v[i]);
	}
}

int num_import_run(gh_store_t *store, gh_metrics_t *metrics, const num_import_req_t *q,
                   json_t **batch, num_import_status_t *status, bool *replayed, gh_err_t *err)
{
	gh_err_t local = {0};
	if (!err)
		err = &local;
	*batch = NULL;
	if (!q->operator_id || !q->data)
		return gh_err_set(err, GH_E_INVALID_ARGUMENT, "operator_id",
		                  "operator and file required");
	if (q->contract_id && !id_ok(q->contract_id))
		return gh_err_set(err, GH_E_INVALID_ARGUMENT, "contract_id", "bad contract_id");
	void *ctx = talloc_new(NULL);
	run_t *u = talloc_zero(ctx, run_t);
	prep_t *p = talloc_zero(ctx, prep_t);
	num_repo_t *repo = NULL;
	gh_conn_t *c = NULL;
	int rc = -ENOMEM;
	if (!u || !p || num_repo_open(ctx, store, NULL, &repo) < 0)
		goto out;
	u->ctx = ctx;
	u->q = q;
	u->p = p;
	u->err = err;
	if ((rc = gh_store_acquire(store, 5000, &c)) < 0) {
		rc = db_fail(err, rc, "acquire");
		goto out;
	}
	rc = prepare(ctx, c, repo, q, p, err);
	if (rc < 0) {
		gh_store_release(c);
		rc = err->code != GH_OK ? rc : rc == -ENOMEM ? rc : db_fail(err, rc, "prepare");
		goto out;
	}
	/* The signature first: a bad one is REJECTED even for a file imported before, so the
	 * replay below never answers an unsigned upload with an earlier batch. */
	verify(ctx, p, q, &u->v);
	if ((rc = gh_sign_sha256_hex(q->data, q->len, u->sha)) < 0 ||
	    (!u->v.reason && (rc = find_existing(c, u)) < 0)) {
		gh_store_release(c);
		rc = db_fail(err, rc, "file lookup");
		goto out;
	}
	gh_store_release(c);
	if (rc == 1) /* a replay: no parse */
		goto finish;

	gh_uuid_v7(q->now_ms, u->batch_id);
	u->rules = (num_imp_rules_t){.operator_id = q->operator_id,
	                             .ops = p->ops,
	                             .nops = p->nops,
	                             .now_ms = q->now_ms,
	                             .contract = p->has_contract ? &p->contract : NULL,
	                             .contracts = p->contracts,
	                             .ncontracts = p->ncontracts};
	if (u->v.reason) {
		u->reject = u->v.reason;
		goto reject;
	}
	if ((rc = num_imp_reader_new(ctx, &u->rules, q->data, q->len, &u->rd)) < 0)
		goto out;
	num_imp_err_t he;
	rc = num_imp_reader_header(u->rd, &he, u->header_detail, sizeof u->header_detail);
	if (rc == -EBADMSG) {
		u->reject = "HEADER_INVALID";
		if ((rc = err_push(u, &he)) < 0)
			goto out;
		goto reject;
	}
	if (rc < 0 || (rc = read_rows(u)) < 0)
		goto out;
	u->rows_total = num_imp_reader_rows(u->rd);
	u->st = talloc_zero_array(ctx, uint8_t, u->nrows ? u->nrows : 1);
	if (!u->st) {
		rc = -ENOMEM;
		goto out;
	}
	/* Duplicates inside the file: every occurrence is refused, naming another one. */
	if (u->nrows)
		qsort(u->rows, u->nrows, sizeof *u->rows, cmp_row);
	for (size_t i = 0; i < u->nrows;) {
		size_t j = i + 1;
		while (j < u->nrows && u->rows[j].key == u->rows[i].key)
			j++;
		for (size_t k = i; j - i > 1 && k < j; k++) {
			u->st[k] = ROW_DUP;
			num_imp_err_t e = {.line = u->rows[k].line,
			                   .aux = u->rows[k == i ? i + 1 : i].line,
			                   .code = NUM_IMP_DUPLICATE_IN_FILE,
			                   .field = NUM_IMP_F_MSISDN};
			if ((rc = err_push(u, &e)) < 0)
				goto out;
		}
		i = j;
	}
	u->nerrs_pass1 = u->nerrs;
	rc = gh_store_tx(store, import_tx, u, &tx_write);
	if (rc < 0) {
		rc = db_fail(err, rc, "import");
		goto out;
	}
	goto finish;
reject:
	if ((rc = gh_store_tx(store, rejected_tx, u, &tx_write)) < 0) {
		rc = db_fail(err, rc, "rejected batch");
		goto out;
	}
finish:
	u->replayed = u->existing_id[0] != '\0';
	rc = num_import_get(store, u->replayed ? u->existing_id : u->batch_id, batch, err);
	if (rc < 0)
		goto out;
	const char *st = gh_json_get_str(*batch, "status", "");
	*status = strcmp(st, "ACCEPTED") == 0  ? NUM_IMPORT_ACCEPTED
	          : strcmp(st, "PARTIAL") == 0 ? NUM_IMPORT_PARTIAL
	                                       : NUM_IMPORT_REJECTED;
	if (replayed)
		*replayed = u->replayed;
	if (!u->replayed)
		count_rows(metrics, u);
	{
		char n1[24], n2[24], n3[24];
		snprintf(n1, sizeof n1, "%llu", (unsigned long long)u->imported);
		snprintf(n2, sizeof n2, "%llu", (unsigned long long)u->skipped);
		snprintf(n3, sizeof n3, "%llu", (unsigned long long)u->rejected);
		gh_log(GH_LOG_INFO, "numbering import", "batch",
		       u->replayed ? u->existing_id : u->batch_id, "operator", q->operator_id,
		       "status", st, "reason", u->reject ? u->reject : "", "imported", n1,
		       "skipped", n2, "rejected", n3, "replayed", u->replayed ? "true" : "false",
		       NULL);
	}
out:
	gh_err_clear(&local);
	talloc_free(ctx);
	return rc;
}

/* ---- HTTP --------------------------------------------------------------------------------- */

#define SCOPE "admin"

static const char *actor_of(gh_http_req_t *req)
{
	const gh_principal_t *pr = gh_http_principal(req);
	if (!pr || pr->anonymous || !pr->sub[0])
		return "user:anonymous";
	return talloc_asprintf(gh_http_ctx(req), "user:%s", pr->sub);
}

static int bad(gh_http_req_t *req, const char *field, const char *msg)
{
	return gh_err_set(gh_http_err(req), GH_E_INVALID_ARGUMENT, field, "%s", msg);
}

/* An optional RFC 3339 member: 0 with *ms (def when absent or null), -EINVAL (400 set). */
static int body_time(gh_http_req_t *req, const json_t *b, const char *name, int64_t def,
                     int64_t *ms)
{
	const json_t *v = json_object_get(b, name);
	*ms = def;
	if (!v || json_is_null(v))
		return 0;
	char field[32];
	snprintf(field, sizeof field, "/%s", name);
	if (gh_time_parse(json_string_value(v), ms) < 0)
		return bad(req, field, "not an RFC 3339 time");
	return 0;
}

/* ---- signing keys ---- */

static const gh_json_field_t key_fields[] = {
    {"public_key_pem", GH_JSON_STRING, 1},
    {"algorithm", GH_JSON_STRING},
    {"valid_from", GH_JSON_STRING},
    {"valid_until", GH_JSON_STRING, 0, 1},
    {NULL},
};

typedef struct key_add_s {
	num_svc_t *s;
	const char *operator_id;
	const char *key_id, *alg, *pem;
	int64_t from, until, now;
	const char *actor;
} key_add_t;

/* One audit row for an admin write in its transaction; takes payload (NULL: -ENOMEM). */
static int audit_admin(gh_conn_t *c, gh_http_req_t *req, int64_t now, const char *actor,
                       const char *action, const char *entity_type, const char *entity_id,
                       json_t *payload)
{
	gh_audit_rec_t a = {.ts_ms = now,
	                    .actor = actor,
	                    .action = action,
	                    .entity_type = entity_type,
	                    .entity_id = entity_id,
	                    .request_id = gh_http_request_id(req),
	                    .payload = payload};
	int rc = payload ? gh_audit_append(c, CHAIN, &a, 1, NULL) : -ENOMEM;
	json_decref(payload);
	return rc;
}

static json_t *key_json(const char *op, const char *key_id, const char *alg, const char *pem,
                        int64_t from, int64_t until, int64_t created)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:o}", "operator_id", op, "key_id", key_id,
	                 "algorithm", alg, "public_key_pem", pem, "valid_from", time_json(from),
	                 "valid_until", until ? time_json(until) : json_null(), "created_at",
	                 time_json(created));
}

static int key_add_fn(gh_conn_t *c, gh_http_req_t *req, void *ud, int *status, json_t **body)
{
	key_add_t *k = ud;
	gh_err_t *e = gh_http_err(req);
	gh_rows_t *r;
	int rc = gh_conn_query_one(c, "SELECT 1 FROM num_operators WHERE id = $1",
	                           (gh_val_t[]){GH_TEXT(k->operator_id)}, 1, &r);
	if (rc == -ENOENT)
		return gh_err_set(e, GH_E_NOT_FOUND, "id", "no such operator");
	if (rc < 0)
		return rc;
	gh_rows_close(r);
	rc =
	    gh_conn_exec(c,
	                 "INSERT INTO num_signing_keys (operator_id, key_id, algorithm, "
	                 "public_key_pem, valid_from_ms, valid_until_ms, created_ms, actor) VALUES "
	                 "($1, $2, $3, $4, $5, $6, $7, $8)",
	                 (gh_val_t[]){GH_TEXT(k->operator_id), GH_TEXT(k->key_id), GH_TEXT(k->alg),
	                              GH_TEXT(k->pem), GH_I64(k->from), GH_I64(k->until),
	                              GH_I64(k->now), GH_TEXT(k->actor)},
	                 8, NULL);
	if (rc == -EEXIST)
		return gh_err_set(e, GH_E_ALREADY_EXISTS, "/public_key_pem",
		                  "the operator already has this key");
	if (rc < 0)
		return rc;
	json_t *payload =
	    json_pack("{s:s, s:s, s:I, s:I}", "key_id", k->key_id, "algorithm", k->alg,
	              "valid_from_ms", (json_int_t)k->from, "valid_until_ms", (json_int_t)k->until);
	rc = audit_admin(c, req, k->now, k->actor, "operator.signing_key.add", "operator",
	                 k->operator_id, payload);
	if (rc < 0)
		return rc;
	*status = 201;
	*body = key_json(k->operator_id, k->key_id, k->alg, k->pem, k->from, k->until, k->now);
	return *body ? 0 : -ENOMEM;
}

int num_h_signing_key_add(gh_http_req_t *req, void *ud)
{
	num_svc_t *s = ud;
	json_t *b;
	if (gh_http_json_body(req, key_fields, &b) < 0)
		return -EINVAL;
	key_add_t k = {
	    .s = s, .operator_id = gh_http_param(req, "id"), .now = gh_clock_now_ms(s->clock)};
	k.actor = actor_of(req);
	const char *pem = gh_json_get_str(b, "public_key_pem", "");
	gh_sign_pubkey_t *pk;
	if (gh_sign_pubkey_load(gh_http_ctx(req), pem, strlen(pem), &pk) < 0)
		return bad(req, "/public_key_pem",
		           "not a PEM public key of a supported type (RSA >= 2048 bits, RSA-PSS, "
		           "Ed25519)");
	gh_sign_alg_t key_alg, alg = GH_SIGN_AUTO;
	const char *an = gh_json_get_str(b, "algorithm", NULL);
	if (an && (gh_sign_alg_parse(an, &alg) < 0 || alg == GH_SIGN_AUTO))
		return bad(req, "/algorithm",
		           "algorithm: rsa-pkcs1-sha256, rsa-pss-sha256 or ed25519");
	if (gh_sign_pubkey_alg(pk, &key_alg) == 0) {
		/* Ed25519 and RSA-PSS-typed keys have one algorithm */
		if (alg != GH_SIGN_AUTO && alg != key_alg)
			return bad(req, "/algorithm", "the algorithm does not fit the key");
		alg = key_alg;
	} else if (alg != GH_SIGN_RSA_PKCS1_SHA256 && alg != GH_SIGN_RSA_PSS_SHA256) {
		return bad(
		    req, "/algorithm",
		    "an RSA key needs its algorithm stated: rsa-pkcs1-sha256 or rsa-pss-sha256");
	}
	if (body_time(req, b, "valid_from", k.now, &k.from) < 0 ||
	    body_time(req, b, "valid_until", 0, &k.until) < 0)
		return -EINVAL;
	if (k.until && k.until <= k.from)
		return bad(req, "/valid_until", "valid_until must be after valid_from");
	k.key_id = gh_sign_pubkey_id(pk);
	k.alg = gh_sign_alg_names[alg];
	k.pem = gh_sign_pubkey_pem(pk);
	return gh_idem_handle(req, s->store, SCOPE, s->idem_ttl_ms, s->clock, key_add_fn, &k);
}

int num_h_signing_keys_list(gh_http_req_t *req, void *ud)
{
	num_svc_t *s = ud;
	const char *op = gh_http_param(req, "id");
	gh_conn_t *c;
	gh_rows_t *r;
	int rc = gh_store_acquire(s->store, 5000, &c);
	if (rc < 0)
		return db_fail(gh_http_err(req), rc, "acquire");
	rc = gh_conn_query_one(c, "SELECT 1 FROM num_operators WHERE id = $1",
	                       (gh_val_t[]){GH_TEXT(op)}, 1, &r);
	if (rc == -ENOENT) {
		gh_store_release(c);
		return gh_err_set(gh_http_err(req), GH_E_NOT_FOUND, "id", "no such operator");
	}
	if (rc == 0) {
		gh_rows_close(r);
		rc = gh_conn_query(c,
		                   "SELECT key_id, algorithm, public_key_pem, valid_from_ms, "
		                   "valid_until_ms, created_ms FROM num_signing_keys WHERE "
		                   "operator_id = $1 ORDER BY created_ms, key_id",
		                   (gh_val_t[]){GH_TEXT(op)}, 1, &r);
	}
	json_t *arr = json_array();
	while (rc == 0 && (rc = gh_rows_next(r)) > 0)
		json_array_append_new(arr, key_json(op, gh_rows_text(r, 0), gh_rows_text(r, 1),
		                                    gh_rows_text(r, 2), gh_rows_i64(r, 3),
		                                    gh_rows_i64(r, 4), gh_rows_i64(r, 5)));
	if (rc >= 0)
		gh_rows_close(r);
	gh_store_release(c);
	if (rc < 0) {
		json_decref(arr);
		return db_fail(gh_http_err(req), rc, "keys");
	}
	return gh_http_reply_json(req, 200, json_pack("{s:o}", "signing_keys", arr));
}

/* ---- contracts ---- */

static const gh_json_field_t contract_fields[] = {
    {"id", GH_JSON_STRING},
    {"operator_id", GH_JSON_STRING, 1},
    {"contract_ref", GH_JSON_STRING, 1},
    {"starts_at", GH_JSON_STRING},
    {"ends_at", GH_JSON_STRING, 0, 1},
    {NULL},
};

#define CONTRACT_COLS \
	"id, operator_id, contract_ref, starts_ms, ends_ms, status, version, created_ms"

static json_t *contract_json(gh_rows_t *r)
{
	int64_t ends = gh_rows_i64(r, 4);
	return json_pack("{s:s, s:s, s:s, s:o, s:o, s:s, s:I, s:o}", "id", gh_rows_text(r, 0),
	                 "operator_id", gh_rows_text(r, 1), "contract_ref", gh_rows_text(r, 2),
	                 "starts_at", time_json(gh_rows_i64(r, 3)), "ends_at",
	                 ends ? time_json(ends) : json_null(), "status", gh_rows_text(r, 5),
	                 "version", (json_int_t)gh_rows_i64(r, 6), "created_at",
	                 time_json(gh_rows_i64(r, 7)));
}

typedef struct contract_add_s {
	const char *id, *operator_id, *ref, *actor;
	int64_t starts, ends, now;
} contract_add_t;

static int contract_add_fn(gh_conn_t *c, gh_http_req_t *req, void *ud, int *status, json_t **body)
{
	contract_add_t *k = ud;
	gh_err_t *e = gh_http_err(req);
	gh_rows_t *r;
	int rc = gh_conn_query_one(c, "SELECT 1 FROM num_operators WHERE id = $1",
	                           (gh_val_t[]){GH_TEXT(k->operator_id)}, 1, &r);
	if (rc == -ENOENT)
		return gh_err_set(e, GH_E_INVALID_ARGUMENT, "/operator_id", "unknown operator");
	if (rc < 0)
		return rc;
	gh_rows_close(r);
	rc = gh_conn_exec(c,
	                  "INSERT INTO num_contracts (id, operator_id, contract_ref, starts_ms, "
	                  "ends_ms, status, version, created_ms, updated_ms) VALUES ($1, $2, $3, "
	                  "$4, $5, 'ACTIVE', 1, $6, $7)",
	                  (gh_val_t[]){GH_TEXT(k->id), GH_TEXT(k->operator_id), GH_TEXT(k->ref),
	                               GH_I64(k->starts), GH_I64(k->ends), GH_I64(k->now),
	                               GH_I64(k->now)},
	                  7, NULL);
	if (rc == -EEXIST)
		return gh_err_set(
		    e, GH_E_ALREADY_EXISTS, NULL,
		    "a contract with this id, or this operator and contract_ref, exists");
	if (rc < 0)
		return rc;
	json_t *payload =
	    json_pack("{s:s, s:s, s:I, s:I}", "operator_id", k->operator_id, "contract_ref", k->ref,
	              "starts_ms", (json_int_t)k->starts, "ends_ms", (json_int_t)k->ends);
	rc = audit_admin(c, req, k->now, k->actor, "contract.create", "contract", k->id, payload);
	if (rc < 0)
		return rc;
	rc = gh_conn_query_one(c, "SELECT " CONTRACT_COLS " FROM num_contracts WHERE id = $1",
	                       (gh_val_t[]){GH_TEXT(k->id)}, 1, &r);
	if (rc < 0)
		return rc;
	*body = contract_json(r);
	gh_rows_close(r);
	*status = 201;
	return *body ? 0 : -ENOMEM;
}

int num_h_contract_create(gh_http_req_t *req, void *ud)
{
	num_svc_t *s = ud;
	json_t *b;
	if (gh_http_json_body(req, contract_fields, &b) < 0)
		return -EINVAL;
	contract_add_t k = {.now = gh_clock_now_ms(s->clock), .actor = actor_of(req)};
	char gen[37];
	k.id = gh_json_get_str(b, "id", NULL);
	if (!k.id) {
		gh_uuid_v7(k.now, gen);
		k.id = gen;
	} else if (!id_ok(k.id)) {
		return bad(req, "/id", "id: 1-64 characters of [A-Za-z0-9._:-]");
	}
	k.operator_id = gh_json_get_str(b, "operator_id", "");
	k.ref = gh_json_get_str(b, "contract_ref", "");
	size_t rl = strlen(k.ref);
	if (rl < 1 || rl > 64 || gh_csv_cell_risky(k.ref, rl) || !num_imp_utf8_ok(k.ref, rl))
		return bad(
		    req, "/contract_ref",
		    "contract_ref: 1-64 bytes of text, not starting with = + - @ or a control "
		    "character");
	for (size_t i = 0; i < rl; i++)
		if ((unsigned char)k.ref[i] < 0x20 || k.ref[i] == ',' || k.ref[i] == '"')
			return bad(req, "/contract_ref",
			           "contract_ref: no control characters, ',' or '\"'");
	if (body_time(req, b, "starts_at", k.now, &k.starts) < 0 ||
	    body_time(req, b, "ends_at", 0, &k.ends) < 0)
		return -EINVAL;
	if (k.ends && k.ends <= k.starts)
		return bad(req, "/ends_at", "ends_at must be after starts_at");
	return gh_idem_handle(req, s->store, SCOPE, s->idem_ttl_ms, s->clock, contract_add_fn, &k);
}

int num_h_contracts_list(gh_http_req_t *req, void *ud)
{
	num_svc_t *s = ud;
	int64_t size;
	if (gh_http_query_int(req, "page_size", 50, 1, 1000, &size) < 0)
		return -EINVAL;
	const char *op = gh_http_query(req, "operator_id");
	const char *after = gh_http_query(req, "page_token");
	gh_conn_t *c;
	gh_rows_t *r;
	int rc = gh_store_acquire(s->store, 5000, &c);
	if (rc < 0)
		return db_fail(gh_http_err(req), rc, "acquire");
	rc = gh_conn_query(
	    c,
	    "SELECT " CONTRACT_COLS " FROM num_contracts WHERE ($1 = '' OR "
	    "operator_id = $1) AND id > $2 ORDER BY id LIMIT $3",
	    (gh_val_t[]){GH_TEXT(op ? op : ""), GH_TEXT(after ? after : ""), GH_I64(size + 1)}, 3,
	    &r);
	json_t *arr = json_array();
	int64_t n = 0;
	bool more = false;
	char last[ID_MAX + 1] = "";
	while (rc == 0 && (rc = gh_rows_next(r)) > 0) {
		if (n == size) {
			more = true;
			break;
		}
		snprintf(last, sizeof last, "%s", gh_rows_text(r, 0));
		json_array_append_new(arr, contract_json(r));
		n++;
	}
	if (rc >= 0)
		gh_rows_close(r);
	gh_store_release(c);
	if (rc < 0) {
		json_decref(arr);
		return db_fail(gh_http_err(req), rc, "contracts");
	}
	json_t *out = json_pack("{s:o}", "contracts", arr);
	if (more)
		json_object_set_new(out, "next_page_token", json_string(last));
	return gh_http_reply_json(req, 200, out);
}

/* ---- imports ---- */

static const char *const import_parts[] = {"file", "signature", "operator_id", "contract_id", NULL};

/* A short text part as a NUL-terminated string: NULL when absent; -EINVAL (400 set). */
static int part_text(gh_http_req_t *req, const gh_mp_field_t *f, const char *name, char **out)
{
	*out = NULL;
	if (!f)
		return 0;
	if (f->len < 1 || f->len > ID_MAX || memchr(f->data, '\0', f->len))
		return bad(req, name, "1-64 characters expected");
	*out = talloc_strndup(gh_http_ctx(req), f->data, f->len);
	return *out ? 0 : -ENOMEM;
}

int num_h_import_create(gh_http_req_t *req, void *ud)
{
	num_svc_t *s = ud;
	gh_err_t *e = gh_http_err(req);
	size_t len;
	const char *body = gh_http_body(req, &len);
	gh_mp_opts_t o = {.max_parts = 8, .max_header_bytes = 4096};
	gh_mp_field_t *f;
	size_t n;
	gh_mp_error_t me;
	int rc = gh_mp_form_parse(gh_http_ctx(req), gh_http_header(req, "Content-Type"), body, len,
	                          &o, IMPORT_MAX, &f, &n, &me);
	if (rc == -EINVAL)
		return gh_mp_error_to_err(&me, e);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		bool known = false;
		for (const char *const *p = import_parts; *p && !known; p++)
			known = strcmp(*p, f[i].name) == 0;
		if (!known)
			return bad(req, f[i].name,
			           "unknown form field (expected file, signature, operator_id, "
			           "contract_id)");
	}
	const gh_mp_field_t *file = gh_mp_form_get(f, n, "file");
	const gh_mp_field_t *sig = gh_mp_form_get(f, n, "signature");
	char *op, *contract;
	if (!file)
		return bad(req, "file", "the form has no file part");
	if (part_text(req, gh_mp_form_get(f, n, "operator_id"), "operator_id", &op) < 0 ||
	    part_text(req, gh_mp_form_get(f, n, "contract_id"), "contract_id", &contract) < 0)
		return -EINVAL;
	if (!op)
		return bad(req, "operator_id", "operator_id is required");
	num_import_req_t q = {.operator_id = op,
	                      .contract_id = contract,
	                      .data = file->data,
	                      .len = file->len,
	                      .sig = sig ? sig->data : NULL,
	                      .sig_len = sig ? sig->len : 0,
	                      .file_name = file->filename,
	                      .actor = actor_of(req),
	                      .request_id = gh_http_request_id(req),
	                      .traceparent = gh_http_traceparent(req),
	                      .now_ms = gh_clock_now_ms(s->clock)};
	if (q.file_name &&
	    (strlen(q.file_name) > 255 || !num_imp_utf8_ok(q.file_name, strlen(q.file_name))))
		q.file_name = NULL; /* informative only: not worth refusing the upload */
	json_t *batch;
	num_import_status_t st;
	bool replayed;
	if ((rc = num_import_run(s->store, s->metrics, &q, &batch, &st, &replayed, e)) < 0)
		return rc;
	if (!replayed && json_integer_value(json_object_get(batch, "rows_imported")) > 0) {
		/* New numbers this index has not seen: misses ask the database from now on (every
		 * other replica does the same on the import's num.cache.invalidate.v1). */
		num_index_set_complete(s->ix, false);
		if (s->app)
			gh_outbox_relay_kick(s->app->relay);
	}
	char loc[128];
	snprintf(loc, sizeof loc, ADMIN_PATH "/imports/%s", gh_json_get_str(batch, "id", ""));
	gh_http_set_header(req, "Location", loc);
	return gh_http_reply_json(req, replayed ? 200 : 201, batch);
}

int num_h_import_get(gh_http_req_t *req, void *ud)
{
	num_svc_t *s = ud;
	json_t *out;
	int rc = num_import_get(s->store, gh_http_param(req, "id"), &out, gh_http_err(req));
	if (rc < 0)
		return rc;
	return gh_http_reply_json(req, 200, out);
}

static int csv_line(gh_csv_writer_t *w, const json_t *it)
{
	char line[24];
	snprintf(line, sizeof line, "%lld",
	         (long long)json_integer_value(json_object_get(it, "line")));
	const char *field = gh_json_get_str(it, "field", "");
	const char *code = gh_json_get_str(it, "code", "");
	const char *reason = gh_json_get_str(it, "reason", "");
	int rc;
	if ((rc = gh_csv_write_field(w, line, strlen(line))) < 0 ||
	    (rc = gh_csv_write_field(w, field, strlen(field))) < 0 ||
	    (rc = gh_csv_write_field(w, code, strlen(code))) < 0 ||
	    (rc = gh_csv_write_text(w, reason, strlen(reason))) < 0)
		return rc;
	return gh_csv_write_end(w);
}

int num_h_import_errors(gh_http_req_t *req, void *ud)
{
	num_svc_t *s = ud;
	const char *id = gh_http_param(req, "id");
	const char *fmt = gh_http_query(req, "format");
	const char *tok = gh_http_query(req, "page_token");
	int64_t size, after = 0;
	if (gh_http_query_int(req, "page_size", 50, 1, 1000, &size) < 0)
		return -EINVAL;
	if (tok) {
		char *end = NULL;
		after = strtoll(tok, &end, 10);
		if (!*tok || *end || after < 0)
			return bad(req, "page_token", "bad page_token");
	}
	json_t *page;
	if (!fmt || strcmp(fmt, "json") == 0) {
		int rc =
		    num_import_errors_page(s->store, id, after, (int)size, &page, gh_http_err(req));
		return rc < 0 ? rc : gh_http_reply_json(req, 200, page);
	}
	if (strcmp(fmt, "csv") != 0)
		return bad(req, "format", "format: json or csv");
	/* The whole report as CSV (for a spreadsheet), read in pages of 1000. */
	gh_csv_wopts_t wo = {.injection = GH_CSV_INJ_NEUTRALISE};
	gh_csv_writer_t *w = gh_csv_writer_new(gh_http_ctx(req), &wo, NULL, NULL);
	static const char *const hdr[] = {"line", "field", "code", "reason"};
	static const size_t hl[] = {4, 5, 4, 6};
	if (!w || gh_csv_write_record(w, hdr, hl, 4) < 0)
		return -ENOMEM;
	for (after = 0;;) {
		int rc = num_import_errors_page(s->store, id, after, 1000, &page, gh_http_err(req));
		if (rc < 0)
			return rc;
		json_t *arr = json_object_get(page, "errors");
		size_t i;
		json_t *it;
		json_array_foreach(arr, i, it)
		{
			if (csv_line(w, it) < 0) {
				json_decref(page);
				return -ENOMEM;
			}
		}
		const char *next = gh_json_get_str(page, "next_page_token", NULL);
		after = next ? strtoll(next, NULL, 10) : 0;
		json_decref(page);
		if (!next)
			break;
	}
	size_t n;
	const char *data = gh_csv_writer_data(w, &n);
	return gh_http_reply_raw(req, 200, "text/csv; charset=utf-8", data, n);
}
