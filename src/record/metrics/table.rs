//! The HDF5 side of `metrics.h5`: appendable column tables, per-layer 2-D tables, attributes and opening.

use super::*;

/// A cell of a row being appended.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Cell {
    U(u64),
    F(f64),
    B(bool),
    S(String),
}

/// An appendable group of 1-D columns.
pub(super) struct Table {
    pub(super) group: String,
    pub(super) specs: &'static [ColSpec],
    pub(super) datasets: Vec<hdf5::Dataset>,
    pub(super) pending: Vec<Vec<Cell>>,
    pub(super) written: usize,
}

pub(super) const TABLE_CHUNK: usize = 1024;

impl Table {
    pub(super) fn create(
        file: &hdf5::File,
        path: &Path,
        group: &str,
        specs: &'static [ColSpec],
    ) -> Result<Table> {
        let g = file
            .create_group(group)
            .map_err(|e| RecordError::hdf5(path, e))?;
        let mut datasets = Vec::with_capacity(specs.len());
        for spec in specs {
            let ds = create_column(&g, spec.name, spec.ty)
                .map_err(|e| hdf5_at(path, group, spec.name, e))?;
            set_str_attr(&ds, "description", spec.doc)
                .map_err(|e| hdf5_at(path, group, spec.name, e))?;
            datasets.push(ds);
        }
        Ok(Table {
            group: group.into(),
            specs,
            datasets,
            pending: Vec::new(),
            written: 0,
        })
    }

    /// Opens an existing table for appending; a column shorter than the others (a flush cut short) trims the
    /// table to the shortest.
    pub(super) fn open(
        file: &hdf5::File,
        path: &Path,
        group: &str,
        specs: &'static [ColSpec],
    ) -> Result<Table> {
        let g = file.group(group).map_err(|e| hdf5_at(path, group, "", e))?;
        let mut datasets = Vec::with_capacity(specs.len());
        for spec in specs {
            datasets.push(
                g.dataset(spec.name)
                    .map_err(|e| hdf5_at(path, group, spec.name, e))?,
            );
        }
        let written = datasets.iter().map(|d| d.size()).min().unwrap_or(0);
        let mut table = Table {
            group: group.into(),
            specs,
            datasets,
            pending: Vec::new(),
            written,
        };
        table.resize_all(path, written)?;
        Ok(table)
    }

    pub(super) fn push(&mut self, row: Vec<Cell>) {
        debug_assert_eq!(row.len(), self.specs.len());
        self.pending.push(row);
    }

    pub(super) fn flush(&mut self, path: &Path) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let start = self.written;
        let end = start + self.pending.len();
        for (c, (spec, ds)) in self.specs.iter().zip(&self.datasets).enumerate() {
            let cells = self.pending.iter().map(|row| &row[c]);
            let at = |e: hdf5::Error| hdf5_at(path, &self.group, spec.name, e);
            ds.resize(end).map_err(at)?;
            write_cells(ds, spec.ty, cells, start..end).map_err(at)?;
        }
        self.written = end;
        self.pending.clear();
        Ok(())
    }

    pub(super) fn resize_all(&mut self, path: &Path, rows: usize) -> Result<()> {
        for (spec, ds) in self.specs.iter().zip(&self.datasets) {
            if ds.size() != rows {
                ds.resize(rows)
                    .map_err(|e| hdf5_at(path, &self.group, spec.name, e))?;
            }
        }
        self.written = rows;
        Ok(())
    }

    /// Drops the written rows whose `step` column is greater than `step` (rows are appended in step order).
    pub(super) fn truncate_after(&mut self, path: &Path, step: u64) -> Result<()> {
        let steps: Vec<u64> = self.datasets[0]
            .read_raw()
            .map_err(|e| hdf5_at(path, &self.group, "step", e))?;
        let keep = steps
            .iter()
            .take(self.written)
            .take_while(|&&s| s <= step)
            .count();
        self.resize_all(path, keep)
    }
}

/// A buffered snapshot of a [`LayerTable`]: (step, total, one row of values per field, the ratio counts
/// `[layer, edge]` flattened (AGC only; empty when the snapshot has none)).
pub(super) type LayerRow = (u64, f64, Vec<Vec<f64>>, Vec<f64>);

/// `/layers/agc/ratio_counts`: the what-if histogram, `[snapshot, layer, edge]`.
pub(super) const RATIO_COUNTS: &str = "ratio_counts";

/// A `[snapshot, layer]` statistics group, created on the first snapshot (when the names are known).
pub(super) struct LayerTable {
    pub(super) group: String,
    pub(super) names: Vec<String>,
    pub(super) fields: &'static [ColSpec],
    pub(super) step: hdf5::Dataset,
    /// `/layers/agc/total_clipped_fraction` (AGC only).
    pub(super) total: Option<hdf5::Dataset>,
    pub(super) datasets: Vec<hdf5::Dataset>,
    /// `ratio_counts` (AGC only, and absent in files written before it was recorded).
    pub(super) counts: Option<hdf5::Dataset>,
    pub(super) pending: Vec<LayerRow>,
    pub(super) written: usize,
}

impl LayerTable {
    pub(super) fn create(
        file: &hdf5::File,
        path: &Path,
        group: &str,
        names: Vec<String>,
        fields: &'static [ColSpec],
        with_total: bool,
    ) -> Result<LayerTable> {
        let g = file
            .create_group(group)
            .map_err(|e| RecordError::hdf5(path, e))?;
        let at = |name| at(path, group, name);
        set_str_array_attr(&g, "names", &names).map_err(at("@names"))?;
        let step = create_column(&g, "step", U64).map_err(at("step"))?;
        let total = if with_total {
            let ds = create_column(&g, TOTAL, F64).map_err(at(TOTAL))?;
            set_str_attr(&ds, "description", "fraction of all AGC units clipped")
                .map_err(at("total"))?;
            Some(ds)
        } else {
            None
        };
        let rows_per_chunk = (65536 / (8 * names.len().max(1))).clamp(1, 64);
        let mut datasets = Vec::new();
        for spec in fields {
            let ds = g
                .new_dataset::<f64>()
                .chunk((rows_per_chunk, names.len().max(1)))
                .shape((0.., names.len()))
                .create(spec.name)
                .map_err(at(spec.name))?;
            set_str_attr(&ds, "description", spec.doc).map_err(at(spec.name))?;
            datasets.push(ds);
        }
        let counts = if with_total {
            Some(create_ratio_counts(&g, names.len()).map_err(at(RATIO_COUNTS))?)
        } else {
            None
        };
        Ok(LayerTable {
            group: group.into(),
            names,
            fields,
            step,
            total,
            datasets,
            counts,
            pending: Vec::new(),
            written: 0,
        })
    }

    pub(super) fn open(
        file: &hdf5::File,
        path: &Path,
        group: &str,
        fields: &'static [ColSpec],
    ) -> Result<Option<LayerTable>> {
        let Some(lg) = open_layer_group(file, path, group)? else {
            return Ok(None);
        };
        let mut datasets = Vec::new();
        for spec in fields {
            datasets.push(
                lg.group
                    .dataset(spec.name)
                    .map_err(at(path, group, spec.name))?,
            );
        }
        let counts = if lg.group.link_exists(RATIO_COUNTS) {
            Some(
                lg.group
                    .dataset(RATIO_COUNTS)
                    .map_err(at(path, group, RATIO_COUNTS))?,
            )
        } else {
            None
        };
        let LayerGroup {
            names, step, total, ..
        } = lg;
        let mut written = step.size();
        for ds in total.iter().chain(&datasets).chain(&counts) {
            written = written.min(ds.shape().first().copied().unwrap_or(0));
        }
        let mut table = LayerTable {
            group: group.into(),
            names,
            fields,
            step,
            total,
            datasets,
            counts,
            pending: Vec::new(),
            written,
        };
        table.resize_all(path, written)?;
        Ok(Some(table))
    }

    pub(super) fn resize_all(&mut self, path: &Path, rows: usize) -> Result<()> {
        let at = |e: hdf5::Error| hdf5_at(path, &self.group, "", e);
        self.step.resize(rows).map_err(at)?;
        if let Some(t) = &self.total {
            t.resize(rows).map_err(at)?;
        }
        for ds in &self.datasets {
            ds.resize((rows, self.names.len())).map_err(at)?;
        }
        if let Some(c) = &self.counts {
            c.resize((rows, self.names.len(), RATIO_EDGES.len()))
                .map_err(at)?;
        }
        self.written = rows;
        Ok(())
    }

    pub(super) fn truncate_after(&mut self, path: &Path, step: u64) -> Result<()> {
        let steps: Vec<u64> = self
            .step
            .read_raw()
            .map_err(|e| hdf5_at(path, &self.group, "step", e))?;
        let keep = steps
            .iter()
            .take(self.written)
            .take_while(|&&s| s <= step)
            .count();
        self.resize_all(path, keep)
    }

    pub(super) fn flush(&mut self, path: &Path) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let start = self.written;
        let end = start + self.pending.len();
        let at = |name| at(path, &self.group, name);
        self.step.resize(end).map_err(at("step"))?;
        let steps: Vec<u64> = self.pending.iter().map(|p| p.0).collect();
        self.step
            .write_slice(&steps[..], start..end)
            .map_err(at("step"))?;
        if let Some(total) = &self.total {
            total.resize(end).map_err(at(TOTAL))?;
            let totals: Vec<f64> = self.pending.iter().map(|p| p.1).collect();
            total
                .write_slice(&totals[..], start..end)
                .map_err(at(TOTAL))?;
        }
        for (f, (spec, ds)) in self.fields.iter().zip(&self.datasets).enumerate() {
            ds.resize((end, self.names.len())).map_err(at(spec.name))?;
            for (i, (_, _, values, _)) in self.pending.iter().enumerate() {
                if !self.names.is_empty() {
                    ds.write_slice(&values[f][..], (start + i, ..))
                        .map_err(at(spec.name))?;
                }
            }
        }
        self.flush_counts(path, start, end)?;
        self.written = end;
        self.pending.clear();
        Ok(())
    }

    /// The pending rows' ratio counts; a snapshot without them (or with another shape) gets NaN.
    fn flush_counts(&self, path: &Path, start: usize, end: usize) -> Result<()> {
        let Some(ds) = &self.counts else {
            return Ok(());
        };
        let at = |e| hdf5_at(path, &self.group, RATIO_COUNTS, e);
        let (layers, edges) = (self.names.len(), RATIO_EDGES.len());
        ds.resize((end, layers, edges)).map_err(at)?;
        if layers == 0 {
            return Ok(());
        }
        for (i, (_, _, _, counts)) in self.pending.iter().enumerate() {
            let nan = vec![f64::NAN; edges];
            for l in 0..layers {
                let row = match counts.get(l * edges..(l + 1) * edges) {
                    Some(c) if counts.len() == layers * edges => c,
                    _ => &nan[..],
                };
                ds.write_slice(row, (start + i, l, ..)).map_err(at)?;
            }
        }
        Ok(())
    }
}

/// The empty, growable `ratio_counts` dataset of a `layers` wide AGC group, with its edges as an attribute.
fn create_ratio_counts(g: &hdf5::Group, layers: usize) -> hdf5::Result<hdf5::Dataset> {
    let edges = RATIO_EDGES.len();
    let ds = g
        .new_dataset::<f64>()
        .chunk((1, layers.max(1), edges))
        .shape((0.., layers, edges))
        .create(RATIO_COUNTS)?;
    set_str_attr(
        &ds,
        "description",
        "units whose ||G_u|| > max(||W_u||, eps) * edge (clipped at lambda = edge), per edge; cumulative",
    )?;
    ds.new_attr::<f64>()
        .shape(edges)
        .create("edges")?
        .write_raw(&RATIO_EDGES[..])?;
    Ok(ds)
}

pub(super) fn open_ro(path: &Path) -> Result<hdf5::File> {
    if !path.is_file() {
        return Err(RecordError::invalid(path, "no such metrics file"));
    }
    hdf5::File::with_options()
        .with_fapl(|p| p.file_locking(false))
        .open(path)
        .map_err(|e| RecordError::hdf5(path, e))
}

pub(super) fn open_rw(path: &Path) -> Result<hdf5::File> {
    if !path.is_file() {
        return Err(RecordError::invalid(path, "no such metrics file"));
    }
    hdf5::File::open_rw(path).map_err(|e| RecordError::hdf5(path, e))
}

pub(super) fn check_format(file: &hdf5::File, path: &Path) -> Result<()> {
    let format = read_str_attr(file, "format").unwrap_or_default();
    if format != FORMAT {
        return Err(RecordError::invalid(
            path,
            format!("not an nfbench metrics file (root attribute `format` is {format:?}, expected {FORMAT:?})"),
        ));
    }
    let version: u64 = file
        .attr("version")
        .and_then(|a| a.read_scalar())
        .map_err(|e| RecordError::invalid(path, format!("root attribute `version`: {e}")))?;
    if version > VERSION {
        return Err(RecordError::invalid(
            path,
            format!(
                "metrics format version {version} is newer than this nfbench reads ({VERSION})"
            ),
        ));
    }
    Ok(())
}

pub(super) fn create_column(
    g: &hdf5::Group,
    name: &str,
    ty: ColType,
) -> hdf5::Result<hdf5::Dataset> {
    match ty {
        U64 => g
            .new_dataset::<u64>()
            .chunk(TABLE_CHUNK)
            .shape(0..)
            .create(name),
        F64 => g
            .new_dataset::<f64>()
            .chunk(TABLE_CHUNK)
            .shape(0..)
            .create(name),
        Bool => g
            .new_dataset::<u8>()
            .chunk(TABLE_CHUNK)
            .shape(0..)
            .create(name),
        Str => g
            .new_dataset::<VarLenUnicode>()
            .chunk(256)
            .shape(0..)
            .create(name),
    }
}

pub(super) fn write_cells<'a>(
    ds: &hdf5::Dataset,
    ty: ColType,
    cells: impl Iterator<Item = &'a Cell>,
    range: std::ops::Range<usize>,
) -> hdf5::Result<()> {
    match ty {
        U64 => {
            let v: Vec<u64> = cells
                .map(|c| if let Cell::U(x) = c { *x } else { 0 })
                .collect();
            ds.write_slice(&v[..], range)
        }
        F64 => {
            let v: Vec<f64> = cells
                .map(|c| if let Cell::F(x) = c { *x } else { f64::NAN })
                .collect();
            ds.write_slice(&v[..], range)
        }
        Bool => {
            let v: Vec<u8> = cells.map(|c| matches!(c, Cell::B(true)) as u8).collect();
            ds.write_slice(&v[..], range)
        }
        Str => {
            let v: Vec<VarLenUnicode> = cells
                .map(|c| {
                    if let Cell::S(s) = c {
                        to_vlen(s)
                    } else {
                        to_vlen("")
                    }
                })
                .collect();
            ds.write_slice(&v[..], range)
        }
    }
}

/// HDF5 strings end at a NUL byte, so NULs (which nothing legitimate sends) become U+FFFD.
pub(super) fn to_vlen(s: &str) -> VarLenUnicode {
    let clean = s.replace('\0', "\u{fffd}");
    clean.parse().unwrap_or_default()
}

pub(super) fn set_str_attr(loc: &hdf5::Location, name: &str, value: &str) -> hdf5::Result<()> {
    let v = to_vlen(value);
    if loc.attr_names()?.iter().any(|n| n == name) {
        loc.delete_attr(name)?;
    }
    loc.new_attr::<VarLenUnicode>()
        .create(name)?
        .write_scalar(&v)
}

pub(super) fn read_str_attr(loc: &hdf5::Location, name: &str) -> hdf5::Result<String> {
    let v: VarLenUnicode = loc.attr(name)?.read_scalar()?;
    Ok(v.as_str().to_string())
}

pub(super) fn set_str_array_attr(
    loc: &hdf5::Location,
    name: &str,
    values: &[String],
) -> hdf5::Result<()> {
    let v: Vec<VarLenUnicode> = values.iter().map(|s| to_vlen(s)).collect();
    loc.new_attr::<VarLenUnicode>()
        .shape(v.len())
        .create(name)?
        .write_raw(&v[..])
}

pub(super) fn read_str_array_attr(loc: &hdf5::Location, name: &str) -> hdf5::Result<Vec<String>> {
    let v: Vec<VarLenUnicode> = loc.attr(name)?.read_raw()?;
    Ok(v.iter().map(|s| s.as_str().to_string()).collect())
}

/// `map_err(at(path, group, "step"))`: an HDF5 failure on one object of a group (`""`: the group itself) as a
/// record error naming it.
pub(super) fn at<'a>(
    path: &'a Path,
    group: &'a str,
    name: &'a str,
) -> impl FnOnce(hdf5::Error) -> RecordError + 'a {
    move |e| hdf5_at(path, group, name, e)
}

/// The optional column of a layer group with the fraction of all units clipped.
pub(super) const TOTAL: &str = "total_clipped_fraction";

/// What reading and appending both open of a per-layer group: the group, its layer names, its step column and the
/// optional total column.
pub(super) struct LayerGroup {
    pub(super) group: hdf5::Group,
    pub(super) names: Vec<String>,
    pub(super) step: hdf5::Dataset,
    pub(super) total: Option<hdf5::Dataset>,
}

/// Open the per-layer group `group`; `None` when the file has none (a run without statistics yet).
pub(super) fn open_layer_group(
    file: &hdf5::File,
    path: &Path,
    group: &str,
) -> Result<Option<LayerGroup>> {
    if !file.link_exists(group) {
        return Ok(None);
    }
    let at = |name| at(path, group, name);
    let g = file.group(group).map_err(at(""))?;
    let names = read_str_array_attr(&g, "names").map_err(at("@names"))?;
    let step = g.dataset("step").map_err(at("step"))?;
    let total = if g.link_exists(TOTAL) {
        Some(g.dataset(TOTAL).map_err(at(TOTAL))?)
    } else {
        None
    };
    Ok(Some(LayerGroup {
        group: g,
        names,
        step,
        total,
    }))
}

pub(super) fn hdf5_at(path: &Path, group: &str, name: &str, err: hdf5::Error) -> RecordError {
    let what = if name.is_empty() {
        format!("/{group}: {err}")
    } else {
        format!("/{group}/{name}: {err}")
    };
    RecordError::hdf5(path, what)
}
