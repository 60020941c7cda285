/* multipart: streaming multipart/form-data reader. See multipart.h for the contract.
 *
 * The body is scanned for the delimiter "\r\n--" boundary. The first delimiter may start the
 * body without its CRLF, so the preamble scan begins with a virtual CRLF already "held", which
 * makes the first delimiter the same case as every other. Bytes at a chunk's end that could
 * begin a delimiter are held (at most the delimiter's length minus one) until the next chunk
 * decides; the scan of held bytes tries each start offset, which is O(delimiter^2) per chunk
 * boundary, nothing per body byte. */
#include "multipart.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <talloc.h>

#define DELIM_MAX (4 + GH_MP_BOUNDARY_MAX) /* "\r\n--" boundary */
#define CTYPE_MAX 255

static const char *const code_names[GH_MP_E__COUNT] = {
    "OK",
    "BOUNDARY",
    "DELIMITER",
    "HEADER_SYNTAX",
    "HEADER_TOO_LONG",
    "DISPOSITION",
    "CONTENT_TYPE",
    "ENCODING",
    "TOO_MANY_PARTS",
    "TRUNCATED",
    "DUPLICATE_NAME",
    "PART_TOO_LONG",
};

const char *gh_mp_code_name(gh_mp_code_t code)
{
	return (unsigned)code < GH_MP_E__COUNT ? code_names[code] : "UNKNOWN";
}

int gh_mp_error_to_err(const gh_mp_error_t *e, gh_err_t *err)
{
	int rc = gh_err_set(err, GH_E_INVALID_ARGUMENT, NULL,
	                    "malformed multipart/form-data body: %s%s%s", gh_mp_code_name(e->code),
	                    e->detail[0] ? ": " : "", e->detail);
	if (err) {
		json_t *d = json_pack("{s:s, s:I, s:I}", "multipart_code", gh_mp_code_name(e->code),
		                      "offset", (json_int_t)e->offset, "part", (json_int_t)e->part);
		if (d) {
			json_decref(err->details);
			err->details = d;
		}
	}
	return rc;
}

/* ---- small lexers -------------------------------------------------------------------- */

static bool is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool is_bchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("'()+_,-./:=? ", c));
}

static const char *skip_ows(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

/* A token at *s into out (cap bytes with NUL). Returns its length, -1 when none or too long. */
static int lex_token(const char **s, char *out, size_t cap)
{
	size_t n = 0;
	const char *p = *s;
	while (is_tchar((unsigned char)*p)) {
		if (n + 1 >= cap)
			return -1;
		out[n++] = *p++;
	}
	if (n == 0)
		return -1;
	out[n] = '\0';
	*s = p;
	return (int)n;
}

/* A token or quoted-string (quoted-pair unescaped) at *s into out. Control characters other
 * than HTAB are refused. Returns the length, -1 on a syntax error or overflow. */
static int lex_value(const char **s, char *out, size_t cap)
{
	const char *p = *s;
	if (*p != '"')
		return lex_token(s, out, cap);
	size_t n = 0;
	for (p++;; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '"')
			break;
		if (c == '\\') {
			c = (unsigned char)*++p;
			if (!c)
				return -1;
		}
		if (!c || (c < 0x20 && c != '\t') || c == 0x7f)
			return -1;
		if (n + 1 >= cap)
			return -1;
		out[n++] = (char)c;
	}
	out[n] = '\0';
	*s = p + 1;
	return (int)n;
}

int gh_mp_boundary(const char *ct, char out[GH_MP_BOUNDARY_MAX + 1])
{
	static const char type[] = "multipart/form-data";
	if (!ct)
		return -EINVAL;
	const char *s = skip_ows(ct);
	if (strncasecmp(s, type, sizeof type - 1) != 0)
		return -EINVAL;
	s = skip_ows(s + sizeof type - 1);
	bool found = false;
	char name[64], val[256];
	while (*s == ';') {
		s = skip_ows(s + 1);
		if (lex_token(&s, name, sizeof name) < 0)
			return -EINVAL;
		s = skip_ows(s);
		if (*s++ != '=')
			return -EINVAL;
		s = skip_ows(s);
		int n = lex_value(&s, val, sizeof val);
		if (n < 0)
			return -EINVAL;
		s = skip_ows(s);
		if (strcasecmp(name, "boundary") != 0)
			continue;
		if (found || n < 1 || n > GH_MP_BOUNDARY_MAX || val[n - 1] == ' ')
			return -EINVAL;
		for (int i = 0; i < n; i++)
			if (!is_bchar((unsigned char)val[i]))
				return -EINVAL;
		memcpy(out, val, (size_t)n + 1);
		found = true;
	}
	return *s == '\0' && found ? 0 : -EINVAL;
}

/* ---- the reader ------------------------------------------------------------------------ */

typedef enum {
	ST_PREAMBLE, /* scanning, output discarded */
	ST_AFTER,    /* after a boundary: padding CRLF, or "--" */
	ST_HEADERS,
	ST_DATA,     /* scanning, output returned */
	ST_PART_END, /* delimiter consumed after a DATA event: PART_END is due */
	ST_EPILOGUE,
	ST_ERROR,
} state_t;

struct gh_mp_s {
	state_t st;
	gh_mp_opts_t o;
	char delim[DELIM_MAX];
	size_t dlen;
	char hold[DELIM_MAX]; /* bytes that may begin a delimiter, < dlen */
	size_t nhold;
	char obuf[DELIM_MAX]; /* held bytes being returned as data */
	int after;            /* ST_AFTER sub-state: 0 start, 1 '-', 2 padding, 3 CR */
	char *line;           /* current header line, max_header_bytes */
	size_t llen;
	size_t hblock; /* bytes of the current header block */
	char *vbuf;    /* the part's strings */
	size_t vused;
	bool has_disp, has_ctype;
	gh_mp_part_t part;
	size_t nparts;
	uint64_t offset;
	gh_mp_error_t err;
};

gh_mp_t *gh_mp_new(void *ctx, const char *boundary, const gh_mp_opts_t *opts)
{
	size_t bl = boundary ? strlen(boundary) : 0;
	if (bl < 1 || bl > GH_MP_BOUNDARY_MAX)
		return NULL;
	gh_mp_t *p = talloc_zero(ctx, gh_mp_t);
	if (!p)
		return NULL;
	if (opts)
		p->o = *opts;
	if (!p->o.max_parts)
		p->o.max_parts = 64;
	if (!p->o.max_header_bytes)
		p->o.max_header_bytes = 8192;
	p->line = talloc_size(p, p->o.max_header_bytes + 1);
	p->vbuf = talloc_size(p, p->o.max_header_bytes + 3);
	if (!p->line || !p->vbuf) {
		talloc_free(p);
		return NULL;
	}
	memcpy(p->delim, "\r\n--", 4);
	memcpy(p->delim + 4, boundary, bl);
	p->dlen = 4 + bl;
	p->st = ST_PREAMBLE;
	memcpy(p->hold, "\r\n", 2); /* the virtual CRLF before a first delimiter at offset 0 */
	p->nhold = 2;
	return p;
}

const gh_mp_error_t *gh_mp_last_error(const gh_mp_t *p) { return &p->err; }
uint64_t gh_mp_offset(const gh_mp_t *p) { return p->offset; }

__attribute__((format(printf, 3, 4))) static int fail(gh_mp_t *p, gh_mp_code_t code,
                                                      const char *fmt, ...)
{
	if (p->st == ST_ERROR)
		return -EINVAL;
	p->st = ST_ERROR;
	p->err.code = code;
	p->err.offset = p->offset;
	p->err.part = (code == GH_MP_E_BOUNDARY || code == GH_MP_E_TRUNCATED) ? 0 : p->nparts;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->err.detail, sizeof p->err.detail, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* Scan for the delimiter. Sets *data and *len to bytes that are certainly content (possibly
 * empty) and returns 1 when the delimiter was consumed right after them, 0 otherwise. *pos
 * advances over what was used; a partial delimiter at the end goes to hold. */
static int scan(gh_mp_t *p, const char **pos, const char *end, const char **data, size_t *len)
{
	const char *s = *pos;
	size_t avail = (size_t)(end - s);
	*data = NULL;
	*len = 0;
	if (p->nhold) {
		size_t i;
		for (i = 0; i < p->nhold; i++) {
			size_t k = p->nhold - i;
			if (memcmp(p->hold + i, p->delim, k) != 0)
				continue;
			size_t need = p->dlen - k, m = need < avail ? need : avail;
			if (memcmp(s, p->delim + k, m) != 0)
				continue;
			if (i > 0)
				break; /* return hold[0..i) first */
			if (m == need) {
				*pos = s + need;
				p->offset += need;
				p->nhold = 0;
				return 1;
			}
			memcpy(p->hold + p->nhold, s, avail); /* k + avail < dlen */
			p->nhold += avail;
			*pos = end;
			p->offset += avail;
			return 0;
		}
		memcpy(p->obuf, p->hold, i);
		memmove(p->hold, p->hold + i, p->nhold - i);
		p->nhold -= i;
		*data = p->obuf;
		*len = i;
		return 0;
	}
	const char *q = s;
	while (q < end) {
		const char *cr = memchr(q, '\r', (size_t)(end - q));
		if (!cr)
			break;
		size_t left = (size_t)(end - cr), m = left < p->dlen ? left : p->dlen;
		if (memcmp(cr, p->delim, m) == 0) {
			*data = s;
			*len = (size_t)(cr - s);
			if (m == p->dlen) {
				*pos = cr + m;
				p->offset += (uint64_t)(cr + m - s);
				return 1;
			}
			memcpy(p->hold, cr, left);
			p->nhold = left;
			*pos = end;
			p->offset += avail;
			return 0;
		}
		q = cr + 1;
	}
	*data = s;
	*len = avail;
	*pos = end;
	p->offset += avail;
	return 0;
}

/* Store s[0..n) in the part's string buffer; NULL when it does not fit (cannot happen: the
 * strings come from the header block, which vbuf can hold). */
static const char *vstore(gh_mp_t *p, const char *s, size_t n)
{
	if (p->vused + n + 1 > p->o.max_header_bytes + 3)
		return NULL;
	char *d = p->vbuf + p->vused;
	memcpy(d, s, n);
	d[n] = '\0';
	p->vused += n + 1;
	return d;
}

static int parse_disposition(gh_mp_t *p, const char *v)
{
	static const char fd[] = "form-data";
	char name[32];
	if (p->has_disp)
		return fail(p, GH_MP_E_DISPOSITION, "Content-Disposition repeated");
	p->has_disp = true;
	if (strncasecmp(v, fd, sizeof fd - 1) != 0 ||
	    (v[sizeof fd - 1] && v[sizeof fd - 1] != ';' && v[sizeof fd - 1] != ' ' &&
	     v[sizeof fd - 1] != '\t'))
		return fail(p, GH_MP_E_DISPOSITION, "disposition type is not form-data");
	const char *s = skip_ows(v + sizeof fd - 1);
	bool has_name = false, has_file = false;
	while (*s == ';') {
		s = skip_ows(s + 1);
		if (lex_token(&s, name, sizeof name) < 0)
			return fail(p, GH_MP_E_DISPOSITION, "bad parameter name");
		s = skip_ows(s);
		if (*s++ != '=')
			return fail(p, GH_MP_E_DISPOSITION, "parameter %s without '='", name);
		s = skip_ows(s);
		/* lexed straight into the part's string buffer, kept only for name/filename */
		char *val = p->vbuf + p->vused;
		int n = lex_value(&s, val, p->o.max_header_bytes + 3 - p->vused);
		if (n < 0)
			return fail(p, GH_MP_E_DISPOSITION, "bad value of parameter %s", name);
		s = skip_ows(s);
		if (strcasecmp(name, "filename*") == 0)
			return fail(p, GH_MP_E_DISPOSITION,
			            "filename* is not allowed (RFC 7578 4.2)");
		bool is_name = strcasecmp(name, "name") == 0;
		bool is_file = strcasecmp(name, "filename") == 0;
		if (!is_name && !is_file)
			continue;
		if ((is_name && has_name) || (is_file && has_file))
			return fail(p, GH_MP_E_DISPOSITION, "parameter %s repeated", name);
		const char *stored = val;
		p->vused += (size_t)n + 1;
		if (is_name) {
			if (n == 0)
				return fail(p, GH_MP_E_DISPOSITION, "empty name");
			p->part.name = stored;
			has_name = true;
		} else {
			p->part.filename = stored;
			has_file = true;
		}
	}
	if (*s)
		return fail(p, GH_MP_E_DISPOSITION, "trailing characters");
	if (!has_name)
		return fail(p, GH_MP_E_DISPOSITION, "no name parameter");
	return 0;
}

/* One header line (CRLF removed, NUL-terminated, no NUL inside). */
static int header_line(gh_mp_t *p, char *l, size_t n)
{
	if (l[0] == ' ' || l[0] == '\t')
		return fail(p, GH_MP_E_HEADER_SYNTAX, "obsolete line folding");
	char *colon = memchr(l, ':', n);
	if (!colon || colon == l)
		return fail(p, GH_MP_E_HEADER_SYNTAX, "header line without a field name");
	for (char *c = l; c < colon; c++)
		if (!is_tchar((unsigned char)*c))
			return fail(p, GH_MP_E_HEADER_SYNTAX, "bad character in a field name");
	*colon = '\0';
	char *v = (char *)skip_ows(colon + 1);
	char *e = l + n;
	while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	*e = '\0';
	for (char *c = v; c < e; c++)
		if (((unsigned char)*c < 0x20 && *c != '\t') || *c == 0x7f)
			return fail(p, GH_MP_E_HEADER_SYNTAX, "control character in %s", l);
	if (strcasecmp(l, "Content-Disposition") == 0)
		return parse_disposition(p, v);
	if (strcasecmp(l, "Content-Type") == 0) {
		if (p->has_ctype || (size_t)(e - v) > CTYPE_MAX)
			return fail(p, GH_MP_E_CONTENT_TYPE, "Content-Type repeated or too long");
		p->has_ctype = true;
		p->part.content_type = vstore(p, v, (size_t)(e - v));
		return p->part.content_type ? 0 : fail(p, GH_MP_E_HEADER_TOO_LONG, "header block");
	}
	if (strcasecmp(l, "Content-Transfer-Encoding") == 0) {
		if (strcasecmp(v, "7bit") && strcasecmp(v, "8bit") && strcasecmp(v, "binary"))
			return fail(p, GH_MP_E_ENCODING, "Content-Transfer-Encoding %s refused", v);
	}
	return 0; /* other fields are ignored (RFC 7578 4.8) */
}

static void part_begin(gh_mp_t *p)
{
	p->nparts++;
	p->llen = 0;
	p->hblock = 0;
	p->vused = 0;
	p->has_disp = p->has_ctype = false;
	p->part = (gh_mp_part_t){.index = p->nparts};
}

int gh_mp_parse(gh_mp_t *p, const char **pos, const char *end, gh_mp_event_t *ev)
{
	const char *s = *pos;
	int rc = -EAGAIN;
	memset(ev, 0, sizeof *ev);
	for (;;) {
		switch (p->st) {
		case ST_ERROR: rc = -EINVAL; goto out;
		case ST_EPILOGUE:
			p->offset += (uint64_t)(end - s);
			s = end;
			rc = -EAGAIN;
			goto out;
		case ST_PART_END:
			p->st = ST_AFTER;
			p->after = 0;
			ev->type = GH_MP_EV_PART_END;
			ev->part = &p->part;
			rc = 0;
			goto out;
		case ST_PREAMBLE:
		case ST_DATA: {
			if (s == end && !p->nhold) {
				rc = -EAGAIN;
				goto out;
			}
			const char *d;
			size_t n;
			int found = scan(p, &s, end, &d, &n);
			if (found && p->st == ST_PREAMBLE) {
				p->st = ST_AFTER;
				p->after = 0;
				continue;
			}
			if (n > 0 && p->st == ST_DATA) {
				ev->type = GH_MP_EV_DATA;
				ev->part = &p->part;
				ev->data = d;
				ev->len = n;
				if (found)
					p->st = ST_PART_END;
				rc = 0;
				goto out;
			}
			if (found) {
				p->st = ST_PART_END;
				continue;
			}
			if (n == 0) { /* everything consumed, possibly into hold */
				rc = -EAGAIN;
				goto out;
			}
			continue; /* preamble bytes released from hold: discarded */
		}
		case ST_AFTER:
			while (s < end && p->st == ST_AFTER) {
				char c = *s++;
				p->offset++;
				switch (p->after) {
				case 0:
					if (c == '-')
						p->after = 1;
					else if (c == ' ' || c == '\t')
						p->after = 2;
					else if (c == '\r')
						p->after = 3;
					else
						return fail(p, GH_MP_E_DELIMITER,
						            "boundary followed by other text");
					break;
				case 1:
					if (c != '-')
						return fail(p, GH_MP_E_DELIMITER,
						            "boundary followed by other text");
					p->st = ST_EPILOGUE;
					ev->type = GH_MP_EV_END;
					*pos = s;
					return 0;
				case 2:
					if (c == '\r')
						p->after = 3;
					else if (c != ' ' && c != '\t')
						return fail(p, GH_MP_E_DELIMITER,
						            "boundary followed by other text");
					break;
				case 3:
					if (c != '\n')
						return fail(p, GH_MP_E_DELIMITER,
						            "CR without LF after a boundary");
					if (p->nparts >= p->o.max_parts)
						return fail(p, GH_MP_E_TOO_MANY_PARTS,
						            "more parts than allowed");
					part_begin(p);
					p->st = ST_HEADERS;
					break;
				}
			}
			if (p->st == ST_AFTER) {
				rc = -EAGAIN;
				goto out;
			}
			continue;
		case ST_HEADERS: {
			if (s == end) {
				rc = -EAGAIN;
				goto out;
			}
			const char *lf = memchr(s, '\n', (size_t)(end - s));
			size_t take = lf ? (size_t)(lf - s) + 1 : (size_t)(end - s);
			if (p->hblock + take > p->o.max_header_bytes) {
				p->offset += p->o.max_header_bytes - p->hblock;
				return fail(p, GH_MP_E_HEADER_TOO_LONG, "header block too long");
			}
			memcpy(p->line + p->llen, s, take);
			p->llen += take;
			p->hblock += take;
			p->offset += take;
			s += take;
			if (!lf)
				continue;
			/* a complete line: ...CRLF */
			size_t n = p->llen - 1;
			if (n == 0 || p->line[n - 1] != '\r')
				return fail(p, GH_MP_E_HEADER_SYNTAX, "line ending without CR");
			n--;
			if (memchr(p->line, '\r', n) || memchr(p->line, '\0', n))
				return fail(p, GH_MP_E_HEADER_SYNTAX,
				            "CR or NUL inside a header line");
			p->line[n] = '\0';
			p->llen = 0;
			if (n > 0) {
				if (header_line(p, p->line, n) < 0)
					return -EINVAL;
				continue;
			}
			if (!p->has_disp)
				return fail(p, GH_MP_E_DISPOSITION, "no Content-Disposition");
			p->st = ST_DATA;
			p->nhold = 0;
			ev->type = GH_MP_EV_PART;
			ev->part = &p->part;
			rc = 0;
			goto out;
		}
		}
	}
out:
	*pos = s;
	return rc;
}

int gh_mp_finish(gh_mp_t *p)
{
	if (p->st == ST_EPILOGUE)
		return 0;
	return fail(p, GH_MP_E_TRUNCATED, "end of input before the close delimiter");
}

/* ---- a whole form -------------------------------------------------------------------- */

const gh_mp_field_t *gh_mp_form_get(const gh_mp_field_t *fields, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(fields[i].name, name) == 0)
			return &fields[i];
	return NULL;
}

int gh_mp_form_parse(void *ctx, const char *content_type, const void *body, size_t len,
                     const gh_mp_opts_t *opts, size_t max_part_bytes, gh_mp_field_t **fields,
                     size_t *n, gh_mp_error_t *e)
{
	gh_mp_error_t local;
	if (!e)
		e = &local;
	memset(e, 0, sizeof *e);
	*fields = NULL;
	*n = 0;
	char boundary[GH_MP_BOUNDARY_MAX + 1];
	if (gh_mp_boundary(content_type, boundary) < 0) {
		e->code = GH_MP_E_BOUNDARY;
		snprintf(e->detail, sizeof e->detail,
		         "Content-Type must be multipart/form-data with a boundary");
		return -EINVAL;
	}
	void *tmp = talloc_new(ctx);
	gh_mp_t *p = tmp ? gh_mp_new(tmp, boundary, opts) : NULL;
	gh_mp_field_t *out = talloc_zero_array(tmp, gh_mp_field_t, p ? p->o.max_parts : 1);
	if (!p || !out) {
		talloc_free(tmp);
		return -ENOMEM;
	}
	const char *pos = body, *end = (const char *)body + len;
	size_t k = 0;
	char *copy = NULL; /* the current part's bytes when not contiguous */
	gh_mp_event_t ev;
	int rc;
	for (;;) {
		rc = gh_mp_parse(p, &pos, end, &ev);
		if (rc == -EAGAIN) {
			rc = gh_mp_finish(p);
			break;
		}
		if (rc < 0)
			break;
		gh_mp_field_t *f = k ? &out[k - 1] : NULL;
		if (ev.type == GH_MP_EV_END) {
			rc = 0;
			break;
		} else if (ev.type == GH_MP_EV_PART) {
			if (gh_mp_form_get(out, k, ev.part->name)) {
				*e = (gh_mp_error_t){.code = GH_MP_E_DUPLICATE_NAME,
				                     .offset = p->offset,
				                     .part = ev.part->index};
				snprintf(e->detail, sizeof e->detail, "two parts named %.60s",
				         ev.part->name);
				rc = -EINVAL;
				goto out;
			}
			f = &out[k++];
			f->name = talloc_strdup(out, ev.part->name);
			f->filename =
			    ev.part->filename ? talloc_strdup(out, ev.part->filename) : NULL;
			f->content_type = ev.part->content_type
			                      ? talloc_strdup(out, ev.part->content_type)
			                      : NULL;
			f->data = pos; /* empty until data arrives */
			copy = NULL;
			if (!f->name || (ev.part->filename && !f->filename) ||
			    (ev.part->content_type && !f->content_type)) {
				rc = -ENOMEM;
				goto out;
			}
		} else if (ev.type == GH_MP_EV_DATA) {
			if (max_part_bytes && f->len + ev.len > max_part_bytes) {
				*e = (gh_mp_error_t){.code = GH_MP_E_PART_TOO_LONG,
				                     .offset = p->offset,
				                     .part = ev.part->index};
				snprintf(e->detail, sizeof e->detail, "part %.60s too long",
				         ev.part->name);
				rc = -EINVAL;
				goto out;
			}
			bool in_body = ev.data >= (const char *)body && ev.data < end;
			if (in_body && !copy && (f->len == 0 || f->data + f->len == ev.data)) {
				if (f->len == 0)
					f->data = ev.data; /* contiguous in body: nothing to copy */
			} else {
				if (!copy) {
					copy =
					    talloc_memdup(out, f->len ? f->data : "", f->len + 1);
					if (!copy) {
						rc = -ENOMEM;
						goto out;
					}
				}
				char *c2 = talloc_realloc(out, copy, char, f->len + ev.len);
				if (!c2) {
					rc = -ENOMEM;
					goto out;
				}
				copy = c2;
				memcpy(copy + f->len, ev.data, ev.len);
				f->data = copy;
			}
			f->len += ev.len;
		}
	}
	if (rc < 0) {
		*e = p->err;
		goto out;
	}
	talloc_steal(ctx, out);
	*fields = out;
	*n = k;
out:
	talloc_free(tmp);
	return rc;
}
