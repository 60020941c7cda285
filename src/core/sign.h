/* sign: detached signatures over exact bytes (OpenSSL 3 EVP), a signer that hides where the
 * private key lives (PEM file or PKCS#11 token), and SHA-256 helpers.
 *
 * Algorithms (issue 4, MNO imports and regulator exports):
 *   GH_SIGN_RSA_PKCS1_SHA256  RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017 8.2)
 *   GH_SIGN_RSA_PSS_SHA256    RSASSA-PSS, SHA-256, MGF1-SHA-256 (RFC 8017 8.1). Verify accepts
 *                             any salt length (OpenSSL "auto": the length is recovered from the
 *                             encoding), because senders differ: RFC 8017/most libraries use
 *                             the digest length (32), `openssl pkeyutl` and `dgst -sigopt`
 *                             default to the maximum. Our own PSS signatures use 32.
 *   GH_SIGN_ED25519           PureEdDSA over the message (RFC 8032); no pre-hash.
 *
 * Choosing the algorithm: GH_SIGN_AUTO takes it from the key type, which is only unambiguous
 * for Ed25519 keys and RSA-PSS-typed keys (SPKI OID id-RSASSA-PSS). A plain RSA key can make
 * both PKCS#1 v1.5 and PSS signatures, and the verifier does not try both: the caller states
 * which one the key holder uses (the operator's signing-key record carries it), so AUTO with
 * such a key is -EINVAL. Trying both would double the forms an attacker may present and hide a
 * sender's misconfiguration; stating it costs one field.
 * RSA keys shorter than 2048 bits are refused (-EINVAL) at load.
 *
 * Ed25519 in OpenSSL is one-shot (EVP_DigestVerify over the whole message, no Update), so
 * files are verified from memory: gh_sign_verify_file mmaps the file (a 1M-row import, ~60 MB,
 * costs address space, not resident heap). RSA uses the same path for uniformity.
 *
 * Errors: 0 on success; -EBADMSG a signature that does not verify (wrong key, altered byte,
 * PKCS#1 vs PSS mismatch, wrong length); -EINVAL malformed PEM, base64 or arguments; -ENOENT,
 * -EIO from files; -ENOMEM. OpenSSL's error queue is cleared on every failure path. */
#ifndef GH_SIGN_H
#define GH_SIGN_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
	GH_SIGN_AUTO = 0, /* from the key type; see above */
	GH_SIGN_RSA_PKCS1_SHA256,
	GH_SIGN_RSA_PSS_SHA256,
	GH_SIGN_ED25519,
} gh_sign_alg_t;

/* "auto", "rsa-pkcs1-sha256", "rsa-pss-sha256", "ed25519", NULL (index = gh_sign_alg_t). */
extern const char *const gh_sign_alg_names[];
/* Parse one of the names above (case-sensitive). Returns 0 or -EINVAL. */
int gh_sign_alg_parse(const char *s, gh_sign_alg_t *out);

#define GH_SHA256_HEX_LEN 64

/* ---- SHA-256 ---- */

/* Lower-case hex SHA-256 of data[0..len) into out[65]. Returns 0 or -EIO. */
int gh_sign_sha256_hex(const void *data, size_t len, char out[GH_SHA256_HEX_LEN + 1]);
/* The same over a file read in 64 KiB chunks (flat memory); *size (may be NULL) gets the byte
 * count. Returns 0, -ENOENT, -EISDIR, -EIO (read error). */
int gh_sign_sha256_file(const char *path, char out[GH_SHA256_HEX_LEN + 1], uint64_t *size);

/* Incremental SHA-256 for data that arrives in pieces (an import body). new returns a talloc
 * child of ctx (NULL on allocation failure); update/final return 0 or -EIO; after final the
 * object may be freed or reused from empty via gh_sign_sha256_reset. */
typedef struct gh_sign_sha256_s gh_sign_sha256_t;
gh_sign_sha256_t *gh_sign_sha256_new(void *ctx);
int gh_sign_sha256_update(gh_sign_sha256_t *h, const void *data, size_t len);
int gh_sign_sha256_final(gh_sign_sha256_t *h, char out[GH_SHA256_HEX_LEN + 1]);
int gh_sign_sha256_reset(gh_sign_sha256_t *h);

/* ---- base64 (RFC 4648 section 4, standard alphabet) ---- */

/* Decode; ASCII whitespace (line breaks of `openssl base64`) is skipped, '=' padding is
 * optional but, when present, must be correct, and anything else is -EINVAL. *out is a talloc
 * child of ctx (NUL-terminated for convenience; *out_len excludes it). */
int gh_sign_b64_decode(void *ctx, const char *in, size_t len, uint8_t **out, size_t *out_len);
/* Encode without line breaks; talloc string child of ctx, NULL on allocation failure. */
char *gh_sign_b64_encode(void *ctx, const void *in, size_t len);

/* ---- public keys and verification ---- */

typedef struct gh_sign_pubkey_s gh_sign_pubkey_t;

/* Parse one PEM "PUBLIC KEY" (SubjectPublicKeyInfo) block: RSA (>= 2048 bits), RSA-PSS or
 * Ed25519. *out is a talloc child of ctx (the EVP_PKEY is freed with it).
 * Returns 0, -EINVAL (not PEM, another PEM type, unsupported key type, RSA < 2048), -ENOMEM. */
int gh_sign_pubkey_load(void *ctx, const char *pem, size_t len, gh_sign_pubkey_t **out);
/* The algorithm AUTO resolves to for this key: 0, or -EINVAL for a plain RSA key. */
int gh_sign_pubkey_alg(const gh_sign_pubkey_t *k, gh_sign_alg_t *alg);
/* Bytes of a raw signature by this key (64 for Ed25519, the modulus size for RSA). */
size_t gh_sign_pubkey_sig_len(const gh_sign_pubkey_t *k);
/* Key id: lower-case hex SHA-256 of the DER SubjectPublicKeyInfo (what `openssl pkey -pubin
 * -outform DER | sha256sum` prints), for manifests and logs. */
const char *gh_sign_pubkey_id(const gh_sign_pubkey_t *k);
/* The key as PEM text (normalised by OpenSSL). */
const char *gh_sign_pubkey_pem(const gh_sign_pubkey_t *k);

/* Take a signature as uploaded: raw bytes when len is exactly the key's signature length,
 * otherwise base64 text (whitespace allowed) that must decode to exactly that length. The two
 * cannot be confused: base64 of n bytes is always longer than n. *sig is a talloc child of ctx.
 * Returns 0 or -EINVAL. */
int gh_sign_sig_decode(void *ctx, const gh_sign_pubkey_t *k, const void *in, size_t len,
                       uint8_t **sig, size_t *sig_len);

/* Verify sig over data[0..len) (thread-safe: k is not modified).
 * Returns 0 valid; -EBADMSG invalid; -EINVAL alg does not fit the key (PKCS1 with an RSA-PSS
 * key, Ed25519 with RSA, AUTO with plain RSA). */
int gh_sign_verify(const gh_sign_pubkey_t *k, gh_sign_alg_t alg, const void *data, size_t len,
                   const uint8_t *sig, size_t sig_len);
/* The same over a whole file, mmap'd read-only. The file must not change while this runs
 * (a truncation would fault); the importer should verify and parse the same mapping or a
 * private copy, not re-open the path afterwards. Returns as above plus -ENOENT, -EIO. */
int gh_sign_verify_file(const gh_sign_pubkey_t *k, gh_sign_alg_t alg, const char *path,
                        const uint8_t *sig, size_t sig_len);
/* One-shot convenience: load pem, then gh_sign_verify. */
int gh_sign_verify_pem(const char *pem, size_t pem_len, gh_sign_alg_t alg, const void *data,
                       size_t len, const uint8_t *sig, size_t sig_len);

/* ---- signers ---- */

/* A private key, wherever it lives. sign() is thread-safe (PKCS#11 calls on the signer's
 * session are serialised by a mutex). Freeing the signer (talloc_free) closes its session. */
typedef struct gh_signer_s gh_signer_t;

/* From PEM private key text (PKCS#8 "PRIVATE KEY" or the traditional RSA form; unencrypted).
 * alg: AUTO for Ed25519; RSA keys need PKCS1 or PSS stated. Returns 0, -EINVAL, -ENOMEM. */
int gh_signer_pem_load(void *ctx, const char *pem, size_t len, gh_sign_alg_t alg,
                       gh_signer_t **out);
/* The same from a file. Also -ENOENT, -EIO. */
int gh_signer_pem_open(void *ctx, const char *path, gh_sign_alg_t alg, gh_signer_t **out);

/* An Ed25519 key on a PKCS#11 token, used through raw PKCS#11 calls (CKM_EDDSA): no OpenSSL
 * provider for PKCS#11 is packaged for Debian 12 and the libp11 engine serves RSA/ECDSA only
 * (DESIGN.md, HSM). The private key is found by CKO_PRIVATE_KEY + CKA_LABEL, the public key by
 * CKO_PUBLIC_KEY + the same label (its CKA_EC_POINT). At open the signer signs a probe and
 * verifies it with that public key, so a mislabelled pair fails here, not in an export. */
typedef struct gh_sign_pkcs11_opts_s {
	const char *module;      /* path of the PKCS#11 module (.so) */
	const char *token_label; /* CKA_LABEL of the token (trailing blanks ignored) */
	const char *pin;         /* user PIN; kept (wiped on free) to log in again after a
	                          * session loss */
	const char *key_label;   /* CKA_LABEL of the key pair */
} gh_sign_pkcs11_opts_t;
/* Login state is per process and token (PKCS#11 5.6): while another signer of this process is
 * logged in to the same token, C_Login answers "already logged in" and the PIN is not checked.
 * Returns 0; -EINVAL (missing option); -ENOENT (module, token or key not found); -EACCES
 * (PIN refused); -ENOTSUP (not an Ed25519 key); -EIO (other PKCS#11 failure, logged with the
 * CKR_ code); -ENOMEM. */
int gh_signer_pkcs11_open(void *ctx, const gh_sign_pkcs11_opts_t *o, gh_signer_t **out);

/* Sign data[0..len); *sig is a talloc child of ctx. A PKCS#11 signer whose session was lost
 * (token reinserted, module restarted) opens a new one and retries once.
 * Returns 0, -EIO, -ENOMEM. */
int gh_signer_sign(gh_signer_t *s, void *ctx, const void *data, size_t len, uint8_t **sig,
                   size_t *sig_len);
gh_sign_alg_t gh_signer_alg(const gh_signer_t *s);
/* The matching public key (PEM text, key id) for manifests and for verifiers. */
const gh_sign_pubkey_t *gh_signer_pubkey(const gh_signer_t *s);

#endif
