/* e164: sender identifiers (numbering spec, "Identifiers") and the mobile operator table.
 *
 * Three kinds of identifier send SMS: an MSISDN (E.164, canonical "+93" + 9 digits in the
 * mobile range 7XXXXXXXX), a SHORT_CODE (3-6 digits allocated by ATRA) and an ALPHA sender id
 * (1-11 characters [A-Za-z0-9 ], at least one letter; 11 is the GSM limit of an alphanumeric
 * originating address, 3GPP TS 23.040 9.1.2.5). Every identifier is normalised before any
 * use; the country, the mobile range and the short-code bounds are data (gh_ident_rules_t),
 * so another country is a configuration, not a code change.
 *
 * Normalisation runs on the ValidateLease hot path: it allocates nothing, reads the input
 * once, and also yields a 64-bit key (unique per kind and canonical form, never 0) that the
 * number index can hash and store instead of strings.
 *
 * Operators are data too: id, name, E.212 MCC and MNCs, MSISDN prefixes and effective dates,
 * in flat fixed-size records, looked up by longest prefix without allocation. */
#ifndef GH_E164_H
#define GH_E164_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Buffer for any canonical or display form: "+" and 15 digits (the E.164 maximum) and NUL;
 * short codes and alpha ids are shorter. */
#define GH_IDENT_BUFSZ 17
/* Raw input longer than this is rejected before it is looked at. */
#define GH_IDENT_INPUT_MAX 64
/* Hard limits the configurable rules must stay within. */
#define GH_IDENT_SHORT_DIGITS_MAX    8
#define GH_IDENT_ALPHA_MAX           11
#define GH_IDENT_MAX_MOBILE_PREFIXES 8

typedef enum {
	GH_IDENT_AUTO = -1, /* only as input: detect the kind from the raw identifier */
	GH_IDENT_MSISDN = 0,
	GH_IDENT_SHORT_CODE,
	GH_IDENT_ALPHA,
	GH_IDENT__COUNT,
} gh_ident_kind_t;

/* "MSISDN", "SHORT_CODE", "ALPHA" (stable: JSON, SQL and logs use them); "UNKNOWN" otherwise. */
const char *gh_ident_kind_name(gh_ident_kind_t kind);
/* Exact, case-sensitive inverse of gh_ident_kind_name for the three kinds. 0 or -EINVAL. */
int gh_ident_kind_parse(const char *name, gh_ident_kind_t *kind);

/* Numbering rules of one country plus the short-code and alpha bounds. Every string is digits
 * and NUL-terminated inside its array; unused mobile_prefixes entries are "". */
typedef struct gh_ident_rules_s {
	char country_code[4]; /* E.164 country code, 1-3 digits, not starting with 0 ("93") */
	char intl_prefix[4];  /* international call prefix dialled before it ("00"); "" = none */
	char trunk_prefix[3]; /* national trunk prefix ("0"); "" = none */
	uint8_t national_len; /* digits of the national significant number (9) */
	/* national-number prefixes of the mobile range ("7"); at least one */
	char mobile_prefixes[GH_IDENT_MAX_MOBILE_PREFIXES][8];
	uint8_t short_min, short_max; /* short-code digits (3, 6) */
	uint8_t alpha_max;            /* alpha sender id characters (11) */
} gh_ident_rules_t;

/* Afghanistan: +93, "00", "0", 9 digits, mobile 7XXXXXXXX, short codes 3-6, alpha 1-11. */
extern const gh_ident_rules_t gh_ident_rules_default;

/* Check rules loaded from configuration; the normalisers trust rules that passed this check.
 * Beyond well-formed fields it requires short_max < national_len, so that a digits-only short
 * code can never be read as an MSISDN in any accepted form. 0 or -EINVAL (err filled). */
int gh_ident_rules_check(const gh_ident_rules_t *rules, gh_err_t *err);

/* A normalised identifier. */
typedef struct gh_ident_s {
	gh_ident_kind_t kind;
	/* Packed form for indexes: bits 63-62 hold kind + 1 (so a key is never 0); MSISDN: the
	 * E.164 digits as an integer (they never start with 0, so it is unique); SHORT_CODE:
	 * bits 59-56 the digit count (leading zeros stay distinct), low bits the value; ALPHA: the
	 * canonical characters in base 38 ("" = 0, space, 0-9, A-Z), first character most
	 * significant. gh_ident_key_format reverses it. */
	uint64_t key;
	/* MSISDN "+93701234567"; SHORT_CODE the digits; ALPHA upper-cased: the form uniqueness
	 * and lookups use. */
	char canonical[GH_IDENT_BUFSZ];
	/* What a handset shows: equal to canonical except that ALPHA keeps the caller's case. */
	char display[GH_IDENT_BUFSZ];
} gh_ident_t;

/* Normalise the raw identifier in[0..len) (not NUL-terminated; an embedded NUL is an invalid
 * character) as kind, or detect the kind with GH_IDENT_AUTO:
 *   - any ASCII letter                            -> ALPHA
 *   - only digits, at most short_max of them       -> SHORT_CODE (so "12" fails as a short code)
 *   - anything else (digits with '+', separators,
 *     or more digits than a short code can have)   -> MSISDN ("0701234567" is an MSISDN)
 * No input is valid as two kinds: alpha ids need a letter, short codes are shorter than any
 * MSISDN form (gh_ident_rules_check), so the detection never hides a valid reading.
 *
 * MSISDN accepts, with the default rules: "+93 70 123 4567", "0093701234567", "93701234567"
 * (exactly country code + national number), "0701234567", and "+93 (0)70 123 4567" (the "(0)"
 * trunk-prefix convention). Separators: spaces anywhere (surrounding ones are ignored), '-'
 * and '.' only after a digit or ')' and never at the end, one pair of parentheses around
 * digits, '+' only first and directly before a digit. The national number must have exactly
 * national_len digits and start with a mobile prefix. A bare national number ("701234567") is
 * refused: the spec lists the accepted forms and it is not one of them.
 * SHORT_CODE: digits only, short_min..short_max of them, leading zeros kept.
 * ALPHA: 1..alpha_max of [A-Za-z0-9 ], at least one letter. Leading, trailing and doubled
 * spaces are refused rather than collapsed: a sender id must read on the handset exactly as
 * it was registered, and "MY  BANK" next to "MY BANK" is a spoofing vector; so the display
 * form is the input unchanged and the canonical form is it upper-cased.
 *
 * rules NULL means gh_ident_rules_default. Allocates nothing. Returns 0 and fills *out, or
 * -EINVAL with err (when non-NULL) set to GH_E_INVALID_ARGUMENT and a message saying why
 * (never echoing the digits: they may be a subscriber's); err->field is left for the caller
 * to name. *out is unspecified on failure. */
int gh_ident_normalize(const gh_ident_rules_t *rules, gh_ident_kind_t kind, const char *in,
                       size_t len, gh_ident_t *out, gh_err_t *err);

/* MSISDN only, default rules, NUL-terminated input: out gets the canonical "+93XXXXXXXXX".
 * 0 or -EINVAL (err filled). Allocates nothing. */
int gh_e164_normalize(const char *in, char out[GH_IDENT_BUFSZ], gh_err_t *err);

/* Key of a canonical E.164 number ("+" and 1-15 digits, not starting with 0), equal to the
 * key gh_ident_normalize gives it. 0 or -EINVAL. */
int gh_e164_pack(const char *canonical, uint64_t *key);

/* The kind and canonical form of a key made by gh_ident_normalize (ALPHA comes back
 * upper-cased: the display case is not in the key). 0 or -EINVAL for a malformed key. */
int gh_ident_key_format(uint64_t key, gh_ident_kind_t *kind, char out[GH_IDENT_BUFSZ]);

/* ---- operators ------------------------------------------------------------------------ */

#define GH_OPERATOR_MAX_MNC      4
#define GH_OPERATOR_MAX_PREFIXES 8

/* One mobile network operator. Fixed-size so a table is one flat array. Unused mnc and
 * prefixes entries are "". */
typedef struct gh_operator_s {
	char id[24]; /* stable id used by numbers and the API: [a-z0-9_-]+ ("roshan") */
	char name[48];
	char mcc[4];                      /* E.212 mobile country code, 3 digits ("412") */
	char mnc[GH_OPERATOR_MAX_MNC][4]; /* E.212 network codes, 2-3 digits; at least one */
	/* canonical MSISDN prefixes ("+9379"); at least one */
	char prefixes[GH_OPERATOR_MAX_PREFIXES][GH_IDENT_BUFSZ];
	int64_t valid_from_ms; /* effective from (inclusive), ms since the epoch; 0 = always */
	int64_t valid_to_ms;   /* effective until (exclusive); 0 = open-ended */
} gh_operator_t;

/* The compiled-in default table (the E.212 values of the spec, mirrored by
 * config/operators.csv); *n gets its length. Static storage. */
const gh_operator_t *gh_operators_default(size_t *n);

/* Check a table: well-formed fields, unique ids, valid_to after valid_from, and no prefix held
 * by two entries whose effective periods overlap (nested prefixes are fine: the longest one
 * wins). 0 or -EINVAL (err filled, message names the entry). */
int gh_operator_table_check(const gh_operator_t *ops, size_t n, gh_err_t *err);

/* The operator effective at now_ms with the longest prefix of canonical (an E.164 canonical
 * MSISDN), or NULL when none. On a tie (impossible in a checked table) the first entry wins.
 * Allocates nothing. */
const gh_operator_t *gh_operator_for_msisdn(const gh_operator_t *ops, size_t n,
                                            const char *canonical, int64_t now_ms);

/* The entry with this id, or NULL. */
const gh_operator_t *gh_operator_find(const gh_operator_t *ops, size_t n, const char *id);

/* Parse operator CSV (config/operators.csv) from text[0..len) into ops[0..cap), *n entries,
 * then gh_operator_table_check it. Format: the header line
 *   id,name,mcc,mnc,msisdn_prefixes,valid_from,valid_to
 * then one operator per line; mnc and msisdn_prefixes are space-separated lists; valid_from
 * and valid_to are RFC 3339 or empty (always / open-ended). No quoting: a cell may not contain
 * ',' or '"'. Blank lines and lines starting with '#' are ignored; "\r\n" is accepted.
 * 0 or -EINVAL (err filled, message names the line). */
int gh_operators_parse_csv(const char *text, size_t len, gh_operator_t *ops, size_t cap, size_t *n,
                           gh_err_t *err);

#endif
