/*
 * A C program that uses probelog through its C ABI only (probelog.h). tests/c_abi.rs compiles it
 * twice, against libprobelog_c.a and against libprobelog_c.so, and runs it on indexes made by
 * probelog-tool.
 *
 *   check search INDEX CASES [INDEX_WITHOUT_EMBEDDINGS]
 *       Runs every search of the CASES file (written by the Rust test from probelog-tool
 *       search --json) and checks that each result equals the CLI's: rank, entry, model id,
 *       model name, logit, label and the score's exact bits, and the k, mode, candidates and
 *       blend weight that ran. Then runs them all again from four threads that share one index handle, and
 *       checks the error codes of bad calls.
 *   check append INDEX LOGITS.f32 P L NEW_INDEX
 *       Appends one model (raw little-endian float32 [P][L] logits) under the writer lock,
 *       checks the refusals of bad models and of a second writer, and that a reader sees the
 *       new model after a refresh; refuses a duplicate name, deletes one model and checks that
 *       it never comes back. Creates NEW_INDEX with probelog_create.
 *
 * Prints one line per failed check and a closing "N passed, M failed" line; exits 0 only when
 * nothing failed.
 *
 * CASES format, one record per line, fields separated by tabs:
 *   case  KIND  QUERY  TOP  K  EXCLUDE  PER_MODEL  METRIC  MODE  CANDIDATES  BLEND_WEIGHT
 *         KIND: entry | vector | text; QUERY: an entry id or a .f32 file; METRIC and MODE are
 *         PROBELOG_METRIC_* and PROBELOG_MODE_* values; BLEND_WEIGHT 0 for the default
 *   hits  N  K  MODE  CANDIDATES  BLEND_WEIGHT
 *         N expected hits; the k, the mode (auto resolved), the candidates (0: exact) and the
 *         blend weight (0: not the blend) the CLI reported
 *   hit   RANK  ENTRY  MODEL_ID  LOGIT  SCORE_BITS  MODEL  LABEL
 *         ENTRY and LOGIT are -1 for the model metric; SCORE_BITS is the float's bits in hex;
 *         LABEL is "L:" followed by the label, or "N" for none.
 */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "probelog.h"

static int passed = 0, failed = 0;

#define CHECK(cond, ...)                                   \
    do {                                                   \
        if (cond) {                                        \
            passed++;                                      \
        } else {                                           \
            failed++;                                      \
            fprintf(stderr, "FAILED %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                  \
            fprintf(stderr, "\n");                         \
        }                                                  \
    } while (0)

/* Checks that a call failed with `want` and left a non-empty message. */
#define EXPECT_ERR(call, want)                                                          \
    do {                                                                                \
        ProbelogStatus st_ = (call);                                                    \
        const char *msg_ = probelog_last_error();                                       \
        CHECK(st_ == (want) && msg_ != NULL && msg_[0] != '\0',                         \
              "%s: got %s (%s), want %s", #call, probelog_status_name(st_), msg_,       \
              probelog_status_name(want));                                              \
    } while (0)

#define EXPECT_OK(call)                                                                 \
    do {                                                                                \
        ProbelogStatus st_ = (call);                                                    \
        CHECK(st_ == PROBELOG_OK && probelog_last_error()[0] == '\0', "%s: %s: %s",     \
              #call, probelog_status_name(st_), probelog_last_error());                 \
    } while (0)

typedef struct {
    uint32_t rank;
    int64_t entry;
    uint64_t model_id;
    int64_t logit;
    uint32_t score_bits;
    char *model;
    char *label; /* NULL: none */
} Expected;

typedef struct {
    char kind[16];
    uint64_t entry;
    float *values;
    size_t len;
    ProbelogSearchParams params;
    size_t n;
    uint32_t k, mode, candidates;
    float blend_weight;
    Expected *hits;
} Case;

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    memcpy(d, s, n);
    return d;
}

static float *read_f32(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(2);
    }
    fseek(f, 0, SEEK_END);
    long bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    float *v = malloc(bytes > 0 ? (size_t)bytes : 1);
    if (fread(v, 1, (size_t)bytes, f) != (size_t)bytes) {
        fprintf(stderr, "cannot read %s\n", path);
        exit(2);
    }
    fclose(f);
    *len = (size_t)bytes / sizeof(float);
    return v;
}

/* Splits `line` at tabs in place; returns the number of fields. */
static int split_tabs(char *line, char **fields, int max) {
    int n = 0;
    char *p = line;
    line[strcspn(line, "\r\n")] = '\0';
    while (n < max) {
        fields[n++] = p;
        char *tab = strchr(p, '\t');
        if (!tab) break;
        *tab = '\0';
        p = tab + 1;
    }
    return n;
}

static size_t read_cases(const char *path, Case **out) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(2);
    }
    size_t cap = 64, n = 0;
    Case *cases = calloc(cap, sizeof(Case));
    char line[8192];
    char *fld[16];
    size_t hit_i = 0;
    while (fgets(line, sizeof line, f)) {
        int nf = split_tabs(line, fld, 16);
        if (strcmp(fld[0], "case") == 0 && nf == 11) {
            if (n == cap) {
                cap *= 2;
                cases = realloc(cases, cap * sizeof(Case));
            }
            Case *c = &cases[n++];
            memset(c, 0, sizeof *c);
            snprintf(c->kind, sizeof c->kind, "%s", fld[1]);
            if (strcmp(c->kind, "entry") == 0) {
                c->entry = strtoull(fld[2], NULL, 10);
            } else {
                c->values = read_f32(fld[2], &c->len);
            }
            c->params = probelog_search_params_default();
            c->params.top = (uint32_t)strtoul(fld[3], NULL, 10);
            c->params.k = (uint32_t)strtoul(fld[4], NULL, 10);
            c->params.exclude_same_model = atoi(fld[5]);
            c->params.per_model = atoi(fld[6]);
            c->params.metric = (uint32_t)strtoul(fld[7], NULL, 10);
            c->params.mode = (uint32_t)strtoul(fld[8], NULL, 10);
            c->params.candidates = (uint32_t)strtoul(fld[9], NULL, 10);
            c->params.blend_weight = strtof(fld[10], NULL);
        } else if (strcmp(fld[0], "hits") == 0 && nf == 6 && n > 0) {
            Case *c = &cases[n - 1];
            c->n = strtoul(fld[1], NULL, 10);
            c->k = (uint32_t)strtoul(fld[2], NULL, 10);
            c->mode = (uint32_t)strtoul(fld[3], NULL, 10);
            c->candidates = (uint32_t)strtoul(fld[4], NULL, 10);
            c->blend_weight = strtof(fld[5], NULL);
            c->hits = calloc(c->n ? c->n : 1, sizeof(Expected));
            hit_i = 0;
        } else if (strcmp(fld[0], "hit") == 0 && nf == 8 && n > 0 && hit_i < cases[n - 1].n) {
            Expected *e = &cases[n - 1].hits[hit_i++];
            e->rank = (uint32_t)strtoul(fld[1], NULL, 10);
            e->entry = strtoll(fld[2], NULL, 10);
            e->model_id = strtoull(fld[3], NULL, 10);
            e->logit = strtoll(fld[4], NULL, 10);
            e->score_bits = (uint32_t)strtoul(fld[5], NULL, 16);
            e->model = dup_str(fld[6]);
            e->label = fld[7][0] == 'L' ? dup_str(fld[7] + 2) : NULL;
        } else {
            fprintf(stderr, "bad line in %s: %s\n", path, fld[0]);
            exit(2);
        }
    }
    fclose(f);
    *out = cases;
    return n;
}

static ProbelogStatus run_case(const ProbelogIndex *idx, const Case *c, ProbelogResults **res) {
    if (strcmp(c->kind, "entry") == 0) return probelog_search_entry(idx, c->entry, &c->params, res);
    if (strcmp(c->kind, "vector") == 0)
        return probelog_search_vector(idx, c->values, c->len, &c->params, res);
    return probelog_search_text_embedding(idx, c->values, c->len, &c->params, res);
}

/* Compares results with the CLI's; returns the number of mismatches (reported when `report`). */
static int compare(const Case *c, size_t ci, const ProbelogResults *res, int report) {
    int bad = 0;
    size_t n = probelog_results_len(res);
    if (n != c->n || probelog_results_k(res) != c->k || probelog_results_mode(res) != c->mode ||
        probelog_results_candidates(res) != c->candidates ||
        probelog_results_blend_weight(res) != c->blend_weight) {
        if (report)
            fprintf(stderr,
                    "case %zu: %zu results (k %u, mode %u, candidates %u, blend weight %g), the "
                    "CLI gave %zu (k %u, mode %u, candidates %u, blend weight %g)\n",
                    ci, n, probelog_results_k(res), probelog_results_mode(res),
                    probelog_results_candidates(res), probelog_results_blend_weight(res), c->n,
                    c->k, c->mode, c->candidates, c->blend_weight);
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        ProbelogHit h;
        if (probelog_results_get(res, i, &h) != PROBELOG_OK) return bad + 1;
        const Expected *e = &c->hits[i];
        uint32_t bits;
        memcpy(&bits, &h.score, sizeof bits);
        int label_ok = e->label == NULL ? h.label == NULL && h.label_len == 0
                                        : h.label != NULL && strcmp(h.label, e->label) == 0 &&
                                              h.label_len == strlen(e->label);
        if (h.rank != e->rank || h.entry != e->entry || h.model_id != e->model_id ||
            h.logit != e->logit || bits != e->score_bits || strcmp(h.model, e->model) != 0 ||
            h.model_len != strlen(e->model) || !label_ok) {
            bad++;
            if (report)
                fprintf(stderr,
                        "case %zu hit %zu: C gave rank %u entry %" PRId64 " model %s (%" PRIu64
                        ") logit %" PRId64 " label %s score %.9g (%08x); the CLI gave rank %u "
                        "entry %" PRId64 " model %s (%" PRIu64 ") logit %" PRId64
                        " label %s score bits %08x\n",
                        ci, i, h.rank, h.entry, h.model, h.model_id, h.logit,
                        h.label ? h.label : "(none)", h.score, bits, e->rank, e->entry, e->model,
                        e->model_id, e->logit, e->label ? e->label : "(none)", e->score_bits);
        }
    }
    return bad;
}

typedef struct {
    const ProbelogIndex *idx;
    const Case *cases;
    size_t n;
    int mismatches;
} Worker;

static void *worker(void *arg) {
    Worker *w = arg;
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < w->n; i++) {
            ProbelogResults *res = NULL;
            if (run_case(w->idx, &w->cases[i], &res) != PROBELOG_OK) {
                w->mismatches++;
                continue;
            }
            w->mismatches += compare(&w->cases[i], i, res, 0);
            probelog_results_free(res);
        }
    }
    return NULL;
}

static void check_errors(const ProbelogIndex *idx, const char *cases_path,
                         const char *no_embeddings_path) {
    ProbelogIndexInfo info;
    EXPECT_OK(probelog_index_info(idx, &info));
    ProbelogIndex *other = (ProbelogIndex *)1;
    ProbelogResults *res = (ProbelogResults *)1;

    /* Opening. */
    EXPECT_ERR(probelog_index_open(NULL, &other), PROBELOG_ERR_NULL_POINTER);
    CHECK(other == NULL, "a failed open sets *out to NULL");
    EXPECT_ERR(probelog_index_open("x.plog", NULL), PROBELOG_ERR_NULL_POINTER);
    EXPECT_ERR(probelog_index_open("bad-\xff\xfe.plog", &other), PROBELOG_ERR_INVALID_UTF8);
    EXPECT_ERR(probelog_index_open("/nonexistent/dir/hub.plog", &other), PROBELOG_ERR_IO);
    CHECK(strstr(probelog_last_error(), "/nonexistent/dir/hub.plog") != NULL,
          "the message names the path: %s", probelog_last_error());
    EXPECT_ERR(probelog_index_open(cases_path, &other), PROBELOG_ERR_CORRUPT);
    EXPECT_ERR(probelog_index_info(NULL, &info), PROBELOG_ERR_NULL_POINTER);
    EXPECT_ERR(probelog_index_info(idx, NULL), PROBELOG_ERR_NULL_POINTER);

    /* Query vectors. */
    size_t p = info.num_probes;
    float *v = malloc(sizeof(float) * (p + 1));
    for (size_t i = 0; i <= p; i++) v[i] = (float)((i * 7919) % 13) - 6.0f;
    EXPECT_OK(probelog_search_vector(idx, v, p, NULL, &res));
    CHECK(probelog_results_len(res) == 10 || probelog_results_len(res) == info.entry_count,
          "NULL params mean top 10");
    probelog_results_free(res);
    EXPECT_ERR(probelog_search_vector(idx, v, p + 1, NULL, &res), PROBELOG_ERR_WRONG_LENGTH);
    CHECK(res == NULL, "a failed search sets *out to NULL");
    EXPECT_ERR(probelog_search_vector(idx, v, p - 1, NULL, &res), PROBELOG_ERR_WRONG_LENGTH);
    EXPECT_ERR(probelog_search_vector(idx, NULL, p, NULL, &res), PROBELOG_ERR_NULL_POINTER);
    EXPECT_ERR(probelog_search_vector(NULL, v, p, NULL, &res), PROBELOG_ERR_NULL_POINTER);
    EXPECT_ERR(probelog_search_vector(idx, v, p, NULL, NULL), PROBELOG_ERR_NULL_POINTER);
    float saved = v[3];
    v[3] = NAN;
    EXPECT_ERR(probelog_search_vector(idx, v, p, NULL, &res), PROBELOG_ERR_NON_FINITE);
    v[3] = INFINITY;
    EXPECT_ERR(probelog_search_vector(idx, v, p, NULL, &res), PROBELOG_ERR_NON_FINITE);
    v[3] = saved;
    float *flat = calloc(p, sizeof(float));
    EXPECT_ERR(probelog_search_vector(idx, flat, p, NULL, &res), PROBELOG_ERR_INVALID_INPUT);
    free(flat);

    /* Parameters. */
    ProbelogSearchParams sp = probelog_search_params_default();
    CHECK(sp.top == 10 && sp.k == 0 && sp.metric == PROBELOG_METRIC_BLEND && !sp.per_model &&
              !sp.exclude_same_model && sp.mode == PROBELOG_MODE_AUTO && sp.candidates == 0 &&
              sp.blend_weight == 0.0f,
          "default parameters");
    CHECK(PROBELOG_METRIC_BLEND == 3 && PROBELOG_METRIC_TOPK == 0, "metric values");
    CHECK(PROBELOG_MODE_AUTO == 0, "zero-initialised parameters ask for the auto mode");
    sp.top = 0;
    EXPECT_ERR(probelog_search_entry(idx, 0, &sp, &res), PROBELOG_ERR_INVALID_ARGUMENT);
    sp = probelog_search_params_default();
    sp.metric = 7;
    EXPECT_ERR(probelog_search_entry(idx, 0, &sp, &res), PROBELOG_ERR_INVALID_ARGUMENT);
    sp = probelog_search_params_default();
    sp.k = info.num_probes + 1;
    EXPECT_ERR(probelog_search_entry(idx, 0, &sp, &res), PROBELOG_ERR_INVALID_ARGUMENT);
    sp.k = 4;
    sp.metric = PROBELOG_METRIC_FULL;
    EXPECT_ERR(probelog_search_entry(idx, 0, &sp, &res), PROBELOG_ERR_INVALID_ARGUMENT);
    /* The blend's weight: the default, a given one, weight 0 as topk, bad ones. */
    sp = probelog_search_params_default();
    EXPECT_OK(probelog_search_entry(idx, 0, &sp, &res));
    CHECK(probelog_results_blend_weight(res) == 8.0f && probelog_results_k(res) > 0,
          "the default blend weight: %g", probelog_results_blend_weight(res));
    probelog_results_free(res);
    sp.blend_weight = 0.5f;
    sp.k = 3;
    EXPECT_OK(probelog_search_entry(idx, 0, &sp, &res));
    CHECK(probelog_results_blend_weight(res) == 0.5f && probelog_results_k(res) == 3,
          "blend weight %g, k %u", probelog_results_blend_weight(res), probelog_results_k(res));
    probelog_results_free(res);
    sp.blend_weight = -1.0f;
    EXPECT_ERR(probelog_search_entry(idx, 0, &sp, &res), PROBELOG_ERR_INVALID_ARGUMENT);
    CHECK(strstr(probelog_last_error(), "blend_weight -1 is invalid") != NULL, "%s",
          probelog_last_error());
    sp.blend_weight = NAN;
    EXPECT_ERR(probelog_search_entry(idx, 0, &sp, &res), PROBELOG_ERR_INVALID_ARGUMENT);
    sp.blend_weight = INFINITY;
    EXPECT_ERR(probelog_search_entry(idx, 0, &sp, &res), PROBELOG_ERR_INVALID_ARGUMENT);
    sp.blend_weight = 1.0f;
    sp.metric = PROBELOG_METRIC_TOPK;
    EXPECT_ERR(probelog_search_entry(idx, 0, &sp, &res), PROBELOG_ERR_INVALID_ARGUMENT);
    CHECK(strstr(probelog_last_error(), "blend_weight only applies") != NULL, "%s",
          probelog_last_error());
    sp.blend_weight = 0.0f;
    EXPECT_OK(probelog_search_entry(idx, 0, &sp, &res));
    CHECK(probelog_results_blend_weight(res) == 0.0f, "topk has no blend weight");
    probelog_results_free(res);
    /* Modes. */
    sp = probelog_search_params_default();
    sp.mode = 3;
    EXPECT_ERR(probelog_search_entry(idx, 0, &sp, &res), PROBELOG_ERR_INVALID_ARGUMENT);
    CHECK(strstr(probelog_last_error(), "unknown mode 3") != NULL &&
              strstr(probelog_last_error(), "PROBELOG_MODE_HNSW") != NULL,
          "the message names the bad mode and the good ones: %s", probelog_last_error());
    CHECK(res == NULL, "a refused mode leaves no results");
    sp.mode = UINT32_MAX;
    EXPECT_ERR(probelog_search_vector(idx, v, p, &sp, &res), PROBELOG_ERR_INVALID_ARGUMENT);
    sp.mode = PROBELOG_MODE_HNSW;
    sp.metric = PROBELOG_METRIC_FULL;
    EXPECT_ERR(probelog_search_entry(idx, 0, &sp, &res), PROBELOG_ERR_INVALID_ARGUMENT);
    CHECK(strstr(probelog_last_error(), "blend or topk metric only") != NULL,
          "hnsw with the full metric names the metrics that can: %s", probelog_last_error());
    CHECK(strstr(probelog_last_error(), "PROBELOG_METRIC_BLEND") != NULL,
          "the message names the constants: %s", probelog_last_error());
    sp.metric = PROBELOG_METRIC_BLEND; /* the default metric runs through the graphs too */
    EXPECT_OK(probelog_search_entry(idx, 0, &sp, &res));
    CHECK(probelog_results_mode(res) == PROBELOG_MODE_HNSW, "hnsw with the blend: mode %u",
          probelog_results_mode(res));
    probelog_results_free(res);
    sp.metric = PROBELOG_METRIC_MODEL;
    EXPECT_ERR(probelog_search_vector(idx, v, p, &sp, &res), PROBELOG_ERR_INVALID_ARGUMENT);
    /* Exact and auto take the other metrics; the candidates are then unused. */
    sp.mode = PROBELOG_MODE_EXACT;
    sp.candidates = 5;
    EXPECT_OK(probelog_search_vector(idx, v, p, &sp, &res));
    CHECK(probelog_results_mode(res) == PROBELOG_MODE_EXACT &&
              probelog_results_candidates(res) == 0,
          "exact mode: mode %u, candidates %u", probelog_results_mode(res),
          probelog_results_candidates(res));
    probelog_results_free(res);
    sp.mode = PROBELOG_MODE_AUTO;
    EXPECT_OK(probelog_search_vector(idx, v, p, &sp, &res));
    CHECK(probelog_results_mode(res) == PROBELOG_MODE_EXACT, "auto with the model metric is exact");
    probelog_results_free(res);
    /* Hnsw runs with or without graphs: segments without one are scanned. */
    sp = probelog_search_params_default();
    sp.metric = PROBELOG_METRIC_TOPK;
    sp.mode = PROBELOG_MODE_HNSW;
    sp.candidates = 1;
    ProbelogResults *dflt = NULL;
    EXPECT_OK(probelog_search_vector(idx, v, p, &sp, &res));
    CHECK(probelog_results_mode(res) == PROBELOG_MODE_HNSW && probelog_results_candidates(res) == 1,
          "hnsw mode: mode %u, candidates %u", probelog_results_mode(res),
          probelog_results_candidates(res));
    sp.candidates = 0;
    EXPECT_OK(probelog_search_vector(idx, v, p, &sp, &dflt));
    CHECK(probelog_results_candidates(dflt) > 1, "the library's default candidates: %u",
          probelog_results_candidates(dflt));
    probelog_results_free(dflt);
    probelog_results_free(res);

    sp = probelog_search_params_default();
    sp.exclude_same_model = 1;
    EXPECT_ERR(probelog_search_vector(idx, v, p, &sp, &res), PROBELOG_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(probelog_search_entry(idx, info.entry_count, NULL, &res),
               PROBELOG_ERR_INVALID_ARGUMENT);

    /* Text embeddings. */
    if (info.embedding_dim > 0) {
        EXPECT_ERR(probelog_search_text_embedding(idx, v, info.embedding_dim + 1, NULL, &res),
                   PROBELOG_ERR_WRONG_LENGTH);
        v[0] = NAN;
        EXPECT_ERR(probelog_search_text_embedding(idx, v, info.embedding_dim, NULL, &res),
                   PROBELOG_ERR_NON_FINITE);
        v[0] = 1.0f;
    }
    if (no_embeddings_path) {
        ProbelogIndex *plain = NULL;
        EXPECT_OK(probelog_index_open(no_embeddings_path, &plain));
        EXPECT_ERR(probelog_search_text_embedding(plain, v, 4, NULL, &res),
                   PROBELOG_ERR_NO_EMBEDDINGS);
        probelog_index_close(plain);
    }

    /* Results and descriptors. */
    EXPECT_OK(probelog_search_entry(idx, 0, NULL, &res));
    ProbelogHit h;
    EXPECT_ERR(probelog_results_get(res, probelog_results_len(res), &h),
               PROBELOG_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(probelog_results_get(NULL, 0, &h), PROBELOG_ERR_NULL_POINTER);
    EXPECT_ERR(probelog_results_get(res, 0, NULL), PROBELOG_ERR_NULL_POINTER);
    CHECK(probelog_results_len(NULL) == 0 && probelog_results_k(NULL) == 0 &&
              probelog_results_mode(NULL) == PROBELOG_MODE_AUTO &&
              probelog_results_candidates(NULL) == 0 && probelog_results_blend_weight(NULL) == 0.0f,
          "NULL results");
    probelog_results_free(res);
    probelog_results_free(NULL);
    probelog_index_close(NULL);

    float *d = malloc(sizeof(float) * p);
    EXPECT_OK(probelog_index_descriptor(idx, 1, d, p));
    /* A stored descriptor searches like its entry, which comes first at distance 0. */
    EXPECT_OK(probelog_search_vector(idx, d, p, NULL, &res));
    EXPECT_OK(probelog_results_get(res, 0, &h));
    CHECK(h.entry == 1 && fabsf(h.score) < 1e-5f, "descriptor of entry 1 finds entry %" PRId64
          " at %g", h.entry, h.score);
    probelog_results_free(res);
    EXPECT_ERR(probelog_index_descriptor(idx, 1, d, p - 1), PROBELOG_ERR_WRONG_LENGTH);
    EXPECT_ERR(probelog_index_descriptor(idx, info.entry_count, d, p),
               PROBELOG_ERR_INVALID_ARGUMENT);
    free(d);
    free(v);

    int changed = -1;
    EXPECT_OK(probelog_index_refresh(idx, &changed));
    CHECK(changed == 0, "no commit since open: refresh changes nothing (%d)", changed);
    CHECK(strcmp(probelog_status_name(PROBELOG_ERR_CORRUPT), "PROBELOG_ERR_CORRUPT") == 0 &&
              strcmp(probelog_status_name(-5), "PROBELOG_ERR_UNKNOWN") == 0,
          "status names");
}

static int cmd_search(int argc, char **argv) {
    if (argc < 4) return 2;
    Case *cases;
    size_t n = read_cases(argv[3], &cases);
    CHECK(n > 0, "the cases file %s holds cases", argv[3]);
    ProbelogIndex *idx = NULL;
    EXPECT_OK(probelog_index_open(argv[2], &idx));
    if (!idx) return 1;

    for (size_t i = 0; i < n; i++) {
        ProbelogResults *res = NULL;
        ProbelogStatus st = run_case(idx, &cases[i], &res);
        CHECK(st == PROBELOG_OK, "case %zu: %s: %s", i, probelog_status_name(st),
              probelog_last_error());
        if (st == PROBELOG_OK) {
            CHECK(compare(&cases[i], i, res, 1) == 0, "case %zu equals the CLI's results", i);
        }
        probelog_results_free(res);
    }

    /* One handle, four threads, every case three times each. */
    enum { THREADS = 4 };
    pthread_t t[THREADS];
    Worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (Worker){idx, cases, n, 0};
        pthread_create(&t[i], NULL, worker, &w[i]);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        CHECK(w[i].mismatches == 0, "thread %d: %d searches differ from the CLI's", i,
              w[i].mismatches);
    }

    check_errors(idx, argv[3], argc > 4 ? argv[4] : NULL);
    probelog_index_close(idx);
    return 0;
}

static int cmd_append(int argc, char **argv) {
    if (argc < 7) return 2;
    const char *path = argv[2];
    size_t len;
    float *logits = read_f32(argv[3], &len);
    uint32_t p = (uint32_t)strtoul(argv[4], NULL, 10), l = (uint32_t)strtoul(argv[5], NULL, 10);
    CHECK(len == (size_t)p * l, "the logits file holds P x L floats");

    ProbelogIndex *reader = NULL;
    EXPECT_OK(probelog_index_open(path, &reader));
    ProbelogIndexInfo before, after;
    EXPECT_OK(probelog_index_info(reader, &before));

    ProbelogWriter *w = NULL, *second = (ProbelogWriter *)1;
    EXPECT_OK(probelog_writer_open(path, 0, &w));
    EXPECT_ERR(probelog_writer_open(path, PROBELOG_NO_WAIT, &second), PROBELOG_ERR_LOCKED);
    CHECK(second == NULL, "a refused writer is NULL");
    EXPECT_ERR(probelog_writer_open(path, 8, &second), PROBELOG_ERR_INVALID_ARGUMENT);

    char **labels = malloc(sizeof(char *) * l);
    for (uint32_t i = 0; i < l; i++) {
        labels[i] = malloc(32);
        snprintf(labels[i], 32, "c-label-%u", i);
    }
    const char *keys[] = {"origin", "abi"};
    const char *vals[] = {"check.c", "1"};
    ProbelogModel m = {
        .name = "c-appended",
        .source = "capi/tests/c/check.c",
        .logits = logits,
        .num_probes = p,
        .num_logits = l,
        .labels = (const char *const *)labels,
        .meta_keys = keys,
        .meta_values = vals,
        .meta_count = 2,
        .keep_constant = 0,
    };

    /* Refusals leave the writer as it was. */
    ProbelogModel bad = m;
    bad.name = NULL;
    EXPECT_ERR(probelog_writer_add_model(w, &bad, NULL), PROBELOG_ERR_NULL_POINTER);
    EXPECT_ERR(probelog_writer_add_model(w, NULL, NULL), PROBELOG_ERR_NULL_POINTER);
    EXPECT_ERR(probelog_writer_add_model(NULL, &m, NULL), PROBELOG_ERR_NULL_POINTER);
    bad = m;
    bad.num_probes = p - 1;
    bad.num_logits = l;
    EXPECT_ERR(probelog_writer_add_model(w, &bad, NULL), PROBELOG_ERR_WRONG_LENGTH);
    bad = m;
    bad.name = "bad-\xc3\x28";
    EXPECT_ERR(probelog_writer_add_model(w, &bad, NULL), PROBELOG_ERR_INVALID_UTF8);
    float *copy = malloc(sizeof(float) * len);
    memcpy(copy, logits, sizeof(float) * len);
    copy[l + 1] = NAN;
    bad = m;
    bad.logits = copy;
    EXPECT_ERR(probelog_writer_add_model(w, &bad, NULL), PROBELOG_ERR_NON_FINITE);
    /* Another model (negated logits), whose logit 0 is constant. */
    for (size_t i = 0; i < len; i++) copy[i] = -logits[i];
    for (uint32_t i = 0; i < p; i++) copy[i * l] = 3.0f;
    EXPECT_ERR(probelog_writer_add_model(w, &bad, NULL), PROBELOG_ERR_INVALID_INPUT);
    bad.keep_constant = 1;
    bad.name = "kept-constant";
    bad.labels = NULL;
    bad.meta_count = 0;
    ProbelogModelAdded kept;
    EXPECT_OK(probelog_writer_add_model(w, &bad, &kept));
    CHECK(kept.constant_logits == 1 && kept.logits == l, "keep_constant stores zeros");

    ProbelogModelAdded added;
    EXPECT_OK(probelog_writer_add_model(w, &m, &added));
    CHECK(added.logits == l && added.first_entry == before.entry_count + l &&
              added.model_id == before.model_count + 1,
          "staged after the kept model: first entry %" PRIu64, added.first_entry);
    ProbelogCommitInfo ci;
    EXPECT_OK(probelog_writer_commit(w, &ci));
    CHECK(ci.models_added == 2 && ci.entries_added == 2u * l &&
              ci.entry_count == before.entry_count + 2u * l,
          "commit added 2 models");
    probelog_writer_close(w);
    probelog_writer_close(NULL);

    /* The reader sees the commit after a refresh. */
    EXPECT_OK(probelog_index_info(reader, &after));
    CHECK(after.entry_count == before.entry_count, "a snapshot does not move by itself");
    int changed = 0;
    EXPECT_OK(probelog_index_refresh(reader, &changed));
    EXPECT_OK(probelog_index_info(reader, &after));
    CHECK(changed == 1 && after.entry_count == ci.entry_count &&
              after.model_count == ci.model_count && after.sequence == ci.sequence,
          "refresh moves to the new commit");

    /* Logit 0's column finds itself first. */
    float *col = malloc(sizeof(float) * p);
    for (uint32_t i = 0; i < p; i++) col[i] = logits[i * l];
    ProbelogResults *res = NULL;
    EXPECT_OK(probelog_search_vector(reader, col, p, NULL, &res));
    ProbelogHit h;
    EXPECT_OK(probelog_results_get(res, 0, &h));
    CHECK((uint64_t)h.entry == added.first_entry && strcmp(h.model, "c-appended") == 0 &&
              h.label && strcmp(h.label, "c-label-0") == 0 && h.logit == 0,
          "the appended logit ranks first: %s/%" PRId64, h.model, h.logit);
    probelog_results_free(res);

    /* Names and deletes: a live model's name is refused by default; kept-constant is deleted. */
    EXPECT_OK(probelog_writer_open(path, 0, &w));
    EXPECT_ERR(probelog_writer_add_model(w, &m, NULL), PROBELOG_ERR_DUPLICATE_NAME);
    CHECK(strstr(probelog_last_error(), "PROBELOG_NAME_REPLACE") != NULL, "%s",
          probelog_last_error());
    CHECK(strcmp(probelog_status_name(PROBELOG_ERR_DUPLICATE_NAME),
                 "PROBELOG_ERR_DUPLICATE_NAME") == 0 &&
              strcmp(probelog_status_name(PROBELOG_ERR_DELETED), "PROBELOG_ERR_DELETED") == 0,
          "the new codes have names");
    bad = m;
    bad.existing_name = 9;
    EXPECT_ERR(probelog_writer_add_model(w, &bad, NULL), PROBELOG_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(probelog_writer_delete_model(w, after.model_count), PROBELOG_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(probelog_writer_delete_model(NULL, 0), PROBELOG_ERR_NULL_POINTER);
    uint64_t n_deleted = 7;
    EXPECT_ERR(probelog_writer_delete_models_named(w, "no-such-model", &n_deleted),
               PROBELOG_ERR_INVALID_ARGUMENT);
    CHECK(n_deleted == 0, "nothing deleted: %" PRIu64, n_deleted);
    EXPECT_OK(probelog_writer_delete_models_named(w, "kept-constant", &n_deleted));
    CHECK(n_deleted == 1, "one model named kept-constant: %" PRIu64, n_deleted);
    EXPECT_ERR(probelog_writer_delete_model(w, kept.model_id), PROBELOG_ERR_INVALID_ARGUMENT);
    EXPECT_OK(probelog_writer_commit(w, &ci));
    CHECK(ci.models_deleted == 1 && ci.models_added == 0 && ci.model_count == after.model_count,
          "a commit of one deletion");
    probelog_writer_close(w);
    EXPECT_OK(probelog_index_refresh(reader, &changed));
    EXPECT_OK(probelog_index_info(reader, &after));
    CHECK(after.deleted_model_count == 1 && after.live_model_count == after.model_count - 1 &&
              after.deleted_entry_count == l &&
              after.live_entry_count == after.entry_count - l,
          "live and deleted counts");
    EXPECT_ERR(probelog_index_descriptor(reader, kept.first_entry, col, p), PROBELOG_ERR_DELETED);
    EXPECT_ERR(probelog_search_entry(reader, kept.first_entry, NULL, &res), PROBELOG_ERR_DELETED);
    CHECK(res == NULL, "no results on failure");
    /* The deleted model's negated logits are never returned, whatever the query. */
    for (uint32_t i = 0; i < p; i++) col[i] = -logits[i * l + 1];
    ProbelogSearchParams all = probelog_search_params_default();
    all.top = 100000;
    EXPECT_OK(probelog_search_vector(reader, col, p, &all, &res));
    CHECK(probelog_results_len(res) == after.live_entry_count, "every live entry: %zu",
          probelog_results_len(res));
    for (size_t i = 0; i < probelog_results_len(res); i++) {
        EXPECT_OK(probelog_results_get(res, i, &h));
        CHECK(h.model_id != kept.model_id, "the deleted model at rank %u", h.rank);
    }
    probelog_results_free(res);
    probelog_index_close(reader);

    /* probelog_create. */
    EXPECT_ERR(probelog_create(path, p), PROBELOG_ERR_EXISTS);
    EXPECT_OK(probelog_create(argv[6], p));
    ProbelogIndex *fresh = NULL;
    EXPECT_OK(probelog_index_open(argv[6], &fresh));
    ProbelogIndexInfo fi;
    EXPECT_OK(probelog_index_info(fresh, &fi));
    CHECK(fi.num_probes == p && fi.entry_count == 0 && fi.embedding_dim == 0, "a new index");
    EXPECT_OK(probelog_search_vector(fresh, col, p, NULL, &res));
    CHECK(probelog_results_len(res) == 0, "an empty index finds nothing");
    probelog_results_free(res);
    probelog_index_close(fresh);

    free(col);
    free(copy);
    for (uint32_t i = 0; i < l; i++) free(labels[i]);
    free(labels);
    free(logits);
    return 0;
}

int main(int argc, char **argv) {
    CHECK(probelog_abi_version() == PROBELOG_ABI_VERSION, "ABI %u, header %u",
          probelog_abi_version(), PROBELOG_ABI_VERSION);
    CHECK(probelog_version() && probelog_version()[0] != '\0', "a version string");
    int rc = 2;
    if (argc > 1 && strcmp(argv[1], "search") == 0) rc = cmd_search(argc, argv);
    if (argc > 1 && strcmp(argv[1], "append") == 0) rc = cmd_append(argc, argv);
    if (rc == 2) {
        fprintf(stderr, "usage: check search INDEX CASES [INDEX] | check append INDEX LOGITS.f32 P L NEW\n");
        return 2;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 && rc == 0 ? 0 : 1;
}
