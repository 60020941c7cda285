/* multipart fuzz target (libFuzzer): the streaming multipart/form-data reader.
 * Build: scripts/fuzz.sh multipart
 * Input: byte 0 seeds the chunking and picks small limits, the rest is the body, read with the
 * boundary "fzB" (so delimiters are easy to reach). Besides memory safety it checks:
 *   - parsing in random chunks (down to 1 byte) gives the same events (DATA merged), the same
 *     verdict and the same error code as parsing in one call;
 *   - DATA events are non-empty; in one-call mode they point into the input (zero copy);
 *   - part indexes go 1, 2, ...; names are non-empty; every PART is followed by its PART_END
 *     before the next PART or END;
 *   - an accepted body's offset ends at the input size; gh_mp_form_parse agrees with the
 *     streaming verdict (modulo its own duplicate-name rule). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>

#include "multipart.h"

#define BND "fzB"

static uint64_t mix(uint64_t h, uint64_t v)
{
	h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
	return h * 0xff51afd7ed558ccdULL;
}

typedef struct {
	uint64_t h;
	int rc;
	gh_mp_code_t code;
	size_t parts;
	bool dup_names;
} res_t;

static res_t run(const char *in, size_t len, uint64_t seed, const gh_mp_opts_t *o, bool one)
{
	res_t r = {0};
	void *ctx = talloc_new(NULL);
	gh_mp_t *p = gh_mp_new(ctx, BND, o);
	if (!p)
		abort();
	size_t off = 0, expect_index = 1;
	bool open = false;
	char **names = talloc_zero_array(ctx, char *, o->max_parts + 1);
	gh_mp_event_t ev;
	for (;;) {
		size_t n = len - off;
		if (!one) {
			seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
			size_t c = 1 + (size_t)((seed >> 33) % 17);
			if (c < n)
				n = c;
		}
		const char *pos = in + off, *end = in + off + n;
		int rc;
		while ((rc = gh_mp_parse(p, &pos, end, &ev)) == 0) {
			switch (ev.type) {
			case GH_MP_EV_PART:
				if (open || ev.part->index != expect_index || !ev.part->name[0])
					abort();
				for (size_t i = 0; i < r.parts; i++)
					if (strcmp(names[i], ev.part->name) == 0)
						r.dup_names = true;
				names[r.parts++] = talloc_strdup(names, ev.part->name);
				expect_index++;
				open = true;
				r.h = mix(r.h, 1);
				for (const char *c = ev.part->name; *c; c++)
					r.h = mix(r.h, (unsigned char)*c);
				break;
			case GH_MP_EV_DATA:
				if (!open || ev.len == 0)
					abort();
				if (one && (ev.data < in || ev.data + ev.len > in + len))
					abort();
				for (size_t i = 0; i < ev.len; i++)
					r.h = mix(r.h, (unsigned char)ev.data[i] + 256);
				break;
			case GH_MP_EV_PART_END:
				if (!open)
					abort();
				open = false;
				r.h = mix(r.h, 2);
				break;
			case GH_MP_EV_END:
				if (open)
					abort();
				r.h = mix(r.h, 3);
				break;
			}
		}
		if (rc == -EINVAL) {
			r.rc = rc;
			r.code = gh_mp_last_error(p)->code;
			goto out;
		}
		if (rc != -EAGAIN || pos != end)
			abort();
		off += n;
		if (off == len)
			break;
	}
	r.rc = gh_mp_finish(p);
	if (r.rc < 0)
		r.code = gh_mp_last_error(p)->code;
	else if (gh_mp_offset(p) != len)
		abort();
out:
	talloc_free(ctx);
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t b0 = data[0];
	const char *in = (const char *)data + 1;
	size_t len = size - 1;
	gh_mp_opts_t o = {.max_parts = (b0 & 1) ? 3 : 16, .max_header_bytes = (b0 & 2) ? 40 : 512};
	res_t a = run(in, len, 0, &o, true);
	res_t b = run(in, len, b0, &o, false);
	if (a.rc != b.rc || a.code != b.code || (a.rc == 0 && a.h != b.h))
		abort();
	void *ctx = talloc_new(NULL);
	gh_mp_field_t *f;
	size_t n;
	gh_mp_error_t e;
	int rc =
	    gh_mp_form_parse(ctx, "multipart/form-data; boundary=" BND, in, len, &o, 0, &f, &n, &e);
	if (a.rc == 0 && !a.dup_names && (rc != 0 || n != a.parts))
		abort();
	if (a.rc < 0 && rc == 0)
		abort();
	for (size_t i = 0; rc == 0 && i < n; i++)
		if (f[i].len && (f[i].data < in || f[i].data + f[i].len > in + len))
			abort();
	talloc_free(ctx);
	return 0;
}
