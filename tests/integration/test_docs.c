/* The config documentation is generated from the key tables: README.md's
 * table and ukko.example.json must match what this build's `ukko
 * config-keys` prints, and the example must itself be a valid config. Run
 * scripts/gen-docs.sh after adding or changing a key. */
#include "ukko_test.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

Test(docs, readme_table_matches_the_code, .timeout = 30)
{
    ukko_buf_t table, readme;
    ukko_buf_init(&table, 0);
    ukko_buf_init(&readme, 0);
    cr_assert_eq(ut_run(UKKO_BIN " config-keys --markdown 2>/dev/null", NULL, &table), 0);
    cr_assert_eq(ut_read_file(UKKO_SOURCE_DIR "/README.md", &readme), 0);
    char *b = strstr(readme.data, "<!-- config-table:begin -->\n");
    char *e = strstr(readme.data, "<!-- config-table:end -->");
    cr_assert(b && e && b < e, "README.md lacks the config-table markers");
    b += strlen("<!-- config-table:begin -->\n");
    *e = '\0';
    cr_assert_str_eq(b, table.data, "README.md's config table is out of date: run scripts/gen-docs.sh");
    ukko_buf_destroy(&table);
    ukko_buf_destroy(&readme);
}

Test(docs, example_config_matches_and_loads, .timeout = 30)
{
    ukko_buf_t gen, file, out;
    ukko_buf_init(&gen, 0);
    ukko_buf_init(&file, 0);
    ukko_buf_init(&out, 0);
    cr_assert_eq(ut_run(UKKO_BIN " config-keys --example 2>/dev/null", NULL, &gen), 0);
    cr_assert_eq(ut_read_file(UKKO_SOURCE_DIR "/ukko.example.json", &file), 0);
    cr_assert_str_eq(file.data, gen.data,
                     "ukko.example.json is out of date: run scripts/gen-docs.sh");
    int rc = ut_run(UKKO_BIN " check-config " UKKO_SOURCE_DIR "/ukko.example.json", NULL, &out);
    cr_assert_eq(rc, 0, "ukko.example.json does not load: %s", out.data);
    ukko_buf_destroy(&gen);
    ukko_buf_destroy(&file);
    ukko_buf_destroy(&out);
}
