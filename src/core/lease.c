/* lease: database leases for once-per-deployment jobs. See lease.h. */
#include "lease.h"

#include <errno.h>
#include <stdio.h>

int gh_lease_try(gh_store_t *s, const char *name, const char *holder, int64_t now_ms,
                 int64_t ttl_ms)
{
	gh_conn_t *c;
	int rc = gh_store_acquire(s, 5000, &c);
	if (rc < 0)
		return rc;
	int64_t n = 0;
	/* One statement, so no transaction is needed: the row lock (PostgreSQL) or the write
	 * lock (SQLite) decides between replicas racing for the same lease. */
	rc = gh_conn_exec(
	    c,
	    "INSERT INTO gh_lease (name, holder, expires_ms) VALUES ($1, $2, $3) "
	    "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
	    "expires_ms = excluded.expires_ms "
	    "WHERE gh_lease.holder = excluded.holder OR gh_lease.expires_ms <= $4",
	    (gh_val_t[]){GH_TEXT(name), GH_TEXT(holder), GH_I64(now_ms + ttl_ms), GH_I64(now_ms)},
	    4, &n);
	gh_store_release(c);
	if (rc == -EAGAIN)
		return -EBUSY; /* a competing replica holds the row lock right now */
	if (rc < 0)
		return rc;
	return n == 1 ? 0 : -EBUSY;
}

int gh_lease_release(gh_store_t *s, const char *name, const char *holder)
{
	gh_conn_t *c;
	int rc = gh_store_acquire(s, 5000, &c);
	if (rc < 0)
		return rc;
	rc = gh_conn_exec(c, "DELETE FROM gh_lease WHERE name = $1 AND holder = $2",
	                  (gh_val_t[]){GH_TEXT(name), GH_TEXT(holder)}, 2, NULL);
	gh_store_release(c);
	return rc;
}

int gh_lease_sched_hook(void *ud, const char *job_name, int64_t now_ms, int64_t ttl_ms)
{
	const gh_lease_ctx_t *lc = ud;
	char name[160];
	snprintf(name, sizeof(name), "job:%s", job_name);
	return gh_lease_try(lc->store, name, lc->holder, now_ms, ttl_ms);
}
