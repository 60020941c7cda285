/* index: flat seqlocked hash table of numbers for ValidateLease (see index.h for the contract).
 *
 * Why per-slot seqlocks rather than RCU table swaps or rwlocks: updates are single numbers
 * (one commit, one invalidation), so copying the table per update (RCU) is out, and an rwlock
 * makes every reader write the lock's cache line, which is the contention the hot path must not
 * have. A seqlock reader only reads; the counter shares the slot's cache line, so a hit costs
 * the one line miss it would cost anyway. The table never grows: growing under lock-free
 * readers needs a grace period per retired table, and the inventory is known at start, so the
 * service sizes it then and a full index degrades to database fallbacks, not to errors. */
#include "index.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <talloc.h>

/* A slot: eight words, one cache line. w[0] sequence (odd while written), w[1] key (0 = empty;
 * set once, never changed), w[2] version, w[3] lease ends_at, w[4..5] lease id,
 * w[6] tenant << 32 | operator << 16 | vanity << 8 | state << 4 | lease status, w[7] flags. */
typedef struct {
	_Alignas(64) _Atomic uint64_t w[8];
} slot_t;
_Static_assert(sizeof(slot_t) == 64, "one cache line per slot");

#define W_SEQ     0
#define W_KEY     1
#define W_VERSION 2
#define W_ENDS    3
#define W_LEASE   4
#define W_PACKED  6
#define W_FLAGS   7

#define F_INVALID 1u /* invalidation marker: version announced, data unknown */

#define READ_TRIES 64

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

typedef struct {
	char id[NUM_TENANT_ID_MAX + 1];
	_Atomic uint32_t status;
} tenant_t;

struct num_index_s {
	slot_t *slots;
	size_t nslots, max_numbers, map_bytes;
	_Atomic size_t used;
	tenant_t *tenants; /* [0] unused: NUM_TENANT_NONE */
	_Atomic uint32_t *tmap;
	uint32_t tmap_mask, max_tenants;
	_Atomic uint32_t n_tenants;
	_Atomic int64_t fresh_ms;
	_Atomic bool complete;
	pthread_mutex_t wlock;
};

static inline uint64_t ld(const _Atomic uint64_t *p)
{
	return atomic_load_explicit(p, memory_order_relaxed);
}

static inline void st(_Atomic uint64_t *p, uint64_t v)
{
	atomic_store_explicit(p, v, memory_order_relaxed);
}

/* murmur3 fmix64: e164 keys are dense integers, the slot must depend on all their bits. */
static inline uint64_t mix(uint64_t k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdULL;
	k ^= k >> 33;
	k *= 0xc4ceb9fe1a85ec53ULL;
	k ^= k >> 33;
	return k;
}

__extension__ typedef unsigned __int128 u128;

/* Lemire's range reduction: any table size, so the load factor is chosen, not rounded. */
static inline size_t home(const num_index_t *ix, uint64_t key)
{
	return (size_t)(((u128)mix(key) * ix->nslots) >> 64);
}

num_kind_t num_key_kind(uint64_t key)
{
	unsigned tag = (unsigned)(key >> 62);
	return tag >= 1 && tag <= NUM_KIND__COUNT ? (num_kind_t)(tag - 1) : NUM_KIND__COUNT;
}

static int index_destructor(num_index_t *ix)
{
	if (ix->slots)
		munmap(ix->slots, ix->map_bytes);
	pthread_mutex_destroy(&ix->wlock);
	return 0;
}

int num_index_new(void *ctx, size_t max_numbers, uint32_t max_tenants, num_index_t **out)
{
	if (!out || max_numbers < 1 || max_numbers > ((size_t)1 << 36) || max_tenants < 1 ||
	    max_tenants > (1u << 24))
		return -EINVAL;
	num_index_t *ix = talloc_zero(ctx, num_index_t);
	if (!ix)
		return -ENOMEM;
	pthread_mutex_init(&ix->wlock, NULL);
	talloc_set_destructor(ix, index_destructor);
	ix->max_numbers = max_numbers;
	ix->nslots = max_numbers + max_numbers / 3 + 1; /* load <= 75 % */
	/* mmap, not talloc: zeroed pages on demand, 64-byte alignment, and transparent huge pages
	 * so that random lookups over ~100 MB do not also miss the TLB on every access. */
	const size_t huge = (size_t)2 << 20;
	ix->map_bytes = (ix->nslots * sizeof(slot_t) + huge - 1) / huge * huge;
	void *m =
	    mmap(NULL, ix->map_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) {
		talloc_free(ix);
		return -ENOMEM;
	}
	madvise(m, ix->map_bytes, MADV_HUGEPAGE); /* advisory: fine if it is not honoured */
	ix->slots = m;
	ix->max_tenants = max_tenants;
	uint32_t tm = 2;
	while (tm < 2 * max_tenants)
		tm <<= 1;
	ix->tmap_mask = tm - 1;
	ix->tenants = talloc_zero_array(ix, tenant_t, max_tenants + 1);
	ix->tmap = talloc_zero_array(ix, _Atomic uint32_t, tm);
	if (!ix->tenants || !ix->tmap) {
		talloc_free(ix);
		return -ENOMEM;
	}
	*out = ix;
	return 0;
}

/* ---- tenants ---------------------------------------------------------------------------- */

/* Word at a time: tenant ids are UUIDs, hashed on every validate. */
static uint32_t str_hash(const char *s, size_t len)
{
	uint64_t h = len * 0x9e3779b97f4a7c15ULL, w;
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		memcpy(&w, s + i, 8);
		h = mix(h ^ w);
	}
	w = 0;
	memcpy(&w, s + i, len - i);
	return (uint32_t)mix(h ^ w);
}

/* Slot in tmap holding the id s[0..len), or the empty slot where it would go; *tidx 0 when
 * absent. */
static uint32_t tenant_probe(const num_index_t *ix, const char *s, size_t len, uint32_t *tidx)
{
	uint32_t i = str_hash(s, len) & ix->tmap_mask;
	for (;; i = (i + 1) & ix->tmap_mask) {
		uint32_t v = atomic_load_explicit(&ix->tmap[i], memory_order_acquire);
		if (v == 0 || memcmp(ix->tenants[v].id, s, len + 1) == 0) {
			*tidx = v;
			return i;
		}
	}
}

/* Length of a valid tenant id (1..NUM_TENANT_ID_MAX bytes), 0 when invalid. */
static size_t tenant_id_len(const char *id)
{
	size_t n = id ? strnlen(id, NUM_TENANT_ID_MAX + 1) : 0;
	return n <= NUM_TENANT_ID_MAX ? n : 0;
}

int num_index_tenant_find(const num_index_t *ix, const char *tenant_id, uint32_t *tidx)
{
	uint32_t v;
	size_t len = tenant_id_len(tenant_id);
	if (!len)
		return -ENOENT;
	tenant_probe(ix, tenant_id, len, &v);
	if (!v)
		return -ENOENT;
	*tidx = v;
	return 0;
}

int num_index_tenant_intern(num_index_t *ix, const char *tenant_id, uint32_t *tidx)
{
	size_t len = tenant_id_len(tenant_id);
	if (!ix || !tidx || !len)
		return -EINVAL;
	int rc = 0;
	pthread_mutex_lock(&ix->wlock);
	uint32_t v, at = tenant_probe(ix, tenant_id, len, &v);
	if (!v) {
		uint32_t n = atomic_load_explicit(&ix->n_tenants, memory_order_relaxed);
		if (n >= ix->max_tenants) {
			rc = -ENOSPC;
			goto out;
		}
		v = n + 1;
		memcpy(ix->tenants[v].id, tenant_id, len + 1);
		atomic_store_explicit(&ix->tenants[v].status, NUM_POOL_UNKNOWN,
		                      memory_order_relaxed);
		atomic_store_explicit(&ix->n_tenants, v, memory_order_release);
		/* publish last: a reader that finds the slot sees the finished record */
		atomic_store_explicit(&ix->tmap[at], v, memory_order_release);
	}
	*tidx = v;
out:
	pthread_mutex_unlock(&ix->wlock);
	return rc;
}

static bool tidx_ok(const num_index_t *ix, uint32_t tidx)
{
	return tidx >= 1 && tidx <= atomic_load_explicit(&ix->n_tenants, memory_order_acquire);
}

int num_index_tenant_set_status(num_index_t *ix, uint32_t tidx, num_pool_status_t status)
{
	if (!ix || !tidx_ok(ix, tidx) || (unsigned)status >= NUM_POOL__COUNT)
		return -EINVAL;
	atomic_store_explicit(&ix->tenants[tidx].status, status, memory_order_release);
	return 0;
}

num_pool_status_t num_index_tenant_status(const num_index_t *ix, uint32_t tidx)
{
	if (!tidx_ok(ix, tidx))
		return NUM_POOL_UNKNOWN;
	return atomic_load_explicit(&ix->tenants[tidx].status, memory_order_acquire);
}

const char *num_index_tenant_id(const num_index_t *ix, uint32_t tidx)
{
	return tidx_ok(ix, tidx) ? ix->tenants[tidx].id : NULL;
}

/* ---- slots ------------------------------------------------------------------------------ */

/* The slot holding key, or NULL; *empty gets the first empty slot of the probe when absent. */
static slot_t *probe(const num_index_t *ix, uint64_t key, slot_t **empty)
{
	size_t i = home(ix, key);
	for (;;) {
		slot_t *s = &ix->slots[i];
		uint64_t k = atomic_load_explicit(&s->w[W_KEY], memory_order_acquire);
		if (k == key)
			return s;
		if (k == 0) {
			if (empty)
				*empty = s;
			return NULL;
		}
		if (++i == ix->nslots)
			i = 0;
	}
}

typedef struct {
	uint64_t w[8];
} snap_t;

/* Seqlock read of a slot. 0, or -EAGAIN when a writer held it for READ_TRIES attempts. */
static int read_slot(const slot_t *s, snap_t *o)
{
	for (int t = 0; t < READ_TRIES; t++) {
		uint64_t s1 = atomic_load_explicit(&s->w[W_SEQ], memory_order_acquire);
		if (s1 & 1) {
			cpu_relax();
			continue;
		}
		for (int j = 1; j < 8; j++)
			o->w[j] = ld(&s->w[j]);
		atomic_thread_fence(memory_order_acquire);
		if (ld(&s->w[W_SEQ]) == s1)
			return 0;
	}
	return -EAGAIN;
}

/* Seqlock write; caller holds wlock. The key is stored inside the write section, after the
 * release fence, so a reader that sees it also sees the section open (odd sequence). */
static void write_slot(slot_t *s, const snap_t *n)
{
	uint64_t q = ld(&s->w[W_SEQ]);
	st(&s->w[W_SEQ], q + 1);
	atomic_thread_fence(memory_order_release);
	for (int j = 1; j < 8; j++)
		st(&s->w[j], n->w[j]);
	atomic_store_explicit(&s->w[W_SEQ], q + 2, memory_order_release);
}

static void pack(const num_index_entry_t *e, uint64_t flags, snap_t *n)
{
	uint64_t id0, id1;
	memcpy(&id0, e->lease_id, 8);
	memcpy(&id1, e->lease_id + 8, 8);
	n->w[W_KEY] = e->key;
	n->w[W_VERSION] = e->version;
	n->w[W_ENDS] = (uint64_t)e->lease_ends_at_ms;
	n->w[W_LEASE] = id0;
	n->w[W_LEASE + 1] = id1;
	n->w[W_PACKED] = (uint64_t)e->tenant << 32 | (uint64_t)e->operator_idx << 16 |
	                 (uint64_t)e->vanity_tier << 8 | (uint64_t)(e->state & 15) << 4 |
	                 (e->lease_status & 15);
	n->w[W_FLAGS] = flags;
}

static void unpack(const snap_t *n, num_index_entry_t *e)
{
	uint64_t p = n->w[W_PACKED];
	e->key = n->w[W_KEY];
	e->version = n->w[W_VERSION];
	e->lease_ends_at_ms = (int64_t)n->w[W_ENDS];
	memcpy(e->lease_id, &n->w[W_LEASE], 8);
	memcpy(e->lease_id + 8, &n->w[W_LEASE + 1], 8);
	e->tenant = (uint32_t)(p >> 32);
	e->operator_idx = (uint16_t)(p >> 16);
	e->vanity_tier = (uint8_t)(p >> 8);
	e->state = (uint8_t)((p >> 4) & 15);
	e->lease_status = (uint8_t)(p & 15);
}

/* Caller holds wlock. Writers are serialised, so reading a slot here needs no seqlock. */
static int upsert_locked(num_index_t *ix, const num_index_entry_t *e, uint64_t flags)
{
	slot_t *empty = NULL, *s = probe(ix, e->key, &empty);
	if (s) {
		uint64_t have = ld(&s->w[W_VERSION]);
		bool marker = ld(&s->w[W_FLAGS]) & F_INVALID;
		if (flags & F_INVALID) {
			/* an announcement: only a newer version than held invalidates */
			if (e->version <= have)
				return 0;
		} else if (marker ? e->version < have : e->version <= have) {
			return e->version == have ? 0 : -ESTALE;
		}
	} else {
		if (atomic_load_explicit(&ix->used, memory_order_relaxed) >= ix->max_numbers) {
			atomic_store_explicit(&ix->complete, false, memory_order_relaxed);
			return -ENOSPC;
		}
		s = empty;
		atomic_fetch_add_explicit(&ix->used, 1, memory_order_relaxed);
	}
	snap_t n;
	pack(e, flags, &n);
	write_slot(s, &n);
	return 0;
}

static bool entry_ok(const num_index_t *ix, const num_index_entry_t *e)
{
	return e && e->key != 0 && num_key_kind(e->key) < NUM_KIND__COUNT &&
	       e->state < NUM_ST__COUNT && e->lease_status < NUM_LEASE__COUNT &&
	       (e->tenant == NUM_TENANT_NONE || tidx_ok(ix, e->tenant));
}

int num_index_upsert(num_index_t *ix, const num_index_entry_t *e)
{
	if (!ix || !entry_ok(ix, e))
		return -EINVAL;
	pthread_mutex_lock(&ix->wlock);
	int rc = upsert_locked(ix, e, 0);
	pthread_mutex_unlock(&ix->wlock);
	return rc;
}

int num_index_load(num_index_t *ix, const num_index_entry_t *e, size_t n, size_t *done)
{
	if (!ix || (n && !e))
		return -EINVAL;
	int rc = 0;
	size_t i = 0;
	pthread_mutex_lock(&ix->wlock);
	for (; i < n; i++) {
		if (!entry_ok(ix, &e[i])) {
			rc = -EINVAL;
			break;
		}
		rc = upsert_locked(ix, &e[i], 0);
		if (rc == -ESTALE)
			rc = 0;
		if (rc < 0)
			break;
	}
	pthread_mutex_unlock(&ix->wlock);
	if (done)
		*done = i;
	return rc;
}

int num_index_invalidate(num_index_t *ix, uint64_t key, uint64_t version)
{
	if (!ix || key == 0 || num_key_kind(key) >= NUM_KIND__COUNT)
		return -EINVAL;
	num_index_entry_t e = {.key = key, .version = version};
	pthread_mutex_lock(&ix->wlock);
	int rc = upsert_locked(ix, &e, F_INVALID);
	pthread_mutex_unlock(&ix->wlock);
	return rc;
}

/* ---- freshness -------------------------------------------------------------------------- */

void num_index_touch(num_index_t *ix, int64_t now_ms)
{
	int64_t cur = atomic_load_explicit(&ix->fresh_ms, memory_order_relaxed);
	while (now_ms > cur &&
	       !atomic_compare_exchange_weak_explicit(&ix->fresh_ms, &cur, now_ms,
	                                              memory_order_release, memory_order_relaxed))
		;
}

bool num_index_fresh(const num_index_t *ix, int64_t now_ms, int64_t bound_ms)
{
	int64_t t = atomic_load_explicit(&ix->fresh_ms, memory_order_acquire);
	return t > 0 && now_ms - t <= bound_ms;
}

void num_index_set_complete(num_index_t *ix, bool complete)
{
	atomic_store_explicit(&ix->complete, complete, memory_order_release);
}

bool num_index_is_complete(const num_index_t *ix)
{
	return atomic_load_explicit(&ix->complete, memory_order_acquire);
}

/* ---- readers ---------------------------------------------------------------------------- */

/* 0 with the entry, -ENOENT absent or marker (*absent tells which), -EAGAIN contention. */
static int lookup(const num_index_t *ix, uint64_t key, num_index_entry_t *e, bool *absent)
{
	*absent = false;
	const slot_t *s = probe(ix, key, NULL);
	if (!s) {
		*absent = true;
		return -ENOENT;
	}
	snap_t n;
	if (read_slot(s, &n) < 0)
		return -EAGAIN;
	if (n.w[W_FLAGS] & F_INVALID)
		return -ENOENT;
	unpack(&n, e);
	return 0;
}

int num_index_get(const num_index_t *ix, uint64_t key, num_index_entry_t *out)
{
	bool absent;
	if (!ix || !out || key == 0)
		return -ENOENT;
	return lookup(ix, key, out, &absent) == 0 ? 0 : -ENOENT;
}

static const char *const vreason_names[] = {
    "ALLOWED",         "NOT_REGISTERED", "NOT_LEASED",        "WRONG_TENANT",
    "LEASE_SUSPENDED", "LEASE_EXPIRED",  "QUARANTINE_ACTIVE", "TENANT_SUSPENDED",
};
_Static_assert(sizeof(vreason_names) / sizeof(vreason_names[0]) == NUM_VR__COUNT, "names");

const char *num_vreason_name(num_vreason_t r)
{
	return (unsigned)r < NUM_VR__COUNT ? vreason_names[r] : "UNKNOWN";
}

num_vreason_t num_validate_rule(const num_index_entry_t *e, bool same_tenant,
                                num_pool_status_t pool, int64_t now_ms)
{
	if (!e)
		return NUM_VR_NOT_REGISTERED;
	switch (e->state) {
	case NUM_ST_ASSIGNED:
	case NUM_ST_SUSPENDED: break;
	case NUM_ST_QUARANTINED: return NUM_VR_QUARANTINE_ACTIVE;
	default: return NUM_VR_NOT_LEASED;
	}
	if (!same_tenant)
		return NUM_VR_WRONG_TENANT;
	if (pool == NUM_POOL_SUSPENDED)
		return NUM_VR_TENANT_SUSPENDED;
	if (pool != NUM_POOL_ACTIVE)
		return NUM_VR__COUNT;
	if (e->lease_status == NUM_LEASE_NONE)
		return NUM_VR_NOT_LEASED;
	if (e->state == NUM_ST_SUSPENDED || e->lease_status == NUM_LEASE_SUSPENDED)
		return NUM_VR_LEASE_SUSPENDED;
	if (e->lease_status != NUM_LEASE_ACTIVE || now_ms >= e->lease_ends_at_ms)
		return NUM_VR_LEASE_EXPIRED;
	return NUM_VR_ALLOWED;
}

int num_validate(const num_index_t *ix, uint64_t key, uint32_t tenant, int64_t now_ms,
                 num_validate_t *out)
{
	bool absent;
	if (!ix || !out || key == 0)
		return -ENOENT;
	int rc = lookup(ix, key, &out->entry, &absent);
	if (rc < 0) {
		if (!(absent && num_index_is_complete(ix)))
			return -ENOENT;
		memset(&out->entry, 0, sizeof(out->entry));
		out->reason = NUM_VR_NOT_REGISTERED;
		out->allowed = false;
		return 0;
	}
	const num_index_entry_t *e = &out->entry;
	bool same = tenant != NUM_TENANT_NONE && e->tenant == tenant;
	num_pool_status_t pool =
	    same ? atomic_load_explicit(&ix->tenants[tenant].status, memory_order_acquire)
	         : NUM_POOL_UNKNOWN;
	num_vreason_t r = num_validate_rule(e, same, pool, now_ms);
	if (r == NUM_VR__COUNT)
		return -ENOENT;
	out->reason = r;
	out->allowed = r == NUM_VR_ALLOWED;
	return 0;
}

void num_index_stats(const num_index_t *ix, num_index_stats_t *st)
{
	memset(st, 0, sizeof(*st));
	st->numbers = atomic_load_explicit(&ix->used, memory_order_relaxed);
	st->max_numbers = ix->max_numbers;
	st->slots = ix->nslots;
	st->tenants = atomic_load_explicit(&ix->n_tenants, memory_order_relaxed);
	st->bytes = sizeof(*ix) + ix->map_bytes + (ix->max_tenants + 1) * sizeof(tenant_t) +
	            (ix->tmap_mask + 1) * sizeof(uint32_t);
	st->bytes_per_number = (double)st->bytes / (double)(st->numbers ? st->numbers : 1);
}
