/* seed.c — the lesson's own server, in C: the program socklab's `seed` design is the Python twin of.
 *
 *     socket(); bind(); listen(fd, 10);
 *     for (;;) { conn = accept(); n = recv(conn, buf, 4096); print it; close(conn); }
 *
 * It never replies: a client sends one message and waits for the close.  Built by .ci/setup with the
 * system's cc (servers/c/build/seed-c) and run through socklab as
 *
 *     socklab ... --server-cmd 'seed-c=servers/c/build/seed-c {port}' --user-mode one-shot
 *
 * Usage: seed-c [PORT [BACKLOG [ADDRESS]]]   (defaults 6666, 10, 127.0.0.1).  It prints each message
 * to stdout, as the lesson's does (socklab sends its stdout to /dev/null).  SIGTERM ends it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MESSAGE_BYTES 4096

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 6666;
    int backlog = argc > 2 ? atoi(argv[2]) : 10;
    const char *address = argc > 3 ? argv[3] : "127.0.0.1";
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    if (port <= 0 || port > 65535 || backlog < 0 || inet_pton(AF_INET, address, &addr.sin_addr) != 1) {
        fprintf(stderr, "usage: %s [PORT [BACKLOG [IPv4 ADDRESS]]]\n", argv[0]);
        return 2;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) {
        perror("socket");
        return 1;
    }
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, backlog) < 0) {
        fprintf(stderr, "seed: cannot listen on %s:%d: %s\n", address, port, strerror(errno));
        return 1;
    }
    char buf[MESSAGE_BYTES + 1];
    for (;;) {
        int conn = accept(fd, NULL, NULL);
        if (conn < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE) continue;
            perror("accept");
            return 1;
        }
        ssize_t n = recv(conn, buf, MESSAGE_BYTES, 0);
        if (n > 0) {
            buf[n] = '\0';
            printf("received %zd bytes: %s\n", n, buf);
        }
        close(conn);
    }
}
