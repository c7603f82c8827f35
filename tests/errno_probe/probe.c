/* errno probe: run the same system calls on any mounted filesystem and print what each returned.
 *
 * Used by tests/test_errno_table.py, built static so the identical binary runs on the host (against
 * a fsproto FUSE mount) and in a QEMU guest (against the kernel's own vfat driver): one syscall per
 * line, no libc wrapper that retries or falls back (busybox mv copies on EXDEV, touch also sets times).
 *
 * usage: probe DIR SCRIPT -- chdir to DIR, then for each line of SCRIPT (fields separated by TAB):
 *   ID OP ARG...   and print "ID RESULT" where RESULT is 0 or the errno's name (EACCES...).
 * OPs: creat P | open_r P | open_w P | open_dir_w P | stat P | truncate P SIZE | pwrite P OFF |
 *      unlink P | mkdir P | rmdir P | rename A B | link A B | symlink T P | mkfifo P |
 *      chmod P OCTAL | chown P UID GID | utime P | mode P (prints mode=OCTAL uid=N gid=N) |
 *      fillfile P (write 64 KiB pieces until an error) | fill PREFIX N (create PREFIX0.. until an error;
 *      prints the errno and count=N).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

static const char *name(int e) {
    switch (e) {
    case 0: return "0";
    case EPERM: return "EPERM"; case ENOENT: return "ENOENT"; case EIO: return "EIO";
    case EACCES: return "EACCES"; case EEXIST: return "EEXIST"; case EXDEV: return "EXDEV";
    case ENOTDIR: return "ENOTDIR"; case EISDIR: return "EISDIR"; case EINVAL: return "EINVAL";
    case EFBIG: return "EFBIG"; case ENOSPC: return "ENOSPC"; case EROFS: return "EROFS";
    case ENAMETOOLONG: return "ENAMETOOLONG"; case ENOTEMPTY: return "ENOTEMPTY";
    case ENOSYS: return "ENOSYS"; case EOPNOTSUPP: return "EOPNOTSUPP"; case EBUSY: return "EBUSY";
    case ENODATA: return "ENODATA"; case ESTALE: return "ESTALE"; case EMLINK: return "EMLINK";
    default: { static char buf[32]; snprintf(buf, sizeof buf, "E%d", e); return buf; }
    }
}

static int rc(int r) { return r < 0 ? errno : 0; }

static int open_close(const char *p, int flags) {
    int fd = open(p, flags, 0644);
    if (fd < 0) return errno;
    return close(fd) < 0 ? errno : 0;
}

int main(int argc, char **argv) {
    if (argc != 3 || chdir(argv[1]) < 0) { perror("probe"); return 2; }
    FILE *f = fopen(argv[2], "r");
    if (!f) { perror(argv[2]); return 2; }
    static char line[8192];
    static char chunk[65536];
    memset(chunk, 'x', sizeof chunk);
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *a[5] = {0};
        int n = 0;
        for (char *t = strtok(line, "\t"); t && n < 5; t = strtok(NULL, "\t")) a[n++] = t;
        if (n < 3) continue;
        const char *id = a[0], *op = a[1], *p = a[2];
        int e = 0;
        if (!strcmp(op, "creat")) e = open_close(p, O_WRONLY | O_CREAT);
        else if (!strcmp(op, "open_r")) e = open_close(p, O_RDONLY);
        else if (!strcmp(op, "open_w")) e = open_close(p, O_WRONLY);
        else if (!strcmp(op, "open_dir_w")) e = open_close(p, O_WRONLY | O_DIRECTORY);
        else if (!strcmp(op, "stat")) { struct stat st; e = rc(lstat(p, &st)); }
        else if (!strcmp(op, "truncate")) e = rc(truncate(p, strtoll(a[3], NULL, 0)));
        else if (!strcmp(op, "pwrite")) {
            int fd = open(p, O_WRONLY);
            if (fd < 0) e = errno;
            else { e = pwrite(fd, "x", 1, strtoll(a[3], NULL, 0)) < 0 ? errno : 0; close(fd); }
        }
        else if (!strcmp(op, "unlink")) e = rc(unlink(p));
        else if (!strcmp(op, "mkdir")) e = rc(mkdir(p, 0755));
        else if (!strcmp(op, "rmdir")) e = rc(rmdir(p));
        else if (!strcmp(op, "rename")) e = rc(rename(p, a[3]));
        else if (!strcmp(op, "link")) e = rc(link(p, a[3]));
        else if (!strcmp(op, "symlink")) e = rc(symlink(p, a[3]));
        else if (!strcmp(op, "mkfifo")) e = rc(mkfifo(p, 0644));
        else if (!strcmp(op, "chmod")) e = rc(chmod(p, strtol(a[3], NULL, 8)));
        else if (!strcmp(op, "chown")) e = rc(chown(p, atoi(a[3]), atoi(a[4])));
        else if (!strcmp(op, "utime")) e = rc(utimensat(AT_FDCWD, p, NULL, 0));
        else if (!strcmp(op, "mode")) {
            struct stat st;
            if (lstat(p, &st) < 0) { printf("%s %s\n", id, name(errno)); continue; }
            printf("%s mode=%o uid=%d gid=%d\n", id, st.st_mode, (int)st.st_uid, (int)st.st_gid);
            continue;
        }
        else if (!strcmp(op, "fillfile")) {
            int fd = open(p, O_WRONLY | O_CREAT, 0644);
            if (fd < 0) e = errno;
            else {
                for (;;) { if (write(fd, chunk, sizeof chunk) < 0) { e = errno; break; } }
                if (close(fd) < 0 && !e) e = errno;
            }
        }
        else if (!strcmp(op, "fill")) {
            int max = atoi(a[3]), i;
            char path[4096];
            for (i = 0; i < max; i++) {
                snprintf(path, sizeof path, "%s%d", p, i);
                if ((e = open_close(path, O_WRONLY | O_CREAT))) break;
            }
            printf("%s %s count=%d\n", id, name(e), i);
            continue;
        }
        else { printf("%s unknown-op\n", id); continue; }
        printf("%s %s\n", id, name(e));
    }
    fflush(stdout);
    return 0;
}
