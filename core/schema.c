/* schema.c - a stream's column list, built by plugins and the core. */
#include <stdlib.h>
#include <string.h>

#include "etl/record.h"
#include "util.h"

struct etl_schema {
    char *stream;
    etl_column_t *cols;
    size_t n, cap;
    char *cursor;
};

etl_schema_t *etl_schema_new(const char *stream)
{
    etl_schema_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->stream = etl_strdup(stream ? stream : "");
    if (!s->stream) {
        free(s);
        return NULL;
    }
    return s;
}

void etl_schema_free(etl_schema_t *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        free((char *)s->cols[i].name);
        free((char *)s->cols[i].native);
    }
    free(s->cols);
    free(s->stream);
    free(s->cursor);
    free(s);
}

int etl_schema_add(etl_schema_t *s, const char *name, etl_type_t type, const char *native,
                   unsigned flags)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        etl_column_t *c = realloc(s->cols, cap * sizeof *c);
        if (!c)
            return -1;
        s->cols = c;
        s->cap = cap;
    }
    etl_column_t *c = &s->cols[s->n];
    c->name = etl_strdup(name);
    c->native = native ? etl_strdup(native) : NULL;
    if (!c->name || (native && !c->native)) {
        free((char *)c->name);
        free((char *)c->native);
        return -1;
    }
    c->type = type;
    c->flags = flags;
    return (int)s->n++;
}

const char *etl_schema_stream(const etl_schema_t *s) { return s->stream; }
size_t etl_schema_ncols(const etl_schema_t *s) { return s->n; }
const etl_column_t *etl_schema_col(const etl_schema_t *s, size_t i)
{
    return i < s->n ? &s->cols[i] : NULL;
}

int etl_schema_find(const etl_schema_t *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->cols[i].name, name) == 0)
            return (int)i;
    return -1;
}

void etl_schema_set_cursor(etl_schema_t *s, const char *column)
{
    free(s->cursor);
    s->cursor = column ? etl_strdup(column) : NULL;
}

const char *etl_schema_cursor(const etl_schema_t *s) { return s->cursor; }

void etl_schema_set_flags(etl_schema_t *s, size_t i, unsigned flags)
{
    if (i < s->n)
        s->cols[i].flags = flags;
}
