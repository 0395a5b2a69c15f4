/*
 * module.c - loading module shared objects.
 *
 * dlopen() of a path that is already open returns the image already in
 * memory, so a module rebuilt on disk would silently keep running its old
 * code after a reload.  Every load therefore goes through a private copy
 * with a unique name; the copy is unlinked as soon as it is mapped.  The
 * file in modules_dir is identified by device, inode and mtime: the same
 * identity shares the loaded image, a new one loads afresh.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "core.h"
#include "log.h"

static sl_dso *dsos;
static char copy_dir[PATH_MAX];
static unsigned long copy_seq;

static int same_file(const sl_dso *d, const struct stat *st)
{
    return d->dev == st->st_dev && d->ino == st->st_ino && d->mtime.tv_sec == st->st_mtim.tv_sec &&
           d->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

static int make_copy_dir(sl_errors *errs)
{
    const char *tmp = getenv("TMPDIR");

    if (copy_dir[0] != '\0')
        return 0;
    snprintf(copy_dir, sizeof(copy_dir), "%s/sluiced-modules.XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (mkdtemp(copy_dir) == NULL) {
        sl_errors_add(errs, NULL, 0, "cannot create a directory for module copies in %s: %s",
                      tmp != NULL ? tmp : "/tmp", strerror(errno));
        copy_dir[0] = '\0';
        return -1;
    }
    return 0;
}

static int copy_file(const char *from, const char *to)
{
    char buf[65536];
    int in = open(from, O_RDONLY | O_CLOEXEC), out = -1, rc = -1;
    ssize_t n;

    if (in < 0)
        return -1;
    out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0700);
    if (out < 0)
        goto done;
    while ((n = read(in, buf, sizeof(buf))) > 0) {
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                goto done;
            }
            off += w;
        }
    }
    rc = n == 0 ? 0 : -1;
done:
    if (out >= 0 && close(out) != 0)
        rc = -1;
    close(in);
    return rc;
}

/* How many bytes of sl_module a module built for ABI `abi` defines, or 0
 * for an ABI this core does not load.  The descriptor only grows at its
 * end (sluice.h), so each version's is a prefix of ours. */
static size_t descriptor_size(int abi)
{
    _Static_assert(SL_ABI_VERSION == 3, "a new module ABI needs its descriptor size here");
    switch (abi) {
    case 2:
        return offsetof(sl_module, check);
    case 3:
        return sizeof(sl_module);
    default:
        return 0;
    }
}

static void refuse_abi(const char *name, const char *path, int abi, sl_errors *errs)
{
    if (abi > SL_ABI_VERSION)
        sl_errors_add(errs, NULL, 0,
                      "module %s: %s has module ABI version %d, newer than this sluiced's %d: "
                      "upgrade sluiced or rebuild the module against its <sluice/sluice.h>",
                      name, path, abi, SL_ABI_VERSION);
    else
        sl_errors_add(errs, NULL, 0,
                      "module %s: %s has module ABI version %d, which this sluiced no longer "
                      "loads (it loads %d to %d): rebuild the module against its <sluice/sluice.h>",
                      name, path, abi, SL_ABI_OLDEST, SL_ABI_VERSION);
}

/* Loads `path` through a private copy and checks its descriptor. */
static sl_dso *load(const char *path, const char *name, const struct stat *st, sl_errors *errs)
{
    char copy[PATH_MAX];
    const sl_module *mod;
    size_t size;
    sl_dso *d;
    void *h;

    if (make_copy_dir(errs) != 0)
        return NULL;
    snprintf(copy, sizeof(copy), "%s/%s.%lu.so", copy_dir, name, ++copy_seq);
    if (copy_file(path, copy) != 0) {
        sl_errors_add(errs, NULL, 0, "module %s: cannot copy %s: %s", name, path, strerror(errno));
        unlink(copy);
        return NULL;
    }
    h = dlopen(copy, RTLD_NOW | RTLD_LOCAL);
    unlink(copy);
    if (h == NULL) {
        sl_errors_add(errs, NULL, 0, "module %s: cannot load %s: %s", name, path, dlerror());
        return NULL;
    }
    mod = dlsym(h, "sluice_module");
    if (mod == NULL) {
        sl_errors_add(errs, NULL, 0, "module %s: %s does not export sluice_module", name, path);
        dlclose(h);
        return NULL;
    }
    size = descriptor_size(mod->abi_version);
    if (size == 0) {
        refuse_abi(name, path, mod->abi_version, errs);
        dlclose(h);
        return NULL;
    }
    if (mod->name == NULL || strcmp(mod->name, name) != 0 || mod->start == NULL) {
        sl_errors_add(errs, NULL, 0, "module %s: %s declares the name '%s' or has no start()", name,
                      path, mod->name != NULL ? mod->name : "(null)");
        dlclose(h);
        return NULL;
    }
    d = calloc(1, sizeof(*d));
    if (d == NULL || (d->path = strdup(path)) == NULL) {
        free(d);
        dlclose(h);
        sl_errors_add(errs, NULL, 0, "module %s: out of memory", name);
        return NULL;
    }
    d->dev = st->st_dev;
    d->ino = st->st_ino;
    d->mtime = st->st_mtim;
    d->handle = h;
    /* Only the members the module's version defines are read: an older
     * descriptor ends before the hooks added since, which stay NULL. */
    memcpy(&d->desc, mod, size);
    d->mod = &d->desc;
    if (mod->abi_version != SL_ABI_VERSION)
        sl_log_core(SL_LOG_INFO, "core",
                    "module %s is built for module ABI %d: loaded without the hooks ABI %d added",
                    name, mod->abi_version, SL_ABI_VERSION);
    d->refs = 1;
    d->next = dsos;
    dsos = d;
    sl_log_core(SL_LOG_DEBUG, "core", "loaded module %s from %s", name, path);
    return d;
}

static int valid_name(const char *name)
{
    if (name[0] == '\0')
        return 0;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
            return 0;
    return 1;
}

sl_dso *sl_dso_get(const char *dir, const char *name, sl_errors *errs)
{
    char path[PATH_MAX];
    struct stat st;

    /* The name becomes part of a path: keep it to a plain file name. */
    if (!valid_name(name)) {
        sl_errors_add(errs, NULL, 0, "module name '%s' must be [a-z0-9_-]+", name);
        return NULL;
    }
    snprintf(path, sizeof(path), "%s/%s.so", dir, name);
    if (stat(path, &st) != 0) {
        sl_errors_add(errs, NULL, 0, "module %s: %s: %s", name, path, strerror(errno));
        return NULL;
    }
    for (sl_dso *d = dsos; d != NULL; d = d->next) {
        if (strcmp(d->path, path) == 0 && same_file(d, &st)) {
            d->refs++;
            return d;
        }
    }
    return load(path, name, &st, errs);
}

void sl_dso_ref(sl_dso *dso)
{
    dso->refs++;
}

void sl_dso_put(sl_dso *dso)
{
    if (--dso->refs > 0)
        return;
    /* The last reference: no instance of this image exists any more.  Make
     * sure none left anything behind before unmapping its code. */
    for (sl_ctx *c = sl_instances; c != NULL; c = c->next) {
        if (c->dso == dso && c->nresources > 0) {
            sl_log_core(SL_LOG_ERROR, "core",
                        "module %s still owns %zu resources; not unloading %s", dso->mod->name,
                        c->nresources, dso->path);
            return;
        }
    }
    for (sl_dso **pp = &dsos; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == dso) {
            *pp = dso->next;
            break;
        }
    }
    sl_log_core(SL_LOG_DEBUG, "core", "unloading module %s (%s): it owns nothing", dso->mod->name,
                dso->path);
    dlclose(dso->handle);
    free(dso->path);
    free(dso);
}

void sl_dso_cleanup(void)
{
    if (copy_dir[0] != '\0')
        rmdir(copy_dir);
}
