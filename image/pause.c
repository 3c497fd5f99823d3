/*
 * A minimal pause program for the local nodes' sandbox image (registry.k8s.io/pause:3.10),
 * built by scripts/build-image.sh with `gcc -static -Os` so the image needs no libc.
 *
 * It holds the pod's namespaces open: it blocks until SIGINT or SIGTERM and then exits 0.
 * As PID 1 of a pod with a shared PID namespace it also reaps orphaned children on SIGCHLD.
 */
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

static void on_chld(int sig)
{
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

int main(int argc, char **argv)
{
    struct sigaction sa = {0};
    sigset_t block, wait_mask;

    (void)argv;
    if (argc > 1) {
        /* Like the upstream pause: `-v` and any argument print the version. */
        printf("pause.c (kubemaker) 3.10\n");
        return 0;
    }
    if (getpid() != 1)
        fprintf(stderr, "Warning: pause should be the first process\n");

    /* Block the signals we handle so none is lost between the check and sigsuspend(). */
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGCHLD);
    sigprocmask(SIG_BLOCK, &block, &wait_mask);
    sigdelset(&wait_mask, SIGINT);
    sigdelset(&wait_mask, SIGTERM);
    sigdelset(&wait_mask, SIGCHLD);

    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_term;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = on_chld;
    sa.sa_flags = SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, NULL);

    while (!stop)
        sigsuspend(&wait_mask);
    return 0;
}
