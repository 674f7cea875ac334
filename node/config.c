/* config.c: one JSON file plus UKKO_* environment overrides, checked against
 * the key tables the modules register. Loading is all-or-report: every
 * problem (unknown key, wrong type, out of range) becomes one line naming the
 * key, the value and what is allowed. Used once at start, on the main thread. */
#include "ukko.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ERRORS 200

typedef enum { SRC_DEFAULT, SRC_FILE, SRC_ENV } source_t;

typedef struct entry {
    const ukko_cfg_key_t *key;
    void *base;
} entry_t;

struct ukko_config {
    entry_t *entries;
    size_t nentries;
    char **errors;
    size_t nerrors;
    const char *path; /* valid during load only */
};

ukko_config_t *ukko_config_new(void)
{
    return calloc(1, sizeof(ukko_config_t));
}

static void *field_of(const entry_t *e)
{
    return (char *)e->base + e->key->offset;
}

static void release(const entry_t *e)
{
    void *f = field_of(e);
    switch (e->key->type) {
    case UKKO_CFG_STRING:
        free(*(char **)f);
        *(char **)f = NULL;
        break;
    case UKKO_CFG_STRLIST: {
        ukko_strlist_t *l = f;
        for (size_t i = 0; i < l->n; i++)
            free(l->v[i]);
        free(l->v);
        l->v = NULL;
        l->n = 0;
        break;
    }
    case UKKO_CFG_JSON:
        cJSON_Delete(*(cJSON **)f);
        *(cJSON **)f = NULL;
        break;
    default:
        break;
    }
}

void ukko_config_free(ukko_config_t *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->nentries; i++)
        release(&cfg->entries[i]);
    for (size_t i = 0; i < cfg->nerrors; i++)
        free(cfg->errors[i]);
    free(cfg->errors);
    free(cfg->entries);
    free(cfg);
}

int ukko_config_add(ukko_config_t *cfg, const ukko_cfg_key_t *keys, size_t nkeys, void *base)
{
    entry_t *e = realloc(cfg->entries, (cfg->nentries + nkeys) * sizeof(*e));
    if (!e)
        return UKKO_ENOMEM;
    cfg->entries = e;
    for (size_t i = 0; i < nkeys; i++) {
        e[cfg->nentries + i].key = &keys[i];
        e[cfg->nentries + i].base = base;
        /* Zero the field so release() is safe before the first store. */
        void *f = (char *)base + keys[i].offset;
        switch (keys[i].type) {
        case UKKO_CFG_STRING: *(char **)f = NULL; break;
        case UKKO_CFG_JSON: *(cJSON **)f = NULL; break;
        case UKKO_CFG_STRLIST: memset(f, 0, sizeof(ukko_strlist_t)); break;
        default: break;
        }
    }
    cfg->nentries += nkeys;
    return 0;
}

size_t ukko_config_error_count(const ukko_config_t *cfg)
{
    return cfg->nerrors;
}

const char *ukko_config_error(const ukko_config_t *cfg, size_t i)
{
    return i < cfg->nerrors ? cfg->errors[i] : NULL;
}

const ukko_cfg_key_t *ukko_config_key_at(const ukko_config_t *cfg, size_t i)
{
    return i < cfg->nentries ? cfg->entries[i].key : NULL;
}

static void add_error(ukko_config_t *cfg, const char *fmt, ...) UKKO_PRINTF(2, 3);
static void add_error(ukko_config_t *cfg, const char *fmt, ...)
{
    if (cfg->nerrors >= MAX_ERRORS)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    char **e = realloc(cfg->errors, (cfg->nerrors + 1) * sizeof(*e));
    char *copy = strdup(line);
    if (!e || !copy) {
        free(copy);
        if (e)
            cfg->errors = e;
        return;
    }
    cfg->errors = e;
    cfg->errors[cfg->nerrors++] = copy;
}

void ukko_config_env_name(const char *path, char *out, size_t outlen)
{
    size_t j = 0;
    const char prefix[] = "UKKO_";
    for (size_t i = 0; prefix[i] && j + 1 < outlen; i++)
        out[j++] = prefix[i];
    for (const char *p = path; *p && j + 1 < outlen; p++)
        out[j++] = (*p == '.' || *p == '-') ? '_' : (char)toupper((unsigned char)*p);
    if (outlen)
        out[j] = '\0';
}

/* Is a member of a JSON setting a secret (kafka.properties' sasl.password,
 * ssl.key.password, sasl.oauthbearer.client.secret, ssl.key.pem, ...)?
 * Its value is then never shown: not in errors, not by check-config. */
static bool secret_name(const char *name)
{
    return name && (strstr(name, "password") || strstr(name, "secret") ||
                    strstr(name, "token") || strstr(name, "credential") ||
                    strstr(name, ".pem") || strstr(name, "sasl.oauthbearer.config"));
}

/* A copy of v with every secret member's value replaced (caller frees). */
static cJSON *redacted(const cJSON *v)
{
    cJSON *c = cJSON_Duplicate(v, 1);
    cJSON *stack[32];
    int n = 0;
    if (c)
        stack[n++] = c;
    while (n > 0) {
        cJSON *o = stack[--n];
        for (cJSON *it = o->child, *next; it; it = next) {
            next = it->next; /* it may be replaced (freed) below */
            if (cJSON_IsObject(o) && secret_name(it->string) && !cJSON_IsNull(it))
                (void)cJSON_ReplaceItemInObjectCaseSensitive(o, it->string,
                                                             cJSON_CreateString("(secret, not shown)"));
            else if ((cJSON_IsObject(it) || cJSON_IsArray(it)) && n < 32)
                stack[n++] = it;
        }
    }
    return c;
}

/* "x = <value> (from ...)" rendering of a value, cut to a readable length. */
static void render(const cJSON *v, char *out, size_t outlen)
{
    cJSON *shown = redacted(v);
    char *s = shown ? cJSON_PrintUnformatted(shown) : NULL;
    cJSON_Delete(shown);
    if (!s) {
        snprintf(out, outlen, "?");
        return;
    }
    if (strlen(s) > 80)
        snprintf(out, outlen, "%.77s...", s);
    else
        snprintf(out, outlen, "%s", s);
    free(s);
}

static void describe_allowed(const ukko_cfg_key_t *k, char *out, size_t outlen)
{
    char a[32], b[32];
    switch (k->type) {
    case UKKO_CFG_BOOL: snprintf(out, outlen, "true or false"); break;
    case UKKO_CFG_INT:
        snprintf(out, outlen, "an integer from %lld to %lld", (long long)k->min,
                 (long long)k->max);
        break;
    case UKKO_CFG_DURATION:
        ukko_format_duration(k->min, a, sizeof(a));
        ukko_format_duration(k->max, b, sizeof(b));
        snprintf(out, outlen, "a duration such as \"250ms\", \"5s\", \"2m\", from %s to %s", a,
                 b);
        break;
    case UKKO_CFG_STRING: snprintf(out, outlen, "a string"); break;
    case UKKO_CFG_ENUM: {
        size_t n = (size_t)snprintf(out, outlen, "one of");
        for (size_t i = 0; k->choices[i] && n < outlen; i++)
            n += (size_t)snprintf(out + n, outlen - n, "%s \"%s\"", i ? "," : "", k->choices[i]);
        break;
    }
    case UKKO_CFG_STRLIST:
        if (k->max > 0)
            snprintf(out, outlen, "a list of at most %lld strings", (long long)k->max);
        else
            snprintf(out, outlen, "a list of strings");
        break;
    case UKKO_CFG_JSON: snprintf(out, outlen, "a JSON value"); break;
    }
}

/* Checks v against k and stores it; on a problem records one error line. */
static int store(ukko_config_t *cfg, const entry_t *e, const cJSON *v, const char *origin)
{
    const ukko_cfg_key_t *k = e->key;
    void *f = field_of(e);
    char val[128], allowed[256], why[256] = "";
    render(v, val, sizeof(val));
    describe_allowed(k, allowed, sizeof(allowed));
    const char *problem = NULL;
    int64_t iv = 0;
    int ev = 0;

    switch (k->type) {
    case UKKO_CFG_BOOL:
        if (!cJSON_IsBool(v))
            problem = "is not a boolean";
        break;
    case UKKO_CFG_INT:
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
            fabs(v->valuedouble) > 9007199254740992.0)
            problem = "is not an integer";
        else if ((iv = (int64_t)v->valuedouble) < k->min || iv > k->max)
            problem = "is out of range";
        break;
    case UKKO_CFG_DURATION:
        if (!cJSON_IsString(v) || ukko_parse_duration(v->valuestring, &iv) < 0)
            problem = "is not a duration";
        else if (iv < k->min || iv > k->max)
            problem = "is out of range";
        break;
    case UKKO_CFG_STRING:
        if (!cJSON_IsString(v) && !cJSON_IsNull(v))
            problem = "is not a string";
        break;
    case UKKO_CFG_ENUM:
        problem = "is not one of the choices";
        if (cJSON_IsString(v))
            for (int i = 0; k->choices[i]; i++)
                if (!strcmp(k->choices[i], v->valuestring)) {
                    ev = i;
                    problem = NULL;
                }
        break;
    case UKKO_CFG_STRLIST:
        if (!cJSON_IsArray(v)) {
            problem = "is not a list";
            break;
        }
        for (const cJSON *it = v->child; it; it = it->next)
            if (!cJSON_IsString(it))
                problem = "has an item that is not a string";
        if (!problem && k->max > 0 && cJSON_GetArraySize(v) > k->max)
            problem = "has too many items";
        break;
    case UKKO_CFG_JSON:
        break;
    }
    if (!problem && k->check && k->check(v, why, sizeof(why)) < 0) {
        problem = "is not valid";
        snprintf(allowed, sizeof(allowed), "%s", why);
    }
    if (problem) {
        add_error(cfg, "config: %s = %s (%s) %s: allowed: %s", k->path, val, origin, problem,
                  allowed);
        return UKKO_EINVAL;
    }

    release(e);
    switch (k->type) {
    case UKKO_CFG_BOOL: *(bool *)f = cJSON_IsTrue(v); break;
    case UKKO_CFG_INT:
    case UKKO_CFG_DURATION: *(int64_t *)f = iv; break;
    case UKKO_CFG_ENUM: *(int *)f = ev; break;
    case UKKO_CFG_STRING:
        if (cJSON_IsString(v) && !(*(char **)f = strdup(v->valuestring)))
            return UKKO_ENOMEM;
        break;
    case UKKO_CFG_STRLIST: {
        ukko_strlist_t *l = f;
        size_t n = (size_t)cJSON_GetArraySize(v);
        l->v = calloc(n ? n : 1, sizeof(char *));
        if (!l->v)
            return UKKO_ENOMEM;
        for (const cJSON *it = v->child; it; it = it->next)
            if (!(l->v[l->n++] = strdup(it->valuestring)))
                return UKKO_ENOMEM;
        break;
    }
    case UKKO_CFG_JSON:
        if (!(*(cJSON **)f = cJSON_Duplicate(v, 1)))
            return UKKO_ENOMEM;
        break;
    }
    return 0;
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return 99;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t prev = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cur = row[j];
            size_t sub = prev + (a[i - 1] != b[j - 1]);
            size_t del = row[j] + 1, ins = row[j - 1] + 1;
            row[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
            prev = cur;
        }
    }
    return row[lb];
}

/* The closest known key, for "did you mean" (NULL when nothing is close). */
static const char *closest(const ukko_config_t *cfg, const char *path, bool env)
{
    const char *best = NULL;
    size_t bestd = (size_t)-1;
    for (size_t i = 0; i < cfg->nentries; i++) {
        char name[256];
        if (env)
            ukko_config_env_name(cfg->entries[i].key->path, name, sizeof(name));
        size_t d = edit_distance(path, env ? name : cfg->entries[i].key->path);
        if (d < bestd) {
            bestd = d;
            best = cfg->entries[i].key->path;
        }
    }
    size_t limit = strlen(path) / 3 > 2 ? strlen(path) / 3 : 2;
    return bestd <= limit ? best : NULL;
}

static const entry_t *find(const ukko_config_t *cfg, const char *path)
{
    for (size_t i = 0; i < cfg->nentries; i++)
        if (!strcmp(cfg->entries[i].key->path, path))
            return &cfg->entries[i];
    return NULL;
}

static bool is_prefix(const ukko_config_t *cfg, const char *path)
{
    size_t n = strlen(path);
    for (size_t i = 0; i < cfg->nentries; i++)
        if (!strncmp(cfg->entries[i].key->path, path, n) && cfg->entries[i].key->path[n] == '.')
            return true;
    return false;
}

static void walk(ukko_config_t *cfg, const cJSON *obj, const char *prefix, const char *origin)
{
    for (const cJSON *it = obj->child; it; it = it->next) {
        char path[256];
        snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "." : "",
                 it->string ? it->string : "");
        const entry_t *e = find(cfg, path);
        if (e) {
            store(cfg, e, it, origin);
        } else if (is_prefix(cfg, path)) {
            if (cJSON_IsObject(it))
                walk(cfg, it, path, origin);
            else
                add_error(cfg, "config: %s (%s) must be an object of settings, not a value",
                          path, origin);
        } else {
            const char *near = closest(cfg, path, false);
            char hint[300] = " (see ukko.example.json for every key)";
            if (near)
                snprintf(hint, sizeof(hint), ": did you mean \"%s\"?", near);
            add_error(cfg, "config: unknown key \"%s\" (%s)%s", path, origin, hint);
        }
    }
}

static const char *env_get(char *const *envp, const char *name)
{
    size_t n = strlen(name);
    for (char *const *p = envp; p && *p; p++)
        if (!strncmp(*p, name, n) && (*p)[n] == '=')
            return *p + n + 1;
    return NULL;
}

/* Turns an environment string into the JSON value its key expects. */
static cJSON *env_value(const ukko_cfg_key_t *k, const char *s)
{
    switch (k->type) {
    case UKKO_CFG_BOOL:
        if (!strcmp(s, "true") || !strcmp(s, "1") || !strcmp(s, "yes") || !strcmp(s, "on"))
            return cJSON_CreateTrue();
        if (!strcmp(s, "false") || !strcmp(s, "0") || !strcmp(s, "no") || !strcmp(s, "off"))
            return cJSON_CreateFalse();
        return cJSON_CreateString(s);
    case UKKO_CFG_INT: {
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (*s && !*end && !errno)
            return cJSON_CreateNumber((double)v);
        return cJSON_CreateString(s);
    }
    case UKKO_CFG_STRLIST: {
        if (s[0] == '[')
            return cJSON_Parse(s);
        cJSON *a = cJSON_CreateArray();
        const char *p = s;
        while (a && *p) {
            const char *c = strchr(p, ',');
            size_t n = c ? (size_t)(c - p) : strlen(p);
            while (n && isspace((unsigned char)*p))
                p++, n--;
            while (n && isspace((unsigned char)p[n - 1]))
                n--;
            char item[512];
            snprintf(item, sizeof(item), "%.*s", (int)n, p);
            if (n)
                cJSON_AddItemToArray(a, cJSON_CreateString(item));
            p = c ? c + 1 : p + strlen(p);
        }
        return a;
    }
    case UKKO_CFG_JSON: return cJSON_Parse(s);
    default: return cJSON_CreateString(s);
    }
}

static void load_env(ukko_config_t *cfg, char *const *envp)
{
    for (size_t i = 0; i < cfg->nentries; i++) {
        char name[256], origin[300];
        ukko_config_env_name(cfg->entries[i].key->path, name, sizeof(name));
        const char *s = env_get(envp, name);
        if (!s)
            continue;
        snprintf(origin, sizeof(origin), "from %s", name);
        cJSON *v = env_value(cfg->entries[i].key, s);
        if (!v && cfg->entries[i].key->type == UKKO_CFG_JSON) {
            /* Its text may hold secrets (kafka.properties): not shown. */
            add_error(cfg, "config: %s (%s) is not valid JSON: allowed: a JSON value",
                      cfg->entries[i].key->path, origin);
            continue;
        } else if (!v) {
            add_error(cfg, "config: %s = %.80s (%s) is not valid JSON: allowed: a JSON value",
                      cfg->entries[i].key->path, s, origin);
            continue;
        }
        store(cfg, &cfg->entries[i], v, origin);
        cJSON_Delete(v);
    }
    /* A misspelt variable would silently do nothing: refuse it instead. */
    for (char *const *p = envp; p && *p; p++) {
        if (strncmp(*p, "UKKO_", 5))
            continue;
        const char *eq = strchr(*p, '=');
        char name[256];
        snprintf(name, sizeof(name), "%.*s", eq ? (int)(eq - *p) : (int)strlen(*p), *p);
        bool known = false;
        for (size_t i = 0; i < cfg->nentries && !known; i++) {
            char n2[256];
            ukko_config_env_name(cfg->entries[i].key->path, n2, sizeof(n2));
            known = !strcmp(n2, name);
        }
        if (known)
            continue;
        const char *near = closest(cfg, name, true);
        char hint[300] = "";
        if (near) {
            char n2[256];
            ukko_config_env_name(near, n2, sizeof(n2));
            snprintf(hint, sizeof(hint), ": did you mean %s?", n2);
        }
        add_error(cfg, "config: unknown environment variable %s: no config key has that name%s",
                  name, hint);
    }
}

static char *read_file(const char *path, size_t cap, int *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *err = -errno;
        return NULL;
    }
    ukko_buf_t b;
    ukko_buf_init(&b, cap);
    char chunk[4096];
    size_t n;
    int rc = 0;
    while (rc == 0 && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        rc = ukko_buf_append(&b, chunk, n);
    if (rc == 0 && ferror(f))
        rc = UKKO_EINVAL;
    fclose(f);
    if (rc < 0 || !b.data) {
        *err = rc < 0 ? rc : 0;
        if (!b.data && rc == 0)
            return strdup("");
        ukko_buf_destroy(&b);
        return NULL;
    }
    return b.data;
}

/* The file may carry // and block comments (the example config is
 * commented): blank them out in place, keeping newlines, so parse errors
 * still point at the right line and column. */
static void blank_comments(char *s)
{
    bool in_str = false;
    for (char *p = s; *p; p++) {
        if (in_str) {
            if (*p == '\\' && p[1])
                p++;
            else if (*p == '"')
                in_str = false;
        } else if (*p == '"') {
            in_str = true;
        } else if (p[0] == '/' && p[1] == '/') {
            while (*p && *p != '\n')
                *p++ = ' ';
            if (!*p)
                break;
        } else if (p[0] == '/' && p[1] == '*') {
            char *q = p;
            while (*q && !(q[0] == '*' && q[1] == '/'))
                q++;
            if (!*q)
                break; /* unterminated: let the JSON parser report it */
            for (q += 2; p < q; p++)
                if (*p != '\n')
                    *p = ' ';
            p--;
        }
    }
}

/* Line and column of a byte offset, for parse errors. */
static void line_col(const char *text, const char *at, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (const char *p = text; p < at && *p; p++) {
        if (*p == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

int ukko_config_load(ukko_config_t *cfg, const char *path, char *const *envp)
{
    /* Defaults first: a broken default table is a bug, reported like any error. */
    for (size_t i = 0; i < cfg->nentries; i++) {
        const ukko_cfg_key_t *k = cfg->entries[i].key;
        cJSON *v = cJSON_Parse(k->def ? k->def : "null");
        if (!v || store(cfg, &cfg->entries[i], v, "built-in default") < 0)
            add_error(cfg, "config: %s: the built-in default %s is invalid (a bug in ukko)",
                      k->path, k->def ? k->def : "null");
        cJSON_Delete(v);
    }

    if (path) {
        int err = 0;
        char *text = read_file(path, 4 * 1024 * 1024, &err);
        char origin[300];
        snprintf(origin, sizeof(origin), "in %s", path);
        if (!text) {
            add_error(cfg, "config: cannot read %s: %s%s", path,
                      err == UKKO_E2BIG ? "larger than 4 MiB" : ukko_strerror(err),
                      err == UKKO_ENOENT ? " (check the path given to --config)" : "");
        } else {
            const char *end = NULL;
            blank_comments(text);
            cJSON *root = cJSON_ParseWithOpts(text, &end, 1);
            if (!root) {
                int line, col;
                const char *at = cJSON_GetErrorPtr();
                line_col(text, at ? at : text, &line, &col);
                add_error(cfg, "config: %s is not valid JSON near line %d, column %d", path,
                          line, col);
            } else if (!cJSON_IsObject(root)) {
                add_error(cfg, "config: %s must hold a JSON object ({...}) of settings", path);
            } else {
                walk(cfg, root, "", origin);
            }
            cJSON_Delete(root);
            free(text);
        }
    }
    load_env(cfg, envp);
    return (int)cfg->nerrors;
}

cJSON *ukko_config_to_json(const ukko_config_t *cfg)
{
    cJSON *root = cJSON_CreateObject();
    for (size_t i = 0; root && i < cfg->nentries; i++) {
        const entry_t *e = &cfg->entries[i];
        const ukko_cfg_key_t *k = e->key;
        const void *f = field_of(e);
        /* Walk/create the parent objects of the dotted path. */
        cJSON *parent = root;
        char path[256];
        snprintf(path, sizeof(path), "%s", k->path);
        char *seg = path, *dot;
        while ((dot = strchr(seg, '.'))) {
            *dot = '\0';
            cJSON *child = cJSON_GetObjectItemCaseSensitive(parent, seg);
            if (!child)
                child = cJSON_AddObjectToObject(parent, seg);
            parent = child;
            seg = dot + 1;
        }
        cJSON *v = NULL;
        char d[32];
        switch (k->type) {
        case UKKO_CFG_BOOL: v = cJSON_CreateBool(*(const bool *)f); break;
        case UKKO_CFG_INT: v = cJSON_CreateNumber((double)*(const int64_t *)f); break;
        case UKKO_CFG_DURATION:
            ukko_format_duration(*(const int64_t *)f, d, sizeof(d));
            v = cJSON_CreateString(d);
            break;
        case UKKO_CFG_STRING:
            v = *(char *const *)f ? cJSON_CreateString(*(char *const *)f) : cJSON_CreateNull();
            break;
        case UKKO_CFG_ENUM: v = cJSON_CreateString(k->choices[*(const int *)f]); break;
        case UKKO_CFG_STRLIST: {
            const ukko_strlist_t *l = f;
            v = cJSON_CreateArray();
            for (size_t j = 0; v && j < l->n; j++)
                cJSON_AddItemToArray(v, cJSON_CreateString(l->v[j]));
            break;
        }
        case UKKO_CFG_JSON:
            v = *(cJSON *const *)f ? redacted(*(cJSON *const *)f) : cJSON_CreateNull();
            break;
        }
        if (parent && v)
            cJSON_AddItemToObject(parent, seg, v);
        else
            cJSON_Delete(v);
    }
    return root;
}

/* ------------------------------------------------------------------ docs */

static int by_path(const void *a, const void *b)
{
    return strcmp((*(const ukko_cfg_key_t *const *)a)->path,
                  (*(const ukko_cfg_key_t *const *)b)->path);
}

/* Length of the first n+1 segments of path ("a.b.c", 1 -> 3 for "a.b"). */
static size_t prefix_len(const char *path, size_t depth)
{
    const char *p = path;
    for (size_t d = 0; d <= depth; d++) {
        const char *dot = strchr(p, '.');
        if (!dot || d == depth)
            return dot ? (size_t)(dot - path) : strlen(path);
        p = dot + 1;
    }
    return strlen(path);
}

static void emit_example(ukko_buf_t *out, const ukko_cfg_key_t **k, size_t b, size_t e,
                         size_t depth)
{
    size_t i = b;
    while (i < e) {
        size_t plen = prefix_len(k[i]->path, depth);
        size_t j = i + 1;
        while (j < e && prefix_len(k[j]->path, depth) == plen &&
               !strncmp(k[j]->path, k[i]->path, plen))
            j++;
        const char *seg = k[i]->path;
        for (size_t d = 0; d < depth; d++)
            seg = strchr(seg, '.') + 1;
        size_t seglen = (size_t)(k[i]->path + plen - seg);
        int indent = (int)(depth + 1) * 2;
        bool leaf = (j == i + 1 && k[i]->path[plen] == '\0');
        if (leaf) {
            char allowed[256];
            describe_allowed(k[i], allowed, sizeof(allowed));
            char env[256];
            ukko_config_env_name(k[i]->path, env, sizeof(env));
            ukko_buf_printf(out, "%*s// %s\n%*s// %s; env %s\n", indent, "", k[i]->doc, indent,
                            "", allowed, env);
            ukko_buf_printf(out, "%*s\"%.*s\": %s", indent, "", (int)seglen, seg,
                            k[i]->def ? k[i]->def : "null");
        } else {
            ukko_buf_printf(out, "%*s\"%.*s\": {\n", indent, "", (int)seglen, seg);
            emit_example(out, k, i, j, depth + 1);
            ukko_buf_printf(out, "%*s}", indent, "");
        }
        ukko_buf_puts(out, j < e ? ",\n" : "\n");
        i = j;
    }
}

int ukko_config_describe(const ukko_config_t *cfg, bool markdown, ukko_buf_t *out)
{
    const ukko_cfg_key_t **k = malloc((cfg->nentries ? cfg->nentries : 1) * sizeof(*k));
    if (!k)
        return UKKO_ENOMEM;
    for (size_t i = 0; i < cfg->nentries; i++)
        k[i] = cfg->entries[i].key;
    qsort(k, cfg->nentries, sizeof(*k), by_path);
    if (markdown) {
        ukko_buf_puts(out, "| key | environment | default | allowed | meaning |\n"
                           "|---|---|---|---|---|\n");
        for (size_t i = 0; i < cfg->nentries; i++) {
            char env[256], allowed[256];
            ukko_config_env_name(k[i]->path, env, sizeof(env));
            describe_allowed(k[i], allowed, sizeof(allowed));
            ukko_buf_printf(out, "| `%s` | `%s` | `%s` | %s | %s |\n", k[i]->path, env,
                            k[i]->def ? k[i]->def : "null", allowed, k[i]->doc);
        }
    } else {
        ukko_buf_puts(out, "// ukko.example.json: every setting with its default (generated by\n"
                           "// `ukko config-keys --example`; scripts/gen-docs.sh keeps it so).\n"
                           "// Comments are allowed in ukko's config files.\n{\n");
        emit_example(out, k, 0, cfg->nentries, 0);
        ukko_buf_puts(out, "}\n");
    }
    free(k);
    return 0;
}
