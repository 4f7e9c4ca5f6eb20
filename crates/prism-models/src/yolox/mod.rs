//! The one-stage YOLOX neck and head that RVT and the RGB + thermal + event detector share:
//! a PAFPN over the backbone's stride 8, 16 and 32 maps and the decoupled head, which returns
//! raw outputs (decoding and NMS happen outside the graph, which deploys well on TensorRT).

pub mod head;
pub mod pafpn;

pub use head::{YoloxHead, YoloxHeadConfig};
pub use pafpn::{BaseConv, BaseConvConfig, BnSettings, YoloPafpn, YoloPafpnConfig};
