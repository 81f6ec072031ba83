
/*
 * A minimal unit test harness: CHECK records a failure and goes on, and
 * UNIT_DONE prints the plain "N passed, N failed" closing line.
 */


#ifndef _UNIT_H_INCLUDED_
#define _UNIT_H_INCLUDED_


#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static unsigned  unit_passed;
static unsigned  unit_failed;


#define CHECK(cond)                                                          \
    do {                                                                     \
        if (cond) {                                                          \
            unit_passed++;                                                   \
        } else {                                                             \
            unit_failed++;                                                   \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n",                    \
                    __FILE__, __LINE__, #cond);                              \
        }                                                                    \
    } while (0)

#define CHECK_EQ(a, b)                                                       \
    do {                                                                     \
        long long  a_ = (long long) (a), b_ = (long long) (b);               \
        if (a_ == b_) {                                                      \
            unit_passed++;                                                   \
        } else {                                                             \
            unit_failed++;                                                   \
            fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %lld, "          \
                    "expected %s == %lld\n", __FILE__, __LINE__,             \
                    #a, a_, #b, b_);                                         \
        }                                                                    \
    } while (0)

#define CHECK_STR(a, b)                                                      \
    do {                                                                     \
        const char  *a_ = (a), *b_ = (b);                                    \
        if (a_ != NULL && b_ != NULL && strcmp(a_, b_) == 0) {               \
            unit_passed++;                                                   \
        } else {                                                             \
            unit_failed++;                                                   \
            fprintf(stderr, "%s:%d: CHECK_STR failed: %s is \"%s\", "       \
                    "expected \"%s\"\n", __FILE__, __LINE__, #a,             \
                    a_ ? a_ : "(null)", b_ ? b_ : "(null)");                \
        }                                                                    \
    } while (0)

#define UNIT_DONE(name)                                                      \
    do {                                                                     \
        printf("%s: %u passed, %u failed\n", name, unit_passed,             \
               unit_failed);                                                 \
        return unit_failed ? 1 : 0;                                          \
    } while (0)


#endif /* _UNIT_H_INCLUDED_ */
