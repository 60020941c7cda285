/* e164 fuzz target (libFuzzer): raw identifiers of every kind and operator CSV.
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc/core tests/fuzz/e164_fuzz.c \
 *          src/core/e164.c src/core/err.c src/core/clock.c -ljansson -ltalloc
 * Besides memory safety it checks the contracts: an accepted identifier has a non-zero key that
 * decodes to its canonical form, normalising the canonical form again gives the same key, an
 * MSISDN's key is gh_e164_pack of its canonical form and auto-detection agrees with the kind
 * it picked; an accepted CSV table passes the table check and every lookup stays inside it. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "e164.h"

static void check_ident(gh_ident_kind_t kind, const uint8_t *data, size_t size)
{
	gh_ident_t id, again;
	gh_err_t err = {0};
	int rc = gh_ident_normalize(NULL, kind, (const char *)data, size, &id, &err);
	if (rc != 0) {
		if (rc != -EINVAL || err.code != GH_E_INVALID_ARGUMENT || !err.message[0])
			abort();
		return;
	}
	if (kind != GH_IDENT_AUTO && id.kind != kind)
		abort();
	size_t n = strlen(id.canonical);
	if (id.key == 0 || n == 0 || n >= GH_IDENT_BUFSZ || strlen(id.display) != n)
		abort();
	gh_ident_kind_t k;
	char back[GH_IDENT_BUFSZ];
	if (gh_ident_key_format(id.key, &k, back) || k != id.kind || strcmp(back, id.canonical))
		abort();
	if (gh_ident_normalize(NULL, id.kind, id.canonical, n, &again, NULL) ||
	    again.key != id.key || strcmp(again.canonical, id.canonical))
		abort();
	if (gh_ident_normalize(NULL, GH_IDENT_AUTO, id.canonical, n, &again, NULL) ||
	    again.kind != id.kind || again.key != id.key)
		abort();
	if (id.kind == GH_IDENT_MSISDN) {
		uint64_t key;
		char out[GH_IDENT_BUFSZ];
		if (gh_e164_pack(id.canonical, &key) || key != id.key)
			abort();
		if (memchr(data, '\0', size) == NULL) {
			char buf[GH_IDENT_INPUT_MAX + 1];
			memcpy(buf, data, size);
			buf[size] = '\0';
			if (gh_e164_normalize(buf, out, NULL) || strcmp(out, id.canonical))
				abort();
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	for (int k = GH_IDENT_AUTO; k < GH_IDENT__COUNT; k++)
		check_ident((gh_ident_kind_t)k, data, size);

	gh_operator_t ops[8];
	size_t n = 0;
	gh_err_t err = {0};
	if (gh_operators_parse_csv((const char *)data, size, ops, 8, &n, &err) == 0) {
		if (gh_operator_table_check(ops, n, NULL))
			abort();
		for (size_t i = 0; i < n; i++) {
			const gh_operator_t *op = gh_operator_for_msisdn(ops, n, ops[i].prefixes[0],
			                                                 ops[i].valid_from_ms);
			if (!op || op < ops || op >= ops + n)
				abort();
			if (gh_operator_find(ops, n, ops[i].id) != &ops[i])
				abort();
		}
	}
	gh_err_clear(&err);
	return 0;
}
