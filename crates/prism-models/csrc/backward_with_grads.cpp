// LibTorch's backward pass started from given output gradients: what
// `torch.autograd.grad(outputs, inputs, grad_outputs)` does in Python. tch exposes only a backward
// call that seeds each output with ones (`at_run_backward`), which made prism seed its recorded
// convolutions and norms through an extra dot product with Burn's output gradient; this call
// takes that gradient directly. Linked into prism-models with its `tch` feature (build.rs).
#include <cstdlib>
#include <cstring>
#include <exception>
#include <vector>

#include <torch/csrc/autograd/engine.h>
#include <torch/csrc/autograd/variable.h>

extern "C" {

// The gradients of `inputs` (leaves that require a gradient) from the graph behind `outputs`,
// each output seeded with the gradient of the same index; written to `results` as new tensors
// (an undefined tensor for an input the outputs do not depend on). The graph is freed. Returns
// null, or on failure an error message to be released with `prism_free_error` (nothing written).
char* prism_backward_with_grads(at::Tensor* const* outputs,
                                at::Tensor* const* grads,
                                int noutputs,
                                at::Tensor* const* inputs,
                                int ninputs,
                                at::Tensor** results) {
  try {
    torch::autograd::edge_list roots;
    torch::autograd::variable_list seeds;
    for (int i = 0; i < noutputs; ++i) {
      roots.push_back(torch::autograd::impl::gradient_edge(*outputs[i]));
      seeds.push_back(*grads[i]);
    }
    torch::autograd::edge_list wanted;
    for (int i = 0; i < ninputs; ++i) {
      if (!inputs[i]->requires_grad()) {
        throw std::invalid_argument("an input of the backward pass does not require a gradient");
      }
      wanted.push_back(torch::autograd::impl::gradient_edge(*inputs[i]));
    }
    auto gradients = torch::autograd::Engine::get_default_engine().execute(
        roots, seeds, /*keep_graph=*/false, /*create_graph=*/false,
        /*accumulate_grad=*/false, wanted);
    for (int i = 0; i < ninputs; ++i) {
      results[i] = new at::Tensor(gradients[i]);
    }
    return nullptr;
  } catch (const std::exception& e) {
    return strdup(e.what());
  } catch (...) {
    return strdup("unknown C++ exception in LibTorch's backward pass");
  }
}

void prism_free_error(char* message) { free(message); }

}  // extern "C"
