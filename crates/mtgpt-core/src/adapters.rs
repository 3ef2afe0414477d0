//! `[adapters]`: low-rank adapters (LoRA) on the trunk's linear layers, and how the trunk
//! itself trains beside them (`[train] trunk`).
use serde::{Deserialize, Serialize};

/// The trunk layers an adapter may sit on, by the names PEFT's `target_modules` matches on a
/// GPT-2 (`attn.c_proj` and `mlp.c_proj` apart, as both end in `c_proj`).
pub const ADAPTER_TARGETS: [&str; 4] = ["c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"];

/// Which adapters a model has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdapterMode {
    /// No adapters (the trunk trains as a whole, as before).
    #[default]
    None,
    /// One adapter per task; each example goes through its own task's adapter.
    PerTask,
    /// One adapter that every task shares.
    Shared,
    /// A shared adapter plus one per task, summed.
    Both,
}

impl AdapterMode {
    /// Whether the model has any adapter.
    pub fn enabled(self) -> bool {
        self != AdapterMode::None
    }

    /// Whether each task has an adapter of its own.
    pub fn per_task(self) -> bool {
        matches!(self, AdapterMode::PerTask | AdapterMode::Both)
    }

    /// Whether there is an adapter every task goes through.
    pub fn shared(self) -> bool {
        matches!(self, AdapterMode::Shared | AdapterMode::Both)
    }
}

/// `[adapters]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdapterConfig {
    /// Which adapters (`none` by default).
    pub mode: AdapterMode,
    /// LoRA rank `r`.
    pub rank: usize,
    /// LoRA `alpha`: the update is scaled by `alpha / rank`.
    pub alpha: f64,
    /// Dropout on an adapter's input while training.
    pub dropout: f64,
    /// The layers that get adapters, from [`ADAPTER_TARGETS`].
    pub targets: Vec<String>,
}

impl Default for AdapterConfig {
    fn default() -> Self {
        AdapterConfig {
            mode: AdapterMode::None,
            rank: 8,
            alpha: 16.0,
            dropout: 0.0,
            targets: ADAPTER_TARGETS.iter().map(|s| s.to_string()).collect(),
        }
    }
}

impl AdapterConfig {
    /// The scale of the low-rank update, `alpha / rank`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank.max(1) as f64
    }

    /// Why this config cannot be used, naming the key.
    pub fn check(&self) -> Result<(), (String, String)> {
        if !self.mode.enabled() {
            return Ok(());
        }
        if self.rank == 0 {
            return Err(("adapters.rank".into(), "must be at least 1".into()));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(("adapters.alpha".into(), "must be a positive number".into()));
        }
        if !(self.dropout.is_finite() && (0.0..1.0).contains(&self.dropout)) {
            return Err((
                "adapters.dropout".into(),
                "must be a number in [0, 1)".into(),
            ));
        }
        if self.targets.is_empty() {
            return Err((
                "adapters.targets".into(),
                format!("name at least one of {ADAPTER_TARGETS:?}"),
            ));
        }
        if let Some(t) = self
            .targets
            .iter()
            .find(|t| !ADAPTER_TARGETS.contains(&t.as_str()))
        {
            return Err((
                "adapters.targets".into(),
                format!("`{t}` is not one of {ADAPTER_TARGETS:?}"),
            ));
        }
        Ok(())
    }

    /// Whether the layer `name` (`transformer.h.0.attn.c_attn`) gets an adapter.
    pub fn targets_layer(&self, name: &str) -> bool {
        self.targets
            .iter()
            .any(|t| name.ends_with(&format!(".{t}")))
    }
}

/// How the trunk's own weights train (`[train] trunk`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrunkTraining {
    /// Every trunk weight trains.
    #[default]
    Full,
    /// The trunk is frozen: only adapters, heads, loss weights and the trunk parameters named
    /// in `train.trunk_trainable` train.
    Frozen,
}

/// Whether the trunk parameter `name` (`transformer.h.0.ln_1.weight`) matches one of the
/// `train.trunk_trainable` patterns: a pattern matches a name that contains it.
pub fn trunk_trainable(name: &str, patterns: &[String]) -> bool {
    patterns
        .iter()
        .any(|p| !p.is_empty() && name.contains(p.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_tell_the_two_projections_apart() {
        let c = AdapterConfig {
            targets: vec!["attn.c_proj".into()],
            ..Default::default()
        };
        assert!(c.targets_layer("transformer.h.0.attn.c_proj"));
        assert!(!c.targets_layer("transformer.h.0.mlp.c_proj"));
        assert!(!c.targets_layer("transformer.h.0.attn.c_attn"));
    }

    #[test]
    fn checks_name_the_key() {
        let mut c = AdapterConfig {
            mode: AdapterMode::PerTask,
            ..Default::default()
        };
        assert!(c.check().is_ok());
        c.targets = vec!["c_proj".into()];
        let (key, why) = c.check().unwrap_err();
        assert_eq!(key, "adapters.targets");
        assert!(why.contains("`c_proj`"), "{why}");
        c.targets = vec!["c_attn".into()];
        c.rank = 0;
        assert_eq!(c.check().unwrap_err().0, "adapters.rank");
        // Nothing is checked while adapters are off.
        c.mode = AdapterMode::None;
        assert!(c.check().is_ok());
    }

    #[test]
    fn trainable_patterns_match_substrings() {
        let p = vec!["ln_".to_string()];
        assert!(trunk_trainable("transformer.h.1.ln_2.bias", &p));
        assert!(!trunk_trainable("transformer.h.1.mlp.c_fc.weight", &p));
        assert!(!trunk_trainable("transformer.wte.weight", &[String::new()]));
    }
}
