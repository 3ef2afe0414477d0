//! Adapter files in the layout of Hugging Face PEFT, so Python's `peft` and mtgpt read each
//! other's LoRA adapters.
//!
//! A model folder with adapters keeps its base trunk once (`model.safetensors`) and under
//! `adapters/`: `layout.json` (mtgpt's [`AdapterLayout`]) and one PEFT adapter folder per task
//! (`adapters/<task>/adapter_config.json` + `adapter_model.safetensors`), or `adapters/shared/`
//! for a shared adapter. Tensor names are PEFT's for a `GPT2LMHeadModel`
//! (`base_model.model.transformer.h.0.attn.c_attn.lora_A.weight`, `[r, in]`; `lora_B.weight`,
//! `[out, r]`), so `PeftModel.from_pretrained(base, "adapters/<task>")` loads one as it is.
//! With both a shared and a per-task adapter, a task's folder holds the two side by side as one
//! adapter of rank `2r` (alpha doubled, so the scale stays): exactly the task's update.
use crate::error::{Error, Result};
use crate::folder::{read_safetensors, write_safetensors, write_text_atomically};
use crate::gpt::Gpt;
use crate::lora::{AdapterLayout, SHARED};
use mtgpt_core::AdapterMode;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// The adapters folder of a model folder.
pub const ADAPTERS: &str = "adapters";
/// mtgpt's layout file inside it.
pub const LAYOUT: &str = "layout.json";
/// PEFT's config file of one adapter.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
/// PEFT's weights file of one adapter.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";

/// One LoRA adapter over a whole trunk, as a PEFT folder holds it.
#[derive(Debug)]
pub struct PeftAdapter {
    /// Rank `r`.
    pub rank: i64,
    /// `lora_alpha`.
    pub alpha: f64,
    /// The update's scale (`alpha / r`, or `alpha / √r` with rsLoRA).
    pub scale: f64,
    /// Per layer (`transformer.h.0.attn.c_attn`): `A` `[in, r]` and `B` `[r, out]`, fp32.
    pub layers: BTreeMap<String, (Tensor, Tensor)>,
}

impl PeftAdapter {
    /// The layers' PEFT `target_modules` (`c_attn`, `attn.c_proj`, …).
    pub fn targets(&self) -> Vec<String> {
        mtgpt_core::ADAPTER_TARGETS
            .iter()
            .filter(|t| self.layers.keys().any(|k| k.ends_with(&format!(".{t}"))))
            .map(|t| t.to_string())
            .collect()
    }

    /// `scale · A B` of a layer, `[in, out]`.
    pub fn delta_weight(&self, layer: &str) -> Option<Tensor> {
        self.layers
            .get(layer)
            .map(|(a, b)| tch::no_grad(|| a.matmul(b) * self.scale))
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Writes `adapter` as a PEFT folder `dir` (created).
pub fn write_peft(dir: &Path, adapter: &PeftAdapter) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut tensors = Vec::new();
    for (layer, (a, b)) in &adapter.layers {
        let key = format!("base_model.model.{layer}");
        tensors.push((
            format!("{key}.lora_A.weight"),
            a.to_kind(Kind::Float).tr().contiguous(),
        ));
        tensors.push((
            format!("{key}.lora_B.weight"),
            b.to_kind(Kind::Float).tr().contiguous(),
        ));
    }
    write_safetensors(&dir.join(ADAPTER_WEIGHTS), &tensors)?;
    let config = json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": adapter.rank,
        "lora_alpha": adapter.alpha,
        "lora_dropout": 0.0,
        "target_modules": adapter.targets(),
        "fan_in_fan_out": true,
        "bias": "none",
        "use_rslora": false,
        "use_dora": false,
        "init_lora_weights": true,
        "inference_mode": true,
        "modules_to_save": Value::Null,
        "base_model_name_or_path": Value::Null,
        "revision": Value::Null,
    });
    let text = serde_json::to_string_pretty(&config).unwrap_or_default() + "\n";
    write_text_atomically(&dir.join(ADAPTER_CONFIG), &text)
}

/// Reads a PEFT LoRA folder (ours, or one Python `peft` saved for a GPT-2): every tensor must
/// be a `lora_A`/`lora_B` weight of a block layer mtgpt has; anything else (DoRA, bias
/// training, saved modules, embedding adapters) is refused by name.
pub fn read_peft(dir: &Path) -> Result<PeftAdapter> {
    let cpath = dir.join(ADAPTER_CONFIG);
    let text = std::fs::read_to_string(&cpath).map_err(|e| Error::io(&cpath, e))?;
    let v: Value =
        serde_json::from_str(&text).map_err(|e| bad(&cpath, format!("not valid JSON: {e}")))?;
    let field = |k: &str| v.get(k).filter(|x| !x.is_null());
    match field("peft_type").and_then(Value::as_str) {
        Some("LORA") => {}
        other => {
            return Err(bad(
                &cpath,
                format!("peft_type is {other:?}; mtgpt reads LoRA adapters (\"LORA\")"),
            ));
        }
    }
    let rank = field("r")
        .and_then(Value::as_i64)
        .filter(|&r| r > 0)
        .ok_or_else(|| bad(&cpath, "field `r` must be a positive integer"))?;
    let alpha = field("lora_alpha")
        .and_then(Value::as_f64)
        .filter(|a| a.is_finite() && *a > 0.0)
        .ok_or_else(|| bad(&cpath, "field `lora_alpha` must be a positive number"))?;
    for (key, why) in [
        ("use_dora", "DoRA adapters"),
        (
            "modules_to_save",
            "adapters that also train whole modules (`modules_to_save`)",
        ),
        ("rank_pattern", "per-layer ranks (`rank_pattern`)"),
        ("alpha_pattern", "per-layer alphas (`alpha_pattern`)"),
    ] {
        let set = match field(key) {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::Object(m)) => !m.is_empty(),
            Some(Value::Array(a)) => !a.is_empty(),
            Some(_) => true,
        };
        if set {
            return Err(bad(
                &cpath,
                format!("field `{key}`: mtgpt does not read {why}"),
            ));
        }
    }
    if let Some(b) = field("bias").and_then(Value::as_str)
        && b != "none"
    {
        return Err(bad(
            &cpath,
            format!("field `bias` is \"{b}\"; mtgpt reads adapters with bias \"none\""),
        ));
    }
    let rslora = field("use_rslora")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let scale = if rslora {
        alpha / (rank as f64).sqrt()
    } else {
        alpha / rank as f64
    };
    let wpath = dir.join(ADAPTER_WEIGHTS);
    if !wpath.exists() && dir.join("adapter_model.bin").exists() {
        return Err(bad(
            &dir.join("adapter_model.bin"),
            "a Python pickle, which mtgpt never unpickles; save the adapter with \
             `model.save_pretrained(DIR, safe_serialization=True)`",
        ));
    }
    let mut a_of = BTreeMap::new();
    let mut b_of = BTreeMap::new();
    for (name, t) in read_safetensors(&wpath)? {
        let (layer, which) = peft_key(&name).ok_or_else(|| {
            bad(
                &wpath,
                format!("tensor `{name}` is not a LoRA weight of a GPT-2 block layer"),
            )
        })?;
        let t = t.to_kind(Kind::Float);
        if t.dim() != 2 {
            return Err(bad(
                &wpath,
                format!("tensor `{name}` is {:?}, not a matrix", t.size()),
            ));
        }
        if which == 'A' {
            if t.size()[0] != rank {
                return Err(bad(
                    &wpath,
                    format!("`{name}` is {:?}; r is {rank}", t.size()),
                ));
            }
            a_of.insert(layer, t.tr().contiguous());
        } else {
            if t.size()[1] != rank {
                return Err(bad(
                    &wpath,
                    format!("`{name}` is {:?}; r is {rank}", t.size()),
                ));
            }
            b_of.insert(layer, t.tr().contiguous());
        }
    }
    let mut layers = BTreeMap::new();
    for (layer, a) in a_of {
        let b = b_of
            .remove(&layer)
            .ok_or_else(|| bad(&wpath, format!("`{layer}` has lora_A but no lora_B")))?;
        layers.insert(layer, (a, b));
    }
    if let Some(layer) = b_of.keys().next() {
        return Err(bad(&wpath, format!("`{layer}` has lora_B but no lora_A")));
    }
    if layers.is_empty() {
        return Err(bad(&wpath, "holds no LoRA weights"));
    }
    Ok(PeftAdapter {
        rank,
        alpha,
        scale,
        layers,
    })
}

/// `(transformer.h.0.attn.c_attn, 'A')` from a PEFT key (`base_model.model.` prefix and an
/// adapter name before `.weight` both optional).
fn peft_key(name: &str) -> Option<(String, char)> {
    let rest = name.strip_prefix("base_model.model.").unwrap_or(name);
    let (layer, tail) = rest
        .split_once(".lora_A.")
        .map(|(l, t)| (l, ('A', t)))
        .or_else(|| rest.split_once(".lora_B.").map(|(l, t)| (l, ('B', t))))?;
    let (which, tail) = tail;
    // `weight`, or `<adapter name>.weight` as PEFT's in-memory state dict has it.
    let tail_ok = tail == "weight"
        || tail
            .strip_suffix(".weight")
            .is_some_and(|adapter| !adapter.contains('.'));
    if !tail_ok {
        return None;
    }
    let parts: Vec<&str> = layer.split('.').collect();
    let ok = matches!(
        parts.as_slice(),
        ["transformer", "h", i, "attn", "c_attn" | "c_proj"] | ["transformer", "h", i, "mlp", "c_fc" | "c_proj"]
            if i.parse::<usize>().is_ok()
    );
    ok.then(|| (layer.to_string(), which))
}

/// A task's whole adapter update as one PEFT adapter (shared and own stacks side by side).
pub fn task_adapter(gpt: &Gpt, task: &str) -> Result<PeftAdapter> {
    let layout = gpt
        .adapters
        .as_ref()
        .ok_or_else(|| Error::Invalid("the trunk has no adapters".into()))?;
    let rows = layout.rows_for(task).map_err(Error::Invalid)?;
    let mut layers = BTreeMap::new();
    for (name, sets) in gpt.adapter_layers() {
        let mut a_parts = Vec::new();
        let mut b_parts = Vec::new();
        for (set, r) in sets.iter().zip(&rows) {
            let crate::lora::AdapterRows::All(k) = r else {
                continue;
            };
            a_parts.push(set.a.get(*k).detach().to_kind(Kind::Float));
            b_parts.push(set.b.get(*k).detach().to_kind(Kind::Float));
        }
        layers.insert(name, (Tensor::cat(&a_parts, 1), Tensor::cat(&b_parts, 0)));
    }
    let stacks = rows.len() as i64;
    Ok(PeftAdapter {
        rank: layout.rank as i64 * stacks,
        alpha: layout.alpha * stacks as f64,
        scale: layout.scale(),
        layers,
    })
}

/// The shared stack's adapter alone.
fn shared_adapter(gpt: &Gpt) -> Result<PeftAdapter> {
    let layout = gpt.adapters.as_ref().expect("checked by the caller");
    let layers = gpt
        .adapter_layers()
        .into_iter()
        .map(|(name, sets)| {
            let s = &sets[0];
            (
                name,
                (
                    s.a.get(0).detach().to_kind(Kind::Float),
                    s.b.get(0).detach().to_kind(Kind::Float),
                ),
            )
        })
        .collect();
    Ok(PeftAdapter {
        rank: layout.rank as i64,
        alpha: layout.alpha,
        scale: layout.scale(),
        layers,
    })
}

/// Writes `dir/adapters/` for a trunk with adapters (nothing without): the layout, each
/// task's PEFT folder, and the shared adapter's folder when there is one. A folder left from
/// an earlier save of other tasks is replaced.
pub fn save_adapters(gpt: &Gpt, dir: &Path) -> Result<()> {
    let root = dir.join(ADAPTERS);
    let Some(layout) = &gpt.adapters else {
        return Ok(());
    };
    if root.exists() {
        std::fs::remove_dir_all(&root).map_err(|e| Error::io(&root, e))?;
    }
    std::fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
    let text = serde_json::to_string_pretty(layout).unwrap_or_default() + "\n";
    write_text_atomically(&root.join(LAYOUT), &text)?;
    if layout.mode.shared() {
        write_peft(&root.join(SHARED), &shared_adapter(gpt)?)?;
    }
    for task in &layout.tasks {
        write_peft(&root.join(task), &task_adapter(gpt, task)?)?;
    }
    Ok(())
}

/// The layout of a folder's adapters, `None` when it has none.
pub fn read_layout(dir: &Path) -> Result<Option<AdapterLayout>> {
    let path = dir.join(ADAPTERS).join(LAYOUT);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let layout: AdapterLayout = serde_json::from_str(&text)
        .map_err(|e| bad(&path, format!("not a valid adapter layout: {e}")))?;
    Ok(Some(layout))
}

/// Puts the adapters of model folder `dir` (see [`save_adapters`]) on `gpt`, their weights
/// under `p`; returns whether the folder had any.
pub fn load_adapters(gpt: &mut Gpt, p: &tch::nn::Path, dir: &Path) -> Result<bool> {
    let Some(layout) = read_layout(dir)? else {
        return Ok(false);
    };
    gpt.add_adapters(p, &layout)?;
    let root = dir.join(ADAPTERS);
    let r = layout.rank as i64;
    let mut shared = None;
    if layout.mode.shared() {
        shared = Some((root.join(SHARED), read_peft(&root.join(SHARED))?));
    }
    let mut own = Vec::new();
    for task in &layout.tasks {
        own.push((root.join(task), read_peft(&root.join(task))?));
    }
    let both = layout.mode == AdapterMode::Both;
    for (name, lin) in gpt.linears_mut() {
        if lin.lora.is_empty() {
            continue;
        }
        let mut stack = 0;
        if let Some((path, ad)) = &shared {
            let (a, b) = layer_of(ad, &name, path)?;
            fill(&lin.lora[stack], 0, &a, &b, path, &name)?;
            stack += 1;
        }
        if !layout.tasks.is_empty() {
            for (k, (path, ad)) in own.iter().enumerate() {
                let (a, b) = layer_of(ad, &name, path)?;
                // A task folder of `both` holds the shared part first.
                let (a, b) = if both {
                    (a.narrow(1, r, r), b.narrow(0, r, r))
                } else {
                    (a, b)
                };
                fill(&lin.lora[stack], k as i64, &a, &b, path, &name)?;
            }
        }
    }
    Ok(true)
}

fn layer_of(ad: &PeftAdapter, layer: &str, path: &Path) -> Result<(Tensor, Tensor)> {
    ad.layers
        .get(layer)
        .map(|(a, b)| (a.shallow_clone(), b.shallow_clone()))
        .ok_or_else(|| {
            bad(
                &path.join(ADAPTER_WEIGHTS),
                format!("no adapter for layer `{layer}`"),
            )
        })
}

fn fill(
    set: &crate::lora::LoraSet,
    k: i64,
    a: &Tensor,
    b: &Tensor,
    path: &Path,
    layer: &str,
) -> Result<()> {
    let (want_a, want_b) = (set.a.get(k).size(), set.b.get(k).size());
    if a.size() != want_a || b.size() != want_b {
        return Err(bad(
            &path.join(ADAPTER_WEIGHTS),
            format!(
                "`{layer}`: A {:?} and B {:?}, the model expects {want_a:?} and {want_b:?}",
                a.size(),
                b.size()
            ),
        ));
    }
    tch::no_grad(|| {
        set.a.get(k).copy_(a);
        set.b.get(k).copy_(b);
    });
    Ok(())
}

/// Sets task `task`'s own adapter (per-task stack) to `adapter`: a lower rank is padded with
/// zeros, another scale is folded into `B`, layers the adapter lacks get a zero update. A
/// layer the adapter has but the model gives no adapter, or a rank above the model's, is an
/// error naming it (`source` names the adapter for messages).
pub fn set_task_adapter(gpt: &Gpt, task: &str, adapter: &PeftAdapter, source: &Path) -> Result<()> {
    let layout = gpt
        .adapters
        .as_ref()
        .ok_or_else(|| Error::Invalid("the trunk has no adapters".into()))?;
    if layout.mode != AdapterMode::PerTask {
        return Err(Error::Invalid(format!(
            "an adapter can be imported into a model with per-task adapters only; this one's \
             are `{:?}`",
            layout.mode
        )));
    }
    let k = layout
        .task_index(task)
        .ok_or_else(|| Error::Invalid(format!("the model has no task `{task}`")))?;
    let r = layout.rank as i64;
    if adapter.rank > r {
        return Err(bad(
            source,
            format!(
                "rank {} is above the model's adapter rank {r}",
                adapter.rank
            ),
        ));
    }
    let layers: BTreeMap<String, &[crate::lora::LoraSet]> =
        gpt.adapter_layers().into_iter().collect();
    if let Some(l) = adapter.layers.keys().find(|l| !layers.contains_key(*l)) {
        return Err(bad(
            source,
            format!(
                "has an adapter on `{l}`, which has none in this model (targets {:?})",
                layout.targets
            ),
        ));
    }
    let factor = adapter.scale / layout.scale();
    for (name, sets) in layers {
        let set = &sets[0];
        tch::no_grad(|| {
            let _ = set.a.get(k).zero_();
            let _ = set.b.get(k).zero_();
            if let Some((a, b)) = adapter.layers.get(&name) {
                set.a.get(k).narrow(1, 0, adapter.rank).copy_(a);
                set.b.get(k).narrow(0, 0, adapter.rank).copy_(&(b * factor));
            }
        });
    }
    Ok(())
}

/// The folder of task `task`'s adapter inside model folder `dir`.
pub fn task_dir(dir: &Path, task: &str) -> PathBuf {
    dir.join(ADAPTERS).join(task)
}
