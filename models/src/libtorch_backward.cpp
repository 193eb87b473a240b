// LibTorch's own backward kernels for a convolution and a training-mode batch norm, called
// directly: the same calls PyTorch's autograd makes for `ConvolutionBackward0` and
// `NativeBatchNormBackward0`. The Rust bindings (tch) do not expose these two functions.
//
// Tensors cross the boundary as `at::Tensor*`, the representation tch uses. Outputs are new
// heap tensors the caller owns, or null where the mask did not ask for them. No C++ exception
// crosses the boundary: each function returns null on success or a message, which the caller
// hands back to `dmlbench_free_message`.

#include <ATen/ATen.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <exception>

namespace {

char* message_of(const std::exception& error) {
    return strdup(error.what());
}

// A heap copy of `tensor` for the caller, or null when it was not asked for (undefined).
at::Tensor* hand_over(at::Tensor&& tensor) {
    return tensor.defined() ? new at::Tensor(std::move(tensor)) : nullptr;
}

}  // namespace

extern "C" {

void dmlbench_free_message(char* message) {
    free(message);
}

// dL/dx and dL/dw of a bias-free 2-d convolution, given dL/dy.
char* dmlbench_conv2d_backward(
    const at::Tensor* grad_output,
    const at::Tensor* input,
    const at::Tensor* weight,
    const int64_t* stride,
    const int64_t* padding,
    const int64_t* dilation,
    int64_t groups,
    bool want_input,
    bool want_weight,
    at::Tensor** grad_input,
    at::Tensor** grad_weight) {
    try {
        const int64_t no_output_padding[2] = {0, 0};
        auto grads = at::convolution_backward(
            *grad_output, *input, *weight,
            /*bias_sizes=*/std::nullopt,
            at::IntArrayRef(stride, 2), at::IntArrayRef(padding, 2), at::IntArrayRef(dilation, 2),
            /*transposed=*/false, at::IntArrayRef(no_output_padding, 2), groups,
            std::array<bool, 3>{want_input, want_weight, false});
        *grad_input = hand_over(std::move(std::get<0>(grads)));
        *grad_weight = hand_over(std::move(std::get<1>(grads)));
        return nullptr;
    } catch (const std::exception& error) {
        return message_of(error);
    }
}

// dL/dx, dL/dγ and dL/dβ of batch norm over the batch, given dL/dy and what the forward pass
// saved (the batch mean and the inverse standard deviation 1/√(var + ε)).
char* dmlbench_batch_norm_backward(
    const at::Tensor* grad_output,
    const at::Tensor* input,
    const at::Tensor* gamma,
    const at::Tensor* saved_mean,
    const at::Tensor* saved_inv_std,
    double epsilon,
    bool want_input,
    bool want_gamma,
    bool want_beta,
    at::Tensor** grad_input,
    at::Tensor** grad_gamma,
    at::Tensor** grad_beta) {
    try {
        auto grads = at::native_batch_norm_backward(
            *grad_output, *input, *gamma,
            /*running_mean=*/std::nullopt, /*running_var=*/std::nullopt,
            *saved_mean, *saved_inv_std,
            /*train=*/true, epsilon,
            std::array<bool, 3>{want_input, want_gamma, want_beta});
        *grad_input = hand_over(std::move(std::get<0>(grads)));
        *grad_gamma = hand_over(std::move(std::get<1>(grads)));
        *grad_beta = hand_over(std::move(std::get<2>(grads)));
        return nullptr;
    } catch (const std::exception& error) {
        return message_of(error);
    }
}

}  // extern "C"
