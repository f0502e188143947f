/* A stand-in for farming / mining software that does little CPU work: it keeps the files named in
 * STANDIN_OPEN (colon separated) open, as a harvester keeps plots or a worker keeps sectors open,
 * listens on STANDIN_LISTEN (a port, if it is free on 127.0.0.1), prints "ready" and sleeps until
 * it is ended. Its argv is whatever the test gives it, and the test copies it under the real name. */
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void) {
    const char *files = getenv("STANDIN_OPEN");
    if (files) {
        char *copy = strdup(files);
        for (char *path = strtok(copy, ":"); path; path = strtok(NULL, ":"))
            if (open(path, O_RDONLY) < 0) perror(path);
    }
    const char *port = getenv("STANDIN_LISTEN");
    if (port) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(port)),
                                   .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0) listen(fd, 4);
    }
    printf("ready\n");
    fflush(stdout);
    for (;;) pause();
}
