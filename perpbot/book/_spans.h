/* perpbot/book/_spans.h: the span table, the form in which a C wire parser hands a frame's levels
 * to the book without turning their strings into Python objects (L2Book.apply_spans).
 *
 * A span table is a bytes object of native uint32 values: n_bids, n_asks, then one LevelSpan per
 * level, the bids first, then the asks: the offset and length of the price text and of the size text
 * in the wire text the levels came from (a bytes object or an ASCII str, passed beside the table).
 * The writer (perpbot/venues/okx/_books.c) builds one per frame it accepts; the reader
 * (perpbot/book/_levels.c, and l2.levels_of_spans in Python) checks its length and every span's
 * bounds against the text before using it. Nothing refers to a frame after the call that reads it.
 * Include <Python.h> and <stdint.h> first.
 */
#ifndef PERPBOT_BOOK_SPANS_H
#define PERPBOT_BOOK_SPANS_H

typedef struct {
    uint32_t px, px_len, sz, sz_len;
} LevelSpan;

typedef struct {
    uint32_t n_bids, n_asks;
} SpanHeader;

/* A new span table of these levels (new reference, or NULL with an exception set). */
static inline PyObject *
span_table_new(const LevelSpan *bids, Py_ssize_t n_bids, const LevelSpan *asks, Py_ssize_t n_asks)
{
    Py_ssize_t size = (Py_ssize_t)sizeof(SpanHeader) + (n_bids + n_asks) * (Py_ssize_t)sizeof(LevelSpan);
    PyObject *table = PyBytes_FromStringAndSize(NULL, size);
    if (table == NULL)
        return NULL;
    char *dst = PyBytes_AS_STRING(table);
    SpanHeader header = {(uint32_t)n_bids, (uint32_t)n_asks};
    memcpy(dst, &header, sizeof header);
    dst += sizeof header;
    memcpy(dst, bids, (size_t)n_bids * sizeof(LevelSpan));
    memcpy(dst + (size_t)n_bids * sizeof(LevelSpan), asks, (size_t)n_asks * sizeof(LevelSpan));
    return table;
}

#endif /* PERPBOT_BOOK_SPANS_H */
