/*
 * ocgate._fastpath.Engine and Pipe: the established DTLS data path on a thread of its own.
 *
 * Theory of operation (the Python side is ocgate/daemon/_offload.py; docs/ARCHITECTURE.md,
 * "DTLS data-path thread"):
 *
 * - An Engine is one thread (started with every signal blocked, holding no GIL) around one epoll
 *   instance. A worker has one. A Pipe is one established DTLS association handed to it: the
 *   association's connected UDP socket, its tunnel's TUN device, the current EpochState (read
 *   and write protection, replay window, write sequence), and what the thread may decide alone:
 *   whether data may go to the client over DTLS (tx_ok, set by Python), the switch-to-tcp-timeout,
 *   the data MTU and the session's source addresses (the packet filter's unrestricted fast path:
 *   ocgate.ipfilter.PacketFilter.admit_untrusted).
 * - UDP readable: up to BATCH_MAX datagrams by recvmmsg(2). A datagram that is one fresh,
 *   authentic application_data record of the pipe's epoch (fp_open_fast, the same check as the
 *   event-loop fast path) holding a DATA payload from the session's own address is written to
 *   the TUN device. Everything else goes back to Python through the lane, in arrival order, as
 *   one of: RAW (not opened: handshakes, alerts, replays, bad MACs, other epochs: the reference
 *   path decides), OPENED (an authentic record whose payload is not DATA: DPD, keepalive,
 *   compressed), RX (a DATA packet the filter's fast path does not admit: the full filter
 *   decides and counts). After the TUN writes the device is read at once: what the kernel
 *   answered while taking them (an echo reply, TCP ACKs) goes out without another epoll_wait.
 * - TUN readable: up to BATCH_MAX packets by read(2); each that fits the MTU is sealed as one DATA
 *   record when DTLS may carry data (tx_ok, and the client heard within switch-to-tcp-timeout),
 *   and the batch goes out by one sendmmsg(2), a run of equal-sized records as one UDP GSO
 *   message (UDP_SEGMENT; on UDP sockets only, and the pipe falls back for good where the kernel
 *   refuses it). Others go back as TX (CSTP carries them).
 * - The lane is a bounded queue (LANE_MAX_ITEMS, LANE_MAX_BYTES; beyond, items are dropped and
 *   counted) with an eventfd the event loop watches. Python takes it whole with drain().
 * - Counters (packets and bytes each way), the time the client was last heard (for DPD and
 *   switch-to-tcp-timeout) and of the last packet that counts for the idle timer live in the pipe;
 *   Python takes them with take_stats() when it needs them (timers, occtl, close).
 * - Locking: the thread holds fp_lock while it handles one epoll batch; Python takes it for every
 *   change of a pipe and every use of an attached EpochState (_fastpath.h). close() removes the
 *   descriptors from epoll under the lock, so once it returns the thread never touches them again
 *   and Python may close them; the pipe's memory is freed by the thread after the batch in which
 *   it might still have been named.
 */
#include "_fastpath.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LANE_MAX_ITEMS 4096
#define LANE_MAX_BYTES (8 * 1024 * 1024)
#define KIND_RAW 0
#define KIND_OPENED 1
#define KIND_RX 2
#define KIND_TX 3
#define DTLS_DATA 0x00
#define TAG_TUN ((uint64_t)1)
#define SEALED_SIZE (MAX_CIPHERTEXT + 64)
#define GSO_MAX_SEGMENTS 64   /* UDP_MAX_SEGMENTS of older kernels */
#define GSO_MAX_BYTES 60000   /* one GSO datagram's payload, well inside 64 KiB */

typedef struct Item {
    struct Item *next;
    uint64_t pipe;
    int kind;
    Py_ssize_t len;
    unsigned char data[];
} Item;

typedef struct Pipe {
    struct Pipe *next_dead;
    uint64_t id;
    int udp_fd, tun_fd;
    int udp_watched, tun_watched;
    int no_gso; /* no UDP GSO: not a UDP socket, the kernel refused it, or OCGATE_UDP_GSO=off */
    EpochState *state; /* NULL: every datagram goes to the lane, DTLS carries nothing */
    int tx_ok, mtu;
    double switch_after;
    int has4;
    unsigned char src4[4];
    int src6_len; /* -1: no IPv6 source admitted here */
    unsigned char src6[16];
    uint64_t rx_packets, rx_bytes, tx_packets, tx_bytes, tx_dropped;
    double last_rx, last_activity;
    int dead;
} Pipe;

typedef struct {
    unsigned char udp[BATCH_MAX][READ_SIZE];
    unsigned char tun[BATCH_MAX][READ_SIZE];
    unsigned char plain[BATCH_MAX][MAX_CIPHERTEXT];
    unsigned char sealed[BATCH_MAX][SEALED_SIZE];
} Buffers;

typedef struct {
    PyObject_HEAD
    int epfd, notify_fd, wake_fd;
    pthread_t thread;
    int running; /* the thread was started and not joined yet */
    int stopping;
    Item *head, *tail;
    Py_ssize_t queued, queued_bytes;
    uint64_t lane_dropped;
    int notified;
    Pipe *dead;
    uint64_t next_id;
    Buffers *buffers;
} Engine;

typedef struct {
    PyObject_HEAD
    Engine *engine;
    Pipe *p;
    PyObject *state;
    uint64_t id;
} PipeObject;

static PyTypeObject EngineType;
static PyTypeObject PipeType;

static double monotonic_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t); /* time.monotonic() and asyncio's loop.time() */
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* -- packet checks (ports of the Python fast paths) -------------------------------------------- */

/* ocgate.ipfilter.PacketFilter.admit_untrusted's fast path: a 20-byte IPv4 header from the
 * session's address, or an IPv6 header from its prefix, with a length that fits. */
static int admit(const Pipe *p, const unsigned char *d, Py_ssize_t n) {
    if (n >= 20 && d[0] == 0x45) {
        Py_ssize_t total = (Py_ssize_t)d[2] << 8 | d[3];
        return p->has4 && memcmp(d + 12, p->src4, 4) == 0 && total >= 20 && total <= n;
    }
    if (n >= 40 && d[0] >> 4 == 6) {
        Py_ssize_t payload = (Py_ssize_t)d[4] << 8 | d[5];
        return p->src6_len >= 0 && memcmp(d + 8, p->src6, (size_t)p->src6_len) == 0 &&
               payload + 40 <= n;
    }
    return 0;
}

static int not_activity(int proto) { return proto == 1 || proto == 2 || proto == 58; }

/* ocgate.cstp.counts_for_idle_untrusted: not ICMP, IGMP or ICMPv6 (through a few IPv6
 * extension headers). */
static int counts_for_idle(const unsigned char *d, Py_ssize_t n) {
    if (n < 1)
        return 0;
    if (d[0] >> 4 == 4)
        return n >= 20 && !not_activity(d[9]);
    if (d[0] >> 4 != 6 || n < 40)
        return 0;
    int next = d[6];
    Py_ssize_t offset = 40;
    for (int i = 0; i < 4; i++) {
        if (next != 0 && next != 43 && next != 60)
            return !not_activity(next);
        if (n < offset + 2)
            return 0;
        next = d[offset];
        offset += ((Py_ssize_t)d[offset + 1] + 1) * 8;
    }
    return !(next == 0 || next == 43 || next == 60) && !not_activity(next);
}

/* -- the lane back to Python ------------------------------------------------------------------- */

static void lane_push(Engine *e, const Pipe *p, int kind, const unsigned char *data,
                      Py_ssize_t len) {
    if (e->queued >= LANE_MAX_ITEMS || e->queued_bytes + len > LANE_MAX_BYTES) {
        e->lane_dropped++;
        return;
    }
    Item *item = malloc(sizeof(Item) + (size_t)len);
    if (item == NULL) {
        e->lane_dropped++;
        return;
    }
    item->next = NULL;
    item->pipe = p->id;
    item->kind = kind;
    item->len = len;
    memcpy(item->data, data, (size_t)len);
    if (e->tail)
        e->tail->next = item;
    else
        e->head = item;
    e->tail = item;
    e->queued++;
    e->queued_bytes += len;
}

/* -- the thread -------------------------------------------------------------------------------- */

static void unwatch(Engine *e, int fd, int *watched) {
    if (*watched) {
        epoll_ctl(e->epfd, EPOLL_CTL_DEL, fd, NULL);
        *watched = 0;
    }
}

static void tun_ready(Engine *e, Pipe *p);

static void udp_ready(Engine *e, Pipe *p) {
    Buffers *b = e->buffers;
    struct mmsghdr msgs[BATCH_MAX];
    struct iovec iov[BATCH_MAX];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < BATCH_MAX; i++) {
        iov[i].iov_base = b->udp[i];
        iov[i].iov_len = READ_SIZE;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int n;
    do
        n = recvmmsg(p->udp_fd, msgs, BATCH_MAX, MSG_DONTWAIT, NULL);
    while (n < 0 && errno == EINTR);
    if (n <= 0) {
        /* An ICMP error for an earlier datagram (ECONNREFUSED, EACCES, ENOPROTOOPT, EHOSTDOWN,
         * EPROTO, ...) is reported once and cleared: read on. Only a descriptor that cannot be
         * read at all would wake the thread forever: stop watching it (DPD notices the silence). */
        if (n < 0 && (errno == EBADF || errno == ENOTSOCK || errno == EFAULT || errno == EINVAL))
            unwatch(e, p->udp_fd, &p->udp_watched);
        return;
    }
    double now = monotonic_now();
    EpochState *s = p->state;
    struct iovec out[BATCH_MAX];
    int count = 0;
    for (int i = 0; i < n; i++) {
        const unsigned char *d = b->udp[i];
        Py_ssize_t size = (Py_ssize_t)msgs[i].msg_len, plen = 0;
        unsigned char *plain = b->plain[i];
        if (s == NULL || !fp_open_fast(s, d, size, plain, &plen)) {
            lane_push(e, p, KIND_RAW, d, size);
            continue;
        }
        p->last_rx = now;
        if (plen < 1 || plain[0] != DTLS_DATA) {
            lane_push(e, p, KIND_OPENED, plain, plen);
            continue;
        }
        if (!admit(p, plain + 1, plen - 1)) {
            lane_push(e, p, KIND_RX, plain + 1, plen - 1);
            continue;
        }
        p->rx_packets++;
        p->rx_bytes += (uint64_t)(plen - 1);
        if (counts_for_idle(plain + 1, plen - 1))
            p->last_activity = now;
        out[count].iov_base = plain + 1;
        out[count].iov_len = (size_t)(plen - 1);
        count++;
    }
    for (int i = 0; i < count; i++) {
        ssize_t r;
        do
            r = write(p->tun_fd, out[i].iov_base, out[i].iov_len);
        while (r < 0 && errno == EINTR);
        /* A refused packet is dropped, as by a congested link (ocgate.tun._batch.write_many). */
    }
    /* What the kernel answered while taking the writes (an echo reply, TCP ACKs) is queued on
     * the TUN device already: send it now rather than after another epoll_wait. */
    if (count > 0 && p->tun_watched)
        tun_ready(e, p);
}

/* Send records iov[0..count) to the client: with UDP GSO (UDP_SEGMENT), a run of records of one
 * length (and at most one shorter one ending it) goes down the stack as one datagram of many
 * segments, which the kernel cuts at the device; the client receives the same datagrams. Where
 * the kernel refuses GSO for this socket, the pipe falls back to one datagram per record. */
static void send_records(Pipe *p, struct iovec *iov, int count) {
    struct mmsghdr msgs[BATCH_MAX];
    union {
        char buf[CMSG_SPACE(sizeof(uint16_t))];
        struct cmsghdr align;
    } ctrl[BATCH_MAX];
    int sizes[BATCH_MAX]; /* records per message */
    int messages = 0;
    for (int i = 0; i < count; messages++) {
        size_t segment = iov[i].iov_len, total = segment;
        int j = i + 1;
        while (!p->no_gso && j < count && j - i < GSO_MAX_SEGMENTS && iov[j].iov_len <= segment &&
               total + iov[j].iov_len <= GSO_MAX_BYTES) {
            total += iov[j].iov_len;
            if (iov[j++].iov_len < segment)
                break; /* Only the last segment may be shorter. */
        }
        struct mmsghdr *m = &msgs[messages];
        memset(m, 0, sizeof *m);
        m->msg_hdr.msg_iov = &iov[i];
        m->msg_hdr.msg_iovlen = (size_t)(j - i);
        if (j - i > 1) {
            memset(&ctrl[messages], 0, sizeof ctrl[messages]);
            m->msg_hdr.msg_control = ctrl[messages].buf;
            m->msg_hdr.msg_controllen = sizeof ctrl[messages].buf;
            struct cmsghdr *c = CMSG_FIRSTHDR(&m->msg_hdr);
            c->cmsg_level = SOL_UDP;
            c->cmsg_type = UDP_SEGMENT;
            c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
            uint16_t gso = (uint16_t)segment;
            memcpy(CMSG_DATA(c), &gso, sizeof gso);
        }
        sizes[messages] = j - i;
        i = j;
    }
    int sent = 0;
    while (sent < messages) {
        int m;
        do
            m = sendmmsg(p->udp_fd, msgs + sent, (unsigned)(messages - sent), MSG_DONTWAIT);
        while (m < 0 && errno == EINTR);
        if (m > 0) {
            sent += m;
            continue;
        }
        int err = m < 0 ? errno : EAGAIN;
        if (sizes[sent] > 1 && (err == EIO || err == EINVAL || err == EOPNOTSUPP)) {
            /* No GSO here (device, route MTU, kernel): this pipe sends one by one from now on. */
            p->no_gso = 1;
            int first = 0;
            for (int k = 0; k < sent; k++)
                first += sizes[k];
            send_records(p, iov + first, count - first);
            return;
        }
        int rest = 0;
        for (int k = sent; k < messages; k++)
            rest += sizes[k];
        if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS) {
            p->tx_dropped += (uint64_t)rest; /* The socket is full: drop the rest. */
            return;
        }
        p->tx_dropped += (uint64_t)sizes[sent]; /* That message alone (an ICMP error, ...). */
        sent++;
    }
}

static void tun_ready(Engine *e, Pipe *p) {
    Buffers *b = e->buffers;
    static const unsigned char data_prefix[1] = {DTLS_DATA};
    double now = monotonic_now();
    EpochState *s = p->state;
    int usable = s != NULL && p->tx_ok &&
                 (p->switch_after <= 0 || now - p->last_rx < p->switch_after);
    struct iovec iov[BATCH_MAX];
    int count = 0;
    for (int i = 0; i < BATCH_MAX; i++) {
        unsigned char *packet = b->tun[i];
        ssize_t r;
        do
            r = read(p->tun_fd, packet, READ_SIZE);
        while (r < 0 && errno == EINTR);
        if (r < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                unwatch(e, p->tun_fd, &p->tun_watched);
            break;
        }
        if (r == 0)
            break;
        if (usable && r <= p->mtu && r + 1 <= MAX_PLAINTEXT) {
            unsigned char *rec = b->sealed[count];
            uint64_t seq;
            if ((s->block == 0 || fp_pool_iv(rec + HEADER_LEN, s->block) == 0) &&
                fp_take_seq(s, 1, &seq) == 0 &&
                fp_seal_into(s, seq, APPLICATION_DATA, data_prefix, 1, packet, r, rec) == 0) {
                iov[count].iov_base = rec;
                iov[count].iov_len = (size_t)fp_record_size(s, r + 1);
                count++;
                p->tx_packets++;
                p->tx_bytes += (uint64_t)r;
                if (counts_for_idle(packet, r))
                    p->last_activity = now;
                continue;
            }
        }
        lane_push(e, p, KIND_TX, packet, r);
    }
    if (count > 0)
        send_records(p, iov, count);
}

static void free_dead(Engine *e) {
    while (e->dead != NULL) {
        Pipe *p = e->dead;
        e->dead = p->next_dead;
        free(p);
    }
}

static void *engine_main(void *arg) {
    Engine *e = arg;
    struct epoll_event events[BATCH_MAX];
    for (;;) {
        int n = epoll_wait(e->epfd, events, BATCH_MAX, -1);
        if (n < 0 && errno != EINTR)
            break;
        pthread_mutex_lock(&fp_lock);
        if (e->stopping) {
            pthread_mutex_unlock(&fp_lock);
            break;
        }
        for (int i = 0; i < n; i++) {
            uint64_t tag = events[i].data.u64;
            if (tag == 0)
                continue; /* The wake-up eventfd: stopping is checked above. */
            Pipe *p = (Pipe *)(uintptr_t)(tag & ~TAG_TUN);
            if (p->dead)
                continue;
            if (tag & TAG_TUN)
                tun_ready(e, p);
            else
                udp_ready(e, p);
        }
        free_dead(e);
        int notify = e->head != NULL && !e->notified;
        if (notify)
            e->notified = 1;
        pthread_mutex_unlock(&fp_lock);
        if (notify) {
            uint64_t one = 1;
            ssize_t w;
            do
                w = write(e->notify_fd, &one, sizeof one);
            while (w < 0 && errno == EINTR);
        }
    }
    return NULL;
}

/* -- Engine ------------------------------------------------------------------------------------ */

static void engine_stop(Engine *e) {
    if (e->running) {
        pthread_mutex_lock(&fp_lock);
        e->stopping = 1;
        pthread_mutex_unlock(&fp_lock);
        uint64_t one = 1;
        ssize_t w = write(e->wake_fd, &one, sizeof one);
        (void)w;
        Py_BEGIN_ALLOW_THREADS
        pthread_join(e->thread, NULL);
        Py_END_ALLOW_THREADS
        e->running = 0;
    }
    free_dead(e);
    while (e->head != NULL) {
        Item *item = e->head;
        e->head = item->next;
        free(item);
    }
    e->tail = NULL;
    e->queued = e->queued_bytes = 0;
}

static void Engine_dealloc(Engine *e) {
    engine_stop(e);
    if (e->epfd >= 0)
        close(e->epfd);
    if (e->notify_fd >= 0)
        close(e->notify_fd);
    if (e->wake_fd >= 0)
        close(e->wake_fd);
    free(e->buffers);
    Py_TYPE(e)->tp_free((PyObject *)e);
}

static PyObject *Engine_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, ":Engine", kwlist))
        return NULL;
    Engine *e = (Engine *)type->tp_alloc(type, 0);
    if (e == NULL)
        return NULL;
    e->epfd = e->notify_fd = e->wake_fd = -1;
    e->buffers = malloc(sizeof(Buffers)); /* Address space only until packets touch it. */
    e->epfd = epoll_create1(EPOLL_CLOEXEC);
    e->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    e->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0};
    if (e->buffers == NULL || e->epfd < 0 || e->notify_fd < 0 || e->wake_fd < 0 ||
        epoll_ctl(e->epfd, EPOLL_CTL_ADD, e->wake_fd, &ev) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(e);
        return NULL;
    }
    pthread_attr_t attr;
    sigset_t all, old;
    pthread_attr_init(&attr);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* The thread inherits it: signals go elsewhere. */
    int err = pthread_create(&e->thread, &attr, engine_main, e);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (err != 0) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(e);
        return NULL;
    }
    e->running = 1;
    return (PyObject *)e;
}

static EpochState *state_arg(PyObject *state) {
    if (state == Py_None)
        return NULL;
    if (!PyObject_TypeCheck(state, &EpochStateType)) {
        PyErr_SetString(PyExc_TypeError, "state must be an ocgate._fastpath.EpochState or None");
        return (EpochState *)-1;
    }
    EpochState *s = (EpochState *)state;
    if (s->block && s->random_bytes != NULL) { /* Its CBC IVs must come from that callable. */
        PyErr_SetString(PyExc_ValueError, "a CBC state with its own random_bytes stays in Python");
        return (EpochState *)-1;
    }
    return s;
}

/* Swap the pipe's state and settings (the GIL is held; the thread may be running). */
static int pipe_configure(PipeObject *po, PyObject *state, int tx_ok, int mtu, double switch_after) {
    EpochState *s = state_arg(state);
    if (s == (EpochState *)-1)
        return -1;
    if (s != NULL) {
        Py_INCREF(state);
        s->attached++; /* From now on the event loop locks to use it. */
    }
    PyObject *old = po->state;
    pthread_mutex_lock(&fp_lock);
    po->p->state = s;
    po->p->tx_ok = tx_ok;
    po->p->mtu = mtu;
    po->p->switch_after = switch_after;
    pthread_mutex_unlock(&fp_lock);
    po->state = s != NULL ? state : NULL;
    if (old != NULL) {
        ((EpochState *)old)->attached--; /* The thread no longer sees it. */
        Py_DECREF(old);
    }
    return 0;
}

static PyObject *Engine_attach(Engine *e, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"udp_fd", "tun_fd", "src4", "src6", "state", "tx_ok", "mtu",
                             "switch_after", NULL};
    int udp_fd, tun_fd, tx_ok, mtu;
    Py_buffer src4, src6;
    PyObject *state;
    double switch_after;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iiy*y*Opid:attach", kwlist, &udp_fd, &tun_fd,
                                     &src4, &src6, &state, &tx_ok, &mtu, &switch_after))
        return NULL;
    PipeObject *po = NULL;
    if (!e->running) {
        PyErr_SetString(PyExc_ValueError, "the engine is closed");
        goto done;
    }
    if ((src4.len != 0 && src4.len != 4) || src6.len > 17 || udp_fd < 0 || tun_fd < 0) {
        PyErr_SetString(PyExc_ValueError, "src4 is 0 or 4 bytes, src6 at most 16 (17: none)");
        goto done;
    }
    po = PyObject_New(PipeObject, &PipeType);
    if (po == NULL)
        goto done;
    po->state = NULL;
    po->p = calloc(1, sizeof(Pipe));
    Py_INCREF(e);
    po->engine = e;
    if (po->p == NULL) {
        Py_CLEAR(po);
        PyErr_NoMemory();
        goto done;
    }
    Pipe *p = po->p;
    /* The thread must never block (it holds fp_lock while it works): both descriptors are
     * non-blocking already in ocgate; make sure of it for any caller. */
    int fds[2] = {udp_fd, tun_fd};
    for (int i = 0; i < 2; i++) {
        int flags = fcntl(fds[i], F_GETFL);
        if (flags < 0 || (!(flags & O_NONBLOCK) && fcntl(fds[i], F_SETFL, flags | O_NONBLOCK) < 0)) {
            PyErr_SetFromErrno(PyExc_OSError);
            Py_CLEAR(po);
            goto done;
        }
    }
    p->udp_fd = udp_fd;
    p->tun_fd = tun_fd;
    /* UDP GSO only on a UDP socket (an AF_UNIX stand-in would deliver the merged datagram). */
    const char *gso = getenv("OCGATE_UDP_GSO"); /* "off": one datagram per system call */
    int protocol = 0;
    socklen_t protocol_len = sizeof protocol;
    p->no_gso = (gso != NULL && strcmp(gso, "off") == 0) ||
                getsockopt(udp_fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &protocol_len) != 0 ||
                protocol != IPPROTO_UDP;
    p->has4 = src4.len == 4;
    memcpy(p->src4, src4.buf, (size_t)src4.len);
    p->src6_len = src6.len > 16 ? -1 : (int)src6.len;
    if (p->src6_len > 0)
        memcpy(p->src6, src6.buf, (size_t)src6.len);
    p->last_rx = monotonic_now();
    pthread_mutex_lock(&fp_lock);
    p->id = po->id = ++e->next_id;
    pthread_mutex_unlock(&fp_lock);
    if (pipe_configure(po, state, tx_ok, mtu, switch_after) < 0) {
        Py_CLEAR(po);
        goto done;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)(uintptr_t)p};
    if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, udp_fd, &ev) == 0)
        p->udp_watched = 1;
    ev.data.u64 = (uint64_t)(uintptr_t)p | TAG_TUN;
    if (p->udp_watched && epoll_ctl(e->epfd, EPOLL_CTL_ADD, tun_fd, &ev) == 0)
        p->tun_watched = 1;
    if (!p->tun_watched) {
        PyErr_SetFromErrno(PyExc_OSError);
        Py_CLEAR(po); /* Its dealloc takes the descriptors out of epoll again. */
    }
done:
    PyBuffer_Release(&src4);
    PyBuffer_Release(&src6);
    return (PyObject *)po;
}

static PyObject *Engine_drain(Engine *e, PyObject *unused) {
    uint64_t value;
    ssize_t r = read(e->notify_fd, &value, sizeof value); /* Before taking the queue: no lost wake. */
    (void)r;
    pthread_mutex_lock(&fp_lock);
    Item *head = e->head;
    e->head = e->tail = NULL;
    e->queued = e->queued_bytes = 0;
    e->notified = 0;
    pthread_mutex_unlock(&fp_lock);
    PyObject *out = PyList_New(0);
    while (head != NULL) {
        Item *item = head;
        head = item->next;
        if (out != NULL) {
            PyObject *t = Py_BuildValue("(Kiy#)", (unsigned long long)item->pipe, item->kind,
                                        (const char *)item->data, item->len);
            if (t == NULL || PyList_Append(out, t) < 0)
                Py_CLEAR(out);
            Py_XDECREF(t);
        }
        free(item);
    }
    return out;
}

static PyObject *Engine_fileno(Engine *e, PyObject *unused) {
    return PyLong_FromLong(e->notify_fd);
}

static PyObject *Engine_close(Engine *e, PyObject *unused) {
    engine_stop(e);
    Py_RETURN_NONE;
}

static PyObject *Engine_get_lane_dropped(Engine *e, void *closure) {
    pthread_mutex_lock(&fp_lock);
    uint64_t dropped = e->lane_dropped;
    pthread_mutex_unlock(&fp_lock);
    return PyLong_FromUnsignedLongLong(dropped);
}

static PyMethodDef Engine_methods[] = {
    {"attach", (PyCFunction)(void (*)(void))Engine_attach, METH_VARARGS | METH_KEYWORDS,
     "attach(udp_fd, tun_fd, src4, src6, state, tx_ok, mtu, switch_after) -> Pipe"},
    {"drain", (PyCFunction)Engine_drain, METH_NOARGS,
     "drain() -> list of (pipe id, kind, bytes): what the thread handed back, in order"},
    {"fileno", (PyCFunction)Engine_fileno, METH_NOARGS,
     "fileno() -> int: an eventfd, readable when drain() has something"},
    {"close", (PyCFunction)Engine_close, METH_NOARGS, "close() -> None: stop the thread"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Engine_getset[] = {
    {"lane_dropped", (getter)Engine_get_lane_dropped, NULL,
     "items dropped because the lane to Python was full", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject EngineType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ocgate._fastpath.Engine",
    .tp_basicsize = sizeof(Engine),
    .tp_dealloc = (destructor)Engine_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The data-path thread of one worker (see ocgate.daemon._offload).",
    .tp_methods = Engine_methods,
    .tp_getset = Engine_getset,
    .tp_new = Engine_new,
};

/* -- Pipe -------------------------------------------------------------------------------------- */

static void pipe_close(PipeObject *po) {
    Pipe *p = po->p;
    if (p == NULL)
        return;
    Engine *e = po->engine;
    pthread_mutex_lock(&fp_lock);
    unwatch(e, p->udp_fd, &p->udp_watched);
    unwatch(e, p->tun_fd, &p->tun_watched);
    p->dead = 1;
    if (e->running) {
        p->next_dead = e->dead; /* The thread may still hold its address from this batch. */
        e->dead = p;
    } else {
        free(p);
    }
    pthread_mutex_unlock(&fp_lock);
    po->p = NULL;
    if (po->state != NULL) {
        ((EpochState *)po->state)->attached--;
        Py_CLEAR(po->state);
    }
}

static void Pipe_dealloc(PipeObject *po) {
    pipe_close(po);
    Py_XDECREF(po->engine);
    PyObject_Free(po);
}

static PyObject *closed_error(void) {
    PyErr_SetString(PyExc_ValueError, "the pipe is closed");
    return NULL;
}

static PyObject *Pipe_configure(PipeObject *po, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"state", "tx_ok", "mtu", "switch_after", NULL};
    PyObject *state;
    int tx_ok, mtu;
    double switch_after;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "Opid:configure", kwlist, &state, &tx_ok, &mtu,
                                     &switch_after))
        return NULL;
    if (po->p == NULL)
        return closed_error();
    if (pipe_configure(po, state, tx_ok, mtu, switch_after) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Pipe_take_stats(PipeObject *po, PyObject *unused) {
    Pipe *p = po->p;
    if (p == NULL)
        return closed_error();
    pthread_mutex_lock(&fp_lock);
    unsigned long long rxp = p->rx_packets, rxb = p->rx_bytes, txp = p->tx_packets,
                       txb = p->tx_bytes, txd = p->tx_dropped;
    double last_rx = p->last_rx, last_activity = p->last_activity;
    p->rx_packets = p->rx_bytes = p->tx_packets = p->tx_bytes = p->tx_dropped = 0;
    pthread_mutex_unlock(&fp_lock);
    return Py_BuildValue("(KKKKKdd)", rxp, rxb, txp, txb, txd, last_rx, last_activity);
}

static PyObject *Pipe_close(PipeObject *po, PyObject *unused) {
    pipe_close(po);
    Py_RETURN_NONE;
}

static PyObject *Pipe_get_id(PipeObject *po, void *closure) {
    return PyLong_FromUnsignedLongLong(po->id);
}

static PyMethodDef Pipe_methods[] = {
    {"configure", (PyCFunction)(void (*)(void))Pipe_configure, METH_VARARGS | METH_KEYWORDS,
     "configure(state, tx_ok, mtu, switch_after) -> None"},
    {"take_stats", (PyCFunction)Pipe_take_stats, METH_NOARGS,
     "take_stats() -> (rx_packets, rx_bytes, tx_packets, tx_bytes, tx_dropped, last_rx, "
     "last_activity); the counters restart at zero"},
    {"close", (PyCFunction)Pipe_close, METH_NOARGS,
     "close() -> None: the thread lets go of both descriptors before this returns"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Pipe_getset[] = {
    {"id", (getter)Pipe_get_id, NULL, "the id drain() names this pipe by", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject PipeType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ocgate._fastpath.Pipe",
    .tp_basicsize = sizeof(PipeObject),
    .tp_dealloc = (destructor)Pipe_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One established DTLS association on the data-path thread (Engine.attach).",
    .tp_methods = Pipe_methods,
    .tp_getset = Pipe_getset,
};

int fp_dataplane_init(PyObject *module) {
    if (PyType_Ready(&EngineType) < 0 || PyType_Ready(&PipeType) < 0)
        return -1;
    Py_INCREF(&EngineType);
    if (PyModule_AddObject(module, "Engine", (PyObject *)&EngineType) < 0) {
        Py_DECREF(&EngineType);
        return -1;
    }
    Py_INCREF(&PipeType);
    if (PyModule_AddObject(module, "Pipe", (PyObject *)&PipeType) < 0) {
        Py_DECREF(&PipeType);
        return -1;
    }
    if (PyModule_AddIntConstant(module, "KIND_RAW", KIND_RAW) < 0 ||
        PyModule_AddIntConstant(module, "KIND_OPENED", KIND_OPENED) < 0 ||
        PyModule_AddIntConstant(module, "KIND_RX", KIND_RX) < 0 ||
        PyModule_AddIntConstant(module, "KIND_TX", KIND_TX) < 0)
        return -1;
    return 0;
}
