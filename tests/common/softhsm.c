/* softhsm: see softhsm.h. */
#include "softhsm.h"

#include <dlfcn.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

/* A CK_TOKEN_INFO label is blank-padded to 32 bytes. */
static int label_is(const CK_UTF8CHAR label[32], const char *want)
{
	size_t n = strlen(want);
	if (n > 32 || memcmp(label, want, n) != 0)
		return 0;
	for (size_t i = n; i < 32; i++)
		if (label[i] != ' ')
			return 0;
	return 1;
}

/* The keys are made with C_GenerateKeyPair.
 * CKA_EC_PARAMS is the RFC 8410 OID: SoftHSM 2.6 misreads the PrintableString "edwards25519"
 * form that `pkcs11-tool --keypairgen` writes (its EdDSA C_Sign then fails now and then). */
int gh_test_softhsm_genkeys(const char *token, const char *pin, int with_p256)
{
	static CK_BYTE ed_oid[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
	static CK_BYTE p256_oid[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
	void *dl =
	    dlopen(GH_TEST_SOFTHSM_MODULE, RTLD_NOW | RTLD_LOCAL); /* kept loaded, as sign.c does */
	CK_C_GetFunctionList gfl = dl ? (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList") : NULL;
	CK_FUNCTION_LIST_PTR f = NULL;
	if (!gfl || gfl(&f) != CKR_OK || f->C_Initialize(NULL) != CKR_OK)
		return -1;
	int rc = -1;
	CK_SLOT_ID slots[8];
	CK_ULONG ns = 8;
	CK_SESSION_HANDLE sess;
	if (f->C_GetSlotList(CK_TRUE, slots, &ns) != CKR_OK || ns < 1)
		goto out;
	CK_SLOT_ID slot = slots[0];
	for (CK_ULONG i = 0; i < ns; i++) {
		CK_TOKEN_INFO ti;
		if (f->C_GetTokenInfo(slots[i], &ti) == CKR_OK && label_is(ti.label, token))
			slot = slots[i];
	}
	if (f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &sess) !=
	        CKR_OK ||
	    f->C_Login(sess, CKU_USER, (CK_UTF8CHAR_PTR)pin, (CK_ULONG)strlen(pin)) != CKR_OK)
		goto out;
	struct {
		const char *label;
		CK_BYTE id;
		CK_MECHANISM_TYPE mech;
		CK_KEY_TYPE kt;
		CK_BYTE *params;
		CK_ULONG plen;
	} keys[] = {
	    {"k", 1, CKM_EC_EDWARDS_KEY_PAIR_GEN, CKK_EC_EDWARDS, ed_oid, sizeof(ed_oid)},
	    {"p256", 2, CKM_EC_KEY_PAIR_GEN, CKK_EC, p256_oid, sizeof(p256_oid)},
	};
	for (size_t i = 0; i < (with_p256 ? 2u : 1u); i++) {
		CK_BBOOL yes = CK_TRUE;
		CK_KEY_TYPE kt = keys[i].kt;
		CK_ULONG ll = strlen(keys[i].label);
		CK_ATTRIBUTE pub[] = {
		    {CKA_KEY_TYPE, &kt, sizeof(kt)},
		    {CKA_TOKEN, &yes, sizeof(yes)},
		    {CKA_VERIFY, &yes, sizeof(yes)},
		    {CKA_EC_PARAMS, keys[i].params, keys[i].plen},
		    {CKA_LABEL, (void *)keys[i].label, ll},
		    {CKA_ID, &keys[i].id, 1},
		};
		CK_ATTRIBUTE priv[] = {
		    {CKA_KEY_TYPE, &kt, sizeof(kt)},  {CKA_TOKEN, &yes, sizeof(yes)},
		    {CKA_PRIVATE, &yes, sizeof(yes)}, {CKA_SENSITIVE, &yes, sizeof(yes)},
		    {CKA_SIGN, &yes, sizeof(yes)},    {CKA_LABEL, (void *)keys[i].label, ll},
		    {CKA_ID, &keys[i].id, 1},
		};
		CK_MECHANISM m = {keys[i].mech, NULL, 0};
		CK_OBJECT_HANDLE hpub, hpriv;
		if (f->C_GenerateKeyPair(sess, &m, pub, 6, priv, 7, &hpub, &hpriv) != CKR_OK)
			goto out;
	}
	rc = 0;
out:
	f->C_Finalize(NULL);
	return rc;
}
