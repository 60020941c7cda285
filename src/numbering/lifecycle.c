/* lifecycle: the number state table (numbering spec, "Lifecycle") and its decision function. */
#include "lifecycle.h"

#include <errno.h>
#include <string.h>
#include <talloc.h>

#define DAY_S      (24 * 3600LL)
#define NAMES(arr) (sizeof(arr) / sizeof((arr)[0]))

static const char *const kind_names[] = {"MSISDN", "SHORT_CODE", "ALPHA"};
static const char *const state_names[] = {"AVAILABLE", "RESERVED",    "ASSIGNED",
                                          "SUSPENDED", "QUARANTINED", "RETIRED"};
/* As in the HTTP paths (":reserve"); expire and sweep are the jobs' names. */
static const char *const action_names[] = {"reserve", "assign",   "release", "expire",
                                           "suspend", "resume",   "recall",  "sweep",
                                           "reclaim", "override", "retire"};
static const char *const role_names[] = {"tenant", "holder",     "previous tenant",
                                         "admin",  "compliance", "system"};
static const char *const qreason_names[] = {"NONE", "RESERVATION_EXPIRED", "TENANT_RELEASE",
                                            "RECALL_ADMIN", "RECALL_ABUSE"};
static const char *const lease_names[] = {"NONE", "ACTIVE", "SUSPENDED", "ENDED"};
static const char *const pool_names[] = {"UNKNOWN", "ACTIVE", "SUSPENDED"};

_Static_assert(NAMES(kind_names) == NUM_KIND__COUNT, "kind names");
_Static_assert(NAMES(state_names) == NUM_ST__COUNT, "state names");
_Static_assert(NAMES(action_names) == NUM_ACT__COUNT, "action names");
_Static_assert(NAMES(role_names) == NUM_ROLE__COUNT, "role names");
_Static_assert(NAMES(qreason_names) == NUM_QR__COUNT, "reason names");
_Static_assert(NAMES(lease_names) == NUM_LEASE__COUNT, "lease names");
_Static_assert(NAMES(pool_names) == NUM_POOL__COUNT, "pool names");

static const char *name_of(const char *const *t, size_t n, int v, const char *dflt)
{
	return v >= 0 && (size_t)v < n ? t[v] : dflt;
}

static int parse_of(const char *const *t, size_t n, const char *name, int *out)
{
	if (!name)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(t[i], name) == 0) {
			*out = (int)i;
			return 0;
		}
	}
	return -EINVAL;
}

#define NAME_FN(fn, type, tab, dflt) \
	const char *fn(type v) { return name_of(tab, NAMES(tab), (int)v, dflt); }
#define PARSE_FN(fn, type, tab)                                  \
	int fn(const char *name, type *out)                      \
	{                                                        \
		int v, rc = parse_of(tab, NAMES(tab), name, &v); \
		if (rc == 0)                                     \
			*out = (type)v;                          \
		return rc;                                       \
	}

NAME_FN(num_kind_name, num_kind_t, kind_names, "UNKNOWN")
NAME_FN(num_state_name, num_state_t, state_names, "UNKNOWN")
NAME_FN(num_action_name, num_action_t, action_names, "unknown")
NAME_FN(num_role_name, num_role_t, role_names, "unknown")
NAME_FN(num_qreason_name, num_qreason_t, qreason_names, "UNKNOWN")
NAME_FN(num_lease_status_name, num_lease_status_t, lease_names, "UNKNOWN")
NAME_FN(num_pool_status_name, num_pool_status_t, pool_names, "UNKNOWN")
PARSE_FN(num_kind_parse, num_kind_t, kind_names)
PARSE_FN(num_state_parse, num_state_t, state_names)
PARSE_FN(num_action_parse, num_action_t, action_names)
PARSE_FN(num_qreason_parse, num_qreason_t, qreason_names)
PARSE_FN(num_lease_status_parse, num_lease_status_t, lease_names)
PARSE_FN(num_pool_status_parse, num_pool_status_t, pool_names)

const num_lifecycle_cfg_t num_lifecycle_cfg_default = {
    .cooloff_s =
        {
            [NUM_QR_RESERVATION_EXPIRED] = {0, 0, 0},
            [NUM_QR_TENANT_RELEASE] = {90 * DAY_S, 30 * DAY_S, 30 * DAY_S},
            [NUM_QR_RECALL_ADMIN] = {90 * DAY_S, 90 * DAY_S, 90 * DAY_S},
            [NUM_QR_RECALL_ABUSE] = {365 * DAY_S, 365 * DAY_S, 365 * DAY_S},
        },
    .reserve_ttl_default_s = 900,
    .reserve_ttl_max_s = 7 * DAY_S,
    .justification_min = 20,
};

int num_lifecycle_cfg_check(const num_lifecycle_cfg_t *cfg)
{
	const int64_t max = 3653 * DAY_S;
	if (!cfg)
		return -EINVAL;
	for (int q = 0; q < NUM_QR__COUNT; q++)
		for (int k = 0; k < NUM_KIND__COUNT; k++)
			if (cfg->cooloff_s[q][k] < 0 || cfg->cooloff_s[q][k] > max)
				return -EINVAL;
	if (cfg->reserve_ttl_max_s < 1 || cfg->reserve_ttl_max_s > max ||
	    cfg->reserve_ttl_default_s < 1 || cfg->reserve_ttl_default_s > cfg->reserve_ttl_max_s)
		return -EINVAL;
	return 0;
}

#define R(x)  NUM_ROLE_BIT(NUM_ROLE_##x)
#define QB(x) (1u << NUM_QR_##x)

/* RESERVED -> release / TTL expiry: the spec sends the number to AVAILABLE with a quarantine
 * record of reason RESERVATION_EXPIRED and a 0-day cool-off. We go straight to AVAILABLE and
 * write the record already closed (quarantine_until == quarantined_at), rather than passing
 * through QUARANTINED: a 0-day stay would in practice last until the next sweep (every 5 min),
 * a cool-off nobody asked for, during which ValidateLease would say QUARANTINE_ACTIVE and the
 * number could not be reserved; or it would need a second, immediate transition with its own
 * CAS, audit row and events for one logical step. The record is still written because the
 * history, the regulator export and the churn anomaly signal need it. Should legal configure a
 * positive cool-off for RESERVATION_EXPIRED, NUM_TF_QUARANTINE_IF_COOLOFF sends the number to
 * QUARANTINED instead, so the configured cool-off is always honoured.
 *
 * A lease that reaches ends_at without renewal ends the same way a release does (spec "Leases":
 * "then QUARANTINED TENANT_RELEASE"), but by the system and with no transition event of its own:
 * the spec lists none, and number.released.v1 would claim the tenant released it; the
 * number.quarantined.v1 of entering QUARANTINED carries the reason and the previous tenant.
 * Both expiries are guarded by the end time itself, so a stale timer or a job reading an old
 * row can never end a reservation or lease early.
 *
 * "any but ASSIGNED/SUSPENDED -> retire" leaves out RETIRED itself: retiring a retired number
 * would be a second audit row and event for no change, so it is INVALID_TRANSITION like any
 * other request on a terminal state. The spec lists no retirement event; the audit row and the
 * cache invalidation carry it. */
static const num_rule_t rules[] = {
    {NUM_ST_AVAILABLE, NUM_ACT_RESERVE, NUM_ST_RESERVED, R(TENANT) | R(ADMIN), NUM_GUARD_NONE,
     NUM_QR_NONE, 0, NUM_TF_RESERVATION_OPEN, "number.reserved.v1"},
    {NUM_ST_RESERVED, NUM_ACT_ASSIGN, NUM_ST_ASSIGNED, R(HOLDER) | R(ADMIN), NUM_GUARD_NONE,
     NUM_QR_NONE, 0, NUM_TF_RESERVATION_CLOSE | NUM_TF_LEASE_OPEN, "number.assigned.v1"},
    {NUM_ST_RESERVED, NUM_ACT_RELEASE, NUM_ST_AVAILABLE, R(HOLDER), NUM_GUARD_NONE,
     NUM_QR_RESERVATION_EXPIRED, 0,
     NUM_TF_RESERVATION_CLOSE | NUM_TF_QUARANTINE_OPEN | NUM_TF_QUARANTINE_IF_COOLOFF,
     "number.released.v1"},
    {NUM_ST_RESERVED, NUM_ACT_EXPIRE, NUM_ST_AVAILABLE, R(SYSTEM), NUM_GUARD_TERM_ELAPSED,
     NUM_QR_RESERVATION_EXPIRED, 0,
     NUM_TF_RESERVATION_CLOSE | NUM_TF_QUARANTINE_OPEN | NUM_TF_QUARANTINE_IF_COOLOFF,
     "number.reservation_expired.v1"},
    {NUM_ST_AVAILABLE, NUM_ACT_ASSIGN, NUM_ST_ASSIGNED, R(ADMIN) | R(TENANT),
     NUM_GUARD_POOL_DIRECT_ASSIGN, NUM_QR_NONE, 0, NUM_TF_LEASE_OPEN, "number.assigned.v1"},
    {NUM_ST_ASSIGNED, NUM_ACT_SUSPEND, NUM_ST_SUSPENDED, R(SYSTEM) | R(COMPLIANCE) | R(ADMIN),
     NUM_GUARD_NONE, NUM_QR_NONE, 0, NUM_TF_LEASE_SUSPEND, "number.suspended.v1"},
    {NUM_ST_SUSPENDED, NUM_ACT_RESUME, NUM_ST_ASSIGNED, R(SYSTEM) | R(COMPLIANCE) | R(ADMIN),
     NUM_GUARD_NONE, NUM_QR_NONE, 0, NUM_TF_LEASE_RESUME, "number.resumed.v1"},
    {NUM_ST_ASSIGNED, NUM_ACT_RELEASE, NUM_ST_QUARANTINED, R(HOLDER) | R(ADMIN), NUM_GUARD_NONE,
     NUM_QR_TENANT_RELEASE, 0, NUM_TF_LEASE_END | NUM_TF_QUARANTINE_OPEN, "number.released.v1"},
    {NUM_ST_SUSPENDED, NUM_ACT_RELEASE, NUM_ST_QUARANTINED, R(HOLDER) | R(ADMIN), NUM_GUARD_NONE,
     NUM_QR_TENANT_RELEASE, 0, NUM_TF_LEASE_END | NUM_TF_QUARANTINE_OPEN, "number.released.v1"},
    {NUM_ST_ASSIGNED, NUM_ACT_EXPIRE, NUM_ST_QUARANTINED, R(SYSTEM), NUM_GUARD_TERM_ELAPSED,
     NUM_QR_TENANT_RELEASE, 0, NUM_TF_LEASE_END | NUM_TF_QUARANTINE_OPEN, NULL},
    {NUM_ST_SUSPENDED, NUM_ACT_EXPIRE, NUM_ST_QUARANTINED, R(SYSTEM), NUM_GUARD_TERM_ELAPSED,
     NUM_QR_TENANT_RELEASE, 0, NUM_TF_LEASE_END | NUM_TF_QUARANTINE_OPEN, NULL},
    {NUM_ST_ASSIGNED, NUM_ACT_RECALL, NUM_ST_QUARANTINED, R(COMPLIANCE) | R(ADMIN) | R(SYSTEM),
     NUM_GUARD_NONE, NUM_QR_RECALL_ADMIN, QB(RECALL_ADMIN) | QB(RECALL_ABUSE),
     NUM_TF_LEASE_END | NUM_TF_QUARANTINE_OPEN, "number.recalled.v1"},
    {NUM_ST_SUSPENDED, NUM_ACT_RECALL, NUM_ST_QUARANTINED, R(COMPLIANCE) | R(ADMIN) | R(SYSTEM),
     NUM_GUARD_NONE, NUM_QR_RECALL_ADMIN, QB(RECALL_ADMIN) | QB(RECALL_ABUSE),
     NUM_TF_LEASE_END | NUM_TF_QUARANTINE_OPEN, "number.recalled.v1"},
    {NUM_ST_RESERVED, NUM_ACT_RECALL, NUM_ST_QUARANTINED, R(COMPLIANCE) | R(ADMIN) | R(SYSTEM),
     NUM_GUARD_NONE, NUM_QR_RECALL_ADMIN, QB(RECALL_ADMIN) | QB(RECALL_ABUSE),
     NUM_TF_RESERVATION_CLOSE | NUM_TF_QUARANTINE_OPEN, "number.recalled.v1"},
    {NUM_ST_QUARANTINED, NUM_ACT_SWEEP, NUM_ST_AVAILABLE, R(SYSTEM), NUM_GUARD_COOLOFF_ELAPSED,
     NUM_QR_NONE, 0, NUM_TF_QUARANTINE_CLOSE, "number.available.v1"},
    {NUM_ST_QUARANTINED, NUM_ACT_RECLAIM, NUM_ST_ASSIGNED, R(PREV_TENANT), NUM_GUARD_TENANT_RELEASE,
     NUM_QR_NONE, 0, NUM_TF_QUARANTINE_CLOSE | NUM_TF_LEASE_OPEN, "number.assigned.v1"},
    {NUM_ST_QUARANTINED, NUM_ACT_OVERRIDE, NUM_ST_AVAILABLE, R(ADMIN), NUM_GUARD_JUSTIFICATION,
     NUM_QR_NONE, 0, NUM_TF_QUARANTINE_CLOSE, "number.available.v1"},
    {NUM_ST_AVAILABLE, NUM_ACT_RETIRE, NUM_ST_RETIRED, R(ADMIN), NUM_GUARD_NONE, NUM_QR_NONE, 0, 0,
     NULL},
    {NUM_ST_RESERVED, NUM_ACT_RETIRE, NUM_ST_RETIRED, R(ADMIN), NUM_GUARD_NONE, NUM_QR_NONE, 0,
     NUM_TF_RESERVATION_CLOSE, NULL},
    {NUM_ST_QUARANTINED, NUM_ACT_RETIRE, NUM_ST_RETIRED, R(ADMIN), NUM_GUARD_NONE, NUM_QR_NONE, 0,
     NUM_TF_QUARANTINE_CLOSE, NULL},
};

/* 20 rows: a linear scan costs less than keeping a second structure in sync. */
static const num_rule_t *find_rule(num_state_t from, num_action_t action)
{
	for (size_t i = 0; i < NAMES(rules); i++)
		if (rules[i].from == from && rules[i].action == action)
			return &rules[i];
	return NULL;
}

const num_rule_t *num_lifecycle_rules(size_t *n_out)
{
	if (n_out)
		*n_out = NAMES(rules);
	return rules;
}

const char *num_state_enter_event(num_state_t s)
{
	return s == NUM_ST_QUARANTINED ? "number.quarantined.v1" : NULL;
}

static bool guard_ok(const num_rule_t *r, const num_step_t *in)
{
	switch (r->guard) {
	case NUM_GUARD_COOLOFF_ELAPSED: return in->now_ms >= in->quarantine_until_ms;
	case NUM_GUARD_TENANT_RELEASE: return in->open_reason == NUM_QR_TENANT_RELEASE;
	case NUM_GUARD_TERM_ELAPSED: return in->now_ms >= in->term_ends_ms;
	default: return true;
	}
}

int num_lifecycle_step(num_state_t from, num_action_t action, const num_step_t *in,
                       num_transition_t *out)
{
	if (!in || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->from = out->to = from;
	out->action = action;
	if ((unsigned)from >= NUM_ST__COUNT || (unsigned)action >= NUM_ACT__COUNT ||
	    (unsigned)in->role >= NUM_ROLE__COUNT || (unsigned)in->kind >= NUM_KIND__COUNT)
		return -EINVAL;
	const num_lifecycle_cfg_t *cfg = in->cfg ? in->cfg : &num_lifecycle_cfg_default;

	const num_rule_t *r = find_rule(from, action);
	if (!r)
		return -EBUSY;
	if (!(r->roles & NUM_ROLE_BIT(in->role)))
		return -EPERM;
	if (r->guard == NUM_GUARD_POOL_DIRECT_ASSIGN && in->role == NUM_ROLE_TENANT &&
	    !in->pool_direct_assign)
		return -EPERM;
	if (!guard_ok(r, in))
		return -EBUSY;
	if (r->guard == NUM_GUARD_JUSTIFICATION && in->justification_len < cfg->justification_min)
		return -EINVAL;

	num_qreason_t reason = r->reason;
	if (r->reasons_ok && in->recall_reason != NUM_QR_NONE) {
		if ((unsigned)in->recall_reason >= NUM_QR__COUNT ||
		    !(r->reasons_ok & (1u << in->recall_reason)))
			return -EINVAL;
		reason = in->recall_reason;
	}

	out->rule = r;
	out->to = r->to;
	out->flags = r->flags;
	out->events[0] = r->event;
	if (r->flags & NUM_TF_RESERVATION_OPEN) {
		int64_t ttl = in->ttl_s ? in->ttl_s : cfg->reserve_ttl_default_s;
		if (ttl < 1 || ttl > cfg->reserve_ttl_max_s)
			return -EINVAL;
		out->reservation_expires_at_ms = in->now_ms + ttl * 1000;
	}
	if (r->flags & NUM_TF_QUARANTINE_OPEN) {
		int64_t cool = cfg->cooloff_s[reason][in->kind];
		out->reason = reason;
		out->quarantine_until_ms = in->now_ms + cool * 1000;
		if ((r->flags & NUM_TF_QUARANTINE_IF_COOLOFF) && cool > 0)
			out->to = NUM_ST_QUARANTINED;
	}
	out->events[1] = num_state_enter_event(out->to);
	return 0;
}

/* ---- rendering ------------------------------------------------------------------------- */

static const char *guard_text(num_guard_t g)
{
	switch (g) {
	case NUM_GUARD_POOL_DIRECT_ASSIGN:
		return "tenant only when the pool allows direct assignment";
	case NUM_GUARD_COOLOFF_ELAPSED: return "cool-off elapsed";
	case NUM_GUARD_TENANT_RELEASE: return "quarantine reason is TENANT_RELEASE";
	case NUM_GUARD_JUSTIFICATION: return "written justification";
	case NUM_GUARD_TERM_ELAPSED: return "reservation TTL / lease term elapsed";
	default: return "";
	}
}

static const char *const flag_text[] = {
    "reservation opens", "reservation closes", "lease opens",
    "lease suspended",   "lease resumed",      "lease ends",
    "quarantine record", "quarantine closes",  NULL,
};

static char *roles_text(void *ctx, uint32_t roles)
{
	char *s = talloc_strdup(ctx, "");
	for (int i = 0; s && i < NUM_ROLE__COUNT; i++)
		if (roles & NUM_ROLE_BIT(i))
			s = talloc_asprintf_append(s, "%s%s", *s ? ", " : "", role_names[i]);
	return s;
}

static char *flags_text(void *ctx, uint32_t flags)
{
	char *s = talloc_strdup(ctx, "");
	for (int i = 0; s && flag_text[i]; i++)
		if (flags & (1u << i))
			s = talloc_asprintf_append(s, "%s%s", *s ? ", " : "", flag_text[i]);
	return s;
}

static char *events_text(void *ctx, const num_rule_t *r)
{
	const char *enter = num_state_enter_event(r->to);
	return talloc_asprintf(ctx, "%s%s%s%s%s%s%s", r->event ? "`" : "", r->event ? r->event : "",
	                       r->event ? "`" : "", r->event && enter ? ", " : "", enter ? "`" : "",
	                       enter ? enter : "", enter ? "`" : "");
}

static char *days(void *ctx, int64_t s)
{
	if (s % DAY_S == 0)
		return talloc_asprintf(ctx, "%lld d", (long long)(s / DAY_S));
	return talloc_asprintf(ctx, "%lld s", (long long)s);
}

char *num_lifecycle_markdown(void *ctx, const num_lifecycle_cfg_t *cfg)
{
	if (!cfg)
		cfg = &num_lifecycle_cfg_default;
	void *tmp = talloc_new(NULL);
	char *s =
	    talloc_strdup(tmp, "# Number lifecycle\n\n"
	                       "Generated from `src/numbering/lifecycle.c` (the state table); "
	                       "do not edit by hand.\n"
	                       "Any pair not listed is 409 `INVALID_TRANSITION`. Roles: "
	                       "holder = the tenant holding the reservation or lease; "
	                       "previous tenant = `previous_tenant_id` of the open "
	                       "quarantine record; tenant = any other tenant; system = jobs "
	                       "and event consumers (expiry, sweep, billing, bulk recall).\n\n"
	                       "| from | action | to | who | guard | quarantine reason | "
	                       "effects | event |\n"
	                       "| --- | --- | --- | --- | --- | --- | --- | --- |\n");
	for (size_t i = 0; s && i < NAMES(rules); i++) {
		const num_rule_t *r = &rules[i];
		char *to = talloc_strdup(tmp, state_names[r->to]);
		if (r->flags & NUM_TF_QUARANTINE_IF_COOLOFF)
			to = talloc_asprintf_append(to, " (QUARANTINED if cool-off > 0)");
		char *reason = talloc_strdup(tmp, r->reason ? qreason_names[r->reason] : "");
		for (int q = 0; reason && q < NUM_QR__COUNT; q++)
			if ((r->reasons_ok & (1u << q)) && q != (int)r->reason)
				reason = talloc_asprintf_append(reason, " or %s", qreason_names[q]);
		s = talloc_asprintf_append(s, "| %s | %s | %s | %s | %s | %s | %s | %s |\n",
		                           state_names[r->from], action_names[r->action], to,
		                           roles_text(tmp, r->roles), guard_text(r->guard), reason,
		                           flags_text(tmp, r->flags), events_text(tmp, r));
	}
	s = talloc_asprintf_append(s, "\n## State x action\n\n| state |");
	for (int a = 0; s && a < NUM_ACT__COUNT; a++)
		s = talloc_asprintf_append(s, " %s |", action_names[a]);
	s = talloc_asprintf_append(s, "\n| --- |");
	for (int a = 0; s && a < NUM_ACT__COUNT; a++)
		s = talloc_asprintf_append(s, " --- |");
	for (int st = 0; s && st < NUM_ST__COUNT; st++) {
		s = talloc_asprintf_append(s, "\n| %s |", state_names[st]);
		for (int a = 0; s && a < NUM_ACT__COUNT; a++) {
			const num_rule_t *r = find_rule(st, a);
			s = talloc_asprintf_append(s, " %s |", r ? state_names[r->to] : "-");
		}
	}
	s = talloc_asprintf_append(s, "\n\n## Quarantine cool-off\n\n| reason |");
	for (int k = 0; s && k < NUM_KIND__COUNT; k++)
		s = talloc_asprintf_append(s, " %s |", kind_names[k]);
	s = talloc_asprintf_append(s, "\n| --- | --- | --- | --- |\n");
	for (int q = 1; s && q < NUM_QR__COUNT; q++) {
		s = talloc_asprintf_append(s, "| %s |", qreason_names[q]);
		for (int k = 0; s && k < NUM_KIND__COUNT; k++)
			s = talloc_asprintf_append(s, " %s |", days(tmp, cfg->cooloff_s[q][k]));
		s = talloc_asprintf_append(s, "\n");
	}
	s = talloc_asprintf_append(s,
	                           "\nReservation TTL: default %s, at most %s. Override "
	                           "justification: at least %u bytes.\n",
	                           days(tmp, cfg->reserve_ttl_default_s),
	                           days(tmp, cfg->reserve_ttl_max_s), cfg->justification_min);
	char *res = s ? talloc_strdup(ctx, s) : NULL;
	talloc_free(tmp);
	return res;
}
