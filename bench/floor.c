/* floor.c — the physical floor of fan-out on this machine: an epoll program that writes the same
 * pre-encoded WebSocket frame to N loopback sockets in G groups at a fixed rate, no gateway logic.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

static int conns = 10000, groups = 100, nsrc = 8, frame_bytes = 240;
static double rate = 100, duration = 10;

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* The reader: N connected sockets, read and discard until every peer closes (or time is up). */
static int run_reader(int port)
{
    int ep = epoll_create1(0), open_n = 0;
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    dst.sin_addr.s_addr = htonl(0x7f000001u);
    for (int i = 0; i < conns; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(0x7f000002u + (unsigned)(i % nsrc));
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        if (fd < 0 || bind(fd, (struct sockaddr *)&src, sizeof(src)) ||
            connect(fd, (struct sockaddr *)&dst, sizeof(dst))) {
            perror("floor reader: connect");
            return -errno;
        }
        fcntl(fd, F_SETFL, O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        open_n++;
    }
    static char buf[65536];
    struct epoll_event evs[256];
    uint64_t end = now_us() + (uint64_t)((duration + 30) * 1e6);
    while (open_n > 0 && now_us() < end) {
        int n = epoll_wait(ep, evs, 256, 1000);
        for (int i = 0; i < n; i++) {
            ssize_t r;
            while ((r = read(evs[i].data.fd, buf, sizeof(buf))) > 0)
                ;
            if (r == 0) {
                close(evs[i].data.fd);
                open_n--;
            }
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"conns", 1, 0, 'n'}, {"groups", 1, 0, 'g'}, {"rate", 1, 0, 'r'}, {"duration", 1, 0, 'd'},
        {"bytes", 1, 0, 'b'}, {"src", 1, 0, 's'},    {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'n':
            conns = atoi(optarg);
            break;
        case 'g':
            groups = atoi(optarg);
            break;
        case 'r':
            rate = atof(optarg);
            break;
        case 'd':
            duration = atof(optarg);
            break;
        case 'b':
            frame_bytes = atoi(optarg);
            break;
        case 's':
            nsrc = atoi(optarg);
            break;
        default:
            fputs("usage: floor --conns N --groups G --rate R --duration S --bytes B --src N\n",
                  stderr);
            return 2;
        }
    }
    if (conns < 1 || groups < 1 || groups > conns || rate <= 0 || frame_bytes < 4 ||
        frame_bytes > 65535 || duration > 600) {
        fputs("floor: bad arguments\n", stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(0x7f000001u);
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    socklen_t al = sizeof(a);
    if (bind(ls, (struct sockaddr *)&a, sizeof(a)) || listen(ls, 4096) ||
        getsockname(ls, (struct sockaddr *)&a, &al)) {
        perror("floor: listen");
        return 1;
    }
    pid_t child = fork();
    if (child == 0) {
        close(ls);
        _exit(run_reader(ntohs(a.sin_port)) ? 1 : 0);
    }
    /* The writer: accept N, then the pre-encoded frame to every member of a group per publication.
     */
    int *fds = calloc((size_t)conns, sizeof(int));
    int ep = epoll_create1(0);
    for (int i = 0; i < conns; i++) {
        fds[i] = accept(ls, NULL, NULL);
        if (fds[i] < 0) {
            perror("floor: accept");
            kill(child, SIGTERM);
            return 1;
        }
        setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        fcntl(fds[i], F_SETFL, O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fds[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
    }
    close(ls);
    uint8_t *frame = malloc((size_t)frame_bytes);
    size_t hl = frame_bytes - 2 < 126 ? 2 : 4, pl = (size_t)frame_bytes - hl;
    frame[0] = 0x82;
    if (hl == 2) {
        frame[1] = (uint8_t)pl;
    } else {
        frame[1] = 126;
        frame[2] = (uint8_t)(pl >> 8);
        frame[3] = (uint8_t)pl;
    }
    memset(frame + hl, 'x', pl);
    /* members of group g: sockets i with i % groups == g (the loadgen's assignment) */
    long total = (long)(rate * duration), pubs = 0, writes = 0, short_w = 0;
    uint64_t t0 = now_us(), c0 = cpu_us();
    struct epoll_event evs[64];
    while (pubs < total) {
        uint64_t due_at = t0 + (uint64_t)((double)pubs * 1e6 / rate), now = now_us();
        if (due_at > now) {
            int ms = (int)((due_at - now) / 1000);
            epoll_wait(ep, evs, 64, ms);
            if (now_us() < due_at)
                continue;
        }
        int g = (int)(pubs % groups);
        for (int i = g; i < conns; i += groups) {
            ssize_t w = write(fds[i], frame, (size_t)frame_bytes);
            writes++;
            if (w != frame_bytes)
                short_w++;
        }
        pubs++;
    }
    uint64_t t1 = now_us(), c1 = cpu_us();
    for (int i = 0; i < conns; i++)
        close(fds[i]);
    int st;
    waitpid(child, &st, 0);
    double us = (double)(c1 - c0);
    printf("{\"ev\":\"floor\",\"conns\":%d,\"groups\":%d,\"rate\":%.1f,\"frame_bytes\":%d,"
           "\"publications\":%ld,\"writes\":%ld,\"short_writes\":%ld,\"elapsed_us\":%llu,"
           "\"cpu_us\":%.0f,\"us_per_write\":%.3f}\n",
           conns, groups, rate, frame_bytes, pubs, writes, short_w, (unsigned long long)(t1 - t0),
           us, writes ? us / (double)writes : 0.0);
    return 0;
}
