/* The floor for creating a base image's files on this disk: copies a tree
 * (directories, regular files, symlinks) with the fewest syscalls a
 * program can use: mkdir, open(O_CREAT|O_EXCL) + write + close, symlink,
 * one thread, no metadata after creation unless -m (then fchown, fchmod
 * and futimens per file, as an extractor keeping owners and times does).
 * Usage: copytree [-m] SRC DST   (DST must not exist)
 * Prints the files made and the seconds taken. Used by docs/benchmarks.md. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int meta;
static long made;
static char buf[1 << 16];

static void copy(const char *src, const char *dst) {
    struct stat st;
    if (lstat(src, &st)) { perror(src); exit(1); }
    if (S_ISDIR(st.st_mode)) {
        if (mkdir(dst, st.st_mode & 07777)) { perror(dst); exit(1); }
        DIR *d = opendir(src);
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char s[4096], t[4096];
            snprintf(s, sizeof s, "%s/%s", src, e->d_name);
            snprintf(t, sizeof t, "%s/%s", dst, e->d_name);
            copy(s, t);
        }
        closedir(d);
    } else if (S_ISLNK(st.st_mode)) {
        char target[4096];
        ssize_t n = readlink(src, target, sizeof target - 1);
        target[n < 0 ? 0 : n] = 0;
        if (symlink(target, dst)) { perror(dst); exit(1); }
    } else if (S_ISREG(st.st_mode)) {
        int in = open(src, O_RDONLY | O_CLOEXEC);
        int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, st.st_mode & 07777);
        if (in < 0 || out < 0) { perror(dst); exit(1); }
        ssize_t n;
        while ((n = read(in, buf, sizeof buf)) > 0)
            if (write(out, buf, n) != n) { perror(dst); exit(1); }
        if (meta) {
            struct timespec ts[2] = {st.st_atim, st.st_mtim};
            if (fchown(out, st.st_uid, st.st_gid) || fchmod(out, st.st_mode & 07777) ||
                futimens(out, ts)) { perror(dst); exit(1); }
        }
        close(in);
        close(out);
    } else {
        return; /* devices, fifos: not in a minbase tree */
    }
    made++;
}

int main(int argc, char **argv) {
    int i = 1;
    if (argc > 1 && !strcmp(argv[1], "-m")) { meta = 1; i++; }
    if (argc - i != 2) { fprintf(stderr, "usage: copytree [-m] SRC DST\n"); return 2; }
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    copy(argv[i], argv[i + 1]);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%ld entries in %.3f s\n", made, (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9);
    return 0;
}
