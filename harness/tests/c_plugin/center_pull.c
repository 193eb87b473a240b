/*
 * A loss plugin written in C against include/dmlbench.h, to show that the plugin ABI does
 * not depend on Rust. Loss `c_center_pull`:
 *
 *     L = 1/(2n) * sum_i ||z_i - mu_{y_i}||^2,   mu_c = mean of the batch embeddings of class c
 *     dL/dz_i = (z_i - mu_{y_i}) / n
 *
 * (the terms through mu cancel because deviations within a class sum to zero). Like every
 * plugin it checks its input itself and reports problems through the error sink.
 *
 * It also answers one extension (ABI 1.1), "org.example.c_center_pull.info.v1", a struct
 * naming the language it is written in. Built with -DAS_ABI_1_0 it is instead the plugin
 * `c_center_pull_abi10` of a library built against ABI 1.0: its descriptor ends before
 * get_extension, and the function pointer stored after that end aborts when called, so a
 * host that reads past a descriptor's declared size is caught.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmlbench.h"
#include "plugin_support.h"

typedef struct {
    size_t dim;
} center_pull;

static dmlbench_status create(const dmlbench_create_params *params, void **instance_out,
                              const dmlbench_sink *error) {
    if (params == NULL || instance_out == NULL || params->struct_size < sizeof *params) {
        report(error, "invalid create parameters");
        return DMLBENCH_BAD_INPUT;
    }
    if (!is_blank_or_unit(params->config, params->config_len)) {
        report(error, "c_center_pull takes no options; its config is ()");
        return DMLBENCH_BAD_CONFIG;
    }
    center_pull *self = malloc(sizeof *self);
    if (self == NULL) {
        report(error, "out of memory");
        return DMLBENCH_FAILED;
    }
    self->dim = params->embedding_dim;
    *instance_out = self;
    return DMLBENCH_OK;
}

static void destroy(void *instance) { free(instance); }

static dmlbench_status forward_backward(void *instance, const dmlbench_batch *batch,
                                        dmlbench_loss_output *output, const dmlbench_sink *error) {
    const center_pull *self = instance;
    char message[160];
    if (self == NULL || batch == NULL || output == NULL || batch->struct_size < sizeof *batch ||
        output->struct_size < sizeof *output) {
        report(error, "null or undersized argument");
        return DMLBENCH_BAD_INPUT;
    }
    size_t n = batch->n, d = batch->d;
    if (n == 0 || d == 0 || (self->dim != 0 && d != self->dim) || batch->embeddings == NULL ||
        batch->labels == NULL || output->grad == NULL || batch->embeddings_len != n * d ||
        output->grad_len != n * d) {
        snprintf(message, sizeof message, "batch shape mismatch (n = %zu, d = %zu)", n, d);
        report(error, message);
        return DMLBENCH_BAD_INPUT;
    }
    if (batch->labels_len != n) {
        snprintf(message, sizeof message, "%zu labels for %zu embeddings", batch->labels_len, n);
        report(error, message);
        return DMLBENCH_BAD_INPUT;
    }
    if (batch->tuples.kind != DMLBENCH_TUPLES_NONE) {
        report(error, "c_center_pull does not use mined tuples");
        return DMLBENCH_BAD_INPUT;
    }
    for (size_t i = 0; i < n * d; i++) {
        if (!isfinite(batch->embeddings[i])) {
            snprintf(message, sizeof message, "embedding row %zu, column %zu is not finite", i / d,
                     i % d);
            report(error, message);
            return DMLBENCH_BAD_INPUT;
        }
    }
    /* Class means: for each row, average over the rows with its label (O(n^2 d), fine for a
       demonstration). */
    double loss = 0.0;
    for (size_t i = 0; i < n; i++) {
        size_t members = 0;
        for (size_t j = 0; j < n; j++) members += batch->labels[j] == batch->labels[i];
        for (size_t k = 0; k < d; k++) {
            double mean = 0.0;
            for (size_t j = 0; j < n; j++)
                if (batch->labels[j] == batch->labels[i]) mean += batch->embeddings[j * d + k];
            mean /= (double)members;
            double deviation = batch->embeddings[i * d + k] - mean;
            loss += deviation * deviation / (2.0 * (double)n);
            output->grad[i * d + k] = (float)(deviation / (double)n);
        }
    }
    output->loss = loss;
    if (output->stats.record != NULL) {
        output->stats.record(output->stats.ctx, (const uint8_t *)"rows", 4, (double)n);
    }
    return DMLBENCH_OK;
}

static const dmlbench_vtable VTABLE = {
    sizeof(dmlbench_vtable), destroy, forward_backward, NULL, NULL, NULL, NULL,
};

#ifdef AS_ABI_1_0
#define PLUGIN_ID "c_center_pull_abi10"
#define DESCRIPTOR_SIZE offsetof(dmlbench_descriptor, get_extension)
#define ABI_MINOR 0u
static const void *get_extension(const char *id) {
    (void)id;
    abort(); /* beyond the declared descriptor: a host must never call it */
}
#else
#define PLUGIN_ID "c_center_pull"
#define DESCRIPTOR_SIZE sizeof(dmlbench_descriptor)
#define ABI_MINOR DMLBENCH_ABI_MINOR

/* The example extension: a versioned struct that starts with its size. */
typedef struct {
    size_t struct_size;
    const char *language;
} center_pull_info_v1;

/* LANGUAGE lets a test build the same plugin, id and version from other code. */
#ifndef LANGUAGE
#define LANGUAGE "C"
#endif
static const center_pull_info_v1 INFO_V1 = {sizeof(center_pull_info_v1), LANGUAGE};

static const void *get_extension(const char *id) {
    return strcmp(id, "org.example.c_center_pull.info.v1") == 0 ? (const void *)&INFO_V1 : NULL;
}
#endif

static const dmlbench_descriptor DESCRIPTOR = {
    DESCRIPTOR_SIZE,
    DMLBENCH_KIND_LOSS,
    0,
    PLUGIN_ID,
    "Centre pull (C)",
    "1.0.0",
    "1/(2n) sum ||z_i - mu_{y_i}||^2, written in C",
    "()",
    create,
    &VTABLE,
    get_extension,
};

static uint32_t plugin_count(void) { return 1; }

static const dmlbench_descriptor *plugin_descriptor(uint32_t index) {
    return index == 0 ? &DESCRIPTOR : NULL;
}

static const dmlbench_entry ENTRY = {
    sizeof(dmlbench_entry), DMLBENCH_ABI_MAJOR, ABI_MINOR, "hand-written C",
    plugin_count, plugin_descriptor,
};

const dmlbench_entry *dmlbench_plugin_entry_v1(void) { return &ENTRY; }
