/* cli: `ghasi numbering <verb>`, the numbering service's command-line tools. Each verb's code
 * lives with its feature (export.c: verify-export); this file only dispatches. */
#ifndef NUM_CLI_H
#define NUM_CLI_H

/* argv[0] is "numbering", argv[1] the verb. config_path is --config of ghasi (may be NULL), for
 * verbs that need the database. Returns the process exit status (2: usage). */
int num_cli_main(const char *config_path, int argc, char **argv);

#endif
