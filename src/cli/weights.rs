//! `nfbench weights import|export`, and opening a network from a weights file, a checkpoint or a run directory
//! (what `eval` and `predict` start from).

use crate::model::{ModelConfig, Network};
use crate::preset::schema::Preset;
use crate::record::checkpoint;
use crate::weights::{
    self, ExportTarget, ImportOptions, LoadOptions, WeightsMeta, WEIGHTS_META_KEY,
};
use anyhow::{bail, Context};
use candle_core::Device;
use clap::{Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum WeightsCommand {
    /// Import a timm state dict (.safetensors, .pth, .bin) or a flattened DeepMind Haiku tree (.npz, .safetensors)
    /// as nfbench weights that compute the source's function (`model.init_from` loads them).
    Import {
        /// The file to import.
        src: PathBuf,
        /// timm's model name (`dm_nfnet_f0`, `nf_resnet50`, ...) or, for a Haiku tree, ours (`nfnet_f0`).
        #[arg(long)]
        model: String,
        /// Where to write our weights (safetensors).
        #[arg(long)]
        out: PathBuf,
    },
    /// Export a checkpoint, a run's latest checkpoint or nfbench weights to timm's layout or DeepMind's naming.
    Export {
        /// A checkpoint, a run directory, or a weights file of `weights import`.
        ckpt: PathBuf,
        #[arg(long, value_enum)]
        to: Target,
        /// Where to write (safetensors).
        #[arg(long)]
        out: PathBuf,
        /// Export the EMA weights of a checkpoint.
        #[arg(long)]
        ema: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    Timm,
    Deepmind,
}

pub fn run(cmd: WeightsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        WeightsCommand::Import { src, model, out } => import(&src, &model, &out),
        WeightsCommand::Export { ckpt, to, out, ema } => export(&ckpt, to, &out, ema),
    }
}

fn import(src: &Path, model: &str, out: &Path) -> anyhow::Result<ExitCode> {
    let opts = ImportOptions {
        model: model.to_string(),
        omit_fold: None,
    };
    let imported = weights::import(src, &opts)?;
    imported.save(out)?;
    let m = &imported.meta;
    println!(
        "imported {} ({}) as `{}`: {} tensors, {} classes, activation {}, padding {:?} -> {}",
        src.display(),
        m.source,
        m.model.name,
        imported.tensors.len(),
        m.num_classes,
        m.model
            .activation
            .as_deref()
            .unwrap_or("(the architecture's)"),
        m.model.padding,
        out.display()
    );
    println!("use it with: {}", preset_lines(&m.model, out));
    Ok(ExitCode::SUCCESS)
}

/// The `[model]` lines that build the imported function.
fn preset_lines(cfg: &ModelConfig, out: &Path) -> String {
    let mut lines = vec![format!("name = {:?}", cfg.name)];
    if let Some(a) = &cfg.activation {
        lines.push(format!("activation = {a:?}"));
    }
    // Plain enums serialise as their names.
    let word = |v: serde_json::Value| v.as_str().unwrap_or_default().to_string();
    lines.push(format!(
        "padding = {:?}",
        word(serde_json::to_value(cfg.padding).unwrap_or_default())
    ));
    if let Some(s) = cfg.shortcut {
        lines.push(format!(
            "shortcut = {:?}",
            word(serde_json::to_value(s).unwrap_or_default())
        ));
    }
    lines.push(format!("init_from = {:?}", out.display().to_string()));
    format!("[model] {}", lines.join("; "))
}

fn export(ckpt: &Path, to: Target, out: &Path, ema: bool) -> anyhow::Result<ExitCode> {
    let opened = open_network(ckpt, &Device::Cpu, ema)?;
    let target = match to {
        Target::Timm => ExportTarget::Timm,
        Target::Deepmind => ExportTarget::DeepMind,
    };
    let exported = weights::export(&opened.net, target)?;
    for w in &exported.warnings {
        eprintln!("warning: {w}");
    }
    weights::save_exported(&exported, out)?;
    println!(
        "exported {} ({}) for {}: {} tensors -> {}",
        opened.path.display(),
        opened.net.name(),
        exported.target,
        exported.tensors.len(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// A network loaded from a file, with what it was trained with when the file is a run's checkpoint.
pub struct Opened {
    pub net: Network,
    /// The file the weights came from.
    pub path: PathBuf,
    /// The run's preset, for a checkpoint.
    pub preset: Option<Preset>,
}

/// The latest checkpoint of a run directory, or the file itself.
fn checkpoint_file(path: &Path) -> anyhow::Result<PathBuf> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let dir = path.join(crate::record::run_dir::CHECKPOINT_DIR);
    let all = checkpoint::list_checkpoints(&dir)
        .with_context(|| format!("{}: no checkpoints", path.display()))?;
    match all.iter().max_by_key(|c| c.step) {
        Some(c) => Ok(c.path.clone()),
        None => bail!("{}: the run has no checkpoint", path.display()),
    }
}

/// Open a weights file of `weights import`, a checkpoint, or a run directory (its latest checkpoint) as a network
/// on `device`; `ema` takes a checkpoint's EMA weights.
pub fn open_network(path: &Path, device: &Device, ema: bool) -> anyhow::Result<Opened> {
    let path = checkpoint_file(path)?;
    let file = weights::read_tensors(&path)?;
    let (cfg, preset, classes, channels) = match file.metadata().get(WEIGHTS_META_KEY) {
        Some(json) => {
            let meta: WeightsMeta = serde_json::from_str(json)
                .with_context(|| format!("{}: nfbench weights metadata", path.display()))?;
            (meta.model, None, meta.num_classes, meta.in_channels)
        }
        None => {
            let meta = checkpoint::read_meta(&path)?;
            let preset: Preset = toml::from_str(&meta.preset_toml)
                .with_context(|| format!("{}: the checkpoint's preset", path.display()))?;
            let (classes, channels) = sizes_of_checkpoint(&file, &path)?;
            (preset.model.clone(), Some(preset), classes, channels)
        }
    };
    let mut cfg = cfg;
    // The weights come from the file: the network is built only to hold them.
    cfg.init_from = None;
    let mut net = Network::build(&cfg, classes, channels, 0, device, 0)?;
    weights::load_into(
        &mut net,
        &path,
        LoadOptions {
            ema,
            ..LoadOptions::default()
        },
    )?;
    Ok(Opened { net, path, preset })
}

/// (classes, input channels) from a checkpoint's classifier and first conv.
fn sizes_of_checkpoint(file: &weights::TensorFile, path: &Path) -> anyhow::Result<(usize, usize)> {
    let head = file
        .get(&format!(
            "{}{}",
            weights::CHECKPOINT_PARAM_PREFIX,
            crate::model::CLASSIFIER_WEIGHT
        ))
        .with_context(|| format!("{}: no classifier weight `param/linear.w`", path.display()))?;
    let stem = ["stem.conv.w", "stem.conv0.w"]
        .iter()
        .find_map(|n| file.get(&format!("{}{n}", weights::CHECKPOINT_PARAM_PREFIX)))
        .with_context(|| format!("{}: no stem conv weight", path.display()))?;
    Ok((head.dim(0)?, stem.dim(1)?))
}
