/* import_rows: reading and validating MNO import rows. See import_rows.h. */
#include "import_rows.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <talloc.h>

static const char *const code_names[NUM_IMP__COUNT] = {
    "OK",
    "MALFORMED_CSV",
    "FIELD_COUNT",
    "CSV_INJECTION",
    "INVALID_MSISDN",
    "OPERATOR_MISMATCH",
    "NOT_IN_OPERATOR_PREFIXES",
    "INVALID_BLOCK_ID",
    "UNKNOWN_CONTRACT",
    "CONTRACT_MISMATCH",
    "INVALID_VANITY_TIER",
    "INVALID_TEXT",
    "DUPLICATE_IN_FILE",
    "HELD_BY_OTHER_OPERATOR",
    "HEADER",
};

const char *const num_imp_columns[NUM_IMP_F__COUNT] = {
    "msisdn", "operator_id", "block_id", "contract_ref", "vanity_tier", "notes",
};

const char *num_imp_code_name(num_imp_code_t c)
{
	return (unsigned)c < NUM_IMP__COUNT ? code_names[c] : "UNKNOWN";
}

static const char *field_name(unsigned f)
{
	return f < NUM_IMP_F__COUNT ? num_imp_columns[f] : "row";
}

int num_imp_err_reason(const num_imp_err_t *e, char *buf, size_t n)
{
	const char *f = field_name(e->field);
	switch ((num_imp_code_t)e->code) {
	case NUM_IMP_MALFORMED_CSV:
		return snprintf(buf, n, "malformed CSV at column %llu: %s",
		                (unsigned long long)e->aux,
		                gh_csv_code_name((gh_csv_code_t)e->aux2));
	case NUM_IMP_FIELD_COUNT:
		return snprintf(buf, n, "%llu cells where the header has %d",
		                (unsigned long long)e->aux, NUM_IMP_F__COUNT);
	case NUM_IMP_CSV_INJECTION:
		return snprintf(buf, n,
		                "%s starts with a character a spreadsheet runs as a formula "
		                "(= + - @ tab CR NUL)",
		                f);
	case NUM_IMP_INVALID_MSISDN: return snprintf(buf, n, "msisdn is not a valid MSISDN");
	case NUM_IMP_OPERATOR_MISMATCH:
		return snprintf(buf, n, "operator_id is not the operator of the upload");
	case NUM_IMP_NOT_IN_OPERATOR_PREFIXES:
		return snprintf(buf, n, "msisdn is not in the operator's prefixes");
	case NUM_IMP_INVALID_BLOCK_ID:
		return snprintf(buf, n, "block_id must be 1-%d of [A-Za-z0-9._:/-]",
		                NUM_IMP_BLOCK_MAX);
	case NUM_IMP_UNKNOWN_CONTRACT:
		return snprintf(buf, n, "contract_ref names no contract of the operator");
	case NUM_IMP_CONTRACT_MISMATCH:
		return snprintf(buf, n, "contract_ref is not the contract of the upload");
	case NUM_IMP_INVALID_VANITY_TIER: return snprintf(buf, n, "vanity_tier must be 0-255");
	case NUM_IMP_INVALID_TEXT:
		return snprintf(buf, n,
		                "%s must be UTF-8 text of at most %d bytes without control "
		                "characters",
		                f, NUM_IMP_NOTES_MAX);
	case NUM_IMP_DUPLICATE_IN_FILE:
		return snprintf(buf, n, "msisdn also on line %llu", (unsigned long long)e->aux);
	case NUM_IMP_HELD_BY_OTHER_OPERATOR:
		return snprintf(buf, n, "msisdn is registered to another operator");
	case NUM_IMP_HEADER: return snprintf(buf, n, "bad header");
	default: return snprintf(buf, n, "invalid row");
	}
}

bool num_imp_utf8_ok(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + n;
	while (p < end) {
		unsigned c = *p;
		size_t k;
		uint32_t cp;
		if (c < 0x80) {
			p++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
			k = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			k = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			k = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		if ((size_t)(end - p) <= k)
			return false;
		for (size_t i = 1; i <= k; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i] & 0x3f);
		}
		if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		p += k + 1;
	}
	return true;
}

static bool block_ok(const char *s, size_t n)
{
	if (n < 1 || n > NUM_IMP_BLOCK_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == ':' || c == '/' || c == '-'))
			return false;
	}
	return true;
}

static bool notes_ok(const char *s, size_t n)
{
	if (n > NUM_IMP_NOTES_MAX || !num_imp_utf8_ok(s, n))
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0x7f)
			return false;
	}
	return true;
}

static bool cell_eq(const char *cell, size_t n, const char *s)
{
	return s && strlen(s) == n && memcmp(cell, s, n) == 0;
}

static int row_fail(num_imp_err_t *e, const gh_csv_record_t *rec, num_imp_code_t code,
                    num_imp_field_t f, uint64_t aux)
{
	*e = (num_imp_err_t){
	    .line = rec->line, .aux = aux, .code = (uint8_t)code, .field = (uint8_t)f};
	return 1;
}

int num_imp_row_check(const num_imp_rules_t *r, const size_t *idx, size_t ncols,
                      const gh_csv_record_t *rec, num_imp_row_t *row, num_imp_err_t *e)
{
	if (rec->nfields != ncols)
		return row_fail(e, rec, NUM_IMP_FIELD_COUNT, NUM_IMP_F_NONE, rec->nfields);
	const char *c[NUM_IMP_F__COUNT];
	size_t l[NUM_IMP_F__COUNT];
	for (int f = 0; f < NUM_IMP_F__COUNT; f++) {
		c[f] = rec->fields[idx[f]];
		l[f] = rec->lens[idx[f]];
	}
	/* Injection first, so a formula cell is always reported as such, whatever else is
	 * wrong with it; msisdn has its own syntax (an E.164 number starts with '+'). */
	for (int f = NUM_IMP_F_OPERATOR_ID; f < NUM_IMP_F__COUNT; f++)
		if (gh_csv_cell_risky(c[f], l[f]))
			return row_fail(e, rec, NUM_IMP_CSV_INJECTION, (num_imp_field_t)f, 0);
	memset(row, 0, sizeof *row);
	row->line = rec->line;
	if (l[NUM_IMP_F_MSISDN] > GH_IDENT_INPUT_MAX ||
	    gh_ident_normalize(NULL, GH_IDENT_MSISDN, c[NUM_IMP_F_MSISDN], l[NUM_IMP_F_MSISDN],
	                       &row->id, NULL) < 0)
		return row_fail(e, rec, NUM_IMP_INVALID_MSISDN, NUM_IMP_F_MSISDN, 0);
	if (!cell_eq(c[NUM_IMP_F_OPERATOR_ID], l[NUM_IMP_F_OPERATOR_ID], r->operator_id))
		return row_fail(e, rec, NUM_IMP_OPERATOR_MISMATCH, NUM_IMP_F_OPERATOR_ID, 0);
	const gh_operator_t *op =
	    gh_operator_for_msisdn(r->ops, r->nops, row->id.canonical, r->now_ms);
	if (!op || strcmp(op->id, r->operator_id) != 0)
		return row_fail(e, rec, NUM_IMP_NOT_IN_OPERATOR_PREFIXES, NUM_IMP_F_MSISDN, 0);
	if (l[NUM_IMP_F_BLOCK_ID]) {
		if (!block_ok(c[NUM_IMP_F_BLOCK_ID], l[NUM_IMP_F_BLOCK_ID]))
			return row_fail(e, rec, NUM_IMP_INVALID_BLOCK_ID, NUM_IMP_F_BLOCK_ID, 0);
		row->block_id = c[NUM_IMP_F_BLOCK_ID];
		row->block_len = l[NUM_IMP_F_BLOCK_ID];
	}
	const char *ref = c[NUM_IMP_F_CONTRACT_REF];
	size_t rl = l[NUM_IMP_F_CONTRACT_REF];
	if (r->contract) {
		if (rl && !cell_eq(ref, rl, r->contract->ref))
			return row_fail(e, rec, NUM_IMP_CONTRACT_MISMATCH, NUM_IMP_F_CONTRACT_REF,
			                0);
		row->contract_id = r->contract->id;
	} else if (rl) {
		for (size_t i = 0; i < r->ncontracts && !row->contract_id; i++)
			if (cell_eq(ref, rl, r->contracts[i].ref))
				row->contract_id = r->contracts[i].id;
		if (!row->contract_id)
			return row_fail(e, rec, NUM_IMP_UNKNOWN_CONTRACT, NUM_IMP_F_CONTRACT_REF,
			                0);
	}
	const char *v = c[NUM_IMP_F_VANITY_TIER];
	size_t vl = l[NUM_IMP_F_VANITY_TIER];
	int tier = 0;
	if (vl > 3)
		return row_fail(e, rec, NUM_IMP_INVALID_VANITY_TIER, NUM_IMP_F_VANITY_TIER, 0);
	for (size_t i = 0; i < vl; i++) {
		if (v[i] < '0' || v[i] > '9')
			return row_fail(e, rec, NUM_IMP_INVALID_VANITY_TIER, NUM_IMP_F_VANITY_TIER,
			                0);
		tier = tier * 10 + (v[i] - '0');
	}
	if (tier > 255)
		return row_fail(e, rec, NUM_IMP_INVALID_VANITY_TIER, NUM_IMP_F_VANITY_TIER, 0);
	row->vanity_tier = tier;
	if (l[NUM_IMP_F_NOTES]) {
		if (!notes_ok(c[NUM_IMP_F_NOTES], l[NUM_IMP_F_NOTES]))
			return row_fail(e, rec, NUM_IMP_INVALID_TEXT, NUM_IMP_F_NOTES, 0);
		row->notes = c[NUM_IMP_F_NOTES];
		row->notes_len = l[NUM_IMP_F_NOTES];
	}
	return 0;
}

/* ---- the reader ------------------------------------------------------------------------ */

struct num_imp_reader_s {
	const num_imp_rules_t *rules;
	const char *data, *end, *pos;
	gh_csv_t *csv;   /* sequential */
	gh_csv_t *again; /* num_imp_reader_at */
	size_t idx[NUM_IMP_F__COUNT];
	size_t ncols;
	bool finished;
	uint64_t rows;
	uint64_t boundary; /* offset after the last record returned without error */
	uint32_t skip;     /* refused records since */
};

/* Record limits: a valid row is far below them; a longer one is refused as MALFORMED_CSV
 * without growing the reader. */
static const gh_csv_opts_t csv_opts = {.max_field = 4096, .max_record = 16384, .max_fields = 64};

int num_imp_reader_new(void *ctx, const num_imp_rules_t *rules, const char *data, size_t len,
                       num_imp_reader_t **out)
{
	num_imp_reader_t *rd = talloc_zero(ctx, num_imp_reader_t);
	if (!rd)
		return -ENOMEM;
	rd->rules = rules;
	rd->data = rd->pos = data;
	rd->end = data + len;
	rd->csv = gh_csv_new(rd, &csv_opts);
	rd->again = gh_csv_new(rd, &csv_opts);
	if (!rd->csv || !rd->again) {
		talloc_free(rd);
		return -ENOMEM;
	}
	*out = rd;
	return 0;
}

uint64_t num_imp_reader_rows(const num_imp_reader_t *rd) { return rd->rows; }

/* The next record of p over [*pos, end): 0 record, -EINVAL refused, -ENODATA end, -ENOMEM.
 * *at_end: the input is used up and gh_csv_finish is being drained. */
static int next_record(gh_csv_t *p, const char **pos, const char *end, bool *at_end,
                       gh_csv_record_t *rec)
{
	if (!*at_end) {
		int rc = gh_csv_parse(p, pos, end, rec);
		if (rc != -EAGAIN)
			return rc;
		*at_end = true;
	}
	return gh_csv_finish(p, rec); /* the last record, its error, then -ENODATA */
}

int num_imp_reader_header(num_imp_reader_t *rd, num_imp_err_t *e, char *detail, size_t n)
{
	gh_csv_record_t rec;
	int rc = next_record(rd->csv, &rd->pos, rd->end, &rd->finished, &rec);
	*e = (num_imp_err_t){.line = 1, .code = NUM_IMP_HEADER, .field = NUM_IMP_F_NONE};
	if (rc == -ENOMEM)
		return rc;
	if (rc == -ENODATA) {
		snprintf(detail, n, "the file is empty: no header");
		return -EBADMSG;
	}
	if (rc == -EINVAL) {
		char buf[128];
		gh_csv_error_format(gh_csv_last_error(rd->csv), buf, sizeof buf);
		snprintf(detail, n, "header: %s", buf);
		return -EBADMSG;
	}
	gh_csv_error_t ce;
	e->line = rec.line;
	if (gh_csv_header_map(&rec, num_imp_columns, NUM_IMP_F__COUNT, 0, rd->idx, &ce) < 0) {
		const char *what = ce.code == GH_CSV_E_HEADER_MISSING     ? "missing column"
		                   : ce.code == GH_CSV_E_HEADER_DUPLICATE ? "duplicate column"
		                                                          : "unknown column";
		char safe[64];
		size_t k = 0;
		for (const char *s = ce.detail; *s && k + 1 < sizeof safe; s++)
			safe[k++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
		safe[k] = '\0';
		snprintf(detail, n,
		         "header: %s %s (expected msisdn,operator_id,block_id,"
		         "contract_ref,vanity_tier,notes)",
		         what, safe);
		return -EBADMSG;
	}
	rd->ncols = rec.nfields;
	rd->boundary = gh_csv_offset(rd->csv);
	rd->skip = 0;
	return 0;
}

int num_imp_reader_next(num_imp_reader_t *rd, num_imp_row_t *row, num_imp_err_t *e,
                        num_imp_pos_t *where)
{
	gh_csv_record_t rec;
	int rc = next_record(rd->csv, &rd->pos, rd->end, &rd->finished, &rec);
	if (rc == -ENODATA || rc == -ENOMEM)
		return rc;
	rd->rows++;
	if (rc == -EINVAL) {
		const gh_csv_error_t *ce = gh_csv_last_error(rd->csv);
		*e = (num_imp_err_t){.line = ce->line,
		                     .aux = ce->column,
		                     .aux2 = (uint32_t)ce->code,
		                     .code = NUM_IMP_MALFORMED_CSV,
		                     .field = NUM_IMP_F_NONE};
		rd->skip++;
		return 1;
	}
	*where = (num_imp_pos_t){.offset = rd->boundary, .skip = rd->skip};
	rd->boundary = gh_csv_offset(rd->csv);
	rd->skip = 0;
	return num_imp_row_check(rd->rules, rd->idx, rd->ncols, &rec, row, e);
}

int num_imp_reader_at(num_imp_reader_t *rd, const num_imp_pos_t *where, num_imp_row_t *row,
                      num_imp_err_t *e)
{
	if (where->offset > (uint64_t)(rd->end - rd->data))
		return -EIO;
	gh_csv_reset(rd->again);
	/* One empty line first: the reader skips a byte order mark only at the very start of its
	 * input, and the record here is not at the start of the file. */
	const char *nl = "\n", *np = nl;
	gh_csv_record_t rec;
	if (gh_csv_parse(rd->again, &np, nl + 1, &rec) != -EAGAIN)
		return -EIO;
	const char *pos = rd->data + where->offset;
	bool finished = false;
	int rc;
	for (uint32_t i = 0; i < where->skip; i++)
		if ((rc = next_record(rd->again, &pos, rd->end, &finished, &rec)) != -EINVAL)
			return -EIO;
	if ((rc = next_record(rd->again, &pos, rd->end, &finished, &rec)) != 0)
		return rc == -ENOMEM ? rc : -EIO;
	return num_imp_row_check(rd->rules, rd->idx, rd->ncols, &rec, row, e);
}
