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
    pub fn flush(&mut self) -> Result<()> {
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
        self.file.flush().map_err(|e| RecordError::hdf5(&path, e))?;
        self.last_flush = Instant::now();
        Ok(())
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
            self.push_layer_row(
                "layers/agc",
                names,
                stats.step,
                stats.total_clipped_fraction,
                values,
            );
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
            self.push_layer_row("layers/spp", names, stats.step, f64::NAN, values);
        }
        Ok(())
    }

    pub(super) fn push_layer_row(
        &mut self,
        group: &str,
        names: Vec<String>,
        step: u64,
        total: f64,
        values: Vec<Vec<f64>>,
    ) {
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
        table.pending.push((step, total, values));
    }
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

pub(super) fn spp_values(spp: &[SppBlockStats]) -> Vec<Vec<f64>> {
    vec![
        spp.iter().map(|b| b.predicted_var).collect(),
        spp.iter().map(|b| b.avg_sq_mean).collect(),
        spp.iter().map(|b| b.avg_var).collect(),
        spp.iter().map(|b| b.res_avg_var).collect(),
    ]
}
