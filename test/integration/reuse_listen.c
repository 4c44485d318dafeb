/*
 * reuse_listen PORT [PORT...] -- PROGRAM [ARGS...]
 *
 * Opens a listening TCP socket on 127.0.0.1:PORT for each PORT, with
 * SO_REUSEADDR, as file descriptors 3, 4, ... in order, and executes PROGRAM
 * with them inherited.  For restarting swtpm on the same port right after it
 * was killed (swtpm binds without SO_REUSEADDR, so its own bind fails for up
 * to a minute while the dead server's connections linger in TIME_WAIT):
 *   reuse_listen P P+1 -- swtpm socket ... --server type=tcp,fd=3 --ctrl type=tcp,fd=4
 * Exit 1 if a socket cannot be made (the error on stderr), else PROGRAM's.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int i, n = 0, fd, one = 1;

    for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[i])) };

        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0
            || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0) {
            fprintf(stderr, "reuse_listen: 127.0.0.1:%s: ", argv[i]);
            perror(NULL);
            return 1;
        }
        if (fd != 3 + n) {
            if (dup2(fd, 3 + n) < 0) {
                perror("reuse_listen: dup2");
                return 1;
            }
            close(fd);
        }
        n++;
    }
    if (i >= argc - 1 || n == 0) {
        fprintf(stderr, "usage: reuse_listen PORT [PORT...] -- PROGRAM [ARGS...]\n");
        return 2;
    }
    execvp(argv[i + 1], argv + i + 1);
    perror(argv[i + 1]);
    return 1;
}
