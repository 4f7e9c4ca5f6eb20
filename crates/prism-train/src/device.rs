//! Where training runs: Burn's flex backend on the CPU, or Burn's CUDA backend.
//!
//! The CUDA backend is compiled in only with this crate's `cuda` feature (it pulls in CubeCL
//! and cudarc, which load the CUDA driver and NVRTC at run time); a build without it refuses
//! `--device cuda` with an error that says how to get it, rather than training on the CPU.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

use crate::TrainError;

/// A training device as users name it: `flex` (or `cpu`), `cuda` or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrainDevice {
    /// Burn's flex backend: multi-threaded SIMD CPU kernels.
    #[default]
    Flex,
    /// Burn's CUDA backend on GPU `N`.
    Cuda(usize),
}

impl TrainDevice {
    /// The Burn device for inference (evaluation, export).
    pub fn burn(self) -> Result<Device, TrainError> {
        match self {
            TrainDevice::Flex => Ok(Device::flex()),
            TrainDevice::Cuda(index) => cuda(index),
        }
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

impl fmt::Display for TrainDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrainDevice::Flex => f.write_str("flex"),
            TrainDevice::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl FromStr for TrainDevice {
    type Err = TrainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "flex" | "cpu" => Ok(TrainDevice::Flex),
            "cuda" => Ok(TrainDevice::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(i)) => Ok(TrainDevice::Cuda(i)),
                _ => Err(TrainError::Device(format!(
                    "unknown device `{s}`: use `flex` (or `cpu`), `cuda` or `cuda:N`"
                ))),
            },
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
        for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", ""] {
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
}
