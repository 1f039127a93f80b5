/* The cloud's two per-record checks of a batch, compiled: the device's own form of a metric
 * record (protocol.batch._DEVICE_FORM, the pattern this matcher follows to the letter) and
 * the record tag (protocol.tag: HMAC-SHA256, truncated, as lowercase hex at the record's end).
 *
 * In CPython each record costs these checks a dozen calls, and the calls cost more than the
 * checks: here they are one loop over a batch. protocol.batch and cloud.services.tags use this
 * module when it was built and their own Python otherwise; tests hold the two to the same
 * answer on every input they draw. Nothing here parses into objects: orjson still reads the
 * records, and only once this says they are in the device's form.
 *
 * The hashing uses OpenSSL's SHA-256 (the same library CPython's hashlib uses), whose state
 * can be copied as a plain struct: the padded keys are hashed once per call.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define OPENSSL_SUPPRESS_DEPRECATED /* SHA256_Init & co: deprecated, not going away in 3.x */
#include <openssl/sha.h>
#include <math.h>
#include <string.h>

/* -- the device's form --------------------------------------------------------------- */

typedef struct {
    const unsigned char *p;
    const unsigned char *end;
} Cursor;

static int literal(Cursor *c, const char *text, size_t n) {
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, text, n) != 0)
        return 0;
    c->p += n;
    return 1;
}

#define LITERAL(c, text) literal((c), (text), sizeof(text) - 1)

static int at_digit(Cursor *c) {
    return c->p < c->end && *c->p >= '0' && *c->p <= '9';
}

/* [1-9][0-9]{0,more}: what follows it in the form is never a digit, so more digits fail */
static int positive(Cursor *c, int more) {
    if (c->p >= c->end || *c->p < '1' || *c->p > '9')
        return 0;
    c->p++;
    for (int k = 0; at_digit(c); k++) {
        if (k == more)
            return 0;
        c->p++;
    }
    return 1;
}

/* 0|[1-9][0-9]{0,more} */
static int natural(Cursor *c, int more) {
    if (c->p < c->end && *c->p == '0') {
        c->p++;
        return 1;
    }
    return positive(c, more);
}

static int digits(Cursor *c) { /* [0-9]+ */
    if (!at_digit(c))
        return 0;
    while (at_digit(c))
        c->p++;
    return 1;
}

/* -?(0|[1-9][0-9]{0,14})(\.[0-9]+)?([eE][+-]?[0-9]+)? | true | false */
static int value(Cursor *c) {
    if (LITERAL(c, "true") || LITERAL(c, "false"))
        return 1;
    if (c->p < c->end && *c->p == '-')
        c->p++;
    if (!natural(c, 14))
        return 0;
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        if (!digits(c))
            return 0;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-'))
            c->p++;
        if (!digits(c))
            return 0;
    }
    return 1;
}

/* "[a-z0-9_]{1,max_name}": */
static int metric_name(Cursor *c, long max_name) {
    if (!LITERAL(c, "\""))
        return 0;
    long n = 0;
    while (c->p < c->end && ((*c->p >= 'a' && *c->p <= 'z') || (*c->p >= '0' && *c->p <= '9')
                             || *c->p == '_')) {
        if (++n > max_name)
            return 0;
        c->p++;
    }
    return n > 0 && LITERAL(c, "\":");
}

/* [A-Za-z0-9][A-Za-z0-9_-]{0,max_id-1}" */
static int device_id(Cursor *c, long max_id) {
    long n = 0;
    while (c->p < c->end) {
        unsigned char ch = *c->p;
        int alnum = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
        if (!(alnum || (n > 0 && (ch == '_' || ch == '-'))))
            break;
        if (++n > max_id)
            return 0;
        c->p++;
    }
    return n > 0 && LITERAL(c, "\"");
}

static int lower_hex(Cursor *c, int n) {
    if (c->end - c->p < n)
        return 0;
    for (int k = 0; k < n; k++) {
        unsigned char ch = c->p[k];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
            return 0;
    }
    c->p += n;
    return 1;
}

static int in_device_form(const unsigned char *text, Py_ssize_t n, long max_id, long max_name,
                          long max_metrics) {
    Cursor c = {text, text + n};
    if (!LITERAL(&c, "{\"v\":2,\"d\":\"") || !device_id(&c, max_id)
        || !LITERAL(&c, ",\"i\":") || !positive(&c, 8)
        || !LITERAL(&c, ",\"s\":") || !positive(&c, 14)
        || !LITERAL(&c, ",\"t\":") || !natural(&c, 14)
        || !LITERAL(&c, ",\"m\":{"))
        return 0;
    if (c.p < c.end && *c.p != '}') {
        for (long count = 1;; count++) {
            if (count > max_metrics || !metric_name(&c, max_name) || !value(&c))
                return 0;
            if (!LITERAL(&c, ","))
                break;
        }
    }
    return LITERAL(&c, "},\"h\":\"") && lower_hex(&c, 32) && LITERAL(&c, "\"}") && c.p == c.end;
}

static PyObject *device_form(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *wires;
    long max_id, max_name, max_metrics;
    if (!PyArg_ParseTuple(args, "O!lll", &PyList_Type, &wires, &max_id, &max_name, &max_metrics))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(wires);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *wire = PyList_GET_ITEM(wires, i);
        if (!PyBytes_Check(wire)) {
            PyErr_SetString(PyExc_TypeError, "wires must be bytes");
            return NULL;
        }
        if (!in_device_form((const unsigned char *)PyBytes_AS_STRING(wire),
                            PyBytes_GET_SIZE(wire), max_id, max_name, max_metrics))
            return PyLong_FromSsize_t(i);
    }
    return PyLong_FromLong(-1);
}

/* -- the records of a batch in the device's form, read ---------------------------------- */

/* The keys of a record, made once (interned, as CPython's JSON decoders make them). */
static PyObject *field_v, *field_d, *field_i, *field_s, *field_t, *field_m, *field_h;

static long long integer_at(Cursor *c) { /* -?[0-9]+, at most 15 digits (the form's bound) */
    int negative = *c->p == '-';
    if (negative)
        c->p++;
    long long value = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
        value = value * 10 + (*c->p++ - '0');
    return negative ? -value : value;
}

/* A text already seen in this batch, kept so that runs of one device (and the same metric
 * names record after record) share one str object, as a JSON decoder's own cache does. */
typedef struct {
    const unsigned char *text;
    Py_ssize_t size;
    PyObject *str; /* a reference of its own (released by forget()) */
} Seen;

static PyObject *text_at(Seen *seen, const unsigned char *text, Py_ssize_t size) {
    if (seen->str != NULL && seen->size == size && memcmp(seen->text, text, (size_t)size) == 0)
        return Py_NewRef(seen->str);
    PyObject *str = PyUnicode_FromStringAndSize((const char *)text, size);
    if (str != NULL) {
        seen->text = text;
        seen->size = size;
        Py_XSETREF(seen->str, Py_NewRef(str));
    }
    return str;
}

static void forget(Seen *seen, long count) {
    for (long k = 0; k < count; k++)
        Py_CLEAR(seen[k].str);
}

/* a JSON number of the form as Python's JSON decoders read it: an int, or a float when it has
 * a fraction or an exponent (NULL without an exception: a float past the float's range) */
static PyObject *number_at(Cursor *c) {
    const unsigned char *start = c->p;
    int is_float = 0;
    while (c->p < c->end && *c->p != ',' && *c->p != '}') {
        if (*c->p == '.' || *c->p == 'e' || *c->p == 'E')
            is_float = 1;
        c->p++;
    }
    if (!is_float) {
        Cursor digits_only = {start, c->p};
        return PyLong_FromLongLong(integer_at(&digits_only));
    }
    char buffer[64];
    size_t size = (size_t)(c->p - start);
    if (size >= sizeof buffer) /* a float the form allows, written with 64 digits or more */
        return NULL;
    memcpy(buffer, start, size);
    buffer[size] = '\0';
    char *end = NULL;
    double value = PyOS_string_to_double(buffer, &end, NULL);
    if (value == -1.0 && PyErr_Occurred())
        return NULL;
    if (end != buffer + size || !isfinite(value))
        return NULL;
    return PyFloat_FromDouble(value);
}

static int set_owned(PyObject *dict, PyObject *key, PyObject *value) { /* steals value */
    if (value == NULL)
        return -1;
    int failed = PyDict_SetItem(dict, key, value);
    Py_DECREF(value);
    return failed;
}

/* The dict of one record already found in the device's form (in_device_form); NULL with an
 * exception on a failed allocation, NULL without one for a float past the float's range. */
static PyObject *record_of(const unsigned char *text, Py_ssize_t n, Seen *device, Seen *names,
                          int max_metrics) {
    Cursor c = {text, text + n};
    PyObject *record = PyDict_New(), *metrics = NULL;
    if (record == NULL)
        return NULL;
    c.p += sizeof("{\"v\":2,\"d\":\"") - 1;
    const unsigned char *id = c.p;
    while (*c.p != '"')
        c.p++;
    if (set_owned(record, field_v, PyLong_FromLong(2)) < 0
        || set_owned(record, field_d, text_at(device, id, c.p - id)) < 0)
        goto fail;
    c.p += sizeof("\",\"i\":") - 1;
    if (set_owned(record, field_i, PyLong_FromLongLong(integer_at(&c))) < 0)
        goto fail;
    c.p += sizeof(",\"s\":") - 1;
    if (set_owned(record, field_s, PyLong_FromLongLong(integer_at(&c))) < 0)
        goto fail;
    c.p += sizeof(",\"t\":") - 1;
    if (set_owned(record, field_t, PyLong_FromLongLong(integer_at(&c))) < 0)
        goto fail;
    c.p += sizeof(",\"m\":{") - 1;
    metrics = PyDict_New();
    if (metrics == NULL)
        goto fail;
    for (int k = 0; *c.p != '}'; k++) {
        if (*c.p == ',')
            c.p++;
        const unsigned char *name = ++c.p; /* past the opening quote */
        while (*c.p != '"')
            c.p++;
        PyObject *key = text_at(&names[k < max_metrics ? k : 0], name, c.p - name);
        if (key == NULL)
            goto fail;
        c.p += 2; /* ": */
        PyObject *value;
        if (*c.p == 't') {
            value = Py_NewRef(Py_True);
            c.p += 4;
        } else if (*c.p == 'f') {
            value = Py_NewRef(Py_False);
            c.p += 5;
        } else {
            value = number_at(&c);
        }
        if (value == NULL) {
            Py_DECREF(key);
            goto fail;
        }
        int failed = PyDict_SetItem(metrics, key, value);
        Py_DECREF(key);
        Py_DECREF(value);
        if (failed < 0)
            goto fail;
    }
    if (PyDict_SetItem(record, field_m, metrics) < 0)
        goto fail;
    Py_CLEAR(metrics);
    c.p += sizeof("},\"h\":\"") - 1;
    if (set_owned(record, field_h, PyUnicode_FromStringAndSize((const char *)c.p, 32)) < 0)
        goto fail;
    return record;
fail:
    Py_XDECREF(metrics);
    Py_DECREF(record);
    return NULL;
}

static PyObject *device_records(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *items;
    long max_id, max_name, max_metrics, max_bytes;
    if (!PyArg_ParseTuple(args, "O!llll", &PyList_Type, &items, &max_id, &max_name, &max_metrics,
                          &max_bytes))
        return NULL;
    if (max_metrics < 1 || max_metrics > 1024) {
        PyErr_SetString(PyExc_ValueError, "max_metrics must be 1..1024");
        return NULL;
    }
    /* a snapshot: the allocations below may run a collection, and with it any finalizer */
    PyObject *held = PySequence_Tuple(items);
    if (held == NULL)
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(held);
    for (Py_ssize_t i = 0; i < n; i++) { /* the form first: nothing is made for a batch off it */
        PyObject *item = PyTuple_GET_ITEM(held, i);
        if (!PyUnicode_CheckExact(item) || !PyUnicode_IS_COMPACT_ASCII(item)
            || PyUnicode_GET_LENGTH(item) > max_bytes
            || !in_device_form(PyUnicode_DATA(item), PyUnicode_GET_LENGTH(item), max_id, max_name,
                               max_metrics)) {
            Py_DECREF(held);
            Py_RETURN_NONE;
        }
    }
    Seen device = {NULL, 0, NULL};
    Seen *names = PyMem_Calloc((size_t)max_metrics, sizeof *names);
    PyObject *records = PyList_New(n), *wires = PyList_New(n), *out = NULL;
    if (names == NULL || records == NULL || wires == NULL) {
        if (names == NULL)
            PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(held, i);
        const unsigned char *text = PyUnicode_DATA(item);
        Py_ssize_t size = PyUnicode_GET_LENGTH(item);
        PyObject *record = record_of(text, size, &device, names, (int)max_metrics);
        if (record == NULL) {
            if (!PyErr_Occurred()) { /* a float past the float's range: the full check's */
                out = Py_NewRef(Py_None);
            }
            goto done;
        }
        PyList_SET_ITEM(records, i, record);
        PyObject *wire = PyBytes_FromStringAndSize((const char *)text, size);
        if (wire == NULL)
            goto done;
        PyList_SET_ITEM(wires, i, wire);
    }
    out = PyTuple_Pack(2, records, wires);
done:
    forget(&device, 1);
    if (names != NULL)
        forget(names, max_metrics);
    PyMem_Free(names);
    Py_XDECREF(records);
    Py_XDECREF(wires);
    Py_DECREF(held);
    return out;
}

/* -- tags -------------------------------------------------------------------------------- */

#define TAG_BYTES 16
#define SUFFIX 40 /* ,"h":"<32 hex>"} */

/* protocol.tag.verify: the wire ends in a tag member whose 32 lowercase hex are the first 16
 * bytes of HMAC-SHA256(key, the wire without that member). Compared in constant time. */
static int verified(const SHA256_CTX *inner, const SHA256_CTX *outer, const unsigned char *wire,
                    Py_ssize_t n) {
    static const char hex[] = "0123456789abcdef";
    if (n < SUFFIX + 2 || memcmp(wire + n - SUFFIX, ",\"h\":\"", 6) != 0
        || wire[n - 2] != '"' || wire[n - 1] != '}')
        return 0;
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256_CTX ctx = *inner;
    SHA256_Update(&ctx, wire, (size_t)(n - SUFFIX));
    SHA256_Update(&ctx, "}", 1);
    SHA256_Final(digest, &ctx);
    ctx = *outer;
    SHA256_Update(&ctx, digest, sizeof digest);
    SHA256_Final(digest, &ctx);
    const unsigned char *tag = wire + n - SUFFIX + 6;
    unsigned diff = 0;
    for (int k = 0; k < TAG_BYTES; k++)
        diff |= (unsigned)(hex[digest[k] >> 4] ^ tag[2 * k]) | (unsigned)(hex[digest[k] & 15] ^ tag[2 * k + 1]);
    return diff == 0;
}

static PyObject *tag_failures(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer inner_pad, outer_pad;
    PyObject *wires, *held = NULL, *out = NULL;
    if (!PyArg_ParseTuple(args, "y*y*O!", &inner_pad, &outer_pad, &PyList_Type, &wires))
        return NULL;
    const unsigned char **texts = NULL;
    Py_ssize_t *sizes = NULL;
    char *bad = NULL;
    if (inner_pad.len != 64 || outer_pad.len != 64) {
        PyErr_SetString(PyExc_ValueError, "the padded keys are 64 bytes each");
        goto done;
    }
    held = PySequence_Tuple(wires); /* holds the bytes while the loop runs without the GIL */
    if (held == NULL)
        goto done;
    Py_ssize_t n = PyTuple_GET_SIZE(held);
    texts = PyMem_Malloc((n ? n : 1) * sizeof *texts);
    sizes = PyMem_Malloc((n ? n : 1) * sizeof *sizes);
    bad = PyMem_Malloc(n ? n : 1);
    if (texts == NULL || sizes == NULL || bad == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *wire = PyTuple_GET_ITEM(held, i);
        if (!PyBytes_Check(wire)) {
            PyErr_SetString(PyExc_TypeError, "wires must be bytes");
            goto done;
        }
        texts[i] = (const unsigned char *)PyBytes_AS_STRING(wire);
        sizes[i] = PyBytes_GET_SIZE(wire);
    }
    SHA256_CTX inner, outer;
    SHA256_Init(&inner);
    SHA256_Update(&inner, inner_pad.buf, 64);
    SHA256_Init(&outer);
    SHA256_Update(&outer, outer_pad.buf, 64);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++)
        bad[i] = !verified(&inner, &outer, texts[i], sizes[i]);
    Py_END_ALLOW_THREADS
    out = PyList_New(0);
    for (Py_ssize_t i = 0; out != NULL && i < n; i++) {
        if (!bad[i])
            continue;
        PyObject *at = PyLong_FromSsize_t(i);
        if (at == NULL || PyList_Append(out, at) < 0)
            Py_CLEAR(out);
        Py_XDECREF(at);
    }
done:
    PyMem_Free(texts);
    PyMem_Free(sizes);
    PyMem_Free(bad);
    Py_XDECREF(held);
    PyBuffer_Release(&inner_pad);
    PyBuffer_Release(&outer_pad);
    return out;
}

static PyMethodDef methods[] = {
    {"device_records", device_records, METH_VARARGS,
     "device_records(items, max_id, max_name, max_metrics, max_bytes) -> (records, wires) of a\n"
     "batch's items (str) when every one is a metric record in the device's own form\n"
     "(protocol.batch._DEVICE_FORM) of at most max_bytes, each read as Python's JSON decoders\n"
     "read it; None otherwise."},
    {"device_form", device_form, METH_VARARGS,
     "device_form(wires, max_id, max_name, max_metrics) -> the index of the first wire (bytes)\n"
     "not in the device's own form of a metric record (protocol.batch._DEVICE_FORM), or -1."},
    {"tag_failures", tag_failures, METH_VARARGS,
     "tag_failures(inner_pad, outer_pad, wires) -> the indexes of the wires (bytes) whose tag\n"
     "does not verify (protocol.tag), under the key whose padded blocks (64 bytes each, the\n"
     "key XOR 0x36 and XOR 0x5c) are given."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastpath", NULL, -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastpath(void) {
    PyObject **keys[] = {&field_v, &field_d, &field_i, &field_s, &field_t, &field_m, &field_h};
    const char *names[] = {"v", "d", "i", "s", "t", "m", "h"};
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
        if (*keys[k] == NULL && (*keys[k] = PyUnicode_InternFromString(names[k])) == NULL)
            return NULL;
    }
    return PyModule_Create(&module);
}
