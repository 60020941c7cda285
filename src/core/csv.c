/* csv: streaming RFC 4180 reader (a resumable state machine over caller chunks, nginx style),
 * header mapping, the CSV-injection rule and a deterministic writer. Contracts in csv.h.
 *
 * The reader copies field bytes into one per-parser buffer (fields NUL-separated, offsets kept
 * aside), so a record can straddle any number of chunks and still come out as contiguous
 * strings; the buffer only grows to the longest record seen, within the configured limits.
 * The hot path is the scan over an unquoted or quoted run through a 256-entry class table,
 * copied with one memcpy per run. */
#include "csv.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <talloc.h>

/* byte classes: 0 plain; an unquoted field stops at any non-zero class, a quoted one at
 * C_QUOTE and above (the separator is data there) */
enum { C_PLAIN = 0, C_SEP, C_QUOTE, C_CR, C_LF };

enum { S_REC, S_FIELD, S_UNQ, S_Q, S_QQ, S_DONE };

enum { BOM_DONE = 4 };
static const unsigned char bom_bytes[3] = {0xEF, 0xBB, 0xBF};

/* hard caps on the options: talloc refuses blocks over 256 MiB, and the buffer may double */
#define MAX_RECORD_CAP (96u * 1024 * 1024)
#define MAX_FIELDS_CAP (1u << 20)

struct gh_csv_s {
	char sep;
	unsigned flags;
	size_t max_field, max_record, max_fields;
	uint8_t cls[256];

	int state;
	bool skip;    /* discarding the rest of a refused record */
	bool last_cr; /* the last byte of the previous chunk was CR */
	uint8_t bom;  /* BOM bytes matched at the start of the stream, BOM_DONE once decided */
	uint64_t off; /* stream offset of the current chunk's start while parsing */
	uint64_t line, line_off; /* current line, stream offset of its first byte */
	uint64_t rec_line, nrec;
	uint64_t q_line, q_col; /* opening quote of the current quoted field */
	size_t width;           /* GH_CSV_SAME_WIDTH: fields of the first record, 0 = not yet */
	const char *cbase;      /* start of the chunk being parsed */

	char *buf; /* fields of the current record, each followed by NUL */
	size_t used, cap;
	size_t fstart, flen, rbytes; /* current field's start and length; record data bytes */
	size_t *starts, *lens;
	const char **ptrs;
	size_t nf, fcap;

	gh_csv_error_t err;
};

static const char *const code_names[GH_CSV_E__COUNT] = {
    [GH_CSV_OK] = "OK",
    [GH_CSV_E_BARE_QUOTE] = "BARE_QUOTE",
    [GH_CSV_E_AFTER_QUOTE] = "AFTER_QUOTE",
    [GH_CSV_E_UNTERMINATED] = "UNTERMINATED_QUOTE",
    [GH_CSV_E_FIELD_TOO_LONG] = "FIELD_TOO_LONG",
    [GH_CSV_E_RECORD_TOO_LONG] = "RECORD_TOO_LONG",
    [GH_CSV_E_TOO_MANY_FIELDS] = "TOO_MANY_FIELDS",
    [GH_CSV_E_FIELD_COUNT] = "FIELD_COUNT",
    [GH_CSV_E_HEADER_UNKNOWN] = "HEADER_UNKNOWN",
    [GH_CSV_E_HEADER_MISSING] = "HEADER_MISSING",
    [GH_CSV_E_HEADER_DUPLICATE] = "HEADER_DUPLICATE",
    [GH_CSV_E_HEADER_ORDER] = "HEADER_ORDER",
    [GH_CSV_E_INJECTION] = "CSV_INJECTION",
};

static const char *const code_texts[GH_CSV_E__COUNT] = {
    [GH_CSV_OK] = "no error",
    [GH_CSV_E_BARE_QUOTE] = "'\"' inside an unquoted field",
    [GH_CSV_E_AFTER_QUOTE] = "character after a closing quote",
    [GH_CSV_E_UNTERMINATED] = "quoted field not closed at end of input",
    [GH_CSV_E_FIELD_TOO_LONG] = "field too long",
    [GH_CSV_E_RECORD_TOO_LONG] = "record too long",
    [GH_CSV_E_TOO_MANY_FIELDS] = "too many fields",
    [GH_CSV_E_FIELD_COUNT] = "wrong number of fields",
    [GH_CSV_E_HEADER_UNKNOWN] = "unknown column",
    [GH_CSV_E_HEADER_MISSING] = "missing column",
    [GH_CSV_E_HEADER_DUPLICATE] = "duplicate column",
    [GH_CSV_E_HEADER_ORDER] = "column out of order",
    [GH_CSV_E_INJECTION] = "text cell starts with a formula character",
};

const char *gh_csv_code_name(gh_csv_code_t code)
{
	return code >= 0 && code < GH_CSV_E__COUNT ? code_names[code] : "UNKNOWN";
}

int gh_csv_error_format(const gh_csv_error_t *e, char *buf, size_t size)
{
	const char *text = e->code >= 0 && e->code < GH_CSV_E__COUNT ? code_texts[e->code] : "?";
	char where[64];
	if (e->column)
		snprintf(where, sizeof(where), "line %llu, column %llu",
		         (unsigned long long)e->at_line, (unsigned long long)e->column);
	else
		snprintf(where, sizeof(where), "line %llu", (unsigned long long)e->line);
	if (e->detail[0])
		return snprintf(buf, size, "%s: %s: %s \"%s\"", where, gh_csv_code_name(e->code),
		                text, e->detail);
	if (e->field)
		return snprintf(buf, size, "%s: %s: %s (field %zu)", where,
		                gh_csv_code_name(e->code), text, e->field);
	return snprintf(buf, size, "%s: %s: %s", where, gh_csv_code_name(e->code), text);
}

int gh_csv_error_to_err(const gh_csv_error_t *e, gh_err_t *err)
{
	char msg[192];
	gh_csv_error_format(e, msg, sizeof(msg));
	int rc = gh_err_set(err, GH_E_INVALID_ARGUMENT, NULL, "%s", msg);
	if (!err)
		return rc;
	gh_err_detail(err, "csv_code", json_string(gh_csv_code_name(e->code)));
	gh_err_detail(err, "line", json_integer((json_int_t)e->line));
	if (e->column)
		gh_err_detail(err, "column", json_integer((json_int_t)e->column));
	if (e->field)
		gh_err_detail(err, "field", json_integer((json_int_t)e->field));
	if (e->detail[0])
		gh_err_detail(err, "column_name", json_string(e->detail));
	return rc;
}

/* ---- reader ---------------------------------------------------------------------------- */

gh_csv_t *gh_csv_new(void *ctx, const gh_csv_opts_t *opts)
{
	gh_csv_opts_t o = opts ? *opts : (gh_csv_opts_t){0};
	if (!o.sep)
		o.sep = ',';
	if (!o.max_field)
		o.max_field = GH_CSV_DEFAULT_MAX_FIELD;
	if (!o.max_record)
		o.max_record = GH_CSV_DEFAULT_MAX_RECORD;
	if (!o.max_fields)
		o.max_fields = GH_CSV_DEFAULT_MAX_FIELDS;
	if (o.sep == '"' || o.sep == '\r' || o.sep == '\n' || o.max_record > MAX_RECORD_CAP ||
	    o.max_fields > MAX_FIELDS_CAP ||
	    (o.flags & ~(unsigned)(GH_CSV_LAX | GH_CSV_KEEP_EMPTY | GH_CSV_SAME_WIDTH)))
		return NULL;
	gh_csv_t *p = talloc_zero(ctx, gh_csv_t);
	if (!p)
		return NULL;
	p->sep = o.sep;
	p->flags = o.flags;
	p->max_field = o.max_field;
	p->max_record = o.max_record;
	p->max_fields = o.max_fields;
	p->cls[(uint8_t)o.sep] = C_SEP;
	p->cls['"'] = C_QUOTE;
	p->cls['\r'] = C_CR;
	p->cls['\n'] = C_LF;
	gh_csv_reset(p);
	return p;
}

void gh_csv_reset(gh_csv_t *p)
{
	p->state = S_REC;
	p->skip = p->last_cr = false;
	p->bom = 0;
	p->off = p->line_off = 0;
	p->line = 1;
	p->rec_line = p->nrec = 0;
	p->width = 0;
	p->used = p->nf = 0;
	p->err = (gh_csv_error_t){0};
}

const gh_csv_error_t *gh_csv_last_error(const gh_csv_t *p) { return &p->err; }
uint64_t gh_csv_offset(const gh_csv_t *p) { return p->off; }
uint64_t gh_csv_line(const gh_csv_t *p) { return p->line; }

/* stream offset of s, a pointer into the chunk being parsed */
static inline uint64_t pos(const gh_csv_t *p, const char *s)
{
	return p->off + (uint64_t)(s - p->cbase);
}

static int fail(gh_csv_t *p, gh_csv_code_t code, uint64_t off)
{
	p->err = (gh_csv_error_t){
	    .code = code,
	    .line = p->rec_line,
	    .at_line = p->line,
	    .column = off - p->line_off + 1,
	    .field = p->nf + 1,
	};
	p->skip = true;
	return -EINVAL;
}

static int grow(gh_csv_t *p, size_t need)
{
	if (need <= p->cap)
		return 0;
	size_t cap = p->cap ? p->cap : 1024;
	while (cap < need)
		cap *= 2;
	char *b = talloc_realloc(p, p->buf, char, cap);
	if (!b)
		return -ENOMEM;
	p->buf = b;
	p->cap = cap;
	return 0;
}

/* Append s[0..n) (at stream offset off) to the current field, within the limits. */
static int append(gh_csv_t *p, const char *s, size_t n, uint64_t off)
{
	if (p->skip)
		return 0;
	/* the error is about the first byte over either limit, whatever the chunking */
	size_t froom = p->max_field - p->flen, rroom = p->max_record - p->rbytes;
	if (n > froom && froom <= rroom)
		return fail(p, GH_CSV_E_FIELD_TOO_LONG, off + froom);
	if (n > rroom)
		return fail(p, GH_CSV_E_RECORD_TOO_LONG, off + rroom);
	if (grow(p, p->used + n + 1))
		return -ENOMEM;
	memcpy(p->buf + p->used, s, n);
	p->used += n;
	p->flen += n;
	p->rbytes += n;
	return 0;
}

static void begin_record(gh_csv_t *p)
{
	p->rec_line = p->line;
	p->skip = false;
	p->used = p->nf = p->fstart = p->flen = p->rbytes = 0;
}

/* Close the current field; off is the stream offset of its terminator. */
static int end_field(gh_csv_t *p, uint64_t off)
{
	if (p->skip)
		return 0;
	if (p->nf == p->max_fields)
		return fail(p, GH_CSV_E_TOO_MANY_FIELDS, off);
	if (p->nf == p->fcap) {
		size_t n = p->fcap ? p->fcap * 2 : 16;
		if (n > p->max_fields)
			n = p->max_fields;
		size_t *st = talloc_realloc(p, p->starts, size_t, n);
		if (st)
			p->starts = st;
		size_t *ln = talloc_realloc(p, p->lens, size_t, n);
		if (ln)
			p->lens = ln;
		const char **pt = talloc_realloc(p, p->ptrs, const char *, n);
		if (pt)
			p->ptrs = pt;
		if (!st || !ln || !pt)
			return -ENOMEM;
		p->fcap = n;
	}
	if (grow(p, p->used + 1))
		return -ENOMEM;
	p->buf[p->used++] = '\0';
	p->starts[p->nf] = p->fstart;
	p->lens[p->nf++] = p->flen;
	p->fstart = p->used;
	p->flen = 0;
	return 0;
}

/* Close the current record at the line end at stream offset off: 0 with *rec filled, 1 when it
 * had been refused already (nothing to return), -EINVAL or -ENOMEM. */
static int end_record(gh_csv_t *p, gh_csv_record_t *rec, uint64_t off)
{
	int rc = end_field(p, off);
	if (rc)
		return rc;
	if (p->skip) {
		p->skip = false;
		return 1;
	}
	if (p->flags & GH_CSV_SAME_WIDTH) {
		if (!p->width) {
			p->width = p->nf;
		} else if (p->nf != p->width) {
			rc = fail(p, GH_CSV_E_FIELD_COUNT, off);
			p->err.field = 0;
			p->skip = false;
			return rc;
		}
	}
	for (size_t i = 0; i < p->nf; i++)
		p->ptrs[i] = p->buf + p->starts[i];
	rec->nfields = p->nf;
	rec->fields = p->ptrs;
	rec->lens = p->lens;
	rec->line = p->rec_line;
	rec->index = p->nrec++;
	return 0;
}

/* The line end byte at s (CR or LF): count the line unless it is the LF of a CRLF. */
static inline void newline(gh_csv_t *p, const char *s, bool lf_of_crlf)
{
	if (!lf_of_crlf)
		p->line++;
	p->line_off = pos(p, s) + 1;
}

static inline bool after_cr(const gh_csv_t *p, const char *s)
{
	return s > p->cbase ? s[-1] == '\r' : p->last_cr;
}

/* The BOM turned out not to be one: its k matched bytes are data of the first field. */
static int bom_undo(gh_csv_t *p)
{
	uint8_t k = p->bom;
	p->bom = BOM_DONE;
	if (!k)
		return 0;
	begin_record(p);
	p->state = S_UNQ;
	return append(p, (const char *)bom_bytes, k, 0);
}

int gh_csv_parse(gh_csv_t *p, const char **ppos, const char *end, gh_csv_record_t *rec)
{
	if (p->state == S_DONE)
		return -EALREADY;
	const char *s = *ppos;
	const uint8_t *cls = p->cls;
	int rc = -EAGAIN;
	p->cbase = s;

	if (p->bom < BOM_DONE) {
		while (s < end && p->bom < 3 && (uint8_t)*s == bom_bytes[p->bom]) {
			p->bom++;
			s++;
		}
		if (p->bom == 3) {
			p->bom = BOM_DONE;
			p->line_off = 3;
		} else if (s < end && (rc = bom_undo(p)) != 0) {
			goto out;
		}
		rc = -EAGAIN;
	}

	while (s < end) {
		int r;
		switch (p->state) {
		case S_REC:
			if (cls[(uint8_t)*s] >= C_CR) {
				bool crlf = *s == '\n' && after_cr(p, s);
				r = 1;
				if (!crlf && (p->flags & GH_CSV_KEEP_EMPTY)) {
					begin_record(p);
					r = end_record(p, rec, pos(p, s));
				}
				newline(p, s, crlf);
				s++;
				if (r <= 0) {
					rc = r;
					goto out;
				}
				break;
			}
			begin_record(p);
			/* fall through */
		case S_FIELD:
			if (*s == '"') {
				p->q_line = p->line;
				p->q_col = pos(p, s) - p->line_off + 1;
				p->state = S_Q;
				s++;
				break;
			}
			p->state = S_UNQ;
			/* fall through */
		case S_UNQ: {
			const char *b = s;
			while (s < end && !cls[(uint8_t)*s])
				s++;
			if (s > b && (r = append(p, b, (size_t)(s - b), pos(p, b))) != 0) {
				rc = r;
				goto out;
			}
			if (s == end)
				break;
			if (cls[(uint8_t)*s] == C_QUOTE) {
				if (p->skip || (p->flags & GH_CSV_LAX)) {
					r = append(p, s, 1, pos(p, s));
				} else {
					r = fail(p, GH_CSV_E_BARE_QUOTE, pos(p, s));
				}
				s++;
				if (r) {
					rc = r;
					goto out;
				}
				break;
			}
			goto delimiter;
		}
		case S_Q: {
			const char *b = s;
			while (s < end && cls[(uint8_t)*s] < C_QUOTE)
				s++;
			if (s > b && (r = append(p, b, (size_t)(s - b), pos(p, b))) != 0) {
				rc = r;
				goto out;
			}
			if (s == end)
				break;
			if (*s == '"') {
				p->state = S_QQ;
				s++;
				break;
			}
			/* a line end is located on the line it ends */
			r = append(p, s, 1, pos(p, s));
			newline(p, s, *s == '\n' && after_cr(p, s));
			s++;
			if (r) {
				rc = r;
				goto out;
			}
			break;
		}
		case S_QQ:
			if (*s == '"') {
				p->state = S_Q;
				r = append(p, s, 1, pos(p, s));
				s++;
				if (r) {
					rc = r;
					goto out;
				}
				break;
			}
			if (cls[(uint8_t)*s] == C_PLAIN) {
				/* stays unread: in lax (or skip) mode it is data of the field */
				p->state = S_UNQ;
				if (!p->skip && !(p->flags & GH_CSV_LAX)) {
					rc = fail(p, GH_CSV_E_AFTER_QUOTE, pos(p, s));
					goto out;
				}
				break;
			}
		delimiter:
			/* *s is the separator or a line end */
			if (cls[(uint8_t)*s] == C_SEP) {
				r = end_field(p, pos(p, s));
				/* the separator opening one field too many is the offending byte */
				if (!r && !p->skip && p->nf == p->max_fields)
					r = fail(p, GH_CSV_E_TOO_MANY_FIELDS, pos(p, s));
				p->state = S_FIELD;
				s++;
				if (r) {
					rc = r;
					goto out;
				}
				break;
			}
			/* end the record first: its errors are located on its own line */
			r = end_record(p, rec, pos(p, s));
			newline(p, s, *s == '\n' && after_cr(p, s));
			s++;
			p->state = S_REC;
			if (r <= 0) {
				rc = r;
				goto out;
			}
			break;
		}
	}
out:
	if (s > p->cbase)
		p->last_cr = s[-1] == '\r';
	p->off += (uint64_t)(s - p->cbase);
	*ppos = s;
	return rc;
}

int gh_csv_finish(gh_csv_t *p, gh_csv_record_t *rec)
{
	if (p->state == S_DONE)
		return -ENODATA;
	int rc = 0;
	p->cbase = NULL;
	if (p->bom < BOM_DONE) {
		rc = bom_undo(p);
		if (rc == -ENOMEM)
			return rc;
	}
	int st = p->state;
	p->state = S_DONE;
	if (rc)
		return rc;
	switch (st) {
	case S_REC: return -ENODATA;
	case S_Q:
		if (p->skip)
			return -ENODATA;
		fail(p, GH_CSV_E_UNTERMINATED, 0);
		p->err.at_line = p->q_line;
		p->err.column = p->q_col;
		return -EINVAL;
	default: rc = end_record(p, rec, p->off); return rc == 1 ? -ENODATA : rc;
	}
}

int gh_csv_feed(gh_csv_t *p, const void *data, size_t len, gh_csv_cb cb, void *arg)
{
	if (p->state == S_DONE)
		return -EALREADY;
	if (!len)
		return 0;
	const char *s = data, *end = s + len;
	for (;;) {
		gh_csv_record_t rec;
		int rc = gh_csv_parse(p, &s, end, &rec);
		if (rc == -EAGAIN)
			return 0;
		if (rc == 0)
			rc = cb(arg, &rec, NULL);
		else if (rc == -EINVAL)
			rc = cb(arg, NULL, &p->err);
		if (rc)
			return rc;
	}
}

int gh_csv_end(gh_csv_t *p, gh_csv_cb cb, void *arg)
{
	gh_csv_record_t rec;
	int rc = gh_csv_finish(p, &rec);
	if (rc == 0)
		return cb(arg, &rec, NULL);
	if (rc == -EINVAL)
		return cb(arg, NULL, &p->err);
	return rc == -ENODATA ? 0 : rc;
}

/* ---- header -------------------------------------------------------------------------- */

static int header_fail(gh_csv_error_t *err, gh_csv_code_t code, const gh_csv_record_t *hdr,
                       size_t field, const char *name, size_t len)
{
	if (err) {
		*err = (gh_csv_error_t){
		    .code = code, .line = hdr->line, .at_line = hdr->line, .field = field};
		if (len >= sizeof(err->detail))
			len = sizeof(err->detail) - 1;
		memcpy(err->detail, name, len);
		err->detail[len] = '\0';
	}
	return -EINVAL;
}

int gh_csv_header_map(const gh_csv_record_t *hdr, const char *const *names, size_t n,
                      unsigned flags, size_t *idx, gh_csv_error_t *err)
{
	for (size_t k = 0; k < n; k++)
		idx[k] = SIZE_MAX;
	size_t next = 0;
	for (size_t f = 0; f < hdr->nfields; f++) {
		const char *h = hdr->fields[f];
		size_t hl = hdr->lens[f];
		for (size_t g = 0; g < f; g++)
			if (hdr->lens[g] == hl && !memcmp(hdr->fields[g], h, hl))
				return header_fail(err, GH_CSV_E_HEADER_DUPLICATE, hdr, f + 1, h,
				                   hl);
		size_t k = 0;
		while (k < n && !(strlen(names[k]) == hl && !memcmp(names[k], h, hl)))
			k++;
		if (k == n) {
			if (flags & GH_CSV_HEADER_ALLOW_UNKNOWN)
				continue;
			return header_fail(err, GH_CSV_E_HEADER_UNKNOWN, hdr, f + 1, h, hl);
		}
		if ((flags & GH_CSV_HEADER_ORDERED) && k < next)
			return header_fail(err, GH_CSV_E_HEADER_ORDER, hdr, f + 1, h, hl);
		next = k + 1;
		idx[k] = f;
	}
	for (size_t k = 0; k < n; k++)
		if (idx[k] == SIZE_MAX)
			return header_fail(err, GH_CSV_E_HEADER_MISSING, hdr, 0, names[k],
			                   strlen(names[k]));
	return 0;
}

/* ---- CSV injection ------------------------------------------------------------------ */

bool gh_csv_cell_risky(const char *s, size_t len)
{
	if (!len)
		return false;
	switch (s[0]) {
	case '=':
	case '+':
	case '-':
	case '@':
	case '\t':
	case '\r':
	case '\0': return true;
	default: return false;
	}
}

int gh_csv_check_text(const gh_csv_record_t *rec, size_t col, gh_csv_error_t *err)
{
	gh_csv_code_t code;
	if (col >= rec->nfields)
		code = GH_CSV_E_FIELD_COUNT;
	else if (gh_csv_cell_risky(rec->fields[col], rec->lens[col]))
		code = GH_CSV_E_INJECTION;
	else
		return 0;
	if (err)
		*err = (gh_csv_error_t){
		    .code = code, .line = rec->line, .at_line = rec->line, .field = col + 1};
	return -EINVAL;
}

/* ---- writer -------------------------------------------------------------------------- */

#define WBUF 65536

struct gh_csv_writer_s {
	char sep;
	bool lf;
	gh_csv_inj_t inj;
	gh_csv_sink sink;
	void *arg;
	char *buf;
	size_t used, cap;
	size_t nf;       /* fields written in the current record */
	bool last_empty; /* the last field written was empty */
	uint64_t bytes;
	uint8_t quote[256]; /* bytes that force quoting */
};

gh_csv_writer_t *gh_csv_writer_new(void *ctx, const gh_csv_wopts_t *opts, gh_csv_sink sink,
                                   void *arg)
{
	gh_csv_wopts_t o = opts ? *opts : (gh_csv_wopts_t){0};
	if (!o.sep)
		o.sep = ',';
	if (o.sep == '"' || o.sep == '\r' || o.sep == '\n' || o.injection < GH_CSV_INJ_REJECT ||
	    o.injection > GH_CSV_INJ_ALLOW)
		return NULL;
	gh_csv_writer_t *w = talloc_zero(ctx, gh_csv_writer_t);
	if (!w)
		return NULL;
	w->sep = o.sep;
	w->lf = o.lf;
	w->inj = o.injection;
	w->sink = sink;
	w->arg = arg;
	w->quote[(uint8_t)o.sep] = w->quote['"'] = w->quote['\r'] = w->quote['\n'] = 1;
	if (sink) {
		w->buf = talloc_array(w, char, WBUF);
		if (!w->buf) {
			talloc_free(w);
			return NULL;
		}
		w->cap = WBUF;
	}
	return w;
}

int gh_csv_writer_flush(gh_csv_writer_t *w)
{
	if (!w->sink || !w->used)
		return 0;
	int rc = w->sink(w->arg, w->buf, w->used);
	w->used = 0;
	return rc;
}

static int put(gh_csv_writer_t *w, const char *s, size_t n)
{
	if (!n)
		return 0;
	w->bytes += n;
	if (w->sink) {
		if (n > w->cap - w->used) {
			int rc = gh_csv_writer_flush(w);
			if (rc)
				return rc;
			if (n >= w->cap)
				return w->sink(w->arg, s, n);
		}
	} else if (n > w->cap - w->used) {
		size_t cap = w->cap ? w->cap : 4096;
		while (cap - w->used < n)
			cap *= 2;
		char *b = talloc_realloc(w, w->buf, char, cap);
		if (!b)
			return -ENOMEM;
		w->buf = b;
		w->cap = cap;
	}
	memcpy(w->buf + w->used, s, n);
	w->used += n;
	return 0;
}

/* Write prefix (0 or 1 byte) followed by s[0..len) as one field. */
static int write_cell(gh_csv_writer_t *w, const char *prefix, const char *s, size_t len)
{
	bool q = w->bytes == 0 && !prefix && len >= 3 && !memcmp(s, bom_bytes, 3);
	for (size_t i = 0; i < len && !q; i++)
		q = w->quote[(uint8_t)s[i]];
	int rc = 0;
	if (w->nf && (rc = put(w, &w->sep, 1)))
		return rc;
	if (q && (rc = put(w, "\"", 1)))
		return rc;
	if (prefix && (rc = put(w, prefix, 1)))
		return rc;
	if (!q) {
		rc = put(w, s, len);
	} else {
		const char *b = s, *e = s + len, *qq;
		while (!rc && (qq = memchr(b, '"', (size_t)(e - b))) != NULL) {
			rc = put(w, b, (size_t)(qq - b) + 1);
			if (!rc)
				rc = put(w, "\"", 1);
			b = qq + 1;
		}
		if (!rc)
			rc = put(w, b, (size_t)(e - b));
		if (!rc)
			rc = put(w, "\"", 1);
	}
	w->nf++;
	w->last_empty = !prefix && len == 0;
	return rc;
}

int gh_csv_write_field(gh_csv_writer_t *w, const char *s, size_t len)
{
	return write_cell(w, NULL, s, len);
}

int gh_csv_write_text(gh_csv_writer_t *w, const char *s, size_t len)
{
	if (w->inj == GH_CSV_INJ_ALLOW || !gh_csv_cell_risky(s, len))
		return write_cell(w, NULL, s, len);
	if (w->inj == GH_CSV_INJ_REJECT)
		return -EINVAL;
	return write_cell(w, "'", s, len);
}

int gh_csv_write_end(gh_csv_writer_t *w)
{
	if (!w->nf)
		return -EINVAL;
	int rc = 0;
	if (w->nf == 1 && w->last_empty)
		rc = put(w, "\"\"", 2);
	if (!rc)
		rc = w->lf ? put(w, "\n", 1) : put(w, "\r\n", 2);
	w->nf = 0;
	return rc;
}

int gh_csv_write_record(gh_csv_writer_t *w, const char *const *fields, const size_t *lens, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int rc = gh_csv_write_field(w, fields[i], lens[i]);
		if (rc)
			return rc;
	}
	return gh_csv_write_end(w);
}

const char *gh_csv_writer_data(const gh_csv_writer_t *w, size_t *len)
{
	if (w->sink)
		return NULL;
	*len = w->used;
	return w->buf ? w->buf : "";
}

uint64_t gh_csv_writer_bytes(const gh_csv_writer_t *w) { return w->bytes; }
