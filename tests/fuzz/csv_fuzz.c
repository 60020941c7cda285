/* csv fuzz target (libFuzzer): the streaming reader and the writer.
 * Build: scripts/fuzz.sh csv (or clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc/core
 *          tests/fuzz/csv_fuzz.c src/core/csv.c src/core/err.c -ltalloc -ljansson)
 * Input: byte 0 picks the options (flags, separator, small limits), byte 1 seeds the chunking,
 * the rest is the CSV text. Besides memory safety it checks the contracts:
 *   - parsing in random chunks (down to 1 byte) gives the same records, line numbers and errors
 *     (code, line, column, field) as parsing in one call, through the pull and the push API;
 *   - every record has >= 1 field, each NUL-terminated and within the limits; record lines never
 *     go down; gh_csv_offset ends at the input size;
 *   - input that the strict reader accepts without error reads the same in lax mode;
 *   - writing the records with gh_csv_writer and reading that back gives the same fields, with
 *     no error, and the writer's output is the same through a sink as in memory. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>

#include "csv.h"

typedef struct {
	uint64_t h;      /* hash of everything reported, lines and errors included */
	uint64_t fields; /* hash of record fields only (for the round trip) */
	size_t records, errors;
	uint64_t last_line;
	const gh_csv_opts_t *o;
	gh_csv_writer_t *w; /* when set, records are also written here */
} run_t;

static uint64_t mix(uint64_t h, uint64_t v)
{
	h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
	return h * 0xff51afd7ed558ccdULL;
}

static uint64_t mix_bytes(uint64_t h, const char *s, size_t n)
{
	h = mix(h, n);
	for (size_t i = 0; i < n; i++)
		h = mix(h, (unsigned char)s[i]);
	return h;
}

static void on_record(run_t *r, const gh_csv_record_t *rec)
{
	if (rec->nfields < 1 || rec->nfields > r->o->max_fields || rec->line < r->last_line ||
	    rec->index != r->records)
		abort();
	r->last_line = rec->line;
	size_t total = 0;
	uint64_t f = mix(0, rec->nfields);
	for (size_t i = 0; i < rec->nfields; i++) {
		if (rec->fields[i][rec->lens[i]] != '\0' || rec->lens[i] > r->o->max_field)
			abort();
		total += rec->lens[i];
		f = mix_bytes(f, rec->fields[i], rec->lens[i]);
	}
	if (total > r->o->max_record)
		abort();
	r->fields = mix(r->fields, f);
	r->h = mix(mix(r->h, rec->line), f);
	r->records++;
	if (r->w && gh_csv_write_record(r->w, rec->fields, rec->lens, rec->nfields))
		abort();
}

static void on_error(run_t *r, const gh_csv_error_t *e)
{
	if (e->code <= GH_CSV_OK || e->code > GH_CSV_E_FIELD_COUNT || e->line < r->last_line ||
	    e->at_line < e->line || e->column < 1)
		abort();
	r->last_line = e->line;
	r->h =
	    mix(mix(mix(mix(mix(r->h, 0xE0 + (uint64_t)e->code), e->line), e->at_line), e->column),
	        e->field);
	r->errors++;
}

static int push_cb(void *arg, const gh_csv_record_t *rec, const gh_csv_error_t *err)
{
	if ((rec == NULL) == (err == NULL))
		abort();
	if (rec)
		on_record(arg, rec);
	else
		on_error(arg, err);
	return 0;
}

/* Pull-parse data[0..size) in chunks: whole when seed is 0, else pseudo-random sizes 1..64
 * (each chunk copied, so that reading past it is caught). */
static run_t run_pull(void *ctx, const gh_csv_opts_t *o, const char *data, size_t size,
                      uint32_t seed, gh_csv_writer_t *w)
{
	run_t r = {.o = o, .w = w};
	gh_csv_t *p = gh_csv_new(ctx, o);
	if (!p)
		abort();
	gh_csv_record_t rec;
	int rc;
	for (size_t off = 0; off < size;) {
		size_t n = size - off;
		if (seed) {
			seed = seed * 1103515245u + 12345u;
			size_t c = 1 + (seed >> 16) % 64;
			if (c < n)
				n = c;
		}
		char *chunk = talloc_memdup(ctx, data + off, n);
		const char *pos = chunk, *end = chunk + n;
		while ((rc = gh_csv_parse(p, &pos, end, &rec)) != -EAGAIN) {
			if (rc == 0)
				on_record(&r, &rec);
			else if (rc == -EINVAL)
				on_error(&r, gh_csv_last_error(p));
			else
				abort();
		}
		if (pos != end)
			abort();
		talloc_free(chunk);
		off += n;
	}
	while ((rc = gh_csv_finish(p, &rec)) != -ENODATA) {
		if (rc == 0)
			on_record(&r, &rec);
		else if (rc == -EINVAL)
			on_error(&r, gh_csv_last_error(p));
		else
			abort();
	}
	if (gh_csv_offset(p) != size)
		abort();
	talloc_free(p);
	return r;
}

static run_t run_push(void *ctx, const gh_csv_opts_t *o, const char *data, size_t size,
                      size_t chunk)
{
	run_t r = {.o = o};
	gh_csv_t *p = gh_csv_new(ctx, o);
	for (size_t off = 0; off < size; off += chunk)
		if (gh_csv_feed(p, data + off, size - off < chunk ? size - off : chunk, push_cb,
		                &r))
			abort();
	if (gh_csv_end(p, push_cb, &r))
		abort();
	talloc_free(p);
	return r;
}

static int sink_fn(void *arg, const void *data, size_t len)
{
	char **out = arg;
	size_t have = talloc_get_size(*out);
	char *n = talloc_realloc(NULL, *out, char, have + len);
	if (!n)
		abort();
	memcpy(n + have, data, len);
	*out = n;
	return 0;
}

static int same(const run_t *a, const run_t *b)
{
	return a->h == b->h && a->records == b->records && a->errors == b->errors;
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
	if (size < 2)
		return 0;
	uint8_t cfg = in[0];
	uint32_t seed = in[1] | 1u;
	const char *data = (const char *)in + 2;
	size -= 2;

	static const char seps[4] = {',', ';', '\t', '|'};
	gh_csv_opts_t o = {.sep = seps[(cfg >> 3) & 3], .flags = cfg & 7};
	if (cfg & 0x20) {
		o.max_field = 1 + (cfg >> 6) * 3;
		o.max_record = 8;
		o.max_fields = 1 + (cfg >> 6);
	} else {
		o.max_field = GH_CSV_DEFAULT_MAX_FIELD;
		o.max_record = GH_CSV_DEFAULT_MAX_RECORD;
		o.max_fields = GH_CSV_DEFAULT_MAX_FIELDS;
	}

	void *ctx = talloc_new(NULL);
	gh_csv_writer_t *mem = gh_csv_writer_new(ctx, &(gh_csv_wopts_t){.sep = o.sep}, NULL, NULL);
	run_t whole = run_pull(ctx, &o, data, size, 0, mem);
	run_t chunked = run_pull(ctx, &o, data, size, seed, NULL);
	run_t bytes = run_push(ctx, &o, data, size, 1);
	run_t push = run_push(ctx, &o, data, size, 1 + seed % 13);
	if (!same(&whole, &chunked) || !same(&whole, &bytes) || !same(&whole, &push))
		abort();

	if (!whole.errors && !(o.flags & GH_CSV_LAX)) {
		gh_csv_opts_t lax = o;
		lax.flags |= GH_CSV_LAX;
		run_t l = run_pull(ctx, &lax, data, size, seed, NULL);
		if (!same(&whole, &l))
			abort();
	}

	/* round trip through the writer; the same output through a sink */
	size_t n;
	const char *out = gh_csv_writer_data(mem, &n);
	gh_csv_opts_t back = o;
	back.flags = 0;
	run_t again = run_pull(ctx, &back, out, n, seed, NULL);
	if (again.errors || again.records != whole.records || again.fields != whole.fields)
		abort();
	char *sunk = talloc_size(NULL, 0);
	gh_csv_writer_t *sw =
	    gh_csv_writer_new(ctx, &(gh_csv_wopts_t){.sep = o.sep}, sink_fn, &sunk);
	run_t via_sink = run_pull(ctx, &o, data, size, 0, sw);
	if (gh_csv_writer_flush(sw) || !same(&whole, &via_sink) || talloc_get_size(sunk) != n ||
	    (n && memcmp(sunk, out, n)))
		abort();
	talloc_free(sunk);
	talloc_free(ctx);
	return 0;
}
