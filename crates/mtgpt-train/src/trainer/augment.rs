//! Generated examples during training (`generate_augment`): the model writes new examples for
//! a classify task, the classifier filters them, and they join the task's stream.
use super::checkpoint::io_err;
use super::data::extend_stream;
use super::session::Session;
use crate::error::{Error, Result};
use crate::genaug::generate_examples;
use mtgpt_core::Example;
use serde_json::json;
use std::path::Path;

impl Session<'_> {
    /// Generated examples join their task once the classifier is trained enough to filter.
    pub(crate) fn augment_if_due(&mut self) -> Result<()> {
        let step = self.state.step;
        let c = &self.config.train;
        for k in 0..self.augment_tasks.len() {
            let (i, g) = self.augment_tasks[k].clone();
            let name = self.runs[i].name.clone();
            let at = c.pretrain_steps + (g.at_fraction * c.steps as f64) as usize;
            if step != at || self.state.augmented.contains(&name) {
                continue;
            }
            let train_examples = self
                .data
                .tasks
                .examples(i, "train", true)?
                .unwrap_or_default();
            self.log().say(&format!(
                "step {step}: generating {} examples for `{name}`",
                g.n
            ));
            let (examples, outcome) = generate_examples(
                &self.model,
                &self.data.model_cfg,
                &self.data.tok,
                &self.formatters[i],
                &self.data.heads()[i],
                &train_examples,
                &g,
                mtgpt_core::seed::derive_seed(self.config.seed, &format!("genaug/{name}")),
                self.opts.device,
            )?;
            let dir = self.augment_dir();
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            write_augment_file(&dir.join(format!("{name}.jsonl")), &examples)?;
            extend_stream(&mut self.runs[i], &self.formatters[i], &examples, true)?;
            self.log().say(&format!(
                "`{name}`: kept {} of {} generated examples (generator loss {:.3} → {:.3})",
                outcome.kept, outcome.generated, outcome.finetune_loss.0, outcome.finetune_loss.1
            ));
            self.log()
                .record(&json!({"step": step, "augment": outcome}))?;
            self.state.augmented.push(name);
            self.augmented.push(outcome);
        }
        Ok(())
    }
}

fn write_augment_file(path: &Path, examples: &[Example]) -> Result<()> {
    let mut text = String::new();
    for ex in examples {
        text.push_str(&serde_json::to_string(ex).map_err(|e| Error::Invalid(e.to_string()))?);
        text.push('\n');
    }
    mtgpt_model::io::write_text_atomically(path, &text)?;
    Ok(())
}
