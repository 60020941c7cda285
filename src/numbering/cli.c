/* cli: dispatch of `ghasi numbering <verb>` (see cli.h). */
#include "cli.h"

#include <stdio.h>
#include <string.h>

#include "export.h"

static int usage(FILE *f)
{
	fprintf(f, "usage: ghasi numbering <verb> [args]\n"
	           "verbs:\n"
	           "  verify-export --key PUB.pem FILE   check a regulator export against its\n"
	           "                                     manifest and signature\n");
	return f == stderr ? 2 : 0;
}

int num_cli_main(const char *config_path, int argc, char **argv)
{
	(void)config_path;
	if (argc < 2)
		return usage(stderr);
	const char *verb = argv[1];
	if (strcmp(verb, "-h") == 0 || strcmp(verb, "--help") == 0)
		return usage(stdout);
	if (strcmp(verb, "verify-export") == 0)
		return num_export_cli_verify(argc - 1, argv + 1);
	fprintf(stderr, "ghasi numbering: unknown verb '%s'\n", verb);
	return usage(stderr);
}
