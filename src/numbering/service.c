/* service: the numbering service's table, its state, its jobs and its consumer of
 * num.cache.invalidate.v1; the ValidateLease decision on the index with the database fallback.
 * See service.h. */
#include "service.h"

#include "export.h"
#include "grpc.h"
#include "jobs.h"
#include "ports.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>

#include "uuid.h"

#define NUM_SOURCE        "ghasi/numbering"
#define NUM_CACHE_SUBJECT "num.cache.invalidate.v1"
#define NUM_OPERATORS_MAX 256
#define NUM_HEARTBEAT_AGG "numbering/heartbeat"
#define DAY_S             86400LL

/* ---- configuration ----------------------------------------------------------------------- */

static int check_schedule(const void *v, char *msg, size_t n)
{
	gh_cron_t c;
	char why[128];
	if (gh_cron_parse(*(char *const *)v, &c, why, sizeof why) < 0) {
		snprintf(msg, n, "bad schedule: %s", why);
		return -EINVAL;
	}
	return 0;
}

#define O(f) offsetof(num_config_t, f)
static const gh_config_key_t num_keys[] = {
    {"index_capacity", GH_CFG_INT, O(index_capacity), .def = 2000000, .min = 1000, .max = 100000000,
     .help = "numbers the ValidateLease index holds (memory reserved at start)"},
    {"index_tenants", GH_CFG_INT, O(index_tenants), .def = 65536, .min = 16, .max = 1 << 24,
     .help = "tenants the index can hold"},
    {"staleness_bound_ms", GH_CFG_INT, O(staleness_bound_ms), .def = 5000, .min = 500,
     .max = 600000,
     .help = "validate answers 503 when no invalidation heartbeat arrived for this long"},
    {"seed_demo", GH_CFG_BOOL, O(seed_demo), .def = 1,
     .help = "seed demo operators, numbers and pools when the database holds no numbers"},
    {"seed_msisdns", GH_CFG_INT, O(seed_msisdns), .def = 10000, .min = 0, .max = 10000000,
     .help = "MSISDNs the demo seed creates"},
    {"heartbeat", GH_CFG_STR, O(heartbeat), .def_str = "@every 1s", .check = check_schedule,
     .help = "invalidation-stream heartbeat (one replica at a time)"},
    {"reservation_sweep", GH_CFG_STR, O(reservation_sweep), .def_str = "@every 1s",
     .check = check_schedule, .help = "reservation expiry sweep (one replica at a time)"},
    {"quarantine_sweep", GH_CFG_STR, O(quarantine_sweep), .def_str = "@every 5m",
     .check = check_schedule, .help = "quarantine cool-off sweep (one replica at a time)"},
    {"metrics_refresh", GH_CFG_STR, O(metrics_refresh), .def_str = "@every 15s",
     .check = check_schedule,
     .help = "refresh of the gauges read from the database (pool utilisation, quarantine "
             "backlog, outbox lag; every replica)"},
    {"sweep_batch", GH_CFG_INT, O(sweep_batch), .def = 500, .min = 1, .max = 100000,
     .help = "numbers one sweep run handles at most"},
    {"reserve_ttl_default_s", GH_CFG_INT, O(reserve_ttl_default_s), .def = 900, .min = 1,
     .max = 7 * DAY_S, .help = "reservation lifetime when the request gives none"},
    {"reserve_ttl_max_s", GH_CFG_INT, O(reserve_ttl_max_s), .def = 7 * DAY_S, .min = 1,
     .max = 7 * DAY_S, .help = "longest reservation a request may ask for"},
    {"expiry_timers_max", GH_CFG_INT, O(expiry_timers_max), .def = 200000, .min = 1,
     .max = 100000000, .help = "reservations with an in-process expiry timer (the rest: sweep)"},
    {"expiry_sweep_grace_ms", GH_CFG_INT, O(expiry_sweep_grace_ms), .def = 500, .min = 0,
     .max = 60000, .help = "the expiry sweep takes reservations due at least this long ago"},
    {"renewal", GH_CFG_STR, O(renewal), .def_str = "@daily", .check = check_schedule,
     .help = "lease renewal run through billing PreviewCharge (one replica at a time)"},
    {"renewal_window_s", GH_CFG_INT, O(renewal_window_s), .def = DAY_S, .min = 60,
     .max = 30 * DAY_S, .help = "the renewal run renews auto_renew leases ending within this"},
    {"lease_end", GH_CFG_STR, O(lease_end), .def_str = "@every 1m", .check = check_schedule,
     .help = "leases past ends_at go to QUARANTINED TENANT_RELEASE (one replica at a time)"},
    {"audit_verify", GH_CFG_STR, O(audit_verify), .def_str = "@daily", .check = check_schedule,
     .help = "audit chain verify (one replica at a time)"},
    {"billing_url", GH_CFG_STR, O(billing_url), .def_str = "",
     .help = "billing PreviewCharge endpoint (POST JSON); empty: leases are never renewed"},
    {"senderid_url", GH_CFG_STR, O(senderid_url), .def_str = "",
     .help = "sender-id registry IsVerified endpoint (POST JSON); empty: ALPHA ids cannot be "
             "assigned"},
    {"port_timeout_ms", GH_CFG_INT, O(port_timeout_ms), .def = 2000, .min = 50, .max = 60000,
     .help = "timeout of one billing / sender-id call"},
    {"anomaly_churn_per_hour", GH_CFG_INT, O(anomaly_churn_per_hour), .def = 500, .min = 0,
     .max = 100000000,
     .help = "numbering.anomaly.v1 when a tenant's reserves + releases in one hour reach this "
             "(0: off)"},
    {"anomaly_wrong_tenant_per_min", GH_CFG_INT, O(anomaly_wrong_tenant_per_min), .def = 100,
     .min = 0, .max = 100000000,
     .help = "numbering.anomaly.v1 when WRONG_TENANT validates of one calling tenant in one "
             "minute reach this, per replica (0: off)"},
    {"anomaly_lookup_unknown_per_min", GH_CFG_INT, O(anomaly_lookup_unknown_per_min), .def = 500,
     .min = 0, .max = 100000,
     .help = "numbering.anomaly.v1 when distinct unregistered identifiers one caller looked up "
             "in one minute reach this (estimated), per replica (0: off)"},
    {"anomaly_recent_quarantines", GH_CFG_INT, O(anomaly_recent_quarantines), .def = 65536,
     .min = 16, .max = 16777216,
     .help = "quarantine exits of the last 24 h tracked for the first-send signal"},
    {"anomaly_flush", GH_CFG_STR, O(anomaly_flush), .def_str = "@every 10s",
     .check = check_schedule, .help = "flush of the anomaly counters (every replica)"},
    {"anomaly_churn_check", GH_CFG_STR, O(anomaly_churn_check), .def_str = "@every 1m",
     .check = check_schedule, .help = "reserve/release churn query (one replica at a time)"},
    {"export_schedule", GH_CFG_STR, O(export_schedule), .def_str = "0 1 1 * *",
     .check = check_schedule,
     .help = "regulator export of the previous month (one replica at a time)"},
    {"export_retention_years", GH_CFG_INT, O(export_retention_years), .def = 7, .min = 1,
     .max = 100, .help = "archive retention of regulator exports after the month's end"},
    {"export_key_pem", GH_CFG_STR, O(export_key_pem), .def_str = "",
     .help = "path of the Ed25519 private key (PEM) signing regulator exports"},
    {"export_pkcs11_module", GH_CFG_STR, O(export_pkcs11_module), .def_str = "",
     .help = "PKCS#11 module holding the export key (instead of export_key_pem)"},
    {"export_pkcs11_token", GH_CFG_STR, O(export_pkcs11_token), .def_str = "",
     .help = "label of the PKCS#11 token holding the export key"},
    {"export_pkcs11_pin", GH_CFG_STR, O(export_pkcs11_pin), .def_str = "", .flags = GH_CFG_SECRET,
     .help = "user PIN of the PKCS#11 token"},
    {"export_pkcs11_key", GH_CFG_STR, O(export_pkcs11_key), .def_str = "",
     .help = "label of the Ed25519 key pair on the PKCS#11 token"},
    {"grpc_port", GH_CFG_INT, O(grpc_port), .def = 0, .min = 0, .max = 65535,
     .help = "port of the gRPC surface (proto/ghasi/numbering/v1); 0: off"},
    {"grpc_bind", GH_CFG_STR, O(grpc_bind), .def_str = "0.0.0.0",
     .help = "address the gRPC surface listens on"},
    {"grpc_threads", GH_CFG_INT, O(grpc_threads), .def = 4, .min = 1, .max = 256,
     .help = "gRPC worker threads"},
    {"grpc_drain_ms", GH_CFG_INT, O(grpc_drain_ms), .def = 5000, .min = 0, .max = 600000,
     .help = "at shutdown, in-flight gRPC calls get this long before they are cancelled"},
};
#undef O
static const gh_config_section_t num_section = {"numbering", sizeof(num_config_t), num_keys,
                                                sizeof num_keys / sizeof num_keys[0]};

int num_config_register(void) { return gh_config_register(&num_section); }

void num_config_from(const gh_config_t *cfg, num_config_t *out)
{
	const num_config_t *c = cfg ? gh_config_section(cfg, "numbering") : NULL;
	if (c) {
		*out = *c;
		return;
	}
	memset(out, 0, sizeof *out);
	for (size_t i = 0; i < num_section.n_keys; i++) {
		const gh_config_key_t *k = &num_keys[i];
		char *p = (char *)out + k->offset;
		if (k->type == GH_CFG_INT)
			*(int64_t *)p = k->def;
		else if (k->type == GH_CFG_BOOL)
			*(bool *)p = k->def != 0;
		else if (k->type == GH_CFG_STR)
			*(const char **)p = k->def_str; /* static defaults, never freed */
	}
}

/* ---- state ------------------------------------------------------------------------------- */

static const char *const vres_names[NUM_VR__COUNT + 2] = {
    "ALLOWED",       "NOT_REGISTERED",    "NOT_LEASED",       "WRONG_TENANT", "LEASE_SUSPENDED",
    "LEASE_EXPIRED", "QUARANTINE_ACTIVE", "TENANT_SUSPENDED", "UNAVAILABLE",  "INVALID_ARGUMENT",
};

static double outbox_lag_s(void *ud)
{
	num_svc_t *s = ud;
	return (double)atomic_load(&s->outbox_lag_ms) / 1000.0;
}

static void register_metrics(num_svc_t *s, gh_metrics_t *m)
{
	if (!m)
		return;
	for (int i = 0; i < NUM_VR__COUNT + 2; i++) {
		char *l = gh_metrics_labels(s->ctx, "result", vres_names[i], NULL);
		s->h_validate[i] = gh_metrics_histogram(m, "numbering_validate_lease_seconds",
		                                        "ValidateLease latency by result", l);
	}
	s->c_hits = gh_metrics_counter(m, "numbering_validate_cache_hits_total",
	                               "validates decided by the index", NULL);
	s->c_misses = gh_metrics_counter(m, "numbering_validate_cache_misses_total",
	                                 "validates that asked the database", NULL);
	s->c_expired = gh_metrics_counter(m, "numbering_reservations_expired_total",
	                                  "reservations ended by their TTL", NULL);
	s->g_audit_broken = gh_metrics_gauge(m, "numbering_audit_chain_broken",
	                                     "1 when the last audit verify found a break", NULL);
	s->g_quarantine =
	    gh_metrics_gauge(m, "numbering_quarantine_backlog",
	                     "numbers in QUARANTINED (refreshed by numbering-metrics)", NULL);
	/* From the outbox table, not the relay's own ghasi_outbox_lag_ms: only the replica
	 * holding the relay lease updates that one, and it keeps its last value after losing
	 * the lease; every replica can read the table. */
	if (gh_metrics_gauge_fn(m, "numbering_outbox_lag_seconds",
	                        "age of the oldest event not yet relayed to the bus (refreshed by "
	                        "numbering-metrics)",
	                        NULL, outbox_lag_s, s) < 0)
		gh_log(GH_LOG_WARN, "numbering: cannot register numbering_outbox_lag_seconds",
		       NULL);
	s->metrics = m;
}

static double pool_ratio(void *ud)
{
	num_pool_use_t *u = ud;
	int64_t held = atomic_load(&u->held), quota = atomic_load(&u->quota);
	if (quota > 0)
		return (double)held / (double)quota;
	return held > 0 ? INFINITY : 0.0; /* holding numbers under a zero quota */
}

void num_svc_pool_usage(num_svc_t *s, const char *tenant_id, const int64_t *quota,
                        const int64_t *held)
{
	if (!s->metrics || !tenant_id)
		return;
	pthread_mutex_lock(&s->pools_mu);
	num_pool_gauge_t *p;
	for (p = s->pools; p; p = p->next)
		if (strcmp(p->tenant, tenant_id) == 0)
			break;
	if (!p && (p = talloc_zero(s, num_pool_gauge_t)) != NULL) {
		snprintf(p->tenant, sizeof p->tenant, "%s", tenant_id);
		for (int k = 0; k < NUM_KIND__COUNT; k++) {
			atomic_store(&p->k[k].held, held[k]);
			atomic_store(&p->k[k].quota, quota[k]);
			char *l = gh_metrics_labels(p, "tenant", tenant_id, "kind",
			                            num_kind_name((num_kind_t)k), NULL);
			if (!l ||
			    gh_metrics_gauge_fn(s->metrics, "numbering_pool_utilisation_ratio",
			                        "held / quota per tenant pool and kind", l,
			                        pool_ratio, &p->k[k]) < 0)
				gh_log(GH_LOG_WARN, "numbering: pool gauge not registered",
				       "tenant", tenant_id, NULL);
		}
		p->next = s->pools;
		s->pools = p;
	}
	for (int k = 0; p && k < NUM_KIND__COUNT; k++) {
		atomic_store(&p->k[k].held, held[k]);
		atomic_store(&p->k[k].quota, quota[k]);
	}
	pthread_mutex_unlock(&s->pools_mu);
}

static void pool_usage_cb(void *ud, const char *tenant_id, const int64_t *quota,
                          const int64_t *held)
{
	num_svc_pool_usage(ud, tenant_id, quota, held);
}

int num_svc_metrics_refresh(num_svc_t *s, int64_t now_ms)
{
	if (!s->metrics || !s->repo)
		return 0;
	int rc = num_repo_pool_usage(s->repo, pool_usage_cb, s);
	int64_t n = 0, age = 0;
	if (num_repo_quarantine_backlog(s->repo, &n) == 0)
		gh_gauge_set(s->g_quarantine, n);
	else
		rc = -EIO;
	if (s->store && gh_outbox_pending(s->store, now_ms, &n, &age) == 0)
		atomic_store(&s->outbox_lag_ms, age > 0 ? age : 0);
	else if (s->store)
		rc = -EIO;
	return rc < 0 ? -EIO : 0;
}

int num_svc_new(void *ctx, num_index_t *ix, num_repo_t *repo, gh_clock_t *clock,
                gh_metrics_t *metrics, const num_config_t *cfg, num_svc_t **out)
{
	num_svc_t *s = talloc_zero(ctx, num_svc_t);
	if (!s)
		return -ENOMEM;
	s->ctx = s;
	s->ix = ix;
	s->repo = repo;
	s->store = repo ? num_repo_store(repo) : NULL;
	s->clock = clock ? clock : gh_clock_real();
	if (cfg)
		s->cfg = *cfg;
	else
		num_config_from(NULL, &s->cfg);
	s->lifecycle = num_lifecycle_cfg_default;
	s->idem_ttl_ms = GH_IDEM_TTL_DEFAULT_MS;
	num_optab_t *t = talloc_zero_size(s, sizeof(num_optab_t));
	if (!t) {
		talloc_free(s);
		return -ENOMEM;
	}
	atomic_store(&s->optab, t);
	pthread_mutex_init(&s->pool_mu, NULL);
	pthread_mutex_init(&s->pools_mu, NULL);
	register_metrics(s, metrics);
	*out = s;
	return 0;
}

int num_svc_reload_operators(num_svc_t *s)
{
	if (!s->repo)
		return 0;
	num_optab_t *t =
	    talloc_zero_size(s, sizeof(num_optab_t) + NUM_OPERATORS_MAX * sizeof(gh_operator_t));
	if (!t)
		return -ENOMEM;
	int rc = num_repo_operator_table(s->repo, t->ops, NUM_OPERATORS_MAX, &t->n);
	if (rc < 0) {
		talloc_free(t);
		return rc;
	}
	/* Readers may still hold the old snapshot: it stays allocated (a child of s) until the
	 * service stops. Operator changes are rare admin actions, so this is a few KB a year. */
	atomic_store(&s->optab, t);
	return 0;
}

const gh_operator_t *num_svc_operator(num_svc_t *s, const num_index_entry_t *e,
                                      const gh_ident_t *id, int64_t now_ms)
{
	const num_optab_t *t = atomic_load(&s->optab);
	/* An MSISDN's operator is the one holding its prefix (the repository checks that on
	 * insert); other kinds carry the operator in the entry. */
	if (id && id->kind == GH_IDENT_MSISDN)
		return gh_operator_for_msisdn(t->ops, t->n, id->canonical, now_ms);
	if (e && e->operator_idx > 0 && e->operator_idx <= t->n)
		return &t->ops[e->operator_idx - 1];
	return NULL;
}

/* ---- the decision ------------------------------------------------------------------------ */

/* Database fallback: read the entry, fill the index. 0, -ENOENT, -EIO. */
static int db_entry(num_svc_t *s, uint64_t key, num_index_entry_t *e)
{
	if (!s->repo)
		return -EIO;
	int rc = num_repo_index_entry(s->repo, s->ix, key, e);
	if (rc == -ENOENT)
		return rc;
	if (rc < 0)
		return -EIO;
	/* -ESTALE: the index already holds something newer (a concurrent invalidation or
	 * commit); the row read is still a committed state, good for this answer. -ENOSPC: full;
	 * the answer does not need the slot. */
	num_index_upsert(s->ix, e);
	return 0;
}

int num_svc_entry(num_svc_t *s, uint64_t key, int64_t now_ms, num_index_entry_t *out)
{
	if (!num_index_fresh(s->ix, now_ms, s->cfg.staleness_bound_ms))
		return -ESTALE;
	if (num_index_get(s->ix, key, out) == 0)
		return 0;
	if (num_index_is_complete(s->ix) && !s->repo)
		return -ENOENT;
	return db_entry(s, key, out);
}

void num_svc_refresh_key(num_svc_t *s, uint64_t key, int64_t min_version)
{
	num_index_entry_t e;
	if (s->repo && num_repo_index_entry(s->repo, s->ix, key, &e) == 0) {
		num_index_upsert(s->ix, &e);
		return;
	}
	/* Could not read back what was just committed: make the key a miss until a fill of at
	 * least that version arrives, so the index never answers from the older entry. */
	num_index_invalidate(s->ix, key, (uint64_t)(min_version > 0 ? min_version : 1));
}

void num_svc_apply(num_svc_t *s, const num_number_t *n)
{
	num_index_entry_t e;
	uint32_t tidx = NUM_TENANT_NONE;
	if (num_index_get(s->ix, n->key, &e) < 0 ||
	    (n->tenant_id[0] && num_index_tenant_intern(s->ix, n->tenant_id, &tidx) < 0)) {
		num_svc_refresh_key(s, n->key, n->version);
		return;
	}
	e.version = (uint64_t)n->version;
	e.state = (uint8_t)n->state;
	e.tenant = tidx;
	e.vanity_tier = (uint8_t)n->vanity_tier;
	if (n->has_lease) {
		e.lease_status = (uint8_t)n->lease_status;
		e.lease_ends_at_ms = n->lease_ends_ms;
		gh_uuid_parse(n->lease_id, e.lease_id);
	} else {
		e.lease_status = NUM_LEASE_NONE;
		e.lease_ends_at_ms = 0;
		memset(e.lease_id, 0, sizeof e.lease_id);
	}
	if (num_index_upsert(s->ix, &e) == -ENOSPC)
		num_svc_refresh_key(s, n->key, n->version);
}

int num_svc_validate(num_svc_t *s, const char *ident, size_t len, const char *tenant_id,
                     int64_t now_ms, num_vresult_t *out, gh_err_t *err)
{
	if (gh_ident_normalize(NULL, GH_IDENT_AUTO, ident, len, &out->id, err) < 0) {
		if (err)
			snprintf(err->field, sizeof err->field, "/identifier");
		return -EINVAL;
	}
	if (!num_index_fresh(s->ix, now_ms, s->cfg.staleness_bound_ms))
		return -ESTALE;
	uint32_t t = NUM_TENANT_NONE;
	if (num_index_tenant_find(s->ix, tenant_id, &t) < 0)
		t = NUM_TENANT_NONE;
	if (num_validate(s->ix, out->id.key, t, now_ms, &out->v) == 0) {
		gh_counter_inc(s->c_hits);
		out->caller_is_holder = t != NUM_TENANT_NONE && out->v.entry.tenant == t;
		num_anomaly_on_validate(s, t, &out->v, now_ms);
		return 0;
	}
	gh_counter_inc(s->c_misses);
	num_index_entry_t e;
	int rc = db_entry(s, out->id.key, &e);
	if (rc == -ENOENT) {
		memset(&out->v, 0, sizeof out->v);
		out->v.reason = NUM_VR_NOT_REGISTERED;
		out->caller_is_holder = false;
		return 0;
	}
	if (rc < 0)
		return -EIO;
	/* The fill may have interned the caller's tenant just now. */
	if (num_index_tenant_find(s->ix, tenant_id, &t) < 0)
		t = NUM_TENANT_NONE;
	bool same = e.tenant != NUM_TENANT_NONE && e.tenant == t;
	num_pool_status_t pool = e.tenant != NUM_TENANT_NONE
	                             ? num_index_tenant_status(s->ix, e.tenant)
	                             : NUM_POOL_UNKNOWN;
	num_vreason_t r = num_validate_rule(&e, same, pool, now_ms);
	if (r == NUM_VR__COUNT)
		return -EIO; /* the holder's pool status is unknown even to the database read */
	out->v.reason = r;
	out->v.allowed = r == NUM_VR_ALLOWED;
	out->v.entry = e;
	out->caller_is_holder = same;
	num_anomaly_on_validate(s, t, &out->v, now_ms);
	return 0;
}

int num_svc_pool_sync(num_svc_t *s, const char *tenant_id, const char *hint)
{
	uint32_t tidx;
	num_pool_status_t st;
	json_t *pool = NULL;
	gh_err_t err = {0};
	pthread_mutex_lock(&s->pool_mu);
	int rc = num_index_tenant_intern(s->ix, tenant_id, &tidx);
	if (rc < 0)
		goto out;
	rc = s->repo ? num_repo_pool_get(s->repo, tenant_id, &pool, &err) : -EIO;
	if (rc == 0 && num_pool_status_parse(gh_json_get_str(pool, "status", ""), &st) == 0) {
		num_index_tenant_set_status(s->ix, tidx, st);
	} else if (rc == -ENOENT) {
		/* no pool: its tenant may hold nothing */
		num_index_tenant_set_status(s->ix, tidx, NUM_POOL_SUSPENDED);
		rc = 0;
	} else {
		if (hint && num_pool_status_parse(hint, &st) == 0 && st == NUM_POOL_SUSPENDED)
			num_index_tenant_set_status(s->ix, tidx, st);
		rc = -EIO;
	}
out:
	pthread_mutex_unlock(&s->pool_mu);
	json_decref(pool);
	gh_err_clear(&err);
	return rc;
}

/* ---- the invalidation consumer ----------------------------------------------------------- */

/* num.cache.invalidate.v1 data, one of:
 *   {"heartbeat_ms": <int>}                         every change committed before it is out
 *   {"key": "<uint64>", "identifier", "version"}   a number changed
 *   {"tenant_id", "pool_status"}                   a pool's status changed
 *   {"import_batch", "rows_imported"}              an MNO import added numbers */
static int on_invalidate(const gh_bus_msg_t *msg, void *ud, char *reason, size_t reason_len)
{
	num_svc_t *s = ud;
	json_error_t jerr;
	json_t *env = json_loadb(msg->data, msg->len, JSON_REJECT_DUPLICATES, &jerr);
	json_t *data = env ? json_object_get(env, "data") : NULL;
	int rc = 0;
	if (!json_is_object(data)) {
		snprintf(reason, reason_len, "not an event envelope with a data object");
		rc = GH_BUS_REJECT;
		goto out;
	}
	json_t *hb = json_object_get(data, "heartbeat_ms");
	json_t *key = json_object_get(data, "key");
	json_t *tenant = json_object_get(data, "tenant_id");
	if (json_is_integer(hb)) {
		num_index_touch(s->ix, json_integer_value(hb));
	} else if (json_is_string(key)) {
		char *end = NULL;
		errno = 0;
		unsigned long long k = strtoull(json_string_value(key), &end, 10);
		json_t *ver = json_object_get(data, "version");
		if (errno || !end || *end || k == 0 || !json_is_integer(ver) ||
		    json_integer_value(ver) < 1) {
			snprintf(reason, reason_len, "bad key or version");
			rc = GH_BUS_REJECT;
			goto out;
		}
		num_state_t st;
		if (num_state_parse(gh_json_get_str(data, "state", ""), &st) == 0)
			num_expiry_note(s->expiry, (uint64_t)k, json_integer_value(ver), st,
			                gh_json_get_int(data, "reservation_expires_ms", 0));
		rc = num_index_invalidate(s->ix, (uint64_t)k, (uint64_t)json_integer_value(ver));
		if (rc == -ENOSPC) {
			/* A new number in a full index: it stays a miss, which asks the database.
			 */
			num_index_set_complete(s->ix, false);
			rc = 0;
		}
	} else if (json_is_string(json_object_get(data, "import_batch"))) {
		/* An MNO import added numbers (import.c): too many for one message each, so the
		 * index stops answering NOT_REGISTERED by itself; misses ask the database. */
		num_index_set_complete(s->ix, false);
	} else if (json_is_string(tenant)) {
		/* Pool events carry no version: take the status from the database, not from the
		 * message, which may be older than what this replica applied already. */
		const char *hint = gh_json_get_str(data, "pool_status", NULL);
		rc = num_svc_pool_sync(s, json_string_value(tenant), hint);
		if (rc == -EINVAL || rc == -ENOSPC) {
			snprintf(reason, reason_len, "bad tenant_id or tenant table full");
			rc = GH_BUS_REJECT;
		}
	} else {
		snprintf(reason, reason_len, "data has none of heartbeat_ms, key, tenant_id");
		rc = GH_BUS_REJECT;
	}
out:
	json_decref(env);
	return rc;
}

/* ---- jobs -------------------------------------------------------------------------------- */

typedef struct {
	int64_t now_ms;
} hb_tx_t;

static int heartbeat_tx(gh_conn_t *c, void *ud)
{
	hb_tx_t *h = ud;
	json_t *data = json_pack("{sI}", "heartbeat_ms", (json_int_t)h->now_ms);
	if (!data)
		return -ENOMEM;
	gh_event_t ev = {.type = NUM_CACHE_SUBJECT,
	                 .source = NUM_SOURCE,
	                 .aggregate_id = NUM_HEARTBEAT_AGG,
	                 .time_ms = h->now_ms,
	                 .data = data};
	int rc = gh_outbox_add(c, &ev, NULL, NULL);
	json_decref(data);
	return rc;
}

/* One replica inserts a heartbeat through the outbox: the relay publishes in id order, so a
 * replica receiving it has received every invalidation committed before it. */
static int job_heartbeat(void *ud, int64_t now_ms)
{
	num_svc_t *s = ud;
	hb_tx_t h = {now_ms};
	gh_tx_opts_t o = {.flags = GH_TX_WRITE};
	int rc = gh_store_tx(s->store, heartbeat_tx, &h, &o);
	if (rc == 0 && s->app)
		gh_outbox_relay_kick(s->app->relay);
	return rc;
}

static int job_sweep(void *ud, int64_t now_ms)
{
	num_svc_t *s = ud;
	int n = num_repo_sweep_due(s->repo, now_ms, (int)s->cfg.sweep_batch);
	int64_t backlog;
	if (n >= 0 && num_repo_quarantine_backlog(s->repo, &backlog) == 0)
		gh_gauge_set(s->g_quarantine, backlog);
	if (n > 0) {
		char buf[16];
		snprintf(buf, sizeof buf, "%d", n);
		gh_log(GH_LOG_INFO, "quarantine cool-offs elapsed", "count", buf, NULL);
	}
	return n < 0 ? n : 0;
}

static int job_idem_purge(void *ud, int64_t now_ms)
{
	num_svc_t *s = ud;
	int n = gh_idem_purge(s->store, now_ms);
	return n < 0 ? n : 0;
}

/* Operators edited on another replica reach this one within a minute; the local replica
 * reloads at once after its own edits. */
static int job_operators(void *ud, int64_t now_ms)
{
	(void)now_ms;
	return num_svc_reload_operators(ud);
}

/* Every replica: gauges read from the database (pools, quarantine backlog, outbox lag), so each
 * replica's /metrics shows them, off the hot path. */
static int job_metrics(void *ud, int64_t now_ms) { return num_svc_metrics_refresh(ud, now_ms); }

/* Every replica flushes its own hot-path counters; churn is read from the database by one. */
static int job_anomaly_flush(void *ud, int64_t now_ms) { return num_anomaly_flush(ud, now_ms); }
static int job_anomaly_churn(void *ud, int64_t now_ms) { return num_anomaly_churn(ud, now_ms); }

static const gh_service_job_t num_jobs[] = {
    {"numbering-idempotency-purge", "@hourly", job_idem_purge, 0},
    {"numbering-operators-reload", "@every 1m", job_operators, 0},
    {NULL},
};

/* ---- init / stop / ready ----------------------------------------------------------------- */

static int num_ready(void *ud, char *why, size_t n)
{
	num_svc_t *s = ud;
	int64_t now = gh_clock_now_ms(s->clock);
	if (!num_index_fresh(s->ix, now, s->cfg.staleness_bound_ms)) {
		snprintf(why, n, "number index stale (no invalidation heartbeat for %lld ms)",
		         (long long)s->cfg.staleness_bound_ms);
		return -EAGAIN;
	}
	return 0;
}

static void num_stop(void *state)
{
	num_svc_t *s = state;
	num_grpc_stop(s->grpc);     /* drains in-flight calls while the state is whole */
	num_expiry_stop(s->expiry); /* the scheduler is stopped, not freed: timers cancel */
}

static int add_job(num_svc_t *s, const char *name, const char *sched, gh_sched_job_fn fn,
                   unsigned flags)
{
	gh_sched_job_def_t d = {.name = name, .schedule = sched, .fn = fn, .ud = s, .flags = flags};
	return gh_sched_job_add(s->app->sched, &d);
}

static int num_init(gh_app_t *app, void **state)
{
	num_config_t cfg;
	num_config_from(app->cfg, &cfg);
	int64_t now = gh_clock_now_ms(app->clock);
	gh_err_t err = {0};
	num_index_t *ix = NULL;
	num_repo_t *repo = NULL;
	num_svc_t *s = NULL;
	char buf[64], buf2[32];

	void *tmp = talloc_new(app->ctx);
	int rc = num_index_new(tmp, (size_t)cfg.index_capacity, (uint32_t)cfg.index_tenants, &ix);
	if (rc < 0) {
		gh_log(GH_LOG_ERROR, "numbering: cannot reserve the index", "error", strerror(-rc),
		       NULL);
		goto fail;
	}
	num_lifecycle_cfg_t lc = num_lifecycle_cfg_default;
	lc.reserve_ttl_default_s = cfg.reserve_ttl_default_s;
	lc.reserve_ttl_max_s = cfg.reserve_ttl_max_s;
	if ((rc = num_lifecycle_cfg_check(&lc)) < 0) {
		gh_log(GH_LOG_ERROR,
		       "numbering: reserve_ttl_default_s must not exceed reserve_ttl_max_s", NULL);
		goto fail;
	}
	rc = num_svc_new(tmp, ix, NULL, app->clock, app->metrics, &cfg, &s);
	if (rc < 0)
		goto fail;
	s->app = app;
	s->lifecycle = lc;
	s->idem_ttl_ms = app->cfg->idempotency.ttl_s * 1000;
	num_repo_opts_t ro = {
	    .lifecycle = &s->lifecycle, .metrics = app->metrics, .relay = app->relay};
	if ((rc = num_repo_open(s, app->store, &ro, &repo)) < 0)
		goto fail;
	s->repo = repo;
	s->store = app->store;
	if ((rc = num_ports_new(s, cfg.billing_url, cfg.senderid_url, cfg.port_timeout_ms,
	                        &s->ports)) < 0 ||
	    (rc = num_expiry_new(s, app->sched, (size_t)cfg.expiry_timers_max, &s->expiry)) < 0)
		goto fail;
	if (!*cfg.billing_url)
		gh_log(GH_LOG_WARN,
		       "numbering: no billing_url: auto_renew leases will not be renewed (each "
		       "emits number.renewal_failed.v1)",
		       NULL);
	if (!*cfg.senderid_url)
		gh_log(GH_LOG_WARN, "numbering: no senderid_url: ALPHA ids cannot be assigned",
		       NULL);

	if ((rc = num_repo_seed_operators(repo, now, &err)) < 0) {
		gh_log(GH_LOG_ERROR, "numbering: cannot seed operators", "detail", err.message,
		       NULL);
		goto fail;
	}
	if ((rc = num_svc_reload_operators(s)) < 0 || (rc = num_consumers_init(s)) < 0 ||
	    (rc = num_anomaly_init(s)) < 0 || (rc = num_export_setup(s)) < 0)
		goto fail;
	if (cfg.seed_demo) {
		bool seeded = false;
		if ((rc = num_seed_demo(s, cfg.seed_msisdns, now, &seeded, &err)) < 0) {
			gh_log(GH_LOG_ERROR, "numbering: demo seed failed", "detail", err.message,
			       NULL);
			goto fail;
		}
	}

	int64_t t0 = gh_clock_mono_ns(app->clock);
	size_t loaded = 0;
	if ((rc = num_repo_load_index(repo, ix, &loaded)) < 0 && rc != -ENOSPC) {
		gh_log(GH_LOG_ERROR, "numbering: cannot load the index", "error", strerror(-rc),
		       NULL);
		goto fail;
	}
	/* A complete index answers NOT_REGISTERED itself; a full one must ask the database. */
	num_index_set_complete(ix, rc == 0);
	if (rc == -ENOSPC)
		gh_log(GH_LOG_WARN,
		       "numbering: index full; misses go to the database (raise "
		       "numbering.index_capacity)",
		       NULL);
	num_svc_metrics_refresh(s, now); /* the job retries every 15 s */
	/* The load read every change committed before it: the index is fresh as of now. */
	num_index_touch(ix, gh_clock_now_ms(app->clock));
	num_index_stats_t st;
	num_index_stats(ix, &st);
	snprintf(buf, sizeof buf, "%zu", loaded);
	snprintf(buf2, sizeof buf2, "%.1f", (double)(gh_clock_mono_ns(app->clock) - t0) / 1e6);
	gh_log(GH_LOG_INFO, "numbering: index loaded", "numbers", buf, "ms", buf2, NULL);

	/* timers for the reservations committed before this start; later ones come with the
	 * invalidation stream, which also carries this replica's own commits */
	if ((rc = num_expiry_load(s->expiry)) < 0) {
		gh_log(GH_LOG_ERROR, "numbering: cannot read the live reservations", "error",
		       strerror(-rc), NULL);
		goto fail;
	}
	const unsigned L = GH_SCHED_LEASED;
	if ((rc = add_job(s, "numbering-heartbeat", cfg.heartbeat, job_heartbeat, L)) < 0 ||
	    (rc = add_job(s, "numbering-reservation-expiry", cfg.reservation_sweep,
	                  num_job_reservation_sweep, L)) < 0 ||
	    (rc = add_job(s, "numbering-quarantine-sweep", cfg.quarantine_sweep, job_sweep, L)) <
	        0 ||
	    (rc = add_job(s, "numbering-lease-renewal", cfg.renewal, num_job_renewal, L)) < 0 ||
	    (rc = add_job(s, "numbering-lease-end", cfg.lease_end, num_job_lease_end, L)) < 0 ||
	    (rc = add_job(s, "numbering-audit-verify", cfg.audit_verify, num_job_audit_verify, L)) <
	        0 ||
	    (rc = add_job(s, "numbering-metrics", cfg.metrics_refresh, job_metrics, 0)) < 0 ||
	    (rc = add_job(s, "numbering-anomaly-flush", cfg.anomaly_flush, job_anomaly_flush, 0)) <
	        0 ||
	    (rc = add_job(s, "numbering-anomaly-churn", cfg.anomaly_churn_check, job_anomaly_churn,
	                  L)) < 0 ||
	    (rc = add_job(s, "numbering-regulator-export", cfg.export_schedule, num_export_job,
	                  L)) < 0)
		goto fail;
	if (cfg.grpc_port > 0) {
		/* TLS with client-certificate verification when http.tls_cert is set (the HTTP
		 * server's files and CN allowlist); as the HTTP internal routes, plaintext only in
		 * the embedded profile. */
		const gh_config_http_t *hc = &app->cfg->http;
		bool tls = hc->tls_cert && hc->tls_cert[0];
		if (!tls && app->cfg->service.profile != GH_PROFILE_EMBEDDED) {
			gh_log(GH_LOG_ERROR,
			       "numbering: the gRPC surface needs TLS (http.tls_cert, tls_key, "
			       "tls_client_ca) outside the embedded profile",
			       NULL);
			rc = -EINVAL;
			goto fail;
		}
		num_grpc_opts_t go = {.bind = cfg.grpc_bind,
		                      .port = (int)cfg.grpc_port,
		                      .threads = (int)cfg.grpc_threads,
		                      .drain_ms = cfg.grpc_drain_ms,
		                      .tls_cert = hc->tls_cert,
		                      .tls_key = hc->tls_key,
		                      .tls_client_ca = hc->tls_client_ca,
		                      .client_cn_allowlist =
		                          (const char *const *)hc->client_cn_allowlist.v};
		if ((rc = num_grpc_start(s, s, &go, &s->grpc, &err)) < 0) {
			gh_log(GH_LOG_ERROR, "numbering: cannot start the gRPC server", "detail",
			       err.message, NULL);
			goto fail;
		}
		snprintf(buf, sizeof buf, "%lld", (long long)cfg.grpc_port);
		gh_log(GH_LOG_INFO, "numbering: gRPC listening", "port", buf, "tls",
		       tls ? "mtls" : "off", NULL);
	}
	talloc_steal(app->ctx, ix);
	talloc_steal(app->ctx, s);
	talloc_free(tmp);
	*state = s;
	return 0;
fail:
	if (s) {
		num_grpc_stop(s->grpc);
		num_expiry_stop(s->expiry);
	}
	gh_err_clear(&err);
	talloc_free(tmp);
	return rc < 0 ? rc : -EIO;
}

/* Every replica applies every invalidation to its own index: a per-instance consumer, which the
 * app subscribes before num_init loads the index, so nothing committed after the load is
 * missed (earlier changes are in the load; replays are harmless, entries carry versions). */
static const gh_service_consumer_t num_consumers[] = {
    {NUM_CACHE_SUBJECT, "numcache", on_invalidate, .per_instance = 1},
    /* Events of other services (consumers.c): durables shared by the replicas, so each event
     * is handled by one of them. */
    {"compliance.tenant.suspended.v1", "numbering-compliance-tenant-suspended", num_on_event},
    {"tenant.deleted.v1", "numbering-tenant-deleted", num_on_event},
    {"senderid.revoked.v1", "numbering-senderid-revoked", num_on_event},
    {"billing.account.delinquent.v1", "numbering-billing-delinquent", num_on_event},
    {"billing.account.paid.v1", "numbering-billing-paid", num_on_event},
    {NULL},
};

static const char *const num_subjects[] = {"number.*.v1", NUM_CACHE_SUBJECT, "numbering.>", NULL};

const gh_service_t num_service = {
    .name = "numbering",
    .migrations = "numbering",
    .subjects = num_subjects,
    .init = num_init,
    .stop = num_stop,
    .routes = num_routes,
    .jobs = num_jobs,
    .consumers = num_consumers,
    .ready = num_ready,
    .consumes = num_consumed_subjects,
};
