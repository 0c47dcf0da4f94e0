//! The per-layer statistics of a step: AGC rows and signal-propagation blocks reduced on the device, copied to
//! the host in one batch.

use super::*;

impl StepRunner {
    pub(super) fn gather_stats(
        &self,
        step: u64,
        rows: &[Tensor],
        spp: Option<&Tensor>,
    ) -> Result<LayerStats> {
        let params = self.model.params();
        let mut parts = Vec::with_capacity(2);
        if !rows.is_empty() {
            parts.push(Tensor::stack(rows, 0)?.flatten_all()?);
        }
        if let Some(s) = spp {
            parts.push(s.to_dtype(DType::F32)?.flatten_all()?);
        }
        let host = if parts.is_empty() {
            Vec::new()
        } else {
            Tensor::cat(&parts, 0)?.to_vec1::<f32>()?
        };
        let mut agc_stats = Vec::with_capacity(params.len());
        let (mut clipped_units, mut all_units) = (0.0, 0usize);
        for (i, p) in params.iter().enumerate() {
            let row = host.get(i * STATS_LEN..(i + 1) * STATS_LEN).unwrap_or(&[]);
            let r = AgcStatsRow::from_row(row);
            let units = agc::unit_count(p.var.dims());
            let frozen = self.groups.frozen(i);
            let applies = self.live.agc_enabled && !self.is_excluded(i) && !frozen;
            if applies {
                clipped_units += r.clipped_fraction * units as f64;
                all_units += units;
            }
            agc_stats.push(AgcLayerStats {
                name: p.name.clone(),
                weight_norm: r.weight_norm,
                grad_norm: r.grad_norm,
                max_ratio: r.max_ratio,
                mean_ratio: r.mean_ratio,
                clipped_fraction: r.clipped_fraction,
                units,
                clipped_by_agc: applies,
                frozen,
                ratio_counts: if frozen { Vec::new() } else { r.ratio_counts },
            });
        }
        let spp_host = host.get(params.len() * STATS_LEN..).unwrap_or(&[]);
        let spp_stats = self
            .model
            .spp_blocks()
            .into_iter()
            .enumerate()
            .filter_map(|(b, (name, predicted_var))| {
                let v = spp_host.get(b * 3..b * 3 + 3)?;
                Some(SppBlockStats {
                    name,
                    predicted_var,
                    avg_sq_mean: v[0] as f64,
                    avg_var: v[1] as f64,
                    res_avg_var: v[2] as f64,
                })
            })
            .collect();
        Ok(LayerStats {
            step,
            agc: agc_stats,
            spp: spp_stats,
            total_clipped_fraction: if all_units > 0 {
                clipped_units / all_units as f64
            } else {
                0.0
            },
        })
    }
}
