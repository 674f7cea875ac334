/* tsan_sharding.c: test_sharding.c's tests run without Criterion, so that
 * they run under ThreadSanitizer (Criterion's arena cannot be mapped under
 * TSan: Snaipe/Criterion#274): the completion stack that dispatcher threads
 * push and the loop takes, deferred acks from other threads, tells from
 * another thread. A small stand-in for the Criterion macros the tests use
 * (as tests/node/tsan_actors.c, plus .init/.fini) runs each Test() in turn
 * in this process; a failed assertion prints what was expected and exits 1. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CRITERION_H_ /* keep the real header out */

typedef struct shim_opts {
    void (*init)(void);
    void (*fini)(void);
    int timeout;
} shim_opts_t;

typedef struct shim_test {
    const char *suite, *name;
    void (*fn)(void);
    const shim_opts_t *o;
} shim_test_t;

static shim_test_t shim_tests[64];
static int shim_ntests;
static const char *shim_current;

static void shim_register(const char *suite, const char *name, void (*fn)(void),
                          const shim_opts_t *o)
{
    if (shim_ntests < (int)(sizeof(shim_tests) / sizeof(shim_tests[0])))
        shim_tests[shim_ntests++] = (shim_test_t){suite, name, fn, o};
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
    static const shim_opts_t suite##_##name##_opts = {__VA_ARGS__};              \
    __attribute__((constructor)) static void suite##_##name##_reg(void)          \
    {                                                                            \
        shim_register(#suite, #name, suite##_##name, &suite##_##name##_opts);    \
    }                                                                            \
    static void suite##_##name(void)

#define cr_assert(cond, ...) shim_check(!!(cond), #cond, __FILE__, __LINE__, "-" __VA_ARGS__)
#define cr_assert_eq(a, b, ...) cr_assert((a) == (b), __VA_ARGS__)
#define cr_assert_not_null(a, ...) cr_assert((a) != NULL, __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...) cr_assert(strcmp((a), (b)) == 0, __VA_ARGS__)
/* An expectation fails the run here too: TSan is what this run is for. */
#define cr_expect(cond, ...) cr_assert(cond, __VA_ARGS__)
#define cr_expect_eq(a, b, ...) cr_assert_eq(a, b, __VA_ARGS__)

#include "test_sharding.c"

int main(int argc, char **argv)
{
    const char *only = argc > 1 ? argv[1] : NULL; /* run tests whose name has this */
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
