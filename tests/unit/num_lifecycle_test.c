/* num_lifecycle: the state table against the spec's Lifecycle table, transcribed here
 * independently: every valid transition with every role, every invalid (state, action) pair,
 * the guards, reasons, cool-offs, TTLs, and the generated docs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>

#include "lifecycle.h"
#include "testutil.h"

#define R(x)   NUM_ROLE_BIT(NUM_ROLE_##x)
#define NOW    1700000000000LL
#define DAY_MS (86400LL * 1000)

typedef struct {
	num_state_t from;
	num_action_t action;
	num_state_t to; /* with the default config */
	uint32_t roles;
	num_qreason_t reason;
	const char *event;
} expect_t;

/* numbering.md, "Lifecycle", one line per (from, action). */
static const expect_t spec[] = {
    {NUM_ST_AVAILABLE, NUM_ACT_RESERVE, NUM_ST_RESERVED, R(TENANT) | R(ADMIN), NUM_QR_NONE,
     "number.reserved.v1"},
    {NUM_ST_RESERVED, NUM_ACT_ASSIGN, NUM_ST_ASSIGNED, R(HOLDER) | R(ADMIN), NUM_QR_NONE,
     "number.assigned.v1"},
    {NUM_ST_RESERVED, NUM_ACT_RELEASE, NUM_ST_AVAILABLE, R(HOLDER), NUM_QR_RESERVATION_EXPIRED,
     "number.released.v1"},
    {NUM_ST_RESERVED, NUM_ACT_EXPIRE, NUM_ST_AVAILABLE, R(SYSTEM), NUM_QR_RESERVATION_EXPIRED,
     "number.reservation_expired.v1"},
    {NUM_ST_AVAILABLE, NUM_ACT_ASSIGN, NUM_ST_ASSIGNED, R(ADMIN) | R(TENANT), NUM_QR_NONE,
     "number.assigned.v1"},
    {NUM_ST_ASSIGNED, NUM_ACT_SUSPEND, NUM_ST_SUSPENDED, R(SYSTEM) | R(COMPLIANCE) | R(ADMIN),
     NUM_QR_NONE, "number.suspended.v1"},
    {NUM_ST_SUSPENDED, NUM_ACT_RESUME, NUM_ST_ASSIGNED, R(SYSTEM) | R(COMPLIANCE) | R(ADMIN),
     NUM_QR_NONE, "number.resumed.v1"},
    {NUM_ST_ASSIGNED, NUM_ACT_RELEASE, NUM_ST_QUARANTINED, R(HOLDER) | R(ADMIN),
     NUM_QR_TENANT_RELEASE, "number.released.v1"},
    {NUM_ST_SUSPENDED, NUM_ACT_RELEASE, NUM_ST_QUARANTINED, R(HOLDER) | R(ADMIN),
     NUM_QR_TENANT_RELEASE, "number.released.v1"},
    {NUM_ST_ASSIGNED, NUM_ACT_EXPIRE, NUM_ST_QUARANTINED, R(SYSTEM), NUM_QR_TENANT_RELEASE, NULL},
    {NUM_ST_SUSPENDED, NUM_ACT_EXPIRE, NUM_ST_QUARANTINED, R(SYSTEM), NUM_QR_TENANT_RELEASE, NULL},
    {NUM_ST_ASSIGNED, NUM_ACT_RECALL, NUM_ST_QUARANTINED, R(COMPLIANCE) | R(ADMIN) | R(SYSTEM),
     NUM_QR_RECALL_ADMIN, "number.recalled.v1"},
    {NUM_ST_SUSPENDED, NUM_ACT_RECALL, NUM_ST_QUARANTINED, R(COMPLIANCE) | R(ADMIN) | R(SYSTEM),
     NUM_QR_RECALL_ADMIN, "number.recalled.v1"},
    {NUM_ST_RESERVED, NUM_ACT_RECALL, NUM_ST_QUARANTINED, R(COMPLIANCE) | R(ADMIN) | R(SYSTEM),
     NUM_QR_RECALL_ADMIN, "number.recalled.v1"},
    {NUM_ST_QUARANTINED, NUM_ACT_SWEEP, NUM_ST_AVAILABLE, R(SYSTEM), NUM_QR_NONE,
     "number.available.v1"},
    {NUM_ST_QUARANTINED, NUM_ACT_RECLAIM, NUM_ST_ASSIGNED, R(PREV_TENANT), NUM_QR_NONE,
     "number.assigned.v1"},
    {NUM_ST_QUARANTINED, NUM_ACT_OVERRIDE, NUM_ST_AVAILABLE, R(ADMIN), NUM_QR_NONE,
     "number.available.v1"},
    {NUM_ST_AVAILABLE, NUM_ACT_RETIRE, NUM_ST_RETIRED, R(ADMIN), NUM_QR_NONE, NULL},
    {NUM_ST_RESERVED, NUM_ACT_RETIRE, NUM_ST_RETIRED, R(ADMIN), NUM_QR_NONE, NULL},
    {NUM_ST_QUARANTINED, NUM_ACT_RETIRE, NUM_ST_RETIRED, R(ADMIN), NUM_QR_NONE, NULL},
};
#define N_SPEC (sizeof(spec) / sizeof(spec[0]))

static const expect_t *spec_find(num_state_t s, num_action_t a)
{
	for (size_t i = 0; i < N_SPEC; i++)
		if (spec[i].from == s && spec[i].action == a)
			return &spec[i];
	return NULL;
}

/* Input that satisfies every guard, so only (from, action, role) decide. */
static num_step_t all_guards_ok(num_role_t role)
{
	return (num_step_t){.role = role,
	                    .kind = NUM_KIND_MSISDN,
	                    .now_ms = NOW,
	                    .pool_direct_assign = true,
	                    .open_reason = NUM_QR_TENANT_RELEASE,
	                    .quarantine_until_ms = NOW,
	                    .justification_len = 200,
	                    .term_ends_ms = NOW};
}

static void test_every_valid_transition_with_every_role(void **state)
{
	size_t n_rules = 0;
	num_lifecycle_rules(&n_rules);
	assert_int_equal(n_rules, N_SPEC);
	for (size_t i = 0; i < N_SPEC; i++) {
		const expect_t *e = &spec[i];
		for (int role = 0; role < NUM_ROLE__COUNT; role++) {
			num_step_t in = all_guards_ok(role);
			num_transition_t t;
			int rc = num_lifecycle_step(e->from, e->action, &in, &t);
			if (!(e->roles & NUM_ROLE_BIT(role))) {
				if (rc != -EPERM)
					fail_msg("%s %s by %s: rc %d, want -EPERM",
					         num_state_name(e->from),
					         num_action_name(e->action), num_role_name(role),
					         rc);
				assert_int_equal(t.from, e->from);
				assert_int_equal(t.action, e->action);
				continue;
			}
			if (rc != 0)
				fail_msg("%s %s by %s: rc %d", num_state_name(e->from),
				         num_action_name(e->action), num_role_name(role), rc);
			assert_int_equal(t.to, e->to);
			assert_int_equal(t.reason, e->reason);
			if (e->event)
				assert_string_equal(t.events[0], e->event);
			else
				assert_null(t.events[0]);
			if (e->to == NUM_ST_QUARANTINED)
				assert_string_equal(t.events[1], "number.quarantined.v1");
			else
				assert_null(t.events[1]);
		}
	}
}

static void test_every_invalid_pair_is_invalid_transition(void **state)
{
	int invalid = 0;
	for (int s = 0; s < NUM_ST__COUNT; s++) {
		for (int a = 0; a < NUM_ACT__COUNT; a++) {
			if (spec_find(s, a))
				continue;
			invalid++;
			for (int role = 0; role < NUM_ROLE__COUNT; role++) {
				num_step_t in = all_guards_ok(role);
				num_transition_t t;
				int rc = num_lifecycle_step(s, a, &in, &t);
				if (rc != -EBUSY)
					fail_msg("%s %s by %s: rc %d, want -EBUSY",
					         num_state_name(s), num_action_name(a),
					         num_role_name(role), rc);
				assert_int_equal(t.from, s);
				assert_int_equal(t.action, a);
				assert_int_equal(t.to, s);
			}
		}
	}
	assert_int_equal(invalid, NUM_ST__COUNT * NUM_ACT__COUNT - (int)N_SPEC);
}

static void test_retired_is_terminal(void **state)
{
	for (int a = 0; a < NUM_ACT__COUNT; a++) {
		num_step_t in = all_guards_ok(NUM_ROLE_ADMIN);
		num_transition_t t;
		assert_int_equal(num_lifecycle_step(NUM_ST_RETIRED, a, &in, &t), -EBUSY);
	}
}

static void test_reservation_release_skips_zero_cooloff(void **state)
{
	num_step_t in = all_guards_ok(NUM_ROLE_HOLDER);
	num_transition_t t;
	assert_int_equal(num_lifecycle_step(NUM_ST_RESERVED, NUM_ACT_RELEASE, &in, &t), 0);
	assert_int_equal(t.to, NUM_ST_AVAILABLE);
	assert_int_equal(t.reason, NUM_QR_RESERVATION_EXPIRED);
	assert_true(t.flags & NUM_TF_QUARANTINE_OPEN);
	assert_true(t.flags & NUM_TF_RESERVATION_CLOSE);
	assert_int_equal(t.quarantine_until_ms, NOW); /* record written, already over */

	/* legal configures a cool-off: the number must sit it out in QUARANTINED */
	num_lifecycle_cfg_t cfg = num_lifecycle_cfg_default;
	cfg.cooloff_s[NUM_QR_RESERVATION_EXPIRED][NUM_KIND_MSISDN] = 86400;
	assert_int_equal(num_lifecycle_cfg_check(&cfg), 0);
	in = all_guards_ok(NUM_ROLE_SYSTEM);
	in.cfg = &cfg;
	assert_int_equal(num_lifecycle_step(NUM_ST_RESERVED, NUM_ACT_EXPIRE, &in, &t), 0);
	assert_int_equal(t.to, NUM_ST_QUARANTINED);
	assert_int_equal(t.quarantine_until_ms, NOW + DAY_MS);
	assert_string_equal(t.events[0], "number.reservation_expired.v1");
	assert_string_equal(t.events[1], "number.quarantined.v1");
	/* other kinds keep the 0 d default */
	in.kind = NUM_KIND_ALPHA;
	assert_int_equal(num_lifecycle_step(NUM_ST_RESERVED, NUM_ACT_EXPIRE, &in, &t), 0);
	assert_int_equal(t.to, NUM_ST_AVAILABLE);
}

/* Expiry of a reservation or a lease is allowed from its end time on, never before: a stale
 * timer or a job that read an old row cannot end either early. */
static void test_expire_waits_for_the_term(void **state)
{
	(void)state;
	num_transition_t t;
	num_step_t in = all_guards_ok(NUM_ROLE_SYSTEM);
	const num_state_t from[] = {NUM_ST_RESERVED, NUM_ST_ASSIGNED, NUM_ST_SUSPENDED};
	for (size_t i = 0; i < 3; i++) {
		in.term_ends_ms = NOW + 1;
		assert_int_equal(num_lifecycle_step(from[i], NUM_ACT_EXPIRE, &in, &t), -EBUSY);
		in.term_ends_ms = NOW;
		assert_int_equal(num_lifecycle_step(from[i], NUM_ACT_EXPIRE, &in, &t), 0);
	}
	/* a lapsed lease: TENANT_RELEASE with that cool-off, lease ended, no release event */
	assert_int_equal(t.to, NUM_ST_QUARANTINED);
	assert_int_equal(t.reason, NUM_QR_TENANT_RELEASE);
	assert_int_equal(t.quarantine_until_ms, NOW + 90 * DAY_MS);
	assert_true(t.flags & NUM_TF_LEASE_END);
	assert_null(t.events[0]);
	assert_string_equal(t.events[1], "number.quarantined.v1");
}

static void test_cooloff_per_reason_and_kind(void **state)
{
	struct {
		num_state_t from;
		num_action_t action;
		num_role_t role;
		num_qreason_t ask;
		num_kind_t kind;
		num_qreason_t reason;
		int64_t days;
	} c[] = {
	    {NUM_ST_ASSIGNED, NUM_ACT_RELEASE, NUM_ROLE_HOLDER, NUM_QR_NONE, NUM_KIND_MSISDN,
	     NUM_QR_TENANT_RELEASE, 90},
	    {NUM_ST_SUSPENDED, NUM_ACT_RELEASE, NUM_ROLE_ADMIN, NUM_QR_NONE, NUM_KIND_SHORT_CODE,
	     NUM_QR_TENANT_RELEASE, 30},
	    {NUM_ST_ASSIGNED, NUM_ACT_RELEASE, NUM_ROLE_HOLDER, NUM_QR_NONE, NUM_KIND_ALPHA,
	     NUM_QR_TENANT_RELEASE, 30},
	    {NUM_ST_ASSIGNED, NUM_ACT_RECALL, NUM_ROLE_COMPLIANCE, NUM_QR_NONE, NUM_KIND_ALPHA,
	     NUM_QR_RECALL_ADMIN, 90},
	    {NUM_ST_RESERVED, NUM_ACT_RECALL, NUM_ROLE_ADMIN, NUM_QR_RECALL_ADMIN, NUM_KIND_MSISDN,
	     NUM_QR_RECALL_ADMIN, 90},
	    {NUM_ST_SUSPENDED, NUM_ACT_RECALL, NUM_ROLE_SYSTEM, NUM_QR_RECALL_ABUSE, NUM_KIND_ALPHA,
	     NUM_QR_RECALL_ABUSE, 365},
	    {NUM_ST_ASSIGNED, NUM_ACT_RECALL, NUM_ROLE_ADMIN, NUM_QR_RECALL_ABUSE,
	     NUM_KIND_SHORT_CODE, NUM_QR_RECALL_ABUSE, 365},
	};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		num_step_t in = all_guards_ok(c[i].role);
		in.kind = c[i].kind;
		in.recall_reason = c[i].ask;
		num_transition_t t;
		assert_int_equal(num_lifecycle_step(c[i].from, c[i].action, &in, &t), 0);
		assert_int_equal(t.to, NUM_ST_QUARANTINED);
		assert_int_equal(t.reason, c[i].reason);
		assert_int_equal(t.quarantine_until_ms, NOW + c[i].days * DAY_MS);
	}
	/* a recall cannot record a reason other than RECALL_* */
	num_step_t in = all_guards_ok(NUM_ROLE_ADMIN);
	num_transition_t t;
	in.recall_reason = NUM_QR_TENANT_RELEASE;
	assert_int_equal(num_lifecycle_step(NUM_ST_ASSIGNED, NUM_ACT_RECALL, &in, &t), -EINVAL);
	in.recall_reason = (num_qreason_t)99;
	assert_int_equal(num_lifecycle_step(NUM_ST_ASSIGNED, NUM_ACT_RECALL, &in, &t), -EINVAL);
	/* release ignores a recall reason: it always records TENANT_RELEASE */
	in.recall_reason = NUM_QR_RECALL_ABUSE;
	assert_int_equal(num_lifecycle_step(NUM_ST_ASSIGNED, NUM_ACT_RELEASE, &in, &t), 0);
	assert_int_equal(t.reason, NUM_QR_TENANT_RELEASE);
}

static void test_sweep_waits_for_cooloff(void **state)
{
	num_step_t in = all_guards_ok(NUM_ROLE_SYSTEM);
	num_transition_t t;
	in.quarantine_until_ms = NOW + 1;
	assert_int_equal(num_lifecycle_step(NUM_ST_QUARANTINED, NUM_ACT_SWEEP, &in, &t), -EBUSY);
	in.quarantine_until_ms = NOW;
	assert_int_equal(num_lifecycle_step(NUM_ST_QUARANTINED, NUM_ACT_SWEEP, &in, &t), 0);
	assert_int_equal(t.to, NUM_ST_AVAILABLE);
	assert_true(t.flags & NUM_TF_QUARANTINE_CLOSE);
	/* the role is checked before the guard: an admin learns only EPERM */
	in = all_guards_ok(NUM_ROLE_ADMIN);
	in.quarantine_until_ms = NOW + 1;
	assert_int_equal(num_lifecycle_step(NUM_ST_QUARANTINED, NUM_ACT_SWEEP, &in, &t), -EPERM);
}

static void test_reclaim_only_after_tenant_release(void **state)
{
	num_step_t in = all_guards_ok(NUM_ROLE_PREV_TENANT);
	in.quarantine_until_ms = NOW + 90 * DAY_MS; /* reclaim is during the cool-off */
	num_transition_t t;
	for (int q = NUM_QR_NONE; q < NUM_QR__COUNT; q++) {
		in.open_reason = q;
		int rc = num_lifecycle_step(NUM_ST_QUARANTINED, NUM_ACT_RECLAIM, &in, &t);
		assert_int_equal(rc, q == NUM_QR_TENANT_RELEASE ? 0 : -EBUSY);
	}
	in.open_reason = NUM_QR_TENANT_RELEASE;
	assert_int_equal(num_lifecycle_step(NUM_ST_QUARANTINED, NUM_ACT_RECLAIM, &in, &t), 0);
	assert_int_equal(t.to, NUM_ST_ASSIGNED);
	assert_int_equal(t.flags, NUM_TF_QUARANTINE_CLOSE | NUM_TF_LEASE_OPEN);
	in.role = NUM_ROLE_TENANT; /* some other tenant */
	assert_int_equal(num_lifecycle_step(NUM_ST_QUARANTINED, NUM_ACT_RECLAIM, &in, &t), -EPERM);
}

static void test_override_needs_justification(void **state)
{
	num_step_t in = all_guards_ok(NUM_ROLE_ADMIN);
	in.quarantine_until_ms = NOW + DAY_MS;
	num_transition_t t;
	in.justification_len = 19;
	assert_int_equal(num_lifecycle_step(NUM_ST_QUARANTINED, NUM_ACT_OVERRIDE, &in, &t),
	                 -EINVAL);
	in.justification_len = 20;
	assert_int_equal(num_lifecycle_step(NUM_ST_QUARANTINED, NUM_ACT_OVERRIDE, &in, &t), 0);
	assert_int_equal(t.to, NUM_ST_AVAILABLE);
	in.role = NUM_ROLE_COMPLIANCE;
	assert_int_equal(num_lifecycle_step(NUM_ST_QUARANTINED, NUM_ACT_OVERRIDE, &in, &t), -EPERM);
}

static void test_direct_assign_needs_pool_policy(void **state)
{
	num_step_t in = all_guards_ok(NUM_ROLE_TENANT);
	num_transition_t t;
	in.pool_direct_assign = false;
	assert_int_equal(num_lifecycle_step(NUM_ST_AVAILABLE, NUM_ACT_ASSIGN, &in, &t), -EPERM);
	in.pool_direct_assign = true;
	assert_int_equal(num_lifecycle_step(NUM_ST_AVAILABLE, NUM_ACT_ASSIGN, &in, &t), 0);
	assert_int_equal(t.flags, NUM_TF_LEASE_OPEN);
	in = all_guards_ok(NUM_ROLE_ADMIN);
	in.pool_direct_assign = false; /* the policy binds tenants, not admins */
	assert_int_equal(num_lifecycle_step(NUM_ST_AVAILABLE, NUM_ACT_ASSIGN, &in, &t), 0);
}

static void test_reserve_ttl(void **state)
{
	num_step_t in = all_guards_ok(NUM_ROLE_TENANT);
	num_transition_t t;
	assert_int_equal(num_lifecycle_step(NUM_ST_AVAILABLE, NUM_ACT_RESERVE, &in, &t), 0);
	assert_int_equal(t.reservation_expires_at_ms, NOW + 900 * 1000);
	assert_int_equal(t.flags, NUM_TF_RESERVATION_OPEN);
	in.ttl_s = 7 * 86400;
	assert_int_equal(num_lifecycle_step(NUM_ST_AVAILABLE, NUM_ACT_RESERVE, &in, &t), 0);
	assert_int_equal(t.reservation_expires_at_ms, NOW + 7 * DAY_MS);
	in.ttl_s = 7 * 86400 + 1;
	assert_int_equal(num_lifecycle_step(NUM_ST_AVAILABLE, NUM_ACT_RESERVE, &in, &t), -EINVAL);
	in.ttl_s = -5;
	assert_int_equal(num_lifecycle_step(NUM_ST_AVAILABLE, NUM_ACT_RESERVE, &in, &t), -EINVAL);
}

static void test_bad_arguments(void **state)
{
	num_step_t in = all_guards_ok(NUM_ROLE_ADMIN);
	num_transition_t t;
	assert_int_equal(num_lifecycle_step(NUM_ST__COUNT, NUM_ACT_RETIRE, &in, &t), -EINVAL);
	assert_int_equal(num_lifecycle_step(NUM_ST_AVAILABLE, NUM_ACT__COUNT, &in, &t), -EINVAL);
	assert_int_equal(num_lifecycle_step(NUM_ST_AVAILABLE, NUM_ACT_RETIRE, NULL, &t), -EINVAL);
	in.role = NUM_ROLE__COUNT;
	assert_int_equal(num_lifecycle_step(NUM_ST_AVAILABLE, NUM_ACT_RETIRE, &in, &t), -EINVAL);
	in = all_guards_ok(NUM_ROLE_ADMIN);
	in.kind = (num_kind_t)7;
	assert_int_equal(num_lifecycle_step(NUM_ST_AVAILABLE, NUM_ACT_RETIRE, &in, &t), -EINVAL);

	num_lifecycle_cfg_t cfg = num_lifecycle_cfg_default;
	assert_int_equal(num_lifecycle_cfg_check(&cfg), 0);
	cfg.cooloff_s[NUM_QR_RECALL_ABUSE][NUM_KIND_ALPHA] = -1;
	assert_int_equal(num_lifecycle_cfg_check(&cfg), -EINVAL);
	cfg = num_lifecycle_cfg_default;
	cfg.reserve_ttl_default_s = cfg.reserve_ttl_max_s + 1;
	assert_int_equal(num_lifecycle_cfg_check(&cfg), -EINVAL);
}

static void test_names_round_trip(void **state)
{
	for (int s = 0; s < NUM_ST__COUNT; s++) {
		num_state_t back;
		assert_int_equal(num_state_parse(num_state_name(s), &back), 0);
		assert_int_equal(back, s);
	}
	for (int a = 0; a < NUM_ACT__COUNT; a++) {
		num_action_t back;
		assert_int_equal(num_action_parse(num_action_name(a), &back), 0);
		assert_int_equal(back, a);
	}
	for (int q = 0; q < NUM_QR__COUNT; q++) {
		num_qreason_t back;
		assert_int_equal(num_qreason_parse(num_qreason_name(q), &back), 0);
		assert_int_equal(back, q);
	}
	num_state_t st;
	assert_string_equal(num_state_name(NUM_ST_QUARANTINED), "QUARANTINED");
	assert_string_equal(num_action_name(NUM_ACT_OVERRIDE), "override");
	assert_string_equal(num_state_name((num_state_t)42), "UNKNOWN");
	assert_int_equal(num_state_parse("quarantined", &st), -EINVAL);
	assert_int_equal(num_state_parse(NULL, &st), -EINVAL);
	num_lease_status_t ls;
	assert_int_equal(num_lease_status_parse("SUSPENDED", &ls), 0);
	assert_int_equal(ls, NUM_LEASE_SUSPENDED);
	num_pool_status_t ps;
	assert_int_equal(num_pool_status_parse("ACTIVE", &ps), 0);
	assert_int_equal(ps, NUM_POOL_ACTIVE);
	num_kind_t k;
	assert_int_equal(num_kind_parse("SHORT_CODE", &k), 0);
	assert_int_equal(k, NUM_KIND_SHORT_CODE);
}

/* docs/numbering-lifecycle.md is the rendered table; GH_UPDATE_GOLDEN=1 rewrites it. */
static void test_markdown_matches_docs(void **state)
{
	void *ctx = talloc_new(NULL);
	char *md = num_lifecycle_markdown(ctx, NULL);
	assert_non_null(md);
	assert_non_null(strstr(md, "| ASSIGNED | release | QUARANTINED | holder, admin |"));
	assert_non_null(strstr(md, "| QUARANTINED | reclaim | ASSIGNED | previous tenant | "
	                           "quarantine reason is TENANT_RELEASE |"));
	assert_non_null(strstr(md, "| RECALL_ABUSE | 365 d | 365 d | 365 d |"));
	assert_non_null(strstr(md, "| RETIRED | - | - | - | - | - | - | - | - | - | - | - |"));
	const char *root = getenv("GH_SOURCE_ROOT");
	if (!root)
		skip();
	char *path = talloc_asprintf(ctx, "%s/docs/numbering-lifecycle.md", root);
	if (getenv("GH_UPDATE_GOLDEN")) {
		FILE *f = fopen(path, "w");
		assert_non_null(f);
		assert_int_equal(fputs(md, f) >= 0, 1);
		assert_int_equal(fclose(f), 0);
	}
	FILE *f = fopen(path, "r");
	if (!f)
		fail_msg("%s missing: run with GH_UPDATE_GOLDEN=1", path);
	char *buf = talloc_zero_size(ctx, strlen(md) + 2);
	size_t n = fread(buf, 1, strlen(md) + 1, f);
	fclose(f);
	if (n != strlen(md) || memcmp(buf, md, n) != 0)
		fail_msg("%s is out of date: run the test with GH_UPDATE_GOLDEN=1", path);
	talloc_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_valid_transition_with_every_role),
	    cmocka_unit_test(test_every_invalid_pair_is_invalid_transition),
	    cmocka_unit_test(test_retired_is_terminal),
	    cmocka_unit_test(test_reservation_release_skips_zero_cooloff),
	    cmocka_unit_test(test_cooloff_per_reason_and_kind),
	    cmocka_unit_test(test_sweep_waits_for_cooloff),
	    cmocka_unit_test(test_reclaim_only_after_tenant_release),
	    cmocka_unit_test(test_override_needs_justification),
	    cmocka_unit_test(test_direct_assign_needs_pool_policy),
	    cmocka_unit_test(test_reserve_ttl),
	    cmocka_unit_test(test_bad_arguments),
	    cmocka_unit_test(test_names_round_trip),
	    cmocka_unit_test(test_expire_waits_for_the_term),
	    cmocka_unit_test(test_markdown_matches_docs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
