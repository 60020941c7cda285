/* audit: hash-chained audit log. See audit.h for the chain's definition and guarantees. */
#include "audit.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>

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

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when it is not valid UTF-8 by the rules
 * jansson's json_string() applies: no continuation byte first, no overlong form, no surrogate,
 * nothing above U+10FFFF. */
static size_t utf8_len(const unsigned char *s)
{
	unsigned c = s[0];
	size_t n;
	uint32_t v;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2, v = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3, v = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4, v = c & 0x07;
	else
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80) /* also stops at the terminating NUL */
			return 0;
		v = (v << 6) | (s[i] & 0x3f);
	}
	if ((n == 3 && v < 0x800) || (n == 4 && v < 0x10000) || v > 0x10ffff ||
	    (v >= 0xd800 && v <= 0xdfff))
		return 0;
	return n;
}

/* Append s as a JSON string exactly as jansson's json_dumps(JSON_COMPACT) writes it: '"' and
 * '\\' escaped, \b \f \n \r \t by name, other controls below 0x20 as \u00XX (upper-case hex),
 * everything else (DEL, '/', non-ASCII) as is. Returns the new end, or NULL for invalid UTF-8.
 * The caller reserves 6 bytes per input byte plus 2. */
static char *put_str(char *o, const char *str)
{
	static const char hexd[] = "0123456789ABCDEF";
	const unsigned char *s = (const unsigned char *)str;
	*o++ = '"';
	while (*s) {
		unsigned c = *s;
		if (c >= 0x80) {
			size_t n = utf8_len(s);
			if (!n)
				return NULL;
			memcpy(o, s, n);
			o += n, s += n;
			continue;
		}
		s++;
		if (c >= 0x20 && c != '"' && c != '\\') {
			*o++ = (char)c;
			continue;
		}
		*o++ = '\\';
		switch (c) {
		case '"': *o++ = '"'; break;
		case '\\': *o++ = '\\'; break;
		case '\b': *o++ = 'b'; break;
		case '\f': *o++ = 'f'; break;
		case '\n': *o++ = 'n'; break;
		case '\r': *o++ = 'r'; break;
		case '\t': *o++ = 't'; break;
		default:
			memcpy(o, "u00", 3);
			o[3] = hexd[c >> 4];
			o[4] = hexd[c & 15];
			o += 5;
		}
	}
	*o++ = '"';
	return o;
}

static char *put_lit(char *o, const char *lit)
{
	size_t n = strlen(lit);
	memcpy(o, lit, n);
	return o + n;
}

static char *put_str_or_null(char *o, const char *s)
{
	return s ? put_str(o, s) : put_lit(o, "null");
}

static char *put_i64(char *o, int64_t v) { return o + sprintf(o, "%lld", (long long)v); }

/* The canonical row is what json_dumps(JSON_SORT_KEYS | JSON_COMPACT) makes of the row object:
 * the audit log's definition (audit.h) and the form of every hash already stored. It is written
 * by hand because building and dumping a jansson object per row was a third of an append's cost;
 * tests/unit/audit_test.c checks both forms agree byte for byte.
 *
 * It is kept as three parts around the two values only the chain head knows: canonical =
 * a || prev_hash || b || decimal seq || c. PostgreSQL computes the hash from the same parts in
 * the one-statement append (append_pg_one). */
typedef struct {
	char *buf;      /* a, b, c back to back; malloc'd or the caller's stack buffer */
	size_t a, b, c; /* lengths */
} canon_t;

static int canon_parts(const char *chain, const gh_audit_rec_t *rec, const char *payload_text,
                       char *stackbuf, size_t stacklen, canon_t *out)
{
	const char *strs[] = {rec->action,      rec->actor,   chain,           rec->entity_id,
	                      rec->entity_type, payload_text, rec->request_id, rec->tenant_id};
	size_t need = 256 + 21; /* keys, punctuation, one integer */
	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
		need += strs[i] ? 6 * strlen(strs[i]) + 2 : 4;
	out->buf = need <= stacklen ? stackbuf : malloc(need);
	if (!out->buf)
		return -ENOMEM;
	/* keys in strcmp order; a NULL required field or invalid UTF-8 cannot be hashed */
	char *o = out->buf, *b, *c;
	if (!rec->action || !rec->actor || !chain || !rec->entity_id || !rec->entity_type ||
	    !payload_text || !(o = put_str(put_lit(o, "{\"action\":"), rec->action)) ||
	    !(o = put_str(put_lit(o, ",\"actor\":"), rec->actor)) ||
	    !(o = put_str(put_lit(o, ",\"chain\":"), chain)) ||
	    !(o = put_str(put_lit(o, ",\"entity_id\":"), rec->entity_id)) ||
	    !(o = put_str(put_lit(o, ",\"entity_type\":"), rec->entity_type)) ||
	    !(o = put_str(put_lit(o, ",\"payload\":"), payload_text)))
		goto bad;
	o = put_lit(o, ",\"prev_hash\":\"");
	out->a = (size_t)(o - out->buf);
	b = o;
	o = put_lit(o, "\",\"request_id\":");
	if (!(o = put_str_or_null(o, rec->request_id)))
		goto bad;
	o = put_lit(o, ",\"seq\":");
	out->b = (size_t)(o - b);
	c = o;
	if (!(o = put_str_or_null(put_lit(o, ",\"tenant_id\":"), rec->tenant_id)))
		goto bad;
	o = put_i64(put_lit(o, ",\"ts_ms\":"), rec->ts_ms);
	*o++ = '}';
	out->c = (size_t)(o - c);
	return 0;
bad:
	if (out->buf != stackbuf)
		free(out->buf);
	out->buf = NULL;
	return -EINVAL;
}

static void canon_free(canon_t *cp, const char *stackbuf)
{
	if (cp->buf != stackbuf)
		free(cp->buf);
	cp->buf = NULL;
}

int gh_audit_row_hash(const char *chain, int64_t seq, const gh_audit_rec_t *rec,
                      const char *payload_text, const char *prev_hash, char out[65])
{
	char stackbuf[2048], num[24], prevbuf[6 * 64 + 2];
	canon_t cp;
	/* prev_hash is hex in every chain; any other text is escaped as a JSON string would be */
	size_t pl = prev_hash ? strlen(prev_hash) : 0;
	char *pq = !prev_hash ? NULL : pl <= 64 ? prevbuf : malloc(6 * pl + 2);
	char *pe = pq ? put_str(pq, prev_hash) : NULL;
	if (!pe) {
		if (pq != prevbuf)
			free(pq);
		return prev_hash && !pq ? -ENOMEM : -EINVAL;
	}
	int rc = canon_parts(chain, rec, payload_text, stackbuf, sizeof(stackbuf), &cp);
	if (rc < 0) {
		if (pq != prevbuf)
			free(pq);
		return rc;
	}
	int nl = snprintf(num, sizeof num, "%lld", (long long)seq);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *x = EVP_MD_CTX_new();
	int ok =
	    x && EVP_DigestInit_ex(x, EVP_sha256(), NULL) && EVP_DigestUpdate(x, cp.buf, cp.a) &&
	    EVP_DigestUpdate(x, pq + 1, (size_t)(pe - pq) - 2) && /* without its quotes */
	    EVP_DigestUpdate(x, cp.buf + cp.a, cp.b) && EVP_DigestUpdate(x, num, (size_t)nl) &&
	    EVP_DigestUpdate(x, cp.buf + cp.a + cp.b, cp.c) && EVP_DigestFinal_ex(x, md, &mdlen);
	EVP_MD_CTX_free(x);
	canon_free(&cp, stackbuf);
	if (pq != prevbuf)
		free(pq);
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

/* Rows per gh_conn_exec_batch: bounds the memory of one call whatever n is. */
enum { APPEND_CHUNK = 256, NCOLS = 12 };

/* Appends of at most this many rows without *last_seq are kept for commit (see audit.h). */
enum { DEFER_MAX = 16 };

/* One row on PostgreSQL in one statement: the head upsert locks the head (creating it on first
 * use), moves it and computes the row's hash from the canonical parts around the old hash and
 * the new seq (what gh_audit_row_hash computes; the tests verify every chain they write); the
 * row is inserted from what it returns. The head lock is held from this statement to COMMIT,
 * which at commit goes in the same pipeline: no client round trip in between. */
static const char APPEND_PG_ONE_SQL[] =
    "WITH h AS (INSERT INTO gh_audit_head AS t (chain, seq, hash, prev_hash) VALUES ($1, 1, "
    "encode(sha256(convert_to($2 || $13 || $3 || '1' || $4, 'UTF8')), 'hex'), $13) "
    "ON CONFLICT (chain) DO UPDATE SET seq = t.seq + 1, prev_hash = t.hash, "
    "hash = encode(sha256(convert_to($2 || t.hash || $3 || (t.seq + 1)::text || $4, 'UTF8')), "
    "'hex') RETURNING t.seq, t.hash, t.prev_hash) "
    "INSERT INTO gh_audit (chain, seq, ts_ms, actor, action, entity_type, entity_id, tenant_id, "
    "request_id, payload, prev_hash, hash) SELECT $1, h.seq, $5, $6, $7, $8, $9, $10, $11, $12, "
    "h.prev_hash, h.hash FROM h RETURNING seq";

/* The one-statement append hashes in the database: only where the bytes it hashes are the
 * UTF-8 the C side hashes. */
static bool pg_hashes_utf8(gh_conn_t *c)
{
	const char *srv = gh_conn_server_param(c, "server_encoding");
	const char *cli = gh_conn_server_param(c, "client_encoding");
	return srv && cli && strcmp(srv, "UTF8") == 0 && strcmp(cli, "UTF8") == 0;
}

static int append_pg_one(gh_conn_t *c, const char *chain, const gh_audit_rec_t *r, const char *text,
                         int64_t *last_seq, bool commit)
{
	char *own = NULL, stackbuf[2048];
	if (!text && r->payload &&
	    !(text = own = json_dumps(r->payload, JSON_SORT_KEYS | JSON_COMPACT)))
		return -EINVAL;
	if (!text)
		text = "{}";
	canon_t cp;
	int rc = canon_parts(chain, r, text, stackbuf, sizeof(stackbuf), &cp);
	if (rc < 0) {
		free(own);
		return rc;
	}
	gh_val_t v[] = {GH_TEXT(chain),
	                GH_TEXT(talloc_strndup(NULL, cp.buf, cp.a)),
	                GH_TEXT(talloc_strndup(NULL, cp.buf + cp.a, cp.b)),
	                GH_TEXT(talloc_strndup(NULL, cp.buf + cp.a + cp.b, cp.c)),
	                GH_I64(r->ts_ms),
	                GH_TEXT(r->actor),
	                GH_TEXT(r->action),
	                GH_TEXT(r->entity_type),
	                GH_TEXT(r->entity_id),
	                GH_TEXT_OR_NULL(r->tenant_id),
	                GH_TEXT_OR_NULL(r->request_id),
	                GH_TEXT(text),
	                GH_TEXT(genesis)};
	if (!v[1].s || !v[2].s || !v[3].s) {
		rc = -ENOMEM;
	} else if (commit) {
		int64_t n = 0;
		rc = gh_conn_exec_commit(c, APPEND_PG_ONE_SQL, v, 13, &n);
		if (rc == 0 && n != 1)
			rc = -EIO; /* committed without its row: never expected (the upsert always
			            * returns the head) */
	} else {
		gh_rows_t *rows;
		rc = gh_conn_query_one(c, APPEND_PG_ONE_SQL, v, 13, &rows);
		if (rc == 0) {
			if (last_seq)
				*last_seq = gh_rows_i64(rows, 0);
			gh_rows_close(rows);
		} else if (rc == -ENOENT) {
			rc = -EIO;
		}
	}
	for (int i = 1; i <= 3; i++)
		talloc_free((char *)v[i].s);
	canon_free(&cp, stackbuf);
	free(own);
	return rc;
}

/* Write n rows to chain now: lock the head, hash, insert, move the head. texts (may be NULL:
 * serialise recs[i].payload) are the canonical payloads. With `commit`, the last statement
 * also commits the transaction (gh_conn_exec_commit). */
static int append_now(gh_conn_t *c, const char *chain, const gh_audit_rec_t *recs,
                      char *const *texts, size_t n, int64_t *last_seq, bool commit)
{
	if (n == 1 && pg_hashes_utf8(c))
		return append_pg_one(c, chain, recs, texts ? texts[0] : NULL, last_seq, commit);
	int64_t seq = 0;
	char prev[65], last_prev[65] = "";
	int head_done = 0;
	int rc = head_lock(c, chain, &seq, prev);
	if (rc < 0)
		return rc;
	size_t chunk = n < APPEND_CHUNK ? n : APPEND_CHUNK;
	gh_val_t *p = malloc((chunk ? chunk : 1) * NCOLS * sizeof(*p));
	char **payloads = calloc(chunk ? chunk : 1, sizeof(*payloads));
	char(*hashes)[65] = malloc((chunk ? chunk : 1) * sizeof(*hashes));
	if (!p || !payloads || !hashes) {
		rc = -ENOMEM;
		goto out;
	}
	/* Rows of a chunk go to the database in one batch (one prepared statement re-bound on
	 * SQLite, one pipeline on PostgreSQL); each row's prev_hash is the hash before it. */
	for (size_t i = 0; i < n; i += chunk) {
		size_t k = n - i < chunk ? n - i : chunk;
		for (size_t j = 0; j < k; j++) {
			const gh_audit_rec_t *r = &recs[i + j];
			const char *prev_j = j == 0 ? prev : hashes[j - 1];
			const char *payload = texts ? texts[i + j] : NULL;
			if (!texts && r->payload &&
			    !(payloads[j] =
			          json_dumps(r->payload, JSON_SORT_KEYS | JSON_COMPACT))) {
				rc = -EINVAL;
				goto out;
			}
			if (!payload)
				payload = payloads[j] ? payloads[j] : "{}";
			seq++;
			if ((rc = gh_audit_row_hash(chain, seq, r, payload, prev_j, hashes[j])) < 0)
				goto out;
			memcpy(last_prev, prev_j, 65);
			gh_val_t *v = &p[j * NCOLS];
			v[0] = GH_TEXT(chain);
			v[1] = GH_I64(seq);
			v[2] = GH_I64(r->ts_ms);
			v[3] = GH_TEXT(r->actor);
			v[4] = GH_TEXT(r->action);
			v[5] = GH_TEXT(r->entity_type);
			v[6] = GH_TEXT(r->entity_id);
			v[7] = GH_TEXT_OR_NULL(r->tenant_id);
			v[8] = GH_TEXT_OR_NULL(r->request_id);
			v[9] = GH_TEXT(payload);
			v[10] = GH_TEXT(prev_j);
			v[11] = GH_TEXT(hashes[j]);
		}
		if (n == 1 && gh_conn_backend(c) == GH_STORE_PG) {
			/* The common case, one row per state change: row and head in one statement
			 * (and, at commit, the COMMIT in the same round trip), so the head lock
			 * that serialises the chain's writers is held one round trip. */
			static const char sql[] =
			    "WITH ins AS (INSERT INTO gh_audit (chain, seq, ts_ms, actor, "
			    "action, entity_type, entity_id, tenant_id, request_id, "
			    "payload, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, "
			    "$8, $9, $10, $11, $12)) "
			    "UPDATE gh_audit_head SET seq = $2, hash = $12, prev_hash = $11 "
			    "WHERE chain = $1";
			rc = commit ? gh_conn_exec_commit(c, sql, p, NCOLS, NULL)
			            : gh_conn_exec(c, sql, p, NCOLS, NULL);
			head_done = rc == 0;
		} else {
			rc = gh_conn_exec_batch(
			    c,
			    "INSERT INTO gh_audit (chain, seq, ts_ms, actor, action, "
			    "entity_type, entity_id, tenant_id, request_id, payload, "
			    "prev_hash, hash) VALUES "
			    "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
			    p, NCOLS, k, NULL);
		}
		for (size_t j = 0; j < k; j++) {
			free(payloads[j]);
			payloads[j] = NULL;
		}
		if (rc < 0)
			goto out;
		memcpy(prev, hashes[k - 1], 65);
	}
	if (!head_done) {
		static const char sql[] =
		    "UPDATE gh_audit_head SET seq = $1, hash = $2, prev_hash = $4 WHERE chain = $3";
		gh_val_t v[] = {GH_I64(seq), GH_TEXT(prev), GH_TEXT(chain),
		                last_prev[0] ? GH_TEXT(last_prev) : GH_NULLV};
		rc = commit ? gh_conn_exec_commit(c, sql, v, 4, NULL)
		            : gh_conn_exec(c, sql, v, 4, NULL);
	}
	if (rc == 0 && last_seq)
		*last_seq = seq;
out:
	for (size_t j = 0; payloads && j < chunk; j++)
		free(payloads[j]);
	free(payloads);
	free(hashes);
	free(p);
	return rc;
}

/* ---- appends kept for commit -------------------------------------------------------------- */

typedef struct pend_s {
	struct pend_s *next;
	const char *chain;
	gh_audit_rec_t rec; /* strings copied, payload NULL */
	char *text;         /* the canonical payload */
} pend_t;

typedef struct {
	pend_t *head, **tail;
	size_t n;
} pending_t;

static int flush_pending(gh_conn_t *c, pending_t *pd, bool commit);

static int at_commit(gh_conn_t *c, void *data, bool last) { return flush_pending(c, data, last); }

/* Write what the transaction kept, chain by chain in name order (so two transactions lock
 * chain heads in the same order), each chain's rows in append order. */
static int flush_pending(gh_conn_t *c, pending_t *pd, bool commit)
{
	int rc = 0;
	gh_audit_rec_t *recs = pd->n ? malloc(pd->n * sizeof(*recs)) : NULL;
	char **texts = pd->n ? malloc(pd->n * sizeof(*texts)) : NULL;
	if (pd->n && (!recs || !texts)) {
		rc = -ENOMEM;
		goto out;
	}
	const char *done = NULL; /* chains up to this name are written */
	for (;;) {
		const char *chain = NULL;
		for (pend_t *e = pd->head; e; e = e->next)
			if ((!done || strcmp(e->chain, done) > 0) &&
			    (!chain || strcmp(e->chain, chain) < 0))
				chain = e->chain;
		if (!chain)
			break;
		size_t k = 0;
		bool more = false;
		for (pend_t *e = pd->head; e; e = e->next) {
			if (strcmp(e->chain, chain) == 0) {
				recs[k] = e->rec;
				texts[k++] = e->text;
			} else if (strcmp(e->chain, chain) > 0) {
				more = true;
			}
		}
		if ((rc = append_now(c, chain, recs, texts, k, NULL, commit && !more)) < 0)
			break;
		done = chain;
	}
out:
	free(recs);
	free(texts);
	if (rc == 0) {
		pd->head = NULL;
		pd->tail = &pd->head;
		pd->n = 0;
	}
	return rc;
}

static int keep(pending_t *pd, const char *chain, const gh_audit_rec_t *r)
{
	pend_t *e = talloc_zero(pd, pend_t);
	if (!e)
		return -ENOMEM;
	e->chain = talloc_strdup(e, chain);
	e->rec =
	    (gh_audit_rec_t){.ts_ms = r->ts_ms,
	                     .actor = talloc_strdup(e, r->actor),
	                     .action = talloc_strdup(e, r->action),
	                     .entity_type = talloc_strdup(e, r->entity_type),
	                     .entity_id = talloc_strdup(e, r->entity_id),
	                     .tenant_id = r->tenant_id ? talloc_strdup(e, r->tenant_id) : NULL,
	                     .request_id = r->request_id ? talloc_strdup(e, r->request_id) : NULL};
	char *text = r->payload ? json_dumps(r->payload, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
	e->text = talloc_strdup(e, text ? text : "{}");
	free(text);
	if (!e->chain || !e->rec.actor || !e->rec.action || !e->rec.entity_type ||
	    !e->rec.entity_id || (r->tenant_id && !e->rec.tenant_id) ||
	    (r->request_id && !e->rec.request_id) || !e->text) {
		talloc_free(e);
		return -ENOMEM;
	}
	if (r->payload && !text) {
		talloc_free(e);
		return -EINVAL;
	}
	if (!pd->tail)
		pd->tail = &pd->head;
	*pd->tail = e;
	pd->tail = &e->next;
	pd->n++;
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
	if (n == 0 && !last_seq)
		return 0;
	pending_t *pd = NULL;
	if (n <= DEFER_MAX && !last_seq && (pd = gh_conn_commit_data(c, at_commit, sizeof(*pd)))) {
		for (size_t i = 0; i < n; i++) {
			int rc = keep(pd, chain, &recs[i]);
			if (rc < 0)
				return rc;
		}
		return 0;
	}
	/* Written now: what the transaction kept goes first, so the chain keeps append order. */
	if ((pd = gh_conn_commit_data(c, at_commit, 0)) && pd->n) {
		int rc = flush_pending(c, pd, false);
		if (rc < 0)
			return rc;
	}
	return append_now(c, chain, recs, NULL, n, last_seq, false);
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
