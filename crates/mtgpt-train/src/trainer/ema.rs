//! `train.ema_decay`: an exponential moving average of the trained weights (Polyak
//! averaging). Validation, `best/` and `model/` read the average; the optimizer goes on from
//! the raw weights. The average is bias-corrected as Adam's moments are (it starts at zero and
//! is divided by `1 − decay^n`), so after `n` updates it is a proper weighted mean of the
//! weights of those steps and never leans towards the starting point.
use crate::error::{Error, Result};
use tch::{Kind, Tensor};

/// The running average of a set of variables.
pub(crate) struct Ema {
    decay: f64,
    /// Names of the averaged variables (the checkpoint file's keys).
    names: Vec<String>,
    /// The uncorrected averages, fp32, one per variable.
    shadow: Vec<Tensor>,
    /// Updates so far.
    updates: u64,
}

impl Ema {
    /// An empty average of `vars` (names and tensors) with `decay` in (0, 1).
    pub(crate) fn new(decay: f64, vars: &[(String, Tensor)]) -> Self {
        let shadow = tch::no_grad(|| {
            vars.iter()
                .map(|(_, v)| v.zeros_like().to_kind(Kind::Float))
                .collect()
        });
        Ema {
            decay,
            names: vars.iter().map(|(n, _)| n.clone()).collect(),
            shadow,
            updates: 0,
        }
    }

    /// Folds the current values of `vars` (in the order given to [`Ema::new`]) into the
    /// average: `shadow ← decay · shadow + (1 − decay) · var`.
    pub(crate) fn update(&mut self, vars: &[Tensor]) {
        tch::no_grad(|| {
            for (s, v) in self.shadow.iter_mut().zip(vars) {
                let _ = s.lerp_(&v.to_kind(Kind::Float), 1.0 - self.decay);
            }
        });
        self.updates += 1;
    }

    /// The bias-corrected averages (the raw weights' values before any update).
    pub(crate) fn averaged(&self) -> Vec<Tensor> {
        let correction = 1.0 - self.decay.powi(self.updates.min(i32::MAX as u64) as i32);
        tch::no_grad(|| self.shadow.iter().map(|s| s / correction).collect())
    }

    /// Runs `f` with the averaged weights in `vars`, then puts the raw weights back (also when
    /// `f` fails). Before the first update it simply runs `f`.
    pub(crate) fn with_averaged<R>(&self, vars: &[Tensor], f: impl FnOnce() -> R) -> R {
        if self.updates == 0 {
            return f();
        }
        let raw: Vec<Tensor> = tch::no_grad(|| vars.iter().map(Tensor::copy).collect());
        tch::no_grad(|| {
            for (v, a) in vars.iter().zip(self.averaged()) {
                v.shallow_clone().copy_(&a);
            }
        });
        let out = f();
        tch::no_grad(|| {
            for (v, r) in vars.iter().zip(&raw) {
                v.shallow_clone().copy_(r);
            }
        });
        out
    }

    /// The average as named tensors for a checkpoint (`ema.updates` holds the count).
    pub(crate) fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![(
            "ema.updates".to_string(),
            Tensor::from_slice(&[self.updates as i64]),
        )];
        for (n, s) in self.names.iter().zip(&self.shadow) {
            out.push((format!("ema.{n}"), s.shallow_clone()));
        }
        out
    }

    /// Restores [`Ema::state`]; `what` names the file in errors.
    pub(crate) fn load_state(&mut self, tensors: &[(String, Tensor)], what: &str) -> Result<()> {
        let map: std::collections::HashMap<&str, &Tensor> =
            tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let missing = |k: &str| Error::Invalid(format!("{what}: missing tensor `{k}`"));
        let updates = map
            .get("ema.updates")
            .ok_or_else(|| missing("ema.updates"))?;
        let updates = updates.int64_value(&[0]);
        tch::no_grad(|| -> Result<()> {
            for (n, s) in self.names.iter().zip(self.shadow.iter_mut()) {
                let key = format!("ema.{n}");
                let t = map.get(key.as_str()).ok_or_else(|| missing(&key))?;
                if t.size() != s.size() {
                    return Err(Error::Invalid(format!(
                        "{what}: `{key}` has shape {:?}, the model's is {:?}",
                        t.size(),
                        s.size()
                    )));
                }
                s.copy_(t);
            }
            Ok(())
        })?;
        self.updates = updates.max(0) as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_average_is_the_bias_corrected_weighted_mean_of_the_steps() {
        let v = Tensor::from_slice(&[0.0f32, 0.0]);
        let mut ema = Ema::new(0.5, &[("w".into(), v.shallow_clone())]);
        // Values 2 then 4: shadow 0.5·2 = 1, then 0.5·1 + 0.5·4 = 2.5; corrected by
        // 1 − 0.25 = 0.75: 10/3, the mean of 2 and 4 weighted 1 : 2.
        for x in [2.0f32, 4.0] {
            tch::no_grad(|| v.shallow_clone().copy_(&Tensor::from_slice(&[x, -x])));
            ema.update(std::slice::from_ref(&v));
        }
        let avg = Vec::<f32>::try_from(&ema.averaged()[0]).unwrap();
        assert!((avg[0] - 10.0 / 3.0).abs() < 1e-5 && (avg[1] + 10.0 / 3.0).abs() < 1e-5);
        let seen = ema.with_averaged(std::slice::from_ref(&v), || {
            Vec::<f32>::try_from(&v).unwrap()
        });
        assert_eq!(seen, avg);
        assert_eq!(
            Vec::<f32>::try_from(&v).unwrap(),
            vec![4.0, -4.0],
            "raw back"
        );
        let mut again = Ema::new(0.5, &[("w".into(), v.shallow_clone())]);
        again.load_state(&ema.state(), "ema.safetensors").unwrap();
        assert_eq!(Vec::<f32>::try_from(&again.averaged()[0]).unwrap(), avg);
        let err = again.load_state(&ema.state()[..1], "ema.safetensors");
        assert!(
            err.unwrap_err()
                .to_string()
                .contains("missing tensor `ema.w`")
        );
    }
}
