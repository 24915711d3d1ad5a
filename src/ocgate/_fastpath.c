/*
 * ocgate._fastpath: the per-packet work of the DTLS data path in C, on OpenSSL's libcrypto.
 *
 * Theory of operation (the Python reference is ocgate/dtls/_epoch.py, PyEpochState, and
 * ocgate/tun/_batch.py; tests/unit/dtls/test_dtls_fastpath.py runs the same tests against both):
 *
 * - EpochState is one epoch of a DTLS association (1 after the first handshake, one more after
 *   each renegotiation; the optional last constructor argument): the read and write record protection
 *   (AES-GCM, ChaCha20-Poly1305, AES-CBC or 3DES-CBC with HMAC-SHA1), the RFC 6347 4.1.2.6 replay
 *   window and the write sequence number. Its methods are exactly those of PyEpochState:
 *   open() and seal() for the reference path, open_batch_untrusted() and seal_data() for the fast
 *   path. The fast path takes only datagrams that are one fresh, authentic application_data record
 *   of its epoch; at any other datagram it stops before changing any state and leaves that datagram
 *   to the reference path (the Python association), so every rejection keeps one implementation.
 * - Keys are installed once per context (EVP_*Init_ex with a key); per record only the nonce or IV
 *   is set. Records are built in place in the output bytes object: header, explicit nonce, the
 *   ciphertext of prefix + payload, tag; received plaintext goes to a stack buffer and is copied
 *   once into the packet's bytes object.
 * - read_many() and write_many() move a batch of packets through a descriptor that carries one
 *   packet per system call: recvmmsg(2)/sendmmsg(2) on sockets, read(2)/write(2) on a TUN device.
 *   write_many() drops (does not raise) the errors that concern one packet (full queue, malformed
 *   packet, ICMP error for an earlier datagram, firewall), as ocgate.tun._batch.DROPPED_ERRNOS.
 * - Nothing here releases the GIL: every call is short and non-blocking. A state is used from the
 *   event-loop thread only, unless a Pipe of the data-path thread (_dataplane.c) carries it: then
 *   both threads use it under fp_lock (_fastpath.h).
 * - close_later(fd): closing a TUN device's last descriptor waits for RCU grace periods (ms). C
 *   threads of this module do it (up to 64, started as closes wait), fed through a pipe; they
 *   never take the GIL. Python threads doing the same (ocgate.daemon._closer's fallback) take the
 *   GIL back after each close, and on a busy machine a thread descheduled while holding it stalls
 *   the event loop behind it.
 * - CBC: the MAC and the padding are both checked before one verdict, as in the reference (no
 *   padding oracle through distinct errors; a Lucky13-grade constant-time MAC is not attempted,
 *   as in the reference). Explicit IVs come from RAND_bytes, or from the association's
 *   random_bytes callable when that is not os.urandom (tests replay exact vectors). RAND_bytes is
 *   asked for 4 KiB at a time (iv_pool): a call costs far more than the 16 bytes of one IV, and
 *   the per-record call made sealing a CBC record 2.4x slower than opening one. A forked child
 *   empties the pool first (pthread_atfork), so two processes never send the same IVs.
 */
#include "_fastpath.h"

#include <structmember.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

pthread_mutex_t fp_lock = PTHREAD_MUTEX_INITIALIZER;

static PyObject *BadRecord;         /* ocgate.errors.BadRecord */
static PyObject *BadRecordMac;      /* ocgate.errors.BadRecordMac */
static PyObject *LocalProtocolError;
static PyObject *os_urandom;
static EVP_CIPHER *cipher_aes128_gcm, *cipher_aes256_gcm, *cipher_chacha, *cipher_aes128_cbc,
    *cipher_aes256_cbc, *cipher_des3_cbc;

/* -- big-endian helpers ------------------------------------------------------------------------ */

static inline void put16(unsigned char *p, unsigned v) {
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static inline void put64(unsigned char *p, uint64_t v) {
    for (int i = 7; i >= 0; i--) {
        p[i] = (unsigned char)v;
        v >>= 8;
    }
}

static inline uint64_t get64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* Pseudo-header of the MAC / AEAD additional data (RFC 6347 4.1.2.1):
 * epoch||seq (8) | type (1) | version (2) | plaintext length (2). */
static inline void pseudo_header(unsigned char *p, uint64_t epoch_seq, int type, unsigned version,
                                 size_t length) {
    put64(p, epoch_seq);
    p[8] = (unsigned char)type;
    put16(p + 9, version);
    put16(p + 11, (unsigned)length);
}

/* -- EpochState -------------------------------------------------------------------------------- */

static int replay_fresh(EpochState *s, uint64_t seq) {
    if ((int64_t)seq > s->top)
        return 1;
    uint64_t behind = (uint64_t)s->top - seq;
    return !(behind >= WINDOW || (s->bitmap >> behind) & 1);
}

static void replay_mark(EpochState *s, uint64_t seq) {
    if ((int64_t)seq > s->top) {
        uint64_t shift = seq - (uint64_t)s->top;
        s->bitmap = shift >= WINDOW ? 1 : (s->bitmap << shift | 1);
        s->top = (int64_t)seq;
    } else {
        s->bitmap |= (uint64_t)1 << ((uint64_t)s->top - seq);
    }
}

static void hmac_keys(const unsigned char *key, Py_ssize_t len, SHA_CTX *inner, SHA_CTX *outer) {
    unsigned char pad[SHA_CBLOCK];
    unsigned char hashed[SHA_DIGEST_LENGTH];
    if (len > SHA_CBLOCK) {
        SHA1(key, (size_t)len, hashed);
        key = hashed;
        len = SHA_DIGEST_LENGTH;
    }
    memset(pad, 0x36, sizeof pad);
    for (Py_ssize_t i = 0; i < len; i++)
        pad[i] ^= key[i];
    SHA1_Init(inner);
    SHA1_Update(inner, pad, sizeof pad);
    memset(pad, 0x5c, sizeof pad);
    for (Py_ssize_t i = 0; i < len; i++)
        pad[i] ^= key[i];
    SHA1_Init(outer);
    SHA1_Update(outer, pad, sizeof pad);
    OPENSSL_cleanse(pad, sizeof pad);
}

static void hmac_sha1(const SHA_CTX *inner, const SHA_CTX *outer, const unsigned char *pseudo,
                      const unsigned char *a, size_t alen, const unsigned char *b, size_t blen,
                      unsigned char *mac) {
    SHA_CTX ctx = *inner;
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1_Update(&ctx, pseudo, 13);
    if (alen)
        SHA1_Update(&ctx, a, alen);
    if (blen)
        SHA1_Update(&ctx, b, blen);
    SHA1_Final(digest, &ctx);
    ctx = *outer;
    SHA1_Update(&ctx, digest, sizeof digest);
    SHA1_Final(mac, &ctx);
}

#define IV_POOL_SIZE 4096
static unsigned char iv_pool[IV_POOL_SIZE];
static int iv_pool_used = IV_POOL_SIZE; /* Bytes of iv_pool handed out (all: refill first). */
static pthread_mutex_t iv_pool_lock = PTHREAD_MUTEX_INITIALIZER; /* both threads draw from it */

static void iv_pool_forget(void) {
    OPENSSL_cleanse(iv_pool, sizeof iv_pool);
    iv_pool_used = IV_POOL_SIZE;
}

int fp_pool_iv(unsigned char *out, int n) {
    int ok = 0;
    pthread_mutex_lock(&iv_pool_lock);
    if (n > IV_POOL_SIZE - iv_pool_used) {
        if (n > IV_POOL_SIZE || RAND_bytes(iv_pool, IV_POOL_SIZE) != 1)
            ok = -1;
        else
            iv_pool_used = 0;
    }
    if (ok == 0) {
        memcpy(out, iv_pool + iv_pool_used, (size_t)n);
        memset(iv_pool + iv_pool_used, 0, (size_t)n); /* Handed out once, never kept. */
        iv_pool_used += n;
    }
    pthread_mutex_unlock(&iv_pool_lock);
    return ok;
}

/* A CBC record's explicit IV: from the pool, or from the state's random_bytes (tests). */
static int random_fill(EpochState *s, unsigned char *out, int n) {
    if (s->random_bytes == NULL) {
        if (fp_pool_iv(out, n) < 0) {
            PyErr_SetString(PyExc_RuntimeError, "RAND_bytes failed");
            return -1;
        }
        return 0;
    }
    PyObject *r = PyObject_CallFunction(s->random_bytes, "i", n);
    if (r == NULL)
        return -1;
    if (!PyBytes_Check(r) || PyBytes_GET_SIZE(r) != n) {
        Py_DECREF(r);
        PyErr_SetString(PyExc_ValueError, "random_bytes returned the wrong size");
        return -1;
    }
    memcpy(out, PyBytes_AS_STRING(r), (size_t)n);
    Py_DECREF(r);
    return 0;
}

/* fp_lock around the use of a state the data-path thread may be using too (_fastpath.h). */
static inline int state_lock(EpochState *s) {
    int locked = s->attached > 0;
    if (locked)
        pthread_mutex_lock(&fp_lock);
    return locked;
}

static inline void state_unlock(int locked) {
    if (locked)
        pthread_mutex_unlock(&fp_lock);
}

static void EpochState_dealloc(EpochState *s) {
    EVP_CIPHER_CTX_free(s->rctx);
    EVP_CIPHER_CTX_free(s->wctx);
    OPENSSL_cleanse(&s->read_inner, sizeof s->read_inner);
    OPENSSL_cleanse(&s->read_outer, sizeof s->read_outer);
    OPENSSL_cleanse(&s->write_inner, sizeof s->write_inner);
    OPENSSL_cleanse(&s->write_outer, sizeof s->write_outer);
    OPENSSL_cleanse(s->read_iv, sizeof s->read_iv);
    OPENSSL_cleanse(s->write_iv, sizeof s->write_iv);
    Py_XDECREF(s->random_bytes);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static int EpochState_init(EpochState *s, PyObject *args, PyObject *kwds) {
    int bulk, version;
    Py_buffer rkey, wkey, riv, wiv, rmac, wmac;
    PyObject *random_bytes;
    unsigned int epoch = 1;
    if (!PyArg_ParseTuple(args, "iiy*y*y*y*y*y*O|I", &bulk, &version, &rkey, &wkey, &riv, &wiv,
                          &rmac, &wmac, &random_bytes, &epoch))
        return -1;
    int ok = -1;
    const EVP_CIPHER *cipher = NULL;
    size_t iv_len = 0;
    if (s->rctx != NULL) { /* Its contexts may be in use by the data-path thread. */
        PyErr_SetString(PyExc_TypeError, "an EpochState is initialised once");
        goto done;
    }
    s->block = 0;
    switch (bulk) {
    case BULK_AES_GCM:
        cipher = rkey.len == 16 ? cipher_aes128_gcm : rkey.len == 32 ? cipher_aes256_gcm : NULL;
        iv_len = 4;
        break;
    case BULK_CHACHA:
        cipher = rkey.len == 32 ? cipher_chacha : NULL;
        iv_len = 12;
        break;
    case BULK_AES_CBC:
        cipher = rkey.len == 16 ? cipher_aes128_cbc : rkey.len == 32 ? cipher_aes256_cbc : NULL;
        s->block = 16;
        break;
    case BULK_DES3_CBC:
        cipher = rkey.len == 24 ? cipher_des3_cbc : NULL;
        s->block = 8;
        break;
    }
    if (cipher == NULL || wkey.len != rkey.len || (size_t)riv.len != iv_len ||
        (size_t)wiv.len != iv_len || version < 0 || version > 0xFFFF) {
        PyErr_SetString(PyExc_ValueError, "unsupported suite or key sizes");
        goto done;
    }
    if (epoch < 1 || epoch > 0xFFFF) {
        PyErr_SetString(PyExc_ValueError, "epoch out of range");
        goto done;
    }
    s->epoch_bits = (uint64_t)epoch << 48;
    s->bulk = bulk;
    s->version = (unsigned)version;
    s->top = -1;
    memcpy(s->read_iv, riv.buf, iv_len);
    memcpy(s->write_iv, wiv.buf, iv_len);
    EVP_CIPHER_CTX_free(s->rctx);
    EVP_CIPHER_CTX_free(s->wctx);
    s->rctx = EVP_CIPHER_CTX_new();
    s->wctx = EVP_CIPHER_CTX_new();
    if (s->rctx == NULL || s->wctx == NULL ||
        EVP_DecryptInit_ex(s->rctx, cipher, NULL, rkey.buf, NULL) != 1 ||
        EVP_EncryptInit_ex(s->wctx, cipher, NULL, wkey.buf, NULL) != 1) {
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL refused the key");
        goto done;
    }
    if (s->block) {
        EVP_CIPHER_CTX_set_padding(s->rctx, 0);
        EVP_CIPHER_CTX_set_padding(s->wctx, 0);
        if (rmac.len != MAC_LEN || wmac.len != MAC_LEN) {
            PyErr_SetString(PyExc_ValueError, "CBC suites need 20-byte MAC keys");
            goto done;
        }
        hmac_keys(rmac.buf, rmac.len, &s->read_inner, &s->read_outer);
        hmac_keys(wmac.buf, wmac.len, &s->write_inner, &s->write_outer);
    }
    Py_CLEAR(s->random_bytes);
    if (random_bytes != os_urandom) {
        Py_INCREF(random_bytes);
        s->random_bytes = random_bytes;
    }
    ok = 0;
done:
    PyBuffer_Release(&rkey);
    PyBuffer_Release(&wkey);
    PyBuffer_Release(&riv);
    PyBuffer_Release(&wiv);
    PyBuffer_Release(&rmac);
    PyBuffer_Release(&wmac);
    return ok;
}

/* Decrypt and authenticate one record's fragment into out (room for len bytes).
 * Returns the plaintext length, or -1 with *why set ("" = bad MAC) when it does not verify. */
static Py_ssize_t open_fragment(EpochState *s, uint64_t epoch_seq, int type,
                                const unsigned char *frag, Py_ssize_t len, unsigned char *out,
                                const char **why) {
    unsigned char aad[13], nonce[12];
    int n = 0, m = 0;
    *why = "";
    if (s->bulk == BULK_AES_GCM || s->bulk == BULK_CHACHA) {
        Py_ssize_t body;
        const unsigned char *ct;
        if (s->bulk == BULK_AES_GCM) {
            if (len < 8 + TAG_LEN) {
                *why = "short GCM record";
                return -1;
            }
            memcpy(nonce, s->read_iv, 4);
            memcpy(nonce + 4, frag, 8);
            ct = frag + 8;
            body = len - 8 - TAG_LEN;
        } else {
            if (len < TAG_LEN) {
                *why = "short ChaCha20-Poly1305 record";
                return -1;
            }
            memcpy(nonce, s->read_iv, 12);
            for (int i = 0; i < 8; i++)
                nonce[4 + i] ^= (unsigned char)(epoch_seq >> (56 - 8 * i));
            ct = frag;
            body = len - TAG_LEN;
        }
        pseudo_header(aad, epoch_seq, type, s->version, (size_t)body);
        EVP_CIPHER_CTX *c = s->rctx;
        if (EVP_DecryptInit_ex(c, NULL, NULL, NULL, nonce) != 1 ||
            EVP_DecryptUpdate(c, NULL, &n, aad, sizeof aad) != 1 ||
            EVP_DecryptUpdate(c, out, &n, ct, (int)body) != 1 ||
            EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, TAG_LEN, (void *)(ct + body)) != 1 ||
            EVP_DecryptFinal_ex(c, out + n, &m) != 1)
            return -1;
        return body;
    }
    /* CBC + HMAC-SHA1: IV || E(plaintext || MAC || padding). */
    int block = s->block;
    Py_ssize_t size = len - block;
    if (size < MAC_LEN + 1 || size % block) {
        *why = "bad CBC record length";
        return -1;
    }
    EVP_CIPHER_CTX *c = s->rctx;
    if (EVP_DecryptInit_ex(c, NULL, NULL, NULL, frag) != 1 ||
        EVP_DecryptUpdate(c, out, &n, frag + block, (int)size) != 1 || n != size)
        return -1;
    unsigned pad = out[size - 1];
    int pad_fits = (Py_ssize_t)pad + 1 + MAC_LEN <= size;
    unsigned pad_len = pad_fits ? pad : 0;
    unsigned char diff = 0;
    for (unsigned i = 0; i <= pad_len; i++)
        diff |= out[size - 1 - i] ^ (unsigned char)pad;
    Py_ssize_t end = size - 1 - (Py_ssize_t)pad_len - MAC_LEN;
    unsigned char pseudo[13], mac[MAC_LEN];
    pseudo_header(pseudo, epoch_seq, type, s->version, (size_t)end);
    hmac_sha1(&s->read_inner, &s->read_outer, pseudo, out, (size_t)end, NULL, 0, mac);
    int mac_ok = CRYPTO_memcmp(out + end, mac, MAC_LEN) == 0;
    if (!(mac_ok & (diff == 0) & pad_fits))
        return -1;
    return end;
}

Py_ssize_t fp_record_size(const EpochState *s, Py_ssize_t size) {
    if (s->bulk == BULK_AES_GCM)
        return HEADER_LEN + 8 + size + TAG_LEN;
    if (s->bulk == BULK_CHACHA)
        return HEADER_LEN + size + TAG_LEN;
    int block = s->block;
    int pad = block - 1 - (int)((size + MAC_LEN) % block);
    return HEADER_LEN + block + size + MAC_LEN + pad + 1;
}

int fp_seal_into(EpochState *s, uint64_t seq, int type, const unsigned char *prefix,
                 Py_ssize_t plen, const unsigned char *payload, Py_ssize_t len, unsigned char *p) {
    uint64_t epoch_seq = s->epoch_bits | seq;
    Py_ssize_t size = plen + len;
    Py_ssize_t total = fp_record_size(s, size);
    unsigned char aad[13];
    int n = 0;
    p[0] = (unsigned char)type;
    put16(p + 1, s->version);
    put64(p + 3, epoch_seq);
    put16(p + 11, (unsigned)(total - HEADER_LEN));
    if (s->bulk == BULK_AES_GCM || s->bulk == BULK_CHACHA) {
        int explicit_len = s->bulk == BULK_AES_GCM ? 8 : 0;
        unsigned char nonce[12];
        if (explicit_len) {
            memcpy(nonce, s->write_iv, 4);
            put64(nonce + 4, epoch_seq);
            memcpy(p + HEADER_LEN, nonce + 4, 8);
        } else {
            memcpy(nonce, s->write_iv, 12);
            for (int i = 0; i < 8; i++)
                nonce[4 + i] ^= (unsigned char)(epoch_seq >> (56 - 8 * i));
        }
        unsigned char *ct = p + HEADER_LEN + explicit_len;
        pseudo_header(aad, epoch_seq, type, s->version, (size_t)size);
        EVP_CIPHER_CTX *c = s->wctx;
        int m = 0;
        if (EVP_EncryptInit_ex(c, NULL, NULL, NULL, nonce) != 1 ||
            EVP_EncryptUpdate(c, NULL, &n, aad, sizeof aad) != 1 ||
            (plen && EVP_EncryptUpdate(c, ct, &n, prefix, (int)plen) != 1) ||
            (len && EVP_EncryptUpdate(c, ct + plen, &m, payload, (int)len) != 1) ||
            EVP_EncryptFinal_ex(c, ct + size, &n) != 1 ||
            EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, TAG_LEN, ct + size) != 1)
            return -1;
        return 0;
    }
    /* CBC + HMAC-SHA1: IV (in place already) || E(plaintext || MAC || padding). */
    int block = s->block;
    unsigned char buf[MAX_PLAINTEXT + MAC_LEN + 16];
    unsigned char pseudo[13];
    if (plen)
        memcpy(buf, prefix, (size_t)plen);
    if (len)
        memcpy(buf + plen, payload, (size_t)len);
    pseudo_header(pseudo, epoch_seq, type, s->version, (size_t)size);
    hmac_sha1(&s->write_inner, &s->write_outer, pseudo, buf, (size_t)size, NULL, 0, buf + size);
    Py_ssize_t body = total - HEADER_LEN - block;
    int pad = (int)(body - size - MAC_LEN - 1);
    memset(buf + size + MAC_LEN, pad, (size_t)pad + 1);
    EVP_CIPHER_CTX *c = s->wctx;
    if (EVP_EncryptInit_ex(c, NULL, NULL, NULL, p + HEADER_LEN) != 1 ||
        EVP_EncryptUpdate(c, p + HEADER_LEN + block, &n, buf, (int)body) != 1 || n != body)
        return -1;
    return 0;
}

int fp_take_seq(EpochState *s, Py_ssize_t count, uint64_t *first) {
    if (count > 0 && s->write_seq + (uint64_t)count - 1 > SEQ_MASK)
        return -1;
    *first = s->write_seq;
    s->write_seq += (uint64_t)count;
    return 0;
}

/* A new bytes object sized for the record of size plaintext bytes, its CBC IV in place. */
static PyObject *new_record(EpochState *s, Py_ssize_t size) {
    PyObject *rec = PyBytes_FromStringAndSize(NULL, fp_record_size(s, size));
    if (rec != NULL && s->block &&
        random_fill(s, (unsigned char *)PyBytes_AS_STRING(rec) + HEADER_LEN, s->block) < 0)
        Py_CLEAR(rec);
    return rec;
}

static PyObject *EpochState_open(EpochState *s, PyObject *args) {
    unsigned long long epoch_seq;
    int type;
    Py_buffer frag;
    if (!PyArg_ParseTuple(args, "Kiy*", &epoch_seq, &type, &frag))
        return NULL;
    PyObject *result = NULL;
    uint64_t seq = epoch_seq & SEQ_MASK;
    unsigned char out[MAX_CIPHERTEXT];
    const char *why = "";
    Py_ssize_t n = -2; /* -2: replayed */
    int locked = state_lock(s);
    if (replay_fresh(s, seq)) {
        if (frag.len > MAX_CIPHERTEXT) {
            /* records_untrusted never yields these; refuse like a bad MAC to stay safe. */
            n = -1;
        } else {
            n = open_fragment(s, epoch_seq, type, frag.buf, frag.len, out, &why);
            if (n >= 0 && n <= MAX_PLAINTEXT)
                replay_mark(s, seq);
        }
    }
    state_unlock(locked);
    if (n == -2) {
        result = Py_None;
        Py_INCREF(result);
    } else if (n < 0) {
        if (*why)
            PyErr_SetString(BadRecordMac, why);
        else
            PyErr_SetNone(BadRecordMac);
    } else if (n > MAX_PLAINTEXT) {
        PyObject *kw = Py_BuildValue("{s:i}", "description", 22);
        PyObject *a = Py_BuildValue("(s)", "record overflow");
        if (kw && a) {
            PyObject *exc = PyObject_Call(BadRecord, a, kw);
            if (exc) {
                PyErr_SetObject(BadRecord, exc);
                Py_DECREF(exc);
            }
        }
        Py_XDECREF(kw);
        Py_XDECREF(a);
    } else {
        result = PyBytes_FromStringAndSize((const char *)out, n);
    }
    PyBuffer_Release(&frag);
    return result;
}

static PyObject *EpochState_seal(EpochState *s, PyObject *args) {
    int type;
    Py_buffer pt;
    if (!PyArg_ParseTuple(args, "iy*", &type, &pt))
        return NULL;
    PyObject *rec = NULL;
    if (pt.len > MAX_PLAINTEXT) {
        PyErr_SetString(LocalProtocolError, "DTLS payload longer than 2^14");
        goto done;
    }
    rec = new_record(s, pt.len);
    if (rec == NULL)
        goto done;
    uint64_t seq;
    int locked = state_lock(s);
    int taken = fp_take_seq(s, 1, &seq);
    int ok = taken == 0 && fp_seal_into(s, seq, type, NULL, 0, pt.buf, pt.len,
                                        (unsigned char *)PyBytes_AS_STRING(rec)) == 0;
    state_unlock(locked);
    if (!ok) {
        Py_CLEAR(rec);
        if (taken < 0)
            PyErr_SetString(LocalProtocolError, "DTLS sequence numbers exhausted");
        else
            PyErr_SetString(PyExc_RuntimeError, "OpenSSL could not seal a record");
    }
done:
    PyBuffer_Release(&pt);
    return rec;
}

int fp_open_fast(EpochState *s, const unsigned char *d, Py_ssize_t size, unsigned char *plain,
                 Py_ssize_t *plain_len) {
    if (size < HEADER_LEN || d[0] != APPLICATION_DATA)
        return 0;
    unsigned version = (unsigned)d[1] << 8 | d[2];
    uint64_t epoch_seq = get64(d + 3);
    Py_ssize_t length = (Py_ssize_t)d[11] << 8 | d[12];
    if (version != s->version || (epoch_seq & ~SEQ_MASK) != s->epoch_bits ||
        length != size - HEADER_LEN ||
        length > MAX_CIPHERTEXT)
        return 0;
    uint64_t seq = epoch_seq & SEQ_MASK;
    if (!replay_fresh(s, seq))
        return 0;
    const char *why;
    Py_ssize_t n = open_fragment(s, epoch_seq, APPLICATION_DATA, d + HEADER_LEN, length, plain,
                                 &why);
    if (n < 0 || n > MAX_PLAINTEXT)
        return 0;
    replay_mark(s, seq);
    *plain_len = n;
    return 1;
}

static PyObject *EpochState_open_batch_untrusted(EpochState *s, PyObject *args) {
    PyObject *seq_obj;
    Py_ssize_t start;
    int data_type;
    if (!PyArg_ParseTuple(args, "Oni", &seq_obj, &start, &data_type))
        return NULL;
    PyObject *fast = PySequence_Fast(seq_obj, "datagrams must be a sequence");
    if (fast == NULL)
        return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(fast);
    PyObject **items = PySequence_Fast_ITEMS(fast);
    PyObject *packets = PyList_New(0);
    PyObject *payload = NULL;
    Py_ssize_t index = start < 0 ? 0 : start > count ? count : start;
    unsigned char plain[MAX_CIPHERTEXT];
    if (packets == NULL)
        goto fail;
    for (; index < count; index++) {
        Py_buffer view;
        if (PyObject_GetBuffer(items[index], &view, PyBUF_SIMPLE) < 0)
            goto fail;
        Py_ssize_t n = 0;
        int locked = state_lock(s);
        int accepted = fp_open_fast(s, view.buf, view.len, plain, &n);
        state_unlock(locked);
        PyBuffer_Release(&view);
        if (!accepted)
            break;
        if (n == 0 || plain[0] != data_type) {
            payload = PyBytes_FromStringAndSize((const char *)plain, n);
            if (payload == NULL)
                goto fail;
            break;
        }
        PyObject *packet = PyBytes_FromStringAndSize((const char *)plain + 1, n - 1);
        if (packet == NULL || PyList_Append(packets, packet) < 0) {
            Py_XDECREF(packet);
            goto fail;
        }
        Py_DECREF(packet);
    }
    Py_DECREF(fast);
    if (payload == NULL) {
        payload = Py_None;
        Py_INCREF(payload);
    }
    return Py_BuildValue("(NnN)", packets, index, payload);
fail:
    Py_DECREF(fast);
    Py_XDECREF(packets);
    return NULL;
}

static PyObject *EpochState_seal_data(EpochState *s, PyObject *args) {
    Py_buffer prefix;
    PyObject *seq_obj;
    if (!PyArg_ParseTuple(args, "y*O", &prefix, &seq_obj))
        return NULL;
    PyObject *fast = PySequence_Fast(seq_obj, "payloads must be a sequence");
    PyObject *out = NULL;
    if (fast == NULL)
        goto done;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(fast);
    PyObject **items = PySequence_Fast_ITEMS(fast);
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_ssize_t len = PyBytes_Check(items[i]) ? PyBytes_GET_SIZE(items[i])
                                                 : PyObject_Length(items[i]);
        if (len < 0)
            goto done;
        if (len > MAX_PLAINTEXT - prefix.len) {
            PyErr_SetString(LocalProtocolError, "DTLS payload longer than 2^14");
            goto done;
        }
    }
    uint64_t seq;
    int locked = state_lock(s);
    int taken = fp_take_seq(s, count, &seq);
    state_unlock(locked);
    if (taken < 0) {
        PyErr_SetString(LocalProtocolError, "DTLS sequence numbers exhausted");
        goto done;
    }
    out = PyList_New(count);
    if (out == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_buffer view;
        if (PyObject_GetBuffer(items[i], &view, PyBUF_SIMPLE) < 0) {
            Py_CLEAR(out);
            goto done;
        }
        PyObject *rec = new_record(s, prefix.len + view.len);
        int sealed = -1;
        if (rec != NULL) {
            locked = state_lock(s);
            sealed = fp_seal_into(s, seq + (uint64_t)i, APPLICATION_DATA, prefix.buf, prefix.len,
                                  view.buf, view.len, (unsigned char *)PyBytes_AS_STRING(rec));
            state_unlock(locked);
        }
        PyBuffer_Release(&view);
        if (sealed < 0) {
            if (rec != NULL)
                PyErr_SetString(PyExc_RuntimeError, "OpenSSL could not seal a record");
            Py_XDECREF(rec);
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, i, rec);
    }
done:
    Py_XDECREF(fast);
    PyBuffer_Release(&prefix);
    return out;
}

static PyObject *EpochState_get_write_seq(EpochState *s, void *closure) {
    int locked = state_lock(s);
    uint64_t seq = s->write_seq;
    state_unlock(locked);
    return PyLong_FromUnsignedLongLong(seq);
}

static int EpochState_set_write_seq(EpochState *s, PyObject *value, void *closure) {
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete write_seq");
        return -1;
    }
    unsigned long long v = PyLong_AsUnsignedLongLong(value);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    int locked = state_lock(s);
    s->write_seq = v;
    state_unlock(locked);
    return 0;
}

static PyObject *EpochState_get_version(EpochState *s, void *closure) {
    return PyLong_FromUnsignedLong(s->version);
}

static PyMethodDef EpochState_methods[] = {
    {"open", (PyCFunction)EpochState_open, METH_VARARGS,
     "open(epoch_seq, content_type, fragment) -> bytes | None (the reference path's record)"},
    {"seal", (PyCFunction)EpochState_seal, METH_VARARGS,
     "seal(content_type, plaintext) -> bytes (one whole record)"},
    {"open_batch_untrusted", (PyCFunction)EpochState_open_batch_untrusted, METH_VARARGS,
     "open_batch_untrusted(datagrams, start, data_type) -> (packets, stop, payload | None)"},
    {"seal_data", (PyCFunction)EpochState_seal_data, METH_VARARGS,
     "seal_data(prefix, payloads) -> list of records"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef EpochState_getset[] = {
    {"write_seq", (getter)EpochState_get_write_seq, (setter)EpochState_set_write_seq,
     "the next sequence number written", NULL},
    {"version", (getter)EpochState_get_version, NULL, "the record version", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject EpochStateType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ocgate._fastpath.EpochState",
    .tp_basicsize = sizeof(EpochState),
    .tp_dealloc = (destructor)EpochState_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One epoch of a DTLS association (see ocgate.dtls._epoch.PyEpochState).",
    .tp_methods = EpochState_methods,
    .tp_getset = EpochState_getset,
    .tp_init = (initproc)EpochState_init,
    .tp_new = PyType_GenericNew,
};

/* -- batches through descriptors --------------------------------------------------------------- */

static unsigned char not_socket[4096]; /* 1: the descriptor refused recvmmsg/sendmmsg (ENOTSOCK) */
static unsigned char read_buffers[BATCH_MAX][READ_SIZE];

int fp_is_dropped(int err) {
    return err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS || err == EINVAL ||
           err == EMSGSIZE || err == ECONNREFUSED || err == EHOSTUNREACH || err == ENETUNREACH ||
           err == EPERM;
}

static int socket_maybe(int fd) { return fd >= 4096 || !not_socket[fd]; }

static void mark_not_socket(int fd) {
    if (fd >= 0 && fd < 4096)
        not_socket[fd] = 1;
}

static PyObject *read_many(PyObject *self, PyObject *args) {
    int fd, limit;
    if (!PyArg_ParseTuple(args, "ii", &fd, &limit))
        return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    int got = 0;
    while (got < limit) {
        int want = limit - got > BATCH_MAX ? BATCH_MAX : limit - got;
        int n = -1;
        if (socket_maybe(fd)) {
            struct mmsghdr msgs[BATCH_MAX];
            struct iovec iov[BATCH_MAX];
            memset(msgs, 0, sizeof(struct mmsghdr) * (size_t)want);
            for (int i = 0; i < want; i++) {
                iov[i].iov_base = read_buffers[i];
                iov[i].iov_len = READ_SIZE;
                msgs[i].msg_hdr.msg_iov = &iov[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
            }
            do
                n = recvmmsg(fd, msgs, (unsigned)want, MSG_DONTWAIT, NULL);
            while (n < 0 && errno == EINTR);
            if (n < 0 && errno == ENOTSOCK) {
                mark_not_socket(fd);
            } else {
                if (n < 0)
                    goto error;
                for (int i = 0; i < n; i++) {
                    PyObject *b = PyBytes_FromStringAndSize((const char *)read_buffers[i],
                                                            msgs[i].msg_len);
                    if (b == NULL || PyList_Append(out, b) < 0) {
                        Py_XDECREF(b);
                        Py_DECREF(out);
                        return NULL;
                    }
                    Py_DECREF(b);
                }
                got += n;
                if (n < want)
                    break;
                continue;
            }
        }
        /* Not a socket (a TUN device): one read(2) per packet. */
        ssize_t r;
        do
            r = read(fd, read_buffers[0], READ_SIZE);
        while (r < 0 && errno == EINTR);
        if (r < 0)
            goto error;
        PyObject *b = PyBytes_FromStringAndSize((const char *)read_buffers[0], r);
        if (b == NULL || PyList_Append(out, b) < 0) {
            Py_XDECREF(b);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(b);
        got++;
    }
    return out;
error:
    if (errno == EAGAIN || errno == EWOULDBLOCK || PyList_GET_SIZE(out) > 0)
        return out;
    Py_DECREF(out);
    return PyErr_SetFromErrno(PyExc_OSError);
}

static PyObject *write_many(PyObject *self, PyObject *args) {
    int fd;
    PyObject *seq_obj;
    if (!PyArg_ParseTuple(args, "iO", &fd, &seq_obj))
        return NULL;
    PyObject *fast = PySequence_Fast(seq_obj, "packets must be a sequence");
    if (fast == NULL)
        return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(fast);
    PyObject **items = PySequence_Fast_ITEMS(fast);
    Py_buffer views[BATCH_MAX];
    Py_ssize_t written = 0, index = 0;
    while (index < count) {
        int want = count - index > BATCH_MAX ? BATCH_MAX : (int)(count - index);
        int held = 0;
        for (; held < want; held++) {
            if (PyObject_GetBuffer(items[index + held], &views[held], PyBUF_SIMPLE) < 0) {
                while (held > 0)
                    PyBuffer_Release(&views[--held]);
                goto fail;
            }
        }
        int n = -1, err = 0;
        int tried_socket = socket_maybe(fd);
        if (tried_socket) {
            struct mmsghdr msgs[BATCH_MAX];
            struct iovec iov[BATCH_MAX];
            memset(msgs, 0, sizeof(struct mmsghdr) * (size_t)want);
            for (int i = 0; i < want; i++) {
                iov[i].iov_base = views[i].buf;
                iov[i].iov_len = (size_t)views[i].len;
                msgs[i].msg_hdr.msg_iov = &iov[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
            }
            do
                n = sendmmsg(fd, msgs, (unsigned)want, MSG_DONTWAIT);
            while (n < 0 && errno == EINTR);
            err = n == 0 ? EAGAIN : errno;
            if (n == 0)
                n = -1;
            if (n < 0 && err == ENOTSOCK)
                mark_not_socket(fd);
        }
        if (!tried_socket || (n < 0 && err == ENOTSOCK)) {
            /* Not a socket (a TUN device): one write(2) per packet. */
            ssize_t r;
            do
                r = write(fd, views[0].buf, (size_t)views[0].len);
            while (r < 0 && errno == EINTR);
            n = r < 0 ? -1 : 1;
            err = errno;
        }
        for (int i = 0; i < held; i++)
            PyBuffer_Release(&views[i]);
        if (n < 0) {
            if (!fp_is_dropped(err)) {
                errno = err;
                Py_DECREF(fast);
                return PyErr_SetFromErrno(PyExc_OSError);
            }
            index += 1; /* That packet is dropped; go on with the next one. */
            continue;
        }
        written += n;
        index += n;
    }
    Py_DECREF(fast);
    return PyLong_FromSsize_t(written);
fail:
    Py_DECREF(fast);
    return NULL;
}

/* -- close_later ------------------------------------------------------------------------------ */

/* Threads start as closes wait for one, up to CLOSER_MAX_THREADS. A TUN device's unregistration
 * waits for RCU grace periods (~30 ms each here) that overlap across threads, so how many closes a
 * worker finishes per second grows with its threads: four made ~125/s, fewer than the devices a
 * busy gateway retires (bench_gateway.py logins), and the rest piled up as live devices whose
 * routes every later device creation and removal walked (the kernel's IPv6 FIB). */
#define CLOSER_MAX_THREADS 64
static int closer_pipe[2] = {-1, -1};
static int closer_errno;
static pthread_once_t closer_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t closer_lock = PTHREAD_MUTEX_INITIALIZER;
static int closer_threads; /* started (under closer_lock) */
static int closer_idle;    /* threads waiting on the pipe (atomic) */
static int closer_pending; /* descriptors in the pipe (atomic) */

static void *closer_main(void *unused) {
    int fd;
    for (;;) {
        __atomic_add_fetch(&closer_idle, 1, __ATOMIC_SEQ_CST);
        ssize_t n = read(closer_pipe[0], &fd, sizeof fd);
        __atomic_sub_fetch(&closer_idle, 1, __ATOMIC_SEQ_CST);
        if (n == (ssize_t)sizeof fd) {
            __atomic_sub_fetch(&closer_pending, 1, __ATOMIC_SEQ_CST);
            close(fd);
        } else if (n < 0 && errno == EINTR)
            continue;
        else
            return NULL;
    }
}

/* One more thread, unless CLOSER_MAX_THREADS run; 0 when it started. */
static int closer_spawn(void) {
    int started = -1;
    pthread_mutex_lock(&closer_lock);
    if (closer_threads < CLOSER_MAX_THREADS) {
        pthread_attr_t attr;
        sigset_t all, old;
        pthread_t thread;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 64 * 1024);
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old); /* The thread inherits it: signals go elsewhere. */
        if (pthread_create(&thread, &attr, closer_main, NULL) == 0) {
            closer_threads++;
            started = 0;
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&attr);
    }
    pthread_mutex_unlock(&closer_lock);
    return started;
}

static void closer_start(void) {
    if (pipe2(closer_pipe, O_CLOEXEC) != 0 || fcntl(closer_pipe[1], F_SETFL, O_NONBLOCK) != 0) {
        closer_errno = errno;
        return;
    }
    if (closer_spawn() != 0)
        closer_errno = EAGAIN;
}

static PyObject *close_later(PyObject *module, PyObject *arg) {
    long value = PyLong_AsLong(arg);
    if (value == -1 && PyErr_Occurred())
        return NULL;
    if (value < 0 || value > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "close_later needs a descriptor");
        return NULL;
    }
    int fd = (int)value;
    pthread_once(&closer_once, closer_start);
    ssize_t n = -1;
    if (closer_errno == 0) {
        int pending = __atomic_add_fetch(&closer_pending, 1, __ATOMIC_SEQ_CST);
        do
            n = write(closer_pipe[1], &fd, sizeof fd);
        while (n < 0 && errno == EINTR);
        if (n != (ssize_t)sizeof fd)
            __atomic_sub_fetch(&closer_pending, 1, __ATOMIC_SEQ_CST);
        else if (pending > __atomic_load_n(&closer_idle, __ATOMIC_SEQ_CST))
            (void)closer_spawn(); /* Every thread is busy: this close would wait behind theirs. */
    }
    if (n != (ssize_t)sizeof fd)
        close(fd); /* No thread, or 16,384 closes already waiting: close here, slowly. */
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"close_later", close_later, METH_O,
     "close_later(fd) -> None: close fd on one of this module's threads (they hold no GIL)"},
    {"read_many", read_many, METH_VARARGS,
     "read_many(fd, limit) -> list[bytes]: up to limit packets, fewer when none is waiting"},
    {"write_many", write_many, METH_VARARGS,
     "write_many(fd, packets) -> int: packets written; per-packet errors drop the packet"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "ocgate._fastpath",
    "The DTLS data path's per-packet work in C (see ocgate.dtls._epoch, ocgate.tun._batch).", -1,
    module_methods,
};

static int fetch(EVP_CIPHER **slot, const char *name, int key_len, int iv_len) {
    /* Fetched once at import, before the worker drops its privileges and installs seccomp. */
    *slot = EVP_CIPHER_fetch(NULL, name, NULL);
    if (*slot == NULL) {
        PyErr_Format(PyExc_ImportError, "OpenSSL has no %s", name);
        return -1;
    }
    unsigned char key[32] = {0}, iv[16] = {0};
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int ok = ctx != NULL && EVP_EncryptInit_ex(ctx, *slot, NULL, key, iv) == 1;
    EVP_CIPHER_CTX_free(ctx);
    (void)key_len;
    (void)iv_len;
    if (!ok) {
        PyErr_Format(PyExc_ImportError, "OpenSSL cannot run %s", name);
        return -1;
    }
    return 0;
}

PyMODINIT_FUNC PyInit__fastpath(void) {
    if (fetch(&cipher_aes128_gcm, "AES-128-GCM", 16, 12) < 0 ||
        fetch(&cipher_aes256_gcm, "AES-256-GCM", 32, 12) < 0 ||
        fetch(&cipher_chacha, "ChaCha20-Poly1305", 32, 12) < 0 ||
        fetch(&cipher_aes128_cbc, "AES-128-CBC", 16, 16) < 0 ||
        fetch(&cipher_aes256_cbc, "AES-256-CBC", 32, 16) < 0 ||
        fetch(&cipher_des3_cbc, "DES-EDE3-CBC", 24, 8) < 0)
        return NULL;
    unsigned char warm[16];
    if (RAND_bytes(warm, sizeof warm) != 1) {
        PyErr_SetString(PyExc_ImportError, "OpenSSL's random generator does not work");
        return NULL;
    }
    if (pthread_atfork(NULL, NULL, iv_pool_forget) != 0) {
        PyErr_SetString(PyExc_ImportError, "pthread_atfork failed");
        return NULL;
    }
    PyObject *errors = PyImport_ImportModule("ocgate.errors");
    PyObject *os = PyImport_ImportModule("os");
    if (errors == NULL || os == NULL) {
        Py_XDECREF(errors);
        Py_XDECREF(os);
        return NULL;
    }
    BadRecord = PyObject_GetAttrString(errors, "BadRecord");
    BadRecordMac = PyObject_GetAttrString(errors, "BadRecordMac");
    LocalProtocolError = PyObject_GetAttrString(errors, "LocalProtocolError");
    os_urandom = PyObject_GetAttrString(os, "urandom");
    Py_DECREF(errors);
    Py_DECREF(os);
    if (BadRecord == NULL || BadRecordMac == NULL || LocalProtocolError == NULL ||
        os_urandom == NULL)
        return NULL;
    if (PyType_Ready(&EpochStateType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    Py_INCREF(&EpochStateType);
    if (PyModule_AddObject(m, "EpochState", (PyObject *)&EpochStateType) < 0) {
        Py_DECREF(&EpochStateType);
        Py_DECREF(m);
        return NULL;
    }
    if (fp_dataplane_init(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
