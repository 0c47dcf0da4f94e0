//! Reading `metrics.h5` back into a [`RecordedRun`], tolerating tables cut short by a crash.

use super::*;

/// Opens `metrics.h5` read-only and reads everything. File locking is off so a live run can be read (rows are
/// only ever appended between flushes, so a reader sees a consistent prefix).
pub fn read_run(path: &Path) -> Result<RecordedRun> {
    let file = open_ro(path)?;
    check_format(&file, path)?;
    let preset_toml = read_str_attr(&file, "preset").unwrap_or_default();
    let created = read_str_attr(&file, "created").unwrap_or_default();
    let steps_t = read_table(&file, path, "steps", STEP_COLUMNS)?;
    let eval_t = read_table(&file, path, "eval", EVAL_COLUMNS)?;
    let thr_t = read_table(&file, path, "throughput", THROUGHPUT_COLUMNS)?;
    let ev_t = read_table(&file, path, "events", EVENT_COLUMNS)?;
    let steps = (0..steps_t.len).map(|i| step_from(&steps_t, i)).collect();
    let step_times = (0..steps_t.len).map(|i| steps_t.f("time", i)).collect();
    let evals = (0..eval_t.len).map(|i| eval_from(&eval_t, i)).collect();
    let throughput = (0..thr_t.len).map(|i| throughput_from(&thr_t, i)).collect();
    let events = (0..ev_t.len).map(|i| event_from(&ev_t, i)).collect();
    let layers = read_layers(&file, path)?;
    Ok(RecordedRun {
        path: path.to_path_buf(),
        preset_toml,
        created,
        steps,
        step_times,
        evals,
        layers,
        throughput,
        events,
    })
}

/// Columns read back, by name; tables cut short by a crash are read to their shortest column.
pub(super) struct ReadTable {
    pub(super) len: usize,
    pub(super) u: BTreeMap<&'static str, Vec<u64>>,
    pub(super) f: BTreeMap<&'static str, Vec<f64>>,
    pub(super) b: BTreeMap<&'static str, Vec<u8>>,
    pub(super) s: BTreeMap<&'static str, Vec<String>>,
}

impl ReadTable {
    pub(super) fn u(&self, name: &str, i: usize) -> u64 {
        self.u
            .get(name)
            .and_then(|c| c.get(i))
            .copied()
            .unwrap_or(0)
    }
    pub(super) fn f(&self, name: &str, i: usize) -> f64 {
        self.f
            .get(name)
            .and_then(|c| c.get(i))
            .copied()
            .unwrap_or(f64::NAN)
    }
    pub(super) fn b(&self, name: &str, i: usize) -> bool {
        self.b
            .get(name)
            .and_then(|c| c.get(i))
            .is_some_and(|&v| v != 0)
    }
    pub(super) fn s(&self, name: &str, i: usize) -> String {
        self.s
            .get(name)
            .and_then(|c| c.get(i))
            .cloned()
            .unwrap_or_default()
    }
}

pub(super) fn read_table(
    file: &hdf5::File,
    path: &Path,
    group: &str,
    specs: &'static [ColSpec],
) -> Result<ReadTable> {
    let mut t = ReadTable {
        len: usize::MAX,
        u: BTreeMap::new(),
        f: BTreeMap::new(),
        b: BTreeMap::new(),
        s: BTreeMap::new(),
    };
    let g = file.group(group).map_err(|e| hdf5_at(path, group, "", e))?;
    for spec in specs {
        let at = |e: hdf5::Error| hdf5_at(path, group, spec.name, e);
        let ds = g.dataset(spec.name).map_err(at)?;
        let len = match spec.ty {
            U64 => insert_len(&mut t.u, spec.name, ds.read_raw::<u64>().map_err(at)?),
            F64 => insert_len(&mut t.f, spec.name, ds.read_raw::<f64>().map_err(at)?),
            Bool => insert_len(&mut t.b, spec.name, ds.read_raw::<u8>().map_err(at)?),
            Str => {
                let raw = ds.read_raw::<VarLenUnicode>().map_err(at)?;
                insert_len(
                    &mut t.s,
                    spec.name,
                    raw.iter().map(|v| v.as_str().to_string()).collect(),
                )
            }
        };
        t.len = t.len.min(len);
    }
    if t.len == usize::MAX {
        t.len = 0;
    }
    Ok(t)
}

pub(super) fn insert_len<T>(
    map: &mut BTreeMap<&'static str, Vec<T>>,
    name: &'static str,
    values: Vec<T>,
) -> usize {
    let len = values.len();
    map.insert(name, values);
    len
}

/// Reads `/layers/agc` and `/layers/spp` and merges them by step into [`LayerStats`].
pub(super) fn read_layers(file: &hdf5::File, path: &Path) -> Result<Vec<LayerStats>> {
    let mut by_step: BTreeMap<u64, LayerStats> = BTreeMap::new();
    let entry = |map: &mut BTreeMap<u64, LayerStats>, step: u64| {
        map.entry(step)
            .or_insert_with(|| LayerStats {
                step,
                agc: Vec::new(),
                spp: Vec::new(),
                total_clipped_fraction: f64::NAN,
            })
            .step
    };
    if let Some(agc) = read_layer_group(file, path, "layers/agc", AGC_FIELDS)? {
        let units = read_optional::<u64>(file, path, "layers/agc/units")?;
        let clipped_by = read_optional::<u8>(file, path, "layers/agc/clipped_by_agc")?;
        let counts = RatioCounts::read(file, path, agc.names.len())?;
        for (row, &step) in agc.steps.iter().enumerate() {
            entry(&mut by_step, step);
            let stats = by_step
                .get_mut(&step)
                .ok_or_else(|| RecordError::invalid(path, "layers"))?;
            stats.total_clipped_fraction = agc.total.get(row).copied().unwrap_or(f64::NAN);
            stats.agc = agc
                .names
                .iter()
                .enumerate()
                .map(|(l, name)| AgcLayerStats {
                    name: name.clone(),
                    weight_norm: agc.value(0, row, l),
                    grad_norm: agc.value(1, row, l),
                    max_ratio: agc.value(2, row, l),
                    mean_ratio: agc.value(3, row, l),
                    clipped_fraction: agc.value(4, row, l),
                    units: units.get(l).copied().unwrap_or(0) as usize,
                    clipped_by_agc: clipped_by.get(l).is_some_and(|&b| b != 0),
                    // Not recorded: a replay shows frozen layers as excluded ones.
                    frozen: false,
                    ratio_counts: counts.layer(row, l),
                })
                .collect();
        }
    }
    if let Some(spp) = read_layer_group(file, path, "layers/spp", SPP_FIELDS)? {
        for (row, &step) in spp.steps.iter().enumerate() {
            entry(&mut by_step, step);
            let stats = by_step
                .get_mut(&step)
                .ok_or_else(|| RecordError::invalid(path, "layers"))?;
            stats.spp = spp
                .names
                .iter()
                .enumerate()
                .map(|(l, name)| SppBlockStats {
                    name: name.clone(),
                    predicted_var: spp.value(0, row, l),
                    avg_sq_mean: spp.value(1, row, l),
                    avg_var: spp.value(2, row, l),
                    res_avg_var: spp.value(3, row, l),
                })
                .collect();
        }
    }
    Ok(by_step.into_values().collect())
}

/// `/layers/agc/ratio_counts` as read: `[snapshot, layer, edge]` row-major; empty when the file has none (older
/// files) or was written with other edges (then its counts would mean other lambdas).
pub(super) struct RatioCounts {
    values: Vec<f64>,
    layers: usize,
}

impl RatioCounts {
    pub(super) fn read(file: &hdf5::File, path: &Path, layers: usize) -> Result<RatioCounts> {
        let name = "layers/agc/ratio_counts";
        let none = RatioCounts {
            values: Vec::new(),
            layers,
        };
        if !file.link_exists(name) {
            return Ok(none);
        }
        let at = |e| hdf5_at(path, "layers/agc", RATIO_COUNTS, e);
        let ds = file.dataset(name).map_err(at)?;
        let edges: Vec<f64> = ds.attr("edges").and_then(|a| a.read_raw()).map_err(at)?;
        let shape = ds.shape();
        if edges[..] != RATIO_EDGES[..] || shape.len() != 3 || shape[1] != layers {
            return Ok(none);
        }
        Ok(RatioCounts {
            values: ds.read_raw().map_err(at)?,
            layers,
        })
    }

    /// Layer `layer`'s counts at snapshot `row`; empty when absent or not measured (NaN).
    pub(super) fn layer(&self, row: usize, layer: usize) -> Vec<f64> {
        let edges = RATIO_EDGES.len();
        let start = (row * self.layers + layer) * edges;
        match self.values.get(start..start + edges) {
            Some(c) if c.iter().all(|v| v.is_finite()) => c.to_vec(),
            _ => Vec::new(),
        }
    }
}

pub(super) struct LayerGroupRead {
    pub(super) names: Vec<String>,
    pub(super) steps: Vec<u64>,
    pub(super) total: Vec<f64>,
    /// Per field: row-major `[rows, layers]`.
    pub(super) fields: Vec<Vec<f64>>,
}

impl LayerGroupRead {
    pub(super) fn value(&self, field: usize, row: usize, layer: usize) -> f64 {
        self.fields[field]
            .get(row * self.names.len() + layer)
            .copied()
            .unwrap_or(f64::NAN)
    }
}

pub(super) fn read_layer_group(
    file: &hdf5::File,
    path: &Path,
    group: &str,
    fields: &'static [ColSpec],
) -> Result<Option<LayerGroupRead>> {
    let Some(lg) = open_layer_group(file, path, group)? else {
        return Ok(None);
    };
    let (g, names) = (lg.group, lg.names);
    let at = |name| at(path, group, name);
    let mut steps: Vec<u64> = lg.step.read_raw().map_err(at("step"))?;
    let total = match lg.total {
        Some(t) => t.read_raw().map_err(at(TOTAL))?,
        None => Vec::new(),
    };
    let mut rows = steps.len();
    let mut values = Vec::new();
    for spec in fields {
        let ds = g.dataset(spec.name).map_err(at(spec.name))?;
        let shape = ds.shape();
        if shape.len() != 2 || shape[1] != names.len() {
            return Err(RecordError::invalid(
                path,
                format!(
                    "{group}/{}: shape {shape:?} does not match {} names",
                    spec.name,
                    names.len()
                ),
            ));
        }
        rows = rows.min(shape[0]);
        values.push(ds.read_raw::<f64>().map_err(at(spec.name))?);
    }
    steps.truncate(rows);
    Ok(Some(LayerGroupRead {
        names,
        steps,
        total,
        fields: values,
    }))
}

pub(super) fn read_optional<T: hdf5::H5Type>(
    file: &hdf5::File,
    path: &Path,
    name: &str,
) -> Result<Vec<T>> {
    if !file.link_exists(name) {
        return Ok(Vec::new());
    }
    file.dataset(name)
        .and_then(|d| d.read_raw())
        .map_err(|e| hdf5_at(path, name, "", e))
}
