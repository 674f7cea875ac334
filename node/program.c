/* program.c: the wiring of the `ukko` program: the flat list of modules it
 * runs, the built-in applications, the command line (ukko --help) and the
 * built-in commands (run, check-config, config-keys); the modules' own
 * commands come from their tables. Built as the ukko_program library, above
 * every other. Main thread. Exit codes: 0 orderly stop, 1 runtime failure,
 * 2 bad usage or config. */
#include "cluster.h"
#include "discovery.h"
#include "streams.h"
#include "ukko.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

/* The modules, in the order their settings are registered and they start:
 * each only uses those before it. */
static const ukko_module_t *const modules[] = {
    &ukko_tracing_module,
    &ukko_discovery_module,
    &ukko_cluster_module,
    &ukko_sharding_module,
    &ukko_streams_module,
};
#define NMODULES (sizeof(modules) / sizeof(modules[0]))

#define MAX_APPS 16
static const ukko_app_t *apps[MAX_APPS];
static size_t napps;

int ukko_app_register(const ukko_app_t *app)
{
    if (!app || !app->name || !*app->name)
        return UKKO_EINVAL;
    for (size_t i = 0; i < napps; i++)
        if (!strcmp(apps[i]->name, app->name))
            return UKKO_EINVAL;
    if (napps == MAX_APPS)
        return UKKO_E2BIG;
    apps[napps++] = app;
    return 0;
}

/* What the command line asked, beside the command's own arguments. */
typedef struct args {
    ukko_cmd_t cmd;
    const char *app; /* --app NAME */
    const ukko_app_t *program_app; /* given to ukko_main */
} args_t;

static args_t args;

static int cmd_run(const ukko_cmd_t *cmd);
static int cmd_check_config(const ukko_cmd_t *cmd);
static int cmd_config_keys(const ukko_cmd_t *cmd);

static const ukko_subcommand_t builtins[] = {
    {"run", "  ukko [run] [--config FILE] [options]   run a node (the default command)\n", cmd_run,
     false},
    {"check-config",
     "  ukko check-config FILE                 print the effective config as JSON,\n"
     "                                         or every problem in it (exit 2)\n",
     cmd_check_config, false},
    {"config-keys",
     "  ukko config-keys [--markdown|--example]\n"
     "                                         document every config key\n",
     cmd_config_keys, false},
    {NULL, NULL, NULL, false},
};

/* The command of that name: a built-in one, or a module's (NULL: none). */
static const ukko_subcommand_t *find_command(const char *name)
{
    for (const ukko_subcommand_t *c = builtins; c->name; c++)
        if (!strcmp(c->name, name))
            return c;
    for (size_t i = 0; i < NMODULES; i++)
        for (const ukko_subcommand_t *c = modules[i]->commands; c && c->name; c++)
            if (!strcmp(c->name, name))
                return c;
    return NULL;
}

static void usage(FILE *out)
{
    fprintf(out,
            "ukko %s: a cluster-node runtime for Kafka services on Kubernetes\n"
            "\n"
            "Usage:\n",
            UKKO_VERSION);
    for (const ukko_subcommand_t *c = builtins; c->name; c++)
        fputs(c->usage, out);
    for (size_t i = 0; i < NMODULES; i++)
        for (const ukko_subcommand_t *c = modules[i]->commands; c && c->name; c++)
            fputs(c->usage, out);
    fputs("  ukko --help | --version\n"
          "\n"
          "Options:\n"
          "  -c, --config FILE      JSON config file (see ukko.example.json)\n"
          "      --log-format FMT   json (default) or text\n"
          "      --log-level LEVEL  debug, info (default), warn or error\n",
          out);
    if (napps) {
        fputs("      --app NAME         run a built-in application:", out);
        for (size_t i = 0; i < napps; i++)
            fprintf(out, "%s %s", i ? "," : "", apps[i]->name);
        fputs("\n                         or a shared library: --app ./libapp.so\n", out);
        for (size_t i = 0; i < napps; i++)
            if (apps[i]->about)
                fprintf(out, "                           %s: %s\n", apps[i]->name, apps[i]->about);
    }
    fputs("\n"
          "Every config key can be set by environment: UKKO_ + the key path in upper\n"
          "case with '.' and '-' as '_', e.g. UKKO_MANAGEMENT_PORT=8600.\n"
          "Flags override the environment, which overrides the file.\n"
          "\n"
          "Management routes (default 0.0.0.0:8558): /alive /ready /startup /metrics\n",
          out);
}

static void list_commands(FILE *out)
{
    const char *sep = "";
    for (const ukko_subcommand_t *c = builtins; c->name; c++, sep = ", ")
        fprintf(out, "%s%s", sep, c->name);
    for (size_t i = 0; i < NMODULES; i++)
        for (const ukko_subcommand_t *c = modules[i]->commands; c && c->name; c++)
            fprintf(out, "%s%s", sep, c->name);
}

/* Takes the program's own flags wherever they are; the rest, in order, is
 * the command's. Returns 0, or 2 after saying what is wrong. */
static int parse_args(int argc, char **argv, args_t *a, char **rest, const char **command)
{
    *command = "run";
    int i = 1;
    if (i < argc && argv[i][0] != '-')
        *command = argv[i++];
    const ukko_subcommand_t *c = find_command(*command);
    if (c && c->raw_args) {
        /* The command reads its own arguments, --help included. */
        a->cmd.argc = argc - (i - 1);
        a->cmd.argv = argv + (i - 1);
        return 0;
    }
    for (; i < argc; i++) {
        const char *arg = argv[i];
        const char **dst = NULL;
        if (!strcmp(arg, "-c") || !strcmp(arg, "--config"))
            dst = &a->cmd.config_path;
        else if (!strcmp(arg, "--log-format"))
            dst = &a->cmd.log_format;
        else if (!strcmp(arg, "--log-level"))
            dst = &a->cmd.log_level;
        else if (!strcmp(arg, "--app"))
            dst = &a->app;
        else if (!strcmp(arg, "-h") || !strcmp(arg, "--help"))
            *command = "help";
        else if (!strcmp(arg, "-V") || !strcmp(arg, "--version"))
            *command = "version";
        else
            rest[a->cmd.argc++] = argv[i];
        if (dst) {
            if (i + 1 >= argc) {
                fprintf(stderr, "ukko: %s needs a value (see ukko --help)\n", arg);
                return 2;
            }
            *dst = argv[++i];
        }
    }
    a->cmd.argv = rest;
    return 0;
}

/* ------------------------------------------------------- built-in commands */

static int cmd_check_config(const ukko_cmd_t *cmd)
{
    const char *path = cmd->config_path;
    for (int i = 0; i < cmd->argc; i++) {
        if (cmd->argv[i][0] != '-' && !path)
            path = cmd->argv[i];
        else
            return ukko_cmd_unknown_arg(cmd->argv[i]);
    }
    if (!path) {
        fprintf(stderr, "ukko: check-config needs a FILE (ukko check-config ukko.json)\n");
        return 2;
    }
    ukko_config_t *cfg = ukko_host_config(cmd->host);
    if (ukko_config_load(cfg, path, environ) > 0) {
        for (size_t i = 0; i < ukko_config_error_count(cfg); i++)
            fprintf(stderr, "%s\n", ukko_config_error(cfg, i));
        fprintf(stderr, "ukko: %zu problem(s) in the config: fix them and run check-config again\n",
                ukko_config_error_count(cfg));
        return 2;
    }
    cJSON *json = ukko_config_to_json(cfg);
    char *text = json ? cJSON_Print(json) : NULL;
    if (text)
        printf("%s\n", text);
    free(text);
    cJSON_Delete(json);
    return 0;
}

static int cmd_config_keys(const ukko_cmd_t *cmd)
{
    bool markdown = true;
    for (int i = 0; i < cmd->argc; i++) {
        if (!strcmp(cmd->argv[i], "--markdown"))
            markdown = true;
        else if (!strcmp(cmd->argv[i], "--example"))
            markdown = false;
        else
            return ukko_cmd_unknown_arg(cmd->argv[i]);
    }
    ukko_buf_t out;
    ukko_buf_init(&out, 0);
    int rc = 1;
    if (ukko_config_describe(ukko_host_config(cmd->host), markdown, &out) == 0) {
        fputs(out.data ? out.data : "", stdout);
        rc = 0;
    }
    ukko_buf_destroy(&out);
    return rc;
}

/* `--app path/to/libapp.so`: an application built as a shared library
 * exports `const ukko_app_t ukko_app` (docs/streams.md, examples/). It is
 * loaded once and never unloaded; the ukko binary exports its functions to
 * it. Returns 0, or 2 after saying what is wrong. */
static int load_app_library(const char *path, const ukko_app_t **out)
{
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "ukko: --app \"%s\": cannot load it: %s\n", path, dlerror());
        return 2;
    }
    const ukko_app_t *app = dlsym(lib, "ukko_app");
    if (!app || !app->name || !app->init) {
        fprintf(stderr,
                "ukko: --app \"%s\": it exports no application: define `const ukko_app_t "
                "ukko_app = {.name = ..., .init = ...};` (see examples/)\n",
                path);
        return 2;
    }
    *out = app;
    return 0;
}

/* The application to run: the program's own, the built-in one --app names,
 * or a shared library --app gives the path of. Returns 0, or 2 after saying
 * what is wrong. */
static int pick_app(const ukko_app_t **out)
{
    *out = args.program_app;
    if (!args.app)
        return 0;
    if (args.program_app) {
        if (strcmp(args.app, args.program_app->name)) {
            fprintf(stderr, "ukko: --app \"%s\": this program runs \"%s\" only\n", args.app,
                    args.program_app->name);
            return 2;
        }
        return 0;
    }
    for (size_t i = 0; i < napps; i++) {
        if (!strcmp(apps[i]->name, args.app)) {
            *out = apps[i];
            return 0;
        }
    }
    if (strchr(args.app, '/'))
        return load_app_library(args.app, out);
    fprintf(stderr, "ukko: --app \"%s\": no such application (built in:", args.app);
    for (size_t i = 0; i < napps; i++)
        fprintf(stderr, "%s %s", i ? "," : "", apps[i]->name);
    fprintf(stderr, "%s; or a shared library's path, ./libapp.so)\n", napps ? "" : " none");
    return 2;
}

static int cmd_run(const ukko_cmd_t *cmd)
{
    if (cmd->argc)
        return ukko_cmd_unknown_arg(cmd->argv[0]);
    const ukko_app_t *app;
    if (pick_app(&app) != 0)
        return 2;
    /* Log as asked from the first line, even before the config is read. */
    ukko_log_setup(UKKO_LOG_INFO, cmd->log_format && !strcmp(cmd->log_format, "text")
                                      ? UKKO_LOG_TEXT
                                      : UKKO_LOG_JSON);
    ukko_config_t *cfg = ukko_host_config(cmd->host);
    if (ukko_config_load(cfg, cmd->config_path, environ) > 0) {
        for (size_t i = 0; i < ukko_config_error_count(cfg); i++)
            ukko_log(UKKO_LOG_ERROR, "config", "%s", ukko_config_error(cfg, i));
        ukko_log(UKKO_LOG_ERROR, "config",
                 "not starting: %zu problem(s) in the config (ukko check-config FILE lists them)",
                 ukko_config_error_count(cfg));
        return 2;
    }
    ukko_node_config_t *nc = ukko_host_settings(cmd->host, "node");
    if (ukko_cmd_log_flags(cmd, nc) != 0)
        return 2;
    ukko_log_setup((ukko_log_level_t)nc->log_level, (ukko_log_format_t)nc->log_format);
    return ukko_host_run(cmd->host, app);
}

/* ------------------------------------------------------------- the entry */

int ukko_main(int argc, char **argv, const ukko_app_t *app)
{
    memset(&args, 0, sizeof(args));
    args.program_app = app;
    char **rest = calloc((size_t)(argc > 0 ? argc : 1), sizeof(*rest));
    if (!rest) {
        fprintf(stderr, "ukko: out of memory\n");
        return 1;
    }
    const char *command;
    int code = parse_args(argc, argv, &args, rest, &command);
    if (code != 0)
        goto out;
    if (!strcmp(command, "help")) {
        usage(stdout);
        goto out;
    }
    if (!strcmp(command, "version")) {
        printf("ukko %s\n", UKKO_VERSION);
        goto out;
    }
    const ukko_subcommand_t *c = find_command(command);
    if (!c) {
        fprintf(stderr, "ukko: unknown command \"%s\" (commands: ", command);
        list_commands(stderr);
        fprintf(stderr, "; see ukko --help)\n");
        code = 2;
        goto out;
    }
    ukko_host_t *host;
    if (ukko_host_new(modules, NMODULES, &host) < 0) {
        fprintf(stderr, "ukko: out of memory\n");
        code = 1;
        goto out;
    }
    args.cmd.name = c->name;
    args.cmd.host = host;
    code = c->run(&args.cmd);
    ukko_host_free(host);
out:
    free(rest);
    return code;
}
