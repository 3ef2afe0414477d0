//! `model.init`: the trunk starts from a model folder, whose shape and tokenizer the run takes.
use super::source::Source;
use crate::config::{Config, ModelConfig, ModelSection};
use crate::error::Result;
use std::path::{Path, PathBuf};

/// The model folder `dir` names: itself when it holds `config.json`, else a run folder's
/// `best/` or `model/`. The weights must be `model.safetensors` (or a compact form of it); a
/// folder with only a pickled `pytorch_model.bin` is refused with how to convert it.
pub fn init_folder(dir: &Path) -> std::result::Result<PathBuf, String> {
    if !dir.is_dir() {
        return Err(format!(
            "{} does not exist or is not a folder",
            dir.display()
        ));
    }
    let folder = if dir.join("config.json").is_file() {
        dir.to_path_buf()
    } else if let Some(sub) = ["best", "model"]
        .iter()
        .map(|s| dir.join(s))
        .find(|d| d.join("config.json").is_file())
    {
        sub
    } else {
        return Err(format!(
            "{} has no config.json (nor best/ or model/ with one); pass a model folder: an \
             mtgpt model or run folder, a base written by `mtgpt pretrain`, or a Hugging Face \
             GPT-2 folder written by save_pretrained",
            dir.display()
        ));
    };
    if !folder.join("model.safetensors").is_file() {
        if folder.join("pytorch_model.bin").is_file() {
            return Err(format!(
                "{} holds only pytorch_model.bin, a Python pickle, which mtgpt never unpickles; \
                 convert it once with Python: `from transformers import GPT2LMHeadModel; \
                 GPT2LMHeadModel.from_pretrained(\"{0}\").save_pretrained(\"{0}\", \
                 safe_serialization=True)` (writes model.safetensors)",
                folder.display()
            ));
        }
        return Err(format!("{} has no model.safetensors", folder.display()));
    }
    if !folder.join("tokenizer.json").is_file() {
        return Err(format!(
            "{} has no tokenizer.json; a pretrained trunk only makes sense with the tokenizer \
             it was trained with (transformers writes it with \
             `AutoTokenizer.from_pretrained(...).save_pretrained(DIR)` for a fast tokenizer)",
            folder.display()
        ));
    }
    Ok(folder)
}

/// The shape of the model folder `folder` (its `config.json`).
pub fn init_shape(folder: &Path) -> std::result::Result<ModelConfig, String> {
    let path = folder.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not valid JSON: {e}", path.display()))?;
    ModelConfig::from_hf_json(&v).map_err(|e| format!("{}: {e}", path.display()))
}

/// Applies `model.init` to `c`: the model shape comes from the folder (a shape key the config
/// sets must agree), dropout and precision from the config when it sets them, and the
/// tokenizer is the folder's.
pub(super) fn apply_init(
    c: &mut Config,
    section: &ModelSection,
    src: &Source<'_>,
    overridden: &[String],
) -> Result<()> {
    let Some(dir) = c.init.clone() else {
        return Ok(());
    };
    let shown = format!("{:?}", dir.display().to_string());
    let err =
        |key: &str, value: String, reason: &str| src.value_error(overridden, key, value, reason);
    let folder = init_folder(&dir).map_err(|r| err("model.init", shown.clone(), &r))?;
    let shape = init_shape(&folder).map_err(|r| err("model.init", shown.clone(), &r))?;
    let given: [(&str, Option<usize>, usize); 5] = [
        ("n_layer", section.n_layer, shape.n_layer),
        ("n_head", section.n_head, shape.n_head),
        ("d_model", section.d_model, shape.d_model),
        ("d_ff", section.d_ff, shape.d_ff),
        ("block_size", section.block_size, shape.block_size),
    ];
    for (key, set, theirs) in given {
        if let Some(ours) = set
            && ours != theirs
        {
            return Err(err(
                &format!("model.{key}"),
                ours.to_string(),
                &format!(
                    "model.init {} has {key} = {theirs}; the shape comes from the init folder, \
                     so drop model.{key} or set it to {theirs}",
                    folder.display()
                ),
            ));
        }
    }
    for (key, set, theirs) in [
        ("layer_heads", &section.layer_heads, &shape.layer_heads),
        ("layer_d_ff", &section.layer_d_ff, &shape.layer_d_ff),
    ] {
        if let Some(ours) = set
            && ours != theirs
        {
            return Err(err(
                &format!("model.{key}"),
                format!("{ours:?}"),
                &format!(
                    "model.init {} has {key} = {theirs:?}; drop model.{key}",
                    folder.display()
                ),
            ));
        }
    }
    if let Some(eps) = section.layer_norm_eps
        && eps != shape.layer_norm_eps
    {
        return Err(err(
            "model.layer_norm_eps",
            eps.to_string(),
            &format!(
                "model.init {} was trained with layer_norm_eps = {}; drop the key",
                folder.display(),
                shape.layer_norm_eps
            ),
        ));
    }
    let tok = folder.join("tokenizer.json");
    if let Some(p) = c.tokenizer.existing()
        && p != tok
    {
        return Err(err(
            "tokenizer.path",
            format!("{:?}", c.tokenizer.path),
            &format!(
                "model.init brings its own tokenizer ({}); a trunk pretrained with one \
                 vocabulary cannot read another, so drop tokenizer.path",
                tok.display()
            ),
        ));
    }
    c.tokenizer.path = tok.to_string_lossy().into_owned();
    let mut m = shape;
    m.dropout = section.dropout.unwrap_or(m.dropout);
    m.precision = section.precision.unwrap_or_default().resolve(false);
    c.model = m;
    c.init = Some(folder);
    Ok(())
}
