/* import_rows fuzz target (libFuzzer): the MNO import's row reader and validator.
 * Build: scripts/fuzz.sh import_rows (the validator is compiled in from src/numbering).
 * Input: byte 0 picks the rules (upload contract or not, operator), the rest is the CSV file.
 * Besides memory safety it checks the contracts the importer relies on:
 *   - every data record is either a valid row or one error, and the reader's row count is
 *     their sum; lines never go down;
 *   - a valid row: its MSISDN re-normalises to the same key, lies in the upload operator's
 *     prefixes, no text cell of it is a formula (= + - @ tab CR NUL), vanity_tier is 0..255,
 *     block_id and notes obey their syntax, the contract is the upload's or one of the list;
 *   - reading the row again at its position (num_imp_reader_at, which the importer uses
 *     instead of keeping rows) gives exactly the same row;
 *   - error codes are in range and their reasons format. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>

#include "csv.h"
#include "e164.h"
#include "err.h"

#include "../../src/numbering/import_rows.c"

static bool same_row(const num_imp_row_t *a, const num_imp_row_t *b)
{
	return a->id.key == b->id.key && strcmp(a->id.canonical, b->id.canonical) == 0 &&
	       a->vanity_tier == b->vanity_tier && a->contract_id == b->contract_id &&
	       a->block_len == b->block_len && (!a->block_id) == (!b->block_id) &&
	       (!a->block_id || memcmp(a->block_id, b->block_id, a->block_len) == 0) &&
	       a->notes_len == b->notes_len && (!a->notes) == (!b->notes) &&
	       (!a->notes || memcmp(a->notes, b->notes, a->notes_len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t nops;
	const gh_operator_t *ops = gh_operators_default(&nops);
	static const num_imp_contract_t contracts[] = {{"c1", "RSH-1"}, {"c2", "RSH-2"}};
	num_imp_rules_t rules = {.operator_id = (data[0] & 2) ? "mtn" : "roshan",
	                         .ops = ops,
	                         .nops = nops,
	                         .now_ms = 1767225600000LL,
	                         .contract = (data[0] & 1) ? &contracts[0] : NULL,
	                         .contracts = contracts,
	                         .ncontracts = 2};
	void *ctx = talloc_new(NULL);
	num_imp_reader_t *rd;
	if (num_imp_reader_new(ctx, &rules, (const char *)data + 1, size - 1, &rd) < 0)
		abort();
	num_imp_err_t e;
	char detail[160], reason[200];
	if (num_imp_reader_header(rd, &e, detail, sizeof detail) < 0)
		goto out;
	num_imp_row_t row, again;
	num_imp_pos_t w;
	uint64_t valid = 0, errors = 0, last = 0;
	int rc;
	while ((rc = num_imp_reader_next(rd, &row, &e, &w)) >= 0) {
		if (rc == 1) {
			if (e.code == NUM_IMP_OK || e.code >= NUM_IMP__COUNT || e.line < last)
				abort();
			num_imp_err_reason(&e, reason, sizeof reason);
			last = e.line;
			errors++;
			continue;
		}
		valid++;
		if (row.line < last)
			abort();
		last = row.line;
		gh_ident_t id;
		if (gh_ident_normalize(NULL, GH_IDENT_MSISDN, row.id.canonical,
		                       strlen(row.id.canonical), &id, NULL) < 0 ||
		    id.key != row.id.key)
			abort();
		const gh_operator_t *op =
		    gh_operator_for_msisdn(ops, nops, row.id.canonical, rules.now_ms);
		if (!op || strcmp(op->id, rules.operator_id) != 0)
			abort();
		if (row.vanity_tier < 0 || row.vanity_tier > 255)
			abort();
		if (row.block_id && (gh_csv_cell_risky(row.block_id, row.block_len) ||
		                     !block_ok(row.block_id, row.block_len)))
			abort();
		if (row.notes && (gh_csv_cell_risky(row.notes, row.notes_len) ||
		                  !notes_ok(row.notes, row.notes_len)))
			abort();
		if (rules.contract && row.contract_id != rules.contract->id)
			abort();
		if (row.contract_id && row.contract_id != contracts[0].id &&
		    row.contract_id != contracts[1].id)
			abort();
		num_imp_row_t copy = row;
		char *b = row.block_id ? talloc_memdup(ctx, row.block_id, row.block_len) : NULL;
		char *n = row.notes ? talloc_memdup(ctx, row.notes, row.notes_len) : NULL;
		copy.block_id = b;
		copy.notes = n;
		if (num_imp_reader_at(rd, &w, &again, &e) != 0 || !same_row(&copy, &again))
			abort();
		talloc_free(b);
		talloc_free(n);
	}
	if (rc != -ENODATA || num_imp_reader_rows(rd) != valid + errors)
		abort();
out:
	talloc_free(ctx);
	return 0;
}
