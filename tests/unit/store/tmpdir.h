/* tests/unit/store/tmpdir.h — the temporary directory a store test program
 * keeps its database files in: made (mkdtemp) before its tests run, removed
 * with everything in it after. Header-only: each test program includes it.
 */
#ifndef OTP_TESTS_STORE_TMPDIR_H
#define OTP_TESTS_STORE_TMPDIR_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>

/* Makes dir from its XXXXXX template; 0, or -1 after saying why. */
static inline int tmpdir_make(char *dir)
{
    if (mkdtemp(dir))
        return 0;
    perror("mkdtemp");
    return -1;
}

static inline int tmpdir_rm_entry(const char *path, const struct stat *sb, int flag,
                                  struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Removes dir and everything below it. */
static inline void tmpdir_remove(const char *dir)
{
    nftw(dir, tmpdir_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
