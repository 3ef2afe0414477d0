//! AdamW over plain tensors, so its moments can be checkpointed (tch's `nn::Optimizer` keeps
//! them inside libtorch), with decay / no-decay groups, learning-rate schedules and clipping
//! by global gradient norm.
use mtgpt_core::{Schedule, TrainConfig};
use tch::{Tensor, nn};

/// One parameter and its Adam moments.
#[derive(Debug)]
struct Slot {
    name: String,
    var: Tensor,
    m: Tensor,
    v: Tensor,
    decay: bool,
    /// Multiplies the step's learning rate for this parameter.
    lr_scale: f64,
}

/// Decoupled-weight-decay Adam (Loshchilov & Hutter), PyTorch's update rule.
#[derive(Debug)]
pub struct AdamW {
    slots: Vec<Slot>,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    step: i64,
}

/// Whether a parameter gets weight decay: matrices of linear layers do; biases, norms,
/// embeddings, a CRF's transition scores and learned loss weights do not.
pub fn decays(name: &str, dims: usize) -> bool {
    dims >= 2
        && !name.contains(".crf.")
        && !name.contains(".wte.")
        && !name.contains(".wpe.")
        && !name.starts_with("loss_weights.")
}

impl AdamW {
    /// An optimizer over every trainable variable of `vs` (sorted by name, so the order is
    /// stable across runs and resumes).
    pub fn new(vs: &nn::VarStore, beta1: f64, beta2: f64, eps: f64, weight_decay: f64) -> Self {
        // Frozen variables get no moments (with a frozen trunk, most of the memory).
        let mut vars: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, v)| v.requires_grad())
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = vars
            .into_iter()
            .map(|(name, var)| Slot {
                decay: decays(&name, var.dim()),
                lr_scale: 1.0,
                m: var.zeros_like(),
                v: var.zeros_like(),
                name,
                var,
            })
            .collect();
        AdamW {
            slots,
            beta1,
            beta2,
            eps,
            weight_decay,
            step: 0,
        }
    }

    /// The optimizer `[train]` asks for (with `trunk_lr_factor` on the `transformer.*`
    /// parameters and `loraplus_lr_ratio` on the adapters' `B` matrices).
    pub fn from_config(vs: &nn::VarStore, c: &TrainConfig) -> Self {
        let mut opt = Self::new(vs, c.beta1, c.beta2, c.eps, c.weight_decay);
        opt.scale_lr("transformer.", c.trunk_lr_factor);
        for s in opt.slots.iter_mut().filter(|s| s.name.ends_with(".lora_b")) {
            s.lr_scale = c.loraplus_lr_ratio;
        }
        opt
    }

    /// Parameters whose names start with `prefix` step with `factor` × the learning rate
    /// (weight decay scales with it, as in a PyTorch parameter group of that rate).
    pub fn scale_lr(&mut self, prefix: &str, factor: f64) {
        for s in self.slots.iter_mut().filter(|s| s.name.starts_with(prefix)) {
            s.lr_scale = factor;
        }
    }

    /// Elements of optimizer state (both moments of every parameter it steps).
    pub fn state_elements(&self) -> i64 {
        self.slots.iter().map(|s| 2 * s.var.numel() as i64).sum()
    }

    /// Steps taken.
    pub fn steps(&self) -> i64 {
        self.step
    }

    /// Names of the parameters that get weight decay.
    pub fn decayed(&self) -> Vec<&str> {
        self.slots
            .iter()
            .filter(|s| s.decay)
            .map(|s| s.name.as_str())
            .collect()
    }

    /// Clears every gradient.
    pub fn zero_grad(&mut self) {
        for s in &mut self.slots {
            s.var.zero_grad();
        }
    }

    /// Scales gradients so their global L2 norm is at most `max_norm` (0 = no clipping);
    /// returns the norm before clipping (NaN/inf when a gradient is).
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        let grads: Vec<Tensor> = self
            .slots
            .iter()
            .map(|s| s.var.grad())
            .filter(|g| g.defined())
            .collect();
        if grads.is_empty() {
            return 0.0;
        }
        let total = tch::no_grad(|| {
            let norms: Vec<Tensor> = grads
                .iter()
                .map(|g| g.norm().to_kind(tch::Kind::Double))
                .collect();
            Tensor::stack(&norms, 0).norm().double_value(&[])
        });
        if max_norm > 0.0 && total.is_finite() && total > max_norm {
            let scale = max_norm / (total + 1e-6);
            tch::no_grad(|| {
                for mut g in grads {
                    let _ = g.g_mul_scalar_(scale);
                }
            });
        }
        total
    }

    /// One update with learning rate `lr`; parameters without a gradient (frozen) are skipped.
    pub fn step(&mut self, lr: f64) {
        self.step += 1;
        let t = self.step as i32;
        let bc1 = 1.0 - self.beta1.powi(t);
        let bc2 = 1.0 - self.beta2.powi(t);
        tch::no_grad(|| {
            for s in &mut self.slots {
                let g = s.var.grad();
                if !g.defined() {
                    continue;
                }
                let lr = lr * s.lr_scale;
                if s.decay && self.weight_decay > 0.0 {
                    let _ = s.var.g_mul_scalar_(1.0 - lr * self.weight_decay);
                }
                let _ = s.m.lerp_(&g, 1.0 - self.beta1);
                let _ = s.v.lerp_(&g.square(), 1.0 - self.beta2);
                if lr != 0.0 {
                    // var -= lr/bc1 · m / (√v/√bc2 + eps), with the factor folded into the
                    // denominator so the update is one fused addcdiv and one temporary.
                    let mut denom = s.v.sqrt();
                    let _ = denom.g_div_scalar_(bc2.sqrt());
                    let _ = denom.g_add_scalar_(self.eps);
                    let _ = denom.g_mul_scalar_(-bc1 / lr);
                    let _ = s.var.addcdiv_(&s.m, &denom);
                }
            }
        });
    }

    /// The moments and step count as named tensors (`adam.m.<param>`, `adam.v.<param>`,
    /// `adam.step`), for checkpoints.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("adam.step".to_string(), Tensor::from_slice(&[self.step]))];
        for s in &self.slots {
            out.push((format!("adam.m.{}", s.name), s.m.shallow_clone()));
            out.push((format!("adam.v.{}", s.name), s.v.shallow_clone()));
        }
        out
    }

    /// Restores [`AdamW::state`]; every moment must be present with its shape.
    pub fn load_state(&mut self, tensors: &[(String, Tensor)]) -> Result<(), String> {
        let map: std::collections::HashMap<&str, &Tensor> =
            tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let step = map.get("adam.step").ok_or("missing adam.step")?;
        tch::no_grad(|| {
            for s in &mut self.slots {
                for (key, dst) in [
                    (format!("adam.m.{}", s.name), &mut s.m),
                    (format!("adam.v.{}", s.name), &mut s.v),
                ] {
                    let src = map
                        .get(key.as_str())
                        .ok_or_else(|| format!("missing {key}"))?;
                    if src.size() != dst.size() {
                        return Err(format!(
                            "{key} is {:?}, expected {:?}",
                            src.size(),
                            dst.size()
                        ));
                    }
                    dst.copy_(src);
                }
            }
            Ok(())
        })?;
        self.step = step
            .f_int64_value(&[0])
            .map_err(|e| format!("adam.step is not a step count: {e}"))?;
        self.define_moved_grads();
        Ok(())
    }

    /// Gives every parameter the optimizer has already moved (a non-zero second moment) a
    /// zero gradient. In a running process such a parameter keeps its (zeroed) gradient, so
    /// [`AdamW::step`] goes on decaying its moments and weights even in steps whose task does
    /// not reach it; a resumed process starts without gradients and would skip it until its
    /// task comes up again, and drift from the uninterrupted run.
    fn define_moved_grads(&mut self) {
        let moved: Vec<&Tensor> = self
            .slots
            .iter()
            .filter(|s| s.var.requires_grad() && !s.var.grad().defined())
            .filter(|s| tch::no_grad(|| s.v.abs().max().double_value(&[]) > 0.0))
            .map(|s| &s.var)
            .collect();
        if moved.is_empty() {
            return;
        }
        let zero = moved
            .iter()
            .map(|v| (*v * 0.0).sum(tch::Kind::Float))
            .reduce(|a, b| a + b);
        if let Some(zero) = zero {
            zero.backward();
        }
        self.zero_grad();
    }
}

/// The learning rate at optimizer step `step` (0-based) of `total`: linear warmup to `lr`,
/// then cosine, linear or constant decay to `min_lr_ratio × lr`.
pub fn learning_rate(c: &TrainConfig, step: usize, total: usize) -> f64 {
    let (lr, min_lr) = (c.lr, c.lr * c.min_lr_ratio);
    if step < c.warmup_steps {
        return lr * (step + 1) as f64 / c.warmup_steps as f64;
    }
    let span = total.saturating_sub(c.warmup_steps).max(1) as f64;
    let progress = ((step - c.warmup_steps) as f64 / span).min(1.0);
    match c.schedule {
        Schedule::Constant => lr,
        Schedule::Linear => min_lr + (lr - min_lr) * (1.0 - progress),
        Schedule::Cosine => {
            min_lr + (lr - min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::OptimizerConfig;
    use tch::{Device, Kind};

    fn problem(seed: i64) -> (nn::VarStore, Tensor, Tensor) {
        tch::manual_seed(seed);
        let vs = nn::VarStore::new(Device::Cpu);
        let layer = vs.root() / "layer";
        let _w = layer.randn("weight", &[4, 3], 0.0, 1.0);
        // Group 1 = no decay, for the libtorch reference optimizer.
        let _b = layer.set_group(1).zeros("bias", &[3]);
        let x = Tensor::randn([8, 4], (Kind::Float, Device::Cpu));
        let y = Tensor::randn([8, 3], (Kind::Float, Device::Cpu));
        (vs, x, y)
    }

    fn loss(vs: &nn::VarStore, x: &Tensor, y: &Tensor) -> Tensor {
        let v = vs.variables();
        (x.matmul(&v["layer.weight"]) + &v["layer.bias"] - y)
            .square()
            .mean(Kind::Float)
    }

    #[test]
    fn matches_libtorch_adamw_with_decay_on_matrices_only() {
        // Ours: decay on the weight matrix only. Reference: libtorch's AdamW with the same
        // decay on the weight (bias in a no-decay group).
        let (vs, x, y) = problem(0);
        let mut ours = AdamW::new(&vs, 0.9, 0.95, 1e-8, 0.1);
        assert_eq!(ours.decayed(), vec!["layer.weight"]);
        let (mut vs2, _, _) = problem(0);
        // Same start whatever other tests do to libtorch's global generator meanwhile.
        vs2.copy(&vs).unwrap();
        let mut reference = nn::AdamW {
            beta1: 0.9,
            beta2: 0.95,
            wd: 0.1,
            eps: 1e-8,
            amsgrad: false,
        }
        .build(&vs2, 1e-2)
        .unwrap();
        reference.set_weight_decay_group(0, 0.1);
        reference.set_weight_decay_group(1, 0.0);
        for _ in 0..20 {
            ours.zero_grad();
            loss(&vs, &x, &y).backward();
            ours.step(1e-2);
            reference.zero_grad();
            loss(&vs2, &x, &y).backward();
            reference.step();
        }
        let (a, b) = (vs.variables(), vs2.variables());
        for name in ["layer.weight", "layer.bias"] {
            let d = (&a[name] - &b[name]).abs().max().double_value(&[]);
            assert!(d < 1e-5, "{name} differs by {d}");
        }
    }

    #[test]
    fn clipping_caps_the_global_norm() {
        let (vs, x, y) = problem(1);
        let mut opt = AdamW::new(&vs, 0.9, 0.95, 1e-8, 0.0);
        (loss(&vs, &x, &y) * 1000.0).backward();
        let before = opt.clip_grad_norm(1.0);
        assert!(before > 1.0);
        let after = opt.clip_grad_norm(0.0);
        assert!((after - 1.0).abs() < 1e-4, "{after}");
    }

    /// A head whose task is not in the steps after a checkpoint must move the same way in a
    /// resumed process (no gradients yet) as in the uninterrupted one (zeroed gradients).
    #[test]
    fn resume_keeps_updating_parameters_that_steps_no_longer_reach() {
        let make = || {
            let vs = nn::VarStore::new(Device::Cpu);
            let root = vs.root();
            let _ = root.var_copy("a", &Tensor::from_slice(&[1.0f32, -2.0, 3.0]).view([3, 1]));
            let _ = root.var_copy("b", &Tensor::from_slice(&[0.5f32, 0.25]).view([2, 1]));
            vs
        };
        let both = |vs: &nn::VarStore| {
            let v = vs.variables();
            (v["a"].square().sum(Kind::Float) + v["b"].square().sum(Kind::Float)).backward();
        };
        let only_a = |vs: &nn::VarStore| vs.variables()["a"].square().sum(Kind::Float).backward();
        let step = |opt: &mut AdamW, vs: &nn::VarStore, f: &dyn Fn(&nn::VarStore)| {
            opt.zero_grad();
            f(vs);
            opt.step(1e-2);
        };
        let whole = make();
        let mut opt = AdamW::new(&whole, 0.9, 0.95, 1e-8, 0.1);
        step(&mut opt, &whole, &both);
        step(&mut opt, &whole, &both);
        let state: Vec<(String, Tensor)> = opt
            .state()
            .into_iter()
            .map(|(n, t)| (n, t.copy()))
            .collect();
        let mut resumed = make();
        resumed.copy(&whole).unwrap();
        step(&mut opt, &whole, &only_a);
        step(&mut opt, &whole, &only_a);

        let mut opt2 = AdamW::new(&resumed, 0.9, 0.95, 1e-8, 0.1);
        opt2.load_state(&state).unwrap();
        step(&mut opt2, &resumed, &only_a);
        step(&mut opt2, &resumed, &only_a);
        for name in ["a", "b"] {
            let (x, y) = (&whole.variables()[name], &resumed.variables()[name]);
            assert!(x.equal(y), "{name}: {x:?} vs {y:?}");
        }
    }

    #[test]
    fn state_round_trips_and_continues_identically() {
        let (vs, x, y) = problem(2);
        let mut a = AdamW::new(&vs, 0.9, 0.95, 1e-8, 0.1);
        for _ in 0..3 {
            a.zero_grad();
            loss(&vs, &x, &y).backward();
            a.step(1e-2);
        }
        let state: Vec<(String, Tensor)> =
            a.state().into_iter().map(|(n, t)| (n, t.copy())).collect();
        let weights: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .map(|(n, t)| (n, t.copy()))
            .collect();
        a.zero_grad();
        loss(&vs, &x, &y).backward();
        a.step(1e-2);
        let want = vs.variables()["layer.weight"].copy();
        // Restore weights and moments into a fresh optimizer and take the same step.
        tch::no_grad(|| {
            let mut vars = vs.variables();
            for (n, t) in &weights {
                if let Some(v) = vars.get_mut(n) {
                    v.copy_(t);
                }
            }
        });
        let mut b = AdamW::new(&vs, 0.9, 0.95, 1e-8, 0.1);
        b.load_state(&state).unwrap();
        assert_eq!(b.steps(), 3);
        b.zero_grad();
        loss(&vs, &x, &y).backward();
        b.step(1e-2);
        assert!(vs.variables()["layer.weight"].equal(&want));
        assert!(
            b.load_state(&state[..1])
                .unwrap_err()
                .contains("missing adam.m.")
        );
    }

    #[test]
    fn only_linear_matrices_decay() {
        assert!(decays("heads.ner.tag.weight", 2));
        assert!(decays("transformer.h.0.attn.c_attn.weight", 2));
        assert!(!decays("heads.ner.tag.bias", 1));
        assert!(!decays("heads.ner.crf.trans", 2));
        assert!(!decays("transformer.wte.weight", 2));
        assert!(!decays("loss_weights.ner", 2));
    }

    #[test]
    fn schedules_warm_up_then_decay() {
        let mut c = TrainConfig {
            lr: 1.0,
            min_lr_ratio: 0.1,
            warmup_steps: 10,
            ..Default::default()
        };
        assert!((learning_rate(&c, 0, 110) - 0.1).abs() < 1e-12);
        assert!((learning_rate(&c, 9, 110) - 1.0).abs() < 1e-12);
        assert!(
            (learning_rate(&c, 60, 110) - 0.55).abs() < 1e-12,
            "cosine midpoint"
        );
        assert!((learning_rate(&c, 110, 110) - 0.1).abs() < 1e-12);
        c.schedule = Schedule::Linear;
        assert!((learning_rate(&c, 35, 110) - 0.775).abs() < 1e-12);
        c.schedule = Schedule::Constant;
        assert_eq!(learning_rate(&c, 100, 110), 1.0);
    }

    #[test]
    fn loraplus_lr_ratio_scales_only_the_adapters_b_step() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let root = vs.root();
        let layer = &root / "adapters" / "task" / "h" / "0" / "attn" / "c_attn";
        let a = layer.var("lora_a", &[4, 4], nn::Init::Const(1.0));
        let b = layer.var("lora_b", &[4, 4], nn::Init::Const(1.0));
        let c = TrainConfig {
            loraplus_lr_ratio: 16.0,
            weight_decay: 0.0,
            ..Default::default()
        };
        let mut opt = AdamW::from_config(&vs, &c);
        let x = Tensor::ones([2, 4], (tch::Kind::Float, tch::Device::Cpu));
        (x.matmul(&a).sum(tch::Kind::Float) + x.matmul(&b).sum(tch::Kind::Float)).backward();
        opt.step(1e-3);
        let moved = |t: &Tensor| (1.0 - t.mean(tch::Kind::Float).double_value(&[])).abs();
        let (da, db) = (moved(&a), moved(&b));
        assert!((da - 1e-3).abs() < 1e-7, "A step {da}");
        assert!((db / da - 16.0).abs() < 1e-3, "B/A step ratio {}", db / da);
    }

    #[test]
    fn trunk_lr_factor_scales_only_the_trunk_step() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let root = vs.root();
        let trunk = (&root / "transformer" / "h").var("w", &[4, 4], nn::Init::Const(1.0));
        let head = (&root / "heads" / "cls").var("w", &[4, 4], nn::Init::Const(1.0));
        let c = TrainConfig {
            trunk_lr_factor: 0.25,
            weight_decay: 0.0,
            ..Default::default()
        };
        let mut opt = AdamW::from_config(&vs, &c);
        let x = Tensor::ones([2, 4], (tch::Kind::Float, tch::Device::Cpu));
        (x.matmul(&trunk).sum(tch::Kind::Float) + x.matmul(&head).sum(tch::Kind::Float)).backward();
        opt.step(1e-2);
        let moved = |t: &Tensor| (1.0 - t.mean(tch::Kind::Float).double_value(&[])).abs();
        let (dt, dh) = (moved(&trunk), moved(&head));
        assert!((dh - 1e-2).abs() < 1e-6, "head step {dh}");
        assert!(
            (dt / dh - 0.25).abs() < 1e-4,
            "trunk/head step ratio {}",
            dt / dh
        );
    }
}
