//! 5-channel uint8 images as `.npy` files, read through `npyz` (a kept NumPy format crate).

use std::path::Path;

use super::{io_error, MmDataError, MmResult};

/// Channels of an image: R, G, B, thermal, event.
pub const MM_CHANNELS: usize = 5;

/// Largest side accepted, so that a header cannot make the reader allocate without bound.
pub const MAX_SIDE: u64 = 16_384;

/// How the channels are laid out in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelOrder {
    /// `H x W x 5`, the predecessor project's layout.
    Hwc,
    /// `5 x H x W`.
    Chw,
}

/// One image, channel-major in memory (`5 x H x W`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MmImage {
    pub height: usize,
    pub width: usize,
    /// `5 * height * width` bytes, channel by channel.
    pub chw: Vec<u8>,
}

impl MmImage {
    /// A black image.
    pub fn zeros(height: usize, width: usize) -> Self {
        Self {
            height,
            width,
            chw: vec![0; MM_CHANNELS * height * width],
        }
    }

    /// One channel's `H x W` plane.
    pub fn plane(&self, channel: usize) -> &[u8] {
        let n = self.height * self.width;
        &self.chw[channel * n..(channel + 1) * n]
    }

    /// One channel's plane, writable.
    pub fn plane_mut(&mut self, channel: usize) -> &mut [u8] {
        let n = self.height * self.width;
        &mut self.chw[channel * n..(channel + 1) * n]
    }
}

/// Reads a `.npy` image; the channel order is told from the shape (a last axis of 5 is
/// `H x W x 5`, else a first axis of 5 is `5 x H x W`).
pub fn read_image(path: &Path) -> MmResult<MmImage> {
    let bytes = std::fs::read(path).map_err(io_error(path))?;
    image_from_bytes(&bytes, path)
}

/// [`read_image`] on bytes already read; `path` names them in errors.
pub fn image_from_bytes(bytes: &[u8], path: &Path) -> MmResult<MmImage> {
    let npy = |message: String| MmDataError::Npy {
        path: path.to_path_buf(),
        message,
    };
    let file = npyz::NpyFile::new(bytes).map_err(|e| npy(e.to_string()))?;
    let dtype = file.dtype();
    let is_u8 = matches!(&dtype, npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Uint && t.size_field() == 1);
    if !is_u8 {
        return Err(MmDataError::DType {
            path: path.to_path_buf(),
            found: dtype.descr(),
        });
    }
    let shape = file.shape().to_vec();
    let channels = |shape: Vec<u64>| MmDataError::Channels {
        path: path.to_path_buf(),
        shape,
    };
    let (order, h, w) = match *shape.as_slice() {
        [h, w, 5] => (ChannelOrder::Hwc, h, w),
        [5, h, w] => (ChannelOrder::Chw, h, w),
        _ => return Err(channels(shape)),
    };
    if h == 0 || w == 0 || h > MAX_SIDE || w > MAX_SIDE {
        return Err(channels(shape));
    }
    let fortran = file.order() == npyz::Order::Fortran;
    let (h, w) = (h as usize, w as usize);
    let expected = MM_CHANNELS * h * w;
    let data: Vec<u8> = file.into_vec().map_err(|e| npy(e.to_string()))?;
    if data.len() != expected {
        return Err(npy(format!(
            "{} bytes of pixels for {expected}",
            data.len()
        )));
    }
    // Fortran order reverses the axes' strides: H x W x 5 in Fortran order is 5 x W x H in C.
    let mut chw = vec![0u8; expected];
    let plane = h * w;
    for c in 0..MM_CHANNELS {
        for y in 0..h {
            for x in 0..w {
                let src = match (order, fortran) {
                    (ChannelOrder::Hwc, false) => (y * w + x) * MM_CHANNELS + c,
                    (ChannelOrder::Chw, false) => c * plane + y * w + x,
                    (ChannelOrder::Hwc, true) => c * plane + x * h + y,
                    (ChannelOrder::Chw, true) => (x * h + y) * MM_CHANNELS + c,
                };
                chw[c * plane + y * w + x] = data[src];
            }
        }
    }
    Ok(MmImage {
        height: h,
        width: w,
        chw,
    })
}

/// Writes `image` as a C-order uint8 `.npy` in `order`.
pub fn write_image(path: &Path, image: &MmImage, order: ChannelOrder) -> MmResult<()> {
    use npyz::WriterBuilder;
    let (h, w) = (image.height, image.width);
    let (shape, data): (Vec<u64>, Vec<u8>) = match order {
        ChannelOrder::Chw => (vec![5, h as u64, w as u64], image.chw.clone()),
        ChannelOrder::Hwc => {
            let plane = h * w;
            let mut hwc = vec![0u8; image.chw.len()];
            for c in 0..MM_CHANNELS {
                for p in 0..plane {
                    hwc[p * MM_CHANNELS + c] = image.chw[c * plane + p];
                }
            }
            (vec![h as u64, w as u64, 5], hwc)
        }
    };
    let mut bytes = Vec::with_capacity(data.len() + 128);
    let mut writer = npyz::WriteOptions::<u8>::new()
        .default_dtype()
        .shape(&shape)
        .writer(&mut bytes)
        .begin_nd()
        .map_err(io_error(path))?;
    writer.extend(data).map_err(io_error(path))?;
    writer.finish().map_err(io_error(path))?;
    std::fs::write(path, bytes).map_err(io_error(path))
}
