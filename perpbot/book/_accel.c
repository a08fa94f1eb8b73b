/* perpbot.book._accel: the book's per-level hot loops in C, over the very Python objects the pure
 * implementation (perpbot/book/l2.py) uses: the side dict {price: size}, the ascending key list,
 * the "px:sz" fragment list of keep_raw books, and the shared wire-text caches. Nothing is stored
 * here; every function does exactly what its Python twin in l2.py / venues/okx/parse.py does, level
 * by level and in the same order, so a level that raises leaves the levels before it applied, as
 * the Python loop would. Cache misses call back into Python (L2Book._price_miss / _size_miss), so
 * parsing, exactness checks and their error messages stay in one place (perpbot.core.numbers).
 *
 * Why: the interpreter's dispatch is most of the cost of a 5-level update in pure Python; here a
 * level costs a few dict operations and a binary search. tests/unit/book/test_accel.py checks the
 * C and Python paths give identical books, fragments, checksums and exceptions.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <dlfcn.h>

static PyObject *crc32_func = NULL; /* zlib.crc32: the same CRC the Python path uses */
/* zlib's crc32() itself, from the libz that Python's zlib module loaded (no zlib headers needed to
 * build); NULL when it cannot be found, and then zlib.crc32 is called on a bytes object. */
typedef unsigned long (*crc32_fn)(unsigned long, const unsigned char *, unsigned int);
static crc32_fn zlib_crc32 = NULL;

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

/* to_scaled (perpbot.core.numbers) for the plain case, in C: ASCII digits with at most one dot,
 * at most 9 decimals once trailing zeros past the 9th are dropped, times 10**9, when the result
 * fits in 62 bits. Returns 1 and sets *out, or 0 when the text is anything else (not a str, a sign,
 * an exponent, too many digits...): the caller then asks the Python function, which alone raises
 * the errors (and handles exact values of any size). */
#define SCALE 9
static const long long POW10[SCALE + 1] = {1LL, 10LL, 100LL, 1000LL, 10000LL, 100000LL, 1000000LL, 10000000LL,
                                           100000000LL, 1000000000LL};
#define SCALED_LIMIT (1LL << 62)

static int
parse_digits(const char *s, Py_ssize_t len, long long *out)
{
    if (len == 0 || len > 40)
        return 0;
    Py_ssize_t dot = -1;
    for (Py_ssize_t i = 0; i < len; i++) {
        if (s[i] == '.') {
            if (dot >= 0)
                return 0; /* a second dot */
            dot = i;
        } else if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
    }
    if (dot >= 0 && len == 1)
        return 0; /* "." alone: no digits */
    Py_ssize_t end = len; /* digits after the dot beyond SCALE must be zeros: drop them */
    if (dot >= 0) {
        while (end - dot - 1 > SCALE && s[end - 1] == '0')
            end--;
        if (end - dot - 1 > SCALE)
            return 0;
    }
    long long value = 0;
    int frac = 0;
    for (Py_ssize_t i = 0; i < end; i++) {
        if (i == dot)
            continue;
        if (value > (SCALED_LIMIT / 10))
            return 0;
        value = value * 10 + (s[i] - '0');
        if (dot >= 0 && i > dot)
            frac++;
    }
    long long mul = POW10[SCALE - frac];
    if (value > SCALED_LIMIT / mul)
        return 0;
    *out = value * mul;
    return 1;
}

static int
parse_scaled(PyObject *text, long long *out)
{
    if (!PyUnicode_CheckExact(text) || !PyUnicode_IS_COMPACT_ASCII(text))
        return 0;
    return parse_digits((const char *)PyUnicode_DATA(text), PyUnicode_GET_LENGTH(text), out);
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

/* The base-unit scaled size of `text`: size x contract / 10**9 when exact (contract 0: none). */
static PyObject *
size_of(PyObject *text, long long contract, PyObject *cache, PyObject *miss)
{
    long long value;
    if (parse_scaled(text, &value)) {
        if (contract == 0 || value == 0)
            return PyLong_FromLongLong(value);
        __int128 product = (__int128)value * contract;
        if (product % POW10[SCALE] == 0) {
            __int128 base = product / POW10[SCALE];
            if (base < SCALED_LIMIT)
                return PyLong_FromLongLong((long long)base);
        }
        /* off the grid or huge: the Python function raises or computes it */
    }
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
    .tp_name = "perpbot.book._accel.Shadow",
    .tp_basicsize = sizeof(Shadow),
    .tp_dealloc = (destructor)shadow_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A side's sorted keys as int64s (see _accel.c).",
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

/* One level's effect on a side, shared by the list and span loops: `price`, `size` (borrowed)
 * applied as the Python loop does; `frag` (borrowed, may be NULL when frags is NULL) the "px:sz"
 * string for keep_raw sides. 0 or -1. */
static int
apply_level(PyObject *book, PyObject *keys, PyObject *frags, PyObject *shadow_obj, PyObject *price,
            PyObject *size, PyObject *(*make_frag)(void *), void *frag_arg)
{
    int nonzero = PyObject_IsTrue(size);
    if (nonzero < 0)
        return -1;
    int present = PyDict_Contains(book, price);
    if (present < 0)
        return -1;
    if (!nonzero && !present)
        return 0;
    Shadow *sh = usable_shadow(shadow_obj, keys);
    long long value = 0;
    if (sh != NULL) {
        int overflow = 0;
        value = PyLong_AsLongLongAndOverflow(price, &overflow);
        if (value == -1 && PyErr_Occurred())
            return -1;
        if (overflow) {
            sh->usable = 0;
            sh = NULL;
        }
    }
    if (nonzero) {
        if (frags == NULL) {
            if (!present) {
                Py_ssize_t at = sh ? shadow_bisect(sh, value, 1) : bisect(keys, price, 1);
                if (at < 0 || PyList_Insert(keys, at, price) < 0)
                    return -1;
                if (sh && shadow_insert(sh, at, value) < 0)
                    return -1;
            }
        } else {
            Py_ssize_t at = sh ? shadow_bisect(sh, value, 0) : bisect(keys, price, 0);
            if (at < 0)
                return -1;
            PyObject *frag = make_frag(frag_arg);
            if (frag == NULL)
                return -1;
            if (present) {
                if (at >= PyList_GET_SIZE(frags)) { /* keys and frags out of step: never in a sound book */
                    Py_DECREF(frag);
                    PyErr_SetString(PyExc_IndexError, "list assignment index out of range");
                    return -1;
                }
                PyList_SetItem(frags, at, frag); /* steals frag */
            } else {
                if (PyList_Insert(keys, at, price) < 0 || PyList_Insert(frags, at, frag) < 0) {
                    Py_DECREF(frag);
                    return -1;
                }
                Py_DECREF(frag);
                if (sh && shadow_insert(sh, at, value) < 0)
                    return -1;
            }
        }
        return PyDict_SetItem(book, price, size);
    }
    if (PyDict_DelItem(book, price) < 0)
        return -1;
    Py_ssize_t at = sh ? shadow_bisect(sh, value, 0) : bisect(keys, price, 0);
    if (at < 0 || PySequence_DelItem(keys, at) < 0)
        return -1;
    if (sh)
        shadow_delete(sh, at);
    if (frags != NULL && PySequence_DelItem(frags, at) < 0)
        return -1;
    return 0;
}

typedef struct {
    PyObject *px, *sz;
} TextPair;

static PyObject *
frag_of_texts(void *arg)
{
    TextPair *pair = (TextPair *)arg;
    return fragment(pair->px, pair->sz);
}

/* One side: the loop of L2Book.apply_levels (frags == NULL) or L2Book._apply_raw. 0 or -1. */
static int
apply_side(PyObject *levels, PyObject *book, PyObject *keys, PyObject *frags, PyObject *shadow, PyObject *prices,
           PyObject *sizes, PyObject *price_miss, PyObject *size_miss, long long contract)
{
    if (!PyList_CheckExact(keys) || (frags != NULL && !PyList_CheckExact(frags)) || !PyDict_CheckExact(book)
        || !PyDict_CheckExact(prices) || !PyDict_CheckExact(sizes)) {
        PyErr_SetString(PyExc_TypeError, "_accel: book side must be dict + list (+ list)");
        return -1;
    }
    PyObject *seq = PySequence_Fast(levels, "levels must be iterable");
    if (seq == NULL)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    int rc = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *level = items[i];
        PyObject *px_text = NULL, *sz_text = NULL, *price = NULL, *size = NULL;
        /* The price is parsed before the size, so a level bad in both reports the price. */
        px_text = level_item(level, 0);
        if (px_text == NULL)
            goto fail;
        price = price_of(px_text, prices, price_miss);
        if (price == NULL)
            goto fail;
        sz_text = level_item(level, 1);
        if (sz_text == NULL)
            goto fail;
        size = size_of(sz_text, contract, sizes, size_miss);
        if (size == NULL)
            goto fail;
        TextPair pair = {px_text, sz_text};
        if (apply_level(book, keys, frags, shadow, price, size, frag_of_texts, &pair) < 0)
            goto fail;
        Py_DECREF(px_text);
        Py_DECREF(sz_text);
        Py_DECREF(price);
        Py_DECREF(size);
        continue;
    fail:
        Py_XDECREF(px_text);
        Py_XDECREF(sz_text);
        Py_XDECREF(price);
        Py_XDECREF(size);
        goto done;
    }
    rc = 0;
done:
    Py_DECREF(seq);
    return rc;
}

/* A side as L2Book hands it over: (dict, keys list, frags list or None, Shadow or None). */
typedef struct {
    PyObject *book, *keys, *frags, *shadow;
} Side;

static int
unpack_side(PyObject *obj, Side *side)
{
    if (!PyTuple_CheckExact(obj) || PyTuple_GET_SIZE(obj) != 4) {
        PyErr_SetString(PyExc_TypeError, "_accel: a side is (dict, keys, frags|None, shadow|None)");
        return -1;
    }
    side->book = PyTuple_GET_ITEM(obj, 0);
    side->keys = PyTuple_GET_ITEM(obj, 1);
    side->frags = PyTuple_GET_ITEM(obj, 2) == Py_None ? NULL : PyTuple_GET_ITEM(obj, 2);
    side->shadow = PyTuple_GET_ITEM(obj, 3);
    if (!PyList_CheckExact(side->keys) || (side->frags != NULL && !PyList_CheckExact(side->frags))
        || !PyDict_CheckExact(side->book)) {
        PyErr_SetString(PyExc_TypeError, "_accel: book side must be dict + list (+ list)");
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
        PyErr_SetString(PyExc_ValueError, "_accel: contract size out of range");
        return -1;
    }
    return 0;
}

/* The argument tail both entry points share: (bid_side, ask_side, prices, sizes, price_miss,
 * size_miss, contract), read from args[0..6]. 0 or -1. */
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
        PyErr_SetString(PyExc_TypeError, "_accel: caches must be dicts");
        return -1;
    }
    t->prices = args[2];
    t->sizes = args[3];
    t->price_miss = args[4];
    t->size_miss = args[5];
    return 0;
}

/* apply_levels(bids, asks, bid_side, ask_side, prices, sizes, price_miss, size_miss, contract):
 * L2Book.apply_levels; a side is (dict, keys, frags or None, shadow or None); contract is the
 * scaled contract size or None (1). Bids first, then asks. */
static PyObject *
accel_apply_levels(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "apply_levels takes 9 arguments");
        return NULL;
    }
    Target t;
    if (unpack_target(args + 2, &t) < 0)
        return NULL;
    if (apply_side(args[0], t.bid.book, t.bid.keys, t.bid.frags, t.bid.shadow, t.prices, t.sizes, t.price_miss,
                   t.size_miss, t.contract) < 0)
        return NULL;
    if (apply_side(args[1], t.ask.book, t.ask.keys, t.ask.frags, t.ask.shadow, t.prices, t.sizes, t.price_miss,
                   t.size_miss, t.contract) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* Appends the UTF-8 of str `s` to buf (growing it), returns 0 or -1. */
static int
append_str(char **buf, Py_ssize_t *len, Py_ssize_t *cap, char *stack, PyObject *s)
{
    Py_ssize_t n;
    const char *data;
    if (PyUnicode_CheckExact(s) && PyUnicode_IS_COMPACT_ASCII(s)) {
        n = PyUnicode_GET_LENGTH(s);
        data = (const char *)PyUnicode_DATA(s);
    } else {
        if (!PyUnicode_Check(s)) {
            PyErr_SetString(PyExc_TypeError, "sequence item: expected str instance");
            return -1;
        }
        data = PyUnicode_AsUTF8AndSize(s, &n);
        if (data == NULL)
            return -1;
    }
    if (*len + n + 1 > *cap) {
        Py_ssize_t want = (*len + n + 1) * 2;
        char *grown = PyMem_Malloc(want);
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memcpy(grown, *buf, *len);
        if (*buf != stack)
            PyMem_Free(*buf);
        *buf = grown;
        *cap = want;
    }
    memcpy(*buf + *len, data, n);
    *len += n;
    return 0;
}

/* okx_checksum(bid_frags, ask_frags, depth) -> signed CRC32 of
 * "bid1:ask1:bid2:ask2:..." over the best `depth` fragments of each side (bids are ascending, best
 * last), the longer side's rest following when one runs out: venues/okx/parse.py's checksum string. */
static PyObject *
accel_okx_checksum(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyList_CheckExact(args[0]) || !PyList_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "okx_checksum(bid_frags: list, ask_frags: list, depth: int)");
        return NULL;
    }
    Py_ssize_t depth = PyLong_AsSsize_t(args[2]);
    if (depth == -1 && PyErr_Occurred())
        return NULL;
    PyObject *bids = args[0], *asks = args[1];
    Py_ssize_t nb = PyList_GET_SIZE(bids), na = PyList_GET_SIZE(asks);
    if (depth < 0)
        depth = 0;
    if (nb > depth) nb = depth;
    if (na > depth) na = depth;
    Py_ssize_t top_bid = PyList_GET_SIZE(bids) - 1; /* best bid index */
    char stack[2048];
    char *buf = stack;
    Py_ssize_t len = 0, cap = sizeof(stack);
    Py_ssize_t most = nb > na ? nb : na;
    for (Py_ssize_t i = 0; i < most; i++) {
        for (int side = 0; side < 2; side++) {
            PyObject *frag;
            if (side == 0) {
                if (i >= nb) continue;
                frag = PyList_GET_ITEM(bids, top_bid - i);
            } else {
                if (i >= na) continue;
                frag = PyList_GET_ITEM(asks, i);
            }
            /* append_str leaves room for one more byte: the separator after each fragment. */
            if (append_str(&buf, &len, &cap, stack, frag) < 0) {
                if (buf != stack) PyMem_Free(buf);
                return NULL;
            }
            buf[len++] = ':';
        }
    }
    if (len > 0)
        len--; /* no separator after the last fragment */
    unsigned long value;
    if (zlib_crc32 != NULL && len < (Py_ssize_t)UINT_MAX) {
        value = zlib_crc32(0UL, (const unsigned char *)buf, (unsigned int)len) & 0xFFFFFFFFUL;
        if (buf != stack)
            PyMem_Free(buf);
    } else {
        PyObject *bytes = PyBytes_FromStringAndSize(buf, len);
        if (buf != stack)
            PyMem_Free(buf);
        if (bytes == NULL)
            return NULL;
        PyObject *crc = PyObject_CallOneArg(crc32_func, bytes);
        Py_DECREF(bytes);
        if (crc == NULL)
            return NULL;
        value = PyLong_AsUnsignedLong(crc);
        Py_DECREF(crc);
        if (value == (unsigned long)-1 && PyErr_Occurred())
            return NULL;
    }
    long long signed_value = (value & 0x80000000UL) ? (long long)value - 0x100000000LL : (long long)value;
    return PyLong_FromLongLong(signed_value);
}


/* ---------------------------------------------------------------------------------------------
 * OKX `books` update frames parsed straight from the wire text, for the fast path
 * (venues/okx/parse.apply_books_frame). A strict subset of JSON: exactly the frame shape
 * {"arg":{"channel":"books","instId":S},"action":"update","data":[{"asks":L,"bids":L,"ts":S,
 * "checksum":I,"seqId":I,"prevSeqId":I}]} in any key order, with whitespace, each key at most
 * once; levels are arrays of two or more strings. Anything else (another key, a null, an escape,
 * a non-ASCII byte, a fraction or exponent, an integer beyond 64 bits, trailing text...) makes
 * okx_peek return None before anything is touched, and the typed msgspec path, then the generic
 * one, decide as before. The level strings are not turned into Python objects: their spans in
 * the frame are kept (one frame at a time, the one okx_peek saw) and okx_apply turns them into
 * scaled ints directly.
 * ------------------------------------------------------------------------------------------- */
#define MAX_SIDE_LEVELS 512

typedef struct {
    Py_ssize_t px, px_len, sz, sz_len;
} Span;

static struct {
    PyObject *frame; /* strong reference: the frame the spans point into */
    const char *base;
    Py_ssize_t n_bids, n_asks;
    Span bids[MAX_SIDE_LEVELS];
    Span asks[MAX_SIDE_LEVELS];
} peeked = {NULL, NULL, 0, 0};

typedef struct {
    const char *s;
    Py_ssize_t i, n;
} Cursor;

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

/* A string with no escape: sets its span (without quotes). 1 or 0. */
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
is_key(Cursor *c, Py_ssize_t start, Py_ssize_t len, const char *name)
{
    return (Py_ssize_t)strlen(name) == len && memcmp(c->s + start, name, len) == 0;
}

/* A JSON integer that fits in a signed 64-bit value (msgspec's int). 1 or 0. */
static int
integer(Cursor *c, long long *out)
{
    ws(c);
    Py_ssize_t j = c->i;
    int negative = 0;
    if (j < c->n && c->s[j] == '-') {
        negative = 1;
        j++;
    }
    Py_ssize_t first = j;
    unsigned long long value = 0;
    while (j < c->n && c->s[j] >= '0' && c->s[j] <= '9') {
        if (j - first >= 19)
            return 0; /* 20+ digits: beyond 64 bits (or a leading-zero run) */
        value = value * 10 + (unsigned long long)(c->s[j] - '0');
        j++;
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

/* [[s, s, ...], ...] into spans (first two strings of each level). 1 or 0. */
static int
levels(Cursor *c, Span *out, Py_ssize_t *count)
{
    if (!expect(c, '['))
        return 0;
    *count = 0;
    if (expect(c, ']'))
        return 1;
    do {
        if (*count >= MAX_SIDE_LEVELS || !expect(c, '['))
            return 0;
        Span *level = &out[*count];
        if (!string(c, &level->px, &level->px_len) || !expect(c, ',') || !string(c, &level->sz, &level->sz_len))
            return 0;
        while (expect(c, ',')) {
            Py_ssize_t a, b;
            if (!string(c, &a, &b))
                return 0;
        }
        if (!expect(c, ']'))
            return 0;
        (*count)++;
    } while (expect(c, ','));
    return expect(c, ']');
}

/* okx_peek(frame) -> (instId, ts_ms, seqId|None, prevSeqId|None, checksum|None) or None. */
static PyObject *
accel_okx_peek(PyObject *module, PyObject *frame)
{
    Cursor c;
    if (PyBytes_CheckExact(frame)) {
        c.s = PyBytes_AS_STRING(frame);
        c.n = PyBytes_GET_SIZE(frame);
    } else if (PyUnicode_CheckExact(frame) && PyUnicode_IS_COMPACT_ASCII(frame)) {
        c.s = (const char *)PyUnicode_DATA(frame);
        c.n = PyUnicode_GET_LENGTH(frame);
    } else {
        Py_RETURN_NONE;
    }
    c.i = 0;
    Py_ssize_t inst = -1, inst_len = 0, ts = -1, ts_len = 0, nb = 0, na = 0;
    long long seq = 0, prev = 0, checksum = 0;
    int have_seq = 0, have_prev = 0, have_checksum = 0, have_bids = 0, have_asks = 0;
    int have_arg = 0, have_action = 0, have_data = 0, have_channel = 0;
    Py_ssize_t k, klen, v, vlen;
    /* The spans go straight into the shared buffer: it is only trusted once peeked.frame is set. */
    Py_CLEAR(peeked.frame);
    if (!expect(&c, '{'))
        Py_RETURN_NONE;
    do {
        if (!string(&c, &k, &klen) || !expect(&c, ':'))
            Py_RETURN_NONE;
        if (is_key(&c, k, klen, "arg") && !have_arg) {
            have_arg = 1;
            if (!expect(&c, '{'))
                Py_RETURN_NONE;
            do {
                if (!string(&c, &k, &klen) || !expect(&c, ':') || !string(&c, &v, &vlen))
                    Py_RETURN_NONE;
                if (is_key(&c, k, klen, "channel") && !have_channel) {
                    if (!is_key(&c, v, vlen, "books"))
                        Py_RETURN_NONE;
                    have_channel = 1;
                } else if (is_key(&c, k, klen, "instId") && inst < 0) {
                    inst = v;
                    inst_len = vlen;
                } else {
                    Py_RETURN_NONE;
                }
            } while (expect(&c, ','));
            if (!expect(&c, '}'))
                Py_RETURN_NONE;
        } else if (is_key(&c, k, klen, "action") && !have_action) {
            if (!string(&c, &v, &vlen) || !is_key(&c, v, vlen, "update"))
                Py_RETURN_NONE;
            have_action = 1;
        } else if (is_key(&c, k, klen, "data") && !have_data) {
            have_data = 1;
            if (!expect(&c, '[') || !expect(&c, '{'))
                Py_RETURN_NONE;
            do {
                if (!string(&c, &k, &klen) || !expect(&c, ':'))
                    Py_RETURN_NONE;
                if (is_key(&c, k, klen, "bids") && !have_bids) {
                    if (!levels(&c, peeked.bids, &nb))
                        Py_RETURN_NONE;
                    have_bids = 1;
                } else if (is_key(&c, k, klen, "asks") && !have_asks) {
                    if (!levels(&c, peeked.asks, &na))
                        Py_RETURN_NONE;
                    have_asks = 1;
                } else if (is_key(&c, k, klen, "ts") && ts < 0) {
                    if (!string(&c, &ts, &ts_len))
                        Py_RETURN_NONE;
                } else if (is_key(&c, k, klen, "seqId") && !have_seq) {
                    if (!integer(&c, &seq))
                        Py_RETURN_NONE;
                    have_seq = 1;
                } else if (is_key(&c, k, klen, "prevSeqId") && !have_prev) {
                    if (!integer(&c, &prev))
                        Py_RETURN_NONE;
                    have_prev = 1;
                } else if (is_key(&c, k, klen, "checksum") && !have_checksum) {
                    if (!integer(&c, &checksum))
                        Py_RETURN_NONE;
                    have_checksum = 1;
                } else {
                    Py_RETURN_NONE;
                }
            } while (expect(&c, ','));
            if (!expect(&c, '}') || !expect(&c, ']'))
                Py_RETURN_NONE; /* exactly one item */
        } else {
            Py_RETURN_NONE;
        }
    } while (expect(&c, ','));
    if (!expect(&c, '}'))
        Py_RETURN_NONE;
    ws(&c);
    if (c.i != c.n || !have_arg || !have_channel || inst < 0 || !have_action || !have_data || !have_bids
        || !have_asks || ts < 0)
        Py_RETURN_NONE;
    /* ts: 1 to 18 ASCII digits (a longer one is the generic path's to refuse). */
    if (ts_len < 1 || ts_len > 18)
        Py_RETURN_NONE;
    long long ts_ms = 0;
    for (Py_ssize_t j = 0; j < ts_len; j++) {
        char ch = c.s[ts + j];
        if (ch < '0' || ch > '9')
            Py_RETURN_NONE;
        ts_ms = ts_ms * 10 + (ch - '0');
    }
    PyObject *inst_id = PyUnicode_FromStringAndSize(c.s + inst, inst_len);
    if (inst_id == NULL)
        return NULL;
    PyObject *out = PyTuple_New(5);
    if (out == NULL) {
        Py_DECREF(inst_id);
        return NULL;
    }
    PyTuple_SET_ITEM(out, 0, inst_id);
    PyObject *items[4] = {PyLong_FromLongLong(ts_ms), NULL, NULL, NULL};
    items[1] = have_seq ? PyLong_FromLongLong(seq) : Py_NewRef(Py_None);
    items[2] = have_prev ? PyLong_FromLongLong(prev) : Py_NewRef(Py_None);
    items[3] = have_checksum ? PyLong_FromLongLong(checksum) : Py_NewRef(Py_None);
    for (int j = 0; j < 4; j++) {
        if (items[j] == NULL) {
            for (int m = j + 1; m < 4; m++)
                Py_XDECREF(items[m]);
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(out, j + 1, items[j]);
    }
    peeked.frame = Py_NewRef(frame);
    peeked.base = c.s;
    peeked.n_bids = nb;
    peeked.n_asks = na;
    return out;
}

/* A span as a str (for the Python miss functions and their error messages). */
static PyObject *
span_text(Py_ssize_t start, Py_ssize_t len)
{
    return PyUnicode_FromStringAndSize(peeked.base + start, len);
}

static int
parse_span(Py_ssize_t start, Py_ssize_t len, long long *out)
{
    return parse_digits(peeked.base + start, len, out);
}

/* The value the cache / miss function gives for a span C could not parse (raises like to_scaled). */
static PyObject *
span_fallback(Py_ssize_t start, Py_ssize_t len, PyObject *cache, PyObject *miss)
{
    PyObject *text = span_text(start, len);
    if (text == NULL)
        return NULL;
    PyObject *value = cached(cache, miss, text);
    Py_DECREF(text);
    return value;
}

typedef struct {
    const Span *level;
} SpanFrag;

static PyObject *
frag_of_span(void *arg)
{
    const Span *level = ((SpanFrag *)arg)->level;
    PyObject *frag = PyUnicode_New(level->px_len + level->sz_len + 1, 127);
    if (frag == NULL)
        return NULL;
    char *dst = (char *)PyUnicode_DATA(frag);
    memcpy(dst, peeked.base + level->px, level->px_len);
    dst[level->px_len] = ':';
    memcpy(dst + level->px_len + 1, peeked.base + level->sz, level->sz_len);
    return frag;
}

static int
apply_spans(const Span *spans, Py_ssize_t count, const Side *side, PyObject *prices, PyObject *sizes,
            PyObject *price_miss, PyObject *size_miss, long long contract)
{
    for (Py_ssize_t i = 0; i < count; i++) {
        const Span *level = &spans[i];
        PyObject *price, *size;
        long long value;
        if (parse_span(level->px, level->px_len, &value))
            price = PyLong_FromLongLong(value);
        else
            price = span_fallback(level->px, level->px_len, prices, price_miss);
        if (price == NULL)
            return -1;
        size = NULL;
        if (parse_span(level->sz, level->sz_len, &value)) {
            if (contract == 0 || value == 0) {
                size = PyLong_FromLongLong(value);
            } else {
                __int128 product = (__int128)value * contract;
                if (product % POW10[SCALE] == 0 && product / POW10[SCALE] < SCALED_LIMIT)
                    size = PyLong_FromLongLong((long long)(product / POW10[SCALE]));
                else
                    size = span_fallback(level->sz, level->sz_len, sizes, size_miss);
            }
        } else {
            size = span_fallback(level->sz, level->sz_len, sizes, size_miss);
        }
        if (size == NULL) {
            Py_DECREF(price);
            return -1;
        }
        SpanFrag arg = {level};
        int rc = apply_level(side->book, side->keys, side->frags, side->shadow, price, size, frag_of_span, &arg);
        Py_DECREF(price);
        Py_DECREF(size);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* okx_apply(frame, bid_side, ask_side, prices, sizes, price_miss, size_miss, contract): the levels of
 * the frame okx_peek accepted last, applied as L2Book.apply_levels(item.bids, item.asks) would. */
static PyObject *
accel_okx_apply(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "okx_apply takes 8 arguments");
        return NULL;
    }
    if (peeked.frame == NULL || peeked.frame != args[0]) {
        PyErr_SetString(PyExc_RuntimeError, "okx_apply: not the frame okx_peek accepted last");
        return NULL;
    }
    Target t;
    if (unpack_target(args + 1, &t) < 0)
        return NULL;
    int rc = apply_spans(peeked.bids, peeked.n_bids, &t.bid, t.prices, t.sizes, t.price_miss, t.size_miss, t.contract);
    if (rc == 0)
        rc = apply_spans(peeked.asks, peeked.n_asks, &t.ask, t.prices, t.sizes, t.price_miss, t.size_miss, t.contract);
    Py_CLEAR(peeked.frame);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* scaled(text) -> the scaled int the C parser gives, or None where it defers to Python (tests). */
static PyObject *
accel_scaled(PyObject *module, PyObject *text)
{
    long long value;
    if (parse_scaled(text, &value))
        return PyLong_FromLongLong(value);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ scanner: Tops
 * One base's screen products for the scanner's single TopScreen (perpbot/scanner/scanner.py), held in C
 * memory: per book i, sell factor s_i and buy factor b_i (exact ints from the strategy's top_factors),
 * the book's two key lists (bid_keys, ask_keys: an L2Book keeps the same list objects for life), and the
 * products best_bid x s_i (0 without bids or book) and best_ask x b_i (no value without asks or book).
 * refresh(i) recomputes book i's products from its lists and keeps the base's highest sell product and
 * lowest buy product as Scanner.scan's Python does (a full scan only when the book holding an extreme
 * moved off it); it returns max sell >= min buy: some pair may cross. Exactness: factors must fit in
 * [0, 2^62) (the constructor refuses others, and the scanner keeps its Python path for that base); a key
 * that is not an int in [0, 2^63) makes that book's products "always crosses" (sell = max, buy = 0), so
 * the scanner's exact Python evaluation decides. */
typedef __int128 i128;
#define TOPS_NO_ASK (((i128)1 << 126))
#define TOPS_ALWAYS ((((i128)1 << 125)))

typedef struct {
    PyObject_HEAD
    Py_ssize_t n;
    long long *sell, *buy;
    i128 *sp, *bp;
    PyObject **bids, **asks; /* strong references, or NULL (no book) */
    i128 hi, lo;             /* the highest sell product (at hi_i), the lowest buy product (at lo_i) */
    Py_ssize_t hi_i, lo_i;
} Tops;

static PyTypeObject TopsType;
static PyObject *str_bid_keys, *str_ask_keys;

static void
tops_dealloc(Tops *t)
{
    for (Py_ssize_t i = 0; i < t->n; i++) {
        if (t->bids)
            Py_XDECREF(t->bids[i]);
        if (t->asks)
            Py_XDECREF(t->asks[i]);
    }
    PyMem_Free(t->sell);
    PyMem_Free(t->buy);
    PyMem_Free(t->sp);
    PyMem_Free(t->bp);
    PyMem_Free(t->bids);
    PyMem_Free(t->asks);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

static int
tops_factor(PyObject *value, long long *out)
{
    int overflow = 0;
    long long v = PyLong_Check(value) ? PyLong_AsLongLongAndOverflow(value, &overflow) : -1;
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (!PyLong_Check(value) || overflow || v < 0 || v >= (1LL << 62)) {
        PyErr_SetString(PyExc_ValueError, "Tops: a factor is not an int in [0, 2**62)");
        return -1;
    }
    *out = v;
    return 0;
}

/* Tops(factors): factors is a list of (sell, buy) int pairs, one per book of the base. */
static PyObject *
tops_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *factors;
    if (!PyArg_ParseTuple(args, "O!", &PyList_Type, &factors))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(factors);
    if (n < 1) {
        PyErr_SetString(PyExc_ValueError, "Tops: no books");
        return NULL;
    }
    Tops *t = (Tops *)type->tp_alloc(type, 0);
    if (t == NULL)
        return NULL;
    t->sell = PyMem_Calloc((size_t)n, sizeof(long long));
    t->buy = PyMem_Calloc((size_t)n, sizeof(long long));
    t->sp = PyMem_Calloc((size_t)n, sizeof(i128));
    t->bp = PyMem_Calloc((size_t)n, sizeof(i128));
    t->bids = PyMem_Calloc((size_t)n, sizeof(PyObject *));
    t->asks = PyMem_Calloc((size_t)n, sizeof(PyObject *));
    t->n = n;
    if (!t->sell || !t->buy || !t->sp || !t->bp || !t->bids || !t->asks) {
        Py_DECREF(t);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PyList_GET_ITEM(factors, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            Py_DECREF(t);
            PyErr_SetString(PyExc_TypeError, "Tops: factors are (sell, buy) tuples");
            return NULL;
        }
        if (tops_factor(PyTuple_GET_ITEM(pair, 0), &t->sell[i]) < 0 ||
            tops_factor(PyTuple_GET_ITEM(pair, 1), &t->buy[i]) < 0) {
            Py_DECREF(t);
            return NULL;
        }
        t->sp[i] = 0;
        t->bp[i] = TOPS_NO_ASK;
    }
    t->hi_i = t->lo_i = 0;
    t->hi = 0;
    t->lo = TOPS_NO_ASK;
    return (PyObject *)t;
}

/* The int64 value of a book key, or -1 where it is not an int in [0, 2^63). */
static long long
tops_key(PyObject *key)
{
    if (!PyLong_Check(key))
        return -1;
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(key, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    return overflow || v < 0 ? -1 : v;
}

static int
tops_index(Tops *t, PyObject *arg, Py_ssize_t *out)
{
    Py_ssize_t i = PyLong_AsSsize_t(arg);
    if (i == -1 && PyErr_Occurred())
        return -1;
    if (i < 0 || i >= t->n) {
        PyErr_SetString(PyExc_IndexError, "Tops: book index out of range");
        return -1;
    }
    *out = i;
    return 0;
}

/* Book i's products from its lists, then the extremes (as Scanner.scan's Python keeps them: a new
 * extreme replaces the old one; the book holding it moving away makes a full scan, first index first). */
static int
tops_update(Tops *t, Py_ssize_t i)
{
    i128 sp = 0, bp = TOPS_NO_ASK;
    PyObject *bids = t->bids[i], *asks = t->asks[i];
    if (bids != NULL) {
        int bad = 0;
        Py_ssize_t nb = PyList_GET_SIZE(bids), na = PyList_GET_SIZE(asks);
        if (nb > 0) {
            long long v = tops_key(PyList_GET_ITEM(bids, nb - 1));
            if (v < 0)
                bad = 1;
            else
                sp = (i128)v * t->sell[i];
        }
        if (na > 0) {
            long long v = tops_key(PyList_GET_ITEM(asks, 0));
            if (v < 0)
                bad = 1;
            else
                bp = (i128)v * t->buy[i];
        }
        if (bad) {
            sp = TOPS_ALWAYS;
            bp = 0;
        }
    }
    t->sp[i] = sp;
    t->bp[i] = bp;
    if (sp >= t->hi) {
        t->hi = sp;
        t->hi_i = i;
    } else if (i == t->hi_i) {
        Py_ssize_t best = 0;
        for (Py_ssize_t k = 1; k < t->n; k++)
            if (t->sp[k] > t->sp[best])
                best = k;
        t->hi_i = best;
        t->hi = t->sp[best];
    }
    if (bp <= t->lo) {
        t->lo = bp;
        t->lo_i = i;
    } else if (i == t->lo_i) {
        Py_ssize_t best = 0;
        for (Py_ssize_t k = 1; k < t->n; k++)
            if (t->bp[k] < t->bp[best])
                best = k;
        t->lo_i = best;
        t->lo = t->bp[best];
    }
    return t->hi >= t->lo;
}

/* refresh(i) -> bool: book i changed; its products and the extremes; True where some pair may cross. */
static PyObject *
tops_refresh(Tops *t, PyObject *arg)
{
    Py_ssize_t i;
    if (tops_index(t, arg, &i) < 0)
        return NULL;
    return PyBool_FromLong(tops_update(t, i));
}

/* bind(i, book) -> bool: book i is now `book` (an L2Book, or None: no book); then refresh(i). */
static PyObject *
tops_bind(Tops *t, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t i;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "bind(i, book)");
        return NULL;
    }
    if (tops_index(t, args[0], &i) < 0)
        return NULL;
    PyObject *bids = NULL, *asks = NULL;
    if (args[1] != Py_None) {
        bids = PyObject_GetAttr(args[1], str_bid_keys);
        if (bids == NULL)
            return NULL;
        asks = PyObject_GetAttr(args[1], str_ask_keys);
        if (asks == NULL) {
            Py_DECREF(bids);
            return NULL;
        }
        if (!PyList_Check(bids) || !PyList_Check(asks)) {
            Py_DECREF(bids);
            Py_DECREF(asks);
            PyErr_SetString(PyExc_TypeError, "Tops.bind: a book's bid_keys and ask_keys must be lists");
            return NULL;
        }
    }
    Py_XSETREF(t->bids[i], bids);
    Py_XSETREF(t->asks[i], asks);
    return PyBool_FromLong(tops_update(t, i));
}

static PyObject *
tops_int(i128 v)
{
    /* v >= 0 always here: (v >> 64) << 64 | low, built from two 64-bit halves */
    PyObject *high = PyLong_FromUnsignedLongLong((unsigned long long)(v >> 64));
    PyObject *low = PyLong_FromUnsignedLongLong((unsigned long long)v);
    PyObject *sixty_four = PyLong_FromLong(64);
    PyObject *out = NULL, *shifted = NULL;
    if (high && low && sixty_four && (shifted = PyNumber_Lshift(high, sixty_four)) != NULL)
        out = PyNumber_Or(shifted, low);
    Py_XDECREF(high);
    Py_XDECREF(low);
    Py_XDECREF(sixty_four);
    Py_XDECREF(shifted);
    return out;
}

/* products(i) -> (sell product, buy product or None without asks): tests compare them with Python's. */
static PyObject *
tops_products(Tops *t, PyObject *arg)
{
    Py_ssize_t i;
    if (tops_index(t, arg, &i) < 0)
        return NULL;
    PyObject *sp = tops_int(t->sp[i]);
    if (sp == NULL)
        return NULL;
    if (t->bp[i] == TOPS_NO_ASK)
        return Py_BuildValue("(NO)", sp, Py_None);
    PyObject *bp = tops_int(t->bp[i]);
    if (bp == NULL) {
        Py_DECREF(sp);
        return NULL;
    }
    return Py_BuildValue("(NN)", sp, bp);
}

/* crossing_among(free) -> bool: some book of `free` (a list of indices) has a sell product reaching another's
 * (or its own) buy product: _BaseScreen.top_may_enter over the books no open trade holds. */
static PyObject *
tops_crossing_among(Tops *t, PyObject *free)
{
    if (!PyList_Check(free)) {
        PyErr_SetString(PyExc_TypeError, "crossing_among(free): a list of book indices");
        return NULL;
    }
    Py_ssize_t m = PyList_GET_SIZE(free);
    if (m == 0)
        Py_RETURN_FALSE;
    i128 hi = -1, lo = TOPS_NO_ASK;
    for (Py_ssize_t k = 0; k < m; k++) {
        Py_ssize_t i;
        if (tops_index(t, PyList_GET_ITEM(free, k), &i) < 0)
            return NULL;
        if (t->sp[i] > hi)
            hi = t->sp[i];
        if (t->bp[i] < lo)
            lo = t->bp[i];
    }
    return PyBool_FromLong(hi >= lo);
}

static PyObject *
tops_get_crossing(Tops *t, void *closure)
{
    return PyBool_FromLong(t->hi >= t->lo);
}

static PyMethodDef tops_methods[] = {
    {"refresh", (PyCFunction)tops_refresh, METH_O, "refresh(i) -> bool: book i changed (see _accel.c)."},
    {"bind", (PyCFunction)(void (*)(void))tops_bind, METH_FASTCALL, "bind(i, book) -> bool: book i is `book`."},
    {"products", (PyCFunction)tops_products, METH_O, "products(i) -> (sell, buy or None)."},
    {"crossing_among", (PyCFunction)tops_crossing_among, METH_O,
     "crossing_among(free) -> bool: the verdict over the books at the indices in `free`."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef tops_getset[] = {
    {"crossing", (getter)tops_get_crossing, NULL, "max sell product >= min buy product", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject TopsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "perpbot.book._accel.Tops",
    .tp_basicsize = sizeof(Tops),
    .tp_dealloc = (destructor)tops_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One base's TopScreen products in C memory (see _accel.c).",
    .tp_methods = tops_methods,
    .tp_getset = tops_getset,
    .tp_new = tops_new,
};

/* crc_source() -> "libz" or "zlib.crc32": which CRC32 okx_checksum calls (tests, bench notes). */
static PyObject *
accel_crc_source(PyObject *module, PyObject *unused)
{
    return PyUnicode_FromString(zlib_crc32 != NULL ? "libz" : "zlib.crc32");
}

static PyMethodDef accel_methods[] = {
    {"crc_source", (PyCFunction)accel_crc_source, METH_NOARGS, "crc_source() -> which CRC32 okx_checksum uses."},
    {"scaled", (PyCFunction)accel_scaled, METH_O, "scaled(text) -> int, or None where C defers to to_scaled."},
    {"apply_levels", (PyCFunction)(void (*)(void))accel_apply_levels, METH_FASTCALL,
     "apply_levels(bids, asks, bid_side, ask_side, prices, sizes, price_miss, size_miss, contract): "
     "L2Book.apply_levels in C."},
    {"okx_peek", (PyCFunction)accel_okx_peek, METH_O,
     "okx_peek(frame) -> (instId, ts_ms, seqId, prevSeqId, checksum) of a plain OKX books update, or None."},
    {"okx_apply", (PyCFunction)(void (*)(void))accel_okx_apply, METH_FASTCALL,
     "okx_apply(frame, bid_side, ask_side, prices, sizes, price_miss, size_miss, contract): apply the levels of "
     "the frame okx_peek accepted last."},
    {"okx_checksum", (PyCFunction)(void (*)(void))accel_okx_checksum, METH_FASTCALL,
     "okx_checksum(bid_frags, ask_frags, depth) -> signed CRC32 of the OKX checksum string."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef accel_module = {
    PyModuleDef_HEAD_INIT, "_accel", "C loops for perpbot.book (see _accel.c).", -1, accel_methods,
};

PyMODINIT_FUNC
PyInit__accel(void)
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
    if (PyType_Ready(&ShadowType) < 0 || PyType_Ready(&TopsType) < 0)
        return NULL;
    str_bid_keys = PyUnicode_InternFromString("bid_keys");
    str_ask_keys = PyUnicode_InternFromString("ask_keys");
    if (str_bid_keys == NULL || str_ask_keys == NULL)
        return NULL;
    PyObject *module = PyModule_Create(&accel_module);
    if (module == NULL)
        return NULL;
    Py_INCREF(&ShadowType);
    if (PyModule_AddObject(module, "Shadow", (PyObject *)&ShadowType) < 0) {
        Py_DECREF(&ShadowType);
        Py_DECREF(module);
        return NULL;
    }
    Py_INCREF(&TopsType);
    if (PyModule_AddObject(module, "Tops", (PyObject *)&TopsType) < 0) {
        Py_DECREF(&TopsType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
