/* csv: a streaming RFC 4180 reader, header mapping, the CSV-injection rule and a deterministic
 * writer. Used by the numbering MNO import, and by cdr and reporting exports.
 *
 * Reader. Resumable in the nginx way: hand it chunks of any size (down to one byte) and it
 * returns records as they complete. It keeps only the record being parsed, so memory is bounded
 * by the longest record and capped by configurable limits; it never buffers the file. Grammar
 * (RFC 4180 section 2, with the usual liberal line endings):
 *   - fields separated by ',' (configurable), records ended by CRLF, LF or a lone CR, and the
 *     last record may end at end of input without a line ending;
 *   - a field starting with '"' is quoted: it runs to the next lone '"', "" stands for one '"',
 *     and separators, CR and LF inside it are data;
 *   - a UTF-8 byte order mark (EF BB BF) at the very start of the input is skipped;
 *   - an empty line is no record (GH_CSV_KEEP_EMPTY makes it a record of one empty field);
 *   - bytes are bytes: no encoding check, no trimming, NUL is data.
 * Strict by default: a '"' inside an unquoted field, anything but a separator or a line end
 * after a closing quote, and end of input inside a quoted field are errors (GH_CSV_LAX takes the
 * first two literally, as Python's csv module does).
 * Lines are counted as a text editor counts them (CRLF is one line end, including inside quoted
 * fields); a record reports the line where it starts, an error also the exact line and column.
 *
 * Errors are per record: after an error the parser skips the rest of the offending record (still
 * honouring quotes to find where it ends) and goes on with the next one, so an import can list
 * every bad line (the numbering spec's PARTIAL batches). Only end of input inside a quoted field
 * ends the stream: the parser cannot know where that record should have ended. */
#ifndef GH_CSV_H
#define GH_CSV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Stable error codes (logs, import reports and API details use the names). */
typedef enum {
	GH_CSV_OK = 0,
	GH_CSV_E_BARE_QUOTE,     /* '"' inside an unquoted field */
	GH_CSV_E_AFTER_QUOTE,    /* a character other than separator/line end after a closing '"' */
	GH_CSV_E_UNTERMINATED,   /* end of input inside a quoted field */
	GH_CSV_E_FIELD_TOO_LONG, /* a field longer than max_field bytes */
	GH_CSV_E_RECORD_TOO_LONG,  /* a record's fields total more than max_record bytes */
	GH_CSV_E_TOO_MANY_FIELDS,  /* more than max_fields fields */
	GH_CSV_E_FIELD_COUNT,      /* GH_CSV_SAME_WIDTH: not as many fields as the first record */
	GH_CSV_E_HEADER_UNKNOWN,   /* header names a column that is not expected */
	GH_CSV_E_HEADER_MISSING,   /* an expected column is absent from the header */
	GH_CSV_E_HEADER_DUPLICATE, /* a column name appears twice in the header */
	GH_CSV_E_HEADER_ORDER, /* GH_CSV_HEADER_ORDERED: the columns are not in the given order */
	GH_CSV_E_INJECTION,    /* a text cell that a spreadsheet would run as a formula */
	GH_CSV_E__COUNT,
} gh_csv_code_t;

/* "BARE_QUOTE", "AFTER_QUOTE", "UNTERMINATED_QUOTE", "FIELD_TOO_LONG", ...; "UNKNOWN" for an
 * out-of-range value. */
const char *gh_csv_code_name(gh_csv_code_t code);

/* Where and why a record was refused. Lines and columns are 1-based; a column counts bytes
 * from the start of its line (after the byte order mark on line 1). */
typedef struct gh_csv_error_s {
	gh_csv_code_t code;
	uint64_t line;    /* line where the offending record starts */
	uint64_t at_line; /* line of the offending byte (differs inside multi-line fields) */
	uint64_t column;  /* column of the offending byte; header errors: 0 */
	size_t field;     /* 1-based field index in the record, 0 when not about one field */
	char detail[64];  /* header errors: the column name (truncated); else "" */
} gh_csv_error_t;

/* One-line description: "line 12, column 5: BARE_QUOTE: '\"' inside an unquoted field".
 * Returns what snprintf returns. */
int gh_csv_error_format(const gh_csv_error_t *e, char *buf, size_t size);

/* Fill err with GH_E_INVALID_ARGUMENT, the description above and details {"csv_code", "line",
 * "column", "field", "column_name"}, so the HTTP layer can return it. Returns -EINVAL. */
int gh_csv_error_to_err(const gh_csv_error_t *e, gh_err_t *err);

/* ---- reader ---------------------------------------------------------------------------- */

enum {
	GH_CSV_LAX = 1 << 0,        /* bare and trailing quotes are data instead of errors */
	GH_CSV_KEEP_EMPTY = 1 << 1, /* an empty line is a record with one empty field */
	GH_CSV_SAME_WIDTH = 1 << 2, /* every record has as many fields as the first one */
};

#define GH_CSV_DEFAULT_MAX_FIELD  (64u * 1024)
#define GH_CSV_DEFAULT_MAX_RECORD (1024u * 1024)
#define GH_CSV_DEFAULT_MAX_FIELDS 1024u

/* Reader options; zero means the default. */
typedef struct gh_csv_opts_s {
	char sep;          /* field separator: ',' (may not be '"', CR or LF) */
	unsigned flags;    /* GH_CSV_LAX | GH_CSV_KEEP_EMPTY | GH_CSV_SAME_WIDTH */
	size_t max_field;  /* bytes of one field after unquoting: 64 KiB */
	size_t max_record; /* bytes of all fields of a record after unquoting: 1 MiB */
	size_t max_fields; /* fields of a record: 1024 */
} gh_csv_opts_t;

/* A parsed record. Every field is also NUL-terminated (a field may contain NUL bytes: trust
 * lens). Everything points into the parser and stays valid until the next call on it. */
typedef struct gh_csv_record_s {
	size_t nfields;            /* >= 1 */
	const char *const *fields; /* nfields pointers */
	const size_t *lens;        /* nfields lengths */
	uint64_t line;             /* line where the record starts */
	uint64_t index;            /* 0-based count of records returned before this one */
} gh_csv_record_t;

typedef struct gh_csv_s gh_csv_t;

/* A reader, child of ctx (talloc). opts may be NULL. NULL on bad options or out of memory. */
gh_csv_t *gh_csv_new(void *ctx, const gh_csv_opts_t *opts);
/* Start a new stream with the same options (keeps the buffers). */
void gh_csv_reset(gh_csv_t *p);

/* Pull: parse from *pos up to end, stopping after the first record that completes.
 *   0        *rec is that record, *pos is just after it; call again with the same end;
 *   -EAGAIN  the input is used up (*pos == end) with no record complete: feed the next chunk;
 *   -EINVAL  a record was refused: gh_csv_last_error() says why; call again to go on with the
 *            next record (the rest of the refused one is skipped);
 *   -ENOMEM  out of memory (the stream cannot go on);
 *   -EALREADY the stream was finished (gh_csv_finish) and not reset.
 * A record ending in a lone CR is returned at the CR (a following LF is skipped on the next
 * call), so a record never waits for bytes beyond its own line end. */
int gh_csv_parse(gh_csv_t *p, const char **pos, const char *end, gh_csv_record_t *rec);
/* End of input: returns 0 with a last record that had no line end, -EINVAL for a refused one
 * (including GH_CSV_E_UNTERMINATED), then -ENODATA on every later call. */
int gh_csv_finish(gh_csv_t *p, gh_csv_record_t *rec);

/* The error behind the last -EINVAL. */
const gh_csv_error_t *gh_csv_last_error(const gh_csv_t *p);
/* Bytes consumed so far (including a byte order mark), and the current line. */
uint64_t gh_csv_offset(const gh_csv_t *p);
uint64_t gh_csv_line(const gh_csv_t *p);

/* Push: the callback gets each record (err NULL) or each refused record (rec NULL). It returns 0
 * to go on; anything else stops the parse and is returned (the rest of the chunk is dropped, so
 * the stream cannot be resumed). */
typedef int (*gh_csv_cb)(void *arg, const gh_csv_record_t *rec, const gh_csv_error_t *err);
/* Parse data[0..len) (any chunk size). 0, the callback's stop value, or -ENOMEM/-EALREADY. */
int gh_csv_feed(gh_csv_t *p, const void *data, size_t len, gh_csv_cb cb, void *arg);
/* End of input: delivers the last record or error. Same returns as gh_csv_feed. */
int gh_csv_end(gh_csv_t *p, gh_csv_cb cb, void *arg);

/* ---- header -------------------------------------------------------------------------- */

enum {
	GH_CSV_HEADER_ALLOW_UNKNOWN = 1 << 0, /* columns not in names are ignored */
	GH_CSV_HEADER_ORDERED = 1 << 1,       /* names must appear in the given order */
};

/* Map the header record hdr to the n expected column names (exact, case-sensitive bytes):
 * idx[i] gets the field index of names[i]. Without GH_CSV_HEADER_ALLOW_UNKNOWN the header must
 * be exactly the set of names (the numbering import: msisdn,operator_id,block_id,contract_ref,
 * vanity_tier,notes). Errors are found left to right: a duplicate name (any name, expected or
 * not: which copy is meant would be a guess), an unknown one, the order; then missing names in
 * the order of names. 0, or -EINVAL with *err filled (line = hdr->line, field = the 1-based
 * offending column, 0 for a missing one, detail = the name). */
int gh_csv_header_map(const gh_csv_record_t *hdr, const char *const *names, size_t n,
                      unsigned flags, size_t *idx, gh_csv_error_t *err);

/* ---- CSV injection ------------------------------------------------------------------ */

/* True when a text cell starts with '=', '+', '-', '@', tab, CR or NUL (numbering spec, "MNO CSV
 * import"; the OWASP CSV-injection list): a spreadsheet may run such a cell as a formula.
 * Columns with their own syntax (an E.164 msisdn starts with '+') are validated by that syntax
 * instead and must not be passed here. */
bool gh_csv_cell_risky(const char *s, size_t len);

/* Check field col (0-based) of rec as a text cell: 0, or -EINVAL with *err filled
 * (GH_CSV_E_INJECTION, line of the record, field col + 1). -EINVAL also when col is out of
 * range (GH_CSV_E_FIELD_COUNT). */
int gh_csv_check_text(const gh_csv_record_t *rec, size_t col, gh_csv_error_t *err);

/* ---- writer -------------------------------------------------------------------------- */

/* What gh_csv_write_text does with a risky cell. */
typedef enum {
	GH_CSV_INJ_REJECT = 0, /* refuse it: -EINVAL, nothing written */
	GH_CSV_INJ_NEUTRALISE, /* prefix a single quote ("=1+1" -> "'=1+1"), as OWASP advises */
	GH_CSV_INJ_ALLOW,      /* write it unchanged */
} gh_csv_inj_t;

typedef struct gh_csv_wopts_s {
	char sep;               /* ',' when 0 */
	bool lf;                /* end records with LF instead of RFC 4180's CRLF */
	gh_csv_inj_t injection; /* policy of gh_csv_write_text */
} gh_csv_wopts_t;

/* Receives the output in order; returns 0 or a negative errno (which the writer returns). */
typedef int (*gh_csv_sink)(void *arg, const void *data, size_t len);

typedef struct gh_csv_writer_s gh_csv_writer_t;

/* A writer, child of ctx. With a sink, output is buffered (64 KiB) and handed to it; with sink
 * NULL it accumulates in memory (gh_csv_writer_data). opts may be NULL. NULL on bad options or
 * out of memory.
 * Output is a function of the fields only: a field is quoted exactly when it contains the
 * separator, '"', CR or LF, or when leaving it bare would not read back the same (a record made
 * of one empty field is written "" since an empty line is no record; a first field starting
 * with a byte order mark is quoted so that the reader does not drop it). Reading the output with
 * gh_csv (same separator) gives back the same records. */
gh_csv_writer_t *gh_csv_writer_new(void *ctx, const gh_csv_wopts_t *opts, gh_csv_sink sink,
                                   void *arg);
/* Append a field to the current record, unchanged (numbers, identifiers, codes). 0 or the
 * sink's error, or -ENOMEM. */
int gh_csv_write_field(gh_csv_writer_t *w, const char *s, size_t len);
/* Append a free-text field, applying the injection policy: 0, -EINVAL when rejected (nothing
 * written, the record can go on), the sink's error or -ENOMEM. */
int gh_csv_write_text(gh_csv_writer_t *w, const char *s, size_t len);
/* End the current record. -EINVAL when it has no field (CSV cannot express that). */
int gh_csv_write_end(gh_csv_writer_t *w);
/* gh_csv_write_field for each of the n fields, then gh_csv_write_end. */
int gh_csv_write_record(gh_csv_writer_t *w, const char *const *fields, const size_t *lens,
                        size_t n);
/* Hand buffered output to the sink (no-op in memory mode). */
int gh_csv_writer_flush(gh_csv_writer_t *w);
/* Memory mode: the output so far (not NUL-terminated) and its length; NULL with a sink. */
const char *gh_csv_writer_data(const gh_csv_writer_t *w, size_t *len);
/* Bytes written so far (buffered or not). */
uint64_t gh_csv_writer_bytes(const gh_csv_writer_t *w);

#endif
