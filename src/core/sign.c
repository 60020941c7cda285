/* sign: detached signatures, signers and SHA-256; contracts in sign.h. */
#include "sign.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <talloc.h>
#include <unistd.h>

#include "log.h"

#define RSA_MIN_BITS 2048
#define ED25519_LEN  32
#define PEM_MAX      (64 * 1024) /* a key file larger than this is not a key */

const char *const gh_sign_alg_names[] = {"auto", "rsa-pkcs1-sha256", "rsa-pss-sha256", "ed25519",
                                         NULL};

int gh_sign_alg_parse(const char *s, gh_sign_alg_t *out)
{
	for (int i = 0; s && gh_sign_alg_names[i]; i++) {
		if (strcmp(s, gh_sign_alg_names[i]) == 0) {
			*out = (gh_sign_alg_t)i;
			return 0;
		}
	}
	return -EINVAL;
}

static void hex(const unsigned char *b, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[b[i] >> 4];
		out[2 * i + 1] = d[b[i] & 15];
	}
	out[2 * n] = '\0';
}

/* ---- SHA-256 ---- */

struct gh_sign_sha256_s {
	EVP_MD_CTX *md;
};

static int sha_destroy(gh_sign_sha256_t *h)
{
	EVP_MD_CTX_free(h->md);
	return 0;
}

gh_sign_sha256_t *gh_sign_sha256_new(void *ctx)
{
	gh_sign_sha256_t *h = talloc_zero(ctx, gh_sign_sha256_t);
	if (!h)
		return NULL;
	talloc_set_destructor(h, sha_destroy);
	h->md = EVP_MD_CTX_new();
	if (!h->md || gh_sign_sha256_reset(h) < 0) {
		talloc_free(h);
		return NULL;
	}
	return h;
}

int gh_sign_sha256_reset(gh_sign_sha256_t *h)
{
	if (EVP_DigestInit_ex(h->md, EVP_sha256(), NULL) != 1) {
		ERR_clear_error();
		return -EIO;
	}
	return 0;
}

int gh_sign_sha256_update(gh_sign_sha256_t *h, const void *data, size_t len)
{
	if (len && EVP_DigestUpdate(h->md, data, len) != 1) {
		ERR_clear_error();
		return -EIO;
	}
	return 0;
}

int gh_sign_sha256_final(gh_sign_sha256_t *h, char out[GH_SHA256_HEX_LEN + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned n = 0;
	if (EVP_DigestFinal_ex(h->md, md, &n) != 1 || n != 32) {
		ERR_clear_error();
		return -EIO;
	}
	hex(md, n, out);
	return 0;
}

int gh_sign_sha256_hex(const void *data, size_t len, char out[GH_SHA256_HEX_LEN + 1])
{
	unsigned char md[32];
	if (EVP_Digest(data, len, md, NULL, EVP_sha256(), NULL) != 1) {
		ERR_clear_error();
		return -EIO;
	}
	hex(md, sizeof(md), out);
	return 0;
}

int gh_sign_sha256_file(const char *path, char out[GH_SHA256_HEX_LEN + 1], uint64_t *size)
{
	enum { CHUNK = 64 * 1024 };
	int rc = 0;
	uint64_t total = 0;
	unsigned char *buf = NULL;
	gh_sign_sha256_t *h = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ENOENT : -EIO;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		rc = -EIO;
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		rc = -EISDIR;
		goto out;
	}
	buf = malloc(CHUNK);
	h = gh_sign_sha256_new(NULL);
	if (!buf || !h) {
		rc = -ENOMEM;
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, buf, CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -EIO;
			goto out;
		}
		if (n == 0)
			break;
		if ((rc = gh_sign_sha256_update(h, buf, (size_t)n)) < 0)
			goto out;
		total += (uint64_t)n;
	}
	rc = gh_sign_sha256_final(h, out);
	if (rc == 0 && size)
		*size = total;
out:
	talloc_free(h);
	free(buf);
	close(fd);
	return rc;
}

/* ---- base64 ---- */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

static int is_ws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

int gh_sign_b64_decode(void *ctx, const char *in, size_t len, uint8_t **out, size_t *out_len)
{
	uint8_t *buf = talloc_size(ctx, len / 4 * 3 + 4);
	if (!buf)
		return -ENOMEM;
	size_t n = 0, chars = 0, pad = 0;
	uint32_t acc = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		if (is_ws(c))
			continue;
		if (c == '=') {
			pad++;
			continue;
		}
		int v = b64_val(c);
		if (v < 0 || pad) /* a foreign byte, or data after padding */
			goto bad;
		acc = acc << 6 | (uint32_t)v;
		if (++chars % 4 == 0) {
			buf[n++] = (uint8_t)(acc >> 16);
			buf[n++] = (uint8_t)(acc >> 8);
			buf[n++] = (uint8_t)acc;
			acc = 0;
		}
	}
	size_t rem = chars % 4;
	if (rem == 1 || (pad && pad != 4 - rem) || (rem == 0 && pad))
		goto bad;
	/* The unused low bits of the last group must be zero: one text per byte string. */
	if (rem == 2) {
		if (acc & 0xf)
			goto bad;
		buf[n++] = (uint8_t)(acc >> 4);
	} else if (rem == 3) {
		if (acc & 0x3)
			goto bad;
		buf[n++] = (uint8_t)(acc >> 10);
		buf[n++] = (uint8_t)(acc >> 2);
	}
	buf[n] = 0;
	*out = buf;
	*out_len = n;
	return 0;
bad:
	talloc_free(buf);
	return -EINVAL;
}

char *gh_sign_b64_encode(void *ctx, const void *in, size_t len)
{
	const uint8_t *p = in;
	char *s = talloc_size(ctx, (len + 2) / 3 * 4 + 1);
	if (!s)
		return NULL;
	size_t o = 0, i = 0;
	for (; i + 3 <= len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		s[o++] = B64[v >> 18];
		s[o++] = B64[(v >> 12) & 63];
		s[o++] = B64[(v >> 6) & 63];
		s[o++] = B64[v & 63];
	}
	if (len - i == 1) {
		uint32_t v = (uint32_t)p[i] << 16;
		s[o++] = B64[v >> 18];
		s[o++] = B64[(v >> 12) & 63];
		s[o++] = '=';
		s[o++] = '=';
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		s[o++] = B64[v >> 18];
		s[o++] = B64[(v >> 12) & 63];
		s[o++] = B64[(v >> 6) & 63];
		s[o++] = '=';
	}
	s[o] = '\0';
	return s;
}

/* ---- public keys ---- */

struct gh_sign_pubkey_s {
	EVP_PKEY *pkey;
	int type; /* EVP_PKEY_RSA, EVP_PKEY_RSA_PSS, EVP_PKEY_ED25519 */
	size_t sig_len;
	char *pem;
	char id[GH_SHA256_HEX_LEN + 1];
};

static int pubkey_destroy(gh_sign_pubkey_t *k)
{
	EVP_PKEY_free(k->pkey);
	return 0;
}

/* Check a key's type and size; 0 or -EINVAL. */
static int key_acceptable(EVP_PKEY *pkey, int *type)
{
	int t = EVP_PKEY_get_base_id(pkey);
	if (t == EVP_PKEY_ED25519) {
		*type = t;
		return 0;
	}
	if ((t == EVP_PKEY_RSA || t == EVP_PKEY_RSA_PSS) &&
	    EVP_PKEY_get_bits(pkey) >= RSA_MIN_BITS) {
		*type = t;
		return 0;
	}
	return -EINVAL;
}

/* Wrap pkey (a public or private key; only its public half is kept) as a pubkey. On success
 * the caller still owns pkey. */
static int pubkey_from_evp(void *ctx, EVP_PKEY *pkey, gh_sign_pubkey_t **out)
{
	int rc = -ENOMEM, type;
	unsigned char *der = NULL;
	BIO *bio = NULL;
	if (key_acceptable(pkey, &type) < 0)
		return -EINVAL;
	gh_sign_pubkey_t *k = talloc_zero(ctx, gh_sign_pubkey_t);
	if (!k)
		return -ENOMEM;
	talloc_set_destructor(k, pubkey_destroy);
	k->type = type;
	k->sig_len = (size_t)EVP_PKEY_get_size(pkey);
	/* A DER round trip drops the private half, so a signer's pubkey never holds it. */
	int dlen = i2d_PUBKEY(pkey, &der);
	if (dlen <= 0) {
		rc = -EINVAL;
		goto out;
	}
	const unsigned char *p = der;
	k->pkey = d2i_PUBKEY(NULL, &p, dlen);
	if (!k->pkey) {
		rc = -EINVAL;
		goto out;
	}
	if ((rc = gh_sign_sha256_hex(der, (size_t)dlen, k->id)) < 0)
		goto out;
	rc = -ENOMEM;
	bio = BIO_new(BIO_s_mem());
	if (!bio || PEM_write_bio_PUBKEY(bio, k->pkey) != 1)
		goto out;
	char *mem;
	long mlen = BIO_get_mem_data(bio, &mem);
	k->pem = talloc_strndup(k, mem, (size_t)mlen);
	if (!k->pem)
		goto out;
	rc = 0;
	*out = k;
out:
	OPENSSL_free(der);
	BIO_free(bio);
	if (rc < 0) {
		ERR_clear_error();
		talloc_free(k);
	}
	return rc;
}

int gh_sign_pubkey_load(void *ctx, const char *pem, size_t len, gh_sign_pubkey_t **out)
{
	if (!pem || len == 0 || len > PEM_MAX)
		return -EINVAL;
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	if (!bio)
		return -ENOMEM;
	EVP_PKEY *pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (!pkey) {
		ERR_clear_error();
		return -EINVAL;
	}
	int rc = pubkey_from_evp(ctx, pkey, out);
	EVP_PKEY_free(pkey);
	return rc;
}

int gh_sign_pubkey_alg(const gh_sign_pubkey_t *k, gh_sign_alg_t *alg)
{
	switch (k->type) {
	case EVP_PKEY_ED25519: *alg = GH_SIGN_ED25519; return 0;
	case EVP_PKEY_RSA_PSS: *alg = GH_SIGN_RSA_PSS_SHA256; return 0;
	default: return -EINVAL; /* plain RSA: PKCS#1 or PSS must be stated */
	}
}

size_t gh_sign_pubkey_sig_len(const gh_sign_pubkey_t *k) { return k->sig_len; }
const char *gh_sign_pubkey_id(const gh_sign_pubkey_t *k) { return k->id; }
const char *gh_sign_pubkey_pem(const gh_sign_pubkey_t *k) { return k->pem; }

/* The effective algorithm of alg with a key of type; 0 or -EINVAL when they do not fit. */
static int resolve_alg(int type, gh_sign_alg_t alg, gh_sign_alg_t *eff)
{
	switch (alg) {
	case GH_SIGN_AUTO:
		if (type == EVP_PKEY_ED25519)
			*eff = GH_SIGN_ED25519;
		else if (type == EVP_PKEY_RSA_PSS)
			*eff = GH_SIGN_RSA_PSS_SHA256;
		else
			return -EINVAL;
		return 0;
	case GH_SIGN_RSA_PKCS1_SHA256:
		if (type != EVP_PKEY_RSA)
			return -EINVAL;
		break;
	case GH_SIGN_RSA_PSS_SHA256:
		if (type != EVP_PKEY_RSA && type != EVP_PKEY_RSA_PSS)
			return -EINVAL;
		break;
	case GH_SIGN_ED25519:
		if (type != EVP_PKEY_ED25519)
			return -EINVAL;
		break;
	default: return -EINVAL;
	}
	*eff = alg;
	return 0;
}

/* Padding parameters on a DigestSign/DigestVerify context. PSS salt: when signing, the digest
 * length (RFC 8017 9.1 recommendation); when verifying, recovered from the encoding. */
static int set_rsa_params(EVP_PKEY_CTX *pc, gh_sign_alg_t alg, int verify)
{
	if (alg == GH_SIGN_RSA_PKCS1_SHA256)
		return EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) == 1 ? 0 : -EINVAL;
	if (alg != GH_SIGN_RSA_PSS_SHA256)
		return 0;
	if (EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md(pc, EVP_sha256()) != 1 ||
	    EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, verify ? RSA_PSS_SALTLEN_AUTO
	                                                : RSA_PSS_SALTLEN_DIGEST) != 1)
		return -EINVAL;
	return 0;
}

int gh_sign_verify(const gh_sign_pubkey_t *k, gh_sign_alg_t alg, const void *data, size_t len,
                   const uint8_t *sig, size_t sig_len)
{
	gh_sign_alg_t eff;
	if (!k || (!data && len) || resolve_alg(k->type, alg, &eff) < 0)
		return -EINVAL;
	if (!sig || sig_len != k->sig_len)
		return -EBADMSG;
	int rc = -ENOMEM;
	EVP_PKEY_CTX *pc = NULL;
	EVP_MD_CTX *mc = EVP_MD_CTX_new();
	if (!mc)
		goto out;
	/* EVP_DigestVerifyInit_ex takes a non-const key; it only adds a reference. */
	if (EVP_DigestVerifyInit_ex(mc, &pc, eff == GH_SIGN_ED25519 ? NULL : "SHA256", NULL, NULL,
	                            k->pkey, NULL) != 1) {
		rc = -EINVAL; /* e.g. an RSA-PSS key restricted to another digest */
		goto out;
	}
	if ((rc = set_rsa_params(pc, eff, 1)) < 0)
		goto out;
	int r = EVP_DigestVerify(mc, sig, sig_len, data ? data : (const void *)"", len);
	rc = r == 1 ? 0 : -EBADMSG;
out:
	EVP_MD_CTX_free(mc);
	ERR_clear_error();
	return rc;
}

/* Map a whole file read-only; *p is NULL for an empty file. 0, -ENOENT, -EINVAL (not a regular
 * file), -EIO. */
static int map_file(const char *path, const void **p, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ENOENT : -EIO;
	int rc = 0;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		rc = -EIO;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		goto out;
	}
	*p = NULL;
	*len = (size_t)st.st_size;
	if (*len == 0)
		goto out;
	void *m = mmap(NULL, *len, PROT_READ, MAP_PRIVATE, fd, 0);
	if (m == MAP_FAILED) {
		rc = -EIO;
		goto out;
	}
	madvise(m, *len, MADV_SEQUENTIAL);
	*p = m;
out:
	close(fd);
	return rc;
}

int gh_sign_verify_file(const gh_sign_pubkey_t *k, gh_sign_alg_t alg, const char *path,
                        const uint8_t *sig, size_t sig_len)
{
	const void *p;
	size_t len;
	int rc = map_file(path, &p, &len);
	if (rc < 0)
		return rc;
	rc = gh_sign_verify(k, alg, p, len, sig, sig_len);
	if (p)
		munmap((void *)p, len);
	return rc;
}

int gh_sign_verify_pem(const char *pem, size_t pem_len, gh_sign_alg_t alg, const void *data,
                       size_t len, const uint8_t *sig, size_t sig_len)
{
	gh_sign_pubkey_t *k;
	int rc = gh_sign_pubkey_load(NULL, pem, pem_len, &k);
	if (rc < 0)
		return rc;
	rc = gh_sign_verify(k, alg, data, len, sig, sig_len);
	talloc_free(k);
	return rc;
}

int gh_sign_sig_decode(void *ctx, const gh_sign_pubkey_t *k, const void *in, size_t len,
                       uint8_t **sig, size_t *sig_len)
{
	if (!in)
		return -EINVAL;
	if (len == k->sig_len) {
		*sig = talloc_memdup(ctx, in, len);
		if (!*sig)
			return -ENOMEM;
		*sig_len = len;
		return 0;
	}
	uint8_t *b;
	size_t n;
	int rc = gh_sign_b64_decode(ctx, in, len, &b, &n);
	if (rc < 0)
		return rc;
	if (n != k->sig_len) {
		talloc_free(b);
		return -EINVAL;
	}
	*sig = b;
	*sig_len = n;
	return 0;
}

/* ---- PKCS#11 modules ---- */

/* One entry per loaded module, process-wide: C_Initialize is per process, so signers on the
 * same module share it and the last one out calls C_Finalize. Modules are never dlclose'd:
 * unloading a C++ module with static destructors while anything may still hold a pointer
 * into it is a known crash source, and a process uses one or two modules. */
typedef struct p11_mod_s {
	struct p11_mod_s *next;
	void *dl;
	CK_FUNCTION_LIST_PTR f;
	int refs;
	int owns_init; /* we called C_Initialize (not someone else in the process) */
} p11_mod_t;

static pthread_mutex_t p11_mu = PTHREAD_MUTEX_INITIALIZER;
static p11_mod_t *p11_mods;

static void p11_log(const char *what, CK_RV rv)
{
	char code[24];
	snprintf(code, sizeof(code), "0x%lx", (unsigned long)rv);
	gh_log(GH_LOG_ERROR, "pkcs11 call failed", "call", what, "ckr", code, NULL);
}

static int p11_mod_get(const char *path, p11_mod_t **out)
{
	int rc = 0;
	pthread_mutex_lock(&p11_mu);
	void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!dl) {
		gh_log(GH_LOG_ERROR, "pkcs11 module not loadable", "module", path, "error",
		       dlerror(), NULL);
		rc = -ENOENT;
		goto out;
	}
	p11_mod_t *m = p11_mods;
	while (m && m->dl != dl)
		m = m->next;
	if (m)
		dlclose(dl); /* already held by the entry */
	if (!m) {
		CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList");
		CK_FUNCTION_LIST_PTR f = NULL;
		if (!gfl || gfl(&f) != CKR_OK || !f) {
			gh_log(GH_LOG_ERROR, "not a pkcs11 module", "module", path, NULL);
			dlclose(dl);
			rc = -ENOENT;
			goto out;
		}
		m = calloc(1, sizeof(*m));
		if (!m) {
			dlclose(dl);
			rc = -ENOMEM;
			goto out;
		}
		m->dl = dl;
		m->f = f;
		m->next = p11_mods;
		p11_mods = m;
	}
	if (m->refs == 0) {
		CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK};
		CK_RV rv = m->f->C_Initialize(&args);
		if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
			p11_log("C_Initialize", rv);
			rc = -EIO;
			goto out;
		}
		m->owns_init = rv == CKR_OK;
	}
	m->refs++;
	*out = m;
out:
	pthread_mutex_unlock(&p11_mu);
	return rc;
}

static void p11_mod_put(p11_mod_t *m)
{
	pthread_mutex_lock(&p11_mu);
	if (--m->refs == 0 && m->owns_init) {
		m->f->C_Finalize(NULL);
		m->owns_init = 0;
	}
	pthread_mutex_unlock(&p11_mu);
}

typedef struct {
	p11_mod_t *m;
	char *token_label, *key_label, *pin;
	CK_SESSION_HANDLE sess;
	int have_sess;
	CK_OBJECT_HANDLE key;
	pthread_mutex_t mu; /* one operation at a time per session (PKCS#11 5.6) */
} p11_t;

static void p11_close(p11_t *p)
{
	if (p->have_sess)
		p->m->f->C_CloseSession(p->sess);
	p->have_sess = 0;
}

/* The slot whose token carries label (blank-padded in CK_TOKEN_INFO). */
static int p11_find_slot(p11_t *p, CK_SLOT_ID *slot)
{
	CK_FUNCTION_LIST_PTR f = p->m->f;
	CK_ULONG n = 0;
	CK_RV rv = f->C_GetSlotList(CK_TRUE, NULL, &n);
	if (rv != CKR_OK) {
		p11_log("C_GetSlotList", rv);
		return -EIO;
	}
	CK_SLOT_ID *ids = talloc_array(NULL, CK_SLOT_ID, n ? n : 1);
	if (!ids)
		return -ENOMEM;
	int rc = -ENOENT;
	if ((rv = f->C_GetSlotList(CK_TRUE, ids, &n)) != CKR_OK) {
		p11_log("C_GetSlotList", rv);
		rc = -EIO;
		goto out;
	}
	size_t want = strlen(p->token_label);
	for (CK_ULONG i = 0; i < n; i++) {
		CK_TOKEN_INFO ti;
		if (f->C_GetTokenInfo(ids[i], &ti) != CKR_OK)
			continue;
		size_t l = sizeof(ti.label);
		while (l > 0 && ti.label[l - 1] == ' ')
			l--;
		if (l != want || memcmp(ti.label, p->token_label, l) != 0)
			continue;
		if (rc == 0) {
			gh_log(GH_LOG_ERROR, "pkcs11 token label not unique", "token",
			       p->token_label, NULL);
			rc = -EINVAL;
			goto out;
		}
		*slot = ids[i];
		rc = 0;
	}
	if (rc == -ENOENT)
		gh_log(GH_LOG_ERROR, "pkcs11 token not found", "token", p->token_label, NULL);
out:
	talloc_free(ids);
	return rc;
}

/* The one object of class with the key label. 0, -ENOENT, -EINVAL (several), -EIO. */
static int p11_find_one(p11_t *p, CK_OBJECT_CLASS cls, CK_OBJECT_HANDLE *h)
{
	CK_FUNCTION_LIST_PTR f = p->m->f;
	CK_ATTRIBUTE t[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},
	    {CKA_LABEL, p->key_label, strlen(p->key_label)},
	};
	CK_OBJECT_HANDLE found[2];
	CK_ULONG n = 0;
	CK_RV rv = f->C_FindObjectsInit(p->sess, t, 2);
	if (rv != CKR_OK) {
		p11_log("C_FindObjectsInit", rv);
		return -EIO;
	}
	rv = f->C_FindObjects(p->sess, found, 2, &n);
	f->C_FindObjectsFinal(p->sess);
	if (rv != CKR_OK) {
		p11_log("C_FindObjects", rv);
		return -EIO;
	}
	if (n == 0)
		return -ENOENT;
	if (n > 1) {
		gh_log(GH_LOG_ERROR, "pkcs11 key label not unique", "key", p->key_label, NULL);
		return -EINVAL;
	}
	*h = found[0];
	return 0;
}

/* Open a session, log in and find the private key. */
static int p11_connect(p11_t *p)
{
	CK_FUNCTION_LIST_PTR f = p->m->f;
	CK_SLOT_ID slot;
	int rc = p11_find_slot(p, &slot);
	if (rc < 0)
		return rc;
	CK_RV rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &p->sess);
	if (rv != CKR_OK) {
		p11_log("C_OpenSession", rv);
		return -EIO;
	}
	p->have_sess = 1;
	rv = f->C_Login(p->sess, CKU_USER, (CK_UTF8CHAR_PTR)p->pin, strlen(p->pin));
	if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_INVALID || rv == CKR_PIN_LEN_RANGE ||
	    rv == CKR_PIN_LOCKED || rv == CKR_PIN_EXPIRED) {
		p11_log("C_Login", rv);
		rc = -EACCES;
		goto fail;
	}
	if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
		p11_log("C_Login", rv);
		rc = -EIO;
		goto fail;
	}
	if ((rc = p11_find_one(p, CKO_PRIVATE_KEY, &p->key)) < 0) {
		if (rc == -ENOENT)
			gh_log(GH_LOG_ERROR, "pkcs11 private key not found", "key", p->key_label,
			       NULL);
		goto fail;
	}
	CK_KEY_TYPE kt = 0;
	CK_ATTRIBUTE a = {CKA_KEY_TYPE, &kt, sizeof(kt)};
	if ((rv = f->C_GetAttributeValue(p->sess, p->key, &a, 1)) != CKR_OK) {
		p11_log("C_GetAttributeValue", rv);
		rc = -EIO;
		goto fail;
	}
	if (kt != CKK_EC_EDWARDS) {
		gh_log(GH_LOG_ERROR, "pkcs11 key is not EdDSA", "key", p->key_label, NULL);
		rc = -ENOTSUP;
		goto fail;
	}
	return 0;
fail:
	p11_close(p);
	return rc;
}

/* The Ed25519 public key of the pair, from CKA_EC_POINT of the public key object: a DER OCTET
 * STRING (04 20 || 32 bytes, PKCS#11 3.0) or, from some tokens, the 32 raw bytes. */
static int p11_pubkey(void *ctx, p11_t *p, gh_sign_pubkey_t **out)
{
	CK_OBJECT_HANDLE h;
	int rc = p11_find_one(p, CKO_PUBLIC_KEY, &h);
	if (rc < 0) {
		if (rc == -ENOENT)
			gh_log(GH_LOG_ERROR, "pkcs11 public key not found", "key", p->key_label,
			       NULL);
		return rc;
	}
	unsigned char pt[64];
	CK_ATTRIBUTE a = {CKA_EC_POINT, pt, sizeof(pt)};
	CK_RV rv = p->m->f->C_GetAttributeValue(p->sess, h, &a, 1);
	if (rv == CKR_BUFFER_TOO_SMALL || (rv == CKR_OK && a.ulValueLen > sizeof(pt)))
		return -ENOTSUP; /* Ed448 or something else */
	if (rv != CKR_OK) {
		p11_log("C_GetAttributeValue", rv);
		return -EIO;
	}
	const unsigned char *raw;
	if (a.ulValueLen == ED25519_LEN)
		raw = pt;
	else if (a.ulValueLen == ED25519_LEN + 2 && pt[0] == 0x04 && pt[1] == ED25519_LEN)
		raw = pt + 2;
	else
		return -ENOTSUP;
	EVP_PKEY *pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw, ED25519_LEN);
	if (!pk) {
		ERR_clear_error();
		return -EINVAL;
	}
	rc = pubkey_from_evp(ctx, pk, out);
	EVP_PKEY_free(pk);
	return rc;
}

static int session_lost(CK_RV rv)
{
	return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED ||
	       rv == CKR_USER_NOT_LOGGED_IN || rv == CKR_DEVICE_REMOVED ||
	       rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_KEY_HANDLE_INVALID ||
	       rv == CKR_OBJECT_HANDLE_INVALID;
}

/* One C_SignInit + C_Sign; *rv gets the failing code. */
static int p11_sign_once(p11_t *p, void *ctx, const void *data, size_t len, uint8_t **sig,
                         size_t *sig_len, CK_RV *rv)
{
	CK_FUNCTION_LIST_PTR f = p->m->f;
	CK_MECHANISM mech = {CKM_EDDSA, NULL, 0};
	CK_ULONG n = 0;
	*rv = f->C_SignInit(p->sess, &mech, p->key);
	if (*rv != CKR_OK) {
		if (!session_lost(*rv)) /* that one is retried and logged by the caller */
			p11_log("C_SignInit", *rv);
		return -EIO;
	}
	/* Length query (pSignature NULL) leaves the operation active (PKCS#11 5.2). */
	*rv = f->C_Sign(p->sess, (CK_BYTE_PTR)data, len, NULL, &n);
	if (*rv != CKR_OK) {
		if (!session_lost(*rv))
			p11_log("C_Sign", *rv);
		return -EIO;
	}
	uint8_t *b = talloc_size(ctx, n ? n : 1);
	if (!b) {
		/* End the pending operation before giving up. */
		CK_BYTE tmp[128];
		CK_ULONG tn = sizeof(tmp);
		f->C_Sign(p->sess, (CK_BYTE_PTR)data, len, tmp, &tn);
		return -ENOMEM;
	}
	*rv = f->C_Sign(p->sess, (CK_BYTE_PTR)data, len, b, &n);
	if (*rv != CKR_OK) {
		p11_log("C_Sign", *rv);
		talloc_free(b);
		return -EIO;
	}
	*sig = b;
	*sig_len = n;
	return 0;
}

static int p11_sign(p11_t *p, void *ctx, const void *data, size_t len, uint8_t **sig,
                    size_t *sig_len)
{
	int rc = 0;
	CK_RV rv = CKR_OK;
	pthread_mutex_lock(&p->mu);
	for (int attempt = 0; attempt < 2; attempt++) {
		if (!p->have_sess && (rc = p11_connect(p)) < 0)
			break;
		rc = p11_sign_once(p, ctx, data, len, sig, sig_len, &rv);
		if (rc != -EIO || !session_lost(rv))
			break;
		char code[24];
		snprintf(code, sizeof(code), "0x%lx", (unsigned long)rv);
		gh_log(GH_LOG_WARN, "pkcs11 session lost, reconnecting", "key", p->key_label, "ckr",
		       code, NULL);
		p11_close(p);
	}
	pthread_mutex_unlock(&p->mu);
	return rc;
}

/* ---- signers ---- */

struct gh_signer_s {
	gh_sign_alg_t alg;
	gh_sign_pubkey_t *pub;
	EVP_PKEY *priv; /* PEM signer */
	p11_t *p11;     /* PKCS#11 signer */
};

static int signer_destroy(gh_signer_t *s)
{
	EVP_PKEY_free(s->priv);
	if (s->p11) {
		p11_t *p = s->p11;
		pthread_mutex_lock(&p->mu);
		p11_close(p);
		pthread_mutex_unlock(&p->mu);
		pthread_mutex_destroy(&p->mu);
		if (p->pin)
			OPENSSL_cleanse(p->pin, strlen(p->pin));
		if (p->m)
			p11_mod_put(p->m);
	}
	return 0;
}

int gh_signer_pem_load(void *ctx, const char *pem, size_t len, gh_sign_alg_t alg, gh_signer_t **out)
{
	if (!pem || len == 0 || len > PEM_MAX)
		return -EINVAL;
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	if (!bio)
		return -ENOMEM;
	/* The empty-passphrase callback makes an encrypted key fail instead of prompting. */
	EVP_PKEY *pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *)"");
	BIO_free(bio);
	if (!pkey) {
		ERR_clear_error();
		return -EINVAL;
	}
	int rc = -ENOMEM;
	gh_signer_t *s = talloc_zero(ctx, gh_signer_t);
	if (!s)
		goto fail;
	talloc_set_destructor(s, signer_destroy);
	s->priv = pkey;
	pkey = NULL;
	if ((rc = pubkey_from_evp(s, s->priv, &s->pub)) < 0 ||
	    (rc = resolve_alg(s->pub->type, alg, &s->alg)) < 0)
		goto fail;
	*out = s;
	return 0;
fail:
	EVP_PKEY_free(pkey);
	talloc_free(s);
	return rc;
}

/* Read a whole small file into a talloc buffer. */
static int read_small(void *ctx, const char *path, size_t max, char **buf, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ENOENT : -EIO;
	int rc = 0;
	char *b = talloc_size(ctx, max + 1);
	size_t n = 0;
	if (!b) {
		rc = -ENOMEM;
		goto out;
	}
	for (;;) {
		ssize_t r = read(fd, b + n, max + 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -EIO;
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (n > max) {
			rc = -EINVAL;
			goto out;
		}
	}
	*buf = b;
	*len = n;
out:
	if (rc < 0)
		talloc_free(b);
	close(fd);
	return rc;
}

int gh_signer_pem_open(void *ctx, const char *path, gh_sign_alg_t alg, gh_signer_t **out)
{
	char *buf;
	size_t len;
	int rc = read_small(NULL, path, PEM_MAX, &buf, &len);
	if (rc < 0)
		return rc;
	rc = gh_signer_pem_load(ctx, buf, len, alg, out);
	OPENSSL_cleanse(buf, len);
	talloc_free(buf);
	return rc;
}

static int pem_sign(gh_signer_t *s, void *ctx, const void *data, size_t len, uint8_t **sig,
                    size_t *sig_len)
{
	int rc = -ENOMEM;
	uint8_t *b = NULL;
	EVP_PKEY_CTX *pc = NULL;
	EVP_MD_CTX *mc = EVP_MD_CTX_new();
	if (!mc)
		goto out;
	rc = -EIO;
	if (EVP_DigestSignInit_ex(mc, &pc, s->alg == GH_SIGN_ED25519 ? NULL : "SHA256", NULL, NULL,
	                          s->priv, NULL) != 1 ||
	    set_rsa_params(pc, s->alg, 0) < 0)
		goto out;
	size_t n = 0;
	if (EVP_DigestSign(mc, NULL, &n, data, len) != 1)
		goto out;
	rc = -ENOMEM;
	if (!(b = talloc_size(ctx, n)))
		goto out;
	rc = -EIO;
	if (EVP_DigestSign(mc, b, &n, data, len) != 1)
		goto out;
	*sig = b;
	*sig_len = n;
	b = NULL;
	rc = 0;
out:
	talloc_free(b);
	EVP_MD_CTX_free(mc);
	ERR_clear_error();
	return rc;
}

int gh_signer_pkcs11_open(void *ctx, const gh_sign_pkcs11_opts_t *o, gh_signer_t **out)
{
	if (!o || !o->module || !*o->module || !o->token_label || !*o->token_label || !o->pin ||
	    !o->key_label || !*o->key_label || strlen(o->token_label) > 32)
		return -EINVAL;
	gh_signer_t *s = talloc_zero(ctx, gh_signer_t);
	if (!s)
		return -ENOMEM;
	p11_t *p = talloc_zero(s, p11_t);
	if (!p) {
		talloc_free(s);
		return -ENOMEM;
	}
	pthread_mutex_init(&p->mu, NULL);
	s->p11 = p;
	s->alg = GH_SIGN_ED25519;
	talloc_set_destructor(s, signer_destroy);
	int rc = -ENOMEM;
	p->token_label = talloc_strdup(p, o->token_label);
	p->key_label = talloc_strdup(p, o->key_label);
	p->pin = talloc_strdup(p, o->pin);
	if (!p->token_label || !p->key_label || !p->pin)
		goto fail;
	if ((rc = p11_mod_get(o->module, &p->m)) < 0 || (rc = p11_connect(p)) < 0 ||
	    (rc = p11_pubkey(s, p, &s->pub)) < 0)
		goto fail;
	/* Probe: the token's private key and the public key object must be one pair. */
	uint8_t *sig;
	size_t n;
	static const char probe[] = "ghasi pkcs11 key pair probe";
	if ((rc = gh_signer_sign(s, s, probe, sizeof(probe) - 1, &sig, &n)) < 0)
		goto fail;
	talloc_free(sig);
	*out = s;
	return 0;
fail:
	talloc_free(s);
	return rc;
}

int gh_signer_sign(gh_signer_t *s, void *ctx, const void *data, size_t len, uint8_t **sig,
                   size_t *sig_len)
{
	if (!s || (!data && len) || !sig || !sig_len)
		return -EINVAL;
	if (!data)
		data = "";
	uint8_t *b;
	size_t n;
	int rc =
	    s->p11 ? p11_sign(s->p11, ctx, data, len, &b, &n) : pem_sign(s, ctx, data, len, &b, &n);
	if (rc < 0)
		return rc;
	/* Verify before returning: a key replaced on the token behind our back, or a faulty
	 * signature, fails here rather than at the regulator. */
	if (gh_sign_verify(s->pub, s->alg, data, len, b, n) != 0) {
		gh_log(GH_LOG_ERROR, "signature does not verify with the signer's public key",
		       "key_id", s->pub->id, NULL);
		talloc_free(b);
		return -EIO;
	}
	*sig = b;
	*sig_len = n;
	return 0;
}

gh_sign_alg_t gh_signer_alg(const gh_signer_t *s) { return s->alg; }
const gh_sign_pubkey_t *gh_signer_pubkey(const gh_signer_t *s) { return s->pub; }
