/* import_rows: the row rules of the MNO CSV import (numbering spec, "MNO CSV import"), apart
 * from the database: reading a file's records (core csv), mapping its header, and validating
 * each row into what the importer inserts, or into an error with line, field and a stable code.
 * No allocation per row and no I/O, so the fuzz target (tests/fuzz/import_rows_fuzz.c) runs it
 * alone. The checks that need the whole file or the database (duplicates inside the file,
 * numbers of another operator) are the importer's (import.c); their codes are here so the
 * report has one vocabulary.
 *
 * Header: exactly the columns msisdn,operator_id,block_id,contract_ref,vanity_tier,notes, in any
 * order, each once. Row rules, first failure wins:
 *   FIELD_COUNT               not as many cells as the header
 *   CSV_INJECTION             a text cell (every column but msisdn) starting with = + - @ tab
 *                             CR or NUL (core csv gh_csv_cell_risky)
 *   INVALID_MSISDN            msisdn does not normalise as an MSISDN (core e164)
 *   OPERATOR_MISMATCH         operator_id is not the upload's operator
 *   NOT_IN_OPERATOR_PREFIXES  the MSISDN's operator (by prefix, at upload time) is another one
 *   INVALID_BLOCK_ID          block_id not empty and not 1..64 of [A-Za-z0-9._:/-]
 *   UNKNOWN_CONTRACT          contract_ref names no contract of the operator (upload without
 *                             contract_id)
 *   CONTRACT_MISMATCH         contract_ref is not the upload's contract (upload with one)
 *   INVALID_VANITY_TIER       vanity_tier not empty and not 0..255 in decimal digits
 *   INVALID_TEXT              notes longer than 1024 bytes, not UTF-8, or with control
 *                             characters other than tab, CR, LF
 * plus MALFORMED_CSV for a record the CSV reader refused (its code and column in the reason),
 * and, from the importer, DUPLICATE_IN_FILE and HELD_BY_OTHER_OPERATOR. */
#ifndef NUM_IMPORT_ROWS_H
#define NUM_IMPORT_ROWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "csv.h"
#include "e164.h"

typedef enum {
	NUM_IMP_OK = 0,
	NUM_IMP_MALFORMED_CSV,
	NUM_IMP_FIELD_COUNT,
	NUM_IMP_CSV_INJECTION,
	NUM_IMP_INVALID_MSISDN,
	NUM_IMP_OPERATOR_MISMATCH,
	NUM_IMP_NOT_IN_OPERATOR_PREFIXES,
	NUM_IMP_INVALID_BLOCK_ID,
	NUM_IMP_UNKNOWN_CONTRACT,
	NUM_IMP_CONTRACT_MISMATCH,
	NUM_IMP_INVALID_VANITY_TIER,
	NUM_IMP_INVALID_TEXT,
	NUM_IMP_DUPLICATE_IN_FILE,
	NUM_IMP_HELD_BY_OTHER_OPERATOR,
	NUM_IMP_HEADER, /* the file's header (the whole file is refused) */
	NUM_IMP__COUNT,
} num_imp_code_t;

/* "MALFORMED_CSV", "FIELD_COUNT", ...; "UNKNOWN" out of range. */
const char *num_imp_code_name(num_imp_code_t c);

/* Columns, in the spec's order. */
typedef enum {
	NUM_IMP_F_MSISDN,
	NUM_IMP_F_OPERATOR_ID,
	NUM_IMP_F_BLOCK_ID,
	NUM_IMP_F_CONTRACT_REF,
	NUM_IMP_F_VANITY_TIER,
	NUM_IMP_F_NOTES,
	NUM_IMP_F__COUNT,
	NUM_IMP_F_NONE = NUM_IMP_F__COUNT,
} num_imp_field_t;

extern const char *const num_imp_columns[NUM_IMP_F__COUNT];

#define NUM_IMP_BLOCK_MAX 64
#define NUM_IMP_NOTES_MAX 1024

/* One refused row: 24 bytes, so a report of a million lines fits in memory. */
typedef struct num_imp_err_s {
	uint64_t line; /* where the record starts (1-based) */
	uint64_t aux;  /* DUPLICATE_IN_FILE: the other line; MALFORMED_CSV: column;
	                * FIELD_COUNT: cells found */
	uint32_t aux2; /* MALFORMED_CSV: the gh_csv_code_t */
	uint8_t code;  /* num_imp_code_t */
	uint8_t field; /* num_imp_field_t, NUM_IMP_F_NONE when not about one cell */
	uint16_t pad;
} num_imp_err_t;

/* The reason text of e ("msisdn is not a valid MSISDN", "also on line 17"), never echoing cell
 * contents (an MSISDN is personal data). Returns what snprintf returns. */
int num_imp_err_reason(const num_imp_err_t *e, char *buf, size_t n);

typedef struct num_imp_contract_s {
	const char *id;
	const char *ref;
} num_imp_contract_t;

/* What rows are checked against. */
typedef struct num_imp_rules_s {
	const char *operator_id;  /* the upload's operator */
	const gh_operator_t *ops; /* the operator table (prefixes) */
	size_t nops;
	int64_t now_ms;                      /* upload time: which prefixes are in effect */
	const num_imp_contract_t *contract;  /* the upload's contract, or NULL */
	const num_imp_contract_t *contracts; /* the operator's contracts (contract_ref lookup) */
	size_t ncontracts;
} num_imp_rules_t;

/* A valid row; pointers into the reader, valid until its next call. */
typedef struct num_imp_row_s {
	uint64_t line; /* where the record starts */
	gh_ident_t id;
	const char *block_id; /* NULL when empty */
	size_t block_len;
	const char *contract_id; /* NULL when none */
	int vanity_tier;
	const char *notes; /* NULL when empty */
	size_t notes_len;
} num_imp_row_t;

/* Where a record is, to read it again (import.c keeps one per valid row, not the row). */
typedef struct num_imp_pos_s {
	uint64_t offset; /* a record boundary at or before the record */
	uint32_t skip;   /* refused records between that boundary and the record */
} num_imp_pos_t;

typedef struct num_imp_reader_s num_imp_reader_t;

/* A reader over data[0..len) (borrowed: must outlive the reader), child of ctx. rules is
 * borrowed too. 0 or -ENOMEM. */
int num_imp_reader_new(void *ctx, const num_imp_rules_t *rules, const char *data, size_t len,
                       num_imp_reader_t **out);
/* Read and map the header: 0, or -EBADMSG with *e (code HEADER, reason in detail) filled;
 * detail gets a description ("missing column notes"). */
int num_imp_reader_header(num_imp_reader_t *rd, num_imp_err_t *e, char *detail, size_t n);
/* The next row: 0 valid (*row, *where), 1 refused (*e), -ENODATA at the end, -ENOMEM. */
int num_imp_reader_next(num_imp_reader_t *rd, num_imp_row_t *row, num_imp_err_t *e,
                        num_imp_pos_t *where);
/* Read the record at where again and validate it: the same answer next gave for it. 0, 1, or
 * -EIO when where is not a record of this file. */
int num_imp_reader_at(num_imp_reader_t *rd, const num_imp_pos_t *where, num_imp_row_t *row,
                      num_imp_err_t *e);
/* Data records read so far (valid and refused). */
uint64_t num_imp_reader_rows(const num_imp_reader_t *rd);

/* Validate one mapped record (idx[f] = the record's cell of column f). 0 or 1 (*e filled). */
int num_imp_row_check(const num_imp_rules_t *r, const size_t *idx, size_t ncols,
                      const gh_csv_record_t *rec, num_imp_row_t *row, num_imp_err_t *e);

/* UTF-8 without overlongs, surrogates or code points past U+10FFFF. */
bool num_imp_utf8_ok(const char *s, size_t n);

#endif
