/* export: the monthly regulator export, built by replaying the audit chain (see export.h for
 * the contract and why the chain, not the current rows, is the source). */
#include "export.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <talloc.h>
#include <unistd.h>

#include "lifecycle.h"
#include "service.h"

#define SOURCE       "ghasi/numbering"
#define DAY_MS       86400000LL
#define PAGE_ROWS    2000
#define ZERO_HASH    "0000000000000000000000000000000000000000000000000000000000000000"
#define SYSTEM_ACTOR "system:export"

const char *const num_export_file_names[NUM_EXPORT_FILES] = {"inventory.csv", "events.csv",
                                                             "manifest.json", "manifest.sig"};
enum { F_INVENTORY, F_EVENTS, F_MANIFEST, F_SIG };

/* The CSV headers (docs/numbering.md, "Regulator export"). */
static const char *const inv_cols[] = {
    "identifier",  "kind",      "operator_id",       "vanity_tier",
    "state",       "tenant_id", "lease_id",          "lease_status",
    "lease_start", "lease_end", "quarantine_reason", "previous_tenant_id",
    "last_seq",
};
static const char *const ev_cols[] = {
    "seq",       "time",     "identifier",        "action", "from_state", "to_state",
    "tenant_id", "lease_id", "quarantine_reason", "actor",  "row_hash",
};
#define NCOLS(a) (sizeof(a) / sizeof((a)[0]))

struct num_export_s {
	gh_store_t *store;
	gh_clock_t *clock;
	gh_signer_t *signer;
	gh_archive_t *archive;
	int64_t retention_years;
	gh_outbox_relay_t *relay;
	gh_counter_t *c_ok, *c_err;
};

int num_export_new(void *ctx, const num_export_opts_t *o, num_export_t **out)
{
	if (!o || !o->store || o->retention_years < 0)
		return -EINVAL;
	num_export_t *x = talloc_zero(ctx, num_export_t);
	if (!x)
		return -ENOMEM;
	x->store = o->store;
	x->clock = o->clock;
	x->signer = o->signer;
	x->archive = o->archive;
	x->retention_years = o->retention_years ? o->retention_years : 7;
	x->relay = o->relay;
	if (o->metrics) {
		const char *help = "regulator export generations (dry runs excluded) by result";
		char *ok = gh_metrics_labels(x, "result", "ok", NULL);
		char *er = gh_metrics_labels(x, "result", "error", NULL);
		x->c_ok =
		    gh_metrics_counter(o->metrics, "numbering_regulator_exports_total", help, ok);
		x->c_err =
		    gh_metrics_counter(o->metrics, "numbering_regulator_exports_total", help, er);
	}
	*out = x;
	return 0;
}

/* ---- months ------------------------------------------------------------------------------ */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int64_t *m)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	*m = mp + (mp < 10 ? 3 : -9);
	*y = yoe + era * 400 + (*m <= 2);
}

static int64_t month_start_ms(int64_t y, int64_t m) { return days_from_civil(y, m, 1) * DAY_MS; }

static int month_split(const char *s, int64_t *y, int64_t *m)
{
	if (!s || strlen(s) != 7 || s[4] != '-')
		return -EINVAL;
	for (int i = 0; i < 7; i++)
		if (i != 4 && (s[i] < '0' || s[i] > '9'))
			return -EINVAL;
	*y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
	*m = (s[5] - '0') * 10 + (s[6] - '0');
	return *y >= 2000 && *m >= 1 && *m <= 12 ? 0 : -EINVAL;
}

int num_export_month_parse(const char *month, int64_t *start_ms, int64_t *end_ms)
{
	int64_t y, m;
	if (month_split(month, &y, &m) < 0)
		return -EINVAL;
	*start_ms = month_start_ms(y, m);
	*end_ms = m == 12 ? month_start_ms(y + 1, 1) : month_start_ms(y, m + 1);
	return 0;
}

void num_export_prev_month(int64_t now_ms, char out[NUM_EXPORT_MONTH_LEN])
{
	int64_t days = now_ms >= 0 ? now_ms / DAY_MS : -((-now_ms + DAY_MS - 1) / DAY_MS);
	int64_t y, m;
	civil_from_days(days, &y, &m);
	if (--m == 0) {
		m = 12;
		y--;
	}
	unsigned yy = (unsigned)(y % 10000), mm = (unsigned)m % 100;
	out[0] = (char)('0' + yy / 1000);
	out[1] = (char)('0' + yy / 100 % 10);
	out[2] = (char)('0' + yy / 10 % 10);
	out[3] = (char)('0' + yy % 10);
	out[4] = '-';
	out[5] = (char)('0' + mm / 10);
	out[6] = (char)('0' + mm % 10);
	out[7] = '\0';
}

/* ---- string interning and the number table of the replay --------------------------------- */

/* An open-addressing hash index over strings kept elsewhere: slots hold 1 + the position of
 * the entry, keyof gives the key of a position. Grows at half load. */
typedef struct {
	uint32_t *slots;
	size_t cap; /* power of two */
	size_t used;
} hidx_t;

typedef const char *(*keyof_fn)(const void *ud, uint32_t pos);

static uint64_t str_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

/* 0 with *pos the entry's position, or -ENOENT with *slot where it would go. */
static int hidx_find(const hidx_t *h, const char *key, keyof_fn keyof, const void *ud,
                     uint32_t *pos, size_t *slot)
{
	size_t i = (size_t)str_hash(key) & (h->cap - 1);
	for (;; i = (i + 1) & (h->cap - 1)) {
		uint32_t v = h->slots[i];
		if (v == 0) {
			*slot = i;
			return -ENOENT;
		}
		if (strcmp(keyof(ud, v - 1), key) == 0) {
			*pos = v - 1;
			return 0;
		}
	}
}

/* Put position pos (of key) in, growing first when needed. 0 or -ENOMEM. */
static int hidx_add(void *ctx, hidx_t *h, const char *key, uint32_t pos, keyof_fn keyof,
                    const void *ud)
{
	if ((h->used + 1) * 2 > h->cap) {
		size_t ncap = h->cap ? h->cap * 2 : 1024;
		uint32_t *ns = talloc_zero_array(ctx, uint32_t, ncap);
		if (!ns)
			return -ENOMEM;
		hidx_t nh = {ns, ncap, 0};
		for (size_t i = 0; i < h->cap; i++) {
			if (!h->slots[i])
				continue;
			size_t j = (size_t)str_hash(keyof(ud, h->slots[i] - 1)) & (ncap - 1);
			while (ns[j])
				j = (j + 1) & (ncap - 1);
			ns[j] = h->slots[i];
			nh.used++;
		}
		talloc_free(h->slots);
		*h = nh;
	}
	uint32_t dummy;
	size_t slot;
	if (hidx_find(h, key, keyof, ud, &dummy, &slot) == 0)
		return 0;
	h->slots[slot] = pos + 1;
	h->used++;
	return 0;
}

/* Interned strings: index 0 is "" (none). */
typedef struct {
	char **s;
	size_t n, cap;
	hidx_t ix;
} strtab_t;

static const char *strtab_key(const void *ud, uint32_t pos)
{
	return ((const strtab_t *)ud)->s[pos];
}

static int strtab_init(void *ctx, strtab_t *t)
{
	t->cap = 64;
	t->s = talloc_array(ctx, char *, t->cap);
	if (!t->s)
		return -ENOMEM;
	t->s[0] = talloc_strdup(t->s, "");
	t->n = 1;
	return t->s[0] ? 0 : -ENOMEM;
}

/* The index of s (NULL or "" -> 0), adding it when new. 0 or -ENOMEM. */
static int strtab_intern(void *ctx, strtab_t *t, const char *s, uint32_t *out)
{
	size_t slot;
	if (!s || !*s) {
		*out = 0;
		return 0;
	}
	if (t->ix.cap && hidx_find(&t->ix, s, strtab_key, t, out, &slot) == 0)
		return 0;
	if (t->n == t->cap) {
		char **ns = talloc_realloc(ctx, t->s, char *, t->cap * 2);
		if (!ns)
			return -ENOMEM;
		t->s = ns;
		t->cap *= 2;
	}
	if (!(t->s[t->n] = talloc_strdup(t->s, s)))
		return -ENOMEM;
	*out = (uint32_t)t->n++;
	return hidx_add(ctx, &t->ix, s, *out, strtab_key, t);
}

/* One number as the replay knows it at the current chain position. */
typedef struct {
	char id[GH_IDENT_BUFSZ];
	int8_t kind; /* num_kind_t */
	uint8_t state, lease_st, qreason;
	int32_t vanity;
	uint32_t op, tenant, prev_tenant; /* interned */
	char lease_id[37];
	int64_t lease_start, lease_end; /* 0: unknown */
	int64_t last_seq;
} snap_t;

typedef struct {
	void *ctx;
	snap_t *v;
	size_t n, cap;
	hidx_t ix;
	strtab_t strs;
} numtab_t;

static const char *numtab_key(const void *ud, uint32_t pos)
{
	return ((const numtab_t *)ud)->v[pos].id;
}

/* The kind of a canonical identifier by its shape, for numbers whose creation row carries
 * none (e164.h canonical forms: "+<digits>", "<digits>", upper-case alphanumerics). */
static num_kind_t kind_of(const char *id)
{
	if (id[0] == '+')
		return NUM_KIND_MSISDN;
	for (const char *p = id; *p; p++)
		if (*p < '0' || *p > '9')
			return NUM_KIND_ALPHA;
	return NUM_KIND_SHORT_CODE;
}

/* The entry of id, created (AVAILABLE) when new. 0, -EBADMSG (not an identifier), -ENOMEM. */
static int numtab_get(numtab_t *t, const char *id, snap_t **out)
{
	uint32_t pos;
	size_t slot;
	size_t len = strlen(id);
	if (len == 0 || len >= GH_IDENT_BUFSZ)
		return -EBADMSG;
	if (t->ix.cap && hidx_find(&t->ix, id, numtab_key, t, &pos, &slot) == 0) {
		*out = &t->v[pos];
		return 0;
	}
	if (t->n == t->cap) {
		size_t ncap = t->cap ? t->cap * 2 : 1024;
		snap_t *nv = talloc_realloc(t->ctx, t->v, snap_t, ncap);
		if (!nv)
			return -ENOMEM;
		t->v = nv;
		t->cap = ncap;
	}
	snap_t *s = &t->v[t->n];
	memset(s, 0, sizeof *s);
	memcpy(s->id, id, len + 1);
	s->kind = (int8_t)kind_of(id);
	s->state = NUM_ST_AVAILABLE;
	pos = (uint32_t)t->n++;
	int rc = hidx_add(t->ctx, &t->ix, id, pos, numtab_key, t);
	if (rc < 0)
		return rc;
	*out = &t->v[pos];
	return 0;
}

/* ---- the chain ---------------------------------------------------------------------------- */

/* B(t): the seq of the first row stamped at or after t, minus one; when no row is stamped
 * that late yet, the chain's last seq (*closed = false). */
static int boundary(gh_conn_t *c, int64_t t_ms, int64_t *b, bool *closed)
{
	gh_rows_t *rs;
	int rc =
	    gh_conn_query_one(c, "SELECT min(seq) FROM gh_audit WHERE chain = $1 AND ts_ms >= $2",
	                      (gh_val_t[]){GH_TEXT(NUM_EXPORT_CHAIN), GH_I64(t_ms)}, 2, &rs);
	if (rc < 0)
		return rc;
	*closed = !gh_rows_isnull(rs, 0);
	*b = gh_rows_i64(rs, 0) - 1;
	gh_rows_close(rs);
	if (*closed)
		return 0;
	rc = gh_conn_query_one(c, "SELECT COALESCE(max(seq), 0) FROM gh_audit WHERE chain = $1",
	                       (gh_val_t[]){GH_TEXT(NUM_EXPORT_CHAIN)}, 1, &rs);
	if (rc < 0)
		return rc;
	*b = gh_rows_i64(rs, 0);
	gh_rows_close(rs);
	return 0;
}

typedef struct {
	int64_t end_ms, now_ms;
	const char *month, *actor, *request_id;
} close_tx_t;

/* Close the month in the chain (export.h): when no row is stamped at or after its end, append
 * one. In a write transaction, so the decision and the append see one chain. */
static int close_fn(gh_conn_t *c, void *ud)
{
	close_tx_t *t = ud;
	int64_t b;
	bool closed;
	int rc = boundary(c, t->end_ms, &b, &closed);
	if (rc < 0 || closed)
		return rc;
	json_t *payload = json_pack("{ss}", "month", t->month);
	if (!payload)
		return -ENOMEM;
	gh_audit_rec_t rec = {.ts_ms = t->now_ms,
	                      .actor = t->actor,
	                      .action = "chain.month_closed",
	                      .entity_type = "chain",
	                      .entity_id = t->month,
	                      .request_id = t->request_id,
	                      .payload = payload};
	rc = gh_audit_append(c, NUM_EXPORT_CHAIN, &rec, 1, NULL);
	json_decref(payload);
	return rc;
}

/* ---- building the files ------------------------------------------------------------------- */

typedef struct {
	void *ctx;
	numtab_t nums;
	gh_csv_writer_t *ev;
	int64_t ev_rows;
	int64_t events_after; /* rows with seq > this are the month's events */
	int64_t seq;          /* of the row being applied, for messages */
	int64_t mismatches;   /* rows whose `from` is not the replayed state */
	int64_t first_mismatch;
	char why[160];
} build_t;

static int csv_text(gh_csv_writer_t *w, const char *s)
{
	return gh_csv_write_text(w, s ? s : "", s ? strlen(s) : 0);
}

static int csv_field(gh_csv_writer_t *w, const char *s)
{
	return gh_csv_write_field(w, s ? s : "", s ? strlen(s) : 0);
}

static int csv_int(gh_csv_writer_t *w, int64_t v)
{
	char buf[24];
	int n = snprintf(buf, sizeof buf, "%lld", (long long)v);
	return gh_csv_write_field(w, buf, (size_t)n);
}

static int csv_time(gh_csv_writer_t *w, int64_t ms)
{
	if (ms == 0)
		return gh_csv_write_field(w, "", 0);
	char buf[25];
	gh_time_format(ms, buf);
	return gh_csv_write_field(w, buf, strlen(buf));
}

static int csv_header(gh_csv_writer_t *w, const char *const *cols, size_t n)
{
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = csv_field(w, cols[i]);
	return rc ? rc : gh_csv_write_end(w);
}

static const char *jstr(const json_t *o, const char *k) { return gh_json_get_str(o, k, NULL); }

/* Apply one audit row of a number to the replay (see docs/numbering.md for the rules), and
 * write it to events.csv when it is one of the month's. */
static int apply_row(build_t *b, int64_t seq, int64_t ts, const char *actor, const char *action,
                     const char *ident, const char *row_tenant, const char *payload_text,
                     const char *hash)
{
	b->seq = seq;
	/* a refused transition changed nothing: neither state nor event */
	if (strcmp(action, "number.transition_refused") == 0)
		return 0;
	json_error_t je;
	json_t *p = json_loads(payload_text, 0, &je);
	if (!json_is_object(p)) {
		json_decref(p);
		snprintf(b->why, sizeof b->why, "audit row %lld: payload is not a JSON object",
		         (long long)seq);
		return -EBADMSG;
	}
	numtab_t *t = &b->nums;
	snap_t *s;
	int rc = numtab_get(t, ident, &s);
	if (rc < 0) {
		if (rc == -EBADMSG)
			snprintf(b->why, sizeof b->why, "audit row %lld: '%s' is not an identifier",
			         (long long)seq, ident);
		goto out;
	}
	const char *to = jstr(p, "to"), *from = jstr(p, "from");
	const char *kind = jstr(p, "kind"), *lease = jstr(p, "lease_id");
	const char *qr = jstr(p, "quarantine_reason");
	num_state_t st;
	num_kind_t k;
	num_qreason_t q;
	bool created = false;
	if (!to && kind) {
		/* a creation row (number.add, imports): the number's fixed attributes */
		if (num_kind_parse(kind, &k) == 0)
			s->kind = (int8_t)k;
		if ((rc = strtab_intern(t->ctx, &t->strs, jstr(p, "operator_id"), &s->op)) < 0)
			goto out;
		s->vanity = (int32_t)gh_json_get_int(p, "vanity_tier", 0);
		s->state = NUM_ST_AVAILABLE;
		created = true;
	} else if (to && num_state_parse(to, &st) == 0) {
		/* a number that changed outside the chain (or was created without a creation
		 * row) shows here: the export is then not the database's history; say so */
		if (from && strcmp(from, num_state_name((num_state_t)s->state)) != 0 &&
		    b->mismatches++ == 0)
			b->first_mismatch = seq;
		s->state = (uint8_t)st;
		uint32_t ten;
		if ((rc = strtab_intern(t->ctx, &t->strs, row_tenant, &ten)) < 0)
			goto out;
		/* the row's tenant is the new holder, or the holder the number leaves */
		bool held =
		    st == NUM_ST_RESERVED || st == NUM_ST_ASSIGNED || st == NUM_ST_SUSPENDED;
		s->tenant = held ? ten : 0;
		if (st == NUM_ST_QUARANTINED) {
			if (qr && num_qreason_parse(qr, &q) == 0) {
				s->qreason = (uint8_t)q;
				s->prev_tenant = ten;
			}
		} else {
			s->qreason = NUM_QR_NONE;
			s->prev_tenant = 0;
		}
		if (lease && *lease && strlen(lease) < sizeof s->lease_id) {
			if (strcmp(s->lease_id, lease) != 0) {
				memcpy(s->lease_id, lease, strlen(lease) + 1);
				s->lease_start = ts;
				s->lease_end = 0;
			}
			s->lease_st =
			    st == NUM_ST_SUSPENDED ? NUM_LEASE_SUSPENDED : NUM_LEASE_ACTIVE;
			const char *ends = jstr(p, "lease_ends");
			int64_t e;
			if (ends && gh_time_parse(ends, &e) == 0)
				s->lease_end = e;
		} else {
			s->lease_id[0] = '\0';
			s->lease_st = NUM_LEASE_NONE;
			s->lease_start = s->lease_end = 0;
		}
	} else if (strcmp(action, "number.renew") == 0) {
		/* a renewal moves the live lease's end (repo lease renewal, issue 4 jobs) */
		const char *ends = jstr(p, "ends_after");
		int64_t e;
		if (lease && strcmp(lease, s->lease_id) == 0 && ends &&
		    gh_time_parse(ends, &e) == 0)
			s->lease_end = e;
	}
	s->last_seq = seq;
	if (seq <= b->events_after)
		goto out;
	/* seq,time,identifier,action,from_state,to_state,tenant_id,lease_id,quarantine_reason,
	 * actor,row_hash */
	gh_csv_writer_t *w = b->ev;
	if ((rc = csv_int(w, seq)) < 0 || (rc = csv_time(w, ts)) < 0 ||
	    (rc = csv_field(w, ident)) < 0 || (rc = csv_field(w, action)) < 0 ||
	    (rc = csv_field(w, from)) < 0 || (rc = csv_field(w, created ? "AVAILABLE" : to)) < 0 ||
	    (rc = csv_text(w, row_tenant)) < 0 || (rc = csv_field(w, lease)) < 0 ||
	    (rc = csv_field(w, qr)) < 0 || (rc = csv_text(w, actor)) < 0 ||
	    (rc = csv_field(w, hash)) < 0 || (rc = gh_csv_write_end(w)) < 0)
		goto out;
	b->ev_rows++;
out:
	json_decref(p);
	return rc;
}

/* Replay the number rows 1..last of the chain, in pages (PostgreSQL materialises results). */
static int replay(gh_conn_t *c, build_t *b, int64_t last)
{
	int64_t after = 0;
	for (;;) {
		gh_rows_t *rs;
		int rc = gh_conn_query(
		    c,
		    "SELECT seq, ts_ms, actor, action, entity_id, tenant_id, payload, "
		    "hash FROM gh_audit WHERE chain = $1 AND entity_type = 'number' "
		    "AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4",
		    (gh_val_t[]){GH_TEXT(NUM_EXPORT_CHAIN), GH_I64(after), GH_I64(last),
		                 GH_I64(PAGE_ROWS)},
		    4, &rs);
		if (rc < 0)
			return rc;
		int n = 0;
		while ((rc = gh_rows_next(rs)) > 0) {
			n++;
			after = gh_rows_i64(rs, 0);
			rc = apply_row(b, after, gh_rows_i64(rs, 1), gh_rows_text(rs, 2),
			               gh_rows_text(rs, 3), gh_rows_text(rs, 4),
			               gh_rows_isnull(rs, 5) ? NULL : gh_rows_text(rs, 5),
			               gh_rows_text(rs, 6), gh_rows_text(rs, 7));
			if (rc < 0)
				break;
		}
		gh_rows_close(rs);
		if (rc < 0)
			return rc;
		if (n < PAGE_ROWS)
			return 0;
	}
}

static int cmp_snap(const void *a, const void *b)
{
	return strcmp((*(const snap_t *const *)a)->id, (*(const snap_t *const *)b)->id);
}

/* inventory.csv: every number known at the chain position, by identifier bytes. */
static int write_inventory(build_t *b, gh_csv_writer_t *w, int64_t *rows)
{
	numtab_t *t = &b->nums;
	const snap_t **order = talloc_array(b->ctx, const snap_t *, t->n ? t->n : 1);
	if (!order)
		return -ENOMEM;
	for (size_t i = 0; i < t->n; i++)
		order[i] = &t->v[i];
	qsort(order, t->n, sizeof *order, cmp_snap);
	int rc = csv_header(w, inv_cols, NCOLS(inv_cols));
	for (size_t i = 0; i < t->n && rc == 0; i++) {
		const snap_t *s = order[i];
		char **str = t->strs.s;
		if ((rc = csv_field(w, s->id)) < 0 ||
		    (rc = csv_field(w, num_kind_name((num_kind_t)s->kind))) < 0 ||
		    (rc = csv_text(w, str[s->op])) < 0 || (rc = csv_int(w, s->vanity)) < 0 ||
		    (rc = csv_field(w, num_state_name((num_state_t)s->state))) < 0 ||
		    (rc = csv_text(w, str[s->tenant])) < 0 ||
		    (rc = csv_field(w, s->lease_id)) < 0 ||
		    (rc = csv_field(w, s->lease_st
		                           ? num_lease_status_name((num_lease_status_t)s->lease_st)
		                           : "")) < 0 ||
		    (rc = csv_time(w, s->lease_start)) < 0 ||
		    (rc = csv_time(w, s->lease_end)) < 0 ||
		    (rc = csv_field(w, s->qreason ? num_qreason_name((num_qreason_t)s->qreason)
		                                  : "")) < 0 ||
		    (rc = csv_text(w, str[s->prev_tenant])) < 0 ||
		    (rc = csv_int(w, s->last_seq)) < 0 || (rc = gh_csv_write_end(w)) < 0)
			break;
	}
	*rows = (int64_t)t->n;
	talloc_free(order);
	return rc;
}

static int file_set(num_export_result_t *r, int i, const void *data, size_t len, int64_t rows)
{
	num_export_file_t *f = &r->files[i];
	f->name = num_export_file_names[i];
	f->data = talloc_size(r, len + 1);
	if (!f->data)
		return -ENOMEM;
	memcpy(f->data, data, len);
	f->data[len] = '\0';
	f->len = len;
	f->rows = rows;
	return gh_sign_sha256_hex(data, len, f->sha256) < 0 ? -EIO : 0;
}

static json_t *chain_json(const num_export_result_t *r)
{
	return json_pack("{ss sI sI ss}", "chain", NUM_EXPORT_CHAIN, "first_seq",
	                 (json_int_t)r->first_seq, "last_seq", (json_int_t)r->last_seq, "last_hash",
	                 r->chain_hash);
}

static json_t *time_json(int64_t ms)
{
	char buf[25];
	gh_time_format(ms, buf);
	return json_string(buf);
}

/* manifest.json (canonical) and manifest.sig over it. */
static int write_manifest(num_export_t *x, num_export_result_t *r, int64_t start_ms, int64_t end_ms)
{
	const gh_sign_pubkey_t *pub = gh_signer_pubkey(x->signer);
	json_t *files = json_array();
	for (int i = F_INVENTORY; i <= F_EVENTS; i++) {
		const num_export_file_t *f = &r->files[i];
		json_array_append_new(files, json_pack("{ss sI sI ss}", "name", f->name, "bytes",
		                                       (json_int_t)f->len, "rows",
		                                       (json_int_t)f->rows, "sha256", f->sha256));
	}
	json_t *m =
	    json_pack("{ss so so so ss ss ss s{so so}}", "algorithm",
	              gh_sign_alg_names[gh_signer_alg(x->signer)], "audit_chain", chain_json(r),
	              "data_up_to", time_json(end_ms), "files", files, "format", NUM_EXPORT_FORMAT,
	              "key_id", gh_sign_pubkey_id(pub), "month", r->month, "period", "start",
	              time_json(start_ms), "end", time_json(end_ms));
	if (!m)
		return -ENOMEM;
	void *tmp = talloc_new(NULL);
	char *text = gh_json_canonical(m, tmp);
	json_decref(m);
	uint8_t *sig;
	size_t sig_len;
	int rc = -ENOMEM;
	if (!text)
		goto out;
	if ((rc = file_set(r, F_MANIFEST, text, strlen(text), -1)) < 0)
		goto out;
	if ((rc = gh_signer_sign(x->signer, tmp, text, strlen(text), &sig, &sig_len)) < 0)
		goto out;
	rc = file_set(r, F_SIG, sig, sig_len, -1);
out:
	talloc_free(tmp);
	return rc;
}

/* Build the four files of the month from the chain, up to and including the manifest's
 * signature. */
static int build(num_export_t *x, gh_conn_t *c, num_export_result_t *r, int64_t start_ms,
                 int64_t end_ms, gh_err_t *err)
{
	void *tmp = talloc_new(NULL);
	build_t b = {.ctx = tmp, .nums = {.ctx = tmp}};
	int64_t first_b, last_b, inv_rows = 0;
	bool closed_start;
	int rc;
	if (!tmp)
		return -ENOMEM;
	if ((rc = boundary(c, start_ms, &first_b, &closed_start)) < 0 ||
	    (rc = boundary(c, end_ms, &last_b, &r->month_closed)) < 0)
		goto db;
	r->first_seq = first_b + 1;
	r->last_seq = last_b;
	snprintf(r->chain_hash, sizeof r->chain_hash, "%s", ZERO_HASH);
	if (last_b > 0) {
		gh_rows_t *rs;
		rc = gh_conn_query_one(c, "SELECT hash FROM gh_audit WHERE chain = $1 AND seq = $2",
		                       (gh_val_t[]){GH_TEXT(NUM_EXPORT_CHAIN), GH_I64(last_b)}, 2,
		                       &rs);
		if (rc < 0)
			goto db;
		snprintf(r->chain_hash, sizeof r->chain_hash, "%s", gh_rows_text(rs, 0));
		gh_rows_close(rs);
	}
	gh_csv_wopts_t wo = {.injection = GH_CSV_INJ_NEUTRALISE};
	gh_csv_writer_t *inv = gh_csv_writer_new(tmp, &wo, NULL, NULL);
	b.ev = gh_csv_writer_new(tmp, &wo, NULL, NULL);
	b.events_after = first_b;
	if (!inv || !b.ev || strtab_init(tmp, &b.nums.strs) < 0) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = csv_header(b.ev, ev_cols, NCOLS(ev_cols))) < 0)
		goto out;
	rc = replay(c, &b, last_b);
	if (rc == -EBADMSG) {
		gh_log(GH_LOG_ERROR, "numbering export: unreadable audit row", "month", r->month,
		       "problem", b.why, NULL);
		gh_err_set(err, GH_E_INTERNAL, NULL, "%s", b.why);
		rc = -EBADMSG;
		goto out;
	}
	if (rc < 0)
		goto db;
	if (b.mismatches) {
		char n[24], first[24];
		snprintf(n, sizeof n, "%lld", (long long)b.mismatches);
		snprintf(first, sizeof first, "%lld", (long long)b.first_mismatch);
		gh_log(GH_LOG_WARN,
		       "numbering export: audit rows whose from-state differs from the replay "
		       "(numbers changed or created without an audit row)",
		       "month", r->month, "rows", n, "first_seq", first, NULL);
	}
	if ((rc = write_inventory(&b, inv, &inv_rows)) < 0)
		goto out;
	size_t len;
	const char *data = gh_csv_writer_data(inv, &len);
	if ((rc = file_set(r, F_INVENTORY, data, len, inv_rows)) < 0)
		goto out;
	data = gh_csv_writer_data(b.ev, &len);
	if ((rc = file_set(r, F_EVENTS, data, len, b.ev_rows)) < 0)
		goto out;
	if ((rc = write_manifest(x, r, start_ms, end_ms)) < 0)
		rc = gh_err_set(err, GH_E_UNAVAILABLE, NULL, "signing the manifest failed (%s)",
		                strerror(-rc));
	goto out;
db:
	rc = gh_err_set(err, GH_E_UNAVAILABLE, NULL, "numbering database unavailable (%s)",
	                strerror(-rc));
out:
	talloc_free(tmp);
	return rc;
}

/* ---- archive, record, event --------------------------------------------------------------- */

static char *archive_name(void *ctx, const char *month, const char *file)
{
	return talloc_asprintf(ctx, NUM_EXPORT_PREFIX "%s/%s", month, file);
}

static json_t *files_json(const num_export_result_t *r)
{
	json_t *a = json_array();
	for (int i = 0; i < NUM_EXPORT_FILES; i++) {
		const num_export_file_t *f = &r->files[i];
		json_t *o = json_pack("{ss ss sI}", "name", f->name, "sha256", f->sha256, "bytes",
		                      (json_int_t)f->len);
		if (f->rows >= 0)
			json_object_set_new(o, "rows", json_integer(f->rows));
		char buf[GH_ARCHIVE_NAME_MAX + 1];
		snprintf(buf, sizeof buf, NUM_EXPORT_PREFIX "%s/%s", r->month, f->name);
		json_object_set_new(o, "archive_name", json_string(buf));
		json_array_append_new(a, o);
	}
	return a;
}

typedef struct {
	num_export_t *x;
	num_export_result_t *r;
	const char *actor, *request_id;
	int64_t now_ms;
} record_tx_t;

/* Record the archived export, emit its event and audit it, once per month: the insert that
 * conflicts with an earlier record does nothing and the transaction adds nothing else. */
static int record_fn(gh_conn_t *c, void *ud)
{
	record_tx_t *t = ud;
	num_export_result_t *r = t->r;
	const gh_sign_pubkey_t *pub = gh_signer_pubkey(t->x->signer);
	const char *alg = gh_sign_alg_names[gh_signer_alg(t->x->signer)];
	int64_t n = 0;
	r->recorded = false;
	int rc = gh_conn_exec(
	    c,
	    "INSERT INTO num_exports (month, created_ms, actor, chain_first_seq, chain_last_seq, "
	    "chain_hash, inventory_rows, events_rows, manifest_sha256, key_id, algorithm, "
	    "event_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, '') "
	    "ON CONFLICT (month) DO NOTHING",
	    (gh_val_t[]){GH_TEXT(r->month), GH_I64(t->now_ms), GH_TEXT(t->actor),
	                 GH_I64(r->first_seq), GH_I64(r->last_seq), GH_TEXT(r->chain_hash),
	                 GH_I64(r->files[F_INVENTORY].rows), GH_I64(r->files[F_EVENTS].rows),
	                 GH_TEXT(r->files[F_MANIFEST].sha256), GH_TEXT(gh_sign_pubkey_id(pub)),
	                 GH_TEXT(alg)},
	    11, &n);
	if (rc < 0 || n == 0)
		return rc;
	char agg[64];
	snprintf(agg, sizeof agg, "numbering/regulator-export/%s", r->month);
	json_t *data = json_pack("{ss ss so so ss ss ss}", "id", r->month, "month", r->month,
	                         "audit_chain", chain_json(r), "files", files_json(r),
	                         "manifest_sha256", r->files[F_MANIFEST].sha256, "key_id",
	                         gh_sign_pubkey_id(pub), "algorithm", alg);
	if (!data)
		return -ENOMEM;
	gh_event_t ev = {.type = NUM_EXPORT_EVENT,
	                 .source = SOURCE,
	                 .aggregate_id = agg,
	                 .time_ms = t->now_ms,
	                 .data = data};
	rc = gh_outbox_add(c, &ev, r->event_id, NULL);
	if (rc == 0)
		rc = gh_conn_exec(c, "UPDATE num_exports SET event_id = $1 WHERE month = $2",
		                  (gh_val_t[]){GH_TEXT(r->event_id), GH_TEXT(r->month)}, 2, NULL);
	json_t *payload =
	    rc == 0 ? json_pack("{ss sI sI ss ss ss}", "manifest_sha256",
	                        r->files[F_MANIFEST].sha256, "first_seq", (json_int_t)r->first_seq,
	                        "last_seq", (json_int_t)r->last_seq, "last_hash", r->chain_hash,
	                        "key_id", gh_sign_pubkey_id(pub), "event_id", r->event_id)
	            : NULL;
	if (rc == 0 && !payload)
		rc = -ENOMEM;
	if (rc == 0) {
		gh_audit_rec_t rec = {.ts_ms = t->now_ms,
		                      .actor = t->actor,
		                      .action = "regulator_export.generated",
		                      .entity_type = "regulator_export",
		                      .entity_id = r->month,
		                      .request_id = t->request_id,
		                      .payload = payload};
		rc = gh_audit_append(c, NUM_EXPORT_CHAIN, &rec, 1, NULL);
	}
	json_decref(payload);
	json_decref(data);
	if (rc == 0)
		r->recorded = true;
	return rc;
}

/* Write the four files; a name holding other bytes is a CONFLICT (see export.h). */
static int archive_files(num_export_t *x, num_export_result_t *r, int64_t end_ms, gh_err_t *err)
{
	int64_t y, m;
	month_split(r->month, &y, &m);
	/* kept retention_years after the month's end (and never less than a day from now) */
	int64_t until = month_start_ms(y + x->retention_years, m) + (end_ms - month_start_ms(y, m));
	int64_t now = gh_clock_now_ms(x->clock);
	if (until < now + DAY_MS)
		until = now + DAY_MS;
	void *tmp = talloc_new(NULL);
	int rc = 0;
	for (int i = 0; i < NUM_EXPORT_FILES && rc == 0; i++) {
		const num_export_file_t *f = &r->files[i];
		char *name = archive_name(tmp, r->month, f->name);
		json_t *meta = json_pack("{ss ss ss}", "kind", NUM_EXPORT_FORMAT, "month", r->month,
		                         "file", f->name);
		rc = name && meta
		         ? gh_archive_put(x->archive, name, f->data, f->len, until, meta, tmp, NULL)
		         : -ENOMEM;
		json_decref(meta);
		if (rc == -EEXIST) {
			gh_log(
			    GH_LOG_ERROR,
			    "numbering export: the archive holds other bytes for this month (audit "
			    "chain or signing key changed since it was archived)",
			    "month", r->month, "file", f->name, NULL);
			gh_err_set(err, GH_E_CONFLICT, NULL,
			           "the archived export of %s differs from this generation (%s): "
			           "the audit chain or the signing key changed since",
			           r->month, f->name);
			rc = -EEXIST;
		} else if (rc < 0) {
			rc = gh_err_set(err, GH_E_UNAVAILABLE, NULL, "archive write failed (%s)",
			                strerror(-rc));
		}
	}
	talloc_free(tmp);
	return rc;
}

int num_export_generate(num_export_t *x, const char *month, bool dry_run, const char *actor,
                        const char *request_id, void *ctx, num_export_result_t **out, gh_err_t *err)
{
	gh_err_t local = {0};
	if (!err)
		err = &local;
	int64_t start_ms, end_ms, now = gh_clock_now_ms(x->clock);
	num_export_result_t *r = NULL;
	gh_conn_t *c = NULL;
	int rc;
	if (num_export_month_parse(month, &start_ms, &end_ms) < 0) {
		rc = gh_err_set(err, GH_E_INVALID_ARGUMENT, "/month",
		                "month must be YYYY-MM (2000-01 or later)");
		goto out;
	}
	if (end_ms > now) {
		rc = gh_err_set(err, GH_E_INVALID_ARGUMENT, "/month",
		                "%s has not ended yet: only past months can be exported", month);
		goto out;
	}
	if (!x->signer) {
		rc = gh_err_set(err, GH_E_FAILED_PRECONDITION, NULL,
		                "no export signing key configured (numbering.export_key_pem or "
		                "numbering.export_pkcs11_*)");
		goto out;
	}
	if (!dry_run && !x->archive) {
		rc = gh_err_set(err, GH_E_FAILED_PRECONDITION, NULL,
		                "no archive configured (archive.dir): only dry runs are possible");
		goto out;
	}
	if (!(r = talloc_zero(ctx, num_export_result_t))) {
		rc = -ENOMEM;
		goto out;
	}
	snprintf(r->month, sizeof r->month, "%s", month);
	r->dry_run = dry_run;
	if (!actor)
		actor = SYSTEM_ACTOR;
	if (!dry_run) {
		close_tx_t ct = {end_ms, now, month, actor, request_id};
		gh_tx_opts_t o = {.flags = GH_TX_WRITE};
		if ((rc = gh_store_tx(x->store, close_fn, &ct, &o)) < 0) {
			rc = gh_err_set(err, GH_E_UNAVAILABLE, NULL,
			                "numbering database unavailable (%s)", strerror(-rc));
			goto out;
		}
	}
	if ((rc = gh_store_acquire(x->store, 5000, &c)) < 0) {
		rc = gh_err_set(err, GH_E_UNAVAILABLE, NULL, "numbering database unavailable (%s)",
		                strerror(-rc));
		goto out;
	}
	rc = build(x, c, r, start_ms, end_ms, err);
	gh_store_release(c);
	if (rc < 0 || dry_run)
		goto out;
	if ((rc = archive_files(x, r, end_ms, err)) < 0)
		goto out;
	r->archived = true;
	record_tx_t rt = {x, r, actor, request_id, now};
	gh_tx_opts_t o = {.flags = GH_TX_WRITE};
	if ((rc = gh_store_tx(x->store, record_fn, &rt, &o)) < 0) {
		rc = gh_err_set(err, GH_E_UNAVAILABLE, NULL,
		                "recording the export failed (%s); the files are archived, retry "
		                "to emit the event",
		                strerror(-rc));
		goto out;
	}
	if (r->recorded && x->relay)
		gh_outbox_relay_kick(x->relay);
	char rows[24];
	snprintf(rows, sizeof rows, "%lld", (long long)r->files[F_INVENTORY].rows);
	gh_log(GH_LOG_INFO,
	       r->recorded ? "numbering export archived" : "numbering export already archived",
	       "month", month, "numbers", rows, "manifest_sha256", r->files[F_MANIFEST].sha256,
	       NULL);
out:
	if (!dry_run && rc != -EINVAL)
		gh_counter_inc(rc == 0 ? x->c_ok : x->c_err);
	if (rc < 0) {
		talloc_free(r);
		r = NULL;
	}
	*out = r;
	gh_err_clear(&local);
	return rc;
}

int num_export_run_monthly(num_export_t *x, int64_t now_ms)
{
	char month[NUM_EXPORT_MONTH_LEN];
	num_export_prev_month(now_ms, month);
	num_export_result_t *r;
	gh_err_t err = {0};
	int rc = num_export_generate(x, month, false, SYSTEM_ACTOR, NULL, NULL, &r, &err);
	if (rc < 0)
		gh_log(GH_LOG_ERROR, "numbering regulator export failed", "month", month, "error",
		       err.message, NULL);
	talloc_free(r);
	gh_err_clear(&err);
	return rc;
}

/* ---- reading recorded exports ------------------------------------------------------------- */

#define REC_COLS                                                                  \
	"month, created_ms, actor, chain_first_seq, chain_last_seq, chain_hash, " \
	"inventory_rows, events_rows, manifest_sha256, key_id, algorithm, event_id"

static json_t *record_json(num_export_t *x, gh_rows_t *rs, bool with_files)
{
	const char *month = gh_rows_text(rs, 0);
	json_t *o =
	    json_pack("{ss ss so ss s{ss sI sI ss} sI sI ss ss ss ss}", "id", month, "month", month,
	              "created_at", time_json(gh_rows_i64(rs, 1)), "actor", gh_rows_text(rs, 2),
	              "audit_chain", "chain", NUM_EXPORT_CHAIN, "first_seq",
	              (json_int_t)gh_rows_i64(rs, 3), "last_seq", (json_int_t)gh_rows_i64(rs, 4),
	              "last_hash", gh_rows_text(rs, 5), "inventory_rows",
	              (json_int_t)gh_rows_i64(rs, 6), "events_rows", (json_int_t)gh_rows_i64(rs, 7),
	              "manifest_sha256", gh_rows_text(rs, 8), "key_id", gh_rows_text(rs, 9),
	              "algorithm", gh_rows_text(rs, 10), "event_id", gh_rows_text(rs, 11));
	if (!o || !with_files || !x->archive)
		return o;
	json_t *files = json_array();
	void *tmp = talloc_new(NULL);
	for (int i = 0; i < NUM_EXPORT_FILES; i++) {
		char *name = archive_name(tmp, month, num_export_file_names[i]);
		gh_archive_ref_t *ref;
		json_t *f = json_pack("{ss ss}", "name", num_export_file_names[i], "archive_name",
		                      name ? name : "");
		if (name && gh_archive_stat(x->archive, name, tmp, &ref) == 0) {
			json_object_set_new(f, "sha256", json_string(ref->sha256));
			json_object_set_new(f, "bytes", json_integer((json_int_t)ref->size));
			json_object_set_new(f, "retention_until",
			                    time_json(ref->retention_until_ms));
		} else {
			json_object_set_new(f, "missing", json_true());
		}
		json_array_append_new(files, f);
	}
	talloc_free(tmp);
	json_object_set_new(o, "files", files);
	return o;
}

int num_export_list(num_export_t *x, json_t **out, gh_err_t *err)
{
	gh_conn_t *c;
	gh_rows_t *rs;
	int rc = gh_store_acquire(x->store, 5000, &c);
	if (rc < 0)
		return gh_err_set(err, GH_E_UNAVAILABLE, NULL, "numbering database unavailable");
	json_t *arr = json_array();
	rc = gh_conn_query(c, "SELECT " REC_COLS " FROM num_exports ORDER BY month DESC", NULL, 0,
	                   &rs);
	if (rc == 0) {
		while ((rc = gh_rows_next(rs)) > 0)
			json_array_append_new(arr, record_json(x, rs, false));
		gh_rows_close(rs);
	}
	gh_store_release(c);
	if (rc < 0) {
		json_decref(arr);
		return gh_err_set(err, GH_E_UNAVAILABLE, NULL, "numbering database unavailable");
	}
	*out = json_pack("{so}", "exports", arr);
	return *out ? 0 : -ENOMEM;
}

int num_export_get(num_export_t *x, const char *month, json_t **out, gh_err_t *err)
{
	int64_t a, b;
	if (num_export_month_parse(month, &a, &b) < 0)
		return gh_err_set(err, GH_E_NOT_FOUND, NULL, "no export %s", month ? month : "");
	gh_conn_t *c;
	gh_rows_t *rs;
	int rc = gh_store_acquire(x->store, 5000, &c);
	if (rc < 0)
		return gh_err_set(err, GH_E_UNAVAILABLE, NULL, "numbering database unavailable");
	rc = gh_conn_query_one(c, "SELECT " REC_COLS " FROM num_exports WHERE month = $1",
	                       (gh_val_t[]){GH_TEXT(month)}, 1, &rs);
	if (rc == 0) {
		*out = record_json(x, rs, true);
		gh_rows_close(rs);
		if (!*out)
			rc = -ENOMEM;
	}
	gh_store_release(c);
	if (rc == -ENOENT)
		return gh_err_set(err, GH_E_NOT_FOUND, NULL, "no export %s", month);
	if (rc < 0)
		return gh_err_set(err, GH_E_UNAVAILABLE, NULL, "numbering database unavailable");
	return 0;
}

int num_export_file(num_export_t *x, const char *month, const char *name, void *ctx, void **data,
                    size_t *len, gh_err_t *err)
{
	int known = 0;
	for (int i = 0; i < NUM_EXPORT_FILES; i++)
		known |= name && strcmp(name, num_export_file_names[i]) == 0;
	if (!known)
		return gh_err_set(err, GH_E_INVALID_ARGUMENT, "name",
		                  "name must be inventory.csv, events.csv, manifest.json or "
		                  "manifest.sig");
	json_t *rec;
	int rc = num_export_get(x, month, &rec, err);
	if (rc < 0)
		return rc;
	json_decref(rec);
	if (!x->archive)
		return gh_err_set(err, GH_E_FAILED_PRECONDITION, NULL, "no archive configured");
	char *an = archive_name(ctx, month, name);
	rc = an ? gh_archive_get(x->archive, an, ctx, data, len, NULL) : -ENOMEM;
	if (rc == -ENOENT)
		return gh_err_set(err, GH_E_NOT_FOUND, NULL, "%s of %s is not in the archive", name,
		                  month);
	if (rc == -EBADMSG) {
		gh_log(GH_LOG_ERROR, "numbering export: archived file fails its checksum", "name",
		       an, NULL);
		return gh_err_set(err, GH_E_INTERNAL, NULL, "archived %s fails its checksum", name);
	}
	if (rc < 0)
		return gh_err_set(err, GH_E_UNAVAILABLE, NULL, "archive read failed (%s)",
		                  strerror(-rc));
	return 0;
}

/* ---- verification -------------------------------------------------------------------------- */

static int read_all(void *ctx, const char *path, char **data, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ENOENT : -EIO;
	struct stat st;
	int rc = -EIO;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > (64 << 20))
		goto out;
	char *buf = talloc_size(ctx, (size_t)st.st_size + 1);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n <= 0)
			goto out;
		got += (size_t)n;
	}
	buf[got] = '\0';
	*data = buf;
	*len = got;
	rc = 0;
out:
	close(fd);
	return rc;
}

#define SAY(...)                                   \
	do {                                       \
		if (out)                           \
			fprintf(out, __VA_ARGS__); \
	} while (0)

int num_export_verify(const char *manifest_path, const char *sig_path, const char *key_pem_path,
                      FILE *out)
{
	void *tmp = talloc_new(NULL);
	char *mtext, *ktext, *stext;
	size_t mlen, klen, slen;
	json_t *m = NULL;
	gh_sign_pubkey_t *pub;
	int rc, bad = 0;
	char *dir = talloc_strdup(tmp, manifest_path);
	dir = dir ? dirname(dir) : NULL;
	if (!dir) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = read_all(tmp, manifest_path, &mtext, &mlen)) < 0) {
		SAY("cannot read manifest %s: %s\n", manifest_path, strerror(-rc));
		goto out;
	}
	json_error_t je;
	m = json_loadb(mtext, mlen, JSON_REJECT_DUPLICATES, &je);
	if (!json_is_object(m) ||
	    strcmp(gh_json_get_str(m, "format", ""), NUM_EXPORT_FORMAT) != 0 ||
	    !json_is_array(json_object_get(m, "files"))) {
		SAY("MISMATCH manifest %s: not a %s manifest (modified?)\n", manifest_path,
		    NUM_EXPORT_FORMAT);
		rc = -EBADMSG;
		goto out;
	}
	if ((rc = read_all(tmp, key_pem_path, &ktext, &klen)) < 0 ||
	    (rc = gh_sign_pubkey_load(tmp, ktext, klen, &pub)) < 0) {
		SAY("cannot load public key %s: %s\n", key_pem_path, strerror(-rc));
		rc = rc == -ENOENT ? rc : -EINVAL;
		goto out;
	}
	/* the signature first: nothing else in the manifest means anything without it */
	if (!sig_path)
		sig_path = talloc_asprintf(tmp, "%s/manifest.sig", dir);
	if ((rc = read_all(tmp, sig_path, &stext, &slen)) < 0) {
		SAY("MISMATCH signature %s: %s\n", sig_path, strerror(-rc));
		rc = rc == -ENOENT ? -EBADMSG : rc;
		goto out;
	}
	gh_sign_alg_t alg;
	const char *kid = gh_json_get_str(m, "key_id", "");
	if (strcmp(kid, gh_sign_pubkey_id(pub)) != 0) {
		SAY("MISMATCH key: the manifest names key %s, the given key is %s\n", kid,
		    gh_sign_pubkey_id(pub));
		bad++;
	}
	if (gh_sign_alg_parse(gh_json_get_str(m, "algorithm", ""), &alg) < 0 ||
	    gh_sign_verify(pub, alg, mtext, mlen, (const uint8_t *)stext, slen) != 0) {
		SAY("MISMATCH signature %s: does not verify over %s with the given key\n", sig_path,
		    manifest_path);
		bad++;
	} else {
		SAY("ok signature %s (%s, key %s)\n", sig_path, gh_sign_alg_names[alg],
		    gh_sign_pubkey_id(pub));
	}
	size_t i;
	json_t *f;
	json_array_foreach(json_object_get(m, "files"), i, f)
	{
		const char *name = gh_json_get_str(f, "name", "");
		const char *want = gh_json_get_str(f, "sha256", "");
		int64_t bytes = gh_json_get_int(f, "bytes", -1);
		/* a plain file name next to the manifest, never a path out of its directory */
		if (!*name || strchr(name, '/') || strcmp(name, ".") == 0 ||
		    strcmp(name, "..") == 0) {
			SAY("MISMATCH manifest: bad file name '%s'\n", name);
			bad++;
			continue;
		}
		char *p = talloc_asprintf(tmp, "%s/%s", dir, name);
		char got[GH_SHA256_HEX_LEN + 1];
		uint64_t size = 0;
		int frc = p ? gh_sign_sha256_file(p, got, &size) : -ENOMEM;
		if (frc < 0) {
			SAY("MISMATCH %s: cannot read (%s)\n", name, strerror(-frc));
			bad++;
		} else if (strcmp(got, want) != 0 || (int64_t)size != bytes) {
			SAY("MISMATCH %s: sha256 %s, %llu bytes; the manifest says %s, %lld "
			    "bytes\n",
			    name, got, (unsigned long long)size, want, (long long)bytes);
			bad++;
		} else {
			SAY("ok %s sha256 %s (%llu bytes, %lld rows)\n", name, got,
			    (unsigned long long)size, (long long)gh_json_get_int(f, "rows", -1));
		}
	}
	rc = bad ? -EBADMSG : 0;
out:
	json_decref(m);
	talloc_free(tmp);
	return rc;
}

static int verify_usage(FILE *f)
{
	fprintf(f, "usage: ghasi numbering verify-export --key PUBLIC.pem [--sig FILE] FILE\n"
	           "  FILE     manifest.json of an export, or a file next to it; the CSVs and\n"
	           "           manifest.sig are read from the same directory\n"
	           "  --key    the exporter's public key (PEM), obtained out of band\n"
	           "  --sig    the signature file (default: manifest.sig next to the manifest)\n"
	           "exit status: 0 verified, 1 mismatch, 2 usage or unreadable input\n");
	return 2;
}

int num_export_cli_verify(int argc, char **argv)
{
	const char *key = NULL, *sig = NULL, *file = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--key") == 0 && i + 1 < argc)
			key = argv[++i];
		else if (strncmp(argv[i], "--key=", 6) == 0)
			key = argv[i] + 6;
		else if (strcmp(argv[i], "--sig") == 0 && i + 1 < argc)
			sig = argv[++i];
		else if (strncmp(argv[i], "--sig=", 6) == 0)
			sig = argv[i] + 6;
		else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			verify_usage(stdout);
			return 0;
		} else if (argv[i][0] == '-' || file)
			return verify_usage(stderr);
		else
			file = argv[i];
	}
	if (!file)
		return verify_usage(stderr);
	if (!key) {
		fprintf(stderr,
		        "ghasi numbering verify-export: --key is required: verify with the "
		        "exporter's public key obtained out of band, never with one shipped "
		        "next to the files\n");
		return 2;
	}
	/* FILE may be a data file: the manifest is manifest.json next to it */
	void *tmp = talloc_new(NULL);
	char *copy = talloc_strdup(tmp, file), *manifest = NULL;
	const char *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
	size_t bl = strlen(base);
	if (bl >= 5 && strcmp(base + bl - 5, ".json") == 0)
		manifest = talloc_strdup(tmp, file);
	else if (copy)
		manifest = talloc_asprintf(tmp, "%s/manifest.json", dirname(copy));
	int rc = manifest ? num_export_verify(manifest, sig, key, stdout) : -ENOMEM;
	talloc_free(tmp);
	if (rc == 0) {
		printf("verified\n");
		return 0;
	}
	if (rc == -EBADMSG) {
		fprintf(stderr, "ghasi numbering verify-export: MISMATCH (see above)\n");
		return 1;
	}
	fprintf(stderr, "ghasi numbering verify-export: %s\n", strerror(-rc));
	return 2;
}

/* ---- service glue: configuration, HTTP, job ----------------------------------------------- */

int num_export_setup(num_svc_t *s)
{
	const num_config_t *cfg = &s->cfg;
	gh_app_t *app = s->app;
	gh_signer_t *signer = NULL;
	gh_archive_t *ar = NULL;
	int rc = 0;
	bool pem = cfg->export_key_pem && *cfg->export_key_pem;
	bool p11 = cfg->export_pkcs11_module && *cfg->export_pkcs11_module;
	if (pem && p11) {
		gh_log(GH_LOG_ERROR,
		       "numbering: set either export_key_pem or export_pkcs11_module, not both",
		       NULL);
		return -EINVAL;
	}
	if (pem) {
		rc = gh_signer_pem_open(s, cfg->export_key_pem, GH_SIGN_AUTO, &signer);
		if (rc < 0) {
			gh_log(GH_LOG_ERROR, "numbering: cannot load the export signing key",
			       "path", cfg->export_key_pem, "error", strerror(-rc), NULL);
			return rc;
		}
	} else if (p11) {
		gh_sign_pkcs11_opts_t o = {cfg->export_pkcs11_module, cfg->export_pkcs11_token,
		                           cfg->export_pkcs11_pin, cfg->export_pkcs11_key};
		if ((rc = gh_signer_pkcs11_open(s, &o, &signer)) < 0) {
			gh_log(GH_LOG_ERROR,
			       "numbering: cannot open the export key on the PKCS#11 token",
			       "module", cfg->export_pkcs11_module, "token",
			       cfg->export_pkcs11_token, "key", cfg->export_pkcs11_key, "error",
			       strerror(-rc), NULL);
			return rc;
		}
	} else {
		gh_log(GH_LOG_WARN,
		       "numbering: no export signing key configured; regulator exports will fail",
		       NULL);
	}
	if (signer && gh_signer_alg(signer) != GH_SIGN_ED25519)
		gh_log(GH_LOG_WARN, "numbering: the export key is not Ed25519 (spec default)",
		       NULL);
	const char *dir = app ? app->cfg->archive.dir : NULL;
	if (dir && *dir) {
		if ((rc = gh_archive_open(s, dir, s->clock, &ar)) < 0) {
			gh_log(GH_LOG_ERROR, "numbering: cannot open the archive", "dir", dir,
			       "error", strerror(-rc), NULL);
			return rc;
		}
	} else {
		gh_log(GH_LOG_WARN,
		       "numbering: no archive.dir; regulator exports are dry runs only", NULL);
	}
	num_export_opts_t o = {.store = s->store,
	                       .clock = s->clock,
	                       .signer = signer,
	                       .archive = ar,
	                       .retention_years = cfg->export_retention_years,
	                       .relay = app ? app->relay : NULL,
	                       .metrics = s->metrics};
	return num_export_new(s, &o, &s->exp);
}

int num_export_job(void *ud, int64_t now_ms)
{
	num_svc_t *s = ud;
	return s->exp ? num_export_run_monthly(s->exp, now_ms) : -EPROTO;
}

/* The audit actor of an admin request: "<role>:<sub>". */
static const char *req_actor(gh_http_req_t *req)
{
	const gh_principal_t *p = gh_http_principal(req);
	if (!p)
		return "admin:unknown";
	const char *role = (p->role_mask & GH_ROLE_PLATFORM_ADMIN) ? "admin" : "compliance";
	return talloc_asprintf(gh_http_ctx(req), "%s:%s", role, p->sub[0] ? p->sub : "anonymous");
}

static num_export_t *svc_export(gh_http_req_t *req, void *ud)
{
	num_svc_t *s = ud;
	if (!s->exp)
		gh_err_set(gh_http_err(req), GH_E_UNAVAILABLE, NULL, "exports are not set up");
	return s->exp;
}

static const gh_json_field_t create_fields[] = {
    {"month", GH_JSON_STRING, 1},
    {"dry_run", GH_JSON_BOOL},
    {NULL},
};

int num_export_h_create(gh_http_req_t *req, void *ud)
{
	num_export_t *x = svc_export(req, ud);
	json_t *body;
	if (!x)
		return -EIO;
	int rc = gh_http_json_body(req, create_fields, &body);
	if (rc < 0)
		return rc;
	bool dry = gh_json_get_bool(body, "dry_run", 0) != 0;
	const char *month = gh_json_get_str(body, "month", "");
	num_export_result_t *r;
	rc = num_export_generate(x, month, dry, req_actor(req), gh_http_request_id(req),
	                         gh_http_ctx(req), &r, gh_http_err(req));
	if (rc < 0) {
		json_decref(body);
		return rc;
	}
	json_t *o;
	if (dry) {
		/* the files themselves: text for CSV and JSON, base64 for the signature */
		json_t *files = files_json(r);
		for (int i = 0; i < NUM_EXPORT_FILES; i++) {
			json_t *f = json_array_get(files, (size_t)i);
			const num_export_file_t *fi = &r->files[i];
			json_object_del(f, "archive_name");
			if (i == F_SIG)
				json_object_set_new(f, "content_base64",
				                    json_string(gh_sign_b64_encode(
				                        gh_http_ctx(req), fi->data, fi->len)));
			else
				json_object_set_new(f, "content", json_stringn(fi->data, fi->len));
		}
		o = json_pack("{ss sb sb so so}", "month", r->month, "dry_run", 1, "month_closed",
		              r->month_closed, "audit_chain", chain_json(r), "files", files);
	} else if ((rc = num_export_get(x, r->month, &o, gh_http_err(req))) < 0) {
		json_decref(body);
		return rc;
	} else {
		json_object_set_new(o, "dry_run", json_false());
		json_object_set_new(o, "created", json_boolean(r->recorded));
	}
	json_decref(body);
	return gh_http_reply_json(req, r->recorded ? 201 : 200, o);
}

int num_export_h_list(gh_http_req_t *req, void *ud)
{
	num_export_t *x = svc_export(req, ud);
	json_t *o;
	if (!x)
		return -EIO;
	int rc = num_export_list(x, &o, gh_http_err(req));
	return rc < 0 ? rc : gh_http_reply_json(req, 200, o);
}

int num_export_h_get(gh_http_req_t *req, void *ud)
{
	num_export_t *x = svc_export(req, ud);
	json_t *o;
	if (!x)
		return -EIO;
	int rc = num_export_get(x, gh_http_param(req, "id"), &o, gh_http_err(req));
	return rc < 0 ? rc : gh_http_reply_json(req, 200, o);
}

int num_export_h_file(gh_http_req_t *req, void *ud)
{
	num_export_t *x = svc_export(req, ud);
	if (!x)
		return -EIO;
	const char *name = gh_http_query(req, "name");
	void *data;
	size_t len;
	int rc = num_export_file(x, gh_http_param(req, "id"), name, gh_http_ctx(req), &data, &len,
	                         gh_http_err(req));
	if (rc < 0)
		return rc;
	const char *type = strstr(name, ".csv")    ? "text/csv; charset=utf-8"
	                   : strstr(name, ".json") ? "application/json"
	                                           : "application/octet-stream";
	char *disp = talloc_asprintf(gh_http_ctx(req), "attachment; filename=\"%s-%s\"",
	                             gh_http_param(req, "id"), name);
	if (disp)
		gh_http_set_header(req, "Content-Disposition", disp);
	return gh_http_reply_raw(req, 200, type, data, len);
}
