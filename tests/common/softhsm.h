/* softhsm: SoftHSM2 keys for the tests that sign through PKCS#11 (sign_test, num_export_test). */
#ifndef GH_TEST_SOFTHSM_H
#define GH_TEST_SOFTHSM_H

#define GH_TEST_SOFTHSM_MODULE "/usr/lib/softhsm/libsofthsm2.so"

/* On the initialised token labelled token (user PIN pin), generate the Ed25519 pair "k"
 * (id 01) and, with with_p256, the ECDSA P-256 pair "p256" (id 02). The module stays loaded
 * (as sign.c keeps it). 0, or -1 on any PKCS#11 failure. */
int gh_test_softhsm_genkeys(const char *token, const char *pin, int with_p256);

#endif
