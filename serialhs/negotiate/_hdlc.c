/*
 * serialhs.negotiate._hdlc: the receive path's byte un-stuffing in C.
 *
 * unescape(data) undoes the escaping of docs/protocol.md section 2 on the bytes
 * between two flags: each 0x7D and the byte after it become that byte XOR 0x20.
 * An escape byte last (an abort) or followed by another escape byte raises
 * ValueError; the Python caller then names the fault (serialhs/negotiate/frames.py).
 *
 * This is an optional speed-up. serialhs.negotiate.frames.unescape is the
 * reference, and the tests check that both give the same answer for any input.
 * On an 8 KiB frame of random data (about 130 escapes) the Python version takes
 * about 25 microseconds and this one about 1: on an unpaced pty, where a 4 KiB read
 * comes every few tens of microseconds, that was half of a receiver's own work.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define ESC 0x7D
#define ESC_XOR 0x20

static PyObject *
unescape(PyObject *module, PyObject *arg)
{
    Py_buffer in;
    if (PyObject_GetBuffer(arg, &in, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *src = in.buf;
    const unsigned char *end = src + in.len;
    const unsigned char *esc = memchr(src, ESC, (size_t)in.len);
    PyObject *out;
    if (esc == NULL) { /* the common case for short frames: nothing to undo */
        if (PyBytes_CheckExact(arg)) {
            Py_INCREF(arg);
            out = arg;
        } else {
            out = PyBytes_FromStringAndSize(in.buf, in.len);
        }
        PyBuffer_Release(&in);
        return out;
    }
    out = PyBytes_FromStringAndSize(NULL, in.len); /* never longer than the input */
    if (out == NULL) {
        PyBuffer_Release(&in);
        return NULL;
    }
    unsigned char *start = (unsigned char *)PyBytes_AS_STRING(out);
    unsigned char *dst = start;
    while (esc != NULL) {
        size_t run = (size_t)(esc - src);
        memcpy(dst, src, run);
        dst += run;
        if (esc + 1 >= end || esc[1] == ESC) {
            Py_DECREF(out);
            PyBuffer_Release(&in);
            PyErr_SetString(PyExc_ValueError, "an escape byte last or before another");
            return NULL;
        }
        *dst++ = esc[1] ^ ESC_XOR;
        src = esc + 2;
        esc = memchr(src, ESC, (size_t)(end - src));
    }
    memcpy(dst, src, (size_t)(end - src));
    dst += end - src;
    PyBuffer_Release(&in);
    if (_PyBytes_Resize(&out, dst - start) < 0)
        return NULL;
    return out;
}

static PyMethodDef methods[] = {
    {"unescape", unescape, METH_O,
     "unescape(data) -> bytes: undo the byte stuffing between two flags "
     "(ValueError for an escape byte last or before another)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "serialhs.negotiate._hdlc",
    "HDLC-style byte un-stuffing in C (docs/protocol.md section 2).", -1, methods,
};

PyMODINIT_FUNC
PyInit__hdlc(void)
{
    return PyModule_Create(&module);
}
