/* The flagos command line: one file per command. */
#ifndef FLAGOS_CLI_H
#define FLAGOS_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "flagos/flagos.h"

int cmd_compile(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_ir(int argc, char **argv);
int cmd_devices(int argc, char **argv);
int cmd_conformance(int argc, char **argv);
int cmd_profile(int argc, char **argv);
int cmd_bench(int argc, char **argv);

/* Prints "flagos <cmd>: <message>" to stderr, frees st, returns exit code 1. */
int cli_fail(const char *cmd, flagos_status_t st);
/* True if argv[i] is --help or -h. */
bool cli_is_help(const char *a);
/* For options that take a value: returns it and advances *i, or NULL (and prints an error). */
const char *cli_value(const char *cmd, int argc, char **argv, int *i);
bool cli_ends_with(const char *s, const char *suffix);

#endif
