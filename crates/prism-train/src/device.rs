//! Where training runs: Burn's flex backend on the CPU, Burn's LibTorch backend (`tch-cpu`,
//! `tch-cuda[:N]`) or Burn's CUDA backend.
//!
//! The LibTorch backend is compiled in only with this crate's `tch` feature: torch-sys links the
//! libtorch of the PyPI `torch` wheel that `cargo xtask provision-torch` installs (`cargo xtask
//! build-tch`). The CUDA backend needs the `cuda` feature (CubeCL and cudarc, which load the CUDA
//! driver and NVRTC at run time). A build without the backend asked for refuses it with an error
//! that says how to get it, rather than training on the CPU.

use std::fmt;
use std::str::FromStr;

use burn::module::Module;
use burn::tensor::{Device, GradientCheckpointingStrategy};

use crate::TrainError;

/// A training device as users name it: `flex` (or `cpu`), `tch-cpu`, `tch-cuda[:N]`, `cuda` or
/// `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrainDevice {
    /// Burn's flex backend: multi-threaded SIMD CPU kernels.
    #[default]
    Flex,
    /// Burn's CUDA backend on GPU `N`.
    Cuda(usize),
    /// Burn's LibTorch backend on the CPU (PyTorch's own kernels).
    TchCpu,
    /// Burn's LibTorch backend on CUDA GPU `N` (a CUDA PyTorch at run time).
    TchCuda(usize),
}

impl TrainDevice {
    /// The Burn device for inference (evaluation, export).
    pub fn burn(self) -> Result<Device, TrainError> {
        match self {
            TrainDevice::Flex => Ok(Device::flex()),
            TrainDevice::Cuda(index) => cuda(index),
            TrainDevice::TchCpu => libtorch(None),
            TrainDevice::TchCuda(index) => libtorch(Some(index)),
        }
    }

    /// The Burn device for training with Burn's balanced gradient checkpointing when
    /// `gradient_checkpointing` is on: memory-bound operations (element-wise, normalisation) are
    /// recomputed in the backward pass instead of kept, which lowers the peak memory of a step
    /// for some extra compute; gradients are unchanged.
    pub fn burn_training(self, gradient_checkpointing: bool) -> Result<Device, TrainError> {
        let device = self.burn_autodiff()?;
        Ok(if gradient_checkpointing {
            device.gradient_checkpointing()
        } else {
            device
        })
    }

    /// The device a run draws its initial weights on: flex with autodiff (and the `training`
    /// device's checkpointing), whatever the training device, so that a seed gives the same
    /// initial weights on every backend (each backend has its own random generator). Move the
    /// module to the training device with [`fork_initialised`].
    pub fn init_device(training: &Device) -> Device {
        let device = Device::flex().autodiff();
        match training.gradient_checkpointing_strategy() {
            Some(GradientCheckpointingStrategy::Balanced) => device.gradient_checkpointing(),
            _ => device,
        }
    }

    /// Whether this device runs on the CPU.
    pub fn is_cpu(self) -> bool {
        matches!(self, TrainDevice::Flex | TrainDevice::TchCpu)
    }

    /// The Burn device for training: [`Self::burn`] with autodiff.
    pub fn burn_autodiff(self) -> Result<Device, TrainError> {
        Ok(self.burn()?.autodiff())
    }
}

#[cfg(feature = "cuda")]
fn cuda(index: usize) -> Result<Device, TrainError> {
    Ok(Device::cuda(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda(_index: usize) -> Result<Device, TrainError> {
    Err(TrainError::Device(
        "this prism was built without CUDA training: rebuild with `--features cuda` \
         (cargo build --release -p prism-cli --features cuda), which needs the CUDA driver and NVRTC at run time"
            .into(),
    ))
}

/// LibTorch on the CPU (`None`) or on CUDA GPU `index`. Burn 0.22 marks its LibTorch backend
/// deprecated in favour of CubeCL; it is the one that runs PyTorch's CPU kernels and trains on a
/// GPU without a build-time download, so prism keeps it.
#[cfg(feature = "tch")]
#[allow(deprecated)]
fn libtorch(cuda: Option<usize>) -> Result<Device, TrainError> {
    match cuda {
        None => Ok(Device::libtorch()),
        Some(index) => {
            let gpus = usize::try_from(tch::Cuda::device_count()).unwrap_or(0);
            if index >= gpus {
                return Err(TrainError::Device(format!(
                    "tch-cuda:{index}: LibTorch sees {gpus} CUDA device(s); it needs an NVIDIA \
                     driver and a prism built against the CUDA PyTorch wheel \
                     (`cargo xtask build-tch --cuda`)"
                )));
            }
            Ok(Device::libtorch_cuda(index))
        }
    }
}

#[cfg(not(feature = "tch"))]
fn libtorch(_cuda: Option<usize>) -> Result<Device, TrainError> {
    Err(TrainError::Device(
        "this prism was built without the LibTorch backend: build it with `cargo xtask build-tch` \
         (`--cuda` for GPUs), which provisions the torch venv and builds prism with \
         `--features tch` against its libtorch"
            .into(),
    ))
}

/// `module`, made on [`TrainDevice::init_device`], with its weights drawn there and then moved to
/// the training `device` with that device's autodiff graph.
///
/// Burn initialises a parameter lazily, on the device where it is first needed, so a plain
/// `fork` would draw the weights from the training backend's generator. A clone that shares the
/// parameters makes `fork` initialise them where they are and copy them (Burn's documented
/// rule), so every parameter is drawn on flex, in module order.
pub fn fork_initialised<M: Module>(module: M, device: &Device) -> M {
    let shared = module.clone();
    let moved = module.fork(device);
    drop(shared);
    moved
}

/// Sets LibTorch's intra-op thread count (as `torch.set_num_threads` does); a no-op in a build
/// without the LibTorch backend.
pub fn set_libtorch_threads(threads: usize) {
    #[cfg(feature = "tch")]
    tch::set_num_threads(i32::try_from(threads).unwrap_or(i32::MAX));
    #[cfg(not(feature = "tch"))]
    let _ = threads;
}

impl fmt::Display for TrainDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrainDevice::Flex => f.write_str("flex"),
            TrainDevice::Cuda(i) => write!(f, "cuda:{i}"),
            TrainDevice::TchCpu => f.write_str("tch-cpu"),
            TrainDevice::TchCuda(i) => write!(f, "tch-cuda:{i}"),
        }
    }
}

impl FromStr for TrainDevice {
    type Err = TrainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "flex" | "cpu" => Ok(TrainDevice::Flex),
            "cuda" => Ok(TrainDevice::Cuda(0)),
            "tch-cpu" => Ok(TrainDevice::TchCpu),
            "tch-cuda" => Ok(TrainDevice::TchCuda(0)),
            _ => {
                let index = |prefix: &str| s.strip_prefix(prefix).map(str::parse::<usize>);
                match (index("cuda:"), index("tch-cuda:")) {
                    (Some(Ok(i)), _) => Ok(TrainDevice::Cuda(i)),
                    (_, Some(Ok(i))) => Ok(TrainDevice::TchCuda(i)),
                    _ => Err(TrainError::Device(format!(
                        "unknown device `{s}`: use `flex` (or `cpu`), `tch-cpu`, `tch-cuda[:N]` or `cuda[:N]`"
                    ))),
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print() {
        for (name, device) in [
            ("flex", TrainDevice::Flex),
            ("cpu", TrainDevice::Flex),
            ("cuda", TrainDevice::Cuda(0)),
            ("cuda:3", TrainDevice::Cuda(3)),
            ("tch-cpu", TrainDevice::TchCpu),
            ("tch-cuda", TrainDevice::TchCuda(0)),
            ("tch-cuda:2", TrainDevice::TchCuda(2)),
        ] {
            assert_eq!(name.parse::<TrainDevice>().unwrap(), device);
        }
        assert_eq!(
            TrainDevice::Cuda(1)
                .to_string()
                .parse::<TrainDevice>()
                .unwrap(),
            TrainDevice::Cuda(1)
        );
        for device in [TrainDevice::TchCpu, TrainDevice::TchCuda(1)] {
            assert_eq!(device.to_string().parse::<TrainDevice>().unwrap(), device);
        }
        for bad in [
            "gpu",
            "cuda:",
            "cuda:x",
            "cuda:-1",
            "",
            "tch",
            "tch-cuda:",
            "tch-gpu",
        ] {
            let err = bad.parse::<TrainDevice>().unwrap_err().to_string();
            assert!(err.contains("unknown device"), "{bad}: {err}");
        }
    }

    #[test]
    fn cuda_without_the_feature_is_an_error_not_a_cpu_run() {
        if cfg!(feature = "cuda") {
            return;
        }
        let err = TrainDevice::Cuda(0).burn().unwrap_err().to_string();
        assert!(err.contains("--features cuda"), "{err}");
        assert!(TrainDevice::Flex.burn().is_ok());
    }

    #[test]
    fn libtorch_without_the_feature_is_an_error_not_a_cpu_run() {
        if cfg!(feature = "tch") {
            return;
        }
        for device in [TrainDevice::TchCpu, TrainDevice::TchCuda(0)] {
            let err = device.burn().unwrap_err().to_string();
            assert!(err.contains("cargo xtask build-tch"), "{err}");
        }
    }
}
