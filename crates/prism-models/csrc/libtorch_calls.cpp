// The two LibTorch calls prism needs that tch does not expose, linked into prism-models with its
// `tch` feature (build.rs):
// - LibTorch's backward pass started from given output gradients: what
//   `torch.autograd.grad(outputs, inputs, grad_outputs)` does in Python. tch exposes only a
//   backward call that seeds each output with ones (`at_run_backward`), which made prism seed its
//   recorded convolutions and norms through an extra dot product with Burn's output gradient.
// - LibTorch's fused AdamW step (`torch._fused_adamw_`, what `torch.optim.AdamW(fused=True)`
//   calls): one pass over a parameter, its gradient and its two moments, where AdamW written as
//   tensor operations makes about fifteen.
#include <cstdlib>
#include <cstring>
#include <exception>
#include <vector>

#include <ATen/ops/_fused_adamw.h>
#include <ATen/ops/full.h>
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

// One AdamW step, in place, on `n` parameters with their gradients and moments (float tensors of
// one device and dtype): the moments move with `beta1` / `beta2`, the parameter decays by
// `lr * weight_decay` and moves by `lr` times the bias-corrected update for step number `step`
// (1 at the first). Returns null, or on failure an error message (nothing changed: LibTorch
// checks its arguments before it writes).
char* prism_fused_adamw(at::Tensor* const* params,
                        at::Tensor* const* grads,
                        at::Tensor* const* exp_avgs,
                        at::Tensor* const* exp_avg_sqs,
                        int n,
                        double lr,
                        double beta1,
                        double beta2,
                        double weight_decay,
                        double eps,
                        double step) {
  try {
    std::vector<at::Tensor> p, g, m, v, steps;
    for (int i = 0; i < n; ++i) {
      p.push_back(*params[i]);
      g.push_back(*grads[i]);
      m.push_back(*exp_avgs[i]);
      v.push_back(*exp_avg_sqs[i]);
      steps.push_back(at::full({}, step, params[i]->options()));
    }
    at::_fused_adamw_(p, g, m, v, /*max_exp_avg_sqs=*/{}, steps, lr, beta1, beta2, weight_decay,
                      eps, /*amsgrad=*/false, /*maximize=*/false);
    return nullptr;
  } catch (const std::exception& e) {
    return strdup(e.what());
  } catch (...) {
    return strdup("unknown C++ exception in LibTorch's fused AdamW");
  }
}

void prism_free_error(char* message) { free(message); }

}  // extern "C"
