//! [`Recorder`]: trainer events in, buffered rows out to `metrics.h5` at every flush.

use super::*;

/// Appends trainer events to `metrics.h5`. Call [`Recorder::record`] with every event the consumer receives.
pub struct Recorder {
    path: PathBuf,
    file: hdf5::File,
    steps: Table,
    evals: Table,
    throughput: Table,
    events: Table,
    agc: Option<LayerTable>,
    spp: Option<LayerTable>,
    last_flush: Instant,
    /// Last step seen, for events that carry none (warnings, errors).
    last_step: u64,
}

impl Recorder {
    /// Creates `metrics.h5` in a new run directory.
    pub fn create(run: &RunDir) -> Result<Recorder> {
        let preset = std::fs::read_to_string(run.preset_path()).unwrap_or_default();
        Recorder::create_at(&run.metrics_path(), &preset)
    }

    /// Creates a metrics file at `path` (replacing none: an existing file is an error).
    pub fn create_at(path: &Path, preset_toml: &str) -> Result<Recorder> {
        if path.exists() {
            return Err(RecordError::invalid(
                path,
                "already exists; a run's metrics are never overwritten",
            ));
        }
        let file = hdf5::File::create_excl(path).map_err(|e| RecordError::hdf5(path, e))?;
        let h = |e: hdf5::Error| RecordError::hdf5(path, e);
        set_str_attr(&file, "format", FORMAT).map_err(h)?;
        file.new_attr::<u64>()
            .create("version")
            .and_then(|a| a.write_scalar(&VERSION))
            .map_err(h)?;
        set_str_attr(&file, "created", &chrono::Local::now().to_rfc3339()).map_err(h)?;
        set_str_attr(&file, "nfbench_version", env!("CARGO_PKG_VERSION")).map_err(h)?;
        set_str_attr(&file, "preset", preset_toml).map_err(h)?;
        file.create_group("layers").map_err(h)?;
        let mut recorder = Recorder {
            steps: Table::create(&file, path, "steps", STEP_COLUMNS)?,
            evals: Table::create(&file, path, "eval", EVAL_COLUMNS)?,
            throughput: Table::create(&file, path, "throughput", THROUGHPUT_COLUMNS)?,
            events: Table::create(&file, path, "events", EVENT_COLUMNS)?,
            agc: None,
            spp: None,
            path: path.to_path_buf(),
            file,
            last_flush: Instant::now(),
            last_step: 0,
        };
        recorder.flush()?;
        Ok(recorder)
    }

    /// Opens an existing run's `metrics.h5` to continue it from a checkpoint at `resume_step`: rows after that
    /// step (trained after the checkpoint, then lost) are dropped from the step, eval, throughput and layer
    /// tables, so the resumed run's rows follow on without duplicates. The events table keeps its history and
    /// gets a `resumed` row.
    pub fn open_for_resume(run: &RunDir, resume_step: u64) -> Result<Recorder> {
        let path = run.metrics_path();
        let file = open_rw(&path)?;
        check_format(&file, &path)?;
        let mut recorder = Recorder {
            steps: Table::open(&file, &path, "steps", STEP_COLUMNS)?,
            evals: Table::open(&file, &path, "eval", EVAL_COLUMNS)?,
            throughput: Table::open(&file, &path, "throughput", THROUGHPUT_COLUMNS)?,
            events: Table::open(&file, &path, "events", EVENT_COLUMNS)?,
            agc: LayerTable::open(&file, &path, "layers/agc", AGC_FIELDS)?,
            spp: LayerTable::open(&file, &path, "layers/spp", SPP_FIELDS)?,
            path: path.clone(),
            file,
            last_flush: Instant::now(),
            last_step: resume_step,
        };
        recorder.truncate_after(resume_step)?;
        recorder.note(
            resume_step,
            "resumed",
            "",
            "",
            "continued from the checkpoint at this step",
        );
        recorder.flush()?;
        Ok(recorder)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Drops the step, eval, throughput and layer rows after `step` (buffered ones are written first).
    fn truncate_after(&mut self, step: u64) -> Result<()> {
        self.flush()?;
        let path = self.path.clone();
        self.steps.truncate_after(&path, step)?;
        self.evals.truncate_after(&path, step)?;
        self.throughput.truncate_after(&path, step)?;
        if let Some(t) = &mut self.agc {
            t.truncate_after(&path, step)?;
        }
        if let Some(t) = &mut self.spp {
            t.truncate_after(&path, step)?;
        }
        Ok(())
    }

    /// The step of the last row of a run's step table (`None` when it has none), as a resume will see it: a
    /// column shorter than the others (a flush cut short) shortens the table.
    pub fn last_recorded_step(run: &RunDir) -> Result<Option<u64>> {
        let path = run.metrics_path();
        let file = open_ro(&path)?;
        check_format(&file, &path)?;
        let group = file
            .group("steps")
            .map_err(|e| hdf5_at(&path, "steps", "", e))?;
        let mut rows = usize::MAX;
        for spec in STEP_COLUMNS {
            let ds = group
                .dataset(spec.name)
                .map_err(|e| hdf5_at(&path, "steps", spec.name, e))?;
            rows = rows.min(ds.size());
        }
        let steps: Vec<u64> = group
            .dataset("step")
            .and_then(|d| d.read_raw())
            .map_err(|e| hdf5_at(&path, "steps", "step", e))?;
        Ok(steps
            .get(..rows.min(steps.len()))
            .and_then(|s| s.last().copied()))
    }

    /// Records one event. Telemetry is buffered; statistics snapshots, evaluations, checkpoints and every other
    /// non-telemetry event flush the buffer to disk.
    pub fn record(&mut self, event: &Event) -> Result<()> {
        let flush = match event {
            Event::Step(m) => {
                if m.step <= self.last_step && self.last_step > 0 {
                    // The run went back (a divergence rescue rolled it back): the rows ahead of this step belong
                    // to the abandoned trajectory. Telemetry arrives in order, so the first step that goes back
                    // is where the new one starts.
                    self.truncate_after(m.step.saturating_sub(1))?;
                }
                self.last_step = m.step;
                self.steps.push(step_row(m, now_seconds()));
                self.steps.pending.len() >= MAX_PENDING_ROWS
            }
            Event::Throughput(t) => {
                self.throughput.push(throughput_row(t));
                false
            }
            Event::Layers(stats) => {
                self.push_layers(stats)?;
                true
            }
            Event::Eval(e) => {
                self.evals.push(eval_row(e, now_seconds()));
                true
            }
            Event::Checkpoint { .. } => {
                self.push_event(event);
                self.flush()?;
                return self.sync();
            }
            other => {
                self.push_event(other);
                true
            }
        };
        if flush || self.last_flush.elapsed().as_secs_f64() >= FLUSH_SECONDS {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the buffered rows when the flush interval has passed since the last write (for a consumer that has
    /// no event to record, e.g. while the run is paused).
    pub fn flush_if_due(&mut self) -> Result<()> {
        if self.last_flush.elapsed().as_secs_f64() >= FLUSH_SECONDS {
            self.flush()?;
        }
        Ok(())
    }

    /// Adds a row to the events table (for things that are not trainer events, e.g. `resumed`).
    pub fn note(&mut self, step: u64, kind: &str, key: &str, value: &str, detail: &str) {
        self.events.push(event_row(&EventRow::new(
            step,
            now_seconds(),
            kind,
            key,
            value,
            detail,
        )));
    }

    /// Writes every buffered row and flushes the HDF5 file to the operating system.
    ///
    /// On a failure (a full disk) nothing already on disk is lost and the rows not yet written stay buffered: a
    /// table's rows leave the buffer only once all its columns hold them, and a later flush writes them at the
    /// same row positions, so the table gets no gap and no duplicate. The next attempt comes with the next event
    /// that flushes, or after [`FLUSH_SECONDS`], not at every step.
    pub fn flush(&mut self) -> Result<()> {
        if let Err(e) = self.check_space() {
            self.last_flush = Instant::now();
            return Err(e);
        }
        let before = self.buffered();
        let result = self.write_pending();
        if result.is_err() {
            self.roll_back(before);
        }
        self.last_flush = Instant::now();
        result
    }

    /// Refuses a flush the disk may not have room for. HDF5 does not survive a write that fails for want of space:
    /// seen on a full tmpfs, its file-space bookkeeping went wrong and later chunks of different columns landed
    /// on the same bytes, scrambling rows that were already on disk. So the file is only touched with room to
    /// spare ([`FLUSH_MARGIN`] plus a few times the rows' raw size, for new chunks and index nodes); until then the
    /// rows stay buffered and the file on disk stays as the last flush left it.
    fn check_space(&self) -> Result<()> {
        let Some(free) = free_bytes(&self.path) else {
            return Ok(());
        };
        let need = FLUSH_MARGIN + 4 * self.pending_bytes();
        if free >= need {
            return Ok(());
        }
        Err(RecordError::io(
            &self.path,
            std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                format!(
                    "no space left on device ({free} bytes free, a flush needs about {need}): {} rows kept in \
                     memory until space returns",
                    self.pending_rows()
                ),
            ),
        ))
    }

    fn pending_rows(&self) -> usize {
        let tables = [&self.steps, &self.evals, &self.throughput, &self.events];
        let layers = [&self.agc, &self.spp];
        tables.iter().map(|t| t.pending.len()).sum::<usize>()
            + layers
                .iter()
                .flat_map(|t| t.iter())
                .map(|t| t.pending.len())
                .sum::<usize>()
    }

    /// The buffered rows' size as stored (8 bytes a number, strings as long as they are).
    fn pending_bytes(&self) -> u64 {
        let cell = |c: &Cell| match c {
            Cell::S(s) => 16 + s.len() as u64,
            _ => 8,
        };
        let tables = [&self.steps, &self.evals, &self.throughput, &self.events];
        let rows: u64 = tables
            .iter()
            .flat_map(|t| t.pending.iter())
            .flat_map(|row| row.iter())
            .map(cell)
            .sum();
        let layers: u64 = [&self.agc, &self.spp]
            .iter()
            .flat_map(|t| t.iter())
            .flat_map(|t| t.pending.iter())
            .map(|(_, _, values, counts)| {
                16 + 8 * (values.iter().map(|v| v.len() as u64).sum::<u64>() + counts.len() as u64)
            })
            .sum();
        rows + layers
    }

    /// Every table's row count and buffered rows, to go back to when a flush fails.
    fn buffered(&self) -> Buffered {
        let table = |t: &Table| (t.written, t.pending.clone());
        let layers = |t: &Option<LayerTable>| t.as_ref().map(|t| (t.written, t.pending.clone()));
        Buffered {
            tables: [
                table(&self.steps),
                table(&self.evals),
                table(&self.throughput),
                table(&self.events),
            ],
            layers: [layers(&self.agc), layers(&self.spp)],
        }
    }

    /// After a failed flush: every table back to the rows of the last good flush, with all later rows buffered
    /// again. A flush can fail after some tables' rows reached HDF5 (its caches) but before the file took them, so
    /// a table's own count is no proof the rows are on disk; and a dataset extent written while its chunks could not
    /// be would show rows of zeros, so the extents are set back too (best effort: the disk is full).
    fn roll_back(&mut self, before: Buffered) {
        let path = self.path.clone();
        let [steps, evals, throughput, events] = before.tables;
        for (t, (written, pending)) in [
            (&mut self.steps, steps),
            (&mut self.evals, evals),
            (&mut self.throughput, throughput),
            (&mut self.events, events),
        ] {
            t.pending = pending;
            // The count is the truth even when the extent cannot be set (the next flush sets it).
            let _ = t.resize_all(&path, written);
            t.written = written;
        }
        let [agc, spp] = before.layers;
        for (t, saved) in [(&mut self.agc, agc), (&mut self.spp, spp)] {
            if let (Some(t), Some((written, pending))) = (t.as_mut(), saved) {
                t.pending = pending;
                let _ = t.resize_all(&path, written);
                t.written = written;
            }
        }
        let _ = self.file.flush();
    }

    fn write_pending(&mut self) -> Result<()> {
        let path = self.path.clone();
        self.steps.flush(&path)?;
        self.evals.flush(&path)?;
        self.throughput.flush(&path)?;
        self.events.flush(&path)?;
        if let Some(t) = &mut self.agc {
            t.flush(&path)?;
        }
        if let Some(t) = &mut self.spp {
            t.flush(&path)?;
        }
        self.file.flush().map_err(|e| RecordError::hdf5(&path, e))
    }

    /// [`flush`](Self::flush), then fsync, so the log survives a power cut too (done at checkpoints).
    pub fn sync(&mut self) -> Result<()> {
        self.flush()?;
        std::fs::File::open(&self.path)
            .and_then(|f| f.sync_data())
            .map_err(|e| RecordError::io(&self.path, e))
    }

    pub(super) fn push_event(&mut self, event: &Event) {
        for row in event_rows(event, self.last_step) {
            if row.kind == "started" {
                self.set_started_attrs(&row);
            }
            self.events.push(event_row(&row));
        }
    }

    /// Root attributes `model`, `device`, `params` from the latest `Started`, for quick listing.
    pub(super) fn set_started_attrs(&mut self, row: &EventRow) {
        if let Ok(info) = serde_json::from_str::<StartedInfo>(&row.detail) {
            let _ = set_str_attr(&self.file, "model", &info.model);
            let _ = set_str_attr(&self.file, "device", &info.device);
        }
    }

    pub(super) fn push_layers(&mut self, stats: &LayerStats) -> Result<()> {
        if !stats.agc.is_empty() {
            let names: Vec<String> = stats.agc.iter().map(|a| a.name.clone()).collect();
            if self.agc.is_none() {
                let table = LayerTable::create(
                    &self.file,
                    &self.path,
                    "layers/agc",
                    names.clone(),
                    AGC_FIELDS,
                    true,
                )?;
                write_agc_constants(&self.file, &self.path, &stats.agc)?;
                self.agc = Some(table);
            }
            let values = agc_values(&stats.agc);
            let row = (
                stats.step,
                stats.total_clipped_fraction,
                values,
                agc_counts(&stats.agc),
            );
            self.push_layer_row("layers/agc", names, row);
        }
        if !stats.spp.is_empty() {
            let names: Vec<String> = stats.spp.iter().map(|b| b.name.clone()).collect();
            if self.spp.is_none() {
                self.spp = Some(LayerTable::create(
                    &self.file,
                    &self.path,
                    "layers/spp",
                    names.clone(),
                    SPP_FIELDS,
                    false,
                )?);
            }
            let values = spp_values(&stats.spp);
            let row = (stats.step, f64::NAN, values, Vec::new());
            self.push_layer_row("layers/spp", names, row);
        }
        Ok(())
    }

    pub(super) fn push_layer_row(&mut self, group: &str, names: Vec<String>, row: LayerRow) {
        let step = row.0;
        let table = if group == "layers/agc" {
            &mut self.agc
        } else {
            &mut self.spp
        };
        let Some(table) = table else { return };
        if table.names != names {
            let detail = format!(
                "{group}: the snapshot's {} names differ from the {} recorded ones; snapshot not recorded",
                names.len(),
                table.names.len()
            );
            self.note(step, "warning", group, "", &detail);
            return;
        }
        table.pending.push(row);
    }
}

/// Free space a flush leaves untouched, above the rows' own size.
pub const FLUSH_MARGIN: u64 = 1 << 20;

/// Bytes available to this process on the file system holding `path`; `None` when it cannot be told.
fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let c_path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is a NUL-terminated string that outlives the call, and `stat` is a valid place for
    // statvfs(3) to write its result; it is read only when the call reports success.
    let stat = unsafe {
        if libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) != 0 {
            return None;
        }
        stat.assume_init()
    };
    Some((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

/// What [`Recorder::roll_back`] restores: (rows written, rows buffered) of the column tables (steps, eval,
/// throughput, events) and of the layer tables (AGC, SPP) that exist.
struct Buffered {
    tables: [(usize, Vec<Vec<Cell>>); 4],
    layers: [Option<(usize, Vec<LayerRow>)>; 2],
}

impl Drop for Recorder {
    fn drop(&mut self) {
        // Best effort: a failure here has nowhere to go, and the last explicit flush is on disk anyway.
        let _ = self.flush();
    }
}

/// `/layers/agc/units` and `/layers/agc/clipped_by_agc`: per-layer constants, written once.
pub(super) fn write_agc_constants(
    file: &hdf5::File,
    path: &Path,
    agc: &[AgcLayerStats],
) -> Result<()> {
    let units: Vec<u64> = agc.iter().map(|a| a.units as u64).collect();
    let clipped: Vec<u8> = agc.iter().map(|a| u8::from(a.clipped_by_agc)).collect();
    let h = |e: hdf5::Error| hdf5_at(path, "layers/agc", "units", e);
    let g = file.group("layers/agc").map_err(h)?;
    let ds = g
        .new_dataset::<u64>()
        .shape(units.len())
        .create("units")
        .map_err(h)?;
    ds.write_raw(&units[..]).map_err(h)?;
    set_str_attr(
        &ds,
        "description",
        "AGC units (output channels / rows) per layer",
    )
    .map_err(h)?;
    let ds = g
        .new_dataset::<u8>()
        .shape(clipped.len())
        .create("clipped_by_agc")
        .map_err(h)?;
    ds.write_raw(&clipped[..]).map_err(h)?;
    set_str_attr(
        &ds,
        "description",
        "1 when AGC applies to the layer, 0 when excluded",
    )
    .map_err(h)?;
    Ok(())
}

pub(super) fn agc_values(agc: &[AgcLayerStats]) -> Vec<Vec<f64>> {
    vec![
        agc.iter().map(|a| a.weight_norm).collect(),
        agc.iter().map(|a| a.grad_norm).collect(),
        agc.iter().map(|a| a.max_ratio).collect(),
        agc.iter().map(|a| a.mean_ratio).collect(),
        agc.iter().map(|a| a.clipped_fraction).collect(),
    ]
}

/// Every layer's ratio counts, `[layer, edge]` flattened, NaN for a layer without them (frozen); empty when no
/// layer has them.
pub(super) fn agc_counts(agc: &[AgcLayerStats]) -> Vec<f64> {
    let edges = RATIO_EDGES.len();
    if agc.iter().all(|a| a.ratio_counts.is_empty()) {
        return Vec::new();
    }
    agc.iter()
        .flat_map(|a| {
            if a.ratio_counts.len() == edges {
                a.ratio_counts.clone()
            } else {
                vec![f64::NAN; edges]
            }
        })
        .collect()
}

pub(super) fn spp_values(spp: &[SppBlockStats]) -> Vec<Vec<f64>> {
    vec![
        spp.iter().map(|b| b.predicted_var).collect(),
        spp.iter().map(|b| b.avg_sq_mean).collect(),
        spp.iter().map(|b| b.avg_var).collect(),
        spp.iter().map(|b| b.res_avg_var).collect(),
    ]
}
