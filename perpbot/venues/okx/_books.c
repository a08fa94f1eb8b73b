/* perpbot.venues.okx._books: OKX `books` frames in C, for the fast path of
 * perpbot/venues/okx/parse.py (apply_books_frame) and its checksum.
 *
 * peek(frame) parses a plain `books` update straight from the wire text: a strict subset of JSON,
 * exactly the frame shape {"arg":{"channel":"books","instId":S},"action":"update","data":[{"asks":L,
 * "bids":L,"ts":S,"checksum":I,"seqId":I,"prevSeqId":I}]} in any key order, with whitespace, each key
 * at most once; levels are arrays of two or more strings. Anything else (another key, a null, an
 * escape, a non-ASCII byte, a fraction or exponent, an integer beyond 64 bits, trailing text...)
 * makes it return None, and the typed msgspec path, then the generic one, decide as before. The
 * level strings do not become Python objects: peek returns their positions in the frame as a span
 * table (perpbot/book/_spans.h), which the caller hands with the frame to L2Book.apply_spans.
 * Everything one call finds lives in that call's Peek struct and in what it returns: nothing is
 * kept between calls, so calls on any frames, from any thread, in any order are independent.
 *
 * checksum(bid_frags, ask_frags, depth) is the CRC32 of OKX's checksum string over a keep_raw
 * book's "px:sz" fragments (parse.checksum_string + crc32_signed in one pass).
 *
 * tests/unit/venues/test_okx_c_parser.py checks peek against msgspec's typed decode on real and
 * mutated frames; tests/unit/book/test_accel.py the checksum against the Python one.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdint.h>

#include "core/_scaled.h"
#include "book/_spans.h"

/* ---------------------------------------------------------------------------------------------
 * peek: the frame parser. */
#define MAX_SIDE_LEVELS 512 /* more levels in one update: the typed path takes the frame */
#define TS_MAX_DIGITS 18    /* as parse._TS_MAX_DIGITS: a longer ts is the generic path's to refuse */

typedef struct {
    const char *s;
    Py_ssize_t i, n;
} Cursor;

/* Keys seen, one bit each: a key twice declines the frame. */
enum {
    SEEN_ARG = 1 << 0, SEEN_CHANNEL = 1 << 1, SEEN_INST = 1 << 2, SEEN_ACTION = 1 << 3, SEEN_DATA = 1 << 4,
    SEEN_BIDS = 1 << 5, SEEN_ASKS = 1 << 6, SEEN_TS = 1 << 7, SEEN_SEQ = 1 << 8, SEEN_PREV = 1 << 9,
    SEEN_CHECKSUM = 1 << 10,
};
#define SEEN_REQUIRED (SEEN_ARG | SEEN_CHANNEL | SEEN_INST | SEEN_ACTION | SEEN_DATA | SEEN_BIDS | SEEN_ASKS | SEEN_TS)

/* One call's parse: the cursor, what it found so far, the level spans. On the C stack of peek. */
typedef struct {
    Cursor c;
    unsigned seen;
    Py_ssize_t inst, inst_len, ts, ts_len, n_bids, n_asks;
    long long seq, prev, checksum;
    LevelSpan bids[MAX_SIDE_LEVELS];
    LevelSpan asks[MAX_SIDE_LEVELS];
} Peek;

static void
ws(Cursor *c)
{
    while (c->i < c->n && (c->s[c->i] == ' ' || c->s[c->i] == '\n' || c->s[c->i] == '\r' || c->s[c->i] == '\t'))
        c->i++;
}

static int
expect(Cursor *c, char ch)
{
    ws(c);
    if (c->i < c->n && c->s[c->i] == ch) {
        c->i++;
        return 1;
    }
    return 0;
}

/* A string with no escape and only printable ASCII: sets its span (without quotes). 1 or 0. */
static int
string(Cursor *c, Py_ssize_t *start, Py_ssize_t *len)
{
    ws(c);
    if (c->i >= c->n || c->s[c->i] != '"')
        return 0;
    Py_ssize_t j = ++c->i;
    while (j < c->n) {
        unsigned char ch = (unsigned char)c->s[j];
        if (ch == '"')
            break;
        if (ch == '\\' || ch < 0x20 || ch >= 0x80)
            return 0;
        j++;
    }
    if (j >= c->n)
        return 0;
    *start = c->i;
    *len = j - c->i;
    c->i = j + 1;
    return 1;
}

static int
is_text(const Cursor *c, Py_ssize_t start, Py_ssize_t len, const char *name)
{
    return (Py_ssize_t)strlen(name) == len && memcmp(c->s + start, name, len) == 0;
}

/* A JSON integer that fits in a signed 64-bit value (msgspec's int). 1 or 0. */
static int
integer(Cursor *c, long long *out)
{
    ws(c);
    Py_ssize_t j = c->i;
    int negative = j < c->n && c->s[j] == '-';
    j += negative;
    Py_ssize_t first = j;
    unsigned long long value = 0;
    for (; j < c->n && c->s[j] >= '0' && c->s[j] <= '9'; j++) {
        if (j - first >= 19)
            return 0; /* 20+ digits: beyond 64 bits (or a leading-zero run) */
        value = value * 10 + (unsigned long long)(c->s[j] - '0');
    }
    if (j == first || (c->s[first] == '0' && j - first > 1))
        return 0; /* no digits, or a leading zero */
    if (j < c->n && (c->s[j] == '.' || c->s[j] == 'e' || c->s[j] == 'E'))
        return 0;
    if (value > (unsigned long long)LLONG_MAX + (negative ? 1ULL : 0ULL))
        return 0;
    *out = negative ? (long long)(0 - value) : (long long)value;
    c->i = j;
    return 1;
}

/* A string's span as a LevelSpan field pair (offsets fit: frames are below 4 GiB). 1 or 0. */
static int
span_string(Cursor *c, uint32_t *start, uint32_t *len)
{
    Py_ssize_t a, b;
    if (!string(c, &a, &b))
        return 0;
    *start = (uint32_t)a;
    *len = (uint32_t)b;
    return 1;
}

/* One level [s, s, ...]: the first two strings' spans. 1 or 0. */
static int
level(Cursor *c, LevelSpan *out)
{
    if (!expect(c, '[') || !span_string(c, &out->px, &out->px_len) || !expect(c, ',')
        || !span_string(c, &out->sz, &out->sz_len))
        return 0;
    while (expect(c, ',')) {
        Py_ssize_t a, b;
        if (!string(c, &a, &b))
            return 0;
    }
    return expect(c, ']');
}

/* [[s, s, ...], ...] into spans. 1 or 0. */
static int
levels(Cursor *c, LevelSpan *out, Py_ssize_t *count)
{
    if (!expect(c, '['))
        return 0;
    *count = 0;
    if (expect(c, ']'))
        return 1;
    do {
        if (*count >= MAX_SIDE_LEVELS || !level(c, &out[*count]))
            return 0;
        (*count)++;
    } while (expect(c, ','));
    return expect(c, ']');
}

/* Marks `flag` seen; 0 when it was already (a duplicate key). */
static int
first_time(Peek *p, unsigned flag)
{
    if (p->seen & flag)
        return 0;
    p->seen |= flag;
    return 1;
}

/* "arg": {"channel": "books", "instId": S}. 1 or 0. */
static int
parse_arg(Peek *p)
{
    Cursor *c = &p->c;
    Py_ssize_t k, klen, v, vlen;
    if (!expect(c, '{'))
        return 0;
    do {
        if (!string(c, &k, &klen) || !expect(c, ':') || !string(c, &v, &vlen))
            return 0;
        if (is_text(c, k, klen, "channel")) {
            if (!first_time(p, SEEN_CHANNEL) || !is_text(c, v, vlen, "books"))
                return 0;
        } else if (is_text(c, k, klen, "instId") && first_time(p, SEEN_INST)) {
            p->inst = v;
            p->inst_len = vlen;
        } else {
            return 0;
        }
    } while (expect(c, ','));
    return expect(c, '}');
}

/* An integer field of the data item (seqId, prevSeqId, checksum), once. 1 or 0. */
static int
item_integer(Peek *p, unsigned flag, long long *out)
{
    return first_time(p, flag) && integer(&p->c, out);
}

/* One "key": value of the data item. 1 or 0. */
static int
parse_item_field(Peek *p, Py_ssize_t k, Py_ssize_t klen)
{
    Cursor *c = &p->c;
    if (is_text(c, k, klen, "bids"))
        return first_time(p, SEEN_BIDS) && levels(c, p->bids, &p->n_bids);
    if (is_text(c, k, klen, "asks"))
        return first_time(p, SEEN_ASKS) && levels(c, p->asks, &p->n_asks);
    if (is_text(c, k, klen, "ts"))
        return first_time(p, SEEN_TS) && string(c, &p->ts, &p->ts_len);
    if (is_text(c, k, klen, "seqId"))
        return item_integer(p, SEEN_SEQ, &p->seq);
    if (is_text(c, k, klen, "prevSeqId"))
        return item_integer(p, SEEN_PREV, &p->prev);
    if (is_text(c, k, klen, "checksum"))
        return item_integer(p, SEEN_CHECKSUM, &p->checksum);
    return 0;
}

/* "data": [{...}]: exactly one item. 1 or 0. */
static int
parse_data(Peek *p)
{
    Cursor *c = &p->c;
    Py_ssize_t k, klen;
    if (!expect(c, '[') || !expect(c, '{'))
        return 0;
    do {
        if (!string(c, &k, &klen) || !expect(c, ':') || !parse_item_field(p, k, klen))
            return 0;
    } while (expect(c, ','));
    return expect(c, '}') && expect(c, ']');
}

/* "action": "update". 1 or 0. */
static int
parse_action(Peek *p)
{
    Py_ssize_t v, vlen;
    return string(&p->c, &v, &vlen) && is_text(&p->c, v, vlen, "update");
}

/* The whole frame: the top-level object, then nothing but whitespace. 1 or 0. */
static int
parse_frame(Peek *p)
{
    Cursor *c = &p->c;
    Py_ssize_t k, klen;
    if (!expect(c, '{'))
        return 0;
    do {
        if (!string(c, &k, &klen) || !expect(c, ':'))
            return 0;
        int ok;
        if (is_text(c, k, klen, "arg"))
            ok = first_time(p, SEEN_ARG) && parse_arg(p);
        else if (is_text(c, k, klen, "action"))
            ok = first_time(p, SEEN_ACTION) && parse_action(p);
        else if (is_text(c, k, klen, "data"))
            ok = first_time(p, SEEN_DATA) && parse_data(p);
        else
            ok = 0;
        if (!ok)
            return 0;
    } while (expect(c, ','));
    if (!expect(c, '}'))
        return 0;
    ws(c);
    return c->i == c->n && (p->seen & SEEN_REQUIRED) == SEEN_REQUIRED;
}

/* An optional integer as a new reference: the value, or None when the frame has none. */
static PyObject *
optional_int(const Peek *p, unsigned flag, long long value)
{
    return (p->seen & flag) ? PyLong_FromLongLong(value) : Py_NewRef(Py_None);
}

/* (instId, ts_ms, seqId|None, prevSeqId|None, checksum|None, span table). */
static PyObject *
peek_result(const Peek *p, long long ts_ms)
{
    PyObject *items[6] = {
        PyUnicode_FromStringAndSize(p->c.s + p->inst, p->inst_len),
        PyLong_FromLongLong(ts_ms),
        optional_int(p, SEEN_SEQ, p->seq),
        optional_int(p, SEEN_PREV, p->prev),
        optional_int(p, SEEN_CHECKSUM, p->checksum),
        span_table_new(p->bids, p->n_bids, p->asks, p->n_asks),
    };
    PyObject *out = NULL;
    int complete = 1;
    for (int j = 0; j < 6; j++)
        complete &= items[j] != NULL;
    if (complete)
        out = PyTuple_Pack(6, items[0], items[1], items[2], items[3], items[4], items[5]);
    for (int j = 0; j < 6; j++)
        Py_XDECREF(items[j]);
    return out;
}

/* peek(frame) -> (instId, ts_ms, seqId|None, prevSeqId|None, checksum|None, spans) of a plain OKX
 * books update, or None. */
static PyObject *
books_peek(PyObject *module, PyObject *frame)
{
    Peek p;
    if (PyBytes_CheckExact(frame)) {
        p.c.s = PyBytes_AS_STRING(frame);
        p.c.n = PyBytes_GET_SIZE(frame);
    } else if (PyUnicode_CheckExact(frame) && PyUnicode_IS_COMPACT_ASCII(frame)) {
        p.c.s = (const char *)PyUnicode_DATA(frame);
        p.c.n = PyUnicode_GET_LENGTH(frame);
    } else {
        Py_RETURN_NONE;
    }
    p.c.i = 0;
    p.seen = 0;
    p.n_bids = p.n_asks = 0;
    long long ts_ms;
    if (p.c.n >= (Py_ssize_t)UINT32_MAX || !parse_frame(&p)
        || !plain_digits(p.c.s + p.ts, p.ts_len, TS_MAX_DIGITS, &ts_ms))
        Py_RETURN_NONE;
    return peek_result(&p, ts_ms);
}

/* ---------------------------------------------------------------------------------------------
 * checksum: the CRC32 of the checksum string. */
static PyObject *crc32_func = NULL; /* zlib.crc32: the same CRC the Python path uses */
/* zlib's crc32() itself, from the libz that Python's zlib module loaded (no zlib headers needed to
 * build); NULL when it cannot be found, and then zlib.crc32 is called on a bytes object. Both are
 * set once at import and only read afterwards. */
typedef unsigned long (*crc32_fn)(unsigned long, const unsigned char *, unsigned int);
static crc32_fn zlib_crc32 = NULL;

/* A byte buffer on the stack that moves to the heap when it outgrows it. */
typedef struct {
    char *data;
    Py_ssize_t len, cap;
    char stack[2048];
} Buf;

static void
buf_init(Buf *b)
{
    b->data = b->stack;
    b->len = 0;
    b->cap = sizeof b->stack;
}

static void
buf_free(Buf *b)
{
    if (b->data != b->stack)
        PyMem_Free(b->data);
}

/* Appends the UTF-8 of str `s` and one more byte `sep`. 0 or -1. */
static int
buf_append(Buf *b, PyObject *s, char sep)
{
    Py_ssize_t n;
    const char *data;
    if (PyUnicode_CheckExact(s) && PyUnicode_IS_COMPACT_ASCII(s)) {
        n = PyUnicode_GET_LENGTH(s);
        data = (const char *)PyUnicode_DATA(s);
    } else if (!PyUnicode_Check(s)) {
        PyErr_SetString(PyExc_TypeError, "sequence item: expected str instance");
        return -1;
    } else if ((data = PyUnicode_AsUTF8AndSize(s, &n)) == NULL) {
        return -1;
    }
    if (b->len + n + 1 > b->cap) {
        Py_ssize_t want = (b->len + n + 1) * 2;
        char *grown = PyMem_Malloc(want);
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memcpy(grown, b->data, b->len);
        buf_free(b);
        b->data = grown;
        b->cap = want;
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len++] = sep;
    return 0;
}

/* "bid1:ask1:bid2:ask2:..." over the best `depth` fragments of each side (bids ascending, best
 * last), the longer side's rest following when one runs out: parse.checksum_string. 0 or -1. */
static int
checksum_text(Buf *b, PyObject *bids, PyObject *asks, Py_ssize_t depth)
{
    Py_ssize_t nb = PyList_GET_SIZE(bids), na = PyList_GET_SIZE(asks);
    Py_ssize_t top_bid = nb - 1; /* best bid index */
    nb = nb < depth ? nb : depth;
    na = na < depth ? na : depth;
    Py_ssize_t most = nb > na ? nb : na;
    for (Py_ssize_t i = 0; i < most; i++) {
        if (i < nb && buf_append(b, PyList_GET_ITEM(bids, top_bid - i), ':') < 0)
            return -1;
        if (i < na && buf_append(b, PyList_GET_ITEM(asks, i), ':') < 0)
            return -1;
    }
    if (b->len > 0)
        b->len--; /* no separator after the last fragment */
    return 0;
}

/* The unsigned CRC32 of the buffer; (unsigned long)-1 with an exception set on failure. */
static unsigned long
crc_of(const Buf *b)
{
    if (zlib_crc32 != NULL && b->len < (Py_ssize_t)UINT_MAX)
        return zlib_crc32(0UL, (const unsigned char *)b->data, (unsigned int)b->len) & 0xFFFFFFFFUL;
    PyObject *bytes = PyBytes_FromStringAndSize(b->data, b->len);
    if (bytes == NULL)
        return (unsigned long)-1;
    PyObject *crc = PyObject_CallOneArg(crc32_func, bytes);
    Py_DECREF(bytes);
    if (crc == NULL)
        return (unsigned long)-1;
    unsigned long value = PyLong_AsUnsignedLong(crc);
    Py_DECREF(crc);
    return value;
}

/* checksum(bid_frags, ask_frags, depth) -> the signed CRC32 of the checksum string. */
static PyObject *
books_checksum(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyList_CheckExact(args[0]) || !PyList_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "checksum(bid_frags: list, ask_frags: list, depth: int)");
        return NULL;
    }
    Py_ssize_t depth = PyLong_AsSsize_t(args[2]);
    if (depth == -1 && PyErr_Occurred())
        return NULL;
    Buf b;
    buf_init(&b);
    int rc = checksum_text(&b, args[0], args[1], depth < 0 ? 0 : depth);
    unsigned long value = rc < 0 ? (unsigned long)-1 : crc_of(&b);
    buf_free(&b);
    if (value == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    long long signed_value = (value & 0x80000000UL) ? (long long)value - 0x100000000LL : (long long)value;
    return PyLong_FromLongLong(signed_value);
}

/* crc_source() -> "libz" or "zlib.crc32": which CRC32 checksum calls (tests, bench notes). */
static PyObject *
books_crc_source(PyObject *module, PyObject *unused)
{
    return PyUnicode_FromString(zlib_crc32 != NULL ? "libz" : "zlib.crc32");
}

static PyMethodDef books_methods[] = {
    {"peek", (PyCFunction)books_peek, METH_O,
     "peek(frame) -> (instId, ts_ms, seqId, prevSeqId, checksum, span table) of a plain OKX books update, "
     "or None."},
    {"checksum", (PyCFunction)(void (*)(void))books_checksum, METH_FASTCALL,
     "checksum(bid_frags, ask_frags, depth) -> signed CRC32 of the OKX checksum string."},
    {"crc_source", (PyCFunction)books_crc_source, METH_NOARGS, "crc_source() -> which CRC32 checksum uses."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef books_module = {
    PyModuleDef_HEAD_INIT, "_books", "OKX books frames and checksum in C (see _books.c).", -1, books_methods,
};

PyMODINIT_FUNC
PyInit__books(void)
{
    PyObject *zlib = PyImport_ImportModule("zlib");
    if (zlib == NULL)
        return NULL;
    crc32_func = PyObject_GetAttrString(zlib, "crc32");
    Py_DECREF(zlib);
    if (crc32_func == NULL)
        return NULL;
    /* Python's zlib module has loaded libz by now: find its crc32 (RTLD_NOLOAD: never load another). */
    void *libz = dlopen("libz.so.1", RTLD_NOW | RTLD_NOLOAD);
    if (libz != NULL)
        zlib_crc32 = (crc32_fn)dlsym(libz, "crc32");
    return PyModule_Create(&books_module);
}
