//! A split of encoded (compressed) images, read by index from any thread: the boundary between where the bytes are
//! stored (format version 2's JPEG store, or memory in tests) and the loader that decodes and augments them.

use super::DataError;

/// What a store knows about one image without decoding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodedMeta {
    pub label: u32,
    /// The size of the stored image (as encoded), in pixels.
    pub height: u32,
    pub width: u32,
}

/// A split of encoded images. `read_into` is called concurrently from the loader's decode threads, so an
/// implementation must not serialise them on a global lock (HDF5's is one: read the bytes with positioned reads).
pub trait EncodedSplit: Send + Sync {
    /// Images in the split.
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Label and stored size of image `index` (`index < len()`).
    fn meta(&self, index: usize) -> EncodedMeta;

    /// Replace `buf`'s content with the encoded bytes of image `index`.
    fn read_into(&self, index: usize, buf: &mut Vec<u8>) -> Result<(), DataError>;

    /// The label of image `index` (the same as `meta(index).label`, for stores where the size costs a read).
    fn label(&self, index: usize) -> u32 {
        self.meta(index).label
    }

    /// Image `index` in words for error messages (a file name where there is one).
    fn describe(&self, index: usize) -> String {
        format!("image {index}")
    }
}

/// Encoded images held in memory: for tests, benchmarks and single images (`nfbench predict`).
#[derive(Debug, Clone, Default)]
pub struct MemorySplit {
    images: Vec<(EncodedMeta, Vec<u8>)>,
}

impl MemorySplit {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, meta: EncodedMeta, bytes: Vec<u8>) {
        self.images.push((meta, bytes));
    }
}

impl EncodedSplit for MemorySplit {
    fn len(&self) -> usize {
        self.images.len()
    }

    fn meta(&self, index: usize) -> EncodedMeta {
        self.images[index].0
    }

    fn read_into(&self, index: usize, buf: &mut Vec<u8>) -> Result<(), DataError> {
        let (_, bytes) = self.images.get(index).ok_or_else(|| {
            DataError::config(format!(
                "image {index} requested from a split of {}",
                self.images.len()
            ))
        })?;
        buf.clear();
        buf.extend_from_slice(bytes);
        Ok(())
    }
}
