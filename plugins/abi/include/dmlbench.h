/*
 * dmlbench plugin ABI, version 1.2, for C and C++ plugins.
 *
 * The same layout as the Rust crate dmlbench-abi (plugins/abi/src/lib.rs), which documents
 * every field and the ownership rules: inputs are borrowed for one call, outputs go into host
 * buffers or host callbacks that copy, an instance is freed only by its own destroy, and the
 * entry, descriptors, vtables and their strings are static.
 *
 * A plugin library exports one function:
 *
 *     const dmlbench_entry *dmlbench_plugin_entry_v1(void);
 */
#ifndef DMLBENCH_H
#define DMLBENCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DMLBENCH_ABI_MAJOR 1u
#define DMLBENCH_ABI_MINOR 2u

typedef int32_t dmlbench_status;
#define DMLBENCH_OK 0
#define DMLBENCH_BAD_CONFIG 1
#define DMLBENCH_BAD_INPUT 2
#define DMLBENCH_FAILED 3
#define DMLBENCH_PANICKED 4
#define DMLBENCH_UNSUPPORTED 5

typedef uint32_t dmlbench_kind;
#define DMLBENCH_KIND_LOSS 1u
#define DMLBENCH_KIND_MINER 2u

#define DMLBENCH_CAP_ACCEPTS_PAIRS (1ull << 0)
#define DMLBENCH_CAP_ACCEPTS_TRIPLETS (1ull << 1)
#define DMLBENCH_CAP_NEEDS_TUPLES (1ull << 2)
#define DMLBENCH_CAP_OWNS_PARAMETERS (1ull << 3)
#define DMLBENCH_CAP_SUPPORTS_STATE (1ull << 4)
#define DMLBENCH_CAP_PRODUCES_PAIRS (1ull << 5)
#define DMLBENCH_CAP_PRODUCES_TRIPLETS (1ull << 6)
#define DMLBENCH_CAP_ACCEPTS_REFERENCES (1ull << 7)
/* A piecewise smooth loss records the statistic "piece" on every call: equal for two inputs
   on the same smooth piece, different across a kink. */
#define DMLBENCH_CAP_PIECEWISE_SMOOTH (1ull << 8)

typedef uint32_t dmlbench_tuple_kind;
#define DMLBENCH_TUPLES_NONE 0u
#define DMLBENCH_TUPLES_TRIPLETS 1u
#define DMLBENCH_TUPLES_PAIRS 2u

typedef struct dmlbench_sink {
    void *ctx;
    void (*write)(void *ctx, const uint8_t *bytes, size_t len);
} dmlbench_sink;

typedef struct dmlbench_stat_sink {
    void *ctx;
    void (*record)(void *ctx, const uint8_t *name, size_t name_len, double value);
} dmlbench_stat_sink;

typedef struct dmlbench_tuples {
    dmlbench_tuple_kind kind;
    const uint32_t *a1;
    const uint32_t *p;
    size_t pos_len;
    const uint32_t *a2;
    const uint32_t *n;
    size_t neg_len;
} dmlbench_tuples;

/* Since 1.2: reference embeddings beside the batch (cross-batch memory). */
typedef struct dmlbench_references {
    size_t struct_size;
    size_t n;
    const float *embeddings;
    size_t embeddings_len;
    const int64_t *labels;
    size_t labels_len;
    const uint32_t *self_rows;
    size_t self_rows_len;
} dmlbench_references;

typedef struct dmlbench_batch {
    size_t struct_size;
    size_t n;
    size_t d;
    const float *embeddings;
    size_t embeddings_len;
    const int64_t *labels;
    size_t labels_len;
    dmlbench_tuples tuples;
    /* Since 1.2; null when there are no references. */
    const dmlbench_references *references;
} dmlbench_batch;

typedef struct dmlbench_loss_output {
    size_t struct_size;
    double loss;
    float *grad;
    size_t grad_len;
    dmlbench_stat_sink stats;
} dmlbench_loss_output;

typedef struct dmlbench_tuple_sink {
    void *ctx;
    void (*emit)(void *ctx, const dmlbench_tuples *tuples);
} dmlbench_tuple_sink;

typedef struct dmlbench_mine_output {
    size_t struct_size;
    dmlbench_tuple_sink tuples;
    dmlbench_stat_sink stats;
} dmlbench_mine_output;

typedef struct dmlbench_create_params {
    size_t struct_size;
    const uint8_t *config;
    size_t config_len;
    uint32_t embedding_dim;
    uint32_t num_classes;
    uint64_t seed;
    double base_lr;
} dmlbench_create_params;

typedef struct dmlbench_vtable {
    size_t struct_size;
    void (*destroy)(void *instance);
    dmlbench_status (*forward_backward)(void *instance, const dmlbench_batch *batch,
                                        dmlbench_loss_output *output, const dmlbench_sink *error);
    dmlbench_status (*step)(void *instance, double lr_scale, const dmlbench_sink *error);
    dmlbench_status (*mine)(void *instance, const dmlbench_batch *batch,
                            const dmlbench_mine_output *output, const dmlbench_sink *error);
    dmlbench_status (*save_state)(void *instance, const dmlbench_sink *out,
                                  const dmlbench_sink *error);
    dmlbench_status (*load_state)(void *instance, const uint8_t *bytes, size_t len,
                                  const dmlbench_sink *error);
} dmlbench_vtable;

typedef struct dmlbench_descriptor {
    size_t struct_size;
    dmlbench_kind kind;
    uint64_t capabilities;
    const char *id;
    const char *name;
    const char *version;
    const char *summary;
    const char *default_config;
    dmlbench_status (*create)(const dmlbench_create_params *params, void **instance_out,
                              const dmlbench_sink *error);
    const dmlbench_vtable *vtable;
    /* Since 1.1: an extension by id ("vendor.name.vN"), or NULL; may itself be NULL. */
    const void *(*get_extension)(const char *id);
} dmlbench_descriptor;

typedef struct dmlbench_entry {
    size_t struct_size;
    uint32_t abi_major;
    uint32_t abi_minor;
    const char *sdk_version;
    uint32_t (*plugin_count)(void);
    const dmlbench_descriptor *(*plugin_descriptor)(uint32_t index);
} dmlbench_entry;

#ifdef __cplusplus
}
#endif

#endif /* DMLBENCH_H */
