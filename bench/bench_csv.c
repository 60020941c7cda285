/* bench_csv: CSV reader and writer throughput on one thread, over an in-memory MNO import file
 * of 1M rows (~60 MB, the size the numbering import must take in 60 s): simple rows parsed in
 * one call, the same in 64 KiB chunks as a file or request body arrives, through the push API,
 * a variant where every text cell is quoted with "" escapes, and the writer producing the file.
 * Every run checks the row count and a checksum of the fields (a mismatch aborts). Best of 3.
 * Prints one line:
 *   bench_csv rows=N bytes=N parse_mb_s=N chunked_mb_s=N push_mb_s=N quoted_mb_s=N
 *             write_mb_s=N rows_per_s=N */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>
#include <time.h>

#include "csv.h"

enum { ROWS = 1000000, CHUNK = 65536, RUNS = 3 };

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *const ops[] = {"roshan", "awcc", "mtn", "etisalat", "salaam"};
static const char *const tiers[] = {"STANDARD", "SILVER", "GOLD", ""};

/* the import file: header plus ROWS rows; quoted: every text cell quoted, notes with "" */
static char *make_file(void *ctx, int quoted, size_t *len)
{
	gh_csv_writer_t *w = gh_csv_writer_new(ctx, NULL, NULL, NULL);
	const char *hdr[] = {"msisdn",       "operator_id", "block_id",
	                     "contract_ref", "vanity_tier", "notes"};
	size_t hl[6];
	for (int i = 0; i < 6; i++)
		hl[i] = strlen(hdr[i]);
	if (!w || gh_csv_write_record(w, hdr, hl, 6))
		abort();
	size_t n;
	const char *h = gh_csv_writer_data(w, &n);
	size_t cap = (size_t)ROWS * 96, used = n;
	char *buf = talloc_size(ctx, cap);
	memcpy(buf, h, n);
	for (int i = 0; i < ROWS; i++) {
		if (quoted)
			used += (size_t)snprintf(
			    buf + used, cap - used,
			    "+937%08d,\"%s\",\"blk-%04d\",\"CT-2026-%05d\",\"%s\","
			    "\"batch \"\"%d\"\", ok\"\r\n",
			    i, ops[i % 5], i / 1000, i % 100000, tiers[i % 4], i % 10);
		else
			used += (size_t)snprintf(
			    buf + used, cap - used,
			    "+937%08d,%s,blk-%04d,CT-2026-%05d,%s,batch %d\r\n", i, ops[i % 5],
			    i / 1000, i % 100000, tiers[i % 4], i % 10);
	}
	*len = used;
	return buf;
}

typedef struct {
	uint64_t rows, sum;
} tally_t;

static void count(tally_t *t, const gh_csv_record_t *r)
{
	if (r->nfields != 6)
		abort();
	t->rows++;
	for (size_t i = 0; i < r->nfields; i++)
		t->sum += r->lens[i] + (unsigned char)(r->lens[i] ? r->fields[i][0] : 0);
}

static int push_cb(void *arg, const gh_csv_record_t *rec, const gh_csv_error_t *err)
{
	if (err)
		abort();
	count(arg, rec);
	return 0;
}

/* mode 0: one call over the whole buffer, 1: CHUNK-sized pulls, 2: push API in CHUNKs */
static tally_t parse(void *ctx, const char *buf, size_t len, int mode)
{
	tally_t t = {0};
	gh_csv_t *p = gh_csv_new(ctx, NULL);
	gh_csv_record_t r;
	int rc;
	for (size_t off = 0; off < len;) {
		size_t n = mode == 0 ? len : (len - off < CHUNK ? len - off : CHUNK);
		if (mode == 2) {
			if (gh_csv_feed(p, buf + off, n, push_cb, &t))
				abort();
		} else {
			const char *pos = buf + off, *end = pos + n;
			while ((rc = gh_csv_parse(p, &pos, end, &r)) == 0)
				count(&t, &r);
			if (rc != -EAGAIN)
				abort();
		}
		off += n;
	}
	if (mode == 2) {
		if (gh_csv_end(p, push_cb, &t))
			abort();
	} else if (gh_csv_finish(p, &r) != -ENODATA) {
		abort();
	}
	talloc_free(p);
	return t;
}

static double best_parse(void *ctx, const char *buf, size_t len, int mode, tally_t *want)
{
	double best = 1e9;
	for (int k = 0; k < RUNS; k++) {
		double t0 = now_s();
		tally_t t = parse(ctx, buf, len, mode);
		double dt = now_s() - t0;
		if (t.rows != (uint64_t)ROWS + 1 || (want->rows && t.sum != want->sum))
			abort();
		*want = t;
		if (dt < best)
			best = dt;
	}
	return best;
}

static int null_sink(void *arg, const void *data, size_t len)
{
	*(uint64_t *)arg += len + (unsigned char)((const char *)data)[len - 1];
	return 0;
}

/* the writer over 4096 preformatted rows in rotation, so that formatting is not measured */
static double best_write(void *ctx, size_t *bytes)
{
	enum { NPRE = 4096 };
	static char f[NPRE][4][24];
	static const char *fields[NPRE][6];
	static size_t lens[NPRE][6];
	for (int i = 0; i < NPRE; i++) {
		int k = i * 7919;
		lens[i][0] = (size_t)snprintf(f[i][0], 24, "+937%08d", k);
		lens[i][2] = (size_t)snprintf(f[i][1], 24, "blk-%04d", k % 10000);
		lens[i][3] = (size_t)snprintf(f[i][2], 24, "CT-2026-%05d", k % 100000);
		lens[i][5] = (size_t)snprintf(f[i][3], 24, "batch %d", i % 10);
		const char *row[6] = {f[i][0], ops[i % 5], f[i][1], f[i][2], tiers[i % 4], f[i][3]};
		for (int c = 0; c < 6; c++)
			fields[i][c] = row[c];
		lens[i][1] = strlen(ops[i % 5]);
		lens[i][4] = strlen(tiers[i % 4]);
	}
	double best = 1e9;
	for (int k = 0; k < RUNS; k++) {
		uint64_t sink = 0;
		gh_csv_writer_t *w = gh_csv_writer_new(ctx, NULL, null_sink, &sink);
		double t0 = now_s();
		for (int i = 0; i < ROWS; i++)
			if (gh_csv_write_record(w, fields[i % NPRE], lens[i % NPRE], 6))
				abort();
		if (gh_csv_writer_flush(w))
			abort();
		double dt = now_s() - t0;
		*bytes = gh_csv_writer_bytes(w);
		talloc_free(w);
		if (dt < best)
			best = dt;
	}
	return best;
}

int main(void)
{
	void *ctx = talloc_new(NULL);
	size_t len, qlen, wbytes;
	char *simple = make_file(ctx, 0, &len);
	char *quoted = make_file(ctx, 1, &qlen);
	tally_t want = {0}, qwant = {0};
	double t_one = best_parse(ctx, simple, len, 0, &want);
	double t_chunk = best_parse(ctx, simple, len, 1, &want);
	double t_push = best_parse(ctx, simple, len, 2, &want);
	double t_q = best_parse(ctx, quoted, qlen, 1, &qwant);
	double t_w = best_write(ctx, &wbytes);
	printf("bench_csv rows=%d bytes=%zu parse_mb_s=%.0f chunked_mb_s=%.0f push_mb_s=%.0f "
	       "quoted_mb_s=%.0f write_mb_s=%.0f rows_per_s=%.0f\n",
	       ROWS, len, (double)len / t_one / 1e6, (double)len / t_chunk / 1e6,
	       (double)len / t_push / 1e6, (double)qlen / t_q / 1e6, (double)wbytes / t_w / 1e6,
	       ROWS / t_chunk);
	talloc_free(ctx);
	return 0;
}
