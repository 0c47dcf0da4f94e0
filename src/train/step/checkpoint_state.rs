//! The runner's state as a checkpoint holds it, and its exact restoration.

use super::*;

impl StepRunner {
    /// Snapshot everything needed for an exact resume (tensors copied to the host).
    pub fn state(&self, preset: &Preset, loader_position: serde_json::Value) -> Result<TrainState> {
        let cpu = Device::Cpu;
        let params = self.model.params();
        let mut tensors = Vec::new();
        for (i, p) in params.iter().enumerate() {
            let w = p.var.as_tensor().detach();
            tensors.push((format!("param/{}", p.name), w.to_device(&cpu)?));
            let m = match self.sgd.buffer(i) {
                Some(b) => b.to_device(&cpu)?,
                None => w.zeros_like()?.to_device(&cpu)?,
            };
            tensors.push((format!("momentum/{}", p.name), m));
        }
        if let Some(ema) = &self.ema {
            for (p, s) in params.iter().zip(ema.shadows()) {
                tensors.push((format!("ema/{}", p.name), s.to_device(&cpu)?));
            }
        }
        for (name, b) in self.model.buffers() {
            tensors.push((format!("buffer/{name}"), b.to_device(&cpu)?));
        }
        let mut preset = preset.clone();
        self.live.apply_to(&mut preset);
        Ok(TrainState {
            tensors,
            meta: TrainMeta {
                format: STATE_FORMAT,
                step: self.step,
                model: self.model.name(),
                preset,
                live: self.live,
                loader_position,
                seed: self.seed,
                consecutive_bad: self.consecutive_bad,
                images_seen: self.images_seen,
                param_names: params.iter().map(|p| p.name.clone()).collect(),
                epoch: 0.0,
                val_top1: None,
            },
        })
    }

    /// Restore a snapshot written by [`StepRunner::state`] (the loader position is the source's business).
    pub fn restore(&mut self, state: &TrainState) -> Result<()> {
        let map = state.tensor_map();
        let get = |key: String| {
            map.get(&key)
                .ok_or_else(|| TrainError::checkpoint(format!("missing tensor `{key}`")))
        };
        let params = self.model.params().to_vec();
        let mut shadows = Vec::new();
        for (i, p) in params.iter().enumerate() {
            let w = get(format!("param/{}", p.name))?;
            if w.dims() != p.var.dims() {
                return Err(TrainError::checkpoint(format!(
                    "`param/{}` has shape {:?}, the model wants {:?}",
                    p.name,
                    w.dims(),
                    p.var.dims()
                )));
            }
            p.var
                .set(&w.to_device(&self.device)?.to_dtype(p.var.dtype())?)?;
            let m = get(format!("momentum/{}", p.name))?;
            self.sgd.load_buffer(i, m.to_device(&self.device)?);
            if self.ema.is_some() {
                let e = map.get(&format!("ema/{}", p.name)).unwrap_or(w);
                shadows.push(e.to_device(&self.device)?);
            }
        }
        if let Some(ema) = self.ema.as_mut() {
            ema.load(shadows);
        }
        let buffers: HashMap<String, Tensor> = state
            .tensors
            .iter()
            .filter_map(|(k, t)| {
                k.strip_prefix("buffer/")
                    .map(|n| (n.to_string(), t.to_device(&self.device)))
            })
            .map(|(n, t)| t.map(|t| (n, t)))
            .collect::<candle_core::Result<_>>()?;
        if !buffers.is_empty() {
            self.model
                .load_buffers(&buffers)
                .map_err(|e| TrainError::checkpoint_from("model buffers", e))?;
        }
        for p in state.meta.live.params() {
            self.take_effect(p)?;
        }
        self.live = state.meta.live;
        self.step = state.meta.step;
        self.seed = state.meta.seed;
        self.images_seen = state.meta.images_seen;
        self.consecutive_bad = state.meta.consecutive_bad;
        Ok(())
    }
}
