/* archive: the write-once, content-addressed archive; contract in archive.h. */
#include "archive.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <talloc.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "sign.h"

#define MANIFEST_MAX   (64 * 1024)
#define TMP_MAX_AGE_S  3600
#define MANIFEST_MODE  0444
#define MANIFEST_FLAGS (JSON_SORT_KEYS | JSON_COMPACT)

struct gh_archive_s {
	char *dir, *objects, *names, *tmp, *lock;
	gh_clock_t *clock;
};

static atomic_uint tmp_seq;

static int errno_rc(void)
{
	switch (errno) {
	case ENOENT: return -ENOENT;
	case EACCES:
	case EPERM: return -EACCES;
	case ENOSPC:
	case EDQUOT: return -ENOSPC;
	case ENOMEM: return -ENOMEM;
	default: return -EIO;
	}
}

static int fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno_rc();
	int rc = fsync(fd) < 0 ? -EIO : 0;
	close(fd);
	return rc;
}

/* mkdir that tolerates an existing directory; *created tells whether the parent changed. */
static int ensure_dir(const char *path, int *created)
{
	if (mkdir(path, 0755) == 0) {
		if (created)
			*created = 1;
		return 0;
	}
	if (errno != EEXIST)
		return errno_rc();
	struct stat st;
	if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
		return -EINVAL;
	return 0;
}

/* mkdir -p, fsyncing each parent that gained an entry. */
static int ensure_dir_p(void *ctx, const char *path)
{
	char *p = talloc_strdup(ctx, path);
	if (!p)
		return -ENOMEM;
	int rc = 0;
	for (char *s = p + 1;; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		char c = *s;
		*s = '\0';
		int created = 0;
		if ((rc = ensure_dir(p, &created)) < 0)
			break;
		if (created) {
			char *slash = strrchr(p, '/');
			char *parent = slash && slash != p
			                   ? talloc_strndup(p, p, (size_t)(slash - p))
			                   : talloc_strdup(p, slash ? "/" : ".");
			if (!parent || (rc = fsync_dir(parent)) < 0) {
				rc = parent ? rc : -ENOMEM;
				break;
			}
		}
		*s = c;
		if (c == '\0')
			break;
	}
	talloc_free(p);
	return rc;
}

/* Remove files in tmp/ older than TMP_MAX_AGE_S: leftovers of a crash. */
static void tmp_sweep(gh_archive_t *ar)
{
	DIR *d = opendir(ar->tmp);
	if (!d)
		return;
	time_t now = time(NULL);
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		struct stat st;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISREG(st.st_mode) && now - st.st_mtime > TMP_MAX_AGE_S)
			unlinkat(dirfd(d), e->d_name, 0);
	}
	closedir(d);
}

int gh_archive_open(void *ctx, const char *dir, gh_clock_t *clock, gh_archive_t **out)
{
	if (!dir || !*dir || !clock)
		return -EINVAL;
	gh_archive_t *ar = talloc_zero(ctx, gh_archive_t);
	if (!ar)
		return -ENOMEM;
	ar->clock = clock;
	ar->dir = talloc_strdup(ar, dir);
	ar->objects = talloc_asprintf(ar, "%s/objects", dir);
	ar->names = talloc_asprintf(ar, "%s/names", dir);
	ar->tmp = talloc_asprintf(ar, "%s/tmp", dir);
	ar->lock = talloc_asprintf(ar, "%s/.lock", dir);
	int rc = -ENOMEM;
	if (!ar->dir || !ar->objects || !ar->names || !ar->tmp || !ar->lock)
		goto fail;
	if ((rc = ensure_dir_p(ar, dir)) < 0)
		goto fail;
	if ((rc = ensure_dir(ar->objects, NULL)) < 0 || (rc = ensure_dir(ar->names, NULL)) < 0 ||
	    (rc = ensure_dir(ar->tmp, NULL)) < 0)
		goto fail;
	int fd = open(ar->lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = errno_rc();
		goto fail;
	}
	close(fd);
	if ((rc = fsync_dir(dir)) < 0) /* the subdirectories and .lock, when new */
		goto fail;
	tmp_sweep(ar);
	*out = ar;
	return 0;
fail:
	gh_log(GH_LOG_ERROR, "archive open failed", "dir", dir, "error", strerror(-rc), NULL);
	talloc_free(ar);
	return rc;
}

/* ---- names ---- */

static int name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-';
}

int gh_archive_name_valid(const char *name)
{
	if (!name)
		return 0;
	size_t n = strlen(name);
	if (n == 0 || n > GH_ARCHIVE_NAME_MAX)
		return 0;
	const char *comp = name;
	for (size_t i = 0; i <= n; i++) {
		if (name[i] == '/' || name[i] == '\0') {
			size_t cl = (size_t)(name + i - comp);
			if (cl == 0 || (cl == 1 && comp[0] == '.') ||
			    (cl == 2 && comp[0] == '.' && comp[1] == '.'))
				return 0;
			comp = name + i + 1;
		} else if (!name_char(name[i])) {
			return 0;
		}
	}
	return 1;
}

/* names/<name with '/' as %2F>.json; injective because '%' is not a name character. */
static char *manifest_path(gh_archive_t *ar, void *ctx, const char *name)
{
	char *p = talloc_asprintf(ctx, "%s/", ar->names);
	for (const char *s = name; p && *s; s++)
		p = *s == '/' ? talloc_strdup_append(p, "%2F")
		              : talloc_asprintf_append(p, "%c", *s);
	return p ? talloc_strdup_append(p, ".json") : NULL;
}

char *gh_archive_object_path(gh_archive_t *ar, void *ctx, const gh_archive_ref_t *ref)
{
	return talloc_asprintf(ctx, "%s/%.2s/%s", ar->objects, ref->sha256, ref->sha256);
}

/* ---- locking ---- */

/* A flock on its own open file description, so threads of one process exclude each other
 * as processes do. Returns the fd or a negative errno. */
static int lock_take(gh_archive_t *ar, int how)
{
	int fd = open(ar->lock, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return errno_rc();
	while (flock(fd, how) < 0) {
		if (errno != EINTR) {
			close(fd);
			return -EIO;
		}
	}
	return fd;
}

static void lock_release(int fd)
{
	flock(fd, LOCK_UN);
	close(fd);
}

/* ---- files ---- */

/* Write data to a new file in tmp/, mode 0444, fsync'd. *tmp_path is a talloc child of ctx. */
static int write_tmp(gh_archive_t *ar, void *ctx, const void *data, size_t len, char **tmp_path)
{
	char *p = talloc_asprintf(ctx, "%s/%d-%lx-%u", ar->tmp, (int)getpid(),
	                          (unsigned long)pthread_self(), atomic_fetch_add(&tmp_seq, 1));
	if (!p)
		return -ENOMEM;
	int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return errno_rc();
	int rc = 0;
	const char *b = data;
	size_t off = 0;
	while (off < len) {
		ssize_t w = write(fd, b + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			rc = errno_rc();
			goto out;
		}
		off += (size_t)w;
	}
	if (fchmod(fd, MANIFEST_MODE) < 0 || fsync(fd) < 0)
		rc = errno_rc();
out:
	if (close(fd) < 0 && rc == 0)
		rc = -EIO;
	if (rc < 0)
		unlink(p);
	else
		*tmp_path = p;
	return rc;
}

/* link tmp to dst and drop tmp. 0, -EEXIST (dst exists; tmp dropped), or an error. */
static int link_into_place(const char *tmp, const char *dst)
{
	int rc = link(tmp, dst) == 0 ? 0 : errno == EEXIST ? -EEXIST : errno_rc();
	unlink(tmp);
	return rc;
}

static int read_small(void *ctx, const char *path, size_t max, char **buf, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno_rc();
	int rc = 0;
	struct stat st;
	char *b = NULL;
	if (fstat(fd, &st) < 0) {
		rc = -EIO;
		goto out;
	}
	if ((uint64_t)st.st_size > max) {
		rc = -EBADMSG;
		goto out;
	}
	size_t n = (size_t)st.st_size, off = 0;
	if (!(b = talloc_size(ctx, n + 1))) {
		rc = -ENOMEM;
		goto out;
	}
	while (off < n) {
		ssize_t r = read(fd, b + off, n - off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) { /* a short file: changed under us */
			rc = r < 0 ? -EIO : -EBADMSG;
			goto out;
		}
		off += (size_t)r;
	}
	b[n] = '\0';
	*buf = b;
	*len = n;
out:
	if (rc < 0)
		talloc_free(b);
	close(fd);
	return rc;
}

/* ---- manifests ---- */

static int ref_destroy(gh_archive_ref_t *r)
{
	json_decref(r->meta);
	return 0;
}

static gh_archive_ref_t *ref_new(void *ctx)
{
	gh_archive_ref_t *r = talloc_zero(ctx, gh_archive_ref_t);
	if (r)
		talloc_set_destructor(r, ref_destroy);
	return r;
}

static int is_hex64(const char *s)
{
	if (!s || strlen(s) != 64)
		return 0;
	for (; *s; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return 0;
	return 1;
}

static char *manifest_text(const gh_archive_ref_t *r)
{
	char created[25], until[25];
	gh_time_format(r->created_ms, created);
	gh_time_format(r->retention_until_ms, until);
	json_t *j = json_pack("{s:i, s:s, s:s, s:I, s:s, s:s, s:O}", "v", 1, "name", r->name,
	                      "sha256", r->sha256, "size", (json_int_t)r->size, "created", created,
	                      "retention_until", until, "meta", r->meta);
	char *t = j ? json_dumps(j, MANIFEST_FLAGS) : NULL;
	json_decref(j);
	return t;
}

/* Read and check the manifest of name. 0, -ENOENT, -EBADMSG, -EIO, -ENOMEM. */
static int manifest_read(gh_archive_t *ar, void *ctx, const char *name, gh_archive_ref_t **out)
{
	char *path = manifest_path(ar, NULL, name);
	if (!path)
		return -ENOMEM;
	char *buf;
	size_t len;
	int rc = read_small(path, path, MANIFEST_MAX, &buf, &len);
	if (rc < 0)
		goto out;
	rc = -EBADMSG;
	json_t *j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
	const char *jname = NULL, *sha = NULL, *created = NULL, *until = NULL;
	json_int_t v = 0, size = -1;
	json_t *meta = NULL;
	gh_archive_ref_t *r = NULL;
	if (!j ||
	    json_unpack(j, "{s:I, s:s, s:s, s:I, s:s, s:s, s:o}", "v", &v, "name", &jname, "sha256",
	                &sha, "size", &size, "created", &created, "retention_until", &until, "meta",
	                &meta) != 0 ||
	    v != 1 || strcmp(jname, name) != 0 || !is_hex64(sha) || size < 0 ||
	    !json_is_object(meta))
		goto bad;
	if (!(r = ref_new(ctx)) || !(r->name = talloc_strdup(r, jname))) {
		rc = -ENOMEM;
		goto bad;
	}
	memcpy(r->sha256, sha, 65);
	r->size = (uint64_t)size;
	r->meta = json_incref(meta);
	if (gh_time_parse(created, &r->created_ms) < 0 ||
	    gh_time_parse(until, &r->retention_until_ms) < 0)
		goto bad;
	json_decref(j);
	*out = r;
	rc = 0;
	goto out;
bad:
	if (rc == -EBADMSG)
		gh_log(GH_LOG_ERROR, "archive manifest corrupt", "name", name, NULL);
	talloc_free(r);
	json_decref(j);
out:
	talloc_free(path);
	return rc;
}

/* ---- put ---- */

/* The object exists, or is written and linked now (durably, before any name points at it). */
static int object_ensure(gh_archive_t *ar, void *ctx, const char *sha, const void *data, size_t len)
{
	char *sub = talloc_asprintf(ctx, "%s/%.2s", ar->objects, sha);
	char *dst = talloc_asprintf(ctx, "%s/%s", sub, sha);
	if (!sub || !dst)
		return -ENOMEM;
	struct stat st;
	if (stat(dst, &st) == 0) /* complete by construction (linked only when whole) */
		return 0;
	char *tmp;
	int rc = write_tmp(ar, ctx, data, len, &tmp);
	if (rc < 0)
		return rc;
	int created = 0;
	if ((rc = ensure_dir(sub, &created)) < 0 ||
	    (created && (rc = fsync_dir(ar->objects)) < 0)) {
		unlink(tmp);
		return rc;
	}
	rc = link_into_place(tmp, dst);
	if (rc == -EEXIST) /* a twin put of the same bytes won: same content by its name */
		rc = 0;
	if (rc == 0)
		rc = fsync_dir(sub);
	return rc;
}

/* The outcome of a put on a name that already has a manifest. */
static int existing_outcome(gh_archive_ref_t *cur, const char *sha, size_t len)
{
	if (strcmp(cur->sha256, sha) != 0 || cur->size != len)
		return -EEXIST;
	cur->existed = true;
	return 0;
}

int gh_archive_put(gh_archive_t *ar, const char *name, const void *data, size_t len,
                   int64_t retention_until_ms, const json_t *meta, void *ctx,
                   gh_archive_ref_t **out)
{
	int64_t now = gh_clock_now_ms(ar->clock);
	if (!gh_archive_name_valid(name) || (!data && len) || retention_until_ms < now ||
	    (meta && !json_is_object(meta)))
		return -EINVAL;
	void *tc = talloc_new(NULL);
	if (!tc)
		return -ENOMEM;
	gh_archive_ref_t *r = NULL, *cur = NULL;
	char *mtext = NULL, *tmp = NULL;
	char sha[65];
	int rc, lk = -1;
	if ((rc = gh_sign_sha256_hex(data ? data : "", len, sha)) < 0)
		goto out;
	if ((lk = rc = lock_take(ar, LOCK_SH)) < 0)
		goto out;
	/* Fast path and early refusal: the name is already there. */
	rc = manifest_read(ar, tc, name, &cur);
	if (rc == 0) {
		rc = existing_outcome(cur, sha, len);
		r = cur;
		goto out;
	}
	if (rc != -ENOENT)
		goto out;
	if ((rc = object_ensure(ar, tc, sha, data ? data : "", len)) < 0)
		goto out;
	rc = -ENOMEM;
	if (!(r = ref_new(tc)) || !(r->name = talloc_strdup(r, name)))
		goto out;
	memcpy(r->sha256, sha, 65);
	r->size = len;
	r->created_ms = now;
	r->retention_until_ms = retention_until_ms;
	r->meta = meta ? json_deep_copy(meta) : json_object();
	char *mpath = manifest_path(ar, tc, name);
	if (!r->meta || !mpath || !(mtext = manifest_text(r)))
		goto out;
	if ((rc = write_tmp(ar, tc, mtext, strlen(mtext), &tmp)) < 0)
		goto out;
	rc = link_into_place(tmp, mpath);
	if (rc == -EEXIST) {
		/* A concurrent put of this name linked first: its bytes decide. */
		if ((rc = manifest_read(ar, tc, name, &cur)) == 0) {
			rc = existing_outcome(cur, sha, len);
			r = cur;
		}
		goto out;
	}
	if (rc == 0)
		rc = fsync_dir(ar->names);
out:
	if (lk >= 0)
		lock_release(lk);
	free(mtext);
	if (rc == 0 && out)
		*out = talloc_steal(ctx, r);
	if (rc < 0 && rc != -EEXIST)
		gh_log(GH_LOG_ERROR, "archive put failed", "name", name, "error", strerror(-rc),
		       NULL);
	talloc_free(tc);
	return rc;
}

/* ---- read and delete ---- */

int gh_archive_stat(gh_archive_t *ar, const char *name, void *ctx, gh_archive_ref_t **out)
{
	if (!gh_archive_name_valid(name))
		return -EINVAL;
	return manifest_read(ar, ctx, name, out);
}

int gh_archive_get(gh_archive_t *ar, const char *name, void *ctx, void **data, size_t *len,
                   gh_archive_ref_t **ref)
{
	gh_archive_ref_t *r;
	int rc = gh_archive_stat(ar, name, ctx, &r);
	if (rc < 0)
		return rc;
	char *path = gh_archive_object_path(ar, r, r);
	char *buf = NULL;
	size_t n = 0;
	char sha[65];
	if (!path) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = read_small(ctx, path, r->size, &buf, &n);
	if (rc == -ENOENT)
		rc = -EBADMSG;
	if (rc < 0)
		goto fail;
	if (n != r->size || gh_sign_sha256_hex(buf, n, sha) < 0 || strcmp(sha, r->sha256) != 0) {
		rc = -EBADMSG;
		goto fail;
	}
	*data = buf;
	*len = n;
	if (ref)
		*ref = r;
	else
		talloc_free(r);
	return 0;
fail:
	if (rc == -EBADMSG)
		gh_log(GH_LOG_ERROR, "archive object missing or corrupt", "name", name, "sha256",
		       r->sha256, NULL);
	talloc_free(buf);
	talloc_free(r);
	return rc;
}

/* Whether any manifest refers to sha. 1, 0, or an error. */
static int sha_referenced(gh_archive_t *ar, const char *sha)
{
	DIR *d = opendir(ar->names);
	if (!d)
		return errno_rc();
	int rc = 0;
	struct dirent *e;
	while (rc == 0 && (e = readdir(d))) {
		size_t l = strlen(e->d_name);
		if (e->d_name[0] == '.' || l < 6 || strcmp(e->d_name + l - 5, ".json") != 0)
			continue;
		char *p = talloc_asprintf(NULL, "%s/%s", ar->names, e->d_name);
		char *buf;
		size_t n;
		if (!p) {
			rc = -ENOMEM;
			break;
		}
		int r = read_small(p, p, MANIFEST_MAX, &buf, &n);
		if (r == 0) {
			json_t *j = json_loadb(buf, n, 0, NULL);
			const char *s = json_string_value(json_object_get(j, "sha256"));
			if (s && strcmp(s, sha) == 0)
				rc = 1;
			json_decref(j);
		} else if (r != -ENOENT) {
			rc = r; /* unreadable: keep the object, to be safe */
		}
		talloc_free(p);
	}
	closedir(d);
	return rc;
}

int gh_archive_delete(gh_archive_t *ar, const char *name)
{
	if (!gh_archive_name_valid(name))
		return -EINVAL;
	void *tc = talloc_new(NULL);
	if (!tc)
		return -ENOMEM;
	gh_archive_ref_t *r;
	int lk = lock_take(ar, LOCK_EX), rc = lk;
	if (lk < 0)
		goto out;
	if ((rc = manifest_read(ar, tc, name, &r)) < 0)
		goto out;
	if (gh_clock_now_ms(ar->clock) < r->retention_until_ms) {
		rc = -EPERM;
		goto out;
	}
	char *mpath = manifest_path(ar, tc, name);
	char *opath = gh_archive_object_path(ar, tc, r);
	if (!mpath || !opath) {
		rc = -ENOMEM;
		goto out;
	}
	if (unlink(mpath) < 0 || (rc = fsync_dir(ar->names)) < 0) {
		rc = rc < 0 ? rc : errno_rc();
		goto out;
	}
	/* Under the exclusive lock no put is between its object and its name. */
	rc = sha_referenced(ar, r->sha256);
	if (rc == 0) {
		char *sub = talloc_asprintf(tc, "%s/%.2s", ar->objects, r->sha256);
		if (!sub)
			rc = -ENOMEM;
		else if (unlink(opath) < 0 && errno != ENOENT)
			rc = errno_rc();
		else
			rc = fsync_dir(sub);
	} else if (rc == 1) {
		rc = 0;
	}
	if (rc < 0) {
		/* The name is gone, which is what was asked; the object stays as an orphan. */
		gh_log(GH_LOG_WARN, "archive object kept after delete", "name", name, "sha256",
		       r->sha256, "error", strerror(-rc), NULL);
		rc = 0;
	}
	if (rc == 0) {
		char until[25];
		gh_time_format(r->retention_until_ms, until);
		gh_log(GH_LOG_INFO, "archive name deleted", "name", name, "sha256", r->sha256,
		       "retention_until", until, NULL);
	}
out:
	if (lk >= 0)
		lock_release(lk);
	talloc_free(tc);
	return rc;
}
