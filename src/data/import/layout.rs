//! The ImageNet source layouts: `SRC/train/<wnid>/*` (the classes are the sorted folder names) and `SRC/val/` as
//! class folders, or flat with the devkit's ground truth plus its synset order, or Kaggle's `LOC_val_solution.csv`;
//! without `SRC/val`, the last images of each class are held out. Human class names from a synset file in `SRC`.

use super::folder::{files, subdirs};
use super::{check_val_split, val_mask, ImportOptions};
use crate::data::{DataError, Split};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The devkit's validation labels (1-based devkit ids, one per line, in sorted file-name order).
pub const DEVKIT_GROUND_TRUTH: &str = "ILSVRC2012_validation_ground_truth.txt";
/// Kaggle's validation labels (`ImageId,PredictionString`; the string's first token is the wnid).
pub const KAGGLE_VAL_SOLUTION: &str = "LOC_val_solution.csv";
/// Human class names, `n01440764 tench, Tinca tinca` per line (Caffe's and Kaggle's names for one format).
pub const SYNSET_NAME_FILES: [&str; 2] = ["synset_words.txt", "LOC_synset_mapping.txt"];

/// Where the validation labels came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValSource {
    ClassFolders,
    Devkit {
        ground_truth: PathBuf,
        synsets: PathBuf,
    },
    Kaggle {
        solution: PathBuf,
    },
    HeldOutOfTrain,
}

impl std::fmt::Display for ValSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ValSource::ClassFolders => write!(f, "class folders"),
            ValSource::Devkit {
                ground_truth,
                synsets,
            } => write!(
                f,
                "devkit ground truth {} with synsets {}",
                ground_truth.display(),
                synsets.display()
            ),
            ValSource::Kaggle { solution } => write!(f, "Kaggle solution {}", solution.display()),
            ValSource::HeldOutOfTrain => write!(f, "held out of the training images"),
        }
    }
}

/// One source file.
#[derive(Debug, Clone)]
pub(super) struct Item {
    pub path: PathBuf,
    pub label: u32,
    pub split: Split,
}

/// The source tree, listed.
pub(super) struct Listing {
    pub class_folders: Vec<String>,
    /// Train items first, then val, each in sorted order.
    pub items: Vec<Item>,
    pub val_source: ValSource,
}

/// The label files of a flat `val/` when they are named on the command line.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ValFiles<'a> {
    /// The devkit's synset order (one wnid per line, line k = devkit id k).
    pub synsets: Option<&'a Path>,
    /// The label file itself, when it is not in SRC or SRC/val under its usual name (`.csv`: Kaggle's).
    pub labels: Option<&'a Path>,
}

/// List the source tree: classes, train files, val files with their labels.
pub(super) fn list(
    root: &Path,
    opts: &ImportOptions,
    val: ValFiles<'_>,
) -> Result<Listing, DataError> {
    let meta = std::fs::metadata(root).map_err(|e| DataError::io(root, "cannot open", e))?;
    if !meta.is_dir() {
        return Err(DataError::bad_source(
            root,
            "imagenet: the source must be a directory",
        ));
    }
    let train_dir = root.join("train");
    if !train_dir.is_dir() {
        return Err(DataError::bad_source(
            root,
            "no train/ directory (expected SRC/train/<wnid>/<image> and SRC/val/)",
        ));
    }
    let class_folders = subdirs(&train_dir)?;
    if class_folders.is_empty() {
        return Err(DataError::bad_source(&train_dir, "no class folders"));
    }
    let mut items = Vec::new();
    for (k, name) in class_folders.iter().enumerate() {
        for path in files(&train_dir.join(name))? {
            items.push(Item {
                path,
                label: k as u32,
                split: Split::Train,
            });
        }
    }
    if items.is_empty() {
        return Err(DataError::bad_source(
            &train_dir,
            "no files in any class folder",
        ));
    }
    let val_dir = root.join("val");
    let val_source = if !val_dir.is_dir() {
        hold_out(&mut items, class_folders.len(), opts.val_split)?;
        ValSource::HeldOutOfTrain
    } else if !subdirs(&val_dir)?.is_empty() {
        items.extend(val_class_folders(&val_dir, &class_folders)?);
        ValSource::ClassFolders
    } else {
        let (val, source) = flat_val(root, &val_dir, &class_folders, val)?;
        items.extend(val);
        source
    };
    Ok(Listing {
        class_folders,
        items,
        val_source,
    })
}

fn hold_out(items: &mut [Item], num_classes: usize, fraction: f64) -> Result<(), DataError> {
    check_val_split(fraction)?;
    let labels: Vec<u32> = items.iter().map(|i| i.label).collect();
    for (item, is_val) in items
        .iter_mut()
        .zip(val_mask(&labels, num_classes, fraction))
    {
        if is_val {
            item.split = Split::Val;
        }
    }
    // Keep the order train then val (the held-out images move behind the train ones).
    items.sort_by_key(|i| i.split as u8);
    Ok(())
}

fn val_class_folders(val_dir: &Path, classes: &[String]) -> Result<Vec<Item>, DataError> {
    let mut items = Vec::new();
    for name in subdirs(val_dir)? {
        let Some(k) = classes.iter().position(|c| *c == name) else {
            return Err(DataError::bad_source(
                &val_dir.join(&name),
                "a val class folder with no train folder of the same name",
            ));
        };
        for path in files(&val_dir.join(&name))? {
            items.push(Item {
                path,
                label: k as u32,
                split: Split::Val,
            });
        }
    }
    Ok(items)
}

/// A flat `val/`: the label file decides each file's class.
fn flat_val(
    root: &Path,
    val_dir: &Path,
    classes: &[String],
    given: ValFiles<'_>,
) -> Result<(Vec<Item>, ValSource), DataError> {
    let label_file = match given.labels {
        Some(p) => p.to_path_buf(),
        None => find_label_file(root, val_dir)?,
    };
    let is_kaggle = label_file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let mut skip_names: Vec<&str> = vec![DEVKIT_GROUND_TRUTH, KAGGLE_VAL_SOLUTION];
    skip_names.extend(SYNSET_NAME_FILES);
    let val_files: Vec<PathBuf> = files(val_dir)?
        .into_iter()
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !skip_names.contains(&name) && Some(p.as_path()) != given.labels
        })
        .collect();
    let position = |wnid: &str| classes.iter().position(|c| c == wnid);
    if is_kaggle {
        let by_stem = read_kaggle(&label_file)?;
        let mut items = Vec::with_capacity(val_files.len());
        for path in val_files {
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            let Some((wnid, line)) = by_stem.get(stem) else {
                return Err(DataError::bad_source(
                    &path,
                    format!("no row for image id {stem:?} in {}", label_file.display()),
                ));
            };
            let label = position(wnid).ok_or_else(|| {
                DataError::bad_source(
                    &label_file,
                    format!("line {line}: class {wnid} has no train folder"),
                )
            })?;
            items.push(Item {
                path,
                label: label as u32,
                split: Split::Val,
            });
        }
        return Ok((
            items,
            ValSource::Kaggle {
                solution: label_file,
            },
        ));
    }
    let Some(synsets) = given.synsets.map(Path::to_path_buf) else {
        return Err(DataError::config(format!(
            "{}: the devkit's ground truth holds devkit class ids; pass --val-synsets FILE (one wnid per line in \
             devkit id order, e.g. from the devkit's meta.mat)",
            label_file.display()
        )));
    };
    let ids = read_devkit_ids(&label_file)?;
    if ids.len() != val_files.len() {
        return Err(DataError::bad_source(
            &label_file,
            format!(
                "{} labels for {} files in {}",
                ids.len(),
                val_files.len(),
                val_dir.display()
            ),
        ));
    }
    let order = read_first_tokens(&synsets)?;
    let mut items = Vec::with_capacity(val_files.len());
    for (line, (path, id)) in val_files.into_iter().zip(ids).enumerate() {
        let wnid = order.get(id as usize - 1).ok_or_else(|| {
            DataError::bad_source(
                &label_file,
                format!(
                    "line {}: class id {id} beyond the {} synsets of {}",
                    line + 1,
                    order.len(),
                    synsets.display()
                ),
            )
        })?;
        let label = position(wnid).ok_or_else(|| {
            DataError::bad_source(
                &synsets,
                format!("line {id}: class {wnid} has no train folder"),
            )
        })?;
        items.push(Item {
            path,
            label: label as u32,
            split: Split::Val,
        });
    }
    Ok((
        items,
        ValSource::Devkit {
            ground_truth: label_file,
            synsets,
        },
    ))
}

fn find_label_file(root: &Path, val_dir: &Path) -> Result<PathBuf, DataError> {
    let dirs = [
        root.to_path_buf(),
        val_dir.to_path_buf(),
        root.join("ILSVRC2012_devkit_t12").join("data"),
        root.join("devkit").join("data"),
    ];
    for name in [KAGGLE_VAL_SOLUTION, DEVKIT_GROUND_TRUTH] {
        if let Some(p) = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
            return Ok(p);
        }
    }
    Err(DataError::bad_source(
        val_dir,
        format!(
            "val/ has no class folders and no label file was found ({KAGGLE_VAL_SOLUTION} or {DEVKIT_GROUND_TRUTH} \
             in SRC or SRC/val); name one with --val-labels"
        ),
    ))
}

fn read_text(path: &Path) -> Result<String, DataError> {
    std::fs::read_to_string(path).map_err(|e| DataError::io(path, "cannot read", e))
}

/// Devkit ids, one per line, 1-based.
fn read_devkit_ids(path: &Path) -> Result<Vec<u32>, DataError> {
    let text = read_text(path)?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| match l.trim().parse::<u32>() {
            Ok(id) if id >= 1 => Ok(id),
            _ => Err(DataError::bad_source(
                path,
                format!(
                    "line {}: {:?} is not a class id (1, 2, ...)",
                    i + 1,
                    l.trim()
                ),
            )),
        })
        .collect()
}

/// The first whitespace-separated token of every non-empty line.
fn read_first_tokens(path: &Path) -> Result<Vec<String>, DataError> {
    Ok(read_text(path)?
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect())
}

/// Kaggle's solution: image id -> (wnid, line number).
fn read_kaggle(path: &Path) -> Result<HashMap<String, (String, usize)>, DataError> {
    let text = read_text(path)?;
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h)) if h.trim().eq_ignore_ascii_case("ImageId,PredictionString") => {}
        other => {
            return Err(DataError::bad_source(
                path,
                format!(
                    "line 1: expected the header ImageId,PredictionString, found {:?}",
                    other.map(|(_, h)| h).unwrap_or("")
                ),
            ))
        }
    }
    let mut map = HashMap::new();
    for (i, line) in lines.filter(|(_, l)| !l.trim().is_empty()) {
        let bad =
            || DataError::bad_source(path, format!("line {}: expected ImageId,wnid ...", i + 1));
        let (id, prediction) = line.split_once(',').ok_or_else(bad)?;
        let wnid = prediction.split_whitespace().next().ok_or_else(bad)?;
        map.insert(id.trim().to_string(), (wnid.to_string(), i + 1));
    }
    Ok(map)
}

/// Human names from a synset file in `root` when there is one, else the folder names.
pub(super) fn class_names(root: &Path, folders: &[String]) -> Result<Vec<String>, DataError> {
    let Some(path) = SYNSET_NAME_FILES
        .iter()
        .map(|n| root.join(n))
        .find(|p| p.is_file())
    else {
        return Ok(folders.to_vec());
    };
    let text = read_text(&path)?;
    let names: HashMap<&str, &str> = text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let (wnid, name) = l.split_once(char::is_whitespace)?;
            Some((wnid, name.trim()))
        })
        .collect();
    Ok(folders
        .iter()
        .map(|f| {
            names
                .get(f.as_str())
                .map_or_else(|| f.clone(), |n| n.to_string())
        })
        .collect())
}
