//! `--resume`: a run continues from its latest checkpoint exactly where it was.
use super::checkpoint::{latest_checkpoint, read_checkpoint};
use super::data::extend_stream;
use super::session::{Session, index_of};
use crate::error::{Error, Result};
use mtgpt_text::prep::read_split;

impl Session<'_> {
    /// Continues from the latest checkpoint: weights, moments, streams, samplers, weighting,
    /// guard and generated examples as they were.
    pub(crate) fn resume(&mut self) -> Result<()> {
        let ckpt_dir = self.out().join("checkpoints");
        let dir = latest_checkpoint(&ckpt_dir).ok_or_else(|| {
            Error::Invalid(format!("--resume: no checkpoint in {}", ckpt_dir.display()))
        })?;
        self.state = read_checkpoint(&dir, &self.model, &mut self.opt)?;
        if let Some(ema) = self.ema.as_mut() {
            let file = dir.join(super::checkpoint::EMA_FILE);
            if !file.exists() {
                return Err(Error::Invalid(format!(
                    "{}: missing; the checkpoint was written without train.ema_decay, so it \
                     cannot resume a run that averages the weights",
                    file.display()
                )));
            }
            let tensors = mtgpt_model::io::read_safetensors(&file)?;
            ema.load_state(&tensors, &file.display().to_string())?;
        }
        let path = dir.join("trainer.json");
        let state = &self.state;
        let written_by = state.world_size.unwrap_or(1);
        if written_by != self.world {
            return Err(Error::Invalid(format!(
                "{}: written by a job of {written_by} rank(s), this one has {}; resume with the \
                 same number of ranks (the data order depends on it)",
                path.display(),
                self.world
            )));
        }
        if state.streams.len() != self.runs.len() {
            return Err(Error::Invalid(format!(
                "{}: {} task streams, the config has {} tasks",
                path.display(),
                state.streams.len(),
                self.runs.len()
            )));
        }
        for name in &state.augmented {
            let i = index_of(self.config, name)?;
            let file = self.augment_dir().join(format!("{name}.jsonl"));
            let examples = read_split(&file)?;
            extend_stream(&mut self.runs[i], &self.formatters[i], &examples, false)?;
        }
        for (r, s) in self.runs.iter_mut().zip(&state.streams) {
            r.stream.restore(*s);
        }
        let bad = |e: serde_json::Error| Error::Invalid(format!("{}: {e}", path.display()));
        self.joint
            .sampler
            .restore(&serde_json::from_value(state.sampler.clone()).map_err(bad)?)?;
        if let (Some(p), Some(s)) = (self.pretrain.as_mut(), state.pretrain_sampler.as_ref()) {
            p.sampler
                .restore(&serde_json::from_value(s.clone()).map_err(bad)?)?;
        }
        self.weighting
            .restore(&serde_json::from_value(state.weighting.clone()).map_err(bad)?)?;
        if let Some(g) = state.guard.clone() {
            self.guard
                .restore(g)
                .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        }
        tracing::info!("resumed from {} at step {}", dir.display(), self.state.step);
        Ok(())
    }
}
