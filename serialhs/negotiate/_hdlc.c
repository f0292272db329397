/*
 * serialhs.negotiate._hdlc: the per-frame work of the SHS framing layer in C.
 *
 * docs/protocol.md sections 1 and 2 define a frame on the wire:
 *
 *     7E | escaped( header(18) | payload | CRC-32C big-endian ) | 7E
 *
 * where escaping turns each of 0x7E, 0x7D, 0x11 and 0x13 into 0x7D and the byte
 * XOR 0x20, and the CRC is CRC-32C (Castagnoli) over header and payload.
 *
 *   encode(version, type, flags, session, seq, ack, payload) -> the wire bytes
 *   decode(chunk, max_payload) -> (type, session, seq, ack, payload, flags, version)
 *       for the bytes between two flags; ValueError for anything that is not a
 *       good frame (the caller then asks the Python reference why)
 *   escaped_size(data) -> len of data once escaped
 *   unescape(data) -> the bytes between two flags with the stuffing undone
 *   crc32c(data) -> the CRC-32C of data (SSE 4.2's crc32 instruction where there
 *       is one); crc32c_portable(data): the same by tables, on any processor
 *
 * This is an optional speed-up. serialhs/negotiate/frames.py holds the Python
 * reference of each function, and the tests check that both give the same answer
 * for any input. On an unpaced line (a pty, a USB CDC device) the ends are bound
 * by their processors, and per frame the Python references cost several times
 * what these functions do.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <nmmintrin.h>
#define HAVE_CRC32_INSTRUCTION 1
#endif

#define FLAG 0x7E
#define ESC 0x7D
#define ESC_XOR 0x20
#define HEADER_SIZE 18
#define CRC_SIZE 4
#define MAX_LENGTH 0xFFFF /* the header's length field */

/* 1 for the bytes that are escaped on the wire */
static unsigned char escaped[256];

/*
 * CRC-32C: reflected polynomial 0x82F63B78, the register starts at 0xFFFFFFFF
 * and is XORed with 0xFFFFFFFF at the end (docs/protocol.md section 3). The
 * functions below take and return the register; crc_table[k][b] is the register
 * change of byte b followed by k zero bytes (slicing by 8).
 */
#define CRC32C_POLY 0x82F63B78u
static uint32_t crc_table[8][256];

static void
crc_init(void)
{
    for (unsigned b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (CRC32C_POLY & (0u - (c & 1u)));
        crc_table[0][b] = c;
    }
    for (unsigned b = 0; b < 256; b++)
        for (int k = 1; k < 8; k++)
            crc_table[k][b] = (crc_table[k - 1][b] >> 8) ^ crc_table[0][crc_table[k - 1][b] & 0xFF];
}

static uint32_t
crc_update_table(uint32_t crc, const unsigned char *p, Py_ssize_t n)
{
    for (; n >= 8; p += 8, n -= 8) {
        uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                             (uint32_t)p[3] << 24);
        uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 |
                      (uint32_t)p[7] << 24;
        crc = crc_table[7][lo & 0xFF] ^ crc_table[6][(lo >> 8) & 0xFF] ^
              crc_table[5][(lo >> 16) & 0xFF] ^ crc_table[4][lo >> 24] ^
              crc_table[3][hi & 0xFF] ^ crc_table[2][(hi >> 8) & 0xFF] ^
              crc_table[1][(hi >> 16) & 0xFF] ^ crc_table[0][hi >> 24];
    }
    while (n-- > 0)
        crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xFF];
    return crc;
}

#ifdef HAVE_CRC32_INSTRUCTION
/* The same with SSE 4.2's crc32 instruction, which computes CRC-32C. */
__attribute__((target("sse4.2"))) static uint32_t
crc_update_instruction(uint32_t crc, const unsigned char *p, Py_ssize_t n)
{
    uint64_t c = crc;
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        c = _mm_crc32_u64(c, word);
    }
    crc = (uint32_t)c;
    while (n-- > 0)
        crc = _mm_crc32_u8(crc, *p++);
    return crc;
}
#endif

static uint32_t (*crc_update)(uint32_t, const unsigned char *, Py_ssize_t) = crc_update_table;

#ifdef __SSE2__
/* A bit per byte of the 16 at p: set where the byte is escaped on the wire. */
static inline unsigned
special_mask(const unsigned char *p)
{
    const __m128i v = _mm_loadu_si128((const __m128i *)p);
    const __m128i hit = _mm_or_si128(
        _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8(0x7E)), _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7D))),
        _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8(0x11)), _mm_cmpeq_epi8(v, _mm_set1_epi8(0x13))));
    return (unsigned)_mm_movemask_epi8(hit);
}
#endif

/* How many bytes of p[0..n) are escaped. */
static Py_ssize_t
count_escaped(const unsigned char *p, Py_ssize_t n)
{
    Py_ssize_t count = 0, i = 0;
#ifdef __SSE2__
    for (; i + 16 <= n; i += 16) {
        unsigned mask = special_mask(p + i);
        while (mask) { /* at most a few bits: data escapes about one byte in 64 */
            mask &= mask - 1;
            count++;
        }
    }
#endif
    for (; i < n; i++)
        count += escaped[p[i]];
    return count;
}

/* Escape p[0..n) into dst; return the end of what was written. */
static unsigned char *
escape_into(unsigned char *dst, const unsigned char *p, Py_ssize_t n)
{
    Py_ssize_t i = 0;
#ifdef __SSE2__
    while (i + 16 <= n) {
        unsigned mask = special_mask(p + i);
        if (mask == 0) {
            memcpy(dst, p + i, 16);
            dst += 16;
            i += 16;
            continue;
        }
        int run = __builtin_ctz(mask); /* plain bytes before the first escaped one */
        memcpy(dst, p + i, (size_t)run);
        dst += run;
        i += run;
        *dst++ = ESC;
        *dst++ = p[i++] ^ ESC_XOR;
    }
#endif
    for (; i < n; i++) {
        unsigned char c = p[i];
        if (escaped[c]) {
            *dst++ = ESC;
            *dst++ = c ^ ESC_XOR;
        } else {
            *dst++ = c;
        }
    }
    return dst;
}

/*
 * Undo the stuffing of src[0..n) into dst (room for n bytes). Returns the length
 * written, or -1 for an escape byte last or before another escape byte.
 */
static Py_ssize_t
unescape_into(unsigned char *dst, const unsigned char *src, Py_ssize_t n)
{
    const unsigned char *end = src + n;
    unsigned char *start = dst;
    const unsigned char *esc = memchr(src, ESC, (size_t)n);
    while (esc != NULL) {
        size_t run = (size_t)(esc - src);
        memcpy(dst, src, run);
        dst += run;
        if (esc + 1 >= end || esc[1] == ESC)
            return -1;
        *dst++ = esc[1] ^ ESC_XOR;
        src = esc + 2;
        esc = memchr(src, ESC, (size_t)(end - src));
    }
    memcpy(dst, src, (size_t)(end - src));
    dst += end - src;
    return dst - start;
}

static void
put_u32(unsigned char *p, unsigned long v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static unsigned long
get_u32(const unsigned char *p)
{
    return ((unsigned long)p[0] << 24) | ((unsigned long)p[1] << 16) | ((unsigned long)p[2] << 8) | p[3];
}

static PyObject *
escaped_size(PyObject *module, PyObject *arg)
{
    Py_buffer in;
    if (PyObject_GetBuffer(arg, &in, PyBUF_SIMPLE) < 0)
        return NULL;
    Py_ssize_t size = in.len + count_escaped(in.buf, in.len);
    PyBuffer_Release(&in);
    return PyLong_FromSsize_t(size);
}

static PyObject *
unescape(PyObject *module, PyObject *arg)
{
    Py_buffer in;
    if (PyObject_GetBuffer(arg, &in, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *out;
    if (memchr(in.buf, ESC, (size_t)in.len) == NULL) { /* nothing to undo */
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
    Py_ssize_t size = unescape_into((unsigned char *)PyBytes_AS_STRING(out), in.buf, in.len);
    PyBuffer_Release(&in);
    if (size < 0) {
        Py_DECREF(out);
        PyErr_SetString(PyExc_ValueError, "an escape byte last or before another");
        return NULL;
    }
    if (_PyBytes_Resize(&out, size) < 0)
        return NULL;
    return out;
}

static PyObject *
encode(PyObject *module, PyObject *args)
{
    unsigned char version, type, flags;
    unsigned long session, seq, ack;
    Py_buffer payload;
    if (!PyArg_ParseTuple(args, "bbbkkky*:encode", &version, &type, &flags, &session, &seq, &ack,
                          &payload))
        return NULL;
    if (payload.len > MAX_LENGTH || session > 0xFFFFFFFFUL || seq > 0xFFFFFFFFUL ||
        ack > 0xFFFFFFFFUL) {
        PyBuffer_Release(&payload);
        PyErr_SetString(PyExc_ValueError, "a field out of range for a frame header");
        return NULL;
    }
    unsigned char head[HEADER_SIZE] = {version, type, flags, 0};
    put_u32(head + 4, session);
    put_u32(head + 8, seq);
    put_u32(head + 12, ack);
    head[16] = (unsigned char)(payload.len >> 8);
    head[17] = (unsigned char)payload.len;
    uint32_t crc = crc_update(0xFFFFFFFFu, head, HEADER_SIZE);
    crc = crc_update(crc, payload.buf, payload.len);
    unsigned char tail[CRC_SIZE];
    put_u32(tail, crc ^ 0xFFFFFFFFu);
    Py_ssize_t size = 2 + HEADER_SIZE + count_escaped(head, HEADER_SIZE) + payload.len +
                      count_escaped(payload.buf, payload.len) + CRC_SIZE +
                      count_escaped(tail, CRC_SIZE);
    PyObject *out = PyBytes_FromStringAndSize(NULL, size);
    if (out == NULL) {
        PyBuffer_Release(&payload);
        return NULL;
    }
    unsigned char *dst = (unsigned char *)PyBytes_AS_STRING(out);
    *dst++ = FLAG;
    dst = escape_into(dst, head, HEADER_SIZE);
    dst = escape_into(dst, payload.buf, payload.len);
    dst = escape_into(dst, tail, CRC_SIZE);
    *dst = FLAG;
    PyBuffer_Release(&payload);
    return out;
}

static PyObject *
decode(PyObject *module, PyObject *args)
{
    Py_buffer in;
    Py_ssize_t max_payload;
    if (!PyArg_ParseTuple(args, "y*n:decode", &in, &max_payload))
        return NULL;
    PyObject *out = NULL;
    const char *fault = NULL;
    unsigned char *body = PyMem_Malloc(in.len > 0 ? (size_t)in.len : 1);
    if (body == NULL) {
        PyBuffer_Release(&in);
        return PyErr_NoMemory();
    }
    Py_ssize_t size = unescape_into(body, in.buf, in.len);
    if (size < 0)
        fault = "an escape byte last or before another";
    else if (size < HEADER_SIZE + CRC_SIZE)
        fault = "shorter than a header and CRC";
    else if (size > HEADER_SIZE + max_payload + CRC_SIZE)
        fault = "longer than the largest frame";
    else if ((crc_update(0xFFFFFFFFu, body, size - CRC_SIZE) ^ 0xFFFFFFFFu) !=
             get_u32(body + size - CRC_SIZE))
        fault = "the CRC does not match";
    else if (body[0] != 1)
        fault = "a protocol version this end does not speak";
    else if (((Py_ssize_t)body[16] << 8 | body[17]) != size - HEADER_SIZE - CRC_SIZE)
        fault = "the length field disagrees";
    if (fault == NULL) {
        PyObject *payload = PyBytes_FromStringAndSize((const char *)body + HEADER_SIZE,
                                                      size - HEADER_SIZE - CRC_SIZE);
        if (payload != NULL)
            out = Py_BuildValue("(BkkkNBB)", body[1], get_u32(body + 4), get_u32(body + 8),
                                get_u32(body + 12), payload, body[2], body[0]);
    } else {
        PyErr_SetString(PyExc_ValueError, fault);
    }
    PyMem_Free(body);
    PyBuffer_Release(&in);
    return out;
}

static PyObject *
crc_of(PyObject *arg, uint32_t (*update)(uint32_t, const unsigned char *, Py_ssize_t))
{
    Py_buffer in;
    if (PyObject_GetBuffer(arg, &in, PyBUF_SIMPLE) < 0)
        return NULL;
    uint32_t crc = update(0xFFFFFFFFu, in.buf, in.len) ^ 0xFFFFFFFFu;
    PyBuffer_Release(&in);
    return PyLong_FromUnsignedLong(crc);
}

static PyObject *
crc32c(PyObject *module, PyObject *arg)
{
    return crc_of(arg, crc_update);
}

static PyObject *
crc32c_portable(PyObject *module, PyObject *arg)
{
    return crc_of(arg, crc_update_table);
}

static PyMethodDef methods[] = {
    {"encode", encode, METH_VARARGS,
     "encode(version, type, flags, session, seq, ack, payload) -> bytes: a frame as it goes "
     "on the wire, flags, escapes and CRC included."},
    {"decode", decode, METH_VARARGS,
     "decode(chunk, max_payload) -> (type, session, seq, ack, payload, flags, version): the "
     "frame in the bytes between two flags (ValueError if they are not a good frame's)."},
    {"escaped_size", escaped_size, METH_O,
     "escaped_size(data) -> int: the length of data once escaped."},
    {"unescape", unescape, METH_O,
     "unescape(data) -> bytes: undo the byte stuffing between two flags "
     "(ValueError for an escape byte last or before another)."},
    {"crc32c", crc32c, METH_O,
     "crc32c(data) -> int: the CRC-32C of data (with the processor's instruction if it has one)."},
    {"crc32c_portable", crc32c_portable, METH_O,
     "crc32c_portable(data) -> int: the CRC-32C of data by tables, as on any processor."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "serialhs.negotiate._hdlc",
    "SHS framing in C: escaping, CRC-32C and header (docs/protocol.md sections 1 and 2).", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__hdlc(void)
{
    escaped[0x7E] = escaped[0x7D] = escaped[0x11] = escaped[0x13] = 1;
    crc_init();
#ifdef HAVE_CRC32_INSTRUCTION
    if (__builtin_cpu_supports("sse4.2"))
        crc_update = crc_update_instruction;
#endif
    return PyModule_Create(&module);
}
