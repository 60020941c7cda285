/* ghasi: one binary, subcommands serve, migrate, version. */
#include <stdio.h>
#include <string.h>

#include "gh-core.h"

static int usage(FILE *f)
{
	fprintf(f, "usage: ghasi [--config FILE] <command>\n"
	           "commands:\n"
	           "  serve     host the registered services\n"
	           "  migrate   apply pending database migrations and exit\n"
	           "  version   print the version\n");
	return f == stderr ? 2 : 0;
}

int main(int argc, char **argv)
{
	const char *config_path = NULL;
	int i = 1;
	for (; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			config_path = argv[++i];
		else if (strncmp(argv[i], "--config=", 9) == 0)
			config_path = argv[i] + 9;
		else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
			return usage(stdout);
		else
			break;
	}
	if (i >= argc)
		return usage(stderr);
	const char *cmd = argv[i];
	(void)config_path;
	if (strcmp(cmd, "version") == 0) {
		printf("ghasi %s\n", GH_VERSION);
		return 0;
	}
	fprintf(stderr, "ghasi: unknown command '%s'\n", cmd);
	return usage(stderr);
}
