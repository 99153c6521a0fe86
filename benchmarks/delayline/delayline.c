/* A userspace delay line between two network namespaces, for holding the simulator's TCP
 * model against real Linux TCP on a path with round-trip delay (these machines have no
 * netem qdisc). Each namespace gets a TUN device; every IP packet read from one is
 * serialised at RATE bit/s behind the packets before it (drop-tail when more than
 * BUFFER bytes wait), held for the one-way DELAY, then written to the other.
 *
 *   delayline NS_A NS_B RATE_BPS DELAY_US BUFFER_BYTES [QUEUE_LOG] [LINE_BPS]
 *
 * LINE_BPS (0 or absent: at once): a first hop before the buffer. A sender's TUN device
 * hands the delay line a whole burst within microseconds, where a real sender's network
 * card serialises it (1 Gbit/s Ethernet: 12 us a full frame), so the bottleneck drains
 * while the burst is still arriving. Each packet then reaches the buffer once the first
 * hop has serialised it behind the packets before it, and is judged against the buffer
 * at that time. QUEUE_LOG may be "-" for none.
 * Prints "ready" once both devices exist; runs until killed (SIGTERM: it writes out its
 * log first). QUEUE_LOG: a file that gets one 16-byte record per packet read (native
 * byte order): int64 CLOCK_MONOTONIC ns, int32 bytes queued for the serialiser ahead of
 * it, int16 its length, int8 direction (0: NS_A to NS_B), int8 1 if dropped. Packets carry no extra
 * header (IFF_NO_PI); the rate counts IP bytes plus 14 bytes of Ethernet framing, as a
 * shaped Ethernet link would.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define MAXPKT 65536
#define QLEN 65536
#define ETH_FRAMING 14

typedef struct { int64_t due_ns; int len; unsigned char data[1600]; } pkt_t;
typedef struct {
    int in_fd, out_fd;
    pkt_t *q; int head, tail;       /* ring of packets in flight */
    int64_t busy_until_ns;          /* when the serialiser frees up */
    int64_t line_until_ns;          /* when the first hop frees up */
    int64_t queued_bytes;
    int64_t dropped;
} dir_t;

typedef struct {
    int64_t t_ns; int32_t backlog_bytes; int16_t len; int8_t dir, dropped;
} record_t;

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

static int64_t now_ns(void) {
    struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int open_tun_in(const char *ns, const char *name) {
    char path[256]; snprintf(path, sizeof path, "/var/run/netns/%s", ns);
    int self = open("/proc/self/ns/net", O_RDONLY), nsfd = open(path, O_RDONLY);
    if (self < 0 || nsfd < 0 || setns(nsfd, CLONE_NEWNET) < 0) { perror(path); exit(2); }
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK);
    struct ifreq ifr; memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    if (fd < 0 || ioctl(fd, TUNSETIFF, &ifr) < 0) { perror("tun"); exit(2); }
    if (setns(self, CLONE_NEWNET) < 0) { perror("setns back"); exit(2); }
    close(self); close(nsfd);
    return fd;
}

int main(int argc, char **argv) {
    if (argc < 6 || argc > 8) {
        fprintf(stderr, "usage: %s NS_A NS_B RATE_BPS DELAY_US BUFFER_BYTES [QUEUE_LOG] "
                "[LINE_BPS]\n", argv[0]);
        return 2;
    }
    FILE *log = NULL;
    if (argc >= 7 && strcmp(argv[6], "-") && !(log = fopen(argv[6], "wb"))) {
        perror(argv[6]); return 2;
    }
    double line_rate = argc == 8 ? atof(argv[7]) : 0.0;
    struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    double rate = atof(argv[3]);
    int64_t delay_ns = atoll(argv[4]) * 1000LL, buffer = atoll(argv[5]);
    int a = open_tun_in(argv[1], "dl0"), b = open_tun_in(argv[2], "dl0");
    dir_t d[2] = {{a, b}, {b, a}};
    for (int i = 0; i < 2; i++) d[i].q = calloc(QLEN, sizeof(pkt_t));
    printf("ready\n"); fflush(stdout);
    unsigned char buf[MAXPKT];
    while (!stop) {
        int64_t t = now_ns(), next = -1;
        for (int i = 0; i < 2; i++) {          /* deliver what is due */
            dir_t *x = &d[i];
            while (x->head != x->tail && x->q[x->head].due_ns <= t) {
                pkt_t *p = &x->q[x->head];
                if (write(x->out_fd, p->data, p->len) < 0 && errno != EAGAIN) perror("write");
                x->queued_bytes -= p->len; x->head = (x->head + 1) % QLEN;
            }
            if (x->head != x->tail) {
                int64_t due = x->q[x->head].due_ns;
                if (next < 0 || due < next) next = due;
            }
        }
        int64_t wait_ns = next < 0 ? 100000000LL : next - t;
        if (wait_ns > 100000000LL) wait_ns = 100000000LL;
        struct pollfd pf[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
        if (wait_ns > 0) {  /* sleep to the next due time (hrtimer precision) or a packet */
            struct timespec ts = {wait_ns / 1000000000LL, wait_ns % 1000000000LL};
            ppoll(pf, 2, &ts, NULL);
        } else { pf[0].revents = POLLIN; pf[1].revents = POLLIN; }
        for (int i = 0; i < 2; i++) {          /* take in what arrived */
            if (!(pf[i].revents & POLLIN)) continue;
            dir_t *x = &d[i];
            for (;;) {
                int n = read(x->in_fd, buf, sizeof buf);
                if (n <= 0) break;
                int64_t arrive = now_ns();
                if (line_rate > 0) {  /* through the first hop, behind what it still holds */
                    int64_t start = x->line_until_ns > arrive ? x->line_until_ns : arrive;
                    arrive = x->line_until_ns = start + (int64_t)((n + ETH_FRAMING) * 8e9 / line_rate);
                }
                /* queueing (bytes waiting for the serialiser) beyond the buffer: drop */
                int64_t backlog = x->busy_until_ns > arrive ?
                    (int64_t)((x->busy_until_ns - arrive) * rate / 8e9) : 0;
                int drop = backlog + n > buffer || n > 1600 || (x->tail + 1) % QLEN == x->head;
                if (log) {
                    record_t r = {arrive, (int32_t)backlog, (int16_t)n, (int8_t)i, (int8_t)drop};
                    fwrite(&r, sizeof r, 1, log);
                }
                if (drop) { x->dropped++; continue; }
                int64_t start = x->busy_until_ns > arrive ? x->busy_until_ns : arrive;
                x->busy_until_ns = start + (int64_t)((n + ETH_FRAMING) * 8e9 / rate);
                pkt_t *p = &x->q[x->tail];
                p->due_ns = x->busy_until_ns + delay_ns; p->len = n; memcpy(p->data, buf, n);
                x->tail = (x->tail + 1) % QLEN; x->queued_bytes += n;
            }
        }
    }
    if (log) fclose(log);
    return 0;
}
