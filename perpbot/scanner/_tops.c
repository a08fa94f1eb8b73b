/* perpbot.scanner._tops: one base's screen products for the scanner's single TopScreen
 * (perpbot/scanner/scanner.py), held in C memory; perpbot/scanner/tops.py exposes the type (None
 * where it is not built or PERPBOT_PURE_PYTHON=1). Per book i of the base: sell factor s_i and buy
 * factor b_i (exact ints from the strategy's top_factors), the book's two key lists (bid_keys, ask_keys: an L2Book keeps the same list objects for life), and the
 * products best_bid x s_i (0 without bids or book) and best_ask x b_i (no value without asks or book).
 * refresh(i) recomputes book i's products from its lists and keeps the base's highest sell product and
 * lowest buy product as Scanner.scan's Python does (a full scan only when the book holding an extreme
 * moved off it); it returns max sell >= min buy: some pair may cross. Exactness: factors must fit in
 * [0, 2^62) (the constructor refuses others, and the scanner keeps its Python path for that base); a key
 * that is not an int in [0, 2^63) makes that book's products "always crosses" (sell = max, buy = 0), so
 * the scanner's exact Python evaluation decides. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

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

/* Book i's products from its key lists (see the top of the file). */
static void
tops_products_of(Tops *t, Py_ssize_t i, i128 *sp, i128 *bp)
{
    *sp = 0;
    *bp = TOPS_NO_ASK;
    PyObject *bids = t->bids[i], *asks = t->asks[i];
    if (bids == NULL)
        return;
    Py_ssize_t nb = PyList_GET_SIZE(bids), na = PyList_GET_SIZE(asks);
    long long best_bid = nb > 0 ? tops_key(PyList_GET_ITEM(bids, nb - 1)) : 0;
    long long best_ask = na > 0 ? tops_key(PyList_GET_ITEM(asks, 0)) : 0;
    if (best_bid < 0 || best_ask < 0) {
        *sp = TOPS_ALWAYS;
        *bp = 0;
        return;
    }
    if (nb > 0)
        *sp = (i128)best_bid * t->sell[i];
    if (na > 0)
        *bp = (i128)best_ask * t->buy[i];
}

/* The index of the highest sell product (high) or of the lowest buy product, first index first. */
static Py_ssize_t
tops_extreme(const i128 *products, Py_ssize_t n, int high)
{
    Py_ssize_t best = 0;
    for (Py_ssize_t k = 1; k < n; k++)
        if (high ? products[k] > products[best] : products[k] < products[best])
            best = k;
    return best;
}

/* Book i's products from its lists, then the extremes (as Scanner.scan's Python keeps them: a new
 * extreme replaces the old one; the book holding it moving away makes a full scan, first index first). */
static int
tops_update(Tops *t, Py_ssize_t i)
{
    i128 sp, bp;
    tops_products_of(t, i, &sp, &bp);
    t->sp[i] = sp;
    t->bp[i] = bp;
    if (sp >= t->hi) {
        t->hi = sp;
        t->hi_i = i;
    } else if (i == t->hi_i) {
        t->hi_i = tops_extreme(t->sp, t->n, 1);
        t->hi = t->sp[t->hi_i];
    }
    if (bp <= t->lo) {
        t->lo = bp;
        t->lo_i = i;
    } else if (i == t->lo_i) {
        t->lo_i = tops_extreme(t->bp, t->n, 0);
        t->lo = t->bp[t->lo_i];
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
    {"refresh", (PyCFunction)tops_refresh, METH_O, "refresh(i) -> bool: book i changed (see _tops.c)."},
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
    .tp_name = "perpbot.scanner._tops.Tops",
    .tp_basicsize = sizeof(Tops),
    .tp_dealloc = (destructor)tops_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One base's TopScreen products in C memory (see _tops.c).",
    .tp_methods = tops_methods,
    .tp_getset = tops_getset,
    .tp_new = tops_new,
};


static struct PyModuleDef tops_module = {
    PyModuleDef_HEAD_INIT, "_tops", "The scanner's TopScreen products in C (see _tops.c).", -1, NULL,
};

PyMODINIT_FUNC
PyInit__tops(void)
{
    if (PyType_Ready(&TopsType) < 0)
        return NULL;
    str_bid_keys = PyUnicode_InternFromString("bid_keys");
    str_ask_keys = PyUnicode_InternFromString("ask_keys");
    if (str_bid_keys == NULL || str_ask_keys == NULL)
        return NULL;
    PyObject *module = PyModule_Create(&tops_module);
    if (module == NULL)
        return NULL;
    Py_INCREF(&TopsType);
    if (PyModule_AddObject(module, "Tops", (PyObject *)&TopsType) < 0) {
        Py_DECREF(&TopsType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
