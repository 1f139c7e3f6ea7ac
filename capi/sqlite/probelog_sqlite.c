/*
 * probelog_sqlite.c: a SQLite loadable extension that searches probelog indexes from SQL. It
 * uses probelog only through its C ABI (probelog.h); link it with libprobelog_c.a into one
 * self-contained shared object (docs/embedding.md):
 *
 *   cargo build --release -p probelog-capi
 *   cc -shared -fPIC -O2 -fvisibility=hidden -I capi/include capi/sqlite/probelog_sqlite.c \
 *      target/release/libprobelog_c.a -Wl,--exclude-libs,ALL -lpthread -ldl -lm -o probelog.so
 *
 *   sqlite> .load ./probelog
 *
 * Table-valued functions (eponymous virtual tables), all with the columns
 *   rank, entry, model_id, model, logit, label, score
 * and these arguments (hidden columns, in the order shown):
 *
 *   probelog_search(path, query_blob [, n, k, metric, per_model, mode, candidates,
 *                   blend_weight, filter, model_name])
 *       raw logits over the probes
 *   probelog_search_text(path, embedding_blob [, n, k, metric, per_model, mode, candidates,
 *                        blend_weight, filter, model_name])
 *       a text embedding
 *   probelog_search_entry(path, entry [, n, k, metric, per_model, exclude_same_model, mode,
 *                         candidates, blend_weight, filter, model_name])
 *       an entry of the index
 *   probelog_models(path, query_blob [, n, k, metric, mode, candidates, blend_weight, filter,
 *                   model_name])
 *       raw logits, best logit per model (per_model = 1)
 *
 * Blobs hold little-endian float32 values: P of them for a query, d for a text embedding. The
 * defaults: n = 10, k = NULL (the library's default), metric = 'blend' (or 'topk', the paper's
 * top-k discrepancy, 'full', 'model'), per_model = 0, exclude_same_model = 0, mode = 'auto' (or
 * 'exact', 'hnsw', which needs metric 'topk'), candidates = NULL (the library's default),
 * blend_weight = NULL (the library's default, 8 today; a number from 0 to 1e6, for metric 'blend' only;
 * 0 ranks as 'topk'). filter = NULL (every model) or conditions on the models' metadata joined
 * by '&', all of which must hold: 'KEY=VALUE' (the model has KEY with exactly that value) or
 * 'KEY!=VALUE' (it has no KEY, or another value), e.g. 'family=resnet&license!=gpl' (search
 * --where; a key is not empty, and neither keys nor values can hold '&'; '' is no condition).
 * model_name = NULL (every model) or a pattern the model's name must match, '*' any run of
 * characters and '?' one (search --model-name). Filtered models are left out inside the scan, so
 * n rows come back whenever n match. Deleted models are never returned. SQL NULL means the
 * default. Scalar functions:
 *
 *   probelog_descriptor(path, entry)  the stored descriptor of an entry, as a query blob
 *   probelog_f32(text)                '[0.5, -1, 2e-3]' (or space/comma separated) as a blob
 *   probelog_version()                the library version
 *
 * Every bad argument is an SQL error naming it. The functions read files named in SQL, so they
 * are marked direct-only: they cannot be used from triggers or views of an untrusted schema.
 */
#include <sqlite3ext.h>
SQLITE_EXTENSION_INIT1

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "probelog.h"

#if defined(_WIN32)
#define PL_EXPORT __declspec(dllexport)
#else
#define PL_EXPORT __attribute__((visibility("default")))
#endif

/* The visible columns; the hidden ones that carry the arguments follow them. */
enum { COL_RANK, COL_ENTRY, COL_MODEL_ID, COL_MODEL, COL_LOGIT, COL_LABEL, COL_SCORE, COL_PATH };

/* Every argument of any form. A form's hidden columns are some of them, in its own order. */
enum {
    ARG_PATH,
    ARG_QUERY,
    ARG_N,
    ARG_K,
    ARG_METRIC,
    ARG_PER_MODEL,
    ARG_EXCLUDE,
    ARG_MODE,
    ARG_CANDIDATES,
    ARG_BLEND_WEIGHT,
    ARG_FILTER,
    ARG_MODEL_NAME,
    N_ARGS
};
#define REQUIRED ((1 << ARG_PATH) | (1 << ARG_QUERY))
/* The number of elements of an array. */
#define PL_COUNT(array) ((int)(sizeof(array) / sizeof((array)[0])))

static const char *const ARG_NAMES[N_ARGS] = {
    "path", "query",      "n",          "k", "metric", "per_model", "exclude_same_model",
    "mode", "candidates", "blend_weight", "filter", "model_name",
};

typedef enum { QUERY_VECTOR, QUERY_TEXT, QUERY_ENTRY } QueryKind;

/* What distinguishes the four table-valued functions. */
typedef struct {
    const char *name;
    QueryKind kind;
    int per_model;
    const char *usage;
    int n_args;
    int args[N_ARGS]; /* the argument of each hidden column, in order */
} Form;

/* The 11 arguments of probelog_search and probelog_search_text (a query vector or a text
   embedding), in the order of their hidden columns. */
#define QUERY_BLOB_ARGS                                                                           \
    {ARG_PATH, ARG_QUERY, ARG_N, ARG_K, ARG_METRIC, ARG_PER_MODEL, ARG_MODE, ARG_CANDIDATES,    \
     ARG_BLEND_WEIGHT, ARG_FILTER, ARG_MODEL_NAME}

static const Form FORMS[] = {
    {"probelog_search", QUERY_VECTOR, 0,
     "probelog_search(path, query_blob [, n, k, metric, per_model, mode, candidates, "
     "blend_weight, filter, model_name])",
     11, QUERY_BLOB_ARGS},
    {"probelog_search_text", QUERY_TEXT, 0,
     "probelog_search_text(path, embedding_blob [, n, k, metric, per_model, mode, candidates, "
     "blend_weight, filter, model_name])",
     11, QUERY_BLOB_ARGS},
    {"probelog_search_entry", QUERY_ENTRY, 0,
     "probelog_search_entry(path, entry [, n, k, metric, per_model, exclude_same_model, mode, "
     "candidates, blend_weight, filter, model_name])",
     12,
     {ARG_PATH, ARG_QUERY, ARG_N, ARG_K, ARG_METRIC, ARG_PER_MODEL, ARG_EXCLUDE, ARG_MODE,
      ARG_CANDIDATES, ARG_BLEND_WEIGHT, ARG_FILTER, ARG_MODEL_NAME}},
    {"probelog_models", QUERY_VECTOR, 1,
     "probelog_models(path, query_blob [, n, k, metric, mode, candidates, blend_weight, filter, "
     "model_name])",
     10,
     {ARG_PATH, ARG_QUERY, ARG_N, ARG_K, ARG_METRIC, ARG_MODE, ARG_CANDIDATES, ARG_BLEND_WEIGHT,
      ARG_FILTER, ARG_MODEL_NAME}},
};

/* The argument behind a column of `form`, or -1 for a visible column. */
static int pl_arg_of(const Form *form, int col) {
    int h = col - COL_PATH;
    return h >= 0 && h < form->n_args ? form->args[h] : -1;
}

/* The 1-based position of an argument of `form` (0 when the form does not take it). */
static int pl_position(const Form *form, int arg) {
    for (int h = 0; h < form->n_args; h++)
        if (form->args[h] == arg) return h + 1;
    return 0;
}

/* "CREATE TABLE x(...)" of a form: the visible columns, then its arguments as hidden ones. */
static char *pl_schema(const Form *form) {
    char *sql = sqlite3_mprintf(
        "CREATE TABLE x(rank INTEGER, entry INTEGER, model_id INTEGER, model TEXT, "
        "logit INTEGER, label TEXT, score REAL");
    for (int h = 0; sql && h < form->n_args; h++) {
        char *longer = sqlite3_mprintf("%s, %s HIDDEN", sql, ARG_NAMES[form->args[h]]);
        sqlite3_free(sql);
        sql = longer;
    }
    if (sql) {
        char *done = sqlite3_mprintf("%s)", sql);
        sqlite3_free(sql);
        sql = done;
    }
    return sql;
}

typedef struct {
    sqlite3_vtab base;
    const Form *form;
} Table;

typedef struct {
    sqlite3_vtab_cursor base;
    sqlite3_value *args[N_ARGS]; /* copies of the arguments, NULL when absent */
    ProbelogIndex *index;        /* kept open between filters on the same path */
    char *index_path;
    ProbelogResults *results;
    size_t len, i;
    ProbelogHit hit;
    char *filter_buf;        /* the filter argument, split in place at each '&' */
    const char **conditions; /* its conditions, pointing into filter_buf */
} Cursor;

static const char *pl_type_name(int t) {
    switch (t) {
        case SQLITE_INTEGER: return "INTEGER";
        case SQLITE_FLOAT: return "REAL";
        case SQLITE_TEXT: return "TEXT";
        case SQLITE_BLOB: return "BLOB";
        default: return "NULL";
    }
}

/* Sets the table's error message: "<function>: <message>"; returns SQLITE_ERROR. */
static int pl_fail(Cursor *c, const char *fmt, ...) {
    Table *t = (Table *)c->base.pVtab;
    va_list ap;
    va_start(ap, fmt);
    char *msg = sqlite3_vmprintf(fmt, ap);
    va_end(ap);
    sqlite3_free(t->base.zErrMsg);
    t->base.zErrMsg = sqlite3_mprintf("%s: %s", t->form->name, msg ? msg : "out of memory");
    sqlite3_free(msg);
    return SQLITE_ERROR;
}

static int pl_connect(sqlite3 *db, void *aux, int argc, const char *const *argv, sqlite3_vtab **out,
                   char **err) {
    (void)argc;
    (void)argv;
    (void)err;
    char *schema = pl_schema(aux);
    if (!schema) return SQLITE_NOMEM;
    int rc = sqlite3_declare_vtab(db, schema);
    sqlite3_free(schema);
    if (rc != SQLITE_OK) return rc;
#ifdef SQLITE_VTAB_DIRECTONLY
    sqlite3_vtab_config(db, SQLITE_VTAB_DIRECTONLY);
#endif
    Table *t = sqlite3_malloc(sizeof *t);
    if (!t) return SQLITE_NOMEM;
    memset(t, 0, sizeof *t);
    t->form = aux;
    *out = &t->base;
    return SQLITE_OK;
}

static int pl_disconnect(sqlite3_vtab *vtab) {
    sqlite3_free(vtab);
    return SQLITE_OK;
}

/* Passes every usable "hidden column = value" constraint to xFilter, in column order; idxNum
 * says which arguments are present. The path and the query are required. */
static int pl_best_index(sqlite3_vtab *vtab, sqlite3_index_info *info) {
    Table *t = (Table *)vtab;
    int constraint_of[N_ARGS];
    int present = 0, unusable = 0;
    for (int a = 0; a < N_ARGS; a++) constraint_of[a] = -1;
    for (int i = 0; i < info->nConstraint; i++) {
        const struct sqlite3_index_constraint *con = &info->aConstraint[i];
        int a = pl_arg_of(t->form, con->iColumn);
        if (a < 0) continue;
        if (!con->usable) {
            unusable |= 1 << a;
            continue;
        }
        if (con->op != SQLITE_INDEX_CONSTRAINT_EQ || constraint_of[a] >= 0) continue;
        constraint_of[a] = i;
        present |= 1 << a;
    }
    if ((present & REQUIRED) != REQUIRED) {
        /* A join may offer the arguments in another plan; otherwise they are missing. */
        if (unusable & REQUIRED & ~present) return SQLITE_CONSTRAINT;
        sqlite3_free(t->base.zErrMsg);
        t->base.zErrMsg = sqlite3_mprintf("%s: the index path and the query are required: %s",
                                          t->form->name, t->form->usage);
        return SQLITE_ERROR;
    }
    int next = 0;
    for (int a = 0; a < N_ARGS; a++) {
        if (constraint_of[a] < 0) continue;
        info->aConstraintUsage[constraint_of[a]].argvIndex = ++next;
        info->aConstraintUsage[constraint_of[a]].omit = 1;
    }
    info->idxNum = present;
    info->estimatedCost = 1000.0;
    info->estimatedRows = 10;
    return SQLITE_OK;
}

static int pl_open_cursor(sqlite3_vtab *vtab, sqlite3_vtab_cursor **out) {
    (void)vtab;
    Cursor *c = sqlite3_malloc(sizeof *c);
    if (!c) return SQLITE_NOMEM;
    memset(c, 0, sizeof *c);
    *out = &c->base;
    return SQLITE_OK;
}

static void pl_reset(Cursor *c) {
    probelog_results_free(c->results);
    c->results = NULL;
    sqlite3_free(c->filter_buf);
    c->filter_buf = NULL;
    sqlite3_free((void *)c->conditions);
    c->conditions = NULL;
    c->len = c->i = 0;
    for (int a = 0; a < N_ARGS; a++) {
        sqlite3_value_free(c->args[a]);
        c->args[a] = NULL;
    }
}

static int pl_close_cursor(sqlite3_vtab_cursor *cur) {
    Cursor *c = (Cursor *)cur;
    pl_reset(c);
    probelog_index_close(c->index);
    sqlite3_free(c->index_path);
    sqlite3_free(c);
    return SQLITE_OK;
}

/* An optional argument: absent or SQL NULL gives 0 (use the default). */
static int pl_given(const Cursor *c, int arg) {
    sqlite3_value *v = c->args[arg];
    return v != NULL && sqlite3_value_type(v) != SQLITE_NULL;
}

/* How messages name an optional argument: "k (argument 4)". */
static void pl_what(const Cursor *c, int arg, char *buf, int size) {
    const Form *form = ((Table *)c->base.pVtab)->form;
    int pos = pl_position(form, arg);
    if (arg == ARG_N)
        sqlite3_snprintf(size, buf, "n, the number of results (argument %d),", pos);
    else
        sqlite3_snprintf(size, buf, "%s (argument %d)", ARG_NAMES[arg], pos);
}

/* An INTEGER argument in [lo, hi]. */
static int pl_integer_arg(Cursor *c, int arg, const char *what, sqlite3_int64 lo, sqlite3_int64 hi,
                       sqlite3_int64 *out) {
    sqlite3_value *v = c->args[arg];
    int t = sqlite3_value_type(v);
    if (t != SQLITE_INTEGER)
        return pl_fail(c, "%s must be an INTEGER, got %s", what, pl_type_name(t));
    sqlite3_int64 x = sqlite3_value_int64(v);
    if (x < lo || x > hi)
        return pl_fail(c, "%s must be between %lld and %lld, got %lld", what, lo, hi, x);
    *out = x;
    return SQLITE_OK;
}

/* A name of a fixed set (a metric, a mode) and the code it stands for. */
typedef struct {
    const char *name;
    uint32_t code;
} NamedCode;

/* A TEXT argument that must be one of the `count` names of `names`: its code goes to *code and
   its text to *name (valid while the argument is). `choices` lists the names for the error, e.g.
   "'exact', 'hnsw' or 'auto'". */
static int pl_named_arg(Cursor *c, int arg, const char *what, const NamedCode *names, int count,
                        const char *choices, uint32_t *code, const char **name) {
    sqlite3_value *v = c->args[arg];
    const char *m = (const char *)sqlite3_value_text(v);
    if (sqlite3_value_type(v) != SQLITE_TEXT || m == NULL)
        return pl_fail(c, "%s must be %s, got %s", what, choices,
                    pl_type_name(sqlite3_value_type(v)));
    for (int i = 0; i < count; i++) {
        if (strcmp(m, names[i].name) == 0) {
            *code = names[i].code;
            *name = m;
            return SQLITE_OK;
        }
    }
    return pl_fail(c, "%s must be %s, got '%s'", what, choices, m);
}

static const NamedCode METRICS[] = {
    {"blend", PROBELOG_METRIC_BLEND},
    {"topk", PROBELOG_METRIC_TOPK},
    {"full", PROBELOG_METRIC_FULL},
    {"model", PROBELOG_METRIC_MODEL},
};

static const NamedCode MODES[] = {
    {"exact", PROBELOG_MODE_EXACT},
    {"hnsw", PROBELOG_MODE_HNSW},
    {"auto", PROBELOG_MODE_AUTO},
};

/* Opens the index, or keeps the one this cursor opened for the same path. */
static int pl_open_index(Cursor *c, const char *path) {
    if (c->index && strcmp(c->index_path, path) == 0) return SQLITE_OK;
    probelog_index_close(c->index);
    sqlite3_free(c->index_path);
    c->index = NULL;
    c->index_path = NULL;
    if (probelog_index_open(path, &c->index) != PROBELOG_OK)
        return pl_fail(c, "%s", probelog_last_error());
    c->index_path = sqlite3_mprintf("%s", path);
    if (!c->index_path) return SQLITE_NOMEM;
    return SQLITE_OK;
}

/* The filter argument: conditions joined by '&', each 'KEY=VALUE' or 'KEY!=VALUE' with a
 * non-empty key (the library's rule, checked here to name the argument), into the parameters. */
static int pl_filter_arg(Cursor *c, ProbelogSearchParams *params) {
    sqlite3_value *v = c->args[ARG_FILTER];
    char what[64];
    pl_what(c, ARG_FILTER, what, sizeof what);
    if (sqlite3_value_type(v) != SQLITE_TEXT)
        return pl_fail(c, "%s must be TEXT such as 'family=resnet&license!=gpl', got %s", what,
                       pl_type_name(sqlite3_value_type(v)));
    const char *text = (const char *)sqlite3_value_text(v);
    if (text == NULL) return SQLITE_NOMEM;
    if (text[0] == '\0') return SQLITE_OK; /* no condition */
    size_t n = 1;
    for (const char *p = text; *p; p++) n += *p == '&';
    c->filter_buf = sqlite3_mprintf("%s", text);
    c->conditions = sqlite3_malloc64(n * sizeof *c->conditions);
    if (!c->filter_buf || !c->conditions) return SQLITE_NOMEM;
    char *p = c->filter_buf;
    for (size_t i = 0; i < n; i++) {
        char *amp = strchr(p, '&');
        if (amp) *amp = '\0';
        const char *ne = strstr(p, "!="), *eq = strchr(p, '=');
        const char *key_end = ne ? ne : eq;
        /* The key is what comes before the first "!=" (or else the first '='): not empty, and
           without '='. */
        if (key_end == NULL || key_end == p || (ne && eq && eq < ne))
            return pl_fail(c,
                           "%s: condition %d, '%s', is not KEY=VALUE or KEY!=VALUE with a "
                           "non-empty key (conditions are joined by '&')",
                           what, (int)i + 1, p);
        c->conditions[i] = p;
        p = amp ? amp + 1 : p + strlen(p);
    }
    params->where_conditions = c->conditions;
    params->where_count = n;
    return SQLITE_OK;
}

static void pl_load_hit(Cursor *c) {
    if (c->i < c->len && probelog_results_get(c->results, c->i, &c->hit) != PROBELOG_OK)
        c->len = c->i; /* cannot happen: i < len */
}

static int pl_filter(sqlite3_vtab_cursor *cur, int idx_num, const char *idx_str, int argc,
                  sqlite3_value **argv) {
    (void)idx_str;
    Cursor *c = (Cursor *)cur;
    const Form *form = ((Table *)cur->pVtab)->form;
    pl_reset(c);
    int next = 0;
    for (int a = 0; a < N_ARGS; a++) {
        if (!(idx_num & (1 << a))) continue;
        if (next >= argc) return pl_fail(c, "internal error: argument %d is missing", a + 1);
        c->args[a] = sqlite3_value_dup(argv[next++]);
        if (!c->args[a]) return SQLITE_NOMEM;
    }

    sqlite3_value *path = c->args[ARG_PATH];
    if (sqlite3_value_type(path) != SQLITE_TEXT)
        return pl_fail(c, "the index path (argument 1) must be TEXT, got %s",
                    pl_type_name(sqlite3_value_type(path)));

    ProbelogSearchParams params = probelog_search_params_default();
    params.per_model = form->per_model;
    sqlite3_int64 x;
    int rc;
    char what[64];
    if (pl_given(c, ARG_N)) {
        pl_what(c, ARG_N, what, sizeof what);
        if ((rc = pl_integer_arg(c, ARG_N, what, 1, UINT32_MAX, &x))) return rc;
        params.top = (uint32_t)x;
    }
    if (pl_given(c, ARG_K)) {
        pl_what(c, ARG_K, what, sizeof what);
        if ((rc = pl_integer_arg(c, ARG_K, what, 1, UINT32_MAX, &x))) return rc;
        params.k = (uint32_t)x;
    }
    const char *metric = "blend";
    if (pl_given(c, ARG_METRIC)) {
        pl_what(c, ARG_METRIC, what, sizeof what);
        if ((rc = pl_named_arg(c, ARG_METRIC, what, METRICS, PL_COUNT(METRICS),
                               "'blend', 'topk', 'full' or 'model'", &params.metric, &metric)))
            return rc;
    }
    if (pl_given(c, ARG_BLEND_WEIGHT)) {
        sqlite3_value *v = c->args[ARG_BLEND_WEIGHT];
        int t = sqlite3_value_type(v);
        pl_what(c, ARG_BLEND_WEIGHT, what, sizeof what);
        if (t != SQLITE_INTEGER && t != SQLITE_FLOAT)
            return pl_fail(c, "%s must be a number, got %s", what, pl_type_name(t));
        double w = sqlite3_value_double(v);
        /* The library's bound (MAX_BLEND_WEIGHT): beyond it the scores overflow. */
        if (!(isfinite(w) && w >= 0.0 && w <= 1.0e6))
            return pl_fail(c, "%s must be a number from 0 to 1e+06, got %g", what, w);
        if (params.metric != PROBELOG_METRIC_BLEND)
            return pl_fail(c, "%s only applies to the metric 'blend', not to '%s'", what, metric);
        /* The C ABI reads 0 as its default weight; weight 0 is the 'topk' ranking, score for
           score. */
        if (w == 0.0)
            params.metric = PROBELOG_METRIC_TOPK;
        else
            params.blend_weight = (float)w;
    }
    if (pl_given(c, ARG_PER_MODEL)) {
        pl_what(c, ARG_PER_MODEL, what, sizeof what);
        if ((rc = pl_integer_arg(c, ARG_PER_MODEL, what, 0, 1, &x))) return rc;
        params.per_model = (int)x;
    }
    if (pl_given(c, ARG_EXCLUDE)) {
        pl_what(c, ARG_EXCLUDE, what, sizeof what);
        if ((rc = pl_integer_arg(c, ARG_EXCLUDE, what, 0, 1, &x))) return rc;
        params.exclude_same_model = (int)x;
    }
    if (pl_given(c, ARG_MODE)) {
        const char *mode;
        pl_what(c, ARG_MODE, what, sizeof what);
        if ((rc = pl_named_arg(c, ARG_MODE, what, MODES, PL_COUNT(MODES),
                               "'exact', 'hnsw' or 'auto'", &params.mode, &mode)))
            return rc;
        if (params.mode == PROBELOG_MODE_HNSW && params.metric != PROBELOG_METRIC_TOPK &&
            params.metric != PROBELOG_METRIC_BLEND)
            return pl_fail(c, "mode 'hnsw' ranks by the metric 'blend' or 'topk' only, not by "
                              "'%s': pass one of those to use the ANN graphs, or mode 'exact' or "
                              "'auto'",
                        metric);
    }
    if (pl_given(c, ARG_CANDIDATES)) {
        pl_what(c, ARG_CANDIDATES, what, sizeof what);
        if ((rc = pl_integer_arg(c, ARG_CANDIDATES, what, 1, UINT32_MAX, &x))) return rc;
        params.candidates = (uint32_t)x;
    }
    if (pl_given(c, ARG_FILTER) && (rc = pl_filter_arg(c, &params))) return rc;
    if (pl_given(c, ARG_MODEL_NAME)) {
        sqlite3_value *v = c->args[ARG_MODEL_NAME];
        pl_what(c, ARG_MODEL_NAME, what, sizeof what);
        if (sqlite3_value_type(v) != SQLITE_TEXT)
            return pl_fail(c, "%s must be TEXT, a pattern such as 'resnet-*', got %s", what,
                           pl_type_name(sqlite3_value_type(v)));
        params.model_name = (const char *)sqlite3_value_text(v);
        if (params.model_name == NULL) return SQLITE_NOMEM;
    }

    if ((rc = pl_open_index(c, (const char *)sqlite3_value_text(path)))) return rc;

    sqlite3_value *q = c->args[ARG_QUERY];
    ProbelogStatus st;
    if (form->kind == QUERY_ENTRY) {
        if ((rc = pl_integer_arg(c, ARG_QUERY, "the entry (argument 2)", 0, INT64_MAX, &x)))
            return rc;
        st = probelog_search_entry(c->index, (uint64_t)x, &params, &c->results);
    } else {
        const char *what = form->kind == QUERY_TEXT ? "the text embedding (argument 2)"
                                                    : "the query (argument 2)";
        int t = sqlite3_value_type(q);
        if (t != SQLITE_BLOB)
            return pl_fail(c, "%s must be a BLOB of little-endian float32 values, got %s", what,
                        pl_type_name(t));
        int bytes = sqlite3_value_bytes(q);
        if (bytes <= 0 || bytes % 4 != 0)
            return pl_fail(c, "%s must be a BLOB of float32 values (4 bytes each), got %d bytes",
                        what, bytes);
        /* Copied: a blob's bytes need not be aligned for float. */
        float *values = sqlite3_malloc(bytes);
        if (!values) return SQLITE_NOMEM;
        memcpy(values, sqlite3_value_blob(q), (size_t)bytes);
        size_t len = (size_t)bytes / 4;
        st = form->kind == QUERY_TEXT
                 ? probelog_search_text_embedding(c->index, values, len, &params, &c->results)
                 : probelog_search_vector(c->index, values, len, &params, &c->results);
        sqlite3_free(values);
    }
    if (st != PROBELOG_OK) return pl_fail(c, "%s", probelog_last_error());
    c->len = probelog_results_len(c->results);
    c->i = 0;
    pl_load_hit(c);
    return SQLITE_OK;
}

static int pl_next(sqlite3_vtab_cursor *cur) {
    Cursor *c = (Cursor *)cur;
    c->i++;
    pl_load_hit(c);
    return SQLITE_OK;
}

static int pl_eof(sqlite3_vtab_cursor *cur) {
    Cursor *c = (Cursor *)cur;
    return c->i >= c->len;
}

static int pl_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int col) {
    Cursor *c = (Cursor *)cur;
    const ProbelogHit *h = &c->hit;
    switch (col) {
        case COL_RANK: sqlite3_result_int64(ctx, h->rank); break;
        case COL_ENTRY:
            if (h->entry < 0) sqlite3_result_null(ctx);
            else sqlite3_result_int64(ctx, h->entry);
            break;
        case COL_MODEL_ID: sqlite3_result_int64(ctx, (sqlite3_int64)h->model_id); break;
        case COL_MODEL: sqlite3_result_text(ctx, h->model, (int)h->model_len, SQLITE_TRANSIENT); break;
        case COL_LOGIT:
            if (h->logit < 0) sqlite3_result_null(ctx);
            else sqlite3_result_int64(ctx, h->logit);
            break;
        case COL_LABEL:
            if (h->label == NULL) sqlite3_result_null(ctx);
            else sqlite3_result_text(ctx, h->label, (int)h->label_len, SQLITE_TRANSIENT);
            break;
        case COL_SCORE: sqlite3_result_double(ctx, (double)h->score); break;
        default: {
            int a = pl_arg_of(((Table *)cur->pVtab)->form, col);
            sqlite3_value *v = a >= 0 ? c->args[a] : NULL;
            if (v) sqlite3_result_value(ctx, v);
            else sqlite3_result_null(ctx);
        }
    }
    return SQLITE_OK;
}

static int pl_rowid(sqlite3_vtab_cursor *cur, sqlite_int64 *out) {
    *out = (sqlite_int64)((Cursor *)cur)->i + 1;
    return SQLITE_OK;
}

static sqlite3_module MODULE = {
    .iVersion = 0,
    .xCreate = NULL, /* eponymous only: used as a function, never CREATE VIRTUAL TABLE */
    .xConnect = pl_connect,
    .xBestIndex = pl_best_index,
    .xDisconnect = pl_disconnect,
    .xDestroy = pl_disconnect,
    .xOpen = pl_open_cursor,
    .xClose = pl_close_cursor,
    .xFilter = pl_filter,
    .xNext = pl_next,
    .xEof = pl_eof,
    .xColumn = pl_column,
    .xRowid = pl_rowid,
};

/* probelog_descriptor(path, entry): the stored descriptor of an entry as a float32 blob. */
static void pl_descriptor_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    if (sqlite3_value_type(argv[0]) != SQLITE_TEXT) {
        sqlite3_result_error(ctx, "probelog_descriptor: the index path (argument 1) must be TEXT", -1);
        return;
    }
    if (sqlite3_value_type(argv[1]) != SQLITE_INTEGER || sqlite3_value_int64(argv[1]) < 0) {
        sqlite3_result_error(ctx, "probelog_descriptor: the entry (argument 2) must be an INTEGER >= 0", -1);
        return;
    }
    ProbelogIndex *index = NULL;
    ProbelogIndexInfo info;
    float *values = NULL;
    if (probelog_index_open((const char *)sqlite3_value_text(argv[0]), &index) != PROBELOG_OK ||
        probelog_index_info(index, &info) != PROBELOG_OK)
        goto failed;
    values = sqlite3_malloc64((sqlite3_uint64)info.num_probes * 4);
    if (!values) {
        sqlite3_result_error_nomem(ctx);
        probelog_index_close(index);
        return;
    }
    if (probelog_index_descriptor(index, (uint64_t)sqlite3_value_int64(argv[1]), values,
                                  info.num_probes) != PROBELOG_OK)
        goto failed;
    probelog_index_close(index);
    sqlite3_result_blob(ctx, values, (int)(info.num_probes * 4), sqlite3_free);
    return;
failed: {
    char *msg = sqlite3_mprintf("probelog_descriptor: %s", probelog_last_error());
    sqlite3_result_error(ctx, msg ? msg : "probelog_descriptor failed", -1);
    sqlite3_free(msg);
    sqlite3_free(values);
    probelog_index_close(index);
}
}

/* probelog_f32(text): numbers separated by commas or spaces, optionally in [ ], as a blob. */
static void pl_f32_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    if (sqlite3_value_type(argv[0]) != SQLITE_TEXT) {
        sqlite3_result_error(ctx, "probelog_f32: the argument must be TEXT such as '[0.5, -1, 2]'", -1);
        return;
    }
    const char *s = (const char *)sqlite3_value_text(argv[0]);
    size_t cap = 16, n = 0;
    float *v = sqlite3_malloc64(cap * sizeof(float));
    if (!v) goto nomem;
    const char *p = s;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    int bracket = *p == '[';
    if (bracket) p++;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || (n > 0 && *p == ',')) p++;
        if (*p == '\0' || *p == ']') break;
        char *end;
        double x = strtod(p, &end);
        if (end == p || !isfinite(x) || !isfinite((float)x)) {
            char *msg = sqlite3_mprintf("probelog_f32: value %d is not a finite number: '%.20s'",
                                        (int)n + 1, p);
            sqlite3_result_error(ctx, msg ? msg : "probelog_f32: bad number", -1);
            sqlite3_free(msg);
            sqlite3_free(v);
            return;
        }
        if (n == cap) {
            cap *= 2;
            float *w = sqlite3_realloc64(v, cap * sizeof(float));
            if (!w) goto nomem;
            v = w;
        }
        v[n++] = (float)x;
        p = end;
    }
    int closed = *p == ']';
    if (closed) p++;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    if (closed != bracket || *p != '\0' || n == 0) {
        sqlite3_result_error(ctx, "probelog_f32: expected numbers such as '[0.5, -1, 2]'", -1);
        sqlite3_free(v);
        return;
    }
    sqlite3_result_blob(ctx, v, (int)(n * sizeof(float)), sqlite3_free);
    return;
nomem:
    sqlite3_free(v);
    sqlite3_result_error_nomem(ctx);
}

static void pl_version_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    (void)argv;
    sqlite3_result_text(ctx, probelog_version(), -1, SQLITE_STATIC);
}

#ifndef SQLITE_DIRECTONLY
#define SQLITE_DIRECTONLY 0
#endif

/* The entry point: `.load ./probelog` finds it by the file's name; any other file name needs
 * `.load FILE sqlite3_probelog_init`. */
PL_EXPORT int sqlite3_probelog_init(sqlite3 *db, char **err, const sqlite3_api_routines *api) {
    SQLITE_EXTENSION_INIT2(api);
    if (probelog_abi_version() != PROBELOG_ABI_VERSION) {
        *err = sqlite3_mprintf("probelog: the library has ABI version %u, this extension was "
                               "built for %u",
                               probelog_abi_version(), (unsigned)PROBELOG_ABI_VERSION);
        return SQLITE_ERROR;
    }
    for (size_t i = 0; i < sizeof FORMS / sizeof FORMS[0]; i++) {
        int rc = sqlite3_create_module_v2(db, FORMS[i].name, &MODULE, (void *)&FORMS[i], NULL);
        if (rc != SQLITE_OK) return rc;
    }
    int flags = SQLITE_UTF8 | SQLITE_DIRECTONLY;
    int rc = sqlite3_create_function(db, "probelog_descriptor", 2, flags, NULL, pl_descriptor_fn,
                                     NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_create_function(db, "probelog_f32", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC,
                                     NULL, pl_f32_fn, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_create_function(db, "probelog_version", 0, SQLITE_UTF8, NULL, pl_version_fn,
                                     NULL, NULL);
    return rc;
}
