/* criterion_shim.h: the few Criterion macros our tests use, without
 * Criterion, so that a test file can be compiled again and run under
 * ThreadSanitizer (Criterion's BoxFort arena cannot be mapped under TSan:
 * Snaipe/Criterion#274). Include it, then the test files, then call
 * shim_main from main: each Test() runs in turn in this process (with its
 * .init and .fini); a failed assertion prints what was expected and exits 1;
 * the run ends with "N passed, 0 failed". Test-only; one translation unit. */
#ifndef UKKO_CRITERION_SHIM_H
#define UKKO_CRITERION_SHIM_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CRITERION_H_ /* keep the real header out */

typedef struct shim_opts {
    int unused_; /* so that a Test() without options still initializes something */
    void (*init)(void);
    void (*fini)(void);
    int timeout; /* accepted, not enforced: ctest's TIMEOUT bounds the run */
} shim_opts_t;

typedef struct shim_test {
    const char *suite, *name;
    void (*fn)(void);
    const shim_opts_t *o;
} shim_test_t;

static shim_test_t shim_tests[128];
static int shim_ntests;
static const char *shim_current;

static void shim_register(const char *suite, const char *name, void (*fn)(void),
                          const shim_opts_t *o)
{
    if (shim_ntests < (int)(sizeof(shim_tests) / sizeof(shim_tests[0]))) {
        shim_tests[shim_ntests++] = (shim_test_t){suite, name, fn, o};
        return;
    }
    fprintf(stderr, "criterion_shim: more than %zu tests: raise shim_tests' size\n",
            sizeof(shim_tests) / sizeof(shim_tests[0]));
    exit(1);
}

static void shim_check(int ok, const char *expr, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void shim_check(int ok, const char *expr, const char *file, int line, const char *fmt, ...)
{
    if (ok)
        return;
    fprintf(stderr, "[FAIL] %s: %s:%d: %s", shim_current, file, line, expr);
    if (fmt[1]) { /* fmt is "-" + the test's message, if any */
        va_list ap;
        va_start(ap, fmt);
        fputs(": ", stderr);
        vfprintf(stderr, fmt + 1, ap);
        va_end(ap);
    }
    fputs("\n0 passed, 1 failed\n", stderr);
    exit(1);
}

#define Test(suite, name, ...)                                                   \
    static void suite##_##name(void);                                            \
    static const shim_opts_t suite##_##name##_opts = {0, __VA_ARGS__};           \
    __attribute__((constructor)) static void suite##_##name##_reg(void)          \
    {                                                                            \
        shim_register(#suite, #name, suite##_##name, &suite##_##name##_opts);    \
    }                                                                            \
    static void suite##_##name(void)

#define cr_assert(cond, ...) shim_check(!!(cond), #cond, __FILE__, __LINE__, "-" __VA_ARGS__)
#define cr_assert_not(cond, ...) cr_assert(!(cond), __VA_ARGS__)
#define cr_assert_eq(a, b, ...) cr_assert((a) == (b), __VA_ARGS__)
#define cr_assert_lt(a, b, ...) cr_assert((a) < (b), __VA_ARGS__)
#define cr_assert_geq(a, b, ...) cr_assert((a) >= (b), __VA_ARGS__)
#define cr_assert_null(a, ...) cr_assert((a) == NULL, __VA_ARGS__)
#define cr_assert_not_null(a, ...) cr_assert((a) != NULL, __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...) cr_assert(strcmp((a), (b)) == 0, __VA_ARGS__)
#define cr_expect(cond, ...) cr_assert(cond, __VA_ARGS__)
#define cr_expect_eq(a, b, ...) cr_assert_eq(a, b, __VA_ARGS__)

/* Runs every registered test (those whose name contains argv[1], if given). */
static int shim_main(int argc, char **argv)
{
    const char *only = argc > 1 ? argv[1] : NULL;
    int passed = 0;
    for (int i = 0; i < shim_ntests; i++) {
        if (only && !strstr(shim_tests[i].name, only))
            continue;
        char full[256];
        snprintf(full, sizeof(full), "%s::%s", shim_tests[i].suite, shim_tests[i].name);
        shim_current = full;
        fprintf(stderr, "[RUN ] %s\n", full);
        if (shim_tests[i].o->init)
            shim_tests[i].o->init();
        shim_tests[i].fn();
        if (shim_tests[i].o->fini)
            shim_tests[i].o->fini();
        fprintf(stderr, "[PASS] %s\n", full);
        passed++;
    }
    printf("%d passed, 0 failed\n", passed);
    return 0;
}

#endif
