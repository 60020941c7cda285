/* num_export: the monthly regulator export on SQLite and PostgreSQL. A scripted sequence of
 * transitions spanning months (explicit timestamps, test clock for the exporter); the month's
 * inventory and events checked row by row; the signature checked by `openssl pkeyutl` and by
 * `ghasi numbering verify-export`; regeneration after later (and late-stamped) transitions is
 * byte-identical; the archive refuses other bytes under an archived name (and an export signed
 * with another key); a dry run writes nothing; a quiet month is closed in the chain; PKCS#11
 * signing through SoftHSM2; verify-export catches a modified CSV, a modified manifest and a
 * wrong key; the event is emitted once; the monthly job; the admin API through `ghasi serve`
 * with JWT roles. */
#include <dlfcn.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <talloc.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

#include "export.h"
#include "gh-core.h"
#include "ghasiproc.h"
#include "httpc.h"
#include "jwtmint.h"
#include "numfx.h"
#include "repo.h"
#include "softhsm.h"
#include "testutil.h"

#define SOFTHSM_MODULE GH_TEST_SOFTHSM_MODULE
#define JWT_SECRET     "export-test-secret-0123456789abcdef"

/* LeakSanitizer: SoftHSM 2.6.1 leaks one ASN.1 string per EdDSA signature inside the module
 * (sign_test.c); only stacks through it are suppressed, which needs the slow unwinder
 * (Debian's libcrypto has no frame pointers). */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libsofthsm2.so\n"; }
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "fast_unwind_on_malloc=0"; }

extern char **environ;

#define A "+93701000001"
#define B "+93701000002"
#define C "+93701000003"
#define D "+93791000004"

typedef struct {
	void *ctx;
	char *dir;
	char *url;
	gh_test_backend_t b;
	gh_store_t *store;
	num_repo_t *repo;
	gh_clock_t *clock;
	gh_archive_t *ar;
	gh_signer_t *signer;
	num_export_t *x;
} fx_t;

static int64_t at(const char *t)
{
	int64_t ms;
	assert_int_equal(gh_time_parse(t, &ms), 0);
	return ms;
}

static char *path(fx_t *fx, const char *name)
{
	return talloc_asprintf(fx->ctx, "%s/%s", fx->dir, name);
}

/* Run argv (stdout and stderr to /dev/null); its exit status, or -1. */
static int run(const char *const argv[])
{
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	pid_t pid;
	int rc = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0)
		return -1;
	int st;
	if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

static int have_tool(const char *name)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "command -v %s", name);
	const char *argv[] = {"sh", "-c", cmd, NULL};
	return run(argv) == 0;
}

static void write_file(const char *p, const void *data, size_t len)
{
	FILE *f = fopen(p, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static char *read_file(void *ctx, const char *p, size_t *len)
{
	FILE *f = fopen(p, "rb");
	assert_non_null(f);
	char *b = talloc_size(ctx, 4 << 20);
	*len = fread(b, 1, (4 << 20) - 1, f);
	fclose(f);
	b[*len] = 0;
	return b;
}

/* An Ed25519 key pair made by the openssl CLI: <name>.pem (private) and <name>.pub.pem. */
static void make_key(fx_t *fx, const char *name)
{
	char *priv = path(fx, talloc_asprintf(fx->ctx, "%s.pem", name));
	char *pub = path(fx, talloc_asprintf(fx->ctx, "%s.pub.pem", name));
	const char *g[] = {"openssl", "genpkey", "-algorithm", "ed25519", "-out", priv, NULL};
	assert_int_equal(run(g), 0);
	const char *p[] = {"openssl", "pkey", "-in", priv, "-pubout", "-out", pub, NULL};
	assert_int_equal(run(p), 0);
}

static gh_signer_t *pem_signer(fx_t *fx, const char *name)
{
	gh_signer_t *s;
	assert_int_equal(gh_signer_pem_open(fx->ctx,
	                                    path(fx, talloc_asprintf(fx->ctx, "%s.pem", name)),
	                                    GH_SIGN_AUTO, &s),
	                 0);
	return s;
}

static num_export_t *exporter(fx_t *fx, gh_signer_t *signer, gh_archive_t *ar)
{
	num_export_t *x;
	num_export_opts_t o = {
	    .store = fx->store, .clock = fx->clock, .signer = signer, .archive = ar};
	assert_int_equal(num_export_new(fx->ctx, &o, &x), 0);
	return x;
}

static void put_pool(fx_t *fx, const char *tenant)
{
	json_t *b =
	    json_pack("{ss s{si si si} si sb}", "segment", "enterprise", "quotas", "MSISDN", 100,
	              "SHORT_CODE", 10, "ALPHA", 10, "max_reservations", 100, "direct_assign", 0);
	json_object_set_new(b, "vanity_allowed", json_true());
	json_t *out = NULL;
	gh_err_t err = {0};
	int rc = num_repo_pool_put(fx->repo, tenant, b, -1, "admin:test",
	                           at("2026-09-01T00:00:00Z"), &out, &err);
	if (rc != 0)
		fail_msg("pool put %s: %s", tenant, err.message);
	json_decref(out);
	json_decref(b);
}

static uint64_t key_of(const char *ident)
{
	gh_ident_t id;
	assert_int_equal(gh_ident_normalize(NULL, GH_IDENT_AUTO, ident, strlen(ident), &id, NULL),
	                 0);
	return id.key;
}

static void tx(fx_t *fx, const char *ident, num_action_t a, num_role_t role, const char *tenant,
               const char *when)
{
	num_tx_req_t req = {.key = key_of(ident),
	                    .action = a,
	                    .role = role,
	                    .tenant_id = tenant,
	                    .actor = tenant ? talloc_asprintf(fx->ctx, "tenant:%s", tenant)
	                                    : "admin:alice",
	                    .expected_version = -1,
	                    .auto_renew = -1,
	                    .now_ms = at(when)};
	num_number_t n;
	gh_err_t err = {0};
	int rc = num_repo_transition(fx->repo, &req, &n, &err);
	if (rc != 0)
		fail_msg("%s %s at %s: %s", num_action_name(a), ident, when, err.message);
}

static int64_t q_i64(fx_t *fx, const char *sql)
{
	gh_conn_t *c;
	assert_int_equal(gh_store_acquire(fx->store, 5000, &c), 0);
	gh_rows_t *r;
	assert_int_equal(gh_conn_query_one(c, sql, NULL, 0, &r), 0);
	int64_t v = gh_rows_i64(r, 0);
	gh_rows_close(r);
	gh_store_release(c);
	return v;
}

#define EVENTS_EMITTED(fx)                                          \
	q_i64(fx, "SELECT count(*) FROM gh_outbox WHERE subject = " \
	          "'numbering.regulator.export.generated.v1'")
#define AUDIT_ROWS(fx) q_i64(fx, "SELECT count(*) FROM gh_audit WHERE chain = 'numbering'")

/* The database of the scenario: four numbers added in September, then
 *   A: reserved 09-20, assigned 10-03 (lease 30 d), suspended 10-25, resumed 11-05
 *   B: reserved 10-10 and assigned 10-12 by t2, released 10-20 (quarantine TENANT_RELEASE)
 *   C: reserved 10-31T23:59:59.999 by t1, assigned 11-01T00:00:00.000 (the first row of
 *      November: the boundary)
 *   D: untouched. */
static int fx_open(fx_t *fx, gh_test_backend_t b)
{
	memset(fx, 0, sizeof(*fx));
	fx->b = b;
	fx->ctx = talloc_new(NULL);
	if (gh_test_num_db_open(fx->ctx, b, NULL, &fx->dir, &fx->url, &fx->store) < 0) {
		talloc_free(fx->ctx);
		return -1;
	}
	gh_err_t err = {0};
	assert_int_equal(num_repo_open(fx->ctx, fx->store, &(num_repo_opts_t){0}, &fx->repo), 0);
	assert_int_equal(num_repo_seed_operators(fx->repo, at("2026-09-01T00:00:00Z"), &err), 0);
	put_pool(fx, "t1");
	put_pool(fx, "t2");
	num_new_t nums[] = {{A, GH_IDENT_AUTO, "awcc", 0},
	                    {B, GH_IDENT_AUTO, "awcc", 2},
	                    {C, GH_IDENT_AUTO, "awcc", 0},
	                    {D, GH_IDENT_AUTO, "roshan", 0}};
	assert_int_equal(
	    num_repo_add(fx->repo, nums, 4, "admin:alice", at("2026-09-10T00:00:00Z"), &err), 0);
	tx(fx, A, NUM_ACT_RESERVE, NUM_ROLE_TENANT, "t1", "2026-09-20T00:00:00Z");
	tx(fx, A, NUM_ACT_ASSIGN, NUM_ROLE_TENANT, "t1", "2026-10-03T00:00:00Z");
	tx(fx, B, NUM_ACT_RESERVE, NUM_ROLE_TENANT, "t2", "2026-10-10T00:00:00Z");
	tx(fx, B, NUM_ACT_ASSIGN, NUM_ROLE_TENANT, "t2", "2026-10-12T00:00:00Z");
	tx(fx, B, NUM_ACT_RELEASE, NUM_ROLE_TENANT, "t2", "2026-10-20T00:00:00Z");
	tx(fx, A, NUM_ACT_SUSPEND, NUM_ROLE_ADMIN, NULL, "2026-10-25T00:00:00Z");
	tx(fx, C, NUM_ACT_RESERVE, NUM_ROLE_TENANT, "t1", "2026-10-31T23:59:59.999Z");
	tx(fx, C, NUM_ACT_ASSIGN, NUM_ROLE_TENANT, "t1", "2026-11-01T00:00:00Z");
	tx(fx, A, NUM_ACT_RESUME, NUM_ROLE_ADMIN, NULL, "2026-11-05T00:00:00Z");
	fx->clock = gh_clock_test_new(fx->ctx, at("2026-12-02T09:00:00Z"));
	assert_int_equal(gh_archive_open(fx->ctx, path(fx, "archive"), fx->clock, &fx->ar), 0);
	make_key(fx, "k1");
	fx->signer = pem_signer(fx, "k1");
	fx->x = exporter(fx, fx->signer, fx->ar);
	return 0;
}

static void fx_close(fx_t *fx)
{
	talloc_free(fx->ctx);
	gh_test_num_db_free(fx->dir, fx->url);
}

#define BOTH(name) GH_TEST_NUM_BOTH(name, fx_t, fx_open, fx_close)

static num_export_result_t *gen(fx_t *fx, num_export_t *x, const char *month, bool dry)
{
	num_export_result_t *r;
	gh_err_t err = {0};
	int rc = num_export_generate(x, month, dry, "admin:test", "req-x", fx->ctx, &r, &err);
	if (rc != 0)
		fail_msg("export %s: %d %s", month, rc, err.message);
	gh_err_clear(&err);
	return r;
}

/* The files of r written to <dir>/<sub>/; returns that directory. */
static char *write_out(fx_t *fx, const num_export_result_t *r, const char *sub)
{
	char *d = path(fx, sub);
	mkdir(d, 0755);
	for (int i = 0; i < NUM_EXPORT_FILES; i++)
		write_file(talloc_asprintf(fx->ctx, "%s/%s", d, r->files[i].name), r->files[i].data,
		           r->files[i].len);
	return d;
}

static void same_files(const num_export_result_t *a, const num_export_result_t *b)
{
	for (int i = 0; i < NUM_EXPORT_FILES; i++) {
		assert_int_equal(a->files[i].len, b->files[i].len);
		assert_memory_equal(a->files[i].data, b->files[i].data, a->files[i].len);
		assert_string_equal(a->files[i].sha256, b->files[i].sha256);
	}
}

static int verify_cli(const char *key, const char *file)
{
	const char *bin = getenv("GHASI_BIN");
	assert_non_null(bin);
	const char *v[] = {bin, "numbering", "verify-export", "--key", key, file, NULL};
	return run(v);
}

static int openssl_verify(const char *pub, const char *dir)
{
	char in[512], sig[512];
	snprintf(in, sizeof in, "%s/manifest.json", dir);
	snprintf(sig, sizeof sig, "%s/manifest.sig", dir);
	const char *v[] = {"openssl", "pkeyutl", "-verify", "-pubin",   "-inkey", pub,
	                   "-rawin",  "-in",     in,        "-sigfile", sig,      NULL};
	return run(v);
}

static const char *line_of(const num_export_result_t *r, int file, const char *prefix)
{
	const char *p = r->files[file].data;
	size_t n = strlen(prefix);
	for (;;) {
		if (strncmp(p, prefix, n) == 0)
			return p;
		p = strstr(p, "\r\n");
		if (!p)
			return "";
		p += 2;
	}
}

static int64_t count_lines(const num_export_result_t *r, int file)
{
	int64_t n = 0;
	for (const char *p = r->files[file].data; (p = strstr(p, "\r\n")); p += 2)
		n++;
	return n;
}

/* ---- the month's content ---------------------------------------------------------------- */

static void test_month_content_on(fx_t *fx)
{
	int64_t audit0 = AUDIT_ROWS(fx);
	num_export_result_t *r = gen(fx, fx->x, "2026-10", true);
	assert_true(r->month_closed);
	/* nothing written by a dry run: no audit row, no record, no event, no archive name */
	assert_int_equal(AUDIT_ROWS(fx), audit0);
	assert_int_equal(q_i64(fx, "SELECT count(*) FROM num_exports"), 0);
	assert_int_equal(EVENTS_EMITTED(fx), 0);
	gh_archive_ref_t *ref;
	assert_int_equal(
	    gh_archive_stat(fx->ar, "numbering/regulator/2026-10/manifest.json", fx->ctx, &ref),
	    -ENOENT);
	assert_false(r->archived);

	/* inventory at 2026-11-01T00:00:00Z, by identifier */
	const char *inv = r->files[0].data;
	assert_int_equal(strncmp(inv,
	                         "identifier,kind,operator_id,vanity_tier,state,tenant_id,lease_id,"
	                         "lease_status,lease_start,lease_end,quarantine_reason,"
	                         "previous_tenant_id,last_seq\r\n",
	                         strlen("identifier,kind,")),
	                 0);
	assert_int_equal(r->files[0].rows, 4);
	assert_int_equal(count_lines(r, 0), 5);
	const char *la = line_of(r, 0, A ",");
	assert_non_null(strstr(la, A ",MSISDN,awcc,0,SUSPENDED,t1,"));
	assert_non_null(
	    strstr(la, ",SUSPENDED,2026-10-03T00:00:00.000Z,2026-11-02T00:00:00.000Z,,,"));
	assert_int_equal(strncmp(line_of(r, 0, B ","),
	                         B ",MSISDN,awcc,2,QUARANTINED,,,,,,"
	                           "TENANT_RELEASE,t2,",
	                         strlen(B ",MSISDN,awcc,2,QUARANTINED,,,,,,TENANT_RELEASE,t2,")),
	                 0);
	assert_int_equal(strncmp(line_of(r, 0, C ","), C ",MSISDN,awcc,0,RESERVED,t1,,,,,,,",
	                         strlen(C ",MSISDN,awcc,0,RESERVED,t1,,,,,,,")),
	                 0);
	assert_int_equal(strncmp(line_of(r, 0, D ","), D ",MSISDN,roshan,0,AVAILABLE,,,,,,,,",
	                         strlen(D ",MSISDN,roshan,0,AVAILABLE,,,,,,,,")),
	                 0);
	/* byte order of the identifiers: A < B < C < D */
	assert_true(strstr(inv, A) < strstr(inv, B) && strstr(inv, B) < strstr(inv, C) &&
	            strstr(inv, C) < strstr(inv, D));

	/* the six October events, in chain order, C's reserve one millisecond before the end */
	assert_int_equal(r->files[1].rows, 6);
	assert_int_equal(count_lines(r, 1), 7);
	const char *ev = r->files[1].data;
	const char *order[] = {
	    ",2026-10-03T00:00:00.000Z," A ",number.assign,RESERVED,ASSIGNED,t1,",
	    ",2026-10-10T00:00:00.000Z," B ",number.reserve,AVAILABLE,RESERVED,t2,",
	    ",2026-10-12T00:00:00.000Z," B ",number.assign,RESERVED,ASSIGNED,t2,",
	    ",2026-10-20T00:00:00.000Z," B
	    ",number.release,ASSIGNED,QUARANTINED,t2,,TENANT_RELEASE,tenant:t2,",
	    ",2026-10-25T00:00:00.000Z," A ",number.suspend,ASSIGNED,SUSPENDED,t1,",
	    ",2026-10-31T23:59:59.999Z," C ",number.reserve,AVAILABLE,RESERVED,t1,,,tenant:t1,"};
	const char *prev = ev;
	for (size_t i = 0; i < 6; i++) {
		const char *p = strstr(ev, order[i]);
		if (!p)
			fail_msg("event %zu missing: %s\n%s", i, order[i], ev);
		assert_true(p > prev);
		prev = p;
	}
	assert_null(strstr(ev, "2026-11-01T00:00:00.000Z"));
	assert_null(strstr(ev, "2026-09-"));
	assert_int_equal(r->last_seq + 1,
	                 q_i64(fx, "SELECT min(seq) FROM gh_audit WHERE chain = 'numbering' AND "
	                           "ts_ms >= 1793491200000")); /* 2026-11-01 */

	/* the manifest: canonical JSON naming the chain segment, the files and the key */
	json_t *m = json_loadb(r->files[2].data, r->files[2].len, 0, NULL);
	assert_non_null(m);
	char *canon = gh_json_canonical(m, fx->ctx);
	assert_string_equal(canon, r->files[2].data);
	assert_string_equal(gh_json_get_str(m, "month", ""), "2026-10");
	assert_string_equal(gh_json_get_str(m, "algorithm", ""), "ed25519");
	assert_string_equal(gh_json_get_str(m, "data_up_to", ""), "2026-11-01T00:00:00.000Z");
	assert_string_equal(gh_json_get_str(m, "key_id", ""),
	                    gh_sign_pubkey_id(gh_signer_pubkey(fx->signer)));
	json_t *ch = json_object_get(m, "audit_chain");
	assert_int_equal(gh_json_get_int(ch, "last_seq", 0), r->last_seq);
	assert_string_equal(gh_json_get_str(ch, "last_hash", ""), r->chain_hash);
	json_t *f0 = json_array_get(json_object_get(m, "files"), 0);
	assert_string_equal(gh_json_get_str(f0, "sha256", ""), r->files[0].sha256);
	assert_int_equal(gh_json_get_int(f0, "rows", 0), 4);
	json_decref(m);
	char hash[65];
	int64_t seq = r->last_seq;
	gh_conn_t *c;
	gh_rows_t *rs;
	assert_int_equal(gh_store_acquire(fx->store, 5000, &c), 0);
	assert_int_equal(gh_conn_query_one(c,
	                                   "SELECT hash FROM gh_audit WHERE chain = 'numbering' "
	                                   "AND seq = $1",
	                                   (gh_val_t[]){GH_I64(seq)}, 1, &rs),
	                 0);
	snprintf(hash, sizeof hash, "%s", gh_rows_text(rs, 0));
	gh_rows_close(rs);
	gh_store_release(c);
	assert_string_equal(hash, r->chain_hash);
}
BOTH(test_month_content)

/* ---- archive, signature, regeneration, event once --------------------------------------- */

static void test_archive_and_regenerate_on(fx_t *fx)
{
	num_export_result_t *dry = gen(fx, fx->x, "2026-10", true);
	num_export_result_t *r = gen(fx, fx->x, "2026-10", false);
	assert_true(r->archived);
	assert_true(r->recorded);
	same_files(dry, r);
	assert_int_equal(EVENTS_EMITTED(fx), 1);
	assert_int_equal(q_i64(fx, "SELECT count(*) FROM num_exports WHERE month = '2026-10'"), 1);
	assert_int_equal(q_i64(fx, "SELECT count(*) FROM gh_audit WHERE action = "
	                           "'regulator_export.generated'"),
	                 1);

	/* the archived bytes are the generated ones, kept 7 years after the month */
	void *data;
	size_t len;
	gh_archive_ref_t *ref;
	assert_int_equal(gh_archive_get(fx->ar, "numbering/regulator/2026-10/inventory.csv",
	                                fx->ctx, &data, &len, &ref),
	                 0);
	assert_int_equal(len, r->files[0].len);
	assert_memory_equal(data, r->files[0].data, len);
	assert_int_equal(ref->retention_until_ms, at("2033-11-01T00:00:00Z"));

	/* openssl and verify-export accept the files */
	char *out = write_out(fx, r, "out");
	char *pub = path(fx, "k1.pub.pem");
	assert_int_equal(openssl_verify(pub, out), 0);
	assert_int_equal(verify_cli(pub, talloc_asprintf(fx->ctx, "%s/manifest.json", out)), 0);
	assert_int_equal(verify_cli(pub, talloc_asprintf(fx->ctx, "%s/events.csv", out)), 0);

	/* more transitions, one of them stamped in October but committed now (a late row) */
	int64_t last = r->last_seq;
	tx(fx, D, NUM_ACT_RESERVE, NUM_ROLE_TENANT, "t2", "2026-10-30T12:00:00Z");
	tx(fx, A, NUM_ACT_RELEASE, NUM_ROLE_TENANT, "t1", "2026-12-01T00:00:00Z");
	tx(fx, C, NUM_ACT_SUSPEND, NUM_ROLE_ADMIN, NULL, "2026-12-01T10:00:00Z");
	gh_clock_test_set(fx->clock, at("2027-01-15T00:00:00Z"));
	num_export_result_t *again = gen(fx, fx->x, "2026-10", false);
	same_files(r, again);
	assert_int_equal(again->last_seq, last);
	assert_true(again->archived);
	assert_false(again->recorded);
	assert_int_equal(EVENTS_EMITTED(fx), 1);
	/* the late row is reported with the month whose chain segment holds it: the export of
	 * October (generated 2026-12-02, a row stamped in December) closed November, so it is
	 * December's, in chain order */
	num_export_result_t *nov = gen(fx, fx->x, "2026-11", true);
	assert_null(strstr(nov->files[1].data, "2026-10-30T12:00:00.000Z"));
	assert_non_null(strstr(nov->files[0].data, D ",MSISDN,roshan,0,AVAILABLE,"));
	num_export_result_t *dec = gen(fx, fx->x, "2026-12", true);
	const char *late = strstr(dec->files[1].data, ",2026-10-30T12:00:00.000Z," D
	                                              ",number.reserve,AVAILABLE,RESERVED,t2,");
	assert_non_null(late);
	assert_true(late < strstr(dec->files[1].data, ",2026-12-01T00:00:00.000Z," A));
	assert_non_null(strstr(dec->files[0].data, D ",MSISDN,roshan,0,RESERVED,t2,"));

	/* the archive refuses other bytes under an archived name */
	assert_int_equal(gh_archive_put(fx->ar, "numbering/regulator/2026-10/events.csv", "x", 1,
	                                at("2034-01-01T00:00:00Z"), NULL, fx->ctx, NULL),
	                 -EEXIST);
	/* and so an export of the month signed with another key is a CONFLICT, not written */
	make_key(fx, "k2");
	num_export_t *x2 = exporter(fx, pem_signer(fx, "k2"), fx->ar);
	num_export_result_t *bad;
	gh_err_t err = {0};
	assert_int_equal(num_export_generate(x2, "2026-10", false, NULL, NULL, fx->ctx, &bad, &err),
	                 -EEXIST);
	assert_int_equal(err.code, GH_E_CONFLICT);
	gh_err_clear(&err);
	assert_int_equal(EVENTS_EMITTED(fx), 1);
	assert_int_equal(gh_archive_get(fx->ar, "numbering/regulator/2026-10/manifest.sig", fx->ctx,
	                                &data, &len, NULL),
	                 0);
	assert_memory_equal(data, r->files[3].data, len);
	/* k2's dry run differs from k1's only through the key: the CSVs are the same */
	num_export_result_t *d2 = gen(fx, x2, "2026-10", true);
	assert_string_equal(d2->files[0].sha256, r->files[0].sha256);
	assert_string_equal(d2->files[1].sha256, r->files[1].sha256);
	assert_string_not_equal(d2->files[2].sha256, r->files[2].sha256);
	/* verifying with the wrong key is a mismatch */
	assert_int_equal(
	    verify_cli(path(fx, "k2.pub.pem"), talloc_asprintf(fx->ctx, "%s/manifest.json", out)),
	    1);

	/* recorded exports */
	json_t *list, *one;
	assert_int_equal(num_export_list(fx->x, &list, &err), 0);
	assert_int_equal(json_array_size(json_object_get(list, "exports")), 1);
	json_decref(list);
	assert_int_equal(num_export_get(fx->x, "2026-10", &one, &err), 0);
	assert_string_equal(gh_json_get_str(one, "manifest_sha256", ""), r->files[2].sha256);
	assert_string_equal(gh_json_get_str(one, "event_id", ""), r->event_id);
	json_t *files = json_object_get(one, "files");
	assert_int_equal(json_array_size(files), 4);
	assert_string_equal(gh_json_get_str(json_array_get(files, 1), "sha256", ""),
	                    r->files[1].sha256);
	json_decref(one);
	assert_int_equal(num_export_get(fx->x, "2026-09", &one, &err), -ENOENT);
	gh_err_clear(&err);
	assert_int_equal(
	    num_export_file(fx->x, "2026-10", "manifest.json", fx->ctx, &data, &len, &err), 0);
	assert_int_equal(len, r->files[2].len);
	assert_int_equal(
	    num_export_file(fx->x, "2026-10", "../etc/passwd", fx->ctx, &data, &len, &err),
	    -EINVAL);
	gh_err_clear(&err);
}
BOTH(test_archive_and_regenerate)

/* ---- verify-export catches modifications -------------------------------------------------- */

static void flip_byte(const char *p, size_t at_off)
{
	size_t len;
	void *ctx = talloc_new(NULL);
	char *b = read_file(ctx, p, &len);
	assert_true(at_off < len);
	b[at_off] = b[at_off] == '1' ? '2' : '1';
	write_file(p, b, len);
	talloc_free(ctx);
}

static void test_verify_detects_tampering_on(fx_t *fx)
{
	num_export_result_t *r = gen(fx, fx->x, "2026-10", true);
	char *pub = path(fx, "k1.pub.pem");
	char *d1 = write_out(fx, r, "csv");
	assert_int_equal(verify_cli(pub, talloc_asprintf(fx->ctx, "%s/manifest.json", d1)), 0);
	/* one byte of a CSV: its hash no longer matches the manifest */
	flip_byte(talloc_asprintf(fx->ctx, "%s/events.csv", d1), r->files[1].len - 10);
	assert_int_equal(verify_cli(pub, talloc_asprintf(fx->ctx, "%s/manifest.json", d1)), 1);
	assert_int_equal(openssl_verify(pub, d1), 0); /* the manifest itself is intact */

	/* one byte of the manifest: the signature fails (openssl agrees) */
	char *d2 = write_out(fx, r, "manifest");
	const char *digit = strstr(r->files[2].data, "\"rows\":") + 7;
	flip_byte(talloc_asprintf(fx->ctx, "%s/manifest.json", d2),
	          (size_t)(digit - r->files[2].data));
	assert_int_equal(verify_cli(pub, talloc_asprintf(fx->ctx, "%s/manifest.json", d2)), 1);
	assert_int_not_equal(openssl_verify(pub, d2), 0);

	/* a missing CSV is a mismatch; no --key is a usage error */
	char *d3 = write_out(fx, r, "missing");
	unlink(talloc_asprintf(fx->ctx, "%s/inventory.csv", d3));
	assert_int_equal(verify_cli(pub, talloc_asprintf(fx->ctx, "%s/manifest.json", d3)), 1);
	const char *v[] = {getenv("GHASI_BIN"), "numbering", "verify-export",
	                   talloc_asprintf(fx->ctx, "%s/manifest.json", d1), NULL};
	assert_int_equal(run(v), 2);

	/* the library call reports the same */
	assert_int_equal(
	    num_export_verify(talloc_asprintf(fx->ctx, "%s/manifest.json", d2), NULL, pub, NULL),
	    -EBADMSG);
}
BOTH(test_verify_detects_tampering)

/* ---- quiet months, bad months, the monthly job ------------------------------------------- */

static void test_quiet_month_and_job_on(fx_t *fx)
{
	gh_err_t err = {0};
	num_export_result_t *r;
	/* December has no row stamped in January yet: the dry run covers the chain as it is */
	gh_clock_test_set(fx->clock, at("2027-01-01T00:30:00Z"));
	num_export_result_t *dry = gen(fx, fx->x, "2026-12", true);
	assert_false(dry->month_closed);
	int64_t audit0 = AUDIT_ROWS(fx);
	/* the real run closes the month with one chain row, and gives the same files */
	num_export_result_t *real = gen(fx, fx->x, "2026-12", false);
	assert_true(real->month_closed);
	same_files(dry, real);
	assert_int_equal(q_i64(fx, "SELECT count(*) FROM gh_audit WHERE action = "
	                           "'chain.month_closed'"),
	                 1);
	assert_int_equal(AUDIT_ROWS(fx), audit0 + 2); /* closed + generated */
	/* a row stamped in December committed after the closing goes to January */
	tx(fx, D, NUM_ACT_RESERVE, NUM_ROLE_TENANT, "t1", "2026-12-31T23:59:59Z");
	num_export_result_t *again = gen(fx, fx->x, "2026-12", false);
	same_files(real, again);

	/* months that have not ended, or are not months */
	assert_int_equal(num_export_generate(fx->x, "2027-01", true, NULL, NULL, fx->ctx, &r, &err),
	                 -EINVAL);
	assert_int_equal(num_export_generate(fx->x, "2026-13", true, NULL, NULL, fx->ctx, &r, &err),
	                 -EINVAL);
	assert_int_equal(num_export_generate(fx->x, "2026-1", true, NULL, NULL, fx->ctx, &r, &err),
	                 -EINVAL);
	/* no key: FAILED_PRECONDITION; no archive: dry runs only */
	num_export_t *nokey = exporter(fx, NULL, fx->ar);
	assert_int_equal(num_export_generate(nokey, "2026-10", true, NULL, NULL, fx->ctx, &r, &err),
	                 -EPROTO);
	num_export_t *noar = exporter(fx, fx->signer, NULL);
	assert_int_equal(num_export_generate(noar, "2026-10", false, NULL, NULL, fx->ctx, &r, &err),
	                 -EPROTO);
	gen(fx, noar, "2026-10", true);
	gh_err_clear(&err);

	/* the job at 01:00 on the 1st exports the previous month */
	char prev[NUM_EXPORT_MONTH_LEN];
	num_export_prev_month(at("2027-01-01T01:00:00Z"), prev);
	assert_string_equal(prev, "2026-12");
	num_export_prev_month(at("2027-03-01T01:00:00Z"), prev);
	assert_string_equal(prev, "2027-02");
	gh_clock_test_set(fx->clock, at("2026-12-01T01:00:00Z"));
	assert_int_equal(num_export_run_monthly(fx->x, at("2026-12-01T01:00:00Z")), 0);
	assert_int_equal(q_i64(fx, "SELECT count(*) FROM num_exports WHERE month = '2026-11'"), 1);
	assert_int_equal(num_export_run_monthly(fx->x, at("2026-12-01T01:00:00Z")), 0);
	assert_int_equal(EVENTS_EMITTED(fx), 2); /* 2026-12 and 2026-11, once each */
	/* the schedule of the job fires at 01:00 UTC on the 1st */
	gh_cron_t cron;
	assert_int_equal(gh_cron_parse("0 1 1 * *", &cron, NULL, 0), 0);
	assert_int_equal(gh_cron_next(&cron, at("2026-11-22T08:00:00Z")),
	                 at("2026-12-01T01:00:00Z"));
}
BOTH(test_quiet_month_and_job)

/* ---- PKCS#11 through SoftHSM2 --------------------------------------------------------------- */

static void test_pkcs11_signing_on(fx_t *fx)
{
	if (access(SOFTHSM_MODULE, R_OK) != 0 || !have_tool("softhsm2-util")) {
		if (gh_test_required())
			fail_msg("softhsm2 missing (scripts/deps.sh installs it)");
		skip();
	}
	char *tokens = path(fx, "tokens");
	assert_int_equal(mkdir(tokens, 0700), 0);
	char *conf = talloc_asprintf(fx->ctx,
	                             "directories.tokendir = %s\nobjectstore.backend = file\n"
	                             "log.level = ERROR\n",
	                             tokens);
	write_file(path(fx, "softhsm2.conf"), conf, strlen(conf));
	setenv("SOFTHSM2_CONF", path(fx, "softhsm2.conf"), 1);
	const char *init[] = {"softhsm2-util", "--init-token", "--free",   "--label", "t",
	                      "--pin",         "1234",         "--so-pin", "5678",    NULL};
	assert_int_equal(run(init), 0);
	assert_int_equal(gh_test_softhsm_genkeys("t", "1234", 0), 0);

	gh_sign_pkcs11_opts_t o = {SOFTHSM_MODULE, "t", "1234", "k"};
	gh_signer_t *hsm;
	assert_int_equal(gh_signer_pkcs11_open(fx->ctx, &o, &hsm), 0);
	gh_archive_t *ar;
	assert_int_equal(gh_archive_open(fx->ctx, path(fx, "archive-hsm"), fx->clock, &ar), 0);
	num_export_t *x = exporter(fx, hsm, ar);
	num_export_result_t *r = gen(fx, x, "2026-10", false);
	assert_true(r->archived && r->recorded);
	/* byte-identical regeneration with the token too (EdDSA is deterministic) */
	num_export_result_t *again = gen(fx, x, "2026-10", false);
	same_files(r, again);
	/* the PEM-signed export has the same CSVs */
	num_export_result_t *pem = gen(fx, fx->x, "2026-10", true);
	assert_string_equal(pem->files[0].sha256, r->files[0].sha256);
	assert_string_equal(pem->files[1].sha256, r->files[1].sha256);

	const char *pem_text = gh_sign_pubkey_pem(gh_signer_pubkey(hsm));
	char *pub = path(fx, "hsm.pub.pem");
	write_file(pub, pem_text, strlen(pem_text));
	char *out = write_out(fx, r, "hsm-out");
	assert_int_equal(openssl_verify(pub, out), 0);
	assert_int_equal(verify_cli(pub, talloc_asprintf(fx->ctx, "%s/manifest.json", out)), 0);
	assert_int_equal(
	    verify_cli(path(fx, "k1.pub.pem"), talloc_asprintf(fx->ctx, "%s/manifest.json", out)),
	    1);
	unsetenv("SOFTHSM2_CONF");
}
BOTH(test_pkcs11_signing)

/* ---- the admin API through `ghasi serve` --------------------------------------------------- */

static void serve(fx_t *fx, gh_test_ghasi_t *srv)
{
	const char *env[] = {
	    talloc_asprintf(fx->ctx, "GHASI_STORE_URL=%s", fx->url),
	    "GHASI_LOG_LEVEL=warn",
	    "GHASI_NUMBERING_INDEX_CAPACITY=10000",
	    "GHASI_NUMBERING_SEED_DEMO=false",
	    talloc_asprintf(fx->ctx, "GHASI_ARCHIVE_DIR=%s", path(fx, "archive-http")),
	    talloc_asprintf(fx->ctx, "GHASI_NUMBERING_EXPORT_KEY_PEM=%s", path(fx, "k1.pem")),
	    "GHASI_AUTH_JWT_HS256_SECRET=" JWT_SECRET,
	    NULL};
	gh_test_ghasi_start(srv, fx->dir, env, NULL);
}

static char *token(void *ctx, const char *role)
{
	const char *tenant = strncmp(role, "tenant", 6) == 0 ? "t1" : NULL;
	return talloc_asprintf(ctx, "Authorization: Bearer %s\r\n",
	                       gh_test_jwt(ctx, JWT_SECRET, "carol", role, tenant, 3600));
}

static void test_admin_api_on(fx_t *fx)
{
	/* what the server must produce, made here first with the same key and chain */
	gh_clock_test_set(fx->clock, gh_clock_now_ms(gh_clock_real()));
	num_export_result_t *want = gen(fx, fx->x, "2026-10", true);
	gh_test_ghasi_t srv = {0};
	serve(fx, &srv);
	uint16_t port = srv.port;
	gh_test_http_resp_t *r = talloc(fx->ctx, gh_test_http_resp_t);
	const char *body = "{\"month\":\"2026-10\",\"dry_run\":true}";
	const char *P = "/v1/admin/numbering/exports";
	char *comp = token(fx->ctx, "compliance"), *admin = token(fx->ctx, "platform-admin");

	gh_test_http_request(port, "POST", P, NULL, body, r);
	assert_int_equal(r->status, 401);
	gh_test_http_request(port, "POST", P, token(fx->ctx, "tenant-admin"), body, r);
	assert_int_equal(r->status, 403);

	gh_test_http_request(port, "POST", P, comp, body, r);
	assert_int_equal(r->status, 200);
	json_t *j = gh_test_http_json(r);
	json_t *files = json_object_get(j, "files");
	assert_int_equal(json_array_size(files), 4);
	for (int i = 0; i < 3; i++) {
		json_t *f = json_array_get(files, (size_t)i);
		assert_string_equal(gh_json_get_str(f, "content", ""), want->files[i].data);
		assert_string_equal(gh_json_get_str(f, "sha256", ""), want->files[i].sha256);
	}
	json_decref(j);
	gh_test_http_request(port, "GET", P, admin, NULL, r);
	assert_int_equal(r->status, 200);
	j = gh_test_http_json(r);
	assert_int_equal(json_array_size(json_object_get(j, "exports")), 0); /* dry run */
	json_decref(j);

	const char *real = "{\"month\":\"2026-10\"}";
	gh_test_http_request(port, "POST", P, admin, real, r);
	assert_int_equal(r->status, 201);
	j = gh_test_http_json(r);
	assert_string_equal(gh_json_get_str(j, "id", ""), "2026-10");
	assert_string_equal(gh_json_get_str(j, "manifest_sha256", ""), want->files[2].sha256);
	assert_string_equal(gh_json_get_str(j, "actor", ""), "admin:carol");
	json_decref(j);
	gh_test_http_request(port, "POST", P, comp, real, r);
	assert_int_equal(r->status, 200); /* already archived: same bytes, no second event */
	assert_int_equal(EVENTS_EMITTED(fx), 1);

	gh_test_http_request(port, "GET", P, comp, NULL, r);
	j = gh_test_http_json(r);
	assert_int_equal(json_array_size(json_object_get(j, "exports")), 1);
	json_decref(j);
	gh_test_http_request(port, "GET", "/v1/admin/numbering/exports/2026-10", comp, NULL, r);
	assert_int_equal(r->status, 200);
	gh_test_http_request(port, "GET", "/v1/admin/numbering/exports/2026-09", comp, NULL, r);
	assert_int_equal(r->status, 404);
	for (int i = 0; i < NUM_EXPORT_FILES; i++) {
		char *p = talloc_asprintf(fx->ctx, "%s/2026-10/file?name=%s", P,
		                          num_export_file_names[i]);
		gh_test_http_request(port, "GET", p, comp, NULL, r);
		assert_int_equal(r->status, 200);
		assert_int_equal(r->body_len, want->files[i].len);
		assert_memory_equal(r->body, want->files[i].data, r->body_len);
	}
	gh_test_http_request(port, "GET", "/v1/admin/numbering/exports/2026-10/file?name=x", comp,
	                     NULL, r);
	assert_int_equal(r->status, 400);
	/* the current month has not ended */
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	char *cur = talloc_asprintf(fx->ctx, "{\"month\":\"%04d-%02d\",\"dry_run\":true}",
	                            tm.tm_year + 1900, tm.tm_mon + 1);
	gh_test_http_request(port, "POST", P, comp, cur, r);
	assert_int_equal(r->status, 400);
	gh_test_ghasi_stop(&srv);
}
BOTH(test_admin_api)

int main(void)
{
	gh_log_init("num_export_test", GH_LOG_WARN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_month_content),
	    cmocka_unit_test(test_archive_and_regenerate),
	    cmocka_unit_test(test_verify_detects_tampering),
	    cmocka_unit_test(test_quiet_month_and_job),
	    cmocka_unit_test(test_pkcs11_signing),
	    cmocka_unit_test(test_admin_api),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
