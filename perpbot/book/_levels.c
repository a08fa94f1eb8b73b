/* perpbot.book._levels: the book's per-level hot loops in C, over the very Python objects the pure
 * implementation (perpbot/book/l2.py) uses: the side dict {price: size}, the ascending key list,
 * the "px:sz" fragment list of keep_raw books, and the shared wire-text caches. Nothing is stored
 * here between calls; every function does exactly what its Python twin in l2.py does, level by
 * level and in the same order, so a level that raises leaves the levels before it applied, as the
 * Python loop would. Cache misses call back into Python (l2._price_miss / the size miss function),
 * so parsing, exactness checks and their error messages stay in one place (perpbot.core.numbers).
 *
 * Two entry points: apply_levels (levels as Python lists, L2Book.apply_levels) and apply_spans
 * (levels as a span table over a wire text, perpbot/book/_spans.h: L2Book.apply_spans, fed by a C
 * wire parser such as perpbot/venues/okx/_books.c, so the level strings never become objects).
 *
 * Why: the interpreter's dispatch is most of the cost of a 5-level update in pure Python; here a
 * level costs a few dict operations and a binary search. tests/unit/book/test_accel.py checks the
 * C and Python paths give identical books, fragments and exceptions.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#include "core/_scaled.h"
#include "book/_spans.h"

/* level[i] for a level given as a list or tuple (the common case), else the generic subscript. */
static PyObject *
level_item(PyObject *level, Py_ssize_t i)
{
    if (PyList_CheckExact(level)) {
        if (i < PyList_GET_SIZE(level)) {
            PyObject *item = PyList_GET_ITEM(level, i);
            Py_INCREF(item);
            return item;
        }
        PyErr_SetString(PyExc_IndexError, "list index out of range");
        return NULL;
    }
    if (PyTuple_CheckExact(level)) {
        if (i < PyTuple_GET_SIZE(level)) {
            PyObject *item = PyTuple_GET_ITEM(level, i);
            Py_INCREF(item);
            return item;
        }
        PyErr_SetString(PyExc_IndexError, "tuple index out of range");
        return NULL;
    }
    PyObject *index = PyLong_FromSsize_t(i);
    if (index == NULL)
        return NULL;
    PyObject *item = PyObject_GetItem(level, index);
    Py_DECREF(index);
    return item;
}

/* cache[text], or miss(text) when absent (which caches it). New reference or NULL. */
static PyObject *
cached(PyObject *cache, PyObject *miss, PyObject *text)
{
    PyObject *value = PyDict_GetItemWithError(cache, text);
    if (value != NULL) {
        Py_INCREF(value);
        return value;
    }
    if (PyErr_Occurred())
        return NULL; /* unhashable text: the TypeError the Python subscript raises */
    return PyObject_CallOneArg(miss, text);
}

/* _scaled.h's parser over a str: compact ASCII text only (anything else: 0, Python decides). */
static int
parse_scaled(PyObject *text, long long *out)
{
    if (!PyUnicode_CheckExact(text) || !PyUnicode_IS_COMPACT_ASCII(text))
        return 0;
    return scaled_digits((const char *)PyUnicode_DATA(text), PyUnicode_GET_LENGTH(text), out);
}

/* The scaled price of `text` (new reference or NULL): parsed in C, else the shared cache, else
 * the Python miss function. */
static PyObject *
price_of(PyObject *text, PyObject *cache, PyObject *miss)
{
    long long value;
    if (parse_scaled(text, &value))
        return PyLong_FromLongLong(value);
    return cached(cache, miss, text);
}

/* The base-unit scaled size of `text`: size x contract / 10**9 when exact (contract 0: none); off
 * the grid or huge, the Python function raises or computes it. */
static PyObject *
size_of(PyObject *text, long long contract, PyObject *cache, PyObject *miss)
{
    long long value;
    if (parse_scaled(text, &value) && scaled_times_contract(value, contract, &value))
        return PyLong_FromLongLong(value);
    return cached(cache, miss, text);
}

/* bisect_left / bisect_right over an ascending list of ints. -1 on a comparison error. */
static Py_ssize_t
bisect(PyObject *keys, PyObject *price, int right)
{
    Py_ssize_t lo = 0, hi = PyList_GET_SIZE(keys);
    int op = right ? Py_LT : Py_GT;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        PyObject *key = PyList_GET_ITEM(keys, mid);
        /* right: price < key -> go left; left: key < price -> go right */
        int below = right ? PyObject_RichCompareBool(price, key, op) : PyObject_RichCompareBool(key, price, Py_LT);
        if (below < 0)
            return -1;
        if (right) {
            if (below) hi = mid; else lo = mid + 1;
        } else {
            if (below) lo = mid + 1; else hi = mid;
        }
    }
    return lo;
}

/* "px:sz" as f"{px_text}:{sz_text}" builds it. */
static PyObject *
fragment(PyObject *px, PyObject *sz)
{
    if (PyUnicode_CheckExact(px) && PyUnicode_CheckExact(sz) && PyUnicode_IS_COMPACT_ASCII(px)
        && PyUnicode_IS_COMPACT_ASCII(sz)) {
        Py_ssize_t a = PyUnicode_GET_LENGTH(px), b = PyUnicode_GET_LENGTH(sz);
        PyObject *out = PyUnicode_New(a + b + 1, 127);
        if (out == NULL)
            return NULL;
        char *dst = (char *)PyUnicode_DATA(out);
        memcpy(dst, PyUnicode_DATA(px), a);
        dst[a] = ':';
        memcpy(dst + a + 1, PyUnicode_DATA(sz), b);
        return out;
    }
    return PyUnicode_FromFormat("%S:%S", px, sz);
}


/* ---------------------------------------------------------------------------------------------
 * Shadow: a side's sorted price keys as a contiguous int64 array beside the Python key list, so a
 * binary search touches a few cache lines instead of dereferencing ~9 scattered int objects (the
 * cost that grows with the number of books). Only this module and L2Book.replace/clear change it
 * (reset); it stays usable while every key fits in 63 bits and its length equals the list's, and
 * is otherwise ignored (list bisect) until the next reset. */
typedef struct {
    PyObject_HEAD
    long long *v;
    Py_ssize_t n, cap;
    int usable;
} Shadow;

static PyTypeObject ShadowType;

static int
shadow_reserve(Shadow *sh, Py_ssize_t want)
{
    if (want <= sh->cap)
        return 0;
    Py_ssize_t cap = sh->cap ? sh->cap : 64;
    while (cap < want)
        cap *= 2;
    long long *grown = PyMem_Realloc(sh->v, (size_t)cap * sizeof(long long));
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    sh->v = grown;
    sh->cap = cap;
    return 0;
}

static PyObject *
shadow_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Shadow *sh = (Shadow *)type->tp_alloc(type, 0);
    if (sh != NULL) {
        sh->v = NULL;
        sh->n = sh->cap = 0;
        sh->usable = 1;
    }
    return (PyObject *)sh;
}

static void
shadow_dealloc(Shadow *sh)
{
    PyMem_Free(sh->v);
    Py_TYPE(sh)->tp_free((PyObject *)sh);
}

/* reset(keys): the shadow becomes `keys` (an ascending list of ints). */
static PyObject *
shadow_reset(Shadow *sh, PyObject *keys)
{
    PyObject *seq = PySequence_Fast(keys, "reset() takes a sequence of ints");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    sh->n = 0;
    sh->usable = 1;
    if (shadow_reserve(sh, n) < 0) {
        Py_DECREF(seq);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        int overflow = 0;
        long long value = PyLong_AsLongLongAndOverflow(PySequence_Fast_GET_ITEM(seq, i), &overflow);
        if (value == -1 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return NULL;
        }
        if (overflow) {
            sh->usable = 0; /* a key beyond 64 bits: the list alone, until the next reset */
            break;
        }
        sh->v[i] = value;
    }
    sh->n = sh->usable ? n : 0;
    Py_DECREF(seq);
    Py_RETURN_NONE;
}

static PyObject *
shadow_tolist(Shadow *sh, PyObject *unused)
{
    PyObject *out = PyList_New(sh->n);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < sh->n; i++) {
        PyObject *value = PyLong_FromLongLong(sh->v[i]);
        if (value == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, value);
    }
    return out;
}

static PyObject *
shadow_get_usable(Shadow *sh, void *closure)
{
    return PyBool_FromLong(sh->usable);
}

static PyObject *
shadow_invalidate(Shadow *sh, PyObject *unused)
{
    sh->usable = 0;
    sh->n = 0;
    Py_RETURN_NONE;
}

/* Copies and pickles as (Shadow, (), (usable, keys)): L2Books are deep-copied (tests, fuzz oracles). */
static PyObject *
shadow_reduce(Shadow *sh, PyObject *unused)
{
    PyObject *keys = shadow_tolist(sh, NULL);
    if (keys == NULL)
        return NULL;
    return Py_BuildValue("(O()(NN))", (PyObject *)Py_TYPE(sh), PyBool_FromLong(sh->usable), keys);
}

static PyObject *
shadow_setstate(Shadow *sh, PyObject *state)
{
    PyObject *usable, *keys;
    if (!PyArg_ParseTuple(state, "OO", &usable, &keys))
        return NULL;
    PyObject *done = shadow_reset(sh, keys);
    if (done == NULL)
        return NULL;
    Py_DECREF(done);
    int flag = PyObject_IsTrue(usable);
    if (flag < 0)
        return NULL;
    if (!flag) {
        sh->usable = 0;
        sh->n = 0;
    }
    Py_RETURN_NONE;
}

static PyMethodDef shadow_methods[] = {
    {"__reduce__", (PyCFunction)shadow_reduce, METH_NOARGS, "(Shadow, (), (usable, keys))"},
    {"__setstate__", (PyCFunction)shadow_setstate, METH_O, "Restore (usable, keys)."},
    {"invalidate", (PyCFunction)shadow_invalidate, METH_NOARGS, "Stop using the shadow until the next reset."},
    {"reset", (PyCFunction)shadow_reset, METH_O, "reset(keys): the shadow becomes the ascending int list `keys`."},
    {"tolist", (PyCFunction)shadow_tolist, METH_NOARGS, "The keys as a list (tests)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef shadow_getset[] = {
    {"usable", (getter)shadow_get_usable, NULL, "False after a key beyond 64 bits (until the next reset).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ShadowType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "perpbot.book._levels.Shadow",
    .tp_basicsize = sizeof(Shadow),
    .tp_dealloc = (destructor)shadow_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A side's sorted keys as int64s (see _levels.c).",
    .tp_methods = shadow_methods,
    .tp_getset = shadow_getset,
    .tp_new = shadow_new,
};

/* The shadow to search for this side, or NULL (none given, unusable, out of step with the list). */
static Shadow *
usable_shadow(PyObject *obj, PyObject *keys)
{
    if (obj == NULL || obj == Py_None || Py_TYPE(obj) != &ShadowType)
        return NULL;
    Shadow *sh = (Shadow *)obj;
    if (!sh->usable)
        return NULL;
    if (sh->n != PyList_GET_SIZE(keys)) {
        sh->usable = 0; /* never in a sound book: stop trusting it until a reset */
        return NULL;
    }
    return sh;
}

/* bisect over the shadow; *value is the price as int64 (fits: checked by the caller). */
static Py_ssize_t
shadow_bisect(Shadow *sh, long long value, int right)
{
    Py_ssize_t lo = 0, hi = sh->n;
    const long long *v = sh->v;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (right ? (value < v[mid]) : !(v[mid] < value))
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

static int
shadow_insert(Shadow *sh, Py_ssize_t at, long long value)
{
    if (shadow_reserve(sh, sh->n + 1) < 0)
        return -1;
    memmove(sh->v + at + 1, sh->v + at, (size_t)(sh->n - at) * sizeof(long long));
    sh->v[at] = value;
    sh->n++;
    return 0;
}

static void
shadow_delete(Shadow *sh, Py_ssize_t at)
{
    memmove(sh->v + at, sh->v + at + 1, (size_t)(sh->n - at - 1) * sizeof(long long));
    sh->n--;
}

/* A side as L2Book hands it over: (dict, keys list, frags list or None, Shadow or None). */
typedef struct {
    PyObject *book, *keys, *frags, *shadow;
} Side;

/* The price as int64 for the shadow `*sh`; a price beyond 64 bits makes the shadow unusable (and
 * *sh NULL: the list is bisected instead). 0 or -1. */
static int
shadow_price(Shadow **sh, PyObject *price, long long *value)
{
    int overflow = 0;
    *value = PyLong_AsLongLongAndOverflow(price, &overflow);
    if (*value == -1 && PyErr_Occurred())
        return -1;
    if (overflow) {
        (*sh)->usable = 0;
        *sh = NULL;
    }
    return 0;
}

/* A new price on a side without fragments: its key inserted in order (bisect_right, as insort). */
static int
insert_key(const Side *side, Shadow *sh, PyObject *price, long long value)
{
    Py_ssize_t at = sh ? shadow_bisect(sh, value, 1) : bisect(side->keys, price, 1);
    if (at < 0 || PyList_Insert(side->keys, at, price) < 0)
        return -1;
    return sh ? shadow_insert(sh, at, value) : 0;
}

/* A keep_raw side: the level's "px:sz" fragment replaces the present one, or goes in beside its
 * new key. 0 or -1. */
static int
put_fragment(const Side *side, Shadow *sh, PyObject *price, long long value, int present,
             PyObject *(*make_frag)(void *), void *frag_arg)
{
    Py_ssize_t at = sh ? shadow_bisect(sh, value, 0) : bisect(side->keys, price, 0);
    if (at < 0)
        return -1;
    PyObject *frag = make_frag(frag_arg);
    if (frag == NULL)
        return -1;
    if (present) {
        if (at >= PyList_GET_SIZE(side->frags)) { /* keys and frags out of step: never in a sound book */
            Py_DECREF(frag);
            PyErr_SetString(PyExc_IndexError, "list assignment index out of range");
            return -1;
        }
        PyList_SetItem(side->frags, at, frag); /* steals frag */
        return 0;
    }
    if (PyList_Insert(side->keys, at, price) < 0 || PyList_Insert(side->frags, at, frag) < 0) {
        Py_DECREF(frag);
        return -1;
    }
    Py_DECREF(frag);
    return sh ? shadow_insert(sh, at, value) : 0;
}

/* Size 0 for a present price: the level, its key (and fragment) removed. 0 or -1. */
static int
drop_level(const Side *side, Shadow *sh, PyObject *price, long long value)
{
    if (PyDict_DelItem(side->book, price) < 0)
        return -1;
    Py_ssize_t at = sh ? shadow_bisect(sh, value, 0) : bisect(side->keys, price, 0);
    if (at < 0 || PySequence_DelItem(side->keys, at) < 0)
        return -1;
    if (sh)
        shadow_delete(sh, at);
    if (side->frags != NULL && PySequence_DelItem(side->frags, at) < 0)
        return -1;
    return 0;
}

/* One level's effect on a side, shared by the list and span loops: `price`, `size` (borrowed)
 * applied as the Python loop does; make_frag(frag_arg) builds the "px:sz" string for keep_raw
 * sides (side->frags not NULL). 0 or -1. */
static int
apply_level(const Side *side, PyObject *price, PyObject *size, PyObject *(*make_frag)(void *), void *frag_arg)
{
    int nonzero = PyObject_IsTrue(size);
    if (nonzero < 0)
        return -1;
    int present = PyDict_Contains(side->book, price);
    if (present < 0)
        return -1;
    if (!nonzero && !present)
        return 0;
    Shadow *sh = usable_shadow(side->shadow, side->keys);
    long long value = 0;
    if (sh != NULL && shadow_price(&sh, price, &value) < 0)
        return -1;
    if (!nonzero)
        return drop_level(side, sh, price, value);
    int rc = 0;
    if (side->frags != NULL)
        rc = put_fragment(side, sh, price, value, present, make_frag, frag_arg);
    else if (!present)
        rc = insert_key(side, sh, price, value);
    return rc < 0 ? -1 : PyDict_SetItem(side->book, price, size);
}

static int
unpack_side(PyObject *obj, Side *side)
{
    if (!PyTuple_CheckExact(obj) || PyTuple_GET_SIZE(obj) != 4) {
        PyErr_SetString(PyExc_TypeError, "_levels: a side is (dict, keys, frags|None, shadow|None)");
        return -1;
    }
    side->book = PyTuple_GET_ITEM(obj, 0);
    side->keys = PyTuple_GET_ITEM(obj, 1);
    side->frags = PyTuple_GET_ITEM(obj, 2) == Py_None ? NULL : PyTuple_GET_ITEM(obj, 2);
    side->shadow = PyTuple_GET_ITEM(obj, 3);
    if (!PyList_CheckExact(side->keys) || (side->frags != NULL && !PyList_CheckExact(side->frags))
        || !PyDict_CheckExact(side->book)) {
        PyErr_SetString(PyExc_TypeError, "_levels: book side must be dict + list (+ list)");
        return -1;
    }
    return 0;
}

static int
contract_of(PyObject *obj, long long *contract)
{
    *contract = 0;
    if (obj == Py_None)
        return 0;
    int overflow = 0;
    *contract = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (*contract == -1 && PyErr_Occurred())
        return -1;
    if (overflow || *contract <= 0 || *contract >= SCALED_LIMIT) {
        PyErr_SetString(PyExc_ValueError, "_levels: contract size out of range");
        return -1;
    }
    return 0;
}

/* The argument tail both entry points share: (bid_side, ask_side, prices, sizes, price_miss,
 * size_miss, contract), read from args[0..6]. */
typedef struct {
    Side bid, ask;
    PyObject *prices, *sizes, *price_miss, *size_miss;
    long long contract;
} Target;

static int
unpack_target(PyObject *const *args, Target *t)
{
    if (unpack_side(args[0], &t->bid) < 0 || unpack_side(args[1], &t->ask) < 0 || contract_of(args[6], &t->contract) < 0)
        return -1;
    if (!PyDict_CheckExact(args[2]) || !PyDict_CheckExact(args[3])) {
        PyErr_SetString(PyExc_TypeError, "_levels: caches must be dicts");
        return -1;
    }
    t->prices = args[2];
    t->sizes = args[3];
    t->price_miss = args[4];
    t->size_miss = args[5];
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Levels as Python objects: [px, sz, ...] lists or tuples of str (L2Book.apply_levels). */
typedef struct {
    PyObject *px, *sz;
} TextPair;

static PyObject *
frag_of_texts(void *arg)
{
    TextPair *pair = (TextPair *)arg;
    return fragment(pair->px, pair->sz);
}

/* One [px, sz, ...] level applied to a side. The price is parsed before the size, so a level bad in
 * both reports the price. 0 or -1. */
static int
apply_object_level(PyObject *level, const Side *side, const Target *t)
{
    PyObject *px_text = NULL, *sz_text = NULL, *price = NULL, *size = NULL;
    int rc = -1;
    if ((px_text = level_item(level, 0)) == NULL || (price = price_of(px_text, t->prices, t->price_miss)) == NULL
        || (sz_text = level_item(level, 1)) == NULL
        || (size = size_of(sz_text, t->contract, t->sizes, t->size_miss)) == NULL)
        goto done;
    TextPair pair = {px_text, sz_text};
    rc = apply_level(side, price, size, frag_of_texts, &pair);
done:
    Py_XDECREF(px_text);
    Py_XDECREF(sz_text);
    Py_XDECREF(price);
    Py_XDECREF(size);
    return rc;
}

/* One side: the loop of L2Book.apply_levels_py (without fragments) or L2Book._apply_raw. 0 or -1. */
static int
apply_side(PyObject *levels, const Side *side, const Target *t)
{
    PyObject *seq = PySequence_Fast(levels, "levels must be iterable");
    if (seq == NULL)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    int rc = 0;
    for (Py_ssize_t i = 0; i < n && rc == 0; i++)
        rc = apply_object_level(items[i], side, t);
    Py_DECREF(seq);
    return rc;
}

/* apply_levels(bids, asks, bid_side, ask_side, prices, sizes, price_miss, size_miss, contract):
 * L2Book.apply_levels; a side is (dict, keys, frags or None, shadow or None); contract is the
 * scaled contract size or None (1). Bids first, then asks. */
static PyObject *
levels_apply_levels(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "apply_levels takes 9 arguments");
        return NULL;
    }
    Target t;
    if (unpack_target(args + 2, &t) < 0 || apply_side(args[0], &t.bid, &t) < 0 || apply_side(args[1], &t.ask, &t) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------------------------------------
 * Levels as a span table over a wire text (perpbot/book/_spans.h; L2Book.apply_spans). */
typedef struct {
    const char *base; /* the wire text */
    Py_ssize_t len;
    const LevelSpan *level;
} SpanText;

/* The wire text's bytes: a bytes object or a compact ASCII str. 0 or -1 (TypeError). */
static int
wire_text(PyObject *text, SpanText *out)
{
    if (PyBytes_CheckExact(text)) {
        out->base = PyBytes_AS_STRING(text);
        out->len = PyBytes_GET_SIZE(text);
        return 0;
    }
    if (PyUnicode_CheckExact(text) && PyUnicode_IS_COMPACT_ASCII(text)) {
        out->base = (const char *)PyUnicode_DATA(text);
        out->len = PyUnicode_GET_LENGTH(text);
        return 0;
    }
    PyErr_SetString(PyExc_TypeError, "spans index a bytes object or an ASCII str");
    return -1;
}

/* The table's header and levels, once its length and every span's bounds check out. 0 or -1. */
static int
read_table(PyObject *table, Py_ssize_t text_len, SpanHeader *header, const LevelSpan **levels)
{
    if (!PyBytes_CheckExact(table)) {
        PyErr_SetString(PyExc_TypeError, "a span table is bytes (see _spans.h)");
        return -1;
    }
    const char *data = PyBytes_AS_STRING(table);
    Py_ssize_t n = -1;
    if (PyBytes_GET_SIZE(table) >= (Py_ssize_t)sizeof(SpanHeader)) {
        memcpy(header, data, sizeof *header);
        n = (Py_ssize_t)header->n_bids + (Py_ssize_t)header->n_asks;
    }
    if (n < 0 || PyBytes_GET_SIZE(table) != (Py_ssize_t)sizeof(SpanHeader) + n * (Py_ssize_t)sizeof(LevelSpan)) {
        PyErr_SetString(PyExc_ValueError, "span table length does not match its counts");
        return -1;
    }
    *levels = (const LevelSpan *)(data + sizeof(SpanHeader));
    for (Py_ssize_t i = 0; i < n; i++) {
        const LevelSpan *level = &(*levels)[i];
        if ((Py_ssize_t)level->px + level->px_len > text_len || (Py_ssize_t)level->sz + level->sz_len > text_len) {
            PyErr_SetString(PyExc_ValueError, "a span lies outside the text");
            return -1;
        }
    }
    return 0;
}

/* The value the cache / miss function gives for a span C could not parse (raises like to_scaled). */
static PyObject *
span_fallback(const char *start, Py_ssize_t len, PyObject *cache, PyObject *miss)
{
    PyObject *text = PyUnicode_DecodeUTF8(start, len, NULL);
    if (text == NULL)
        return NULL;
    PyObject *value = cached(cache, miss, text);
    Py_DECREF(text);
    return value;
}

static PyObject *
span_price(const SpanText *st, const Target *t)
{
    const char *px = st->base + st->level->px;
    long long value;
    if (scaled_digits(px, st->level->px_len, &value))
        return PyLong_FromLongLong(value);
    return span_fallback(px, st->level->px_len, t->prices, t->price_miss);
}

static PyObject *
span_size(const SpanText *st, const Target *t)
{
    const char *sz = st->base + st->level->sz;
    long long value;
    if (scaled_digits(sz, st->level->sz_len, &value) && scaled_times_contract(value, t->contract, &value))
        return PyLong_FromLongLong(value);
    return span_fallback(sz, st->level->sz_len, t->sizes, t->size_miss);
}

/* "px:sz" of two UTF-8 spans that are not plain ASCII (never from the OKX parser, which takes ASCII only). */
static PyObject *
frag_of_utf8(const char *px, Py_ssize_t a, const char *sz, Py_ssize_t b)
{
    PyObject *px_text = PyUnicode_DecodeUTF8(px, a, NULL);
    PyObject *sz_text = px_text ? PyUnicode_DecodeUTF8(sz, b, NULL) : NULL;
    PyObject *frag = sz_text ? fragment(px_text, sz_text) : NULL;
    Py_XDECREF(px_text);
    Py_XDECREF(sz_text);
    return frag;
}

/* "px:sz" straight from the text (ASCII; any other byte: decoded as UTF-8, as the str would be). */
static PyObject *
frag_of_span(void *arg)
{
    const SpanText *st = (const SpanText *)arg;
    const char *px = st->base + st->level->px, *sz = st->base + st->level->sz;
    Py_ssize_t a = st->level->px_len, b = st->level->sz_len;
    unsigned char high = 0;
    for (Py_ssize_t i = 0; i < a; i++)
        high |= (unsigned char)px[i];
    for (Py_ssize_t i = 0; i < b; i++)
        high |= (unsigned char)sz[i];
    if (high & 0x80)
        return frag_of_utf8(px, a, sz, b);
    PyObject *frag = PyUnicode_New(a + b + 1, 127);
    if (frag == NULL)
        return NULL;
    char *dst = (char *)PyUnicode_DATA(frag);
    memcpy(dst, px, a);
    dst[a] = ':';
    memcpy(dst + a + 1, sz, b);
    return frag;
}

/* The spans of one side applied in order. 0 or -1. */
static int
apply_span_side(SpanText *st, const LevelSpan *levels, Py_ssize_t count, const Side *side, const Target *t)
{
    for (Py_ssize_t i = 0; i < count; i++) {
        st->level = &levels[i];
        PyObject *price = span_price(st, t);
        if (price == NULL)
            return -1;
        PyObject *size = span_size(st, t);
        if (size == NULL) {
            Py_DECREF(price);
            return -1;
        }
        int rc = apply_level(side, price, size, frag_of_span, st);
        Py_DECREF(price);
        Py_DECREF(size);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* apply_spans(text, table, bid_side, ask_side, prices, sizes, price_miss, size_miss, contract):
 * the levels of a span table over `text` applied as apply_levels applies the same strings. */
static PyObject *
levels_apply_spans(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "apply_spans takes 9 arguments");
        return NULL;
    }
    SpanText st = {NULL, 0, NULL};
    SpanHeader header;
    const LevelSpan *levels;
    Target t;
    if (wire_text(args[0], &st) < 0 || read_table(args[1], st.len, &header, &levels) < 0
        || unpack_target(args + 2, &t) < 0)
        return NULL;
    if (apply_span_side(&st, levels, header.n_bids, &t.bid, &t) < 0
        || apply_span_side(&st, levels + header.n_bids, header.n_asks, &t.ask, &t) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* scaled(text) -> the scaled int the C parser gives, or None where it defers to Python (tests). */
static PyObject *
levels_scaled(PyObject *module, PyObject *text)
{
    long long value;
    if (parse_scaled(text, &value))
        return PyLong_FromLongLong(value);
    Py_RETURN_NONE;
}

static PyMethodDef levels_methods[] = {
    {"scaled", (PyCFunction)levels_scaled, METH_O, "scaled(text) -> int, or None where C defers to to_scaled."},
    {"apply_levels", (PyCFunction)(void (*)(void))levels_apply_levels, METH_FASTCALL,
     "apply_levels(bids, asks, bid_side, ask_side, prices, sizes, price_miss, size_miss, contract): "
     "L2Book.apply_levels in C."},
    {"apply_spans", (PyCFunction)(void (*)(void))levels_apply_spans, METH_FASTCALL,
     "apply_spans(text, table, bid_side, ask_side, prices, sizes, price_miss, size_miss, contract): "
     "the levels of a span table over text (see _spans.h), as apply_levels would apply their strings."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef levels_module = {
    PyModuleDef_HEAD_INIT, "_levels", "The book's per-level loops in C (see _levels.c).", -1, levels_methods,
};

PyMODINIT_FUNC
PyInit__levels(void)
{
    if (PyType_Ready(&ShadowType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&levels_module);
    if (module == NULL)
        return NULL;
    Py_INCREF(&ShadowType);
    if (PyModule_AddObject(module, "Shadow", (PyObject *)&ShadowType) < 0) {
        Py_DECREF(&ShadowType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
