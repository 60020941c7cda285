/* ghasi: one binary; subcommands serve, migrate, print-config, version, and the services' tools
 * (numbering). */
#include <stdio.h>
#include <string.h>
#include <talloc.h>

#include "gh-core.h"
#include "numbering/cli.h"
#include "services.h"

extern char **environ;

static int usage(FILE *f)
{
	fprintf(f, "usage: ghasi [--config FILE] <command>\n"
	           "commands:\n"
	           "  serve          host the enabled services until SIGTERM\n"
	           "  migrate        apply pending database migrations and exit\n"
	           "  print-config   print the effective configuration (secrets masked)\n"
	           "  numbering ...  numbering tools (ghasi numbering --help)\n"
	           "  version        print the version\n");
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
	if (strcmp(cmd, "version") == 0) {
		printf("ghasi %s\n", GH_VERSION);
		return 0;
	}
	int is_serve = strcmp(cmd, "serve") == 0, is_migrate = strcmp(cmd, "migrate") == 0,
	    is_print = strcmp(cmd, "print-config") == 0, is_num = strcmp(cmd, "numbering") == 0;
	if (!is_serve && !is_migrate && !is_print && !is_num) {
		fprintf(stderr, "ghasi: unknown command '%s'\n", cmd);
		return usage(stderr);
	}

	ghasi_config_register();
	void *root = talloc_named_const(NULL, 0, "ghasi");
	gh_config_t *cfg = NULL;
	gh_err_t err = {0};
	if (gh_config_load(root, config_path, environ, &cfg, &err) < 0) {
		fprintf(stderr, "ghasi: configuration: %s\n", err.message);
		gh_err_clear(&err);
		talloc_free(root);
		return 2;
	}
	gh_log_init("ghasi", (gh_log_level_t)cfg->log.level);
	int rc;
	if (is_print) {
		fputs(gh_config_dump(root, cfg), stdout);
		rc = 0;
	} else if (is_num) {
		rc = num_cli_main(root, cfg, argc - i - 1, argv + i + 1);
	} else if (is_migrate) {
		rc = ghasi_migrate(root, cfg);
	} else {
		rc = ghasi_serve(root, cfg);
	}
	talloc_free(root);
	return rc;
}
