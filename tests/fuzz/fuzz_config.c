/*
 * fuzz_config.c - libFuzzer target for the pipeline loader: any bytes go in
 * as a pipeline file; the loader must answer OK or a message, never crash,
 * leak, hang or read out of bounds. Built by tests/fuzz/CMakeLists.txt with
 * ETL_FUZZ=ON; run with tests/fuzz/run.sh.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "config.h"

/* A few variables are set so ${VAR} takes both paths. */
static const char *fuzz_env(const char *name, void *arg)
{
    (void)arg;
    static const char *const kv[][2] = {
        {"TOKEN", "t0k"}, {"EMPTY", ""}, {"URL", "sqlite:x.db"}, {"REF", "${TOKEN}"},
        {"LIST", "a,b,,c"},
    };
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        if (strcmp(kv[i][0], name) == 0)
            return kv[i][1];
    return NULL;
}

/* Reads every string a caller would, so a bad pointer shows up here. */
static size_t touch(const etl_pipeline_t *p)
{
    size_t sum = strlen(p->file) + strlen(p->dir) + strlen(p->name) + strlen(p->state_url);
    sum += strlen(p->source.plugin) + strlen(p->sink.plugin);
    for (size_t i = 0; i < p->source.nopts; i++)
        for (size_t j = 0; j < p->source.opts[i].n_items; j++)
            sum += strlen(p->source.opts[i].items[j]);
    for (size_t i = 0; i < p->nstreams; i++) {
        const etl_stream_cfg_t *s = &p->streams[p->order[i]];
        sum += strlen(s->name) + strlen(s->table);
        for (size_t f = 0; f < s->nfk; f++)
            sum += (size_t)etl_pipeline_stream(p, s->fk[f].parent);
        for (size_t k = 0; k < s->nnest; k++)
            sum += (size_t)etl_pipeline_stream(p, s->nest[k].stream);
    }
    return sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    etl_pipeline_t **v;
    size_t n;
    char err[512];
    etl_load_opts_t opts = {fuzz_env, NULL, NULL};
    volatile size_t sink = 0;
    if (etl_config_parse("fuzz/pipeline.yaml", (const char *)data, size, &opts, &v, &n, err,
                         sizeof err) != ETL_CFG_OK)
        return 0;
    for (size_t i = 0; i < n; i++)
        sink += touch(v[i]);
    /* With a matrix, pick one client too: the filtered path. */
    if (n > 1 && v[n - 1]->client) {
        etl_pipeline_t **w;
        size_t m;
        opts.client = v[n - 1]->client;
        if (etl_config_parse("fuzz/pipeline.yaml", (const char *)data, size, &opts, &w, &m, err,
                             sizeof err) == ETL_CFG_OK)
            etl_pipelines_free(w, m);
    }
    etl_pipelines_free(v, n);
    (void)sink;
    return 0;
}
