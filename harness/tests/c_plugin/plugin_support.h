/*
 * Small helpers the hand-written C test plugins share: reporting an error message through the
 * host's sink, and accepting the empty configuration of a plugin without options.
 */
#ifndef DMLBENCH_TEST_PLUGIN_SUPPORT_H
#define DMLBENCH_TEST_PLUGIN_SUPPORT_H

#include <string.h>

#include "dmlbench.h"

static inline void report(const dmlbench_sink *error, const char *message) {
    if (error != NULL && error->write != NULL) {
        error->write(error->ctx, (const uint8_t *)message, strlen(message));
    }
}

/* A plugin without options accepts "" or "()", with any whitespace. */
static inline int is_blank_or_unit(const uint8_t *text, size_t len) {
    char compact[8];
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ' || text[i] == '\n' || text[i] == '\t' || text[i] == '\r') continue;
        if (k >= sizeof compact - 1) return 0;
        compact[k++] = (char)text[i];
    }
    compact[k] = '\0';
    return k == 0 || strcmp(compact, "()") == 0;
}

#endif
