/*
 * ocgate._fastpath.Engine and Pipe: the established data path (DTLS associations, and tunnels'
 * TLS connections: "TLS pipes" below) on a thread of its own.
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
 * - A TLS pipe (attach_tls) is a tunnel's TCP socket, its TUN device and its SSL object with the
 *   memory BIOs pyOpenSSL made, driven through that OpenSSL's own functions (bind_tls): whole
 *   application_data records go into the read BIO and come out of SSL_read; their CSTP frames
 *   are taken as CstpConnection would (tls_frames); TUN packets become one record each; the rest
 *   (and every record that is not application_data) goes back to Python, which then drives the
 *   connection again (docs/ARCHITECTURE.md, "TLS data path on the thread").
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
#define PIPE_LANE_MAX 512 /* one pipe's items waiting in the lane: its socket is not read beyond
                             (a TLS pipe stops at the next record), and more are dropped, until
                             Python drains: one client's flood cannot crowd the others out */
#define KIND_RAW 0
#define KIND_OPENED 1
#define KIND_RX 2
#define KIND_TX 3
#define DTLS_DATA 0x00
#define TAG_TUN ((uint64_t)1)
#define SEALED_SIZE (MAX_CIPHERTEXT + 64)
#define GSO_MAX_SEGMENTS 64   /* UDP_MAX_SEGMENTS of older kernels */
#define GSO_MAX_BYTES 60000   /* one GSO datagram's payload, well inside 64 KiB */
#define KIND_CSTP 4   /* TLS pipe: CSTP bytes for the Python parser (a control frame, or the
                         rest of the stream from a frame the thread does not take) */
#define KIND_BACK 5   /* TLS pipe: handed back; the bytes are received ciphertext not read */
#define KIND_FAILED 6 /* TLS pipe: OpenSSL failed; the bytes are its error code, 8 bytes BE */
#define TLS_HEADER 5
#define TLS_RECORD_MAX (TLS_HEADER + MAX_PLAINTEXT + 2048) /* RFC 5246 §6.2.3, the largest */
#define CSTP_HEADER 8
#define CSTP_DATA 0x00
#define TLS_OUT_HIGH (256 * 1024) /* unsent ciphertext beyond which the TUN is not read */
#define SSL_ERROR_WANT_READ_ 2
#define SSL_ERROR_ZERO_RETURN_ 6
#define CSTP_DPD_RESP 0x04
#define CSTP_DISCONNECT 0x05
#define CSTP_KEEPALIVE 0x07
#define CSTP_COMPRESSED 0x08
#define CSTP_TERMINATE 0x09

typedef struct Pipe Pipe;

typedef struct Item {
    struct Item *next;
    Pipe *owner; /* never freed while it has items in the lane (in_lane) */
    uint64_t pipe;
    int kind;
    Py_ssize_t len;
    unsigned char data[];
} Item;

struct Pipe {
    struct Pipe *next_dead;
    uint64_t id;
    int net_fd, tun_fd; /* net_fd: the association's UDP socket, or a TLS pipe's TCP socket */
    int net_watched, tun_watched;
    int no_gso; /* no UDP GSO: not a UDP socket, the kernel refused it, or OCGATE_UDP_GSO=off */
    EpochState *state; /* NULL: every datagram goes to the lane, DTLS carries nothing */
    int tx_ok, mtu;
    double switch_after;
    int has4;
    unsigned char src4[4];
    int src6_len; /* -1: no IPv6 source admitted here */
    unsigned char src6[16];
    uint64_t rx_packets, rx_bytes, tx_packets, tx_bytes, tx_dropped;
    uint64_t rx_refused; /* admitted packets from the client the TUN device refused */
    double last_rx, last_activity;
    int dead;
    /* A TLS pipe (attach_tls): the tunnel's TLS connection, driven through tls_fns. */
    int tls;
    void *ssl, *rbio, *wbio;
    int max_payload;
    int back;                 /* handed back: the thread reads neither descriptor any more */
    int failed;               /* OpenSSL failed: nothing more is encrypted */
    int out_watched;          /* EPOLLOUT is on for net_fd */
    unsigned char *unread;    /* received ciphertext: the start of a record not complete yet */
    Py_ssize_t unread_len;
    unsigned char *out;       /* ciphertext not sent yet (the socket was full) */
    Py_ssize_t out_len, out_cap;
    int in_lane;   /* its items in the lane, not drained yet */
    int throttled; /* its socket is not read until Python drains the lane (PIPE_LANE_MAX) */
    int resume;    /* a TLS pipe's received records wait in unread: read them at the next wake */
};

typedef struct {
    unsigned char udp[BATCH_MAX][READ_SIZE];
    unsigned char tun[BATCH_MAX][READ_SIZE];
    unsigned char plain[BATCH_MAX][MAX_CIPHERTEXT];
    unsigned char sealed[BATCH_MAX][SEALED_SIZE];
    unsigned char tcp[TLS_RECORD_MAX + READ_SIZE];
    unsigned char tls_plain[MAX_PLAINTEXT];
    unsigned char frame[CSTP_HEADER + READ_SIZE];
    unsigned char wire[READ_SIZE];
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

/* forced: an item that must not be lost (a TLS pipe's hand-back and the stream bytes before it);
 * at most two per pipe and hand-back, so the lane stays bounded. */
static void lane_add(Engine *e, Pipe *p, int kind, const unsigned char *data,
                     Py_ssize_t len, int forced) {
    if (!forced && (e->queued >= LANE_MAX_ITEMS || e->queued_bytes + len > LANE_MAX_BYTES ||
                    p->in_lane >= PIPE_LANE_MAX)) {
        e->lane_dropped++;
        return;
    }
    Item *item = malloc(sizeof(Item) + (size_t)len);
    if (item == NULL) {
        e->lane_dropped++;
        return;
    }
    item->next = NULL;
    item->owner = p;
    p->in_lane++;
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

static void lane_push(Engine *e, Pipe *p, int kind, const unsigned char *data,
                      Py_ssize_t len) {
    lane_add(e, p, kind, data, len, 0);
}

/* Python took one of the pipe's items (under fp_lock). */
static void lane_taken(Engine *e, Pipe *p) {
    if (--p->in_lane > 0 || !p->throttled)
        return;
    p->throttled = 0;
    if (p->dead || p->back || p->net_watched)
        return;
    /* A TLS pipe stopped between records: EPOLLOUT (a socket with room is writable at once)
     * wakes the thread to read what waits in unread. */
    p->resume = p->tls && p->unread_len > 0;
    struct epoll_event ev = {.events = EPOLLIN | (p->tls && (p->out_len > 0 || p->resume)
                                                      ? EPOLLOUT
                                                      : 0),
                             .data.u64 = (uint64_t)(uintptr_t)p};
    if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, p->net_fd, &ev) == 0) {
        p->net_watched = 1;
        p->out_watched = (ev.events & EPOLLOUT) != 0;
    }
}

/* -- the thread -------------------------------------------------------------------------------- */

static void unwatch(Engine *e, int fd, int *watched) {
    if (*watched) {
        epoll_ctl(e->epfd, EPOLL_CTL_DEL, fd, NULL);
        *watched = 0;
    }
}

static void tun_ready(Engine *e, Pipe *p);

/* Too many of the pipe's items wait in the lane: stop reading its socket until Python drains
 * them (lane_taken). The kernel's socket buffer holds or drops what comes meanwhile. */
static int throttle(Engine *e, Pipe *p) {
    if (p->in_lane < PIPE_LANE_MAX)
        return 0;
    unwatch(e, p->net_fd, &p->net_watched);
    p->out_watched = 0;
    p->throttled = 1;
    return 1;
}

static void udp_ready(Engine *e, Pipe *p) {
    if (throttle(e, p))
        return;
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
        n = recvmmsg(p->net_fd, msgs, BATCH_MAX, MSG_DONTWAIT, NULL);
    while (n < 0 && errno == EINTR);
    if (n <= 0) {
        /* An ICMP error for an earlier datagram (ECONNREFUSED, EACCES, ENOPROTOOPT, EHOSTDOWN,
         * EPROTO, ...) is reported once and cleared: read on. Only a descriptor that cannot be
         * read at all would wake the thread forever: stop watching it (DPD notices the silence). */
        if (n < 0 && (errno == EBADF || errno == ENOTSOCK || errno == EFAULT || errno == EINVAL))
            unwatch(e, p->net_fd, &p->net_watched);
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
        if (r < 0)
            p->rx_refused++;
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
            m = sendmmsg(p->net_fd, msgs + sent, (unsigned)(messages - sent), MSG_DONTWAIT);
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

/* One packet from the pipe's TUN device into ``packet`` (READ_SIZE bytes): its length, or 0 when
 * there is none (EAGAIN) or the device cannot be read; such a device is no longer watched (a
 * descriptor in error would wake the thread forever). */
static ssize_t read_tun(Engine *e, Pipe *p, unsigned char *packet) {
    ssize_t r;
    do
        r = read(p->tun_fd, packet, READ_SIZE);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            unwatch(e, p->tun_fd, &p->tun_watched);
        return 0;
    }
    return r;
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
        ssize_t r = read_tun(e, p, packet);
        if (r <= 0)
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

/* -- TLS pipes --------------------------------------------------------------------------------- */

/* OpenSSL's SSL and BIO functions, as pyOpenSSL's own OpenSSL exports them (bind_tls): the SSL
 * object of a tunnel lives in that library, so the thread must call that library's functions. */
static struct {
    int (*ssl_read)(void *ssl, void *buf, int num);
    int (*ssl_write)(void *ssl, const void *buf, int num);
    int (*ssl_get_error)(const void *ssl, int ret);
    int (*bio_read)(void *bio, void *buf, int len);
    int (*bio_write)(void *bio, const void *buf, int len);
    void (*err_clear_error)(void);
    unsigned long (*err_get_error)(void);
} tls_fns;
static int tls_bound;

static void set_out_watch(Engine *e, Pipe *p, int want) {
    if (!p->net_watched || p->out_watched == want)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0),
                             .data.u64 = (uint64_t)(uintptr_t)p};
    if (epoll_ctl(e->epfd, EPOLL_CTL_MOD, p->net_fd, &ev) == 0)
        p->out_watched = want;
}

static void watch_tun(Engine *e, Pipe *p, int want) {
    if (want && !p->tun_watched && !p->back) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)(uintptr_t)p | TAG_TUN};
        if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, p->tun_fd, &ev) == 0)
            p->tun_watched = 1;
    } else if (!want) {
        unwatch(e, p->tun_fd, &p->tun_watched);
    }
}

/* Move what OpenSSL wrote (records, a KeyUpdate, an alert) from its BIO to p->out. */
static int tls_collect(Engine *e, Pipe *p) {
    unsigned char *wire = e->buffers->wire;
    int n;
    while ((n = tls_fns.bio_read(p->wbio, wire, READ_SIZE)) > 0) {
        if (p->out_len + n > p->out_cap) {
            Py_ssize_t cap = p->out_cap ? p->out_cap : 16384;
            while (cap < p->out_len + n)
                cap *= 2;
            unsigned char *grown = realloc(p->out, (size_t)cap);
            if (grown == NULL)
                return -1;
            p->out = grown;
            p->out_cap = cap;
        }
        memcpy(p->out + p->out_len, wire, (size_t)n);
        p->out_len += n;
    }
    return 0;
}

/* Send p->out as far as the socket takes it; the rest waits for EPOLLOUT (the TUN device is not
 * read meanwhile beyond TLS_OUT_HIGH: the kernel drops at its queue, as at a congested link). */
static void tls_flush(Engine *e, Pipe *p) {
    Py_ssize_t sent = 0;
    while (sent < p->out_len) {
        ssize_t w = send(p->net_fd, p->out + sent, (size_t)(p->out_len - sent),
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0) {
            sent += w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        break; /* EAGAIN: later. An error: the reader sees it too and hands the pipe back. */
    }
    if (sent > 0) {
        memmove(p->out, p->out + sent, (size_t)(p->out_len - sent));
        p->out_len -= sent;
    }
    if (p->out_len == 0 && p->out != NULL) { /* A thousand idle tunnels hold no buffers. */
        free(p->out);
        p->out = NULL;
        p->out_cap = 0;
    }
    if (p->back)
        return;
    set_out_watch(e, p, p->out_len > 0);
    watch_tun(e, p, p->out_len < TLS_OUT_HIGH);
}

/* Stop reading both descriptors; Python takes over with the ciphertext not read yet. */
static void tls_give_back(Engine *e, Pipe *p, int kind, const unsigned char *data,
                          Py_ssize_t len) {
    set_out_watch(e, p, 0);
    unwatch(e, p->net_fd, &p->net_watched);
    unwatch(e, p->tun_fd, &p->tun_watched);
    p->back = 1;
    lane_add(e, p, kind, data, len, 1);
}

static void tls_fail(Engine *e, Pipe *p) {
    unsigned long code = tls_fns.err_get_error();
    tls_fns.err_clear_error();
    unsigned char be[8];
    for (int i = 0; i < 8; i++)
        be[i] = (unsigned char)((uint64_t)code >> (56 - 8 * i));
    p->failed = 1;
    tls_collect(e, p); /* The alert OpenSSL wrote, if any: sent with what is waiting. */
    tls_give_back(e, p, KIND_FAILED, be, 8);
}

/* The CSTP frames of one record's plaintext, as CstpConnection.receive_data would take them:
 * DATA packets the filter's fast path admits go to the TUN device, others to the full filter
 * (RX); DPD-RESP, KEEPALIVE and TERMINATE only prove the client alive; other frames go to Python
 * whole (a DPD request is echoed there). A frame that ends the stream (DISCONNECT, COMPRESSED:
 * none was negotiated), or is malformed, too long, or not whole in this record ends the thread's
 * part: from it on, the stream is Python's. 0, or -1 when the pipe was handed back (pt[pos:] went
 * to the lane first). */
static int tls_frames(Engine *e, Pipe *p, const unsigned char *pt, Py_ssize_t n, double now) {
    Py_ssize_t pos = 0;
    while (pos < n) {
        const unsigned char *f = pt + pos;
        Py_ssize_t left = n - pos;
        Py_ssize_t len = left >= CSTP_HEADER ? ((Py_ssize_t)f[4] << 8 | f[5]) : 0;
        if (left < CSTP_HEADER || memcmp(f, "STF\x01", 4) != 0 || f[7] != 0 ||
            len > p->max_payload || left < CSTP_HEADER + len || f[6] == CSTP_DISCONNECT ||
            f[6] == CSTP_COMPRESSED) {
            lane_add(e, p, KIND_CSTP, f, left, 1);
            return -1;
        }
        p->last_rx = now;
        const unsigned char *packet = f + CSTP_HEADER;
        int type = f[6];
        if (type == CSTP_DPD_RESP || type == CSTP_KEEPALIVE || type == CSTP_TERMINATE) {
            /* Liveness only (CstpConnection._on_liveness). */
        } else if (type != CSTP_DATA) {
            lane_push(e, p, KIND_CSTP, f, CSTP_HEADER + len);
        } else {
            p->rx_packets++;
            p->rx_bytes += (uint64_t)len;
            if (counts_for_idle(packet, len))
                p->last_activity = now;
            if (admit(p, packet, len)) {
                ssize_t r;
                do
                    r = write(p->tun_fd, packet, (size_t)len);
                while (r < 0 && errno == EINTR);
                if (r < 0)
                    p->rx_refused++; /* Dropped, as by a congested link. */
            } else {
                lane_push(e, p, KIND_RX, packet, len);
            }
        }
        pos += CSTP_HEADER + len;
    }
    return 0;
}

static void tls_tun_ready(Engine *e, Pipe *p);

static void tls_ready(Engine *e, Pipe *p) {
    if (throttle(e, p))
        return;
    unsigned char *buf = e->buffers->tcp;
    Py_ssize_t have = p->unread_len;
    if (have)
        memcpy(buf, p->unread, (size_t)have);
    ssize_t r;
    do
        r = recv(p->net_fd, buf + have, READ_SIZE, MSG_DONTWAIT);
    while (r < 0 && errno == EINTR);
    int again = r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    if (again && !p->resume)
        return;
    p->resume = 0;
    free(p->unread);
    p->unread = NULL;
    p->unread_len = 0;
    if (!again && r <= 0) { /* The end of the stream or an error: the transport reads it again. */
        tls_give_back(e, p, KIND_BACK, buf, have);
        return;
    }
    Py_ssize_t n = have + (again ? 0 : r), pos = 0;
    double now = monotonic_now();
    int wrote = 0;
    while (n - pos >= TLS_HEADER) {
        if (p->in_lane >= PIPE_LANE_MAX) { /* The rest waits in p->unread until Python drains. */
            unwatch(e, p->net_fd, &p->net_watched);
            p->out_watched = 0;
            p->throttled = 1;
            break;
        }
        const unsigned char *rec = buf + pos;
        Py_ssize_t size = TLS_HEADER + ((Py_ssize_t)rec[3] << 8 | rec[4]);
        if (rec[0] != APPLICATION_DATA || size > TLS_RECORD_MAX) {
            /* An alert, a handshake (TLS 1.2 renegotiation), anything else: OpenSSL would call
             * back into Python for some of them, so they are the event loop's. */
            tls_give_back(e, p, KIND_BACK, rec, n - pos);
            goto done;
        }
        if (n - pos < size)
            break;
        tls_fns.err_clear_error();
        if (tls_fns.bio_write(p->rbio, rec, (int)size) != (int)size) {
            tls_fail(e, p);
            goto done;
        }
        pos += size;
        for (;;) {
            int got = tls_fns.ssl_read(p->ssl, e->buffers->tls_plain, MAX_PLAINTEXT);
            if (got > 0) {
                wrote = 1;
                if (tls_frames(e, p, e->buffers->tls_plain, got, now) < 0) {
                    tls_give_back(e, p, KIND_BACK, buf + pos, n - pos);
                    goto done;
                }
                continue;
            }
            int err = tls_fns.ssl_get_error(p->ssl, got);
            if (err == SSL_ERROR_WANT_READ_)
                break; /* The record is read (a TLS 1.3 KeyUpdate has no data). */
            if (err == SSL_ERROR_ZERO_RETURN_) { /* A TLS 1.3 close_notify: the peer is done. */
                tls_fns.err_clear_error();
                tls_give_back(e, p, KIND_BACK, buf + pos, n - pos);
                goto done;
            }
            tls_fail(e, p);
            goto done;
        }
    }
    if (pos < n) {
        p->unread = malloc((size_t)(n - pos));
        if (p->unread == NULL) {
            tls_give_back(e, p, KIND_BACK, buf + pos, n - pos);
            goto done;
        }
        memcpy(p->unread, buf + pos, (size_t)(n - pos));
        p->unread_len = n - pos;
    }
done:
    if (tls_collect(e, p) == 0)
        tls_flush(e, p);
    /* What the kernel answered while taking the writes is queued on the TUN device already. */
    if (wrote && p->tun_watched)
        tls_tun_ready(e, p);
}

/* TUN packets as DATA frames, one TLS record each (openconnect reads one frame per record). */
static void tls_tun_ready(Engine *e, Pipe *p) {
    unsigned char *frame = e->buffers->frame;
    double now = monotonic_now();
    for (int i = 0; i < BATCH_MAX && !p->failed && p->out_len < TLS_OUT_HIGH; i++) {
        unsigned char *packet = frame + CSTP_HEADER;
        ssize_t r = read_tun(e, p, packet);
        if (r <= 0)
            break;
        if (r > p->max_payload || r + CSTP_HEADER > MAX_PLAINTEXT) {
            lane_push(e, p, KIND_TX, packet, r); /* Python's CSTP core drops and counts it. */
            continue;
        }
        memcpy(frame, "STF\x01", 4);
        frame[4] = (unsigned char)(r >> 8);
        frame[5] = (unsigned char)r;
        frame[6] = CSTP_DATA;
        frame[7] = 0;
        tls_fns.err_clear_error();
        if (tls_fns.ssl_write(p->ssl, frame, (int)(r + CSTP_HEADER)) <= 0) {
            tls_fail(e, p);
            return;
        }
        if (tls_collect(e, p) < 0) /* Per record: the memory BIO never shrinks. */
            break;
        p->tx_packets++;
        p->tx_bytes += (uint64_t)r;
        if (counts_for_idle(packet, r))
            p->last_activity = now;
    }
    if (tls_collect(e, p) == 0)
        tls_flush(e, p);
}

/* Free the closed pipes that no item in the lane names any more (in the thread, after a batch:
 * none of them can be in the batch's events then). */
static void free_dead(Engine *e) {
    Pipe **link = &e->dead;
    while (*link != NULL) {
        Pipe *p = *link;
        if (p->in_lane > 0) {
            link = &p->next_dead;
            continue;
        }
        *link = p->next_dead;
        free(p->out);
        free(p->unread);
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
            if (!p->tls) {
                if (tag & TAG_TUN)
                    tun_ready(e, p);
                else
                    udp_ready(e, p);
            } else if (p->back) {
                continue; /* Handed back earlier in this batch: Python's now. */
            } else if (tag & TAG_TUN) {
                tls_tun_ready(e, p);
            } else {
                if (events[i].events & EPOLLOUT)
                    tls_flush(e, p);
                if (!p->back && (p->resume || events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                    tls_ready(e, p);
            }
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
    while (e->head != NULL) {
        Item *item = e->head;
        e->head = item->next;
        item->owner->in_lane--;
        free(item);
    }
    e->tail = NULL;
    e->queued = e->queued_bytes = 0;
    free_dead(e);
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

static int set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    return flags < 0 || (!(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
               ? -1
               : 0;
}

/* A new pipe on net_fd and tun_fd with the session's sources, not watched yet; NULL with an
 * exception set. The thread must never block (it holds fp_lock while it works): both
 * descriptors are non-blocking already in ocgate; this makes sure of it for any caller. */
static PipeObject *new_pipe(Engine *e, int net_fd, int tun_fd, const Py_buffer *src4,
                            const Py_buffer *src6) {
    if (!e->running) {
        PyErr_SetString(PyExc_ValueError, "the engine is closed");
        return NULL;
    }
    if ((src4->len != 0 && src4->len != 4) || src6->len > 17 || net_fd < 0 || tun_fd < 0) {
        PyErr_SetString(PyExc_ValueError, "src4 is 0 or 4 bytes, src6 at most 16 (17: none)");
        return NULL;
    }
    if (set_nonblocking(net_fd) < 0 || set_nonblocking(tun_fd) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return NULL;
    }
    PipeObject *po = PyObject_New(PipeObject, &PipeType);
    if (po == NULL)
        return NULL;
    po->state = NULL;
    po->p = calloc(1, sizeof(Pipe));
    Py_INCREF(e);
    po->engine = e;
    if (po->p == NULL) {
        Py_DECREF(po);
        PyErr_NoMemory();
        return NULL;
    }
    Pipe *p = po->p;
    p->net_fd = net_fd;
    p->tun_fd = tun_fd;
    p->has4 = src4->len == 4;
    memcpy(p->src4, src4->buf, (size_t)src4->len);
    p->src6_len = src6->len > 16 ? -1 : (int)src6->len;
    if (p->src6_len > 0)
        memcpy(p->src6, src6->buf, (size_t)src6->len);
    pthread_mutex_lock(&fp_lock);
    p->id = po->id = ++e->next_id;
    pthread_mutex_unlock(&fp_lock);
    return po;
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
    PipeObject *po = new_pipe(e, udp_fd, tun_fd, &src4, &src6);
    if (po == NULL)
        goto done;
    Pipe *p = po->p;
    /* UDP GSO only on a UDP socket (an AF_UNIX stand-in would deliver the merged datagram). */
    const char *gso = getenv("OCGATE_UDP_GSO"); /* "off": one datagram per system call */
    int protocol = 0;
    socklen_t protocol_len = sizeof protocol;
    p->no_gso = (gso != NULL && strcmp(gso, "off") == 0) ||
                getsockopt(udp_fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &protocol_len) != 0 ||
                protocol != IPPROTO_UDP;
    p->last_rx = monotonic_now();
    if (pipe_configure(po, state, tx_ok, mtu, switch_after) < 0) {
        Py_CLEAR(po);
        goto done;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)(uintptr_t)p};
    if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, udp_fd, &ev) == 0)
        p->net_watched = 1;
    ev.data.u64 = (uint64_t)(uintptr_t)p | TAG_TUN;
    if (p->net_watched && epoll_ctl(e->epfd, EPOLL_CTL_ADD, tun_fd, &ev) == 0)
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

static PyObject *Engine_attach_tls(Engine *e, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"tcp_fd", "tun_fd", "ssl", "rbio", "wbio", "src4", "src6",
                             "max_payload", NULL};
    int tcp_fd, tun_fd, max_payload;
    unsigned long long ssl, rbio, wbio;
    Py_buffer src4, src6;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iiKKKy*y*i:attach_tls", kwlist, &tcp_fd,
                                     &tun_fd, &ssl, &rbio, &wbio, &src4, &src6, &max_payload))
        return NULL;
    PipeObject *po = NULL;
    if (!tls_bound || ssl == 0 || rbio == 0 || wbio == 0 || max_payload < 0) {
        PyErr_SetString(PyExc_ValueError, !tls_bound ? "bind_tls() was not called"
                                                     : "ssl, rbio, wbio or max_payload is bad");
        goto done;
    }
    po = new_pipe(e, tcp_fd, tun_fd, &src4, &src6);
    if (po == NULL)
        goto done;
    Pipe *p = po->p;
    p->tls = 1;
    p->ssl = (void *)(uintptr_t)ssl;
    p->rbio = (void *)(uintptr_t)rbio;
    p->wbio = (void *)(uintptr_t)wbio;
    p->max_payload = max_payload;
    pthread_mutex_lock(&fp_lock);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)(uintptr_t)p};
    if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, tcp_fd, &ev) == 0)
        p->net_watched = 1;
    if (p->net_watched)
        watch_tun(e, p, 1);
    int ok = p->tun_watched;
    pthread_mutex_unlock(&fp_lock);
    if (!ok) {
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
    for (Item *item = head; item != NULL; item = item->next)
        lane_taken(e, item->owner);
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

/* One pipe's items, taken out of the lane in order (the others stay): what a closed pipe handed
 * back that the event loop has not drained yet. */
static PyObject *Engine_take(Engine *e, PyObject *arg) {
    unsigned long long id = PyLong_AsUnsignedLongLong(arg);
    if (id == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    Item *mine = NULL, **tail = &mine;
    pthread_mutex_lock(&fp_lock);
    Item **link = &e->head, *last = NULL;
    while (*link != NULL) {
        Item *item = *link;
        if (item->pipe != id) {
            last = item;
            link = &item->next;
            continue;
        }
        *link = item->next;
        item->next = NULL;
        *tail = item;
        tail = &item->next;
        e->queued--;
        e->queued_bytes -= item->len;
        lane_taken(e, item->owner);
    }
    e->tail = last;
    pthread_mutex_unlock(&fp_lock);
    PyObject *out = PyList_New(0);
    while (mine != NULL) {
        Item *item = mine;
        mine = item->next;
        if (out != NULL) {
            PyObject *t = Py_BuildValue("(iy#)", item->kind, (const char *)item->data, item->len);
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
    {"attach_tls", (PyCFunction)(void (*)(void))Engine_attach_tls, METH_VARARGS | METH_KEYWORDS,
     "attach_tls(tcp_fd, tun_fd, ssl, rbio, wbio, src4, src6, max_payload) -> Pipe"},
    {"drain", (PyCFunction)Engine_drain, METH_NOARGS,
     "drain() -> list of (pipe id, kind, bytes): what the thread handed back, in order"},
    {"take", (PyCFunction)Engine_take, METH_O,
     "take(pipe_id) -> list of (kind, bytes): that pipe's items, out of the lane, in order"},
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

/* Let go of the pipe; a TLS pipe's ciphertext not sent yet and received but not read are
 * returned in *unsent and *unread (NULL when not asked for, or on failure to allocate). */
static void pipe_close(PipeObject *po, PyObject **unsent, PyObject **unread) {
    Pipe *p = po->p;
    if (p == NULL)
        return;
    Engine *e = po->engine;
    pthread_mutex_lock(&fp_lock);
    if (p->tls)
        set_out_watch(e, p, 0);
    unwatch(e, p->net_fd, &p->net_watched);
    unwatch(e, p->tun_fd, &p->tun_watched);
    p->dead = 1;
    if (unsent != NULL) {
        *unsent = PyBytes_FromStringAndSize((const char *)p->out, p->out_len);
        *unread = PyBytes_FromStringAndSize((const char *)p->unread, p->unread_len);
    }
    free(p->out);
    free(p->unread);
    p->out = p->unread = NULL;
    p->out_len = p->unread_len = 0;
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
    pipe_close(po, NULL, NULL);
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
                       txb = p->tx_bytes, txd = p->tx_dropped, rxr = p->rx_refused;
    double last_rx = p->last_rx, last_activity = p->last_activity;
    p->rx_packets = p->rx_bytes = p->tx_packets = p->tx_bytes = p->tx_dropped = 0;
    p->rx_refused = 0;
    pthread_mutex_unlock(&fp_lock);
    return Py_BuildValue("(KKKKKddK)", rxp, rxb, txp, txb, txd, last_rx, last_activity, rxr);
}

static PyObject *Pipe_close(PipeObject *po, PyObject *unused) {
    if (po->p == NULL || !po->p->tls) {
        pipe_close(po, NULL, NULL);
        Py_RETURN_NONE;
    }
    PyObject *unsent = NULL, *unread = NULL;
    pipe_close(po, &unsent, &unread);
    PyObject *out = unsent && unread ? PyTuple_Pack(2, unsent, unread) : NULL;
    Py_XDECREF(unsent);
    Py_XDECREF(unread);
    return out;
}

/* Python's frames (DPD, keepalive, DISCONNECT, packets the thread handed back) on a TLS pipe:
 * each one TLS record, queued behind the thread's, sent as far as the socket takes them now. */
static PyObject *Pipe_send(PipeObject *po, PyObject *frames) {
    if (po->p == NULL)
        return closed_error();
    if (!po->p->tls || !PyList_Check(frames)) {
        PyErr_SetString(PyExc_TypeError, "send() takes a list of bytes, on a TLS pipe");
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(frames);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *f = PyList_GET_ITEM(frames, i);
        if (!PyBytes_Check(f) || PyBytes_GET_SIZE(f) == 0 || PyBytes_GET_SIZE(f) > MAX_PLAINTEXT) {
            PyErr_SetString(PyExc_ValueError, "each frame is 1 to 16384 bytes");
            return NULL;
        }
    }
    Pipe *p = po->p;
    Engine *e = po->engine;
    unsigned long failure = 0;
    pthread_mutex_lock(&fp_lock);
    int failed_before = p->failed;
    for (Py_ssize_t i = 0; i < count && !p->failed; i++) {
        PyObject *f = PyList_GET_ITEM(frames, i);
        tls_fns.err_clear_error();
        if (tls_fns.ssl_write(p->ssl, PyBytes_AS_STRING(f), (int)PyBytes_GET_SIZE(f)) <= 0) {
            failure = tls_fns.err_get_error();
            tls_fns.err_clear_error(); /* This thread's queue is pyOpenSSL's too. */
            p->failed = 1;
        }
    }
    int collected = tls_collect(e, p);
    if (collected == 0)
        tls_flush(e, p);
    int failed = p->failed;
    pthread_mutex_unlock(&fp_lock);
    if (failed_before) {
        PyErr_SetString(PyExc_OSError, "the TLS connection failed earlier");
        return NULL;
    }
    if (failed || collected < 0) {
        PyErr_Format(PyExc_OSError, "TLS error while sending (OpenSSL error 0x%lx)", failure);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *Pipe_get_unsent(PipeObject *po, void *closure) {
    pthread_mutex_lock(&fp_lock);
    Py_ssize_t unsent = po->p != NULL ? po->p->out_len : 0;
    pthread_mutex_unlock(&fp_lock);
    return PyLong_FromSsize_t(unsent);
}

static PyObject *Pipe_get_id(PipeObject *po, void *closure) {
    return PyLong_FromUnsignedLongLong(po->id);
}

static PyMethodDef Pipe_methods[] = {
    {"configure", (PyCFunction)(void (*)(void))Pipe_configure, METH_VARARGS | METH_KEYWORDS,
     "configure(state, tx_ok, mtu, switch_after) -> None"},
    {"take_stats", (PyCFunction)Pipe_take_stats, METH_NOARGS,
     "take_stats() -> (rx_packets, rx_bytes, tx_packets, tx_bytes, tx_dropped, last_rx, "
     "last_activity, rx_refused); the counters restart at zero"},
    {"close", (PyCFunction)Pipe_close, METH_NOARGS,
     "close() -> None, or for a TLS pipe (unsent, unread) ciphertext: the thread lets go of both "
     "descriptors before this returns"},
    {"send", (PyCFunction)Pipe_send, METH_O,
     "send(frames) -> None: a TLS pipe encrypts each frame as one record and sends them"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Pipe_getset[] = {
    {"id", (getter)Pipe_get_id, NULL, "the id drain() names this pipe by", NULL},
    {"unsent", (getter)Pipe_get_unsent, NULL,
     "a TLS pipe's ciphertext waiting for the socket to take it (bytes)", NULL},
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

static PyObject *bind_tls(PyObject *module, PyObject *args) {
    unsigned long long f[7];
    if (!PyArg_ParseTuple(args, "KKKKKKK:bind_tls", &f[0], &f[1], &f[2], &f[3], &f[4], &f[5],
                          &f[6]))
        return NULL;
    for (int i = 0; i < 7; i++)
        if (f[i] == 0) {
            PyErr_SetString(PyExc_ValueError, "a function address is 0");
            return NULL;
        }
    pthread_mutex_lock(&fp_lock);
    tls_fns.ssl_read = (int (*)(void *, void *, int))(uintptr_t)f[0];
    tls_fns.ssl_write = (int (*)(void *, const void *, int))(uintptr_t)f[1];
    tls_fns.ssl_get_error = (int (*)(const void *, int))(uintptr_t)f[2];
    tls_fns.bio_read = (int (*)(void *, void *, int))(uintptr_t)f[3];
    tls_fns.bio_write = (int (*)(void *, const void *, int))(uintptr_t)f[4];
    tls_fns.err_clear_error = (void (*)(void))(uintptr_t)f[5];
    tls_fns.err_get_error = (unsigned long (*)(void))(uintptr_t)f[6];
    tls_bound = 1;
    pthread_mutex_unlock(&fp_lock);
    Py_RETURN_NONE;
}

static PyMethodDef dataplane_functions[] = {
    {"bind_tls", bind_tls, METH_VARARGS,
     "bind_tls(SSL_read, SSL_write, SSL_get_error, BIO_read, BIO_write, ERR_clear_error, "
     "ERR_get_error) -> None: the addresses of the OpenSSL that owns the tunnels' SSL objects"},
    {NULL, NULL, 0, NULL},
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
        PyModule_AddIntConstant(module, "KIND_TX", KIND_TX) < 0 ||
        PyModule_AddIntConstant(module, "KIND_CSTP", KIND_CSTP) < 0 ||
        PyModule_AddIntConstant(module, "KIND_BACK", KIND_BACK) < 0 ||
        PyModule_AddIntConstant(module, "KIND_FAILED", KIND_FAILED) < 0 ||
        PyModule_AddFunctions(module, dataplane_functions) < 0)
        return -1;
    return 0;
}
