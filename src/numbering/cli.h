/* cli: `ghasi numbering <verb> ...`, the numbering service's command line. Verbs:
 *   import --csv FILE --sig FILE --operator ID [--contract ID]
 *       run an MNO import (import.h) against the configured store and print the batch JSON;
 *       exit 0 ACCEPTED, 3 PARTIAL, 4 REJECTED, 1 failure (unknown operator, database), 2 usage.
 *   verify-export --key PUB.pem FILE
 *       check a regulator export against its manifest and signature (export.c).
 * main.c dispatches here after loading the configuration. */
#ifndef NUM_CLI_H
#define NUM_CLI_H

#include "gh-core.h"

/* argv[0] is the verb. Returns the process exit status. */
int num_cli_main(void *ctx, const gh_config_t *cfg, int argc, char **argv);

#endif
