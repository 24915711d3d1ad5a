/*
 * Shared by the two C files of ocgate._fastpath: _fastpath.c (EpochState, batches through
 * descriptors) and _dataplane.c (the data-path thread, Engine and Pipe).
 *
 * Locking: an EpochState that a Pipe carries ("attached") is used by the data-path thread, which
 * holds no GIL; every use of such a state, from either thread, happens under fp_lock. A state no
 * Pipe carries is used by the event-loop thread only and takes no lock. The lock is never held
 * while Python code can run (no allocation of Python objects, no callbacks), so neither thread
 * ever waits for the other's GIL or lock while holding its own.
 */
#ifndef OCGATE_FASTPATH_H
#define OCGATE_FASTPATH_H

#define PY_SSIZE_T_CLEAN
#define OPENSSL_SUPPRESS_DEPRECATED /* SHA1_Init & co.: a context copy is a struct copy. */
#include <Python.h>

#include <pthread.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#define HEADER_LEN 13
#define MAX_PLAINTEXT 16384
#define MAX_CIPHERTEXT (MAX_PLAINTEXT + 2048)
#define SEQ_MASK ((((uint64_t)1) << 48) - 1)
#define APPLICATION_DATA 23
#define TAG_LEN 16
#define MAC_LEN 20
#define WINDOW 64
#define BATCH_MAX 64
#define READ_SIZE 65536

enum { BULK_AES_GCM = 1, BULK_CHACHA = 2, BULK_AES_CBC = 3, BULK_DES3_CBC = 4 };

typedef struct {
    PyObject_HEAD
    int bulk;
    unsigned version;
    uint64_t write_seq;
    int64_t top; /* replay window: highest sequence number marked, -1 before any */
    uint64_t bitmap;
    EVP_CIPHER_CTX *rctx, *wctx;
    unsigned char read_iv[12], write_iv[12];
    int block;
    SHA_CTX read_inner, read_outer, write_inner, write_outer;
    PyObject *random_bytes; /* NULL: RAND_bytes */
    uint64_t epoch_bits;    /* the epoch number << 48 (1 for the first handshake's keys) */
    int attached;           /* Pipes carrying this state (changed by the GIL holder only) */
} EpochState;

extern pthread_mutex_t fp_lock;
extern PyTypeObject EpochStateType;

/* One datagram that is exactly one fresh, authentic application_data record of this epoch:
 * 1 with the plaintext in plain (room for MAX_CIPHERTEXT), else 0 and nothing changed. */
int fp_open_fast(EpochState *s, const unsigned char *d, Py_ssize_t size, unsigned char *plain,
                 Py_ssize_t *plain_len);
/* The length of the record that carries size plaintext bytes. */
Py_ssize_t fp_record_size(const EpochState *s, Py_ssize_t size);
/* Reserve count write sequence numbers: 0, or -1 when they are exhausted (no exception set). */
int fp_take_seq(EpochState *s, Py_ssize_t count, uint64_t *first);
/* Build the record of prefix + payload into out (fp_record_size bytes); a CBC suite's explicit
 * IV must be at out + HEADER_LEN already. 0, or -1 when OpenSSL fails (no exception set). */
int fp_seal_into(EpochState *s, uint64_t seq, int type, const unsigned char *prefix,
                 Py_ssize_t plen, const unsigned char *payload, Py_ssize_t len, unsigned char *out);
/* n bytes from the IV pool (RAND_bytes, 4 KiB at a time); any thread. 0, or -1. */
int fp_pool_iv(unsigned char *out, int n);
/* An error of sendmmsg/write that concerns one packet only (it is dropped). */
int fp_is_dropped(int err);
/* Adds Engine and Pipe to the module. */
int fp_dataplane_init(PyObject *module);

#endif
