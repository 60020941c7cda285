/* e164: identifier normalisation (MSISDN, short code, alpha) and the operator table.
 * Everything here works on caller-provided fixed buffers: no allocation, no locale (ctype is
 * avoided on purpose: identifiers are ASCII whatever the process locale says). */
#include "e164.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"

const gh_ident_rules_t gh_ident_rules_default = {
    .country_code = "93",
    .intl_prefix = "00",
    .trunk_prefix = "0",
    .national_len = 9,
    .mobile_prefixes = {"7"},
    .short_min = 3,
    .short_max = 6,
    .alpha_max = GH_IDENT_ALPHA_MAX,
};

static const char *const kind_names[GH_IDENT__COUNT] = {
    [GH_IDENT_MSISDN] = "MSISDN",
    [GH_IDENT_SHORT_CODE] = "SHORT_CODE",
    [GH_IDENT_ALPHA] = "ALPHA",
};

const char *gh_ident_kind_name(gh_ident_kind_t kind)
{
	return kind >= 0 && kind < GH_IDENT__COUNT ? kind_names[kind] : "UNKNOWN";
}

int gh_ident_kind_parse(const char *name, gh_ident_kind_t *kind)
{
	for (int k = 0; name && k < GH_IDENT__COUNT; k++) {
		if (!strcmp(name, kind_names[k])) {
			*kind = (gh_ident_kind_t)k;
			return 0;
		}
	}
	return -EINVAL;
}

static inline int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static inline int is_upper(unsigned char c) { return c >= 'A' && c <= 'Z'; }
static inline int is_lower(unsigned char c) { return c >= 'a' && c <= 'z'; }

/* digits-only, NUL-terminated within cap, length in [min, max] */
static int digits_ok(const char *s, size_t cap, size_t min, size_t max)
{
	size_t n = strnlen(s, cap);
	if (n == cap || n < min || n > max)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!is_digit((unsigned char)s[i]))
			return 0;
	return 1;
}

int gh_ident_rules_check(const gh_ident_rules_t *r, gh_err_t *err)
{
	const gh_code_t E = GH_E_INVALID_ARGUMENT;
	if (!r)
		return gh_err_set(err, E, NULL, "no identifier rules");
	if (!digits_ok(r->country_code, sizeof(r->country_code), 1, 3) || r->country_code[0] == '0')
		return gh_err_set(err, E, NULL,
		                  "country_code must be 1-3 digits, not starting with 0");
	if (!digits_ok(r->intl_prefix, sizeof(r->intl_prefix), 0, 3))
		return gh_err_set(err, E, NULL, "intl_prefix must be 0-3 digits");
	if (!digits_ok(r->trunk_prefix, sizeof(r->trunk_prefix), 0, 2))
		return gh_err_set(err, E, NULL, "trunk_prefix must be 0-2 digits");
	if (r->trunk_prefix[0] && !strcmp(r->trunk_prefix, r->intl_prefix))
		return gh_err_set(err, E, NULL, "trunk_prefix and intl_prefix must differ");
	size_t cc = strlen(r->country_code);
	if (r->national_len < 4 || cc + r->national_len > 15)
		return gh_err_set(err, E, NULL,
		                  "national_len must be 4 or more and, with the country code, at "
		                  "most 15 digits (E.164)");
	if (!r->mobile_prefixes[0][0])
		return gh_err_set(err, E, NULL, "at least one mobile prefix is needed");
	int ended = 0;
	for (int i = 0; i < GH_IDENT_MAX_MOBILE_PREFIXES; i++) {
		const char *p = r->mobile_prefixes[i];
		if (!p[0]) {
			ended = 1;
			continue;
		}
		if (ended || !digits_ok(p, sizeof(r->mobile_prefixes[i]), 1, r->national_len))
			return gh_err_set(
			    err, E, NULL,
			    "mobile prefix %d must be 1-%u digits, listed without gaps", i,
			    r->national_len);
	}
	if (r->short_min < 1 || r->short_min > r->short_max ||
	    r->short_max > GH_IDENT_SHORT_DIGITS_MAX || r->short_max >= r->national_len)
		return gh_err_set(err, E, NULL,
		                  "short-code digits must satisfy 1 <= min <= max <= %d and max < "
		                  "national_len",
		                  GH_IDENT_SHORT_DIGITS_MAX);
	if (r->alpha_max < 1 || r->alpha_max > GH_IDENT_ALPHA_MAX)
		return gh_err_set(err, E, NULL, "alpha_max must be 1-%d", GH_IDENT_ALPHA_MAX);
	return 0;
}

/* ---- keys ----------------------------------------------------------------------------- */

#define KEY_KIND_SHIFT  62
#define KEY_VALUE_MASK  ((UINT64_C(1) << 56) - 1)
#define KEY_SHORT_SHIFT 56
#define ALPHA_BASE      38

static inline uint64_t key_kind(gh_ident_kind_t k) { return (uint64_t)(k + 1) << KEY_KIND_SHIFT; }

/* space -> 1, 0-9 -> 2..11, A-Z -> 12..37; 0 marks the end */
static inline unsigned alpha_sym(unsigned char c)
{
	return c == ' ' ? 1 : is_digit(c) ? 2u + (c - '0') : 12u + (c - 'A');
}

static const char alpha_chars[ALPHA_BASE] = "\0 0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

int gh_e164_pack(const char *canonical, uint64_t *key)
{
	if (!canonical || canonical[0] != '+' || canonical[1] < '1' || canonical[1] > '9')
		return -EINVAL;
	uint64_t v = 0;
	size_t n = 0;
	for (const char *p = canonical + 1; *p; p++) {
		if (!is_digit((unsigned char)*p) || ++n > 15)
			return -EINVAL;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	*key = key_kind(GH_IDENT_MSISDN) | v;
	return 0;
}

int gh_ident_key_format(uint64_t key, gh_ident_kind_t *kind, char out[GH_IDENT_BUFSZ])
{
	unsigned k = (unsigned)(key >> KEY_KIND_SHIFT);
	uint64_t v = key & ((UINT64_C(1) << KEY_KIND_SHIFT) - 1);
	char tmp[GH_IDENT_BUFSZ];
	size_t n = 0;

	switch (k) {
	case GH_IDENT_MSISDN + 1:
		if (v == 0 || v >= UINT64_C(1000000000000000))
			return -EINVAL;
		for (; v; v /= 10)
			tmp[n++] = (char)('0' + v % 10);
		out[0] = '+';
		for (size_t i = 0; i < n; i++)
			out[1 + i] = tmp[n - 1 - i];
		out[1 + n] = '\0';
		break;
	case GH_IDENT_SHORT_CODE + 1: {
		unsigned len = (unsigned)(v >> KEY_SHORT_SHIFT);
		v &= KEY_VALUE_MASK;
		if (len < 1 || len > GH_IDENT_SHORT_DIGITS_MAX)
			return -EINVAL;
		for (unsigned i = len; i-- > 0; v /= 10)
			out[i] = (char)('0' + v % 10);
		if (v)
			return -EINVAL;
		out[len] = '\0';
		break;
	}
	case GH_IDENT_ALPHA + 1:
		for (int i = GH_IDENT_ALPHA_MAX - 1; i >= 0; i--, v /= ALPHA_BASE)
			tmp[i] = alpha_chars[v % ALPHA_BASE];
		if (v)
			return -EINVAL;
		for (n = 0; n < GH_IDENT_ALPHA_MAX && tmp[n]; n++)
			;
		/* a symbol after the end marker, or an empty id, is not a key we made */
		for (size_t i = n; i < GH_IDENT_ALPHA_MAX; i++)
			if (tmp[i])
				return -EINVAL;
		if (n == 0)
			return -EINVAL;
		memcpy(out, tmp, n);
		out[n] = '\0';
		break;
	default: return -EINVAL;
	}
	*kind = (gh_ident_kind_t)(k - 1);
	return 0;
}

/* ---- normalisers ---------------------------------------------------------------------- */

#define INVALID(err, ...) gh_err_set((err), GH_E_INVALID_ARGUMENT, NULL, __VA_ARGS__)

static int bad_char(gh_err_t *err, const char *what, const char *in, size_t i)
{
	return INVALID(err, "character 0x%02x at offset %zu is not allowed in %s",
	               (unsigned char)in[i], i, what);
}

static int norm_short(const gh_ident_rules_t *r, const char *in, size_t len, gh_ident_t *out,
                      gh_err_t *err)
{
	uint64_t v = 0;
	for (size_t i = 0; i < len; i++) {
		if (!is_digit((unsigned char)in[i]))
			return bad_char(err, "a short code (digits only)", in, i);
		v = v * 10 + (uint64_t)(in[i] - '0');
	}
	if (len < r->short_min || len > r->short_max)
		return INVALID(err, "a short code has %u to %u digits, not %zu", r->short_min,
		               r->short_max, len);
	memcpy(out->canonical, in, len);
	out->canonical[len] = '\0';
	memcpy(out->display, out->canonical, len + 1);
	out->kind = GH_IDENT_SHORT_CODE;
	out->key = key_kind(GH_IDENT_SHORT_CODE) | (uint64_t)len << KEY_SHORT_SHIFT | v;
	return 0;
}

static int norm_alpha(const gh_ident_rules_t *r, const char *in, size_t len, gh_ident_t *out,
                      gh_err_t *err)
{
	if (len == 0)
		return INVALID(err, "an alphanumeric sender id needs 1 to %u characters",
		               r->alpha_max);
	if (len > r->alpha_max)
		return INVALID(err, "an alphanumeric sender id has at most %u characters, not %zu",
		               r->alpha_max, len);
	int letters = 0;
	uint64_t v = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i], u = c;
		if (is_lower(c))
			u = (unsigned char)(c - 'a' + 'A');
		if (is_upper(u))
			letters = 1;
		else if (c == ' ') {
			if (i == 0 || i == len - 1)
				return INVALID(err, "an alphanumeric sender id may not start or "
				                    "end with a space");
			if (in[i - 1] == ' ')
				return INVALID(err, "an alphanumeric sender id may not contain "
				                    "consecutive spaces");
		} else if (!is_digit(c))
			return bad_char(err, "an alphanumeric sender id ([A-Za-z0-9 ])", in, i);
		out->display[i] = (char)c;
		out->canonical[i] = (char)u;
		v = v * ALPHA_BASE + alpha_sym(u);
	}
	if (!letters)
		return INVALID(err, "an alphanumeric sender id needs at least one letter");
	for (size_t i = len; i < GH_IDENT_ALPHA_MAX; i++)
		v *= ALPHA_BASE;
	out->display[len] = out->canonical[len] = '\0';
	out->kind = GH_IDENT_ALPHA;
	out->key = key_kind(GH_IDENT_ALPHA) | v;
	return 0;
}

static int has_prefix(const char *s, size_t n, const char *p)
{
	size_t pn = strlen(p);
	return pn <= n && !memcmp(s, p, pn);
}

static int not_mobile(const gh_ident_rules_t *r, gh_err_t *err)
{
	char list[64];
	size_t o = 0;
	for (int i = 0; i < GH_IDENT_MAX_MOBILE_PREFIXES && r->mobile_prefixes[i][0]; i++) {
		int w = snprintf(list + o, sizeof(list) - o, "%s%s", i ? ", " : "",
		                 r->mobile_prefixes[i]);
		if (w < 0 || (size_t)w >= sizeof(list) - o)
			break;
		o += (size_t)w;
	}
	list[o] = '\0';
	return INVALID(err, "not a mobile number: the national number must start with %s", list);
}

/* Digits of the input and where a parenthesised group sat among them. */
enum { MAX_DIGITS = 20 };

static int norm_msisdn(const gh_ident_rules_t *r, const char *in, size_t len, gh_ident_t *out,
                       gh_err_t *err)
{
	char d[MAX_DIGITS];
	size_t nd = 0, i = 0, end = len;
	size_t paren_at = 0, paren_len = 0;
	int plus = 0, in_paren = 0, parens = 0;
	unsigned char last = 0; /* last non-space character seen */

	while (i < end && in[i] == ' ')
		i++;
	while (end > i && in[end - 1] == ' ')
		end--;
	if (i == end)
		return INVALID(err, "an MSISDN is needed, the identifier is empty");
	if (in[i] == '+') {
		plus = 1;
		last = '+';
		if (++i == end || !is_digit((unsigned char)in[i]))
			return INVALID(err, "'+' must be followed directly by the country code");
	}
	for (; i < end; i++) {
		unsigned char c = (unsigned char)in[i];
		if (is_digit(c)) {
			if (nd == MAX_DIGITS)
				return INVALID(err, "too many digits for an MSISDN");
			d[nd++] = (char)c;
			last = c;
			continue;
		}
		switch (c) {
		case ' ': continue;
		case '-':
		case '.':
			if (!is_digit(last) && last != ')')
				return INVALID(
				    err, "separator '%c' at offset %zu must follow a digit", c, i);
			break;
		case '(':
			if (parens)
				return INVALID(err, "at most one pair of parentheses is allowed");
			parens = in_paren = 1;
			paren_at = nd;
			break;
		case ')':
			if (!in_paren)
				return INVALID(err, "unbalanced ')' at offset %zu", i);
			in_paren = 0;
			paren_len = nd - paren_at;
			if (!paren_len)
				return INVALID(err, "empty parentheses at offset %zu", i);
			break;
		case '+': return INVALID(err, "'+' is only allowed at the start (offset %zu)", i);
		default: return bad_char(err, "an MSISDN", in, i);
		}
		last = c;
	}
	if (in_paren)
		return INVALID(err, "unbalanced '('");
	if (last == '-' || last == '.')
		return INVALID(err, "an MSISDN may not end with a separator");

	const char *cc = r->country_code, *ip = r->intl_prefix, *tp = r->trunk_prefix;
	size_t cclen = strlen(cc), iplen = strlen(ip), tplen = strlen(tp);
	size_t pos;
	int intl;
	if (plus) {
		intl = 1, pos = 0;
	} else if (iplen && has_prefix(d, nd, ip)) {
		intl = 1, pos = iplen;
	} else if (tplen && has_prefix(d, nd, tp)) {
		intl = 0, pos = tplen;
	} else if (nd == cclen + r->national_len && has_prefix(d, nd, cc)) {
		intl = 1, pos = 0;
	} else {
		return INVALID(err,
		               "not an MSISDN: write it as +%s followed by the national number, or "
		               "with the prefix %s or %s",
		               cc, iplen ? ip : "+", tplen ? tp : cc);
	}
	if (intl) {
		if (!has_prefix(d + pos, nd - pos, cc))
			return INVALID(err, "the country code is not +%s", cc);
		pos += cclen;
		/* "+93 (0)70 ...": the trunk prefix in parentheses is dropped */
		if (tplen && parens && paren_at == pos && paren_len == tplen &&
		    !memcmp(d + pos, tp, tplen))
			pos += tplen;
	}
	size_t nlen = nd - pos;
	if (nlen != r->national_len)
		return INVALID(err, "the national number has %zu digits, it needs %u (too %s)",
		               nlen, r->national_len, nlen < r->national_len ? "short" : "long");
	int mobile = 0;
	for (int k = 0; k < GH_IDENT_MAX_MOBILE_PREFIXES && r->mobile_prefixes[k][0]; k++)
		if (has_prefix(d + pos, nlen, r->mobile_prefixes[k]))
			mobile = 1;
	if (!mobile)
		return not_mobile(r, err);

	char *o = out->canonical;
	uint64_t v = 0;
	*o++ = '+';
	memcpy(o, cc, cclen);
	memcpy(o + cclen, d + pos, nlen);
	o[cclen + nlen] = '\0';
	for (; *o; o++)
		v = v * 10 + (uint64_t)(*o - '0');
	memcpy(out->display, out->canonical, (size_t)(o - out->canonical) + 1);
	out->kind = GH_IDENT_MSISDN;
	out->key = key_kind(GH_IDENT_MSISDN) | v;
	return 0;
}

/* The canonical form machines send on every message, "+<cc><national number>" of a mobile
 * range: taken in one pass, without the general parser (ValidateLease's hot path). false for
 * anything else, which norm_msisdn then accepts or explains. */
static bool msisdn_canonical(const gh_ident_rules_t *r, const char *in, size_t len, gh_ident_t *out)
{
	size_t cclen = strlen(r->country_code);
	if (in[0] != '+' || len != 1 + cclen + r->national_len || len >= GH_IDENT_BUFSZ ||
	    memcmp(in + 1, r->country_code, cclen) != 0)
		return false;
	uint64_t v = 0;
	for (size_t i = 1; i < len; i++) {
		unsigned d = (unsigned)(unsigned char)in[i] - '0';
		if (d > 9)
			return false;
		v = v * 10 + d;
	}
	const char *nat = in + 1 + cclen;
	bool mobile = false;
	for (int k = 0; k < GH_IDENT_MAX_MOBILE_PREFIXES && r->mobile_prefixes[k][0] && !mobile;
	     k++)
		mobile = has_prefix(nat, r->national_len, r->mobile_prefixes[k]);
	if (!mobile)
		return false;
	memcpy(out->canonical, in, len);
	out->canonical[len] = '\0';
	memcpy(out->display, out->canonical, len + 1);
	out->kind = GH_IDENT_MSISDN;
	out->key = key_kind(GH_IDENT_MSISDN) | v;
	return true;
}

int gh_ident_normalize(const gh_ident_rules_t *rules, gh_ident_kind_t kind, const char *in,
                       size_t len, gh_ident_t *out, gh_err_t *err)
{
	const gh_ident_rules_t *r = rules ? rules : &gh_ident_rules_default;
	if (!in || len == 0)
		return INVALID(err, "the identifier is empty");
	/* AUTO reads a leading '+' as an MSISDN too */
	if ((kind == GH_IDENT_AUTO || kind == GH_IDENT_MSISDN) && msisdn_canonical(r, in, len, out))
		return 0;
	if (len > GH_IDENT_INPUT_MAX)
		return INVALID(err, "the identifier is longer than %d bytes", GH_IDENT_INPUT_MAX);
	if (kind == GH_IDENT_AUTO) {
		int letter = 0, digits = 1;
		for (size_t i = 0; i < len && !letter; i++) {
			unsigned char c = (unsigned char)in[i];
			letter = is_upper(c) || is_lower(c);
			digits &= is_digit(c);
		}
		kind = letter                          ? GH_IDENT_ALPHA
		       : digits && len <= r->short_max ? GH_IDENT_SHORT_CODE
		                                       : GH_IDENT_MSISDN;
	}
	switch (kind) {
	case GH_IDENT_MSISDN: return norm_msisdn(r, in, len, out, err);
	case GH_IDENT_SHORT_CODE: return norm_short(r, in, len, out, err);
	case GH_IDENT_ALPHA: return norm_alpha(r, in, len, out, err);
	default: return INVALID(err, "unknown identifier kind %d", (int)kind);
	}
}

int gh_e164_normalize(const char *in, char out[GH_IDENT_BUFSZ], gh_err_t *err)
{
	gh_ident_t id;
	if (!in)
		return INVALID(err, "the identifier is empty");
	int rc = gh_ident_normalize(NULL, GH_IDENT_MSISDN, in, strnlen(in, GH_IDENT_INPUT_MAX + 1),
	                            &id, err);
	if (rc == 0)
		memcpy(out, id.canonical, sizeof(id.canonical));
	return rc;
}

/* ---- operators ------------------------------------------------------------------------ */

/* E.212 values as the spec orders ("Ship the E.212 values as the default data"). The seed
 * (001, MoU table) lists other MNCs: Roshan 412/40, Etisalat-AF 412/50, MTN-AF 412/01+412/20,
 * AWCC 412/03, Salaam 412/88; only Etisalat agrees. The public E.212 assignments below win;
 * the table is editable through the admin API if an MoU says otherwise. Prefixes are the
 * commonly published mobile ranges (07X). MTN Afghanistan trades as ATOMA since 2023; the id
 * stays "mtn" so the seed's references keep meaning the same network. */
static const gh_operator_t default_operators[] = {
    {.id = "awcc",
     .name = "Afghan Wireless (AWCC)",
     .mcc = "412",
     .mnc = {"01"},
     .prefixes = {"+9370", "+9371"}},
    {.id = "roshan", .name = "Roshan", .mcc = "412", .mnc = {"20"}, .prefixes = {"+9379", "+9372"}},
    {.id = "mtn",
     .name = "ATOMA (formerly MTN Afghanistan)",
     .mcc = "412",
     .mnc = {"40"},
     .prefixes = {"+9377", "+9376"}},
    {.id = "etisalat",
     .name = "Etisalat Afghanistan",
     .mcc = "412",
     .mnc = {"50"},
     .prefixes = {"+9378", "+9373"}},
    {.id = "salaam",
     .name = "Salaam (Afghan Telecom)",
     .mcc = "412",
     .mnc = {"80", "88"},
     .prefixes = {"+9374"}},
};

const gh_operator_t *gh_operators_default(size_t *n)
{
	*n = sizeof(default_operators) / sizeof(default_operators[0]);
	return default_operators;
}

static inline int op_effective(const gh_operator_t *op, int64_t now_ms)
{
	return now_ms >= op->valid_from_ms && (op->valid_to_ms == 0 || now_ms < op->valid_to_ms);
}

static int periods_overlap(const gh_operator_t *a, const gh_operator_t *b)
{
	int64_t a_to = a->valid_to_ms ? a->valid_to_ms : INT64_MAX;
	int64_t b_to = b->valid_to_ms ? b->valid_to_ms : INT64_MAX;
	return a->valid_from_ms < b_to && b->valid_from_ms < a_to;
}

static int id_ok(const char *s, size_t cap)
{
	size_t n = strnlen(s, cap);
	if (n == 0 || n == cap)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!is_lower(c) && !is_digit(c) && c != '_' && c != '-')
			return 0;
	}
	return 1;
}

static int prefix_ok(const char *p)
{
	uint64_t key;
	return strnlen(p, GH_IDENT_BUFSZ) < GH_IDENT_BUFSZ && gh_e164_pack(p, &key) == 0;
}

int gh_operator_table_check(const gh_operator_t *ops, size_t n, gh_err_t *err)
{
	const gh_code_t E = GH_E_INVALID_ARGUMENT;
	for (size_t i = 0; i < n; i++) {
		const gh_operator_t *op = &ops[i];
		if (!id_ok(op->id, sizeof(op->id)))
			return gh_err_set(err, E, NULL, "operator %zu: id must be [a-z0-9_-]+", i);
		size_t nl = strnlen(op->name, sizeof(op->name));
		if (nl == 0 || nl == sizeof(op->name))
			return gh_err_set(err, E, NULL, "operator %s: name must be 1-%zu bytes",
			                  op->id, sizeof(op->name) - 1);
		if (!digits_ok(op->mcc, sizeof(op->mcc), 3, 3))
			return gh_err_set(err, E, NULL, "operator %s: mcc must be 3 digits",
			                  op->id);
		for (int m = 0; m < GH_OPERATOR_MAX_MNC; m++) {
			const char *mnc = op->mnc[m];
			if (m == 0 ? !digits_ok(mnc, sizeof(op->mnc[m]), 2, 3)
			           : mnc[0] && (!op->mnc[m - 1][0] ||
			                        !digits_ok(mnc, sizeof(op->mnc[m]), 2, 3)))
				return gh_err_set(err, E, NULL,
				                  "operator %s: mnc %d must be 2-3 digits (at "
				                  "least one, no gaps)",
				                  op->id, m);
		}
		for (int p = 0; p < GH_OPERATOR_MAX_PREFIXES; p++) {
			const char *pre = op->prefixes[p];
			if (p == 0 ? !prefix_ok(pre)
			           : pre[0] && (!op->prefixes[p - 1][0] || !prefix_ok(pre)))
				return gh_err_set(err, E, NULL,
				                  "operator %s: prefix %d must be '+' and 1-15 "
				                  "digits (at least one, no gaps)",
				                  op->id, p);
		}
		if (op->valid_from_ms < 0 || op->valid_to_ms < 0 ||
		    (op->valid_to_ms && op->valid_to_ms <= op->valid_from_ms))
			return gh_err_set(err, E, NULL,
			                  "operator %s: valid_to must be after valid_from", op->id);
		for (size_t j = 0; j < i; j++) {
			const gh_operator_t *o2 = &ops[j];
			if (!strcmp(o2->id, op->id))
				return gh_err_set(err, E, NULL, "operator %s: duplicate id",
				                  op->id);
			if (!periods_overlap(op, o2))
				continue;
			for (int p = 0; p < GH_OPERATOR_MAX_PREFIXES && op->prefixes[p][0]; p++)
				for (int q = 0; q < GH_OPERATOR_MAX_PREFIXES && o2->prefixes[q][0];
				     q++)
					if (!strcmp(op->prefixes[p], o2->prefixes[q]))
						return gh_err_set(err, E, NULL,
						                  "operator %s: prefix %s is also "
						                  "held by %s in an "
						                  "overlapping period",
						                  op->id, op->prefixes[p], o2->id);
		}
		for (int p = 0; p < GH_OPERATOR_MAX_PREFIXES && op->prefixes[p][0]; p++)
			for (int q = 0; q < p; q++)
				if (!strcmp(op->prefixes[p], op->prefixes[q]))
					return gh_err_set(err, E, NULL,
					                  "operator %s: prefix %s listed twice",
					                  op->id, op->prefixes[p]);
	}
	return 0;
}

const gh_operator_t *gh_operator_for_msisdn(const gh_operator_t *ops, size_t n,
                                            const char *canonical, int64_t now_ms)
{
	const gh_operator_t *best = NULL;
	size_t best_len = 0;
	if (!canonical)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		const gh_operator_t *op = &ops[i];
		if (!op_effective(op, now_ms))
			continue;
		for (int p = 0; p < GH_OPERATOR_MAX_PREFIXES && op->prefixes[p][0]; p++) {
			const char *pre = op->prefixes[p];
			size_t k = 0;
			while (pre[k] && pre[k] == canonical[k])
				k++;
			if (!pre[k] && k > best_len) {
				best = op;
				best_len = k;
			}
		}
	}
	return best;
}

const gh_operator_t *gh_operator_find(const gh_operator_t *ops, size_t n, const char *id)
{
	for (size_t i = 0; id && i < n; i++)
		if (!strncmp(ops[i].id, id, sizeof(ops[i].id)) && strlen(id) < sizeof(ops[i].id))
			return &ops[i];
	return NULL;
}

/* ---- operator CSV --------------------------------------------------------------------- */

static const char csv_header[] = "id,name,mcc,mnc,msisdn_prefixes,valid_from,valid_to";
enum { CSV_COLS = 7 };

typedef struct {
	const char *s;
	size_t n;
} cell_t;

static int cell_copy(char *dst, size_t cap, cell_t c)
{
	if (c.n >= cap || memchr(c.s, '\0', c.n))
		return -1;
	memcpy(dst, c.s, c.n);
	dst[c.n] = '\0';
	return 0;
}

/* space-separated list into dst[0..max) of cap bytes each (row-major) */
static int cell_list(char *dst, int max, size_t cap, cell_t c)
{
	int k = 0;
	size_t i = 0;
	while (i < c.n) {
		while (i < c.n && c.s[i] == ' ')
			i++;
		size_t b = i;
		while (i < c.n && c.s[i] != ' ')
			i++;
		if (i == b)
			break;
		if (k == max || cell_copy(dst + (size_t)k * cap, cap, (cell_t){c.s + b, i - b}))
			return -1;
		k++;
	}
	return 0;
}

static int cell_time(int64_t *ms, cell_t c)
{
	char buf[40];
	*ms = 0;
	if (c.n == 0)
		return 0;
	if (cell_copy(buf, sizeof(buf), c) || gh_time_parse(buf, ms) || *ms < 0)
		return -1;
	return 0;
}

int gh_operators_parse_csv(const char *text, size_t len, gh_operator_t *ops, size_t cap, size_t *n,
                           gh_err_t *err)
{
	const gh_code_t E = GH_E_INVALID_ARGUMENT;
	size_t line = 0, count = 0, at = 0;
	int header = 0;
	*n = 0;
	while (at < len) {
		const char *l = text + at;
		const char *nl = memchr(l, '\n', len - at);
		size_t ln = nl ? (size_t)(nl - l) : len - at;
		at += ln + (nl ? 1 : 0);
		line++;
		if (ln && l[ln - 1] == '\r')
			ln--;
		if (ln == 0 || l[0] == '#')
			continue;
		if (memchr(l, '"', ln) || memchr(l, '\0', ln) || memchr(l, '\r', ln))
			return gh_err_set(err, E, NULL,
			                  "line %zu: quotes, NUL and stray CR are not supported",
			                  line);
		if (!header) {
			if (ln != sizeof(csv_header) - 1 || memcmp(l, csv_header, ln))
				return gh_err_set(err, E, NULL, "line %zu: header must be \"%s\"",
				                  line, csv_header);
			header = 1;
			continue;
		}
		cell_t c[CSV_COLS];
		int nc = 0;
		for (size_t b = 0, i = 0;; i++) {
			if (i == ln || l[i] == ',') {
				if (nc == CSV_COLS)
					return gh_err_set(err, E, NULL,
					                  "line %zu: more than %d columns", line,
					                  CSV_COLS);
				c[nc++] = (cell_t){l + b, i - b};
				b = i + 1;
				if (i == ln)
					break;
			}
		}
		if (nc != CSV_COLS)
			return gh_err_set(err, E, NULL, "line %zu: %d columns, expected %d", line,
			                  nc, CSV_COLS);
		if (count == cap)
			return gh_err_set(err, E, NULL, "line %zu: more than %zu operators", line,
			                  cap);
		gh_operator_t *op = &ops[count];
		memset(op, 0, sizeof(*op));
		const char *bad = NULL;
		if (cell_copy(op->id, sizeof(op->id), c[0]))
			bad = "id";
		else if (cell_copy(op->name, sizeof(op->name), c[1]))
			bad = "name";
		else if (cell_copy(op->mcc, sizeof(op->mcc), c[2]))
			bad = "mcc";
		else if (cell_list(&op->mnc[0][0], GH_OPERATOR_MAX_MNC, sizeof(op->mnc[0]), c[3]))
			bad = "mnc";
		else if (cell_list(&op->prefixes[0][0], GH_OPERATOR_MAX_PREFIXES,
		                   sizeof(op->prefixes[0]), c[4]))
			bad = "msisdn_prefixes";
		else if (cell_time(&op->valid_from_ms, c[5]))
			bad = "valid_from";
		else if (cell_time(&op->valid_to_ms, c[6]) || (c[6].n && !op->valid_to_ms))
			bad = "valid_to"; /* 0 would read as open-ended */
		if (bad)
			return gh_err_set(err, E, NULL, "line %zu: %s is too long or malformed",
			                  line, bad);
		count++;
	}
	if (!header)
		return gh_err_set(err, E, NULL, "no header line \"%s\"", csv_header);
	int rc = gh_operator_table_check(ops, count, err);
	if (rc == 0)
		*n = count;
	return rc;
}
