/*
 * A loss that ends or stalls the process that calls it, for the tests of how the host
 * survives such plugins. Compiled once per behaviour, with
 *
 *     -DPLUGIN_ID='"c_some_id"'   the plugin's id, and one of
 *     -DCRASH_IN_ENTRY    (while the library is being loaded)
 *     -DCRASH_IN_CREATE   -DHANG_IN_CREATE
 *     -DCRASH_IN_FORWARD  -DEXIT_IN_FORWARD  -DHANG_IN_FORWARD
 *     -DWELL_BEHAVED      (none of the above)
 *
 * Before it misbehaves it writes a line to stderr, with a terminal escape sequence in it, so
 * that the tests can see that the host quotes the last output of the process, escaped.
 * Otherwise it is a well-behaved loss: L = 1/(2n) sum_i ||z_i||^2, dL/dz_i = z_i / n.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dmlbench.h"
#include "plugin_support.h"

#ifndef PLUGIN_ID
#error "define PLUGIN_ID"
#endif

/* Read through a volatile pointer, so the compiler cannot see that it is null and the store
   below is a real invalid write (SIGSEGV), not a trap instruction. */
static int *volatile nowhere = NULL;

/* Unused in the well-behaved build. */
__attribute__((unused)) static void misbehave(const char *where, int crash, int leave, int hang) {
    fprintf(stderr, "%s: giving up in %s \x1b[31mnow\x1b[0m\n", PLUGIN_ID, where);
    fflush(stderr);
    if (crash) *nowhere = 1;
    if (leave) exit(0);
    if (hang) {
        for (;;) {
            struct timespec second = {1, 0};
            nanosleep(&second, NULL);
        }
    }
}

static dmlbench_status create(const dmlbench_create_params *params, void **instance_out,
                              const dmlbench_sink *error) {
#if defined(CRASH_IN_CREATE) || defined(HANG_IN_CREATE)
#ifdef CRASH_IN_CREATE
    misbehave("create", 1, 0, 0);
#else
    misbehave("create", 0, 0, 1);
#endif
#endif
    if (params == NULL || instance_out == NULL || params->struct_size < sizeof *params) {
        report(error, "invalid create parameters");
        return DMLBENCH_BAD_INPUT;
    }
    if (!is_blank_or_unit(params->config, params->config_len)) {
        report(error, "this plugin takes no options; its config is ()");
        return DMLBENCH_BAD_CONFIG;
    }
    size_t *dim = malloc(sizeof *dim);
    if (dim == NULL) {
        report(error, "out of memory");
        return DMLBENCH_FAILED;
    }
    *dim = params->embedding_dim;
    *instance_out = dim;
    return DMLBENCH_OK;
}

static void destroy(void *instance) { free(instance); }

static dmlbench_status forward_backward(void *instance, const dmlbench_batch *batch,
                                        dmlbench_loss_output *output, const dmlbench_sink *error) {
#if defined(CRASH_IN_FORWARD)
    misbehave("forward_backward", 1, 0, 0);
#elif defined(EXIT_IN_FORWARD)
    misbehave("forward_backward", 0, 1, 0);
#elif defined(HANG_IN_FORWARD)
    misbehave("forward_backward", 0, 0, 1);
#endif
    if (instance == NULL || batch == NULL || output == NULL || batch->embeddings == NULL ||
        output->grad == NULL || batch->embeddings_len != batch->n * batch->d ||
        output->grad_len != batch->n * batch->d || batch->labels_len != batch->n || batch->n == 0) {
        report(error, "batch shape mismatch");
        return DMLBENCH_BAD_INPUT;
    }
    double loss = 0.0;
    for (size_t i = 0; i < batch->n * batch->d; i++) {
        double z = batch->embeddings[i];
        loss += z * z / (2.0 * (double)batch->n);
        output->grad[i] = (float)(z / (double)batch->n);
    }
    output->loss = loss;
    return DMLBENCH_OK;
}

static const dmlbench_vtable VTABLE = {
    sizeof(dmlbench_vtable), destroy, forward_backward, NULL, NULL, NULL, NULL,
};

static const dmlbench_descriptor DESCRIPTOR = {
    sizeof(dmlbench_descriptor),
    DMLBENCH_KIND_LOSS,
    0,
    PLUGIN_ID,
    "Misbehaving (C)",
    "1.0.0",
    "ends or stalls the process that calls it, for tests",
    "()",
    create,
    &VTABLE,
    NULL, /* get_extension: no extensions */
};

static uint32_t plugin_count(void) { return 1; }

static const dmlbench_descriptor *plugin_descriptor(uint32_t index) {
    return index == 0 ? &DESCRIPTOR : NULL;
}

static const dmlbench_entry ENTRY = {
    sizeof(dmlbench_entry), DMLBENCH_ABI_MAJOR, DMLBENCH_ABI_MINOR, "hand-written C",
    plugin_count, plugin_descriptor,
};

const dmlbench_entry *dmlbench_plugin_entry_v1(void) {
#ifdef CRASH_IN_ENTRY
    misbehave("its entry function", 1, 0, 0);
#endif
    return &ENTRY;
}
