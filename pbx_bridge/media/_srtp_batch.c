/* SRTP for many RTP legs in one call: libsrtp run back to back over a batch of
 * packets (pbx_bridge/media/srtp.py, docs/performance.md "SRTP media").
 *
 * Why C: called once per packet from Python, libsrtp runs between the interpreter's
 * work and a syscall and finds its code, OpenSSL's tables and its stream state
 * evicted from the caches (~1.4 us per packet against ~0.6 back to back), and the
 * Python around each call (copies through a cffi buffer, a closure frame) costs as
 * much again. Here a whole sub-tick's sends, or an event-loop pass's receives, of all
 * legs go through libsrtp in one loop, with a stack buffer and no Python between.
 *
 * libsrtp itself is not linked: pylibsrtp's wheel bundles it statically, so its
 * functions are taken at run time from pylibsrtp's cffi binding (srtp.py passes their
 * addresses to `bind`, after checking their C types) and the sessions stay created,
 * owned and freed by pylibsrtp. Only the two prototypes below are declared here.
 *
 * The GIL is held throughout: a batch of 50-200 packets is tens of microseconds,
 * below what a release and re-acquire (and copying every packet out of its bytes
 * object first) would let another thread do usefully.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* libsrtp 2: srtp_err_status_t srtp_protect(srtp_t ctx, void *rtp_hdr, int *len_ptr);
 * srtp_err_status_t is an enum (int), srtp_t a pointer to an opaque context. */
typedef int (*srtp_call)(void *ctx, void *packet, int *length);

/* A packet is at most a UDP datagram on a 1500-byte MTU (what the Python path takes);
 * the buffer leaves room for the longest trailer libsrtp 2 may append (a 16-byte tag
 * and a 128-byte MKI: SRTP_MAX_TRAILER_LEN), whatever the profile. */
#define PACKET_MAX 1500
#define PROTECT_MAX (PACKET_MAX - 16) /* the Python path's limit: the tag must fit */
#define TRAILER_MAX (16 + 128)
#define STATUS_TOO_LONG 6 /* srtp_err_status_terminus: "can't process as much data" */

static srtp_call protect_fn = NULL;
static srtp_call unprotect_fn = NULL;

/* What a `dry` stream calls instead of libsrtp: the packet unchanged. Only for
 * bench/srtp_bench.py, to measure what surrounds libsrtp on this path. */
static int
copy_only(void *ctx, void *packet, int *length)
{
    (void)ctx;
    (void)packet;
    (void)length;
    return 0;
}

/* One direction of one leg's libsrtp session. Callable: stream(packet) -> bytes or
 * None. `session` is the pylibsrtp.Session that created `ctx` and frees it when it
 * goes: the stream holds it, so the context lives as long as any packet queued with
 * the stream. `refused` (inbound only) is called with libsrtp's status for every
 * packet that fails. */
typedef struct {
    PyObject_HEAD
    void *ctx;
    srtp_call call;
    int inbound;
    PyObject *session;
    PyObject *refused;
    vectorcallfunc vectorcall;
} Stream;

static PyTypeObject StreamType;
static int usable(Stream *stream);

/* The packet through libsrtp, or NULL with *status set (no Python error) when
 * libsrtp refuses it or it is too long; NULL with a Python error only when memory
 * runs out. */
static PyObject *
run(Stream *self, const char *data, Py_ssize_t n, int *status)
{
    unsigned char buf[PACKET_MAX + TRAILER_MAX];
    int length;

    if (n > (self->inbound ? PACKET_MAX : PROTECT_MAX)) {
        *status = STATUS_TOO_LONG;
        return NULL;
    }
    memcpy(buf, data, (size_t)n);
    length = (int)n;
    *status = self->call(self->ctx, buf, &length);
    if (*status != 0)
        return NULL;
    if (length < 0 || length > (int)sizeof(buf)) { /* never by libsrtp's contract */
        *status = 1;
        return NULL;
    }
    return PyBytes_FromStringAndSize((const char *)buf, length);
}

/* Report a refused inbound packet. The callback is srtp.py's counter, which does not
 * raise; should it, the error is reported as unraisable rather than losing the other
 * packets of the batch. */
static void
report(Stream *self, int status)
{
    PyObject *arg, *result;

    if (!self->inbound || self->refused == NULL || self->refused == Py_None)
        return;
    arg = PyLong_FromLong(status);
    if (arg == NULL) {
        PyErr_WriteUnraisable((PyObject *)self);
        return;
    }
    result = PyObject_CallOneArg(self->refused, arg);
    Py_DECREF(arg);
    if (result == NULL)
        PyErr_WriteUnraisable(self->refused);
    else
        Py_DECREF(result);
}

/* One packet, bytes in -> bytes or None out (refusals counted). */
static PyObject *
one(Stream *self, PyObject *packet)
{
    int status = 0;
    PyObject *out;

    if (!PyBytes_Check(packet)) {
        PyErr_SetString(PyExc_TypeError, "an SRTP stream takes bytes");
        return NULL;
    }
    if (!usable(self))
        return NULL;
    out = run(self, PyBytes_AS_STRING(packet), PyBytes_GET_SIZE(packet), &status);
    if (out != NULL || PyErr_Occurred())
        return out;
    report(self, status);
    Py_RETURN_NONE;
}

static PyObject *
stream_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf,
                  PyObject *kwnames)
{
    if (PyVectorcall_NARGS(nargsf) != 1 || (kwnames && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "stream(packet) takes one packet");
        return NULL;
    }
    return one((Stream *)callable, args[0]);
}

static int
stream_init(Stream *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"context", "session", "inbound", "refused", "dry", NULL};
    unsigned long long address;
    PyObject *session, *refused = Py_None;
    int inbound, dry = 0;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "KOp|O$p", kwlist, &address, &session,
                                     &inbound, &refused, &dry))
        return -1;
    if (!dry && (protect_fn == NULL || unprotect_fn == NULL)) {
        PyErr_SetString(PyExc_RuntimeError, "libsrtp's functions are not bound");
        return -1;
    }
    if (address == 0 && !dry) {
        PyErr_SetString(PyExc_ValueError, "a NULL libsrtp context");
        return -1;
    }
    if (refused != Py_None && !PyCallable_Check(refused)) {
        PyErr_SetString(PyExc_TypeError, "refused must be callable");
        return -1;
    }
    self->ctx = dry ? (void *)self : (void *)(uintptr_t)address;
    self->inbound = inbound;
    self->call = dry ? copy_only : inbound ? unprotect_fn : protect_fn;
    Py_INCREF(session);
    Py_XSETREF(self->session, session);
    Py_INCREF(refused);
    Py_XSETREF(self->refused, refused);
    self->vectorcall = stream_vectorcall;
    return 0;
}

static int
stream_traverse(Stream *self, visitproc visit, void *arg)
{
    Py_VISIT(self->session);
    Py_VISIT(self->refused);
    return 0;
}

static int
stream_clear(Stream *self)
{
    Py_CLEAR(self->session);
    Py_CLEAR(self->refused);
    self->ctx = NULL; /* its owner may be gone: a later packet must not reach libsrtp */
    return 0;
}

static void
stream_dealloc(Stream *self)
{
    PyObject_GC_UnTrack(self);
    stream_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
stream_call(Stream *self, PyObject *args, PyObject *kwds)
{
    PyObject *packet;

    if (kwds != NULL && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "stream(packet) takes no keywords");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "O", &packet))
        return NULL;
    return one(self, packet);
}

static PyMemberDef stream_members[] = {
    {"session", T_OBJECT, offsetof(Stream, session), READONLY,
     "the pylibsrtp.Session that owns (and frees) the libsrtp context"},
    {"inbound", T_INT, offsetof(Stream, inbound), READONLY, "1: unprotects"},
    {NULL}};

static PyTypeObject StreamType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pbx_bridge.media._srtp_batch.Stream",
    .tp_doc = "Stream(context, session, inbound, refused=None, *, dry=False): one "
              "direction of a libsrtp session; stream(packet) -> bytes or None "
              "(dry: no libsrtp call, the packet as it is: for the bench)",
    .tp_basicsize = sizeof(Stream),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(Stream, vectorcall),
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)stream_init,
    .tp_dealloc = (destructor)stream_dealloc,
    .tp_traverse = (traverseproc)stream_traverse,
    .tp_clear = (inquiry)stream_clear,
    .tp_call = (ternaryfunc)stream_call,
    .tp_members = stream_members,
};

static int
usable(Stream *stream)
{
    if (stream->ctx == NULL) {
        PyErr_SetString(PyExc_ValueError, "an SRTP stream whose session is gone");
        return 0;
    }
    return 1;
}

/* The packet through `fn`: a Stream inline (no Python in between), any other
 * callable (srtp.py's Python path) called. NULL only on a Python error. */
static PyObject *
apply(PyObject *fn, PyObject *packet)
{
    if (Py_IS_TYPE(fn, &StreamType) && PyBytes_CheckExact(packet)) {
        Stream *stream = (Stream *)fn;
        int status = 0;
        PyObject *out;

        if (!usable(stream))
            return NULL;
        out = run(stream, PyBytes_AS_STRING(packet), PyBytes_GET_SIZE(packet), &status);
        if (out != NULL || PyErr_Occurred())
            return out;
        report(stream, status);
        Py_RETURN_NONE;
    }
    return PyObject_CallOneArg(fn, packet);
}

static PyObject *str_srtp, *str_protect;

/* protect_batch(outbox) -> list: `outbox` is the scheduler's list of (leg, packet)
 * tuples; the result has, at the same index, the packet as it goes on the wire: as it
 * is for a leg whose `srtp` is None, `leg.srtp.protect(packet)` otherwise (bytes, or
 * None for a packet libsrtp refused: counted as a send drop by the caller). */
static PyObject *
protect_batch(PyObject *module, PyObject *outbox)
{
    Py_ssize_t i, n;
    PyObject *result;

    if (!PyList_Check(outbox)) {
        PyErr_SetString(PyExc_TypeError, "protect_batch takes a list");
        return NULL;
    }
    n = PyList_GET_SIZE(outbox);
    result = PyList_New(n);
    if (result == NULL)
        return NULL;
    for (i = 0; i < n && i < PyList_GET_SIZE(outbox); i++) {
        PyObject *item = PyList_GET_ITEM(outbox, i), *leg, *packet, *srtp, *fn, *out;

        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
            PyErr_SetString(PyExc_TypeError, "protect_batch: (leg, packet) expected");
            goto error;
        }
        leg = PyTuple_GET_ITEM(item, 0);
        packet = PyTuple_GET_ITEM(item, 1);
        srtp = PyObject_GetAttr(leg, str_srtp);
        if (srtp == NULL)
            goto error;
        if (srtp == Py_None) {
            Py_DECREF(srtp);
            Py_INCREF(packet);
            PyList_SET_ITEM(result, i, packet);
            continue;
        }
        fn = PyObject_GetAttr(srtp, str_protect);
        Py_DECREF(srtp);
        if (fn == NULL)
            goto error;
        out = apply(fn, packet);
        Py_DECREF(fn);
        if (out == NULL)
            goto error;
        PyList_SET_ITEM(result, i, out);
    }
    for (; i < n; i++) { /* the list shrank under a callback: nothing to send */
        Py_INCREF(Py_None);
        PyList_SET_ITEM(result, i, Py_None);
    }
    return result;
error:
    for (; i < n; i++) { /* PyList_New left NULLs: fill them so the list can go */
        Py_INCREF(Py_None);
        PyList_SET_ITEM(result, i, Py_None);
    }
    Py_DECREF(result);
    return NULL;
}

/* unprotect_batch(inbox) -> list: `inbox` is a list of tuples whose first two items
 * are (stream, datagram), the stream the leg's `srtp.unprotect`; the result has, at
 * the same index, the decrypted RTP packet or None (refused: counted by the stream's
 * callback, as the single call does). */
static PyObject *
unprotect_batch(PyObject *module, PyObject *inbox)
{
    Py_ssize_t i, n;
    PyObject *result;

    if (!PyList_Check(inbox)) {
        PyErr_SetString(PyExc_TypeError, "unprotect_batch takes a list");
        return NULL;
    }
    n = PyList_GET_SIZE(inbox);
    result = PyList_New(n);
    if (result == NULL)
        return NULL;
    for (i = 0; i < n && i < PyList_GET_SIZE(inbox); i++) {
        PyObject *item = PyList_GET_ITEM(inbox, i), *out;

        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) < 2) {
            PyErr_SetString(PyExc_TypeError, "unprotect_batch: (stream, datagram, ...) "
                                             "expected");
            goto error;
        }
        out = apply(PyTuple_GET_ITEM(item, 0), PyTuple_GET_ITEM(item, 1));
        if (out == NULL)
            goto error;
        PyList_SET_ITEM(result, i, out);
    }
    for (; i < n; i++) {
        Py_INCREF(Py_None);
        PyList_SET_ITEM(result, i, Py_None);
    }
    return result;
error:
    for (; i < n; i++) {
        Py_INCREF(Py_None);
        PyList_SET_ITEM(result, i, Py_None);
    }
    Py_DECREF(result);
    return NULL;
}

/* bind(protect_address, unprotect_address): libsrtp's srtp_protect and srtp_unprotect
 * as pylibsrtp's binding has them (srtp.py checks their C types first). */
static PyObject *
bind(PyObject *module, PyObject *args)
{
    unsigned long long protect_address, unprotect_address;

    if (!PyArg_ParseTuple(args, "KK", &protect_address, &unprotect_address))
        return NULL;
    if (protect_address == 0 || unprotect_address == 0) {
        PyErr_SetString(PyExc_ValueError, "a NULL libsrtp function");
        return NULL;
    }
    protect_fn = (srtp_call)(uintptr_t)protect_address;
    unprotect_fn = (srtp_call)(uintptr_t)unprotect_address;
    Py_RETURN_NONE;
}


/* ---- HMAC-SHA1 with its state in one block (optional, `install_hmac`) ------------
 *
 * With OpenSSL 3, libsrtp's HMAC-SHA1 goes through EVP_MAC: per packet an
 * EVP_MAC_init that copies the key's inner digest context through the provider
 * layer, and a final that copies the outer one, each context its own allocation.
 * Run for a few hundred legs, each packet finds those scattered objects out of the
 * caches (docs/performance.md, "SRTP media"). libsrtp lets an application replace the
 * implementation of an auth type (srtp_replace_auth_type, after running the type's
 * known-answer test); this one is the textbook HMAC (RFC 2104) over OpenSSL's own
 * SHA-1 (SHA1_Init/Update/Final, SHA-NI where the CPU has it), with the inner, outer
 * and working digest states in one block next to libsrtp's srtp_auth_t. The functions
 * and the original type (for its RFC 2202 test data) are found in pylibsrtp's binding,
 * which exports them. Sessions made before the replacement keep the original type. */

/* Zero key material before it is freed (explicit_bzero is not everywhere). */
static void
wipe(void *memory, size_t size)
{
    volatile unsigned char *p = memory;

    while (size--)
        *p++ = 0;
}

/* OpenSSL's SHA_CTX (openssl/sha.h, unchanged since 0.9): 96 bytes. */
typedef struct {
    uint32_t h[5], Nl, Nh, data[16];
    unsigned int num;
} sha_ctx;

/* libsrtp 2's srtp_auth_t and srtp_auth_type_t (crypto/include/auth.h, 2.0-2.7). */
typedef struct auth_type auth_type;
typedef struct {
    const auth_type *type;
    void *state;
    int out_len;
    int key_len;
    int prefix_len;
} srtp_auth;
struct auth_type {
    int (*alloc)(srtp_auth **auth, int key_len, int out_len);
    int (*dealloc)(srtp_auth *auth);
    int (*init)(void *state, const uint8_t *key, int key_len);
    int (*compute)(void *state, const uint8_t *message, int length, int tag_length,
                   uint8_t *tag);
    int (*update)(void *state, const uint8_t *message, int length);
    int (*start)(void *state);
    const char *description;
    const void *test_data;
    uint32_t id;
};

#define SRTP_HMAC_SHA1 3
#define SRTP_BAD_PARAM 2
#define SRTP_ALLOC_FAIL 3
#define SHA1_BLOCK 64
#define SHA1_DIGEST 20

typedef struct {
    sha_ctx inner, outer, work;
} hmac_state;

typedef struct {
    srtp_auth auth;
    hmac_state state;
} hmac_block;

static int (*sha1_init)(sha_ctx *);
static int (*sha1_update)(sha_ctx *, const void *, size_t);
static int (*sha1_final)(unsigned char *, sha_ctx *);
static auth_type flat_hmac;
static int hmac_installed = 0;

static int
hmac_alloc(srtp_auth **auth, int key_len, int out_len)
{
    hmac_block *block;

    if (out_len < 0 || out_len > SHA1_DIGEST || key_len < 0 || key_len > SHA1_BLOCK)
        return SRTP_BAD_PARAM;
    block = calloc(1, sizeof(*block));
    if (block == NULL)
        return SRTP_ALLOC_FAIL;
    block->auth.type = &flat_hmac;
    block->auth.state = &block->state;
    block->auth.out_len = out_len;
    block->auth.key_len = key_len;
    block->auth.prefix_len = 0;
    *auth = (srtp_auth *)block; /* its first member: the block is what dealloc frees */
    return 0;
}

static int
hmac_dealloc(srtp_auth *auth)
{
    wipe(auth, sizeof(hmac_block)); /* key-derived digest states */
    free(auth);
    return 0;
}

static int
hmac_init(void *opaque, const uint8_t *key, int key_len)
{
    hmac_state *state = opaque;
    uint8_t ipad[SHA1_BLOCK], opad[SHA1_BLOCK];
    int i;

    if (key_len < 0 || key_len > SHA1_BLOCK)
        return SRTP_BAD_PARAM;
    memset(ipad, 0x36, sizeof(ipad));
    memset(opad, 0x5c, sizeof(opad));
    for (i = 0; i < key_len; i++) {
        ipad[i] ^= key[i];
        opad[i] ^= key[i];
    }
    sha1_init(&state->inner);
    sha1_update(&state->inner, ipad, sizeof(ipad));
    sha1_init(&state->outer);
    sha1_update(&state->outer, opad, sizeof(opad));
    state->work = state->inner;
    wipe(ipad, sizeof(ipad));
    wipe(opad, sizeof(opad));
    return 0;
}

static int
hmac_start(void *opaque)
{
    hmac_state *state = opaque;

    state->work = state->inner;
    return 0;
}

static int
hmac_update(void *opaque, const uint8_t *message, int length)
{
    if (length < 0)
        return SRTP_BAD_PARAM;
    sha1_update(&((hmac_state *)opaque)->work, message, (size_t)length);
    return 0;
}

static int
hmac_compute(void *opaque, const uint8_t *message, int length, int tag_length,
             uint8_t *tag)
{
    hmac_state *state = opaque;
    uint8_t digest[SHA1_DIGEST];

    if (length < 0 || tag_length < 0 || tag_length > SHA1_DIGEST)
        return SRTP_BAD_PARAM;
    sha1_update(&state->work, message, (size_t)length);
    sha1_final(digest, &state->work);
    state->work = state->outer;
    sha1_update(&state->work, digest, sizeof(digest));
    sha1_final(digest, &state->work);
    memcpy(tag, digest, (size_t)tag_length);
    wipe(digest, sizeof(digest));
    return 0;
}

/* install_hmac(binding_path) -> None: replace libsrtp's HMAC-SHA1 with the one above
 * in the libsrtp that pylibsrtp's binding (the shared object at binding_path, already
 * loaded) holds. Raises, changing nothing, when a symbol is missing, the libsrtp is
 * not 2.x, or libsrtp's known-answer test of the new type fails. */
static PyObject *
install_hmac(PyObject *module, PyObject *args)
{
    const char *path, *version;
    void *handle;
    const auth_type *original;
    int (*replace)(const auth_type *, uint32_t);
    const char *(*version_of)(void);
    int status;

    if (!PyArg_ParseTuple(args, "s", &path))
        return NULL;
    if (hmac_installed)
        Py_RETURN_NONE;
    handle = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (handle == NULL) {
        PyErr_Format(PyExc_ImportError, "pylibsrtp's binding is not loaded: %s", dlerror());
        return NULL;
    }
    *(void **)&sha1_init = dlsym(handle, "SHA1_Init");
    *(void **)&sha1_update = dlsym(handle, "SHA1_Update");
    *(void **)&sha1_final = dlsym(handle, "SHA1_Final");
    *(void **)&replace = dlsym(handle, "srtp_replace_auth_type");
    *(void **)&version_of = dlsym(handle, "srtp_get_version_string");
    original = dlsym(handle, "srtp_hmac");
    dlclose(handle); /* NOLOAD took a reference; the binding stays loaded by pylibsrtp */
    if (!sha1_init || !sha1_update || !sha1_final || !replace || !version_of || !original) {
        PyErr_SetString(PyExc_ImportError, "pylibsrtp's binding lacks a needed symbol");
        return NULL;
    }
    version = version_of();
    if (version == NULL || strncmp(version, "libsrtp2 2.", 11) != 0) {
        PyErr_Format(PyExc_ImportError, "not libsrtp 2: %s", version ? version : "?");
        return NULL;
    }
    if (original->id != SRTP_HMAC_SHA1 || original->test_data == NULL) {
        PyErr_SetString(PyExc_ImportError, "libsrtp's srtp_hmac is not what was expected");
        return NULL;
    }
    flat_hmac.alloc = hmac_alloc;
    flat_hmac.dealloc = hmac_dealloc;
    flat_hmac.init = hmac_init;
    flat_hmac.compute = hmac_compute;
    flat_hmac.update = hmac_update;
    flat_hmac.start = hmac_start;
    flat_hmac.description = "HMAC-SHA1 over OpenSSL's SHA-1, one block (centrale)";
    flat_hmac.test_data = original->test_data;
    flat_hmac.id = SRTP_HMAC_SHA1;
    status = replace(&flat_hmac, SRTP_HMAC_SHA1); /* runs the RFC 2202 test first */
    if (status != 0) {
        PyErr_Format(PyExc_ImportError, "libsrtp refused the HMAC-SHA1 (status %d)", status);
        return NULL;
    }
    hmac_installed = 1;
    Py_RETURN_NONE;
}

/* hmac_sha1(key, message, tag_length) -> bytes: the installed functions run on one
 * message, for the tests to check against Python's hmac module. */
static PyObject *
hmac_sha1(PyObject *module, PyObject *args)
{
    Py_buffer key, message;
    int tag_length, status;
    srtp_auth *auth = NULL;
    uint8_t tag[SHA1_DIGEST];
    PyObject *result = NULL;

    if (!hmac_installed) {
        PyErr_SetString(PyExc_RuntimeError, "install_hmac was not called");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "y*y*i", &key, &message, &tag_length))
        return NULL;
    if (key.len > SHA1_BLOCK || message.len > INT_MAX || tag_length < 0 ||
        tag_length > SHA1_DIGEST) {
        PyErr_SetString(PyExc_ValueError, "key <= 64 bytes, tag <= 20 bytes");
        goto done;
    }
    status = hmac_alloc(&auth, (int)key.len, tag_length);
    if (status == 0)
        status = hmac_init(auth->state, key.buf, (int)key.len);
    if (status == 0)
        status = hmac_start(auth->state);
    if (status == 0) /* as libsrtp does: the packet, then the ROC with the tag */
        status = hmac_update(auth->state, message.buf, (int)(message.len / 2));
    if (status == 0)
        status = hmac_compute(auth->state, (const uint8_t *)message.buf + message.len / 2,
                              (int)(message.len - message.len / 2), tag_length, tag);
    if (status != 0)
        PyErr_Format(PyExc_ValueError, "HMAC failed (status %d)", status);
    else
        result = PyBytes_FromStringAndSize((const char *)tag, tag_length);
done:
    if (auth != NULL)
        hmac_dealloc(auth);
    PyBuffer_Release(&key);
    PyBuffer_Release(&message);
    return result;
}


/* ---- AES-128 counter mode (AES_CM_128) with its state in one block (`install_aes`) --
 *
 * The same story as the HMAC: libsrtp's OpenSSL AES-ICM runs EVP_EncryptInit_ex per
 * packet (the provider's context reset for a new IV) over separately allocated EVP
 * objects. This one keeps the expanded key, counter and salt in one block and runs
 * OpenSSL's AES-NI CTR routine directly (aesni_set_encrypt_key and
 * aesni_ctr32_encrypt_blocks, which pylibsrtp's binding exports with the rest of its
 * OpenSSL; used only when the CPU has AES-NI). The counter arithmetic is libsrtp's
 * aes_icm_ossl.c: counter = (salt || 0x0000) XOR IV, the last 32 bits counting blocks.
 * libsrtp runs its AES-ICM known-answer test on it before taking it. */

typedef struct {
    unsigned int rd_key[4 * 15];
    int rounds;
} aes_key; /* OpenSSL's AES_KEY */

typedef struct cipher_type cipher_type;
typedef struct {
    const cipher_type *type;
    void *state;
    int key_len;
    int algorithm;
} srtp_cipher;
struct cipher_type { /* libsrtp 2's srtp_cipher_type_t (crypto/include/cipher.h) */
    int (*alloc)(srtp_cipher **cipher, int key_len, int tag_len);
    int (*dealloc)(srtp_cipher *cipher);
    int (*init)(void *state, const uint8_t *key);
    int (*set_aad)(void *state, const uint8_t *aad, uint32_t length);
    int (*encrypt)(void *state, uint8_t *buffer, unsigned int *length);
    int (*decrypt)(void *state, uint8_t *buffer, unsigned int *length);
    int (*set_iv)(void *state, uint8_t *iv, int direction);
    int (*get_tag)(void *state, uint8_t *tag, uint32_t *length);
    const char *description;
    const void *test_data;
    uint32_t id;
};

#define SRTP_AES_ICM_128 1
#define AES_128_KEY 16
#define SALT 14
#define ICM_KEY_WITH_SALT (AES_128_KEY + SALT)

typedef struct {
    aes_key key; /* first: 16-byte aligned, as malloc's blocks are */
    uint8_t counter[16];
    uint8_t offset[16];
    uint8_t keystream[16];
    unsigned int used; /* bytes of `keystream` already used (16: none left) */
} icm_state;

typedef struct {
    srtp_cipher cipher;
    icm_state state;
} icm_block;

static int (*aes_set_key)(const unsigned char *, int, aes_key *);
static void (*aes_ctr32)(const unsigned char *, unsigned char *, size_t, const void *,
                         const unsigned char *);
static cipher_type flat_icm;
static int icm_installed = 0;

static int
icm_alloc(srtp_cipher **cipher, int key_len, int tag_len)
{
    icm_block *block;

    if (key_len != ICM_KEY_WITH_SALT)
        return SRTP_BAD_PARAM;
    block = calloc(1, sizeof(*block));
    if (block == NULL)
        return SRTP_ALLOC_FAIL;
    block->cipher.type = &flat_icm;
    block->cipher.state = &block->state;
    block->cipher.key_len = key_len;
    block->cipher.algorithm = SRTP_AES_ICM_128;
    block->state.used = 16;
    *cipher = (srtp_cipher *)block;
    return 0;
}

static int
icm_dealloc(srtp_cipher *cipher)
{
    wipe(cipher, sizeof(icm_block)); /* the expanded key */
    free(cipher);
    return 0;
}

static int
icm_init(void *opaque, const uint8_t *key)
{
    icm_state *state = opaque;

    if (aes_set_key(key, 128, &state->key) != 0)
        return SRTP_BAD_PARAM;
    memset(state->offset, 0, sizeof(state->offset));
    memcpy(state->offset, key + AES_128_KEY, SALT); /* the last two octets stay zero */
    memcpy(state->counter, state->offset, sizeof(state->counter));
    state->used = 16;
    return 0;
}

static int
icm_set_iv(void *opaque, uint8_t *iv, int direction)
{
    icm_state *state = opaque;
    int i;

    for (i = 0; i < 16; i++)
        state->counter[i] = state->offset[i] ^ iv[i];
    state->used = 16;
    return 0;
}

static void
count_blocks(uint8_t counter[16], size_t blocks)
{
    uint32_t low = ((uint32_t)counter[12] << 24) | ((uint32_t)counter[13] << 16) |
                   ((uint32_t)counter[14] << 8) | counter[15];

    low += (uint32_t)blocks;
    counter[12] = (uint8_t)(low >> 24);
    counter[13] = (uint8_t)(low >> 16);
    counter[14] = (uint8_t)(low >> 8);
    counter[15] = (uint8_t)low;
}

static int
icm_encrypt(void *opaque, uint8_t *buffer, unsigned int *length)
{
    static const uint8_t zero[16];
    icm_state *state = opaque;
    size_t left = *length, blocks;

    while (state->used < 16 && left) { /* the rest of the last call's keystream */
        *buffer++ ^= state->keystream[state->used++];
        left--;
    }
    blocks = left / 16;
    if (blocks) {
        aes_ctr32(buffer, buffer, blocks, &state->key, state->counter);
        count_blocks(state->counter, blocks);
        buffer += blocks * 16;
        left -= blocks * 16;
    }
    if (left) {
        aes_ctr32(zero, state->keystream, 1, &state->key, state->counter);
        count_blocks(state->counter, 1);
        state->used = 0;
        while (left--)
            *buffer++ ^= state->keystream[state->used++];
    }
    return 0;
}

/* install_aes(binding_path) -> None: replace libsrtp's AES_CM_128 as install_hmac
 * does its HMAC-SHA1 (ImportError, nothing changed, when it cannot). */
static PyObject *
install_aes(PyObject *module, PyObject *args)
{
    const char *path;
    void *handle;
    const cipher_type *original;
    int (*replace)(const cipher_type *, uint32_t);
    const char *(*version_of)(void);
    const char *version;
    int status;

    if (!PyArg_ParseTuple(args, "s", &path))
        return NULL;
    if (icm_installed)
        Py_RETURN_NONE;
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("aes")) {
        PyErr_SetString(PyExc_ImportError, "this CPU has no AES-NI");
        return NULL;
    }
#else
    PyErr_SetString(PyExc_ImportError, "AES-NI routines only on x86-64");
    return NULL;
#endif
    handle = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (handle == NULL) {
        PyErr_Format(PyExc_ImportError, "pylibsrtp's binding is not loaded: %s", dlerror());
        return NULL;
    }
    *(void **)&aes_set_key = dlsym(handle, "aesni_set_encrypt_key");
    *(void **)&aes_ctr32 = dlsym(handle, "aesni_ctr32_encrypt_blocks");
    *(void **)&replace = dlsym(handle, "srtp_replace_cipher_type");
    *(void **)&version_of = dlsym(handle, "srtp_get_version_string");
    original = dlsym(handle, "srtp_aes_icm_128");
    dlclose(handle);
    if (!aes_set_key || !aes_ctr32 || !replace || !version_of || !original) {
        PyErr_SetString(PyExc_ImportError, "pylibsrtp's binding lacks a needed symbol");
        return NULL;
    }
    version = version_of();
    if (version == NULL || strncmp(version, "libsrtp2 2.", 11) != 0) {
        PyErr_Format(PyExc_ImportError, "not libsrtp 2: %s", version ? version : "?");
        return NULL;
    }
    if (original->id != SRTP_AES_ICM_128 || original->test_data == NULL ||
        original->encrypt != original->decrypt) {
        PyErr_SetString(PyExc_ImportError, "libsrtp's AES-ICM is not what was expected");
        return NULL;
    }
    flat_icm.alloc = icm_alloc;
    flat_icm.dealloc = icm_dealloc;
    flat_icm.init = icm_init;
    flat_icm.set_aad = NULL;
    flat_icm.encrypt = icm_encrypt;
    flat_icm.decrypt = icm_encrypt;
    flat_icm.set_iv = icm_set_iv;
    flat_icm.get_tag = NULL;
    flat_icm.description = "AES-128 counter mode, AES-NI, one block (centrale)";
    flat_icm.test_data = original->test_data;
    flat_icm.id = SRTP_AES_ICM_128;
    status = replace(&flat_icm, SRTP_AES_ICM_128); /* runs the known-answer test first */
    if (status != 0) {
        PyErr_Format(PyExc_ImportError, "libsrtp refused the AES-ICM (status %d)", status);
        return NULL;
    }
    icm_installed = 1;
    Py_RETURN_NONE;
}

/* installed() -> tuple: the names of the libsrtp types replaced so far. */
static PyObject *
installed(PyObject *module, PyObject *unused)
{
    if (hmac_installed && icm_installed)
        return Py_BuildValue("(ss)", "HMAC-SHA1", "AES-CM");
    if (hmac_installed)
        return Py_BuildValue("(s)", "HMAC-SHA1");
    if (icm_installed)
        return Py_BuildValue("(s)", "AES-CM");
    return PyTuple_New(0);
}

static PyMethodDef methods[] = {
    {"installed", installed, METH_NOARGS,
     "installed() -> the libsrtp crypto types replaced by this module's"},
    {"bind", bind, METH_VARARGS, "bind(protect_address, unprotect_address)"},
    {"install_hmac", install_hmac, METH_VARARGS,
     "install_hmac(binding_path): libsrtp's HMAC-SHA1 replaced by one with flat state"},
    {"install_aes", install_aes, METH_VARARGS,
     "install_aes(binding_path): libsrtp's AES_CM_128 replaced by one with flat state"},
    {"hmac_sha1", hmac_sha1, METH_VARARGS,
     "hmac_sha1(key, message, tag_length) -> tag, through the installed HMAC (tests)"},
    {"protect_batch", protect_batch, METH_O,
     "protect_batch([(leg, packet), ...]) -> [packet on the wire or None, ...]"},
    {"unprotect_batch", unprotect_batch, METH_O,
     "unprotect_batch([(stream, datagram, ...), ...]) -> [RTP packet or None, ...]"},
    {NULL}};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_srtp_batch",
    "libsrtp over batches of packets of many legs (see pbx_bridge/media/srtp.py)", -1,
    methods};

PyMODINIT_FUNC
PyInit__srtp_batch(void)
{
    PyObject *module;

    if (PyType_Ready(&StreamType) < 0)
        return NULL;
    str_srtp = PyUnicode_InternFromString("srtp");
    str_protect = PyUnicode_InternFromString("protect");
    if (str_srtp == NULL || str_protect == NULL)
        return NULL;
    module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    Py_INCREF(&StreamType);
    if (PyModule_AddObject(module, "Stream", (PyObject *)&StreamType) < 0) {
        Py_DECREF(&StreamType);
        Py_DECREF(module);
        return NULL;
    }
    if (PyModule_AddIntConstant(module, "PACKET_MAX", PACKET_MAX) < 0 ||
        PyModule_AddIntConstant(module, "PROTECT_MAX", PROTECT_MAX) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
