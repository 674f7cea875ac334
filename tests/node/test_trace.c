/* Tests node/trace.c: traceparent and tracestate parse strictly and format
 * back, spans take their parent from the argument, the current span or the
 * handled message, the samplers keep and drop what they should, attributes
 * and events are bounded, log lines carry the current ids, and tracing off
 * makes no spans. */
#include "trace_internal.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TP "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

static ukko_span_t *captured[64];
static int ncaptured;

static void capture(ukko_span_t *sp)
{
    if (ncaptured < 64)
        captured[ncaptured++] = sp;
    else
        ukko__span_free(sp);
}

static void on(ukko__sampler_t s, double ratio)
{
    ncaptured = 0;
    ukko__trace_configure(s, ratio, capture);
}

static void fini(void)
{
    ukko__trace_configure(UKKO__SAMPLER_PARENT_ALWAYS_ON, 1.0, NULL);
    for (int i = 0; i < ncaptured; i++)
        ukko__span_free(captured[i]);
    ncaptured = 0;
}

TestSuite(trace, .fini = fini, .timeout = 10);

Test(trace, traceparent_round_trip)
{
    ukko_trace_ctx_t c;
    cr_assert_eq(ukko_trace_parse(TP, strlen(TP), &c), 0);
    cr_assert_eq(c.trace_id[0], 0x0a);
    cr_assert_eq(c.span_id[7], 0x31);
    cr_assert_eq(c.flags, 1);
    char out[56];
    ukko_trace_format(&c, out);
    cr_assert_str_eq(out, TP);
}

Test(trace, traceparent_rejects_what_w3c_rejects)
{
    static const char *bad[] = {
        "",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0",     /* short */
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-",   /* v00 with more */
        "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",    /* upper case */
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",    /* zero trace */
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",    /* zero parent */
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",    /* version ff */
        "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",    /* separator */
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0g",    /* flags not hex */
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x",   /* future, no dash */
        "00-0af7651916cd43dd8448eb211c80319-cb7ad6b7169203331-01",    /* misplaced dash */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ukko_trace_ctx_t c = {.flags = 0x77};
        cr_assert_eq(ukko_trace_parse(bad[i], strlen(bad[i]), &c), UKKO_EINVAL, "accepted %s",
                     bad[i]);
        cr_assert_eq(c.flags, 0x77, "a rejected value leaves the context as it was");
    }
    /* A later version may append fields after a dash. */
    const char *future = "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what";
    ukko_trace_ctx_t c;
    cr_assert_eq(ukko_trace_parse(future, strlen(future), &c), 0);
    /* never reads past len */
    cr_assert_eq(ukko_trace_parse(TP, 54, &c), UKKO_EINVAL);
}

Test(trace, tracestate_grammar)
{
    static const char *good[] = {"", "rojo=00f067aa0ba902b7", "congo=t61rcWkgMzE,rojo=1",
                                 " a=1 , b=2 ", "tenant@vendor=x", "a=1,,b=2"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        cr_assert_eq(ukko_tracestate_check(good[i], strlen(good[i])), 0, "refused %s", good[i]);
    static const char *bad[] = {"=x", "A=1", "a=", "a", "a=b=c", "a=x\x01", "1a=2",
                                "t@Vendor=1", "a=1,b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(ukko_tracestate_check(bad[i], strlen(bad[i])), UKKO_EINVAL, "accepted %s",
                     bad[i]);
    char many[600] = "";
    for (int i = 0; i < 33; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "%sk%c=1", i ? "," : "",
                 'a' + i % 26);
    cr_assert_eq(ukko_tracestate_check(many, strlen(many)), UKKO_EINVAL, "33 members");
}

Test(trace, off_is_null_and_harmless)
{
    cr_assert_not(ukko_trace_enabled());
    ukko_span_t *sp = ukko_span_start("x", UKKO_SPAN_INTERNAL, NULL);
    cr_assert_null(sp);
    ukko_span_set_str(sp, "a", "b");
    ukko_span_add_event(sp, "e", NULL, NULL);
    ukko_span_record_error(sp, UKKO_EINVAL, "why");
    ukko_span_end(sp);
    char tp[56];
    cr_assert_eq(ukko_span_traceparent(sp, tp), UKKO_ENOENT);
}

Test(trace, child_of_given_parent_and_of_current_span)
{
    on(UKKO__SAMPLER_PARENT_ALWAYS_ON, 1.0);
    ukko_trace_ctx_t parent;
    cr_assert_eq(ukko_trace_parse(TP, strlen(TP), &parent), 0);
    ukko_span_t *a = ukko_span_start("process orders", UKKO_SPAN_CONSUMER, &parent);
    cr_assert(ukko_span_recording(a));
    ukko_trace_ctx_t ac;
    ukko_span_context(a, &ac);
    cr_assert_arr_eq(ac.trace_id, parent.trace_id, 16, "same trace as the parent");
    cr_assert(memcmp(ac.span_id, parent.span_id, 8), "a span id of its own");

    ukko_span_t *prev = ukko_trace_enter(a);
    cr_assert_null(prev);
    cr_assert_eq(ukko_trace_current(), a);
    ukko_span_t *b = ukko_span_start("send out", UKKO_SPAN_PRODUCER, NULL);
    ukko_trace_leave(prev);
    cr_assert_null(ukko_trace_current());
    ukko_span_end(b);
    ukko_span_end(a);
    cr_assert_eq(ncaptured, 2);
    ukko_span_t *bb = captured[0], *aa = captured[1];
    cr_assert(bb->has_parent);
    cr_assert_arr_eq(bb->parent_id, ac.span_id, 8, "the child's parent is the current span");
    cr_assert_arr_eq(aa->parent_id, parent.span_id, 8);
    cr_assert(aa->end_ns >= aa->start_ns);
    cr_assert_eq(aa->kind, UKKO_SPAN_CONSUMER);
}

Test(trace, samplers)
{
    ukko_trace_ctx_t unsampled;
    cr_assert_eq(ukko_trace_parse(TP, strlen(TP), &unsampled), 0);
    unsampled.flags = 0;
    on(UKKO__SAMPLER_PARENT_ALWAYS_ON, 1.0);
    ukko_span_t *sp = ukko_span_start("x", UKKO_SPAN_INTERNAL, &unsampled);
    cr_assert_not(ukko_span_recording(sp), "a parent not sampled is followed");
    char tp[56];
    ukko_span_traceparent(sp, tp);
    cr_assert_eq(strncmp(tp, "00-0af7651916cd43dd8448eb211c80319c-", 36), 0,
                 "an unrecorded span still passes the trace on: %s", tp);
    cr_assert_str_eq(tp + 52, "-00");
    ukko_span_end(sp);
    cr_assert_eq(ncaptured, 0, "unrecorded spans are not exported");

    on(UKKO__SAMPLER_ALWAYS_OFF, 1.0);
    sp = ukko_span_start("x", UKKO_SPAN_INTERNAL, NULL);
    cr_assert_not(ukko_span_recording(sp));
    ukko_span_end(sp);

    /* ratio: about the ratio of new traces, decided by the trace id alone */
    on(UKKO__SAMPLER_PARENT_RATIO, 0.25);
    int kept = 0;
    for (int i = 0; i < 4000; i++) {
        sp = ukko_span_start("x", UKKO_SPAN_INTERNAL, NULL);
        ukko_trace_ctx_t c;
        ukko_span_context(sp, &c);
        cr_assert_eq(ukko_span_recording(sp), ukko__trace_ratio_sampled(c.trace_id, 0.25));
        kept += ukko_span_recording(sp);
        sp->recording = false; /* not to the capture */
        ukko_span_end(sp);
    }
    cr_assert(kept > 800 && kept < 1200, "kept %d of 4000 at 0.25", kept);
    ukko_trace_ctx_t sampled;
    ukko_trace_parse(TP, strlen(TP), &sampled);
    sp = ukko_span_start("x", UKKO_SPAN_INTERNAL, &sampled);
    cr_assert(ukko_span_recording(sp), "a sampled parent is followed whatever the ratio");
    ukko_span_end(sp);
    ukko__sampler_t s;
    cr_assert_eq(ukko__sampler_parse("parentbased_traceidratio", &s), 0);
    cr_assert_eq(s, UKKO__SAMPLER_PARENT_RATIO);
    cr_assert_eq(ukko__sampler_parse("sometimes", &s), UKKO_EINVAL);
}

Test(trace, attributes_and_events_are_bounded)
{
    on(UKKO__SAMPLER_ALWAYS_ON, 1.0);
    ukko_span_t *sp = ukko_span_start("x", UKKO_SPAN_INTERNAL, NULL);
    char big[2000];
    memset(big, 'v', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    ukko_span_set_str(sp, "too.big", big);
    for (int i = 0; i < 30; i++)
        ukko_span_set_int(sp, "n", i);
    for (int i = 0; i < 10; i++)
        ukko_span_add_event(sp, "retry", NULL, NULL);
    ukko_span_record_error(sp, UKKO_ETIMEDOUT, "no answer");
    ukko_span_end(sp);
    cr_assert_eq(ncaptured, 1);
    ukko_span_t *c = captured[0];
    cr_assert_eq(c->nattrs, UKKO__SPAN_MAX_ATTRS);
    cr_assert_geq(c->dropped_attrs, 7);
    cr_assert_eq(c->nevents, UKKO__SPAN_MAX_EVENTS);
    cr_assert_geq(c->dropped_events, 3);
    cr_assert_eq(c->status, UKKO_SPAN_ERROR);
    cr_assert_str_eq(ukko__span_text(c, c->status_msg), "no answer");
}

Test(trace, log_lines_carry_the_current_ids)
{
    on(UKKO__SAMPLER_ALWAYS_ON, 1.0);
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    ukko_log_set_fd(fds[1]);
    ukko_log_setup(UKKO_LOG_INFO, UKKO_LOG_JSON);
    ukko_span_t *sp = ukko_span_start("x", UKKO_SPAN_INTERNAL, NULL);
    ukko_span_t *prev = ukko_trace_enter(sp);
    ukko_log(UKKO_LOG_INFO, "test", "inside");
    ukko_trace_leave(prev);
    ukko_log(UKKO_LOG_INFO, "test", "outside");
    ukko_log_set_fd(2);
    char buf[4096];
    ssize_t n = read(fds[0], buf, sizeof(buf) - 1);
    cr_assert(n > 0);
    buf[n] = '\0';
    close(fds[0]);
    close(fds[1]);
    char *nl = strchr(buf, '\n');
    cr_assert(nl);
    *nl = '\0';
    cJSON *in = cJSON_Parse(buf), *out = cJSON_Parse(nl + 1);
    cr_assert(in && out, "two JSON lines: %s", buf);
    char tid[33], sid[17];
    ukko__hex(sp->ctx.trace_id, 16, tid);
    ukko__hex(sp->ctx.span_id, 8, sid);
    cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(in, "trace_id")), tid);
    cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(in, "span_id")), sid);
    cr_assert_null(cJSON_GetObjectItem(out, "trace_id"), "no ids outside a traced scope");
    cJSON_Delete(in);
    cJSON_Delete(out);
    ukko_span_end(sp);
}
