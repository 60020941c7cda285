/* multipart: a streaming multipart/form-data reader (RFC 7578 on the RFC 2046 section 5.1
 * framing), for uploads such as the numbering MNO import (a CSV file, its detached signature
 * and a few form fields).
 *
 * Resumable in the nginx way, like csv.h: hand it chunks of any size (down to one byte) and it
 * returns events as they complete: a part's headers, pieces of its body, its end, the end of
 * the form. Body bytes are not copied: a DATA event points into the caller's chunk, except for
 * the few bytes (at most the delimiter's length) that had to be held back at a chunk's end
 * because they might have begun a delimiter; those are returned from the parser's buffer once
 * they turn out to be data. So when the whole body is one chunk, each part's body is exactly
 * one DATA event pointing into it (or none when empty) and a 60 MB file part costs no copy.
 * Memory is bounded by the options: one part's header block at a time, never a body.
 *
 * Grammar and strictness (RFC 2046 5.1.1, RFC 7578 4):
 *   - a preamble before the first delimiter and an epilogue after the close delimiter are
 *     ignored, as RFC 2046 says; the first delimiter may start the body without a CRLF;
 *   - a delimiter line is CRLF "--" boundary, then optional transport padding (SP/HT) and
 *     CRLF, or "--" for the close delimiter; anything else after a boundary at a line start is
 *     an error (the boundary must not occur in the content, so this is a broken sender);
 *   - header lines end in CRLF (a bare LF is an error), no obsolete line folding, at most
 *     max_header_bytes per part; Content-Disposition is required, once, of type form-data with
 *     a non-empty name parameter (quoted-string or token; quoted-pair allowed) and an optional
 *     filename; duplicate parameters are errors; filename* (RFC 5987) is refused, as RFC 7578
 *     4.2 forbids senders to use it; Content-Type is kept (once, at most 255 bytes);
 *     Content-Transfer-Encoding other than 7bit, 8bit or binary is refused (RFC 7578 4.7);
 *     other header fields are ignored (RFC 7578 4.8);
 *   - end of input before the close delimiter is an error (a truncated upload).
 * Errors end the stream: a multipart body has no record structure to resynchronise on. */
#ifndef GH_MULTIPART_H
#define GH_MULTIPART_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define GH_MP_BOUNDARY_MAX 70 /* RFC 2046 5.1.1 */

typedef enum {
	GH_MP_OK = 0,
	GH_MP_E_BOUNDARY,      /* Content-Type without a valid multipart/form-data boundary */
	GH_MP_E_DELIMITER,     /* a boundary at a line start not followed by padding CRLF / "--" */
	GH_MP_E_HEADER_SYNTAX, /* header line without ':', bad name, folding, bare LF */
	GH_MP_E_HEADER_TOO_LONG, /* the part's header block exceeds max_header_bytes */
	GH_MP_E_DISPOSITION,     /* Content-Disposition missing, repeated, not form-data, no name */
	GH_MP_E_CONTENT_TYPE,    /* Content-Type repeated or too long */
	GH_MP_E_ENCODING,        /* Content-Transfer-Encoding other than 7bit/8bit/binary */
	GH_MP_E_TOO_MANY_PARTS,  /* more than max_parts parts */
	GH_MP_E_TRUNCATED,       /* end of input before the close delimiter */
	GH_MP_E_DUPLICATE_NAME,  /* gh_mp_form_parse: two parts with one name */
	GH_MP_E_PART_TOO_LONG,   /* gh_mp_form_parse: a part beyond its limit */
	GH_MP_E__COUNT,
} gh_mp_code_t;

/* "BOUNDARY", "DELIMITER", ...; "UNKNOWN" out of range. */
const char *gh_mp_code_name(gh_mp_code_t code);

typedef struct gh_mp_error_s {
	gh_mp_code_t code;
	uint64_t offset; /* byte offset in the body where the problem was seen */
	size_t part;     /* 1-based index of the part concerned, 0 when none */
	char detail[96]; /* what exactly (never body bytes) */
} gh_mp_error_t;

/* Fill err with GH_E_INVALID_ARGUMENT, a message and details {"multipart_code", "offset",
 * "part"}. Returns -EINVAL. */
int gh_mp_error_to_err(const gh_mp_error_t *e, gh_err_t *err);

/* The boundary of a Content-Type header value "multipart/form-data; boundary=..." (type
 * case-insensitive, boundary a token or quoted-string of 1..70 RFC 2046 bchars, not ending in
 * a space). out gets it NUL-terminated. 0, or -EINVAL (no, or an invalid, boundary; another
 * media type; a repeated boundary parameter). */
int gh_mp_boundary(const char *content_type, char out[GH_MP_BOUNDARY_MAX + 1]);

typedef struct gh_mp_opts_s {
	size_t max_parts;        /* parts at most; 0 -> 64 */
	size_t max_header_bytes; /* one part's header block; 0 -> 8 KiB */
} gh_mp_opts_t;

typedef enum {
	GH_MP_EV_PART,     /* a part's headers are in: ev->part is set */
	GH_MP_EV_DATA,     /* body bytes of the current part: ev->data, ev->len (> 0) */
	GH_MP_EV_PART_END, /* the current part is complete */
	GH_MP_EV_END,      /* the close delimiter was read; the rest of the input is epilogue */
} gh_mp_ev_type_t;

typedef struct gh_mp_part_s {
	size_t index;             /* 1-based */
	const char *name;         /* non-empty, NUL-terminated */
	const char *filename;     /* NULL when the part has none */
	const char *content_type; /* NULL when the part has none */
} gh_mp_part_t;

typedef struct gh_mp_event_s {
	gh_mp_ev_type_t type;
	const gh_mp_part_t *part; /* the current part (PART, DATA, PART_END) */
	const char *data;
	size_t len;
} gh_mp_event_t;

typedef struct gh_mp_s gh_mp_t;

/* A reader for boundary (1..70 bytes, as gh_mp_boundary gives), child of ctx. opts may be
 * NULL. NULL on a bad boundary or out of memory. */
gh_mp_t *gh_mp_new(void *ctx, const char *boundary, const gh_mp_opts_t *opts);

/* Parse from *pos up to end, stopping after the first event:
 *   0        *ev is that event; *pos is past what it consumed; call again with the same end.
 *            Pointers in *ev stay valid until the next call (DATA into the chunk or the
 *            parser; part strings until the next part).
 *   -EAGAIN  the input is used up (*pos == end): feed the next chunk;
 *   -EINVAL  malformed: gh_mp_last_error() says why; every later call returns -EINVAL too.
 * After GH_MP_EV_END the rest of the input is epilogue: consumed silently (-EAGAIN). */
int gh_mp_parse(gh_mp_t *p, const char **pos, const char *end, gh_mp_event_t *ev);
/* End of input: 0 when the close delimiter was read, -EINVAL (GH_MP_E_TRUNCATED, or the
 * earlier error) otherwise. */
int gh_mp_finish(gh_mp_t *p);
const gh_mp_error_t *gh_mp_last_error(const gh_mp_t *p);
/* Bytes consumed so far. */
uint64_t gh_mp_offset(const gh_mp_t *p);

/* ---- a whole form in memory ------------------------------------------------------------- */

typedef struct gh_mp_field_s {
	const char *name;
	const char *filename;     /* NULL when none */
	const char *content_type; /* NULL when none */
	const char *data;         /* into body when contiguous (always for one buffer) */
	size_t len;
} gh_mp_field_t;

/* Parse a complete body of content type content_type into its parts, in order. Each part's
 * bytes are at most max_part_bytes (0: no limit beyond the body). Part names must be unique.
 * Part data point into body (one buffer: never copied); strings are talloc children of ctx,
 * as is *fields. 0, or -EINVAL with *e (may be NULL) filled, or -ENOMEM. */
int gh_mp_form_parse(void *ctx, const char *content_type, const void *body, size_t len,
                     const gh_mp_opts_t *opts, size_t max_part_bytes, gh_mp_field_t **fields,
                     size_t *n, gh_mp_error_t *e);
/* The field named name, or NULL. */
const gh_mp_field_t *gh_mp_form_get(const gh_mp_field_t *fields, size_t n, const char *name);

#endif
