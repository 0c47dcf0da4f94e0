//! Reading and writing tensor files: safetensors (natively), PyTorch's zip pickles (`.pth` / `.bin` / `.pt`, through
//! candle's pickle reader) and numpy `.npz` archives (a flattened Haiku tree). Every tensor comes back as f32 on the
//! host; a tensor of another kind than a float is an error naming it.

use super::WeightsError;
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The tensors of one file, by name, with the safetensors metadata (empty for other formats).
#[derive(Debug)]
pub struct TensorFile {
    path: PathBuf,
    tensors: Vec<(String, Tensor)>,
    metadata: HashMap<String, String>,
}

impl TensorFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn tensors(&self) -> &[(String, Tensor)] {
        &self.tensors
    }

    pub fn into_tensors(self) -> Vec<(String, Tensor)> {
        self.tensors
    }

    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

/// What a file's first bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Safetensors,
    /// A zip archive: a PyTorch checkpoint (`archive/data.pkl`) or an `.npz`.
    Zip,
    /// A bare pickle (protocol 2+): DeepMind's `F*_haiku.npz` are dill pickles of a Haiku tree.
    Pickle,
}

fn sniff(path: &Path) -> Result<Format, WeightsError> {
    let mut head = [0u8; 8];
    let mut f = std::fs::File::open(path).map_err(|e| WeightsError::io(path, e))?;
    let n = f.read(&mut head).map_err(|e| WeightsError::io(path, e))?;
    if n < 8 {
        return Err(WeightsError::file(
            path,
            format!("{n} bytes: too short to hold any tensor (truncated?)"),
        ));
    }
    Ok(match head {
        [b'P', b'K', 3, 4, ..] => Format::Zip,
        [0x80, 2..=5, ..] => Format::Pickle,
        _ => Format::Safetensors,
    })
}

/// Read every tensor of a safetensors file, a PyTorch zip pickle or an npz archive.
pub fn read_tensors(path: &Path) -> Result<TensorFile, WeightsError> {
    let (tensors, metadata) = match sniff(path)? {
        Format::Safetensors => read_safetensors(path)?,
        Format::Zip if is_npz(path) => (read_npz(path)?, HashMap::new()),
        Format::Zip => (read_pickle(path)?, HashMap::new()),
        Format::Pickle => {
            return Err(WeightsError::file(
                path,
                "a bare pickle, not a tensor archive: DeepMind's F*_haiku.npz files are dill pickles of a Haiku tree; \
                 convert one with `python scripts/haiku_to_npz.py F0_haiku.npz F0.npz` and import the result",
            ))
        }
    };
    let tensors = tensors
        .into_iter()
        .map(|(name, t)| to_f32(path, name, t))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TensorFile {
        path: path.to_path_buf(),
        tensors,
        metadata,
    })
}

/// An npz holds `.npy` members; a PyTorch zip holds `<archive>/data.pkl`. Decided by the name, then the members.
fn is_npz(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "npz")
}

fn read_npz(path: &Path) -> Result<Vec<(String, Tensor)>, WeightsError> {
    Tensor::read_npz(path).map_err(|e| WeightsError::format(path, "npz archive", e))
}

fn read_pickle(path: &Path) -> Result<Vec<(String, Tensor)>, WeightsError> {
    // candle's reader follows the pickle's references into the zip but silently skips entries that are no tensor:
    // those are found first and are an error, never skipped.
    check_pickle_entries(path)?;
    let tensors = candle_core::pickle::read_all(path)
        .map_err(|e| WeightsError::format(path, "PyTorch zip pickle", e))?;
    if tensors.is_empty() {
        return Err(WeightsError::file(
            path,
            "the pickle holds no tensors (a state dict is a dict of tensors; a whole pickled model is not supported)",
        ));
    }
    Ok(tensors)
}

/// Named tensors and the file's string metadata.
type Contents = (Vec<(String, Tensor)>, HashMap<String, String>);

/// Every entry of the state dict in each `*/data.pkl` of a PyTorch zip must be a tensor: the others (a module, a
/// counter, an optimiser state...) are named in the error.
fn check_pickle_entries(path: &Path) -> Result<(), WeightsError> {
    use candle_core::pickle::{Object, Stack};
    let file = std::fs::File::open(path).map_err(|e| WeightsError::io(path, e))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| WeightsError::format(path, "PyTorch zip pickle", e))?;
    let pickles: Vec<String> = zip
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .filter(|n| n.ends_with("data.pkl"))
        .collect();
    let mut bad = Vec::new();
    for name in pickles {
        let dir = PathBuf::from(name.trim_end_matches(".pkl"));
        let entry = zip
            .by_name(&name)
            .map_err(|e| WeightsError::format(path, "PyTorch zip pickle", e))?;
        let mut stack = Stack::empty();
        stack
            .read_loop(&mut std::io::BufReader::new(entry))
            .and_then(|()| stack.finalize())
            .map_err(|e| WeightsError::format(path, "PyTorch zip pickle", e))
            .and_then(|obj| match obj {
                Object::Dict(entries) => {
                    for (key, value) in entries {
                        let label = match &key {
                            Object::Unicode(s) => s.clone(),
                            other => format!("{other:?}"),
                        };
                        if !matches!(value.into_tensor_info(key, &dir), Ok(Some(_))) {
                            bad.push(label);
                        }
                    }
                    Ok(())
                }
                other => Err(WeightsError::file(
                    path,
                    format!(
                        "{name} holds {}, not a state dict (a dict of tensors)",
                        object_kind(&other)
                    ),
                )),
            })?;
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(WeightsError::file(
            path,
            format!(
                "entries that are no tensor (only a state dict of tensors is supported): `{}`",
                bad.join("`, `")
            ),
        ))
    }
}

/// A pickled object in words, for errors.
fn object_kind(obj: &candle_core::pickle::Object) -> String {
    use candle_core::pickle::Object;
    match obj {
        Object::Class {
            module_name,
            class_name,
        } => format!("a class {module_name}.{class_name}"),
        Object::Reduce { callable, .. } | Object::Build { callable, .. } => match callable.as_ref()
        {
            Object::Class {
                module_name,
                class_name,
            } => format!("an object of {module_name}.{class_name}"),
            other => object_kind(other),
        },
        other => format!("{other:?}").chars().take(60).collect(),
    }
}

fn read_safetensors(path: &Path) -> Result<Contents, WeightsError> {
    let bytes = std::fs::read(path).map_err(|e| WeightsError::io(path, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| WeightsError::format(path, "safetensors file", e))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| WeightsError::format(path, "safetensors header", e))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let mut names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let view = st
            .tensor(&name)
            .map_err(|e| WeightsError::format(path, "safetensors tensor", e))?;
        let dtype = match view.dtype() {
            safetensors::Dtype::F32 => DType::F32,
            safetensors::Dtype::F16 => DType::F16,
            safetensors::Dtype::BF16 => DType::BF16,
            safetensors::Dtype::F64 => DType::F64,
            other => {
                return Err(WeightsError::Tensor {
                    file: path.to_path_buf(),
                    name,
                    reason: format!(
                        "dtype {other:?}: expected a float tensor (f32, f16, bf16 or f64)"
                    ),
                })
            }
        };
        let t = Tensor::from_raw_buffer(view.data(), dtype, view.shape(), &Device::Cpu)
            .map_err(|e| WeightsError::tensor(path, &name, e.to_string()))?;
        out.push((name, t));
    }
    Ok((out, metadata))
}

fn to_f32(path: &Path, name: String, t: Tensor) -> Result<(String, Tensor), WeightsError> {
    match t.dtype() {
        DType::F32 => Ok((name, t)),
        DType::F16 | DType::BF16 | DType::F64 => {
            let t = t
                .to_dtype(DType::F32)
                .map_err(|e| WeightsError::tensor(path, &name, e.to_string()))?;
            Ok((name, t))
        }
        other => Err(WeightsError::Tensor {
            file: path.to_path_buf(),
            name,
            reason: format!("dtype {other:?}: expected a float tensor (f32, f16, bf16 or f64)"),
        }),
    }
}

/// Write named f32 tensors and string metadata as a safetensors file (via a temporary file, then a rename).
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: HashMap<String, String>,
) -> Result<(), WeightsError> {
    let mut data = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t
            .to_dtype(DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| WeightsError::tensor(path, name, e.to_string()))?;
        data.push(t);
    }
    let bytes: Vec<Vec<u8>> = data
        .iter()
        .map(|v| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, t), b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, t.dims().to_vec(), b)
                .map(|v| (name.clone(), v))
                .map_err(|e| WeightsError::format(path, "tensor to write", e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let tmp = path.with_extension("safetensors.tmp");
    safetensors::serialize_to_file(views, Some(metadata), &tmp)
        .map_err(|e| WeightsError::format(path, "safetensors file to write", e))?;
    std::fs::rename(&tmp, path).map_err(|e| WeightsError::io(path, e))
}
