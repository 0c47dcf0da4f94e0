//! A split of JPEG files in a class-folder tree, `<root>/<split>/<class>/*.jpg` (ImageNet's layout; classes and files
//! in sorted order, label = the class's index): the trainer reads such a folder directly when `data.path` names a
//! directory. Sizes are read from each file's frame header the first time they are asked for.

use super::decode::jpeg_size;
use super::loader::{IMAGENET_MEAN, IMAGENET_STD};
use super::{DataError, DatasetInfo, EncodedMeta, EncodedSplit, Split};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// File extensions taken as JPEG (case-insensitive).
const EXTENSIONS: &[&str] = &["jpg", "jpeg"];
/// Bytes read for a frame header; a file whose header lies further in (a large EXIF block) is read whole.
const HEADER_PREFIX: u64 = 64 << 10;

/// One split of a JPEG folder.
#[derive(Debug)]
pub struct FolderSplit {
    files: Vec<(PathBuf, u32)>,
    sizes: Vec<OnceLock<(u32, u32)>>,
}

/// The sorted names of the sub-directories of `dir`.
fn sorted_dirs(dir: &Path) -> Result<Vec<String>, DataError> {
    let mut names = Vec::new();
    for entry in
        std::fs::read_dir(dir).map_err(|e| DataError::io(dir, "cannot list the folder", e))?
    {
        let entry = entry.map_err(|e| DataError::io(dir, "cannot list the folder", e))?;
        if entry.path().is_dir() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

fn is_jpeg_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// The folder of a split: `train/`, and `val/` (or `test/` where there is no `val/`).
pub fn split_dir(root: &Path, split: Split) -> PathBuf {
    match split {
        Split::Train => root.join("train"),
        Split::Val if !root.join("val").is_dir() && root.join("test").is_dir() => root.join("test"),
        Split::Val => root.join("val"),
    }
}

impl FolderSplit {
    /// The JPEG files under `dir/<class>/`, for `classes` in that order (label = position).
    pub fn open(dir: &Path, classes: &[String]) -> Result<Self, DataError> {
        let mut files = Vec::new();
        for (label, class) in classes.iter().enumerate() {
            let class_dir = dir.join(class);
            if !class_dir.is_dir() {
                continue;
            }
            let mut names: Vec<PathBuf> = std::fs::read_dir(&class_dir)
                .map_err(|e| DataError::io(&class_dir, "cannot list the folder", e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_jpeg_name(p))
                .collect();
            names.sort();
            files.extend(names.into_iter().map(|p| (p, label as u32)));
        }
        let sizes = (0..files.len()).map(|_| OnceLock::new()).collect();
        Ok(Self { files, sizes })
    }

    /// The train and validation splits of a folder with the data set's description; the classes are `train/`'s
    /// sub-folders, sorted.
    pub fn open_root(root: &Path) -> Result<(DatasetInfo, FolderSplit, FolderSplit), DataError> {
        let train_dir = split_dir(root, Split::Train);
        if !train_dir.is_dir() {
            return Err(DataError::invalid(
                root,
                "train/",
                "a JPEG folder needs train/<class>/*.jpg",
            ));
        }
        let classes = sorted_dirs(&train_dir)?;
        let train = Self::open(&train_dir, &classes)?;
        if train.files.is_empty() {
            return Err(DataError::invalid(
                root,
                "train/",
                "no .jpg or .jpeg files under train/<class>/",
            ));
        }
        let val_dir = split_dir(root, Split::Val);
        let val = if val_dir.is_dir() {
            Self::open(&val_dir, &classes)?
        } else {
            Self::open(&train_dir, &[])?
        };
        let info = DatasetInfo {
            path: root.to_path_buf(),
            format_version: 0,
            storage: crate::data::format::Storage::Jpeg,
            num_classes: classes.len(),
            class_names: classes,
            train_count: train.files.len(),
            val_count: val.files.len(),
            height: 0,
            width: 0,
            channels: 3,
            mean: IMAGENET_MEAN.to_vec(),
            std: IMAGENET_STD.to_vec(),
            source: "folder of JPEG files".into(),
        };
        Ok((info, train, val))
    }

    pub fn path(&self, index: usize) -> &Path {
        &self.files[index].0
    }

    fn size(&self, index: usize) -> (u32, u32) {
        *self.sizes[index].get_or_init(|| {
            let path = &self.files[index].0;
            let mut head = Vec::new();
            let prefix = std::fs::File::open(path)
                .and_then(|f| f.take(HEADER_PREFIX).read_to_end(&mut head));
            let found = prefix.ok().and_then(|_| jpeg_size(&head).ok());
            // (0, 0): no readable header; decoding the file reports why.
            found
                .or_else(|| std::fs::read(path).ok().and_then(|b| jpeg_size(&b).ok()))
                .unwrap_or((0, 0))
        })
    }
}

impl EncodedSplit for FolderSplit {
    fn len(&self) -> usize {
        self.files.len()
    }

    fn meta(&self, index: usize) -> EncodedMeta {
        let (width, height) = self.size(index);
        EncodedMeta {
            label: self.files[index].1,
            height,
            width,
        }
    }

    fn label(&self, index: usize) -> u32 {
        self.files[index].1
    }

    fn read_into(&self, index: usize, buf: &mut Vec<u8>) -> Result<(), DataError> {
        let path = &self.files[index].0;
        buf.clear();
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(buf))
            .map_err(|e| DataError::io(path, "cannot read the image", e))?;
        Ok(())
    }

    fn describe(&self, index: usize) -> String {
        self.files[index].0.display().to_string()
    }
}
